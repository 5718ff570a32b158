package portal_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthub/posthub/admin"
	"github.com/posthub/posthub/admin/portal"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/storage/bolt"
)

const (
	ownOrg   = "11111111"
	otherOrg = "22222222"
)

type portalUser struct {
	id     string
	role   string
	global bool
	cookie string
	csrf   string
}

// TestPortalPermissionMatrix asks every page and form action of the portal
// as a user of every role, in its own and in another organisation, and
// without a session; the expectation comes from the role table.
func TestPortalPermissionMatrix(t *testing.T) {
	ctx := context.Background()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "p.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	reg := &hub.Registry{Store: store}
	for _, o := range []string{ownOrg, otherOrg} {
		if _, err := reg.CreateOrg(ctx, hub.Organisation{CVR: o, Name: "Org " + o, Kind: hub.Authority}); err != nil {
			t.Fatal(err)
		}
	}
	en, err := rbac.New(ctx, store, rbac.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sessions := &rbac.Sessions{Key: bytes.Repeat([]byte{9}, 32), Users: store}
	svc := &admin.Service{Store: store, Registry: reg, Enforcer: en, Events: hub.StoreEvents{Store: store},
		Ingest: &hub.Ingest{Store: store, Events: hub.StoreEvents{Store: store}}}
	p := portal.New(svc, store, sessions, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var users []portalUser
	for _, r := range rbac.Roles {
		if r.System {
			continue
		}
		id := strings.ToLower(strings.ReplaceAll(r.Name, "_", "-"))
		if err := store.CreateUser(ctx, hub.User{ID: id, Name: id, Active: true}); err != nil {
			t.Fatal(err)
		}
		dom := ownOrg
		if r.Global {
			dom = rbac.Global
		}
		if err := en.Grant(ctx, rbac.Grant{User: id, Role: r.Name, Domain: dom}); err != nil {
			t.Fatal(err)
		}
		users = append(users, portalUser{id: id, role: r.Name, global: r.Global})
	}
	// login gives u a session at its current generation (logging out
	// ends it, and the matrix posts /admin/logout too).
	login := func(u *portalUser) {
		gen, err := store.SessionGeneration(ctx, u.id)
		if err != nil {
			t.Fatal(err)
		}
		ss, v := sessions.Issue(u.id, gen)
		u.cookie, u.csrf = v, sessions.CSRFToken(ss)
	}
	for i := range users {
		login(&users[i])
	}
	call := func(method, path string, u *portalUser) int {
		var body io.Reader
		if method == "POST" && u != nil {
			body = strings.NewReader(url.Values{"csrf": {u.csrf}}.Encode())
		}
		req := httptest.NewRequest(method, path, body)
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if u != nil {
			req.AddCookie(&http.Cookie{Name: rbac.SessionCookie, Value: u.cookie})
		}
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		return rec.Code
	}
	fill := func(p, org string) string {
		return strings.NewReplacer("{org}", org, "{id}", "x", "{action}", "default", "{$}", "").Replace(p)
	}
	checked := 0
	for _, pg := range p.Pages() {
		if pg.Public {
			continue
		}
		anon := call(pg.Method, fill(pg.Path, ownOrg), nil)
		if (pg.Method == "GET" && anon != http.StatusSeeOther) || (pg.Method == "POST" && anon != http.StatusUnauthorized) {
			t.Errorf("%s %s without a session: %d", pg.Method, pg.Path, anon)
		}
		usesOrg := strings.Contains(pg.Path, "{org}")
		for i := range users {
			u := &users[i]
			for _, target := range []string{ownOrg, otherOrg} {
				if !usesOrg && target == otherOrg {
					continue
				}
				want := pg.Perm == rbac.Self || (rbac.RoleHas(u.role, pg.Perm) && (u.global || (!rbac.IsGlobal(pg.Perm) && target == ownOrg)))
				got := call(pg.Method, fill(pg.Path, target), u)
				login(u)
				checked++
				if want && (got == 401 || got == 403) {
					t.Errorf("%s %s as %s in %s: %d, want allowed", pg.Method, pg.Path, u.role, target, got)
				}
				if !want && got != 403 {
					t.Errorf("%s %s as %s in %s: %d, want 403", pg.Method, pg.Path, u.role, target, got)
				}
			}
		}
	}
	// A form posted without the session's CSRF token is refused.
	req := httptest.NewRequest("POST", "/admin/orgs/"+ownOrg+"/contact-groups", strings.NewReader("name=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: rbac.SessionCookie, Value: users[0].cookie})
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	if rec.Code != 403 {
		t.Errorf("form without CSRF token: %d, want 403", rec.Code)
	}
	t.Logf("%d portal decisions checked over %d pages", checked, len(p.Pages()))
}
