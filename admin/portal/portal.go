// Package portal is the server-rendered admin portal (Administrativ
// Adgang in the browser) under /admin/: html/template pages with embedded
// assets, forms that work without JavaScript, password and OpenID Connect
// logins. It is a client of package admin: every change goes through
// admin.Service, which validates and records it, and every page and form
// action is guarded by a permission decided by the same rbac.Enforcer as
// the API. The service knows nothing of the portal.
package portal

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/posthub/posthub/admin"
	"github.com/posthub/posthub/api/status"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/limit"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/rbac/oidc"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// loginCookie carries the pre-session nonce the login form's CSRF token is
// bound to (login CSRF). Like every cookie of the portal it is named
// __Host- over TLS (rbac.HostCookie), so another host of the domain cannot
// plant its own.
const loginCookie = "posthub_login"

// Portal is the server-rendered admin portal under /admin/: html/template
// pages with embedded assets, forms that work without JavaScript, every
// page and form action guarded by a permission (Pages) decided by the same
// rbac.Enforcer as the API.
type Portal struct {
	Svc *admin.Service
	// Store is what the pages read besides the service (hub.Store has it).
	Store    Store
	Sessions *rbac.Sessions
	// Secure forces the Secure flag on cookies (behind a TLS-terminating proxy).
	Secure bool
	// OIDC, when set, offers its portal providers on the login page.
	OIDC *oidc.RP
	// NoPasswords switches local password logins off (OIDC only).
	NoPasswords bool
	// PublicURL is the hub's external base URL, for the redirect URI a
	// provider sends the browser back to ("" : the request's host).
	PublicURL string
	Log       *slog.Logger

	mux   *http.ServeMux
	tmpl  map[string]*template.Template
	pages []PageRoute
}

// Store is what the portal's pages read directly: organisations and their
// systems and contact structure, to show them. Every change goes through
// the admin service.
type Store interface {
	GetOrg(ctx context.Context, cvr string) (hub.Organisation, error)
	ListOrgs(ctx context.Context) ([]hub.Organisation, error)
	ListSystems(ctx context.Context, org string) ([]hub.System, error)
	ListContactGroups(ctx context.Context, org string) ([]hub.ContactGroup, error)
	ListContactPoints(ctx context.Context, org string) ([]hub.ContactPoint, error)
	ListRoutingRules(ctx context.Context, org string) ([]hub.RoutingRule, error)
}

// PageRoute is one portal page or form action and the permission it needs
// ("" for public pages, rbac.Self for any logged-in user).
type PageRoute struct {
	Method, Path string
	Perm         rbac.Perm
	Public       bool
}

