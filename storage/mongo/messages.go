package mongo

import (
	"context"
	"errors"
	"slices"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/posthub/posthub/hub"
)

// msgDoc is a message (C true); Tx identifies the PutMessage that stored
// it, so that its deliveries and receipt can be told from leftovers, and
// is unique in the collection (an index).
//
// With C false it is one of two things that store no message:
//   - a fence (For set, _id "fence/" + Tx): the PutMessage Tx of message
//     For can never commit, as its commit would repeat Tx
//     (fenceUnfinished);
//   - a claim of the store's first design (_id the UUID), undone by Repair.
type msgDoc struct {
	ID      string      `bson:"_id"`
	C       bool        `bson:"c"`
	Tx      string      `bson:"tx"`
	Claimed time.Time   `bson:"claimed"` // wall clock of the claim or the fencing
	For     string      `bson:"for,omitempty"`
	Sender  string      `bson:"sender"`
	Rcv     time.Time   `bson:"rcv"`
	M       hub.Message `bson:"m"`
	// Ev are the events PutMessageWith appends after the commit, stored in
	// the commit itself so that repairEvents can append them should the
	// instance die in between (eventrepair.go). Never read otherwise.
	Ev []hub.Event `bson:"ev,omitempty"`
	// Ct are the counters PutMessageWith adds, for the same reason (see
	// letterDelta in counters.go).
	Ct []hub.Counter `bson:"ct,omitempty"`
}

// The projections of a message read: Ev and Ct are repairEvents' alone,
// so no other read fetches them (ClaimNext's and the viewer's included).
var (
	msgOnly           = bson.M{"ev": 0, "ct": 0}
	msgWithoutContent = bson.M{"ev": 0, "ct": 0, "m.content": 0}
)

// delDoc is a delivery. State and Attempts of D are not kept here: a
// delivery document is written once and never updated, so no
// read-modify-write can lose a change. Parking lives in the parked
// collection and attempts in the lease chain.
type delDoc struct {
	ID  string       `bson:"_id"`
	Msg string       `bson:"msg"`
	Q   string       `bson:"q"`
	S   int64        `bson:"s"`
	Av  time.Time    `bson:"av"`
	P   bool         `bson:"p"`            // written by an unfinished PutMessage
	Tx  string       `bson:"tx,omitempty"` // that PutMessage
	PT  time.Time    `bson:"pt"`           // wall clock of the write
	D   hub.Delivery `bson:"d"`
}

type rcptDoc struct {
	ID  string      `bson:"_id"` // TransmissionID
	Sys string      `bson:"sys"`
	Msg string      `bson:"msg"`
	T   time.Time   `bson:"t"`
	P   bool        `bson:"p"`
	Tx  string      `bson:"tx,omitempty"`
	PT  time.Time   `bson:"pt"`
	R   hub.Receipt `bson:"r"`
}

// committedTx returns, for the given message UUIDs, the Tx of each
// committed message.
func (s *Store) committedTx(ctx context.Context, uuids []string) (map[string]string, error) {
	out := map[string]string{}
	if len(uuids) == 0 {
		return out, nil
	}
	docs, err := findAll[struct {
		ID string `bson:"_id"`
		Tx string `bson:"tx"`
	}](ctx, s.messages, bson.M{"_id": bson.M{"$in": uuids}, "c": true}, options.Find().SetProjection(bson.M{"tx": 1}))
	for _, d := range docs {
		out[d.ID] = d.Tx
	}
	return out, err
}

// visible keeps the documents that are not part of an unfinished
// PutMessage: p is false, or the message they were written with is
// committed (the flag is cleared right after the commit, and by Repair).
func visible[T any](ctx context.Context, s *Store, docs []T, pending func(T) (bool, string, string)) ([]T, error) {
	var uuids []string
	for _, d := range docs {
		if p, m, _ := pending(d); p {
			uuids = append(uuids, m)
		}
	}
	if len(uuids) == 0 {
		return docs, nil
	}
	tx, err := s.committedTx(ctx, uuids)
	if err != nil {
		return nil, err
	}
	out := docs[:0:0]
	for _, d := range docs {
		if p, m, t := pending(d); !p || (tx[m] == t && t != "") {
			out = append(out, d)
		}
	}
	return out, nil
}

