package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
)

// Event-log findings of a review (each test failed before its fix).

// TestAResubmissionAfterARoutingChangeRecordsNoDeliveryEvents:
// restoreEvents rebuilds a stored letter's first events from the
// resubmission's current routing. When the routing had changed since (the
// recipient was exempt, so the letter went to print, and registered for
// Digital Post since), the identical resubmission used to append
// MEMO_SEND_READY_FOR_FETCH for a mailbox delivery that never existed. It
// now restores only while the routing is the stored one.
func TestAResubmissionAfterARoutingChangeRecordsNoDeliveryEvents(t *testing.T) {
	w := newEnvelopeWorld(t, 1<<20)
	ctx := context.Background()
	const to = "0202702345" // exempt in newEnvelopeWorld: automatic mode prints
	_, uuid := w.submit(t, ctx, to, hub.ModeAutomatic, hub.Envelope{})
	ds, err := w.store.DeliveriesOf(ctx, uuid)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Channel != hub.ChannelPrint {
			t.Fatalf("setup: delivery %+v, want print only", d)
		}
	}
	tags := func() map[string]int {
		t.Helper()
		evs, err := w.store.PendingEvents(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, ev := range evs {
			if ev.MessageUUID == uuid {
				n[ev.Tag]++
			}
		}
		return n
	}
	before := tags()
	if before["MEMO_SEND_READY_FOR_FETCH"] != 0 || before["MEMO_SEND_QUEUED_FOR_PRINT"] != 1 {
		t.Fatalf("setup: events %v", before)
	}
	if err := w.store.PutContacts(ctx, []hub.Contact{{ID: to, Status: hub.Registered}}); err != nil {
		t.Fatal(err)
	}
	w.submit(t, ctx, to, hub.ModeAutomatic, hub.Envelope{}) // the same bytes: answered with the first receipt
	after := tags()
	if after["MEMO_SEND_READY_FOR_FETCH"] != 0 {
		t.Fatalf("an identical resubmission after a routing change logged %d MEMO_SEND_READY_FOR_FETCH for a letter that was only ever queued for print (events now %v)",
			after["MEMO_SEND_READY_FOR_FETCH"], after)
	}
}

// TestALateResubmissionBringsBackNoRetainedEvents: retention deleted a
// letter's sealed events (bolt drops their ID entries with them); an
// identical resubmission of the still stored letter used to append them
// again, with their old times, to be sealed a second time at the head of
// the chain. A resubmission restores events only within an hour of the
// acceptance, and serve refuses a retention shorter than a day.
func TestALateResubmissionBringsBackNoRetainedEvents(t *testing.T) {
	w := newEnvelopeWorld(t, 1<<20)
	ctx := context.Background()
	const to = "0202702345"
	_, uuid := w.submit(t, ctx, to, hub.ModeAutomatic, hub.Envelope{})
	sl := eventlog.NewSealer(w.store, eventlog.SealerOptions{Holder: "review"})
	for {
		n, err := sl.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	// Something newer, so that retention may delete the letter's entries
	// (it never deletes the newest).
	if err := w.store.AppendEvents(ctx, []hub.Event{{ID: "later", Tag: "LOGIN", Time: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sl.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := eventlog.Retain(ctx, w.store, time.Now().Add(time.Minute)); err != nil || n == 0 {
		t.Fatalf("retain: %d, %v", n, err)
	}
	w.in.Now = func() time.Time { return time.Now().Add(25 * time.Hour) } // the least retention serve allows, and more
	w.submit(t, ctx, to, hub.ModeAutomatic, hub.Envelope{})
	evs, err := w.store.PendingEvents(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.MessageUUID == uuid {
			n++
		}
	}
	if n != 0 {
		t.Fatalf("the resubmission appended %d events that retention had deleted (they would be sealed again)", n)
	}
}
