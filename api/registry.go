package api

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/posthub/posthub/admin"
	"github.com/posthub/posthub/admin/portal"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/rbac/oidc"
)

// maxJSON bounds administrative JSON bodies.
const maxJSON = 1 << 20

// decodeJSON reads a JSON body strictly: bounded, unknown fields refused.
func decodeJSON(c *gin.Context, v any) error {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxJSON)
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &hub.Error{Code: hub.TooLarge, Message: "the JSON body is larger than 1 MiB"}
		}
		return hub.InvalidField("request", "body", "json.invalid", "the body is not valid JSON for this resource: "+err.Error(), "")
	}
	return nil
}

// orgParam checks the :org path parameter names an existing organisation.
func (s *Server) orgParam(c *gin.Context) (hub.Organisation, bool) {
	o, err := s.store.GetOrg(c.Request.Context(), c.Param("org"))
	if err != nil {
		writeError(c, s.log, err)
		return o, false
	}
	return o, true
}

// audit records an event by the caller; used by routes outside admin.Service.
func (s *Server) audit(c *gin.Context, tag, org string, detail map[string]string) {
	if s.ingest == nil || s.ingest.Events == nil {
		return
	}
	ev := hub.Event{Tag: tag, Actor: principal(c).String(), Detail: detail}
	if org != "" {
		ev.Orgs = []string{org}
	}
	_ = s.ingest.Events.Emit(c.Request.Context(), ev)
}

// noContent answers a DELETE: 204 No Content, or the error. Every DELETE
// route answers this way (see TestDeleteRoutesAnswerNoContent): the client
// asked for the resource to be gone, so there is nothing to show it; the
// national hub's own DELETEs (DeleteContactSubscription, DeleteReceipts)
// answer 204 too.
func (s *Server) noContent(c *gin.Context, err error) {
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// reply writes v with status, or the error.
func (s *Server) reply(c *gin.Context, status int, v any, err error) {
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.JSON(status, v)
}

func actor(c *gin.Context) admin.Actor { return principal(c).Actor() }

// Session is the answer of login and who-am-I.
type Session struct {
	Principal  string       `json:"principal"`
	User       *hub.User    `json:"user,omitempty"`
	System     *hub.System  `json:"system,omitempty"`
	CSRFToken  string       `json:"csrfToken,omitempty"`
	Privileges []rbac.Grant `json:"privileges"`
	Expires    string       `json:"expires,omitempty"`
}

type loginRequest struct {
	UserID   string `json:"userId"`
	Password string `json:"password"`
}

func (s *Server) secureCookies(c *gin.Context) bool {
	return rbac.SecureRequest(c.Request, s.cfg.SecureCookies)
}

// handleLogin checks a password and sets the session cookie. It takes
// application/json only, which a cross-site form cannot send (login CSRF).
func (s *Server) handleLogin(c *gin.Context) {
	if s.sessions == nil {
		writeError(c, s.log, hub.Errorf(hub.Unavailable, "human login is not configured on this hub"))
		return
	}
	if ct, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type")); ct != "application/json" {
		writeError(c, s.log, hub.InvalidField("request", "Content-Type", "content.type.unsupported", "log in with application/json", ct))
		return
	}
	var req loginRequest
	if err := decodeJSON(c, &req); err != nil {
		writeError(c, s.log, err)
		return
	}
	if s.cfg.NoPasswords {
		err := oidc.PasswordsOff("log in through an OpenID provider (GET /apis/v1/session/providers)")
		s.loginEvent(c, req.UserID, err)
		writeError(c, s.log, err)
		return
	}
	u, ss, v, err := s.sessions.Login(c.Request.Context(), req.UserID, req.Password, s.sessions.ClientAddr(c.Request))
	s.loginEvent(c, req.UserID, err)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	rbac.SetCookie(c.Writer, v, ss.Expires.Sub(ss.Issued), s.secureCookies(c))
	c.JSON(http.StatusOK, Session{Principal: "user:" + u.ID, User: &u, CSRFToken: s.sessions.CSRFToken(ss),
		Privileges: s.enforcer.Grants("", u.ID), Expires: ss.Expires.UTC().Format("2006-01-02T15:04:05Z")})
}

