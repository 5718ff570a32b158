package hub_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/bolt"
)

// takenUncommitted is a store on which another submission of every UUID
// is unfinished: PutMessageWith reports the UUID taken (Conflict) while no
// message of it is committed, as storage/mongo does for a submission that
// an identical resubmission through another instance fenced off.
type takenUncommitted struct{ *bolt.Store }

func (takenUncommitted) PutMessageWith(context.Context, hub.Message, []hub.Delivery, hub.Receipt, []hub.Event, []hub.Counter) error {
	return hub.Errorf(hub.Conflict, "message exists")
}

// TestSubmitWhileAnotherSubmissionIsUnfinished: the sender is told to
// resubmit (Unavailable), not that its UUID is taken by another message
// (Conflict, which a sender takes as final while nothing was accepted),
// and the content it uploaded stays: identical bytes share the key, which
// the submission that does commit names.
func TestSubmitWhileAnotherSubmissionIsUnfinished(t *testing.T) {
	w := newEnvelopeWorld(t, 0)
	w.in.Store = takenUncommitted{w.store}
	ctx := context.Background()
	uuid := "0b5c9c1e-6a53-4a4e-9d43-000000000001"
	body := []byte("<memo:Message>" + uuid + "</memo:Message>")
	sum := sha256.Sum256(body)
	_, _, err := w.in.Submit(ctx, hub.Submission{System: w.sys, Body: body, Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]),
		Mode: hub.ModeAutomatic, Letter: hub.Letter{UUID: uuid, MessageType: "DIGITALPOST", SenderID: "11111111",
			RecipientID: "0202702345", RecipientType: "CPR", Size: int64(len(body))}})
	if !hub.Is(err, hub.Unavailable) {
		t.Fatalf("submission while another of its UUID is unfinished: %v, want Unavailable", err)
	}
	n := 0
	if err := w.blobs.List(ctx, "", func(hub.BlobInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("the uploaded content was deleted; the submission that commits names the same key")
	}
}
