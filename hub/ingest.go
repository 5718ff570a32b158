package hub

import (
	"bytes"
	"context"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// ArchiveChoice is the sender's choice about a copy in its sent-archive,
// the three forwarding choices Altinn offers.
type ArchiveChoice string

const (
	// ForwardOnly keeps no copy (the default).
	ForwardOnly ArchiveChoice = "FORWARD_ONLY"
	// ForwardElseKeep keeps a copy only when the letter cannot be delivered.
	ForwardElseKeep ArchiveChoice = "FORWARD_ELSE_KEEP"
	// ForwardAndKeep always keeps a copy.
	ForwardAndKeep ArchiveChoice = "FORWARD_AND_KEEP"
)

// ParseArchiveChoice reads the request parameter; "" is ForwardOnly.
func ParseArchiveChoice(s string) (ArchiveChoice, error) {
	switch c := ArchiveChoice(strings.ToUpper(strings.TrimSpace(s))); c {
	case "":
		return ForwardOnly, nil
	case ForwardOnly, ForwardElseKeep, ForwardAndKeep:
		return c, nil
	}
	return "", &Error{Code: Invalid, Message: "unknown archive choice",
		Fields: []FieldError{{Resource: "request", Field: "archive", Code: "archive.unknown",
			Message: "archive must be FORWARD_ONLY, FORWARD_ELSE_KEEP or FORWARD_AND_KEEP", RejectedValue: s}}}
}

// EventSink receives the hub's events; the event log implements it.
type EventSink interface {
	Emit(ctx context.Context, evs ...Event) error
}

// StoreEvents is the simplest EventSink: it fills IDs and times and appends
// the events to the store as pending entries for the sealer.
type StoreEvents struct {
	Store EventStore
	Now   func() time.Time
}

// Emit implements EventSink; like the event log it refuses an entry
// beyond CheckEvent's bounds (Invalid), appending none of evs.
func (s StoreEvents) Emit(ctx context.Context, evs ...Event) error {
	now := time.Now().UTC()
	if s.Now != nil {
		now = s.Now().UTC()
	}
	for i := range evs {
		if err := CheckEvent(evs[i]); err != nil {
			return err
		}
		if evs[i].ID == "" {
			evs[i].ID = NewID()
		}
		if evs[i].Time.IsZero() {
			evs[i].Time = now
		}
	}
	return s.Store.AppendEvents(ctx, evs)
}

// Ingest accepts validated MeMos: it enforces who may send, makes
// resubmission idempotent, routes, stores content and metadata durably and
// emits events and statistics.
type Ingest struct {
	Store  Store
	Blobs  Blobs
	Router *Router
	Events EventSink
	// InlineMax is the largest content kept inline in the metadata store.
	InlineMax int64
	// ArchiveRetention is how long a sent-archive copy is kept.
	ArchiveRetention time.Duration
	Now              func() time.Time
	// Delivered, when set, is called with a message's deliveries once they
	// are durably stored and available, so in-process waiters (long-polling
	// receiver systems) wake at once instead of at their next poll. ctx is
	// the submission's (its values, such as the request id, go with what the
	// hook does on the request's behalf).
	Delivered func(ctx context.Context, ds []Delivery)
}

// Submission is one validated MeMo from an authenticated sender system.
type Submission struct {
	System  System
	Letter  Letter
	Path    string // the spooled, validated body, or
	Body    []byte // the validated body itself (small messages)
	Size    int64
	SHA256  string
	Mode    Mode
	Archive ArchiveChoice
	// Envelope is what the transport said beside the MeMo.
	Envelope Envelope
}

// Submit accepts a submission and returns its receipt; created is false
// when it was an idempotent resubmission answered with the first receipt.
// Errors: Forbidden (not a sender system, or a sender CVR the system may
// not send for), Conflict (the UUID was used with other bytes), Invalid
// (routing refused it), Unavailable.
func (in *Ingest) Submit(ctx context.Context, s Submission) (r Receipt, created bool, err error) {
	now := time.Now().UTC()
	if in.Now != nil {
		now = in.Now().UTC()
	}
	l := s.Letter
	env := s.Envelope
	if s.System.Role != SenderSystem {
		return r, false, Errorf(Forbidden, "only sender systems may send post")
	}
	if env.Print != nil && env.PrintRecipient != "" && env.PrintRecipient != l.RecipientID {
		return r, false, &Error{Code: Invalid, Message: "the print rendition is for another recipient than the letter",
			Fields: []FieldError{{Resource: "kombi", Field: "ForsendelseModtager/AfsendelseModtager", Code: "kombi.fjernprint.recipient.mismatch",
				Message: "the fjernprint part's recipient must be the MeMo's recipientID (" + l.RecipientID + ")", RejectedValue: env.PrintRecipient}}}
	}
	if env.Print != nil && len(env.PrintAddress) > 0 {
		l.PrintAddress = env.PrintAddress
	}
	// Who may send and where the letter goes are read side by side: on a
	// replica set each is a round trip the sender waits for. A system
	// sending for its own organisation needs no read.
	var mayErr chan error
	if l.SenderID != s.System.OrgCVR {
		mayErr = in.maySendForAsync(ctx, s.System, l.SenderID)
	}
	rt, err := in.Router.Route(ctx, l, s.Mode, now)
	if mayErr != nil {
		if err := <-mayErr; err != nil {
			return r, false, err
		}
	}
	if err != nil {
		// A resubmission gets its first receipt even if it would not be
		// routed today.
		if r, ok, err2 := in.resubmission(ctx, s); ok || err2 != nil {
			return r, false, err2
		}
		return r, false, err // the accept service logs the refusal
	}
	m := Message{
		UUID: l.UUID, MessageID: l.MessageID, SenderCVR: l.SenderID, SenderSystemID: s.System.ID,
		RecipientID: l.RecipientID, RecipientType: l.RecipientType, MessageType: l.MessageType,
		MemoVersion: l.MemoVersion, Label: l.Label, SHA256: s.SHA256, Size: s.Size,
		Received: now, NotBefore: l.NotBefore, State: rt.State, Mode: string(s.Mode), Attrs: letterAttrs(l),
	}
	keep := s.Archive == ForwardAndKeep || (s.Archive == ForwardElseKeep && rt.State == MessageNotDelivered)
	if keep {
		m.ArchiveUntil = now.Add(in.ArchiveRetention)
	}
	r = Receipt{TransmissionID: NewID(), SystemID: s.System.ID, MessageUUID: l.UUID, MessageID: l.MessageID,
		Time: now, Status: ReceiptReceived, TransactionID: env.TransactionID}
	m.ReceiptID, m.TransactionID = r.TransmissionID, env.TransactionID
	if rt.State == MessageNotDelivered {
		r.Status, r.ErrorCode, r.ErrorMessage = ReceiptNotAllowed, rt.ReasonCode, rt.Reason
		m.ReasonCode, m.Reason = rt.ReasonCode, rt.Reason
	}
	if len(rt.Deliveries) > 0 || keep {
		// A resubmission is recognised by the store, which refuses a taken
		// UUID (Conflict) before it writes anything visible; only content
		// bound for the blob store is looked up first, to spare its upload.
		if s.Size > in.InlineMax {
			first, ferr := in.Store.GetMessage(ctx, l.UUID)
			if r, ok, err := in.answerResubmission(ctx, s, first, ferr); ok || err != nil {
				if err == nil {
					in.restoreEvents(ctx, s, first, rt, env)
				}
				return r, false, err
			}
		}
		if err := in.storeContent(ctx, &m, s); err != nil {
			return Receipt{}, false, err
		}
	}
	printKey := ""
	if env.Print != nil {
		if printKey, err = in.attachPrint(ctx, m.UUID, r.TransmissionID, rt.Deliveries, env.Print); err != nil {
			if m.ContentKey != "" {
				_ = in.Blobs.Delete(ctx, m.ContentKey)
			}
			return Receipt{}, false, err
		}
	}
	evs, counters := in.record(s, m, rt, env, now)
	if err := in.commit(ctx, m, rt.Deliveries, r, evs, counters); err != nil {
		// The content and print keys are this submission's own: nothing
		// else names them, whoever won the UUID. They are deleted only when
		// the store says for certain that it stored nothing (StoredNothing:
		// Conflict, Invalid, or a write it gave up before it began or
		// undid). Any other error may come after the commit landed (an
		// answer lost): the letter may be stored, and its retry answered
		// with this receipt, so its blobs stay (unreferenced at worst), and
		// the sender is told to resubmit (Unavailable), never that the
		// letter was refused.
		if StoredNothing(err) {
			for _, k := range []string{printKey, m.ContentKey} {
				if k != "" {
					_ = in.Blobs.Delete(ctx, k)
				}
			}
		}
		if ErrorCode(err) != Conflict {
			if ErrorCode(err) == Internal && !StoredNothing(err) {
				err = Wrap(Unavailable, err, "storing message %s failed; resubmit it", l.UUID)
			}
			return Receipt{}, false, err
		}
		// The UUID is taken: a resubmission, or a concurrent submission of
		// it that won.
		first, ferr := in.Store.GetMessage(ctx, l.UUID)
		if r, ok, err2 := in.answerResubmission(ctx, s, first, ferr); ok || err2 != nil {
			if err2 == nil {
				in.restoreEvents(ctx, s, first, rt, env)
			}
			return r, false, err2
		}
		if ErrorCode(ferr) == NotFound {
			// Taken, yet not committed: another submission of the UUID is
			// under way, or was cut off by a crash and is being fenced off
			// (storage/mongo). Nothing is accepted; the sender resubmits.
			return Receipt{}, false, Wrap(Unavailable, err, "a submission of message %s is unfinished; resubmit it", l.UUID)
		}
		return Receipt{}, false, err
	}
	if in.Delivered != nil && rt.State == MessageActive && len(rt.Deliveries) > 0 {
		in.Delivered(ctx, rt.Deliveries)
	}
	return r, true, nil
}

func (in *Ingest) commit(ctx context.Context, m Message, ds []Delivery, r Receipt, evs []Event, cs []Counter) error {
	return in.Store.PutMessageWith(ctx, m, ds, r, evs, cs)
}

// maySendForAsync runs maySendFor in a goroutine of its own and returns
// where its answer will be.
func (in *Ingest) maySendForAsync(ctx context.Context, sys System, sender string) chan error {
	ch := make(chan error, 1)
	go func() { ch <- in.maySendFor(ctx, sys, sender) }()
	return ch
}

// maySendFor checks the sender CVR against the system's organisation and
// the organisations it may send for.
func (in *Ingest) maySendFor(ctx context.Context, sys System, sender string) error {
	if sender == sys.OrgCVR {
		return nil
	}
	o, err := in.Store.GetOrg(ctx, sys.OrgCVR)
	if err != nil {
		return err
	}
	if slices.Contains(o.SendFor, sender) {
		return nil
	}
	return &Error{Code: Forbidden, Message: "the sending system's organisation may not send for this sender CVR",
		Fields: []FieldError{{Resource: "memo", Field: "/Message/MessageHeader/Sender/senderID", Code: "sender.not.allowed",
			Message: "the sender must be the sending system's organisation or one it sends for", RejectedValue: sender}}}
}

// resubmission answers a repeated UUID: the same bytes from the same system
// get the first receipt; anything else is a Conflict.
func (in *Ingest) resubmission(ctx context.Context, s Submission) (Receipt, bool, error) {
	m, err := in.Store.GetMessage(ctx, s.Letter.UUID)
	return in.answerResubmission(ctx, s, m, err)
}

// answerResubmission is resubmission given the stored message's lookup.
func (in *Ingest) answerResubmission(ctx context.Context, s Submission, m Message, err error) (Receipt, bool, error) {
	if ErrorCode(err) == NotFound {
		return Receipt{}, false, nil
	}
	if err != nil {
		return Receipt{}, false, err
	}
	if m.SHA256 != s.SHA256 || m.SenderSystemID != s.System.ID {
		return Receipt{}, false, &Error{Code: Conflict, Message: "a different message with this messageUUID was accepted before",
			Fields: []FieldError{{Resource: "memo", Field: "/Message/MessageHeader/messageUUID", Code: "message.uuid.duplicate",
				Message: "messageUUID must be unique; resubmit only identical bytes", RejectedValue: s.Letter.UUID}}}
	}
	if was, now := modeOr(Mode(m.Mode)), modeOr(s.Mode); was != now {
		// The first submission's answer stands for the bytes as sent then:
		// answering it to another choice would tell the sender that the
		// new choice was refused (or taken) when it was never looked at.
		return Receipt{}, false, &Error{Code: Conflict, Message: "this message was accepted before with another delivery mode",
			Fields: []FieldError{{Resource: "request", Field: "mode", Code: "message.uuid.duplicate",
				Message:       "the messageUUID was accepted with delivery mode " + string(was) + "; a resubmission repeats it (send another letter under a new messageUUID)",
				RejectedValue: string(now)}}}
	}
	r, err := SenderReceiptOf(ctx, in.Store, m)
	if ErrorCode(err) == NotFound {
		// The sender deleted its receipt: answer with an equivalent one,
		// which says what the first said (the letter not delivered, and
		// why), under its id and its transaction's.
		r = Receipt{TransmissionID: m.ReceiptID, SystemID: s.System.ID, MessageUUID: m.UUID, MessageID: m.MessageID,
			Time: m.Received, Status: ReceiptReceived, TransactionID: m.TransactionID}
		if r.TransmissionID == "" {
			r.TransmissionID = NewID() // a message stored before it kept its receipt's id
		}
		if m.State == MessageNotDelivered {
			r.Status, r.ErrorCode, r.ErrorMessage = ReceiptNotAllowed, m.ReasonCode, m.Reason
		}
		return r, true, nil
	}
	return r, err == nil, err
}

// modeOr is m, AUTOMATIC when unset.
func modeOr(m Mode) Mode {
	if m == "" {
		return ModeAutomatic
	}
	return m
}

// ReceiptReader is what SenderReceiptOf reads (Receipts has it).
type ReceiptReader interface {
	GetReceipt(ctx context.Context, systemID, transmissionID string) (Receipt, error)
	ReceiptFor(ctx context.Context, systemID, messageUUID string) (Receipt, error)
}

// A message's receipts. A system may hold several receipts naming one
// messageUUID (Receipts.ReceiptFor): beside the message's own, the INVALID
// receipts of submissions of the UUID that were refused (other bytes, an
// archive entry named after it too broken to read), older or newer than
// it. The message's own is the one issued when it was accepted
// (Message.ReceiptID), whose status a later change sets (COMPLETED,
// INVALID). Once the sender has consumed it (read it with deletion) a
// change is told by a receipt issued anew, whose id derives from the own
// one and the status (ReissuedReceiptID): the same status issued again
// replaces it, another status is a receipt the sender has not seen. So a
// message's receipts are found by id, never mistaken for a refusal of
// another submission of its UUID.

// reissuedStatuses are the statuses a message's receipt takes after it
// was accepted, for which a receipt may be issued anew.
var reissuedStatuses = [...]ReceiptStatus{ReceiptCompleted, ReceiptInvalid}

// ReissuedReceiptID is the TransmissionID of the receipt that tells
// status st of the message whose own receipt was ownID, once its sender
// no longer holds that one.
func ReissuedReceiptID(ownID string, st ReceiptStatus) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("posthub:receipt:"+string(st)+":"+ownID)).String()
}

