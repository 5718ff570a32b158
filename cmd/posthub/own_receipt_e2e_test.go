package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/retrieval/client"
)

// TestResubmissionAnswersTheMessagesOwnReceipt: a system holds two
// receipts naming one messageUUID, the RECEIVED receipt of its accepted
// letter and, newer, the INVALID receipt of a mass-send entry of that UUID
// with other bytes. Resubmitting the letter unchanged answers the letter's
// own receipt, not the refusal; and the receiver system's fetch and
// acknowledgement complete the letter's receipt and leave the refusal as
// it was. Also once the sender has consumed the letter's receipt: then
// the ack issues a receipt anew, and still leaves the refusal alone. On
// the embedded default and on MongoDB (FerretDB).
func TestResubmissionAnswersTheMessagesOwnReceipt(t *testing.T) {
	for _, backend := range []string{"bolt", "mongo"} {
		t.Run(backend, func(t *testing.T) {
			var extra []string
			if backend == "mongo" {
				extra = []string{"-metadata", "mongo", "-mongo-uri", testservers.FerretDB(t), "-mongo-db", testservers.DatabaseName(t)}
			}
			h := startHub(t, extra...)
			for _, o := range []map[string]any{
				{"cvr": orgA, "name": "Kommune A", "kind": "AUTHORITY", "setup": "MAILBOX_ONLY"},
				{"cvr": company, "name": "Firma ApS", "kind": "COMPANY", "setup": "SYSTEM_RETRIEVAL"},
			} {
				h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/", o), 201)
			}
			_, sender := h.system(orgA, map[string]any{"name": "A sender", "role": "SENDER"})
			_, receiver := h.system(company, map[string]any{"name": "Firma ERP", "role": "RECIPIENT"})
			receipt := func(id string) hub.Receipt {
				t.Helper()
				var r hub.Receipt
				h.mustStatus(h.do("GET", "/apis/v1/receipts/"+id+"?delete=false", sender, "", nil), 200).json(t, &r)
				return r
			}

			// 1. The letter is accepted: receipt A.
			uuid, body := letterXML(t, memo.Letter{To: company})
			var a hub.Receipt
			h.mustStatus(h.send(sender, uuid, body, ""), 201).json(t, &a)
			if a.Status != hub.ReceiptReceived || a.MessageUUID != uuid {
				t.Fatalf("first submission answered %+v", a)
			}

			// 2. A mass send whose entry of that UUID has other bytes: the
			// entry is refused with receipt B, stamped after A.
			_, other := letterXML(t, memo.Letter{To: company, UUID: uuid, Label: "Et andet brev"})
			var bulk struct {
				Receipts []hub.Receipt `json:"receipts"`
				Rejected int           `json:"rejected"`
			}
			h.mustStatus(h.do("POST", "/apis/v1/memos/", sender, "application/x-lzma",
				bytes.NewReader(lzmaTar(t, map[string][]byte{uuid + ".xml": other}))), 201).json(t, &bulk)
			if bulk.Rejected != 1 || len(bulk.Receipts) != 1 {
				t.Fatalf("mass send answered %+v", bulk)
			}
			b := bulk.Receipts[0]
			if b.Status != hub.ReceiptInvalid || b.ErrorCode != "message.uuid.duplicate" || b.MessageUUID != uuid || b.TransmissionID == a.TransmissionID {
				t.Fatalf("refused entry's receipt %+v", b)
			}

			// 3. The identical letter again: A, not the refusal.
			var again hub.Receipt
			r := h.mustStatus(h.send(sender, uuid, body, ""), 201)
			r.json(t, &again)
			if again.TransmissionID != a.TransmissionID || again.Status != hub.ReceiptReceived {
				t.Fatalf("resubmission answered %s %s, want the letter's receipt %s RECEIVED (the refusal is %s)",
					again.TransmissionID, again.Status, a.TransmissionID, b.TransmissionID)
			}

			// 4. The receiver system fetches and acknowledges: A becomes
			// COMPLETED and B stays the refusal it was.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c := client.New(h.base, receiver, nil)
			m, err := c.Next(ctx, 10*time.Second)
			if err != nil || m == nil {
				t.Fatalf("next: %v %v", m, err)
			}
			m.Close()
			if m.UUID != uuid {
				t.Fatalf("fetched %s, want %s", m.UUID, uuid)
			}
			if err := c.Ack(ctx, uuid); err != nil {
				t.Fatalf("ack: %v", err)
			}
			if got := receipt(a.TransmissionID); got.Status != hub.ReceiptCompleted {
				t.Errorf("the letter's receipt after the ack: %+v, want COMPLETED", got)
			}
			if got := receipt(b.TransmissionID); got.Status != hub.ReceiptInvalid || got.ErrorCode != "message.uuid.duplicate" {
				t.Errorf("the refusal after the ack: %+v, want it INVALID as it was", got)
			}
			// And a resubmission now answers the completed receipt.
			h.mustStatus(h.send(sender, uuid, body, ""), 201).json(t, &again)
			if again.TransmissionID != a.TransmissionID || again.Status != hub.ReceiptCompleted {
				t.Errorf("resubmission after the ack answered %s %s, want %s COMPLETED", again.TransmissionID, again.Status, a.TransmissionID)
			}

			// The same with a sender that reads its receipts as NgDP's
			// do, deleting each: the refusal is still not the letter's.
			uuid, body = letterXML(t, memo.Letter{To: company})
			h.mustStatus(h.send(sender, uuid, body, ""), 201).json(t, &a)
			h.mustStatus(h.do("GET", "/apis/v1/receipts/"+a.TransmissionID, sender, "", nil), 200)
			h.mustStatus(h.do("GET", "/apis/v1/receipts/"+a.TransmissionID+"?delete=false", sender, "", nil), 404)
			_, other = letterXML(t, memo.Letter{To: company, UUID: uuid, Label: "Et andet brev"})
			h.mustStatus(h.do("POST", "/apis/v1/memos/", sender, "application/x-lzma",
				bytes.NewReader(lzmaTar(t, map[string][]byte{uuid + ".xml": other}))), 201).json(t, &bulk)
			if len(bulk.Receipts) != 1 || bulk.Receipts[0].ErrorCode != "message.uuid.duplicate" {
				t.Fatalf("mass send answered %+v", bulk)
			}
			b = bulk.Receipts[0]
			h.mustStatus(h.send(sender, uuid, body, ""), 201).json(t, &again)
			if again.TransmissionID == b.TransmissionID || again.Status != hub.ReceiptReceived || again.MessageUUID != uuid {
				t.Fatalf("resubmission after the letter's receipt was consumed answered %+v, want a RECEIVED one (the refusal is %s)", again, b.TransmissionID)
			}
			if m, err = c.Next(ctx, 10*time.Second); err != nil || m == nil || m.UUID != uuid {
				t.Fatalf("next: %v %v, want %s", m, err, uuid)
			}
			m.Close()
			if err := c.Ack(ctx, uuid); err != nil {
				t.Fatalf("ack: %v", err)
			}
			if got := receipt(b.TransmissionID); got.Status != hub.ReceiptInvalid || got.ErrorCode != "message.uuid.duplicate" {
				t.Errorf("the refusal after the ack: %+v, want it INVALID as it was", got)
			}
			// The ack told the sender by a receipt issued anew, which a
			// resubmission answers.
			h.mustStatus(h.send(sender, uuid, body, ""), 201).json(t, &again)
			if again.Status != hub.ReceiptCompleted || again.TransmissionID == b.TransmissionID || again.TransmissionID == a.TransmissionID {
				t.Errorf("resubmission after the ack answered %+v, want the COMPLETED receipt issued anew", again)
			}
			if got := receipt(again.TransmissionID); got.Status != hub.ReceiptCompleted || got.MessageUUID != uuid {
				t.Errorf("the receipt issued anew: %+v", got)
			}
		})
	}
}
