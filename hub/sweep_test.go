package hub_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

// TestTheSweeperRemovesOnlyUnreferencedOldContent: a submission that may
// have stored its letter keeps its content blob when its commit fails, so
// blobs no message names are left over (and crashes leave more). The
// sweeper removes a blob under msg/<uuid>/ once it is a day old and its
// message is gone or names another key; the content of stored letters, a
// young blob and anything outside msg/ stay.
func TestTheSweeperRemovesOnlyUnreferencedOldContent(t *testing.T) {
	w := newEnvelopeWorld(t, 0)
	ctx := context.Background()
	if err := w.store.PutContacts(ctx, []hub.Contact{{ID: "0101701234", Status: hub.Registered}}); err != nil {
		t.Fatal(err)
	}
	const stored = "0b5c9c1e-6a53-4a4e-9d43-0000000051ee"
	if _, _, err := w.in.Submit(ctx, reviewLetter(w.sys, stored)); err != nil {
		t.Fatal(err)
	}
	m, err := w.store.GetMessage(ctx, stored)
	if err != nil || m.ContentKey == "" {
		t.Fatalf("setup: %+v, %v", m, err)
	}
	put := func(key string) {
		t.Helper()
		if _, err := w.blobs.Put(ctx, key, bytes.NewReader([]byte("x")), 1); err != nil {
			t.Fatal(err)
		}
	}
	orphans := []string{"msg/0b5c9c1e-6a53-4a4e-9d43-00000000dead/abc-t1", "msg/" + stored + "/abc-another-submission"}
	keep := []string{m.ContentKey, "print/" + stored + "/t1"}
	for _, k := range append(orphans, keep[1:]...) {
		put(k)
	}
	now := time.Now()
	sw := &hub.ContentSweeper{Store: w.store, Blobs: w.blobs, MinAge: 24 * time.Hour, Holder: "test", Now: func() time.Time { return now }}
	if n, err := sw.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("a sweep while everything is young: %d, %v", n, err)
	}
	now = now.Add(25 * time.Hour)
	if n, err := sw.Sweep(ctx); err != nil || n != len(orphans) {
		t.Fatalf("a sweep a day later: %d removed, %v; want %d", n, err, len(orphans))
	}
	for _, k := range orphans {
		if _, err := w.blobs.Stat(ctx, k); !hub.Is(err, hub.NotFound) {
			t.Errorf("orphan %s: %v, want removed", k, err)
		}
	}
	for _, k := range keep {
		if _, err := w.blobs.Stat(ctx, k); err != nil {
			t.Errorf("%s: %v, want kept", k, err)
		}
	}
	if _, err := hub.OpenContent(ctx, w.blobs, m); err != nil {
		t.Errorf("the stored letter's content: %v", err)
	}
}
