// Package admin is Administrativ Adgang: the administrative operations of
// the hub (organisations, systems within the five-system rule, contact
// structure, users and privileges, recall, contact-register import,
// statistics, event-log search) as one gin-free Service, and the
// server-rendered admin portal over it (Portal).
//
// Every change goes through Service, which records it in the event log
// with its actor after the change is durable; when the event cannot be
// recorded the caller gets the error (the change stands, and is visible in
// the store). Authorisation is the caller's job (package api's middleware,
// the portal's page table), with two rules Service enforces itself because
// they depend on the grantor: global privileges are granted only by a hub
// operator, and nobody grants or revokes their own privileges.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
)

// Service carries out administrative changes and queries.
type Service struct {
	Store    hub.Store
	Registry *hub.Registry
	Ingest   *hub.Ingest
	Importer *hub.ContactImporter
	Enforcer *rbac.Enforcer
	Events   hub.EventSink
	Now      func() time.Time
}

// Actor is who makes a change: its name in the event log ("user:alice",
// "operator", "system:<id>") and its subject for grantor checks.
type Actor struct {
	Name    string
	Subject rbac.Subject
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// record emits one event about org by a.
func (s *Service) record(ctx context.Context, a Actor, tag, org string, detail map[string]string) error {
	if s.Events == nil {
		return nil
	}
	ev := hub.Event{Tag: tag, Actor: a.Name, Detail: detail}
	if org != "" {
		ev.Orgs = []string{org}
	}
	if id := detail["systemId"]; id != "" {
		ev.SystemID = id
	}
	if id := detail["messageUUID"]; id != "" {
		ev.MessageUUID = id
	}
	return s.Events.Emit(ctx, ev)
}

// CreateOrg registers an organisation.
func (s *Service) CreateOrg(ctx context.Context, a Actor, o hub.Organisation) (hub.Organisation, error) {
	o, err := s.Registry.CreateOrg(ctx, o)
	if err != nil {
		return o, err
	}
	return o, s.record(ctx, a, "ORGANISATION_CREATED", o.CVR, map[string]string{"name": o.Name, "kind": string(o.Kind)})
}

// OrgUpdate is what an administrator may change of an organisation.
type OrgUpdate struct {
	Setup hub.Setup `json:"setup"`
	// Version, when non-zero, must equal the stored version (If-Match).
	Version int64 `json:"version,omitempty"`
}

// UpdateOrg changes how an organisation receives its post (its setup).
func (s *Service) UpdateOrg(ctx context.Context, a Actor, org string, u OrgUpdate) (hub.Organisation, error) {
	o, err := s.Registry.ChangeSetup(ctx, org, u.Setup, u.Version)
	if err != nil {
		return o, err
	}
	return o, s.record(ctx, a, "ORGANISATION_CHANGED", org, map[string]string{"setup": string(o.Setup)})
}

// RegisterSystem adds a system (five-system rule in hub.Registry) and
// returns its API token, shown once.
func (s *Service) RegisterSystem(ctx context.Context, a Actor, org string, sp hub.SystemSpec) (hub.System, string, error) {
	sys, tok, err := s.Registry.RegisterSystem(ctx, org, sp)
	if err != nil {
		return sys, "", err
	}
	return sys, tok, s.record(ctx, a, "SYSTEM_CREATED", org, map[string]string{"systemId": sys.ID, "role": string(sys.Role), "name": sys.Name})
}

// SystemUpdate is what an administrator may change of a system.
type SystemUpdate struct {
	Name            *string       `json:"name,omitempty"`
	Protocol        *hub.Protocol `json:"protocol,omitempty"`
	Endpoint        *string       `json:"endpoint,omitempty"`
	ReceiptEndpoint *string       `json:"receiptEndpoint,omitempty"`
	MemoVersion     *string       `json:"memoVersion,omitempty"`
	// Version, when non-zero, must equal the stored version (If-Match).
	Version int64 `json:"version,omitempty"`
}

// UpdateSystem modifies a system of org. NotFound for another org's system.
func (s *Service) UpdateSystem(ctx context.Context, a Actor, org, id string, u SystemUpdate) (hub.System, error) {
	sys, err := s.systemOf(ctx, org, id)
	if err != nil {
		return sys, err
	}
	if u.Version != 0 && u.Version != sys.Version {
		return sys, hub.Errorf(hub.Conflict, "the system changed (version %d, not %d); reload and retry", sys.Version, u.Version)
	}
	var changed []string
	if u.Name != nil {
		if strings.TrimSpace(*u.Name) == "" {
			return sys, invalid("system", "name", "system.name.missing", "a system needs a name", "")
		}
		sys.Name = strings.TrimSpace(*u.Name)
		changed = append(changed, "name")
	}
	if sys.Role == hub.RecipientSystem {
		if u.Protocol != nil {
			if *u.Protocol != hub.RestPull && *u.Protocol != hub.RestPush {
				return sys, invalid("system", "protocol", "system.protocol.invalid", "protocol is REST_PULL or REST_PUSH", string(*u.Protocol))
			}
			sys.Protocol = *u.Protocol
			changed = append(changed, "protocol")
		}
		if u.Endpoint != nil {
			sys.Endpoint = *u.Endpoint
			changed = append(changed, "endpoint")
		}
		if u.ReceiptEndpoint != nil {
			sys.ReceiptEndpoint = *u.ReceiptEndpoint
			changed = append(changed, "receiptEndpoint")
		}
		if u.MemoVersion != nil {
			if *u.MemoVersion != "1.1" && *u.MemoVersion != "1.2" {
				return sys, invalid("system", "memoVersion", "system.memo.version.invalid", "memoVersion is 1.1 or 1.2", *u.MemoVersion)
			}
			sys.MemoVersion = *u.MemoVersion
			changed = append(changed, "memoVersion")
		}
		if sys.Protocol == hub.RestPush && !strings.HasPrefix(sys.Endpoint, "https://") && !strings.HasPrefix(sys.Endpoint, "http://") {
			return sys, invalid("system", "endpoint", "system.endpoint.invalid", "a REST_PUSH system needs an http(s) endpoint", sys.Endpoint)
		}
	}
	sys.Updated = s.now()
	if err := s.Store.UpdateSystem(ctx, sys); err != nil {
		return sys, err
	}
	sys.Version++
	return sys, s.record(ctx, a, "SYSTEM_CHANGED", org, map[string]string{"systemId": id, "change": "update", "fields": strings.Join(changed, ",")})
}

// MakeDefault makes an authority-post receiver the default.
func (s *Service) MakeDefault(ctx context.Context, a Actor, org, id string) (hub.System, error) {
	sys, err := s.Registry.MakeDefault(ctx, org, id)
	if err != nil {
		return sys, err
	}
	return sys, s.record(ctx, a, "SYSTEM_CHANGED", org, map[string]string{"systemId": id, "change": "makedefaultrecipient"})
}

// RenewToken issues a new API token (shown once).
func (s *Service) RenewToken(ctx context.Context, a Actor, org, id string) (hub.System, string, error) {
	sys, tok, err := s.Registry.RotateToken(ctx, org, id)
	if err != nil {
		return sys, "", err
	}
	return sys, tok, s.record(ctx, a, "SYSTEM_CHANGED", org, map[string]string{"systemId": id, "change": "renewapitoken"})
}

// Deactivate turns a system off.
func (s *Service) Deactivate(ctx context.Context, a Actor, org, id string) (hub.System, error) {
	sys, err := s.Registry.DeactivateSystem(ctx, org, id)
	if err != nil {
		return sys, err
	}
	return sys, s.record(ctx, a, "SYSTEM_CHANGED", org, map[string]string{"systemId": id, "change": "deactivate"})
}

// UploadCertificate registers a client certificate (PEM or DER) for a
// system; from then on the system must present it with its token.
func (s *Service) UploadCertificate(ctx context.Context, a Actor, org, id string, data []byte) (hub.System, error) {
	sys, err := s.systemOf(ctx, org, id)
	if err != nil {
		return sys, err
	}
	der := data
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "CERTIFICATE" {
			return sys, invalid("certificate", "certificate", "certificate.pem.type", "the PEM block is not a CERTIFICATE", b.Type)
		}
		der = b.Bytes
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return sys, invalid("certificate", "certificate", "certificate.invalid", "not an X.509 certificate (PEM or DER)", "")
	}
	if now := s.now(); now.After(cert.NotAfter) {
		return sys, invalid("certificate", "certificate", "certificate.expired", "the certificate has expired", cert.NotAfter.Format(time.RFC3339))
	}
	sum := sha256.Sum256(cert.Raw)
	sys.CertFingerprint, sys.Updated = hex.EncodeToString(sum[:]), s.now()
	if err := s.Store.UpdateSystem(ctx, sys); err != nil {
		return sys, err
	}
	sys.Version++
	return sys, s.record(ctx, a, "SYSTEM_CHANGED", org, map[string]string{"systemId": id, "change": "certificate",
		"fingerprint": sys.CertFingerprint, "subject": truncate(cert.Subject.String(), 200)})
}

