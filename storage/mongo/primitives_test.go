package mongo_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/storage/storagetest"
)

var ctx = context.Background()

// Counters stay exact while a compactor folds them concurrently with 8
// writers and a reader, and after a final compaction.
func TestCountersExactUnderConcurrentCompaction(t *testing.T) {
	s := open(t)
	const writers, each = 8, 60
	key := func(org, day string) hub.CounterKey {
		return hub.CounterKey{Org: org, Day: day, MessageType: "DIGITALPOST", Channel: "SYSTEM", Direction: "RECEIVED"}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var folded atomic.Int64
	wg.Add(2)
	go func() { // compactor
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			n, err := s.CompactCounters(ctx, time.Now())
			if err != nil {
				t.Errorf("CompactCounters: %v", err)
				return
			}
			folded.Add(int64(n))
		}
	}()
	go func() { // reader: totals never go down
		defer wg.Done()
		var last int64
		for !stop.Load() {
			cs, err := s.ReadCounters(ctx, hub.CounterQuery{Org: "11111111"})
			if err != nil {
				t.Errorf("ReadCounters: %v", err)
				return
			}
			var n int64
			for _, c := range cs {
				n += c.Count
			}
			if n < last || n > writers*each {
				t.Errorf("read %d after %d (max %d): a delta was lost or counted twice", n, last, writers*each)
				return
			}
			last = n
		}
	}()
	var failed atomic.Int64
	var ww sync.WaitGroup
	for w := 0; w < writers; w++ {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for j := 0; j < each; j++ {
				day := fmt.Sprintf("2026-03-%02d", 1+j%3)
				if err := s.AddCounters(ctx, []hub.Counter{{Key: key("11111111", day), Count: 1, Bytes: 7}, {Key: key("22222222", day), Count: 2}}); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	ww.Wait()
	stop.Store(true)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d AddCounters failed", failed.Load())
	}
	if _, err := s.CompactCounters(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		org          string
		count, bytes int64
	}{{"11111111", writers * each, 7 * writers * each}, {"22222222", 2 * writers * each, 0}} {
		cs, err := s.ReadCounters(ctx, hub.CounterQuery{Org: c.org})
		if err != nil {
			t.Fatal(err)
		}
		var n, b int64
		for _, x := range cs {
			n += x.Count
			b += x.Bytes
		}
		if n != c.count || b != c.bytes || len(cs) != 3 {
			t.Fatalf("%s: %d cells, count %d bytes %d; want 3, %d, %d", c.org, len(cs), n, b, c.count, c.bytes)
		}
	}
	t.Logf("%d group folds during the run", folded.Load())
}

// Eight instances (separate Stores on one database) racing to ack the
// deliveries of one message: each delivery is removed by exactly one ack,
// and at least one ack reports the message unreferenced.
func TestAckRaceAcrossInstances(t *testing.T) {
	uri, db := testservers.FerretDB(t), testservers.DatabaseName(t)
	first := openDB(t, uri, db)
	stores := []hub.Store{first}
	for i := 1; i < 8; i++ {
		stores = append(stores, openDB(t, uri, db))
	}
	for round := 0; round < 5; round++ {
		id := fmt.Sprintf("m%d", round)
		m := storagetest.Message(id, nil, storagetest.T0)
		m.Content, m.ContentKey = nil, "msg/"+id
		var ds []hub.Delivery
		for q := 0; q < 4; q++ {
			ds = append(ds, storagetest.Delivery(id, fmt.Sprint("system/q", q), storagetest.T0))
		}
		if err := first.PutMessage(ctx, m, ds, storagetest.Receipt(id, storagetest.T0)); err != nil {
			t.Fatal(err)
		}
		var removed, unref atomic.Int64
		var wg sync.WaitGroup
		for i, s := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range ds {
					d := ds[(k+i)%len(ds)]
					r, err := s.Ack(ctx, d.ID, storagetest.T0)
					if err != nil {
						t.Errorf("Ack: %v", err)
						return
					}
					if !r.AlreadyAcked {
						removed.Add(1)
					}
					if r.Unreferenced {
						if r.ContentKey != m.ContentKey {
							t.Errorf("content key %q", r.ContentKey)
						}
						unref.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if removed.Load() != int64(len(ds)) || unref.Load() < 1 {
			t.Fatalf("round %d: %d removals (want %d), %d unreferenced (want >= 1)", round, removed.Load(), len(ds), unref.Load())
		}
	}
}

// A lease racing an ack never leaves a delivery leased after it is gone,
// and never hands out a lease on an acknowledged delivery.
func TestLeaseRacingAck(t *testing.T) {
	s := open(t)
	for round := 0; round < 10; round++ {
		id := fmt.Sprintf("m%d", round)
		d := storagetest.Delivery(id, "system/a", storagetest.T0)
		if err := s.PutMessage(ctx, storagetest.Message(id, []byte("x"), storagetest.T0), []hub.Delivery{d}, storagetest.Receipt(id, storagetest.T0)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var leases []hub.Lease
		var mu sync.Mutex
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i == 0 {
					if _, err := s.Ack(ctx, d.ID, storagetest.T0); err != nil {
						t.Errorf("Ack: %v", err)
					}
					return
				}
				l, err := s.Lease(ctx, d.ID, fmt.Sprint("p", i), time.Minute, storagetest.T0)
				switch hub.ErrorCode(err) {
				case "":
					mu.Lock()
					leases = append(leases, l)
					mu.Unlock()
				case hub.Conflict, hub.NotFound:
				default:
					t.Errorf("Lease: %v", err)
				}
			}()
		}
		wg.Wait()
		if len(leases) > 1 {
			t.Fatalf("round %d: %d leases on one delivery", round, len(leases))
		}
		if _, err := s.GetDelivery(ctx, d.ID); !hub.Is(err, hub.NotFound) {
			t.Fatalf("delivery after ack: %v", err)
		}
		if _, err := s.Lease(ctx, d.ID, "late", time.Minute, storagetest.T0); !hub.Is(err, hub.NotFound) {
			t.Fatalf("lease after ack: %v", err)
		}
	}
	if err := s.Repair(ctx, storagetest.T0); err != nil {
		t.Fatal(err)
	}
}

// Concurrent PutMessage of one UUID with different content: exactly one
// wins, and the winner's deliveries and receipt are the ones visible.
func TestPutMessageDuplicateRace(t *testing.T) {
	s := open(t)
	for round := 0; round < 5; round++ {
		id := fmt.Sprintf("m%d", round)
		var wins atomic.Int64
		var winner atomic.Int64
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := storagetest.Message(id, []byte(fmt.Sprint("content ", i)), storagetest.T0)
				d := storagetest.Delivery(id, fmt.Sprint("system/q", i), storagetest.T0)
				r := storagetest.Receipt(id, storagetest.T0)
				r.TransmissionID = fmt.Sprintf("tx-%s-%d", id, i)
				err := s.PutMessage(ctx, m, []hub.Delivery{d}, r)
				switch hub.ErrorCode(err) {
				case "":
					wins.Add(1)
					winner.Store(int64(i))
				case hub.Conflict:
				default:
					t.Errorf("PutMessage: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("round %d: %d winners", round, wins.Load())
		}
		w := winner.Load()
		m, err := s.GetMessage(ctx, id)
		if err != nil || string(m.Content) != fmt.Sprint("content ", w) {
			t.Fatalf("stored message %q, %v; want the winner's", m.Content, err)
		}
		ds, err := s.DeliveriesOf(ctx, id)
		if err != nil || len(ds) != 1 || ds[0].Queue != fmt.Sprint("system/q", w) {
			t.Fatalf("deliveries %+v, %v", ds, err)
		}
		for i := 0; i < 8; i++ {
			_, err := s.GetReceipt(ctx, "sender-sys", fmt.Sprintf("tx-%s-%d", id, i))
			if (int64(i) == w) != (err == nil) {
				t.Fatalf("receipt %d: %v (winner %d)", i, err, w)
			}
		}
	}
}