// New builds the portal over the admin service.
func New(svc *admin.Service, store Store, sessions *rbac.Sessions, log *slog.Logger) *Portal {
	if log == nil {
		log = slog.Default()
	}
	p := &Portal{Svc: svc, Store: store, Sessions: sessions, Log: log, mux: http.NewServeMux(), tmpl: map[string]*template.Template{}}
	layout := template.Must(template.ParseFS(templateFS, "templates/layout.html"))
	for _, name := range []string{"login", "loggedout", "home", "org", "systems", "contacts", "users", "statistics", "events", "messages", "error"} {
		t := template.Must(layout.Clone())
		if name == "error" {
			template.Must(t.Parse(`{{define "content"}}<p><a href="/admin/">Back to the start page</a></p>{{end}}`))
		} else {
			template.Must(t.ParseFS(templateFS, "templates/"+name+".html"))
		}
		p.tmpl[name] = t
	}
	assets, _ := fs.Sub(assetFS, "assets")
	p.mux.Handle("GET /admin/assets/", http.StripPrefix("/admin/assets/", http.FileServerFS(assets)))
	p.pages = append(p.pages, PageRoute{Method: "GET", Path: "/admin/assets/", Public: true})
	p.route("GET /admin/login", "", p.loginPage)
	p.route("POST /admin/login", "", p.login)
	p.route("POST /admin/logout", rbac.Self, p.logout)
	p.route("GET /admin/oidc/{provider}/login", "", p.oidcStart)
	p.route("GET "+CallbackPath, "", p.oidcCallback)
	p.route("GET /admin/{$}", rbac.Self, p.home)
	p.route("POST /admin/orgs", rbac.OrgsCreate, p.createOrg)
	p.route("GET /admin/orgs/{org}/{$}", rbac.OrgsRead, p.orgPage)
	p.route("GET /admin/orgs/{org}/systems", rbac.SystemsRead, p.systemsPage)
	p.route("POST /admin/orgs/{org}/systems", rbac.SystemsWrite, p.registerSystem)
	p.route("POST /admin/orgs/{org}/systems/{id}/{action}", rbac.SystemsWrite, p.systemAction)
	p.route("GET /admin/orgs/{org}/contacts", rbac.ContactsRead, p.contactsPage)
	p.route("POST /admin/orgs/{org}/contact-points", rbac.ContactsWrite, p.createContactPoint)
	p.route("POST /admin/orgs/{org}/contact-points/{id}/delete", rbac.ContactsWrite, p.deleteContactPoint)
	p.route("POST /admin/orgs/{org}/contact-groups", rbac.ContactsWrite, p.createContactGroup)
	p.route("POST /admin/orgs/{org}/routing-rules", rbac.ContactsWrite, p.createRule)
	p.route("GET /admin/orgs/{org}/users", rbac.UsersRead, p.usersPage)
	p.route("POST /admin/orgs/{org}/users", rbac.UsersWrite, p.createUser)
	p.route("POST /admin/orgs/{org}/grants", rbac.UsersWrite, p.grant)
	p.route("GET /admin/orgs/{org}/statistics", rbac.StatisticsRead, p.statisticsPage)
	p.route("GET /admin/orgs/{org}/events", rbac.EventLogRead, p.eventsPage)
	p.route("GET /admin/orgs/{org}/messages", rbac.MessagesRecall, p.messagesPage)
	p.route("POST /admin/orgs/{org}/messages/{id}/recall", rbac.MessagesRecall, p.recall)
	return p
}

// Pages lists the portal's pages and actions with their permissions (for
// the permission matrix test).
func (p *Portal) Pages() []PageRoute { return p.pages }

func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	// Forms are read whole into memory (a certificate file included):
	// bounded before anything, the login form too, parses them.
	if !limit.Form(w, r, maxForm) {
		return
	}
	p.mux.ServeHTTP(w, r)
}

// maxForm bounds a posted form, files included.
const maxForm = 256 << 10

// req is one portal request after authentication and authorisation.
type req struct {
	w       http.ResponseWriter
	r       *http.Request
	user    *hub.User
	session rbac.Session
	org     hub.Organisation
	hasOrg  bool
	csrf    string
}

func (q *req) actor() admin.Actor {
	return admin.Actor{Name: "user:" + q.user.ID, Subject: rbac.Subject{User: q.user.ID}}
}

// view is what templates see.
type view struct {
	Title, Notice, Error string
	// Refresh, when set, is a URL the page moves on to at once.
	Refresh string
	User    *hub.User
	CSRF    string
	Org     *hub.Organisation
	Perms   []rbac.Perm
	Data    any
}

// Can reports whether the viewer holds perm in the page's organisation.
func (v view) Can(perm string) bool { return slices.Contains(v.Perms, rbac.Perm(perm)) }

func (p *Portal) route(pattern string, perm rbac.Perm, h func(*req) error) {
	method, path, _ := strings.Cut(pattern, " ")
	p.pages = append(p.pages, PageRoute{Method: method, Path: path, Perm: perm, Public: perm == ""})
	p.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		q := &req{w: w, r: r}
		if perm == "" {
			p.fail(q, h(q))
			return
		}
		ss, u, ok := p.authenticate(r)
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/admin/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			p.render(q, http.StatusUnauthorized, "error", view{Title: "Please log in", Error: "Your session has ended; log in again."})
			return
		}
		q.user, q.session, q.csrf = &u, ss, p.Sessions.CSRFToken(ss)
		if r.Method == http.MethodPost {
			if err := r.ParseMultipartForm(maxForm); err != nil && !errors.Is(err, http.ErrNotMultipart) {
				p.render(q, http.StatusBadRequest, "error", view{Title: "Bad request", Error: "The form could not be read."})
				return
			}
			if !p.Sessions.CheckCSRF(ss, r.PostFormValue("csrf")) {
				p.render(q, http.StatusForbidden, "error", view{Title: "Refused", Error: "The form has expired or did not come from this portal; reload the page and try again."})
				return
			}
		}
		dom := ""
		if org := r.PathValue("org"); org != "" {
			dom = org
		}
		if rbac.IsGlobal(perm) {
			dom = rbac.Global
		}
		if perm != rbac.Self && (dom == "" || !p.Svc.Enforcer.Allowed(rbac.Subject{User: u.ID}, dom, perm)) {
			p.render(q, http.StatusForbidden, "error", view{Title: "Not permitted", Error: fmt.Sprintf("This needs the permission %s in the organisation concerned.", perm)})
			return
		}
		if org := r.PathValue("org"); org != "" {
			o, err := p.Store.GetOrg(r.Context(), org)
			if err != nil {
				p.fail(q, err)
				return
			}
			q.org, q.hasOrg = o, true
		}
		p.fail(q, h(q))
	})
}