// MessageReceipt finds the receipt of m (which has a ReceiptID) for its
// sender system, reading the system's receipts by TransmissionID with get
// (found false: the system holds none of that id): its own while the
// system holds it, else the newest (NewerReceipt) of those issued anew.
// ok is false when the system holds none of them.
func MessageReceipt(m Message, get func(transmissionID string) (r Receipt, found bool, err error)) (Receipt, bool, error) {
	// The own receipt first: the ack's usual case reads one receipt and
	// derives no id.
	if r, found, err := get(m.ReceiptID); err != nil {
		return Receipt{}, false, err
	} else if found && r.MessageUUID == m.UUID {
		return r, true, nil
	}
	var best Receipt
	ok := false
	for _, st := range reissuedStatuses {
		r, found, err := get(ReissuedReceiptID(m.ReceiptID, st))
		if err != nil {
			return Receipt{}, false, err
		}
		if found && r.MessageUUID == m.UUID && (!ok || NewerReceipt(r, best)) {
			best, ok = r, true
		}
	}
	return best, ok, nil
}

// NewerReceipt orders receipts as ReceiptFor does: by Time to the
// millisecond (what MongoDB keeps), then by TransmissionID.
func NewerReceipt(a, b Receipt) bool {
	at, bt := a.Time.Truncate(time.Millisecond), b.Time.Truncate(time.Millisecond)
	if !at.Equal(bt) {
		return at.After(bt)
	}
	return a.TransmissionID > b.TransmissionID
}

