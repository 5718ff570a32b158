package hub_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/posthub/posthub/hub"
)

// SF1601-door findings of a review (each test failed before its fix).

// TestAResubmissionAfterTheReceiptWasReadSaysWhatTheFirstSaid: once the
// sender had read (and so deleted) its receipt, an identical resubmission
// was answered with a receipt made up anew: RECEIVED, under a new id each
// time, without the transaction id — for a letter that was never delivered
// (NOT_ALLOWED), which the SF1601 door then answered 201 instead of 400. It
// now says what the first receipt said, under its id.
func TestAResubmissionAfterTheReceiptWasReadSaysWhatTheFirstSaid(t *testing.T) {
	w := newEnvelopeWorld(t, 1<<20)
	ctx := context.Background()
	const exempt = "0202702345" // digital only: not delivered
	first, _ := w.submit(t, ctx, exempt, hub.ModeDigitalOnly, hub.Envelope{TransactionID: "tx-1"})
	if first.Status != hub.ReceiptNotAllowed || first.ErrorCode == "" {
		t.Fatalf("setup: %+v", first)
	}
	if err := w.store.DeleteReceipt(ctx, w.sys.ID, first.TransmissionID); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		again, _ := w.submit(t, ctx, exempt, hub.ModeDigitalOnly, hub.Envelope{TransactionID: "tx-2"})
		if again.Status != first.Status || again.ErrorCode != first.ErrorCode || again.ErrorMessage != first.ErrorMessage ||
			again.TransmissionID != first.TransmissionID || again.TransactionID != "tx-1" {
			t.Fatalf("the resubmission's receipt %+v, want the first's %+v", again, first)
		}
	}
}

// TestAResubmissionWithAnotherModeIsAConflict: a resubmission is told the
// first submission's outcome; with another delivery mode it was told that
// outcome as if for its own mode (a letter refused for "digital only",
// resent with "automatic", was refused again naming "automatic"), and the
// letter could never go out under its UUID. It is a Conflict on the mode.
func TestAResubmissionWithAnotherModeIsAConflict(t *testing.T) {
	w := newEnvelopeWorld(t, 1<<20)
	ctx := context.Background()
	const exempt = "0202702345"
	first, uuid := w.submit(t, ctx, exempt, hub.ModeDigitalOnly, hub.Envelope{})
	body := []byte("<memo:Message>" + uuid + "</memo:Message>")
	sum := sha256.Sum256(body)
	_, _, err := w.in.Submit(ctx, hub.Submission{System: w.sys, Body: body, Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]),
		Mode: hub.ModeAutomatic, Letter: hub.Letter{UUID: uuid, MessageType: "DIGITALPOST", SenderID: "11111111", RecipientID: exempt,
			RecipientType: "CPR", Size: int64(len(body))}})
	var he *hub.Error
	if !errors.As(err, &he) || he.Code != hub.Conflict || len(he.Fields) != 1 || he.Fields[0].Field != "mode" || he.Fields[0].RejectedValue != string(hub.ModeAutomatic) {
		t.Fatalf("a resubmission with another mode: %v, want Conflict on the mode", err)
	}
	// The same mode is still answered with the first receipt.
	if again, _ := w.submit(t, ctx, exempt, hub.ModeDigitalOnly, hub.Envelope{}); again.TransmissionID != first.TransmissionID {
		t.Fatalf("the same resubmission: %+v, want %+v", again, first)
	}
}
