package mongo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/posthub/posthub/hub"
)

// leaseDoc is one link of a delivery's lease chain: epochs 1, 2, 3… under
// the unique index (d, e). Whoever inserts epoch head+1 has changed the
// delivery's lease state; of concurrent callers exactly one can. Kinds:
// "lease" (held by H until Exp), "release" (given back early), "reset"
// (Unpark: attempts start again from 0) and "acked" (the acknowledgement;
// see Ack).
type leaseDoc struct {
	ID  string    `bson:"_id"`
	D   string    `bson:"d"`
	E   int64     `bson:"e"`
	K   string    `bson:"k"`
	H   string    `bson:"h,omitempty"`
	Exp time.Time `bson:"exp"`
	Att int       `bson:"att"`
	// Q and S are the delivery's queue and Seq: a queue's chains are read
	// beside a page of it (ClaimNext, ListQueue), and S tells which
	// delivery of an ID a link is about (AddDeliveries may add an
	// acknowledged delivery's ID again). The acked link carries Q too, so
	// that a reader of the queue sees the acknowledgement from the instant
	// it exists; Q is removed from the whole chain once the acknowledgement
	// is applied (the delivery document is gone by then).
	Q string `bson:"q,omitempty"`
	S int64  `bson:"s,omitempty"`
	// Of an "acked" link: the message, when, what the ack records (applied
	// after the link; Pend until it is), and, on every link of an
	// acknowledged chain, when the chain may be removed (GA).
	M    string       `bson:"m,omitempty"`
	At   *time.Time   `bson:"at,omitempty"`
	R    *hub.Receipt `bson:"r,omitempty"`
	Evs  []hub.Event  `bson:"evs,omitempty"`
	Pend bool         `bson:"pend,omitempty"`
	GA   *time.Time   `bson:"ga,omitempty"`
}

const (
	kindLease   = "lease"
	kindRelease = "release"
	kindReset   = "reset"
	kindAcked   = "acked"
)

type parkDoc struct {
	ID     string `bson:"_id"`
	Q      string `bson:"q"`
	Reason string `bson:"reason"`
}

// parkReasonMeta is the Meta key under which a parked delivery shows its
// reason (as in the bolt store).
const parkReasonMeta = "parkedReason"

// stateWindow bounds the lease links and park markers read beside a page
// of a queue; deliveries of the page beyond what they cover are looked up
// by ID. (A variable only so that a test can make it small.)
var stateWindow = 1024

func leaseID(d string, e int64) string { return fmt.Sprintf("%s#%016d", d, e) }

func (l leaseDoc) liveAt(now time.Time) bool { return l.K == kindLease && l.Exp.After(now) }

// attempts is the attempt count a chain head stands for.
func (l *leaseDoc) attempts() int {
	if l == nil || l.K == kindReset || l.K == kindAcked {
		return 0
	}
	return l.Att
}

func (s *Store) leaseHead(ctx context.Context, deliveryID string) (*leaseDoc, error) {
	h, ok, err := findOne[leaseDoc](ctx, s.leases, bson.M{"d": deliveryID}, options.FindOne().SetSort(sortBy("-e")))
	if err != nil || !ok {
		return nil, err
	}
	return &h, nil
}

// state carries what a listing needs besides the delivery documents.
type state struct {
	heads  map[string]*leaseDoc
	parked map[string]string
}

func newState() state { return state{heads: map[string]*leaseDoc{}, parked: map[string]string{}} }

func (st state) addLinks(ls []leaseDoc) {
	for i := range ls {
		if h := st.heads[ls[i].D]; h == nil || ls[i].E > h.E {
			st.heads[ls[i].D] = &ls[i]
		}
	}
}

// stateOf reads the chains and park markers of the deliveries ids, side by
// side.
func (s *Store) stateOf(ctx context.Context, ids []string) (state, error) {
	st := newState()
	if len(ids) == 0 {
		return st, nil
	}
	var ls []leaseDoc
	var ps []parkDoc
	err := sideBySide(
		func() (err error) {
			ls, err = findAll[leaseDoc](ctx, s.leases, bson.M{"d": bson.M{"$in": ids}})
			return err
		},
		func() (err error) {
			ps, err = findAll[parkDoc](ctx, s.parked, bson.M{"_id": bson.M{"$in": ids}})
			return err
		},
	)
	st.addLinks(ls)
	for _, p := range ps {
		st.parked[p.ID] = p.Reason
	}
	return st, err
}

// acked reports whether d's chain ends with its acknowledgement: d is gone
// for every reader, though its document may outlive the ack by a moment.
func (st state) acked(d delDoc) bool {
	h := st.heads[d.ID]
	return h != nil && h.K == kindAcked && h.S == d.S
}

