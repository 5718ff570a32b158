package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posthub/posthub/hub"
)

// Event ids map to 'p'+pending key or 's'+seq, so that appends of an id
// that is pending or sealed are skipped and a sealed id is never sealed twice.
// An id that maps to a pending key whose entry is gone was sealed: sealing
// deletes the pending entry and leaves the id's entry as it is, which
// spares rewriting a page of the index for every event sealed ('s' entries
// are those sealed by earlier versions, or sealed without being pending).
//
// A letter's events have ids derived from its message (memo:UUID:…, see
// hub.Ingest) or from one of its deliveries (retrieval:fetched:UUID@queue
// and the like); their entries live in the messages bucket beside the
// message, under its UUID (eventRefKey), so that accepting a letter, or
// acknowledging its delivery (stored there too), dirties the message's
// page for them instead of a random page of an index of their own. Other
// ids are in the events_by_id bucket.
const (
	idPending = 'p'
	idSealed  = 's'
)

// memoEventPrefix begins the ids hub.Ingest derives from a message.
const memoEventPrefix = "memo:"

// eventRefKey is where the entry of event id is: in the messages bucket,
// under the message's UUID, for an id derived from a message or from one
// of its deliveries, else in events_by_id under the id.
func eventRefKey(id string) (bucket, key []byte) {
	const uuidLen = 36
	if rest, ok := strings.CutPrefix(id, memoEventPrefix); ok && len(rest) > uuidLen && rest[uuidLen] == ':' && strings.IndexByte(rest[:uuidLen], 0) < 0 {
		// UUID NUL 'E' rest-after-the-UUID: next to the message (UUID) and
		// its receipt index entries (UUID NUL 'R' …).
		k := make([]byte, 0, len(rest)+2)
		k = append(append(k, rest[:uuidLen]...), 0, 'E')
		return bMessages, append(k, rest[uuidLen:]...)
	}
	// P:UUID@… or P:UUID/…, the id of an event of one delivery (the
	// hub's delivery IDs are UUID@queue, hub.DeliveryID), such as the
	// fetch event retrieval writes with an acknowledgement, which then
	// dirties no page beyond the message's for it: UUID NUL 'E' id. The
	// id does not begin with ':', so these keys are not those above.
	if j := strings.IndexAny(id, "@/"); j > uuidLen+1 && id[0] != ':' && id[j-uuidLen-1] == ':' && !strings.ContainsAny(id[j-uuidLen:j], ":\x00") {
		k := make([]byte, 0, uuidLen+2+len(id))
		k = append(append(k, id[j-uuidLen:j]...), 0, 'E')
		return bMessages, append(k, id...)
	}
	return bEventIDs, []byte(id)
}

func putEventRef(tx *bolt.Tx, id string, ref []byte) error {
	b, k := eventRefKey(id)
	return bk(tx, b).Put(k, ref)
}

func deleteEventRef(tx *bolt.Tx, id string) error {
	b, k := eventRefKey(id)
	return bk(tx, b).Delete(k)
}

// eventRefsMoved, in the meta bucket, says that migrateEventRefs has moved
// every entry of events_by_id that eventRefKey puts elsewhere.
var eventRefsMoved = []byte("layout.eventRefsBesideMessages")

// migrateEventRefs moves the entries of ids derived from messages or their
// deliveries, which earlier versions kept in events_by_id, beside their
// messages. Run in the transaction that opens the file (whole or not at
// all); it reads the bucket once, then marks the file so (the ids left
// there, of events not of one letter, are many: logins, queries).
func migrateEventRefs(tx *bolt.Tx) error {
	meta := tx.Bucket(bMeta)
	if meta.Get(eventRefsMoved) != nil {
		return nil
	}
	ids := tx.Bucket(bEventIDs)
	var moved [][]byte
	err := ids.ForEach(func(k, v []byte) error {
		b, nk := eventRefKey(string(k))
		if !bytes.Equal(b, bMessages) {
			return nil
		}
		moved = append(moved, bytes.Clone(k))
		return tx.Bucket(bMessages).Put(nk, bytes.Clone(v))
	})
	if err != nil {
		return fmt.Errorf("migrate event ids: %w", err)
	}
	for _, k := range moved {
		if err := ids.Delete(k); err != nil {
			return fmt.Errorf("migrate event ids: %w", err)
		}
	}
	return meta.Put(eventRefsMoved, []byte{1})
}