func (s *Service) systemOf(ctx context.Context, org, id string) (hub.System, error) {
	sys, err := s.Store.GetSystem(ctx, id)
	if err != nil {
		return sys, err
	}
	if sys.OrgCVR != org {
		return hub.System{}, hub.Errorf(hub.NotFound, "no system %s in organisation %s", id, org)
	}
	return sys, nil
}

// PutContactGroup creates (empty ID) or replaces a contact group.
func (s *Service) PutContactGroup(ctx context.Context, a Actor, g hub.ContactGroup) (hub.ContactGroup, error) {
	if strings.TrimSpace(g.Name) == "" {
		return g, invalid("contactGroup", "name", "contact.group.name.missing", "a contact group needs a name", "")
	}
	if g.ParentID != "" {
		groups, err := s.Store.ListContactGroups(ctx, g.OrgCVR)
		if err != nil {
			return g, err
		}
		if !slices.ContainsFunc(groups, func(x hub.ContactGroup) bool { return x.ID == g.ParentID }) {
			return g, invalid("contactGroup", "parentId", "contact.group.parent.invalid", "the parent is a contact group of the same organisation", g.ParentID)
		}
	}
	if g.ID == "" {
		g.ID, g.Created, g.Version = uuid.NewString(), s.now(), 0
	}
	if err := s.Store.PutContactGroup(ctx, g); err != nil {
		return g, err
	}
	g.Version++
	return g, s.record(ctx, a, "CONTACT_GROUP_CHANGED", g.OrgCVR, map[string]string{"contactGroupId": g.ID, "change": "put"})
}

