package eventlog_test

import (
	"testing"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
)

// BatchBytes bounds a batch by the encoded size of its entries as sealed
// (Seq and PrevHash included): a bound of exactly two entries seals two at
// a time, a bound below one entry still seals one, and the chain verifies.
func TestSealerBatchBytesBoundsABatch(t *testing.T) {
	s := openBolt(t, "")
	l := eventlog.New(s, eventlog.Options{})
	defer l.Close()
	var evs []hub.Event
	for i := 0; i < 5; i++ {
		ev := letterEvent(i, eventlog.MemoSendReceived, "11111111", "22222222")
		ev.ID = hub.NewID()
		evs = append(evs, ev)
		if err := l.Emit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	// The first two entries as the sealer will chain them.
	size, prev := 0, eventlog.Genesis
	for i, ev := range evs[:2] {
		ev.Time = eventlog.CanonicalTime(ev.Time)
		ev.Seq, ev.PrevHash = uint64(i+1), prev
		size += len(eventlog.Encode(ev))
		prev = eventlog.Hash(ev)
	}
	sl := eventlog.NewSealer(s, eventlog.SealerOptions{Holder: "test", BatchBytes: size})
	if n, err := sl.Step(ctx); err != nil || n != 2 {
		t.Fatalf("first step sealed %d (%v), want 2", n, err)
	}
	if got := scan(t, s); len(got) != 2 || got[1].Hash != prev {
		t.Fatalf("sealed %d entries, second hash %q, want 2 ending in %q", len(got), got[len(got)-1].Hash, prev)
	}
	one := eventlog.NewSealer(s, eventlog.SealerOptions{Holder: "test", BatchBytes: 1})
	for want := 3; want <= 5; want++ {
		if n, err := one.Step(ctx); err != nil || n != 1 {
			t.Fatalf("step with a bound below one entry sealed %d (%v), want 1", n, err)
		}
	}
	verifyOK(t, s)
}
