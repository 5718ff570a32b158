package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/hubtest"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/retrieval"
	"github.com/posthub/posthub/viewer"
)

const (
	ownOrg              = "11111111"
	otherOrg            = "22222222"
	matrixOperatorToken = "ph_matrix-operator"
)

// caller is one principal of the matrix: a role held in ownOrg (or
// globally), and how it authenticates.
type caller struct {
	user    string // users: the id
	role    string
	global  bool
	token   string // systems and the operator token
	cookie  string // users
	csrf    string
	viaUser bool
}

func (c caller) header(req *http.Request) {
	if c.token != "" {
		req.Header.Set("Authorization", "Basic "+c.token)
	}
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: rbac.SessionCookie, Value: c.cookie})
		req.Header.Set(api.CSRFHeader, c.csrf)
	}
}

type matrixHub struct {
	srv      *api.Server
	store    hub.Store
	sessions *rbac.Sessions
	callers  []caller
}

func newMatrixHub(t *testing.T) *matrixHub { return newMatrixHubWith(t, false) }

// newMatrixHubWith builds the matrix hub, with system retrieval, the
// viewer and the event log running when withServices (else their routes
// answer 503).
func newMatrixHubWith(t *testing.T, withServices bool) *matrixHub {
	t.Helper()
	ctx := context.Background()
	fx := hubtest.Open(t)
	store, reg := fx.Store, fx.Registry
	en, err := rbac.New(ctx, store, rbac.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sessions := &rbac.Sessions{Key: bytes.Repeat([]byte{7}, 32), Users: store}
	deps := api.Deps{
		Store: store, Registry: reg, Enforcer: en, Sessions: sessions, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ingest:   &hub.Ingest{Store: store, Router: &hub.Router{Store: store}, Events: hub.StoreEvents{Store: store}},
		Importer: &hub.ContactImporter{Store: store}}
	if withServices {
		deps.Blobs = fx.Blobs
		deps.Retrieval = retrieval.New(retrieval.Config{LeaseTTL: time.Minute, TempDir: fx.Dir},
			retrieval.Deps{Store: store, Blobs: fx.Blobs, Events: hub.StoreEvents{Store: store}})
		t.Cleanup(deps.Retrieval.Wait) // a system-fetch move may outlive the test's requests; before the stores close
		deps.Viewer = &viewer.Service{Store: store, Mailboxes: store}
		deps.Events = eventlog.New(store, eventlog.Options{PollInterval: 20 * time.Millisecond})
		t.Cleanup(func() { _ = deps.Events.Close() })
	}
	srv := api.New(api.Config{OperatorTokenHash: hub.HashToken(matrixOperatorToken), SpoolDir: t.TempDir()}, deps)
	m := &matrixHub{srv: srv, store: store, sessions: sessions}
	fx.Authorities(hub.SetupSystemRetrieval, ownOrg, otherOrg)
	m.callers = append(m.callers, caller{role: rbac.HubOperator, global: true, token: matrixOperatorToken})
	for _, r := range rbac.Roles {
		switch {
		case r.System:
			role := map[string]hub.SystemRole{rbac.SenderSystem: hub.SenderSystem, rbac.RecipientSys: hub.RecipientSystem, rbac.ViewerSystem: hub.ViewerSystem}[r.Name]
			_, tok := fx.System(ownOrg, hub.SystemSpec{Name: r.Name, Role: role})
			m.callers = append(m.callers, caller{role: r.Name, token: tok})
		default:
			id := strings.ToLower(strings.ReplaceAll(r.Name, "_", "-"))
			hash, err := rbac.HashPassword("matrix-password-" + id)
			if err != nil {
				t.Fatal(err)
			}
			if err := store.CreateUser(ctx, hub.User{ID: id, Name: r.Name, PasswordHash: hash, Active: true}); err != nil {
				t.Fatal(err)
			}
			dom := ownOrg
			if r.Global {
				dom = rbac.Global
			}
			if err := en.Grant(ctx, rbac.Grant{User: id, Role: r.Name, Domain: dom}); err != nil {
				t.Fatal(err)
			}
			c := m.login(t, id, "matrix-password-"+id)
			c.user, c.role, c.global, c.viaUser = id, r.Name, r.Global, true
			m.callers = append(m.callers, c)
		}
	}
	return m
}

func (m *matrixHub) login(t *testing.T, id, pw string) caller {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"userId": id, "password": pw})
	req := httptest.NewRequest("POST", "/apis/v1/session", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	m.srv.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("login %s: %d %s", id, rec.Code, rec.Body)
	}
	var s api.Session
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	var cookie string
	for _, c := range rec.Result().Cookies() {
		if c.Name == rbac.SessionCookie {
			cookie = c.Value
		}
	}
	if cookie == "" || s.CSRFToken == "" {
		t.Fatalf("login %s: no cookie or CSRF token", id)
	}
	return caller{cookie: cookie, csrf: s.CSRFToken}
}

