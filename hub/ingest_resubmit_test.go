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
// and the content it uploaded goes: its key is its own (ContentKey names
// the submission), the submission that does commit has stored its own.
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
	if n != 0 {
		t.Fatalf("%d blobs left; the refused submission's content is named by nothing", n)
	}
}

// eventsLost stores messages without their events, as storage/mongo's
// PutMessageWith leaves one whose instance died after the commit.
type eventsLost struct{ *bolt.Store }

func (e eventsLost) PutMessageWith(ctx context.Context, m hub.Message, ds []hub.Delivery, r hub.Receipt, _ []hub.Event, _ []hub.Counter) error {
	return e.Store.PutMessage(ctx, m, ds, r)
}

// TestResubmissionRestoresLostEvents: the sender whose answer a crash lost
// resubmits; the answer (the first receipt) appends the message's first
// events again under the IDs its acceptance gave them, so events the crash
// lost come back and events that were kept are not doubled.
func TestResubmissionRestoresLostEvents(t *testing.T) {
	for _, c := range []struct {
		name      string
		inlineMax int64
	}{{"content in the blob store (looked up before the upload)", 0}, {"inline content (found taken at commit)", 1 << 20}} {
		t.Run(c.name, func(t *testing.T) {
			w := newEnvelopeWorld(t, c.inlineMax)
			ctx := context.Background()
			if err := w.store.PutContacts(ctx, []hub.Contact{{ID: "0101701234", Status: hub.Registered}}); err != nil {
				t.Fatal(err)
			}
			received := func(uuid string) int {
				t.Helper()
				evs, err := w.store.PendingEvents(ctx, 1000)
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, ev := range evs {
					if ev.MessageUUID == uuid && ev.Tag == "MEMO_SEND_RECEIVED" {
						n++
					}
				}
				return n
			}
			// Kept: a resubmission does not double them.
			_, kept := w.submit(t, ctx, "0101701234", hub.ModeAutomatic, hub.Envelope{})
			w.submit(t, ctx, "0101701234", hub.ModeAutomatic, hub.Envelope{})
			if n := received(kept); n != 1 {
				t.Fatalf("%d MEMO_SEND_RECEIVED after a resubmission, want 1", n)
			}
			// Lost with the crash: the resubmission restores them, once.
			w.in.Store = eventsLost{w.store}
			_, lost := w.submit(t, ctx, "0101709999", hub.ModeAutomatic, hub.Envelope{})
			w.in.Store = w.store
			if n := received(lost); n != 0 {
				t.Fatalf("the stand-in for a crash kept %d events", n)
			}
			for range 2 {
				w.submit(t, ctx, "0101709999", hub.ModeAutomatic, hub.Envelope{})
				if n := received(lost); n != 1 {
					t.Fatalf("%d MEMO_SEND_RECEIVED after resubmitting a letter whose events were lost, want 1", n)
				}
			}
		})
	}
}
