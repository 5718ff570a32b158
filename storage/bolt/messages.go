package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posthub/posthub/hub"
)

// messageRec keeps the fields hub.Message hides from JSON. Inline content
// lives in its own append-only bucket under ContentSeq, so that the record
// stays small and large values are written once at the end of the file.
type messageRec struct {
	hub.Message
	ContentKey string `json:"contentKey,omitempty"`
	ContentSeq uint64 `json:"contentSeq,omitempty"`
}

type receiptRec struct {
	hub.Receipt
	SystemID string `json:"systemId"`
}

func (r receiptRec) value() hub.Receipt {
	v := r.Receipt
	v.SystemID = r.SystemID
	return v
}

// leaseRec is the last lease of a delivery; it is kept after expiry or
// release so that epochs keep increasing.
type leaseRec struct {
	hub.Lease
	Released bool `json:"released,omitempty"`
	// read is what the claim decoded (see claimRead); nil if nothing.
	read *claimRead
}

func (l leaseRec) live(now time.Time) bool { return !l.Released && now.Before(l.Expires) }

func getMessage(tx *bolt.Tx, uuid string) (messageRec, bool, error) {
	r, _, ok, err := getMessageRaw(tx, uuid)
	return r, ok, err
}

// getMessageRaw is getMessage that also returns the stored bytes (valid
// in tx only).
func getMessageRaw(tx *bolt.Tx, uuid string) (messageRec, []byte, bool, error) {
	var r messageRec
	if strings.ContainsRune(uuid, 0) {
		return r, nil, false, nil // such a key would name a receipt index entry
	}
	raw := tx.Bucket(bMessages).Get([]byte(uuid))
	if raw == nil {
		return r, nil, false, nil
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, nil, false, fmt.Errorf("decode %s/%q: %w", "record", uuid, err)
	}
	return r, raw, true, nil
}

// getMessageFor is getMessage for an acknowledgement: what the claim
// decoded when the record is still those bytes (see claimRead).
func getMessageFor(tx *bolt.Tx, uuid string, cr *claimRead) (messageRec, bool, error) {
	if cr != nil && cr.msgRaw != nil && cr.msg.UUID == uuid && !strings.ContainsRune(uuid, 0) &&
		bytes.Equal(tx.Bucket(bMessages).Get([]byte(uuid)), cr.msgRaw) {
		r := cr.msg
		r.Attrs = maps.Clone(r.Attrs)
		return r, true, nil
	}
	return getMessage(tx, uuid)
}

func (s *Store) PutMessage(ctx context.Context, m hub.Message, ds []hub.Delivery, r hub.Receipt) error {
	return s.PutMessageWith(ctx, m, ds, r, nil, nil)
}

// PutMessageWith is PutMessage that also appends the message's first events
// and adds its counters in the same transaction (one transaction).
func (s *Store) PutMessageWith(ctx context.Context, m hub.Message, ds []hub.Delivery, r hub.Receipt, evs []hub.Event, cs []hub.Counter) error {
	if err := checkEvents(evs); err != nil {
		return err
	}
	if m.UUID == "" || strings.ContainsRune(m.UUID, 0) {
		return hub.Errorf(hub.Invalid, "message without UUID, or with NUL in it")
	}
	if err := hub.CheckDeliveries(ds); err != nil {
		return err
	}
	if err := hub.CheckKeys(m.UUID, m.SenderCVR, r.SystemID, r.TransmissionID); err != nil {
		return err
	}
	for _, d := range ds {
		if d.ID == "" || d.Queue == "" || strings.ContainsRune(d.ID, 0) {
			return hub.Errorf(hub.Invalid, "delivery without ID or queue, or with NUL in its ID")
		}
		if d.MessageUUID != "" && d.MessageUUID != m.UUID {
			return hub.Errorf(hub.Invalid, "delivery %s is of message %s, not %s", d.ID, d.MessageUUID, m.UUID)
		}
		if err := keyable(d.ID, d.Queue); err != nil {
			return err
		}
	}
	// Refused now rather than after the accept log has acknowledged the
	// write: bbolt would refuse the keys when the log is applied.
	if err := keyable(m.UUID, m.SenderCVR, r.SystemID, r.TransmissionID); err != nil {
		return err
	}
	for _, ev := range evs {
		if err := keyable(ev.ID); err != nil {
			return err
		}
	}
	w, err := encodeMessageWrite(m, ds, r, evs, cs)
	if err != nil {
		return err
	}
	if s.alog != nil {
		if err := s.alog.put(ctx, &logEntry{w: w}, func(tx *bolt.Tx) error { return messageConflict(tx, m.UUID, ds) }); err != nil {
			return err
		}
	} else if err := s.update(ctx, func(tx *bolt.Tx) error { return putMessageTx(tx, w, true) }); err != nil {
		return err
	}
	for i := range ds {
		ds[i].Seq = w.ds[i].Seq
	}
	return nil
}

// maxIDLen bounds the identifiers that become (parts of) bbolt keys, well
// below bbolt's limit of 32 KiB per key.
const maxIDLen = 1024

func keyable(ids ...string) error {
	for _, id := range ids {
		if len(id) > maxIDLen {
			return hub.Errorf(hub.Invalid, "identifier %.40q… is longer than %d bytes", id, maxIDLen)
		}
	}
	return nil
}

// messageConflict is PutMessage's Conflict: the UUID or a delivery ID is taken.
func messageConflict(tx *bolt.Tx, uuid string, ds []hub.Delivery) error {
	g := getters{tx: tx}
	if g.get(bMessages, []byte(uuid)) != nil {
		return hub.Errorf(hub.Conflict, "message %s exists", uuid)
	}
	for _, d := range ds {
		if g.deliveryRaw(d.ID) != nil {
			return hub.Errorf(hub.Conflict, "delivery %s exists", d.ID)
		}
	}
	return nil
}

// messageWrite is PutMessageWith's (or, without a message, AddDeliveries')
// write with its records encoded ahead, once: the accept log stores these
// bytes and its apply puts them into bbolt as they are.
type messageWrite struct {
	m     hub.Message // UUID "" for deliveries alone; Content goes to the content bucket
	rec   []byte      // the messageRec JSON without ContentSeq (added by putMessageTx)
	ds    []hub.Delivery
	dsRaw [][]byte    // the deliveries' JSON, once their Seqs are set (setSeqs)
	r     hub.Receipt // TransmissionID "": none
	rRaw  []byte
	evs   []hub.Event
	evRaw [][]byte
	cs    []hub.Counter
	csRaw []byte // cs as the accept log keeps them
}

