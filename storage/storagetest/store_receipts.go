package storagetest

import (
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

// refusal is the INVALID receipt of a refused archive entry named after
// message uuid (what accept.Service.Entry stores).
func refusal(uuid, id string, at time.Time) hub.Receipt {
	return hub.Receipt{TransmissionID: id, SystemID: "sender-sys", MessageUUID: uuid, Time: at,
		Status: hub.ReceiptInvalid, ErrorCode: "memo.invalid", ErrorMessage: "refused"}
}

// wantReceiptFor checks ReceiptFor's answer by TransmissionID ("" for
// NotFound).
func wantReceiptFor(t *testing.T, s hub.Store, uuid, want, what string) {
	t.Helper()
	r, err := s.ReceiptFor(ctx, "sender-sys", uuid)
	if want == "" {
		wantCode(t, err, hub.NotFound, what)
		return
	}
	must(t, err, what)
	if r.TransmissionID != want || r.MessageUUID != uuid || r.SystemID != "sender-sys" {
		t.Fatalf("%s: ReceiptFor answered %s (%+v), want %s", what, r.TransmissionID, r, want)
	}
}

var receiptTests = []storeTest{
	{"ReceiptFor answers the newest of a system's receipts for a message, whatever order they were written in", func(t *testing.T, s hub.Store) {
		// An archive entry named m1 was refused after the message was
		// stamped, and its receipt written first.
		must(t, s.PutReceipt(ctx, refusal("m1", "tx-later", T0.Add(2*time.Minute))), "PutReceipt tx-later")
		putMsg(t, s, "m1", T0.Add(time.Minute), "system/a")
		wantReceiptFor(t, s, "m1", "tx-later", "a newer receipt written before the message")
		// An older refusal written last does not take its place.
		must(t, s.PutReceipt(ctx, refusal("m1", "tx-early", T0)), "PutReceipt tx-early")
		wantReceiptFor(t, s, "m1", "tx-later", "an older receipt written last")
		// A status change stamps the message's receipt newest.
		r := Receipt("m1", T0.Add(3*time.Minute))
		r.Status = hub.ReceiptCompleted
		must(t, s.PutReceipt(ctx, r), "PutReceipt COMPLETED")
		wantReceiptFor(t, s, "m1", "tx-m1", "the receipt changed last")
		got, err := s.ReceiptFor(ctx, "sender-sys", "m1")
		must(t, err, "ReceiptFor")
		sameJSON(t, got, r, "the changed receipt")
		wantReceiptFor(t, s, "", "", "ReceiptFor of no UUID")
	}},
	{"Deleting the newest receipt of a message lets the next newest answer", func(t *testing.T, s hub.Store) {
		must(t, s.PutReceipt(ctx, refusal("m1", "tx-early", T0)), "PutReceipt tx-early")
		putMsg(t, s, "m1", T0.Add(time.Minute), "system/a")
		must(t, s.PutReceipt(ctx, refusal("m1", "tx-later", T0.Add(2*time.Minute))), "PutReceipt tx-later")
		wantReceiptFor(t, s, "m1", "tx-later", "three receipts")
		must(t, s.DeleteReceipt(ctx, "sender-sys", "tx-later"), "DeleteReceipt tx-later")
		wantReceiptFor(t, s, "m1", "tx-m1", "after the newest is deleted")
		must(t, s.DeleteReceipt(ctx, "sender-sys", "tx-m1"), "DeleteReceipt tx-m1")
		wantReceiptFor(t, s, "m1", "tx-early", "after the message's is deleted")
		// A receipt issued anew (retrieval does so once the sender has
		// consumed the message's) is the newest.
		again := Receipt("m1", T0.Add(4*time.Minute))
		again.TransmissionID, again.Status = "tx-again", hub.ReceiptCompleted
		must(t, s.PutReceipt(ctx, again), "PutReceipt tx-again")
		wantReceiptFor(t, s, "m1", "tx-again", "a receipt issued anew")
		must(t, s.DeleteReceipt(ctx, "sender-sys", "tx-again"), "DeleteReceipt tx-again")
		must(t, s.DeleteReceipt(ctx, "sender-sys", "tx-early"), "DeleteReceipt tx-early")
		wantReceiptFor(t, s, "m1", "", "once every receipt is deleted")
		rs, err := s.ListReceipts(ctx, "sender-sys", "", 10)
		must(t, err, "ListReceipts")
		if len(rs) != 0 {
			t.Fatalf("ListReceipts after every delete: %+v", rs)
		}
	}},
	{"ReceiptFor breaks a tie of Time by the greatest TransmissionID", func(t *testing.T, s hub.Store) {
		must(t, s.PutReceipt(ctx, refusal("m1", "tx-b", T0)), "PutReceipt tx-b")
		must(t, s.PutReceipt(ctx, refusal("m1", "tx-a", T0)), "PutReceipt tx-a")
		wantReceiptFor(t, s, "m1", "tx-b", "two receipts of one time")
		must(t, s.PutReceipt(ctx, refusal("m1", "tx-c", T0)), "PutReceipt tx-c")
		wantReceiptFor(t, s, "m1", "tx-c", "three receipts of one time")
		// Another system's receipt for the UUID is not this system's.
		other := refusal("m1", "tx-z", T0.Add(time.Hour))
		other.SystemID = "other-sys"
		must(t, s.PutReceipt(ctx, other), "PutReceipt of another system")
		wantReceiptFor(t, s, "m1", "tx-c", "beside another system's receipt")
	}},
	{"A receipt that moves to another message leaves the first one's next newest", func(t *testing.T, s hub.Store) {
		must(t, s.PutReceipt(ctx, refusal("m1", "tx-early", T0)), "PutReceipt tx-early")
		must(t, s.PutReceipt(ctx, refusal("m1", "tx-later", T0.Add(time.Minute))), "PutReceipt tx-later")
		must(t, s.PutReceipt(ctx, refusal("m2", "tx-later", T0.Add(time.Minute))), "PutReceipt tx-later for m2")
		wantReceiptFor(t, s, "m1", "tx-early", "m1")
		wantReceiptFor(t, s, "m2", "tx-later", "m2")
	}},
	{"A stored message keeps the id of its own receipt", func(t *testing.T, s hub.Store) {
		m := Message("m1", []byte("content of m1"), T0)
		m.ReceiptID = "tx-m1"
		// What its receipt said, for a resubmission once it is read.
		m.TransactionID, m.ReasonCode, m.Reason = "call-1", "recipient.exempt", "the recipient is exempt"
		ds := []hub.Delivery{Delivery("m1", "system/a", T0)}
		must(t, s.PutMessageWith(ctx, m, ds, Receipt("m1", T0), nil, nil), "PutMessageWith")
		got, err := s.GetMessage(ctx, "m1")
		must(t, err, "GetMessage")
		if got.ReceiptID != "tx-m1" {
			t.Fatalf("GetMessage: ReceiptID %q, want tx-m1", got.ReceiptID)
		}
		if got.TransactionID != m.TransactionID || got.ReasonCode != m.ReasonCode || got.Reason != m.Reason {
			t.Fatalf("GetMessage: transaction %q, reason %q %q; want %q, %q %q", got.TransactionID, got.ReasonCode, got.Reason,
				m.TransactionID, m.ReasonCode, m.Reason)
		}
		ms, err := s.GetMessages(ctx, []string{"m1"})
		must(t, err, "GetMessages")
		if ms["m1"].ReceiptID != "tx-m1" {
			t.Fatalf("GetMessages: ReceiptID %q, want tx-m1", ms["m1"].ReceiptID)
		}
		sent, err := s.ListMessagesBySender(ctx, "12345678", "", 10)
		must(t, err, "ListMessagesBySender")
		if len(sent) != 1 || sent[0].ReceiptID != "tx-m1" {
			t.Fatalf("ListMessagesBySender: %+v, want m1 with ReceiptID tx-m1", sent)
		}
		c, err := s.ClaimNext(ctx, "system/a", "recv", time.Minute, T0)
		must(t, err, "ClaimNext")
		if c.Message.ReceiptID != "tx-m1" {
			t.Fatalf("ClaimNext's message: ReceiptID %q, want tx-m1", c.Message.ReceiptID)
		}
	}},
	{"AckWith shows the message's own receipt, not a newer one naming its UUID", func(t *testing.T, s hub.Store) {
		m := Message("m1", []byte("content of m1"), T0)
		m.ReceiptID = "tx-m1"
		ds := []hub.Delivery{Delivery("m1", "system/a", T0), Delivery("m1", "system/b", T0), Delivery("m1", "system/c", T0),
			Delivery("m1", "system/d", T0)}
		must(t, s.PutMessage(ctx, m, ds, Receipt("m1", T0)), "PutMessage")
		// A later submission of m1 with other bytes was refused.
		must(t, s.PutReceipt(ctx, refusal("m1", "tx-later", T0.Add(time.Minute))), "PutReceipt tx-later")
		seen := func(d hub.Delivery, at time.Time) *hub.Receipt {
			t.Helper()
			var r *hub.Receipt
			_, err := s.AckWith(ctx, d.ID, "m1", at, func(v hub.AckView) (*hub.Receipt, []hub.Event, error) {
				r = v.SenderReceipt
				return nil, nil, nil
			})
			must(t, err, "AckWith "+d.ID)
			return r
		}
		if r := seen(ds[0], T0.Add(2*time.Minute)); r == nil || r.TransmissionID != "tx-m1" || r.Status != hub.ReceiptReceived {
			t.Fatalf("AckWith's record saw receipt %+v, want the message's own tx-m1", r)
		}
		// The sender consumed it: the refusal is still not the message's.
		must(t, s.DeleteReceipt(ctx, "sender-sys", "tx-m1"), "DeleteReceipt tx-m1")
		if r := seen(ds[1], T0.Add(3*time.Minute)); r != nil {
			t.Fatalf("AckWith's record saw receipt %+v once the message's was consumed, want none", r)
		}
		// Receipts issued anew for the message are its; the newest counts.
		completed := Receipt("m1", T0.Add(10*time.Second))
		completed.TransmissionID, completed.Status = hub.ReissuedReceiptID("tx-m1", hub.ReceiptCompleted), hub.ReceiptCompleted
		must(t, s.PutReceipt(ctx, completed), "PutReceipt issued anew, COMPLETED")
		if r := seen(ds[2], T0.Add(4*time.Minute)); r == nil || r.TransmissionID != completed.TransmissionID {
			t.Fatalf("AckWith's record saw receipt %+v, want the one issued anew %s", r, completed.TransmissionID)
		}
		invalid := Receipt("m1", T0.Add(20*time.Second))
		invalid.TransmissionID, invalid.Status = hub.ReissuedReceiptID("tx-m1", hub.ReceiptInvalid), hub.ReceiptInvalid
		must(t, s.PutReceipt(ctx, invalid), "PutReceipt issued anew, INVALID")
		if r := seen(ds[3], T0.Add(5*time.Minute)); r == nil || r.TransmissionID != invalid.TransmissionID {
			t.Fatalf("AckWith's record saw receipt %+v, want the newest issued anew %s", r, invalid.TransmissionID)
		}
	}},
	{"AckWith shows the record the receipt ReceiptFor answers", func(t *testing.T, s hub.Store) {
		ds := putMsg(t, s, "m1", T0, "system/a")
		must(t, s.PutReceipt(ctx, refusal("m1", "tx-later", T0.Add(time.Minute))), "PutReceipt tx-later")
		var seen *hub.Receipt
		_, err := s.AckWith(ctx, ds[0].ID, "m1", T0.Add(2*time.Minute), func(v hub.AckView) (*hub.Receipt, []hub.Event, error) {
			seen = v.SenderReceipt
			return nil, nil, nil
		})
		must(t, err, "AckWith")
		if seen == nil || seen.TransmissionID != "tx-later" {
			t.Fatalf("AckWith's record saw receipt %+v, want tx-later", seen)
		}
	}},
}
