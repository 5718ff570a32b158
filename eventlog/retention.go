package eventlog

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/posthub/posthub/hub"
)

// RetentionRecord is a signed statement the sealer seals into the chain
// before a retention run deletes anything: "the entries before FirstKept
// may be deleted (they are older than Cutoff)". Verify holds the log to
// the records it finds: a log whose first entry lies beyond every
// record's FirstKept lost entries no retention removed (deleting a recent
// prefix of the log otherwise looks exactly like retention).
type RetentionRecord struct {
	FirstKept uint64    `json:"firstKept"`
	Cutoff    time.Time `json:"cutoff"`
	Time      time.Time `json:"time"`
	KeyID     string    `json:"keyId"`
	Signature string    `json:"signature"`
}

// RetentionVersion prefixes the signed bytes.
const RetentionVersion = "posthub.eventlog.retention.v1"

// SignedBytes is what the signature covers:
// "posthub.eventlog.retention.v1\n<firstKept>\n<cutoff>\n<time>" (times as
// TimeLayout).
func (r RetentionRecord) SignedBytes() []byte {
	return []byte(RetentionVersion + "\n" + strconv.FormatUint(r.FirstKept, 10) + "\n" +
		r.Cutoff.UTC().Format(TimeLayout) + "\n" + r.Time.UTC().Format(TimeLayout))
}

// Sign fills KeyID and Signature.
func (r *RetentionRecord) Sign(key ed25519.PrivateKey) {
	r.Cutoff, r.Time = CanonicalTime(r.Cutoff), CanonicalTime(r.Time)
	r.KeyID = KeyID(key.Public().(ed25519.PublicKey))
	r.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, r.SignedBytes()))
}

// Verify checks the signature with pub.
func (r RetentionRecord) Verify(pub ed25519.PublicKey) error {
	sig, err := base64.StdEncoding.DecodeString(r.Signature)
	if err != nil || !ed25519.Verify(pub, r.SignedBytes(), sig) {
		return fmt.Errorf("retention record (first kept %d): bad signature", r.FirstKept)
	}
	return nil
}

// Event is the record as a log entry (Seq and hashes still to be set).
func (r RetentionRecord) Event(actor string) hub.Event {
	return hub.Event{ID: fmt.Sprintf("retention-%d-%d", r.FirstKept, r.Time.UnixNano()), Time: r.Time, Tag: string(EventLogRetention),
		Actor: actor, Detail: map[string]string{"firstKept": strconv.FormatUint(r.FirstKept, 10),
			"cutoff": r.Cutoff.UTC().Format(TimeLayout), "time": r.Time.UTC().Format(TimeLayout),
			"keyId": r.KeyID, "signature": r.Signature}}
}

// RetentionRecordOf reads a record back from its log entry.
func RetentionRecordOf(ev hub.Event) (RetentionRecord, error) {
	if ev.Tag != string(EventLogRetention) {
		return RetentionRecord{}, fmt.Errorf("seq %d is not a retention record", ev.Seq)
	}
	first, err := strconv.ParseUint(ev.Detail["firstKept"], 10, 64)
	if err != nil {
		return RetentionRecord{}, fmt.Errorf("retention record %d: bad firstKept: %w", ev.Seq, err)
	}
	cutoff, err := time.Parse(TimeLayout, ev.Detail["cutoff"])
	if err != nil {
		return RetentionRecord{}, fmt.Errorf("retention record %d: bad cutoff: %w", ev.Seq, err)
	}
	at, err := time.Parse(TimeLayout, ev.Detail["time"])
	if err != nil {
		return RetentionRecord{}, fmt.Errorf("retention record %d: bad time: %w", ev.Seq, err)
	}
	return RetentionRecord{FirstKept: first, Cutoff: cutoff, Time: at, KeyID: ev.Detail["keyId"], Signature: ev.Detail["signature"]}, nil
}

// retain runs retention under the lease: with a signing key it first
// seals a RetentionRecord naming the first entry it keeps (when it will
// delete any), then deletes (Retain).
func (s *Sealer) retain(ctx context.Context, cutoff time.Time) error {
	if s.opts.Key != nil {
		last, err := s.store.LastSealed(ctx)
		if hub.ErrorCode(err) == hub.NotFound {
			return nil
		}
		if err != nil {
			return err
		}
		if last.Time.Before(cutoff) {
			cutoff = last.Time
		}
		// The first entry kept, as DeleteEventsBefore finds it: the first
		// in seq order not older than cutoff. Read by a scan, not a query:
		// a query's work bound would stop a first retention of a long-kept
		// log for good (as a time bound on MongoDB would), and the scan
		// reads no more than the deletion will.
		var first, keep uint64
		err = s.store.ScanEvents(ctx, 0, func(ev hub.Event) error {
			if first == 0 {
				first = ev.Seq
			}
			if !ev.Time.Before(cutoff) {
				keep = ev.Seq
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return err
		}
		if keep <= first {
			return nil // nothing to delete
		}
		rec := RetentionRecord{FirstKept: keep, Cutoff: cutoff, Time: s.opts.Now()}
		rec.Sign(s.opts.Key)
		if err := s.sealOne(ctx, rec.Event(s.opts.Holder)); err != nil {
			return err
		}
	}
	_, err := Retain(ctx, s.store, cutoff)
	return err
}

// sealOne seals ev right after the head, under the lease.
func (s *Sealer) sealOne(ctx context.Context, ev hub.Event) error {
	seq, prev := s.lease.Seq, s.lease.Hash
	if seq == 0 {
		prev = Genesis
	}
	ev.Time = CanonicalTime(ev.Time)
	ev.Seq, ev.PrevHash = seq+1, prev
	ev.Hash = Hash(ev)
	l, err := s.store.SealEvents(ctx, s.lease, []hub.Event{ev})
	if err != nil {
		s.lease = hub.SealerLease{}
		return err
	}
	s.lease = l
	return nil
}