func delPending(d delDoc) (bool, string, string)   { return d.P, d.Msg, d.Tx }
func rcptPending(r rcptDoc) (bool, string, string) { return r.P, r.Msg, r.Tx }

// PutMessage makes the message, its deliveries and receipt visible at one
// instant, without a transaction, in two serial round trips:
//
//  1. insert the deliveries (in ID order) and the receipt, side by side,
//     with p=true and a fresh random tx: invisible, since readers show a
//     p=true document only when its message is committed with the same tx;
//  2. commit: insert the message document (c=true, tx). Its unique _id
//     makes exactly one of concurrent PutMessages of a UUID commit; the
//     others get Conflict and remove what they wrote in step 1. Concurrent
//     submissions of one UUID usually meet earlier, on the first delivery
//     (delivery IDs derive from the UUID): the loser stops there, having
//     written only its receipt;
//  3. clear p on the deliveries and the receipt (best effort, side by side;
//     PutMessageWith does it beside the events and counters). Until then
//     readers join them against the message; Repair clears it too.
//
// A crash before 2 leaves invisible documents; Repair removes them once
// they are older than the grace period, and so does a later PutMessage of
// the same UUID whose deliveries collide with them. A PutMessage that took
// longer than half the grace period undoes itself instead of committing,
// so Repair never removes the documents of a PutMessage that can still
// commit. (Claims of the earlier design, a message document with c=false,
// are undone the same way.)
func (s *Store) PutMessage(ctx context.Context, m hub.Message, ds []hub.Delivery, r hub.Receipt) error {
	tx, err := s.putMessage(ctx, m, ds, r, nil, nil)
	if err != nil {
		return err
	}
	s.settleIDs(ctx, tx, ds, r)
	return nil
}

// PutMessageWith stores the message as PutMessage does, then its events,
// its counters and the clearing of its pending flags side by side (one
// round trip): MongoDB without transactions cannot make them one step, and
// this order can lose a crash's events, never a message. The events' IDs
// were minted for this message (hub.Ingest), so unlike AppendEvents no
// re-read for sealed copies follows the insert; should one be sealed
// anyway, PendingEvents never hands it to the sealer again.
func (s *Store) PutMessageWith(ctx context.Context, m hub.Message, ds []hub.Delivery, r hub.Receipt, evs []hub.Event, cs []hub.Counter) error {
	for _, ev := range evs {
		if ev.ID == "" {
			return hub.Errorf(hub.Invalid, "event without ID")
		}
	}
	tx, err := s.putMessage(ctx, m, ds, r, evs, cs)
	if err != nil {
		return err
	}
	err = sideBySide(
		func() error { return s.insertPending(ctx, evs) },
		func() error { return s.addLetterCounters(ctx, m.UUID, tx, time.Now(), cs) },
		func() error { s.settleIDs(ctx, tx, ds, r); return nil },
	)
	// The message is stored: what follows is not the caller's failure.
	if err != nil {
		s.log().Warn("mongo: events or counters of a stored message not written", "message", m.UUID, "error", err)
	}
	return nil
}