func (p *Portal) authenticate(r *http.Request) (rbac.Session, hub.User, bool) {
	v := rbac.CookieValue(r, p.secure(r))
	if v == "" {
		return rbac.Session{}, hub.User{}, false
	}
	ss, u, err := p.Sessions.Authenticate(r.Context(), v)
	if err != nil {
		if hub.ErrorCode(err) != hub.Unauthorized {
			p.Log.Warn("portal session", "error", err)
		}
		return ss, hub.User{}, false
	}
	return ss, u, true
}

func (p *Portal) secure(r *http.Request) bool { return rbac.SecureRequest(r, p.Secure) }

// fail shows err (nil: nothing to do): a POST goes back to its page with
// the message; a GET shows an error page with the code's status.
func (p *Portal) fail(q *req, err error) {
	if err == nil {
		return
	}
	code := hub.ErrorCode(err)
	msg := "Something went wrong; the operator can find it in the log."
	var he *hub.Error
	if errors.As(err, &he) && code != hub.Internal {
		msg = he.Message
		if len(he.Fields) > 0 && he.Fields[0].Code != "" {
			msg += " (" + he.Fields[0].Code + ")"
		}
	}
	if status.Of(code) >= 500 {
		p.Log.Error("portal", "path", q.r.URL.Path, "error", err)
	}
	if q.r.Method == http.MethodPost && q.hasOrg {
		p.back(q, "", msg)
		return
	}
	p.render(q, status.Of(code), "error", view{Title: "Error", Error: msg})
}

// back redirects (303) to the page a form was on, with a notice or error
// (see redirectWith).
func (p *Portal) back(q *req, notice, errMsg string) {
	target := q.r.Header.Get("Referer")
	u, err := url.Parse(target)
	if err != nil || target == "" || !strings.HasPrefix(u.Path, "/admin/") {
		target = "/admin/"
		if q.hasOrg {
			target = "/admin/orgs/" + q.org.CVR + "/"
		}
		u, _ = url.Parse(target)
	}
	p.redirectWith(q, u.Path, notice, errMsg)
}

// redirectWith redirects (303) to path with a notice or error for the page
// there to show. They travel in the URL vouched for by the session
// (rbac.Sessions.Vouch): render shows only what the hub wrote for this
// session, never a text someone else put in a link (which used to show as
// the hub's own alert, on the login page too).
func (p *Portal) redirectWith(q *req, path, notice, errMsg string) {
	v := url.Values{}
	if notice != "" {
		v.Set("notice", notice)
	}
	if errMsg != "" {
		v.Set("error", errMsg)
	}
	v.Set("vouch", p.Sessions.Vouch(q.session, notice, errMsg))
	http.Redirect(q.w, q.r, path+"?"+v.Encode(), http.StatusSeeOther)
}

