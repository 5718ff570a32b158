package mongo_test

import (
	"context"
	"testing"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/storagetest"
)

// TestResubmissionAfterACrashBetweenPutMessageSteps: an instance that died
// between PutMessage's two steps (its sender got no answer) leaves pending
// deliveries under the UUID. The sender's resubmission, through another
// instance at once, stores the message (it used to get Conflict for the
// whole grace period, the letter accepted by no one, as the three-instance
// test in cmd/posthub found), and the dead PutMessage's commit, should it
// still arrive, can no longer land. A commit that arrived before the
// resubmission wins, and the resubmission gets Conflict.
func TestResubmissionAfterACrashBetweenPutMessageSteps(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	put := func(id, queue, transmission string) (hub.Message, []hub.Delivery, hub.Receipt) {
		m := storagetest.Message(id, []byte("same bytes"), storagetest.T0)
		r := storagetest.Receipt(id, storagetest.T0)
		r.TransmissionID = transmission
		return m, []hub.Delivery{storagetest.Delivery(id, queue, storagetest.T0)}, r
	}

	t.Run("the dead PutMessage never committed", func(t *testing.T) {
		m, ds, r := put("m-cut", "system/q", "cut-first-try")
		tx, err := s.PutMessageFirstStep(ctx, m, ds, r)
		if err != nil {
			t.Fatal(err)
		}
		m2, ds2, r2 := put("m-cut", "system/q", "cut-resubmission")
		if err := s.PutMessage(ctx, m2, ds2, r2); err != nil {
			t.Fatalf("resubmission after a cut-off PutMessage: %v", err)
		}
		if err := s.CommitFirstStep(ctx, m, tx); !hub.Is(err, hub.Conflict) {
			t.Fatalf("the cut-off PutMessage's late commit: %v, want Conflict", err)
		}
		if _, err := s.GetMessage(ctx, "m-cut"); err != nil {
			t.Fatal(err)
		}
		got, err := s.DeliveriesOf(ctx, "m-cut")
		if err != nil || len(got) != 1 || got[0].Seq != ds2[0].Seq {
			t.Fatalf("deliveries %+v, %v; want the resubmission's one", got, err)
		}
		if n, err := s.CountQueue(ctx, "system/q"); err != nil || n != 1 {
			t.Fatalf("queue holds %d (%v), want 1", n, err)
		}
		if _, err := s.GetReceipt(ctx, r.SystemID, "cut-first-try"); !hub.Is(err, hub.NotFound) {
			t.Fatalf("the cut-off PutMessage's receipt: %v, want NotFound", err)
		}
		if _, err := s.GetReceipt(ctx, r2.SystemID, "cut-resubmission"); err != nil {
			t.Fatalf("the resubmission's receipt: %v", err)
		}
	})

	t.Run("the first commit landed before the resubmission", func(t *testing.T) {
		m, ds, r := put("m-late", "system/q2", "first-try")
		tx, err := s.PutMessageFirstStep(ctx, m, ds, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CommitFirstStep(ctx, m, tx); err != nil {
			t.Fatal(err)
		}
		m2, ds2, r2 := put("m-late", "system/q2", "resubmission")
		if err := s.PutMessage(ctx, m2, ds2, r2); !hub.Is(err, hub.Conflict) {
			t.Fatalf("resubmission of a committed message: %v, want Conflict", err)
		}
		got, err := s.DeliveriesOf(ctx, "m-late")
		if err != nil || len(got) != 1 || got[0].Seq != ds[0].Seq {
			t.Fatalf("deliveries %+v, %v; want the first one", got, err)
		}
	})
}