// putMessage does steps 1 and 2 of PutMessage and returns the tx; the
// commit carries evs and cs (see msgDoc.Ev and Ct).
func (s *Store) putMessage(ctx context.Context, m hub.Message, ds []hub.Delivery, r hub.Receipt, evs []hub.Event, cs []hub.Counter) (string, error) {
	if m.UUID == "" {
		return "", hub.Errorf(hub.Invalid, "message without UUID")
	}
	if err := hub.CheckDeliveries(ds); err != nil {
		return "", err
	}
	if err := hub.CheckKeys(m.UUID, m.SenderCVR, r.SystemID, r.TransmissionID); err != nil {
		return "", err
	}
	start := time.Now()
	for i := range ds {
		ds[i].Seq = s.nextSeq()
	}
	var tx string
	for try := 0; ; try++ {
		tx = randomID()
		err := s.insertPendingMessage(ctx, m.UUID, tx, ds, r, start)
		if err == nil {
			break
		}
		s.undo(m.UUID, tx)
		if !isDup(err) {
			return "", notStored(translate(err, "store deliveries and receipt of %s", m.UUID))
		}
		if try == 0 {
			removed, rerr := s.removeStaleLeftovers(ctx, ds)
			if rerr == nil && !removed {
				removed, rerr = s.fenceUnfinished(ctx, m.UUID, ds)
			}
			if rerr != nil {
				return "", notStored(rerr)
			} else if removed {
				continue
			}
		}
		return "", hub.Wrap(hub.Conflict, err, "message %s exists", m.UUID)
	}
	if time.Since(start) > s.grace/2 {
		s.undo(m.UUID, tx)
		return "", hub.NotStored(hub.Errorf(hub.Unavailable, "storing message %s took too long", m.UUID))
	}
	doc := msgDoc{ID: m.UUID, C: true, Tx: tx, Claimed: start, Sender: m.SenderCVR, Rcv: m.Received, M: m, Ev: evs, Ct: cs}
	// The commit too must not land after half the grace period, when
	// Repair may remove its documents (the deadline reaches the server as
	// the command's time limit).
	cctx, cancel := context.WithDeadline(ctx, start.Add(s.grace/2))
	defer cancel()
	for try := 0; ; try++ {
		_, err := s.messages.InsertOne(cctx, doc)
		if err == nil {
			return tx, nil
		}
		if !isDup(err) {
			// The commit may or may not have landed; Repair resolves either
			// way (a committed message keeps its documents, the documents of
			// an uncommitted one go after the grace period).
			return "", translate(err, "commit message %s", m.UUID)
		}
		if try == 0 {
			// A claim of the earlier design left by a crash.
			old, ok, ferr := findOne[msgDoc](ctx, s.messages, bson.M{"_id": m.UUID}, options.FindOne().SetProjection(bson.M{"c": 1, "tx": 1, "claimed": 1}))
			if ferr == nil && ok && !old.C && time.Since(old.Claimed) > s.grace {
				if aerr := s.abort(ctx, old.ID, old.Tx); aerr == nil {
					continue
				}
			}
		}
		s.undo(m.UUID, tx)
		return "", hub.Wrap(hub.Conflict, err, "message %s exists", m.UUID)
	}
}

// notStored marks err (from a PutMessage that never reached its commit,
// its pending documents undone or invisible) as one after which nothing
// was stored.
func notStored(err error) error {
	var e *hub.Error
	if errors.As(err, &e) {
		c := *e
		return hub.NotStored(&c)
	}
	return hub.NotStored(hub.Wrap(hub.Unavailable, err, "store message"))
}

// insertPendingMessage inserts the deliveries (ordered by ID, so that two
// PutMessages of one UUID collide on the same first one) and the receipt
// side by side, pending under tx.
func (s *Store) insertPendingMessage(ctx context.Context, uuid, tx string, ds []hub.Delivery, r hub.Receipt, now time.Time) error {
	var fns []func() error
	if len(ds) > 0 {
		docs := make([]delDoc, len(ds))
		for i := range ds {
			docs[i] = s.newDelDoc(ds[i], true, tx, now)
		}
		sort.Slice(docs, func(i, j int) bool { return docs[i].ID < docs[j].ID })
		many := make([]any, len(docs))
		for i := range docs {
			many[i] = docs[i]
		}
		fns = append(fns, func() error {
			_, err := s.deliveries.InsertMany(ctx, many, options.InsertMany().SetOrdered(true))
			return err
		})
	}
	if r.TransmissionID != "" {
		fns = append(fns, func() error {
			_, err := s.receipts.InsertOne(ctx, newRcptDoc(r, true, tx, now))
			return err
		})
	}
	return sideBySide(fns...)
}

// undo removes what an uncommitted PutMessage wrote under tx (in a context
// of its own: the caller's may be what failed).
func (s *Store) undo(uuid, tx string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := bson.M{"msg": uuid, "tx": tx, "p": true}
	_ = sideBySide(
		func() error { _, err := s.deliveries.DeleteMany(ctx, f); return err },
		func() error { _, err := s.receipts.DeleteMany(ctx, f); return err },
	)
}