func (p *Portal) render(q *req, status int, name string, v view) {
	if v.User == nil {
		v.User = q.user
	}
	v.CSRF = q.csrf
	if q.hasOrg && v.Org == nil {
		o := q.org
		v.Org = &o
		if q.user != nil {
			v.Perms = p.Svc.Enforcer.PermsOf(rbac.Subject{User: q.user.ID}, o.CVR)
		}
	}
	if in := q.r.URL.Query(); q.user != nil && p.Sessions.Vouched(q.session, in.Get("vouch"), in.Get("notice"), in.Get("error")) {
		if v.Notice == "" {
			v.Notice = in.Get("notice")
		}
		if v.Error == "" && status < 400 {
			v.Error = in.Get("error")
		}
	}
	q.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	q.w.Header().Set("Cache-Control", "no-store")
	q.w.WriteHeader(status)
	if err := p.tmpl[name].ExecuteTemplate(q.w, "layout", v); err != nil {
		p.Log.Error("portal template", "page", name, "error", err)
	}
}

func (p *Portal) loginPage(q *req) error {
	p.showLogin(q, http.StatusOK, "")
	return nil
}

// showLogin renders the login page (the providers, and the password form
// unless passwords are off) with a fresh pre-session nonce.
func (p *Portal) showLogin(q *req, status int, errMsg string) {
	n := make([]byte, 16)
	_, _ = rand.Read(n)
	nonce := base64.RawURLEncoding.EncodeToString(n)
	http.SetCookie(q.w, rbac.HostCookie(loginCookie, nonce, "/admin/", p.secure(q.r), http.SameSiteLaxMode, 3600))
	q.csrf = p.Sessions.CSRFToken(rbac.Session{Nonce: nonce})
	p.render(q, status, "login", view{Title: "Log in", Error: errMsg, Data: p.loginData(q.r)})
}

func (p *Portal) login(q *req) error {
	r := q.r
	c, err := r.Cookie(rbac.HostCookieName(loginCookie, p.secure(r)))
	if err != nil || !p.Sessions.CheckCSRF(rbac.Session{Nonce: c.Value}, r.PostFormValue("csrf")) {
		p.showLogin(q, http.StatusForbidden, "The login form expired; try again.")
		return nil
	}
	if p.NoPasswords {
		p.passwordLogin(q, r.PostFormValue("userId"), errPasswordsOff)
		p.render(q, http.StatusForbidden, "error", view{Title: "Refused", Error: errMessage(errPasswordsOff)})
		return nil
	}
	_, ss, v, err := p.Sessions.Login(r.Context(), r.PostFormValue("userId"), r.PostFormValue("password"), p.Sessions.ClientAddr(r))
	p.passwordLogin(q, r.PostFormValue("userId"), err)
	switch code := hub.ErrorCode(err); code {
	case "":
	case hub.Unauthorized:
		p.showLogin(q, http.StatusUnauthorized, "Unknown user or wrong password.")
		return nil
	case hub.RateLimited, hub.Unavailable:
		// Too many failures, or too many logins at once: the form again,
		// with the wait in Retry-After.
		if sec := hub.RetryAfterSeconds(err); sec > 0 {
			q.w.Header().Set("Retry-After", strconv.Itoa(sec))
		}
		p.showLogin(q, status.Of(code), errMessage(err))
		return nil
	default:
		return err
	}
	rbac.SetCookie(q.w, v, ss.Expires.Sub(ss.Issued), p.secure(r))
	http.SetCookie(q.w, rbac.HostCookie(loginCookie, "", "/admin/", p.secure(r), http.SameSiteLaxMode, -1))
	// A password session came from no provider: logout stays here.
	http.SetCookie(q.w, rbac.HostCookie(oidcProviderCookie, "", "/", p.secure(r), http.SameSiteLaxMode, -1))
	http.Redirect(q.w, r, "/admin/", http.StatusSeeOther)
	return nil
}

var errPasswordsOff = oidc.PasswordsOff("log in with your organisation's identity provider.")

// passwordLogin records a password login or its refusal (never the
// password).
func (p *Portal) passwordLogin(q *req, id string, err error) {
	if p.Svc.Events != nil {
		_ = p.Svc.Events.Emit(q.r.Context(), oidc.PasswordLoginEvent("portal", id, err))
	}
}

// issueSession starts a session at the user's current generation (a
// login through a provider) and sets its cookie.
func (p *Portal) issueSession(q *req, u hub.User) error {
	ss, v, err := p.Sessions.Begin(q.r.Context(), u.ID)
	if err != nil {
		return err
	}
	rbac.SetCookie(q.w, v, ss.Expires.Sub(ss.Issued), p.secure(q.r))
	return nil
}

