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
		var seen hub.AckView
		res, err := s.AckWith(ctx, ds[0].ID, "m1", T0.Add(time.Minute), func(v hub.AckView) (*hub.Receipt, []hub.Event, error) {
			seen = v
			return &done, []hub.Event{event("f1", T0, "MEMO_FETCHED_BY_RECIPIENT_SYSTEM", "12345678")}, nil
		})
		must(t, err, "AckWith")
		if res.AlreadyAcked || !res.Unreferenced {
			t.Fatalf("AckWith of the only delivery: %+v", res)
		}
		if seen.Delivery.ID != ds[0].ID || seen.Message == nil || seen.Message.UUID != "m1" || seen.Message.SenderSystemID != "sender-sys" ||
			seen.SenderReceipt == nil || seen.SenderReceipt.TransmissionID != "tx-m1" || seen.SenderReceipt.Status != hub.ReceiptReceived {
			t.Fatalf("AckWith's record saw %+v (message %+v, receipt %+v)", seen.Delivery, seen.Message, seen.SenderReceipt)
		}
		_, err = s.GetDelivery(ctx, ds[0].ID)
		wantCode(t, err, hub.NotFound, "GetDelivery after AckWith")
		r, err := s.ReceiptFor(ctx, "sender-sys", "m1")
		must(t, err, "ReceiptFor")
		if r.Status != hub.ReceiptCompleted {
			t.Fatalf("receipt after AckWith: %+v", r)
		}
		res, err = s.AckWith(ctx, ds[0].ID, "m1", T0.Add(2*time.Minute), func(hub.AckView) (*hub.Receipt, []hub.Event, error) {
			t.Error("a repeated AckWith called record")
			again := Receipt("m1", T0.Add(2*time.Minute))
			again.Status = hub.ReceiptInvalid
			return &again, []hub.Event{event("f2", T0, "MEMO_FETCHED_BY_RECIPIENT_SYSTEM", "12345678")}, nil
		})
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
	}},
	{"AckWith sees a missing message and receipt as nil; a record error or an event without ID acknowledges nothing", func(t *testing.T, s hub.Store) {
		ds := putMsg(t, s, "m1", T0, "system/a", "print")
		must(t, s.DeleteReceipt(ctx, "sender-sys", "tx-m1"), "DeleteReceipt")
		_, err := s.AckWith(ctx, ds[0].ID, "m1", T0, func(hub.AckView) (*hub.Receipt, []hub.Event, error) {
			return nil, []hub.Event{{Tag: "X"}}, nil
		})
		wantCode(t, err, hub.Invalid, "AckWith of an event without ID")
		_, err = s.AckWith(ctx, ds[0].ID, "m1", T0, func(hub.AckView) (*hub.Receipt, []hub.Event, error) {
			return nil, nil, hub.Errorf(hub.Unavailable, "no")
		})
		wantCode(t, err, hub.Unavailable, "AckWith whose record fails")
		if _, err := s.GetDelivery(ctx, ds[0].ID); err != nil {
			t.Fatalf("a refused AckWith acknowledged: %v", err)
		}
		var seen hub.AckView
		_, err = s.AckWith(ctx, ds[0].ID, "m1", T0, func(v hub.AckView) (*hub.Receipt, []hub.Event, error) {
			seen = v
			return nil, nil, nil
		})
		must(t, err, "AckWith")
		if seen.Message == nil || seen.SenderReceipt != nil {
			t.Fatalf("message %+v, receipt %+v; want the message and no receipt", seen.Message, seen.SenderReceipt)
		}
		must(t, s.DeleteMessage(ctx, "m1"), "DeleteMessage")
		res, err := s.AckWith(ctx, ds[1].ID, "m1", T0, func(v hub.AckView) (*hub.Receipt, []hub.Event, error) {
			seen = v
			return nil, nil, nil
		})
		must(t, err, "AckWith of a message whose record is gone")
		if seen.Message != nil || seen.Delivery.ID != ds[1].ID || !res.Unreferenced {
			t.Fatalf("view %+v, result %+v", seen, res)
		}
	}},
}
