package eventlog_test

import (
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	"github.com/posthub/posthub/eventlog"
)

// TestARecentPrefixRemovedBeyondRetentionIsCaught: deleting the oldest
// entries of the log looked exactly like retention to Verify, even with the
// public key and the exported checkpoints (found by a review: the first 15
// entries of a fresh log deleted, Verify said OK and anchored). With a
// signing key the sealer now seals a signed retention record naming the
// first entry it keeps before it deletes; Verify accepts a log that starts
// there and reports one that starts later.
func TestARecentPrefixRemovedBeyondRetentionIsCaught(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openBolt(t, path)
	buildChain(t, s, 30, 10) // entries at t0+0s … t0+29s, checkpoints every 10
	pub := testKey.Public().(ed25519.PublicKey)

	sl := eventlog.NewSealer(s, eventlog.SealerOptions{Holder: "test", Key: testKey, CheckpointEvery: 10, CheckpointInterval: time.Hour,
		Retention: time.Since(t0.Add(15*time.Second + 500*time.Millisecond))})
	if _, err := sl.Step(ctx); err != nil {
		t.Fatal(err)
	}
	after := scan(t, s)
	first := after[0].Seq
	if first == 1 {
		t.Fatal("retention deleted nothing")
	}
	var recs int
	for _, ev := range after {
		if ev.Tag == string(eventlog.EventLogRetention) {
			rec, err := eventlog.RetentionRecordOf(ev)
			if err != nil || rec.Verify(pub) != nil || rec.FirstKept != first {
				t.Fatalf("retention record %+v (%v), want one keeping seq %d, signed", rec, err, first)
			}
			recs++
		}
	}
	if recs != 1 {
		t.Fatalf("%d retention records sealed, want 1", recs)
	}
	r, err := eventlog.VerifyWith(ctx, s, eventlog.VerifyOptions{PublicKey: pub})
	if err != nil || r.Problem != nil {
		t.Fatalf("the log as retention left it: %+v, %v", r.Problem, err)
	}

	// Someone with the database deletes the next entries too.
	s = editBolt(t, s, path, func(raw boltRaw) {
		for seq := first; seq < first+4; seq++ {
			raw.del(t, seq)
		}
	})
	r, err = eventlog.VerifyWith(ctx, s, eventlog.VerifyOptions{PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	if r.Problem == nil || r.Problem.Kind != eventlog.Removed || r.Problem.Seq != first {
		t.Fatalf("entries %d..%d deleted beyond what retention recorded: %+v, want Removed at seq %d", first, first+3, r.Problem, first)
	}
}