// logout ends the user's sessions (on every instance), then the cookie,
// then — when the session came from a provider that offers it — the
// provider's session (RP-initiated logout).
func (p *Portal) logout(q *req) error {
	if err := p.Sessions.Logout(q.r.Context(), q.user.ID); err != nil {
		return err
	}
	rbac.SetCookie(q.w, "", -1, p.secure(q.r))
	_ = p.Svc.Record(q.r.Context(), q.actor(), oidc.TagLoggedOut, "", map[string]string{"userId": q.user.ID, "via": "portal"})
	if end := p.endAtProvider(q.w, q.r); end != "" {
		// A page, not a redirect: the form-action CSP would stop a form's
		// redirect to the provider's site.
		q.user, q.csrf = nil, ""
		p.render(q, http.StatusOK, "loggedout", view{Title: "Logged out", Refresh: end, Data: end})
		return nil
	}
	http.Redirect(q.w, q.r, "/admin/login", http.StatusSeeOther)
	return nil
}

func (p *Portal) home(q *req) error {
	ctx := q.r.Context()
	sub := rbac.Subject{User: q.user.ID}
	var orgs []hub.Organisation
	if p.Svc.Enforcer.Allowed(sub, rbac.Global, rbac.OrgsList) {
		all, err := p.Store.ListOrgs(ctx)
		if err != nil {
			return err
		}
		orgs = all
	} else {
		for _, d := range p.Svc.Enforcer.Domains(q.user.ID) {
			if o, err := p.Store.GetOrg(ctx, d); err == nil {
				orgs = append(orgs, o)
			}
		}
	}
	p.render(q, http.StatusOK, "home", view{Title: "Administrativ Adgang", Data: map[string]any{
		"Orgs": orgs, "Grants": p.Svc.Enforcer.Grants("", q.user.ID), "CanCreate": p.Svc.Enforcer.Allowed(sub, rbac.Global, rbac.OrgsCreate)}})
	return nil
}

func (p *Portal) createOrg(q *req) error {
	f := q.r.PostFormValue
	o, err := p.Svc.CreateOrg(q.r.Context(), q.actor(), hub.Organisation{CVR: strings.TrimSpace(f("cvr")), Name: f("name"),
		Kind: hub.OrgKind(f("kind")), Setup: hub.Setup(f("setup"))})
	if err != nil {
		p.redirectWith(q, "/admin/", "", errMessage(err))
		return nil
	}
	p.redirectWith(q, "/admin/orgs/"+o.CVR+"/", "Organisation created.", "")
	return nil
}

func errMessage(err error) string {
	var he *hub.Error
	if errors.As(err, &he) && he.Code != hub.Internal {
		if len(he.Fields) > 0 {
			return he.Message + " (" + he.Fields[0].Code + ")"
		}
		return he.Message
	}
	return "internal error"
}

func (p *Portal) orgPage(q *req) error {
	p.render(q, http.StatusOK, "org", view{Title: q.org.Name})
	return nil
}

type issuedToken struct {
	System hub.System
	Token  string
}

func (p *Portal) systemsPage(q *req) error { return p.showSystems(q, nil) }

func (p *Portal) showSystems(q *req, tok *issuedToken) error {
	ss, err := p.Store.ListSystems(q.r.Context(), q.org.CVR)
	if err != nil {
		return err
	}
	p.render(q, http.StatusOK, "systems", view{Title: "Systems", Data: map[string]any{"Systems": ss, "Token": tok},
		Notice: map[bool]string{true: "Done."}[tok != nil]})
	return nil
}

func (p *Portal) registerSystem(q *req) error {
	f := q.r.PostFormValue
	sp := hub.SystemSpec{Name: f("name"), Role: hub.SystemRole(f("role"))}
	if sp.Role == hub.RecipientSystem {
		sp.Mailbox, sp.MemoVersion = hub.MailboxKind(f("mailbox")), f("memoVersion")
	}
	sys, tok, err := p.Svc.RegisterSystem(q.r.Context(), q.actor(), q.org.CVR, sp)
	if err != nil {
		return err
	}
	return p.showSystems(q, &issuedToken{System: sys, Token: tok})
}

