package mongo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/posthub/posthub/hub"
)

// leaseDoc is one link of a delivery's lease chain: epochs 1, 2, 3… under
// the unique index (d, e). Whoever inserts epoch head+1 has changed the
// delivery's lease state; of concurrent callers exactly one can. Kinds:
// "lease" (held by H until Exp), "release" (given back early), "reset"
// (Unpark: attempts start again from 0).
type leaseDoc struct {
	ID  string    `bson:"_id"`
	D   string    `bson:"d"`
	E   int64     `bson:"e"`
	K   string    `bson:"k"`
	H   string    `bson:"h,omitempty"`
	Exp time.Time `bson:"exp"`
	Att int       `bson:"att"`
}

const (
	kindLease   = "lease"
	kindRelease = "release"
	kindReset   = "reset"
)

type parkDoc struct {
	ID     string `bson:"_id"`
	Q      string `bson:"q"`
	Reason string `bson:"reason"`
}

// parkReasonMeta is the Meta key under which a parked delivery shows its
// reason (as in the bolt store).
const parkReasonMeta = "parkedReason"

func leaseID(d string, e int64) string { return fmt.Sprintf("%s#%016d", d, e) }

func (l leaseDoc) liveAt(now time.Time) bool { return l.K == kindLease && l.Exp.After(now) }

