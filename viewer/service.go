// Package viewer is the citizen and company side of the hub: the service
// behind the viewing-client API (mailbox listing, letters, rendered
// letters, files, read/unread, folders, delete with retention and purge),
// consent-based access for authorities, and the reference web mailbox
// (viewer/web).
//
// Guarantees:
//   - A viewing client sees a mailbox only through a verified user
//     assertion (assertion.go) whose person owns it: a citizen their CPR
//     mailbox, a company user their organisation's mailboxes and only with
//     the message-employee role there (Roles). Anything else is Forbidden,
//     and a letter outside the mailbox is NotFound, never a hint.
//   - A letter is visible once its mailbox delivery is available
//     (doNotDeliverUntilDate passed) and while the message is not
//     recalled; the mailbox is the delivery queue hub.MailboxQueue joined
//     with the viewer's state (hub.MailboxItem), so nothing is written when
//     a letter arrives.
//   - Delete moves a letter to the DELETED folder; the hub keeps it for
//     Config.Retention and then Purge acknowledges the delivery (content is
//     removed when nothing else references it). Purge is idempotent and
//     safe on several instances.
//   - Reading is logged (MESSAGE_READ, recipient side only: the sender
//     never learns it), and every access an authority makes under a consent
//     is logged before the answer (CONSENT_ACCESS) or refused.
package viewer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
)

// Roles answers whether a company user may read an organisation's post.
// The rbac package implements it; RoleMessageEmployee names the role.
type Roles interface {
	// MayReadMail reports whether user holds the message-employee role (or
	// one implying it) in organisation cvr.
	MayReadMail(ctx context.Context, userID, cvr string) (bool, error)
}

// RoleMessageEmployee is the FBRS-style role that lets a company user read
// the organisation's mailbox.
const RoleMessageEmployee = "message-employee"

// Event tags of the viewer side that the national hub has no name for.
const (
	TagConsentGranted = "CONSENT_GRANTED"
	TagConsentRevoked = "CONSENT_REVOKED"
	TagConsentAccess  = "CONSENT_ACCESS"
	TagMessagePurged  = "MESSAGE_PURGED"
)

// Config tunes the service.
type Config struct {
	// Audience is the aud a user assertion must carry (default "posthub").
	Audience string
	// Retention is how long a deleted letter is kept before it is purged
	// (default 30 days).
	Retention time.Duration
	// ListScan bounds the letters one listing reads to fill its page
	// (default 1,000): a filter that matches few letters of a large
	// mailbox gets a short page, or an empty one, with Next set to go on
	// from (a listing ends only at a page without Next).
	ListScan int
}

// Store is what the viewer reads of the hub's messages and deliveries (hub.Store has it).
type Store interface {
	GetMessage(ctx context.Context, uuid string) (hub.Message, error)
	GetMessages(ctx context.Context, uuids []string) (map[string]hub.Message, error)
	GetDelivery(ctx context.Context, id string) (hub.Delivery, error)
	GetOrg(ctx context.Context, cvr string) (hub.Organisation, error)
	ListQueue(ctx context.Context, queue string, afterSeq int64, limit int, onlyAvailable bool, now time.Time) ([]hub.Delivery, error)
	Ack(ctx context.Context, deliveryID string, now time.Time) (hub.AckResult, error)
}

// Mailboxes is the viewer-side state the viewer keeps (hub.MailboxStore has it).
type Mailboxes interface {
	PutMailboxItem(ctx context.Context, it hub.MailboxItem) error
	MailboxItems(ctx context.Context, deliveryIDs []string) (map[string]hub.MailboxItem, error)
	DeleteMailboxItem(ctx context.Context, deliveryID string) error
	PurgeableItems(ctx context.Context, now time.Time, limit int) ([]hub.MailboxItem, error)
	PutConsent(ctx context.Context, c hub.Consent) error
	GetConsent(ctx context.Context, citizen, org string) (hub.Consent, error)
	ListConsents(ctx context.Context, citizen, org string) ([]hub.Consent, error)
	AssertionKeys(ctx context.Context, systemID string) ([]hub.AssertionKey, error)
	PutAssertionKey(ctx context.Context, k hub.AssertionKey) error
}

