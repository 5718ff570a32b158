package bolt

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
)

// TestRetentionOfALongPrefixIsNotStoppedByTheQueryBounds: with a signing
// key, the sealer's retention looks up the first entry it keeps before it
// seals its signed record. Through QueryEvents (From: cutoff, Limit 1),
// bounded like any query, a first retention run on a long-kept log (over
// 200,000 entries newer than the cutoff and 2,000,000 older) was refused
// (event.query.too.wide) and deleted nothing, every hour, for ever (found
// by a review of the change). It scans instead, as far as it will delete.
// The bounds are lowered here.
func TestRetentionOfALongPrefixIsNotStoppedByTheQueryBounds(t *testing.T) {
	oldScan, oldCand := maxEventScan, maxTimeCandidates
	maxEventScan, maxTimeCandidates = 50, 10
	t.Cleanup(func() { maxEventScan, maxTimeCandidates = oldScan, oldCand })
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "posthub.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	_, key, _ := ed25519.GenerateKey(nil)
	t0 := time.Now().Add(-time.Hour)
	l := eventlog.New(s, eventlog.Options{})
	for i := 0; i < 100; i++ {
		if err := l.Emit(ctx, hub.Event{Time: t0.Add(time.Duration(i) * time.Second), Tag: "MEMO_SEND_RECEIVED", Actor: "a",
			MessageUUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	seal := eventlog.NewSealer(s, eventlog.SealerOptions{Holder: "h", Key: key, CheckpointEvery: 95, CheckpointInterval: 24 * time.Hour,
		Now: func() time.Time { return t0.Add(95 * time.Second) }})
	for {
		n, err := seal.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	// Keep the last 20 entries (more than maxTimeCandidates newer than the
	// cutoff, more than maxEventScan older).
	cutoff := t0.Add(80 * time.Second)
	if _, err := s.QueryEvents(ctx, hub.EventQuery{From: cutoff, Limit: 1}); !hub.Is(err, hub.Invalid) {
		t.Fatalf("setup: the query bounds do not refuse the look-up: %v", err)
	}
	sl := eventlog.NewSealer(s, eventlog.SealerOptions{Holder: "h", Key: key, CheckpointEvery: 95, CheckpointInterval: 24 * time.Hour,
		Retention: time.Since(cutoff)})
	if _, err := sl.Step(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := s.QueryEvents(ctx, hub.EventQuery{AfterSeq: 0, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if first[0].Seq <= 80 {
		t.Errorf("retention past entry 80 of 100 deleted nothing (first entry still seq 1)")
	}
}