func (p *Portal) systemAction(q *req) error {
	ctx, a, org, id := q.r.Context(), q.actor(), q.org.CVR, q.r.PathValue("id")
	switch q.r.PathValue("action") {
	case "default":
		if _, err := p.Svc.MakeDefault(ctx, a, org, id); err != nil {
			return err
		}
		p.back(q, "The default receiver system is changed.", "")
	case "renew":
		sys, tok, err := p.Svc.RenewToken(ctx, a, org, id)
		if err != nil {
			return err
		}
		return p.showSystems(q, &issuedToken{System: sys, Token: tok})
	case "deactivate":
		if _, err := p.Svc.Deactivate(ctx, a, org, id); err != nil {
			return err
		}
		p.back(q, "The system is deactivated.", "")
	case "certificate":
		file, _, err := q.r.FormFile("certificate")
		if err != nil {
			return invalid("certificate", "certificate", "certificate.missing", "choose a certificate file", "")
		}
		defer file.Close()
		b, err := io.ReadAll(io.LimitReader(file, 64<<10))
		if err != nil {
			return err
		}
		if _, err := p.Svc.UploadCertificate(ctx, a, org, id, b); err != nil {
			return err
		}
		p.back(q, "The client certificate is registered.", "")
	default:
		return hub.Errorf(hub.NotFound, "no such action")
	}
	return nil
}

func (p *Portal) contactsPage(q *req) error {
	ctx, org := q.r.Context(), q.org.CVR
	ss, err := p.Store.ListSystems(ctx, org)
	if err != nil {
		return err
	}
	names := map[string]string{}
	var receivers []hub.System
	for _, s := range ss {
		names[s.ID] = s.Name
		if s.Role == hub.RecipientSystem && s.Active {
			receivers = append(receivers, s)
		}
	}
	groups, err := p.Store.ListContactGroups(ctx, org)
	if err != nil {
		return err
	}
	points, err := p.Store.ListContactPoints(ctx, org)
	if err != nil {
		return err
	}
	rules, err := p.Store.ListRoutingRules(ctx, org)
	if err != nil {
		return err
	}
	p.render(q, http.StatusOK, "contacts", view{Title: "Contact structure", Data: map[string]any{
		"Groups": groups, "Points": points, "Rules": rules, "Receivers": receivers, "SystemNames": names}})
	return nil
}

func (p *Portal) createContactPoint(q *req) error {
	f := q.r.PostFormValue
	cp := hub.ContactPoint{OrgCVR: q.org.CVR, Name: f("name"), SystemID: f("systemId"), Active: true, Visible: true}
	if g := f("groupId"); g != "" {
		cp.GroupIDs = []string{g}
	}
	if c := strings.TrimSpace(f("code")); c != "" {
		cp.Codes = []hub.ContactPointCode{{Type: hub.CodeType(f("codeType")), Code: c}}
	}
	if _, err := p.Svc.PutContactPoint(q.r.Context(), q.actor(), cp); err != nil {
		return err
	}
	p.back(q, "Contact point "+cp.Name+" created.", "")
	return nil
}

func (p *Portal) deleteContactPoint(q *req) error {
	if err := p.Svc.DeleteContactPoint(q.r.Context(), q.actor(), q.org.CVR, q.r.PathValue("id")); err != nil {
		return err
	}
	p.back(q, "Contact point deleted.", "")
	return nil
}

func (p *Portal) createContactGroup(q *req) error {
	g, err := p.Svc.PutContactGroup(q.r.Context(), q.actor(), hub.ContactGroup{OrgCVR: q.org.CVR, Name: q.r.PostFormValue("name")})
	if err != nil {
		return err
	}
	p.back(q, "Contact group "+g.Name+" created.", "")
	return nil
}

func (p *Portal) createRule(q *req) error {
	f := q.r.PostFormValue
	prio, _ := strconv.Atoi(f("priority"))
	if _, err := p.Svc.CreateRule(q.r.Context(), q.actor(), hub.RoutingRule{OrgCVR: q.org.CVR, Priority: prio, Field: f("field"),
		Value: strings.TrimSpace(f("value")), SystemID: f("systemId")}); err != nil {
		return err
	}
	p.back(q, "Routing rule added.", "")
	return nil
}

