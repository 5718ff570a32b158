package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/storage/mongo"
	"github.com/posthub/posthub/storage/s3"
)

// TestRetrievalThreeProcessesShareFerretDBAndMinIO: three `posthub serve`
// processes share one FerretDB database and one MinIO bucket (all content
// in S3); senders send through all three while the five receiver systems
// of one authority poll through all three. Every message ends in exactly
// its designated system, leases never overlap across processes, and
// afterwards every queue is empty and every content object deleted.
func TestRetrievalThreeProcessesShareFerretDBAndMinIO(t *testing.T) {
	uri := testservers.FerretDB(t)
	endpoint, access, secret := testservers.MinIO(t)
	db, bucket := testservers.DatabaseName(t), testservers.BucketName(t)
	const operator = "ph_three-process-operator"
	var bases []string
	for i := 0; i < 3; i++ {
		p := startHubProcess(t, "-data", t.TempDir(), "-metadata", "mongo", "-mongo-uri", uri, "-mongo-db", db,
			"-blobs", "s3", "-s3-endpoint", endpoint, "-s3-access-key", access, "-s3-secret-key", secret, "-s3-bucket", bucket,
			"-inline-max", "0", "-operator-token", operator, "-lease-ttl", "3s", "-max-attempts", "100", "-reconcile-interval", "2s")
		bases = append(bases, p.base)
	}
	start := time.Now()
	w := setupReceivers(t, bases[0], operator)
	t.Logf("set up in %s", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	log := &fetchLog{fetches: map[string][]fetchRecord{}, acked: map[string]string{}}
	var acked atomic.Int64
	done := make(chan struct{})
	pollers := pollSystems(ctx, t, bases, w, 2, 30, 5*time.Second, log, &acked, done)
	want := sendConcurrently(t, bases, w, 3, 100)
	t.Logf("sent %d in %s; %d acknowledged so far", len(want), time.Since(start).Round(time.Millisecond), acked.Load())
	for acked.Load() < int64(len(want)) && ctx.Err() == nil && !t.Failed() {
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("all acknowledged after %s", time.Since(start).Round(time.Millisecond))
	close(done)
	pollers.Wait()
	checkFetches(t, w, want, log, 3*time.Second)

	store, err := mongo.Open(context.Background(), mongo.Config{URI: uri, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, sys := range w.systems {
		if n, _ := store.CountQueue(context.Background(), hub.SystemQueue(sys)); n != 0 {
			t.Errorf("system %s queue holds %d", sys, n)
		}
	}
	for _, k := range []hub.MailboxKind{hub.AuthorityPost, hub.CVRPost} {
		if n, _ := store.CountQueue(context.Background(), hub.MailboxQueue(rwAuthority, k)); n != 0 {
			t.Errorf("mailbox %s holds %d", k, n)
		}
	}
	blobs, err := s3.Open(context.Background(), s3.Config{Endpoint: endpoint, AccessKey: access, SecretKey: secret, Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	left := 0
	if err := blobs.List(context.Background(), "msg/", func(hub.BlobInfo) error { left++; return nil }); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d content objects left after every message was acknowledged", left)
	}
}