// Service is the viewer side of the hub.
type Service struct {
	Store     Store
	Mailboxes Mailboxes
	Blobs     hub.Blobs
	Events    hub.EventSink
	Roles     Roles
	Config    Config
	Log       *slog.Logger
	Now       func() time.Time
	// ParseBudget bounds the bytes of letters held parsed at once (Hold):
	// a parsed letter holds its decoded files in memory, so a few
	// downloads of small files from large letters could otherwise take
	// gigabytes. 0: DefaultParseBudget.
	ParseBudget int64

	names     senderNames
	parseOnce sync.Once
	parsing   *semaphore.Weighted
	budget    int64
}

// DefaultParseBudget is ParseBudget's default: 256 MiB of letters parsed
// at once (a 99 MB letter and a few small ones).
const DefaultParseBudget = 256 << 20

// Hold reserves room for a letter of size bytes to be parsed and used
// (Read, Content); release gives it back. A letter larger than the whole
// budget takes all of it. It waits while others hold the room, and answers
// Unavailable when ctx ends first.
func (s *Service) Hold(ctx context.Context, size int64) (release func(), err error) {
	s.parseOnce.Do(func() {
		s.budget = s.ParseBudget
		if s.budget <= 0 {
			s.budget = DefaultParseBudget
		}
		s.parsing = semaphore.NewWeighted(s.budget)
	})
	n := min(max(size, 1), s.budget)
	if err := s.parsing.Acquire(ctx, n); err != nil {
		return nil, hub.Wrap(hub.Unavailable, err, "too many large letters are being opened at once; try again shortly")
	}
	return func() { s.parsing.Release(n) }, nil
}

// senderNames keeps the names of the organisations letters come from, for
// listings (a page of a mailbox shows each sender's name, and its letters
// come from a few senders): a listing reads the names it lacks, at most
// NameLookups at a time, and none it read in the last nameTTL. A renamed
// organisation shows its new name within nameTTL.
//
// Only names read are kept. A lookup that fails (a store that is briefly
// unavailable, a cancelled request) leaves the letter without its sender's
// name on this page — the page itself still shows — and is tried again at
// the next listing. NotFound is not kept either: organisations are never
// deleted, so a sender that is not found is a read that does not see it
// yet (a lagging replica), not a fact worth remembering for nameTTL; and a
// listing asks for each sender once.
type senderNames struct {
	mu sync.Mutex
	m  map[string]senderName
}

type senderName struct {
	name string
	at   time.Time
}

// NameLookups is how many senders' names one listing reads at once. A page
// of a mailbox may come from up to 200 senders; reading them all at once
// would put 200 requests on the store for one click. The number is no
// operator's concern: it only trades a first listing's latency (at most
// 200/NameLookups serial round trips, once per nameTTL) against the
// store's load.
const NameLookups = 8

const (
	nameTTL      = time.Minute
	maxNames     = 10_000
	listingBatch = 200
	// defaultListScan is Config.ListScan's default.
	defaultListScan = 1000
)

// of returns the names of the organisations cvrs it could read; a sender
// whose name could not be read is absent.
func (n *senderNames) of(ctx context.Context, store Store, log *slog.Logger, cvrs []string) map[string]string {
	out := make(map[string]string, len(cvrs))
	var missing []string
	n.mu.Lock()
	for _, c := range cvrs {
		if e, ok := n.m[c]; ok && time.Since(e.at) < nameTTL {
			out[c] = e.name
		} else {
			missing = append(missing, c)
		}
	}
	n.mu.Unlock()
	if len(missing) == 0 {
		return out
	}
	got := make([]string, len(missing))
	errs := make([]error, len(missing))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(NameLookups, len(missing)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var o hub.Organisation
				o, errs[i] = store.GetOrg(ctx, missing[i])
				got[i] = o.Name
			}
		}()
	}
	for i := range missing {
		next <- i
	}
	close(next)
	wg.Wait()
	failed, first := 0, -1
	for i, err := range errs {
		if err != nil {
			failed++
			if first < 0 {
				first = i
			}
		}
	}
	if failed > 0 && ctx.Err() == nil {
		// One line a listing, not one a sender: a store that is down would
		// otherwise write 200 lines for each page asked for.
		log.Warn("viewer: senders' names not read; the letters show without them", "failed", failed, "of", len(missing),
			"cvr", missing[first], "error", errs[first])
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil || len(n.m) >= maxNames {
		n.m = map[string]senderName{}
	}
	for i, c := range missing {
		if errs[i] == nil {
			out[c] = got[i]
			n.m[c] = senderName{got[i], now}
		}
	}
	return out
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) audience() string {
	if s.Config.Audience != "" {
		return s.Config.Audience
	}
	return "posthub"
}