func (s *Server) handleWhoAmI(c *gin.Context) {
	p := principal(c)
	out := Session{Principal: p.String(), Privileges: []rbac.Grant{}}
	switch {
	case p.User != nil:
		out.User = p.User
		out.CSRFToken = s.sessions.CSRFToken(p.Session)
		out.Expires = p.Session.Expires.UTC().Format("2006-01-02T15:04:05Z")
		if g := s.enforcer.Grants("", p.User.ID); g != nil {
			out.Privileges = g
		}
	case p.System.ID != "":
		sys := p.System
		out.System = &sys
		out.Privileges = []rbac.Grant{{Role: p.Subject().Role, Domain: sys.OrgCVR}}
	case p.Operator:
		out.Privileges = []rbac.Grant{{Role: rbac.HubOperator, Domain: rbac.Global}}
	}
	c.JSON(http.StatusOK, out)
}

// HeaderProviderLogout carries, on the answer to DELETE /session, where to
// send the browser to end its session at the OpenID provider too (for a
// session from a provider that offers RP-initiated logout). A header, as
// every DELETE answers 204 without a body.
const HeaderProviderLogout = "X-Posthub-Provider-Logout"

// handleLogout ends the user's sessions on every instance (a replayed
// cookie is refused from now on), then clears the cookie.
func (s *Server) handleLogout(c *gin.Context) {
	if p := principal(c); p.User != nil && s.sessions != nil {
		if err := s.sessions.Logout(c.Request.Context(), p.User.ID); err != nil {
			writeError(c, s.log, err)
			return
		}
		s.audit(c, oidc.TagLoggedOut, "", map[string]string{"userId": p.User.ID, "via": "api"})
	}
	rbac.SetCookie(c.Writer, "", -1, s.secureCookies(c))
	if u := portal.ProviderLogout(s.oidc, c.Writer, c.Request, s.secureCookies(c)); u != "" {
		c.Header(HeaderProviderLogout, u)
	}
	c.Status(http.StatusNoContent)
}

// loginEvent records a password login on the API, or its refusal (never
// the password).
func (s *Server) loginEvent(c *gin.Context, id string, err error) {
	if s.ingest == nil || s.ingest.Events == nil {
		return
	}
	_ = s.ingest.Events.Emit(c.Request.Context(), oidc.PasswordLoginEvent("api", id, err))
}

func (s *Server) handleProviders(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"providers": portal.ProviderLinks(s.oidc, c.Query("next")), "passwordLogin": !s.cfg.NoPasswords})
}

func (s *Server) handlePrivilegeTypes(c *gin.Context) { writeWhole(s, c, rbac.Roles, nil) }

func (s *Server) handleCreateOrg(c *gin.Context) {
	var o hub.Organisation
	if err := decodeJSON(c, &o); err != nil {
		writeError(c, s.log, err)
		return
	}
	o, err := s.admin.CreateOrg(c.Request.Context(), actor(c), o)
	s.reply(c, http.StatusCreated, o, err)
}

func (s *Server) handleListOrgs(c *gin.Context) {
	os, err := s.store.ListOrgs(c.Request.Context())
	writeWhole(s, c, os, err)
}

func (s *Server) handleGetOrg(c *gin.Context) {
	if o, ok := s.orgParam(c); ok {
		c.JSON(http.StatusOK, o)
	}
}

func (s *Server) handleUpdateOrg(c *gin.Context) {
	o, ok := s.orgParam(c)
	if !ok {
		return
	}
	var u admin.OrgUpdate
	if err := decodeJSON(c, &u); err != nil {
		writeError(c, s.log, err)
		return
	}
	if v := ifMatch(c); v != 0 {
		u.Version = v
	}
	o, err := s.admin.UpdateOrg(c.Request.Context(), actor(c), o.CVR, u)
	s.reply(c, http.StatusOK, o, err)
}

// SystemWithToken answers the calls that issue an API token.
type SystemWithToken struct {
	System   hub.System `json:"system"`
	APIToken string     `json:"apiToken"`
}

type systemRequest struct {
	Name            string          `json:"name"`
	Role            hub.SystemRole  `json:"role"`
	Mailbox         hub.MailboxKind `json:"mailbox"`
	Default         bool            `json:"default"`
	Protocol        hub.Protocol    `json:"protocol"`
	Endpoint        string          `json:"endpoint"`
	ReceiptEndpoint string          `json:"receiptEndpoint"`
	MemoVersion     string          `json:"memoVersion"`
}

