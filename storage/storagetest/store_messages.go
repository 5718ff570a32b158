package storagetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

var messageTests = []storeTest{
	{"PutMessage stores the message, its deliveries and the receipt together", func(t *testing.T, s hub.Store) {
		content := bytes.Repeat([]byte("x"), 18*1024)
		m := Message("m1", content, T0)
		m.ContentKey = ""
		ds := []hub.Delivery{Delivery("m1", "system/a", T0), Delivery("m1", "mailbox/0101011234/AUTHORITY_POST", T0)}
		must(t, s.PutMessage(ctx, m, ds, Receipt("m1", T0)), "PutMessage")
		if ds[0].Seq <= 0 || ds[1].Seq <= 0 {
			t.Fatalf("PutMessage did not assign Seq: %d %d", ds[0].Seq, ds[1].Seq)
		}
		got, err := s.GetMessage(ctx, "m1")
		must(t, err, "GetMessage")
		sameJSON(t, got, m, "stored message")
		if !bytes.Equal(got.Content, content) {
			t.Fatalf("inline content: %d bytes back, want %d", len(got.Content), len(content))
		}
		dels, err := s.DeliveriesOf(ctx, "m1")
		must(t, err, "DeliveriesOf")
		sameStrings(t, sorted(ids(dels, func(d hub.Delivery) string { return d.ID })), sorted([]string{ds[0].ID, ds[1].ID}), "deliveries")
		d, err := s.GetDelivery(ctx, ds[0].ID)
		must(t, err, "GetDelivery")
		if d.Seq != ds[0].Seq || d.State != hub.DeliveryReady || d.Queue != "system/a" {
			t.Fatalf("stored delivery %+v", d)
		}
		r, err := s.ReceiptFor(ctx, "sender-sys", "m1")
		must(t, err, "ReceiptFor")
		sameJSON(t, r, Receipt("m1", T0), "receipt")
		if r.SystemID != "sender-sys" {
			t.Fatalf("receipt SystemID %q", r.SystemID)
		}
	}},
	{"PutMessage with a taken UUID is Conflict and changes nothing", func(t *testing.T, s hub.Store) {
		putMsg(t, s, "m1", T0, "system/a")
		m := Message("m1", []byte("other bytes"), T0.Add(time.Second))
		d := Delivery("m1", "system/b", T0)
		r := Receipt("m1", T0)
		r.TransmissionID = "tx-second"
		wantCode(t, s.PutMessage(ctx, m, []hub.Delivery{d}, r), hub.Conflict, "second PutMessage")
		got, err := s.GetMessage(ctx, "m1")
		must(t, err, "GetMessage")
		if got.SHA256 != sha([]byte("content of m1")) || string(got.Content) != "content of m1" {
			t.Fatalf("message changed by refused PutMessage: sha %s content %q", got.SHA256, got.Content)
		}
		_, err = s.GetDelivery(ctx, d.ID)
		wantCode(t, err, hub.NotFound, "delivery of refused PutMessage")
		_, err = s.GetReceipt(ctx, "sender-sys", "tx-second")
		wantCode(t, err, hub.NotFound, "receipt of refused PutMessage")
		n, err := s.CountQueue(ctx, "system/b")
		must(t, err, "CountQueue")
		if n != 0 {
			t.Fatalf("queue of refused delivery counts %d", n)
		}
	}},
	{"PutMessage assigns increasing Seq within a queue", func(t *testing.T, s hub.Store) {
		var last int64
		for i := 0; i < 5; i++ {
			ds := putMsg(t, s, "m"+n(i), T0, "system/a", "print")
			if ds[0].Seq <= last {
				t.Fatalf("Seq %d after %d", ds[0].Seq, last)
			}
			last = ds[0].Seq
		}
	}},
	{"GetMessage of an absent UUID is NotFound; SetMessageState needs the message", func(t *testing.T, s hub.Store) {
		_, err := s.GetMessage(ctx, "nope")
		wantCode(t, err, hub.NotFound, "GetMessage")
		wantCode(t, s.SetMessageState(ctx, "nope", hub.MessageRecalled), hub.NotFound, "SetMessageState")
		putMsg(t, s, "m1", T0, "system/a")
		must(t, s.SetMessageState(ctx, "m1", hub.MessageRecalled), "SetMessageState")
		got, _ := s.GetMessage(ctx, "m1")
		if got.State != hub.MessageRecalled {
			t.Fatalf("state %q", got.State)
		}
	}},
	{"DeleteMessage removes the record and not the deliveries; absent is not an error", func(t *testing.T, s hub.Store) {
		ds := putMsg(t, s, "m1", T0, "system/a")
		must(t, s.DeleteMessage(ctx, "m1"), "DeleteMessage")
		_, err := s.GetMessage(ctx, "m1")
		wantCode(t, err, hub.NotFound, "GetMessage after delete")
		_, err = s.GetDelivery(ctx, ds[0].ID)
		must(t, err, "GetDelivery after DeleteMessage")
		must(t, s.DeleteMessage(ctx, "m1"), "DeleteMessage of absent")
		list, err := s.ListMessagesBySender(ctx, "12345678", "", 10)
		must(t, err, "ListMessagesBySender")
		if len(list) != 0 {
			t.Fatalf("deleted message still listed")
		}
	}},
	{"ListMessagesBySender pages by descending Received", func(t *testing.T, s hub.Store) {
		for i := 0; i < 7; i++ {
			putMsg(t, s, "m"+n(i), T0.Add(time.Duration(i)*time.Minute), "system/a")
		}
		other := Message("x1", []byte("x"), T0)
		other.SenderCVR = "99999999"
		must(t, s.PutMessage(ctx, other, nil, Receipt("x1", T0)), "PutMessage of another sender")
		var got []string
		after := ""
		for page := 0; page < 5; page++ {
			list, err := s.ListMessagesBySender(ctx, "12345678", after, 3)
			must(t, err, "ListMessagesBySender")
			if len(list) == 0 {
				break
			}
			if len(list) > 3 {
				t.Fatalf("page of %d, limit 3", len(list))
			}
			got = append(got, ids(list, func(m hub.Message) string { return m.UUID })...)
			after = list[len(list)-1].UUID
		}
		sameStrings(t, got, []string{"m0006", "m0005", "m0004", "m0003", "m0002", "m0001", "m0000"}, "sent archive")
	}},
	{"Receipts are scoped to their sender system", func(t *testing.T, s hub.Store) {
		putMsg(t, s, "m1", T0, "system/a")
		_, err := s.GetReceipt(ctx, "other-sys", "tx-m1")
		wantCode(t, err, hub.NotFound, "GetReceipt by another system")
		_, err = s.ReceiptFor(ctx, "other-sys", "m1")
		wantCode(t, err, hub.NotFound, "ReceiptFor by another system")
		list, err := s.ListReceipts(ctx, "other-sys", "", 10)
		must(t, err, "ListReceipts")
		if len(list) != 0 {
			t.Fatalf("another system lists %d receipts", len(list))
		}
		must(t, s.DeleteReceipt(ctx, "other-sys", "tx-m1"), "DeleteReceipt by another system")
		_, err = s.GetReceipt(ctx, "sender-sys", "tx-m1")
		must(t, err, "GetReceipt after another system's delete")
		must(t, s.DeleteReceipt(ctx, "sender-sys", "tx-m1"), "DeleteReceipt")
		_, err = s.GetReceipt(ctx, "sender-sys", "tx-m1")
		wantCode(t, err, hub.NotFound, "GetReceipt after delete")
		must(t, s.DeleteReceipt(ctx, "sender-sys", "tx-m1"), "DeleteReceipt of absent")
	}},
	{"A receipt whose status changes is listed, got by transmission and by message, and deleted, with or without a stored message", func(t *testing.T, s hub.Store) {
		// The sender's receipt is written RECEIVED at accept and COMPLETED
		// at the ack; an INVALID receipt of a refused archive entry has no
		// stored message, or no message UUID at all.
		for _, c := range []struct{ name, uuid string }{{"stored", "m1"}, {"absent", "never-stored"}, {"none", ""}} {
			t.Run(c.name, func(t *testing.T) {
				sys := "sender-" + c.name
				r := hub.Receipt{TransmissionID: "tx-" + c.name, SystemID: sys, MessageUUID: c.uuid, MessageID: "mid-" + c.name,
					Time: T0.Add(time.Second), Status: hub.ReceiptReceived}
				if c.uuid == "m1" {
					must(t, s.PutMessage(ctx, Message("m1", []byte("content of m1"), T0), []hub.Delivery{Delivery("m1", "system/a", T0)}, r), "PutMessage")
				} else {
					must(t, s.PutReceipt(ctx, r), "PutReceipt")
				}
				// A neighbour of the same system, listed between the two
				// times of r.
				nb := hub.Receipt{TransmissionID: "tx-" + c.name + "-nb", SystemID: sys, MessageUUID: "nb-" + c.name,
					Time: T0.Add(2 * time.Second), Status: hub.ReceiptReceived}
				must(t, s.PutReceipt(ctx, nb), "PutReceipt of the neighbour")
				list, err := s.ListReceipts(ctx, sys, "", 10)
				must(t, err, "ListReceipts")
				sameStrings(t, ids(list, func(r hub.Receipt) string { return r.TransmissionID }), []string{r.TransmissionID, nb.TransmissionID}, "receipts before the change")

				done := r
				done.Time, done.Status = T0.Add(3*time.Second), hub.ReceiptCompleted
				must(t, s.PutReceipt(ctx, done), "PutReceipt COMPLETED")
				got, err := s.GetReceipt(ctx, sys, r.TransmissionID)
				must(t, err, "GetReceipt")
				sameJSON(t, got, done, "receipt by transmission")
				if c.uuid != "" {
					got, err = s.ReceiptFor(ctx, sys, c.uuid)
					must(t, err, "ReceiptFor")
					sameJSON(t, got, done, "receipt by message")
				}
				var paged []string
				after := ""
				for page := 0; page < 4; page++ {
					list, err := s.ListReceipts(ctx, sys, after, 1)
					must(t, err, "ListReceipts")
					if len(list) == 0 {
						break
					}
					if len(list) > 1 {
						t.Fatalf("page of %d, limit 1", len(list))
					}
					if list[0].TransmissionID == r.TransmissionID {
						sameJSON(t, list[0], done, "listed receipt")
					}
					paged = append(paged, list[0].TransmissionID)
					after = list[0].TransmissionID
				}
				sameStrings(t, paged, []string{nb.TransmissionID, r.TransmissionID}, "receipts after the change, in time order")

				must(t, s.DeleteReceipt(ctx, sys, r.TransmissionID), "DeleteReceipt")
				_, err = s.GetReceipt(ctx, sys, r.TransmissionID)
				wantCode(t, err, hub.NotFound, "GetReceipt after delete")
				if c.uuid != "" {
					_, err = s.ReceiptFor(ctx, sys, c.uuid)
					wantCode(t, err, hub.NotFound, "ReceiptFor after delete")
				}
				list, err = s.ListReceipts(ctx, sys, "", 10)
				must(t, err, "ListReceipts after delete")
				sameStrings(t, ids(list, func(r hub.Receipt) string { return r.TransmissionID }), []string{nb.TransmissionID}, "receipts after delete")
				got, err = s.ReceiptFor(ctx, sys, nb.MessageUUID)
				must(t, err, "ReceiptFor of the neighbour")
				sameJSON(t, got, nb, "the neighbour")
				if c.uuid == "m1" {
					m, err := s.GetMessage(ctx, "m1")
					must(t, err, "GetMessage after its receipt's delete")
					if string(m.Content) != "content of m1" {
						t.Fatalf("message content %q", m.Content)
					}
				}
			})
		}
	}},
	{"ListReceipts pages in time order and PutReceipt replaces by TransmissionID", func(t *testing.T, s hub.Store) {
		for i := 4; i >= 0; i-- {
			r := Receipt("m"+n(i), T0.Add(time.Duration(i)*time.Second))
			must(t, s.PutReceipt(ctx, r), "PutReceipt")
		}
		r := Receipt("m0000", T0.Add(10*time.Second))
		r.Status = hub.ReceiptCompleted
		must(t, s.PutReceipt(ctx, r), "replace")
		var got []string
		after := ""
		for page := 0; page < 5; page++ {
			list, err := s.ListReceipts(ctx, "sender-sys", after, 2)
			must(t, err, "ListReceipts")
			if len(list) == 0 {
				break
			}
			got = append(got, ids(list, func(r hub.Receipt) string { return r.TransmissionID })...)
			after = list[len(list)-1].TransmissionID
		}
		sameStrings(t, got, []string{"tx-m0001", "tx-m0002", "tx-m0003", "tx-m0004", "tx-m0000"}, "receipts in time order")
		back, err := s.GetReceipt(ctx, "sender-sys", "tx-m0000")
		must(t, err, "GetReceipt")
		if back.Status != hub.ReceiptCompleted {
			t.Fatalf("replaced receipt status %q", back.Status)
		}
	}},
}
