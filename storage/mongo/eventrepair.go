package mongo

import (
	"context"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/posthub/posthub/hub"
)

// A letter's first events and its statistics counters are written after
// its commit (PutMessageWith), so an instance that dies in between leaves
// a letter without them. The commit carries them (msgDoc.Ev and Ct):
// repairEvents, a step of Repair, walks the committed messages in commit
// order and writes those of them that are missing, events under the IDs
// the acceptance gave them, counters under the letter's delta _id.
//
//   - It looks only at messages whose PutMessage started more than the
//     pending grace ago (msgDoc.Claimed): a PutMessage commits within half
//     of it or not at all, and its own writes follow at once, so nothing
//     younger is a casualty yet, and nothing older can still commit
//     behind the cursor.
//   - A cursor (the meta document eventRepairID: Claimed and _id of the
//     last message looked at) makes each message looked at once, not once
//     a run; a run looks at no more than Config.EventRepairMax messages and
//     never at one that started more than Config.EventRepairWindow ago (a
//     cursor that fell that far behind, or none, starts there).
//   - Appending is AppendEvents: an ID pending or sealed is skipped, so
//     two instances repairing at once, a repair after the sender's
//     resubmission (hub.Ingest restores them too), or a cursor moved back,
//     add nothing twice. The lock eventRepairLock only spares the work.
//   - Counters are counted exactly once: the letter's delta has one _id,
//     which the accept path and the repair both insert (one wins), and
//     which stays taken, as a tombstone once the compactor folded it, for
//     longer than the window (letterDelta in counters.go). Every instance
//     must therefore have the same EventRepairWindow.
//   - Events older than the event log's retention cutoff are not appended
//     again (DeleteEventsBefore records it): that would put back what
//     retention removed.
const (
	eventRepairID   = "event-repair-cursor"
	eventRepairLock = "posthub-event-repair"
	retentionID     = "event-retention"
	eventRepairPage = 500
)

// repairCursor is the meta document of repairEvents' progress.
type repairCursor struct {
	ID      string    `bson:"_id"`
	Claimed time.Time `bson:"claimed"`
	Msg     string    `bson:"msg"`
}

// retentionDoc records the newest cutoff DeleteEventsBefore applied.
type retentionDoc struct {
	ID string    `bson:"_id"`
	T  time.Time `bson:"t"`
}

// repairEvents appends the lost first events of messages committed before
// wall minus the pending grace (see above). It returns how many messages'
// events it appended.
func (s *Store) repairEvents(ctx context.Context, wall time.Time) (int, error) {
	ok, err := s.AcquireLock(ctx, eventRepairLock, s.instance, 5*time.Minute, wall)
	if err != nil || !ok {
		return 0, err
	}
	defer func() { _ = s.ReleaseLock(context.WithoutCancel(ctx), eventRepairLock, s.instance) }()
	var cur repairCursor
	var ret retentionDoc
	err = sideBySide(
		func() (err error) {
			cur, _, err = findOne[repairCursor](ctx, s.meta, bson.M{"_id": eventRepairID})
			return err
		},
		func() (err error) {
			ret, _, err = findOne[retentionDoc](ctx, s.meta, bson.M{"_id": retentionID})
			return err
		},
	)
	if err != nil {
		return 0, err
	}
	if from := wall.Add(-s.eventRepairWindow); cur.Claimed.Before(from) {
		cur = repairCursor{Claimed: from}
	}
	until := wall.Add(-s.grace)
	repaired := 0
	for seen := 0; seen < s.eventRepairMax; {
		f := bson.M{"c": true, "claimed": bson.M{"$lt": until}, "$or": bson.A{
			bson.M{"claimed": bson.M{"$gt": cur.Claimed}},
			bson.M{"claimed": cur.Claimed, "_id": bson.M{"$gt": cur.Msg}},
		}}
		docs, err := findAll[msgDoc](ctx, s.messages, f, options.Find().SetSort(sortBy("claimed", "_id")).
			SetLimit(int64(min(eventRepairPage, s.eventRepairMax-seen))).SetProjection(bson.M{"claimed": 1, "tx": 1, "ev": 1, "ct": 1}))
		if err != nil || len(docs) == 0 {
			return repaired, err
		}
		n, err := s.appendMissing(ctx, docs, ret.T)
		repaired += n
		if err != nil {
			return repaired, err
		}
		last := docs[len(docs)-1]
		cur = repairCursor{ID: eventRepairID, Claimed: last.Claimed, Msg: last.ID}
		if err := upsert(ctx, s.meta, bson.M{"_id": eventRepairID}, cur, "move the event repair cursor"); err != nil {
			return repaired, err
		}
		seen += len(docs)
		if len(docs) < eventRepairPage {
			return repaired, nil
		}
	}
	return repaired, nil
}

