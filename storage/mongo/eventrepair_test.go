package mongo_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/storage/mongo"
)

// cutOff is a store whose instance dies right after a letter's commit:
// the message is stored, its events are not.
type cutOff struct{ *mongo.Store }

func (c cutOff) PutMessageWith(ctx context.Context, m hub.Message, ds []hub.Delivery, r hub.Receipt, evs []hub.Event, cs []hub.Counter) error {
	return c.Store.PutMessageCutOff(ctx, m, ds, r, evs, cs)
}

// submitLetter submits a letter to citizen 0101701234 through in and
// returns its UUID.
func submitLetter(t *testing.T, in *hub.Ingest, i int) string {
	t.Helper()
	uuid := fmt.Sprintf("7d1f3c2a-0000-4000-8000-%012d", i)
	body := []byte("<memo:Message>" + uuid + "</memo:Message>")
	sum := sha256.Sum256(body)
	sys := hub.System{ID: "sender", OrgCVR: "11111111", Role: hub.SenderSystem, Active: true}
	_, created, err := in.Submit(context.Background(), hub.Submission{System: sys, Body: body, Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]),
		Mode: hub.ModeAutomatic, Letter: hub.Letter{UUID: uuid, MessageType: "DIGITALPOST", SenderID: "11111111",
			RecipientID: "0101701234", RecipientType: "CPR", Size: int64(len(body))}})
	if err != nil || !created {
		t.Fatalf("submit %s: created %v, %v", uuid, created, err)
	}
	return uuid
}