func (st state) delivery(d delDoc) hub.Delivery {
	out := d.D
	out.Attempts = st.heads[d.ID].attempts()
	if reason, ok := st.parked[d.ID]; ok {
		out.State = hub.DeliveryParked
		m := make(map[string]string, len(out.Meta)+1)
		for k, v := range out.Meta {
			m[k] = v
		}
		m[parkReasonMeta] = reason
		out.Meta = m
	} else {
		out.State = hub.DeliveryReady
	}
	return out
}

func (st state) deliveries(docs []delDoc) []hub.Delivery {
	out := make([]hub.Delivery, 0, len(docs))
	for _, d := range docs {
		out = append(out, st.delivery(d))
	}
	return out
}

func (st state) available(d delDoc, now time.Time) bool {
	if _, ok := st.parked[d.ID]; ok || d.Av.After(now) || st.acked(d) {
		return false
	}
	h := st.heads[d.ID]
	return h == nil || !h.liveAt(now)
}

// deliveriesWhere returns the visible, unacknowledged delivery documents
// matching f with their lease and park state.
func (s *Store) deliveriesWhere(ctx context.Context, f bson.M, opts ...options.Lister[options.FindOptions]) ([]delDoc, state, error) {
	docs, err := findAll[delDoc](ctx, s.deliveries, f, opts...)
	if err != nil {
		return nil, state{}, err
	}
	if docs, err = visible(ctx, s, docs, delPending); err != nil {
		return nil, state{}, err
	}
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.ID
	}
	st, err := s.stateOf(ctx, ids)
	return unacked(docs, st), st, err
}

func unacked(docs []delDoc, st state) []delDoc {
	out := docs[:0:0]
	for _, d := range docs {
		if !st.acked(d) {
			out = append(out, d)
		}
	}
	return out
}

// getDelivery reads a delivery, its chain and its park marker side by side
// (one round trip; a second joins it against its message while it is
// pending).
func (s *Store) getDelivery(ctx context.Context, id string) (delDoc, state, error) {
	var (
		d    delDoc
		ok   bool
		ls   []leaseDoc
		p    parkDoc
		isPk bool
	)
	err := sideBySide(
		func() (err error) { d, ok, err = findOne[delDoc](ctx, s.deliveries, bson.M{"_id": id}); return err },
		func() (err error) { ls, err = findAll[leaseDoc](ctx, s.leases, bson.M{"d": id}); return err },
		func() (err error) { p, isPk, err = findOne[parkDoc](ctx, s.parked, bson.M{"_id": id}); return err },
	)
	st := newState()
	if err != nil {
		return delDoc{}, st, err
	}
	st.addLinks(ls)
	if isPk {
		st.parked[id] = p.Reason
	}
	if ok && d.P {
		vis, err := visible(ctx, s, []delDoc{d}, delPending)
		if err != nil {
			return delDoc{}, st, err
		}
		ok = len(vis) == 1
	}
	if !ok || st.acked(d) {
		return delDoc{}, st, hub.Errorf(hub.NotFound, "delivery %s not found", id)
	}
	return d, st, nil
}

func (s *Store) AddDeliveries(ctx context.Context, ds []hub.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	if err := hub.CheckDeliveries(ds); err != nil {
		return err
	}
	now := time.Now()
	docs := make([]any, len(ds))
	for i := range ds {
		ds[i].Seq = s.nextSeq()
		docs[i] = s.newDelDoc(ds[i], false, "", now)
	}
	_, err := s.deliveries.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err != nil && !onlyDups(err) {
		return translate(err, "add deliveries")
	}
	return nil
}

func (s *Store) GetDelivery(ctx context.Context, id string) (hub.Delivery, error) {
	d, st, err := s.getDelivery(ctx, id)
	if err != nil {
		return hub.Delivery{}, err
	}
	return st.delivery(d), nil
}

// ListQueue pages by (Seq, ID); ties of Seq are possible only between
// instances writing in the same microsecond.
func (s *Store) ListQueue(ctx context.Context, queue string, afterSeq int64, limit int, onlyAvailable bool, now time.Time) ([]hub.Delivery, error) {
	docs, st, err := s.listQueue(ctx, queue, afterSeq, "", limit, onlyAvailable, now)
	if err != nil {
		return nil, err
	}
	return st.deliveries(docs), nil
}

// queueState reads, beside a page of queue after (afterSeq, afterID), the
// lease links and park markers of the queue from there on (at most
// stateWindow of each). covered says for which deliveries they are
// complete: a truncated read covers the deliveries before its last one.
func (s *Store) queueState(ctx context.Context, queue string, afterSeq int64) (st state, covered func(delDoc) bool, err error) {
	st = newState()
	var ls []leaseDoc
	var ps []parkDoc
	err = sideBySide(
		func() (err error) {
			ls, err = findAll[leaseDoc](ctx, s.leases, bson.M{"q": queue, "s": bson.M{"$gte": afterSeq}},
				options.Find().SetSort(sortBy("q", "s", "d", "e")).SetLimit(int64(stateWindow)))
			return err
		},
		func() (err error) {
			ps, err = findAll[parkDoc](ctx, s.parked, bson.M{"q": queue}, options.Find().SetLimit(int64(stateWindow)))
			return err
		},
	)
	if err != nil {
		return st, nil, err
	}
	st.addLinks(ls)
	for _, p := range ps {
		st.parked[p.ID] = p.Reason
	}
	covered = func(delDoc) bool { return true }
	if len(ps) == stateWindow {
		covered = func(delDoc) bool { return false }
	} else if len(ls) == stateWindow {
		last := ls[len(ls)-1]
		covered = func(d delDoc) bool { return d.S < last.S || (d.S == last.S && d.ID < last.D) }
	}
	return st, covered, nil
}