// Retention is the configured retention of deleted letters.
func (s *Service) Retention() time.Duration {
	if s.Config.Retention > 0 {
		return s.Config.Retention
	}
	return 30 * 24 * time.Hour
}

func (s *Service) emit(ctx context.Context, ev hub.Event) error {
	if s.Events == nil {
		return nil
	}
	return s.Events.Emit(ctx, ev)
}

// Mailbox is one mailbox a person may read.
type Mailbox struct {
	Owner  string          `json:"owner"`
	Kind   hub.MailboxKind `json:"kind,omitempty"`
	Person Person          `json:"-"`
}

// Queue is the delivery queue of the mailbox.
func (b Mailbox) Queue() string { return hub.MailboxQueue(b.Owner, b.Kind) }

// Open checks that person p may read the mailbox of owner (a CPR, or a CVR
// with kind CVR_POST — the default — or AUTHORITY_POST). Forbidden when the
// person does not own it or lacks the role.
func (s *Service) Open(ctx context.Context, p Person, owner string, kind hub.MailboxKind) (Mailbox, error) {
	switch {
	case p.CPR != "":
		if owner != p.CPR || kind != "" {
			return Mailbox{}, hub.Errorf(hub.Forbidden, "the user assertion's person does not own this mailbox")
		}
		return Mailbox{Owner: owner, Person: p}, nil
	case p.CVR != "":
		if owner != p.CVR {
			return Mailbox{}, hub.Errorf(hub.Forbidden, "the user acts for another organisation")
		}
		if s.Roles == nil {
			return Mailbox{}, hub.Errorf(hub.Forbidden, "company users are not enabled on this hub")
		}
		ok, err := s.Roles.MayReadMail(ctx, p.UserID, p.CVR)
		if err != nil {
			return Mailbox{}, err
		}
		if !ok {
			return Mailbox{}, hub.Errorf(hub.Forbidden, "the user lacks the %s role in %s", RoleMessageEmployee, p.CVR)
		}
		if kind == "" {
			kind = hub.CVRPost
		}
		if kind != hub.CVRPost && kind != hub.AuthorityPost {
			return Mailbox{}, hub.Errorf(hub.Invalid, "unknown mailbox kind %q", kind)
		}
		return Mailbox{Owner: owner, Kind: kind, Person: p}, nil
	}
	return Mailbox{}, hub.Errorf(hub.Forbidden, "no person in the user assertion")
}

// Letter is a letter's metadata as a mailbox shows it.
type Letter struct {
	MessageUUID string     `json:"messageUUID"`
	MessageID   string     `json:"messageId,omitempty"`
	Label       string     `json:"label"`
	SenderCVR   string     `json:"senderCvr"`
	SenderName  string     `json:"senderName,omitempty"`
	Received    time.Time  `json:"received"`
	Size        int64      `json:"size"`
	Folder      hub.Folder `json:"folder"`
	Read        bool       `json:"read"`
	DeletedAt   *time.Time `json:"deletedAt,omitempty"`
	PurgeAt     *time.Time `json:"purgeAt,omitempty"`
	// Seq is the letter's position in the mailbox (the paging cursor).
	Seq int64 `json:"seq"`

	deliveryID string
	item       hub.MailboxItem
}

// Query filters a mailbox listing; zero fields do not filter.
type Query struct {
	// Folder is INBOX (default), ARCHIVE, DELETED or "ALL" (not deleted).
	Folder     hub.Folder
	Sender     string // sender CVR
	From, To   time.Time
	UnreadOnly bool
	// After is the Seq of the last letter of the previous page.
	After int64
	// Size is the page size (default 50, at most 500).
	Size int
}