func (s *Server) handleCreateSystem(c *gin.Context) {
	o, ok := s.orgParam(c)
	if !ok {
		return
	}
	var req systemRequest
	if err := decodeJSON(c, &req); err != nil {
		writeError(c, s.log, err)
		return
	}
	sys, token, err := s.admin.RegisterSystem(c.Request.Context(), actor(c), o.CVR, hub.SystemSpec(req))
	if err == nil && s.retrieval != nil && sys.Role == hub.RecipientSystem {
		// First connection: post already waiting in the mailbox this system
		// serves is queued to it. A failure is not the registration's: the
		// retrieval reconcile loop finishes the move.
		if _, cerr := s.retrieval.Connect(c.Request.Context(), sys); cerr != nil {
			s.log.Warn("first-connection backfill", "system", sys.ID, "error", cerr)
		}
	}
	s.reply(c, http.StatusCreated, SystemWithToken{System: sys, APIToken: token}, err)
}

func (s *Server) handleListSystems(c *gin.Context) {
	o, ok := s.orgParam(c)
	if !ok {
		return
	}
	ss, err := s.store.ListSystems(c.Request.Context(), o.CVR)
	writeWhole(s, c, ss, err)
}

func (s *Server) handleGetSystem(c *gin.Context) {
	sys, err := s.store.GetSystem(c.Request.Context(), c.Param("id"))
	if err == nil && sys.OrgCVR != c.Param("org") {
		err = hub.Errorf(hub.NotFound, "no system %s in organisation %s", c.Param("id"), c.Param("org"))
	}
	s.reply(c, http.StatusOK, sys, err)
}

// ifMatch reads an If-Match version ("3" or "\"3\""), 0 when absent.
func ifMatch(c *gin.Context) int64 {
	v, _ := strconv.ParseInt(strings.Trim(c.GetHeader("If-Match"), `"W/`), 10, 64)
	return v
}

func (s *Server) handleUpdateSystem(c *gin.Context) {
	var u admin.SystemUpdate
	if err := decodeJSON(c, &u); err != nil {
		writeError(c, s.log, err)
		return
	}
	if v := ifMatch(c); v != 0 {
		u.Version = v
	}
	sys, err := s.admin.UpdateSystem(c.Request.Context(), actor(c), c.Param("org"), c.Param("id"), u)
	s.reply(c, http.StatusOK, sys, err)
}

func (s *Server) handleMakeDefault(c *gin.Context) {
	sys, err := s.admin.MakeDefault(c.Request.Context(), actor(c), c.Param("org"), c.Param("id"))
	s.reply(c, http.StatusOK, sys, err)
}

func (s *Server) handleRenewToken(c *gin.Context) {
	sys, token, err := s.admin.RenewToken(c.Request.Context(), actor(c), c.Param("org"), c.Param("id"))
	s.reply(c, http.StatusOK, SystemWithToken{System: sys, APIToken: token}, err)
}

func (s *Server) handleDeactivate(c *gin.Context) {
	sys, err := s.admin.Deactivate(c.Request.Context(), actor(c), c.Param("org"), c.Param("id"))
	if err == nil && s.retrieval != nil && sys.Role == hub.RecipientSystem {
		// Its waiting post goes to the system now serving its mailbox, or
		// back to the mailbox. A failure is not the deactivation's: the
		// retrieval reconcile loop finishes the move.
		if _, derr := s.retrieval.Disconnect(c.Request.Context(), sys); derr != nil {
			s.log.Warn("returning a deactivated system's post", "system", sys.ID, "error", derr)
		}
	}
	s.reply(c, http.StatusOK, sys, err)
}

func (s *Server) handleUploadCertificate(c *gin.Context) {
	b, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10))
	if err != nil {
		writeError(c, s.log, &hub.Error{Code: hub.TooLarge, Message: "a certificate is at most 64 KiB"})
		return
	}
	sys, err := s.admin.UploadCertificate(c.Request.Context(), actor(c), c.Param("org"), c.Param("id"), b)
	s.reply(c, http.StatusCreated, sys, err)
}

func (s *Server) handleCreateContactGroup(c *gin.Context) {
	o, ok := s.orgParam(c)
	if !ok {
		return
	}
	var g hub.ContactGroup
	if err := decodeJSON(c, &g); err != nil {
		writeError(c, s.log, err)
		return
	}
	g.ID, g.OrgCVR, g.Version = "", o.CVR, 0
	g, err := s.admin.PutContactGroup(c.Request.Context(), actor(c), g)
	s.reply(c, http.StatusCreated, g, err)
}

func (s *Server) handleListContactGroups(c *gin.Context) {
	o, ok := s.orgParam(c)
	if !ok {
		return
	}
	gs, err := s.store.ListContactGroups(c.Request.Context(), o.CVR)
	writeWhole(s, c, gs, err)
}