// listQueue returns up to limit visible delivery documents of queue after
// (afterSeq, afterID) with their lease and park state. A batch of the
// queue and the state of the queue from there on are read side by side
// (one round trip); only pending documents (a PutMessage under way) and
// deliveries the state read did not cover cost a second one.
func (s *Store) listQueue(ctx context.Context, queue string, afterSeq int64, afterID string, limit int, onlyAvailable bool, now time.Time) ([]delDoc, state, error) {
	if limit <= 0 {
		limit = 100
	}
	all := newState()
	var out []delDoc
	f := bson.M{"q": queue, "s": bson.M{"$gt": afterSeq}}
	if afterID != "" {
		f = bson.M{"q": queue, "$or": bson.A{bson.M{"s": bson.M{"$gt": afterSeq}}, bson.M{"s": afterSeq, "_id": bson.M{"$gt": afterID}}}}
	}
	if onlyAvailable {
		f["av"] = bson.M{"$lte": now}
	}
	batch := limit
	if onlyAvailable && batch < 32 {
		batch = 32
	}
	from := afterSeq
	for len(out) < limit {
		var docs []delDoc
		var st state
		var covered func(delDoc) bool
		err := sideBySide(
			func() (err error) {
				docs, err = findAll[delDoc](ctx, s.deliveries, f, options.Find().SetSort(sortBy("s", "_id")).SetLimit(int64(batch)))
				return err
			},
			func() (err error) { st, covered, err = s.queueState(ctx, queue, from); return err },
		)
		if err != nil {
			return nil, all, err
		}
		if len(docs) == 0 {
			break
		}
		last := docs[len(docs)-1]
		full := len(docs) == batch
		if docs, err = visible(ctx, s, docs, delPending); err != nil {
			return nil, all, err
		}
		var missing []string
		for _, d := range docs {
			if !covered(d) {
				missing = append(missing, d.ID)
			}
		}
		if len(missing) > 0 {
			more, err := s.stateOf(ctx, missing)
			if err != nil {
				return nil, all, err
			}
			for _, id := range missing {
				st.heads[id] = more.heads[id]
				if r, ok := more.parked[id]; ok {
					st.parked[id] = r
				} else {
					delete(st.parked, id)
				}
			}
		}
		for _, d := range docs {
			if st.acked(d) || (onlyAvailable && !st.available(d, now)) {
				continue
			}
			out = append(out, d)
			all.heads[d.ID] = st.heads[d.ID]
			if r, ok := st.parked[d.ID]; ok {
				all.parked[d.ID] = r
			}
			if len(out) == limit {
				break
			}
		}
		if !full {
			break
		}
		f["$or"] = bson.A{bson.M{"s": bson.M{"$gt": last.S}}, bson.M{"s": last.S, "_id": bson.M{"$gt": last.ID}}}
		delete(f, "s")
		from = last.S
	}
	return out, all, nil
}

// CountQueue counts a queue's visible deliveries minus its parked ones and
// minus those acknowledged whose document is still there (an acked link
// carries the queue until its delivery document is gone; such links are
// only those of acks under way or cut short, so the look-up of their
// deliveries, a second round trip, is rare). A count concurrent with an
// ack may still include its delivery for that moment.
func (s *Store) CountQueue(ctx context.Context, queue string) (int64, error) {
	var n, parked int64
	var pend []delDoc
	var acked []leaseDoc
	err := sideBySide(
		func() (err error) { n, err = s.count(ctx, s.deliveries, bson.M{"q": queue}); return err },
		func() (err error) {
			pend, err = findAll[delDoc](ctx, s.deliveries, bson.M{"q": queue, "p": true}, options.Find().SetProjection(bson.M{"msg": 1, "tx": 1, "p": 1}))
			return err
		},
		func() (err error) { parked, err = s.count(ctx, s.parked, bson.M{"q": queue}); return err },
		func() (err error) {
			acked, err = findAll[leaseDoc](ctx, s.leases, bson.M{"q": queue, "k": kindAcked}, options.Find().SetProjection(bson.M{"d": 1, "s": 1}))
			return err
		},
	)
	if err != nil {
		return 0, err
	}
	var vis []delDoc
	var gone int64
	fns := []func() error{func() (err error) { vis, err = visible(ctx, s, pend, delPending); return err }}
	if len(acked) > 0 {
		fns = append(fns, func() (err error) { gone, err = s.ackedStillThere(ctx, acked); return err })
	}
	if err := sideBySide(fns...); err != nil {
		return 0, err
	}
	n -= int64(len(pend)-len(vis)) + parked + gone
	if n < 0 {
		n = 0
	}
	return n, nil
}

