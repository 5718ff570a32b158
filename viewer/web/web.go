// Package web is the reference web mailbox: a server-rendered, accessible
// mailbox for citizens and company users that is an ordinary viewing
// client of the hub. Every page is made from calls to the viewer API
// (/apis/v1/mailboxes/...) with the viewing client's API token and a user
// assertion it signs for the logged-in person; it never reads the store,
// so it can do nothing an outside viewing client could not, and the hub —
// not this package — decides whose mailbox a person may open.
//
// Guarantees:
//   - No JavaScript: pages are html/template with one embedded stylesheet,
//     served with a Content-Security-Policy that allows nothing else;
//     every action is a form or a link and works with the keyboard.
//   - The letter itself is the hub's rendered page (strict CSP, no
//     scripts, no remote loads) shown in a sandboxed same-origin frame
//     without allow-scripts, and on a page of its own.
//   - Sessions are HMAC-signed cookies (HttpOnly, SameSite=Strict) naming
//     the person; every POST form carries a CSRF token bound to the
//     session (the login form one bound to a cookie). Over TLS every
//     cookie of the mailbox is Secure and named __Host- with Path=/, so
//     no other host of the domain can plant its own (a session or login
//     flow of an attacker's) in a visitor's browser.
//   - People log in through OpenID providers (NemLog-in with MitID or
//     MitID Erhverv): a citizen by the provider's CPR claim, a company user
//     by its CVR claim and user id (package rbac/oidc verifies the login).
//     Logging out ends the person's mailbox sessions on every instance
//     (Revocations) and, where the provider offers it, at the provider.
//   - The demo login (DemoLogin) asks for no credentials and lets anyone act
//     as any citizen or company user; it is on only for the demo hub and
//     tests, never otherwise.
package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/posthub/posthub/api/paging"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/limit"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/rbac/oidc"
	"github.com/posthub/posthub/viewer"
)

// Prefix is where the mailbox is mounted.
const Prefix = "/mailbox"

