package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/posthub/posthub/admin"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
)

// Access is the coarse access level routes declared before permissions
// existed. A route needs Access Public, or a Perm; a route that has
// neither panics at start-up. Access levels map to permissions (routePerm):
// Sender → memos:send, Recipient → mailbox:fetch, Operator and Scraper →
// hub:operate.
type Access string

const (
	// Public routes need no credentials (health, OpenAPI, login).
	Public Access = "public"
	// Sender routes need a sender system's token.
	Sender Access = "sender"
	// Recipient routes need a receiver system's token.
	Recipient Access = "recipient"
	// Operator routes need the hub operator's token (or a user holding HUB_OPERATOR).
	Operator Access = "operator"
	// Authenticated routes take any authenticated caller (the handler
	// scopes what it answers to the caller's organisation).
	Authenticated Access = "authenticated"
	// Scraper is /metrics: the metrics token (Config.MetricsTokenHash)
	// when one is set, else as Operator (hub:operate).
	Scraper Access = "scraper"
)

// initAuth sets up authorisation and the admin service from the deps.
func (s *Server) initAuth(d *Deps) {
	if d.Enforcer == nil && d.Store != nil {
		en, err := rbac.New(context.Background(), d.Store, rbac.Options{Log: d.Log})
		if err != nil {
			panic("api: loading policies: " + err.Error())
		}
		d.Enforcer = en
	}
	s.enforcer, s.sessions = d.Enforcer, d.Sessions
	s.admin = &admin.Service{Store: d.Store, Registry: d.Registry, Ingest: d.Ingest, Importer: d.Importer, Enforcer: d.Enforcer, Now: d.Now}
	if d.Sessions != nil {
		s.admin.Hasher = d.Sessions.Hasher
	}
	if d.Ingest != nil {
		s.admin.Events = d.Ingest.Events
	}
}

// routePerm is the permission a route requires; public is true for routes
// anyone may call. ok is false for a route that declares neither.
func routePerm(r Route) (perm rbac.Perm, public, ok bool) {
	if r.Perm != "" {
		return r.Perm, false, true
	}
	switch r.Access {
	case Public:
		return "", true, true
	case Sender:
		return rbac.MemosSend, false, true
	case Recipient:
		return rbac.MailboxFetch, false, true
	case Operator, Scraper:
		return rbac.HubOperate, false, true
	case Authenticated:
		return rbac.Self, false, true
	}
	return "", false, false
}

// RoutePerm is routePerm for tests and documentation.
func RoutePerm(r Route) (perm rbac.Perm, public bool) {
	perm, public, _ = routePerm(r)
	return perm, public
}

// Principal is the authenticated caller: the operator token, a system, or
// a human with a session.
type Principal struct {
	// Operator is true for the operator token and for users holding
	// HUB_OPERATOR.
	Operator bool
	System   hub.System
	User     *hub.User
	Session  rbac.Session
}

func (p Principal) String() string {
	switch {
	case p.User != nil:
		return "user:" + p.User.ID
	case p.System.ID != "":
		return "system:" + p.System.ID
	case p.Operator:
		return "operator"
	}
	return "anonymous"
}

// Subject is the principal as rbac decides on it.
func (p Principal) Subject() rbac.Subject {
	switch {
	case p.User != nil:
		return rbac.Subject{User: p.User.ID}
	case p.System.ID != "":
		role := ""
		switch p.System.Role {
		case hub.SenderSystem:
			role = rbac.SenderSystem
		case hub.RecipientSystem:
			role = rbac.RecipientSys
		case hub.ViewerSystem:
			role = rbac.ViewerSystem
		}
		return rbac.Subject{Role: role, Home: p.System.OrgCVR}
	case p.Operator:
		return rbac.Subject{Role: rbac.HubOperator, Home: rbac.Global}
	}
	return rbac.Subject{}
}

// Actor names the principal in the event log.
func (p Principal) Actor() admin.Actor { return admin.Actor{Name: p.String(), Subject: p.Subject()} }

func principal(c *gin.Context) Principal {
	p, _ := c.Get("principal")
	pr, _ := p.(Principal)
	return pr
}

// bearer extracts the API token. Like the national hub, systems send
// "Authorization: Basic <token>"; "Bearer <token>" and standard Basic
// (base64 of "token:" or ":token") are accepted too.
func bearer(h string) (raw, decoded string) {
	scheme, val, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok {
		return "", ""
	}
	val = strings.TrimSpace(val)
	switch strings.ToLower(scheme) {
	case "bearer":
		return val, ""
	case "basic":
		if b, err := base64.StdEncoding.DecodeString(val); err == nil {
			u, p, _ := strings.Cut(string(b), ":")
			if p == "" {
				p = u
			}
			return val, p
		}
		return val, ""
	}
	return "", ""
}

// CSRFHeader carries the session's CSRF token on unsafe API requests made
// with a session cookie.
const CSRFHeader = "X-CSRF-Token"

// OrgHeader chooses the organisation a user acts for on routes without an
// :org path parameter, when the user holds privileges in several.
const OrgHeader = "X-Posthub-Organisation"

