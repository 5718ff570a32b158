package hub

import (
	"context"
	"time"
)

// Store is the hub's metadata persistence, as the hub's services use it.
// Backends: storage/bolt (embedded) and storage/mongo (production).
//
// Every method that returns nil has made its change durable (fsync, or a
// majority-acknowledged write). Methods that change several records say so
// when they are atomic; where a backend cannot make them atomic (MongoDB
// without transactions) it orders its writes so that a crash leaves no
// half-visible state and repairs the remainder in Repair.
type Store interface {
	Orgs
	Contacts
	Messages
	Queues
	Receipts
	EventStore
	Counters
	Policies
	Users
	Locks
	// MailboxStore is part of every store: the viewer, consents and
	// notifications must exist on every backend (no feature may switch
	// itself off because a backend lacks a method).
	MailboxStore

	// Repair finishes or undoes work a crash interrupted (e.g. a message
	// whose deliveries were not all written). It is called at start-up and
	// periodically; it is idempotent and safe to run on several instances.
	Repair(ctx context.Context, now time.Time) error
	// Ping reports whether the store is reachable (Unavailable if not).
	Ping(ctx context.Context) error
	Close() error
}

// Orgs holds organisations, their systems and their contact structure.
type Orgs interface {
	// CreateOrg returns Conflict when the CVR exists.
	CreateOrg(ctx context.Context, o Organisation) error
	// UpdateOrg replaces the organisation if its Version equals the stored
	// one (optimistic concurrency) and increments Version. NotFound, Conflict.
	UpdateOrg(ctx context.Context, o Organisation) error
	// GetOrg returns NotFound when absent.
	GetOrg(ctx context.Context, cvr string) (Organisation, error)
	ListOrgs(ctx context.Context) ([]Organisation, error)

	// CreateSystem stores a new system. Conflict when the ID or TokenHash
	// is taken. An active receiver system joins its organisation through
	// ChangeReceivers only: Invalid here.
	CreateSystem(ctx context.Context, s System) error
	// UpdateSystem replaces the system if Version matches, increments it.
	// NotFound, Conflict. What the receiver rule is about — Role, Mailbox,
	// Default, and Active of a receiver system — changes through
	// ChangeReceivers only: Invalid when s would change it.
	UpdateSystem(ctx context.Context, s System) error
	// ChangeReceivers changes which of org's receiver systems are active
	// and which of them is the default, as ch.Rule decides, and stores
	// ch.Add (a new receiver system of org, or nil) in the same step.
	//
	// The rule is given the organisation's active receiver systems as they
	// stand at the instant of the write, and the decision and the write are
	// one atomic step (bolt: one transaction; MongoDB: one unique insert):
	// of any number of concurrent calls, on any number of hub instances,
	// each rule sees the outcome of every call that succeeded before it. So
	// whatever the rule enforces over the whole set — at most N per
	// mailbox, exactly one default — holds however many administrators
	// act at once.
	//
	// Systems the rule leaves out become inactive (Active and Default
	// false), the one it marks Default is the default; each system that
	// changes gets Updated = ch.At and Version+1. ch.Add is stored active,
	// with the Default the rule gave it, and updated in place to what was
	// stored. The rule's error is returned unchanged and nothing is
	// written (the hub's rules answer Conflict with the field codes
	// system.limit.authority.post, system.limit.cvr.post,
	// system.limit.company, system.default.exists,
	// system.default.not.eligible and system.default.required; see
	// Registry). Conflict when ch.Add's ID or TokenHash is taken; Invalid
	// when the rule keeps a system that was not active or drops ch.Add.
	ChangeReceivers(ctx context.Context, org string, ch ReceiverChange) error
	// GetSystem returns NotFound when absent.
	GetSystem(ctx context.Context, id string) (System, error)
	// SystemByToken finds the system whose TokenHash equals hash. NotFound.
	SystemByToken(ctx context.Context, hash string) (System, error)
	// ListSystems returns an organisation's systems, in creation order.
	ListSystems(ctx context.Context, org string) ([]System, error)
	// TouchSystem records the time of a system's last fetch (best effort,
	// last writer wins).
	TouchSystem(ctx context.Context, id string, at time.Time) error

	// PutContactGroup creates or replaces a group (Version as UpdateOrg;
	// Version 0 creates, Conflict if the ID exists).
	PutContactGroup(ctx context.Context, g ContactGroup) error
	// DeleteContactGroup returns NotFound when absent or of another org.
	DeleteContactGroup(ctx context.Context, org, id string) error
	ListContactGroups(ctx context.Context, org string) ([]ContactGroup, error)
	// PutContactPoint creates or replaces a point, as PutContactGroup. A
	// contact-point code (type and value) names at most one contact point
	// of an organisation, decided in the same step as the write: Conflict
	// with field code "contact.point.code.taken" (CodeTaken) when another
	// point of the organisation carries one of p's codes.
	PutContactPoint(ctx context.Context, p ContactPoint) error
	// GetContactPoint returns NotFound when absent.
	GetContactPoint(ctx context.Context, id string) (ContactPoint, error)
	// DeleteContactPoint returns NotFound when absent or of another org.
	DeleteContactPoint(ctx context.Context, org, id string) error
	ListContactPoints(ctx context.Context, org string) ([]ContactPoint, error)
	// PutRoutingRule creates or replaces a rule by ID.
	PutRoutingRule(ctx context.Context, r RoutingRule) error
	// DeleteRoutingRule returns NotFound when absent or of another org.
	DeleteRoutingRule(ctx context.Context, org, id string) error
	// ListRoutingRules returns an organisation's rules by ascending Priority.
	ListRoutingRules(ctx context.Context, org string) ([]RoutingRule, error)
}