// Page is one page of a listing; Next is the cursor of the next page, 0
// when this is the last. The API answers it as its one list shape
// (paging.Result, Next as nextCursor).
type Page struct {
	Letters []Letter
	Next    int64
}

// FolderAll lists every letter not deleted.
const FolderAll hub.Folder = "ALL"

// ParseFolder reads a folder name case-insensitively; "" is the inbox.
func ParseFolder(s string) (hub.Folder, error) {
	switch f := hub.Folder(strings.ToUpper(s)); f {
	case "":
		return hub.FolderInbox, nil
	case hub.FolderInbox, hub.FolderArchive, hub.FolderDeleted, FolderAll:
		return f, nil
	}
	return "", &hub.Error{Code: hub.Invalid, Message: "unknown folder", Fields: []hub.FieldError{{Resource: "request",
		Field: "folder", Code: "folder.unknown", Message: "folder must be INBOX, ARCHIVE, DELETED or ALL", RejectedValue: s}}}
}

// List returns a page of the mailbox in arrival order.
func (s *Service) List(ctx context.Context, b Mailbox, q Query) (Page, error) {
	if q.Size <= 0 {
		q.Size = 50
	}
	if q.Size > 500 {
		q.Size = 500
	}
	if q.Folder == "" {
		q.Folder = hub.FolderInbox
	}
	now := s.now()
	var page Page
	after := q.After
	scan := s.Config.ListScan
	if scan <= 0 {
		scan = defaultListScan
	}
	for read := 0; ; {
		if read >= scan {
			page.Next = after // the bound of one request's work: go on from here
			return page, nil
		}
		ds, err := s.Store.ListQueue(ctx, b.Queue(), after, min(listingBatch, scan-read), false, now)
		if err != nil {
			return Page{}, err
		}
		if len(ds) == 0 {
			return page, nil
		}
		letters, err := s.join(ctx, ds, now)
		if err != nil {
			return Page{}, err
		}
		for _, l := range letters {
			if !q.match(l) {
				continue
			}
			if len(page.Letters) == q.Size {
				page.Next = page.Letters[len(page.Letters)-1].Seq
				return page, nil
			}
			page.Letters = append(page.Letters, l)
		}
		if len(ds) < min(listingBatch, scan-read) {
			return page, nil // the mailbox ends here
		}
		read += len(ds)
		after = ds[len(ds)-1].Seq
	}
}

func (q Query) match(l Letter) bool {
	switch q.Folder {
	case FolderAll:
		if l.Folder == hub.FolderDeleted {
			return false
		}
	default:
		if l.Folder != q.Folder {
			return false
		}
	}
	return (q.Sender == "" || l.SenderCVR == q.Sender) &&
		(q.From.IsZero() || !l.Received.Before(q.From)) &&
		(q.To.IsZero() || l.Received.Before(q.To)) &&
		(!q.UnreadOnly || !l.Read)
}

// join turns visible deliveries into letters with their state: the
// viewer's state of the letters and their messages are read side by side
// (one round trip for a page), then the senders' names that are not at
// hand.
func (s *Service) join(ctx context.Context, ds []hub.Delivery, now time.Time) ([]Letter, error) {
	var shown []hub.Delivery
	ids := make([]string, 0, len(ds))
	uuids := make([]string, 0, len(ds))
	for _, d := range ds {
		if d.AvailableAt.After(now) {
			continue // held until doNotDeliverUntilDate
		}
		shown = append(shown, d)
		ids = append(ids, d.ID)
		uuids = append(uuids, d.MessageUUID)
	}
	if len(shown) == 0 {
		return nil, nil
	}
	var (
		items      map[string]hub.MailboxItem
		msgs       map[string]hub.Message
		ierr, merr error
		wg         sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		items, ierr = s.Mailboxes.MailboxItems(ctx, ids)
	}()
	msgs, merr = s.Store.GetMessages(ctx, uuids)
	wg.Wait()
	if err := errors.Join(ierr, merr); err != nil {
		return nil, err
	}
	var senders []string
	seen := map[string]bool{}
	for _, m := range msgs {
		if !seen[m.SenderCVR] {
			seen[m.SenderCVR] = true
			senders = append(senders, m.SenderCVR)
		}
	}
	names := s.names.of(ctx, s.Store, s.logger(), senders)
	var out []Letter
	for _, d := range shown {
		m, ok := msgs[d.MessageUUID]
		if !ok || m.State == hub.MessageRecalled || due(items[d.ID], now) {
			continue
		}
		out = append(out, letter(d, m, items[d.ID], names[m.SenderCVR]))
	}
	return out, nil
}

