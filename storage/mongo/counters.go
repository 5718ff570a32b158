package mongo

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/posthub/posthub/hub"
)

// Counters are never updated in place ($inc loses increments on FerretDB).
// AddCounters inserts one delta document per call (one document, so a call
// counts entirely or not at all). A compactor holding the counter lock
// folds deltas into fold documents, one chain per group (organisation and
// day):
//
//   - a fold document of group g has epoch e, unique _id "f|g|e"; the
//     compactor inserts epoch max+1, so two compactors (a lock holder that
//     lost its lock without noticing, say) cannot both fold g;
//   - it lists in Folded the ids of every document it consumed (the
//     group's older fold documents and the deltas with items of g);
//   - a reader skips, for group g, every document listed in some fold
//     document of g, and every fold below g's highest epoch (foldSum); so
//     between the fold insert and the deletion of what it consumed,
//     nothing counts twice, and after a crash there the next compaction
//     consumes the leftovers again;
//   - a reader reads the fold documents, then the deltas, then the fold
//     documents again, and retries when they changed: a compaction
//     finishing in between could otherwise hide deltas it deleted.
//
// Sums are computed in Go (FerretDB's $group $sum is not to be trusted).
type counterItem struct {
	G string         `bson:"g"`
	O string         `bson:"o"`
	D string         `bson:"d"`
	K hub.CounterKey `bson:"k"`
	C int64          `bson:"c"`
	B int64          `bson:"b"`
}

type counterDoc struct {
	ID     string        `bson:"_id"`
	Kind   string        `bson:"kind"` // "d" delta, "f" fold, "t" tombstone of a letter's delta
	Items  []counterItem `bson:"items"`
	G      string        `bson:"g,omitempty"`
	E      int64         `bson:"e,omitempty"`
	Folded []string      `bson:"folded,omitempty"`
	// At is when a letter's delta was written (letterDelta deltas only),
	// for the expiry of its tombstone.
	At *time.Time `bson:"at,omitempty"`
}

// A letter's delta (the counters PutMessageWith adds) has the _id
// letterDelta(UUID, tx) of the commit that carries it (msgDoc.Ct), so that
// the accept path and Repair's event step (eventrepair.go), which adds it
// should a crash have cut the accept path short, write it once between
// them: the second insert meets the first. The compactor does not delete
// a folded letter's delta but turns it into a tombstone (kind "t", no
// items, which no reader counts) that keeps its _id taken for
// letterTombstones × EventRepairWindow, longer than the event step ever
// looks back: so a delta folded away can never be added again.
func letterDelta(uuid, tx string) string { return "d|m|" + uuid + "|" + tx }

const letterTombstones = 2

func isLetterDelta(id string) bool { return strings.HasPrefix(id, "d|m|") }

const counterLock = "posthub-counter-compactor"

func counterGroup(k hub.CounterKey) string { return k.Org + "|" + k.Day }

func (s *Store) AddCounters(ctx context.Context, deltas []hub.Counter) error {
	if len(deltas) == 0 {
		return nil
	}
	_, err := s.counters.InsertOne(ctx, deltaDoc("d|"+randomID(), nil, deltas))
	return translate(err, "add counters")
}

func deltaDoc(id string, at *time.Time, deltas []hub.Counter) counterDoc {
	doc := counterDoc{ID: id, Kind: "d", At: at}
	for _, d := range deltas {
		doc.Items = append(doc.Items, counterItem{G: counterGroup(d.Key), O: d.Key.Org, D: d.Key.Day, K: d.Key, C: d.Count, B: d.Bytes})
	}
	return doc
}

// addLetterCounters adds a letter's delta under letterDelta(uuid, tx); a
// delta or tombstone of that _id means it is counted already.
func (s *Store) addLetterCounters(ctx context.Context, uuid, tx string, at time.Time, deltas []hub.Counter) error {
	if len(deltas) == 0 {
		return nil
	}
	_, err := s.counters.InsertOne(ctx, deltaDoc(letterDelta(uuid, tx), &at, deltas))
	if isDup(err) {
		return nil
	}
	return translate(err, "add counters of message %s", uuid)
}