func checkEvents(evs []hub.Event) error {
	for _, ev := range evs {
		if ev.ID == "" {
			return hub.Errorf(hub.Invalid, "event without ID")
		}
	}
	return nil
}

func (s *Store) AppendEvents(ctx context.Context, evs []hub.Event) error {
	if err := checkEvents(evs); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error { return appendEvents(tx, evs) })
}

func appendEvents(tx *bolt.Tx, evs []hub.Event) error {
	raws, err := pendingJSON(evs)
	if err != nil {
		return err
	}
	return appendEncoded(tx, evs, raws)
}

// pendingJSON encodes events as the pending bucket holds them, into one
// buffer (a record is never appended to once encoded: bbolt keeps it until
// the commit).
func pendingJSON(evs []hub.Event) ([][]byte, error) {
	raws := make([][]byte, len(evs))
	buf := make([]byte, 0, 320*len(evs))
	for i, ev := range evs {
		ev.Seq, ev.PrevHash, ev.Hash = 0, "", ""
		start := len(buf)
		var err error
		if buf, err = encodeEvent(buf, &ev); err != nil {
			return nil, fmt.Errorf("encode event %s: %w", ev.ID, err)
		}
		raws[i] = buf[start:len(buf):len(buf)]
	}
	return raws, nil
}

// decodeEventRecord is jsonDecode for an event record (decodeEvent).
func decodeEventRecord(raw []byte, ev *hub.Event) error {
	v, err := decodeEvent(raw)
	if err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	*ev = v
	return nil
}

// appendEncoded appends events encoded ahead by pendingJSON.
func appendEncoded(tx *bolt.Tx, evs []hub.Event, raws [][]byte) error {
	pb := bk(tx, bPending)
	g := getters{tx: tx}
	for i, ev := range evs {
		b, k := eventRefKey(ev.ID)
		if g.get(b, k) != nil {
			continue
		}
		seq, err := pb.NextSequence()
		if err != nil {
			return err
		}
		if err := pb.Put(u64(seq), raws[i]); err != nil {
			return err
		}
		ref := make([]byte, 9)
		ref[0] = idPending
		binary.BigEndian.PutUint64(ref[1:], seq)
		if err := bk(tx, b).Put(k, ref); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) PendingEvents(ctx context.Context, limit int) ([]hub.Event, error) {
	if limit <= 0 {
		limit = 1000
	}
	var out []hub.Event
	// The sealer's read: it sees what the accept log holds at its next
	// apply instead of forcing one (see barrier).
	if err := s.barrier(ctx, false); err != nil {
		return nil, err
	}
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bPending).Cursor()
		// Counted first, so that the events are decoded into a slice of
		// their number rather than one grown by doubling (a batch is
		// hundreds of events of some 200 bytes each).
		n := 0
		for k, _ := c.First(); k != nil && n < limit; k, _ = c.Next() {
			n++
		}
		if n > 0 {
			out = make([]hub.Event, 0, n)
		}
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			var ev hub.Event
			if err := decodeEventRecord(v, &ev); err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	return out, err
}

func lastSeq(tx *bolt.Tx) uint64 {
	k, _ := tx.Bucket(bEvents).Cursor().Last()
	if k == nil {
		return 0
	}
	return readU64(k)
}

// sealerKey holds the sealer lease in the locks bucket (no lock name
// starts with a NUL byte).
var sealerKey = []byte("\x00eventlog-sealer")

// sealerRec is the sealer lease: the epoch moves on with every seal and
// every change of holder; Holder "" is a released lease.
type sealerRec struct {
	Holder  string    `json:"holder"`
	Epoch   uint64    `json:"epoch"`
	Expires time.Time `json:"expires"`
}

// head returns the chain's head: the last Seq and its Hash.
func head(tx *bolt.Tx) (uint64, string, error) {
	k, v := tx.Bucket(bEvents).Cursor().Last()
	if k == nil {
		return 0, "", nil
	}
	var ev hub.Event
	if err := decodeEventRecord(v, &ev); err != nil {
		return 0, "", err
	}
	return readU64(k), ev.Hash, nil
}

