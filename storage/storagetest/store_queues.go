package storagetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

const ttl = time.Minute

// fillQueue stores n messages with one delivery each in queue.
func fillQueue(t *testing.T, s hub.Store, queue string, count int) []hub.Delivery {
	t.Helper()
	var out []hub.Delivery
	for i := 0; i < count; i++ {
		out = append(out, putMsg(t, s, queue+"-m"+n(i), T0, queue)...)
	}
	return out
}

func seqIDs(ds []hub.Delivery) []string { return ids(ds, func(d hub.Delivery) string { return d.ID }) }

var queueTests = []storeTest{
	{"ListQueue returns deliveries after the cursor in Seq order", func(t *testing.T, s hub.Store) {
		ds := fillQueue(t, s, "system/a", 5)
		fillQueue(t, s, "system/b", 2)
		got, err := s.ListQueue(ctx, "system/a", 0, 10, false, T0)
		must(t, err, "ListQueue")
		sameStrings(t, seqIDs(got), seqIDs(ds), "whole queue")
		got, err = s.ListQueue(ctx, "system/a", ds[1].Seq, 2, false, T0)
		must(t, err, "ListQueue after cursor")
		sameStrings(t, seqIDs(got), seqIDs(ds[2:4]), "page after cursor")
	}},
	{"ListQueue onlyAvailable skips held, leased and parked deliveries", func(t *testing.T, s hub.Store) {
		ds := fillQueue(t, s, "system/a", 3)
		held := Delivery("held", "system/a", T0)
		held.AvailableAt = T0.Add(time.Hour)
		must(t, s.PutMessage(ctx, Message("held", []byte("h"), T0), []hub.Delivery{held}, Receipt("held", T0)), "PutMessage held")
		_, err := s.Lease(ctx, ds[0].ID, "p1", ttl, T0)
		must(t, err, "Lease")
		must(t, s.Park(ctx, ds[1].ID, "too many attempts"), "Park")
		got, err := s.ListQueue(ctx, "system/a", 0, 10, true, T0)
		must(t, err, "ListQueue")
		sameStrings(t, seqIDs(got), []string{ds[2].ID}, "available")
		got, err = s.ListQueue(ctx, "system/a", 0, 10, false, T0)
		must(t, err, "ListQueue all")
		if len(got) != 4 {
			t.Fatalf("ListQueue without filter: %d deliveries, want 4", len(got))
		}
		// Later, the lease has expired and the hold has passed.
		got, _ = s.ListQueue(ctx, "system/a", 0, 10, true, T0.Add(2*time.Hour))
		sameStrings(t, seqIDs(got), []string{ds[0].ID, ds[2].ID, held.ID}, "available later")
		n, err := s.CountQueue(ctx, "system/a")
		must(t, err, "CountQueue")
		if n != 3 {
			t.Fatalf("CountQueue = %d, want 3 (parked excluded)", n)
		}
	}},
	{"ClaimNext claims every delivery exactly once under concurrency", func(t *testing.T, s hub.Store) {
		const count = 120
		ds := fillQueue(t, s, "system/a", count)
		var mu sync.Mutex
		claims := map[string]int{}
		var failures []error
		parallel(8, func(i int) {
			// Bounded, so that a store handing out duplicates fails rather than spins.
			for tries := 0; tries <= count; tries++ {
				c, err := s.ClaimNext(ctx, "system/a", "poller-"+n(i), ttl, T0)
				if hub.Is(err, hub.NotFound) {
					return
				}
				d, l := c.Delivery, c.Lease
				mu.Lock()
				if err != nil || l.DeliveryID != d.ID {
					failures = append(failures, err)
					mu.Unlock()
					return
				}
				claims[d.ID]++
				mu.Unlock()
			}
		})
		if len(failures) > 0 {
			t.Fatalf("ClaimNext failed: %v", failures)
		}
		if len(claims) != count {
			t.Fatalf("%d deliveries claimed, want %d", len(claims), count)
		}
		for _, d := range ds {
			if claims[d.ID] != 1 {
				t.Fatalf("delivery %s claimed %d times", d.ID, claims[d.ID])
			}
		}
	}},
	{"Lease has exactly one winner among concurrent callers", func(t *testing.T, s hub.Store) {
		ds := fillQueue(t, s, "system/a", 10)
		for _, d := range ds {
			var mu sync.Mutex
			wins, conflicts := 0, 0
			parallel(8, func(i int) {
				_, err := s.Lease(ctx, d.ID, "poller-"+n(i), ttl, T0)
				mu.Lock()
				defer mu.Unlock()
				switch hub.ErrorCode(err) {
				case "":
					wins++
				case hub.Conflict:
					conflicts++
				default:
					t.Errorf("Lease: %v", err)
				}
			})
			if wins != 1 || conflicts != 7 {
				t.Fatalf("delivery %s: %d winners, %d conflicts; want 1 and 7", d.ID, wins, conflicts)
			}
		}
	}},
	{"Lease is Conflict while live, Forbidden when held or parked, NotFound when acknowledged", func(t *testing.T, s hub.Store) {
		ds := fillQueue(t, s, "system/a", 3)
		l, err := s.Lease(ctx, ds[0].ID, "p1", ttl, T0)
		must(t, err, "Lease")
		if l.Attempt != 1 || !l.Expires.Equal(T0.Add(ttl)) || l.Holder != "p1" {
			t.Fatalf("first lease %+v", l)
		}
		_, err = s.Lease(ctx, ds[0].ID, "p2", ttl, T0.Add(ttl-time.Millisecond))
		wantCode(t, err, hub.Conflict, "Lease of a live lease")
		must(t, s.Park(ctx, ds[1].ID, "broken"), "Park")
		_, err = s.Lease(ctx, ds[1].ID, "p2", ttl, T0)
		wantCode(t, err, hub.Forbidden, "Lease of a parked delivery")
		held := Delivery("held", "system/a", T0)
		held.AvailableAt = T0.Add(time.Hour)
		must(t, s.PutMessage(ctx, Message("held", []byte("h"), T0), []hub.Delivery{held}, Receipt("held", T0)), "PutMessage held")
		_, err = s.Lease(ctx, held.ID, "p2", ttl, T0)
		wantCode(t, err, hub.Forbidden, "Lease of a held delivery")
		_, err = s.Ack(ctx, ds[2].ID, T0)
		must(t, err, "Ack")
		_, err = s.Lease(ctx, ds[2].ID, "p2", ttl, T0)
		wantCode(t, err, hub.NotFound, "Lease of an acknowledged delivery")
	}},
	{"A lease taken as of a held delivery's date holds it from then: ClaimNext and Lease at the date find it leased", func(t *testing.T, s hub.Store) {
		// Recall claims a held letter this way, so that it and the outbox
		// (or a receiver system) that takes the letter at its date exclude
		// each other (hub.Ingest.Recall).
		date := T0.Add(time.Hour)
		held := Delivery("held", "print", T0)
		held.AvailableAt = date
		must(t, s.PutMessage(ctx, Message("held", []byte("h"), T0), []hub.Delivery{held}, Receipt("held", T0)), "PutMessage held")
		l, err := s.Lease(ctx, held.ID, "recall", ttl, date)
		must(t, err, "Lease as of the date")
		if !l.Expires.Equal(date.Add(ttl)) {
			t.Fatalf("lease as of the date: %+v", l)
		}
		_, err = s.ClaimNext(ctx, "print", "outbox", ttl, date.Add(time.Second))
		wantCode(t, err, hub.NotFound, "ClaimNext at the date of a delivery leased as of its date")
		_, err = s.Lease(ctx, held.ID, "system", ttl, date.Add(time.Second))
		wantCode(t, err, hub.Conflict, "Lease at the date of a delivery leased as of its date")
		// Taken before its date by the one that leased it as of the date,
		// the delivery is gone for the outbox.
		_, err = s.Ack(ctx, held.ID, T0.Add(time.Minute))
		must(t, err, "Ack")
		_, err = s.ClaimNext(ctx, "print", "outbox", ttl, date.Add(ttl+time.Second))
		wantCode(t, err, hub.NotFound, "ClaimNext after the ack")
	}},
	{"An expired lease is taken over by another holder as a new attempt", func(t *testing.T, s hub.Store) {
		ds := fillQueue(t, s, "system/a", 1)
		l1, err := s.Lease(ctx, ds[0].ID, "p1", ttl, T0)
		must(t, err, "Lease")
		l2, err := s.Lease(ctx, ds[0].ID, "p2", ttl, T0.Add(ttl+time.Millisecond))
		must(t, err, "Lease after expiry")
		if l2.Attempt != l1.Attempt+1 || l2.Epoch == l1.Epoch || l2.Holder != "p2" {
			t.Fatalf("takeover lease %+v after %+v", l2, l1)
		}
		if l2.Token() == l1.Token() {
			t.Fatalf("takeover lease has the old token %s", l1.Token())
		}
		d, err := s.GetDelivery(ctx, ds[0].ID)
		must(t, err, "GetDelivery")
		if d.Attempts != 2 {
			t.Fatalf("Attempts = %d, want 2", d.Attempts)
		}
		_, err = s.Lease(ctx, ds[0].ID, "p1", ttl, T0.Add(ttl+2*time.Millisecond))
		wantCode(t, err, hub.Conflict, "old holder after takeover")
	}},
	{"ClaimNext takes the first available delivery and NotFound when none", func(t *testing.T, s hub.Store) {
		ds := fillQueue(t, s, "system/a", 2)
		c, err := s.ClaimNext(ctx, "system/a", "p1", ttl, T0)
		must(t, err, "ClaimNext")
		if d, l := c.Delivery, c.Lease; d.ID != ds[0].ID || l.DeliveryID != ds[0].ID || l.Attempt != 1 || d.Attempts != 1 {
			t.Fatalf("ClaimNext got %s (lease %+v), want %s", d.ID, l, ds[0].ID)
		}
		if c.Message.UUID != ds[0].MessageUUID || string(c.Message.Content) != "content of "+ds[0].MessageUUID {
			t.Fatalf("ClaimNext's message: %+v", c.Message)
		}
		c, err = s.ClaimNext(ctx, "system/a", "p2", ttl, T0)
		must(t, err, "second ClaimNext")
		if c.Delivery.ID != ds[1].ID {
			t.Fatalf("second ClaimNext got %s", c.Delivery.ID)
		}
		_, err = s.ClaimNext(ctx, "system/a", "p3", ttl, T0)
		wantCode(t, err, hub.NotFound, "ClaimNext of an exhausted queue")
		_, err = s.ClaimNext(ctx, "system/empty", "p3", ttl, T0)
		wantCode(t, err, hub.NotFound, "ClaimNext of an empty queue")
	}},
	{"Release makes the delivery available at once; a stale release is no error", func(t *testing.T, s hub.Store) {
		ds := fillQueue(t, s, "system/a", 1)
		l1, err := s.Lease(ctx, ds[0].ID, "p1", ttl, T0)
		must(t, err, "Lease")
		must(t, s.Release(ctx, l1), "Release")
		l2, err := s.Lease(ctx, ds[0].ID, "p2", ttl, T0.Add(time.Second))
		must(t, err, "Lease after release")
		must(t, s.Release(ctx, l1), "stale Release")
		_, err = s.Lease(ctx, ds[0].ID, "p3", ttl, T0.Add(2*time.Second))
		wantCode(t, err, hub.Conflict, "Lease after a stale release")
		_, err = s.Ack(ctx, ds[0].ID, T0)
		must(t, err, "Ack")
		must(t, s.Release(ctx, l2), "Release of an acknowledged delivery")
	}},
	{"Ack is idempotent: a second ack reports AlreadyAcked", func(t *testing.T, s hub.Store) {
		ds := fillQueue(t, s, "system/a", 1)
		_, err := s.Lease(ctx, ds[0].ID, "p1", ttl, T0)
		must(t, err, "Lease")
		r1, err := s.Ack(ctx, ds[0].ID, T0)
		must(t, err, "Ack")
		if r1.AlreadyAcked {
			t.Fatalf("first ack says AlreadyAcked")
		}
		r2, err := s.Ack(ctx, ds[0].ID, T0)
		must(t, err, "second Ack")
		if !r2.AlreadyAcked || r2.Unreferenced {
			t.Fatalf("second ack %+v", r2)
		}
		_, err = s.GetDelivery(ctx, ds[0].ID)
		wantCode(t, err, hub.NotFound, "GetDelivery after ack")
		if n, _ := s.CountQueue(ctx, "system/a"); n != 0 {
			t.Fatalf("CountQueue after ack = %d", n)
		}
		got, _ := s.ListQueue(ctx, "system/a", 0, 10, false, T0)
		if len(got) != 0 {
			t.Fatalf("acknowledged delivery still listed")
		}
	}},
	{"Ack of the last delivery unreferences the content, not before and not when archived", func(t *testing.T, s hub.Store) {
		m := Message("m1", nil, T0)
		m.Content, m.ContentKey = nil, "msg/m1/abc"
		ds := []hub.Delivery{Delivery("m1", "system/a", T0), Delivery("m1", "print", T0)}
		must(t, s.PutMessage(ctx, m, ds, Receipt("m1", T0)), "PutMessage")
		got, _ := s.GetMessage(ctx, "m1")
		if got.ContentKey != "msg/m1/abc" {
			t.Fatalf("ContentKey %q", got.ContentKey)
		}
		r, err := s.Ack(ctx, ds[0].ID, T0)
		must(t, err, "Ack first")
		if r.Unreferenced || r.ContentKey != "" {
			t.Fatalf("ack with a delivery remaining: %+v", r)
		}
		r, err = s.Ack(ctx, ds[1].ID, T0)
		must(t, err, "Ack last")
		if !r.Unreferenced || r.ContentKey != "msg/m1/abc" {
			t.Fatalf("ack of the last delivery: %+v", r)
		}

		a := Message("m2", nil, T0)
		a.Content, a.ContentKey, a.ArchiveUntil = nil, "msg/m2/abc", T0.Add(24*time.Hour)
		d := Delivery("m2", "system/a", T0)
		must(t, s.PutMessage(ctx, a, []hub.Delivery{d}, Receipt("m2", T0)), "PutMessage archived")
		r, err = s.Ack(ctx, d.ID, T0)
		must(t, err, "Ack archived")
		if r.Unreferenced || r.ContentKey != "" {
			t.Fatalf("ack of an archived message: %+v", r)
		}
	}},
	{"Ack of the last delivery removes inline content; the record stays", func(t *testing.T, s hub.Store) {
		ds := putMsg(t, s, "m1", T0, "system/a", "print")
		must(t, func() error { _, err := s.Ack(ctx, ds[0].ID, T0); return err }(), "Ack first")
		got, err := s.GetMessage(ctx, "m1")
		must(t, err, "GetMessage")
		if string(got.Content) != "content of m1" {
			t.Fatalf("content with a delivery remaining: %q", got.Content)
		}
		must(t, func() error { _, err := s.Ack(ctx, ds[1].ID, T0); return err }(), "Ack last")
		got, err = s.GetMessage(ctx, "m1")
		must(t, err, "GetMessage after the last ack")
		if len(got.Content) != 0 || got.SHA256 != sha([]byte("content of m1")) {
			t.Fatalf("after the last ack: content %q, sha %s", got.Content, got.SHA256)
		}
	}},
	{"Park sets a delivery aside and Unpark makes it available with attempts reset", func(t *testing.T, s hub.Store) {
		ds := fillQueue(t, s, "system/a", 1)
		_, err := s.Lease(ctx, ds[0].ID, "p1", ttl, T0)
		must(t, err, "Lease")
		must(t, s.Park(ctx, ds[0].ID, "five failures"), "Park")
		d, _ := s.GetDelivery(ctx, ds[0].ID)
		if d.State != hub.DeliveryParked {
			t.Fatalf("state %q after Park", d.State)
		}
		_, err = s.ClaimNext(ctx, "system/a", "p2", ttl, T0.Add(2*ttl))
		wantCode(t, err, hub.NotFound, "ClaimNext with only a parked delivery")
		must(t, s.Unpark(ctx, ds[0].ID), "Unpark")
		d, _ = s.GetDelivery(ctx, ds[0].ID)
		if d.State != hub.DeliveryReady || d.Attempts != 0 {
			t.Fatalf("after Unpark: state %q attempts %d", d.State, d.Attempts)
		}
		if n, _ := s.CountQueue(ctx, "system/a"); n != 1 {
			t.Fatalf("CountQueue after Unpark = %d", n)
		}
		_, err = s.Lease(ctx, ds[0].ID, "p2", ttl, T0)
		must(t, err, "Lease after Unpark")
		wantCode(t, s.Park(ctx, "nope", "x"), hub.NotFound, "Park of absent")
		wantCode(t, s.Unpark(ctx, "nope"), hub.NotFound, "Unpark of absent")
	}},
	{"AddDeliveries skips existing IDs so it is idempotent", func(t *testing.T, s hub.Store) {
		putMsg(t, s, "m1", T0, "mailbox/12345678/AUTHORITY_POST")
		ds := []hub.Delivery{Delivery("m1", "system/new", T0)}
		must(t, s.AddDeliveries(ctx, ds), "AddDeliveries")
		first, err := s.GetDelivery(ctx, ds[0].ID)
		must(t, err, "GetDelivery")
		_, err = s.Lease(ctx, ds[0].ID, "p1", ttl, T0)
		must(t, err, "Lease")
		must(t, s.AddDeliveries(ctx, append(ds, Delivery("m1", "system/other", T0))), "AddDeliveries again")
		again, _ := s.GetDelivery(ctx, ds[0].ID)
		if again.Seq != first.Seq || again.Attempts != 1 {
			t.Fatalf("re-added delivery was replaced: %+v", again)
		}
		if n, _ := s.CountQueue(ctx, "system/new"); n != 1 {
			t.Fatalf("CountQueue = %d, want 1", n)
		}
		all, _ := s.DeliveriesOf(ctx, "m1")
		if len(all) != 3 {
			t.Fatalf("DeliveriesOf = %d, want 3", len(all))
		}
	}},
	{"ClaimNext and ListQueue reach what is available behind many parked and leased deliveries", func(t *testing.T, s hub.Store) {
		QueueBehindUnavailable(t, s, 70, 70) // each more than a ClaimNext page (64)
	}},
}