func encodeMessageWrite(m hub.Message, ds []hub.Delivery, r hub.Receipt, evs []hub.Event, cs []hub.Counter) (*messageWrite, error) {
	// The caller's slices are not kept: the accept log applies them after
	// PutMessageWith has returned.
	w := &messageWrite{m: m, ds: newDeliveries(m.UUID, ds), r: r, evs: slices.Clone(evs), cs: slices.Clone(cs)}
	rec := messageRec{Message: m, ContentKey: m.ContentKey}
	rec.Content = nil
	var err error
	if w.rec, err = marshalMessageRec(&rec); err != nil {
		return nil, hub.Wrap(hub.Internal, err, "bolt: encode message")
	}
	if r.TransmissionID != "" {
		if w.r.MessageUUID == "" {
			w.r.MessageUUID = m.UUID
		}
		if w.rRaw, err = marshalReceiptRec(&receiptRec{Receipt: w.r, SystemID: w.r.SystemID}); err != nil {
			return nil, hub.Wrap(hub.Internal, err, "bolt: encode receipt")
		}
	}
	if w.evRaw, err = pendingJSON(evs); err != nil {
		return nil, hub.Wrap(hub.Internal, err, "bolt: encode events")
	}
	if w.csRaw, err = marshalCounters(w.cs); err != nil {
		return nil, hub.Wrap(hub.Internal, err, "bolt: encode counters")
	}
	return w, nil
}

// newDeliveries copies ds for a write: of message uuid (when not ""), and
// READY unless a state is given.
func newDeliveries(uuid string, ds []hub.Delivery) []hub.Delivery {
	out := slices.Clone(ds)
	for i := range out {
		if uuid != "" {
			out[i].MessageUUID = uuid
		}
		if out[i].State == "" {
			out[i].State = hub.DeliveryReady
		}
	}
	return out
}

// setSeqs gives the deliveries Seqs from next and encodes them.
func (w *messageWrite) setSeqs(next func() (uint64, error)) error {
	w.dsRaw = make([][]byte, len(w.ds))
	for i := range w.ds {
		seq, err := next()
		if err != nil {
			return err
		}
		w.ds[i].Seq = int64(seq)
		if w.dsRaw[i], err = marshalDelivery(&w.ds[i]); err != nil {
			return fmt.Errorf("encode delivery %s: %w", w.ds[i].ID, err)
		}
	}
	return nil
}

// putMessageTx checks for conflicts before it writes anything. With
// assign the deliveries take the bucket's next sequences; otherwise they
// keep the Seqs the accept log gave them.
func putMessageTx(tx *bolt.Tx, w *messageWrite, assign bool) error {
	m := w.m
	if err := messageConflict(tx, m.UUID, w.ds); err != nil {
		return err
	}
	rec := w.rec
	if len(m.Content) > 0 {
		cb := bk(tx, bContent)
		seq, err := cb.NextSequence()
		if err != nil {
			return err
		}
		if err := cb.Put(u64(seq), m.Content); err != nil {
			return err
		}
		// ContentSeq is omitted when 0, so the encoded record ends with
		// its last field: add it there.
		// One allocation at the final size (the record is logged and
		// shared, so it is copied, never appended to in place).
		const field = `,"contentSeq":`
		out := make([]byte, 0, len(rec)-1+len(field)+20+1)
		out = append(append(out, rec[:len(rec)-1]...), field...)
		rec = append(strconv.AppendUint(out, seq, 10), '}')
	}
	if err := bk(tx, bMessages).Put([]byte(m.UUID), rec); err != nil {
		return err
	}
	if err := bk(tx, bMsgSender).Put(cat(prefix(m.SenderCVR), tkey(m.Received), []byte(m.UUID)), nil); err != nil {
		return err
	}
	if assign {
		if err := w.setSeqs(tx.Bucket(bDeliveries).NextSequence); err != nil {
			return err
		}
	}
	for i, d := range w.ds {
		if err := addDeliveryAt(tx, d, w.dsRaw[i]); err != nil {
			return err
		}
	}
	if w.r.TransmissionID != "" {
		if err := putReceiptWith(tx, w.r, w.rRaw); err != nil {
			return err
		}
	}
	if err := appendEncoded(tx, w.evs, w.evRaw); err != nil {
		return err
	}
	return addCounters(tx, w.cs)
}

func (s *Store) GetMessage(ctx context.Context, uuid string) (hub.Message, error) {
	var m hub.Message
	// Not behind the barrier: a message the accept log holds is answered
	// from it, and one it no longer holds is in bbolt (see acceptlog.go).
	if lm, ok, err := s.loggedMessage(ctx, uuid); ok || err != nil {
		return lm, err
	}
	err := s.viewDirect(ctx, func(tx *bolt.Tx) (err error) {
		m, err = readMessage(tx, uuid)
		return err
	})
	return m, err
}

// loggedMessage is the message as the accept log holds it, unapplied
// (false when it holds none).
func (s *Store) loggedMessage(ctx context.Context, uuid string) (hub.Message, bool, error) {
	if s.alog == nil {
		return hub.Message{}, false, nil
	}
	return s.alog.message(ctx, uuid, true)
}

// readMessage is GetMessage's read of bbolt: the record with its inline
// content copied out of the transaction. NotFound when it is not there.
func readMessage(tx *bolt.Tx, uuid string) (hub.Message, error) {
	r, ok, err := getMessage(tx, uuid)
	if err != nil {
		return hub.Message{}, err
	}
	if !ok {
		return hub.Message{}, notFound("message", uuid)
	}
	return messageOf(tx, r), nil
}

// messageOf is the message of a record, its inline content copied out of
// tx.
func messageOf(tx *bolt.Tx, r messageRec) hub.Message {
	m := r.Message
	m.ContentKey = r.ContentKey
	if r.ContentSeq != 0 {
		// nil once the last delivery was acknowledged (AckWith).
		m.Content = bytes.Clone(tx.Bucket(bContent).Get(u64(r.ContentSeq)))
	}
	return m
}

// GetMessages returns the messages of uuids that exist, without content.
func (s *Store) GetMessages(ctx context.Context, uuids []string) (map[string]hub.Message, error) {
	out := make(map[string]hub.Message, len(uuids))
	var rest []string
	for _, u := range uuids {
		if s.alog != nil {
			lm, ok, err := s.alog.message(ctx, u, false)
			if err != nil {
				return nil, err
			}
			if ok {
				out[u] = lm
				continue
			}
		}
		rest = append(rest, u)
	}
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		for _, u := range rest {
			r, ok, err := getMessage(tx, u)
			if err != nil {
				return err
			}
			if ok {
				m := r.Message
				m.ContentKey, m.Content = r.ContentKey, nil
				out[u] = m
			}
		}
		return nil
	})
	return out, err
}

func (s *Store) SetMessageState(ctx context.Context, uuid string, st hub.MessageState) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		r, ok, err := getMessage(tx, uuid)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("message", uuid)
		}
		r.State = st
		return putJSON(bk(tx, bMessages), []byte(uuid), r)
	})
}

func (s *Store) DeleteMessage(ctx context.Context, uuid string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		r, ok, err := getMessage(tx, uuid)
		if err != nil || !ok {
			return err
		}
		if r.ContentSeq != 0 {
			if err := bk(tx, bContent).Delete(u64(r.ContentSeq)); err != nil {
				return err
			}
		}
		if err := bk(tx, bMsgSender).Delete(cat(prefix(r.SenderCVR), tkey(r.Received), []byte(uuid))); err != nil {
			return err
		}
		return bk(tx, bMessages).Delete([]byte(uuid))
	})
}