// PurgeGrace is how long after its purge time a deleted letter is purged.
// From its purge time on, the letter is gone from its mailbox (due); the
// grace lets a state write that read the letter before then land before
// the purge decides, and a write that lands later see that it may have
// (putItem). Hub instances' clocks must agree within it.
const PurgeGrace = time.Minute

// due reports whether a letter's state says it is deleted and its
// retention has run out: it is no longer shown, and is purged PurgeGrace
// later.
func due(it hub.MailboxItem, now time.Time) bool {
	return it.Folder == hub.FolderDeleted && !it.PurgeAt.IsZero() && !now.Before(it.PurgeAt)
}

func letter(d hub.Delivery, m hub.Message, it hub.MailboxItem, name string) Letter {
	if it.Folder == "" {
		it = hub.MailboxItem{DeliveryID: d.ID, MessageUUID: m.UUID, Queue: d.Queue, Folder: hub.FolderInbox}
	}
	l := Letter{MessageUUID: m.UUID, MessageID: m.MessageID, Label: m.Label, SenderCVR: m.SenderCVR, SenderName: name,
		Received: m.Received, Size: m.Size, Folder: it.Folder, Read: it.Read, Seq: d.Seq, deliveryID: d.ID, item: it}
	if m.Received.Before(d.AvailableAt) {
		l.Received = d.AvailableAt // a held letter arrives when it is released
	}
	if !it.DeletedAt.IsZero() {
		t, p := it.DeletedAt, it.PurgeAt
		l.DeletedAt, l.PurgeAt = &t, &p
	}
	return l
}

// Get returns one letter of the mailbox. NotFound when the mailbox has no
// such (visible) letter.
func (s *Service) Get(ctx context.Context, b Mailbox, uuid string) (Letter, error) {
	d, err := s.Store.GetDelivery(ctx, hub.DeliveryID(uuid, b.Queue()))
	if err != nil {
		if hub.ErrorCode(err) == hub.NotFound {
			return Letter{}, hub.Errorf(hub.NotFound, "no letter %s in this mailbox", uuid)
		}
		return Letter{}, err
	}
	ls, err := s.join(ctx, []hub.Delivery{d}, s.now())
	if err != nil {
		return Letter{}, err
	}
	if len(ls) == 0 || d.Queue != b.Queue() {
		return Letter{}, hub.Errorf(hub.NotFound, "no letter %s in this mailbox", uuid)
	}
	return ls[0], nil
}

// Content parses the letter's MeMo. The caller has checked access (Get).
func (s *Service) Content(ctx context.Context, uuid string) (*memo.Message, error) {
	m, err := s.Store.GetMessage(ctx, uuid)
	if err != nil {
		return nil, err
	}
	if m.ContentKey == "" {
		return memo.ParseBytes(m.Content)
	}
	rc, err := hub.OpenContent(ctx, s.Blobs, m)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return memo.Parse(rc)
}

// Open reads a letter for its owner: it returns the parsed MeMo, marks the
// letter read and logs MESSAGE_READ the first time.
func (s *Service) Read(ctx context.Context, b Mailbox, uuid string) (Letter, *memo.Message, error) {
	l, err := s.Get(ctx, b, uuid)
	if err != nil {
		return Letter{}, nil, err
	}
	msg, err := s.Content(ctx, uuid)
	if err != nil {
		return Letter{}, nil, err
	}
	if !l.Read {
		if err := s.setRead(ctx, b, l, true); err != nil {
			return Letter{}, nil, err
		}
		l.Read = true
	}
	return l, msg, nil
}