// SenderReceiptOf returns the receipt of m's sender system for m: as
// MessageReceipt finds it, or, for a message stored before ReceiptID, the
// newest receipt naming its UUID (ReceiptFor). NotFound when there is
// none (the sender consumed them all).
func SenderReceiptOf(ctx context.Context, rs ReceiptReader, m Message) (Receipt, error) {
	if m.ReceiptID == "" {
		return rs.ReceiptFor(ctx, m.SenderSystemID, m.UUID)
	}
	r, ok, err := MessageReceipt(m, func(id string) (Receipt, bool, error) {
		r, err := rs.GetReceipt(ctx, m.SenderSystemID, id)
		if ErrorCode(err) == NotFound {
			return Receipt{}, false, nil
		}
		return r, err == nil, err
	})
	if err == nil && !ok {
		err = Errorf(NotFound, "no receipt for message %s", m.UUID)
	}
	return r, err
}

// NewID returns a new identifier for a record the hub creates (receipts,
// events): a UUID version 7, whose leading 48 bits are the time in
// milliseconds. Stores keep such records in ordered indexes, and ids that
// grow with time land next to each other instead of on a random page, so a
// group commit of many messages writes a few pages instead of one per id.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// ContentKey is the blob key of a message's content as one submission
// (its receipt's transmission ID) stores it: no other submission writes or
// deletes it, not even a resubmission of the same bytes, so a submission
// that fails removes only its own blob. (An earlier version's key,
// msg/<uuid>/<sha>, was shared by identical submissions: a failed retry
// deleted the content of the letter its first submission had stored.)
func ContentKey(uuid, sha, transmission string) string {
	return "msg/" + uuid + "/" + sha + "-" + transmission
}

