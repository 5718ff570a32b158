package retrieval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posthub/posthub/hub"
)

// InvalidPolicy is what an INVALID business receipt does to a delivery.
type InvalidPolicy string

const (
	// InvalidPark sets the delivery aside for an administrator (default):
	// a message the system could not process will not improve by retrying.
	InvalidPark InvalidPolicy = "park"
	// InvalidRelease gives the lease back so the message is fetched again;
	// it is parked once it has used its MaxAttempts.
	InvalidRelease InvalidPolicy = "release"
)

// Event tags this package emits (NgDP's where they exist).
const (
	TagFetched           = "MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM"
	TagReadyForFetch     = "MEMO_SEND_READY_FOR_FETCH"
	TagParked            = "MEMO_SEND_PARKED"
	TagUnparked          = "MEMO_SEND_UNPARKED"
	TagBusinessReceipt   = "BUSINESS_RECEIPT_RECEIVED_BY_RECIPIENT_SYSTEM"
	TagTransformFailed   = "MEMO_TRANSFORMATION_FAILED"
	TagInactiveWarning   = "SYSTEM_INACTIVE_WARNING"
	TagSystemFetchStart  = "SYSTEM_FETCH_STARTED"
	TagSystemFetchStop   = "SYSTEM_FETCH_STOPPED"
	TagSystemFetchFinish = "SYSTEM_FETCH_FINISHED"
	// TagReturnedToMailbox: a deactivated receiver system's post went back
	// to its organisation's mailbox (posthub's own).
	TagReturnedToMailbox = "MEMO_SEND_RETURNED_TO_MAILBOX"
)

// Config holds the service's settings; zero values take the defaults.
type Config struct {
	// LeaseTTL is how long a fetched message stays leased (default 5m).
	LeaseTTL time.Duration
	// MaxAttempts is how many leases a delivery gets before it is parked
	// (default 10).
	MaxAttempts int
	// Invalid is the policy for INVALID business receipts (default park).
	Invalid InvalidPolicy
	// PollInterval is how often a long poll looks at the store for
	// deliveries made by other instances (default 1s); deliveries made by
	// this instance wake it at once.
	PollInterval time.Duration
	// MaxWait bounds a long poll's wait (default 60s).
	MaxWait time.Duration
	// InactiveAfter flags a system that has not fetched for this long while
	// post waits (default 7 days).
	InactiveAfter time.Duration
	// ReconcileInterval is how often Run backfills mailboxes and resumes
	// system-fetch jobs (default 30s).
	ReconcileInterval time.Duration
	// WatchInterval is how often Run checks for inactive systems (default 1h).
	WatchInterval time.Duration
	// TempDir holds conversion scratch files (default os.TempDir()).
	TempDir string
	// Instance names this hub instance in locks (default hostname/pid).
	Instance string
}

func (c *Config) defaults() {
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 5 * time.Minute
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 10
	}
	if c.Invalid == "" {
		c.Invalid = InvalidPark
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.MaxWait <= 0 {
		c.MaxWait = time.Minute
	}
	if c.InactiveAfter <= 0 {
		c.InactiveAfter = 7 * 24 * time.Hour
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = 30 * time.Second
	}
	if c.WatchInterval <= 0 {
		c.WatchInterval = time.Hour
	}
	if c.TempDir == "" {
		c.TempDir = os.TempDir()
	}
	if c.Instance == "" {
		h, _ := os.Hostname()
		c.Instance = fmt.Sprintf("%s/%d", h, os.Getpid())
	}
}