func (s *Service) recipientOrgs(b Mailbox) []string {
	if len(b.Owner) == 8 {
		return []string{b.Owner}
	}
	return nil
}

// setRead records the letter read or unread. The first reading is logged
// as MESSAGE_READ under an ID derived from the delivery, before the state
// is written: two first readings at once (on two instances, say) both see
// the letter unread and both log it, and the event store keeps one; a
// reading whose state write fails is logged and, read again, logged under
// the same ID. So every first reading is in the log exactly once.
func (s *Service) setRead(ctx context.Context, b Mailbox, l Letter, read bool) error {
	it := l.item
	now := s.now()
	it.Read, it.Updated = read, now
	if read && it.ReadAt.IsZero() {
		it.ReadAt = now
		if err := s.emit(ctx, hub.Event{ID: readEventID(it.DeliveryID), Tag: "MESSAGE_READ", Actor: b.Person.Actor(),
			Orgs: s.recipientOrgs(b), MessageUUID: l.MessageUUID, Party: b.Owner,
			Detail: map[string]string{"senderOrg": l.SenderCVR}}); err != nil {
			return err
		}
	}
	return s.putItem(ctx, l.item, it)
}

// putItem replaces a letter's state, was (as the caller read it), with it,
// and checks that the letter is still there: a purge that acknowledged it
// after the caller read it would leave the state behind for ever (it has
// no purge time any more), and the caller would report a change to a
// letter that is gone. NotFound then, the state removed again.
//
// A letter that was deleted may be purged from PurgeGrace after its purge
// time on, by a purge that read its state (still deleted) just before this
// write landed, and acknowledges it just after: a restore answered as
// done, and the letter gone. So a write that lands that late is answered
// NotFound, with the deleted state put back for the purge to finish.
func (s *Service) putItem(ctx context.Context, was, it hub.MailboxItem) error {
	if err := s.Mailboxes.PutMailboxItem(ctx, it); err != nil {
		return err
	}
	gone := func() error {
		_ = s.Mailboxes.DeleteMailboxItem(context.WithoutCancel(ctx), it.DeliveryID)
		return hub.Errorf(hub.NotFound, "message %s is no longer in the mailbox", it.MessageUUID)
	}
	if _, err := s.Store.GetDelivery(ctx, it.DeliveryID); hub.Is(err, hub.NotFound) {
		return gone()
	} else if err != nil {
		return err
	}
	if !due(was, s.now().Add(-PurgeGrace)) { // not yet purgeable: no purge can have decided
		return nil
	}
	bg := context.WithoutCancel(ctx)
	if err := s.Mailboxes.PutMailboxItem(bg, was); err != nil {
		return err
	}
	if _, err := s.Store.GetDelivery(bg, it.DeliveryID); hub.Is(err, hub.NotFound) {
		return gone()
	} else if err != nil {
		return err
	}
	return hub.Errorf(hub.NotFound, "message %s is no longer in the mailbox: its retention has run out", it.MessageUUID)
}

// readEventID is the ID of a letter's one MESSAGE_READ event.
func readEventID(deliveryID string) string { return "viewer:read:" + deliveryID }

// SetRead marks a letter read or unread.
func (s *Service) SetRead(ctx context.Context, b Mailbox, uuid string, read bool) (Letter, error) {
	l, err := s.Get(ctx, b, uuid)
	if err != nil {
		return Letter{}, err
	}
	if err := s.setRead(ctx, b, l, read); err != nil {
		return Letter{}, err
	}
	return s.Get(ctx, b, uuid)
}