const (
	sessionCookie = "posthub_mailbox"
	loginCookie   = "posthub_mailbox_login"
	assertionTTL  = 2 * time.Minute
	sessionTTL    = 2 * time.Hour
	// PageCSP is the policy of the mailbox's own pages: its stylesheet,
	// frames of its own letters, forms to itself, nothing else.
	PageCSP = "default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; form-action 'self'; " +
		"base-uri 'none'; frame-ancestors 'none'"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// DemoPerson is a login choice.
type DemoPerson struct {
	Label string
	// CPR for a citizen; UserID and CVR for a company user.
	CPR, UserID, CVR string
}

// Config is what the mailbox needs to act as a viewing client.
type Config struct {
	// API is the hub's API handler, called in-process over HTTP semantics.
	API http.Handler
	// SystemID and Token identify the viewing-client system.
	SystemID, Token string
	// Key signs user assertions (ed25519.PrivateKey or *ecdsa.PrivateKey),
	// registered with the hub under KeyID.
	Key   any
	KeyID string
	// Audience of the assertions (default "posthub").
	Audience string
	// SessionKey signs sessions (at least 32 bytes; a key of its own is
	// derived from it, so a mailbox cookie is never an admin session).
	SessionKey []byte
	// Secure marks cookies Secure and names them __Host- (behind TLS; a
	// TLS connection or X-Forwarded-Proto: https does so per request).
	Secure bool
	// People are the demo login's choices.
	People []DemoPerson
	// DemoLogin offers the demo login (People, or any CPR or CVR typed
	// in): it asks for no proof, so anyone may act as anyone. Only for the
	// demo hub and tests.
	DemoLogin bool
	// OIDC logs people in through its mailbox providers.
	OIDC *oidc.RP
	// PublicURL is the hub's external base URL, for the redirect URI
	// ("": the request's host).
	PublicURL string
	// Revocations, when set, makes logout end a person's mailbox sessions
	// on every instance.
	Revocations Revocations
	Log         *slog.Logger
	Now         func() time.Time
}

// Mailbox is the web mailbox handler; mount it at Prefix + "/".
type Mailbox struct {
	cfg      Config
	client   *http.Client
	sessions *rbac.Sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
}

// New builds the mailbox.
func New(cfg Config) (*Mailbox, error) {
	if cfg.API == nil || cfg.SystemID == "" || cfg.Token == "" || cfg.Key == nil || cfg.KeyID == "" {
		return nil, errors.New("web mailbox: API, system, token and assertion key are required")
	}
	if len(cfg.SessionKey) < 32 {
		return nil, errors.New("web mailbox: session key must be at least 32 bytes")
	}
	if cfg.Audience == "" {
		cfg.Audience = "posthub"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	mac := hmac.New(sha256.New, cfg.SessionKey)
	mac.Write([]byte("posthub web mailbox sessions"))
	// The API answers in process; a redirect it sends is never followed
	// (it would carry the viewing client's credentials elsewhere).
	client := &http.Client{Transport: handlerTransport{cfg.API},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	m := &Mailbox{cfg: cfg, client: client,
		sessions: &rbac.Sessions{Key: mac.Sum(nil), TTL: sessionTTL, Now: cfg.Now, Generations: mailboxGenerations{cfg.Revocations}}, pages: map[string]*template.Template{}}
	funcs := template.FuncMap{
		"date": func(t time.Time) string { return t.Local().Format("2 Jan 2006 15:04") },
		"size": func(n int64) string {
			switch {
			case n >= 1<<20:
				return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
			case n >= 1<<10:
				return fmt.Sprintf("%d kB", n/(1<<10))
			}
			return fmt.Sprintf("%d B", n)
		},
	}
	layout := template.Must(template.New("layout").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	for _, name := range []string{"login", "list", "letter", "error", "continue"} {
		t := template.Must(layout.Clone())
		m.pages[name] = template.Must(t.ParseFS(templateFS, "templates/"+name+".html"))
	}
	assets, _ := fs.Sub(assetFS, "assets")
	mux := http.NewServeMux()
	mux.Handle("GET "+Prefix+"/assets/", http.StripPrefix(Prefix+"/assets/", http.FileServerFS(assets)))
	mux.HandleFunc("GET "+Prefix+"/{$}", m.home)
	mux.HandleFunc("POST "+Prefix+"/login", m.login)
	mux.HandleFunc("POST "+Prefix+"/logout", m.logout)
	mux.HandleFunc("GET "+Prefix+"/oidc/{provider}/login", m.oidcStart)
	mux.HandleFunc("GET "+CallbackPath, m.oidcCallback)
	box := Prefix + "/box/{owner}"
	msg := box + "/messages/{uuid}"
	mux.HandleFunc("GET "+box+"/{$}", m.list)
	mux.HandleFunc("GET "+msg, m.letter)
	mux.HandleFunc("GET "+msg+"/render", m.render)
	mux.HandleFunc("GET "+msg+"/documents/{doc}/files/{file}", m.file("files", "file", ""))
	mux.HandleFunc("GET "+msg+"/documents/{doc}/actions/{action}/ics", m.file("actions", "action", "/ics"))
	mux.HandleFunc("POST "+msg+"/{op}", m.change)
	m.mux = mux
	return m, nil
}

func (m *Mailbox) now() time.Time {
	if m.cfg.Now != nil {
		return m.cfg.Now()
	}
	return time.Now()
}

func (m *Mailbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", PageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "private, no-store")
	// The mailbox's forms are a few short fields; parsing one reads it
	// whole, so it is bounded first (the login form is anyone's).
	if !limit.Form(w, r, maxForm) {
		return
	}
	m.mux.ServeHTTP(w, r)
}

// maxForm bounds a posted form.
const maxForm = 64 << 10

// The session names the person: "cpr-<CPR>" or "cvr-<CVR>-<user id>"
// (user ids are rbac.ValidUserID, so never '|', which the cookie uses).
func sessionUser(p DemoPerson) string {
	if p.CPR != "" {
		return "cpr-" + p.CPR
	}
	return "cvr-" + p.CVR + "-" + p.UserID
}

func parseSessionUser(s string) (viewer.Person, bool) {
	switch {
	case strings.HasPrefix(s, "cpr-"):
		return viewer.Person{CPR: s[4:]}, digits(s[4:], 10)
	case strings.HasPrefix(s, "cvr-") && len(s) > 14 && s[12] == '-':
		p := viewer.Person{CVR: s[4:12], UserID: s[13:]}
		return p, digits(p.CVR, 8) && rbac.ValidUserID(p.UserID)
	}
	return viewer.Person{}, false
}

func digits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// session returns the logged-in person.
func (m *Mailbox) session(r *http.Request) (rbac.Session, viewer.Person, bool) {
	c, err := m.cookie(r, sessionCookie)
	if err != nil {
		return rbac.Session{}, viewer.Person{}, false
	}
	ss, err := m.sessions.Resume(r.Context(), c.Value)
	if err != nil {
		// Expired, logged out (on any instance), or the generation cannot
		// be read: no session.
		return rbac.Session{}, viewer.Person{}, false
	}
	p, ok := parseSessionUser(ss.User)
	return ss, p, ok
}

// startSession sets the session cookie for p, at its current generation.
func (m *Mailbox) startSession(w http.ResponseWriter, r *http.Request, p DemoPerson) error {
	_, value, err := m.sessions.Begin(r.Context(), sessionUser(p))
	if err != nil {
		return err
	}
	m.setCookie(w, r, sessionCookie, value, int(sessionTTL.Seconds()))
	return nil
}

func (m *Mailbox) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, rbac.HostCookie(name, value, Prefix+"/", m.secure(r), http.SameSiteStrictMode, maxAge))
}

// cookie reads a cookie the mailbox set, under the name it set it by: over
// TLS only the __Host- one, which no other host of the domain can plant.
func (m *Mailbox) cookie(r *http.Request, name string) (*http.Cookie, error) {
	return r.Cookie(rbac.HostCookieName(name, m.secure(r)))
}

// secure reports whether the browser reached the mailbox over TLS (Secure
// configured, a TLS connection, or a TLS-terminating proxy's
// X-Forwarded-Proto), decided as the portal and the API decide.
func (m *Mailbox) secure(r *http.Request) bool { return rbac.SecureRequest(r, m.cfg.Secure) }

// page is what every template gets.
type page struct {
	Title string
	// Refresh, when set, is a URL the page moves on to at once.
	Refresh string
	Person  *viewer.Person
	Owner   string // the mailbox shown
	Kind    string
	CSRF    string
	Notice  string
	Error   string
	Data    any
}

func (m *Mailbox) show(w http.ResponseWriter, status int, name string, p page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := m.pages[name].ExecuteTemplate(w, "layout", p); err != nil {
		m.cfg.Log.Warn("web mailbox: template", "page", name, "error", err)
	}
}

// home is the login page, or the way into the person's mailbox.
func (m *Mailbox) home(w http.ResponseWriter, r *http.Request) {
	if _, p, ok := m.session(r); ok {
		http.Redirect(w, r, boxURL(p), http.StatusSeeOther)
		return
	}
	nonce := make([]byte, 18)
	_, _ = rand.Read(nonce)
	token := base64.RawURLEncoding.EncodeToString(nonce)
	m.setCookie(w, r, loginCookie, token, 900)
	m.show(w, http.StatusOK, "login", page{Title: "Log in to your digital post", CSRF: token, Data: m.loginData()})
}

// loginData is what the login page offers: the providers, and the demo
// login when it is on.
type loginData struct {
	Providers []oidc.Info
	Demo      bool
	People    []DemoPerson
}

func (m *Mailbox) loginData() loginData {
	return loginData{Providers: m.cfg.OIDC.Providers(oidc.Mailbox), Demo: m.cfg.DemoLogin, People: m.cfg.People}
}

func boxURL(p viewer.Person) string {
	if p.CPR != "" {
		return Prefix + "/box/" + p.CPR + "/"
	}
	return Prefix + "/box/" + p.CVR + "/"
}

// login starts a session for the chosen person (a demo login: no
// credentials). The form's token must match the login cookie, so another
// site cannot log a visitor in as someone else.
func (m *Mailbox) login(w http.ResponseWriter, r *http.Request) {
	if !m.cfg.DemoLogin {
		m.fail(w, r, http.StatusForbidden, "The demo login is switched off on this hub; log in with your identity provider.")
		return
	}
	c, err := m.cookie(r, loginCookie)
	if err != nil || c.Value == "" || !hmac.Equal([]byte(c.Value), []byte(r.PostFormValue("csrf"))) {
		m.fail(w, r, http.StatusForbidden, "Your login form expired. Please try again.")
		return
	}
	var p DemoPerson
	switch who := r.PostFormValue("person"); {
	case strings.HasPrefix(who, "cpr-") || strings.HasPrefix(who, "cvr-"):
		if _, ok := parseSessionUser(who); ok {
			if strings.HasPrefix(who, "cpr-") {
				p.CPR = who[4:]
			} else {
				p.CVR, p.UserID = who[4:12], who[13:]
			}
		}
	case r.PostFormValue("cpr") != "":
		p.CPR = strings.TrimSpace(r.PostFormValue("cpr"))
	default:
		p.CVR, p.UserID = strings.TrimSpace(r.PostFormValue("cvr")), strings.TrimSpace(r.PostFormValue("user"))
	}
	if _, ok := parseSessionUser(sessionUser(p)); !ok {
		m.show(w, http.StatusBadRequest, "login", page{Title: "Log in to your digital post", CSRF: c.Value, Data: m.loginData(),
			Error: "Choose a person: a CPR number of 10 digits, or a user id with an 8-digit CVR number."})
		return
	}
	if err := m.startSession(w, r, p); err != nil {
		m.failErr(w, r, err)
		return
	}
	m.setCookie(w, r, loginCookie, "", -1)
	person, _ := parseSessionUser(sessionUser(p))
	http.Redirect(w, r, boxURL(person), http.StatusSeeOther)
}

func (m *Mailbox) logout(w http.ResponseWriter, r *http.Request) {
	ss, _, ok := m.session(r)
	if !ok || !m.sessions.CheckCSRF(ss, r.PostFormValue("csrf")) {
		http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
		return
	}
	if err := m.sessions.Logout(r.Context(), ss.User); err != nil {
		m.failErr(w, r, err)
		return
	}
	m.setCookie(w, r, sessionCookie, "", -1)
	if end := m.endAtProvider(w, r); end != "" {
		// A page, not a redirect: the form-action CSP stops a form's
		// redirect to another site.
		m.show(w, http.StatusOK, "continue", page{Title: "You are logged out", Refresh: end, Data: end})
		return
	}
	http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
}

// fail shows an error page.
func (m *Mailbox) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	p := page{Title: http.StatusText(status), Error: msg}
	if ss, person, ok := m.session(r); ok {
		p.Person, p.CSRF = &person, m.sessions.CSRFToken(ss)
	}
	m.show(w, status, "error", p)
}

// apiError is the hub's error body.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// call makes an API request as the viewing client acting for p.
func (m *Mailbox) call(ctx context.Context, p viewer.Person, method, path string, q url.Values) (*http.Response, error) {
	p.SystemID = m.cfg.SystemID
	assertion, err := viewer.SignAssertion(m.cfg.Key, m.cfg.KeyID, m.cfg.SystemID, m.cfg.Audience, p, m.now(), assertionTTL)
	if err != nil {
		return nil, err
	}
	u := "http://posthub.internal/apis/v1/mailboxes/" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Basic "+m.cfg.Token)
	req.Header.Set("X-User-Assertion", assertion)
	return m.client.Do(req)
}

// callJSON makes an API call and decodes its JSON answer into v; a refusal
// is shown to the user as an error page (and false returned).
func (m *Mailbox) callJSON(w http.ResponseWriter, r *http.Request, p viewer.Person, method, path string, q url.Values, v any) bool {
	resp, err := m.call(r.Context(), p, method, path, q)
	if err != nil {
		m.cfg.Log.Warn("web mailbox: API call", "error", err)
		m.fail(w, r, http.StatusBadGateway, "The hub did not answer. Please try again later.")
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return true // a DELETE: nothing to decode
	}
	if resp.StatusCode != http.StatusOK {
		m.refused(w, r, resp)
		return false
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		m.fail(w, r, http.StatusBadGateway, "The hub's answer could not be read.")
		return false
	}
	return true
}

// refused shows the hub's refusal with its status.
func (m *Mailbox) refused(w http.ResponseWriter, r *http.Request, resp *http.Response) {
	var e apiError
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
	msg := e.Message
	switch resp.StatusCode {
	case http.StatusForbidden:
		msg = "You may not open this mailbox: " + e.Message
	case http.StatusNotFound:
		msg = "There is no such letter in this mailbox."
	case http.StatusUnauthorized:
		msg = "The hub did not accept this mailbox's credentials: " + e.Message
	}
	if msg == "" {
		msg = "The hub refused the request."
	}
	m.fail(w, r, resp.StatusCode, msg)
}

// request is a mailbox request: the person, the mailbox and its kind.
type request struct {
	ss     rbac.Session
	person viewer.Person
	owner  string
	kind   string
	query  url.Values // kind, when given
}

func (m *Mailbox) request(w http.ResponseWriter, r *http.Request) (request, bool) {
	ss, p, ok := m.session(r)
	if !ok {
		http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
		return request{}, false
	}
	// The owner in the URL is passed on as it is: the hub decides whether
	// this person may open that mailbox.
	rq := request{ss: ss, person: p, owner: r.PathValue("owner"), query: url.Values{}}
	if k := r.URL.Query().Get("kind"); k == string(hub.AuthorityPost) || k == string(hub.CVRPost) {
		rq.kind = k
		rq.query.Set("kind", k)
	}
	return rq, true
}

func (rq request) page(m *Mailbox, title string) page {
	return page{Title: title, Person: &rq.person, Owner: rq.owner, Kind: rq.kind, CSRF: m.sessions.CSRFToken(rq.ss)}
}

func (rq request) path(rest string) string { return url.PathEscape(rq.owner) + rest }

// listData is the inbox/archive page.
type listData struct {
	Folder     string
	UnreadOnly bool
	Letters    []viewer.Letter
	Next       string
	Folders    []folderLink
}

type folderLink struct {
	Name, Label, URL string
	Current          bool
}

var folderLabels = []struct{ name, label string }{{"INBOX", "Inbox"}, {"ARCHIVE", "Archive"}, {"DELETED", "Deleted"}}

func (m *Mailbox) list(w http.ResponseWriter, r *http.Request) {
	rq, ok := m.request(w, r)
	if !ok {
		return
	}
	in := r.URL.Query()
	folder := strings.ToUpper(in.Get("folder"))
	if folder == "" {
		folder = "INBOX"
	}
	q := url.Values{"folder": {folder}, "size": {"25"}}
	for k, v := range rq.query {
		q[k] = v
	}
	if in.Get("unread") == "true" {
		q.Set("unread", "true")
	}
	if a := in.Get("after"); a != "" {
		if _, err := strconv.ParseInt(a, 10, 64); err == nil {
			q.Set("after", a)
		}
	}
	var pg paging.Result[viewer.Letter]
	if !m.callJSON(w, r, rq.person, "GET", rq.path("/messages/"), q, &pg) {
		return
	}
	d := listData{Folder: folder, UnreadOnly: q.Get("unread") == "true", Letters: pg.Content}
	base := Prefix + "/box/" + url.PathEscape(rq.owner) + "/"
	for _, f := range folderLabels {
		v := url.Values{"folder": {f.name}}
		if rq.kind != "" {
			v.Set("kind", rq.kind)
		}
		d.Folders = append(d.Folders, folderLink{Name: f.name, Label: f.label, URL: base + "?" + v.Encode(), Current: f.name == folder})
	}
	if pg.NextCursor != "" {
		v := url.Values{"folder": {folder}, "after": {pg.NextCursor}}
		if rq.kind != "" {
			v.Set("kind", rq.kind)
		}
		if d.UnreadOnly {
			v.Set("unread", "true")
		}
		d.Next = base + "?" + v.Encode()
	}
	title := "Inbox"
	for _, f := range folderLabels {
		if f.name == folder {
			title = f.label
		}
	}
	p := rq.page(m, title)
	p.Data = d
	if n := in.Get("done"); n != "" {
		p.Notice = notices[n]
	}
	m.show(w, http.StatusOK, "list", p)
}

var notices = map[string]string{
	"unread":  "The letter is marked unread.",
	"read":    "The letter is marked read.",
	"archive": "The letter was moved to the archive.",
	"inbox":   "The letter was moved to the inbox.",
	"delete":  "The letter was deleted. The hub keeps it for the retention period; until then you can restore it from Deleted.",
}

// letterData is the letter page.
type letterData struct {
	Letter viewer.Letter
	Render string // URL of the rendered letter
	Kind   string
}

func (m *Mailbox) letter(w http.ResponseWriter, r *http.Request) {
	rq, ok := m.request(w, r)
	if !ok {
		return
	}
	var l viewer.Letter
	if !m.callJSON(w, r, rq.person, "GET", rq.path("/messages/"+url.PathEscape(r.PathValue("uuid"))), rq.query, &l) {
		return
	}
	render := url.PathEscape(l.MessageUUID) + "/render"
	if rq.kind != "" {
		render += "?kind=" + url.QueryEscape(rq.kind)
	}
	p := rq.page(m, l.Label)
	if p.Title == "" {
		p.Title = "Letter"
	}
	p.Data = letterData{Letter: l, Render: render, Kind: rq.kind}
	if n := r.URL.Query().Get("done"); n != "" {
		p.Notice = notices[n]
	}
	m.show(w, http.StatusOK, "letter", p)
}

// render passes the hub's rendered letter on. Its relative links (files,
// .ics) resolve to this mailbox's own proxies. The hub's policy is kept
// except that the mailbox's own pages may frame it.
func (m *Mailbox) render(w http.ResponseWriter, r *http.Request) {
	m.proxy(w, r, "/render", func(h http.Header) {
		csp := strings.Replace(h.Get("Content-Security-Policy"), "frame-ancestors 'none'", "frame-ancestors 'self'", 1)
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Frame-Options", "SAMEORIGIN")
	})
}

// file passes a decoded file (kind "files", named by the path value
// "file") or an .ics (kind "actions", "action", suffix "/ics") on, with
// the hub's headers.
func (m *Mailbox) file(kind, name, suffix string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rest := "/documents/" + url.PathEscape(r.PathValue("doc")) + "/" + kind + "/" + url.PathEscape(r.PathValue(name)) + suffix
		m.proxy(w, r, rest, func(http.Header) {})
	}
}