// counterSnapshot reads fold and delta documents consistently (see above).
func (s *Store) counterSnapshot(ctx context.Context, f bson.M) (folds, deltas []counterDoc, err error) {
	ff, df := bson.M{"kind": "f"}, bson.M{"kind": "d"}
	for k, v := range f {
		ff[k], df[k] = v, v
	}
	for try := 0; try < 50; try++ {
		f0, err := findAll[counterDoc](ctx, s.counters, ff, options.Find().SetSort(sortBy("_id")))
		if err != nil {
			return nil, nil, err
		}
		ds, err := findAll[counterDoc](ctx, s.counters, df)
		if err != nil {
			return nil, nil, err
		}
		f1, err := findAll[counterDoc](ctx, s.counters, ff, options.Find().SetSort(sortBy("_id")).SetProjection(bson.M{"_id": 1}))
		if err != nil {
			return nil, nil, err
		}
		same := len(f0) == len(f1)
		for i := 0; same && i < len(f0); i++ {
			same = f0[i].ID == f1[i].ID
		}
		if same {
			return f0, ds, nil
		}
		time.Sleep(time.Duration(try+1) * 5 * time.Millisecond)
	}
	return nil, nil, hub.Errorf(hub.Unavailable, "counters keep changing under compaction")
}

// foldSum adds up the documents as a reader sees them, for items ok accepts.
// Of a group's fold documents only the one of the highest epoch counts: it
// consumed every fold of the group there was when its compactor read them,
// all of lower epochs. A fold of a lower epoch seen beside it is one it
// consumed (and lists), or one a compactor that lost its lock re-inserted
// late under the _id of a fold consumed and deleted since (which no
// Folded list names any more): its counts are in the newer fold already,
// since its compactor read before the newer one's did.
func foldSum(folds, deltas []counterDoc, ok func(counterItem) bool) map[hub.CounterKey]*hub.Counter {
	top := map[string]int64{}
	for _, f := range folds {
		top[f.G] = max(top[f.G], f.E)
	}
	skip := map[string]map[string]bool{}
	for _, f := range folds {
		if skip[f.G] == nil {
			skip[f.G] = map[string]bool{}
		}
		for _, id := range f.Folded {
			skip[f.G][id] = true
		}
	}
	sum := map[hub.CounterKey]*hub.Counter{}
	add := func(it counterItem) {
		c := sum[it.K]
		if c == nil {
			c = &hub.Counter{Key: it.K}
			sum[it.K] = c
		}
		c.Count += it.C
		c.Bytes += it.B
	}
	for _, f := range folds {
		if skip[f.G][f.ID] || f.E < top[f.G] {
			continue
		}
		for _, it := range f.Items {
			if ok(it) {
				add(it)
			}
		}
	}
	for _, d := range deltas {
		for _, it := range d.Items {
			if ok(it) && !skip[it.G][d.ID] {
				add(it)
			}
		}
	}
	return sum
}

func (s *Store) ReadCounters(ctx context.Context, q hub.CounterQuery) ([]hub.Counter, error) {
	f := bson.M{}
	if q.Org != "" {
		f["items.o"] = q.Org
	}
	days := bson.M{}
	if q.FromDay != "" {
		days["$gte"] = q.FromDay
	}
	if q.ToDay != "" {
		days["$lte"] = q.ToDay
	}
	if len(days) > 0 {
		f["items.d"] = days
	}
	folds, deltas, err := s.counterSnapshot(ctx, f)
	if err != nil {
		return nil, err
	}
	sum := foldSum(folds, deltas, func(it counterItem) bool {
		return (q.Org == "" || it.O == q.Org) && (q.FromDay == "" || it.D >= q.FromDay) && (q.ToDay == "" || it.D <= q.ToDay)
	})
	out := make([]hub.Counter, 0, len(sum))
	for _, c := range sum {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return counterKeyString(out[i].Key) < counterKeyString(out[j].Key) })
	return out, nil
}

func counterKeyString(k hub.CounterKey) string {
	return strings.Join([]string{k.Org, k.Day, k.MessageType, k.Channel, k.SystemID, k.Direction, k.SizeBucket}, "\x1f")
}