func (s *Server) handleDeleteContactGroup(c *gin.Context) {
	err := s.admin.DeleteContactGroup(c.Request.Context(), actor(c), c.Param("org"), c.Param("id"))
	s.noContent(c, err)
}

func (s *Server) handleCreateContactPoint(c *gin.Context) {
	o, ok := s.orgParam(c)
	if !ok {
		return
	}
	var p hub.ContactPoint
	if err := decodeJSON(c, &p); err != nil {
		writeError(c, s.log, err)
		return
	}
	p.ID, p.OrgCVR, p.Version = "", o.CVR, 0
	p, err := s.admin.PutContactPoint(c.Request.Context(), actor(c), p)
	s.reply(c, http.StatusCreated, p, err)
}

func (s *Server) handleListContactPoints(c *gin.Context) {
	o, ok := s.orgParam(c)
	if !ok {
		return
	}
	ps, err := s.store.ListContactPoints(c.Request.Context(), o.CVR)
	writeWhole(s, c, ps, err)
}

func (s *Server) handleGetContactPoint(c *gin.Context) {
	p, err := s.admin.ContactPoint(c.Request.Context(), c.Param("org"), c.Param("id"))
	s.reply(c, http.StatusOK, p, err)
}

func (s *Server) handleUpdateContactPoint(c *gin.Context) {
	var p hub.ContactPoint
	if err := decodeJSON(c, &p); err != nil {
		writeError(c, s.log, err)
		return
	}
	if v := ifMatch(c); v != 0 {
		p.Version = v
	}
	p.ID, p.OrgCVR = c.Param("id"), c.Param("org")
	p, err := s.admin.PutContactPoint(c.Request.Context(), actor(c), p)
	s.reply(c, http.StatusOK, p, err)
}

func (s *Server) handleDeleteContactPoint(c *gin.Context) {
	err := s.admin.DeleteContactPoint(c.Request.Context(), actor(c), c.Param("org"), c.Param("id"))
	s.noContent(c, err)
}

func (s *Server) handleCreateRule(c *gin.Context) {
	o, ok := s.orgParam(c)
	if !ok {
		return
	}
	var r hub.RoutingRule
	if err := decodeJSON(c, &r); err != nil {
		writeError(c, s.log, err)
		return
	}
	r.OrgCVR = o.CVR
	r, err := s.admin.CreateRule(c.Request.Context(), actor(c), r)
	s.reply(c, http.StatusCreated, r, err)
}

func (s *Server) handleListRules(c *gin.Context) {
	o, ok := s.orgParam(c)
	if !ok {
		return
	}
	rs, err := s.store.ListRoutingRules(c.Request.Context(), o.CVR)
	writeWhole(s, c, rs, err)
}

func (s *Server) handleDeleteRule(c *gin.Context) {
	err := s.admin.DeleteRule(c.Request.Context(), actor(c), c.Param("org"), c.Param("id"))
	s.noContent(c, err)
}

func (s *Server) handleListUsers(c *gin.Context) {
	us, err := s.admin.UsersOf(c.Request.Context(), c.Param("org"))
	writeWhole(s, c, us, err)
}

func (s *Server) handleCreateUser(c *gin.Context) {
	o, ok := s.orgParam(c)
	if !ok {
		return
	}
	var req admin.NewUser
	if err := decodeJSON(c, &req); err != nil {
		writeError(c, s.log, err)
		return
	}
	out, err := s.admin.CreateUser(c.Request.Context(), actor(c), o.CVR, req)
	s.reply(c, http.StatusCreated, out, err)
}

func (s *Server) handleListGrants(c *gin.Context) {
	writeWhole(s, c, s.enforcer.Grants(c.Param("org"), ""), nil)
}

func (s *Server) handleGrant(c *gin.Context) {
	var g rbac.Grant
	if err := decodeJSON(c, &g); err != nil {
		writeError(c, s.log, err)
		return
	}
	if g.Domain == "" {
		g.Domain = c.Param("org")
	}
	if g.Domain != c.Param("org") {
		writeError(c, s.log, hub.InvalidField("request", "organisation", "privilege.scope.mismatch", "grant in the organisation of the path", g.Domain))
		return
	}
	err := s.admin.Grant(c.Request.Context(), actor(c), g)
	s.reply(c, http.StatusCreated, g, err)
}

func (s *Server) handleRevoke(c *gin.Context) {
	g := rbac.Grant{User: c.Param("user"), Role: c.Param("role"), Domain: c.Param("org")}
	s.noContent(c, s.admin.Revoke(c.Request.Context(), actor(c), g))
}