// removeStaleLeftovers removes the documents of unfinished PutMessages
// (pending, their tx never committed, older than the grace period) among
// the deliveries ds collide with, and reports whether it removed any.
func (s *Store) removeStaleLeftovers(ctx context.Context, ds []hub.Delivery) (bool, error) {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	docs, err := findAll[delDoc](ctx, s.deliveries, bson.M{"_id": bson.M{"$in": ids}, "p": true},
		options.Find().SetProjection(bson.M{"msg": 1, "tx": 1, "p": 1, "pt": 1}))
	if err != nil || len(docs) == 0 {
		return false, err
	}
	uuids := make([]string, 0, len(docs))
	for _, d := range docs {
		uuids = append(uuids, d.Msg)
	}
	tx, err := s.committedTx(ctx, uuids)
	if err != nil {
		return false, err
	}
	removed := false
	for _, d := range docs {
		if tx[d.Msg] == d.Tx || time.Since(d.PT) < s.grace {
			continue
		}
		if err := s.abort(ctx, d.Msg, d.Tx); err != nil {
			return removed, err
		}
		removed = true
	}
	return removed, nil
}

// fenceUnfinished ends the unfinished PutMessages of uuid whose pending
// deliveries ds collide with, however young: one whose instance died
// between its two steps (its sender, who got no answer, is resubmitting),
// or one still running elsewhere. For each it inserts a fence, a c:false
// document carrying the other's tx, which that PutMessage's commit (an
// insert under the same unique tx) can then never follow, and then
// removes the other's documents. Exactly one of the commit and the fence
// lands: if the commit did, the fence fails and the caller reports
// Conflict (the message exists: hub.Ingest answers a resubmission with
// its receipt); if the fence did, the other PutMessage gets Conflict
// without a committed message (hub.Ingest answers Unavailable: retry) and
// the caller stores the message itself. Without the fence, a sender whose
// answer was lost to a crash between the steps would be refused with
// Conflict for the whole grace period, its letter accepted by no one.
//
// The fence does not hold the message's _id, so the caller commits as
// usual, and it stays until Repair removes it after the grace period: a
// fence removed with the fenced documents (as the first version of this
// function did) let a fenced commit that arrived later store the message
// without its deliveries and receipt.
func (s *Store) fenceUnfinished(ctx context.Context, uuid string, ds []hub.Delivery) (bool, error) {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	docs, err := findAll[delDoc](ctx, s.deliveries, bson.M{"_id": bson.M{"$in": ids}, "msg": uuid, "p": true},
		options.Find().SetProjection(bson.M{"msg": 1, "tx": 1, "p": 1}))
	if err != nil || len(docs) == 0 {
		return false, err
	}
	var txs []string
	for _, d := range docs {
		if !slices.Contains(txs, d.Tx) {
			txs = append(txs, d.Tx)
		}
	}
	for _, tx := range txs {
		_, err = s.messages.InsertOne(ctx, msgDoc{ID: fenceID(tx), C: false, Tx: tx, Claimed: time.Now(), For: uuid})
		if isDup(err) {
			// Committed after all, or fenced by another caller already.
			committed, cerr := s.committedTx(ctx, []string{uuid})
			if cerr != nil || committed[uuid] == tx {
				return false, cerr
			}
		} else if err != nil {
			return false, translate(err, "fence the unfinished submission of %s", uuid)
		}
		if err := s.abortDocs(ctx, uuid, tx); err != nil {
			return false, err
		}
	}
	if s.afterFence != nil {
		s.afterFence(uuid)
	}
	return true, nil
}

// fenceID is the _id of the fence of the PutMessage tx: never a UUID.
func fenceID(tx string) string { return "fence/" + tx }

// abort removes an unfinished PutMessage: its deliveries and receipt
// first, its claim (of the earlier design) last, so a claim never
// disappears while documents of its tx remain.
func (s *Store) abort(ctx context.Context, uuid, tx string) error {
	if err := s.abortDocs(ctx, uuid, tx); err != nil {
		return err
	}
	_, err := s.messages.DeleteOne(ctx, bson.M{"_id": uuid, "tx": tx, "c": false})
	return translate(err, "undo claim of %s", uuid)
}

