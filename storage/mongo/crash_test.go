package mongo_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/storage/crashtest"
	"github.com/posthub/posthub/storage/mongo"
	"github.com/posthub/posthub/storage/s3"
)

// The crash harness re-executes the test binary as the writing child; the
// child must reach the parent's servers and database, not start its own,
// so the parent hands them down in the environment.
const envCrash = "POSTHUB_CRASHTEST_MONGO_S3"

// TestCrash kills a writer on FerretDB + MinIO with SIGKILL 25 times and
// checks that every acknowledged message survived whole and nothing
// half-written is visible (Repair runs before each check, as at start-up).
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test kills 25 child processes; skipped with -short")
	}
	env := os.Getenv(envCrash)
	child := env != ""
	if !child {
		uri := testservers.FerretDB(t)
		endpoint, access, secret := testservers.MinIO(t)
		name := strings.ReplaceAll(testservers.BucketName(t), "-", "")
		if len(name) > 40 {
			name = name[:40]
		}
		env = strings.Join([]string{uri, name, endpoint, access, secret}, "\x1f")
		t.Setenv(envCrash, env)
	}
	p := strings.Split(env, "\x1f")
	if len(p) != 5 {
		t.Fatalf("bad %s", envCrash)
	}
	uri, name := p[0], p[1]
	openStores := func(string) (hub.Store, hub.Blobs, func() error, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := mongo.Open(ctx, mongo.Config{URI: uri, Database: name})
		if err != nil {
			return nil, nil, nil, err
		}
		bl, err := s3.Open(ctx, s3.Config{Endpoint: p[2], AccessKey: p[3], SecretKey: p[4], Bucket: name})
		if err != nil {
			st.Close()
			return nil, nil, nil, err
		}
		return st, bl, st.Close, nil
	}
	if !child {
		// Create the database, indexes and bucket before the first kill, so
		// the children spend their short lives writing, not setting up.
		st, _, closeFn, err := openStores("")
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() {
			_ = st.(*mongo.Store).Drop(context.Background())
			_ = closeFn()
		})
	}
	crashtest.Run(t, crashtest.Config{Repair: true, Open: openStores})
}
