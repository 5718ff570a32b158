package hub_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/bolt"
)

// tooLong fails every commit the way storage/mongo's putMessage does when
// it took more than half the grace period: it has undone its documents,
// nothing is stored, and it answers Unavailable.
type tooLong struct{ *bolt.Store }

func (tooLong) PutMessageWith(ctx context.Context, m hub.Message, ds []hub.Delivery, r hub.Receipt, evs []hub.Event, cs []hub.Counter) error {
	return hub.NotStored(hub.Errorf(hub.Unavailable, "storing message %s took too long", m.UUID))
}

// TestFailedRetriesThatStoredNothingLeaveNoBlobs: a sender retries one
// letter while the store answers Unavailable having stored nothing (it
// says so: hub.NotStored). With per-submission content keys each retry
// left a blob of its own that nothing named and nothing removed (found by
// a review of the change); a failure the store marks NothingStored now
// deletes the submission's blobs.
func TestFailedRetriesThatStoredNothingLeaveNoBlobs(t *testing.T) {
	w := newEnvelopeWorld(t, 0)
	w.in.Store = tooLong{w.store}
	if err := w.store.PutContacts(context.Background(), []hub.Contact{{ID: "0101701234", Status: hub.Registered}}); err != nil {
		t.Fatal(err)
	}
	s := reviewLetter(w.sys, "0b5c9c1e-6a53-4a4e-9d43-00000000beef")
	const retries = 5
	for range retries {
		if _, _, err := w.in.Submit(context.Background(), s); !hub.Is(err, hub.Unavailable) {
			t.Fatalf("submit: %v", err)
		}
	}
	n := 0
	if err := w.blobs.List(context.Background(), "msg/", func(bi hub.BlobInfo) error { n++; t.Log(bi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.GetMessage(context.Background(), s.Letter.UUID); !hub.Is(err, hub.NotFound) {
		t.Fatalf("message stored: %v", err)
	}
	if n > 0 {
		t.Errorf("%s", fmt.Sprintf("%d failed submissions of one letter, nothing stored, %d content blobs left that nothing references", retries, n))
	}
}
