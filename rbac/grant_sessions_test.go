package rbac_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/storage/mongo"
)

// sessionEnds is a real store that counts the session ends asked of it,
// and fails them while failing is set.
type sessionEnds struct {
	hub.Store
	n       *atomic.Int64
	failing *atomic.Bool
}

var errBumpFailed = errors.New("the session generation could not be written")

func (s sessionEnds) BumpSessionGeneration(ctx context.Context, id string) (uint64, error) {
	if s.failing.Load() {
		return 0, hub.Wrap(hub.Unavailable, errBumpFailed, "bump session generation of %s", id)
	}
	s.n.Add(1)
	return s.Store.BumpSessionGeneration(ctx, id)
}

// grantWorld is two enforcers (two instances) over one real store, both
// counting into ends, and Sessions over the store for the user anne.
type grantWorld struct {
	store   hub.Store
	a, b    *rbac.Enforcer
	s       *rbac.Sessions
	ends    atomic.Int64
	failing atomic.Bool
	log     *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// grantBackends are the real stores the grant tests run on: the embedded
// one, and MongoDB's wire protocol (FerretDB), where each instance has its
// own connection to the shared database.
var grantBackends = []struct {
	name string
	open func(t *testing.T) (first hub.Store, another func() hub.Store)
}{
	{"bolt", func(t *testing.T) (hub.Store, func() hub.Store) {
		s := boltStore(t)
		return s, func() hub.Store { return s } // one process holds a bolt file
	}},
	{"mongo", func(t *testing.T) (hub.Store, func() hub.Store) {
		uri, db := testservers.FerretDB(t), testservers.DatabaseName(t)
		open := func() hub.Store {
			s, err := mongo.Open(context.Background(), mongo.Config{URI: uri, Database: db})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open(), open
	}},
}

func newGrantWorld(t *testing.T, first hub.Store, another func() hub.Store) *grantWorld {
	t.Helper()
	ctx := context.Background()
	w := &grantWorld{store: first, log: &syncBuffer{}}
	if err := first.CreateUser(ctx, hub.User{ID: "anne", Active: true}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(w.log, nil))
	var err error
	if w.a, err = rbac.New(ctx, sessionEnds{first, &w.ends, &w.failing}, rbac.Options{Log: log}); err != nil {
		t.Fatal(err)
	}
	if w.b, err = rbac.New(ctx, sessionEnds{another(), &w.ends, &w.failing}, rbac.Options{Log: log}); err != nil {
		t.Fatal(err)
	}
	w.s = &rbac.Sessions{Key: bytes.Repeat([]byte{7}, 32), Users: first}
	return w
}

// session begins a session of anne at her current generation.
func (w *grantWorld) session(t *testing.T) string {
	t.Helper()
	_, v, err := w.s.Begin(context.Background(), "anne")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (w *grantWorld) live(t *testing.T, v string) bool {
	t.Helper()
	_, _, err := w.s.Authenticate(context.Background(), v)
	if err != nil && !hub.Is(err, hub.Unauthorized) {
		t.Fatal(err)
	}
	return err == nil
}

// TestPrivilegeChangesEndSessionsOnlyWhenTheyChangeSomething: a grant or
// revocation ends the user's sessions when, and only when, it changed the
// stored privileges: a grant answered Conflict (held already, granted by
// another login or administrator) and a revocation answered NotFound
// leave a live session valid.
func TestPrivilegeChangesEndSessionsOnlyWhenTheyChangeSomething(t *testing.T) {
	for _, be := range grantBackends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			first, another := be.open(t)
			w := newGrantWorld(t, first, another)
			held := rbac.Grant{User: "anne", Role: rbac.OrgAdmin, Domain: "11111111"}
			other := rbac.Grant{User: "anne", Role: rbac.SystemManager, Domain: "22222222"}

			v := w.session(t)
			if err := w.a.Grant(ctx, held); err != nil {
				t.Fatal(err)
			}
			if w.live(t, v) {
				t.Fatal("a session begun before a grant that changed something is still live")
			}
			v = w.session(t)
			ends := w.ends.Load()
			// The same grant through the other instance, which has not
			// seen it yet, and through the one that made it.
			for _, en := range []*rbac.Enforcer{w.b, w.a} {
				if err := en.Grant(ctx, held); !hub.Is(err, hub.Conflict) {
					t.Fatalf("a grant held already: %v, want conflict", err)
				}
			}
			if !w.live(t, v) {
				t.Error("a grant answered Conflict ended a live session")
			}
			v = w.session(t)
			if err := w.a.Revoke(ctx, other); !hub.Is(err, hub.NotFound) {
				t.Fatalf("revoking a grant not held: %v, want not_found", err)
			}
			if !w.live(t, v) {
				t.Error("a revocation answered NotFound ended a live session")
			}
			if got := w.ends.Load() - ends; got != 0 {
				t.Errorf("a conflicting grant and a revocation of nothing ended sessions %d times", got)
			}
			if err := w.b.Revoke(ctx, held); err != nil {
				t.Fatal(err)
			}
			if w.live(t, v) {
				t.Error("a session begun before a revocation that changed something is still live")
			}
			if w.b.Allowed(rbac.Subject{User: "anne"}, held.Domain, rbac.SystemsWrite) {
				t.Error("the revoked privilege is still in force on the instance that revoked it")
			}
		})
	}
}

