package eventlog_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
)

type contextT = context.Context

// backend is a store to run a sealer test on: bolt (one store object, as
// bbolt allows one process per file) and FerretDB (each instance its own
// connection).
type backend struct {
	name   string
	events int
	// ttl is a lease about as long as one seal takes there: leases expire
	// mid-batch all the time, yet a holder can finish a seal now and then
	// (a lease shorter than one command would let sealers take it from
	// each other forever).
	ttl    time.Duration
	open   func(t *testing.T) eventStore
	reopen func(t *testing.T) eventStore // another connection to the last opened; nil on bolt
}

func backends(t *testing.T) []*backend {
	bolt := &backend{name: "bolt", events: 3000, ttl: 5 * time.Millisecond, open: func(t *testing.T) eventStore { return openBolt(t, "") }}
	mongo := &backend{name: "ferretdb", events: 400, ttl: time.Second}
	var uri, db string
	mongo.open = func(t *testing.T) eventStore {
		s, u, d := openMongo(t)
		uri, db = u, d
		return s
	}
	mongo.reopen = func(t *testing.T) eventStore { return openMongoDB(t, uri, db) }
	if testing.Short() {
		bolt.events, mongo.events = 600, 200
	}
	return []*backend{bolt, mongo}
}

// hookStore runs before() ahead of the first SealEvents through it and
// counts the seals the store fenced off (Conflict).
type hookStore struct {
	eventStore
	once   sync.Once
	before func()
	fenced *atomic.Int64
	// Every pauseEvery-th seal through it stops for pause first, after its
	// batch was read: a sealer stalled past its lease (a GC pause, a
	// stopped VM).
	pauseEvery int64
	pause      time.Duration
	seals      atomic.Int64
}

func (h *hookStore) SealEvents(c contextT, l hub.SealerLease, evs []hub.Event) (hub.SealerLease, error) {
	if h.before != nil {
		h.once.Do(h.before)
	}
	if h.pauseEvery > 0 && h.seals.Add(1)%h.pauseEvery == 0 {
		time.Sleep(h.pause)
	}
	out, err := h.eventStore.SealEvents(c, l, evs)
	if hub.Is(err, hub.Conflict) && h.fenced != nil {
		h.fenced.Add(1)
	}
	return out, err
}

// A sealer that read a batch, then paused past its lease while another
// took over and sealed, writes nothing when it resumes: its SealEvents is
// fenced off by the lease's epoch, whatever its clock says. On bolt and
// FerretDB.
func TestSealerPausedPastItsLeaseIsFencedOff(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := b.open(t)
			l := eventlog.New(s, eventlog.Options{})
			defer l.Close()
			const total = 30
			for i := 0; i < total; i++ {
				if err := l.Emit(ctx, letterEvent(i, eventlog.MemoSendReceived, "11111111")); err != nil {
					t.Fatal(err)
				}
			}
			var mu sync.Mutex
			now := t0
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
			b2 := eventlog.NewSealer(s, eventlog.SealerOptions{Holder: "B", LockTTL: time.Minute, Now: clock})
			var fenced atomic.Int64
			a := eventlog.NewSealer(&hookStore{eventStore: s, fenced: &fenced, before: func() {
				// A has its lease and its batch; it pauses for two lease
				// lengths, and B takes over and seals everything.
				advance(2 * time.Minute)
				sealAll(t, b2)
			}}, eventlog.SealerOptions{Holder: "A", LockTTL: time.Minute, Batch: 10, Now: clock})
			n, err := a.Step(ctx)
			if err != nil || n != 0 {
				t.Fatalf("A's step after the pause: %d sealed, %v", n, err)
			}
			if fenced.Load() != 1 {
				t.Fatalf("A's seal was not refused (%d fenced)", fenced.Load())
			}
			// A tries again: B's lease is live, A asks and gets nothing.
			if n, err := a.Step(ctx); err != nil || n != 0 {
				t.Fatalf("A's next step: %d sealed, %v", n, err)
			}
			checkOneChain(t, s, total)
		})
	}
}

// Three instances whose sealers stall past their lease on every third seal,
// after reading their batch: the others take the lease over and seal
// meanwhile, mid-batch (that is what lost 40 entries on FerretDB before
// seals were fenced), and the stalled one's seal is refused when it
// resumes. No entry is lost, none sealed twice, and the chain verifies, on
// bolt and FerretDB.
func TestOverlappingSealersLoseNothing(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			total := b.events
			s := b.open(t)
			stores := []eventStore{s, s, s}
			if b.reopen != nil {
				stores = []eventStore{s, b.reopen(t), b.reopen(t)}
			}
			var fenced atomic.Int64
			wrap := func(st eventStore) hub.EventStore {
				return &hookStore{eventStore: st, fenced: &fenced, pauseEvery: 3, pause: 3 * b.ttl}
			}
			runInstancesWrapped(t, stores, wrap, 2, total, eventlog.SealerOptions{Key: testKey, CheckpointEvery: 100,
				LockTTL: b.ttl, Batch: 40, Idle: time.Millisecond, IdleMax: 20 * time.Millisecond})
			checkOneChain(t, s, total)
			t.Logf("%d seals fenced off or refused", fenced.Load())
			if fenced.Load() == 0 {
				t.Fatalf("no stalled seal was refused: the sealers never overlapped")
			}
		})
	}
}