// Move puts a letter in the inbox or the archive; moving a deleted letter
// restores it.
func (s *Service) Move(ctx context.Context, b Mailbox, uuid string, f hub.Folder) (Letter, error) {
	if f != hub.FolderInbox && f != hub.FolderArchive {
		return Letter{}, &hub.Error{Code: hub.Invalid, Message: "a letter can be moved to INBOX or ARCHIVE",
			Fields: []hub.FieldError{{Resource: "request", Field: "folder", Code: "folder.not.allowed",
				Message: "move to INBOX or ARCHIVE; delete with DELETE", RejectedValue: string(f)}}}
	}
	l, err := s.Get(ctx, b, uuid)
	if err != nil {
		return Letter{}, err
	}
	it := l.item
	from := it.Folder
	it.Folder, it.DeletedAt, it.PurgeAt, it.Updated = f, time.Time{}, time.Time{}, s.now()
	if err := s.putItem(ctx, l.item, it); err != nil {
		return Letter{}, err
	}
	_ = s.emit(ctx, hub.Event{Tag: "MESSAGE_MOVED", Actor: b.Person.Actor(), Orgs: s.recipientOrgs(b), MessageUUID: uuid,
		Party: b.Owner, Detail: map[string]string{"from": string(from), "to": string(f)}})
	return s.Get(ctx, b, uuid)
}

// Delete moves a letter to DELETED; it is purged after the retention period.
func (s *Service) Delete(ctx context.Context, b Mailbox, uuid string) (Letter, error) {
	l, err := s.Get(ctx, b, uuid)
	if err != nil {
		return Letter{}, err
	}
	if l.Folder == hub.FolderDeleted {
		return l, nil
	}
	now := s.now()
	it := l.item
	it.Folder, it.DeletedAt, it.PurgeAt, it.Updated = hub.FolderDeleted, now, now.Add(s.Retention()), now
	if err := s.putItem(ctx, l.item, it); err != nil {
		return Letter{}, err
	}
	_ = s.emit(ctx, hub.Event{Tag: "MESSAGE_DELETED", Actor: b.Person.Actor(), Orgs: s.recipientOrgs(b), MessageUUID: uuid,
		Party: b.Owner, Detail: map[string]string{"purgeAt": it.PurgeAt.Format(time.RFC3339)}})
	return s.Get(ctx, b, uuid)
}

// Purge removes deleted letters whose retention has passed and returns how
// many went. The delivery is acknowledged first (removing the letter and,
// when nothing else refers to it, its content), then its state.
func (s *Service) Purge(ctx context.Context) (int, error) {
	n := 0
	for {
		// PurgeGrace after their purge time: see putItem.
		items, err := s.Mailboxes.PurgeableItems(ctx, s.now().Add(-PurgeGrace), 100)
		if err != nil || len(items) == 0 {
			return n, err
		}
		for _, it := range items {
			// The listing may be old by now (up to 99 acknowledgements
			// ago): a letter restored since is not purged. A restore
			// that lands between this read and the acknowledgement lands
			// PurgeGrace after the purge time, and is answered NotFound
			// (putItem).
			cur, err := s.Mailboxes.MailboxItems(ctx, []string{it.DeliveryID})
			if err != nil {
				return n, err
			}
			if c, ok := cur[it.DeliveryID]; !ok || !due(c, s.now().Add(-PurgeGrace)) {
				continue
			}
			res, err := s.Store.Ack(ctx, it.DeliveryID, s.now())
			if err != nil {
				return n, err
			}
			if res.Unreferenced && res.ContentKey != "" && s.Blobs != nil {
				_ = s.Blobs.Delete(ctx, res.ContentKey)
			}
			if err := s.Mailboxes.DeleteMailboxItem(ctx, it.DeliveryID); err != nil {
				return n, err
			}
			if !res.AlreadyAcked {
				_ = s.emit(ctx, hub.Event{Tag: TagMessagePurged, Actor: "viewer:retention", MessageUUID: it.MessageUUID,
					Detail: map[string]string{"queue": it.Queue, "deletedAt": it.DeletedAt.Format(time.RFC3339)}})
			}
			n++
		}
	}
}