func (in *Ingest) storeContent(ctx context.Context, m *Message, s Submission) error {
	if s.Body != nil {
		if m.Size <= in.InlineMax {
			m.Content = s.Body
			return nil
		}
		m.ContentKey = ContentKey(m.UUID, m.SHA256, m.ReceiptID)
		_, err := in.Blobs.Put(ctx, m.ContentKey, bytes.NewReader(s.Body), int64(len(s.Body)))
		return err
	}
	if m.Size > in.InlineMax {
		// The spooled body becomes the stored content (without a copy
		// where the blob store shares the spool's filesystem).
		m.ContentKey = ContentKey(m.UUID, m.SHA256, m.ReceiptID)
		_, err := in.Blobs.PutFile(ctx, m.ContentKey, s.Path)
		return err
	}
	f, err := os.Open(s.Path)
	if err != nil {
		return Wrap(Internal, err, "open spooled message")
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return Wrap(Internal, err, "read spooled message")
	}
	m.Content = b
	return nil
}

func letterAttrs(l Letter) map[string]string {
	a := make(map[string]string, len(l.Attrs)+2)
	for k, v := range l.Attrs {
		a[k] = v
	}
	if l.PostType != "" {
		a["postType"] = l.PostType
	}
	if l.ContactPoint != "" {
		a["contactPoint"] = l.ContactPoint
	}
	return a
}