// call makes one request as c. A user caller gets a fresh session
// afterwards: the matrix logs out (DELETE /session) and changes
// privileges, which end the user's sessions.
func (m *matrixHub) call(method, path string, c *caller) int {
	return m.ask(httptest.NewRequest(method, path, nil), c).Code
}

// ask is call with a request of the caller's making, answering the
// recorded response.
func (m *matrixHub) ask(req *http.Request, c *caller) *httptest.ResponseRecorder {
	if c != nil {
		c.header(req)
	}
	rec := httptest.NewRecorder()
	m.srv.Handler().ServeHTTP(rec, req)
	if c != nil && c.user != "" {
		gen, err := m.store.SessionGeneration(context.Background(), c.user)
		if err != nil {
			panic(err)
		}
		ss, v := m.sessions.Issue(c.user, gen)
		c.cookie, c.csrf = v, m.sessions.CSRFToken(ss)
	}
	return rec
}

// fill puts org into :org and "x" into every other path parameter.
func fill(path, org string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		switch {
		case p == ":org":
			parts[i] = org
		case strings.HasPrefix(p, ":"), strings.HasPrefix(p, "*"):
			parts[i] = "x"
		}
	}
	return strings.Join(parts, "/")
}

// expected is the permission table's answer: may a caller holding role
// (in ownOrg, or globally) use perm in dom?
func expected(c caller, perm rbac.Perm, dom string) bool {
	if perm == rbac.Self {
		return true
	}
	if !rbac.RoleHas(c.role, perm) {
		return false
	}
	if c.global {
		return true
	}
	if rbac.IsGlobal(perm) {
		return false
	}
	return dom == ownOrg
}

// TestPermissionMatrix asks every route of the table as every role, in its
// own organisation, in another organisation and without credentials. A
// route added later joins automatically. The expectation comes from the
// role → permission table (rbac.Roles); what the hub may never do is let
// an organisation role through in another organisation.
func TestPermissionMatrix(t *testing.T) {
	m := newMatrixHub(t)
	var checked, crossOrgRefused int
	for _, r := range m.srv.Routes() {
		perm, public := api.RoutePerm(r)
		if public {
			continue
		}
		usesOrg := strings.Contains(r.Path, "/:org")
		if got := m.call(r.Method, fill(r.Path, ownOrg), nil); got != http.StatusUnauthorized {
			t.Errorf("%s %s without credentials: %d, want 401", r.Method, r.Path, got)
		}
		for i := range m.callers {
			c := &m.callers[i]
			for _, target := range []string{ownOrg, otherOrg} {
				if !usesOrg && target == otherOrg {
					continue // the domain is the caller's own organisation
				}
				dom := target
				if !usesOrg {
					dom = ownOrg
				}
				want := expected(*c, perm, dom)
				got := m.call(r.Method, fill(r.Path, target), c)
				checked++
				name := fmt.Sprintf("%s %s as %s (perm %s) in %s", r.Method, r.Path, c.role, perm, map[string]string{ownOrg: "own org", otherOrg: "other org"}[target])
				switch {
				case want && (got == http.StatusUnauthorized || got == http.StatusForbidden):
					t.Errorf("%s: refused with %d, want allowed", name, got)
				case !want && got != http.StatusForbidden:
					t.Errorf("%s: %d, want 403", name, got)
				}
				if target == otherOrg && !c.global && got == http.StatusForbidden {
					crossOrgRefused++
				}
				if target == otherOrg && !c.global && got != http.StatusForbidden && perm != rbac.Self {
					t.Errorf("%s: CROSS-ORGANISATION ACCESS (%d)", name, got)
				}
			}
		}
	}
	t.Logf("%d decisions checked over %d routes × %d callers; %d cross-organisation attempts refused", checked, len(m.srv.Routes()), len(m.callers), crossOrgRefused)
	if crossOrgRefused == 0 {
		t.Fatal("no cross-organisation attempt was made")
	}
}