// proxyHeaders are the API response headers a proxied answer keeps.
var proxyHeaders = []string{"Content-Type", "Content-Disposition", "Content-Length", "Content-Security-Policy",
	"X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Resource-Policy", "X-Frame-Options", "Cache-Control"}

// proxy passes the API's answer for the letter's sub-resource rest on.
// The API path is built from the decoded path values, each escaped again,
// never from the request's path: an escaped "/" or ".." in a value must
// not reach another API route with the viewing client's credentials.
func (m *Mailbox) proxy(w http.ResponseWriter, r *http.Request, rest string, adjust func(http.Header)) {
	rq, ok := m.request(w, r)
	if !ok {
		return
	}
	rest = "/messages/" + url.PathEscape(r.PathValue("uuid")) + rest
	q := rq.query
	if d := r.URL.Query().Get("disposition"); d == "inline" {
		q.Set("disposition", d)
	}
	resp, err := m.call(r.Context(), rq.person, "GET", rq.path(rest), q)
	if err != nil {
		m.fail(w, r, http.StatusBadGateway, "The hub did not answer. Please try again later.")
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		m.refused(w, r, resp)
		return
	}
	h := w.Header()
	for _, k := range proxyHeaders {
		h.Del(k)
		if v := resp.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	adjust(h)
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, resp.Body)
}

