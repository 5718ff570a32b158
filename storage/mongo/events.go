package mongo

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/posthub/posthub/hub"
)

// pendingDoc is an appended, not yet sealed event (_id = event ID).
type pendingDoc struct {
	ID  string    `bson:"_id"`
	T   time.Time `bson:"t"`
	Ins int64     `bson:"ins"` // append order among equal times
	X   hub.Event `bson:"x"`
}

// sealedDoc is an entry of the chain: _id = Seq, so the insert of a sealed
// event has exactly one winner per Seq; eid (the event ID) is unique too.
type sealedDoc struct {
	Seq   int64     `bson:"_id"`
	EID   string    `bson:"eid"`
	T     time.Time `bson:"t"`
	Orgs  []string  `bson:"orgs"`
	Tag   string    `bson:"tag"`
	Sys   string    `bson:"sys"`
	Msg   string    `bson:"msg"`
	Party string    `bson:"party"`
	Actor string    `bson:"actor"`
	X     hub.Event `bson:"x"`
}

func (s *Store) AppendEvents(ctx context.Context, evs []hub.Event) error {
	if len(evs) == 0 {
		return nil
	}
	docs := make([]any, len(evs))
	ids := make([]string, len(evs))
	for i, ev := range evs {
		if ev.ID == "" {
			return hub.Errorf(hub.Invalid, "event without ID")
		}
		ev.Seq, ev.PrevHash, ev.Hash = 0, "", ""
		docs[i] = pendingDoc{ID: ev.ID, T: ev.Time, Ins: s.nextSeq(), X: ev}
		ids[i] = ev.ID
	}
	_, err := s.pending.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err != nil && !onlyDups(err) {
		return translate(err, "append events")
	}
	// An ID sealed before our insert must not be pending again. The sealer
	// inserts the sealed entry before it deletes the pending one, so
	// checking after our insert catches every interleaving.
	return s.dropSealedPending(ctx, ids)
}

// dropSealedPending deletes the pending events among ids that are sealed.
func (s *Store) dropSealedPending(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	sealed, err := findAll[sealedDoc](ctx, s.events, bson.M{"eid": bson.M{"$in": ids}}, options.Find().SetProjection(bson.M{"eid": 1}))
	if err != nil || len(sealed) == 0 {
		return err
	}
	done := make([]string, len(sealed))
	for i, d := range sealed {
		done[i] = d.EID
	}
	_, err = s.pending.DeleteMany(ctx, bson.M{"_id": bson.M{"$in": done}})
	return translate(err, "drop sealed pending events")
}

func (s *Store) PendingEvents(ctx context.Context, limit int) ([]hub.Event, error) {
	if limit <= 0 {
		limit = 1000
	}
	for try := 0; ; try++ {
		docs, err := findAll[pendingDoc](ctx, s.pending, bson.M{}, options.Find().SetSort(sortBy("t", "ins", "_id")).SetLimit(int64(limit)))
		if err != nil {
			return nil, err
		}
		ids := make([]string, len(docs))
		for i, d := range docs {
			ids[i] = d.ID
		}
		// Leftovers of a sealer that crashed between its two steps.
		sealed, err := findAll[sealedDoc](ctx, s.events, bson.M{"eid": bson.M{"$in": ids}}, options.Find().SetProjection(bson.M{"eid": 1}))
		if err != nil {
			return nil, err
		}
		if len(sealed) > 0 && try < 3 {
			if err := s.dropSealedPending(ctx, ids); err != nil {
				return nil, err
			}
			continue
		}
		skip := map[string]bool{}
		for _, d := range sealed {
			skip[d.EID] = true
		}
		out := make([]hub.Event, 0, len(docs))
		for _, d := range docs {
			if !skip[d.ID] {
				out = append(out, d.X)
			}
		}
		return out, nil
	}
}

