package hub_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/hubtest"
)

// Findings of a review of the print and SMS outbox (each test failed
// before its fix).

const (
	outboxExempt = "0202702345" // exempt from Digital Post: print
	outboxSMS    = "0303703456" // registered for NemSMS
)

// outboxWorld is an embedded hub with an exempt citizen, a NemSMS citizen
// and a sender system of 11111111.
type outboxWorld struct {
	h   *hubtest.Hub
	in  *hub.Ingest
	sys hub.System
}

func newOutboxWorld(t *testing.T) outboxWorld {
	h := hubtest.Open(t)
	h.Contacts(hub.Contact{ID: outboxExempt, Status: hub.Exempt, Name: "Fritaget Borger", Address: []string{"Fritaget Borger", "Eksempelvej 1", "1234 Demoby"}},
		hub.Contact{ID: outboxSMS, Status: hub.Registered, NemSMS: true, Phone: "+4512345678"})
	in := h.Ingest(hub.StoreEvents{Store: h.Store}, 1<<20)
	return outboxWorld{h: h, in: in, sys: hub.System{ID: "sender", OrgCVR: "11111111", Role: hub.SenderSystem, Active: true}}
}

func (w outboxWorld) submit(t *testing.T, l hub.Letter, mode hub.Mode) {
	t.Helper()
	body := []byte("<memo:Message>" + l.UUID + "</memo:Message>")
	sum := sha256.Sum256(body)
	l.Size, l.SenderID = int64(len(body)), "11111111"
	if _, _, err := w.in.Submit(context.Background(), hub.Submission{System: w.sys, Body: body, Size: l.Size,
		SHA256: hex.EncodeToString(sum[:]), Mode: mode, Letter: l}); err != nil {
		t.Fatal(err)
	}
}

func (w outboxWorld) printLetter(t *testing.T, uuid string) {
	t.Helper()
	w.submit(t, hub.Letter{UUID: uuid, MessageType: "DIGITALPOST", RecipientID: outboxExempt, RecipientType: "CPR"}, hub.ModePrintOnly)
}

func (w outboxWorld) sms(t *testing.T, uuid string) {
	t.Helper()
	w.submit(t, hub.Letter{UUID: uuid, MessageType: "NEMSMS", RecipientID: outboxSMS, RecipientType: "CPR", Notification: "Du har post"}, hub.ModeNemSMS)
}

// events returns the pending events of the log by ID.
func (w outboxWorld) events(t *testing.T) map[string]hub.Event {
	t.Helper()
	evs, err := w.h.Store.PendingEvents(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]hub.Event{}
	for _, e := range evs {
		out[e.ID] = e
	}
	return out
}

// tags counts the pending events of the log by tag.
func (w outboxWorld) tags(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, e := range w.events(t) {
		out[e.Tag]++
	}
	return out
}

// refuseTag is an event sink that refuses one tag (a database hiccup at
// that moment) and passes the rest on.
type refuseTag struct {
	inner hub.EventSink
	tag   string
}

func (f refuseTag) Emit(ctx context.Context, evs ...hub.Event) error {
	for _, e := range evs {
		if e.Tag == f.tag {
			return errors.New("event store unavailable")
		}
	}
	return f.inner.Emit(ctx, evs...)
}

