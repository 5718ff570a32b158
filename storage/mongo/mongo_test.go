package mongo_test

import (
	"context"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/storage/mongo"
	"github.com/posthub/posthub/storage/storagetest"
)

func TestMain(m *testing.M) { testservers.Main(m) }

// open returns an empty store in a database of the test's own on the
// shared FerretDB (skipped, or failed under POSTHUB_TEST_SERVERS=require,
// when FerretDB is not installed).
func open(t testing.TB) *mongo.Store {
	t.Helper()
	return openDB(t, testservers.FerretDB(t), testservers.DatabaseName(t))
}

func openDB(t testing.TB, uri, db string) *mongo.Store {
	t.Helper()
	return openConfig(t, mongo.Config{URI: uri, Database: db})
}

// openConfig opens the store cfg describes, dropped and closed when t ends.
func openConfig(t testing.TB, cfg mongo.Config) *mongo.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := mongo.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("mongo.Open: %v", err)
	}
	t.Cleanup(func() {
		_ = s.Drop(context.Background())
		_ = s.Close()
	})
	return s
}

func TestContract(t *testing.T) {
	storagetest.TestStore(t, func(t *testing.T) hub.Store { return open(t) })
}

func TestOpenUnreachableIsUnavailable(t *testing.T) {
	ctx := context.Background()
	_, err := mongo.Open(ctx, mongo.Config{URI: "mongodb://127.0.0.1:1/", Database: "x", Timeout: 300 * time.Millisecond})
	if !hub.Is(err, hub.Unavailable) {
		t.Fatalf("Open of an unreachable server: %v, want unavailable", err)
	}
}

func TestMailboxStore(t *testing.T) {
	storagetest.TestMailboxStore(t, func(t *testing.T) hub.MailboxStore { return open(t) })
}

// ClaimNext and ListQueue read a queue's lease links and park markers in a
// window beside each page; with more parked and more leased deliveries
// than the window holds, in front of the available ones, nothing is
// skipped and nothing starves.
func TestQueueStateBeyondItsWindow(t *testing.T) {
	mongo.SetStateWindow(t, 16)
	storagetest.QueueBehindUnavailable(t, open(t), 40, 40)
}
