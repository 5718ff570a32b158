package testservers_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/oauth2"

	"github.com/posthub/posthub/internal/testservers"
)

func TestMain(m *testing.M) { testservers.Main(m) }

// TestFerretDB checks that the MongoDB driver can write to and read from the
// FerretDB server, which the Mongo store's contract tests rely on.
func TestFerretDB(t *testing.T) {
	uri := testservers.FerretDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatalf("connect %s: %v", uri, err)
	}
	defer client.Disconnect(context.Background())
	if err := client.Ping(ctx, nil); err != nil {
		t.Fatalf("ping %s: %v", uri, err)
	}

	coll := client.Database(testservers.DatabaseName(t)).Collection("docs")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "n", Value: 42}}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var got struct {
		ID string `bson:"_id"`
		N  int    `bson:"n"`
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Decode(&got); err != nil {
		t.Fatalf("find: %v", err)
	}
	if got.ID != "a" || got.N != 42 {
		t.Fatalf("read back %+v, want {a 42}", got)
	}
	// A unique _id has exactly one winner: the property the Mongo store
	// builds on (see DESIGN.md).
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}}); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("second insert of _id a: got %v, want a duplicate key error", err)
	}
}

// TestMinIO checks that minio-go can create a bucket and round-trip an
// object on the MinIO server.
func TestMinIO(t *testing.T) {
	endpoint, access, secret := testservers.MinIO(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	bucket := testservers.BucketName(t)
	if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %q: %v", bucket, err)
	}
	want := []byte("hello, posthub")
	if _, err := c.PutObject(ctx, bucket, "k", bytes.NewReader(want), int64(len(want)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put: %v", err)
	}
	obj, err := c.GetObject(ctx, bucket, "k", minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %q, %v; want %q", got, err, want)
	}
}

// TestNames checks that per-test names are valid for S3 and MongoDB and
// distinct.
func TestNames(t *testing.T) {
	seen := map[string]bool{}
	for range 3 {
		for _, n := range []string{testservers.BucketName(t), testservers.DatabaseName(t)} {
			if len(n) < 3 || len(n) > 63 || seen[n] {
				t.Fatalf("bad or repeated name %q", n)
			}
			for _, r := range n {
				if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
					t.Fatalf("name %q has %q", n, r)
				}
			}
			seen[n] = true
		}
	}
	t.Run("a very long subtest name that goes on and on and on well past sixty-three bytes", func(t *testing.T) {
		for _, n := range []string{testservers.BucketName(t), testservers.DatabaseName(t)} {
			if len(n) > 63 {
				t.Fatalf("name %q is %d bytes", n, len(n))
			}
		}
	})
}

// TestOpenIDProvider runs the authorization code flow with PKCE against the
// test provider as a relying party would (golang.org/x/oauth2, go-oidc):
// discovery, the login form, the token exchange, an ID token verified by the
// published keys, and userinfo with the claims tests rely on.
func TestOpenIDProvider(t *testing.T) {
	op := testservers.OpenIDProvider(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	provider, err := oidc.NewProvider(ctx, op.Issuer)
	if err != nil {
		t.Fatalf("discovery of %s: %v", op.Issuer, err)
	}
	// A relying party on a loopback port of its own.
	codes := make(chan url.Values, 1)
	rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		codes <- r.URL.Query()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rp.Close()
	cfg := &oauth2.Config{ClientID: op.ClientID, Endpoint: provider.Endpoint(), RedirectURL: rp.URL + testservers.OPRedirectPaths[0],
		Scopes: []string{oidc.ScopeOpenID, "profile", "phone"}}
	cfg.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	verifier := oauth2.GenerateVerifier()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := client.Get(cfg.AuthCodeURL("state-1", oidc.Nonce("nonce-1"), oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = op.SubmitLogin(client, resp.Request.URL, testservers.OPAnne)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var q url.Values
	select {
	case q = <-codes:
	default:
		t.Fatalf("the provider did not come back to the relying party (ended at %s, %s)", resp.Request.URL, resp.Status)
	}
	if q.Get("state") != "state-1" || q.Get("code") == "" {
		t.Fatalf("callback %v", q)
	}
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("token exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: op.ClientID}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	if idt.Subject != testservers.OPAnne.ID || idt.Nonce != "nonce-1" {
		t.Fatalf("ID token sub %q nonce %q", idt.Subject, idt.Nonce)
	}
	ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := ui.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims["preferred_username"] != testservers.OPAnne.Username || claims["phone_number"] != testservers.OPAnne.Phone ||
		claims["family_name"] != testservers.OPAnne.LastName {
		t.Fatalf("userinfo %v", claims)
	}
	// The code is single-use.
	if _, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); err == nil {
		t.Fatal("a code was redeemed twice")
	}
}

// TestBackends: the servers make bench starts outside a test
// (internal/cmd/testservers) are the tests' own, and answer.
func TestBackends(t *testing.T) {
	uri := testservers.FerretDB(t) // skips (or fails under require) as the tests do
	endpoint, _, _ := testservers.MinIO(t)
	gotURI, gotEndpoint, key, secret, err := testservers.Backends()
	if err != nil {
		t.Fatal(err)
	}
	if gotURI != uri || gotEndpoint != endpoint {
		t.Fatalf("Backends: %s, %s; the tests' servers: %s, %s", gotURI, gotEndpoint, uri, endpoint)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := minio.New(gotEndpoint, &minio.Options{Creds: credentials.NewStaticV4(key, secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListBuckets(ctx); err != nil {
		t.Fatalf("MinIO with Backends' credentials: %v", err)
	}
}