func (s *Store) ListMessagesBySender(ctx context.Context, senderCVR, after string, limit int) ([]hub.Message, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []hub.Message
	err := s.view(ctx, func(tx *bolt.Tx) error {
		p := prefix(senderCVR)
		c := tx.Bucket(bMsgSender).Cursor()
		var k []byte
		if after == "" {
			// Position after the prefix's last key, then step back.
			upper := append(bytes.Clone(p[:len(p)-1]), 1)
			if k, _ = c.Seek(upper); k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
		} else {
			r, ok, err := getMessage(tx, after)
			if err != nil {
				return err
			}
			if !ok || r.SenderCVR != senderCVR {
				return hub.Errorf(hub.Invalid, "unknown paging cursor %q", after)
			}
			k, _ = c.Seek(cat(p, tkey(r.Received), []byte(after)))
			if k != nil {
				k, _ = c.Prev()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, p) && len(out) < limit; k, _ = c.Prev() {
			uuid := string(k[len(p)+12:])
			r, ok, err := getMessage(tx, uuid)
			if err != nil {
				return err
			}
			if ok {
				m := r.Message
				m.ContentKey = r.ContentKey
				out = append(out, m)
			}
		}
		return nil
	})
	return out, err
}

// addDeliveryAt stores a new delivery, encoded as raw, with the Seq it
// carries, where deliveryPlace says, and keeps the deliveries bucket's
// sequence at or above it.
func addDeliveryAt(tx *bolt.Tx, d hub.Delivery, raw []byte) error {
	db := bk(tx, bDeliveries)
	seq := uint64(d.Seq)
	if seq > db.Sequence() {
		if err := db.SetSequence(seq); err != nil {
			return err
		}
	}
	b, k := deliveryPlace(d)
	if err := bk(tx, b).Put(k, raw); err != nil {
		return err
	}
	if err := bk(tx, bDelQueue).Put(cat(prefix(d.Queue), u64(seq)), []byte(d.ID)); err != nil {
		return err
	}
	if bytes.Equal(b, bDeliveries) {
		if err := db.Put(indexKey(d.MessageUUID, d.ID), nil); err != nil {
			return err
		}
	}
	if d.State != hub.DeliveryParked {
		return addQueueCount(tx, d.Queue, 1)
	}
	return nil
}

func addQueueCount(tx *bolt.Tx, queue string, n int64) error {
	b := bk(tx, bQueueCount)
	var cur int64
	if v := b.Get([]byte(queue)); v != nil {
		cur = int64(readU64(v))
	}
	cur += n
	if cur <= 0 {
		return b.Delete([]byte(queue))
	}
	return b.Put([]byte(queue), u64(uint64(cur)))
}

func getDelivery(tx *bolt.Tx, id string) (hub.Delivery, error) {
	d, _, err := getDeliveryRaw(tx, id)
	return d, err
}

// getDeliveryRaw is getDelivery that also returns the stored bytes (valid
// in tx only).
func getDeliveryRaw(tx *bolt.Tx, id string) (hub.Delivery, []byte, error) {
	var d hub.Delivery
	raw := deliveryRaw(tx, id)
	if raw == nil {
		return d, nil, notFound("delivery", id)
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return d, nil, fmt.Errorf("decode %s/%q: %w", "record", id, err)
	}
	return d, raw, nil
}

// getDeliveryFor is getDelivery for an acknowledgement: what the claim
// decoded when the record is still those bytes (see claimRead).
func getDeliveryFor(tx *bolt.Tx, id string, cr *claimRead) (hub.Delivery, error) {
	if cr != nil && cr.del.ID == id && bytes.Equal(deliveryRaw(tx, id), cr.delRaw) {
		d := cr.del
		d.Meta = maps.Clone(d.Meta)
		return d, nil
	}
	return getDelivery(tx, id)
}

func (s *Store) AddDeliveries(ctx context.Context, ds []hub.Delivery) error {
	if err := hub.CheckDeliveries(ds); err != nil {
		return err
	}
	for _, d := range ds {
		if d.ID == "" || d.Queue == "" || d.MessageUUID == "" || strings.ContainsRune(d.ID, 0) || strings.ContainsRune(d.MessageUUID, 0) {
			return hub.Errorf(hub.Invalid, "delivery without ID, queue or message, or with NUL in them")
		}
		if err := keyable(d.ID, d.Queue, d.MessageUUID); err != nil {
			return err
		}
	}
	w := &messageWrite{ds: newDeliveries("", ds)}
	skipStored := func(tx *bolt.Tx) {
		w.ds = slices.DeleteFunc(w.ds, func(d hub.Delivery) bool { return deliveryRaw(tx, d.ID) != nil })
	}
	if s.alog != nil {
		return s.alog.put(ctx, &logEntry{w: w}, func(tx *bolt.Tx) error { skipStored(tx); return nil })
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		skipStored(tx)
		if err := w.setSeqs(tx.Bucket(bDeliveries).NextSequence); err != nil {
			return err
		}
		return addDeliveriesTx(tx, w)
	})
}

// addDeliveriesTx stores AddDeliveries' deliveries (Seqs set): those
// stored meanwhile, by an earlier apply of the same log entry, or earlier
// in the same call are skipped.
func addDeliveriesTx(tx *bolt.Tx, w *messageWrite) error {
	g := getters{tx: tx}
	for i, d := range w.ds {
		if g.deliveryRaw(d.ID) != nil {
			continue
		}
		if err := addDeliveryAt(tx, d, w.dsRaw[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) GetDelivery(ctx context.Context, id string) (hub.Delivery, error) {
	var d hub.Delivery
	err := s.view(ctx, func(tx *bolt.Tx) (err error) {
		d, err = getDelivery(tx, id)
		return err
	})
	s.leases.attempts(&d)
	return d, err
}

// available reports why a delivery cannot be leased now ("" if it can).
func (s *Store) available(d hub.Delivery, now time.Time) string {
	switch {
	case d.State == hub.DeliveryParked:
		return "parked"
	case d.AvailableAt.After(now):
		return "held"
	case s.leases.live(d.ID, now):
		return "leased"
	}
	return ""
}

// scanQueue calls fn for the queue's deliveries with Seq > afterSeq in order.
func scanQueue(tx *bolt.Tx, queue string, afterSeq int64, fn func(d hub.Delivery) (bool, error)) error {
	p := prefix(queue)
	c := tx.Bucket(bDelQueue).Cursor()
	start := uint64(0)
	if afterSeq > 0 {
		start = uint64(afterSeq) + 1
	}
	for k, id := c.Seek(cat(p, u64(start))); k != nil && bytes.HasPrefix(k, p); k, id = c.Next() {
		d, err := getDelivery(tx, string(id))
		if err != nil {
			return err
		}
		if more, err := fn(d); err != nil || !more {
			return err
		}
	}
	return nil
}

func (s *Store) ListQueue(ctx context.Context, queue string, afterSeq int64, limit int, onlyAvailable bool, now time.Time) ([]hub.Delivery, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []hub.Delivery
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return scanQueue(tx, queue, afterSeq, func(d hub.Delivery) (bool, error) {
			if onlyAvailable && s.available(d, now) != "" {
				return true, nil
			}
			s.leases.attempts(&d)
			out = append(out, d)
			return len(out) < limit, nil
		})
	})
	return out, err
}

func (s *Store) CountQueue(ctx context.Context, queue string) (int64, error) {
	var n int64
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if v := tx.Bucket(bQueueCount).Get([]byte(queue)); v != nil {
			n = int64(readU64(v))
		}
		return nil
	})
	return n, err
}

