package retrieval_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/retrieval"
)

// A receiver system's business receipts change the status of the
// message's own receipt (hub.Message.ReceiptID), not that of a newer
// receipt naming its UUID: the INVALID receipt of a later submission of
// the UUID with other bytes, which the sender holds beside it.
func TestBusinessReceiptsChangeTheMessagesOwnReceipt(t *testing.T) {
	e := newEnv(t, retrieval.Config{})
	sys := e.system(authority, hub.SystemSpec{})
	id, body := letter(t, "1.1", authority)
	sum := sha256.Sum256(body)
	now := e.clock.Now()
	m := hub.Message{UUID: id, SenderCVR: senderOrg, SenderSystemID: e.sender.ID, RecipientID: authority, RecipientType: "CVR",
		MessageType: "DIGITALPOST", MemoVersion: "1.1", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(body)),
		Received: now, State: hub.MessageActive, Content: body, ReceiptID: "own-" + id}
	d := hub.Delivery{ID: hub.DeliveryID(id, hub.SystemQueue(sys.ID)), MessageUUID: id, Channel: hub.ChannelSystem,
		Queue: hub.SystemQueue(sys.ID), OrgCVR: authority, SystemID: sys.ID, Created: now, AvailableAt: now,
		State: hub.DeliveryReady, Size: m.Size}
	own := hub.Receipt{TransmissionID: m.ReceiptID, SystemID: e.sender.ID, MessageUUID: id, Time: now, Status: hub.ReceiptReceived}
	if err := e.store.PutMessage(ctx, m, []hub.Delivery{d}, own); err != nil {
		t.Fatal(err)
	}
	refusal := hub.Receipt{TransmissionID: "refused-" + id, SystemID: e.sender.ID, MessageUUID: id, Time: now.Add(time.Second),
		Status: hub.ReceiptInvalid, ErrorCode: "message.uuid.duplicate", ErrorMessage: "messageUUID must be unique"}
	if err := e.store.PutReceipt(ctx, refusal); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Minute)
	check := func(what string, st hub.ReceiptStatus, code string) {
		t.Helper()
		r, err := e.store.GetReceipt(ctx, e.sender.ID, own.TransmissionID)
		if err != nil || r.Status != st || r.ErrorCode != code {
			t.Fatalf("%s: the message's receipt %+v (%v), want %s %q", what, r, err, st, code)
		}
		r, err = e.store.GetReceipt(ctx, e.sender.ID, refusal.TransmissionID)
		if err != nil || r.Status != hub.ReceiptInvalid || r.ErrorCode != refusal.ErrorCode || !r.Time.Equal(refusal.Time) {
			t.Fatalf("%s: the refusal became %+v (%v)", what, r, err)
		}
	}

	f, err := e.svc.Fetch(ctx, sys, id)
	if err != nil {
		t.Fatal(err)
	}
	read(t, f)
	if _, err := e.svc.Receipt(ctx, sys, id, retrieval.BusinessReceipt{Status: hub.ReceiptInvalid, ErrorCode: "bad.case"}, f.Lease.Token()); err != nil {
		t.Fatal(err)
	}
	check("INVALID business receipt", hub.ReceiptInvalid, "bad.case")
	if _, err := e.svc.Receipt(ctx, sys, id, retrieval.BusinessReceipt{Status: hub.ReceiptCompleted}, ""); err != nil {
		t.Fatal(err)
	}
	check("COMPLETED business receipt", hub.ReceiptCompleted, "")
}
