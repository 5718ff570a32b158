package mongo

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/posthub/posthub/hub"
)

// msgDoc is a message. C is false while its PutMessage is under way
// (the UUID is claimed but nothing of it is visible); Tx identifies that
// PutMessage, so that its deliveries and receipt can be told from leftovers.
type msgDoc struct {
	ID      string      `bson:"_id"`
	C       bool        `bson:"c"`
	Tx      string      `bson:"tx"`
	Claimed time.Time   `bson:"claimed"` // wall clock of the claim
	Sender  string      `bson:"sender"`
	Rcv     time.Time   `bson:"rcv"`
	M       hub.Message `bson:"m"`
}

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
// instant, without a transaction:
//
//  1. claim the UUID: insert the message document with c=false (the
//     unique _id makes exactly one of concurrent PutMessages proceed; the
//     others get Conflict and write nothing);
//  2. insert the deliveries and the receipt with p=true and the claim's tx
//     (invisible: readers show a p=true document only when its message is
//     committed with the same tx);
//  3. commit: set c=true on the message document (a single-document write;
//     only the claimant writes this document);
//  4. clear p on the deliveries and the receipt (an optimisation: until
//     then readers join them against the message; Repair clears it too).
//
// A crash before 3 leaves an invisible claim; Repair (and a later
// PutMessage of the same UUID) removes its documents, then the claim, once
// it is older than the grace period. A PutMessage that took longer than
// half the grace period undoes itself instead of committing, so Repair
// never removes the documents of a PutMessage that can still commit.
func (s *Store) PutMessage(ctx context.Context, m hub.Message, ds []hub.Delivery, r hub.Receipt) error {
	if m.UUID == "" {
		return hub.Errorf(hub.Invalid, "message without UUID")
	}
	start := time.Now()
	tx := randomID()
	claim := msgDoc{ID: m.UUID, Tx: tx, Claimed: start, Sender: m.SenderCVR, Rcv: m.Received, M: m}
	if err := s.claim(ctx, claim); err != nil {
		return err
	}
	undo := func(cause error) error {
		// Use a fresh context: the caller's may be what failed.
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = s.abort(cctx, m.UUID, tx)
		return cause
	}
	if len(ds) > 0 {
		docs := make([]any, len(ds))
		for i := range ds {
			ds[i].Seq = s.nextSeq()
			docs[i] = s.newDelDoc(ds[i], true, tx, start)
		}
		if _, err := s.deliveries.InsertMany(ctx, docs); err != nil {
			if isDup(err) {
				return undo(hub.Wrap(hub.Conflict, err, "a delivery of message %s exists", m.UUID))
			}
			return undo(translate(err, "store deliveries of %s", m.UUID))
		}
	}
	if r.TransmissionID != "" {
		if _, err := s.receipts.InsertOne(ctx, newRcptDoc(r, true, tx, start)); err != nil {
			if isDup(err) {
				return undo(hub.Wrap(hub.Conflict, err, "receipt %s exists", r.TransmissionID))
			}
			return undo(translate(err, "store receipt of %s", m.UUID))
		}
	}
	if time.Since(start) > s.grace/2 {
		return undo(hub.Errorf(hub.Unavailable, "storing message %s took too long", m.UUID))
	}
	res, err := s.messages.UpdateOne(ctx, bson.M{"_id": m.UUID, "tx": tx, "c": false}, bson.M{"$set": bson.M{"c": true}})
	if err != nil {
		// The commit may or may not have landed; Repair resolves either way
		// (a committed message keeps its documents, an uncommitted one
		// loses them after the grace period).
		return translate(err, "commit message %s", m.UUID)
	}
	if res.MatchedCount == 0 {
		return undo(hub.Errorf(hub.Unavailable, "message %s claim was removed before its commit", m.UUID))
	}
	s.settleIDs(ctx, tx, ds, r)
	return nil
}

// PutMessageWith stores the message as PutMessage does, then its events
// and counters side by side: MongoDB without transactions cannot make them
// one step, and this order can lose a crash's events, never a message.
func (s *Store) PutMessageWith(ctx context.Context, m hub.Message, ds []hub.Delivery, r hub.Receipt, evs []hub.Event, cs []hub.Counter) error {
	for _, ev := range evs {
		if ev.ID == "" {
			return hub.Errorf(hub.Invalid, "event without ID")
		}
	}
	if err := s.PutMessage(ctx, m, ds, r); err != nil {
		return err
	}
	var cerr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cerr = s.AddCounters(ctx, cs)
	}()
	eerr := s.AppendEvents(ctx, evs)
	wg.Wait()
	// The message is stored: what follows is not the caller's failure.
	if err := errors.Join(eerr, cerr); err != nil {
		s.log().Warn("mongo: events or counters of a stored message not written", "message", m.UUID, "error", err)
	}
	return nil
}

