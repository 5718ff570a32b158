package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"strconv"
	"time"

	"github.com/posthub/posthub/internal/atomicfile"
)

// OpenContent returns a message's MeMo bytes, inline or from the blobs.
func OpenContent(ctx context.Context, blobs Blobs, m Message) (io.ReadCloser, error) {
	if m.ContentKey == "" {
		return io.NopCloser(bytes.NewReader(m.Content)), nil
	}
	return blobs.Open(ctx, m.ContentKey)
}

// OutboxItem is one letter to print or one SMS to send.
type OutboxItem struct {
	Delivery Delivery
	Message  Message
	// Content reads the MeMo (print only; nil for SMS).
	Content io.Reader
	// Print reads the letter's print rendition (SF1601's fjernprint part),
	// when the sender gave one; nil otherwise.
	Print io.Reader
}

// Dispatcher hands outbox items to a print provider or SMS gateway. It
// returns nil only once the provider has durably taken the item; an error
// leaves the item queued for a retry.
type Dispatcher interface {
	Dispatch(ctx context.Context, it OutboxItem) error
}

// Outbox drains the print queue or the SMS outbox through a Dispatcher:
// lease, dispatch, acknowledge, so an item is handed over at least once
// and removed only after the provider took it.
type Outbox struct {
	Store      Store
	Blobs      Blobs
	Events     EventSink
	Queue      string // PrintQueue or SMSQueue
	Dispatcher Dispatcher
	Holder     string // this instance's name, for leases
	Lease      time.Duration
	// MaxAttempts parks an item that keeps failing.
	MaxAttempts int
	// Wake, when set, makes Run drain at once (Notify signals it when this
	// instance queued an item); the interval then only catches items
	// queued by other instances and retries.
	Wake <-chan struct{}
	Log  *slog.Logger
	Now  func() time.Time
	// Outcome, when set, counts what became of each item claimed (the
	// metric posthub_outbox_items_total): "sent", "failed" (one refused
	// attempt) or "parked".
	Outcome func(queue, outcome string)
}

func (o *Outbox) now() time.Time {
	if o.Now != nil {
		return o.Now().UTC()
	}
	return time.Now().UTC()
}