func (s *Store) DeliveriesOf(ctx context.Context, messageUUID string) ([]hub.Delivery, error) {
	var out []hub.Delivery
	if strings.ContainsRune(messageUUID, 0) {
		return out, nil // no message has such a UUID
	}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		if err := scanPrefix(tx.Bucket(bMessages), besidePrefix(messageUUID), func(_, v []byte) (bool, error) {
			var d hub.Delivery
			if err := jsonDecode(v, &d); err != nil {
				return false, err
			}
			out = append(out, d)
			return true, nil
		}); err != nil {
			return err
		}
		beside := len(out)
		p := indexPrefix(messageUUID)
		if err := scanPrefix(tx.Bucket(bDeliveries), p, func(k, _ []byte) (bool, error) {
			d, err := getDelivery(tx, string(k[len(p):]))
			if err != nil {
				return false, err
			}
			out = append(out, d)
			return true, nil
		}); err != nil {
			return err
		}
		if beside > 0 && len(out) > beside {
			slices.SortFunc(out, func(a, b hub.Delivery) int { return strings.Compare(a.ID, b.ID) })
		}
		return nil
	})
	for i := range out {
		s.leases.attempts(&out[i])
	}
	return out, err
}

// Lease claims a delivery in the lease table (see leaseTable: leases are
// not written to the file).
func (s *Store) Lease(ctx context.Context, deliveryID, holder string, ttl time.Duration, now time.Time) (hub.Lease, error) {
	d, err := s.GetDelivery(ctx, deliveryID)
	if err != nil {
		return hub.Lease{}, err
	}
	switch why := s.available(d, now); why {
	case "", "leased":
	default:
		return hub.Lease{}, hub.Errorf(hub.Forbidden, "delivery %s is %s", deliveryID, why)
	}
	l, ok := s.leases.claim(d, holder, ttl, now)
	if !ok {
		return hub.Lease{}, hub.Errorf(hub.Conflict, "delivery %s is leased", deliveryID)
	}
	if err := s.stillThere(ctx, deliveryID); err != nil {
		return hub.Lease{}, err
	}
	return l, nil
}

// stillThere checks, after a claim, that the delivery was not acknowledged
// since it was read: an Ack forgets the lease only after its commit, so a
// read that starts after the claim sees any Ack the claim raced with. The
// lease of a delivery that is gone is dropped.
func (s *Store) stillThere(ctx context.Context, deliveryID string) error {
	return s.stillThereThen(ctx, deliveryID, nil)
}

// stillThereThen is stillThere that, when the delivery is there, also
// runs then in the same read transaction (ClaimNext reads the message
// there instead of in a transaction of its own).
func (s *Store) stillThereThen(ctx context.Context, deliveryID string, then func(tx *bolt.Tx) error) error {
	err := s.view(ctx, func(tx *bolt.Tx) error {
		// Only whether it is there: the claim decoded it already.
		if deliveryRaw(tx, deliveryID) == nil {
			return notFound("delivery", deliveryID)
		}
		if then != nil {
			return then(tx)
		}
		return nil
	})
	if hub.Is(err, hub.NotFound) {
		s.leases.drop(deliveryID)
	}
	return err
}

func (s *Store) ClaimNext(ctx context.Context, queue, holder string, ttl time.Duration, now time.Time) (hub.Claimed, error) {
	var afterSeq int64
	for {
		var (
			got   hub.Delivery
			l     hub.Lease
			found bool
			read  *claimRead
		)
		err := s.view(ctx, func(tx *bolt.Tx) error {
			// scanQueue, except that a delivery another poller holds is
			// passed over by its ID, without decoding it: with several
			// pollers on one queue the first entries are mostly leased.
			p := prefix(queue)
			c := tx.Bucket(bDelQueue).Cursor()
			for k, id := c.Seek(cat(p, u64(uint64(afterSeq)+1))); k != nil && bytes.HasPrefix(k, p); k, id = c.Next() {
				afterSeq = int64(readU64(k[len(p):]))
				if s.leases.live(string(id), now) {
					continue
				}
				d, raw, err := getDeliveryRaw(tx, string(id))
				if err != nil {
					return err
				}
				if s.available(d, now) != "" {
					continue
				}
				if l, found = s.leases.claim(d, holder, ttl, now); !found {
					continue
				}
				read = &claimRead{delRaw: bytes.Clone(raw), del: d}
				got = d
				got.Attempts = l.Attempt
				return nil
			}
			return nil
		})
		if err != nil {
			return hub.Claimed{}, err
		}
		if !found {
			return hub.Claimed{}, hub.Errorf(hub.NotFound, "nothing available in queue %s", queue)
		}
		// A message the accept log still holds is answered from it (as
		// GetMessage does); otherwise it is read in stillThere's
		// transaction, which saves a read transaction per fetch.
		m, logged, err := s.loggedMessage(ctx, got.MessageUUID)
		if err != nil {
			s.leases.release(l)
			return hub.Claimed{}, err
		}
		err = s.stillThereThen(ctx, got.ID, func(tx *bolt.Tx) error {
			if logged {
				return nil
			}
			r, raw, ok, err := getMessageRaw(tx, got.MessageUUID)
			if err != nil || !ok {
				return err // not ok: Claimed.Message's UUID "" says so
			}
			read.msgRaw, read.msg = bytes.Clone(raw), r
			m = messageOf(tx, r)
			return nil
		})
		switch {
		case err == nil:
			s.leases.remember(l, read)
			return hub.Claimed{Delivery: got, Lease: l, Message: m}, nil
		case !hub.Is(err, hub.NotFound):
			s.leases.release(l)
			return hub.Claimed{}, err
		}
		// Acknowledged since the scan read it: take the next one.
	}
}

func (s *Store) Release(ctx context.Context, l hub.Lease) error {
	if err := ctx.Err(); err != nil {
		return hub.Wrap(hub.Unavailable, err, "bolt: release abandoned")
	}
	s.leases.release(l)
	return nil
}

func (s *Store) Ack(ctx context.Context, deliveryID string, now time.Time) (hub.AckResult, error) {
	return s.AckWith(ctx, deliveryID, "", now, nil)
}

