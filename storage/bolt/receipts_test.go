package bolt

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posthub/posthub/hub"
)

func invalidReceipt(uuid, id string, at time.Time) hub.Receipt {
	return hub.Receipt{TransmissionID: id, SystemID: "sender-sys", MessageUUID: uuid, Time: at, Status: hub.ReceiptInvalid}
}

func wantReceiptFor(t *testing.T, s *Store, uuid, want, what string) {
	t.Helper()
	r, err := s.ReceiptFor(context.Background(), "sender-sys", uuid)
	if err != nil || r.TransmissionID != want {
		t.Fatalf("%s: ReceiptFor answered %+v, %v; want %s", what, r, err, want)
	}
}

// While a message is only in the accept log, ReceiptFor answers as it
// will once the message is applied: the newest receipt naming the UUID,
// which may be one bbolt holds already.
func TestReceiptForIsTheNewestWhileTheMessageIsInTheLog(t *testing.T) {
	s := openHeld(t, filepath.Join(t.TempDir(), "posthub.db"))
	ctx := context.Background()
	if err := s.PutReceipt(ctx, invalidReceipt("m1", "tx-later", t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if err := s.PutReceipt(ctx, invalidReceipt("m2", "tx-earlier", t0.Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	put(t, s, "m1", "system/a") // its receipt tx-m1 is stamped t0
	put(t, s, "m2", "system/a")
	if unapplied(s) != 2 {
		t.Fatalf("want both messages held in the log, %d are", unapplied(s))
	}
	wantReceiptFor(t, s, "m1", "tx-later", "m1 in the log, a newer receipt in bbolt")
	wantReceiptFor(t, s, "m2", "tx-m2", "m2 in the log, an older receipt in bbolt")
	if unapplied(s) != 2 {
		t.Fatal("ReceiptFor applied the log")
	}
	if _, err := s.GetReceipt(ctx, "sender-sys", "tx-m1"); err != nil { // a read behind the barrier applies
		t.Fatal(err)
	}
	if unapplied(s) != 0 {
		t.Fatalf("%d entries still unapplied after a read behind the barrier", unapplied(s))
	}
	wantReceiptFor(t, s, "m1", "tx-later", "m1 applied")
	wantReceiptFor(t, s, "m2", "tx-m2", "m2 applied")
}

// Earlier versions kept only the receipt written last in a message's index
// entry; the open lists the others apart and makes the entry name the
// newest, so that deleting it lets the next newest answer.
func TestOpenListsReceiptsApart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "posthub.db")
	s, err := Open(path, Options{NoAcceptLog: true})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "m1", "system/a") // tx-m1 at t0, beside the message
	if err := s.PutReceipt(ctx, invalidReceipt("m1", "tx-early", t0.Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	// The earlier layout as the earlier putReceipt left it: the receipt
	// written last named by the index entry, both records in the receipts
	// bucket, nothing apart, the file not marked.
	err = s.db.Update(func(tx *bolt.Tx) error {
		mb, rb := tx.Bucket(bMessages), tx.Bucket(bReceipts)
		ik := receiptIndexKey("m1", "sender-sys")
		// The older receipt put last went apart, the index entry names
		// the message's, whose record left its place beside the message.
		if v := mb.Get(ik); string(v) != "tx-m1" {
			t.Errorf("the index entry holds %q, want tx-m1", v)
		}
		for _, tid := range []string{"tx-m1", "tx-early"} {
			if v := rb.Get(key("sender-sys", tid)); len(v) == 0 || v[0] != '{' {
				t.Errorf("the receipts bucket holds %q for %s, want its record", v, tid)
			}
		}
		if mb.Get(apartKey("m1", "sender-sys", "tx-early")) == nil {
			t.Error("tx-early is not listed apart")
		}
		if err := mb.Put(ik, []byte("tx-early")); err != nil {
			return err
		}
		if err := mb.Delete(apartKey("m1", "sender-sys", "tx-early")); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Delete(receiptsListed)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second open finds the file marked
		if s, err = Open(path, Options{NoAcceptLog: true}); err != nil {
			t.Fatal(err)
		}
		wantReceiptFor(t, s, "m1", "tx-m1", "after the open")
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if s, err = Open(path, Options{NoAcceptLog: true}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.DeleteReceipt(ctx, "sender-sys", "tx-m1"); err != nil {
		t.Fatal(err)
	}
	wantReceiptFor(t, s, "m1", "tx-early", "after the newest is deleted")
}
