package accept_test

import (
	"bytes"
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/posthub/posthub/accept"
	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/benchmemo"
)

// benchService is an accept service as make bench's hub has it: the
// embedded store (bolt with its accept log, fs blobs, content inline up to
// the default 256 KiB) and the event log as the event sink; with the
// sender system and MeMo_Full_Example made a deliverable letter from it.
func benchService(b *testing.B) (*accept.Service, hub.System, *benchmemo.Letter) {
	h, sys, v := senderHub(b)
	events := eventlog.New(h.Store, eventlog.Options{})
	b.Cleanup(func() { events.Close() })
	svc := &accept.Service{Validator: v, Receipts: h.Store, Events: events, SpoolDir: h.Dir, MaxSize: 200 << 20,
		Ingest: h.Ingest(events, 256<<10)}
	l, err := benchmemo.FromFile(filepath.Join("..", "memo", "testdata", "samples", "v1.1", "MeMo_Full_Example.xml"), senderCVR, citizen)
	if err != nil {
		b.Fatal(err)
	}
	return svc, sys, l
}

// BenchmarkLetter measures one accepted letter through the accept service
// as the NgDP route submits it (MeMo_Full_Example with its length, a fresh
// messageUUID each time), one after another: the request path above HTTP.
// allocs/op and B/op are what to compare (they include the store's
// background apply, a few percent of noise); the time is mostly the
// accept log's fsync, one per letter.
func BenchmarkLetter(b *testing.B) {
	svc, sys, l := benchService(b)
	ctx := context.Background()
	body := bytes.NewReader(l.Body)
	b.SetBytes(int64(len(l.Body)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		id := l.Next(n)
		body.Reset(l.Body)
		_, created, err := svc.Letter(ctx, accept.Request{System: sys, WantUUID: id}, accept.Body{R: body, Size: int64(len(l.Body))})
		if err != nil || !created {
			b.Fatalf("Letter = %v, created %v", err, created)
		}
	}
}

// BenchmarkLetterParallel is BenchmarkLetter with 8 senders per CPU (16
// on two cores, as make bench's load), whose letters share the accept
// log's fsyncs: its time per letter is the CPU a letter costs, near
// enough, on an otherwise idle machine.
func BenchmarkLetterParallel(b *testing.B) {
	svc, sys, tmpl := benchService(b)
	ctx := context.Background()
	var n atomic.Int64
	b.SetBytes(int64(len(tmpl.Body)))
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		l := tmpl.Copy()
		body := bytes.NewReader(l.Body)
		for pb.Next() {
			id := l.Next(int(n.Add(1)))
			body.Reset(l.Body)
			_, created, err := svc.Letter(ctx, accept.Request{System: sys, WantUUID: id}, accept.Body{R: body, Size: int64(len(l.Body))})
			if err != nil || !created {
				b.Errorf("Letter = %v, created %v", err, created)
				return
			}
		}
	})
}