// TestConcurrentIdenticalGrantsEndSessionsOnce: eight identical grants at
// once, through two instances, store the grant once; one is answered nil
// and the rest Conflict, and the user's sessions are ended once — as often
// as something changed.
func TestConcurrentIdenticalGrantsEndSessionsOnce(t *testing.T) {
	for _, be := range grantBackends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			first, another := be.open(t)
			w := newGrantWorld(t, first, another)
			g := rbac.Grant{User: "anne", Role: rbac.OrgAdmin, Domain: "11111111"}
			v := w.session(t)
			const n = 8
			made, conflicts := w.atOnce(t, n, hub.Conflict, func(en *rbac.Enforcer) error { return en.Grant(ctx, g) })
			if made != 1 || conflicts != n-1 {
				t.Fatalf("%d grants made, %d answered Conflict; want 1 and %d", made, conflicts, n-1)
			}
			if got := w.ends.Load(); got != made {
				t.Errorf("%d identical grants, %d of which changed something, ended sessions %d times", n, made, got)
			}
			if w.live(t, v) {
				t.Error("a session begun before the grants is still live")
			}
			if v := w.session(t); !w.live(t, v) {
				t.Error("a session begun after the grants is not live")
			}
		})
	}
}

// TestConcurrentIdenticalRevocationsEndSessionsOnce: eight revocations of
// one held grant at once, through two instances that both see it held:
// one is answered nil and the rest NotFound (RemovePolicy has one winner),
// and the user's sessions are ended once — so a caller logs the
// revocation once.
func TestConcurrentIdenticalRevocationsEndSessionsOnce(t *testing.T) {
	for _, be := range grantBackends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			first, another := be.open(t)
			w := newGrantWorld(t, first, another)
			g := rbac.Grant{User: "anne", Role: rbac.OrgAdmin, Domain: "11111111"}
			if err := w.a.Grant(ctx, g); err != nil {
				t.Fatal(err)
			}
			if err := w.b.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if len(w.b.Grants(g.Domain, g.User)) != 1 {
				t.Fatal("the other instance does not see the grant")
			}
			ends := w.ends.Load()
			const n = 8
			made, notFound := w.atOnce(t, n, hub.NotFound, func(en *rbac.Enforcer) error { return en.Revoke(ctx, g) })
			if made != 1 || notFound != n-1 {
				t.Fatalf("%d revocations made, %d answered NotFound; want 1 and %d", made, notFound, n-1)
			}
			if got := w.ends.Load() - ends; got != 1 {
				t.Errorf("%d identical revocations, one of which changed something, ended sessions %d times", n, got)
			}
		})
	}
}

// TestPrivilegeChangeWhenSessionsCannotBeEnded: the change is written,
// then ending the sessions fails. A grant is answered nil — it is made,
// and in force, and the failure is logged — and the live session keeps
// working (decisions are per request, so it holds the new privilege). A
// revocation is answered Unavailable, saying the privilege is gone: it
// is, here at once, and a retry answers NotFound.
func TestPrivilegeChangeWhenSessionsCannotBeEnded(t *testing.T) {
	for _, be := range grantBackends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			first, another := be.open(t)
			w := newGrantWorld(t, first, another)
			g := rbac.Grant{User: "anne", Role: rbac.OrgAdmin, Domain: "11111111"}
			anne := rbac.Subject{User: "anne"}
			v := w.session(t)
			w.failing.Store(true)
			if err := w.a.Grant(ctx, g); err != nil {
				t.Fatalf("a grant made whose session end failed: %v, want nil", err)
			}
			if !w.a.Allowed(anne, g.Domain, rbac.SystemsWrite) {
				t.Error("the grant is not in force")
			}
			if !strings.Contains(w.log.String(), "sessions could not be ended") {
				t.Errorf("the failed session end is not logged: %q", w.log.String())
			}
			if !w.live(t, v) {
				t.Error("the session ended although ending it failed")
			}
			if err := w.a.Grant(ctx, g); !hub.Is(err, hub.Conflict) {
				t.Errorf("the grant again: %v, want conflict (it was stored)", err)
			}

			err := w.a.Revoke(ctx, g)
			if !hub.Is(err, hub.Unavailable) || !errors.Is(err, errBumpFailed) {
				t.Fatalf("a revocation whose session end failed: %v, want unavailable wrapping the cause", err)
			}
			var he *hub.Error
			if !errors.As(err, &he) || !strings.Contains(he.Message, "no longer holds") {
				t.Errorf("the revocation's error does not say the privilege is revoked: %v", err)
			}
			if w.a.Allowed(anne, g.Domain, rbac.SystemsWrite) || len(w.a.Grants(g.Domain, g.User)) != 0 {
				t.Error("the revocation is not in force")
			}
			w.failing.Store(false)
			if err := w.b.Revoke(ctx, g); !hub.Is(err, hub.NotFound) {
				t.Errorf("the revocation again, on another instance: %v, want not_found (it was stored)", err)
			}
		})
	}
}

// atOnce runs op n times at once, through the two instances in turn, and
// counts the calls answered nil and those answered code; any other answer
// fails the test.
func (w *grantWorld) atOnce(t *testing.T, n int, code hub.Code, op func(*rbac.Enforcer) error) (made, refused int64) {
	t.Helper()
	var ok, no atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		en := []*rbac.Enforcer{w.a, w.b}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			switch err := op(en); {
			case err == nil:
				ok.Add(1)
			case hub.Is(err, code):
				no.Add(1)
			default:
				t.Errorf("answered %v, want nil or %s", err, code)
			}
		}()
	}
	close(start)
	wg.Wait()
	return ok.Load(), no.Load()
}