// Receiver is an active receiver system as the receiver rule sees it.
type Receiver struct {
	ID      string
	Mailbox MailboxKind
	Default bool
}

// ReceiverRule decides a change of an organisation's active receiver
// systems: given those active now, in creation order, it returns those to
// be active after the change, with the default marked, or the error that
// refuses the change. A store may call it more than once (a retry after a
// concurrent change); the call whose outcome is written is the last.
type ReceiverRule func(active []Receiver) ([]Receiver, error)

// ReceiverChange is one call of Orgs.ChangeReceivers.
type ReceiverChange struct {
	// Add is a new receiver system to store in the same step, or nil.
	Add *System
	// At is the Updated time of every system the change touches.
	At   time.Time
	Rule ReceiverRule
}

// Contacts is the contact register.
type Contacts interface {
	// PutContacts creates or replaces entries by ID (a bulk import calls it
	// with batches).
	PutContacts(ctx context.Context, cs []Contact) error
	// GetContact returns NotFound when the party is not in the register.
	GetContact(ctx context.Context, id string) (Contact, error)
	DeleteContact(ctx context.Context, id string) error
}

// Messages holds accepted messages and their deliveries.
type Messages interface {
	// PutMessage records an accepted message, all its deliveries and the
	// sender's receipt as one durable step: after a crash either all of them
	// are visible or none is. Returns Conflict (and changes nothing) when a
	// message with the same UUID exists; the caller compares SHA256 to tell
	// an idempotent resubmission from a clash. Assigns each delivery's Seq.
	PutMessage(ctx context.Context, m Message, ds []Delivery, r Receipt) error
	// PutMessageWith is PutMessage that also appends the message's first
	// events (as AppendEvents) and adds its statistics (as AddCounters).
	// A backend with transactions does all of it in one durable step; one
	// without (MongoDB) writes the events and counters right after the
	// message, so a crash in between can lose them but never the message.
	// Ingest always calls this one.
	PutMessageWith(ctx context.Context, m Message, ds []Delivery, r Receipt, evs []Event, cs []Counter) error
	// GetMessage returns NotFound when absent.
	GetMessage(ctx context.Context, uuid string) (Message, error)
	// GetMessages returns the messages of uuids that exist, by UUID,
	// without their Content (listings have no use for it; GetMessage has
	// it): one read for a page of a mailbox instead of one per letter.
	GetMessages(ctx context.Context, uuids []string) (map[string]Message, error)
	// SetMessageState changes a message's state (recall, release of a
	// held message). NotFound.
	SetMessageState(ctx context.Context, uuid string, st MessageState) error
	// DeleteMessage removes a message record (not its deliveries). Absent
	// is not an error.
	DeleteMessage(ctx context.Context, uuid string) error
	// ListMessagesBySender pages an organisation's sent messages by
	// descending Received (sent-archive, recall). after is the UUID of the
	// last message of the previous page, or "".
	ListMessagesBySender(ctx context.Context, senderCVR, after string, limit int) ([]Message, error)
}

