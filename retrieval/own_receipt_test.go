package retrieval_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/retrieval"
)

// putWithRefusal stores a message with its own receipt and one delivery
// to sys, and, newer, the INVALID receipt of a refused submission of its
// UUID with other bytes; it returns the message and the two receipts.
func (e *env) putWithRefusal(sys hub.System) (m hub.Message, own, refusal hub.Receipt) {
	e.t.Helper()
	id, body := letter(e.t, "1.1", authority)
	sum := sha256.Sum256(body)
	now := e.clock.Now()
	m = hub.Message{UUID: id, SenderCVR: senderOrg, SenderSystemID: e.sender.ID, RecipientID: authority, RecipientType: "CVR",
		MessageType: "DIGITALPOST", MemoVersion: "1.1", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(body)),
		Received: now, State: hub.MessageActive, Content: body, ReceiptID: "own-" + id}
	d := hub.Delivery{ID: hub.DeliveryID(id, hub.SystemQueue(sys.ID)), MessageUUID: id, Channel: hub.ChannelSystem,
		Queue: hub.SystemQueue(sys.ID), OrgCVR: authority, SystemID: sys.ID, Created: now, AvailableAt: now,
		State: hub.DeliveryReady, Size: m.Size}
	own = hub.Receipt{TransmissionID: m.ReceiptID, SystemID: e.sender.ID, MessageUUID: id, Time: now, Status: hub.ReceiptReceived}
	if err := e.store.PutMessage(ctx, m, []hub.Delivery{d}, own); err != nil {
		e.t.Fatal(err)
	}
	refusal = hub.Receipt{TransmissionID: "refused-" + id, SystemID: e.sender.ID, MessageUUID: id, Time: now.Add(time.Second),
		Status: hub.ReceiptInvalid, ErrorCode: "message.uuid.duplicate", ErrorMessage: "messageUUID must be unique"}
	if err := e.store.PutReceipt(ctx, refusal); err != nil {
		e.t.Fatal(err)
	}
	e.clock.Add(time.Minute)
	return m, own, refusal
}

// wantReceipt checks the sender system's receipt id has status st and
// error code.
func (e *env) wantReceipt(what, id string, st hub.ReceiptStatus, code string) {
	e.t.Helper()
	r, err := e.store.GetReceipt(ctx, e.sender.ID, id)
	if err != nil || r.Status != st || r.ErrorCode != code {
		e.t.Fatalf("%s: receipt %s is %+v (%v), want %s %q", what, id, r, err, st, code)
	}
}

// fetchAndRefuse fetches message uuid as receiver system sys, reads it,
// and answers it with an INVALID business receipt ("bad.case") under the
// fetch's lease.
func (e *env) fetchAndRefuse(sys hub.System, uuid string) {
	e.t.Helper()
	f, err := e.svc.Fetch(ctx, sys, uuid)
	if err != nil {
		e.t.Fatal(err)
	}
	read(e.t, f)
	if _, err := e.svc.Receipt(ctx, sys, uuid, retrieval.BusinessReceipt{Status: hub.ReceiptInvalid, ErrorCode: "bad.case"}, f.Lease.Token()); err != nil {
		e.t.Fatal(err)
	}
}

// A receiver system's business receipts change the status of the
// message's own receipt (hub.Message.ReceiptID), not that of a newer
// receipt naming its UUID: the INVALID receipt of a later submission of
// the UUID with other bytes, which the sender holds beside it.
func TestBusinessReceiptsChangeTheMessagesOwnReceipt(t *testing.T) {
	e := newEnv(t, retrieval.Config{})
	sys := e.system(authority, hub.SystemSpec{})
	m, own, refusal := e.putWithRefusal(sys)
	e.fetchAndRefuse(sys, m.UUID)
	e.wantReceipt("INVALID business receipt: the message's", own.TransmissionID, hub.ReceiptInvalid, "bad.case")
	e.wantReceipt("INVALID business receipt: the refusal", refusal.TransmissionID, hub.ReceiptInvalid, refusal.ErrorCode)
	if _, err := e.svc.Receipt(ctx, sys, m.UUID, retrieval.BusinessReceipt{Status: hub.ReceiptCompleted}, ""); err != nil {
		t.Fatal(err)
	}
	e.wantReceipt("COMPLETED business receipt: the message's", own.TransmissionID, hub.ReceiptCompleted, "")
	e.wantReceipt("COMPLETED business receipt: the refusal", refusal.TransmissionID, hub.ReceiptInvalid, refusal.ErrorCode)
}

// Once the sender has consumed the message's receipt, a business receipt
// is told by a receipt issued anew (hub.ReissuedReceiptID), which the next
// change updates; the refusal beside it is never taken for the message's.
func TestBusinessReceiptsAfterTheSenderConsumedTheReceipt(t *testing.T) {
	e := newEnv(t, retrieval.Config{})
	sys := e.system(authority, hub.SystemSpec{})
	m, own, refusal := e.putWithRefusal(sys)
	if err := e.store.DeleteReceipt(ctx, e.sender.ID, own.TransmissionID); err != nil {
		t.Fatal(err)
	}
	e.fetchAndRefuse(sys, m.UUID)
	anew := hub.ReissuedReceiptID(own.TransmissionID, hub.ReceiptInvalid)
	e.wantReceipt("INVALID business receipt: issued anew", anew, hub.ReceiptInvalid, "bad.case")
	e.wantReceipt("INVALID business receipt: the refusal", refusal.TransmissionID, hub.ReceiptInvalid, refusal.ErrorCode)
	if _, err := e.svc.Receipt(ctx, sys, m.UUID, retrieval.BusinessReceipt{Status: hub.ReceiptCompleted}, ""); err != nil {
		t.Fatal(err)
	}
	e.wantReceipt("COMPLETED business receipt: issued anew", anew, hub.ReceiptCompleted, "")
	e.wantReceipt("COMPLETED business receipt: the refusal", refusal.TransmissionID, hub.ReceiptInvalid, refusal.ErrorCode)
}
