package storagetest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

// TestMailboxStore runs the hub.MailboxStore contract against fresh stores
// from open.
func TestMailboxStore(t *testing.T, open func(t *testing.T) hub.MailboxStore) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s hub.MailboxStore)
	}{
		{"mailbox item absent until put, replaced by put", mbItemPutReplace},
		{"deleted items are purgeable only once their purge time passed, earliest first", mbPurgeable},
		{"undeleting an item takes it off the purge list", mbUndelete},
		{"consents list by citizen and by organisation, revoked ones included", mbConsents},
		{"notification create is unique under concurrency", mbNotificationUnique},
		{"the winning creator's notification is the one stored", mbNotificationWinnerStored},
		{"due notifications are pending ones whose time has come", mbNotificationsDue},
		{"cursors start at zero and keep what was set", mbCursors},
		{"assertion keys are per system, unique by kid", mbAssertionKeys},
		{"an assertion key is registered and deleted by exactly one of concurrent callers", mbAssertionKeysConcurrent},
		{"concurrent first writes of an item or a consent leave one record, no error", mbConcurrentUpserts},
		{"a limit of zero lists every purgeable item and every due notification", mbNoLimit},
		{"items are looked up in batches larger than any page", mbManyItems},
		{"a consent is found by citizen and organisation together", mbConsentPair},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

func mbItemPutReplace(t *testing.T, s hub.MailboxStore) {
	got, err := s.MailboxItems(ctx, []string{"d1", "d2"})
	must(t, err, "items of empty store")
	if len(got) != 0 {
		t.Fatalf("items %v, want none", got)
	}
	it := hub.MailboxItem{DeliveryID: "d1", MessageUUID: "m1", Queue: "mailbox/0101701234", Folder: hub.FolderInbox, Read: true, ReadAt: T0, Updated: T0}
	must(t, s.PutMailboxItem(ctx, it), "put")
	it.Folder = hub.FolderArchive
	must(t, s.PutMailboxItem(ctx, it), "replace")
	got, err = s.MailboxItems(ctx, []string{"d1", "d2"})
	must(t, err, "items")
	if len(got) != 1 {
		t.Fatalf("items %v, want d1 only", got)
	}
	sameJSON(t, got["d1"], it, "item")
	must(t, s.DeleteMailboxItem(ctx, "d1"), "delete")
	must(t, s.DeleteMailboxItem(ctx, "d1"), "delete absent")
	got, _ = s.MailboxItems(ctx, []string{"d1"})
	if len(got) != 0 {
		t.Fatalf("after delete: %v", got)
	}
}

func deletedItem(id string, purge time.Time) hub.MailboxItem {
	return hub.MailboxItem{DeliveryID: id, MessageUUID: "m-" + id, Queue: "mailbox/0101701234", Folder: hub.FolderDeleted,
		DeletedAt: purge.Add(-24 * time.Hour), PurgeAt: purge, Updated: T0}
}

func mbPurgeable(t *testing.T, s hub.MailboxStore) {
	must(t, s.PutMailboxItem(ctx, deletedItem("late", T0.Add(3*time.Hour))), "put")
	must(t, s.PutMailboxItem(ctx, deletedItem("early", T0.Add(time.Hour))), "put")
	must(t, s.PutMailboxItem(ctx, deletedItem("mid", T0.Add(2*time.Hour))), "put")
	must(t, s.PutMailboxItem(ctx, hub.MailboxItem{DeliveryID: "kept", Folder: hub.FolderInbox, Updated: T0}), "put")
	ids := func(its []hub.MailboxItem) string {
		s := ""
		for _, it := range its {
			s += it.DeliveryID + " "
		}
		return s
	}
	got, err := s.PurgeableItems(ctx, T0, 10)
	must(t, err, "purgeable")
	if len(got) != 0 {
		t.Fatalf("purgeable at T0: %s", ids(got))
	}
	got, _ = s.PurgeableItems(ctx, T0.Add(2*time.Hour), 10)
	if ids(got) != "early mid " {
		t.Fatalf("purgeable at T0+2h: %q", ids(got))
	}
	got, _ = s.PurgeableItems(ctx, T0.Add(5*time.Hour), 1)
	if ids(got) != "early " {
		t.Fatalf("limit 1: %q", ids(got))
	}
	must(t, s.DeleteMailboxItem(ctx, "early"), "delete")
	got, _ = s.PurgeableItems(ctx, T0.Add(5*time.Hour), 10)
	if ids(got) != "mid late " {
		t.Fatalf("after delete: %q", ids(got))
	}
}

func mbUndelete(t *testing.T, s hub.MailboxStore) {
	it := deletedItem("d", T0.Add(time.Hour))
	must(t, s.PutMailboxItem(ctx, it), "put")
	it.Folder, it.DeletedAt, it.PurgeAt = hub.FolderInbox, time.Time{}, time.Time{}
	must(t, s.PutMailboxItem(ctx, it), "undelete")
	got, _ := s.PurgeableItems(ctx, T0.Add(48*time.Hour), 10)
	if len(got) != 0 {
		t.Fatalf("undeleted item still purgeable: %v", got)
	}
}

func mbConsents(t *testing.T, s hub.MailboxStore) {
	_, err := s.GetConsent(ctx, "0101701234", "11111111")
	wantCode(t, err, hub.NotFound, "absent consent")
	a := hub.Consent{Citizen: "0101701234", OrgCVR: "11111111", Scope: hub.ConsentOwnLetters, Granted: T0}
	b := hub.Consent{Citizen: "0101701234", OrgCVR: "33333333", Scope: hub.ConsentOwnLetters, Granted: T0.Add(time.Minute)}
	c := hub.Consent{Citizen: "0202702345", OrgCVR: "11111111", Scope: hub.ConsentOwnLetters, Granted: T0.Add(2 * time.Minute)}
	for _, x := range []hub.Consent{b, a, c} {
		must(t, s.PutConsent(ctx, x), "put consent")
	}
	mine, err := s.ListConsents(ctx, "0101701234", "")
	must(t, err, "list by citizen")
	sameJSON(t, mine, []hub.Consent{a, b}, "by citizen")
	theirs, err := s.ListConsents(ctx, "", "11111111")
	must(t, err, "list by org")
	sameJSON(t, theirs, []hub.Consent{a, c}, "by org")
	a.Revoked = T0.Add(time.Hour)
	must(t, s.PutConsent(ctx, a), "revoke")
	got, err := s.GetConsent(ctx, a.Citizen, a.OrgCVR)
	must(t, err, "get revoked")
	if got.Active() {
		t.Fatal("revoked consent still active")
	}
	theirs, _ = s.ListConsents(ctx, "", "11111111")
	sameJSON(t, theirs, []hub.Consent{a, c}, "by org after revoke")
}

func notification(id string, next time.Time) hub.Notification {
	return hub.Notification{ID: id, DeliveryID: "d-" + id, MessageUUID: "m", Party: "0101701234", Channel: hub.NotifyEmail,
		Address: "a@example.org", State: hub.NotificationPending, NextAttempt: next, Created: T0, Updated: T0}
}

func mbNotificationUnique(t *testing.T, s hub.MailboxStore) {
	if wins := concurrently(t, 16, hub.Conflict, func(int) error { return s.CreateNotification(ctx, notification("n1", T0)) }); wins != 1 {
		t.Fatalf("%d creators won, want 1", wins)
	}
	_, err := s.GetNotification(ctx, "absent")
	wantCode(t, err, hub.NotFound, "get absent")
	err = s.UpdateNotification(ctx, notification("absent", T0))
	wantCode(t, err, hub.NotFound, "update absent")
}

func mbNotificationsDue(t *testing.T, s hub.MailboxStore) {
	for i, off := range []time.Duration{2 * time.Minute, 0, time.Minute, time.Hour} {
		must(t, s.CreateNotification(ctx, notification(fmt.Sprint("n", i), T0.Add(off))), "create")
	}
	due, err := s.DueNotifications(ctx, T0.Add(2*time.Minute), 10)
	must(t, err, "due")
	var ids []string
	for _, n := range due {
		ids = append(ids, n.ID)
	}
	sameJSON(t, ids, []string{"n1", "n2", "n0"}, "due order")
	n := due[0]
	n.State, n.Attempts, n.Updated = hub.NotificationSent, 1, T0.Add(time.Minute)
	must(t, s.UpdateNotification(ctx, n), "mark sent")
	n2 := due[1]
	n2.Attempts, n2.NextAttempt, n2.LastError = 1, T0.Add(3*time.Hour), "421 try later"
	must(t, s.UpdateNotification(ctx, n2), "reschedule")
	due, _ = s.DueNotifications(ctx, T0.Add(2*time.Minute), 10)
	ids = ids[:0]
	for _, n := range due {
		ids = append(ids, n.ID)
	}
	sameJSON(t, ids, []string{"n0"}, "due after update")
	got, err := s.GetNotification(ctx, "n2")
	must(t, err, "get")
	sameJSON(t, got, n2, "rescheduled notification")
}

func mbCursors(t *testing.T, s hub.MailboxStore) {
	v, err := s.GetCursor(ctx, "notifier")
	must(t, err, "get")
	if v != 0 {
		t.Fatalf("fresh cursor %d", v)
	}
	must(t, s.SetCursor(ctx, "notifier", 42), "set")
	must(t, s.SetCursor(ctx, "other", 7), "set")
	if v, _ := s.GetCursor(ctx, "notifier"); v != 42 {
		t.Fatalf("cursor %d, want 42", v)
	}
	must(t, s.SetCursor(ctx, "big", 1<<62+7), "set a large cursor")
	if v, _ := s.GetCursor(ctx, "big"); v != 1<<62+7 {
		t.Fatalf("cursor %d, want %d", v, uint64(1<<62+7))
	}
}

func mbAssertionKeys(t *testing.T, s hub.MailboxStore) {
	k := hub.AssertionKey{SystemID: "sys1", KeyID: "k1", Alg: "EdDSA", PublicKey: []byte{1, 2, 3}, Created: T0}
	must(t, s.PutAssertionKey(ctx, k), "put")
	wantCode(t, s.PutAssertionKey(ctx, k), hub.Conflict, "put same kid")
	k2 := k
	k2.KeyID = "k2"
	must(t, s.PutAssertionKey(ctx, k2), "put k2")
	other := k
	other.SystemID = "sys10"
	must(t, s.PutAssertionKey(ctx, other), "same kid, other system")
	ks, err := s.AssertionKeys(ctx, "sys1")
	must(t, err, "list")
	sameJSON(t, ks, []hub.AssertionKey{k, k2}, "keys of sys1")
	must(t, s.DeleteAssertionKey(ctx, "sys1", "k1"), "delete")
	wantCode(t, s.DeleteAssertionKey(ctx, "sys1", "k1"), hub.NotFound, "delete again")
	ks, _ = s.AssertionKeys(ctx, "sys1")
	sameJSON(t, ks, []hub.AssertionKey{k2}, "keys after delete")
}

// concurrently runs fn(i) for i in [0, n), all released at one instant
// (see parallel), and returns how many returned nil; errors with another
// code than allowed fail the test.
func concurrently(t *testing.T, n int, allowed hub.Code, fn func(i int) error) int {
	t.Helper()
	var wins atomic.Int32
	parallel(n, func(i int) {
		switch err := fn(i); hub.ErrorCode(err) {
		case "":
			wins.Add(1)
		case allowed:
		default:
			t.Errorf("call %d: %v", i, err)
		}
	})
	return int(wins.Load())
}

func mbNotificationWinnerStored(t *testing.T, s hub.MailboxStore) {
	var winner atomic.Int32
	winner.Store(-1)
	wins := concurrently(t, 16, hub.Conflict, func(i int) error {
		n := notification("n1", T0)
		n.Address = fmt.Sprintf("a%d@example.org", i)
		err := s.CreateNotification(ctx, n)
		if err == nil {
			winner.Store(int32(i))
		}
		return err
	})
	if wins != 1 {
		t.Fatalf("%d creators won, want 1", wins)
	}
	got, err := s.GetNotification(ctx, "n1")
	must(t, err, "get")
	if want := fmt.Sprintf("a%d@example.org", winner.Load()); got.Address != want {
		t.Fatalf("stored address %q, want the winner's %q", got.Address, want)
	}
	due, err := s.DueNotifications(ctx, T0, 0)
	must(t, err, "due")
	if len(due) != 1 {
		t.Fatalf("%d due notifications, want 1", len(due))
	}
}

func mbAssertionKeysConcurrent(t *testing.T, s hub.MailboxStore) {
	wins := concurrently(t, 16, hub.Conflict, func(i int) error {
		return s.PutAssertionKey(ctx, hub.AssertionKey{SystemID: "sys1", KeyID: "k1", Alg: "EdDSA", PublicKey: []byte{byte(i)}, Created: T0})
	})
	if wins != 1 {
		t.Fatalf("%d registrations won, want 1", wins)
	}
	ks, err := s.AssertionKeys(ctx, "sys1")
	must(t, err, "list")
	if len(ks) != 1 {
		t.Fatalf("%d keys, want 1", len(ks))
	}
	wins = concurrently(t, 16, hub.NotFound, func(int) error { return s.DeleteAssertionKey(ctx, "sys1", "k1") })
	if wins != 1 {
		t.Fatalf("%d deletions won, want 1", wins)
	}
}

func mbConcurrentUpserts(t *testing.T, s hub.MailboxStore) {
	concurrently(t, 16, "", func(i int) error {
		return s.PutMailboxItem(ctx, hub.MailboxItem{DeliveryID: "d1", MessageUUID: "m1", Folder: hub.FolderArchive, Updated: T0.Add(time.Duration(i) * time.Second)})
	})
	got, err := s.MailboxItems(ctx, []string{"d1"})
	must(t, err, "items")
	if len(got) != 1 || got["d1"].Folder != hub.FolderArchive {
		t.Fatalf("items %v, want d1 in the archive", got)
	}
	concurrently(t, 16, "", func(i int) error {
		return s.PutConsent(ctx, hub.Consent{Citizen: "0101701234", OrgCVR: "11111111", Scope: hub.ConsentOwnLetters, Granted: T0.Add(time.Duration(i) * time.Second)})
	})
	cs, err := s.ListConsents(ctx, "0101701234", "")
	must(t, err, "list by citizen")
	if len(cs) != 1 {
		t.Fatalf("%d consents after concurrent grants, want 1: %v", len(cs), cs)
	}
	cs, _ = s.ListConsents(ctx, "", "11111111")
	if len(cs) != 1 {
		t.Fatalf("%d consents by organisation, want 1", len(cs))
	}
}

func mbNoLimit(t *testing.T, s hub.MailboxStore) {
	for i := 0; i < 3; i++ {
		must(t, s.PutMailboxItem(ctx, deletedItem(fmt.Sprint("d", i), T0.Add(time.Duration(i)*time.Minute))), "put")
		must(t, s.CreateNotification(ctx, notification(fmt.Sprint("n", i), T0.Add(time.Duration(i)*time.Minute))), "create")
	}
	its, err := s.PurgeableItems(ctx, T0.Add(time.Hour), 0)
	must(t, err, "purgeable")
	ns, err := s.DueNotifications(ctx, T0.Add(time.Hour), 0)
	must(t, err, "due")
	if len(its) != 3 || len(ns) != 3 {
		t.Fatalf("%d purgeable, %d due; want 3 and 3", len(its), len(ns))
	}
}

func mbManyItems(t *testing.T, s hub.MailboxStore) {
	ids := make([]string, 2500)
	for i := range ids {
		ids[i] = fmt.Sprintf("d%04d", i)
	}
	for _, i := range []int{0, 999, 1000, 2499} {
		must(t, s.PutMailboxItem(ctx, hub.MailboxItem{DeliveryID: ids[i], Folder: hub.FolderArchive, Updated: T0}), "put")
	}
	got, err := s.MailboxItems(ctx, ids)
	must(t, err, "items")
	if len(got) != 4 || got["d2499"].Folder != hub.FolderArchive {
		t.Fatalf("got %d items, want 4", len(got))
	}
}

func mbConsentPair(t *testing.T, s hub.MailboxStore) {
	a := hub.Consent{Citizen: "0101701234", OrgCVR: "11111111", Scope: hub.ConsentOwnLetters, Granted: T0}
	b := hub.Consent{Citizen: "0101701234", OrgCVR: "33333333", Scope: hub.ConsentOwnLetters, Granted: T0}
	must(t, s.PutConsent(ctx, a), "put")
	must(t, s.PutConsent(ctx, b), "put")
	got, err := s.ListConsents(ctx, a.Citizen, b.OrgCVR)
	must(t, err, "list pair")
	sameJSON(t, got, []hub.Consent{b}, "pair")
	_, err = s.GetConsent(ctx, "0202702345", a.OrgCVR)
	wantCode(t, err, hub.NotFound, "other citizen")
}