// DeleteContactGroup removes a contact group of org.
func (s *Service) DeleteContactGroup(ctx context.Context, a Actor, org, id string) error {
	if err := s.Store.DeleteContactGroup(ctx, org, id); err != nil {
		return err
	}
	return s.record(ctx, a, "CONTACT_GROUP_CHANGED", org, map[string]string{"contactGroupId": id, "change": "delete"})
}

// PutContactPoint creates (empty ID) or replaces a contact point; its
// system must be a receiver system of org, its groups groups of org.
func (s *Service) PutContactPoint(ctx context.Context, a Actor, p hub.ContactPoint) (hub.ContactPoint, error) {
	if len(p.GroupIDs) > 0 {
		groups, err := s.Store.ListContactGroups(ctx, p.OrgCVR)
		if err != nil {
			return p, err
		}
		for _, id := range p.GroupIDs {
			if !slices.ContainsFunc(groups, func(x hub.ContactGroup) bool { return x.ID == id }) {
				return p, invalid("contactPoint", "contactGroups", "contact.point.group.invalid", "a contact point belongs to groups of its own organisation", id)
			}
		}
	}
	if p.ID != "" {
		old, err := s.Store.GetContactPoint(ctx, p.ID)
		if err != nil {
			return p, err
		}
		if old.OrgCVR != p.OrgCVR {
			return p, hub.Errorf(hub.NotFound, "no contact point %s in organisation %s", p.ID, p.OrgCVR)
		}
		p.Created = old.Created
	}
	p, err := s.Registry.PutContactPoint(ctx, p)
	if err != nil {
		return p, err
	}
	return p, s.record(ctx, a, "CONTACT_POINT_CHANGED", p.OrgCVR, map[string]string{"contactPointId": p.ID, "systemId": p.SystemID, "change": "put"})
}