// Queues holds deliveries, leases and acknowledgements. A delivery belongs
// to one queue; within a queue deliveries are ordered by Seq.
//
// Leases are the one write a backend may keep out of durable storage: a
// backend whose data only one process can open (bolt) keeps them in that
// process's memory, and its restart ends every lease as an expiry would.
// Backends shared by several instances (MongoDB) store them.
type Queues interface {
	// AddDeliveries adds deliveries for messages already stored (first
	// connection of a receiver system, release of a held message). A
	// delivery whose ID exists is skipped, so the call is idempotent.
	AddDeliveries(ctx context.Context, ds []Delivery) error
	// GetDelivery returns NotFound when absent (e.g. acknowledged).
	GetDelivery(ctx context.Context, id string) (Delivery, error)
	// ListQueue returns up to limit deliveries of a queue with Seq > afterSeq,
	// in Seq order. With onlyAvailable it skips held (AvailableAt > now),
	// parked and currently leased deliveries.
	ListQueue(ctx context.Context, queue string, afterSeq int64, limit int, onlyAvailable bool, now time.Time) ([]Delivery, error)
	// CountQueue counts a queue's deliveries that are not parked.
	CountQueue(ctx context.Context, queue string) (int64, error)
	// DeliveriesOf lists every delivery of one message.
	DeliveriesOf(ctx context.Context, messageUUID string) ([]Delivery, error)

	// Lease claims one delivery for holder until now+ttl. It fails with
	// Conflict when another live lease holds it, NotFound when the delivery
	// is gone (acknowledged), Forbidden when it is held (AvailableAt > now)
	// or parked. Taking over an expired lease counts a new attempt. Exactly
	// one of any number of concurrent callers (on any number of instances)
	// wins a given delivery at a time. A lease taken with now at or after
	// a held delivery's AvailableAt holds it, before that date, until
	// now+ttl: Recall claims a held letter so.
	Lease(ctx context.Context, deliveryID, holder string, ttl time.Duration, now time.Time) (Lease, error)
	// ClaimNext leases the first available delivery of a queue (Seq order)
	// and returns it with its lease and its message, which the caller is
	// about to read anyway (a store may read it beside the lease). Returns
	// NotFound when nothing is available.
	ClaimNext(ctx context.Context, queue, holder string, ttl time.Duration, now time.Time) (Claimed, error)
	// Release gives a lease back early (failed processing) so the delivery is
	// immediately available again. A stale lease is not an error.
	Release(ctx context.Context, l Lease) error
	// Ack removes the delivery for good. Idempotent: acknowledging a delivery
	// that is already gone returns (AckResult{AlreadyAcked: true}, nil).
	// When the message has no remaining deliveries and no archive copy,
	// the result names its content key so the caller deletes the blob (a
	// sweeper catches the blob if the caller crashes first).
	Ack(ctx context.Context, deliveryID string, now time.Time) (AckResult, error)
	// Park sets a delivery aside after too many failed attempts.
	Park(ctx context.Context, deliveryID, reason string) error
	// Unpark makes a parked delivery available again with its attempts reset.
	Unpark(ctx context.Context, deliveryID string) error
	// AckWith is Ack that also records what the acknowledgement causes:
	// record is called once with the delivery, its message and the sender's
	// receipt (what the store read for the ack, in one step where it can:
	// messageUUID, the delivery's message, lets it read the message beside
	// the delivery) and returns a receipt to store as by PutReceipt (nil:
	// none) and events to append as by AppendEvents. An ack of a delivery
	// that is gone is AlreadyAcked and writes nothing (the first ack wrote
	// it); record is then not called, or, when another ack won a race
	// after the delivery was read, called in vain. Invalid for an event without ID. A
	// backend with transactions does it in one durable step; one without
	// makes the ack and what it records durable together first and applies
	// the rest after it, finishing on a retried ack or in Repair after a
	// crash, so callers give receipts and events IDs derived from the
	// delivery: applying them twice replaces rather than doubles them.
	AckWith(ctx context.Context, deliveryID, messageUUID string, now time.Time, record AckRecord) (AckResult, error)
}