// Drain dispatches every available item once and returns how many were
// handed over. An item the dispatcher refuses stays leased until its lease
// expires (Lease: the back-off between attempts), its failure logged as
// failed says; one refused MaxAttempts times, or whose message, content
// or print rendition is gone, is parked.
func (o *Outbox) Drain(ctx context.Context) (int, error) {
	n := 0
	for ctx.Err() == nil {
		c, err := o.Store.ClaimNext(ctx, o.Queue, o.Holder, o.Lease, o.now())
		if ErrorCode(err) == NotFound {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		d, l := c.Delivery, c.Lease
		if o.MaxAttempts > 0 && l.Attempt > o.MaxAttempts {
			if err := o.Store.Park(ctx, d.ID, "too many failed attempts"); err != nil {
				return n, err
			}
			o.count("parked")
			o.emit(ctx, d, c.Message, "OUTBOX_ITEM_PARKED", map[string]string{"attempts": fmt.Sprint(l.Attempt - 1)})
			continue
		}
		// The message as it stands now, not as the claim read it (a store
		// may read it beside the lease, before the lease is in): a recall
		// holds a held letter's deliveries with leases before it writes
		// RECALLED, so a state read after this lease won is the one that
		// decides; only a recall that outlived its lease can still write
		// RECALLED after this read (see Ingest.claimHeld).
		m, err := o.Store.GetMessage(ctx, d.MessageUUID)
		switch ErrorCode(err) {
		case "":
		case NotFound:
			m = Message{}
		default:
			return n, err
		}
		c.Message = m
		if m.State == MessageRecalled {
			// Recalled while a move added this delivery, by a recall cut
			// short, or by one whose lease ran out: never handed over.
			if err := o.drop(ctx, d); err != nil {
				return n, err
			}
			continue
		}
		if err := o.dispatch(ctx, d, m); err != nil {
			if err := o.failed(ctx, c, err); err != nil {
				return n, err
			}
			continue
		}
		if err := o.sent(ctx, d); err != nil {
			return n, err
		}
		o.count("sent")
		n++
	}
	return n, ctx.Err()
}

// sent removes delivery d, which the dispatcher took, and records its
// PHYSICAL_LETTER_SENT or NEM_SMS_SENT_SUCCESSFULLY with the ack, in the
// store's one step (Store.AckWith), as retrieval records a fetch: an
// append that fails fails the ack, and the item is handed over again
// (at least once) rather than gone without its event. The event's ID
// derives from the delivery, so an ack the store finishes after a crash
// (MongoDB) or an item handed over twice logs it once.
//
// The sender's receipt stays as it is (RECEIVED): in this hub COMPLETED
// says a receiver system took the letter, and a letter handed to a print
// provider or an SMS gateway has not reached its recipient yet; the
// sender learns of the hand-over from this event.
func (o *Outbox) sent(ctx context.Context, d Delivery) error {
	now := o.now()
	res, err := o.Store.AckWith(ctx, d.ID, d.MessageUUID, now, func(v AckView) (*Receipt, []Event, error) {
		if o.Events == nil {
			return nil, nil, nil
		}
		var m Message
		if v.Message != nil {
			m = *v.Message
		}
		tag := "PHYSICAL_LETTER_SENT"
		if o.Queue == SMSQueue {
			tag = "NEM_SMS_SENT_SUCCESSFULLY"
		}
		e := o.event(v.Delivery, m, tag, nil)
		e.ID, e.Time = "outbox:"+v.Delivery.ID+":sent", now
		return nil, []Event{e}, nil
	})
	if err != nil {
		return err
	}
	o.cleanUp(ctx, d, res)
	return nil
}

// failed records that claimed item c could not be handed over (cause).
//
// An item whose message, content or print rendition is gone can never be
// handed over: it is parked (Store.Park, as MaxAttempts parks), out of
// every listing and retry, and kept for an operator to see, with its
// failure event and OUTBOX_ITEM_PARKED. Any other failure (the provider,
// the spool's disk, a blob store that does not answer) keeps the lease,
// so the item is tried again when it expires: a provider that is down for
// a while costs an attempt per lease, not all of them at once.
//
// The failure event (NEM_SMS_SEND_FAILED, PHYSICAL_LETTER_SEND_FAILED) is
// written on attempts 1, 2, 4, 8, …: at once, and then at doubling
// intervals, so an item refused for days neither goes unnoticed nor
// floods the log. Its ID derives from the delivery and the attempt, so an
// attempt repeated (another instance's, or bolt's attempts starting again
// after a restart) logs nothing twice.
func (o *Outbox) failed(ctx context.Context, c Claimed, cause error) error {
	d, l := c.Delivery, c.Lease
	var gone *goneError
	permanent := errors.As(cause, &gone)
	o.count("failed")
	if permanent || l.Attempt&(l.Attempt-1) == 0 {
		tag := "PHYSICAL_LETTER_SEND_FAILED"
		if o.Queue == SMSQueue {
			tag = "NEM_SMS_SEND_FAILED"
		}
		e := o.event(d, c.Message, tag, map[string]string{"attempt": strconv.Itoa(l.Attempt), "errorCode": string(ErrorCode(cause))})
		e.ID = "outbox:" + d.ID + ":failed:" + strconv.Itoa(l.Attempt)
		if permanent {
			e.Detail["parked"] = "true"
		}
		if o.Events != nil {
			if err := o.Events.Emit(ctx, e); err != nil {
				o.logger().Warn("outbox: failure event not written", "queue", o.Queue, "delivery", d.ID, "error", err)
			}
		}
	}
	if !permanent {
		o.logger().Warn("outbox dispatch failed; tried again when its lease expires", "queue", o.Queue, "delivery", d.ID, "error", cause, "attempt", l.Attempt)
		return nil
	}
	o.logger().Error("outbox item can never be handed over; parked", "queue", o.Queue, "delivery", d.ID, "error", cause)
	if err := o.Store.Park(ctx, d.ID, "cannot be handed over: "+gone.what+" is gone"); err != nil {
		return err
	}
	o.count("parked")
	o.emit(ctx, d, c.Message, "OUTBOX_ITEM_PARKED", map[string]string{"attempts": strconv.Itoa(l.Attempt), "reason": gone.what + " gone"})
	return nil
}

// goneError is a failure no retry can mend: what the item needs is gone.
type goneError struct {
	what string // "message", "content", "print rendition"
	err  error
}

func (e *goneError) Error() string { return e.what + " gone: " + e.err.Error() }
func (e *goneError) Unwrap() error { return e.err }

// isGone wraps err as a goneError of what when it says NotFound.
func isGone(what string, err error) error {
	if ErrorCode(err) == NotFound {
		return &goneError{what: what, err: err}
	}
	return err
}

func (o *Outbox) count(outcome string) {
	if o.Outcome != nil {
		o.Outcome(o.Queue, outcome)
	}
}

// drop removes delivery d (handed over, or not to be).
func (o *Outbox) drop(ctx context.Context, d Delivery) error {
	res, err := o.Store.Ack(ctx, d.ID, o.now())
	if err != nil {
		return err
	}
	o.cleanUp(ctx, d, res)
	return nil
}

// cleanUp deletes the blobs an acknowledgement of d left unreferenced (a
// sweeper catches those it cannot).
func (o *Outbox) cleanUp(ctx context.Context, d Delivery, res AckResult) {
	dropPrint(ctx, o.Blobs, d)
	if res.Unreferenced && res.ContentKey != "" {
		_ = o.Blobs.Delete(ctx, res.ContentKey)
	}
}

func (o *Outbox) logger() *slog.Logger {
	if o.Log != nil {
		return o.Log
	}
	return slog.Default()
}

// dispatch hands the claimed delivery d of message m (UUID "" when the
// record is gone) to the dispatcher.
func (o *Outbox) dispatch(ctx context.Context, d Delivery, m Message) error {
	if m.UUID == "" {
		return isGone("message", Errorf(NotFound, "message %s not found", d.MessageUUID))
	}
	it := OutboxItem{Delivery: d, Message: m}
	if o.Queue == PrintQueue {
		rc, err := OpenContent(ctx, o.Blobs, m)
		if err != nil {
			return isGone("content", err)
		}
		defer rc.Close()
		it.Content = rc
		pr, err := openPrint(ctx, o.Blobs, d)
		if err != nil {
			return isGone("print rendition", err)
		}
		if pr != nil {
			defer pr.Close()
			it.Print = pr
		}
	}
	return o.Dispatcher.Dispatch(ctx, it)
}

func (o *Outbox) emit(ctx context.Context, d Delivery, m Message, tag string, detail map[string]string) {
	if o.Events == nil {
		return
	}
	_ = o.Events.Emit(ctx, o.event(d, m, tag, detail))
}

// event is the outbox's event tag about delivery d of message m.
func (o *Outbox) event(d Delivery, m Message, tag string, detail map[string]string) Event {
	orgs := []string{}
	if m.SenderCVR != "" {
		orgs = append(orgs, m.SenderCVR)
	}
	return Event{Tag: tag, Actor: "outbox:" + o.Queue, Orgs: orgs, MessageUUID: d.MessageUUID, Party: m.RecipientID, Detail: detail}
}

// Run drains the outbox every interval until ctx ends.
func (o *Outbox) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := o.Drain(ctx); err != nil && ctx.Err() == nil {
			o.logger().Warn("outbox", "queue", o.Queue, "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-o.Wake:
		}
	}
}