// ContactPoint reads a contact point of org.
func (s *Service) ContactPoint(ctx context.Context, org, id string) (hub.ContactPoint, error) {
	p, err := s.Store.GetContactPoint(ctx, id)
	if err == nil && p.OrgCVR != org {
		return hub.ContactPoint{}, hub.Errorf(hub.NotFound, "no contact point %s in organisation %s", id, org)
	}
	return p, err
}

// DeleteContactPoint removes a contact point of org.
func (s *Service) DeleteContactPoint(ctx context.Context, a Actor, org, id string) error {
	if err := s.Store.DeleteContactPoint(ctx, org, id); err != nil {
		return err
	}
	return s.record(ctx, a, "CONTACT_POINT_CHANGED", org, map[string]string{"contactPointId": id, "change": "delete"})
}

// CreateRule adds a routing rule to a receiver system of the rule's org.
func (s *Service) CreateRule(ctx context.Context, a Actor, r hub.RoutingRule) (hub.RoutingRule, error) {
	switch r.Field {
	case "KLE", "FORM", "CaseID", "GLN", "SOR", "messageCode", "label":
	default:
		return r, invalid("routingRule", "field", "routing.rule.field.invalid", "field is KLE, FORM, CaseID, GLN, SOR, messageCode or label", r.Field)
	}
	if strings.TrimSpace(r.Value) == "" {
		return r, invalid("routingRule", "value", "routing.rule.value.missing", "a routing rule needs a value", "")
	}
	sys, err := s.Store.GetSystem(ctx, r.SystemID)
	if err != nil || sys.OrgCVR != r.OrgCVR || sys.Role != hub.RecipientSystem {
		return r, invalid("routingRule", "systemId", "routing.rule.system.invalid", "a rule routes to a receiver system of its own organisation", r.SystemID)
	}
	r.ID, r.Created = uuid.NewString(), s.now()
	if err := s.Store.PutRoutingRule(ctx, r); err != nil {
		return r, err
	}
	return r, s.record(ctx, a, "ROUTING_RULE_CHANGED", r.OrgCVR, map[string]string{"ruleId": r.ID, "systemId": r.SystemID, "change": "create"})
}

// DeleteRule removes a routing rule of org.
func (s *Service) DeleteRule(ctx context.Context, a Actor, org, id string) error {
	if err := s.Store.DeleteRoutingRule(ctx, org, id); err != nil {
		return err
	}
	return s.record(ctx, a, "ROUTING_RULE_CHANGED", org, map[string]string{"ruleId": id, "change": "delete"})
}

