package storagetest

import (
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

// committerTests are the one-step writes, PutMessageWith and AckWith, which
// every backend has (atomic with transactions, ordered without).
var committerTests = []storeTest{
	{"PutMessageWith stores events and counters in the same step", func(t *testing.T, s hub.Store) {
		evs := []hub.Event{event("w1", T0, "MEMO_SEND_RECEIVED", "12345678")}
		cs := []hub.Counter{{Key: ckey("12345678", "2026-03-02"), Count: 1, Bytes: 5}}
		must(t, s.PutMessageWith(ctx, Message("m1", []byte("x"), T0), []hub.Delivery{Delivery("m1", "system/a", T0)}, Receipt("m1", T0), evs, cs), "PutMessageWith")
		again := []hub.Event{event("w2", T0, "MEMO_SEND_RECEIVED", "12345678")}
		wantCode(t, s.PutMessageWith(ctx, Message("m1", []byte("y"), T0), nil, Receipt("m1", T0), again, cs), hub.Conflict, "PutMessageWith of a taken UUID")
		p, err := s.PendingEvents(ctx, 10)
		must(t, err, "PendingEvents")
		sameStrings(t, evIDs(p), []string{"w1"}, "pending events")
		c, err := s.ReadCounters(ctx, hub.CounterQuery{Org: "12345678"})
		must(t, err, "ReadCounters")
		if len(c) != 1 || c[0].Count != 1 {
			t.Fatalf("counters %+v", c)
		}
		if _, err := s.ReceiptFor(ctx, "sender-sys", "m1"); err != nil {
			t.Fatalf("ReceiptFor: %v", err)
		}
	}},
	{"AckWith stores the receipt and events with the ack, and nothing when already acknowledged", func(t *testing.T, s hub.Store) {
		ds := putMsg(t, s, "m1", T0, "system/a")
		done := Receipt("m1", T0.Add(time.Minute))
		done.Status = hub.ReceiptCompleted
		res, err := s.AckWith(ctx, ds[0].ID, T0.Add(time.Minute), &done, []hub.Event{event("f1", T0, "MEMO_FETCHED_BY_RECIPIENT_SYSTEM", "12345678")})
		must(t, err, "AckWith")
		if res.AlreadyAcked || !res.Unreferenced {
			t.Fatalf("AckWith of the only delivery: %+v", res)
		}
		_, err = s.GetDelivery(ctx, ds[0].ID)
		wantCode(t, err, hub.NotFound, "GetDelivery after AckWith")
		r, err := s.ReceiptFor(ctx, "sender-sys", "m1")
		must(t, err, "ReceiptFor")
		if r.Status != hub.ReceiptCompleted {
			t.Fatalf("receipt after AckWith: %+v", r)
		}
		again := Receipt("m1", T0.Add(2*time.Minute))
		again.Status = hub.ReceiptInvalid
		res, err = s.AckWith(ctx, ds[0].ID, T0.Add(2*time.Minute), &again, []hub.Event{event("f2", T0, "MEMO_FETCHED_BY_RECIPIENT_SYSTEM", "12345678")})
		must(t, err, "second AckWith")
		if !res.AlreadyAcked || res.Unreferenced {
			t.Fatalf("second AckWith: %+v", res)
		}
		r, _ = s.ReceiptFor(ctx, "sender-sys", "m1")
		if r.Status != hub.ReceiptCompleted {
			t.Fatalf("a repeated AckWith changed the receipt: %+v", r)
		}
		p, err := s.PendingEvents(ctx, 10)
		must(t, err, "PendingEvents")
		sameStrings(t, evIDs(p), []string{"f1"}, "pending events")
		wantCode(t, func() error {
			_, err := s.AckWith(ctx, ds[0].ID, T0, nil, []hub.Event{{Tag: "X"}})
			return err
		}(), hub.Invalid, "AckWith of an event without ID")
	}},
}