// TestOutboxSentEventIsWrittenWithTheAck: the outbox used to remove a
// letter the provider took with a plain Ack and only then emit
// PHYSICAL_LETTER_SENT, ignoring the emit's error: an append that failed
// (or a crash between the two) lost the event for good while the letter
// was gone from the queue. The event is now written by the ack itself
// (Store.AckWith), under an ID derived from the delivery.
func TestOutboxSentEventIsWrittenWithTheAck(t *testing.T) {
	w := newOutboxWorld(t)
	ctx := context.Background()
	uuid := "0b5c9c1e-6a53-4a4e-9d43-000000000001"
	w.printLetter(t, uuid)
	spool := t.TempDir()
	ob := &hub.Outbox{Store: w.h.Store, Blobs: w.h.Blobs, Events: refuseTag{hub.StoreEvents{Store: w.h.Store}, "PHYSICAL_LETTER_SENT"},
		Queue: hub.PrintQueue, Holder: "t", Lease: time.Minute, Dispatcher: hub.SpoolDispatcher{Dir: spool}}
	if n, err := ob.Drain(ctx); n != 1 || err != nil {
		t.Fatalf("drain: %d, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(spool, uuid+".json")); err != nil {
		t.Fatalf("not spooled: %v", err)
	}
	id := "outbox:" + hub.DeliveryID(uuid, hub.PrintQueue) + ":sent"
	e, ok := w.events(t)[id]
	if !ok || e.Tag != "PHYSICAL_LETTER_SENT" || e.MessageUUID != uuid || e.Party != outboxExempt || len(e.Orgs) != 1 || e.Orgs[0] != "11111111" {
		t.Fatalf("event %s after the hand-over: %+v (found %v); tags %v", id, e, ok, w.tags(t))
	}
	if ds, err := w.h.Store.DeliveriesOf(ctx, uuid); err != nil || len(ds) != 0 {
		t.Fatalf("deliveries after the hand-over: %+v, %v", ds, err)
	}
}

// TestOutboxSMSSentEventIsWrittenWithTheAck is the SMS side of
// TestOutboxSentEventIsWrittenWithTheAck: NEM_SMS_SENT_SUCCESSFULLY was
// emitted after the ack, its error ignored.
func TestOutboxSMSSentEventIsWrittenWithTheAck(t *testing.T) {
	w := newOutboxWorld(t)
	ctx := context.Background()
	uuid := "0b5c9c1e-6a53-4a4e-9d43-000000000005"
	w.sms(t, uuid)
	ob := &hub.Outbox{Store: w.h.Store, Blobs: w.h.Blobs, Events: refuseTag{hub.StoreEvents{Store: w.h.Store}, "NEM_SMS_SENT_SUCCESSFULLY"},
		Queue: hub.SMSQueue, Holder: "t", Lease: time.Minute, Dispatcher: hub.SpoolDispatcher{Dir: t.TempDir()}}
	if n, err := ob.Drain(ctx); n != 1 || err != nil {
		t.Fatalf("drain: %d, %v", n, err)
	}
	id := "outbox:" + hub.DeliveryID(uuid, hub.SMSQueue) + ":sent"
	if e, ok := w.events(t)[id]; !ok || e.Tag != "NEM_SMS_SENT_SUCCESSFULLY" {
		t.Fatalf("event %s after the hand-over: %+v (found %v); tags %v", id, e, ok, w.tags(t))
	}
}

// quietLog keeps the outbox's warnings about refused items out of the
// test output.
var quietLog = slog.New(slog.DiscardHandler)

// refusingDispatcher refuses every item, counting the calls.
type refusingDispatcher struct{ calls *int }

func (f refusingDispatcher) Dispatch(context.Context, hub.OutboxItem) error {
	*f.calls++
	return errors.New("gateway refused")
}

// TestOutboxFailureIsLoggedAtDoublingIntervals: an item the provider kept
// refusing was retried every lease for ever with nothing but a WARN log
// line: no NEM_SMS_SEND_FAILED (the tag existed, nothing wrote it), no
// event for print at all, no metric. The failure is now in the event log
// at attempts 1, 2, 4, 8 and 16 of 20 (each once, under an ID of the
// delivery and the attempt) and every attempt is counted.
func TestOutboxFailureIsLoggedAtDoublingIntervals(t *testing.T) {
	for _, tc := range []struct {
		queue, tag string
		submit     func(w outboxWorld, t *testing.T, uuid string)
	}{
		{hub.SMSQueue, "NEM_SMS_SEND_FAILED", outboxWorld.sms},
		{hub.PrintQueue, "PHYSICAL_LETTER_SEND_FAILED", outboxWorld.printLetter},
	} {
		t.Run(tc.queue, func(t *testing.T) {
			w := newOutboxWorld(t)
			ctx := context.Background()
			uuid := "0b5c9c1e-6a53-4a4e-9d43-000000000002"
			tc.submit(w, t, uuid)
			calls := 0
			outcomes := map[string]int{}
			now := time.Now().UTC()
			ob := &hub.Outbox{Store: w.h.Store, Blobs: w.h.Blobs, Events: hub.StoreEvents{Store: w.h.Store}, Queue: tc.queue, Holder: "t", Log: quietLog,
				Lease: 5 * time.Minute, Dispatcher: refusingDispatcher{&calls}, Now: func() time.Time { return now },
				Outcome: func(q, o string) {
					if q != tc.queue {
						t.Errorf("outcome of queue %q", q)
					}
					outcomes[o]++
				}}
			for range 20 { // 20 lease periods: 100 minutes of refusals
				if _, err := ob.Drain(ctx); err != nil {
					t.Fatal(err)
				}
				now = now.Add(5*time.Minute + time.Second)
			}
			if calls != 20 || outcomes["failed"] != 20 || outcomes["sent"] != 0 {
				t.Fatalf("%d dispatch calls, outcomes %v; want 20 failed", calls, outcomes)
			}
			var attempts []int
			for _, e := range w.events(t) {
				if e.Tag == tc.tag {
					if e.MessageUUID != uuid || len(e.Orgs) != 1 || e.Orgs[0] != "11111111" || e.Detail["errorCode"] != "internal" {
						t.Errorf("failure event %+v", e)
					}
					if want := "outbox:" + hub.DeliveryID(uuid, tc.queue) + ":failed:" + e.Detail["attempt"]; e.ID != want {
						t.Errorf("failure event ID %s, want %s", e.ID, want)
					}
					a, err := strconv.Atoi(e.Detail["attempt"])
					if err != nil {
						t.Fatal(err)
					}
					attempts = append(attempts, a)
				}
			}
			slices.Sort(attempts)
			if !slices.Equal(attempts, []int{1, 2, 4, 8, 16}) {
				t.Fatalf("%s at attempts %v, want 1 2 4 8 16; tags %v", tc.tag, attempts, w.tags(t))
			}
			if ds, err := w.h.Store.DeliveriesOf(ctx, uuid); err != nil || len(ds) != 1 || ds[0].State == hub.DeliveryParked {
				t.Fatalf("a refused item must stay queued, not parked: %+v, %v", ds, err)
			}
		})
	}
}

// TestOutboxParksAnItemThatCanNeverBeHandedOver: an item whose message or
// content was gone failed the same way every lease, for ever, without a
// word beyond a log line. It is now parked at its first attempt, with its
// failure event and OUTBOX_ITEM_PARKED, and never handed to the provider.
func TestOutboxParksAnItemThatCanNeverBeHandedOver(t *testing.T) {
	for _, tc := range []struct {
		name, queue, tag string
		submit           func(w outboxWorld, t *testing.T, uuid string)
		lose             func(t *testing.T, w outboxWorld, m hub.Message)
	}{
		{"print content gone", hub.PrintQueue, "PHYSICAL_LETTER_SEND_FAILED", outboxWorld.printLetter, func(t *testing.T, w outboxWorld, m hub.Message) {
			if m.ContentKey == "" {
				t.Fatal("content stored inline")
			}
			if err := w.h.Blobs.Delete(context.Background(), m.ContentKey); err != nil {
				t.Fatal(err)
			}
		}},
		{"SMS message gone", hub.SMSQueue, "NEM_SMS_SEND_FAILED", outboxWorld.sms, func(t *testing.T, w outboxWorld, m hub.Message) {
			if err := w.h.Store.DeleteMessage(context.Background(), m.UUID); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newOutboxWorld(t)
			w.in.InlineMax = 0
			ctx := context.Background()
			uuid := "0b5c9c1e-6a53-4a4e-9d43-000000000006"
			tc.submit(w, t, uuid)
			m, err := w.h.Store.GetMessage(ctx, uuid)
			if err != nil {
				t.Fatal(err)
			}
			tc.lose(t, w, m)
			calls := 0
			outcomes := map[string]int{}
			now := time.Now().UTC()
			ob := &hub.Outbox{Store: w.h.Store, Blobs: w.h.Blobs, Events: hub.StoreEvents{Store: w.h.Store}, Queue: tc.queue, Holder: "t", Log: quietLog,
				Lease: 5 * time.Minute, Dispatcher: refusingDispatcher{&calls}, Now: func() time.Time { return now },
				Outcome: func(_, o string) { outcomes[o]++ }}
			for range 3 {
				if _, err := ob.Drain(ctx); err != nil {
					t.Fatal(err)
				}
				now = now.Add(5*time.Minute + time.Second)
			}
			if calls != 0 || outcomes["failed"] != 1 || outcomes["parked"] != 1 {
				t.Fatalf("%d dispatch calls, outcomes %v; want one failure, parked", calls, outcomes)
			}
			ds, err := w.h.Store.DeliveriesOf(ctx, uuid)
			if err != nil || len(ds) != 1 || ds[0].State != hub.DeliveryParked {
				t.Fatalf("deliveries: %+v, %v; want the item parked", ds, err)
			}
			tags := w.tags(t)
			e, ok := w.events(t)["outbox:"+ds[0].ID+":failed:1"]
			if !ok || e.Tag != tc.tag || e.Detail["parked"] != "true" || tags["OUTBOX_ITEM_PARKED"] != 1 {
				t.Fatalf("failure event %+v (found %v); tags %v", e, ok, tags)
			}
		})
	}
}

// beforeSetState wraps the store a Recall uses: before writes RECALLED,
// before runs (the outbox, on another goroutine or instance, at work).
type beforeSetState struct {
	hub.Store
	before func()
}

func (r beforeSetState) SetMessageState(ctx context.Context, uuid string, s hub.MessageState) error {
	if r.before != nil {
		r.before()
	}
	return r.Store.SetMessageState(ctx, uuid, s)
}

// heldLetter submits a print letter held until an hour after t0 and
// returns that date.
func (w outboxWorld) heldLetter(t *testing.T, uuid string, t0 time.Time) time.Time {
	t.Helper()
	notBefore := t0.Add(time.Hour)
	w.in.Now = func() time.Time { return t0 }
	w.submit(t, hub.Letter{UUID: uuid, MessageType: "DIGITALPOST", RecipientID: outboxExempt, RecipientType: "CPR", NotBefore: notBefore}, hub.ModePrintOnly)
	return notBefore
}

// TestRecallWinsOverTheOutboxAtTheDate: a recall that read the message
// just before its doNotDeliverUntilDate and wrote RECALLED just after used
// to let the outbox print the letter in between, and still answered
// success. The recall now leases the letter's deliveries (as of its date)
// before it writes RECALLED, so the outbox finds nothing to hand over,
// then or later.
func TestRecallWinsOverTheOutboxAtTheDate(t *testing.T) {
	w := newOutboxWorld(t)
	ctx := context.Background()
	uuid := "0b5c9c1e-6a53-4a4e-9d43-000000000003"
	notBefore := w.heldLetter(t, uuid, time.Now().UTC().Truncate(time.Second))
	spool := t.TempDir()
	now := notBefore
	ob := &hub.Outbox{Store: w.h.Store, Blobs: w.h.Blobs, Events: hub.StoreEvents{Store: w.h.Store}, Queue: hub.PrintQueue, Holder: "t",
		Lease: time.Minute, Dispatcher: hub.SpoolDispatcher{Dir: spool}, Now: func() time.Time { return now }}
	recall := *w.in
	recall.Now = func() time.Time { return notBefore.Add(-time.Millisecond) }
	drained := false
	recall.Store = beforeSetState{Store: w.h.Store, before: func() {
		drained = true
		if n, err := ob.Drain(ctx); n != 0 || err != nil {
			t.Errorf("outbox drain at the date, while the recall holds the letter: %d, %v", n, err)
		}
	}}
	if err := recall.Recall(ctx, "11111111", "user", uuid); err != nil || !drained {
		t.Fatalf("recall before the date: %v (outbox ran: %v)", err, drained)
	}
	now = notBefore.Add(time.Hour) // long after any lease
	if n, err := ob.Drain(ctx); n != 0 || err != nil {
		t.Fatalf("outbox drain after the recall: %d, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(spool, uuid+".json")); err == nil {
		t.Fatalf("recall answered success but the letter is in the print spool")
	}
	if m, err := w.h.Store.GetMessage(ctx, uuid); err != nil || m.State != hub.MessageRecalled {
		t.Fatalf("message after the recall: %s, %v", m.State, err)
	}
}

// recallingDispatcher recalls the letter while the outbox hands it over
// (holding its lease) and then takes it.
type recallingDispatcher struct {
	recall func() error
	err    *error
	took   *int
}

func (d recallingDispatcher) Dispatch(context.Context, hub.OutboxItem) error {
	*d.err = d.recall()
	*d.took++
	return nil
}

// TestRecallIsTooLateOnceTheOutboxHasTheLetter: the other side of
// TestRecallWinsOverTheOutboxAtTheDate. An outbox whose clock is past the
// date claims the letter while a recall, on a clock still before it, runs:
// the recall used to write RECALLED and answer success while the letter
// was being printed. It now answers Conflict (message.recall.too.late),
// while the outbox holds the letter and after it handed it over, and the
// letter is printed once.
func TestRecallIsTooLateOnceTheOutboxHasTheLetter(t *testing.T) {
	w := newOutboxWorld(t)
	ctx := context.Background()
	uuid := "0b5c9c1e-6a53-4a4e-9d43-000000000007"
	notBefore := w.heldLetter(t, uuid, time.Now().UTC().Truncate(time.Second))
	recall := *w.in
	recall.Now = func() time.Time { return notBefore.Add(-time.Millisecond) }
	doRecall := func() error { return recall.Recall(ctx, "11111111", "user", uuid) }
	var during error
	took := 0
	ob := &hub.Outbox{Store: w.h.Store, Blobs: w.h.Blobs, Events: hub.StoreEvents{Store: w.h.Store}, Queue: hub.PrintQueue, Holder: "t",
		Lease: time.Minute, Dispatcher: recallingDispatcher{recall: doRecall, err: &during, took: &took}, Now: func() time.Time { return notBefore }}
	if n, err := ob.Drain(ctx); n != 1 || err != nil || took != 1 {
		t.Fatalf("outbox drain at the date: %d, %v (%d handed over)", n, err, took)
	}
	tooLate := func(err error, when string) {
		t.Helper()
		var he *hub.Error
		if !errors.As(err, &he) || he.Code != hub.Conflict || len(he.Fields) != 1 || he.Fields[0].Code != "message.recall.too.late" {
			t.Fatalf("recall %s: %v, want Conflict message.recall.too.late", when, err)
		}
	}
	tooLate(during, "while the outbox hands the letter over")
	tooLate(doRecall(), "after the outbox handed the letter over")
	if m, err := w.h.Store.GetMessage(ctx, uuid); err != nil || m.State == hub.MessageRecalled {
		t.Fatalf("a printed letter's state: %s, %v", m.State, err)
	}
	if n := w.tags(t)["MEMO_MESSAGE_RECALLED"]; n != 0 {
		t.Fatalf("%d MEMO_MESSAGE_RECALLED for a printed letter", n)
	}
}

// staleClaim wraps a store whose ClaimNext read the message before the
// lease was in (MongoDB reads it beside the lease insert): it shows the
// message as HELD whatever it is now.
type staleClaim struct{ hub.Store }

func (s staleClaim) ClaimNext(ctx context.Context, queue, holder string, ttl time.Duration, now time.Time) (hub.Claimed, error) {
	c, err := s.Store.ClaimNext(ctx, queue, holder, ttl, now)
	c.Message.State = hub.MessageHeld
	return c, err
}

// TestOutboxReadsTheStateAgainBeforeHandingOver: the outbox decided on
// the message state its claim had read. A letter recalled after that read
// (a recall whose lease on the letter ran out before it wrote RECALLED)
// was printed anyway. The outbox now reads the state again right before it
// hands the item over and drops a recalled letter.
func TestOutboxReadsTheStateAgainBeforeHandingOver(t *testing.T) {
	w := newOutboxWorld(t)
	ctx := context.Background()
	uuid := "0b5c9c1e-6a53-4a4e-9d43-000000000008"
	notBefore := w.heldLetter(t, uuid, time.Now().UTC().Truncate(time.Second))
	// A recall that wrote its state and stopped before removing the
	// delivery (it finishes when repeated).
	if err := w.h.Store.SetMessageState(ctx, uuid, hub.MessageRecalled); err != nil {
		t.Fatal(err)
	}
	calls := 0
	ob := &hub.Outbox{Store: staleClaim{w.h.Store}, Blobs: w.h.Blobs, Queue: hub.PrintQueue, Holder: "t",
		Lease: time.Minute, Dispatcher: refusingDispatcher{&calls}, Now: func() time.Time { return notBefore }}
	if n, err := ob.Drain(ctx); n != 0 || err != nil || calls != 0 {
		t.Fatalf("drain of a recalled letter: %d, %v, %d dispatch calls", n, err, calls)
	}
	if ds, err := w.h.Store.DeliveriesOf(ctx, uuid); err != nil || len(ds) != 0 {
		t.Fatalf("deliveries of a recalled letter after the drain: %+v, %v", ds, err)
	}
}
