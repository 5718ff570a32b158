package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/rbac/oidc"
)

// oidcProviders is the -oidc-providers setting for the test provider. The
// example OP asserts only standard claims (in userinfo), so here
// preferred_username is the user id and a citizen's CPR number,
// phone_number stands in for MitID Erhverv's CVR claim and family_name for
// a group claim.
func oidcProviders(t *testing.T, op testservers.OP) string {
	t.Helper()
	b, err := json.Marshal([]map[string]any{
		{"name": "test", "label": "Test IdP", "issuer": op.Issuer, "clientId": op.ClientID, "use": []string{"portal"},
			"scopes": []string{"openid", "profile", "phone"}, "userInfo": true, "userClaim": "preferred_username",
			"organisationClaim": "phone_number", "groupClaim": "family_name",
			"groupPrivileges": []map[string]string{{"group": "statistics", "privilege": "STATISTICS_ADMINISTRATOR", "organisation": orgA}}},
		{"name": "borger", "label": "Test MitID", "issuer": op.Issuer, "clientId": op.ClientID, "use": []string{"mailbox"},
			"scopes": []string{"openid", "profile"}, "userInfo": true, "cprClaim": "preferred_username"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// browserless is a person's browser without the browser: a cookie jar
// that records every URL it was sent to.
type browserless struct {
	t      *testing.T
	client *http.Client
	jar    *cookiejar.Jar
	visits []*url.URL
}

func newBrowserless(t *testing.T) *browserless {
	jar, _ := cookiejar.New(nil)
	b := &browserless{t: t, jar: jar}
	b.client = &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(r *http.Request, via []*http.Request) error {
		b.visits = append(b.visits, r.URL)
		return nil
	}}
	return b
}

func (b *browserless) page(resp *http.Response, err error) (int, string, *url.URL) {
	b.t.Helper()
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Request.URL
}

// oidcLogin logs u in to the hub's portal through the provider and
// returns the final page.
func (b *browserless) oidcLogin(h *testHub, op testservers.OP, u testservers.OPUser) (int, string) {
	b.t.Helper()
	status, _, at := b.page(b.client.Get(h.base + "/admin/oidc/test/login?next=/admin/"))
	if status != 200 || at.Query().Get("authRequestID") == "" {
		b.t.Fatalf("starting the login ended at %s (%d), not the provider's login page", at, status)
	}
	status, body, _ := b.page(op.SubmitLogin(b.client, at, u))
	return status, body
}

// callback is the hub callback URL the provider sent the browser to last.
func (b *browserless) callback() *url.URL {
	for i := len(b.visits) - 1; i >= 0; i-- {
		if b.visits[i].Path == "/admin/oidc/callback" {
			return b.visits[i]
		}
	}
	b.t.Fatal("the provider never sent the browser to the hub's callback")
	return nil
}

func (b *browserless) get(h *testHub, path string) (int, string) {
	b.t.Helper()
	status, body, _ := b.page(b.client.Get(h.base + path))
	return status, body
}

// events are the sealed entries with tag, read with the operator token,
// once want says they are all there (or the deadline passed).
func oidcEvents(t *testing.T, h *testHub, tag string, want func([]map[string]any) bool) []map[string]any {
	t.Helper()
	var res struct {
		Events []map[string]any `json:"events"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		h.mustStatus(h.do("GET", "/apis/v1/events/?size=1000&eventTag="+tag, h.operator, "", nil), 200).json(t, &res)
		if want(res.Events) || time.Now().After(deadline) {
			return res.Events
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func detail(ev map[string]any, k string) string {
	d, _ := ev["eventProperties"].(map[string]any)
	s, _ := d[k].(string)
	return s
}

func hasDetail(evs []map[string]any, kv ...string) bool {
	for _, ev := range evs {
		ok := true
		for i := 0; i+1 < len(kv); i += 2 {
			ok = ok && detail(ev, kv[i]) == kv[i+1]
		}
		if ok {
			return true
		}
	}
	return false
}

// TestOIDCPortalLogin: through the real provider (the example OP of
// zitadel/oidc), a person with a posthub user logs into the portal and
// gets a session the session API accepts, with the privileges posthub
// granted plus the one their group maps to; one with no posthub user, and
// one whose asserted organisation is not their privilege's, get no session
// and a page that says why; a replayed or forged callback is refused; every
// login and refusal is in the event log with provider and subject, and no
// token is.
func TestOIDCPortalLogin(t *testing.T) {
	op := testservers.OpenIDProvider(t)
	h := startHub(t, "-oidc-providers", oidcProviders(t, op))
	h.setupWorld()
	for _, u := range []map[string]any{
		{"id": "anne", "name": "Anne Admin", "privileges": []string{"ORGANISATION_ADMINISTRATOR"}},
		{"id": "carl", "name": "Carl Clerk", "privileges": []string{"RECALL_ADMINISTRATOR"}},
	} {
		org := orgA
		if u["id"] == "carl" {
			org = orgB
		}
		h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/"+org+"/users/", u), 201)
	}

	anne := newBrowserless(t)
	status, body := anne.oidcLogin(h, op, testservers.OPAnne)
	if status != 200 || !strings.Contains(body, "Kommune A") {
		t.Fatalf("anne's login ended with %d: %s", status, body)
	}
	status, body = anne.get(h, "/apis/v1/session")
	var who struct {
		Principal  string `json:"principal"`
		Privileges []struct {
			Privilege, Organisation string
		} `json:"privileges"`
	}
	if status != 200 || json.Unmarshal([]byte(body), &who) != nil || who.Principal != "user:anne" {
		t.Fatalf("the session API on anne's session: %d %s", status, body)
	}
	held := map[string]bool{}
	for _, p := range who.Privileges {
		held[p.Privilege+"@"+p.Organisation] = true
	}
	if !held["ORGANISATION_ADMINISTRATOR@"+orgA] || !held["STATISTICS_ADMINISTRATOR@"+orgA] || len(held) != 2 {
		t.Fatalf("anne holds %v, want her grant and the mapped STATISTICS_ADMINISTRATOR in %s", held, orgA)
	}
	// Acting with the session: a page of her organisation.
	if status, _ := anne.get(h, "/admin/orgs/"+orgA+"/statistics"); status != 200 {
		t.Fatalf("anne's statistics page: %d", status)
	}

	t.Run("the callback is redeemed once", func(t *testing.T) {
		b := newBrowserless(t)
		// Keep the flow cookie the callback clears, as a replayer would.
		status, _, at := b.page(b.client.Get(h.base + "/admin/oidc/test/login"))
		if status != 200 {
			t.Fatalf("start: %d", status)
		}
		hubURL, _ := url.Parse(h.base + "/admin/oidc/")
		flow := b.jar.Cookies(hubURL)
		if status, body, _ := b.page(op.SubmitLogin(b.client, at, testservers.OPAnne)); status != 200 {
			t.Fatalf("login: %d %s", status, body)
		}
		replay := newBrowserless(t)
		replay.jar.SetCookies(hubURL, flow)
		status, body, _ := replay.page(replay.client.Get(b.callback().String()))
		if status != 401 || !strings.Contains(body, "oidc.state.replayed") {
			t.Fatalf("replayed callback: %d %s", status, body)
		}
		if status, _ := replay.get(h, "/apis/v1/session"); status != 401 {
			t.Fatalf("the replay got a session: %d", status)
		}
		forged := *b.callback()
		q := forged.Query()
		q.Set("state", "forged-state")
		forged.RawQuery = q.Encode()
		replay.jar.SetCookies(hubURL, flow)
		if status, body, _ := replay.page(replay.client.Get(forged.String())); status != 401 || !strings.Contains(body, "oidc.state.mismatch") {
			t.Fatalf("forged state: %d %s", status, body)
		}
	})
	for _, c := range []struct {
		name   string
		user   testservers.OPUser
		reason string
	}{
		{"a subject with no posthub user gets no session", testservers.OPBent, "oidc.user.unknown"},
		{"an asserted organisation that is not the privilege's is refused", testservers.OPCarl, "oidc.organisation.mismatch"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newBrowserless(t)
			status, body := b.oidcLogin(h, op, c.user)
			if status != 403 || !strings.Contains(body, c.reason) || !strings.Contains(body, "Test IdP") {
				t.Fatalf("login of %s: %d %s", c.user.Username, status, body)
			}
			if status, _ := b.get(h, "/apis/v1/session"); status != 401 {
				t.Fatalf("%s has a session: %d", c.user.Username, status)
			}
		})
	}

	refused := oidcEvents(t, h, "USER_LOGIN_REFUSED", func(evs []map[string]any) bool {
		return hasDetail(evs, "subject", testservers.OPBent.ID, "reason", "oidc.user.unknown") &&
			hasDetail(evs, "subject", testservers.OPCarl.ID, "reason", "oidc.organisation.mismatch") &&
			hasDetail(evs, "reason", "oidc.state.replayed")
	})
	if !hasDetail(refused, "provider", "test", "subject", testservers.OPBent.ID, "userId", "bent", "reason", "oidc.user.unknown") ||
		!hasDetail(refused, "provider", "test", "subject", testservers.OPCarl.ID, "reason", "oidc.organisation.mismatch") ||
		!hasDetail(refused, "provider", "test", "reason", "oidc.state.replayed") || !hasDetail(refused, "reason", "oidc.state.mismatch") {
		t.Fatalf("refusals in the event log: %v", refused)
	}
	in := oidcEvents(t, h, "USER_LOGGED_IN", func(evs []map[string]any) bool {
		return hasDetail(evs, "subject", testservers.OPAnne.ID)
	})
	if !hasDetail(in, "provider", "test", "subject", testservers.OPAnne.ID, "userId", "anne", "via", "portal") {
		t.Fatalf("logins in the event log: %v", in)
	}
	granted := oidcEvents(t, h, "PRIVILEGES_GRANTED", func(evs []map[string]any) bool {
		return hasDetail(evs, "via", "group mapping")
	})
	if !hasDetail(granted, "userId", "anne", "privilege", "STATISTICS_ADMINISTRATOR", "via", "group mapping", "subject", testservers.OPAnne.ID) {
		t.Fatalf("the mapped grant is not logged: %v", granted)
	}
	// The session API lists the provider, and its logout ends the session
	// and names the provider's end-session URL.
	status, body = anne.get(h, "/apis/v1/session/providers?next=/apis/v1/session")
	var provs struct {
		Providers []map[string]string `json:"providers"`
	}
	if status != 200 || json.Unmarshal([]byte(body), &provs) != nil || len(provs.Providers) != 1 ||
		provs.Providers[0]["loginUrl"] != "/admin/oidc/test/login?next=%2Fapis%2Fv1%2Fsession" {
		t.Fatalf("providers: %d %s", status, body)
	}
	var sess struct {
		CSRFToken string `json:"csrfToken"`
	}
	_, body = anne.get(h, "/apis/v1/session")
	_ = json.Unmarshal([]byte(body), &sess)
	hubURL, _ := url.Parse(h.base + "/")
	oldCookies := anne.jar.Cookies(hubURL)
	req, _ := http.NewRequest("DELETE", h.base+"/apis/v1/session", nil)
	req.Header.Set("X-CSRF-Token", sess.CSRFToken)
	resp, err := anne.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	logout := resp.Header.Get(api.HeaderProviderLogout)
	status, body, _ = anne.page(resp, nil)
	if status != 204 || body != "" || !strings.HasPrefix(logout, strings.TrimSuffix(op.Issuer, "/")+"/end_session?client_id=") {
		t.Fatalf("logout on the session API: %d %q, %s %q", status, body, api.HeaderProviderLogout, logout)
	}
	stale := newBrowserless(t)
	stale.jar.SetCookies(hubURL, oldCookies)
	if status, _ := stale.get(h, "/apis/v1/session"); status != 401 {
		t.Fatalf("the session after logout: %d", status)
	}

	all := h.mustStatus(h.do("GET", "/apis/v1/events/?size=1000", h.operator, "", nil), 200)
	// A JWT's header starts "eyJ"; no token, code or verifier is logged.
	if s := string(all.body); strings.Contains(s, "eyJ") || strings.Contains(s, "id_token") || strings.Contains(s, "code_verifier") {
		t.Fatalf("the event log holds a token: %s", s)
	}
}

// TestOIDCPasswordLoginSwitchedOff: with -password-login=false the portal
// offers only the provider, and password logins on the portal and the
// session API are refused (and logged) even with the right password.
func TestOIDCPasswordLoginSwitchedOff(t *testing.T) {
	op := testservers.OpenIDProvider(t)
	h := startHub(t, "-oidc-providers", oidcProviders(t, op), "-password-login=false")
	h.setupWorld()
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/"+orgA+"/users/",
		map[string]any{"id": "olga", "name": "Olga", "password": "olga-password-123", "privileges": []string{"ORGANISATION_ADMINISTRATOR"}}), 201)
	b := newBrowserless(t)
	status, body := b.get(h, "/admin/login")
	if status != 200 || !strings.Contains(body, "Log in with Test IdP") || strings.Contains(body, `name="password"`) {
		t.Fatalf("login page: %d %s", status, body)
	}
	r := h.do("POST", "/apis/v1/session", "", "application/json", strings.NewReader(`{"userId":"olga","password":"olga-password-123"}`))
	if code, _ := r.errorCode(t); r.status != 403 || code != "forbidden" {
		t.Fatalf("password login on the session API: %d %s", r.status, r.body)
	}
	evs := oidcEvents(t, h, "USER_LOGIN_REFUSED", func(evs []map[string]any) bool { return hasDetail(evs, "reason", "password.off") })
	if !hasDetail(evs, "provider", "password", "userId", "olga", "reason", "password.off") {
		t.Fatalf("refusals: %v", evs)
	}
}

// TestOIDCWebMailboxLogin: outside demo mode the web mailbox offers only
// the provider (the demo login is refused); a citizen logs in through the
// real provider, whose CPR claim names them, sees their own letter and not
// another citizen's, and after logging out the old cookie no longer works.
func TestOIDCWebMailboxLogin(t *testing.T) {
	op := testservers.OpenIDProvider(t)
	h := startHub(t, "-web-mailbox", "-oidc-providers", oidcProviders(t, op))
	w := h.setupWorld()
	mine, body := letterXML(t, memo.Letter{To: citizen, Label: "Brev til borgeren"})
	h.mustStatus(h.send(w.sender, mine, body, ""), 201)
	theirs, body := letterXML(t, memo.Letter{To: smsPerson, Label: "Brev til en anden"})
	h.mustStatus(h.send(w.sender, theirs, body, ""), 201)

	b := newBrowserless(t)
	status, page := b.get(h, "/mailbox/")
	if status != 200 || !strings.Contains(page, "/mailbox/oidc/borger/login") || strings.Contains(page, `name="cpr"`) {
		t.Fatalf("login page: %d %s", status, page)
	}
	status, page, _ = b.page(b.client.PostForm(h.base+"/mailbox/login", url.Values{"cpr": {citizen}}))
	if status != 403 {
		t.Fatalf("the demo login outside demo mode: %d %s", status, page)
	}
	status, _, at := b.page(b.client.Get(h.base + "/mailbox/oidc/borger/login"))
	if status != 200 || at.Query().Get("authRequestID") == "" {
		t.Fatalf("start: %d at %s", status, at)
	}
	status, page, _ = b.page(op.SubmitLogin(b.client, at, testservers.OPCitizen))
	if status != 200 || !strings.Contains(page, "/mailbox/box/"+citizen+"/") {
		t.Fatalf("callback: %d %s", status, page)
	}
	status, page = b.get(h, "/mailbox/box/"+citizen+"/")
	if status != 200 || !strings.Contains(page, "Brev til borgeren") || strings.Contains(page, "Brev til en anden") {
		t.Fatalf("the citizen's mailbox: %d %s", status, page)
	}
	if status, _ := b.get(h, "/mailbox/box/"+smsPerson+"/"); status != 403 {
		t.Fatalf("another citizen's mailbox: %d", status)
	}
	if status, _ := b.get(h, "/mailbox/box/"+smsPerson+"/messages/"+theirs); status != 403 && status != 404 {
		t.Fatalf("another citizen's letter: %d", status)
	}
	// Log out with the session's CSRF token (from the page's logout form),
	// then try the old cookie again.
	hubURL, _ := url.Parse(h.base + "/mailbox/")
	old := b.jar.Cookies(hubURL)
	csrf := between(page, `name="csrf" value="`, `"`)
	status, page, _ = b.page(b.client.PostForm(h.base+"/mailbox/logout", url.Values{"csrf": {csrf}}))
	if status != 200 {
		t.Fatalf("logout: %d %s", status, page)
	}
	replay := newBrowserless(t)
	replay.jar.SetCookies(hubURL, old)
	if status, page := replay.get(h, "/mailbox/box/"+citizen+"/"); status != 200 || strings.Contains(page, "Brev til borgeren") {
		t.Fatalf("the old cookie after logout: %d %s", status, page)
	}
	in := oidcEvents(t, h, "USER_LOGGED_IN", func(evs []map[string]any) bool {
		return hasDetail(evs, "via", "mailbox", "subject", testservers.OPCitizen.ID)
	})
	if !hasDetail(in, "via", "mailbox", "provider", "borger", "subject", testservers.OPCitizen.ID) {
		t.Fatalf("the mailbox login is not logged: %v", in)
	}
	all := h.mustStatus(h.do("GET", "/apis/v1/events/?size=1000&eventTag=USER_LOGGED_IN", h.operator, "", nil), 200)
	if strings.Contains(string(all.body), citizen) {
		t.Fatalf("a login event names the CPR number: %s", all.body)
	}
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return ""
}

// TestOIDCSettings: the providers come as a list in a -config file too;
// switching passwords off without a portal provider, and a web mailbox
// outside demo mode without a way in, refuse to start.
func TestOIDCSettings(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/posthub.json"
	if err := os.WriteFile(file, []byte(`{"oidc-providers": [{"name": "entra", "issuer": "https://login.example/t/v2.0", "clientId": "app"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg serveConfig
	if err := cfg.load(flag.NewFlagSet("t", flag.ContinueOnError), []string{"-config", file}, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	ps, err := oidc.ParseProviders(cfg.OIDCProviders, nil)
	if err != nil || len(ps) != 1 || ps[0].Name != "entra" {
		t.Fatalf("providers from the config file: %v %v", ps, err)
	}
	env := &Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"passwords off without a provider", []string{"-password-login=false"}, "-password-login=false"},
		{"a web mailbox with no way in", []string{"-web-mailbox"}, "-web-mailbox needs a way to log in"},
		{"a provider list that is not valid", []string{"-oidc-providers", `[{"name":"x"}]`}, "-oidc-providers"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := serve(ctx, env, append([]string{"-addr", "127.0.0.1:0", "-data", t.TempDir(), "-log-level", "error"}, c.args...), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("serve: %v, want an error about %s", err, c.want)
			}
		})
	}
}
