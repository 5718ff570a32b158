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
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/storage/bolt"
	"github.com/posthub/posthub/storage/fs"
)

// benchService is an accept service as make bench's hub has it: the
// embedded store (bolt with its accept log, fs blobs, content inline up to
// the default 256 KiB) and the event log as the event sink; with the
// sender system and MeMo_Full_Example made a deliverable letter from it.
func benchService(b *testing.B) (*accept.Service, hub.System, *benchmemo.Letter) {
	ctx := context.Background()
	dir := b.TempDir()
	store, err := bolt.Open(filepath.Join(dir, "a.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	blobs, err := fs.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		b.Fatal(err)
	}
	reg := &hub.Registry{Store: store}
	if _, err := reg.CreateOrg(ctx, hub.Organisation{CVR: senderCVR, Name: "Afsender", Kind: hub.Authority, Setup: hub.SetupContactable}); err != nil {
		b.Fatal(err)
	}
	sys, _, err := reg.RegisterSystem(ctx, senderCVR, hub.SystemSpec{Name: "sender", Role: hub.SenderSystem})
	if err != nil {
		b.Fatal(err)
	}
	if err := store.PutContacts(ctx, []hub.Contact{{ID: citizen, Status: hub.Registered}}); err != nil {
		b.Fatal(err)
	}
	v, err := memo.NewValidator(memo.DefaultConfig(), memo.WithSpoolDir(dir))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	events := eventlog.New(store, eventlog.Options{})
	b.Cleanup(func() { events.Close() })
	svc := &accept.Service{Validator: v, Receipts: store, Events: events, SpoolDir: dir, MaxSize: 200 << 20,
		Ingest: &hub.Ingest{Store: store, Blobs: blobs, Router: &hub.Router{Store: store}, Events: events, InlineMax: 256 << 10}}
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