// change is a POST form on a letter: read, unread, archive, inbox, delete.
func (m *Mailbox) change(w http.ResponseWriter, r *http.Request) {
	rq, ok := m.request(w, r)
	if !ok {
		return
	}
	if !m.sessions.CheckCSRF(rq.ss, r.PostFormValue("csrf")) {
		m.fail(w, r, http.StatusForbidden, "The form expired. Please go back, reload the page and try again.")
		return
	}
	uuid := r.PathValue("uuid")
	msg := rq.path("/messages/" + url.PathEscape(uuid))
	q := url.Values{}
	for k, v := range rq.query {
		q[k] = v
	}
	method, path := "POST", msg
	op := r.PathValue("op")
	switch op {
	case "read", "unread":
		path += "/" + op
	case "archive", "inbox":
		path += "/move"
		q.Set("folder", strings.ToUpper(op))
	case "delete":
		method = "DELETE"
	default:
		m.fail(w, r, http.StatusNotFound, "No such action.")
		return
	}
	var l viewer.Letter
	if !m.callJSON(w, r, rq.person, method, path, q, &l) {
		return
	}
	back := url.Values{"done": {op}}
	if rq.kind != "" {
		back.Set("kind", rq.kind)
	}
	// After "unread" and "delete" the reader is done with the letter: back
	// to the folder it came from; otherwise stay on the letter.
	if op == "unread" || op == "delete" {
		if op == "unread" {
			back.Set("folder", string(l.Folder))
		}
		http.Redirect(w, r, Prefix+"/box/"+url.PathEscape(rq.owner)+"/?"+back.Encode(), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, Prefix+"/box/"+url.PathEscape(rq.owner)+"/messages/"+url.PathEscape(uuid)+"?"+back.Encode(), http.StatusSeeOther)
}
