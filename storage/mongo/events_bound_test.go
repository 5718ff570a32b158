package mongo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/mongo"
)

// TestAnEventQueryThatTakesTooLongIsRefused: a query of the event log that
// does not fill its page within its time bound is refused as bolt refuses
// one that reads too much (event.query.too.wide), not left to scan the
// whole collection (FerretDB uses no index; a filter matching nothing read
// every entry of the organisation, and the page count read 10,000 more).
func TestAnEventQueryThatTakesTooLongIsRefused(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if _, err := s.QueryEvents(ctx, hub.EventQuery{MessageUUID: "none", Limit: 10}); err != nil {
		t.Fatalf("a query within the bound: %v", err)
	}
	mongo.SetEventQueryTime(t, time.Nanosecond)
	_, err := s.QueryEvents(ctx, hub.EventQuery{MessageUUID: "none", Limit: 10})
	var he *hub.Error
	if !hub.Is(err, hub.Invalid) || !errors.As(err, &he) || len(he.Fields) == 0 || he.Fields[0].Code != "event.query.too.wide" {
		t.Fatalf("a query past its time bound: %v, want Invalid event.query.too.wide", err)
	}
}