// SpoolDispatcher is the built-in print provider and SMS gateway: it writes
// each item to a directory that a real provider's integration picks up.
// Print items become <uuid>.xml (the MeMo), <uuid>.fjernprint.xml (the
// sender's print rendition, SF1601's ForsendelseISamling, when it gave
// one; the .json names it under "fjernprint") and <uuid>.json (address
// and metadata); SMS items <uuid>.json (phone and text). Files appear
// atomically (temp, fsync, rename); the .json is written last and marks
// the item complete.
type SpoolDispatcher struct {
	Dir string
}

// Dispatch implements Dispatcher.
func (s SpoolDispatcher) Dispatch(_ context.Context, it OutboxItem) error {
	// The directory's own entry must be as durable as the files in it:
	// the item is acknowledged once they are.
	if err := atomicfile.MkdirAll(s.Dir, 0o750); err != nil {
		return err
	}
	base := filepath.Join(s.Dir, it.Message.UUID)
	if it.Content != nil {
		if err := atomicfile.Write(base+".xml", it.Content, -1, 0o600); err != nil {
			return err
		}
	}
	dm := maps.Clone(it.Delivery.Meta)
	delete(dm, MetaPrint)
	delete(dm, MetaPrintKey)
	meta := map[string]any{
		"messageUUID": it.Message.UUID, "sender": it.Message.SenderCVR, "recipient": it.Message.RecipientID,
		"label": it.Message.Label, "channel": it.Delivery.Channel, "meta": dm,
		"queued": it.Delivery.Created.Format(time.RFC3339),
	}
	if it.Print != nil {
		name := it.Message.UUID + ".fjernprint.xml"
		if err := atomicfile.Write(filepath.Join(s.Dir, name), it.Print, -1, 0o600); err != nil {
			return err
		}
		meta["fjernprint"] = name
	}
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(base+".json", bytes.NewReader(b), -1, 0o600)
}
