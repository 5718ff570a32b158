package mongo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
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

	t.Run("the dead PutMessage commits while the resubmission is under way", func(t *testing.T) {
		// The fenced commit arrives after the resubmission removed its
		// documents and before the resubmission committed. (The fence used
		// to be removed with the documents, so this commit landed: the
		// message stored without deliveries or receipt, answered 201 to
		// its sender, and the resubmission got Conflict.)
		m, ds, r := put("m-racing", "system/q3", "racing-first-try")
		tx, err := s.PutMessageFirstStep(ctx, m, ds, r)
		if err != nil {
			t.Fatal(err)
		}
		var late error = errNotRun
		s.AfterFence(t, func(uuid string) {
			if uuid == "m-racing" && late == errNotRun {
				late = s.CommitFirstStep(ctx, m, tx)
			}
		})
		m2, ds2, r2 := put("m-racing", "system/q3", "racing-resubmission")
		if err := s.PutMessage(ctx, m2, ds2, r2); err != nil {
			t.Fatalf("resubmission: %v", err)
		}
		if !hub.Is(late, hub.Conflict) {
			t.Fatalf("the fenced PutMessage's commit during the resubmission: %v, want Conflict", late)
		}
		storedWhole(t, s, "m-racing", "system/q3", ds2[0].Seq, r2, r)
	})

	t.Run("a fencer that dies too is fenced in turn", func(t *testing.T) {
		// The first PutMessage dies between its steps; the resubmission
		// fences it and dies between its own steps; the third attempt
		// fences that one as well and stores the message. Neither dead
		// commit can land afterwards.
		m, ds, r := put("m-twice", "system/q4", "twice-first")
		tx1, err := s.PutMessageFirstStep(ctx, m, ds, r)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Fence(ctx, "m-twice", ds); err != nil || !ok {
			t.Fatalf("Fence: %v, %v", ok, err)
		}
		m2, ds2, r2 := put("m-twice", "system/q4", "twice-second")
		tx2, err := s.PutMessageFirstStep(ctx, m2, ds2, r2)
		if err != nil {
			t.Fatal(err)
		}
		m3, ds3, r3 := put("m-twice", "system/q4", "twice-third")
		if err := s.PutMessage(ctx, m3, ds3, r3); err != nil {
			t.Fatalf("third attempt: %v", err)
		}
		for i, tx := range []string{tx1, tx2} {
			if err := s.CommitFirstStep(ctx, m, tx); !hub.Is(err, hub.Conflict) {
				t.Fatalf("dead PutMessage %d's commit: %v, want Conflict", i+1, err)
			}
		}
		storedWhole(t, s, "m-twice", "system/q4", ds3[0].Seq, r3, r, r2)
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

// TestRepairRemovesAFenceNoOneCommittedOver: a fence whose fencer died
// before storing the message is removed by Repair once its latest fencing
// is older than the grace period, and not before.
func TestRepairRemovesAFenceNoOneCommittedOver(t *testing.T) {
	uri, db := testservers.FerretDB(t), testservers.DatabaseName(t)
	s := openDB(t, uri, db)
	ctx := context.Background()
	m := storagetest.Message("m-fenced", []byte("bytes"), storagetest.T0)
	ds := []hub.Delivery{storagetest.Delivery("m-fenced", "system/q", storagetest.T0)}
	tx, err := s.PutMessageFirstStep(ctx, m, ds, storagetest.Receipt("m-fenced", storagetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Fence(ctx, "m-fenced", ds); err != nil || !ok {
		t.Fatalf("Fence: %v, %v", ok, err)
	}
	fenced := time.Now()
	if err := s.Repair(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.HasFence(ctx, tx); err != nil || !ok {
		t.Fatalf("fence within the grace period: %v, %v; want kept", ok, err)
	}
	repairAfterGrace(t, uri, db, fenced)
	if ok, err := s.HasFence(ctx, tx); err != nil || ok {
		t.Fatalf("fence older than the grace period after Repair: %v, %v; want removed", ok, err)
	}
	if n, err := s.CountQueue(ctx, "system/q"); err != nil || n != 0 {
		t.Fatalf("queue holds %d (%v) after the fenced PutMessage, want 0", n, err)
	}
}

var errNotRun = errors.New("not run")

// storedWhole checks that message id is stored with exactly one delivery,
// in queue, of sequence seq, and receipt want, and that none of the
// receipts gone is.
func storedWhole(t *testing.T, s hub.Store, id, queue string, seq int64, want hub.Receipt, gone ...hub.Receipt) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.GetMessage(ctx, id); err != nil {
		t.Fatal(err)
	}
	got, err := s.DeliveriesOf(ctx, id)
	if err != nil || len(got) != 1 || got[0].Seq != seq {
		t.Fatalf("deliveries %+v, %v; want the one of sequence %d", got, err, seq)
	}
	if n, err := s.CountQueue(ctx, queue); err != nil || n != 1 {
		t.Fatalf("queue holds %d (%v), want 1", n, err)
	}
	if _, err := s.GetReceipt(ctx, want.SystemID, want.TransmissionID); err != nil {
		t.Fatalf("receipt %s: %v", want.TransmissionID, err)
	}
	for _, r := range gone {
		if _, err := s.GetReceipt(ctx, r.SystemID, r.TransmissionID); !hub.Is(err, hub.NotFound) {
			t.Fatalf("receipt %s: %v, want NotFound", r.TransmissionID, err)
		}
	}
}
