package mongo

import (
	"context"
	"fmt"
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
	if err := s.insertPending(ctx, evs); err != nil || len(evs) == 0 {
		return err
	}
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	// An ID sealed before our insert must not be pending again. The sealer
	// inserts the sealed entry before it deletes the pending one, so
	// checking after our insert catches every interleaving.
	return s.dropSealedPending(ctx, ids)
}

// insertPending inserts events as pending entries; an ID that is pending
// already is skipped. (PendingEvents never returns an event whose ID is
// sealed, so a pending copy of a sealed event is only clutter, which
// AppendEvents removes at once and PendingEvents and Repair later.)
func (s *Store) insertPending(ctx context.Context, evs []hub.Event) error {
	if len(evs) == 0 {
		return nil
	}
	docs := make([]any, len(evs))
	for i, ev := range evs {
		if ev.ID == "" {
			return hub.Errorf(hub.Invalid, "event without ID")
		}
		ev.Seq, ev.PrevHash, ev.Hash = 0, "", ""
		docs[i] = pendingDoc{ID: ev.ID, T: ev.Time, Ins: s.nextSeq(), X: ev}
	}
	_, err := s.pending.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err != nil && !onlyDups(err) {
		return translate(err, "append events")
	}
	return nil
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
		if len(docs) == 0 {
			return nil, nil
		}
		ids := make([]string, len(docs))
		for i, d := range docs {
			ids[i] = d.ID
		}
		// Leftovers of a sealer that crashed between its two steps, or of
		// one sealing right now (it inserts the sealed entry, then deletes
		// the pending one). They are dropped and the head read again, until
		// it holds unsealed ones: were the filtered page answered after a
		// few tries, a head of sealed leftovers (a busy sealer keeps making
		// them) would answer "nothing pending" with entries pending behind
		// it (a test waiting for the log to drain stopped early once).
		sealed, err := findAll[sealedDoc](ctx, s.events, bson.M{"eid": bson.M{"$in": ids}}, options.Find().SetProjection(bson.M{"eid": 1}))
		if err != nil {
			return nil, err
		}
		if len(sealed) > 0 && try < 50 {
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

// The sealer lease is a chain of lockDoc links named sealChain under the
// locks collection's unique index (n, e): taking the lease inserts link
// head+1, and so does every seal (the commit), before it writes a single
// entry. A sealer whose lease another has taken finds its commit's epoch
// taken and writes nothing: the insert of the next epoch is the fence, and
// it is one of the two steps FerretDB makes atomic. Renewing updates the
// expiry of the holder's own head link (no one else writes that document;
// a taker racing the renewal wins the next epoch, and the renewer learns it
// at its next commit or renewal).
const sealChain = "eventlog-seal"

// sealPruneEvery: after every this many epochs a successful seal deletes
// the links below its own. A sealer that lost the lease long ago and
// re-creates a deleted epoch then writes its batch from a head no later
// than the seal just applied, so its first entry's Seq is taken and its
// ordered insert writes nothing.
const sealPruneEvery = 64

// sealChunk is how many entries one insert carries: FerretDB writes a
// batch in transactions of 100 documents, and a command stopped by an error
// is never followed by the next chunk, so a failed seal leaves a prefix.
const sealChunk = 100

func sealLinkID(e int64) string { return fmt.Sprintf("%s#%016d", sealChain, e) }

func (s *Store) LeaseSealer(ctx context.Context, l hub.SealerLease, ttl time.Duration, now time.Time) (hub.SealerLease, error) {
	if l.Holder == "" {
		return hub.SealerLease{}, hub.Errorf(hub.Invalid, "sealer lease needs a holder")
	}
	h, err := s.lockHead(ctx, sealChain)
	if err != nil {
		return hub.SealerLease{}, err
	}
	if h != nil && l.Epoch > 0 && uint64(h.E) == l.Epoch && h.H == l.Holder {
		// Renewal: the head link is ours, and only we write it.
		exp := now.Add(ttl)
		if _, err := s.locks.UpdateOne(ctx, bson.M{"_id": h.ID}, bson.M{"$set": bson.M{"exp": exp}}); err != nil {
			return hub.SealerLease{}, translate(err, "renew the sealer lease")
		}
		l.Expires = exp
		return l, nil
	}
	if h != nil && h.H != "" && h.H != l.Holder && h.Exp.After(now) {
		return hub.SealerLease{Holder: h.H, Expires: h.Exp}, nil
	}
	var e int64 = 1
	if h != nil {
		e = h.E + 1
	}
	exp := now.Add(ttl)
	if _, err := s.locks.InsertOne(ctx, lockDoc{ID: sealLinkID(e), N: sealChain, E: e, H: l.Holder, Exp: exp}); err != nil {
		if isDup(err) {
			return hub.SealerLease{Holder: "", Expires: now}, nil // a concurrent taker won
		}
		return hub.SealerLease{}, translate(err, "take the sealer lease")
	}
	// Entries are written after their commit: a seal the previous holder
	// committed may still be landing (or was cut short and stays pending).
	// The head is read after our epoch exists, so no commit can follow it.
	out := hub.SealerLease{Holder: l.Holder, Epoch: uint64(e), Expires: exp}
	last, err := s.LastSealed(ctx)
	switch {
	case err == nil:
		out.Seq, out.Hash = last.Seq, last.Hash
	case !hub.Is(err, hub.NotFound):
		return hub.SealerLease{}, err
	}
	return out, nil
}

func (s *Store) ReleaseSealer(ctx context.Context, l hub.SealerLease) error {
	if l.Epoch == 0 {
		return nil
	}
	e := int64(l.Epoch) + 1
	_, err := s.locks.InsertOne(ctx, lockDoc{ID: sealLinkID(e), N: sealChain, E: e})
	if err != nil && !isDup(err) {
		return translate(err, "release the sealer lease")
	}
	return nil
}

// SealEvents commits the batch by inserting the lease's next epoch (fenced:
// Conflict if another sealer took the lease), then inserts the entries in
// Seq order, in chunks that each stop at their first failure, and deletes
// their pending copies. A seal cut short leaves a sealed prefix, the rest
// pending for the next seal; entries from two sealers never interleave
// into a fork, as each Seq and each event ID is a unique key and a sealer
// stops at the first one taken.
func (s *Store) SealEvents(ctx context.Context, l hub.SealerLease, evs []hub.Event) (hub.SealerLease, error) {
	if len(evs) == 0 {
		return l, nil
	}
	for i, ev := range evs {
		if ev.ID == "" || ev.Seq == 0 || ev.Hash == "" {
			return l, hub.Errorf(hub.Invalid, "sealed event needs ID, Seq and Hash")
		}
		if i > 0 && ev.Seq != evs[i-1].Seq+1 {
			return l, hub.Errorf(hub.Invalid, "event seq %d does not follow %d", ev.Seq, evs[i-1].Seq)
		}
	}
	if l.Epoch == 0 {
		return l, hub.Errorf(hub.Conflict, "sealer lease not held")
	}
	if evs[0].Seq <= l.Seq {
		return l, hub.Errorf(hub.Conflict, "event seq %d is taken", evs[0].Seq)
	}
	if evs[0].Seq != l.Seq+1 {
		return l, hub.Errorf(hub.Invalid, "event seq %d does not follow %d", evs[0].Seq, l.Seq)
	}
	e := int64(l.Epoch) + 1
	if _, err := s.locks.InsertOne(ctx, lockDoc{ID: sealLinkID(e), N: sealChain, E: e, H: l.Holder, Exp: l.Expires}); err != nil {
		if isDup(err) {
			return l, hub.Wrap(hub.Conflict, err, "sealer lease lost: epoch %d is taken", e)
		}
		return l, translate(err, "commit a seal")
	}
	docs := make([]any, len(evs))
	ids := make([]string, len(evs))
	for i, ev := range evs {
		docs[i] = sealedDoc{Seq: int64(ev.Seq), EID: ev.ID, T: ev.Time, Orgs: ev.Orgs, Tag: ev.Tag, Sys: ev.SystemID,
			Msg: ev.MessageUUID, Party: ev.Party, Actor: ev.Actor, X: ev}
		ids[i] = ev.ID
	}
	var ierr error
	for i := 0; i < len(docs) && ierr == nil; i += sealChunk {
		_, ierr = s.events.InsertMany(ctx, docs[i:min(i+sealChunk, len(docs))], options.InsertMany().SetOrdered(true))
	}
	if ierr != nil {
		// Pending copies of a sealed prefix are dropped by PendingEvents.
		_ = s.dropSealedPending(ctx, ids)
		if isDup(ierr) {
			return l, hub.Wrap(hub.Conflict, ierr, "event seq or ID is taken")
		}
		return l, translate(ierr, "seal events")
	}
	if _, err := s.pending.DeleteMany(ctx, bson.M{"_id": bson.M{"$in": ids}}); err != nil {
		// Sealed all the same; PendingEvents drops the copies.
		s.log().Warn("mongo: drop sealed pending events", "error", err)
	}
	if e%sealPruneEvery == 0 {
		_, _ = s.locks.DeleteMany(ctx, bson.M{"n": sealChain, "e": bson.M{"$lt": e}})
	}
	last := evs[len(evs)-1]
	l.Epoch, l.Seq, l.Hash = uint64(e), last.Seq, last.Hash
	return l, nil
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

// eventQueryTime bounds one QueryEvents (a variable for tests).
var eventQueryTime = 20 * time.Second

// eventQueryPing bounds the ping that tells a query past eventQueryTime
// (refused as too wide) from a server that does not answer (Unavailable).
var eventQueryPing = 5 * time.Second

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
	// One query's work is bounded by time (the deadline reaches the server
	// as the command's time limit): a filter that matches almost nothing
	// in a large log, on a server that cannot use an index for it, is
	// refused as bolt refuses it, not left to run.
	qctx, cancel := context.WithTimeout(ctx, eventQueryTime)
	defer cancel()
	docs, err := findAll[sealedDoc](qctx, s.events, f, o)
	if err != nil && ctx.Err() == nil && qctx.Err() != nil {
		// The bound ran out: on a query too wide, or on a server (or
		// network) that does not answer at all. Only a server that
		// answers a ping is refusing the query.
		pctx, cancel := context.WithTimeout(ctx, eventQueryPing)
		perr := s.Ping(pctx)
		cancel()
		if perr != nil {
			return nil, hub.Wrap(hub.Unavailable, err, "mongo: query events (the server does not answer: %v)", perr)
		}
		return nil, &hub.Error{Code: hub.Invalid, Message: "the query reads too much of the event log",
			Fields: []hub.FieldError{{Resource: "request", Code: "event.query.too.wide",
				Message: fmt.Sprintf("this query did not fill its page within %s; narrow it by time or organisation", eventQueryTime)}}}
	}
	out := make([]hub.Event, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.X)
	}
	return out, err
}

// DeleteEventsBefore removes the prefix of the chain (in Seq order) whose
// events are older than t, so the rest has no holes.
// DeleteEventsBefore first records t for repairEvents, which appends no
// event older than it again (last writer wins: retention runs under the
// sealer, one instance at a time).
func (s *Store) DeleteEventsBefore(ctx context.Context, t time.Time) (int64, error) {
	if err := upsert(ctx, s.meta, bson.M{"_id": retentionID}, retentionDoc{ID: retentionID, T: t}, "record the event retention cutoff"); err != nil {
		return 0, err
	}
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