// Claimed is a delivery ClaimNext leased, with its lease and its message
// (whose UUID is "" when the message record is gone).
type Claimed struct {
	Delivery Delivery
	Lease    Lease
	Message  Message
}

// AckView is what an acknowledgement may depend on.
type AckView struct {
	Delivery Delivery
	// Message is the delivery's message; nil when its record is gone.
	Message *Message
	// SenderReceipt is the receipt of the message's sender system for it,
	// as SenderReceiptOf finds it: by id (MessageReceipt), or, for a
	// message stored before Message.ReceiptID, the newest naming it (as
	// ReceiptFor); nil when there is none.
	SenderReceipt *Receipt
}

// AckRecord says what an acknowledgement records: the receipt to store
// (nil: none) and the events to append. An error aborts the ack.
type AckRecord func(AckView) (*Receipt, []Event, error)

// AckResult reports what an acknowledgement did.
type AckResult struct {
	AlreadyAcked bool
	// Unreferenced is true when this ack removed the message's last delivery.
	Unreferenced bool
	// ContentKey is the blob to delete when Unreferenced ("" if inline).
	ContentKey string
}

// Receipts holds sender receipts, per sender system.
type Receipts interface {
	// PutReceipt creates or replaces a receipt by TransmissionID.
	PutReceipt(ctx context.Context, r Receipt) error
	// GetReceipt returns NotFound when absent or not the system's.
	GetReceipt(ctx context.Context, systemID, transmissionID string) (Receipt, error)
	// ReceiptFor finds a system's receipt for a message UUID: of the
	// system's receipts naming it, the newest by Time (to the millisecond)
	// and then by greatest TransmissionID.
	// A system may hold several: the INVALID receipt of a refused archive
	// entry named after the UUID beside the receipt of the message later
	// accepted under it, or one issued anew after the sender deleted the
	// first (DeleteReceipt). The newest is the hub's latest word on the
	// UUID, and deleting it lets the next newest answer. That holds the
	// instant the message is accepted (bolt: while it is still in the
	// accept log). NotFound when there is none, or messageUUID is "".
	// A message's own receipts are found by id instead
	// (Message.ReceiptID, MessageReceipt).
	ReceiptFor(ctx context.Context, systemID, messageUUID string) (Receipt, error)
	// ListReceipts pages a system's receipts in time order after the given
	// transmission id ("" for the start).
	ListReceipts(ctx context.Context, systemID, after string, limit int) ([]Receipt, error)
	// DeleteReceipt removes a receipt; absent is not an error.
	DeleteReceipt(ctx context.Context, systemID, transmissionID string) error
}

// EventStore holds the event log. Appends are cheap and unordered
// (pending); one sealer at a time, holding the sealer lease, seals pending
// events into the gap-free hash chain. The lease fences every sealed write:
// a sealer whose lease another has taken can never write to the chain.
type EventStore interface {
	// AppendEvents durably records pending events (Seq 0). Their IDs must be
	// unique; an ID that exists (pending or sealed) is skipped.
	AppendEvents(ctx context.Context, evs []Event) error
	// PendingEvents returns up to limit pending events, oldest first.
	PendingEvents(ctx context.Context, limit int) ([]Event, error)
	// LeaseSealer takes the sealer lease for l.Holder until now+ttl or, when
	// l is the lease the holder holds (as the last LeaseSealer or
	// SealEvents returned it), renews it. It returns the lease held, with
	// the chain's head; or Epoch 0 when another holder's lease is live (its
	// Holder and Expires then say whose and until when) or a concurrent
	// taker won. Taking the lease first completes a seal its previous
	// holder had started, so the head returned is final.
	LeaseSealer(ctx context.Context, l SealerLease, ttl time.Duration, now time.Time) (SealerLease, error)
	// ReleaseSealer ends lease l if it is still the current one, so that
	// another instance can take over at once.
	ReleaseSealer(ctx context.Context, l SealerLease) error
	// SealEvents stores sealed events (Seq, PrevHash, Hash set; Seq
	// consecutive from l.Seq+1) under lease l and removes them from
	// pending: all of them or, after a crash, none until the next holder
	// of the lease completes them. It returns the lease at its next epoch
	// with the new head. Conflict, storing nothing, when l is no longer the
	// current lease (another sealer took it: the write is fenced) or the
	// first Seq is taken; Invalid when it leaves a gap.
	SealEvents(ctx context.Context, l SealerLease, evs []Event) (SealerLease, error)
	// LastSealed returns the sealed event with the highest Seq, or NotFound
	// when none is sealed.
	LastSealed(ctx context.Context) (Event, error)
	// ScanEvents calls fn for sealed events with Seq >= from in Seq order.
	ScanEvents(ctx context.Context, from uint64, fn func(Event) error) error
	// QueryEvents returns sealed events matching q in Seq order (or
	// descending).
	QueryEvents(ctx context.Context, q EventQuery) ([]Event, error)
	// DeleteEventsBefore removes sealed events older than t (retention); the
	// chain stays verifiable from the first remaining entry.
	DeleteEventsBefore(ctx context.Context, t time.Time) (int64, error)
}