// handleHeldMessages pages the held messages in memory: finding them
// scans at most 10,000 sent messages however many are asked for, and
// there are at most as many held ones as the paging window reaches.
func (s *Server) handleHeldMessages(c *gin.Context) {
	ms, err := s.admin.HeldMessages(c.Request.Context(), c.Param("org"), MaxPagingWindow)
	writeWhole(s, c, ms, err)
}

func (s *Server) handleAdminRecall(c *gin.Context) {
	m, err := s.admin.Recall(c.Request.Context(), actor(c), c.Param("org"), strings.ToLower(c.Param("id")))
	s.reply(c, http.StatusOK, m, err)
}

func (s *Server) handleStatistics(c *gin.Context) {
	q := admin.StatsQuery{Org: c.Param("org"), From: c.Query("from"), To: c.Query("to"), Period: c.Query("period")}
	if g := c.Query("groupBy"); g != "" {
		q.GroupBy = strings.Split(g, ",")
	}
	st, err := s.admin.Statistics(c.Request.Context(), q)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	s.audit(c, "STATISTICS_READ", q.Org, map[string]string{"from": st.From, "to": st.To, "period": st.Period})
	if c.Query("format") == "csv" {
		c.Header("Content-Type", "text/csv; charset=utf-8")
		c.Header("Content-Disposition", `attachment; filename="statistics-`+q.Org+`.csv"`)
		c.Status(http.StatusOK)
		_ = st.WriteCSV(c.Writer)
		return
	}
	c.JSON(http.StatusOK, st)
}

func (s *Server) handleImportContacts(c *gin.Context) {
	ct, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	rep, err := s.admin.ImportContacts(c.Request.Context(), actor(c), ct, c.Request.Body)
	s.reply(c, http.StatusOK, rep, err)
}

func (s *Server) handleGetContact(c *gin.Context) {
	ct, err := s.store.GetContact(c.Request.Context(), c.Param("id"))
	s.reply(c, http.StatusOK, ct, err)
}

// withAdminSchemas adds the administrative routes' schemas.
func withAdminSchemas(o obj) obj {
	grant := obj{"type": "object", "properties": obj{"userId": str(""), "privilege": str("a privilege (role) name"), "organisation": str("CVR, or * for global")}}
	user := obj{"type": "object", "properties": obj{"id": str(""), "name": obj{"type": "string", "maxLength": hub.MaxNameLen},
		"email": obj{"type": "string", "maxLength": hub.MaxEmailLen}, "active": obj{"type": "boolean"}}}
	o["Grant"] = grant
	o["GrantList"] = listOf("Grant")
	o["Session"] = obj{"type": "object", "properties": obj{"principal": str("user:<id>, system:<id> or operator"), "user": user,
		"system": ref("System"), "csrfToken": str("send as X-CSRF-Token on unsafe requests"), "privileges": arrayOf("Grant"),
		"expires": obj{"type": "string", "format": "date-time"}}}
	o["Role"] = obj{"type": "object", "properties": obj{"name": str(""), "global": obj{"type": "boolean"}, "system": obj{"type": "boolean"},
		"description": str(""), "permissions": obj{"type": "array", "items": obj{"type": "string"}}}}
	o["RoleList"] = listOf("Role")
	o["UserGrants"] = obj{"type": "object", "properties": obj{"user": user, "privileges": obj{"type": "array", "items": obj{"type": "string"}}}}
	o["UserGrantsList"] = listOf("UserGrants")
	o["ContactGroup"] = obj{"type": "object", "properties": obj{"id": str(""), "name": obj{"type": "string", "maxLength": hub.MaxNameLen},
		"parentId": str(""), "version": obj{"type": "integer"}}}
	o["ContactGroupList"] = listOf("ContactGroup")
	o["RoutingRuleList"] = listOf("RoutingRule")
	o["Statistics"] = obj{"type": "object", "properties": obj{"organisation": str(""), "from": str(""), "to": str(""), "period": str(""),
		"rows": obj{"type": "array", "items": obj{"type": "object", "properties": obj{"period": str(""), "messageType": str(""), "channel": str(""),
			"systemId": str(""), "direction": str("SENT or RECEIVED"), "count": obj{"type": "integer"}, "bytes": obj{"type": "integer"}}}},
		"totalCount": obj{"type": "integer"}, "totalBytes": obj{"type": "integer"}}}
	return o
}
