package viewer_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/viewer"
)

// sendersStore is a mailbox of one letter from each of senders, whose
// GetOrg is the test's.
type sendersStore struct {
	viewer.Store
	senders []string
	getOrg  func(ctx context.Context, cvr string) (hub.Organisation, error)
}

func (s *sendersStore) ListQueue(_ context.Context, queue string, after int64, limit int, _ bool, _ time.Time) ([]hub.Delivery, error) {
	var out []hub.Delivery
	for i := range s.senders {
		if seq := int64(i + 1); seq > after && len(out) < limit {
			out = append(out, hub.Delivery{ID: fmt.Sprintf("d%d", seq), MessageUUID: fmt.Sprintf("m%d", seq), Queue: queue, Seq: seq})
		}
	}
	return out, nil
}

func (s *sendersStore) GetMessages(_ context.Context, uuids []string) (map[string]hub.Message, error) {
	out := map[string]hub.Message{}
	for _, u := range uuids {
		var seq int
		fmt.Sscanf(u, "m%d", &seq)
		out[u] = hub.Message{UUID: u, Label: u, SenderCVR: s.senders[seq-1]}
	}
	return out, nil
}

func (s *sendersStore) GetOrg(ctx context.Context, cvr string) (hub.Organisation, error) {
	return s.getOrg(ctx, cvr)
}

// noItems is a viewer state with nothing read or moved.
type noItems struct{ viewer.Mailboxes }

func (noItems) MailboxItems(context.Context, []string) (map[string]hub.MailboxItem, error) {
	return map[string]hub.MailboxItem{}, nil
}

func senderCVRs(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%08d", 20_000_000+i))
	}
	return out
}

func citizenBox(t *testing.T, svc *viewer.Service) viewer.Mailbox {
	t.Helper()
	box, err := svc.Open(context.Background(), viewer.Person{CPR: citizen}, citizen, "")
	if err != nil {
		t.Fatal(err)
	}
	return box
}

// TestSenderNameLookupsAreBounded: a page from 40 senders reads their
// names at most viewer.NameLookups at a time. Each lookup is held until
// more than the bound are in flight (the failure, seen at once) or, when
// none came, a moment has passed: an unbounded listing has all 40 in
// flight within that moment.
func TestSenderNameLookupsAreBounded(t *testing.T) {
	const senders = 40
	var (
		mu              sync.Mutex
		inflight, most  int
		over            = make(chan struct{})
		overOnce        sync.Once
		calls           int
		store           = &sendersStore{senders: senderCVRs(senders)}
		svc             = &viewer.Service{Store: store, Mailboxes: noItems{}, Now: func() time.Time { return t0 }, Log: quiet}
		box             = citizenBox(t, svc)
		nameOf          = func(cvr string) string { return "Myndighed " + cvr }
		patienceForMore = 50 * time.Millisecond
	)
	store.getOrg = func(_ context.Context, cvr string) (hub.Organisation, error) {
		mu.Lock()
		inflight++
		calls++
		most = max(most, inflight)
		if inflight > viewer.NameLookups {
			overOnce.Do(func() { close(over) })
		}
		mu.Unlock()
		select {
		case <-over:
		case <-time.After(patienceForMore):
		}
		mu.Lock()
		inflight--
		mu.Unlock()
		return hub.Organisation{CVR: cvr, Name: nameOf(cvr)}, nil
	}
	p, err := svc.List(context.Background(), box, viewer.Query{Size: senders})
	if err != nil {
		t.Fatal(err)
	}
	if most > viewer.NameLookups {
		t.Fatalf("%d name lookups at once, bound %d", most, viewer.NameLookups)
	}
	if calls != senders || len(p.Letters) != senders {
		t.Fatalf("%d lookups, %d letters; want %d each", calls, len(p.Letters), senders)
	}
	for _, l := range p.Letters {
		if l.SenderName != nameOf(l.SenderCVR) {
			t.Fatalf("letter %s from %s named %q", l.MessageUUID, l.SenderCVR, l.SenderName)
		}
	}
}

// TestSenderNameFailureIsNotKept: a lookup that fails leaves the letter
// without its sender's name, not the page without its letters, and the
// next listing reads the name again instead of remembering the failure.
func TestSenderNameFailureIsNotKept(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
	}{
		{"a store that is briefly unavailable", hub.Errorf(hub.Unavailable, "the store is busy")},
		{"a sender not found (yet) on a lagging replica", hub.Errorf(hub.NotFound, "no organisation")},
	} {
		t.Run(c.name, func(t *testing.T) {
			sender := senderCVRs(1)
			calls := 0
			store := &sendersStore{senders: sender, getOrg: func(_ context.Context, cvr string) (hub.Organisation, error) {
				calls++
				if calls == 1 {
					return hub.Organisation{}, c.err
				}
				return hub.Organisation{CVR: cvr, Name: "Demo Kommune"}, nil
			}}
			svc := &viewer.Service{Store: store, Mailboxes: noItems{}, Now: func() time.Time { return t0 }, Log: quiet}
			box := citizenBox(t, svc)
			p, err := svc.List(context.Background(), box, viewer.Query{})
			if err != nil || len(p.Letters) != 1 || p.Letters[0].SenderName != "" {
				t.Fatalf("listing while the name cannot be read: %+v, %v", p, err)
			}
			for range 2 { // the second listing finds the name kept
				p, err = svc.List(context.Background(), box, viewer.Query{})
				if err != nil || len(p.Letters) != 1 || p.Letters[0].SenderName != "Demo Kommune" || calls != 2 {
					t.Fatalf("listing once the name can be read: %+v, %v; %d lookups, want 2", p, err, calls)
				}
			}
		})
	}
}

// quiet drops the warnings of lookups the tests make fail.
var quiet = slog.New(slog.DiscardHandler)