// ackedStillThere counts the deliveries of acked links whose documents are
// still stored, parked ones apart (CountQueue has left those out already).
func (s *Store) ackedStillThere(ctx context.Context, acked []leaseDoc) (int64, error) {
	seq := make(map[string]int64, len(acked))
	ids := make([]string, 0, len(acked))
	for _, l := range acked {
		seq[l.D] = l.S
		ids = append(ids, l.D)
	}
	var docs []delDoc
	var ps []parkDoc
	err := sideBySide(
		func() (err error) {
			docs, err = findAll[delDoc](ctx, s.deliveries, bson.M{"_id": bson.M{"$in": ids}}, options.Find().SetProjection(bson.M{"_id": 1, "s": 1}))
			return err
		},
		func() (err error) {
			ps, err = findAll[parkDoc](ctx, s.parked, bson.M{"_id": bson.M{"$in": ids}}, options.Find().SetProjection(bson.M{"_id": 1}))
			return err
		},
	)
	isParked := map[string]bool{}
	for _, p := range ps {
		isParked[p.ID] = true
	}
	var n int64
	for _, d := range docs {
		if seq[d.ID] == d.S && !isParked[d.ID] {
			n++
		}
	}
	return n, err
}

func (s *Store) DeliveriesOf(ctx context.Context, messageUUID string) ([]hub.Delivery, error) {
	docs, st, err := s.deliveriesWhere(ctx, bson.M{"msg": messageUUID}, options.Find().SetSort(sortBy("q", "s")))
	if err != nil {
		return nil, err
	}
	return st.deliveries(docs), nil
}

// Lease inserts epoch head+1 of the delivery's lease chain; the unique
// index (d, e) makes exactly one concurrent caller win it. An ack inserts
// its link into the same chain, so a lease can never follow an ack
// unnoticed: there is nothing to re-check after the insert.
func (s *Store) Lease(ctx context.Context, deliveryID, holder string, ttl time.Duration, now time.Time) (hub.Lease, error) {
	d, st, err := s.getDelivery(ctx, deliveryID)
	if err != nil {
		return hub.Lease{}, err
	}
	l, _, err := s.lease(ctx, d, st, holder, ttl, now, false)
	return l, err
}

// lease takes d for holder. With withMessage the message is read beside
// the insert, and a lease on a delivery that turns out to be invisible (its
// PutMessage is not committed) is withdrawn (NotFound).
func (s *Store) lease(ctx context.Context, d delDoc, st state, holder string, ttl time.Duration, now time.Time, withMessage bool) (hub.Lease, hub.Message, error) {
	if _, ok := st.parked[d.ID]; ok {
		return hub.Lease{}, hub.Message{}, hub.Errorf(hub.Forbidden, "delivery %s is parked", d.ID)
	}
	if d.Av.After(now) {
		return hub.Lease{}, hub.Message{}, hub.Errorf(hub.Forbidden, "delivery %s is held until %s", d.ID, d.Av.Format(time.RFC3339))
	}
	h := st.heads[d.ID]
	for try := 0; ; try++ {
		switch {
		case h != nil && h.K == kindAcked && h.S == d.S:
			return hub.Lease{}, hub.Message{}, hub.Errorf(hub.NotFound, "delivery %s was acknowledged", d.ID)
		case h != nil && h.liveAt(now):
			return hub.Lease{}, hub.Message{}, hub.Errorf(hub.Conflict, "delivery %s is leased", d.ID)
		}
		var epoch int64 = 1
		if h != nil {
			epoch = h.E + 1
		}
		l := leaseDoc{ID: leaseID(d.ID, epoch), D: d.ID, E: epoch, K: kindLease, H: holder, Exp: now.Add(ttl), Att: h.attempts() + 1, Q: d.Q, S: d.S}
		var (
			m    msgDoc
			mok  bool
			merr error
		)
		fns := []func() error{func() error { _, err := s.leases.InsertOne(ctx, l); return err }}
		if withMessage {
			fns = append(fns, func() error {
				m, mok, merr = findOne[msgDoc](ctx, s.messages, bson.M{"_id": d.Msg, "c": true}, options.FindOne().SetProjection(msgOnly))
				return nil
			})
		}
		err := sideBySide(fns...)
		if isDup(err) {
			// Another link took the epoch: a concurrent lease, an ack, or a
			// chain this caller's state did not show (a link written before
			// links carried their queue). The chain's head decides.
			if try > 0 {
				return hub.Lease{}, hub.Message{}, hub.Wrap(hub.Conflict, err, "delivery %s was leased concurrently", d.ID)
			}
			if h, err = s.leaseHead(ctx, d.ID); err != nil {
				return hub.Lease{}, hub.Message{}, err
			}
			continue
		}
		if err != nil {
			return hub.Lease{}, hub.Message{}, translate(err, "lease delivery %s", d.ID)
		}
		withdraw := func(cause error) (hub.Lease, hub.Message, error) {
			_, _ = s.leases.DeleteOne(context.WithoutCancel(ctx), bson.M{"_id": l.ID})
			return hub.Lease{}, hub.Message{}, cause
		}
		if merr != nil {
			return withdraw(merr)
		}
		if withMessage && d.P && (!mok || m.Tx != d.Tx) {
			return withdraw(hub.Errorf(hub.NotFound, "delivery %s not found", d.ID))
		}
		var msg hub.Message
		if mok {
			msg = m.M
		}
		return hub.Lease{DeliveryID: d.ID, Holder: holder, Epoch: epoch, Expires: l.Exp, Attempt: l.Att}, msg, nil
	}
}

