package bolt_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/bolt"
)

// A file written before leases moved to memory and the per-message
// delivery index into the deliveries bucket opens with the index carried
// over and the leases ended: DeliveriesOf still finds the delivery, a new
// lease is granted, and the old buckets are gone.
func TestOpenMigratesLeaseAndIndexBuckets(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "posthub.db")
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := hub.Message{UUID: "m1", SenderCVR: "12345678", SHA256: "x", Size: 1, Content: []byte("x"), Received: t0, State: hub.MessageActive}
	d := hub.Delivery{ID: hub.DeliveryID("m1", "system/a"), MessageUUID: "m1", Queue: "system/a", Channel: hub.ChannelSystem, Created: t0, AvailableAt: t0}
	if err := s.PutMessage(ctx, m, []hub.Delivery{d}, hub.Receipt{TransmissionID: "t1", SystemID: "sender-sys", MessageUUID: "m1", Time: t0, Status: hub.ReceiptReceived}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Rewrite the file into the earlier layout.
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	lease, _ := json.Marshal(hub.Lease{DeliveryID: d.ID, Holder: "p1", Epoch: 3, Expires: t0.Add(time.Hour), Attempt: 1})
	err = db.Update(func(tx *bbolt.Tx) error {
		ds := tx.Bucket([]byte("deliveries"))
		c := ds.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if string(k) != d.ID {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		l, err := tx.CreateBucket([]byte("leases"))
		if err != nil {
			return err
		}
		if err := l.Put([]byte(d.ID), lease); err != nil {
			return err
		}
		i, err := tx.CreateBucket([]byte("deliveries_by_message"))
		if err != nil {
			return err
		}
		if err := i.Put([]byte("m1\x00"+d.ID), nil); err != nil {
			return err
		}
		// The receipt's index entry moves from its own bucket; its record
		// was in the receipts bucket, and the file not marked as moved.
		ms := tx.Bucket([]byte("messages"))
		if err := tx.Bucket([]byte("receipts")).Put([]byte("sender-sys\x00t1"), bytes.Clone(ms.Get([]byte("m1\x00Rsender-sys"))[1:])); err != nil {
			return err
		}
		if err := tx.Bucket([]byte("meta")).Delete([]byte("layout.receiptsBesideMessages")); err != nil {
			return err
		}
		if err := ms.Delete([]byte("m1\x00Rsender-sys")); err != nil {
			return err
		}
		r, err := tx.CreateBucket([]byte("receipts_by_message"))
		if err != nil {
			return err
		}
		return r.Put([]byte("sender-sys\x00m1"), []byte("t1"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A restart ends every lease, the file's old ones too; epochs still grow.
	l, err := s.Lease(ctx, d.ID, "p2", time.Minute, t0.Add(time.Minute))
	if err != nil || l.Epoch <= 3 || l.Attempt != 1 {
		t.Fatalf("Lease after reopening: %+v, %v (want epoch > 3, attempt 1)", l, err)
	}
	got, err := s.DeliveriesOf(ctx, "m1")
	if err != nil || len(got) != 1 || got[0].ID != d.ID {
		t.Fatalf("DeliveriesOf after migration: %+v, %v", got, err)
	}
	if r, err := s.ReceiptFor(ctx, "sender-sys", "m1"); err != nil || r.TransmissionID != "t1" {
		t.Fatalf("ReceiptFor after migration: %+v, %v", r, err)
	}
	if res, err := s.Ack(ctx, d.ID, t0.Add(2*time.Hour)); err != nil || !res.Unreferenced {
		t.Fatalf("Ack after migration: %+v, %v", res, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bbolt.Tx) error {
		for _, name := range []string{"leases", "deliveries_by_message", "receipts_by_message"} {
			if tx.Bucket([]byte(name)) != nil {
				t.Errorf("bucket %s still there after migration", name)
			}
		}
		return nil
	})
}

// IDs with NUL would reach the keys of leases and index entries that share
// the deliveries bucket: they are refused when written and not found when read.
func TestNULInIDsIsRefused(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	m := hub.Message{UUID: "m1", SHA256: "x", Size: 1, Content: []byte("x"), Received: t0, State: hub.MessageActive}
	bad := hub.Delivery{ID: "m1\x00L", MessageUUID: "m1", Queue: "system/a", Created: t0, AvailableAt: t0}
	if err := s.PutMessage(ctx, m, []hub.Delivery{bad}, hub.Receipt{}); hub.ErrorCode(err) != hub.Invalid {
		t.Fatalf("PutMessage with NUL in a delivery ID: %v, want Invalid", err)
	}
	d := hub.Delivery{ID: "m1@system/a", MessageUUID: "m1", Queue: "system/a", Created: t0, AvailableAt: t0}
	if err := s.PutMessage(ctx, m, []hub.Delivery{d}, hub.Receipt{TransmissionID: "t1", SystemID: "sender-sys", MessageUUID: "m1", Time: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDeliveries(ctx, []hub.Delivery{{ID: "m1\x00Ix", MessageUUID: "m1", Queue: "q"}}); hub.ErrorCode(err) != hub.Invalid {
		t.Fatalf("AddDeliveries with NUL: %v, want Invalid", err)
	}
	if _, err := s.Lease(ctx, d.ID, "p1", time.Minute, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDelivery(ctx, "m1\x00Im1@system/a"); hub.ErrorCode(err) != hub.NotFound {
		t.Fatalf("GetDelivery of an index entry's key: %v, want NotFound", err)
	}
	if _, err := s.GetMessage(ctx, "m1\x00Rsender-sys"); hub.ErrorCode(err) != hub.NotFound {
		t.Fatalf("GetMessage of a receipt index entry's key: %v, want NotFound", err)
	}
}

// Leases live in memory: a reopened store has none, and its epochs exceed
// those of the process before, so an old lease token never matches a new one.
func TestLeasesEndWithTheProcessAndEpochsGrow(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "posthub.db")
	t0 := time.Now().UTC()
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := hub.Message{UUID: "m1", SHA256: "x", Size: 1, Content: []byte("x"), Received: t0, State: hub.MessageActive}
	d := hub.Delivery{ID: "m1@system/a", MessageUUID: "m1", Queue: "system/a", Created: t0, AvailableAt: t0}
	if err := s.PutMessage(ctx, m, []hub.Delivery{d}, hub.Receipt{}); err != nil {
		t.Fatal(err)
	}
	first, err := s.Lease(ctx, d.ID, "p1", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimNext(ctx, "system/a", "p2", time.Hour, t0); hub.ErrorCode(err) != hub.NotFound {
		t.Fatalf("ClaimNext while leased: %v, want NotFound", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	s, err = bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := s.ClaimNext(ctx, "system/a", "p2", time.Hour, t0)
	got, l := c.Delivery, c.Lease
	if err != nil || got.ID != d.ID {
		t.Fatalf("ClaimNext after reopening: %+v, %v", got, err)
	}
	if l.Epoch <= first.Epoch {
		t.Fatalf("epoch %d after reopening, %d before", l.Epoch, first.Epoch)
	}
	if err := s.Release(ctx, first); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lease(ctx, d.ID, "p3", time.Hour, t0); hub.ErrorCode(err) != hub.Conflict {
		t.Fatalf("the old process's lease released the new one: Lease = %v, want Conflict", err)
	}
}

// A file whose events_by_id holds the IDs of letters' events (memo:UUID:…,
// and P:UUID@… of their deliveries' events), as earlier versions kept them,
// opens with them moved beside their messages: a pending one is still
// pending and sealed once, a sealed one is not appended or sealed again,
// and events_by_id keeps only other IDs.
func TestOpenMovesMessageEventIDsBesideTheirMessages(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "posthub.db")
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	const uuid = "0f0e0d0c-0b0a-4909-8807-060504030201"
	pendingID, sealedID := "memo:"+uuid+":1772445600000:MEMO_VALIDATED:0", "memo:"+uuid+":1772445600000:MEMO_SEND_RECEIVED:0"
	fetchedID := "retrieval:fetched:" + hub.DeliveryID(uuid, "system/a")
	ev := func(id string) hub.Event {
		return hub.Event{ID: id, Time: t0, Tag: "MEMO", Orgs: []string{"12345678"}, MessageUUID: uuid}
	}
	seq := func(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		raw, _ := json.Marshal(ev(pendingID))
		if err := tx.Bucket([]byte("events_pending")).Put(seq(7), raw); err != nil {
			return err
		}
		ids := tx.Bucket([]byte("events_by_id"))
		if err := ids.Put([]byte(pendingID), append([]byte{'p'}, seq(7)...)); err != nil {
			return err
		}
		if err := ids.Put([]byte("other-1"), append([]byte{'s'}, seq(1)...)); err != nil {
			return err
		}
		if err := ids.Put([]byte(fetchedID), append([]byte{'s'}, seq(3)...)); err != nil {
			return err
		}
		// Earlier versions did not mark the file as moved.
		if err := tx.Bucket([]byte("meta")).Delete([]byte("layout.eventRefsBesideMessages")); err != nil {
			return err
		}
		return ids.Put([]byte(sealedID), append([]byte{'s'}, seq(2)...))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvents(ctx, []hub.Event{ev(pendingID), ev(sealedID), ev("other-1"), ev(fetchedID)}); err != nil {
		t.Fatal(err)
	}
	p, err := s.PendingEvents(ctx, 10)
	if err != nil || len(p) != 1 || p[0].ID != pendingID {
		t.Fatalf("pending after reopening: %+v, %v (want only %s)", p, err, pendingID)
	}
	l, err := s.LeaseSealer(ctx, hub.SealerLease{Holder: "h"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{sealedID, fetchedID} {
		twice := []hub.Event{ev(id)}
		twice[0].Seq, twice[0].Hash = 1, "h1"
		if _, err := s.SealEvents(ctx, l, twice); !hub.Is(err, hub.Conflict) {
			t.Fatalf("sealing the moved sealed ID %s again: %v, want Conflict", id, err)
		}
	}
	once := []hub.Event{p[0]}
	once[0].Seq, once[0].Hash = 1, "h1"
	if _, err := s.SealEvents(ctx, l, once); err != nil {
		t.Fatalf("sealing the moved pending ID: %v", err)
	}
	if p, err := s.PendingEvents(ctx, 10); err != nil || len(p) != 0 {
		t.Fatalf("pending after sealing: %+v, %v", p, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bbolt.Tx) error {
		var left []string
		_ = tx.Bucket([]byte("events_by_id")).ForEach(func(k, _ []byte) error { left = append(left, string(k)); return nil })
		if len(left) != 1 || left[0] != "other-1" {
			t.Errorf("events_by_id after opening: %q, want only other-1", left)
		}
		ms := tx.Bucket([]byte("messages"))
		for _, id := range []string{pendingID, sealedID} {
			k := append([]byte(uuid+"\x00E"), id[len("memo:")+len(uuid):]...)
			if ms.Get(k) == nil {
				t.Errorf("%s is not beside its message", id)
			}
		}
		if ms.Get([]byte(uuid+"\x00E"+fetchedID)) == nil {
			t.Errorf("%s is not beside its message", fetchedID)
		}
		return nil
	})
}

// A file whose deliveries are in the deliveries bucket with their index
// entries, as earlier versions kept them, opens with those whose IDs begin
// with their message's UUID (UUID@… as the hub makes them, UUID/… as the
// tests do) moved beside their messages and their index entries dropped;
// the others stay where they were. Each is found, claimed and
// acknowledged as before, and the deliveries' sequence is kept. A record
// the move cannot read fails the open and moves nothing.
func TestOpenMovesDeliveriesBesideTheirMessages(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "posthub.db")
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	const uuid = "0f0e0d0c-0b0a-4909-8807-060504030201"
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := hub.Message{UUID: uuid, SenderCVR: "12345678", SHA256: "x", Size: 1, Content: []byte("x"), Received: t0, State: hub.MessageActive}
	var ds []hub.Delivery
	for _, id := range []string{hub.DeliveryID(uuid, "system/a"), uuid + "/system/b", "plain-1"} {
		q := "q-" + id[len(id)-1:]
		ds = append(ds, hub.Delivery{ID: id, MessageUUID: uuid, Queue: q, Channel: hub.ChannelSystem, Created: t0, AvailableAt: t0})
	}
	if err := s.PutMessage(ctx, m, ds, hub.Receipt{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Rewrite the file into the earlier layout: every delivery in the
	// deliveries bucket, with an index entry UUID NUL 'I' ID.
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var seq uint64
	var corrupt []byte // a moved record, to be spoiled
	err = db.Update(func(tx *bbolt.Tx) error {
		ms, dl := tx.Bucket([]byte("messages")), tx.Bucket([]byte("deliveries"))
		seq = dl.Sequence()
		for _, d := range ds[:2] {
			k := append([]byte(uuid+"\x00D"), d.ID[len(uuid):]...)
			v := ms.Get(k)
			if v == nil {
				return fmt.Errorf("%s is not beside its message", d.ID)
			}
			if err := dl.Put([]byte(d.ID), append([]byte(nil), v...)); err != nil {
				return err
			}
			if err := dl.Put([]byte(uuid+"\x00I"+d.ID), nil); err != nil {
				return err
			}
			if err := ms.Delete(k); err != nil {
				return err
			}
		}
		corrupt = append([]byte(nil), dl.Get([]byte(ds[1].ID))...)
		return dl.Put([]byte(ds[1].ID), []byte("{"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	layout := func() (dels, beside []string) {
		t.Helper()
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		_ = db.View(func(tx *bbolt.Tx) error {
			_ = tx.Bucket([]byte("deliveries")).ForEach(func(k, _ []byte) error { dels = append(dels, string(k)); return nil })
			p := []byte(uuid + "\x00D")
			c := tx.Bucket([]byte("messages")).Cursor()
			for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
				beside = append(beside, uuid+string(k[len(p):]))
			}
			return nil
		})
		return dels, beside
	}
	if _, err := bolt.Open(path, bolt.Options{}); hub.ErrorCode(err) != hub.Internal {
		t.Fatalf("opening with an unreadable delivery: %v, want Internal", err)
	}
	if dels, beside := layout(); len(dels) != 6 || len(beside) != 0 {
		t.Fatalf("a failed open moved deliveries: left %q, moved %q", dels, beside)
	}
	db, err = bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("deliveries")).Put([]byte(ds[1].ID), corrupt) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	for range 2 { // the second open finds nothing to move
		if s, err = bolt.Open(path, bolt.Options{}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		dels, beside := layout()
		if want := []string{uuid + "\x00Iplain-1", "plain-1"}; !slices.Equal(dels, want) || !slices.Equal(beside, []string{ds[1].ID, ds[0].ID}) {
			t.Fatalf("after the move: deliveries bucket %q (want %q), beside the message %q", dels, want, beside)
		}
	}
	s, err = bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.DeliveriesOf(ctx, uuid)
	if err != nil || len(got) != 3 {
		t.Fatalf("DeliveriesOf after the move: %+v, %v", got, err)
	}
	for i, d := range ds {
		if got, err := s.GetDelivery(ctx, d.ID); err != nil || got.ID != d.ID || got.Queue != d.Queue {
			t.Fatalf("GetDelivery(%s) after the move: %+v, %v", d.ID, got, err)
		}
		c, err := s.ClaimNext(ctx, d.Queue, "p", time.Minute, t0)
		if err != nil || c.Delivery.ID != d.ID || c.Message.UUID != uuid {
			t.Fatalf("ClaimNext(%s) after the move: %+v, %v", d.Queue, c.Delivery, err)
		}
		res, err := s.Ack(ctx, d.ID, t0)
		if err != nil || res.AlreadyAcked || res.Unreferenced != (i == len(ds)-1) {
			t.Fatalf("Ack(%s) after the move: %+v, %v", d.ID, res, err)
		}
		if _, err := s.GetDelivery(ctx, d.ID); !hub.Is(err, hub.NotFound) {
			t.Fatalf("GetDelivery(%s) after its Ack: %v, want NotFound", d.ID, err)
		}
	}
	if err := s.AddDeliveries(ctx, []hub.Delivery{{ID: uuid + "@system/c", MessageUUID: uuid, Queue: "system/c"}}); err != nil {
		t.Fatal(err)
	}
	d, err := s.GetDelivery(ctx, uuid+"@system/c")
	if err != nil || uint64(d.Seq) != seq+1 {
		t.Fatalf("a new delivery after the move: Seq %d, %v; want %d", d.Seq, err, seq+1)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if dels, beside := layout(); len(dels) != 0 || len(beside) != 1 {
		t.Fatalf("after the acks: deliveries bucket %q, beside the message %q", dels, beside)
	}
}

// A file whose receipts bucket holds the receipts of stored messages, as
// earlier versions kept them (the message's index entry UUID NUL 'R'
// system holding the transmission ID), opens with each moved beside its
// message: the index entry holds the record and the receipts bucket the
// message's UUID, which a status change does not rewrite. A receipt
// without a stored message, and one its message's index no longer names,
// stay where they were. All are got, listed and changed as before.
func TestOpenMovesReceiptsBesideTheirMessages(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "posthub.db")
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	const uuid, sys = "0f0e0d0c-0b0a-4909-8807-060504030201", "sender-sys"
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rcpt := func(tid, msg string, at time.Duration) hub.Receipt {
		return hub.Receipt{TransmissionID: tid, SystemID: sys, MessageUUID: msg, Time: t0.Add(at), Status: hub.ReceiptReceived}
	}
	superseded, current, orphan := rcpt("tx-0", uuid, 0), rcpt("tx-1", uuid, time.Second), rcpt("tx-2", "refused-entry", 2*time.Second)
	m := hub.Message{UUID: uuid, SenderCVR: "12345678", SenderSystemID: sys, SHA256: "x", Size: 1, Content: []byte("x"), Received: t0, State: hub.MessageActive}
	d := hub.Delivery{ID: hub.DeliveryID(uuid, "system/a"), MessageUUID: uuid, Queue: "system/a", Channel: hub.ChannelSystem, Created: t0, AvailableAt: t0}
	if err := s.PutMessage(ctx, m, []hub.Delivery{d}, superseded); err != nil {
		t.Fatal(err)
	}
	for _, r := range []hub.Receipt{current, orphan} {
		if err := s.PutReceipt(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Rewrite the file into the earlier layout: every record in the
	// receipts bucket, the index entry holding the transmission ID.
	type entry struct{ index, receipt []byte }
	layout := func() (e map[string]entry) {
		t.Helper()
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		e = map[string]entry{}
		_ = db.View(func(tx *bbolt.Tx) error {
			e["index"] = entry{index: bytes.Clone(tx.Bucket([]byte("messages")).Get([]byte(uuid + "\x00R" + sys)))}
			return tx.Bucket([]byte("receipts")).ForEach(func(k, v []byte) error {
				e[string(k[len(sys)+1:])] = entry{receipt: bytes.Clone(v)}
				return nil
			})
		})
		return e
	}
	before := layout()
	if len(before["index"].index) == 0 || before["index"].index[0] != 0 {
		t.Fatalf("the index entry holds %q, want the record of tx-1 beside the message", before["index"].index)
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		ms, rs := tx.Bucket([]byte("messages")), tx.Bucket([]byte("receipts"))
		ik := []byte(uuid + "\x00R" + sys)
		if err := rs.Put([]byte(sys+"\x00tx-1"), bytes.Clone(ms.Get(ik)[1:])); err != nil {
			return err
		}
		if err := ms.Put(ik, []byte("tx-1")); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Delete([]byte("layout.receiptsBesideMessages"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// The open moves it (a status change would too, so look before one).
	for range 2 { // the second open finds the file marked
		if s, err = bolt.Open(path, bolt.Options{}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		moved := layout()
		if ix := moved["index"].index; !bytes.Equal(ix, before["index"].index) {
			t.Fatalf("after the open the index entry holds %q, want %q", ix, before["index"].index)
		}
		if got := moved["tx-1"].receipt; string(got) != "\x00"+uuid {
			t.Fatalf("after the open the receipts bucket holds %q for tx-1, want its message's UUID", got)
		}
	}
	s, err = bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := current
	done.Time, done.Status = t0.Add(3*time.Second), hub.ReceiptCompleted
	if _, err := s.AckWith(ctx, d.ID, "", t0.Add(3*time.Second), func(v hub.AckView) (*hub.Receipt, []hub.Event, error) {
		if v.SenderReceipt == nil || v.SenderReceipt.TransmissionID != "tx-1" {
			return nil, nil, fmt.Errorf("the ack saw the sender's receipt %+v, want tx-1", v.SenderReceipt)
		}
		return &done, nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.ReceiptFor(ctx, sys, uuid); err != nil || r.TransmissionID != "tx-1" || r.Status != hub.ReceiptCompleted {
		t.Fatalf("ReceiptFor: %+v, %v, want tx-1 COMPLETED", r, err)
	}
	for _, want := range []hub.Receipt{superseded, orphan, done} {
		if r, err := s.GetReceipt(ctx, sys, want.TransmissionID); err != nil || r.Status != want.Status || !r.Time.Equal(want.Time) {
			t.Fatalf("GetReceipt %s: %+v, %v, want %+v", want.TransmissionID, r, err, want)
		}
	}
	list, err := s.ListReceipts(ctx, sys, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var tids []string
	for _, r := range list {
		tids = append(tids, r.TransmissionID)
	}
	if !slices.Equal(tids, []string{"tx-0", "tx-2", "tx-1"}) {
		t.Fatalf("ListReceipts: %q, want tx-0, tx-2, tx-1", tids)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	after := layout()
	var rec struct {
		TransmissionID string `json:"transmissionId"`
		Status         string `json:"receiptStatus"`
	}
	if ix := after["index"].index; len(ix) < 2 || ix[0] != 0 || json.Unmarshal(ix[1:], &rec) != nil || rec.TransmissionID != "tx-1" || rec.Status != string(hub.ReceiptCompleted) {
		t.Fatalf("the index entry holds %q, want the COMPLETED record of tx-1 beside the message", ix)
	}
	if got := after["tx-1"].receipt; string(got) != "\x00"+uuid {
		t.Fatalf("the receipts bucket holds %q for tx-1, want its message's UUID", got)
	}
	for _, tid := range []string{"tx-0", "tx-2"} {
		if got := after[tid].receipt; len(got) == 0 || got[0] != '{' {
			t.Fatalf("the receipts bucket holds %q for %s, want its record", got, tid)
		}
	}
}

// A file whose layout a newer posthub wrote is refused, not misread, and
// left as it is; a file this version opens records its layout.
func TestOpenRefusesANewerLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posthub.db")
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	version := func() uint64 {
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var v uint64
		_ = db.View(func(tx *bbolt.Tx) error {
			if b := tx.Bucket([]byte("meta")).Get([]byte("layout.version")); len(b) == 8 {
				v = binary.BigEndian.Uint64(b)
			}
			return nil
		})
		return v
	}
	if v := version(); v != 2 {
		t.Fatalf("layout recorded %d, want 2", v)
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("layout.version"), binary.BigEndian.AppendUint64(nil, 3))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := bolt.Open(path, bolt.Options{}); err == nil || !strings.Contains(err.Error(), "newer posthub") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("opening a layout-3 file: %v, want a refusal naming a newer posthub", err)
	}
	if v := version(); v != 3 {
		t.Fatalf("the refused file's layout became %d", v)
	}
}
