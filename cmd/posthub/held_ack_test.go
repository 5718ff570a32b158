package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
)

// TestAHeldLetterCannotBeAcknowledgedBeforeItsDate: a letter held by
// doNotDeliverUntilDate is not fetchable (404), yet its receiver system's
// DELETE /memos/{id} answered 204 — the delivery removed, the sender's
// receipt COMPLETED before the date, and the sender's recall then refused
// as too late — and an INVALID business receipt parked it. Both are 404
// now and change nothing; the recall succeeds.
func TestAHeldLetterCannotBeAcknowledgedBeforeItsDate(t *testing.T) {
	h := startHub(t)
	w := h.setupWorld()
	_, recv := h.system(orgB, map[string]any{"name": "B recv", "role": "RECIPIENT"})
	u, b := letterXML(t, memo.Letter{To: orgB, DoNotDeliverUntil: time.Now().AddDate(0, 0, 5)})
	h.mustStatus(h.send(w.sender, u, b, ""), 201)
	h.mustStatus(h.do("GET", "/apis/v1/memos/"+u, recv, "", nil), 404)
	h.mustStatus(h.do("DELETE", "/apis/v1/memos/"+u, recv, "", nil), 404)
	h.mustStatus(h.do("POST", "/apis/v1/memos/"+u+"/receipt", recv, "application/json",
		bytes.NewReader([]byte(`{"receiptStatus":"INVALID","errorCode":"x"}`))), 404)
	h.mustStatus(h.do("POST", "/apis/v1/memos/"+u+"/receipt", recv, "application/json",
		bytes.NewReader([]byte(`{"receiptStatus":"COMPLETED"}`))), 404)
	h.mustStatus(h.do("POST", "/apis/v1/memos/"+u+"/recall", w.sender, "", nil), 200)
	store := h.openStore()
	m, err := store.GetMessage(context.Background(), u)
	if err != nil || m.State != hub.MessageRecalled {
		t.Fatalf("after the recall: %s %v", m.State, err)
	}
	r, err := hub.SenderReceiptOf(context.Background(), store, m)
	if err != nil || r.Status != hub.ReceiptReceived {
		t.Errorf("the sender's receipt: %+v %v, want RECEIVED", r, err)
	}
}