// TestSessionNeedsCSRF: a cookie-authenticated unsafe request without the
// CSRF token is refused; with it, it passes.
func TestSessionNeedsCSRF(t *testing.T) {
	m := newMatrixHub(t)
	var admin caller
	for _, c := range m.callers {
		if c.role == rbac.OrgAdmin {
			admin = c
		}
	}
	path := "/apis/v1/organisations/" + ownOrg + "/contact-groups/"
	body := `{"name":"Skole"}`
	for _, tc := range []struct {
		name string
		csrf string
		want int
	}{{"without token", "", 401}, {"with a wrong token", "nope", 401}, {"with the session's token", admin.csrf, 201}} {
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.AddCookie(&http.Cookie{Name: rbac.SessionCookie, Value: admin.cookie})
		if tc.csrf != "" {
			req.Header.Set(api.CSRFHeader, tc.csrf)
		}
		rec := httptest.NewRecorder()
		m.srv.Handler().ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s: %d, want %d: %s", tc.name, rec.Code, tc.want, rec.Body)
		}
	}
}

// TestGrantRules: global privileges are granted by hub operators only,
// nobody grants to themselves, and a grantor grants only privileges whose
// permissions it holds itself (a user administrator holds no
// systems:write, so it cannot make a system manager).
func TestGrantRules(t *testing.T) {
	m := newMatrixHub(t)
	by := map[string]caller{}
	for _, c := range m.callers {
		by[c.role] = c
	}
	post := func(as caller, body string) (int, string) {
		req := httptest.NewRequest("POST", "/apis/v1/organisations/"+ownOrg+"/privileges/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		as.header(req)
		rec := httptest.NewRecorder()
		m.srv.Handler().ServeHTTP(rec, req)
		var e api.ErrorMessage
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		code := ""
		if len(e.FieldErrors) > 0 {
			code = e.FieldErrors[0].Code
		}
		return rec.Code, code
	}
	ua, op := by[rbac.UserAdmin], by[rbac.HubOperator]
	for _, tc := range []struct {
		name   string
		as     caller
		body   string
		status int
		field  string
	}{
		{"nobody grants to themselves", ua, `{"userId":"organisation-user-administrator","privilege":"ORGANISATION_ADMINISTRATOR"}`, 403, "privilege.grantor.self"},
		{"a global privilege is not granted in an organisation", ua, `{"userId":"statistics-administrator","privilege":"AUDITOR"}`, 400, "privilege.global"},
		{"a grantor grants only permissions it holds", ua, `{"userId":"statistics-administrator","privilege":"SYSTEM_MANAGER"}`, 403, "privilege.grantor.lacks.permissions"},
		{"a grantor grants what it fully holds", ua, `{"userId":"statistics-administrator","privilege":"ORGANISATION_USER_ADMINISTRATOR"}`, 201, ""},
		{"a grant held already conflicts", ua, `{"userId":"statistics-administrator","privilege":"ORGANISATION_USER_ADMINISTRATOR"}`, 409, ""},
		{"the hub operator grants anything", op, `{"userId":"statistics-administrator","privilege":"SYSTEM_MANAGER"}`, 201, ""},
	} {
		if got, field := post(tc.as, tc.body); got != tc.status || field != tc.field {
			t.Errorf("%s: %d %q, want %d %q", tc.name, got, field, tc.status, tc.field)
		}
	}
}

// TestLoginThrottle: after five wrong passwords from one address, that
// address's logins of the account wait a growing delay (429 with
// Retry-After), even with the right password; the account's owner at
// another address logs in as usual.
func TestLoginThrottle(t *testing.T) {
	m := newMatrixHub(t)
	try := func(pw, from string) *httptest.ResponseRecorder {
		b, _ := json.Marshal(map[string]string{"userId": "auditor", "password": pw})
		req := httptest.NewRequest("POST", "/apis/v1/session", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.RemoteAddr = from + ":40000"
		rec := httptest.NewRecorder()
		m.srv.Handler().ServeHTTP(rec, req)
		return rec
	}
	const attacker, owner = "203.0.113.66", "198.51.100.7"
	for i := 0; i < 5; i++ {
		if got := try("wrong-password-123", attacker).Code; got != 401 {
			t.Fatalf("wrong password: %d", got)
		}
	}
	rec := try("matrix-password-auditor", attacker)
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("right password from the guessing address: %d (Retry-After %q), want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if got := try("matrix-password-auditor", owner).Code; got != 200 {
		t.Fatalf("right password from another address: %d, want 200", got)
	}
}