// QueueBehindUnavailable fills a queue with parked deliveries, then leased
// ones, then three available ones, and checks that ListQueue lists them
// all with their state, that its onlyAvailable page and ClaimNext reach the
// available ones behind the others, and that CountQueue leaves the parked
// ones out. A backend that reads a queue's state in windows runs it with
// more of each than a window holds.
func QueueBehindUnavailable(t *testing.T, s hub.Store, parked, leased int) {
	t.Helper()
	const q, free = "system/a", 3
	putMsg(t, s, "big", T0, "system/other")
	var ds []hub.Delivery
	for i := 0; i < parked+leased+free; i++ {
		d := Delivery("big", q, T0)
		d.ID = fmt.Sprintf("big/%s/%05d", q, i)
		ds = append(ds, d)
	}
	must(t, s.AddDeliveries(ctx, ds), "AddDeliveries")
	const workers = 8
	var failures atomic.Int32
	parallel(workers, func(w int) {
		for i := w; i < parked+leased; i += workers {
			var err error
			if i < parked {
				err = s.Park(ctx, ds[i].ID, "test")
			} else {
				_, err = s.Lease(ctx, ds[i].ID, "holder", ttl, T0)
			}
			if err != nil && failures.Add(1) == 1 {
				t.Errorf("park or lease %s: %v", ds[i].ID, err)
			}
		}
	})
	if t.Failed() {
		return
	}
	want := seqIDs(ds[parked+leased:])
	got, err := s.ListQueue(ctx, q, 0, 10, true, T0)
	must(t, err, "ListQueue onlyAvailable")
	sameStrings(t, seqIDs(got), want, "available")
	all, err := s.ListQueue(ctx, q, 0, len(ds)+10, false, T0)
	must(t, err, "ListQueue")
	if len(all) != len(ds) {
		t.Fatalf("ListQueue: %d deliveries, want %d", len(all), len(ds))
	}
	for i, d := range all {
		if d.ID != ds[i].ID || (d.State == hub.DeliveryParked) != (i < parked) || (i >= parked && i < parked+leased && d.Attempts != 1) {
			t.Fatalf("ListQueue[%d] = %s %s after %d attempts, want %s parked %v", i, d.ID, d.State, d.Attempts, ds[i].ID, i < parked)
		}
	}
	var claimed []string
	for range want {
		c, err := s.ClaimNext(ctx, q, "poller", ttl, T0)
		must(t, err, "ClaimNext")
		claimed = append(claimed, c.Delivery.ID)
	}
	sameStrings(t, sorted(claimed), want, "claimed")
	_, err = s.ClaimNext(ctx, q, "poller", ttl, T0)
	wantCode(t, err, hub.NotFound, "ClaimNext with everything parked or leased")
	n, err := s.CountQueue(ctx, q)
	must(t, err, "CountQueue")
	if n != int64(leased+free) {
		t.Fatalf("CountQueue = %d, want %d (parked excluded)", n, leased+free)
	}
}
