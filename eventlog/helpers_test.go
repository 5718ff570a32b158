package eventlog_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/bolt"
)

var ctx = context.Background()

// testKey is a fixed checkpoint key, so failures reproduce.
var testKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

// eventStore is what the tests need of a store.
type eventStore interface {
	hub.EventStore
	hub.Locks
}

func openBolt(t testing.TB, path string) *bolt.Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "posthub.db")
	}
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatalf("open bolt: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// letterEvent is a typical ingest event: sender org A sends to recipient
// org B.
func letterEvent(i int, tag eventlog.Tag, orgs ...string) hub.Event {
	return hub.Event{Time: t0.Add(time.Duration(i) * time.Second), Tag: string(tag), Actor: "sys-a", Orgs: orgs,
		SystemID: "sys-a", MessageUUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Party: "12345678",
		Detail: map[string]string{"size": fmt.Sprint(1000 + i), "mode": "AUTOMATIC"}}
}

// buildChain emits n events and seals them (with a checkpoint every
// cpEvery entries when cpEvery > 0), returning the sealed log.
func buildChain(t testing.TB, s eventStore, n int, cpEvery uint64) []hub.Event {
	t.Helper()
	l := eventlog.New(s, eventlog.Options{})
	defer l.Close()
	opts := eventlog.SealerOptions{Holder: "test", Batch: 7}
	if cpEvery > 0 {
		opts.Key, opts.CheckpointEvery, opts.CheckpointInterval = testKey, cpEvery, time.Hour
	}
	sl := eventlog.NewSealer(s, opts)
	for i := 0; i < n; i++ {
		if err := l.Emit(ctx, letterEvent(i, eventlog.MemoSendReceived, "11111111", "22222222")); err != nil {
			t.Fatalf("Emit: %v", err)
		}
	}
	sealAll(t, sl)
	return scan(t, s)
}

// sealAll steps the sealer until nothing is pending.
func sealAll(t testing.TB, sl *eventlog.Sealer) {
	t.Helper()
	for {
		n, err := sl.Step(ctx)
		if err != nil {
			t.Fatalf("seal: %v", err)
		}
		if n == 0 {
			return
		}
	}
}

func scan(t testing.TB, s hub.EventStore) []hub.Event {
	t.Helper()
	var out []hub.Event
	if err := s.ScanEvents(ctx, 0, func(ev hub.Event) error {
		out = append(out, ev)
		return nil
	}); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return out
}

func verifyOK(t testing.TB, s hub.EventStore) eventlog.Report {
	t.Helper()
	r, err := eventlog.Verify(ctx, s, 0)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if r.Problem != nil {
		t.Fatalf("Verify: %v", r.Problem)
	}
	return r
}
