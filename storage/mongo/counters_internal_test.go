package mongo

import (
	"testing"

	"github.com/posthub/posthub/hub"
)

// TestAStaleFoldIsNotCountedAgain: a compactor that lost its lock and
// paused across three compactions re-inserts its fold "f|g|1" after fold 1
// was consumed by fold 2, fold 2 by fold 3, and both deleted: no Folded
// list names fold 1 any more, and it used to be counted beside fold 3,
// which holds its counts already (a review reproduced it with a paused
// instance: 4 counted instead of 3). Only a group's highest fold counts.
func TestAStaleFoldIsNotCountedAgain(t *testing.T) {
	k := hub.CounterKey{Org: "12345678", Day: "2026-12-05", MessageType: "DIGITALPOST", Direction: "SENT"}
	g := counterGroup(k)
	item := func(n int64) []counterItem { return []counterItem{{G: g, O: k.Org, D: k.Day, K: k, C: n}} }
	stale := counterDoc{ID: "f|" + g + "|0000000000000001", Kind: "f", G: g, E: 1, Items: item(1), Folded: []string{"d|1"}}
	newest := counterDoc{ID: "f|" + g + "|0000000000000003", Kind: "f", G: g, E: 3, Items: item(3), Folded: []string{"f|" + g + "|0000000000000002", "d|3"}}
	late := counterDoc{ID: "d|4", Kind: "d", Items: item(1)}
	sum := foldSum([]counterDoc{stale, newest}, []counterDoc{late}, func(counterItem) bool { return true })
	if c := sum[k]; c == nil || c.Count != 4 {
		t.Fatalf("counted %+v, want 4 (fold 3 and the delta after it; not fold 1 again)", c)
	}
}
