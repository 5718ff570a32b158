package eventlog_test

import (
	"crypto/ed25519"
	"path/filepath"
	"testing"

	"github.com/posthub/posthub/eventlog"
)

// TestACheckpointMovedByRenumberingIsCaught: someone with write access to
// the database deletes entry 5, renumbers every later entry down by one and
// recomputes every hash, keeping the signed checkpoint entries as they
// were (their signatures stay valid). Each checkpoint then sat elsewhere
// than right after the entry it vouches for, and VerifyWith, comparing its
// hash only when it did, counted it as vouching and found nothing (found
// by a review). A checkpoint anywhere else is now a rewrite.
func TestACheckpointMovedByRenumberingIsCaught(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openBolt(t, path)
	log := buildChain(t, s, 30, 10) // 30 entries, checkpoints at 11, 22, 33
	if len(log) != 33 {
		t.Fatalf("sealed %d", len(log))
	}
	last := log[len(log)-1].Seq
	s = editBolt(t, s, path, func(raw boltRaw) {
		prev := raw.get(t, 4).Hash
		for k := uint64(5); k < last; k++ {
			ev := raw.get(t, k+1)
			ev.Seq = k
			ev.PrevHash = prev
			ev.Hash = eventlog.Hash(ev)
			prev = ev.Hash
			raw.put(t, k, ev)
		}
		raw.del(t, last)
	})
	r, err := eventlog.VerifyWith(ctx, s, eventlog.VerifyOptions{PublicKey: testKey.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Problem == nil {
		t.Fatalf("entry 5 deleted and the rest renumbered and rehashed: Verify with the public key found nothing "+
			"(entries %d..%d, %d checkpoints counted as vouching, last %d, anchored %v)", r.First, r.Last, r.Checkpoints, r.LastCheckpoint, r.Anchored)
	}
	t.Logf("detected: %v", r.Problem)
}
