package s3_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/storage/s3"
	"github.com/posthub/posthub/storage/storagetest"
)

func TestMain(m *testing.M) { testservers.Main(m) }

// config is a bucket of the test's own on the test MinIO server.
func config(t *testing.T) s3.Config {
	endpoint, access, secret := testservers.MinIO(t)
	return s3.Config{Endpoint: endpoint, AccessKey: access, SecretKey: secret, Bucket: testservers.BucketName(t)}
}

func open(t *testing.T, cfg s3.Config) *s3.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := s3.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	storagetest.TestBlobs(t, func(t *testing.T) hub.Blobs { return open(t, config(t)) })
}

// TestContractWithPrefix runs the contract on a prefixed store sharing its
// bucket with another, which must see none of its objects.
func TestContractWithPrefix(t *testing.T) {
	storagetest.TestBlobs(t, func(t *testing.T) hub.Blobs {
		cfg := config(t)
		other := open(t, cfg)
		if _, err := other.Put(context.Background(), "posthub-other", strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
		cfg.Prefix = "tenant/a/"
		return open(t, cfg)
	})
}

// TestOpenCreatesBucketOnce checks that opening an existing bucket is fine.
func TestOpenCreatesBucketOnce(t *testing.T) {
	cfg := config(t)
	open(t, cfg)
	open(t, cfg)
}

func TestOpenRejectsBadConfig(t *testing.T) {
	cfg := config(t)
	for name, mod := range map[string]func(*s3.Config){
		"no bucket":               func(c *s3.Config) { c.Bucket = "" },
		"prefix without slash":    func(c *s3.Config) { c.Prefix = "tenant" },
		"prefix with dot segment": func(c *s3.Config) { c.Prefix = "../" },
	} {
		t.Run(name, func(t *testing.T) {
			c := cfg
			mod(&c)
			if _, err := s3.Open(context.Background(), c); !hub.Is(err, hub.Invalid) {
				t.Fatalf("Open: %v, want invalid", err)
			}
		})
	}
}

// TestUnreachableIsUnavailable checks the error a stopped server gives.
func TestUnreachableIsUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = s3.Open(ctx, s3.Config{Endpoint: addr, AccessKey: "k", SecretKey: "s", Bucket: "posthub-unreachable"})
	if !hub.Is(err, hub.Unavailable) {
		t.Fatalf("Open against a closed port: %v, want unavailable", err)
	}
}

// TestWrongCredentialsAreNotUnavailable checks that a misconfiguration is
// not reported as a passing outage.
func TestWrongCredentialsAreNotUnavailable(t *testing.T) {
	cfg := config(t)
	cfg.SecretKey = "wrong-secret"
	_, err := s3.Open(context.Background(), cfg)
	if err == nil || hub.Is(err, hub.Unavailable) {
		t.Fatalf("Open with a wrong secret: %v, want a non-unavailable error", err)
	}
}

func TestBadBucketNameIsInvalid(t *testing.T) {
	cfg := config(t)
	cfg.Bucket = "No_Such.Bucket!"
	if _, err := s3.Open(context.Background(), cfg); !hub.Is(err, hub.Invalid) {
		t.Fatalf("Open with bucket %q: %v, want invalid", cfg.Bucket, err)
	}
}