// authenticate resolves the caller of a request: an Authorization header
// (the operator token or a system's API token) or, without one, a session
// cookie. Unauthorized when no or unknown credentials are given, or a
// cookie-authenticated unsafe request lacks its CSRF token.
func (s *Server) authenticate(c *gin.Context) (Principal, error) {
	if h := c.GetHeader("Authorization"); h != "" {
		return s.authenticateToken(c, h)
	}
	if s.sessions != nil {
		if v := rbac.CookieValue(c.Request, s.secureCookies(c)); v != "" {
			return s.authenticateSession(c, v)
		}
	}
	return Principal{}, hub.Errorf(hub.Unauthorized, "missing credentials: send Authorization: Basic <api token>, or log in")
}

func (s *Server) authenticateToken(c *gin.Context, h string) (Principal, error) {
	raw, decoded := bearer(h)
	if raw == "" {
		return Principal{}, hub.Errorf(hub.Unauthorized, "missing credentials: send Authorization: Basic <api token>")
	}
	if s.cfg.OperatorTokenHash != "" {
		for _, t := range []string{raw, decoded} {
			if t != "" && subtle.ConstantTimeCompare([]byte(hub.HashToken(t)), []byte(s.cfg.OperatorTokenHash)) == 1 {
				return Principal{Operator: true}, nil
			}
		}
	}
	if s.registry == nil {
		return Principal{}, hub.Errorf(hub.Unauthorized, "unknown API token")
	}
	sys, err := s.registry.Authenticate(c.Request.Context(), raw)
	if hub.ErrorCode(err) == hub.Unauthorized && decoded != "" {
		sys, err = s.registry.Authenticate(c.Request.Context(), decoded)
	}
	if err != nil {
		return Principal{}, err
	}
	if sys.CertFingerprint != "" {
		// A system with a registered client certificate must present it.
		if c.Request.TLS == nil || len(c.Request.TLS.PeerCertificates) == 0 {
			return Principal{}, hub.Errorf(hub.Unauthorized, "this system must authenticate with its client certificate")
		}
		sum := sha256.Sum256(c.Request.TLS.PeerCertificates[0].Raw)
		if !strings.EqualFold(hex.EncodeToString(sum[:]), sys.CertFingerprint) {
			return Principal{}, hub.Errorf(hub.Unauthorized, "the client certificate is not the one registered for this system")
		}
	}
	return Principal{System: sys}, nil
}

func (s *Server) authenticateSession(c *gin.Context, v string) (Principal, error) {
	ss, u, err := s.sessions.Authenticate(c.Request.Context(), v)
	if err != nil {
		return Principal{}, err
	}
	switch c.Request.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		if !s.sessions.CheckCSRF(ss, c.GetHeader(CSRFHeader)) {
			return Principal{}, hub.Errorf(hub.Unauthorized, "a request with a session cookie must carry the session's %s header", CSRFHeader)
		}
	}
	p := Principal{User: &u, Session: ss}
	p.Operator = s.enforcer != nil && s.enforcer.Allowed(p.Subject(), rbac.Global, rbac.HubOperate)
	return p, nil
}

// domain is the rbac domain a request is decided in: Global for global
// permissions, the :org path parameter where the route has one, else the
// caller's own organisation (a system's; a user's from OrgHeader or, when
// it holds privileges in one organisation only, that one, or Global when it
// holds perm globally).
func (s *Server) domain(c *gin.Context, p Principal, perm rbac.Perm, usesOrg bool) string {
	switch {
	case rbac.IsGlobal(perm):
		return rbac.Global
	case usesOrg:
		return c.Param("org")
	case p.System.ID != "":
		return p.System.OrgCVR
	case p.User != nil:
		if o := c.GetHeader(OrgHeader); o != "" {
			return o
		}
		if o := c.Query("organisation"); o != "" {
			return o
		}
		if s.enforcer != nil {
			if ds := s.enforcer.Domains(p.User.ID); len(ds) == 1 {
				return ds[0]
			}
			// A global role (HUB_OPERATOR, AUDITOR) holds its permissions
			// everywhere; no organisation needs choosing for them.
			if s.enforcer.Allowed(p.Subject(), rbac.Global, perm) {
				return rbac.Global
			}
		}
		return ""
	case p.Operator:
		return rbac.Global
	}
	return ""
}

// authorize authenticates the caller and decides the route's permission in
// the request's domain; it fails closed (no enforcer: only Self passes).
func (s *Server) authorize(r Route) gin.HandlerFunc {
	perm, public, ok := routePerm(r)
	if !ok {
		panic("api: route " + r.Method + " " + r.Path + " has no permission (Perm) and no access level")
	}
	if public {
		return func(c *gin.Context) { c.Next() }
	}
	usesOrg := strings.Contains(r.Path, "/:org")
	scraper := r.Access == Scraper
	return func(c *gin.Context) {
		if scraper && s.scrapeToken(c.GetHeader("Authorization")) {
			c.Next()
			return
		}
		p, err := s.authenticate(c)
		if err != nil {
			writeError(c, s.log, err)
			return
		}
		c.Set("principal", p)
		if !s.allowed(c, p, perm, usesOrg) {
			writeError(c, s.log, hub.Errorf(hub.Forbidden, "this route needs the permission %s in the organisation concerned", perm))
			return
		}
		c.Next()
	}
}

func (s *Server) allowed(c *gin.Context, p Principal, perm rbac.Perm, usesOrg bool) bool {
	if perm == rbac.Self {
		return true
	}
	if s.enforcer == nil {
		return false
	}
	dom := s.domain(c, p, perm, usesOrg)
	return dom != "" && s.enforcer.Allowed(p.Subject(), dom, perm)
}