// Store is what system retrieval uses of the hub's metadata (hub.Store has it).
type Store interface {
	ListOrgs(ctx context.Context) ([]hub.Organisation, error)
	GetOrg(ctx context.Context, cvr string) (hub.Organisation, error)
	ListSystems(ctx context.Context, org string) ([]hub.System, error)
	GetSystem(ctx context.Context, id string) (hub.System, error)
	TouchSystem(ctx context.Context, id string, at time.Time) error
	GetMessage(ctx context.Context, uuid string) (hub.Message, error)
	DeliveriesOf(ctx context.Context, messageUUID string) ([]hub.Delivery, error)
	GetDelivery(ctx context.Context, id string) (hub.Delivery, error)
	AddDeliveries(ctx context.Context, ds []hub.Delivery) error
	ListQueue(ctx context.Context, queue string, afterSeq int64, limit int, onlyAvailable bool, now time.Time) ([]hub.Delivery, error)
	CountQueue(ctx context.Context, queue string) (int64, error)
	ClaimNext(ctx context.Context, queue, holder string, ttl time.Duration, now time.Time) (hub.Claimed, error)
	Lease(ctx context.Context, deliveryID, holder string, ttl time.Duration, now time.Time) (hub.Lease, error)
	Release(ctx context.Context, l hub.Lease) error
	Ack(ctx context.Context, deliveryID string, now time.Time) (hub.AckResult, error)
	AckWith(ctx context.Context, deliveryID, messageUUID string, now time.Time, record hub.AckRecord) (hub.AckResult, error)
	Park(ctx context.Context, deliveryID, reason string) error
	Unpark(ctx context.Context, deliveryID string) error
	PutReceipt(ctx context.Context, r hub.Receipt) error
	GetReceipt(ctx context.Context, systemID, transmissionID string) (hub.Receipt, error)
	ReceiptFor(ctx context.Context, systemID, messageUUID string) (hub.Receipt, error)
	AcquireLock(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (bool, error)
	ReleaseLock(ctx context.Context, name, holder string) error
}

// Service is system retrieval. Build it with New; it is safe for
// concurrent use.
type Service struct {
	store  Store
	blobs  hub.Blobs
	events hub.EventSink
	log    *slog.Logger
	now    func() time.Time
	cfg    Config

	waiters notifier

	touchMu sync.Mutex
	touched map[string]time.Time

	// base is Run's context, in which system-fetch jobs run.
	base atomic.Pointer[context.Context]
	// moving counts the system-fetch moves StartFetch started; once stopped
	// (Wait) it starts none, and resumeJobs takes them up at the next start.
	jobsMu      sync.Mutex
	moving      sync.WaitGroup
	jobsStopped bool
	// startMu serialises StartFetch on this instance; the store's lock
	// "retrieval/fetchstart/<org>" across instances.
	startMu   sync.Mutex
	longPolls atomic.Int32
	// jobMu makes each read-modify-write of a job record on this instance
	// whole: a stop is not overwritten by the move's last progress, nor a
	// pruned job written back.
	jobMu sync.Mutex
}

// Deps are what the service works on.
type Deps struct {
	Store  Store
	Blobs  hub.Blobs
	Events hub.EventSink // may be nil; when set it appends to Store's event log (the fetch event is written with the ack, by Store.AckWith)
	Log    *slog.Logger
	Now    func() time.Time
}

// New builds the service.
func New(cfg Config, d Deps) *Service {
	cfg.defaults()
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Service{store: d.Store, blobs: d.Blobs, events: d.Events, log: d.Log, now: d.Now, cfg: cfg,
		waiters: notifier{m: map[string]chan struct{}{}}, touched: map[string]time.Time{}}
}

// Config returns the effective settings.
func (s *Service) Config() Config { return s.cfg }

func (s *Service) clock() time.Time { return s.now().UTC() }

// holder is the lease holder of every poller of a system: pollers of one
// system share its leases' tokens.
func holder(sys hub.System) string { return "system:" + sys.ID }

func queueOf(sys hub.System) string { return hub.SystemQueue(sys.ID) }

func deliveryOf(sys hub.System, messageUUID string) string {
	return hub.DeliveryID(messageUUID, queueOf(sys))
}

func notFound(messageUUID string) error {
	return hub.Errorf(hub.NotFound, "no message %s for this system", messageUUID)
}

func recipientOnly(sys hub.System) error {
	if sys.Role != hub.RecipientSystem || !sys.Active {
		return hub.Errorf(hub.Forbidden, "only an active receiver system retrieves post")
	}
	return nil
}

// Delivered wakes long polls waiting on the queues of ds. Wire it to
// hub.Ingest.Delivered.
func (s *Service) Delivered(ds []hub.Delivery) {
	for _, d := range ds {
		if d.Channel == hub.ChannelSystem {
			s.waiters.notify(d.Queue)
		}
	}
}

// List returns one page of the UUIDs of the messages available to sys
// (not leased, held or parked), in arrival order, and the number of
// messages in its queue (leased and held ones included, parked excluded).
func (s *Service) List(ctx context.Context, sys hub.System, page, size int) ([]string, int64, error) {
	if err := recipientOnly(sys); err != nil {
		return nil, 0, err
	}
	// (page+1)×size entries are read: the API bounds it (api.MaxPagingWindow);
	// here it must at least not overflow.
	if page < 0 || size <= 0 || page > math.MaxInt/size-1 {
		return nil, 0, hub.Errorf(hub.Invalid, "page must be ≥ 0, size > 0 and (page+1)×size an int")
	}
	ds, err := s.store.ListQueue(ctx, queueOf(sys), 0, (page+1)*size, true, s.clock())
	if err != nil {
		return nil, 0, err
	}
	ids := []string{}
	for i := page * size; i < len(ds); i++ {
		ids = append(ids, ds[i].MessageUUID)
	}
	total, err := s.store.CountQueue(ctx, queueOf(sys))
	return ids, total, err
}

// Fetched is a leased message ready to stream. The caller must Close it.
type Fetched struct {
	Delivery hub.Delivery
	Message  hub.Message
	Lease    hub.Lease
	// Version is the MeMo version of Content; Size its length, or -1 when
	// unknown.
	Version string
	Size    int64
	Content io.ReadCloser
}

// Close releases the content reader (never the lease).
func (f *Fetched) Close() error {
	if f == nil || f.Content == nil {
		return nil
	}
	return f.Content.Close()
}

// Fetch leases one message of sys's queue and opens its content in the
// system's MeMo version. NotFound when the message is not (or no longer,
// or not yet) designated to sys; Conflict "memo.leased" while another
// poller's lease lives, "memo.parked" when it is set aside.
func (s *Service) Fetch(ctx context.Context, sys hub.System, messageUUID string) (*Fetched, error) {
	if err := recipientOnly(sys); err != nil {
		return nil, err
	}
	id := deliveryOf(sys, messageUUID)
	d, err := s.store.GetDelivery(ctx, id)
	if hub.Is(err, hub.NotFound) {
		return nil, notFound(messageUUID)
	}
	if err != nil {
		return nil, err
	}
	now := s.clock()
	if d.AvailableAt.After(now) {
		return nil, notFound(messageUUID)
	}
	l, err := s.store.Lease(ctx, id, holder(sys), s.cfg.LeaseTTL, now)
	switch hub.ErrorCode(err) {
	case "":
	case hub.Conflict:
		return nil, conflict("memo.leased", "another poller holds a live lease on this message; it becomes fetchable again when the lease expires", messageUUID)
	case hub.NotFound:
		return nil, notFound(messageUUID)
	case hub.Forbidden:
		if d.State == hub.DeliveryParked {
			return nil, parkedErr(messageUUID)
		}
		return nil, notFound(messageUUID)
	default:
		return nil, err
	}
	d.Attempts = l.Attempt
	f, err := s.open(ctx, sys, d, l, nil)
	if fieldCodeIs(err, "memo.recalled") {
		return nil, notFound(messageUUID)
	}
	return f, err
}

// fieldCodeIs reports whether err is a hub error whose first field error
// has code.
func fieldCodeIs(err error, code string) bool {
	var he *hub.Error
	return errors.As(err, &he) && len(he.Fields) > 0 && he.Fields[0].Code == code
}

func conflict(code, msg, id string) error {
	return &hub.Error{Code: hub.Conflict, Message: msg,
		Fields: []hub.FieldError{{Resource: "memo", Field: "messageUUID", Code: code, Message: msg, RejectedValue: id}}}
}

// errRecalled answers a delivery of a recalled message: Conflict, so that
// Next goes on to the next one; Fetch answers NotFound.
func errRecalled(id string) error {
	return conflict("memo.recalled", "the sender recalled the message", id)
}

func parkedErr(id string) error {
	return conflict("memo.parked", "the message was set aside after failed attempts; the organisation's administrator can unpark it", id)
}

// Next claims the first available message of sys's queue, waiting up to
// wait (bounded by MaxWait) for one to arrive. NotFound when none came.
func (s *Service) Next(ctx context.Context, sys hub.System, wait time.Duration) (*Fetched, error) {
	if err := recipientOnly(sys); err != nil {
		return nil, err
	}
	wait = min(max(wait, 0), s.cfg.MaxWait)
	deadline := time.Now().Add(wait)
	q := queueOf(sys)
	for {
		woken := s.waiters.wait(q) // before looking, so no wake-up is missed
		c, err := s.store.ClaimNext(ctx, q, holder(sys), s.cfg.LeaseTTL, s.clock())
		if err == nil {
			f, err := s.open(ctx, sys, c.Delivery, c.Lease, &c.Message)
			if hub.Is(err, hub.Conflict) {
				continue // parked on the way; look for the next one
			}
			return f, err
		}
		if !hub.Is(err, hub.NotFound) {
			return nil, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, hub.Errorf(hub.NotFound, "no message arrived for this system")
		}
		t := time.NewTimer(min(left, s.cfg.PollInterval))
		s.longPolls.Add(1)
		select {
		case <-woken:
		case <-t.C:
		case <-ctx.Done():
			s.longPolls.Add(-1)
			t.Stop()
			return nil, hub.Wrap(hub.Unavailable, ctx.Err(), "long poll ended")
		}
		s.longPolls.Add(-1)
		t.Stop()
	}
}

// LongPolls is how many Next calls wait for a message now, having found
// none (a gauge for metrics, and for tests that deliver to a waiting
// poller).
func (s *Service) LongPolls() int { return int(s.longPolls.Load()) }

// errConversion marks a message that cannot be converted: retrying will
// not help, so it is parked at once.
var errConversion = errors.New("conversion failed")

// open checks the attempt budget and opens the content of a leased
// delivery. claimed is its message when the lease came with it
// (ClaimNext; UUID "" when the record is gone), nil to read it.
func (s *Service) open(ctx context.Context, sys hub.System, d hub.Delivery, l hub.Lease, claimed *hub.Message) (*Fetched, error) {
	if l.Attempt > s.cfg.MaxAttempts {
		if err := s.park(ctx, d, fmt.Sprintf("not acknowledged after %d attempts", l.Attempt-1), claimed); err != nil {
			return nil, err
		}
		return nil, parkedErr(d.MessageUUID)
	}
	var m hub.Message
	var err error
	switch {
	case claimed == nil:
		m, err = s.store.GetMessage(ctx, d.MessageUUID)
	case claimed.UUID == "":
		err = hub.Errorf(hub.NotFound, "message %s not found", d.MessageUUID)
	default:
		m = *claimed
	}
	if hub.Is(err, hub.NotFound) {
		if err := s.park(ctx, d, "the message record is missing", nil); err != nil {
			return nil, err
		}
		return nil, parkedErr(d.MessageUUID)
	}
	if err != nil {
		_ = s.store.Release(ctx, l)
		return nil, err
	}
	if m.State == hub.MessageRecalled {
		// Recalled while a move added this delivery, or by a recall cut
		// short: it goes, unread.
		res, err := s.store.Ack(ctx, d.ID, s.clock())
		if err != nil {
			return nil, err
		}
		if res.Unreferenced && res.ContentKey != "" {
			_ = s.blobs.Delete(ctx, res.ContentKey)
		}
		return nil, errRecalled(d.MessageUUID)
	}
	rc, size, version, err := s.content(ctx, sys, m)
	if errors.Is(err, errConversion) {
		s.emit(ctx, hub.Event{ID: "retrieval:transform:" + d.ID + ":" + strconv.Itoa(l.Attempt), Tag: TagTransformFailed,
			Actor: holder(sys), Orgs: orgsOf(m, sys), SystemID: sys.ID, MessageUUID: m.UUID,
			Detail: map[string]string{"from": m.MemoVersion, "to": sys.MemoVersion, "error": err.Error()}})
		if perr := s.park(ctx, d, "conversion to MeMo "+sys.MemoVersion+" failed", &m); perr != nil {
			return nil, perr
		}
		return nil, parkedErr(d.MessageUUID)
	}
	if err != nil {
		// Storage trouble: give the lease back so a retry need not wait.
		_ = s.store.Release(ctx, l)
		return nil, err
	}
	s.touch(ctx, sys)
	return &Fetched{Delivery: d, Message: m, Lease: l, Version: version, Size: size, Content: rc}, nil
}

func orgsOf(m hub.Message, sys hub.System) []string {
	orgs := []string{sys.OrgCVR}
	if m.SenderCVR != "" && m.SenderCVR != sys.OrgCVR {
		orgs = append(orgs, m.SenderCVR)
	}
	return orgs
}

func (s *Service) emit(ctx context.Context, evs ...hub.Event) {
	if s.events == nil {
		return
	}
	if err := s.events.Emit(ctx, evs...); err != nil {
		s.log.Warn("retrieval: event not recorded", "tag", evs[0].Tag, "error", err)
	}
}

// park sets a delivery aside and logs why.
func (s *Service) park(ctx context.Context, d hub.Delivery, reason string, m *hub.Message) error {
	if err := s.store.Park(ctx, d.ID, reason); err != nil {
		return err
	}
	var msg hub.Message
	if m != nil {
		msg = *m
	} else {
		msg, _ = s.store.GetMessage(ctx, d.MessageUUID)
	}
	orgs := []string{d.OrgCVR}
	if msg.SenderCVR != "" && msg.SenderCVR != d.OrgCVR {
		orgs = append(orgs, msg.SenderCVR)
	}
	s.log.Warn("retrieval: delivery parked", "delivery", d.ID, "system", d.SystemID, "reason", reason)
	s.emit(ctx, hub.Event{Tag: TagParked, Actor: "retrieval", Orgs: orgs, SystemID: d.SystemID, MessageUUID: d.MessageUUID,
		Party: msg.RecipientID, Detail: map[string]string{"reason": reason, "attempts": strconv.Itoa(d.Attempts)}})
	return nil
}

// AckResult says what an acknowledgement did.
type AckResult struct {
	// AlreadyAcked is true when the message had been acknowledged before.
	AlreadyAcked bool
}

// Ack acknowledges a message sys fetched: the sender's receipt becomes
// COMPLETED, the fetch is logged, the delivery is removed and, when nothing
// else references it, the content too. Idempotent. NotFound when the
// message is not sys's.
func (s *Service) Ack(ctx context.Context, sys hub.System, messageUUID string) (AckResult, error) {
	if err := recipientOnly(sys); err != nil {
		return AckResult{}, err
	}
	id := deliveryOf(sys, messageUUID)
	now := s.clock()
	// Receipt, fetch event and ack in the store's one step (or, without
	// transactions, made durable with the ack and applied after it: the ids
	// derive from the delivery, so applying them again replaces them). The
	// store reads the delivery, the message and its receipt for it at once.
	res, err := s.store.AckWith(ctx, id, messageUUID, now, func(v hub.AckView) (*hub.Receipt, []hub.Event, error) {
		if v.Delivery.AvailableAt.After(now) {
			// Held by doNotDeliverUntilDate: not fetchable, so not the
			// system's to acknowledge (the sender may still recall it).
			// Decided on what the store read for the ack: nothing written.
			return nil, nil, notFound(messageUUID)
		}
		if v.Message == nil {
			return nil, nil, nil
		}
		r := completedReceipt(*v.Message, v.SenderReceipt, v.Delivery.ID, hub.ReceiptCompleted, "", "", now)
		var evs []hub.Event
		if s.events != nil {
			evs = []hub.Event{s.fetchedEvent(sys, *v.Message, "retrieval:fetched:"+v.Delivery.ID, now)}
		}
		return r, evs, nil
	})
	if err != nil {
		return AckResult{}, err
	}
	if res.AlreadyAcked {
		return AckResult{AlreadyAcked: true}, s.ackedBefore(ctx, sys, messageUUID)
	}
	if res.Unreferenced && res.ContentKey != "" {
		if err := s.blobs.Delete(ctx, res.ContentKey); err != nil {
			s.log.Warn("retrieval: content of an acknowledged message not deleted (left for the sweeper)", "key", res.ContentKey, "error", err)
		}
	}
	s.touch(ctx, sys)
	return AckResult{AlreadyAcked: res.AlreadyAcked}, nil
}

// ackedBefore decides whether an ack of a missing delivery is a repeated
// ack (nil) or an ack of something that is not sys's (NotFound): the
// message must be addressed to sys's organisation and be in no other queue.
func (s *Service) ackedBefore(ctx context.Context, sys hub.System, messageUUID string) error {
	m, err := s.store.GetMessage(ctx, messageUUID)
	if hub.Is(err, hub.NotFound) {
		return notFound(messageUUID)
	}
	if err != nil {
		return err
	}
	if m.RecipientID != sys.OrgCVR {
		return notFound(messageUUID)
	}
	ds, err := s.store.DeliveriesOf(ctx, messageUUID)
	if err != nil {
		return err
	}
	for _, d := range ds {
		if d.Queue != queueOf(sys) {
			return notFound(messageUUID)
		}
	}
	return nil
}

// fetchedEvent is the event of sys acknowledging m.
func (s *Service) fetchedEvent(sys hub.System, m hub.Message, id string, now time.Time) hub.Event {
	return hub.Event{ID: id, Time: now, Tag: TagFetched, Actor: holder(sys),
		Orgs: orgsOf(m, sys), SystemID: sys.ID, MessageUUID: m.UUID, Party: m.RecipientID}
}

// senderReceipt sets the sender system's receipt for m to status; if the
// sender consumed its receipt already, a new one (with an id derived from
// key, so repeats replace it) tells it.
func (s *Service) senderReceipt(ctx context.Context, m hub.Message, key string, st hub.ReceiptStatus, code, msg string, now time.Time) error {
	r, err := s.senderReceiptUpdate(ctx, m, key, st, code, msg, now)
	if err != nil || r == nil {
		return err
	}
	return s.store.PutReceipt(ctx, *r)
}

// senderReceiptUpdate returns the receipt senderReceipt would store, or
// nil when there is nothing to change.
func (s *Service) senderReceiptUpdate(ctx context.Context, m hub.Message, key string, st hub.ReceiptStatus, code, msg string, now time.Time) (*hub.Receipt, error) {
	if m.SenderSystemID == "" {
		return nil, nil
	}
	// The message's own receipt, not a newer refusal of another
	// submission of its UUID (hub.SenderReceiptOf).
	r, err := hub.SenderReceiptOf(ctx, s.store, m)
	switch {
	case hub.Is(err, hub.NotFound):
		return completedReceipt(m, nil, key, st, code, msg, now), nil
	case err != nil:
		return nil, err
	}
	return completedReceipt(m, &r, key, st, code, msg, now), nil
}

// completedReceipt is the sender's receipt for m (current: its receipt as
// stored, nil when it has none) set to status st, or nil when it has that
// status already or m has no sender system. A sender that consumed its
// receipt gets a new one, with an id derived from m's own receipt's and st
// (from key for a message stored before hub.Message.ReceiptID) so that
// repeats replace it.
func completedReceipt(m hub.Message, current *hub.Receipt, key string, st hub.ReceiptStatus, code, msg string, now time.Time) *hub.Receipt {
	if m.SenderSystemID == "" {
		return nil
	}
	var r hub.Receipt
	switch {
	case current == nil:
		// The id makes it found as the message's (hub.MessageReceipt).
		base := key
		if m.ReceiptID != "" {
			base = m.ReceiptID
		}
		r = hub.Receipt{TransmissionID: hub.ReissuedReceiptID(base, st), SystemID: m.SenderSystemID, MessageUUID: m.UUID, MessageID: m.MessageID}
	case current.Status == st && current.ErrorCode == code:
		return nil
	default:
		r = *current
	}
	r.Status, r.ErrorCode, r.ErrorMessage, r.Time = st, code, msg, now
	return &r
}

// BusinessReceipt is a receiver system's answer about one message, as
// NgDP's reference recipient sends it.
type BusinessReceipt struct {
	TransmissionID string            `json:"transmissionId,omitempty"`
	MessageUUID    string            `json:"messageUUID,omitempty"`
	ErrorCode      string            `json:"errorCode,omitempty"`
	ErrorMessage   string            `json:"errorMessage,omitempty"`
	Time           time.Time         `json:"timeStamp,omitempty"`
	Status         hub.ReceiptStatus `json:"receiptStatus"`
}

// Receipt applies a business receipt: COMPLETED acknowledges (as Ack);
// INVALID parks the delivery or releases the lease named by leaseToken,
// per the Invalid policy. Invalid for another status; NotFound as Ack.
func (s *Service) Receipt(ctx context.Context, sys hub.System, messageUUID string, br BusinessReceipt, leaseToken string) (AckResult, error) {
	if err := recipientOnly(sys); err != nil {
		return AckResult{}, err
	}
	if br.MessageUUID != "" && br.MessageUUID != messageUUID {
		return AckResult{}, &hub.Error{Code: hub.Invalid, Message: "the receipt's messageUUID differs from the path",
			Fields: []hub.FieldError{{Resource: "receipt", Field: "messageUUID", Code: "receipt.message.uuid.mismatch",
				Message: "messageUUID must equal the message in the path", RejectedValue: br.MessageUUID}}}
	}
	switch br.Status {
	case hub.ReceiptCompleted:
		return s.Ack(ctx, sys, messageUUID)
	case hub.ReceiptInvalid:
	default:
		return AckResult{}, &hub.Error{Code: hub.Invalid, Message: "a business receipt is COMPLETED or INVALID",
			Fields: []hub.FieldError{{Resource: "receipt", Field: "receiptStatus", Code: "receipt.status.invalid",
				Message: "receiptStatus must be COMPLETED or INVALID", RejectedValue: string(br.Status)}}}
	}
	id := deliveryOf(sys, messageUUID)
	d, err := s.store.GetDelivery(ctx, id)
	if hub.Is(err, hub.NotFound) {
		return AckResult{AlreadyAcked: true}, s.ackedBefore(ctx, sys, messageUUID)
	}
	if err != nil {
		return AckResult{}, err
	}
	now := s.clock()
	if d.AvailableAt.After(now) {
		return AckResult{}, notFound(messageUUID) // held, as Fetch and Ack answer
	}
	m, err := s.store.GetMessage(ctx, d.MessageUUID)
	if err != nil && !hub.Is(err, hub.NotFound) {
		return AckResult{}, err
	}
	s.emit(ctx, hub.Event{Tag: TagBusinessReceipt, Time: now, Actor: holder(sys), Orgs: orgsOf(m, sys), SystemID: sys.ID,
		MessageUUID: messageUUID, Detail: map[string]string{"receiptStatus": string(br.Status), "errorCode": br.ErrorCode}})
	if s.cfg.Invalid == InvalidRelease && d.Attempts < s.cfg.MaxAttempts {
		l, ok := parseLease(id, holder(sys), leaseToken)
		if !ok {
			return AckResult{}, &hub.Error{Code: hub.Invalid, Message: "an INVALID receipt gives the lease back: send the X-Posthub-Lease token of the fetch",
				Fields: []hub.FieldError{{Resource: "receipt", Field: "X-Posthub-Lease", Code: "lease.token.invalid",
					Message: "the lease token from the fetch is required", RejectedValue: leaseToken}}}
		}
		return AckResult{}, s.store.Release(ctx, l)
	}
	reason := "receiver system answered INVALID"
	if br.ErrorCode != "" {
		reason += ": " + br.ErrorCode
	}
	if br.ErrorMessage != "" {
		reason += " (" + truncate(br.ErrorMessage, 200) + ")"
	}
	if err == nil {
		if err := s.senderReceipt(ctx, m, d.ID, hub.ReceiptInvalid, orDefault(br.ErrorCode, "recipient.system.invalid"), truncate(br.ErrorMessage, 500), now); err != nil {
			return AckResult{}, err
		}
	}
	return AckResult{}, s.park(ctx, d, reason, &m)
}

// parseLease reads a lease token "<deliveryID>#<epoch>" (hub.Lease.Token)
// for deliveryID.
func parseLease(deliveryID, holder, token string) (hub.Lease, bool) {
	i := strings.LastIndex(token, "#")
	if i < 0 || token[:i] != deliveryID {
		return hub.Lease{}, false
	}
	n, err := strconv.ParseInt(token[i+1:], 10, 64)
	if err != nil {
		return hub.Lease{}, false
	}
	return hub.Lease{DeliveryID: deliveryID, Holder: holder, Epoch: n}, true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// touch records sys's last fetch, at most once a minute per instance (or
// more often when InactiveAfter is short).
func (s *Service) touch(ctx context.Context, sys hub.System) {
	now := s.clock()
	every := min(time.Minute, s.cfg.InactiveAfter/10)
	s.touchMu.Lock()
	last, ok := s.touched[sys.ID]
	if ok && now.Sub(last) < every {
		s.touchMu.Unlock()
		return
	}
	s.touched[sys.ID] = now
	s.touchMu.Unlock()
	if err := s.store.TouchSystem(ctx, sys.ID, now); err != nil {
		s.log.Warn("retrieval: last fetch not recorded", "system", sys.ID, "error", err)
	}
}

// Parked lists the parked deliveries of an organisation's receiver systems.
func (s *Service) Parked(ctx context.Context, org string) ([]hub.Delivery, error) {
	systems, err := s.store.ListSystems(ctx, org)
	if err != nil {
		return nil, err
	}
	out := []hub.Delivery{}
	for _, sys := range systems {
		if sys.Role != hub.RecipientSystem {
			continue
		}
		var after int64
		for {
			ds, err := s.store.ListQueue(ctx, queueOf(sys), after, 1000, false, s.clock())
			if err != nil {
				return nil, err
			}
			for _, d := range ds {
				if d.State == hub.DeliveryParked {
					out = append(out, d)
				}
				after = d.Seq
			}
			if len(ds) < 1000 {
				break
			}
		}
	}
	return out, nil
}

// Unpark makes an organisation's parked delivery of a message fetchable
// again with its attempts reset. NotFound when there is none.
func (s *Service) Unpark(ctx context.Context, org, actor, messageUUID string) (hub.Delivery, error) {
	ds, err := s.store.DeliveriesOf(ctx, messageUUID)
	if err != nil {
		return hub.Delivery{}, err
	}
	for _, d := range ds {
		if d.OrgCVR != org || d.Channel != hub.ChannelSystem || d.State != hub.DeliveryParked {
			continue
		}
		if err := s.store.Unpark(ctx, d.ID); err != nil {
			return hub.Delivery{}, err
		}
		s.emit(ctx, hub.Event{Tag: TagUnparked, Actor: actor, Orgs: []string{org}, SystemID: d.SystemID, MessageUUID: messageUUID})
		s.waiters.notify(d.Queue)
		d, err := s.store.GetDelivery(ctx, d.ID)
		return d, err
	}
	return hub.Delivery{}, hub.Errorf(hub.NotFound, "no parked delivery of message %s in organisation %s", messageUUID, org)
}

// notifier wakes long polls per queue: wait returns a channel that notify
// closes.
type notifier struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

func (n *notifier) wait(queue string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	ch, ok := n.m[queue]
	if !ok {
		ch = make(chan struct{})
		n.m[queue] = ch
	}
	return ch
}

func (n *notifier) notify(queue string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ch, ok := n.m[queue]; ok {
		close(ch)
		delete(n.m, queue)
	}
}
