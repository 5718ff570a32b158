package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/bolt"
)

// eventlogData makes a stopped embedded hub's data directory holding a
// sealed log of n entries with checkpoints, signed with the key serve
// would generate there.
func eventlogData(t *testing.T, n int) string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	key, err := eventlog.LoadOrCreateKey(filepath.Join(dir, "eventlog-ed25519.pem"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := bolt.Open(filepath.Join(dir, "posthub.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := eventlog.New(s, eventlog.Options{})
	for i := 0; i < n; i++ {
		if err := l.Emit(ctx, hub.Event{Tag: "MEMO_SEND_RECEIVED", Orgs: []string{"11111111"}, MessageUUID: "m" + string(rune('a'+i%26))}); err != nil {
			t.Fatal(err)
		}
	}
	sl := eventlog.NewSealer(s, eventlog.SealerOptions{Key: key, CheckpointEvery: 5, CheckpointInterval: time.Hour})
	for {
		k, err := sl.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			break
		}
	}
	l.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestEventlogVerifyNamesTheFirstBadSeq(t *testing.T) {
	dir := eventlogData(t, 20)
	code, out, errOut := run(t, "eventlog", "verify", "-data", dir)
	if code != 0 || !strings.HasPrefix(out, "OK: seq 1..24, 24 entries, chained from genesis; 4 checkpoints verified") {
		t.Fatalf("intact log: %d %q %q", code, out, errOut)
	}
	code, cps, _ := run(t, "eventlog", "export-checkpoints", "-data", dir)
	if code != 0 || strings.Count(cps, "\n") != 4 {
		t.Fatalf("export-checkpoints: %d %q", code, cps)
	}
	cpFile := filepath.Join(t.TempDir(), "checkpoints.jsonl")
	if err := os.WriteFile(cpFile, []byte(cps), 0o600); err != nil {
		t.Fatal(err)
	}
	code, export, _ := run(t, "eventlog", "export", "-data", dir)
	exportFile := filepath.Join(t.TempDir(), "log.jsonl")
	if err := os.WriteFile(exportFile, []byte(export), 0o600); err != nil || code != 0 {
		t.Fatal(code, err)
	}

	// Change seq 9 behind the hub's back.
	db, err := bbolt.Open(filepath.Join(dir, "posthub.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		b, k := tx.Bucket([]byte("events")), binary.BigEndian.AppendUint64(nil, 9)
		var ev hub.Event
		if err := json.Unmarshal(b.Get(k), &ev); err != nil {
			return err
		}
		ev.Orgs = []string{"99999999"}
		v, _ := json.Marshal(ev)
		return b.Put(k, v)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	code, out, _ = run(t, "eventlog", "verify", "-data", dir)
	if code != 1 || !strings.Contains(out, "first bad entry seq 9 (changed)") {
		t.Fatalf("tampered log: %d %q", code, out)
	}
	// An outside party with the public key, the exported checkpoints and
	// an export made before the tampering: the export verifies.
	pub := filepath.Join(dir, "eventlog-ed25519.pem.pub")
	code, out, errOut = run(t, "eventlog", "verify-checkpoints", "-public-key", pub, "-checkpoints", cpFile)
	if code != 0 || !strings.Contains(out, "4 checkpoints carry good signatures") {
		t.Fatalf("verify-checkpoints: %d %q %q", code, out, errOut)
	}
	code, out, _ = run(t, "eventlog", "verify", "-file", exportFile, "-public-key", pub, "-checkpoints", cpFile)
	if code != 0 || !strings.Contains(out, "4 checkpoints verified") {
		t.Fatalf("verify of the export: %d %q", code, out)
	}
	code, out, _ = run(t, "eventlog", "verify-checkpoints", "-data", dir, "-public-key", pub, "-checkpoints", cpFile)
	if code != 1 || !strings.Contains(out, "seq 9") {
		t.Fatalf("verify-checkpoints against the tampered log: %d %q", code, out)
	}
	if code, _, _ := run(t, "eventlog", "verify"); code != 2 {
		t.Fatalf("no log named: exit %d, want 2", code)
	}
}
