package storagetest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

// BenchSize is the message size of the storage benchmarks (a typical
// letter with a PDF attachment).
const BenchSize = 18 * 1024

// spread runs b.N calls of op on writers goroutines and reports ops/s.
func spread(b *testing.B, writers int, op func(i int64) error) {
	b.Helper()
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) || failed.Load() != nil {
					return
				}
				if err := op(i); err != nil {
					failed.Store(&err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	if p := failed.Load(); p != nil {
		b.Fatal(*p)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "ops/s")
}

// BenchPutMessage measures durable PutMessage calls of an 18 KB message
// (content inline) with two deliveries and a receipt, from writers
// concurrent goroutines. open returns a fresh store.
func BenchPutMessage(b *testing.B, open func(b *testing.B) hub.Store, writers int) {
	s := open(b)
	content := bytes.Repeat([]byte("<memo>x</memo>"), BenchSize/14+1)[:BenchSize]
	run := time.Now().UnixNano()
	b.SetBytes(BenchSize)
	spread(b, writers, func(i int64) error {
		id := fmt.Sprintf("%x-%08d", run, i)
		m := Message(id, content, T0.Add(time.Duration(i)*time.Millisecond))
		ds := []hub.Delivery{Delivery(id, "system/bench", T0), Delivery(id, "mailbox/0101011234/AUTHORITY_POST", T0)}
		return s.PutMessage(ctx, m, ds, Receipt(id, T0))
	})
}

// BenchLeaseAck measures a receiver's fetch cycle: ClaimNext on one queue
// and Ack of the claimed delivery, from writers concurrent pollers. The
// queue is filled before the timer starts.
func BenchLeaseAck(b *testing.B, open func(b *testing.B) hub.Store, writers int) {
	s := open(b)
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(s.PutMessage(ctx, Message("bench", []byte("x"), T0), nil, Receipt("bench", T0)))
	for i := 0; i < b.N; i += 1000 {
		var ds []hub.Delivery
		for j := i; j < i+1000 && j < b.N; j++ {
			d := Delivery("bench", "system/bench", T0)
			d.ID = fmt.Sprintf("bench/%09d", j)
			ds = append(ds, d)
		}
		must(s.AddDeliveries(ctx, ds))
	}
	spread(b, writers, func(i int64) error {
		c, err := s.ClaimNext(ctx, "system/bench", fmt.Sprint("poller-", i%int64(writers)), time.Minute, T0)
		if err != nil {
			return err
		}
		_, err = s.Ack(ctx, c.Delivery.ID, T0)
		return err
	})
}

// BenchFsyncFloor is the floor the store benchmarks are compared with:
// writing BenchSize bytes and fsyncing, writers files in dir written
// concurrently (the same disk as the store).
func BenchFsyncFloor(b *testing.B, dir string, writers int) {
	files := make([]*os.File, writers)
	for w := range files {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("floor-%d", w)))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		files[w] = f
	}
	buf := bytes.Repeat([]byte{'x'}, BenchSize)
	b.SetBytes(BenchSize)
	spread(b, writers, func(i int64) error {
		f := files[i%int64(writers)]
		if _, err := f.WriteAt(buf, (i/int64(writers))*BenchSize); err != nil {
			return err
		}
		return f.Sync()
	})
}