// AckWith is Ack that also stores the sender's receipt and appends events
// in the same transaction (one transaction). When the acknowledged
// delivery was the message's last reference, inline content is deleted
// with it; the message record stays (idempotent resubmission needs it).
func (s *Store) AckWith(ctx context.Context, deliveryID, _ string, now time.Time, record hub.AckRecord) (hub.AckResult, error) {
	var res hub.AckResult
	cr := s.leases.read(deliveryID)
	err := s.update(ctx, func(tx *bolt.Tx) error {
		res = hub.AckResult{}
		d, err := getDeliveryFor(tx, deliveryID, cr)
		if hub.Is(err, hub.NotFound) {
			res.AlreadyAcked = true
			return nil
		}
		if err != nil {
			return err
		}
		m, ok, err := getMessageFor(tx, d.MessageUUID, cr)
		if err != nil {
			return err
		}
		if record != nil {
			v := hub.AckView{Delivery: d}
			var stored storedReceipt // the sender's receipt as read here, if any
			if ok {
				msg := m.Message
				msg.ContentKey = m.ContentKey
				v.Message = &msg
				sr, found, err := senderReceiptOf(tx, msg)
				if err != nil {
					return err
				}
				if found {
					rc := sr.r
					v.SenderReceipt = &rc
					stored = sr
				}
			}
			r, evs, err := record(v)
			if err != nil {
				return err
			}
			if err := checkEvents(evs); err != nil {
				return err
			}
			if r != nil {
				// The receipt read above is the one r replaces (the usual
				// COMPLETED): putReceipt need not read and decode it again.
				var old *storedReceipt
				if stored.r.TransmissionID != "" && stored.r.TransmissionID == r.TransmissionID && stored.r.SystemID == r.SystemID {
					old = &stored
				}
				if err := putReceiptOver(tx, *r, nil, old); err != nil {
					return err
				}
			}
			if err := appendEvents(tx, evs); err != nil {
				return err
			}
		}
		if err := removeDelivery(tx, d); err != nil {
			return err
		}
		if hasDeliveries(tx, d.MessageUUID) {
			return nil
		}
		if ok && m.ArchiveUntil.After(now) {
			return nil
		}
		res.Unreferenced = true
		res.ContentKey = m.ContentKey
		if m.ContentSeq != 0 {
			// The record keeps its ContentSeq; GetMessage finds no content.
			return bk(tx, bContent).Delete(u64(m.ContentSeq))
		}
		return nil
	})
	if err == nil && !res.AlreadyAcked {
		s.leases.drop(deliveryID)
	}
	return res, err
}

// hasDeliveries reports whether message uuid has a delivery left.
func hasDeliveries(tx *bolt.Tx, uuid string) bool {
	has := func(b, p []byte) bool {
		k, _ := tx.Bucket(b).Cursor().Seek(p)
		return k != nil && bytes.HasPrefix(k, p)
	}
	return has(bMessages, besidePrefix(uuid)) || has(bDeliveries, indexPrefix(uuid))
}

func removeDelivery(tx *bolt.Tx, d hub.Delivery) error {
	b, k := deliveryPlace(d)
	if err := bk(tx, b).Delete(k); err != nil {
		return err
	}
	if err := bk(tx, bDelQueue).Delete(cat(prefix(d.Queue), u64(uint64(d.Seq)))); err != nil {
		return err
	}
	if bytes.Equal(b, bDeliveries) {
		if err := bk(tx, bDeliveries).Delete(indexKey(d.MessageUUID, d.ID)); err != nil {
			return err
		}
	}
	if d.State != hub.DeliveryParked {
		return addQueueCount(tx, d.Queue, -1)
	}
	return nil
}

// putDelivery rewrites a stored delivery where it is.
func putDelivery(tx *bolt.Tx, d hub.Delivery) error {
	b, k := deliveryPlace(d)
	return putJSON(bk(tx, b), k, d)
}

// parkReasonMeta is the Meta key under which Park records its reason.
const parkReasonMeta = "parkedReason"

func (s *Store) Park(ctx context.Context, deliveryID, reason string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		d, err := getDelivery(tx, deliveryID)
		if err != nil {
			return err
		}
		if d.State != hub.DeliveryParked {
			if err := addQueueCount(tx, d.Queue, -1); err != nil {
				return err
			}
		}
		d.State = hub.DeliveryParked
		if d.Meta == nil {
			d.Meta = map[string]string{}
		}
		d.Meta[parkReasonMeta] = reason
		s.leases.attempts(&d) // the file keeps the count the delivery was parked with
		return putDelivery(tx, d)
	})
	if err == nil {
		s.leases.end(deliveryID, false)
	}
	return err
}

func (s *Store) Unpark(ctx context.Context, deliveryID string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		d, err := getDelivery(tx, deliveryID)
		if err != nil || d.State != hub.DeliveryParked {
			return err
		}
		d.State = hub.DeliveryReady
		d.Attempts = 0
		delete(d.Meta, parkReasonMeta)
		if len(d.Meta) == 0 {
			d.Meta = nil
		}
		if err := addQueueCount(tx, d.Queue, 1); err != nil {
			return err
		}
		return putDelivery(tx, d)
	})
	if err == nil {
		s.leases.end(deliveryID, true)
	}
	return err
}

func putReceipt(tx *bolt.Tx, r hub.Receipt) error { return putReceiptWith(tx, r, nil) }

// putReceiptWith is putReceipt with the record encoded ahead (raw), or
// encoded here when raw is nil.
func putReceiptWith(tx *bolt.Tx, r hub.Receipt, raw []byte) error {
	return putReceiptOver(tx, r, raw, nil)
}

// A receipt of a stored message lives beside it, in the messages bucket
// under receiptIndexKey, as besideMark followed by its record; its entry
// in the receipts bucket is besideMark followed by the message's UUID,
// written once when it is placed there, so that a status change (the
// ack's COMPLETED) dirties the message's page and no random page of the
// receipts bucket. A receipt without a stored message (an INVALID receipt
// of a refused archive entry), and one of several of a message (see
// apartPrefix), keeps its record in the receipts bucket and the message's
// index entry, when it names it, holds its transmission ID.
// A record there begins with '{', so a receipts bucket entry tells which
// it is by its first byte; an index entry is a record beside only if it
// decodes as one of that message and system (isBeside), as a transmission
// ID beginning with NUL could otherwise pass for one.
const besideMark = 0

// storedReceipt is a receipt as read in a transaction, and where it is.
type storedReceipt struct {
	r      hub.Receipt
	beside bool
}

// besideRecord returns the receipt recorded in v, the value of the
// message's index entry for systemID, when it is a record beside the
// message rather than a transmission ID.
func besideRecord(v []byte, messageUUID, systemID string) (hub.Receipt, bool) {
	if len(v) < 2 || v[0] != besideMark || v[1] != '{' {
		return hub.Receipt{}, false
	}
	var rr receiptRec
	if err := json.Unmarshal(v[1:], &rr); err != nil || rr.SystemID != systemID || rr.MessageUUID != messageUUID || rr.TransmissionID == "" {
		return hub.Receipt{}, false
	}
	return rr.value(), true
}