// ImportContacts imports the contact register (text/csv or application/json).
func (s *Service) ImportContacts(ctx context.Context, a Actor, contentType string, r io.Reader) (hub.ImportReport, error) {
	var rep hub.ImportReport
	var err error
	switch contentType {
	case "text/csv":
		rep, err = s.Importer.ImportCSV(ctx, r)
	case "application/json":
		rep, err = s.Importer.ImportJSON(ctx, r)
	default:
		err = invalid("request", "Content-Type", "content.type.unsupported", "import text/csv or application/json", contentType)
	}
	if err != nil {
		return rep, err
	}
	if rep.Rejected == nil {
		rep.Rejected = []hub.RejectedLine{}
	}
	return rep, s.record(ctx, a, "CONTACT_REGISTER_IMPORTED", "", map[string]string{"accepted": strconv.Itoa(rep.Accepted), "rejected": strconv.Itoa(len(rep.Rejected))})
}

// NewUser is a human account to create.
type NewUser struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Email    string `json:"email,omitempty"`
	Password string `json:"password"`
}

// CreateUser creates a local account (argon2id password hash) for org
// (recorded in org's event log). Conflict when the id is taken.
func (s *Service) CreateUser(ctx context.Context, a Actor, org string, nu NewUser) (hub.User, error) {
	if !rbac.ValidUserID(nu.ID) {
		return hub.User{}, invalid("user", "id", "user.id.invalid", "a user id is 1–64 of a–z, 0–9, '.', '_', '-', '@'", nu.ID)
	}
	if strings.TrimSpace(nu.Name) == "" {
		return hub.User{}, invalid("user", "name", "user.name.missing", "a user needs a name", "")
	}
	hash, err := rbac.HashPassword(nu.Password)
	if err != nil {
		return hub.User{}, err
	}
	u := hub.User{ID: nu.ID, Name: strings.TrimSpace(nu.Name), Email: strings.TrimSpace(nu.Email), PasswordHash: hash, Created: s.now(), Active: true}
	if err := s.Store.CreateUser(ctx, u); err != nil {
		return u, err
	}
	return u, s.record(ctx, a, "IDENTITY_CREATED", org, map[string]string{"userId": u.ID})
}

// UsersOf lists the users holding any privilege in org, with their grants.
func (s *Service) UsersOf(ctx context.Context, org string) ([]UserGrants, error) {
	by := map[string]*UserGrants{}
	var order []string
	for _, g := range s.Enforcer.Grants(org, "") {
		if by[g.User] == nil {
			by[g.User] = &UserGrants{User: hub.User{ID: g.User}}
			order = append(order, g.User)
		}
		by[g.User].Privileges = append(by[g.User].Privileges, g.Role)
	}
	out := make([]UserGrants, 0, len(order))
	for _, id := range order {
		ug := by[id]
		if u, err := s.Store.GetUser(ctx, id); err == nil {
			ug.User = u
		}
		out = append(out, *ug)
	}
	return out, nil
}

// UserGrants is a user and its privileges in one organisation.
type UserGrants struct {
	User       hub.User `json:"user"`
	Privileges []string `json:"privileges"`
}

// Grant gives a user a privilege. The user must exist; global privileges
// are granted by hub operators only; nobody grants to themselves.
func (s *Service) Grant(ctx context.Context, a Actor, g rbac.Grant) error {
	if err := s.grantorMay(a, g); err != nil {
		return err
	}
	if _, err := s.Store.GetUser(ctx, g.User); err != nil {
		if hub.ErrorCode(err) == hub.NotFound {
			return invalid("privilege", "userId", "user.unknown", "no such user", g.User)
		}
		return err
	}
	if err := s.Enforcer.Grant(ctx, g); err != nil {
		return err
	}
	return s.record(ctx, a, "PRIVILEGES_GRANTED", orgOf(g.Domain), map[string]string{"userId": g.User, "privilege": g.Role, "scope": g.Domain})
}

// Revoke takes a privilege away.
func (s *Service) Revoke(ctx context.Context, a Actor, g rbac.Grant) error {
	if err := s.grantorMay(a, g); err != nil {
		return err
	}
	if err := s.Enforcer.Revoke(ctx, g); err != nil {
		return err
	}
	return s.record(ctx, a, "PRIVILEGES_REVOKED", orgOf(g.Domain), map[string]string{"userId": g.User, "privilege": g.Role, "scope": g.Domain})
}