// SizeBucket is the statistics size class of a message.
func SizeBucket(n int64) string {
	switch {
	case n < 100<<10:
		return "<100K"
	case n < 1<<20:
		return "<1M"
	case n < 10<<20:
		return "<10M"
	}
	return ">=10M"
}

func (in *Ingest) emit(ctx context.Context, evs ...Event) error {
	if in.Events == nil {
		return nil
	}
	return in.Events.Emit(ctx, evs...)
}

// record returns the events and counters of an accepted message.
// restoreEvents appends again the first events of a stored message that a
// resubmission was answered for, under the IDs its acceptance gave them and
// with its time: the store keeps those it has and regains those a crash
// between the commit and the events lost (storage/mongo writes them after
// the commit, and the sender whose answer the crash lost resubmits; its
// Repair also appends them, from the commit, under the same IDs). They
// are rebuilt from this submission's routing, so only while that routing
// is the one the message was stored with (its state and deliveries, none
// acknowledged yet; otherwise events of deliveries that never existed
// would be recorded), and only within restoreWindow of the acceptance
// (later, event-log retention may have removed them on purpose). Counters
// are not restored here: adding them again would count the letter twice
// (storage/mongo's Repair restores them exactly once, from the commit).
func (in *Ingest) restoreEvents(ctx context.Context, s Submission, first Message, rt Route, env Envelope) {
	if in.now().Sub(first.Received) > restoreWindow || rt.State != first.State {
		return
	}
	stored, err := in.Store.DeliveriesOf(ctx, first.UUID)
	if err != nil || len(stored) != len(rt.Deliveries) {
		return
	}
	for _, d := range rt.Deliveries {
		if !slices.ContainsFunc(stored, func(x Delivery) bool { return x.ID == d.ID }) {
			return
		}
	}
	evs, _ := in.record(s, first, rt, env, first.Received)
	_ = in.Store.AppendEvents(ctx, evs)
}

