package viewer_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/viewer"
)

// purgeAfterRead is the Mailboxes of a purging instance: right after the
// purge has read a letter's state again (its last look before it
// acknowledges the letter), the letter's owner restores it on another
// request (another instance, or just another goroutine), whose state write
// lands there: between the purge's decision and its acknowledgement.
type purgeAfterRead struct {
	viewer.Mailboxes
	restore func()
	once    atomic.Bool
}

func (m *purgeAfterRead) MailboxItems(ctx context.Context, ids []string) (map[string]hub.MailboxItem, error) {
	items, err := m.Mailboxes.MailboxItems(ctx, ids)
	if m.once.CompareAndSwap(false, true) {
		m.restore()
	}
	return items, err
}

// writeAfter is the Mailboxes of a restoring request whose state write is
// held until the test lets it go (a slow request, a paused instance).
type writeAfter struct {
	viewer.Mailboxes
	writing, proceed chan struct{}
	once             atomic.Bool
}

func (m *writeAfter) PutMailboxItem(ctx context.Context, it hub.MailboxItem) error {
	if m.once.CompareAndSwap(false, true) {
		close(m.writing)
		<-m.proceed
	}
	return m.Mailboxes.PutMailboxItem(ctx, it)
}

// Mailbox findings of a review (each test failed before its fix).

// TestARestoredLetterIsNotPurged: a deleted letter may be restored until
// its purge time and is then gone from the mailbox; the purge removes it
// PurgeGrace later. A restore answered as done always keeps the letter:
//   - restored before its purge time: kept;
//   - asked for after its purge time: NotFound, and purged;
//   - read before its purge time, its state written after the purge's last
//     look and before its acknowledgement (the restore answered 200 and the
//     letter purged: post lost): NotFound, and purged.
func TestARestoredLetterIsNotPurged(t *testing.T) {
	retention := 30 * 24 * time.Hour
	setup := func(t *testing.T) (*fixture, viewer.Mailbox, string, time.Time) {
		f := newFixture(t)
		a := f.send(authority, citizen, "Gendannet", time.Time{})
		box, err := f.svc.Open(f.ctx, viewer.Person{SystemID: f.viewer.ID, CPR: citizen}, citizen, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Delete(f.ctx, box, a); err != nil {
			t.Fatal(err)
		}
		return f, box, a, f.now.Add(retention)
	}
	kept := func(f *fixture, box viewer.Mailbox, a string) bool {
		ds, err := f.store.DeliveriesOf(f.ctx, a)
		if err != nil {
			f.t.Fatal(err)
		}
		return len(ds) == 1
	}
	t.Run("before its purge time", func(t *testing.T) {
		f, box, a, purgeAt := setup(t)
		f.now = purgeAt.Add(-time.Second)
		if _, err := f.svc.Move(f.ctx, box, a, hub.FolderInbox); err != nil {
			t.Fatalf("restore before the purge time: %v", err)
		}
		f.now = purgeAt.Add(viewer.PurgeGrace + time.Second)
		if n, err := f.svc.Purge(f.ctx); err != nil || n != 0 {
			t.Errorf("purge: %d %v", n, err)
		}
		if l, err := f.svc.Get(f.ctx, box, a); err != nil || l.Folder != hub.FolderInbox || !kept(f, box, a) {
			t.Errorf("restored before its purge time, then purged: %+v %v", l, err)
		}
	})
	t.Run("after its purge time", func(t *testing.T) {
		f, box, a, purgeAt := setup(t)
		f.now = purgeAt
		if _, err := f.svc.Move(f.ctx, box, a, hub.FolderInbox); !hub.Is(err, hub.NotFound) {
			t.Errorf("restore at the purge time: %v, want NotFound", err)
		}
		f.now = purgeAt.Add(viewer.PurgeGrace)
		if n, err := f.svc.Purge(f.ctx); err != nil || n != 1 || kept(f, box, a) {
			t.Errorf("purge: %d %v, kept %v", n, err, kept(f, box, a))
		}
	})
	t.Run("written after the purge's last look", func(t *testing.T) {
		f, box, a, purgeAt := setup(t)
		f.now = purgeAt.Add(-time.Second)
		w := &writeAfter{Mailboxes: f.store, writing: make(chan struct{}), proceed: make(chan struct{})}
		restorer := &viewer.Service{Store: f.store, Events: f.svc.Events, Now: f.svc.Now, Config: f.svc.Config, Mailboxes: w}
		var restoreErr error
		restored := make(chan struct{})
		go func() {
			defer close(restored)
			_, restoreErr = restorer.Move(f.ctx, box, a, hub.FolderInbox)
		}()
		<-w.writing // read before the purge time; its write waits
		f.now = purgeAt.Add(viewer.PurgeGrace + time.Second)
		purger := &viewer.Service{Store: f.store, Events: f.svc.Events, Now: f.svc.Now, Config: f.svc.Config,
			Mailboxes: &purgeAfterRead{Mailboxes: f.store, restore: func() {
				close(w.proceed)
				<-restored
			}}}
		if _, err := purger.Purge(f.ctx); err != nil {
			t.Fatal(err)
		}
		if restoreErr == nil && !kept(f, box, a) {
			t.Fatal("the restore was answered as done and the letter purged: post lost")
		}
		if !hub.Is(restoreErr, hub.NotFound) || kept(f, box, a) {
			t.Errorf("restore %v, letter kept %v; want NotFound and purged", restoreErr, kept(f, box, a))
		}
		id := hub.DeliveryID(a, box.Queue())
		if got, _ := f.store.MailboxItems(f.ctx, []string{id}); len(got) != 0 {
			t.Errorf("the purged letter's state is left: %+v", got)
		}
	})
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
	// Read just before its purge time; the purge runs before its write.
	f.now = f.now.Add(30*24*time.Hour - time.Second)
	mover := &viewer.Service{Store: f.store, Events: f.svc.Events, Now: f.svc.Now, Config: f.svc.Config,
		Mailboxes: &purgeBeforePut{Mailboxes: f.store, purge: func() {
			f.now = f.now.Add(viewer.PurgeGrace + time.Second)
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