// ClaimNext reads a page of the queue and the queue's lease and park state
// side by side, then leases the first available delivery while reading its
// message (two round trips when nothing races). Losers of a race move on
// to the next delivery; calls of this Store running on one queue at the
// same time start at different deliveries of the page, so that pollers of
// one instance do not all race for the first. The state read with the
// page may be stale by the insert, which is safe: a link inserted after a
// stale head collides with the newer link.
func (s *Store) ClaimNext(ctx context.Context, queue, holder string, ttl time.Duration, now time.Time) (hub.Claimed, error) {
	const page = 64
	running := s.claiming(queue)
	k := int(running.Add(1)) - 1
	defer running.Add(-1)
	var afterSeq int64
	afterID := ""
	for {
		docs, st, err := s.listQueue(ctx, queue, afterSeq, afterID, page, true, now)
		if err != nil {
			return hub.Claimed{}, err
		}
		for i := range docs {
			d := docs[(i+k)%len(docs)]
			l, m, err := s.lease(ctx, d, st, holder, ttl, now, true)
			switch hub.ErrorCode(err) {
			case "":
				out := st.delivery(d)
				out.Attempts = l.Attempt
				return hub.Claimed{Delivery: out, Lease: l, Message: m}, nil
			case hub.Conflict, hub.Forbidden, hub.NotFound:
				continue
			default:
				return hub.Claimed{}, err
			}
		}
		if len(docs) < page {
			return hub.Claimed{}, hub.Errorf(hub.NotFound, "nothing available in %s", queue)
		}
		afterSeq, afterID = docs[len(docs)-1].S, docs[len(docs)-1].ID
	}
}

// claiming counts the ClaimNext calls of this Store running on a queue.
func (s *Store) claiming(queue string) *atomic.Int32 {
	v, _ := s.claims.LoadOrStore(queue, new(atomic.Int32))
	return v.(*atomic.Int32)
}

// Release appends a "release" link after the lease if it is still the
// chain's head; otherwise the lease is stale and nothing happens.
func (s *Store) Release(ctx context.Context, l hub.Lease) error {
	h, err := s.leaseHead(ctx, l.DeliveryID)
	if err != nil || h == nil || h.E != l.Epoch || h.K != kindLease || h.H != l.Holder {
		return err
	}
	r := leaseDoc{ID: leaseID(l.DeliveryID, h.E+1), D: l.DeliveryID, E: h.E + 1, K: kindRelease, Att: h.Att, Q: h.Q, S: h.S}
	if _, err := s.leases.InsertOne(ctx, r); err != nil && !isDup(err) {
		return translate(err, "release lease of %s", l.DeliveryID)
	}
	return nil
}

// Ack acknowledges as AckWith does, recording nothing.
func (s *Store) Ack(ctx context.Context, deliveryID string, now time.Time) (hub.AckResult, error) {
	return s.AckWith(ctx, deliveryID, "", now, nil)
}