// LeaseSealer takes or renews the lease in one transaction: bbolt has one
// writer at a time, so the compare and the write are one step.
func (s *Store) LeaseSealer(ctx context.Context, l hub.SealerLease, ttl time.Duration, now time.Time) (hub.SealerLease, error) {
	if l.Holder == "" {
		return hub.SealerLease{}, hub.Errorf(hub.Invalid, "sealer lease needs a holder")
	}
	var out hub.SealerLease
	err := s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b := bk(tx, bLocks)
		var cur sealerRec
		if _, err := getJSON(b, sealerKey, &cur); err != nil {
			return err
		}
		if cur.Holder != "" && cur.Holder != l.Holder && now.Before(cur.Expires) {
			out = hub.SealerLease{Holder: cur.Holder, Expires: cur.Expires}
			return nil
		}
		rec := sealerRec{Holder: l.Holder, Epoch: cur.Epoch, Expires: now.Add(ttl)}
		if l.Epoch == 0 || cur.Holder != l.Holder || cur.Epoch != l.Epoch {
			rec.Epoch++ // a new holding: any older one is fenced off
		}
		seq, hash, err := head(tx)
		if err != nil {
			return err
		}
		out = hub.SealerLease{Holder: rec.Holder, Epoch: rec.Epoch, Expires: rec.Expires, Seq: seq, Hash: hash}
		return putJSON(b, sealerKey, rec)
	})
	return out, err
}

func (s *Store) ReleaseSealer(ctx context.Context, l hub.SealerLease) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b := bk(tx, bLocks)
		var cur sealerRec
		if ok, err := getJSON(b, sealerKey, &cur); err != nil || !ok || cur.Holder != l.Holder || cur.Epoch != l.Epoch {
			return err
		}
		return putJSON(b, sealerKey, sealerRec{Epoch: cur.Epoch + 1})
	})
}

// SealEvents stores the whole batch in one transaction or nothing, after
// checking in the same transaction that l is the current lease (Conflict
// if not). A taken Seq or an already sealed event ID is Conflict, a Seq
// that does not follow the head consecutively is Invalid. Sealed events
// are never written by the accept log, so SealEvents and the readers of
// sealed events skip its barrier.
func (s *Store) SealEvents(ctx context.Context, l hub.SealerLease, evs []hub.Event) (hub.SealerLease, error) {
	for _, ev := range evs {
		if ev.ID == "" || ev.Seq == 0 || ev.Hash == "" {
			return l, hub.Errorf(hub.Invalid, "sealed event needs ID, Seq and Hash")
		}
	}
	if len(evs) == 0 {
		return l, nil
	}
	out := l
	err := s.updateDirect(ctx, func(tx *bolt.Tx) error {
		lb := bk(tx, bLocks)
		var cur sealerRec
		if _, err := getJSON(lb, sealerKey, &cur); err != nil {
			return err
		}
		if l.Epoch == 0 || cur.Epoch != l.Epoch || cur.Holder != l.Holder {
			return hub.Errorf(hub.Conflict, "sealer lease lost: epoch %d is not the current %d", l.Epoch, cur.Epoch)
		}
		last := lastSeq(tx)
		pb, eb := bk(tx, bPending), bk(tx, bEvents)
		// The records are encoded into one buffer, never appended to once
		// written (bbolt keeps each until the commit).
		buf := make([]byte, 0, 384*len(evs))
		var scratch []byte // indexEvent's keys
		g := getters{tx: tx}
		for i, ev := range evs {
			want := last + 1 + uint64(i)
			if ev.Seq < want {
				return hub.Errorf(hub.Conflict, "event seq %d is taken", ev.Seq)
			}
			if ev.Seq != want {
				return hub.Errorf(hub.Invalid, "event seq %d does not follow %d", ev.Seq, want-1)
			}
			sk := u64(ev.Seq)
			switch ref := g.get(eventRefKey(ev.ID)); {
			case len(ref) == 9 && ref[0] == idPending && g.get(bPending, ref[1:]) != nil:
				// The usual case: its entry stays, and says sealed once
				// the pending entry is gone.
				if err := pb.Delete(ref[1:]); err != nil {
					return err
				}
			case len(ref) == 9:
				return hub.Errorf(hub.Conflict, "event %s is sealed already", ev.ID)
			default:
				if err := putEventRef(tx, ev.ID, append([]byte{idSealed}, sk...)); err != nil {
					return err
				}
			}
			start := len(buf)
			var err error
			if buf, err = encodeEvent(buf, &ev); err != nil {
				return fmt.Errorf("encode %q: %w", sk, err)
			}
			if err := eb.Put(sk, buf[start:len(buf):len(buf)]); err != nil {
				return err
			}
			if scratch, err = indexEvent(tx, ev, true, scratch); err != nil {
				return err
			}
		}
		cur.Epoch++
		top := evs[len(evs)-1]
		out.Epoch, out.Seq, out.Hash = cur.Epoch, top.Seq, top.Hash
		return putJSON(lb, sealerKey, cur)
	})
	if err != nil {
		return l, err
	}
	return out, nil
}