// SealerLease is a sealer's hold on the event log's chain. Epoch moves on
// with every seal and every change of holder; a store refuses a seal whose
// epoch is no longer the current one, whatever the clocks say.
type SealerLease struct {
	Holder  string
	Epoch   uint64    // 0: not held
	Expires time.Time // end of the lease (of the live holder's when Epoch is 0)
	// The chain's head at this epoch: the last sealed Seq and its Hash
	// (0 and "" for an empty log).
	Seq  uint64
	Hash string
}

// Counters holds statistics. Increments are exact under concurrency.
type Counters interface {
	// AddCounters adds the counts and bytes of each delta to its cell.
	AddCounters(ctx context.Context, deltas []Counter) error
	// ReadCounters returns the cells matching q, summed per key.
	ReadCounters(ctx context.Context, q CounterQuery) ([]Counter, error)
}

// Policies holds casbin policy lines.
type Policies interface {
	LoadPolicies(ctx context.Context) ([]PolicyLine, error)
	// AddPolicy returns Conflict when the line exists.
	AddPolicy(ctx context.Context, p PolicyLine) error
	// RemovePolicy removes a line. NotFound, changing nothing, when the line
	// is absent: of concurrent removals of one line, on any number of
	// instances, exactly one succeeds, so a caller records a removal (a
	// revoked privilege's event, its sessions' end) once, and only when
	// something was removed.
	RemovePolicy(ctx context.Context, p PolicyLine) error
	// PolicyStamp changes whenever a line is added or removed, so instances
	// know when to reload.
	PolicyStamp(ctx context.Context) (string, error)
}

// Users holds human accounts.
type Users interface {
	// CreateUser returns Conflict when the ID exists.
	CreateUser(ctx context.Context, u User) error
	// PutUser replaces an existing user. NotFound.
	PutUser(ctx context.Context, u User) error
	// GetUser returns NotFound when absent.
	GetUser(ctx context.Context, id string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)

	// SessionGeneration returns the user's session generation, 0 until the
	// first bump. A session carries the generation read when it was issued
	// and is refused once the stored one differs, on every instance.
	SessionGeneration(ctx context.Context, id string) (uint64, error)
	// BumpSessionGeneration ends every session of the user issued so far
	// (logout, password or privilege change): once it returns,
	// SessionGeneration answers more than anything it answered before the
	// call. A generation never goes down; concurrent bumps may end on one
	// value. It needs no user record. Returns the new generation.
	BumpSessionGeneration(ctx context.Context, id string) (uint64, error)
}

// Locks are named leases for singleton background work (the event sealer,
// counter compaction, sweepers) across hub instances.
type Locks interface {
	// AcquireLock takes or renews the named lock for holder until now+ttl.
	// Returns (true, nil) when holder holds it afterwards, (false, nil) when
	// another holder's lock is live.
	AcquireLock(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (bool, error)
	// ReleaseLock drops the lock if holder holds it.
	ReleaseLock(ctx context.Context, name, holder string) error
}