// abortDocs removes the deliveries and receipt of an unfinished
// PutMessage.
func (s *Store) abortDocs(ctx context.Context, uuid, tx string) error {
	if _, err := s.deliveries.DeleteMany(ctx, bson.M{"msg": uuid, "tx": tx, "p": true}); err != nil {
		return translate(err, "undo deliveries of %s", uuid)
	}
	_, err := s.receipts.DeleteMany(ctx, bson.M{"msg": uuid, "tx": tx, "p": true})
	return translate(err, "undo receipt of %s", uuid)
}

// settle clears the pending flag of a committed message's documents.
func (s *Store) settle(ctx context.Context, uuid, tx string) {
	f := bson.M{"msg": uuid, "tx": tx, "p": true}
	set := bson.M{"$set": bson.M{"p": false}}
	_, _ = s.deliveries.UpdateMany(ctx, f, set)
	_, _ = s.receipts.UpdateMany(ctx, f, set)
}

// settleIDs is settle for documents whose IDs are known, the deliveries
// and the receipt side by side (updates by _id, which FerretDB answers
// without scanning the collection).
func (s *Store) settleIDs(ctx context.Context, tx string, ds []hub.Delivery, r hub.Receipt) {
	set := bson.M{"$set": bson.M{"p": false}}
	var fns []func() error
	if len(ds) > 0 {
		ids := make([]string, len(ds))
		for i, d := range ds {
			ids[i] = d.ID
		}
		fns = append(fns, func() error {
			_, err := s.deliveries.UpdateMany(ctx, bson.M{"_id": bson.M{"$in": ids}, "tx": tx, "p": true}, set)
			return err
		})
	}
	if r.TransmissionID != "" {
		fns = append(fns, func() error {
			_, err := s.receipts.UpdateOne(ctx, bson.M{"_id": r.TransmissionID, "tx": tx, "p": true}, set)
			return err
		})
	}
	_ = sideBySide(fns...)
}

func (s *Store) newDelDoc(d hub.Delivery, pending bool, tx string, now time.Time) delDoc {
	d.State, d.Attempts = hub.DeliveryReady, 0
	return delDoc{ID: d.ID, Msg: d.MessageUUID, Q: d.Queue, S: d.Seq, Av: d.AvailableAt, P: pending, Tx: tx, PT: now, D: d}
}

func newRcptDoc(r hub.Receipt, pending bool, tx string, now time.Time) rcptDoc {
	return rcptDoc{ID: r.TransmissionID, Sys: r.SystemID, Msg: r.MessageUUID, T: r.Time, P: pending, Tx: tx, PT: now, R: r}
}

func (s *Store) GetMessage(ctx context.Context, uuid string) (hub.Message, error) {
	d, ok, err := findOne[msgDoc](ctx, s.messages, bson.M{"_id": uuid, "c": true}, options.FindOne().SetProjection(msgOnly))
	if err == nil && !ok {
		err = hub.Errorf(hub.NotFound, "message %s not found", uuid)
	}
	return d.M, err
}

// GetMessages reads the committed messages of uuids in one query (per
// 1,000), without their content.
func (s *Store) GetMessages(ctx context.Context, uuids []string) (map[string]hub.Message, error) {
	return findByIDs(ctx, s.messages, uuids, bson.M{"c": true}, func(d msgDoc) (string, hub.Message) { return d.ID, d.M },
		options.Find().SetProjection(msgWithoutContent))
}

// SetMessageState is a single-field update of a committed message. On
// FerretDB concurrent updates of one message are last-writer-wins; state
// changes (recall, release) are rare and idempotent.
func (s *Store) SetMessageState(ctx context.Context, uuid string, st hub.MessageState) error {
	res, err := s.messages.UpdateOne(ctx, bson.M{"_id": uuid, "c": true}, bson.M{"$set": bson.M{"m.state": st}})
	if err != nil {
		return translate(err, "set state of message %s", uuid)
	}
	if res.MatchedCount == 0 {
		return hub.Errorf(hub.NotFound, "message %s not found", uuid)
	}
	return nil
}