func (in *Ingest) now() time.Time {
	if in.Now != nil {
		return in.Now().UTC()
	}
	return time.Now().UTC()
}

// restoreWindow is how long after its acceptance a resubmission restores
// a message's first events: a sender whose answer a crash lost resubmits
// within minutes.
const restoreWindow = time.Hour

func (in *Ingest) record(s Submission, m Message, rt Route, env Envelope, now time.Time) ([]Event, []Counter) {
	base := Event{Actor: s.System.ID, SystemID: s.System.ID, MessageUUID: m.UUID, Party: m.RecipientID, Time: now}
	orgs := []string{m.SenderCVR}
	for _, d := range rt.Deliveries {
		if d.OrgCVR != "" && !slices.Contains(orgs, d.OrgCVR) {
			orgs = append(orgs, d.OrgCVR)
		}
	}
	// IDs derive from the message (its UUID and when it was received), so
	// that restoreEvents can append them again without duplicating them:
	// memo:<uuid>:<received, Unix ms>:<tag>:<how many of the tag before>.
	nevs := 2 // received, validated; then not delivered or held, or one per delivery
	if rt.State == MessageActive {
		nevs += len(rt.Deliveries)
	} else {
		nevs++
	}
	evs := make([]Event, 0, nevs)
	add := func(tag string, detail map[string]string) {
		n := 0
		for i := range evs {
			if evs[i].Tag == tag {
				n++
			}
		}
		var id [128]byte
		b := append(id[:0], "memo:"...)
		b = append(b, m.UUID...)
		b = append(b, ':')
		b = strconv.AppendInt(b, m.Received.UnixMilli(), 10)
		b = append(b, ':')
		b = append(b, tag...)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(n), 10)
		e := base
		e.ID, e.Tag, e.Orgs, e.Detail = string(b), tag, orgs, detail
		evs = append(evs, e)
	}
	received := map[string]string{"size": strconv.FormatInt(m.Size, 10), "mode": m.Mode}
	if env.TransactionID != "" {
		received["transactionId"] = env.TransactionID
	}
	add("MEMO_SEND_RECEIVED", received)
	add("MEMO_SEND_VALIDATED", nil)
	switch rt.State {
	case MessageNotDelivered:
		add("MEMO_SEND_NOT_DELIVERED", map[string]string{"errorCode": rt.ReasonCode})
	case MessageHeld:
		add("DELAYED_MEMO_SEND_VALIDATED_AWAITING_DELAY", map[string]string{"notBefore": m.NotBefore.Format(time.RFC3339)})
	}
	day := DanishDay(now) // statistics count Danish days
	counters := make([]Counter, 0, len(rt.Deliveries)+1)
	channel := "NONE"
	for _, d := range rt.Deliveries {
		channel = string(d.Channel)
		if rt.State == MessageActive {
			switch d.Channel {
			case ChannelSystem, ChannelMailbox:
				add("MEMO_SEND_READY_FOR_FETCH", map[string]string{"queue": d.Queue})
			case ChannelPrint:
				add("MEMO_SEND_QUEUED_FOR_PRINT", nil)
			case ChannelSMS:
				add("MEMO_SEND_QUEUED_FOR_NEM_SMS", nil)
			}
		}
		if d.OrgCVR != "" {
			counters = append(counters, Counter{Key: CounterKey{Org: d.OrgCVR, Day: day, MessageType: m.MessageType,
				Channel: string(d.Channel), SystemID: d.SystemID, Direction: "RECEIVED", SizeBucket: SizeBucket(m.Size)}, Count: 1, Bytes: m.Size})
		}
	}
	counters = append(counters, Counter{Key: CounterKey{Org: m.SenderCVR, Day: day, MessageType: m.MessageType,
		Channel: channel, SystemID: s.System.ID, Direction: "SENT", SizeBucket: SizeBucket(m.Size)}, Count: 1, Bytes: m.Size})
	return evs, counters
}

