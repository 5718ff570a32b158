package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/retrieval/client"
)

// receiverWorld is one authority with the five receiver systems it may
// connect (four for authority post, the first the default, and one for CVR
// post), contact points routing to the non-default ones, and a sender
// organisation.
type receiverWorld struct {
	sender   string            // sender system token
	systems  []string          // receiver system ids; [0] default, [4] CVR post
	tokens   map[string]string // system id → token
	points   []string          // contact point i routes to systems[i+1]
	versions map[string]string // system id → MeMo version it wants
}

const (
	rwAuthority = "51515151"
	rwSender    = "52525252"
)

// setupReceivers registers the world through base's API with the operator
// token.
func setupReceivers(t *testing.T, base, operator string) receiverWorld {
	t.Helper()
	call := func(method, path string, body string, want int) []byte {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Basic "+operator)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return b
	}
	call("POST", "/apis/v1/organisations/", `{"cvr":"`+rwAuthority+`","name":"Kommune","kind":"AUTHORITY","setup":"CONTACTABLE"}`, 201)
	call("POST", "/apis/v1/organisations/", `{"cvr":"`+rwSender+`","name":"Styrelse","kind":"AUTHORITY","setup":"MAILBOX_ONLY"}`, 201)
	var w receiverWorld
	w.tokens, w.versions = map[string]string{}, map[string]string{}
	_, w.sender = registerSystem(t, call, rwSender, `{"name":"sender","role":"SENDER"}`)
	for i, spec := range []string{
		`{"name":"default","role":"RECIPIENT","memoVersion":"1.2"}`,
		`{"name":"byggesag","role":"RECIPIENT","memoVersion":"1.2"}`,
		`{"name":"skole","role":"RECIPIENT","memoVersion":"1.1"}`,
		`{"name":"sundhed","role":"RECIPIENT","memoVersion":"1.2"}`,
		`{"name":"cvr","role":"RECIPIENT","mailbox":"CVR_POST","memoVersion":"1.2"}`,
	} {
		id, tok := registerSystem(t, call, rwAuthority, spec)
		w.systems = append(w.systems, id)
		w.tokens[id] = tok
		w.versions[id] = map[bool]string{true: "1.1", false: "1.2"}[i == 2]
	}
	for i := 1; i <= 3; i++ {
		b := call("POST", "/apis/v1/organisations/"+rwAuthority+"/contact-points/",
			fmt.Sprintf(`{"name":"cp%d","systemId":%q,"active":true,"visible":true}`, i, w.systems[i]), 201)
		var cp struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(b, &cp); err != nil {
			t.Fatal(err)
		}
		w.points = append(w.points, cp.ID)
	}
	return w
}

func registerSystem(t *testing.T, call func(string, string, string, int) []byte, org, spec string) (id, token string) {
	t.Helper()
	var st struct {
		System   hub.System `json:"system"`
		APIToken string     `json:"apiToken"`
	}
	if err := json.Unmarshal(call("POST", "/apis/v1/organisations/"+org+"/systems/", spec, 201), &st); err != nil {
		t.Fatal(err)
	}
	return st.System.ID, st.APIToken
}

// designatedLetter builds a small MeMo 1.2 for the authority that the
// router designates to w.systems[target].
func (w receiverWorld) designatedLetter(target int) (string, []byte) {
	l := memo.Letter{From: rwSender, To: rwAuthority, Main: memo.PDF("a.pdf", []byte("%PDF-1.4 tiny"))}
	switch target {
	case 1, 2, 3:
		l.ContactPointID = w.points[target-1]
	case 4:
		l.PostType = "VIRKSOMHEDSPOST"
	}
	m := memo.NewLetter(l)
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		panic(err)
	}
	return m.MessageHeader.MessageUUID, b.Bytes()
}

// fetchLog records every fetch of every message, to check leases never
// overlap and every message ends in its designated system.
type fetchLog struct {
	mu      sync.Mutex
	fetches map[string][]fetchRecord
	acked   map[string]string // uuid → system that acknowledged
}

type fetchRecord struct {
	system  string
	at      time.Time
	expires time.Time
	lease   string
}

func (l *fetchLog) add(uuid string, r fetchRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fetches[uuid] = append(l.fetches[uuid], r)
}

// pollSystems runs pollers for each system until stop is closed and the
// log holds want acknowledged messages (or ctx ends), long-polling with
// wait. A poller abandons about one fetch in abandonEvery (no ack: the
// lease must expire).
func pollSystems(ctx context.Context, t *testing.T, bases []string, w receiverWorld, perSystem, abandonEvery int, wait time.Duration, log *fetchLog, acked *atomic.Int64, done <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for si, sys := range w.systems {
		for p := 0; p < perSystem; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				base := bases[(si+p)%len(bases)]
				c := client.New(base, w.tokens[sys], nil)
				rnd := rand.New(rand.NewPCG(uint64(si), uint64(p)))
				for ctx.Err() == nil {
					m, err := c.Next(ctx, wait)
					if err != nil {
						if ctx.Err() == nil {
							t.Errorf("system %d: next: %v", si, err)
						}
						return
					}
					if m == nil {
						select {
						case <-done:
							return
						default:
							continue
						}
					}
					body, err := io.ReadAll(m.Body)
					m.Close()
					if err != nil {
						t.Errorf("read %s: %v", m.UUID, err)
						return
					}
					log.add(m.UUID, fetchRecord{system: sys, at: time.Now(), expires: m.LeaseExpires, lease: m.Lease})
					if _, err := memo.ParseBytes(body); err != nil || m.Version != w.versions[sys] {
						t.Errorf("message %s to system %d: version %s (want %s), parse: %v", m.UUID, si, m.Version, w.versions[sys], err)
					}
					if abandonEvery > 0 && rnd.IntN(abandonEvery) == 0 {
						continue // a poller that crashed after fetching
					}
					if err := c.Ack(ctx, m.UUID); err != nil {
						if ctx.Err() == nil {
							t.Errorf("ack %s: %v", m.UUID, err)
						}
						return
					}
					log.mu.Lock()
					if prev, ok := log.acked[m.UUID]; !ok {
						log.acked[m.UUID] = sys
						acked.Add(1)
					} else if prev != sys {
						t.Errorf("message %s acknowledged by two systems", m.UUID)
					}
					log.mu.Unlock()
				}
			}()
		}
	}
	return &wg
}