// attempts is the attempt count a chain head stands for.
func (l *leaseDoc) attempts() int {
	if l == nil || l.K == kindReset {
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

func (s *Store) stateOf(ctx context.Context, ids []string) (state, error) {
	st := state{heads: map[string]*leaseDoc{}, parked: map[string]string{}}
	if len(ids) == 0 {
		return st, nil
	}
	ls, err := findAll[leaseDoc](ctx, s.leases, bson.M{"d": bson.M{"$in": ids}})
	if err != nil {
		return st, err
	}
	for i := range ls {
		if h := st.heads[ls[i].D]; h == nil || ls[i].E > h.E {
			st.heads[ls[i].D] = &ls[i]
		}
	}
	ps, err := findAll[parkDoc](ctx, s.parked, bson.M{"_id": bson.M{"$in": ids}})
	for _, p := range ps {
		st.parked[p.ID] = p.Reason
	}
	return st, err
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

func (st state) available(d delDoc, now time.Time) bool {
	if _, ok := st.parked[d.ID]; ok || d.Av.After(now) {
		return false
	}
	h := st.heads[d.ID]
	return h == nil || !h.liveAt(now)
}

// deliveriesWhere returns the visible delivery documents matching f with
// their lease and park state.
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
	return docs, st, err
}

func (s *Store) getDelivery(ctx context.Context, id string) (delDoc, state, error) {
	docs, st, err := s.deliveriesWhere(ctx, bson.M{"_id": id})
	if err == nil && len(docs) == 0 {
		err = hub.Errorf(hub.NotFound, "delivery %s not found", id)
	}
	if err != nil {
		return delDoc{}, st, err
	}
	return docs[0], st, nil
}

func (s *Store) AddDeliveries(ctx context.Context, ds []hub.Delivery) error {
	if len(ds) == 0 {
		return nil
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
	out := make([]hub.Delivery, 0, len(docs))
	for _, d := range docs {
		out = append(out, st.delivery(d))
	}
	return out, nil
}

// listQueue returns up to limit visible delivery documents of queue after
// (afterSeq, afterID) with their lease and park state.
func (s *Store) listQueue(ctx context.Context, queue string, afterSeq int64, afterID string, limit int, onlyAvailable bool, now time.Time) ([]delDoc, state, error) {
	if limit <= 0 {
		limit = 100
	}
	all := state{heads: map[string]*leaseDoc{}, parked: map[string]string{}}
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
	for len(out) < limit {
		docs, err := findAll[delDoc](ctx, s.deliveries, f, options.Find().SetSort(sortBy("s", "_id")).SetLimit(int64(batch)))
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
		ids := make([]string, len(docs))
		for i, d := range docs {
			ids[i] = d.ID
		}
		st, err := s.stateOf(ctx, ids)
		if err != nil {
			return nil, all, err
		}
		for _, d := range docs {
			if onlyAvailable && !st.available(d, now) {
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
	}
	return out, all, nil
}

// CountQueue counts a queue's visible deliveries minus its parked ones.
func (s *Store) CountQueue(ctx context.Context, queue string) (int64, error) {
	n, err := s.count(ctx, s.deliveries, bson.M{"q": queue})
	if err != nil {
		return 0, err
	}
	pend, err := findAll[delDoc](ctx, s.deliveries, bson.M{"q": queue, "p": true}, options.Find().SetProjection(bson.M{"msg": 1, "tx": 1, "p": 1}))
	if err != nil {
		return 0, err
	}
	vis, err := visible(ctx, s, pend, delPending)
	if err != nil {
		return 0, err
	}
	parked, err := s.count(ctx, s.parked, bson.M{"q": queue})
	if err != nil {
		return 0, err
	}
	n -= int64(len(pend)-len(vis)) + parked
	if n < 0 {
		n = 0
	}
	return n, nil
}

func (s *Store) DeliveriesOf(ctx context.Context, messageUUID string) ([]hub.Delivery, error) {
	docs, st, err := s.deliveriesWhere(ctx, bson.M{"msg": messageUUID}, options.Find().SetSort(sortBy("q", "s")))
	if err != nil {
		return nil, err
	}
	out := make([]hub.Delivery, 0, len(docs))
	for _, d := range docs {
		out = append(out, st.delivery(d))
	}
	return out, nil
}

// Lease inserts epoch head+1 of the delivery's lease chain; the unique
// index (d, e) makes exactly one concurrent caller win it.
func (s *Store) Lease(ctx context.Context, deliveryID, holder string, ttl time.Duration, now time.Time) (hub.Lease, error) {
	d, st, err := s.getDelivery(ctx, deliveryID)
	if err != nil {
		return hub.Lease{}, err
	}
	return s.lease(ctx, d, st, holder, ttl, now)
}

func (s *Store) lease(ctx context.Context, d delDoc, st state, holder string, ttl time.Duration, now time.Time) (hub.Lease, error) {
	if _, ok := st.parked[d.ID]; ok {
		return hub.Lease{}, hub.Errorf(hub.Forbidden, "delivery %s is parked", d.ID)
	}
	if d.Av.After(now) {
		return hub.Lease{}, hub.Errorf(hub.Forbidden, "delivery %s is held until %s", d.ID, d.Av.Format(time.RFC3339))
	}
	h := st.heads[d.ID]
	if h != nil && h.liveAt(now) {
		return hub.Lease{}, hub.Errorf(hub.Conflict, "delivery %s is leased", d.ID)
	}
	var epoch int64 = 1
	if h != nil {
		epoch = h.E + 1
	}
	l := leaseDoc{ID: leaseID(d.ID, epoch), D: d.ID, E: epoch, K: kindLease, H: holder, Exp: now.Add(ttl), Att: h.attempts() + 1}
	if _, err := s.leases.InsertOne(ctx, l); err != nil {
		if isDup(err) {
			return hub.Lease{}, hub.Wrap(hub.Conflict, err, "delivery %s was leased concurrently", d.ID)
		}
		return hub.Lease{}, translate(err, "lease delivery %s", d.ID)
	}
	// An Ack may have removed the delivery between our read and insert.
	if _, ok, err := findOne[delDoc](ctx, s.deliveries, bson.M{"_id": d.ID}, options.FindOne().SetProjection(bson.M{"_id": 1})); err != nil {
		return hub.Lease{}, err
	} else if !ok {
		_, _ = s.leases.DeleteOne(ctx, bson.M{"_id": l.ID})
		return hub.Lease{}, hub.Errorf(hub.NotFound, "delivery %s was acknowledged", d.ID)
	}
	return hub.Lease{DeliveryID: d.ID, Holder: holder, Epoch: epoch, Expires: l.Exp, Attempt: l.Att}, nil
}

// ClaimNext tries the available deliveries in Seq order until one Lease
// wins; losers of a race move on to the next delivery. The state read with
// the page may be stale by then, which is safe: a lease link inserted
// after a stale head collides with the newer link and loses.
func (s *Store) ClaimNext(ctx context.Context, queue, holder string, ttl time.Duration, now time.Time) (hub.Delivery, hub.Lease, error) {
	const page = 16
	var afterSeq int64
	afterID := ""
	for {
		docs, st, err := s.listQueue(ctx, queue, afterSeq, afterID, page, true, now)
		if err != nil {
			return hub.Delivery{}, hub.Lease{}, err
		}
		for _, d := range docs {
			l, err := s.lease(ctx, d, st, holder, ttl, now)
			switch hub.ErrorCode(err) {
			case "":
				out := st.delivery(d)
				out.Attempts = l.Attempt
				return out, l, nil
			case hub.Conflict, hub.Forbidden, hub.NotFound:
				continue
			default:
				return hub.Delivery{}, hub.Lease{}, err
			}
		}
		if len(docs) < page {
			return hub.Delivery{}, hub.Lease{}, hub.Errorf(hub.NotFound, "nothing available in %s", queue)
		}
		afterSeq, afterID = docs[len(docs)-1].S, docs[len(docs)-1].ID
	}
}

// Release appends a "release" link after the lease if it is still the
// chain's head; otherwise the lease is stale and nothing happens.
func (s *Store) Release(ctx context.Context, l hub.Lease) error {
	h, err := s.leaseHead(ctx, l.DeliveryID)
	if err != nil || h == nil || h.E != l.Epoch || h.K != kindLease || h.H != l.Holder {
		return err
	}
	r := leaseDoc{ID: leaseID(l.DeliveryID, h.E+1), D: l.DeliveryID, E: h.E + 1, K: kindRelease, Att: h.Att}
	if _, err := s.leases.InsertOne(ctx, r); err != nil && !isDup(err) {
		return translate(err, "release lease of %s", l.DeliveryID)
	}
	return nil
}

// Ack deletes the delivery document: deleteOne has exactly one winner, so
// exactly one of concurrent acks reports the removal and the others
// AlreadyAcked. It then counts the message's remaining deliveries. Each ack
// counts after its own delete, so of two acks removing a message's last two
// deliveries the one counting last sees both deletes: at least one of them
// reports Unreferenced (both may; deleting a blob twice is harmless).
func (s *Store) Ack(ctx context.Context, deliveryID string, now time.Time) (hub.AckResult, error) {
	return s.AckWith(ctx, deliveryID, now, nil, nil)
}

// AckWith writes the receipt and the events first, side by side, and then
// acknowledges as Ack does: without transactions this is the order in
// which a crash loses nothing. A crash before the delete leaves the
// delivery in place; its retried ack writes the receipt (by TransmissionID)
// and the events (by ID, unique) again, replacing rather than doubling them.
func (s *Store) AckWith(ctx context.Context, deliveryID string, now time.Time, r *hub.Receipt, evs []hub.Event) (hub.AckResult, error) {
	for _, ev := range evs {
		if ev.ID == "" {
			return hub.AckResult{}, hub.Errorf(hub.Invalid, "event without ID")
		}
	}
	d, _, err := s.getDelivery(ctx, deliveryID)
	if hub.Is(err, hub.NotFound) {
		return hub.AckResult{AlreadyAcked: true}, nil
	}
	if err != nil {
		return hub.AckResult{}, err
	}
	if r != nil || len(evs) > 0 {
		var rerr, eerr error
		var wg sync.WaitGroup
		if r != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rerr = s.PutReceipt(ctx, *r)
			}()
		}
		eerr = s.AppendEvents(ctx, evs)
		wg.Wait()
		if err := errors.Join(rerr, eerr); err != nil {
			return hub.AckResult{}, err
		}
	}
	res, err := s.deliveries.DeleteOne(ctx, bson.M{"_id": deliveryID})
	if err != nil {
		return hub.AckResult{}, translate(err, "acknowledge %s", deliveryID)
	}
	if res.DeletedCount == 0 {
		return hub.AckResult{AlreadyAcked: true}, nil
	}
	// Leftovers of a crash here are removed by Repair.
	_, _ = s.leases.DeleteMany(ctx, bson.M{"d": deliveryID})
	_, _ = s.parked.DeleteOne(ctx, bson.M{"_id": deliveryID})
	n, err := s.count(ctx, s.deliveries, bson.M{"msg": d.Msg})
	if err != nil || n > 0 {
		return hub.AckResult{}, err
	}
	m, ok, err := findOne[msgDoc](ctx, s.messages, bson.M{"_id": d.Msg, "c": true})
	if err != nil {
		return hub.AckResult{}, err
	}
	if ok && m.M.ArchiveUntil.After(now) {
		return hub.AckResult{}, nil
	}
	if ok && len(m.M.Content) > 0 {
		// Inline content goes with the last reference; the record stays
		// (idempotent resubmission). The ack has happened: a failure here
		// leaves the bytes behind (a leak, never a loss) and is not the
		// caller's error.
		_, _ = s.messages.UpdateOne(ctx, bson.M{"_id": d.Msg, "c": true}, bson.M{"$unset": bson.M{"m.content": ""}})
	}
	return hub.AckResult{Unreferenced: true, ContentKey: m.M.ContentKey}, nil
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
	_, st, err := s.getDelivery(ctx, deliveryID)
	if err != nil {
		return err
	}
	if _, ok := st.parked[deliveryID]; !ok {
		return nil
	}
	for try := 0; try < 5; try++ {
		h, err := s.leaseHead(ctx, deliveryID)
		if err != nil {
			return err
		}
		if h != nil && h.K == kindReset {
			break
		}
		var e int64 = 1
		if h != nil {
			e = h.E + 1
		}
		_, err = s.leases.InsertOne(ctx, leaseDoc{ID: leaseID(deliveryID, e), D: deliveryID, E: e, K: kindReset})
		if err == nil {
			break
		}
		if !isDup(err) {
			return translate(err, "unpark %s", deliveryID)
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