// receiptOf returns systemID's receipt of message messageUUID, the one
// its index entry names: the newest (see settleReceipts).
func receiptOf(tx *bolt.Tx, systemID, messageUUID string) (storedReceipt, bool, error) {
	if !hasIndex(messageUUID) {
		return storedReceipt{}, false, nil
	}
	v := tx.Bucket(bMessages).Get(receiptIndexKey(messageUUID, systemID))
	if v == nil {
		return storedReceipt{}, false, nil
	}
	if r, ok := besideRecord(v, messageUUID, systemID); ok {
		return storedReceipt{r: r, beside: true}, true, nil
	}
	return getStoredReceipt(tx, systemID, string(v))
}

// senderReceiptOf is hub.SenderReceiptOf in tx: m's receipt as
// hub.MessageReceipt finds it, or, for a message stored before ReceiptID,
// the newest naming it (receiptOf).
func senderReceiptOf(tx *bolt.Tx, m hub.Message) (storedReceipt, bool, error) {
	if m.ReceiptID == "" {
		return receiptOf(tx, m.SenderSystemID, m.UUID)
	}
	var read []storedReceipt
	r, ok, err := hub.MessageReceipt(m, func(id string) (hub.Receipt, bool, error) {
		sr, found, err := getStoredReceipt(tx, m.SenderSystemID, id)
		if found {
			read = append(read, sr)
		}
		return sr.r, found, err
	})
	if err != nil || !ok {
		return storedReceipt{}, false, err
	}
	// r is one of those read.
	return read[slices.IndexFunc(read, func(sr storedReceipt) bool { return sr.r.TransmissionID == r.TransmissionID })], true, nil
}

// getStoredReceipt reads receipt transmissionID of systemID wherever it is.
func getStoredReceipt(tx *bolt.Tx, systemID, transmissionID string) (storedReceipt, bool, error) {
	k := key(systemID, transmissionID)
	v := tx.Bucket(bReceipts).Get(k)
	if v == nil {
		return storedReceipt{}, false, nil
	}
	if len(v) > 0 && v[0] == besideMark {
		uuid := string(v[1:])
		if r, ok := besideRecord(tx.Bucket(bMessages).Get(receiptIndexKey(uuid, systemID)), uuid, systemID); ok && r.TransmissionID == transmissionID {
			return storedReceipt{r: r, beside: true}, true, nil
		}
		return storedReceipt{}, false, fmt.Errorf("decode receipt %q: its record is not beside message %q", transmissionID, uuid)
	}
	var rr receiptRec
	if err := json.Unmarshal(v, &rr); err != nil {
		return storedReceipt{}, false, fmt.Errorf("decode %s/%q: %w", bReceipts, k, err)
	}
	return storedReceipt{r: rr.value()}, true, nil
}

// putReceiptOver is putReceiptWith given the stored receipt it replaces
// (read in tx; nil to read it here).
func putReceiptOver(tx *bolt.Tx, r hub.Receipt, raw []byte, known *storedReceipt) error {
	var old storedReceipt
	ok := known != nil
	if ok {
		old = *known
	} else {
		var err error
		if old, ok, err = getStoredReceipt(tx, r.SystemID, r.TransmissionID); err != nil {
			return err
		}
	}
	mb := bk(tx, bMessages)
	g := getters{tx: tx}
	ik := receiptIndexKey(r.MessageUUID, r.SystemID)
	indexed := hasIndex(r.MessageUUID)
	// holder is the receipt the message's index entry names before this
	// write ("" when none, so none is apart either).
	var iv []byte // the index entry before this write
	var holder string
	if indexed {
		iv = g.get(bMessages, ik)
		holder = indexedTID(iv, r.MessageUUID, r.SystemID)
	}
	sameMessage := ok && old.r.MessageUUID == r.MessageUUID
	// Beside when the message is stored, or when it already was (a
	// status change keeps its place, the message deleted or not).
	beside := indexed && (sameMessage && old.beside || g.get(bMessages, []byte(r.MessageUUID)) != nil)
	switch {
	case sameMessage:
		// A status change (COMPLETED on ack): the message index stands,
		// only the time index moves.
		if err := bk(tx, bRcptTime).Delete(cat(prefix(old.r.SystemID), tkey(old.r.Time), []byte(old.r.TransmissionID))); err != nil {
			return err
		}
	case ok:
		// The receipt names another message now: the one it named may
		// have another receipt to answer with.
		if err := deleteReceiptIndexes(tx, old); err != nil {
			return err
		}
		if hasIndex(old.r.MessageUUID) {
			if err := mb.Delete(apartKey(old.r.MessageUUID, old.r.SystemID, old.r.TransmissionID)); err != nil {
				return err
			}
		}
		if err := settleReceipts(tx, old.r.SystemID, old.r.MessageUUID); err != nil {
			return err
		}
	}
	// The index entry is written unless it stands (a status change in
	// place); a receipt of another transmission recorded there first
	// moves apart.
	stands := sameMessage && (old.beside || !beside)
	if !stands {
		if err := evictBeside(tx, r, iv); err != nil {
			return err
		}
		if holder != "" && holder != r.TransmissionID {
			if err := mb.Put(apartKey(r.MessageUUID, r.SystemID, holder), nil); err != nil {
				return err
			}
		}
		if sameMessage && holder != r.TransmissionID {
			if err := mb.Delete(apartKey(r.MessageUUID, r.SystemID, r.TransmissionID)); err != nil {
				return err
			}
		}
	}
	if err := bk(tx, bRcptTime).Put(cat(prefix(r.SystemID), tkey(r.Time), []byte(r.TransmissionID)), nil); err != nil {
		return err
	}
	if raw == nil {
		var err error
		if raw, err = marshalReceiptRec(&receiptRec{Receipt: r, SystemID: r.SystemID}); err != nil {
			return fmt.Errorf("encode receipt %s: %w", r.TransmissionID, err)
		}
	}
	if err := placeReceipt(tx, r, raw, beside, stands); err != nil {
		return err
	}
	if holder == "" {
		return nil // the message had no receipt of the system: none is apart
	}
	return settleReceipts(tx, r.SystemID, r.MessageUUID)
}

// placeReceipt writes receipt r's record (raw) and, unless it stands, its
// index entry: beside the message, or in the receipts bucket with the
// index entry naming it.
func placeReceipt(tx *bolt.Tx, r hub.Receipt, raw []byte, beside, stands bool) error {
	mb, b := bk(tx, bMessages), bk(tx, bReceipts)
	ik := receiptIndexKey(r.MessageUUID, r.SystemID)
	k := key(r.SystemID, r.TransmissionID)
	if !beside {
		if !stands && hasIndex(r.MessageUUID) {
			if err := mb.Put(ik, []byte(r.TransmissionID)); err != nil {
				return err
			}
		}
		return b.Put(k, raw)
	}
	v := make([]byte, 0, 1+len(raw))
	if err := mb.Put(ik, append(append(v, besideMark), raw...)); err != nil {
		return err
	}
	if stands {
		return nil // the receipts bucket's entry stands
	}
	p := make([]byte, 0, 1+len(r.MessageUUID))
	return b.Put(k, append(append(p, besideMark), r.MessageUUID...))
}

