package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/storagetest"
)

// TestStoreWithNarrowQueryBounds runs the store contract with the time
// index's walk bounded to three entries, so that every time-range query of
// more goes the other way (the log in seq order, the time as a filter):
// both ways answer the same.
func TestStoreWithNarrowQueryBounds(t *testing.T) {
	defer func(c int) { maxTimeCandidates = c }(maxTimeCandidates)
	maxTimeCandidates = 3
	storagetest.TestStore(t, func(t *testing.T) hub.Store { return openPlain(t) })
}

// TestAQueryThatReadsTooMuchIsRefused: a query whose filter matches almost
// nothing would read the whole log to fill its page; past maxEventScan
// entries it is refused (event.query.too.wide) instead.
func TestAQueryThatReadsTooMuchIsRefused(t *testing.T) {
	defer func(c int) { maxEventScan = c }(maxEventScan)
	maxEventScan = 50
	s := openPlain(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var evs []hub.Event
	for i := range 100 {
		evs = append(evs, hub.Event{ID: fmt.Sprintf("ev-%03d", i), Time: t0.Add(time.Duration(i) * time.Second), Tag: "X", Actor: "a", Orgs: []string{"11111111"}})
	}
	if err := s.AppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	lease, err := s.LeaseSealer(ctx, hub.SealerLease{Holder: "test"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pend, err := s.PendingEvents(ctx, 1000)
	if err != nil || len(pend) != 100 {
		t.Fatalf("pending %d, %v", len(pend), err)
	}
	for i := range pend {
		pend[i].Seq, pend[i].Hash = lease.Seq+1+uint64(i), "h"
	}
	if _, err := s.SealEvents(ctx, lease, pend); err != nil {
		t.Fatal(err)
	}
	if got, err := s.QueryEvents(ctx, hub.EventQuery{Limit: 10}); err != nil || len(got) != 10 {
		t.Fatalf("a query that fills its page early: %d, %v", len(got), err)
	}
	_, err = s.QueryEvents(ctx, hub.EventQuery{Actor: "nobody", Limit: 10})
	var he *hub.Error
	if !errors.As(err, &he) || len(he.Fields) != 1 || he.Fields[0].Code != "event.query.too.wide" {
		t.Fatalf("a query matching nothing in 100 entries with a bound of 50: %v", err)
	}
}

// openPlain opens a store with default options in a test directory.
func openPlain(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "p.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