func (s *Store) DeleteMessage(ctx context.Context, uuid string) error {
	_, err := s.messages.DeleteOne(ctx, bson.M{"_id": uuid, "c": true})
	return translate(err, "delete message %s", uuid)
}

func (s *Store) ListMessagesBySender(ctx context.Context, senderCVR, after string, limit int) ([]hub.Message, error) {
	if limit <= 0 {
		limit = 100
	}
	f := bson.M{"sender": senderCVR, "c": true}
	if after != "" {
		a, ok, err := findOne[msgDoc](ctx, s.messages, bson.M{"_id": after}, options.FindOne().SetProjection(bson.M{"rcv": 1}))
		if err != nil {
			return nil, err
		}
		if ok {
			f["$or"] = bson.A{bson.M{"rcv": bson.M{"$lt": a.Rcv}}, bson.M{"rcv": a.Rcv, "_id": bson.M{"$lt": after}}}
		}
	}
	docs, err := findAll[msgDoc](ctx, s.messages, f, options.Find().SetSort(sortBy("-rcv", "-_id")).SetLimit(int64(limit)).SetProjection(msgOnly))
	out := make([]hub.Message, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.M)
	}
	return out, err
}

// --- receipts

func (s *Store) PutReceipt(ctx context.Context, r hub.Receipt) error {
	if r.TransmissionID == "" {
		return hub.Errorf(hub.Invalid, "receipt without TransmissionID")
	}
	return upsert(ctx, s.receipts, bson.M{"_id": r.TransmissionID}, newRcptDoc(r, false, "", time.Now()), "put receipt "+r.TransmissionID)
}

func (s *Store) receiptsWhere(ctx context.Context, f bson.M, opts ...options.Lister[options.FindOptions]) ([]hub.Receipt, error) {
	docs, err := findAll[rcptDoc](ctx, s.receipts, f, opts...)
	if err != nil {
		return nil, err
	}
	docs, err = visible(ctx, s, docs, rcptPending)
	out := make([]hub.Receipt, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.R)
	}
	return out, err
}

func (s *Store) GetReceipt(ctx context.Context, systemID, transmissionID string) (hub.Receipt, error) {
	rs, err := s.receiptsWhere(ctx, bson.M{"_id": transmissionID, "sys": systemID})
	if err == nil && len(rs) == 0 {
		err = hub.Errorf(hub.NotFound, "receipt %s not found", transmissionID)
	}
	if err != nil {
		return hub.Receipt{}, err
	}
	return rs[0], nil
}

func (s *Store) ReceiptFor(ctx context.Context, systemID, messageUUID string) (hub.Receipt, error) {
	if messageUUID == "" {
		// Receipts of entries too broken to name a message are no
		// message's receipt.
		return hub.Receipt{}, hub.Errorf(hub.NotFound, "no receipt for a message without UUID")
	}
	rs, err := s.receiptsWhere(ctx, bson.M{"sys": systemID, "msg": messageUUID}, options.Find().SetSort(sortBy("-t", "-_id")))
	if err == nil && len(rs) == 0 {
		err = hub.Errorf(hub.NotFound, "no receipt for message %s", messageUUID)
	}
	if err != nil {
		return hub.Receipt{}, err
	}
	return rs[0], nil
}

func (s *Store) ListReceipts(ctx context.Context, systemID, after string, limit int) ([]hub.Receipt, error) {
	if limit <= 0 {
		limit = 100
	}
	f := bson.M{"sys": systemID}
	if after != "" {
		a, ok, err := findOne[rcptDoc](ctx, s.receipts, bson.M{"_id": after, "sys": systemID})
		if err != nil {
			return nil, err
		}
		if ok {
			f["$or"] = bson.A{bson.M{"t": bson.M{"$gt": a.T}}, bson.M{"t": a.T, "_id": bson.M{"$gt": after}}}
		}
	}
	return s.receiptsWhere(ctx, f, options.Find().SetSort(sortBy("t", "_id")).SetLimit(int64(limit)))
}

func (s *Store) DeleteReceipt(ctx context.Context, systemID, transmissionID string) error {
	_, err := s.receipts.DeleteOne(ctx, bson.M{"_id": transmissionID, "sys": systemID})
	return translate(err, "delete receipt %s", transmissionID)
}