// AckWith acknowledges a delivery by inserting an "acked" link into its
// lease chain: the link is the acknowledgement (exactly one concurrent
// ack, and no concurrent lease, wins its epoch) and carries what the ack
// records, so the two are durable together. Four round trips:
//
//  1. read the delivery, its chain and park marker, and (messageUUID
//     given) its message and receipts, side by side; record is called
//     with them;
//  2. insert the link;
//  3. apply it, side by side: store the receipt, append the events, delete
//     the delivery document, remove a park marker, and read the message's
//     remaining deliveries;
//  4. mark the link applied and take the chain off the queue (its links
//     stay, without Q, for the grace period, so that a lease read before
//     the ack still collides with it), and remove inline content when this
//     was the last delivery.
//
// Every reader treats a delivery whose chain ends with its acked link as
// gone — the link carries the queue, so listings see it beside the
// delivery document — and what 3 and 4 do is invisible except for the
// receipt and the events. A crash after 2 leaves the link pending; a retried ack, or
// Repair, applies it again (receipt and events by ID, so nothing doubles).
// The remaining deliveries are read after the link: of two acks removing a
// message's last two deliveries, the one whose link came second sees the
// other's link, so at least one reports Unreferenced.
func (s *Store) AckWith(ctx context.Context, deliveryID, messageUUID string, now time.Time, record hub.AckRecord) (hub.AckResult, error) {
	in, err := s.readAck(ctx, deliveryID, messageUUID, record != nil)
	if err != nil || in.gone {
		return hub.AckResult{AlreadyAcked: in.gone}, err
	}
	link := leaseDoc{D: deliveryID, K: kindAcked, Q: in.d.Q, S: in.d.S, M: in.d.Msg, At: &now, Pend: true}
	if record != nil {
		v := hub.AckView{Delivery: in.st.delivery(in.d), SenderReceipt: in.rcpt}
		if in.mok {
			v.Message = &in.m.M
		}
		r, evs, err := record(v)
		if err != nil {
			return hub.AckResult{}, err
		}
		for _, ev := range evs {
			if ev.ID == "" {
				return hub.AckResult{}, hub.Errorf(hub.Invalid, "event without ID")
			}
		}
		link.R, link.Evs = r, evs
	}
	h := in.st.heads[deliveryID]
	for try := 0; ; try++ {
		link.E = 1
		if h != nil {
			link.E = h.E + 1
		}
		link.ID = leaseID(deliveryID, link.E)
		_, ierr := s.leases.InsertOne(ctx, link)
		if ierr == nil {
			break
		}
		if !isDup(ierr) || try == 5 {
			return hub.AckResult{}, translate(ierr, "acknowledge %s", deliveryID)
		}
		// A lease or another ack took the epoch.
		if h, err = s.leaseHead(ctx, deliveryID); err != nil {
			return hub.AckResult{}, err
		}
		if h != nil && h.K == kindAcked && h.S == in.d.S {
			return hub.AckResult{AlreadyAcked: true}, nil
		}
	}
	return s.applyAck(ctx, link, in, now)
}

// ackInput is what the first round trip of an ack read.
type ackInput struct {
	d      delDoc
	st     state
	m      msgDoc
	mok    bool
	rcpt   *hub.Receipt
	parked bool
	gone   bool
}

// readAck reads a delivery, its chain and park marker and, when
// messageUUID names its message, the message (without content) and, with
// receipts, the message's receipts, side by side. gone means the delivery
// is acknowledged (or does not exist); a pending acked link found on the
// way is applied (best effort).
func (s *Store) readAck(ctx context.Context, id, messageUUID string, receipts bool) (ackInput, error) {
	var in ackInput
	var (
		dok bool
		ls  []leaseDoc
		p   parkDoc
		rs  []rcptDoc
	)
	noContent := options.FindOne().SetProjection(msgWithoutContent)
	fns := []func() error{
		func() (err error) { in.d, dok, err = findOne[delDoc](ctx, s.deliveries, bson.M{"_id": id}); return err },
		func() (err error) { ls, err = findAll[leaseDoc](ctx, s.leases, bson.M{"d": id}); return err },
		func() (err error) { p, in.parked, err = findOne[parkDoc](ctx, s.parked, bson.M{"_id": id}); return err },
	}
	if messageUUID != "" {
		fns = append(fns, func() (err error) {
			in.m, in.mok, err = findOne[msgDoc](ctx, s.messages, bson.M{"_id": messageUUID, "c": true}, noContent)
			return err
		})
		if receipts {
			fns = append(fns, func() (err error) {
				rs, err = findAll[rcptDoc](ctx, s.receipts, bson.M{"msg": messageUUID})
				return err
			})
		}
	}
	if err := sideBySide(fns...); err != nil {
		return in, err
	}
	in.st = newState()
	in.st.addLinks(ls)
	if in.parked {
		in.st.parked[id] = p.Reason
	}
	if h := in.st.heads[id]; h != nil && h.K == kindAcked && (!dok || h.S == in.d.S) {
		if h.Pend {
			s.finishAck(ctx, *h)
		}
		in.gone = true
		return in, nil
	}
	if !dok {
		in.gone = true
		return in, nil
	}
	if messageUUID != in.d.Msg {
		// Not named (Ack), or not this delivery's: read it now.
		var err error
		in.m, in.mok, err = findOne[msgDoc](ctx, s.messages, bson.M{"_id": in.d.Msg, "c": true}, noContent)
		if err != nil {
			return in, err
		}
		rs = nil
		if receipts {
			if rs, err = findAll[rcptDoc](ctx, s.receipts, bson.M{"msg": in.d.Msg}); err != nil {
				return in, err
			}
		}
	}
	if in.d.P && (!in.mok || in.m.Tx != in.d.Tx) {
		in.gone = true // part of an unfinished PutMessage: not there
		return in, nil
	}
	if in.mok {
		// The sender's receipt, as hub.SenderReceiptOf finds it among the
		// visible ones: the message's (hub.MessageReceipt), or, for a
		// message stored before ReceiptID, the newest naming it.
		var best *rcptDoc
		visible := func(r *rcptDoc) bool { return r.Sys == in.m.M.SenderSystemID && (!r.P || r.Tx == in.m.Tx) }
		if in.m.M.ReceiptID != "" {
			r, ok, _ := hub.MessageReceipt(in.m.M, func(id string) (hub.Receipt, bool, error) {
				for i := range rs {
					if rs[i].ID == id && visible(&rs[i]) {
						return rs[i].R, true, nil
					}
				}
				return hub.Receipt{}, false, nil
			})
			if ok {
				in.rcpt = &r
			}
			return in, nil
		}
		for i := range rs {
			r := &rs[i]
			if !visible(r) {
				continue
			}
			if best == nil || hub.NewerReceipt(r.R, best.R) {
				best = r
			}
		}
		if best != nil {
			in.rcpt = &best.R
		}
	}
	return in, nil
}