// indexEvent adds (or removes) a sealed event's time and organisation index
// entries. Their keys are built one after the other in scratch (bbolt
// copies the key it puts, not the value), which it returns for the next
// event; the time key, the organisation entries' value, is allocated.
func indexEvent(tx *bolt.Tx, ev hub.Event, add bool, scratch []byte) ([]byte, error) {
	tk := tkey(ev.Time)
	var sk [8]byte
	binary.BigEndian.PutUint64(sk[:], ev.Seq)
	set := func(b, k, v []byte) error {
		if add {
			return bk(tx, b).Put(k, v)
		}
		return bk(tx, b).Delete(k)
	}
	k := append(append(scratch[:0], tk...), sk[:]...) // time, seq
	if err := set(bEvTime, k, nil); err != nil {
		return k, err
	}
	for _, org := range ev.Orgs {
		k = append(append(append(append(k[:0], org...), 0), tk...), sk[:]...) // prefix(org), time, seq
		if err := set(bEvOrgTime, k, nil); err != nil {
			return k, err
		}
		k = append(append(append(k[:0], org...), 0), sk[:]...) // prefix(org), seq
		if err := set(bEvOrgSeq, k, tk); err != nil {
			return k, err
		}
	}
	return k, nil
}

func (s *Store) LastSealed(ctx context.Context) (hub.Event, error) {
	var ev hub.Event
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bEvents).Cursor().Last()
		if k == nil {
			return hub.Errorf(hub.NotFound, "no sealed event")
		}
		return decodeEventRecord(v, &ev)
	})
	return ev, err
}

// ScanEvents reads in chunks so that fn runs outside any transaction and a
// long scan does not pin old pages.
func (s *Store) ScanEvents(ctx context.Context, from uint64, fn func(hub.Event) error) error {
	const chunk = 1000
	for {
		var evs []hub.Event
		err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
			c := tx.Bucket(bEvents).Cursor()
			for k, v := c.Seek(u64(from)); k != nil && len(evs) < chunk; k, v = c.Next() {
				var ev hub.Event
				if err := decodeEventRecord(v, &ev); err != nil {
					return err
				}
				evs = append(evs, ev)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := fn(ev); err != nil {
				return err
			}
		}
		if len(evs) < chunk {
			return nil
		}
		from = evs[len(evs)-1].Seq + 1
	}
}

func matches(ev hub.Event, q hub.EventQuery) bool {
	switch {
	case ev.Seq <= q.AfterSeq,
		!q.From.IsZero() && ev.Time.Before(q.From),
		!q.To.IsZero() && !ev.Time.Before(q.To),
		q.SystemID != "" && ev.SystemID != q.SystemID,
		q.MessageUUID != "" && ev.MessageUUID != q.MessageUUID,
		q.Party != "" && ev.Party != q.Party,
		q.Actor != "" && ev.Actor != q.Actor:
		return false
	}
	if q.Org != "" && !contains(ev.Orgs, q.Org) {
		return false
	}
	return len(q.Tags) == 0 || contains(q.Tags, ev.Tag)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// QueryEvents picks an index: with a time range, the (org,) time index
// yields the candidate seqs in the range, which are then sorted; with an
// organisation only, its seq index is walked from the cursor; otherwise the
// log itself. Only candidates are decoded, and only until Limit matched.
func (s *Store) QueryEvents(ctx context.Context, q hub.EventQuery) ([]hub.Event, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	var out []hub.Event
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		eb := tx.Bucket(bEvents)
		scanned := 0
		// take decodes the event at seq and keeps it if it matches; it
		// reports whether more are wanted.
		take := func(sk []byte) (bool, error) {
			if scanned++; scanned > maxEventScan {
				return false, tooWide()
			}
			v := eb.Get(sk)
			if v == nil {
				return true, nil
			}
			var ev hub.Event
			if err := decodeEventRecord(v, &ev); err != nil {
				return false, err
			}
			if matches(ev, q) {
				out = append(out, ev)
			}
			return len(out) < limit, nil
		}
		if !q.From.IsZero() || !q.To.IsZero() {
			// A range holding more entries than the time index's walk
			// collects is read in seq order instead, with the time as a
			// filter (matches): a wide range matches densely.
			if err := queryByTime(tx, q, take); !errors.Is(err, errWideRange) {
				return err
			}
		}
		var p []byte
		b := eb
		if q.Org != "" {
			p, b = prefix(q.Org), tx.Bucket(bEvOrgSeq)
		}
		c := b.Cursor()
		seqOf := func(k []byte) []byte { return k[len(p):] }
		if !q.Descending {
			for k, _ := c.Seek(cat(p, u64(q.AfterSeq+1))); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
				if more, err := take(seqOf(k)); err != nil || !more {
					return err
				}
			}
			return nil
		}
		var k []byte
		if p == nil {
			k, _ = c.Last()
		} else if k, _ = c.Seek(append(bytes.Clone(p[:len(p)-1]), 1)); k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, p) && readU64(seqOf(k)) > q.AfterSeq; k, _ = c.Prev() {
			if more, err := take(seqOf(k)); err != nil || !more {
				return err
			}
		}
		return nil
	})
	return out, err
}

