package viewer_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/viewer"
)

// restoreDuringPurge is the Mailboxes of a purging instance: right after
// the purge has read its list of purgeable letters (and before it
// acknowledges them), the letter's owner restores it on another request
// (another instance, or just another goroutine): the window between
// PurgeableItems and Ack.
type restoreDuringPurge struct {
	viewer.Mailboxes
	restore func()
	once    atomic.Bool
}

func (m *restoreDuringPurge) PurgeableItems(ctx context.Context, now time.Time, limit int) ([]hub.MailboxItem, error) {
	items, err := m.Mailboxes.PurgeableItems(ctx, now, limit)
	if len(items) > 0 && m.once.CompareAndSwap(false, true) {
		m.restore()
	}
	return items, err
}

// Mailbox findings of a review (each test failed before its fix).

// TestARestoredLetterIsNotPurged: a letter whose owner restored it (200,
// folder INBOX) used to be purged anyway by a purge that had listed it
// before the restore: post lost. The purge reads the state again before
// it removes a letter.
func TestARestoredLetterIsNotPurged(t *testing.T) {
	f := newFixture(t)
	a := f.send(authority, citizen, "Gendannet", time.Time{})
	box, err := f.svc.Open(f.ctx, viewer.Person{SystemID: f.viewer.ID, CPR: citizen}, citizen, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Delete(f.ctx, box, a); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(31 * 24 * time.Hour)

	var restored viewer.Letter
	var restoreErr error
	purger := &viewer.Service{Store: f.store, Events: f.svc.Events, Now: f.svc.Now, Config: f.svc.Config,
		Mailboxes: &restoreDuringPurge{Mailboxes: f.store, restore: func() {
			restored, restoreErr = f.svc.Move(f.ctx, box, a, hub.FolderInbox)
		}}}
	if _, err := purger.Purge(f.ctx); err != nil {
		t.Fatal(err)
	}
	if restoreErr != nil || restored.Folder != hub.FolderInbox {
		t.Fatalf("restore: %+v %v", restored, restoreErr)
	}
	if _, err := f.svc.Get(f.ctx, box, a); err != nil {
		t.Errorf("the owner restored the letter (answered folder %s) and the purge removed it anyway: %v", restored.Folder, err)
	}
}

// countingStore counts the listing reads one request makes.
type countingStore struct {
	viewer.Store
	listQueue, getMessages atomic.Int64
}

func (s *countingStore) ListQueue(ctx context.Context, queue string, afterSeq int64, limit int, only bool, now time.Time) ([]hub.Delivery, error) {
	s.listQueue.Add(1)
	return s.Store.ListQueue(ctx, queue, afterSeq, limit, only, now)
}

func (s *countingStore) GetMessages(ctx context.Context, uuids []string) (map[string]hub.Message, error) {
	s.getMessages.Add(1)
	return s.Store.GetMessages(ctx, uuids)
}

// TestAListingReadsABoundedPartOfTheMailbox: a listing whose filter
// matches nothing (an empty ARCHIVE, a sender who never wrote, unread=true
// in a read mailbox; an authority's consented listing always filters by
// sender) used to read the whole mailbox in one request. One request now
// reads at most Config.ListScan letters and answers a short page with Next
// to go on from; following Next reaches the letter at the end.
func TestAListingReadsABoundedPartOfTheMailbox(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 1,000 letters")
	}
	f := newFixture(t)
	const n = 1000
	var last string
	for i := 0; i < n; i++ {
		last = f.send(authority, citizen, "brev", time.Time{})
	}
	cs := &countingStore{Store: f.store}
	cfg := f.svc.Config
	cfg.ListScan = 400
	svc := &viewer.Service{Store: cs, Mailboxes: f.store, Now: f.svc.Now, Config: cfg}
	box, _ := svc.Open(f.ctx, viewer.Person{SystemID: f.viewer.ID, CPR: citizen}, citizen, "")
	if _, err := svc.Move(f.ctx, box, last, hub.FolderArchive); err != nil {
		t.Fatal(err)
	}
	var found []viewer.Letter
	q := viewer.Query{Folder: hub.FolderArchive, Size: 1}
	for requests := 1; ; requests++ {
		cs.listQueue.Store(0)
		p, err := svc.List(f.ctx, box, q)
		if err != nil {
			t.Fatal(err)
		}
		if got := cs.listQueue.Load(); got > 2 {
			t.Fatalf("request %d read the mailbox with %d ListQueue calls of 200 (bound 400 letters)", requests, got)
		}
		found = append(found, p.Letters...)
		if p.Next == 0 {
			break
		}
		if requests > n/400+2 {
			t.Fatalf("%d requests and no end", requests)
		}
		q.After = p.Next
	}
	if len(found) != 1 || found[0].MessageUUID != last {
		t.Fatalf("archive listing found %+v, want the one archived letter %s", found, last)
	}
}

// purgeBeforePut is the Mailboxes of a request whose state write lands
// just after a purge on another instance: the purge runs between the
// request's read of the letter and its PutMailboxItem.
type purgeBeforePut struct {
	viewer.Mailboxes
	purge func()
	once  atomic.Bool
}

func (m *purgeBeforePut) PutMailboxItem(ctx context.Context, it hub.MailboxItem) error {
	if m.once.CompareAndSwap(false, true) {
		m.purge()
	}
	return m.Mailboxes.PutMailboxItem(ctx, it)
}

// TestAStateWrittenAfterAPurgeDoesNotOutliveTheLetter: a restore (Move)
// that read the letter before a purge acknowledged it writes its state
// after the purge removed it: the state record (CPR queue, messageUUID,
// read state) used to outlive the letter and, having no purge time, was
// never removed. The write is now checked against the letter: NotFound,
// and the state removed.
func TestAStateWrittenAfterAPurgeDoesNotOutliveTheLetter(t *testing.T) {
	f := newFixture(t)
	a := f.send(authority, citizen, "Forældreløs", time.Time{})
	box, _ := f.svc.Open(f.ctx, viewer.Person{SystemID: f.viewer.ID, CPR: citizen}, citizen, "")
	if _, err := f.svc.Delete(f.ctx, box, a); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(31 * 24 * time.Hour)
	mover := &viewer.Service{Store: f.store, Events: f.svc.Events, Now: f.svc.Now, Config: f.svc.Config,
		Mailboxes: &purgeBeforePut{Mailboxes: f.store, purge: func() {
			if n, err := f.svc.Purge(f.ctx); err != nil || n != 1 {
				t.Errorf("purge %d %v", n, err)
			}
		}}}
	if _, err := mover.Move(f.ctx, box, a, hub.FolderInbox); !hub.Is(err, hub.NotFound) {
		t.Errorf("a restore of a letter purged meanwhile: %v, want NotFound", err)
	}
	f.now = f.now.Add(365 * 24 * time.Hour)
	if _, err := f.svc.Purge(f.ctx); err != nil {
		t.Fatal(err)
	}
	id := hub.DeliveryID(a, box.Queue())
	got, _ := f.store.MailboxItems(f.ctx, []string{id})
	if it, ok := got[id]; ok {
		t.Errorf("a purged letter's state is kept a year later and will never be purged: %+v", it)
	}
}