func (p *Portal) usersPage(q *req) error {
	us, err := p.Svc.UsersOf(q.r.Context(), q.org.CVR)
	if err != nil {
		return err
	}
	// Only what this administrator may grant is offered; the service
	// refuses the rest whatever the form says.
	roles := p.Svc.Grantable(q.actor(), q.org.CVR)
	p.render(q, http.StatusOK, "users", view{Title: "Users and privileges", Data: map[string]any{"Users": us, "Roles": roles}})
	return nil
}

func (p *Portal) createUser(q *req) error {
	f := q.r.PostFormValue
	u, err := p.Svc.CreateUser(q.r.Context(), q.actor(), q.org.CVR, admin.NewUser{ID: strings.TrimSpace(f("id")), Name: f("name"), Email: f("email"), Password: f("password")})
	if err != nil {
		return err
	}
	p.back(q, "User "+u.User.ID+" created; grant a privilege to let them in.", "")
	return nil
}

func (p *Portal) grant(q *req) error {
	f := q.r.PostFormValue
	g := rbac.Grant{User: strings.TrimSpace(f("userId")), Role: f("privilege"), Domain: q.org.CVR}
	if f("action") == "revoke" {
		if err := p.Svc.Revoke(q.r.Context(), q.actor(), g); err != nil {
			return err
		}
		p.back(q, g.Role+" revoked from "+g.User+".", "")
		return nil
	}
	if err := p.Svc.Grant(q.r.Context(), q.actor(), g); err != nil {
		return err
	}
	p.back(q, g.Role+" granted to "+g.User+".", "")
	return nil
}

func (p *Portal) messagesPage(q *req) error {
	ms, err := p.Svc.HeldMessages(q.r.Context(), q.org.CVR, 200)
	if err != nil {
		return err
	}
	p.render(q, http.StatusOK, "messages", view{Title: "Recall held messages", Data: map[string]any{"Messages": ms}})
	return nil
}

func (p *Portal) recall(q *req) error {
	if _, err := p.Svc.Recall(q.r.Context(), q.actor(), q.org.CVR, strings.ToLower(q.r.PathValue("id"))); err != nil {
		return err
	}
	p.back(q, "The message is recalled.", "")
	return nil
}

func (p *Portal) eventsPage(q *req) error {
	v := q.r.URL.Query()
	data := map[string]any{"Tag": v.Get("eventTag"), "Actor": v.Get("actor"), "MessageUUID": v.Get("messageUUID"), "From": v.Get("from"),
		"KnownTags": []string{"SYSTEM_CREATED", "SYSTEM_CHANGED", "CONTACT_POINT_CHANGED", "CONTACT_GROUP_CHANGED", "ROUTING_RULE_CHANGED",
			"PRIVILEGES_GRANTED", "PRIVILEGES_REVOKED", "IDENTITY_CREATED", "MEMO_SEND_RECEIVED", "MEMO_MESSAGE_RECALLED",
			"MESSAGE_RECALLED_BY_ADMINISTRATOR", "STATISTICS_READ", "ORGANISATION_CREATED"}}
	if len(v) > 0 {
		eq := hub.EventQuery{Actor: strings.TrimSpace(v.Get("actor")), MessageUUID: strings.TrimSpace(v.Get("messageUUID")), Descending: true, Limit: 200}
		if t := strings.TrimSpace(v.Get("eventTag")); t != "" {
			eq.Tags = []string{t}
		}
		if f := v.Get("from"); f != "" {
			t, err := time.Parse("2006-01-02", f)
			if err != nil {
				return invalid("events", "from", "events.date.invalid", "dates are YYYY-MM-DD", f)
			}
			eq.From = t
		}
		evs, err := p.Svc.SearchEvents(q.r.Context(), q.actor(), q.org.CVR, eq)
		if err != nil {
			return err
		}
		data["Events"], data["Searched"] = evs, true
	}
	p.render(q, http.StatusOK, "events", view{Title: "Event log", Data: data})
	return nil
}

// bar is one bar of a server-rendered SVG chart.
type bar struct {
	Label              string
	Value, Bytes       int64
	X, Y, W, H, LX, LY float64
}

type chart struct {
	ID, Title, Dim                 string
	Left, Width, Height, Base, Top float64
	Max                            int64
	Bars                           []bar
}