// hasIndex reports whether receipts naming messageUUID have an index entry
// (every UUID but "" and those a key cannot hold).
func hasIndex(messageUUID string) bool {
	return messageUUID != "" && !strings.ContainsRune(messageUUID, 0)
}

// indexedTID returns the transmission ID the index entry v of message
// messageUUID and systemID names ("" for none).
func indexedTID(v []byte, messageUUID, systemID string) string {
	if v == nil {
		return ""
	}
	if r, ok := besideRecord(v, messageUUID, systemID); ok {
		return r.TransmissionID
	}
	return string(v)
}

// A system may hold several receipts naming one message UUID: the INVALID
// receipt of a refused archive entry named after the UUID and the receipt
// of the message accepted under it, or a receipt issued anew after the
// sender deleted one. ReceiptFor answers the newest (newerReceipt), so
// the message's index entry names the newest, and each of the others has
// an entry under apartKey, next to it in the messages bucket, with its
// record in the receipts bucket. A message with one receipt (nearly all)
// has no apart entry: the accept path writes nothing more for it.

// apartPrefix starts the keys of systemID's receipts of message
// messageUUID that its index entry does not name.
func apartPrefix(messageUUID, systemID string) []byte {
	k := make([]byte, 0, len(messageUUID)+len(systemID)+3)
	return append(append(append(k, messageUUID...), 0, 'A'), append([]byte(systemID), 0)...)
}

// apartKey lists receipt transmissionID as one of them.
func apartKey(messageUUID, systemID, transmissionID string) []byte {
	return append(apartPrefix(messageUUID, systemID), transmissionID...)
}

// settleReceipts makes the index entry of systemID's receipts of message
// messageUUID name the newest of them, the one it named and the apart
// ones, and lists the others apart.
func settleReceipts(tx *bolt.Tx, systemID, messageUUID string) error {
	if !hasIndex(messageUUID) {
		return nil
	}
	mb := bk(tx, bMessages)
	p := apartPrefix(messageUUID, systemID)
	var best hub.Receipt
	var stale [][]byte
	if err := scanPrefix(mb, p, func(k, _ []byte) (bool, error) {
		sr, ok, err := getStoredReceipt(tx, systemID, string(k[len(p):]))
		switch {
		case err != nil:
			return false, err
		case !ok || sr.beside || sr.r.MessageUUID != messageUUID:
			stale = append(stale, bytes.Clone(k)) // gone, or not apart
		case best.TransmissionID == "" || hub.NewerReceipt(sr.r, best):
			best = sr.r
		}
		return true, nil
	}); err != nil {
		return err
	}
	for _, k := range stale {
		if err := mb.Delete(k); err != nil {
			return err
		}
	}
	if best.TransmissionID == "" {
		return nil
	}
	ik := receiptIndexKey(messageUUID, systemID)
	v := mb.Get(ik)
	if v != nil {
		cur, ok := besideRecord(v, messageUUID, systemID)
		curBeside := ok
		if !ok {
			sr, found, err := getStoredReceipt(tx, systemID, string(v))
			if err != nil {
				return err
			}
			cur, ok = sr.r, found && sr.r.MessageUUID == messageUUID
		}
		if ok {
			if !hub.NewerReceipt(best, cur) {
				return nil
			}
			// The holder moves apart, its record into the receipts bucket.
			if curBeside {
				if err := bk(tx, bReceipts).Put(key(systemID, cur.TransmissionID), bytes.Clone(v[1:])); err != nil {
					return err
				}
			}
			if err := mb.Put(apartKey(messageUUID, systemID, cur.TransmissionID), nil); err != nil {
				return err
			}
		}
	}
	if err := mb.Delete(apartKey(messageUUID, systemID, best.TransmissionID)); err != nil {
		return err
	}
	return mb.Put(ik, []byte(best.TransmissionID))
}

// evictBeside moves the record of another receipt that the index entry
// r's would replace (v, as read in tx) out of the messages bucket, into
// the receipts bucket.
func evictBeside(tx *bolt.Tx, r hub.Receipt, v []byte) error {
	if !hasIndex(r.MessageUUID) {
		return nil
	}
	o, ok := besideRecord(v, r.MessageUUID, r.SystemID)
	if !ok || o.TransmissionID == r.TransmissionID {
		return nil
	}
	return bk(tx, bReceipts).Put(key(o.SystemID, o.TransmissionID), bytes.Clone(v[1:]))
}

// deleteReceiptIndexes removes stored receipt sr from the message's index
// entry (with its record when beside) and from the time index; its entry
// in the receipts bucket is the caller's.
func deleteReceiptIndexes(tx *bolt.Tx, sr storedReceipt) error {
	r := sr.r
	mb, k := bk(tx, bMessages), receiptIndexKey(r.MessageUUID, r.SystemID)
	v := mb.Get(k)
	mine := string(v) == r.TransmissionID
	if !mine && sr.beside {
		o, ok := besideRecord(v, r.MessageUUID, r.SystemID)
		mine = ok && o.TransmissionID == r.TransmissionID
	}
	if mine {
		if err := mb.Delete(k); err != nil {
			return err
		}
	}
	return bk(tx, bRcptTime).Delete(cat(prefix(r.SystemID), tkey(r.Time), []byte(r.TransmissionID)))
}

func getReceipt(tx *bolt.Tx, systemID, transmissionID string) (hub.Receipt, bool, error) {
	sr, ok, err := getStoredReceipt(tx, systemID, transmissionID)
	return sr.r, ok, err
}

// receiptsMoved, in the meta bucket, says that migrateReceiptsBeside has
// moved every receipt of a stored message beside it.
var receiptsMoved = []byte("layout.receiptsBesideMessages")

// migrateReceiptsBeside moves the receipts that earlier versions kept in
// the receipts bucket beside their messages, where putReceipt puts them:
// those of a stored message that its index entry names (a receipt it no
// longer names stays apart, as it would be put now). Run in the
// transaction that opens the file (whole or not at all); it reads the
// bucket once, then marks the file so (receipts without a message stay).
// Then it lists the receipts apart (listReceiptsApart).
func migrateReceiptsBeside(tx *bolt.Tx) error {
	if err := moveReceiptsBeside(tx); err != nil {
		return err
	}
	return listReceiptsApart(tx)
}

// receiptsListed, in the meta bucket, says that listReceiptsApart has run.
var receiptsListed = []byte("layout.receiptsApartListed")