// claim inserts the uncommitted message document. A claim left by a
// PutMessage that died more than the grace period ago is undone first.
func (s *Store) claim(ctx context.Context, doc msgDoc) error {
	for try := 0; ; try++ {
		_, err := s.messages.InsertOne(ctx, doc)
		if err == nil {
			return nil
		}
		if !isDup(err) {
			return translate(err, "claim message %s", doc.ID)
		}
		old, ok, ferr := findOne[msgDoc](ctx, s.messages, bson.M{"_id": doc.ID})
		if ferr != nil {
			return ferr
		}
		if try > 0 || (ok && (old.C || time.Since(old.Claimed) < s.grace)) {
			return hub.Wrap(hub.Conflict, err, "message %s exists", doc.ID)
		}
		if ok {
			if err := s.abort(ctx, old.ID, old.Tx); err != nil {
				return err
			}
		}
	}
}

// abort removes an uncommitted PutMessage: its deliveries and receipt
// first, the claim last, so a claim never disappears while documents of
// its tx remain.
func (s *Store) abort(ctx context.Context, uuid, tx string) error {
	if _, err := s.deliveries.DeleteMany(ctx, bson.M{"msg": uuid, "tx": tx, "p": true}); err != nil {
		return translate(err, "undo deliveries of %s", uuid)
	}
	if _, err := s.receipts.DeleteMany(ctx, bson.M{"msg": uuid, "tx": tx, "p": true}); err != nil {
		return translate(err, "undo receipt of %s", uuid)
	}
	_, err := s.messages.DeleteOne(ctx, bson.M{"_id": uuid, "tx": tx, "c": false})
	return translate(err, "undo claim of %s", uuid)
}

// settle clears the pending flag of a committed message's documents.
func (s *Store) settle(ctx context.Context, uuid, tx string) {
	f := bson.M{"msg": uuid, "tx": tx, "p": true}
	set := bson.M{"$set": bson.M{"p": false}}
	_, _ = s.deliveries.UpdateMany(ctx, f, set)
	_, _ = s.receipts.UpdateMany(ctx, f, set)
}

// settleIDs is settle for documents whose IDs are known: updates by _id,
// which FerretDB answers without scanning the collection.
func (s *Store) settleIDs(ctx context.Context, tx string, ds []hub.Delivery, r hub.Receipt) {
	set := bson.M{"$set": bson.M{"p": false}}
	for _, d := range ds {
		_, _ = s.deliveries.UpdateOne(ctx, bson.M{"_id": d.ID, "tx": tx, "p": true}, set)
	}
	if r.TransmissionID != "" {
		_, _ = s.receipts.UpdateOne(ctx, bson.M{"_id": r.TransmissionID, "tx": tx, "p": true}, set)
	}
}

func (s *Store) newDelDoc(d hub.Delivery, pending bool, tx string, now time.Time) delDoc {
	d.State, d.Attempts = hub.DeliveryReady, 0
	return delDoc{ID: d.ID, Msg: d.MessageUUID, Q: d.Queue, S: d.Seq, Av: d.AvailableAt, P: pending, Tx: tx, PT: now, D: d}
}

func newRcptDoc(r hub.Receipt, pending bool, tx string, now time.Time) rcptDoc {
	return rcptDoc{ID: r.TransmissionID, Sys: r.SystemID, Msg: r.MessageUUID, T: r.Time, P: pending, Tx: tx, PT: now, R: r}
}

func (s *Store) GetMessage(ctx context.Context, uuid string) (hub.Message, error) {
	d, ok, err := findOne[msgDoc](ctx, s.messages, bson.M{"_id": uuid, "c": true})
	if err == nil && !ok {
		err = hub.Errorf(hub.NotFound, "message %s not found", uuid)
	}
	return d.M, err
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
	docs, err := findAll[msgDoc](ctx, s.messages, f, options.Find().SetSort(sortBy("-rcv", "-_id")).SetLimit(int64(limit)))
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
	_, err := s.receipts.ReplaceOne(ctx, bson.M{"_id": r.TransmissionID}, newRcptDoc(r, false, "", time.Now()), options.Replace().SetUpsert(true))
	return translate(err, "put receipt %s", r.TransmissionID)
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
