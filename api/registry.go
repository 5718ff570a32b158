package api

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/posthub/posthub/hub"
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
		return badRequest("body", "json.invalid", "the body is not valid JSON for this resource: "+err.Error(), "")
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

func (s *Server) audit(c *gin.Context, tag, org string, detail map[string]string) {
	if s.ingest.Events == nil {
		return
	}
	_ = s.ingest.Events.Emit(c.Request.Context(), hub.Event{Tag: tag, Actor: principal(c).String(), Orgs: []string{org}, Detail: detail})
}

func (s *Server) handleCreateOrg(c *gin.Context) {
	var o hub.Organisation
	if err := decodeJSON(c, &o); err != nil {
		writeError(c, s.log, err)
		return
	}
	o, err := s.registry.CreateOrg(c.Request.Context(), o)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	s.audit(c, "ORGANISATION_CREATED", o.CVR, map[string]string{"name": o.Name})
	c.JSON(http.StatusCreated, o)
}

func (s *Server) handleListOrgs(c *gin.Context) {
	os, err := s.store.ListOrgs(c.Request.Context())
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	if os == nil {
		os = []hub.Organisation{}
	}
	c.JSON(http.StatusOK, os)
}

func (s *Server) handleGetOrg(c *gin.Context) {
	if o, ok := s.orgParam(c); ok {
		c.JSON(http.StatusOK, o)
	}
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
	sys, token, err := s.registry.RegisterSystem(c.Request.Context(), o.CVR, hub.SystemSpec(req))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	s.audit(c, "SYSTEM_CREATED", o.CVR, map[string]string{"systemId": sys.ID, "role": string(sys.Role)})
	c.JSON(http.StatusCreated, SystemWithToken{System: sys, APIToken: token})
}

func (s *Server) handleListSystems(c *gin.Context) {
	o, ok := s.orgParam(c)
	if !ok {
		return
	}
	ss, err := s.store.ListSystems(c.Request.Context(), o.CVR)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	if ss == nil {
		ss = []hub.System{}
	}
	c.JSON(http.StatusOK, ss)
}

func (s *Server) handleMakeDefault(c *gin.Context) {
	sys, err := s.registry.MakeDefault(c.Request.Context(), c.Param("org"), c.Param("id"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	s.audit(c, "SYSTEM_CHANGED", sys.OrgCVR, map[string]string{"systemId": sys.ID, "change": "makedefaultrecipient"})
	c.JSON(http.StatusOK, sys)
}

func (s *Server) handleRenewToken(c *gin.Context) {
	sys, token, err := s.registry.RotateToken(c.Request.Context(), c.Param("org"), c.Param("id"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	s.audit(c, "SYSTEM_CHANGED", sys.OrgCVR, map[string]string{"systemId": sys.ID, "change": "renewapitoken"})
	c.JSON(http.StatusOK, SystemWithToken{System: sys, APIToken: token})
}

func (s *Server) handleDeactivate(c *gin.Context) {
	sys, err := s.registry.DeactivateSystem(c.Request.Context(), c.Param("org"), c.Param("id"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	s.audit(c, "SYSTEM_CHANGED", sys.OrgCVR, map[string]string{"systemId": sys.ID, "change": "deactivate"})
	c.JSON(http.StatusOK, sys)
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
	p, err := s.registry.PutContactPoint(c.Request.Context(), p)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	s.audit(c, "CONTACT_POINT_CREATED", o.CVR, map[string]string{"contactPointId": p.ID})
	c.JSON(http.StatusCreated, p)
}

func (s *Server) handleListContactPoints(c *gin.Context) {
	o, ok := s.orgParam(c)
	if !ok {
		return
	}
	ps, err := s.store.ListContactPoints(c.Request.Context(), o.CVR)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	if ps == nil {
		ps = []hub.ContactPoint{}
	}
	c.JSON(http.StatusOK, ps)
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
	switch r.Field {
	case "KLE", "FORM", "CaseID", "GLN", "SOR", "messageCode", "label":
	default:
		writeError(c, s.log, badRequest("field", "routing.rule.field.invalid", "field is KLE, FORM, CaseID, GLN, SOR, messageCode or label", r.Field))
		return
	}
	if strings.TrimSpace(r.Value) == "" {
		writeError(c, s.log, badRequest("value", "routing.rule.value.missing", "a routing rule needs a value", ""))
		return
	}
	sys, err := s.store.GetSystem(c.Request.Context(), r.SystemID)
	if err != nil || sys.OrgCVR != o.CVR || sys.Role != hub.RecipientSystem {
		writeError(c, s.log, badRequest("systemId", "routing.rule.system.invalid", "a rule routes to a receiver system of its own organisation", r.SystemID))
		return
	}
	r.ID, r.OrgCVR, r.Created = uuid.NewString(), o.CVR, s.now().UTC()
	if err := s.store.PutRoutingRule(c.Request.Context(), r); err != nil {
		writeError(c, s.log, err)
		return
	}
	s.audit(c, "ROUTING_RULE_CREATED", o.CVR, map[string]string{"ruleId": r.ID})
	c.JSON(http.StatusCreated, r)
}

func (s *Server) handleImportContacts(c *gin.Context) {
	ct, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	var rep hub.ImportReport
	var err error
	switch ct {
	case "text/csv":
		rep, err = s.importer.ImportCSV(c.Request.Context(), c.Request.Body)
	case "application/json":
		rep, err = s.importer.ImportJSON(c.Request.Context(), c.Request.Body)
	default:
		err = badRequest("Content-Type", "content.type.unsupported", "import text/csv or application/json", ct)
	}
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	if rep.Rejected == nil {
		rep.Rejected = []hub.RejectedLine{}
	}
	s.audit(c, "CONTACT_REGISTER_IMPORTED", "", map[string]string{"accepted": strconv.Itoa(rep.Accepted)})
	c.JSON(http.StatusOK, rep)
}

func (s *Server) handleGetContact(c *gin.Context) {
	ct, err := s.store.GetContact(c.Request.Context(), c.Param("id"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.JSON(http.StatusOK, ct)
}