// listReceiptsApart gives every receipt that names a message UUID its
// index entry never named or no longer names (earlier versions kept only
// the last one written) its entry under apartKey, and makes each index
// entry name the newest (settleReceipts). Run in the transaction that
// opens the file, after moveReceiptsBeside; it reads the receipts bucket
// once, then marks the file so.
func listReceiptsApart(tx *bolt.Tx) error {
	meta := tx.Bucket(bMeta)
	if meta.Get(receiptsListed) != nil {
		return nil
	}
	mb := tx.Bucket(bMessages)
	type msgOf struct{ sys, uuid string }
	var apart [][]byte
	var settle []msgOf
	err := tx.Bucket(bReceipts).ForEach(func(k, v []byte) error {
		if len(v) == 0 || v[0] == besideMark {
			return nil // beside its message: what its index entry names
		}
		var rr receiptRec
		if err := json.Unmarshal(v, &rr); err != nil {
			return fmt.Errorf("decode %s/%q: %w", bReceipts, k, err)
		}
		r := rr.value()
		if !hasIndex(r.MessageUUID) || indexedTID(mb.Get(receiptIndexKey(r.MessageUUID, r.SystemID)), r.MessageUUID, r.SystemID) == r.TransmissionID {
			return nil
		}
		apart = append(apart, apartKey(r.MessageUUID, r.SystemID, r.TransmissionID))
		settle = append(settle, msgOf{r.SystemID, r.MessageUUID})
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate receipts: %w", err)
	}
	for _, k := range apart {
		if err := mb.Put(k, nil); err != nil {
			return fmt.Errorf("migrate receipts: %w", err)
		}
	}
	for _, m := range settle {
		if err := settleReceipts(tx, m.sys, m.uuid); err != nil {
			return fmt.Errorf("migrate receipts: %w", err)
		}
	}
	return meta.Put(receiptsListed, []byte{1})
}

// moveReceiptsBeside is the first step of migrateReceiptsBeside.
func moveReceiptsBeside(tx *bolt.Tx) error {
	meta := tx.Bucket(bMeta)
	if meta.Get(receiptsMoved) != nil {
		return nil
	}
	rb, mb := tx.Bucket(bReceipts), tx.Bucket(bMessages)
	type move struct{ k, ik, v, uuid []byte }
	var moves []move
	err := rb.ForEach(func(k, v []byte) error {
		if len(v) == 0 || v[0] == besideMark {
			return nil
		}
		var rr receiptRec
		if err := json.Unmarshal(v, &rr); err != nil {
			return fmt.Errorf("decode %s/%q: %w", bReceipts, k, err)
		}
		r := rr.value()
		if r.MessageUUID == "" || strings.ContainsRune(r.MessageUUID, 0) || mb.Get([]byte(r.MessageUUID)) == nil {
			return nil
		}
		ik := receiptIndexKey(r.MessageUUID, r.SystemID)
		if string(mb.Get(ik)) != r.TransmissionID {
			return nil
		}
		moves = append(moves, move{bytes.Clone(k), ik, bytes.Clone(v), []byte(r.MessageUUID)})
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate receipts: %w", err)
	}
	for _, m := range moves {
		if err := mb.Put(m.ik, append([]byte{besideMark}, m.v...)); err != nil {
			return fmt.Errorf("migrate receipts: %w", err)
		}
		if err := rb.Put(m.k, append([]byte{besideMark}, m.uuid...)); err != nil {
			return fmt.Errorf("migrate receipts: %w", err)
		}
	}
	return meta.Put(receiptsMoved, []byte{1})
}

func (s *Store) PutReceipt(ctx context.Context, r hub.Receipt) error {
	if r.TransmissionID == "" || r.SystemID == "" || strings.ContainsRune(r.MessageUUID, 0) {
		return hub.Errorf(hub.Invalid, "receipt without transmission or system ID, or with NUL in its message UUID")
	}
	return s.update(ctx, func(tx *bolt.Tx) error { return putReceipt(tx, r) })
}

func (s *Store) GetReceipt(ctx context.Context, systemID, transmissionID string) (hub.Receipt, error) {
	var r hub.Receipt
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var ok bool
		var err error
		r, ok, err = getReceipt(tx, systemID, transmissionID)
		if err == nil && !ok {
			err = notFound("receipt", transmissionID)
		}
		return err
	})
	return r, err
}

func (s *Store) ReceiptFor(ctx context.Context, systemID, messageUUID string) (hub.Receipt, error) {
	// As GetMessage: the accept log first, then bbolt without the barrier.
	// A logged message's receipt is the newest unless bbolt holds a newer
	// one naming the UUID (put before the message was accepted, stamped
	// later), which applying the entry leaves the newest too.
	var lr hub.Receipt
	var logged bool
	if s.alog != nil {
		var err error
		if lr, logged, err = s.alog.receiptFor(ctx, systemID, messageUUID); err != nil {
			return hub.Receipt{}, err
		}
	}
	var r hub.Receipt
	var ok bool
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		sr, found, err := receiptOf(tx, systemID, messageUUID)
		r, ok = sr.r, found
		return err
	})
	switch {
	case err != nil:
		return hub.Receipt{}, err
	case logged && (!ok || hub.NewerReceipt(lr, r)):
		return lr, nil
	case !ok:
		return hub.Receipt{}, hub.Errorf(hub.NotFound, "no receipt for message %s", messageUUID)
	}
	return r, nil
}

func (s *Store) ListReceipts(ctx context.Context, systemID, after string, limit int) ([]hub.Receipt, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []hub.Receipt
	err := s.view(ctx, func(tx *bolt.Tx) error {
		p := prefix(systemID)
		c := tx.Bucket(bRcptTime).Cursor()
		k, _ := c.Seek(p)
		if after != "" {
			r, ok, err := getReceipt(tx, systemID, after)
			if err != nil {
				return err
			}
			if !ok {
				return hub.Errorf(hub.Invalid, "unknown paging cursor %q", after)
			}
			start := cat(p, tkey(r.Time), []byte(after))
			if k, _ = c.Seek(start); bytes.Equal(k, start) {
				k, _ = c.Next()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, p) && len(out) < limit; k, _ = c.Next() {
			r, ok, err := getReceipt(tx, systemID, string(k[len(p)+12:]))
			if err != nil {
				return err
			}
			if ok {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

func (s *Store) DeleteReceipt(ctx context.Context, systemID, transmissionID string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		sr, ok, err := getStoredReceipt(tx, systemID, transmissionID)
		if err != nil || !ok {
			return err
		}
		if err := deleteReceiptIndexes(tx, sr); err != nil {
			return err
		}
		if err := bk(tx, bReceipts).Delete(key(systemID, transmissionID)); err != nil {
			return err
		}
		if !hasIndex(sr.r.MessageUUID) {
			return nil
		}
		// An older receipt of the message, if any, answers for it now.
		if err := bk(tx, bMessages).Delete(apartKey(sr.r.MessageUUID, systemID, transmissionID)); err != nil {
			return err
		}
		return settleReceipts(tx, systemID, sr.r.MessageUUID)
	})
}