// SealEvents inserts the entries in Seq order (an ordered insert stops at
// the first failure, leaving a sealed prefix), then deletes them from
// pending.
func (s *Store) SealEvents(ctx context.Context, evs []hub.Event) error {
	if len(evs) == 0 {
		return nil
	}
	for i, ev := range evs {
		if ev.ID == "" || ev.Seq == 0 || ev.Hash == "" {
			return hub.Errorf(hub.Invalid, "sealed event needs ID, Seq and Hash")
		}
		if i > 0 && ev.Seq != evs[i-1].Seq+1 {
			return hub.Errorf(hub.Invalid, "event seq %d does not follow %d", ev.Seq, evs[i-1].Seq)
		}
	}
	var last uint64
	if l, err := s.LastSealed(ctx); err == nil {
		last = l.Seq
	} else if !hub.Is(err, hub.NotFound) {
		return err
	}
	if evs[0].Seq <= last {
		return hub.Errorf(hub.Conflict, "event seq %d is taken", evs[0].Seq)
	}
	if evs[0].Seq != last+1 {
		return hub.Errorf(hub.Invalid, "event seq %d does not follow %d", evs[0].Seq, last)
	}
	docs := make([]any, len(evs))
	ids := make([]string, len(evs))
	for i, ev := range evs {
		docs[i] = sealedDoc{Seq: int64(ev.Seq), EID: ev.ID, T: ev.Time, Orgs: ev.Orgs, Tag: ev.Tag, Sys: ev.SystemID,
			Msg: ev.MessageUUID, Party: ev.Party, Actor: ev.Actor, X: ev}
		ids[i] = ev.ID
	}
	_, ierr := s.events.InsertMany(ctx, docs, options.InsertMany().SetOrdered(true))
	// Pending copies left by a failure here are dropped by PendingEvents.
	_ = s.dropSealedPending(ctx, ids)
	if isDup(ierr) {
		return hub.Wrap(hub.Conflict, ierr, "event seq or ID is taken")
	}
	return translate(ierr, "seal events")
}

func (s *Store) LastSealed(ctx context.Context) (hub.Event, error) {
	d, ok, err := findOne[sealedDoc](ctx, s.events, bson.M{}, options.FindOne().SetSort(sortBy("-_id")))
	if err == nil && !ok {
		err = hub.Errorf(hub.NotFound, "no sealed event")
	}
	return d.X, err
}

func (s *Store) ScanEvents(ctx context.Context, from uint64, fn func(hub.Event) error) error {
	const batch = 500
	next := int64(from)
	for {
		docs, err := findAll[sealedDoc](ctx, s.events, bson.M{"_id": bson.M{"$gte": next}}, options.Find().SetSort(sortBy("_id")).SetLimit(batch))
		if err != nil {
			return err
		}
		for _, d := range docs {
			if err := fn(d.X); err != nil {
				return err
			}
		}
		if len(docs) < batch {
			return nil
		}
		next = docs[len(docs)-1].Seq + 1
	}
}

func (s *Store) QueryEvents(ctx context.Context, q hub.EventQuery) ([]hub.Event, error) {
	f := bson.M{}
	if q.AfterSeq > 0 {
		f["_id"] = bson.M{"$gt": int64(q.AfterSeq)}
	}
	if q.Org != "" {
		f["orgs"] = q.Org
	}
	t := bson.M{}
	if !q.From.IsZero() {
		t["$gte"] = q.From
	}
	if !q.To.IsZero() {
		t["$lt"] = q.To
	}
	if len(t) > 0 {
		f["t"] = t
	}
	if len(q.Tags) > 0 {
		f["tag"] = bson.M{"$in": q.Tags}
	}
	for k, v := range map[string]string{"sys": q.SystemID, "msg": q.MessageUUID, "party": q.Party, "actor": q.Actor} {
		if v != "" {
			f[k] = v
		}
	}
	o := options.Find().SetSort(sortBy("_id"))
	if q.Descending {
		o.SetSort(sortBy("-_id"))
	}
	if q.Limit > 0 {
		o.SetLimit(int64(q.Limit))
	}
	docs, err := findAll[sealedDoc](ctx, s.events, f, o)
	out := make([]hub.Event, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.X)
	}
	return out, err
}

// DeleteEventsBefore removes the prefix of the chain (in Seq order) whose
// events are older than t, so the rest has no holes.
func (s *Store) DeleteEventsBefore(ctx context.Context, t time.Time) (int64, error) {
	f := bson.M{}
	first, ok, err := findOne[sealedDoc](ctx, s.events, bson.M{"t": bson.M{"$gte": t}}, options.FindOne().SetSort(sortBy("_id")).SetProjection(bson.M{"_id": 1}))
	if err != nil {
		return 0, err
	}
	if ok {
		f["_id"] = bson.M{"$lt": first.Seq}
	}
	res, err := s.events.DeleteMany(ctx, f)
	if err != nil {
		return 0, translate(err, "delete old events")
	}
	return res.DeletedCount, nil
}