// sealedIDs returns which of evs' IDs are sealed already.
func (s *Store) sealedIDs(ctx context.Context, evs []hub.Event) (map[string]bool, error) {
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	docs, err := findAll[sealedDoc](ctx, s.events, bson.M{"eid": bson.M{"$in": ids}}, options.Find().SetProjection(bson.M{"eid": 1}))
	out := map[string]bool{}
	for _, d := range docs {
		out[d.EID] = true
	}
	return out, err
}

// applyAck does rounds 3 and 4 of AckWith for the link just inserted. Its
// events are appended without asking which are sealed: the link is new, so
// none of them was appended for it before, and an ID the caller used for
// an earlier entry (an acknowledged delivery's ID added again) leaves at
// most a pending copy that PendingEvents never returns and drops.
func (s *Store) applyAck(ctx context.Context, link leaseDoc, in ackInput, now time.Time) (hub.AckResult, error) {
	var rest []delDoc
	var readErr error
	fns := s.ackWrites(ctx, link, link.Evs, in.parked)
	fns = append(fns, func() error {
		rest, readErr = findAll[delDoc](ctx, s.deliveries, bson.M{"msg": link.M}, options.Find().SetProjection(bson.M{"_id": 1, "s": 1}))
		return nil
	})
	if err := sideBySide(fns...); err != nil {
		// The ack is decided and durable; what is left undone is finished
		// by a retried ack or Repair.
		s.log().Warn("mongo: an acknowledgement is only partly applied (Repair finishes it)", "delivery", link.D, "error", err)
		return hub.AckResult{}, nil
	}
	res := hub.AckResult{}
	last := func(unref bool) {
		if unref && (!in.mok || !in.m.M.ArchiveUntil.After(now)) {
			res.Unreferenced = true
			if in.mok {
				res.ContentKey = in.m.M.ContentKey
			}
		}
	}
	// Inline content goes with the last reference; the record stays
	// (idempotent resubmission). The ack has happened: a failure here
	// leaves the bytes behind (a leak, never a loss).
	unsetContent := func() error {
		_, err := s.messages.UpdateOne(ctx, bson.M{"_id": link.M, "c": true}, bson.M{"$unset": bson.M{"m.content": ""}})
		return err
	}
	mark := func() error { return s.markApplied(ctx, link) }
	var err error
	if others := othersOf(link, rest); readErr == nil && len(others) == 0 {
		// The common case, a message's only delivery: known to be the last.
		last(true)
		if res.Unreferenced && res.ContentKey == "" && in.mok {
			err = sideBySide(mark, unsetContent)
		} else {
			err = mark()
		}
	} else {
		var unref bool
		var uerr error
		err = sideBySide(mark, func() error { unref, uerr = s.noneRemain(ctx, link, others, readErr); return nil })
		if uerr != nil {
			s.log().Warn("mongo: remaining deliveries of an acknowledged message unknown (its content stays)", "message", link.M, "error", uerr)
		}
		last(unref && uerr == nil)
		if res.Unreferenced && res.ContentKey == "" && in.mok {
			err = errors.Join(err, unsetContent())
		}
	}
	if err != nil {
		s.log().Warn("mongo: an acknowledgement is applied but not marked so, or its inline content not removed", "delivery", link.D, "error", err)
	}
	return res, nil
}

// othersOf are the deliveries among rest other than link's.
func othersOf(link leaseDoc, rest []delDoc) []delDoc {
	var others []delDoc
	for _, d := range rest {
		if d.ID != link.D {
			others = append(others, d)
		}
	}
	return others
}

// ackWrites are the writes that apply an acked link: the receipt, the
// events, the delivery's removal and its park marker (when parked).
func (s *Store) ackWrites(ctx context.Context, link leaseDoc, evs []hub.Event, parked bool) []func() error {
	var fns []func() error
	if link.R != nil {
		r := *link.R
		fns = append(fns, func() error { return s.PutReceipt(ctx, r) })
	}
	if len(evs) > 0 {
		fns = append(fns, func() error { return s.insertPending(ctx, evs) })
	}
	fns = append(fns, func() error {
		_, err := s.deliveries.DeleteOne(ctx, bson.M{"_id": link.D, "s": link.S})
		return translate(err, "remove acknowledged delivery %s", link.D)
	})
	if parked {
		fns = append(fns, func() error {
			_, err := s.parked.DeleteOne(ctx, bson.M{"_id": link.D})
			return translate(err, "remove park marker of %s", link.D)
		})
	}
	return fns
}