func newChart(id, title, dim string, rows []admin.StatsRow, label func(admin.StatsRow) string) chart {
	const left, top, plotH, bottom = 110.0, 12.0, 180.0, 100.0
	agg := map[string]*bar{}
	var order []string
	for _, r := range rows {
		l := label(r)
		if agg[l] == nil {
			agg[l] = &bar{Label: l}
			order = append(order, l)
		}
		agg[l].Value += r.Count
		agg[l].Bytes += r.Bytes
	}
	sort.Strings(order)
	c := chart{ID: id, Title: title, Dim: dim, Left: left, Height: top + plotH + bottom, Base: top + plotH, Top: top + 4}
	for _, l := range order {
		if agg[l].Value > c.Max {
			c.Max = agg[l].Value
		}
	}
	w := 800.0 / float64(max(len(order), 1))
	w = min(max(w, 3), 48)
	c.Width = left + w*float64(len(order)) + 20
	for i, l := range order {
		b := *agg[l]
		h := 0.0
		if c.Max > 0 {
			h = plotH * float64(b.Value) / float64(c.Max)
		}
		b.X, b.W, b.H, b.Y = left+float64(i)*w+1, w-2, h, top+plotH-h
		b.LX, b.LY = b.X+b.W/2, top+plotH+12
		c.Bars = append(c.Bars, b)
	}
	return c
}

func (p *Portal) statisticsPage(q *req) error {
	v := q.r.URL.Query()
	ctx, org := q.r.Context(), q.org.CVR
	base := admin.StatsQuery{Org: org, From: v.Get("from"), To: v.Get("to"), Period: v.Get("period")}
	if v.Get("format") == "csv" {
		sq := base
		sq.GroupBy = strings.Split(v.Get("groupBy"), ",")
		st, err := p.Svc.Statistics(ctx, sq)
		if err != nil {
			return err
		}
		_ = p.Svc.Record(ctx, q.actor(), "STATISTICAL_REPORT_DOWNLOADED", org, map[string]string{"from": st.From, "to": st.To})
		q.w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		q.w.Header().Set("Content-Disposition", `attachment; filename="statistics-`+org+`.csv"`)
		return st.WriteCSV(q.w)
	}
	st, err := p.Svc.Statistics(ctx, base)
	if err != nil {
		return err
	}
	total := base
	total.From, total.To, total.Period = st.From, st.To, "total"
	total.GroupBy = []string{admin.ByMessageType, admin.ByChannel, admin.BySystem, admin.ByDirection}
	byDim, err := p.Svc.Statistics(ctx, total)
	if err != nil {
		return err
	}
	names := map[string]string{}
	if ss, err := p.Store.ListSystems(ctx, org); err == nil {
		for _, s := range ss {
			names[s.ID] = s.Name
		}
	}
	_ = p.Svc.Record(ctx, q.actor(), "STATISTICS_READ", org, map[string]string{"from": st.From, "to": st.To, "via": "portal"})
	charts := []chart{
		newChart("chart-period", "Messages per "+st.Period, st.Period, st.Rows, func(r admin.StatsRow) string { return r.Period }),
		newChart("chart-type", "Messages per message type", "Message type", byDim.Rows, func(r admin.StatsRow) string { return r.MessageType }),
		newChart("chart-channel", "Messages per channel", "Channel", byDim.Rows, func(r admin.StatsRow) string { return r.Direction + " " + r.Channel }),
		newChart("chart-system", "Messages per system", "System", byDim.Rows, func(r admin.StatsRow) string {
			if n := names[r.SystemID]; n != "" {
				return n
			}
			if r.SystemID == "" {
				return "(none)"
			}
			return r.SystemID
		}),
	}
	p.render(q, http.StatusOK, "statistics", view{Title: "Statistics", Data: map[string]any{"Stats": st, "Charts": charts,
		"Periods": []string{"day", "month", "year", "total"}}})
	return nil
}

// invalid refuses one form field.
func invalid(resource, field, code, msg, value string) error {
	return &hub.Error{Code: hub.Invalid, Message: msg, Fields: []hub.FieldError{{Resource: resource, Field: field, Code: code, Message: msg, RejectedValue: value}}}
}