// The bounds of one query's work: the time index yields at most
// maxTimeCandidates seqs to sort (else errWideRange: the log is read in seq
// order instead), and no query decodes more than maxEventScan entries
// (event.query.too.wide: a filter that matches almost nothing in a large
// log must be narrowed, by time or organisation).
const (
	maxTimeCandidatesDefault = 200_000
	maxEventScanDefault      = 2_000_000
)

// The bounds, variables for tests.
var maxTimeCandidates, maxEventScan = maxTimeCandidatesDefault, maxEventScanDefault

var errWideRange = errors.New("bolt: the time range holds more entries than its index walk collects")

func tooWide() error {
	return &hub.Error{Code: hub.Invalid, Message: "the query reads too much of the event log",
		Fields: []hub.FieldError{{Resource: "request", Code: "event.query.too.wide",
			Message: fmt.Sprintf("this query would read over %d entries of the event log to fill its page; narrow it by time or organisation", maxEventScan)}}}
}

func queryByTime(tx *bolt.Tx, q hub.EventQuery, take func([]byte) (bool, error)) error {
	var p []byte
	b := tx.Bucket(bEvTime)
	if q.Org != "" {
		p, b = prefix(q.Org), tx.Bucket(bEvOrgTime)
	}
	start := p
	if !q.From.IsZero() {
		start = cat(p, tkey(q.From))
	}
	var end []byte
	if !q.To.IsZero() {
		end = cat(p, tkey(q.To))
	}
	var seqs []uint64
	c := b.Cursor()
	for k, _ := c.Seek(start); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		if end != nil && bytes.Compare(k, end) >= 0 {
			break
		}
		if seq := readU64(k[len(p)+12:]); seq > q.AfterSeq {
			if len(seqs) == maxTimeCandidates {
				return errWideRange
			}
			seqs = append(seqs, seq)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return (seqs[i] < seqs[j]) != q.Descending })
	for _, seq := range seqs {
		if more, err := take(u64(seq)); err != nil || !more {
			return err
		}
	}
	return nil
}

// DeleteEventsBefore removes a prefix of the chain (events in Seq order
// while older than t), in chunks, so that the remaining log has no holes.
func (s *Store) DeleteEventsBefore(ctx context.Context, t time.Time) (int64, error) {
	const chunk = 5000
	var total int64
	for {
		var n int64
		err := s.updateDirect(ctx, func(tx *bolt.Tx) error {
			n = 0
			eb := bk(tx, bEvents)
			var evs []hub.Event
			c := eb.Cursor()
			for k, v := c.First(); k != nil && len(evs) < chunk; k, v = c.Next() {
				var ev hub.Event
				if err := decodeEventRecord(v, &ev); err != nil {
					return err
				}
				if !ev.Time.Before(t) {
					break
				}
				evs = append(evs, ev)
			}
			var scratch []byte // indexEvent's keys
			for _, ev := range evs {
				if err := eb.Delete(u64(ev.Seq)); err != nil {
					return err
				}
				if err := deleteEventRef(tx, ev.ID); err != nil {
					return err
				}
				var err error
				if scratch, err = indexEvent(tx, ev, false, scratch); err != nil {
					return err
				}
			}
			n = int64(len(evs))
			return nil
		})
		total += n
		if err != nil || n < chunk {
			return total, err
		}
	}
}