// noneRemain tells whether none of others, the message's other deliveries
// read after link was inserted, remains: one whose own acked link is in
// place does not.
func (s *Store) noneRemain(ctx context.Context, link leaseDoc, others []delDoc, readErr error) (bool, error) {
	if readErr != nil {
		return false, readErr
	}
	if len(others) == 0 {
		return true, nil
	}
	acks, err := findAll[leaseDoc](ctx, s.leases, bson.M{"m": link.M, "k": kindAcked}, options.Find().SetProjection(bson.M{"d": 1, "s": 1}))
	if err != nil {
		return false, err
	}
	done := map[string]int64{}
	for _, a := range acks {
		done[a.D] = a.S
	}
	for _, d := range others {
		if seq, ok := done[d.ID]; !ok || seq != d.S {
			return false, nil
		}
	}
	return true, nil
}

// markApplied ends an acked link's pending state and drops what it
// carried, and takes the chain up to it off the queue: its delivery
// document is gone by now, so no listing needs the link any more. The
// whole chain may go after the grace period.
func (s *Store) markApplied(ctx context.Context, link leaseDoc) error {
	ga := link.At.Add(s.grace)
	_, err := s.leases.UpdateMany(ctx, bson.M{"d": link.D, "e": bson.M{"$lte": link.E}},
		bson.M{"$unset": bson.M{"pend": "", "r": "", "evs": "", "q": ""}, "$set": bson.M{"ga": ga}})
	return translate(err, "mark acknowledgement of %s applied", link.D)
}

// finishAck applies a pending acked link again (a retried ack, Repair) as
// AckWith does, after reading what AckWith's first round would have: every
// write is idempotent. Inline content of a message with no deliveries left
// is removed too; a blob is left for the sweeper.
func (s *Store) finishAck(ctx context.Context, link leaseDoc) {
	ctx = context.WithoutCancel(ctx)
	var in ackInput
	var sealed map[string]bool
	fns := []func() error{
		func() (err error) {
			_, in.parked, err = findOne[parkDoc](ctx, s.parked, bson.M{"_id": link.D})
			return err
		},
		func() (err error) {
			in.m, in.mok, err = findOne[msgDoc](ctx, s.messages, bson.M{"_id": link.M, "c": true}, options.FindOne().SetProjection(msgWithoutContent))
			return err
		},
	}
	if len(link.Evs) > 0 {
		// The sealer may have run since the events were first appended.
		fns = append(fns, func() (err error) { sealed, err = s.sealedIDs(ctx, link.Evs); return err })
	}
	if err := sideBySide(fns...); err != nil {
		return
	}
	var evs []hub.Event
	for _, ev := range link.Evs {
		if !sealed[ev.ID] {
			evs = append(evs, ev)
		}
	}
	link.Evs = evs
	_, _ = s.applyAck(ctx, link, in, time.Now())
}

// Park inserts a parked marker (idempotent).
func (s *Store) Park(ctx context.Context, deliveryID, reason string) error {
	d, _, err := s.getDelivery(ctx, deliveryID)
	if err != nil {
		return err
	}
	_, err = s.parked.InsertOne(ctx, parkDoc{ID: d.ID, Q: d.Q, Reason: reason})
	if err != nil && !isDup(err) {
		return translate(err, "park %s", deliveryID)
	}
	return nil
}

// Unpark appends a "reset" link (attempts start again, any lease ends)
// and then removes the parked marker.
func (s *Store) Unpark(ctx context.Context, deliveryID string) error {
	d, st, err := s.getDelivery(ctx, deliveryID)
	if err != nil {
		return err
	}
	if _, ok := st.parked[deliveryID]; !ok {
		return nil
	}
	h := st.heads[deliveryID]
	for try := 0; try < 5; try++ {
		if h != nil && (h.K == kindReset || h.K == kindAcked) {
			break
		}
		var e int64 = 1
		if h != nil {
			e = h.E + 1
		}
		_, err = s.leases.InsertOne(ctx, leaseDoc{ID: leaseID(deliveryID, e), D: deliveryID, E: e, K: kindReset, Q: d.Q, S: d.S})
		if err == nil {
			break
		}
		if !isDup(err) {
			return translate(err, "unpark %s", deliveryID)
		}
		if h, err = s.leaseHead(ctx, deliveryID); err != nil {
			return err
		}
	}
	_, err = s.parked.DeleteOne(ctx, bson.M{"_id": deliveryID})
	return translate(err, "unpark %s", deliveryID)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