// Recall withdraws a message held by doNotDeliverUntilDate, before its
// date, on behalf of org: the sender organisation, or the organisation
// whose system sent it on the sender's behalf (Organisation.SendFor).
// NotFound when neither is org; Conflict (message.recall.too.late) when
// it is no longer held, or when a delivery of it is taken already (leased
// or handed over: the outbox or a receiver system took it at its date on
// a clock ahead of this one). See claimHeld for how the recall and the
// hand-over exclude each other.
func (in *Ingest) Recall(ctx context.Context, org, actor, messageUUID string) error {
	now := time.Now().UTC()
	if in.Now != nil {
		now = in.Now().UTC()
	}
	m, err := in.Store.GetMessage(ctx, messageUUID)
	if err != nil {
		return err
	}
	orgs := []string{m.SenderCVR}
	if m.SenderCVR != org {
		sent, err := in.sentBy(ctx, m, org)
		if err != nil {
			return err
		}
		if !sent {
			return Errorf(NotFound, "no message %s sent by %s", messageUUID, org)
		}
		orgs = append(orgs, org)
	}
	// A recall repeated after one cut short (its state written, not all its
	// deliveries removed) finishes it: the deliveries are removed whenever
	// the state says RECALLED, and the event is recorded once they are.
	if m.State != MessageRecalled {
		if m.State != MessageHeld || !m.NotBefore.After(now) {
			return recallTooLate(m.State)
		}
		leases, done, err := in.claimHeld(ctx, m, now)
		if err != nil {
			return err
		}
		if !done {
			if m, err = in.Store.GetMessage(ctx, messageUUID); err != nil {
				return err
			}
			if m.State != MessageRecalled {
				return recallTooLate(m.State)
			}
			// Another recall of the message holds its deliveries: this
			// one finishes it as a repeated recall would.
		} else if err := in.Store.SetMessageState(ctx, messageUUID, MessageRecalled); err != nil {
			// Not recalled: the letter goes out at its date, not
			// recallLease after it.
			in.release(ctx, leases)
			return err
		}
	}
	ds, err := in.Store.DeliveriesOf(ctx, messageUUID)
	if err != nil {
		return err
	}
	if m.State == MessageRecalled && len(ds) == 0 {
		return nil
	}
	for _, d := range ds {
		res, err := in.Store.Ack(ctx, d.ID, now)
		if err != nil {
			return err
		}
		dropPrint(ctx, in.Blobs, d)
		if res.Unreferenced && res.ContentKey != "" {
			_ = in.Blobs.Delete(ctx, res.ContentKey)
		}
	}
	return in.emit(ctx, Event{Tag: "MEMO_MESSAGE_RECALLED", Actor: actor, Orgs: orgs, MessageUUID: messageUUID, Party: m.RecipientID})
}