// RunPurge purges every interval until ctx ends.
func (s *Service) RunPurge(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := s.Purge(ctx); err != nil && ctx.Err() == nil {
			s.logger().Warn("mailbox purge", "error", err)
		} else if n > 0 {
			s.logger().Info("mailbox purge", "purged", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// File returns file fi of document di (indices as memo.Render uses them)
// and a reader of its decoded bytes.
func File(msg *memo.Message, di, fi int) (*memo.File, io.ReadCloser, error) {
	docs := msg.Documents()
	if di < 0 || di >= len(docs) || fi < 0 || fi >= len(docs[di].Document.Files) {
		return nil, nil, hub.Errorf(hub.NotFound, "no file %d of document %d", fi, di)
	}
	f := docs[di].Document.Files[fi]
	rc, err := f.Open()
	if err != nil {
		return nil, nil, err
	}
	return f, rc, nil
}

// ICS returns the .ics of action ai of document di.
func ICS(msg *memo.Message, di, ai int) ([]byte, string, error) {
	docs := msg.Documents()
	if di < 0 || di >= len(docs) || ai < 0 || ai >= len(docs[di].Document.Actions) ||
		docs[di].Document.Actions[ai].Reservation == nil {
		return nil, "", hub.Errorf(hub.NotFound, "no reservation %d of document %d", ai, di)
	}
	a := docs[di].Document.Actions[ai]
	return memo.ReservationICS(msg, a), fmt.Sprintf("%s.ics", safeName(a.Label, "appointment")), nil
}

func safeName(s, def string) string {
	s = strings.Map(func(c rune) rune {
		if c < 0x20 || strings.ContainsRune(`/\:*?"<>|`, c) {
			return '_'
		}
		return c
	}, strings.TrimSpace(s))
	if s == "" {
		return def
	}
	return s
}

// RolesFunc adapts a function to Roles.
type RolesFunc func(ctx context.Context, userID, cvr string) (bool, error)

// MayReadMail implements Roles.
func (f RolesFunc) MayReadMail(ctx context.Context, userID, cvr string) (bool, error) {
	return f(ctx, userID, cvr)
}

// maxKeyPEM bounds a registered key's PEM: an Ed25519 or P-256 public key
// takes about 180 bytes.
const maxKeyPEM = 4 << 10

// RegisterAssertionKey registers a viewing-client system's public key
// (PEM "PUBLIC KEY" or base64 PKIX DER; Ed25519 or P-256) under kid, and,
// like every administrative change, records it in the event log
// (SYSTEM_CHANGED by actor; kid is bounded, so the entry is within the
// log's bounds). Invalid for a bad kid or key, Conflict when the system
// has a key with that kid, Internal when the key is registered but its
// entry could not be recorded.
func (s *Service) RegisterAssertionKey(ctx context.Context, actor string, sys hub.System, kid, publicKeyPEM string) (hub.AssertionKey, error) {
	if kid == "" || len(kid) > 100 {
		return hub.AssertionKey{}, hub.InvalidField("request", "kid", "kid.invalid", "kid must be 1–100 characters", kid)
	}
	if len(publicKeyPEM) > maxKeyPEM {
		return hub.AssertionKey{}, hub.InvalidField("request", "publicKey", "publicKey.too.long",
			fmt.Sprintf("publicKey is one PEM public key of at most %d bytes", maxKeyPEM), "")
	}
	der, alg, err := ParseAssertionKey(publicKeyPEM)
	if err != nil {
		return hub.AssertionKey{}, err
	}
	k := hub.AssertionKey{SystemID: sys.ID, KeyID: kid, Alg: alg, PublicKey: der, Created: s.now()}
	if err := s.Mailboxes.PutAssertionKey(ctx, k); err != nil {
		return hub.AssertionKey{}, err
	}
	if s.Events != nil {
		ev := hub.Event{Tag: "SYSTEM_CHANGED", Actor: actor, Orgs: []string{sys.OrgCVR}, SystemID: sys.ID,
			Detail: map[string]string{"systemId": sys.ID, "change": "assertionkey", "kid": k.KeyID, "alg": k.Alg}}
		if err := s.Events.Emit(context.WithoutCancel(ctx), ev); err != nil {
			return hub.AssertionKey{}, hub.Wrap(hub.Internal, err, "the assertion key is registered but its SYSTEM_CHANGED entry could not be recorded")
		}
	}
	return k, nil
}

// AssertionKeys lists a viewing-client system's keys.
func (s *Service) AssertionKeys(ctx context.Context, systemID string) ([]hub.AssertionKey, error) {
	return s.Mailboxes.AssertionKeys(ctx, systemID)
}