// sendConcurrently sends n letters from senders goroutines, spread over
// the five designations, and returns uuid → designated system index.
func sendConcurrently(t *testing.T, bases []string, w receiverWorld, senders, n int) map[string]int {
	var mu sync.Mutex
	want := map[string]int{}
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := bases[s%len(bases)]
			for i := s; i < n; i += senders {
				target := i % 5
				id, body := w.designatedLetter(target)
				req, _ := http.NewRequest("POST", base+"/apis/v1/memos/?memo-message-uuid="+id, bytes.NewReader(body))
				req.Header.Set("Authorization", "Basic "+w.sender)
				req.Header.Set("Content-Type", "application/xml")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Errorf("send: %v", err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 201 {
					t.Errorf("send: %d %s", resp.StatusCode, b)
					return
				}
				mu.Lock()
				want[id] = target
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return want
}

// checkFetches asserts that every sent message was acknowledged by its
// designated system, that no message was fetched by any other system, and
// that no two leases of one message overlapped.
func checkFetches(t *testing.T, w receiverWorld, want map[string]int, log *fetchLog, ttl time.Duration) {
	t.Helper()
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.acked) != len(want) {
		t.Errorf("%d messages acknowledged, %d sent", len(log.acked), len(want))
	}
	refetched := 0
	for id, target := range want {
		if got := log.acked[id]; got != w.systems[target] {
			t.Errorf("message %s acknowledged by %q, designated %s", id, got, w.systems[target])
		}
		fs := log.fetches[id]
		leases := map[string]bool{}
		for _, f := range fs {
			if f.system != w.systems[target] {
				t.Errorf("message %s fetched by system %s, designated %s", id, f.system, w.systems[target])
			}
			if leases[f.lease] {
				t.Errorf("message %s: lease %s handed out twice", id, f.lease)
			}
			leases[f.lease] = true
		}
		leasesOverlap(t, id, fs, ttl)
		refetched += len(fs) - 1
	}
	t.Logf("%d messages, %d fetched again after an abandoned lease", len(want), refetched)
}

// TestRetrievalFiveSystemsPollWhileSendersSend: five receiver systems of
// one authority poll concurrently (two pollers each, some fetches
// abandoned) while three senders keep sending; every message ends in
// exactly its designated system, no lease overlaps, nothing is left.
func TestRetrievalFiveSystemsPollWhileSendersSend(t *testing.T) {
	h := startHub(t, "-lease-ttl", "1500ms", "-max-attempts", "100")
	w := setupReceivers(t, h.base, h.operator)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := &fetchLog{fetches: map[string][]fetchRecord{}, acked: map[string]string{}}
	var acked atomic.Int64
	done := make(chan struct{})
	n := 300
	if testing.Short() {
		n = 100
	}
	pollers := pollSystems(ctx, t, []string{h.base}, w, 2, 25, 300*time.Millisecond, log, &acked, done)
	want := sendConcurrently(t, []string{h.base}, w, 3, n)
	for acked.Load() < int64(len(want)) && ctx.Err() == nil && !t.Failed() {
		time.Sleep(50 * time.Millisecond)
	}
	close(done)
	pollers.Wait()
	checkFetches(t, w, want, log, 1500*time.Millisecond)
	store := h.openStore()
	for _, sys := range w.systems {
		if n, _ := store.CountQueue(context.Background(), hub.SystemQueue(sys)); n != 0 {
			t.Errorf("system %s queue holds %d", sys, n)
		}
	}
	for _, k := range []hub.MailboxKind{hub.AuthorityPost, hub.CVRPost} {
		if n, _ := store.CountQueue(context.Background(), hub.MailboxQueue(rwAuthority, k)); n != 0 {
			t.Errorf("mailbox %s holds %d", k, n)
		}
	}
}

// leasesOverlap fails t if two of a message's leases overlapped. It judges
// by the hub's own lease expiries, each the grant's time plus ttl, in the
// order the hub granted them — not by when the pollers logged their
// fetches, which a poller stalled after its fetch may log late. A lease may
// only be granted once the one before expired (allowing a little for
// rounding).
func leasesOverlap(t *testing.T, id string, fs []fetchRecord, ttl time.Duration) {
	t.Helper()
	byGrant := slices.Clone(fs)
	slices.SortFunc(byGrant, func(a, b fetchRecord) int { return a.expires.Compare(b.expires) })
	for i := 1; i < len(byGrant); i++ {
		if granted := byGrant[i].expires.Add(-ttl); granted.Before(byGrant[i-1].expires.Add(-50 * time.Millisecond)) {
			t.Errorf("message %s: lease %s granted at %s while lease %s lived until %s", id, byGrant[i].lease, granted, byGrant[i-1].lease, byGrant[i-1].expires)
		}
	}
}
