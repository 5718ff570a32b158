package mongo_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/storage/storagetest"
)

// TestRepairFreesPlacesAndFillsThemOnce: a place whose record never came
// (its instance died between the two writes) is freed by Repair once
// older than the grace period, and not before; records written before
// places existed are given places by the first Repair, so the bound holds
// for them too.
func TestRepairFreesPlacesAndFillsThemOnce(t *testing.T) {
	uri, db := testservers.FerretDB(t), testservers.DatabaseName(t)
	s := openDB(t, uri, db)
	ctx := context.Background()
	old := hub.RulesLimit.Max
	hub.RulesLimit.Max = 3
	t.Cleanup(func() { hub.RulesLimit.Max = old })
	rule := func(i int) hub.RoutingRule {
		return hub.RoutingRule{ID: fmt.Sprint("r", i), OrgCVR: "12345678", Priority: i, Field: "KLE", Value: "00.*", SystemID: "a", Created: storagetest.T0}
	}
	places := func(want int, when string) {
		t.Helper()
		if n, err := s.RulePlaces(ctx, "12345678"); err != nil || n != want {
			t.Fatalf("%s: %d places (%v), want %d", when, n, err, want)
		}
	}

	if err := s.PutRoutingRule(ctx, rule(0)); err != nil {
		t.Fatal(err)
	}
	if err := s.TakeRulePlace(ctx, "12345678", "never-written"); err != nil {
		t.Fatal(err)
	}
	taken := time.Now()
	if err := s.Repair(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	places(2, "a young place of a record not written, after Repair")

	repairAfterGrace(t, uri, db, taken)
	places(1, "after Repair past the grace period")

	// Records from before places: the first Repair gives them places.
	for i := 1; i < 3; i++ {
		if err := s.PutRoutingRule(ctx, rule(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ForgetPlaces(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Repair(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	places(3, "records from before places, after Repair")
	err := s.PutRoutingRule(ctx, rule(3))
	if !hub.Is(err, hub.Conflict) {
		t.Fatalf("a rule beyond the bound after the places were filled: %v, want Conflict", err)
	}
}