func orgOf(dom string) string {
	if dom == rbac.Global {
		return ""
	}
	return dom
}

func (s *Service) grantorMay(a Actor, g rbac.Grant) error {
	if err := rbac.ValidateGrant(g); err != nil {
		return err
	}
	if a.Subject.User != "" && a.Subject.User == g.User {
		return hub.Errorf(hub.Forbidden, "nobody grants or revokes their own privileges")
	}
	if r, _ := rbac.RoleByName(g.Role); r.Global && !s.Enforcer.Allowed(a.Subject, rbac.Global, rbac.HubOperate) {
		return hub.Errorf(hub.Forbidden, "only a hub operator grants or revokes global privileges")
	}
	if !s.Enforcer.Allowed(a.Subject, g.Domain, rbac.UsersWrite) {
		return hub.Errorf(hub.Forbidden, "granting in %s needs %s there", g.Domain, rbac.UsersWrite)
	}
	return nil
}

// HeldMessages lists org's sent messages still held by
// doNotDeliverUntilDate (what a recall administrator may recall), newest first.
func (s *Service) HeldMessages(ctx context.Context, org string, limit int) ([]hub.Message, error) {
	var out []hub.Message
	after := ""
	now := s.now()
	for scanned := 0; scanned < 10_000 && len(out) < limit; {
		ms, err := s.Store.ListMessagesBySender(ctx, org, after, 500)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if m.State == hub.MessageHeld && m.NotBefore.After(now) && len(out) < limit {
				m.Content = nil
				out = append(out, m)
			}
		}
		scanned += len(ms)
		if len(ms) < 500 {
			break
		}
		after = ms[len(ms)-1].UUID
	}
	if out == nil {
		out = []hub.Message{}
	}
	return out, nil
}

// Recall withdraws a held message of org on an administrator's behalf.
func (s *Service) Recall(ctx context.Context, a Actor, org, messageUUID string) (hub.Message, error) {
	if err := s.Ingest.Recall(ctx, org, a.Name, messageUUID); err != nil {
		return hub.Message{}, err
	}
	m, err := s.Store.GetMessage(ctx, messageUUID)
	if err != nil {
		return m, err
	}
	m.Content = nil
	return m, s.record(ctx, a, "MESSAGE_RECALLED_BY_ADMINISTRATOR", org, map[string]string{"messageUUID": messageUUID})
}

// SearchEvents returns org's sealed events matching q (newest first by
// default) and records the search (EVENT_LOG_SEARCHES) before answering.
func (s *Service) SearchEvents(ctx context.Context, a Actor, org string, q hub.EventQuery) ([]hub.Event, error) {
	q.Org = org
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 100
	}
	if err := s.record(ctx, a, "EVENT_LOG_SEARCHES", org, map[string]string{"tags": strings.Join(q.Tags, ","), "actor": q.Actor,
		"messageUUID": q.MessageUUID}); err != nil {
		return nil, err
	}
	evs, err := s.Store.QueryEvents(ctx, q)
	if err != nil {
		return nil, err
	}
	out := evs[:0]
	for _, e := range evs {
		// The log's own bookkeeping is for auditors; reads are not the sender's business.
		if e.Tag == "EVENT_LOG_SEARCHES" || e.Tag == "EVENT_LOG_EXPORTED" || ((e.Tag == "MESSAGE_READ" || e.Tag == "MAILBOX_READ") && e.Party != org) {
			continue
		}
		out = append(out, e)
	}
	if out == nil {
		out = []hub.Event{}
	}
	return out, nil
}

func invalid(resource, field, code, msg, value string) error {
	return &hub.Error{Code: hub.Invalid, Message: msg, Fields: []hub.FieldError{{Resource: resource, Field: field, Code: code, Message: msg, RejectedValue: value}}}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