// recallLease is how long a recall holds a held message's deliveries past
// their date; see claimHeld.
const recallLease = 5 * time.Minute

func recallTooLate(st MessageState) error {
	return &Error{Code: Conflict, Message: "only a message held by doNotDeliverUntilDate can be recalled, before that date",
		Fields: []FieldError{{Resource: "message", Field: "state", Code: "message.recall.too.late", Message: "the message has been released", RejectedValue: string(st)}}}
}

// claimHeld leases every delivery of the held message m for its recall,
// before RECALLED is written, so that the recall and whoever takes the
// letter at its date (the print or SMS outbox, a receiver system) exclude
// each other with the one primitive every store makes atomic: of
// concurrent leases of a delivery exactly one wins. A delivery is held
// (Lease answers Forbidden before AvailableAt), so it is leased as of its
// date, until date+recallLease: from then on whoever claims it finds it
// leased, and the recall, which checked that the date is still ahead,
// has at least recallLease to write RECALLED and remove the deliveries.
//
// It returns the leases and true, or reports false, having given back
// what it leased, when a delivery is
// leased by another (the outbox took it at its date, on a clock ahead of
// this one) or gone (handed over already): the recall is too late, and
// RECALLED is never written while the letter is being handed over; so
// also when the message has no delivery left.
// Parked deliveries (Forbidden at the date) nobody hands over.
//
// The window that remains: a recall that stalls longer than recallLease
// past the date between this lease and its write of RECALLED (or a clock
// that far behind the outbox's) lets the outbox claim the letter after
// the recall's lease expired. The outbox reads the message's state again
// right before it hands an item over and drops a recalled one, which
// narrows that window to the outbox's own read-to-hand-over step.
func (in *Ingest) claimHeld(ctx context.Context, m Message, now time.Time) ([]Lease, bool, error) {
	var held []Lease
	mine := map[string]bool{}
	wasGone := false
	// A delivery that is gone was handed over, or moved: a move of the
	// recipient's mailbox to its receiver system replaces it with another
	// delivery of the message, which the next round leases. A round that
	// finds nothing new after a gone one means a hand-over.
	for range 3 {
		ds, err := in.Store.DeliveriesOf(ctx, m.UUID)
		if err != nil {
			in.release(ctx, held)
			return nil, false, err
		}
		fresh, gone := 0, false
		for _, d := range ds {
			if mine[d.ID] {
				continue
			}
			fresh++
			at := now
			if d.AvailableAt.After(at) {
				at = d.AvailableAt
			}
			l, err := in.Store.Lease(ctx, d.ID, "recall:"+m.UUID, recallLease, at)
			switch ErrorCode(err) {
			case "":
				held, mine[d.ID] = append(held, l), true
			case Forbidden:
				mine[d.ID] = true // parked: nobody hands it over
			case NotFound:
				gone = true
			case Conflict:
				in.release(ctx, held)
				return nil, false, nil
			default:
				in.release(ctx, held)
				return nil, false, err
			}
		}
		switch {
		case gone:
			wasGone = true
			continue
		case fresh == 0 && (wasGone || len(mine) == 0):
			// A delivery gone and none in its place, or none at all:
			// handed over or fetched already (Recall writes RECALLED
			// before it removes any).
			in.release(ctx, held)
			return nil, false, nil
		}
		return held, true, nil
	}
	in.release(ctx, held)
	return nil, false, Errorf(Unavailable, "the deliveries of message %s keep changing; recall it again", m.UUID)
}

// release gives leases back (best effort: they expire anyway).
func (in *Ingest) release(ctx context.Context, ls []Lease) {
	for _, l := range ls {
		_ = in.Store.Release(context.WithoutCancel(ctx), l)
	}
}

// sentBy reports whether a system of org sent m (on its sender's behalf).
func (in *Ingest) sentBy(ctx context.Context, m Message, org string) (bool, error) {
	if m.SenderSystemID == "" {
		return false, nil
	}
	sys, err := in.Store.GetSystem(ctx, m.SenderSystemID)
	if ErrorCode(err) == NotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return sys.OrgCVR == org, nil
}