// eventIDs returns the IDs of the pending and the sealed events, each as
// often as it is stored.
func eventIDs(t *testing.T, s *mongo.Store) (pending, sealed []string) {
	t.Helper()
	ctx := context.Background()
	evs, err := s.PendingEvents(ctx, 10000)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		pending = append(pending, ev.ID)
	}
	if err := s.ScanEvents(ctx, 0, func(ev hub.Event) error { sealed = append(sealed, ev.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(pending)
	sort.Strings(sealed)
	return pending, sealed
}

// sent is the number of letters counted as sent by 11111111.
func sent(t *testing.T, s *mongo.Store) int64 {
	t.Helper()
	cs, err := s.ReadCounters(context.Background(), hub.CounterQuery{Org: "11111111"})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, c := range cs {
		if c.Key.Direction == "SENT" {
			n += c.Count
		}
	}
	return n
}

// TestRepairAppendsTheEventsACrashAfterTheCommitLost: letters whose
// instance died between the commit and the events get their first events
// and their counters from Repair, events under the IDs their acceptance
// gave them, each once: two instances repairing at once, and a repair that
// looks at them again after the events were sealed and the counters
// folded, add nothing; the event log verifies.
func TestRepairAppendsTheEventsACrashAfterTheCommitLost(t *testing.T) {
	uri, db := testservers.FerretDB(t), testservers.DatabaseName(t)
	a := openConfig(t, mongo.Config{URI: uri, Database: db, Instance: "a"})
	b := openConfig(t, mongo.Config{URI: uri, Database: db, Instance: "b"})
	ctx := context.Background()
	if err := a.PutContacts(ctx, []hub.Contact{{ID: "0101701234", Status: hub.Registered}}); err != nil {
		t.Fatal(err)
	}
	crashing := &hub.Ingest{Store: cutOff{a}, Router: &hub.Router{Store: a}, InlineMax: 1 << 20, Events: hub.StoreEvents{Store: a}}
	healthy := &hub.Ingest{Store: a, Router: &hub.Router{Store: a}, InlineMax: 1 << 20, Events: hub.StoreEvents{Store: a}}
	var lost []string
	for i := 0; i < 3; i++ {
		lost = append(lost, submitLetter(t, crashing, i))
	}
	kept := submitLetter(t, healthy, 3)

	// What the acceptance gave each letter: its three first events (a
	// letter to a citizen's mailbox), their IDs derived from the message.
	idsOf := func(uuid string) []string {
		m, err := a.GetMessage(ctx, uuid)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, tag := range []string{"MEMO_SEND_RECEIVED", "MEMO_SEND_VALIDATED", "MEMO_SEND_READY_FOR_FETCH"} {
			out = append(out, fmt.Sprintf("memo:%s:%d:%s:0", uuid, m.Received.UnixMilli(), tag))
		}
		return out
	}
	var want []string
	for _, u := range append(append([]string(nil), lost...), kept) {
		want = append(want, idsOf(u)...)
	}
	sort.Strings(want)
	keptIDs := idsOf(kept)
	sort.Strings(keptIDs)
	pending, _ := eventIDs(t, a)
	if fmt.Sprint(pending) != fmt.Sprint(keptIDs) {
		t.Fatalf("before the repair: pending %v, want only the healthy letter's %v", pending, keptIDs)
	}

	if n := sent(t, a); n != 1 {
		t.Fatalf("before the repair: %d letters counted, want the healthy one", n)
	}

	// Repair now leaves them: their PutMessageWith could still be writing.
	if err := a.Repair(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if p, _ := eventIDs(t, a); fmt.Sprint(p) != fmt.Sprint(keptIDs) {
		t.Fatalf("a repair within the pending grace appended events: %v", p)
	}

	// Past the grace, two instances repair at once.
	later := time.Now().Add(11 * time.Minute)
	var wg sync.WaitGroup
	repaired := make([]int, 2)
	errs := make([]error, 2)
	for i, s := range []*mongo.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			repaired[i], errs[i] = s.RepairEventsAt(ctx, later)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("repair %d: %v", i, err)
		}
	}
	// One of them holds the repair lock; the other may follow it and
	// find nothing left to do.
	if repaired[0]+repaired[1] != len(lost) {
		t.Fatalf("repairs appended the events of %v letters, want %d", repaired, len(lost))
	}
	pending, _ = eventIDs(t, a)
	if fmt.Sprint(pending) != fmt.Sprint(want) {
		t.Fatalf("after the repair: pending\n%v\nwant each of\n%v\nonce", pending, want)
	}
	if n := sent(t, a); n != 4 {
		t.Fatalf("after the repair: %d letters counted, want 4", n)
	}
	if err := a.ResetEventRepairCursor(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := a.RepairEventsAt(ctx, later); err != nil || n != 0 {
		t.Fatalf("repair of pending events: %d letters, %v; want 0", n, err)
	}
	evs, err := a.PendingEvents(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.MessageUUID == "" || ev.Time.IsZero() || len(ev.Orgs) == 0 || ev.SystemID != "sender" {
			t.Fatalf("restored event %+v lacks what its acceptance recorded", ev)
		}
	}

	// Sealed, they verify; folded, they count once; looked at again,
	// nothing is added.
	if _, err := a.CompactCounters(ctx, later); err != nil {
		t.Fatal(err)
	}
	sealer := eventlog.NewSealer(a, eventlog.SealerOptions{Holder: "test"})
	for {
		n, err := sealer.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	for _, s := range []*mongo.Store{a, b} {
		if err := s.ResetEventRepairCursor(ctx); err != nil {
			t.Fatal(err)
		}
		n, err := s.RepairEventsAt(ctx, later)
		if err != nil || n != 0 {
			t.Fatalf("repair of sealed events: %d letters, %v; want 0", n, err)
		}
	}
	pending, sealed := eventIDs(t, a)
	if len(pending) != 0 || fmt.Sprint(sealed) != fmt.Sprint(want) {
		t.Fatalf("after sealing and a second repair: pending %v, sealed\n%v\nwant each of\n%v\nonce", pending, sealed, want)
	}
	if n := sent(t, a); n != 4 {
		t.Fatalf("after folding and a second repair: %d letters counted, want 4", n)
	}
	rep, err := eventlog.Verify(ctx, a, 0)
	if err != nil || !rep.OK() {
		t.Fatalf("eventlog verify: %+v, %v", rep, err)
	}
}

// TestRepairOfEventsIsBounded: a Repair looks at no more than
// EventRepairMax letters and goes on where the last one stopped; a letter
// older than EventRepairWindow is not looked at.
func TestRepairOfEventsIsBounded(t *testing.T) {
	uri, db := testservers.FerretDB(t), testservers.DatabaseName(t)
	s := openConfig(t, mongo.Config{URI: uri, Database: db, EventRepairMax: 2, EventRepairWindow: time.Hour})
	ctx := context.Background()
	if err := s.PutContacts(ctx, []hub.Contact{{ID: "0101701234", Status: hub.Registered}}); err != nil {
		t.Fatal(err)
	}
	crashing := &hub.Ingest{Store: cutOff{s}, Router: &hub.Router{Store: s}, InlineMax: 1 << 20, Events: hub.StoreEvents{Store: s}}
	for i := 0; i < 3; i++ {
		submitLetter(t, crashing, i)
	}
	// An hour and a half on, the letters are older than the window.
	if n, err := s.RepairEventsAt(ctx, time.Now().Add(90*time.Minute)); err != nil || n != 0 {
		t.Fatalf("repair beyond the window: %d letters, %v; want 0", n, err)
	}
	if err := s.ResetEventRepairCursor(ctx); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(11 * time.Minute)
	for i, want := range []int{2, 1, 0} {
		if n, err := s.RepairEventsAt(ctx, later); err != nil || n != want {
			t.Fatalf("repair %d: %d letters, %v; want %d", i, n, err, want)
		}
	}
	if p, _ := eventIDs(t, s); len(p) != 9 {
		t.Fatalf("%d pending events, want 9 (3 letters)", len(p))
	}
}