// CompactCounters folds the delta documents into per-group fold documents
// if this instance gets the compactor lock. Repair calls it; it is safe to
// call at any time from any instance. It returns the number of groups
// folded.
func (s *Store) CompactCounters(ctx context.Context, now time.Time) (int, error) {
	ok, err := s.AcquireLock(ctx, counterLock, s.instance, 5*time.Minute, now)
	if err != nil || !ok {
		return 0, err
	}
	defer func() { _ = s.ReleaseLock(context.WithoutCancel(ctx), counterLock, s.instance) }()
	folds, deltas, err := s.counterSnapshot(ctx, bson.M{})
	if err != nil {
		return 0, err
	}
	foldsOf := map[string][]counterDoc{}
	for _, f := range folds {
		foldsOf[f.G] = append(foldsOf[f.G], f)
	}
	deltasOf := map[string][]string{}
	for _, d := range deltas {
		seen := map[string]bool{}
		for _, it := range d.Items {
			if !seen[it.G] {
				seen[it.G] = true
				deltasOf[it.G] = append(deltasOf[it.G], d.ID)
			}
		}
	}
	groups := map[string]bool{}
	for g := range deltasOf {
		groups[g] = true
	}
	for g, fs := range foldsOf {
		if len(fs) > 1 {
			groups[g] = true
		}
	}
	done := map[string]bool{}
	var stale []string
	for _, g := range sortedKeys(groups) {
		fs := foldsOf[g]
		var epoch int64
		consumed := append([]string(nil), deltasOf[g]...)
		for _, f := range fs {
			if f.E > epoch {
				epoch = f.E
			}
			consumed = append(consumed, f.ID)
		}
		sum := foldSum(fs, deltas, func(it counterItem) bool { return it.G == g })
		doc := counterDoc{ID: fmt.Sprintf("f|%s|%016d", g, epoch+1), Kind: "f", G: g, E: epoch + 1, Folded: consumed}
		for _, k := range sortedCounterKeys(sum) {
			c := sum[k]
			doc.Items = append(doc.Items, counterItem{G: g, O: k.Org, D: k.Day, K: k, C: c.Count, B: c.Bytes})
		}
		if len(doc.Items) == 0 {
			continue
		}
		if _, err := s.counters.InsertOne(ctx, doc); err != nil {
			if isDup(err) {
				break // another compactor is at work on this group; stop
			}
			return len(done), translate(err, "fold counters")
		}
		done[g] = true
		for _, f := range fs {
			stale = append(stale, f.ID)
		}
	}
	for _, d := range deltas {
		all := true
		for _, it := range d.Items {
			all = all && done[it.G]
		}
		if all {
			stale = append(stale, d.ID)
		}
	}
	var gone, tomb []string
	for _, id := range stale {
		if isLetterDelta(id) {
			tomb = append(tomb, id)
		} else {
			gone = append(gone, id)
		}
	}
	err = inSlices(gone, func(ids []string) error {
		_, err := s.counters.DeleteMany(ctx, bson.M{"_id": bson.M{"$in": ids}})
		return translate(err, "remove folded counters")
	})
	if err == nil {
		err = inSlices(tomb, func(ids []string) error {
			_, err := s.counters.UpdateMany(ctx, bson.M{"_id": bson.M{"$in": ids}, "kind": "d"},
				bson.M{"$set": bson.M{"kind": "t"}, "$unset": bson.M{"items": ""}})
			return translate(err, "leave tombstones of folded letter counters")
		})
	}
	if err == nil {
		_, err = s.counters.DeleteMany(ctx, bson.M{"kind": "t", "at": bson.M{"$lt": time.Now().Add(-letterTombstones * s.eventRepairWindow)}})
		err = translate(err, "remove expired counter tombstones")
	}
	return len(done), err
}

func sortedCounterKeys(m map[hub.CounterKey]*hub.Counter) []hub.CounterKey {
	out := make([]hub.CounterKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return counterKeyString(out[i]) < counterKeyString(out[j]) })
	return out
}