// appendMissing appends the events of docs that are neither pending nor
// sealed, leaving out events older than the retention cutoff, and adds
// the counters of docs whose delta (or its tombstone) is absent; it
// returns the number of messages it wrote for.
func (s *Store) appendMissing(ctx context.Context, docs []msgDoc, retained time.Time) (int, error) {
	var ids, deltas []string
	for _, d := range docs {
		for _, ev := range d.Ev {
			ids = append(ids, ev.ID)
		}
		if len(d.Ct) > 0 {
			deltas = append(deltas, letterDelta(d.ID, d.Tx))
		}
	}
	have := map[string]bool{}
	var mu sync.Mutex
	err := sideBySide(
		func() error {
			return inSlices(ids, func(ids []string) error {
				var pend []pendingDoc
				var sealed []sealedDoc
				err := sideBySide(
					func() (err error) {
						pend, err = findAll[pendingDoc](ctx, s.pending, bson.M{"_id": bson.M{"$in": ids}}, options.Find().SetProjection(bson.M{"_id": 1}))
						return err
					},
					func() (err error) {
						sealed, err = findAll[sealedDoc](ctx, s.events, bson.M{"eid": bson.M{"$in": ids}}, options.Find().SetProjection(bson.M{"eid": 1}))
						return err
					},
				)
				mu.Lock()
				defer mu.Unlock()
				for _, p := range pend {
					have[p.ID] = true
				}
				for _, e := range sealed {
					have[e.EID] = true
				}
				return err
			})
		},
		func() error {
			return inSlices(deltas, func(ids []string) error {
				cs, err := findAll[counterDoc](ctx, s.counters, bson.M{"_id": bson.M{"$in": ids}}, options.Find().SetProjection(bson.M{"_id": 1}))
				mu.Lock()
				defer mu.Unlock()
				for _, c := range cs {
					have[c.ID] = true
				}
				return err
			})
		},
	)
	if err != nil {
		return 0, err
	}
	var lost []hub.Event
	var counts []any
	n := 0
	for _, d := range docs {
		k := len(lost)
		for _, ev := range d.Ev {
			if !have[ev.ID] && !ev.Time.Before(retained) {
				lost = append(lost, ev)
			}
		}
		counted := len(d.Ct) == 0 || have[letterDelta(d.ID, d.Tx)]
		if !counted {
			at := d.Claimed
			counts = append(counts, deltaDoc(letterDelta(d.ID, d.Tx), &at, d.Ct))
		}
		if len(lost) > k || !counted {
			n++
			s.log().Warn("mongo: writing the lost events and counters of a stored message", "message", d.ID, "events", len(lost)-k, "counters", !counted)
		}
	}
	err = sideBySide(
		func() error { return s.AppendEvents(ctx, lost) },
		func() error {
			if len(counts) == 0 {
				return nil
			}
			_, err := s.counters.InsertMany(ctx, counts, options.InsertMany().SetOrdered(false))
			if err != nil && !onlyDups(err) {
				return translate(err, "add the lost counters of stored messages")
			}
			return nil
		},
	)
	return n, err
}
