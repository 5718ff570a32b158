package rbac_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/storage/mongo"
)

// instance is one hub instance's API over its own connection to the shared
// database, with its own enforcer following the policy stamp.
type instance struct {
	store    *mongo.Store
	enforcer *rbac.Enforcer
	srv      *api.Server
}

const pollInterval = 200 * time.Millisecond

func newInstance(t *testing.T, ctx context.Context, uri, db string) *instance {
	t.Helper()
	store, err := mongo.Open(ctx, mongo.Config{URI: uri, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	en, err := rbac.New(ctx, store, rbac.Options{PollInterval: pollInterval})
	if err != nil {
		t.Fatal(err)
	}
	go en.Run(ctx)
	srv := api.New(api.Config{OperatorTokenHash: hub.HashToken("ph_reload-operator"), SpoolDir: t.TempDir()}, api.Deps{
		Store: store, Registry: &hub.Registry{Store: store}, Enforcer: en, Sessions: &rbac.Sessions{Key: bytes.Repeat([]byte{3}, 32), Users: store},
		Ingest: &hub.Ingest{Store: store, Events: hub.StoreEvents{Store: store}}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return &instance{store: store, enforcer: en, srv: srv}
}

func (in *instance) do(t *testing.T, method, path, body string, auth func(*http.Request)) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	auth(req)
	rec := httptest.NewRecorder()
	in.srv.Handler().ServeHTTP(rec, req)
	return rec
}

// TestPolicyChangeReachesOtherInstance: two hub instances share one
// FerretDB database. A privilege granted through instance A's API lets the
// user in on instance B within the bound (B's poll interval plus one
// policy load), and a revocation on A shuts B's door the same way. A
// privilege change also ends the user's sessions at once, on both
// instances (the session generation is in the store), so the user logs in
// again after each change.
func TestPolicyChangeReachesOtherInstance(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	uri, db := testservers.FerretDB(t), testservers.DatabaseName(t)
	a := newInstance(t, ctx, uri, db)
	b := newInstance(t, ctx, uri, db)
	op := func(r *http.Request) { r.Header.Set("Authorization", "Basic ph_reload-operator") }
	const org = "11111111"
	if rec := a.do(t, "POST", "/apis/v1/organisations/", `{"cvr":"`+org+`","name":"Kommune","kind":"AUTHORITY"}`, op); rec.Code != 201 {
		t.Fatalf("create org: %d %s", rec.Code, rec.Body)
	}
	if rec := a.do(t, "POST", "/apis/v1/organisations/"+org+"/users/", `{"id":"sara","name":"Sara","password":"sara-password-123"}`, op); rec.Code != 201 {
		t.Fatalf("create user: %d %s", rec.Code, rec.Body)
	}
	// Sara logs in on B.
	var cookie *http.Cookie
	login := func() {
		t.Helper()
		rec := b.do(t, "POST", "/apis/v1/session", `{"userId":"sara","password":"sara-password-123"}`, func(*http.Request) {})
		if rec.Code != 200 {
			t.Fatalf("login on B: %d %s", rec.Code, rec.Body)
		}
		for _, c := range rec.Result().Cookies() {
			if c.Name == rbac.SessionCookie {
				cookie = c
			}
		}
	}
	login()
	sara := func(r *http.Request) { r.AddCookie(cookie) }
	systemsOnB := func() int { return b.do(t, "GET", "/apis/v1/organisations/"+org+"/systems/", "", sara).Code }
	if got := systemsOnB(); got != 403 {
		t.Fatalf("before the grant, B answers %d, want 403", got)
	}
	// A liveness bound, not a speed one: the change arrives within the
	// poll interval (200ms) plus a load on FerretDB, logged below; a
	// minute only tells a change that never arrives from a busy machine.
	const bound = time.Minute
	waitFor := func(what string, want int) time.Duration {
		start := time.Now()
		for {
			got := systemsOnB()
			if got == want {
				return time.Since(start)
			}
			if time.Since(start) > bound {
				t.Fatalf("%s: B still answers %d after %v, want %d", what, got, bound, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if rec := a.do(t, "POST", "/apis/v1/organisations/"+org+"/privileges/", `{"userId":"sara","privilege":"SYSTEM_MANAGER"}`, op); rec.Code != 201 {
		t.Fatalf("grant on A: %d %s", rec.Code, rec.Body)
	}
	if got := systemsOnB(); got != 401 {
		t.Fatalf("sara's session on B after a grant on A: %d, want 401 (ended)", got)
	}
	login()
	t.Logf("grant on A in force on B after %v (poll interval %v)", waitFor("grant", 200), pollInterval)
	if rec := a.do(t, "DELETE", "/apis/v1/organisations/"+org+"/privileges/sara/SYSTEM_MANAGER", "", op); rec.Code != 204 {
		t.Fatalf("revoke on A: %d %s", rec.Code, rec.Body)
	}
	if got := systemsOnB(); got != 401 {
		t.Fatalf("sara's session on B after a revocation on A: %d, want 401 (ended)", got)
	}
	login()
	t.Logf("revocation on A in force on B after %v", waitFor("revoke", 403))
	// Both changes are in the event log with their actor.
	var evs []hub.Event
	if err := a.store.ScanEvents(ctx, 0, func(e hub.Event) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	pending, err := a.store.PendingEvents(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	evs = append(evs, pending...)
	var tags []string
	for _, e := range evs {
		if strings.HasPrefix(e.Tag, "PRIVILEGES_") && e.Actor == "operator" {
			tags = append(tags, e.Tag)
		}
	}
	if b, _ := json.Marshal(tags); !strings.Contains(string(b), "PRIVILEGES_GRANTED") || !strings.Contains(string(b), "PRIVILEGES_REVOKED") {
		t.Errorf("privilege events by the operator: %s", b)
	}
}
