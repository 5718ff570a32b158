package retrieval_test

import (
	"context"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/retrieval"
)

// reachable reports whether any active receiver system of org can list
// message id, or the org's mailboxes hold it for viewing clients.
func (e *env) reachable(org, id string) bool {
	e.t.Helper()
	systems, err := e.store.ListSystems(ctx, org)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, s := range systems {
		if s.Role != hub.RecipientSystem || !s.Active {
			continue
		}
		ids, _, err := e.svc.List(ctx, s, 0, 100)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, x := range ids {
			if x == id {
				return true
			}
		}
	}
	for _, k := range []hub.MailboxKind{hub.AuthorityPost, hub.CVRPost} {
		if _, err := e.store.GetDelivery(ctx, hub.DeliveryID(id, hub.MailboxQueue(org, k))); err == nil {
			return true
		}
	}
	return false
}

// Losses found by a review of the layers above the stores (each test failed
// before its fix).

// TestADeactivatedSystemsPostIsNotStranded: a letter routed to a receiver
// system waits in its queue. Deactivating the system used to change only
// the system record: nothing moved its queue, backfill and reconcile read
// mailbox queues only, and the system could no longer fetch, so the letter
// was reachable by no one. Its post now goes to the system serving the
// mailbox (Disconnect, as the API's deactivation calls it), or, with none,
// back to the mailbox; the reconcile loop does the same for a deactivation
// whose move did not run (the portal's, or one cut short).
func TestADeactivatedSystemsPostIsNotStranded(t *testing.T) {
	e := newEnv(t, retrieval.Config{})
	def := e.system(authority, hub.SystemSpec{Name: "default", Default: true})
	sub := e.system(authority, hub.SystemSpec{Name: "by rule"})
	id, _ := e.put(hub.SystemQueue(sub.ID), authority, sub.ID, "1.1", false)
	if !e.reachable(authority, id) {
		t.Fatal("setup: the letter is not listed")
	}
	off, err := e.reg.DeactivateSystem(ctx, authority, sub.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.svc.Disconnect(ctx, off); n != 1 || err != nil {
		t.Fatalf("Disconnect: %d, %v", n, err)
	}
	if _, err := e.store.GetDelivery(ctx, hub.DeliveryID(id, hub.SystemQueue(def.ID))); err != nil {
		t.Fatalf("letter %s is not queued to the default system after %s was deactivated: %v", id, sub.ID, err)
	}

	// The default itself deactivated, its move left to the reconcile loop:
	// no system serves the mailbox, so the letter goes back there.
	if _, err := e.reg.DeactivateSystem(ctx, authority, def.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.GetDelivery(ctx, hub.DeliveryID(id, hub.MailboxQueue(authority, hub.AuthorityPost))); err != nil {
		t.Fatalf("letter %s is not back in the mailbox once no system serves it: %v", id, err)
	}
	if n, err := e.store.CountQueue(ctx, hub.SystemQueue(def.ID)); err != nil || n != 0 {
		t.Fatalf("the deactivated default's queue holds %d (%v)", n, err)
	}
	// A new receiver system's first connection takes it from there.
	next := e.system(authority, hub.SystemSpec{Name: "new default", Default: true})
	if _, err := e.svc.Connect(ctx, next); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.GetDelivery(ctx, hub.DeliveryID(id, hub.SystemQueue(next.ID))); err != nil {
		t.Fatalf("letter %s not queued to the new system: %v", id, err)
	}
}

// TestAMoveRerunAfterACrashDoesNotRedeliver: a move adds the system
// delivery, then removes the mailbox one. After a crash between the two,
// the receiver system may fetch and acknowledge the letter before the
// rerun; the rerun used to add the system delivery again (AddDeliveries
// skips only IDs that exist), delivering the letter twice. The letter's
// COMPLETED receipt now tells the rerun it was delivered.
func TestAMoveRerunAfterACrashDoesNotRedeliver(t *testing.T) {
	e := newEnv(t, retrieval.Config{})
	id, _ := e.put(hub.MailboxQueue(authority, hub.AuthorityPost), authority, "", "1.1", false)
	def := e.system(authority, hub.SystemSpec{Default: true})
	// The crash: the system delivery was added, the mailbox one not acked.
	half := hub.Delivery{ID: hub.DeliveryID(id, hub.SystemQueue(def.ID)), MessageUUID: id, Channel: hub.ChannelSystem,
		Queue: hub.SystemQueue(def.ID), OrgCVR: authority, SystemID: def.ID, Created: e.clock.Now(), AvailableAt: e.clock.Now(), State: hub.DeliveryReady}
	if err := e.store.AddDeliveries(ctx, []hub.Delivery{half}); err != nil {
		t.Fatal(err)
	}
	fetches := 0
	drain := func() {
		for {
			f, err := e.svc.Next(ctx, def, 0)
			if hub.Is(err, hub.NotFound) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			read(t, f)
			fetches++
			if _, err := e.svc.Ack(ctx, def, f.Message.UUID); err != nil {
				t.Fatal(err)
			}
		}
	}
	drain() // the system drains before the hub restarts
	if _, err := e.svc.Backfill(ctx, authority); err != nil {
		t.Fatal(err)
	}
	drain()
	if fetches != 1 {
		t.Fatalf("letter %s fetched and acknowledged %d times", id, fetches)
	}
	if n, err := e.store.CountQueue(ctx, hub.MailboxQueue(authority, hub.AuthorityPost)); err != nil || n != 0 {
		t.Fatalf("the mailbox still holds %d (%v) after the rerun", n, err)
	}
}

// backfillDuringRecall runs a Backfill of org right after Recall has read
// a message's deliveries: the reconcile loop, or a receiver system's
// registration, moving the mailbox at that instant.
type backfillDuringRecall struct {
	hub.Store
	e   *env
	org string
}

func (b backfillDuringRecall) DeliveriesOf(c context.Context, id string) ([]hub.Delivery, error) {
	ds, err := b.Store.DeliveriesOf(c, id)
	if _, berr := b.e.svc.Backfill(c, b.org); berr != nil {
		b.e.t.Fatal(berr)
	}
	return ds, err
}

// TestARecallRacingAMoveIsNotFetched: Recall reads the message's
// deliveries once and removes those; a move of the mailbox (backfill or
// system-fetch) in between adds a system delivery Recall never sees. Fetch
// used not to look at the message's state, so after doNotDeliverUntilDate
// the receiver system fetched a letter its sender was told was recalled.
// Now a delivery of a recalled message is removed unread.
func TestARecallRacingAMoveIsNotFetched(t *testing.T) {
	e := newEnv(t, retrieval.Config{})
	now := e.clock.Now()
	notBefore := now.Add(48 * time.Hour)
	id, body := letter(t, "1.1", authority)
	m := hub.Message{UUID: id, SenderCVR: senderOrg, SenderSystemID: e.sender.ID, RecipientID: authority, RecipientType: "CVR",
		MessageType: "DIGITALPOST", MemoVersion: "1.1", Size: int64(len(body)), Content: body,
		Received: now, NotBefore: notBefore, State: hub.MessageHeld}
	q := hub.MailboxQueue(authority, hub.AuthorityPost)
	d := hub.Delivery{ID: hub.DeliveryID(id, q), MessageUUID: id, Channel: hub.ChannelMailbox, Queue: q, OrgCVR: authority,
		Created: now, AvailableAt: notBefore, State: hub.DeliveryReady, Size: m.Size}
	if err := e.store.PutMessage(ctx, m, []hub.Delivery{d}, hub.Receipt{TransmissionID: "t-" + id, SystemID: e.sender.ID, MessageUUID: id, Time: now, Status: hub.ReceiptReceived}); err != nil {
		t.Fatal(err)
	}
	def := e.system(authority, hub.SystemSpec{Default: true}) // registered; its backfill not yet run
	in := &hub.Ingest{Store: backfillDuringRecall{Store: e.store, e: e, org: authority}, Blobs: e.blobs, Now: e.clock.Now}
	if err := in.Recall(ctx, senderOrg, "sender", id); err != nil {
		t.Fatalf("recall: %v", err)
	}
	e.clock.Add(49 * time.Hour)
	f, err := e.svc.Next(ctx, def, 0)
	if err == nil {
		read(t, f)
		st, _ := e.store.GetMessage(ctx, id)
		t.Fatalf("recall answered success (state %s), yet system %s fetched letter %s after its date", st.State, def.ID, f.Message.UUID)
	}
	if !hub.Is(err, hub.NotFound) {
		t.Fatalf("Next: %v, want NotFound", err)
	}
	if ds, err := e.store.DeliveriesOf(ctx, id); err != nil || len(ds) != 0 {
		t.Fatalf("deliveries of the recalled letter: %+v, %v", ds, err)
	}
}
