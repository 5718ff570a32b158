// Package admin is Administrativ Adgang: the administrative operations of
// the hub (organisations, systems within the five-system rule, contact
// structure, users and privileges, recall, contact-register import,
// statistics, event-log search) as one gin-free Service. Its faces are the
// admin API (package api) and the server-rendered portal (package
// admin/portal); it imports neither.
//
// Every change goes through Service, which is refused whole or recorded:
// it validates the whole input (every field against its bound in package
// hub), builds the event-log entry the change will be recorded with and
// checks it against the event log's own bounds (hub.CheckEvent) — all
// before it changes anything — and records the entry once the change is
// durable, even if the caller has gone by then. What remains is a store
// that fails between the change and its entry: the caller then gets an
// internal error (logged with the cause) for a change that stands.
//
// Authorisation is the caller's job (package api's middleware, the
// portal's page table), with the rules Service enforces itself because
// they depend on the grantor: a grantor grants or revokes only privileges
// whose every permission it holds itself in that organisation, so an
// ORGANISATION_USER_ADMINISTRATOR cannot make anyone an
// ORGANISATION_ADMINISTRATOR; global privileges are granted only by a hub
// operator; a hub operator grants and revokes anything; and nobody grants
// or revokes their own privileges.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
)

// Store is what the service reads and writes itself (hub.Store has it);
// the rest of its changes go through Registry, Ingest, Importer and
// Enforcer, which say what they need. Each method returns the codes its
// hub.Store counterpart documents.
type Store interface {
	GetSystem(ctx context.Context, id string) (hub.System, error)
	UpdateSystem(ctx context.Context, sys hub.System) error

	ListContactGroups(ctx context.Context, org string) ([]hub.ContactGroup, error)
	PutContactGroup(ctx context.Context, g hub.ContactGroup) error
	DeleteContactGroup(ctx context.Context, org, id string) error
	GetContactPoint(ctx context.Context, id string) (hub.ContactPoint, error)
	DeleteContactPoint(ctx context.Context, org, id string) error
	PutRoutingRule(ctx context.Context, r hub.RoutingRule) error
	DeleteRoutingRule(ctx context.Context, org, id string) error

	CreateUser(ctx context.Context, u hub.User) error
	GetUser(ctx context.Context, id string) (hub.User, error)

	GetMessage(ctx context.Context, uuid string) (hub.Message, error)
	ListMessagesBySender(ctx context.Context, senderCVR, after string, limit int) ([]hub.Message, error)
	QueryEvents(ctx context.Context, q hub.EventQuery) ([]hub.Event, error)
	ReadCounters(ctx context.Context, q hub.CounterQuery) ([]hub.Counter, error)
}

// Service carries out administrative changes and queries.
type Service struct {
	Store    Store
	Registry *hub.Registry
	Ingest   *hub.Ingest
	Importer *hub.ContactImporter
	Enforcer *rbac.Enforcer
	Events   hub.EventSink
	// Hasher bounds the password hashing of CreateUser; serve shares one
	// with the logins. Nil: no bound.
	Hasher *rbac.Hasher
	Now    func() time.Time
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

// prepare builds the entry that will record a change by a about org and
// checks it against the event log's bounds, before the change is made: an
// entry the log would refuse refuses the change. Identifiers the change
// generates (fixed-size UUIDs) may be added to Detail afterwards.
func (s *Service) prepare(a Actor, tag, org string, detail map[string]string) (hub.Event, error) {
	ev := hub.Event{Tag: tag, Actor: a.Name, Detail: detail}
	if org != "" {
		ev.Orgs = []string{org}
	}
	return ev, hub.CheckEvent(ev)
}

// emit records ev once its change is durable. The caller going away does
// not stop it: the change is made and must be in the log.
func (s *Service) emit(ctx context.Context, ev hub.Event) error {
	if s.Events == nil {
		return nil
	}
	ev.SystemID, ev.MessageUUID = ev.Detail["systemId"], ev.Detail["messageUUID"]
	if err := s.Events.Emit(context.WithoutCancel(ctx), ev); err != nil {
		return hub.Wrap(hub.Internal, err, "the %s entry could not be recorded in the event log", ev.Tag)
	}
	return nil
}

// Record is prepare and emit, for what is logged without a change of its
// own (searches, statistics read, logins).
func (s *Service) Record(ctx context.Context, a Actor, tag, org string, detail map[string]string) error {
	ev, err := s.prepare(a, tag, org, detail)
	if err != nil {
		return err
	}
	return s.emit(ctx, ev)
}

// CreateOrg registers an organisation; an empty setup is hub.DefaultSetup.
func (s *Service) CreateOrg(ctx context.Context, a Actor, o hub.Organisation) (hub.Organisation, error) {
	if err := hub.CheckOrg(o); err != nil {
		return o, err
	}
	ev, err := s.prepare(a, "ORGANISATION_CREATED", o.CVR, map[string]string{"name": o.Name, "kind": string(o.Kind)})
	if err != nil {
		return o, err
	}
	if o, err = s.Registry.CreateOrg(ctx, o); err != nil {
		return o, err
	}
	ev.Detail["setup"] = string(o.Setup)
	return o, s.emit(ctx, ev)
}

// OrgUpdate is what an administrator may change of an organisation.
type OrgUpdate struct {
	Setup hub.Setup `json:"setup"`
	// Version, when non-zero, must equal the stored version (If-Match).
	Version int64 `json:"version,omitempty"`
}

// UpdateOrg changes how an organisation receives its post (its setup).
func (s *Service) UpdateOrg(ctx context.Context, a Actor, org string, u OrgUpdate) (hub.Organisation, error) {
	ev, err := s.prepare(a, "ORGANISATION_CHANGED", org, map[string]string{"setup": string(u.Setup)})
	if err != nil {
		return hub.Organisation{}, err
	}
	o, err := s.Registry.ChangeSetup(ctx, org, u.Setup, u.Version)
	if err != nil {
		return o, err
	}
	return o, s.emit(ctx, ev)
}

// RegisterSystem adds a system (five-system rule in hub.Registry) and
// returns its API token, shown once.
//
// A viewing client (VIEWER) reads the mailbox of whoever its assertions
// name, across organisations, so only a hub operator registers one, as only
// a hub operator registers its assertion keys.
func (s *Service) RegisterSystem(ctx context.Context, a Actor, org string, sp hub.SystemSpec) (hub.System, string, error) {
	if err := hub.CheckSystemSpec(sp); err != nil {
		return hub.System{}, "", err
	}
	if sp.Role == hub.ViewerSystem && !s.operates(a) {
		msg := "only a hub operator registers a viewing client (VIEWER): it reads the mailboxes its users' assertions name"
		return hub.System{}, "", &hub.Error{Code: hub.Forbidden, Message: msg,
			Fields: []hub.FieldError{{Resource: "system", Field: "role", Code: "system.viewer.not.operator", Message: msg, RejectedValue: string(sp.Role)}}}
	}
	ev, err := s.prepare(a, "SYSTEM_CREATED", org, map[string]string{"role": string(sp.Role), "name": sp.Name})
	if err != nil {
		return hub.System{}, "", err
	}
	sys, tok, err := s.Registry.RegisterSystem(ctx, org, sp)
	if err != nil {
		return sys, "", err
	}
	ev.Detail["systemId"] = sys.ID
	return sys, tok, s.emit(ctx, ev)
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
	if err := hub.CheckSystemFields(deref(u.Name, sys.Name), deref(u.Endpoint, ""), deref(u.ReceiptEndpoint, "")); err != nil {
		return sys, err
	}
	var changed []string
	if u.Name != nil {
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
	ev, err := s.prepare(a, "SYSTEM_CHANGED", org, map[string]string{"systemId": id, "change": "update", "fields": strings.Join(changed, ",")})
	if err != nil {
		return sys, err
	}
	sys.Updated = s.now()
	if err := s.Store.UpdateSystem(ctx, sys); err != nil {
		return sys, err
	}
	sys.Version++
	return sys, s.emit(ctx, ev)
}

func deref(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

// MakeDefault makes an authority-post receiver the default.
func (s *Service) MakeDefault(ctx context.Context, a Actor, org, id string) (hub.System, error) {
	ev, err := s.prepare(a, "SYSTEM_CHANGED", org, map[string]string{"systemId": id, "change": "makedefaultrecipient"})
	if err != nil {
		return hub.System{}, err
	}
	sys, err := s.Registry.MakeDefault(ctx, org, id)
	if err != nil {
		return sys, err
	}
	return sys, s.emit(ctx, ev)
}

// RenewToken issues a new API token (shown once).
func (s *Service) RenewToken(ctx context.Context, a Actor, org, id string) (hub.System, string, error) {
	ev, err := s.prepare(a, "SYSTEM_CHANGED", org, map[string]string{"systemId": id, "change": "renewapitoken"})
	if err != nil {
		return hub.System{}, "", err
	}
	sys, tok, err := s.Registry.RotateToken(ctx, org, id)
	if err != nil {
		return sys, "", err
	}
	return sys, tok, s.emit(ctx, ev)
}

// Deactivate turns a system off.
func (s *Service) Deactivate(ctx context.Context, a Actor, org, id string) (hub.System, error) {
	ev, err := s.prepare(a, "SYSTEM_CHANGED", org, map[string]string{"systemId": id, "change": "deactivate"})
	if err != nil {
		return hub.System{}, err
	}
	sys, err := s.Registry.DeactivateSystem(ctx, org, id)
	if err != nil {
		return sys, err
	}
	return sys, s.emit(ctx, ev)
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
	ev, err := s.prepare(a, "SYSTEM_CHANGED", org, map[string]string{"systemId": id, "change": "certificate",
		"fingerprint": sys.CertFingerprint, "subject": truncate(cert.Subject.String(), 200)})
	if err != nil {
		return sys, err
	}
	if err := s.Store.UpdateSystem(ctx, sys); err != nil {
		return sys, err
	}
	sys.Version++
	return sys, s.emit(ctx, ev)
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
	if err := hub.CheckText("contactGroup", "name", "contact.group.name", g.Name, hub.MaxNameLen, true); err != nil {
		return g, err
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
	ev, err := s.prepare(a, "CONTACT_GROUP_CHANGED", g.OrgCVR, map[string]string{"contactGroupId": g.ID, "change": "put"})
	if err != nil {
		return g, err
	}
	if err := s.Store.PutContactGroup(ctx, g); err != nil {
		return g, err
	}
	g.Version++
	return g, s.emit(ctx, ev)
}

// DeleteContactGroup removes a contact group of org.
func (s *Service) DeleteContactGroup(ctx context.Context, a Actor, org, id string) error {
	ev, err := s.prepare(a, "CONTACT_GROUP_CHANGED", org, map[string]string{"contactGroupId": id, "change": "delete"})
	if err != nil {
		return err
	}
	if err := s.Store.DeleteContactGroup(ctx, org, id); err != nil {
		return err
	}
	return s.emit(ctx, ev)
}

// PutContactPoint creates (empty ID) or replaces a contact point; its
// system must be a receiver system of org, its groups groups of org.
func (s *Service) PutContactPoint(ctx context.Context, a Actor, p hub.ContactPoint) (hub.ContactPoint, error) {
	if err := hub.CheckContactPoint(p); err != nil {
		return p, err
	}
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
	ev, err := s.prepare(a, "CONTACT_POINT_CHANGED", p.OrgCVR, map[string]string{"systemId": p.SystemID, "change": "put"})
	if err != nil {
		return p, err
	}
	if p, err = s.Registry.PutContactPoint(ctx, p); err != nil {
		return p, err
	}
	ev.Detail["contactPointId"] = p.ID
	return p, s.emit(ctx, ev)
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
	ev, err := s.prepare(a, "CONTACT_POINT_CHANGED", org, map[string]string{"contactPointId": id, "change": "delete"})
	if err != nil {
		return err
	}
	if err := s.Store.DeleteContactPoint(ctx, org, id); err != nil {
		return err
	}
	return s.emit(ctx, ev)
}

// CreateRule adds a routing rule to a receiver system of the rule's org.
func (s *Service) CreateRule(ctx context.Context, a Actor, r hub.RoutingRule) (hub.RoutingRule, error) {
	switch r.Field {
	case "KLE", "FORM", "CaseID", "GLN", "SOR", "messageCode", "label":
	default:
		return r, invalid("routingRule", "field", "routing.rule.field.invalid", "field is KLE, FORM, CaseID, GLN, SOR, messageCode or label", r.Field)
	}
	if err := hub.CheckText("routingRule", "value", "routing.rule.value", r.Value, hub.MaxCodeLen, true); err != nil {
		return r, err
	}
	sys, err := s.Store.GetSystem(ctx, r.SystemID)
	if err != nil || sys.OrgCVR != r.OrgCVR || sys.Role != hub.RecipientSystem {
		return r, invalid("routingRule", "systemId", "routing.rule.system.invalid", "a rule routes to a receiver system of its own organisation", truncate(r.SystemID, 64))
	}
	r.ID, r.Created = uuid.NewString(), s.now()
	ev, err := s.prepare(a, "ROUTING_RULE_CHANGED", r.OrgCVR, map[string]string{"ruleId": r.ID, "systemId": r.SystemID, "change": "create"})
	if err != nil {
		return r, err
	}
	if err := s.Store.PutRoutingRule(ctx, r); err != nil {
		return r, err
	}
	return r, s.emit(ctx, ev)
}

// DeleteRule removes a routing rule of org.
func (s *Service) DeleteRule(ctx context.Context, a Actor, org, id string) error {
	ev, err := s.prepare(a, "ROUTING_RULE_CHANGED", org, map[string]string{"ruleId": id, "change": "delete"})
	if err != nil {
		return err
	}
	if err := s.Store.DeleteRoutingRule(ctx, org, id); err != nil {
		return err
	}
	return s.emit(ctx, ev)
}

// ImportContacts imports the contact register (text/csv or application/json).
// The import is stored in batches as it streams in; one that stops early
// (a read or store failure) after storing some is recorded as such.
func (s *Service) ImportContacts(ctx context.Context, a Actor, contentType string, r io.Reader) (hub.ImportReport, error) {
	var rep hub.ImportReport
	ev, err := s.prepare(a, "CONTACT_REGISTER_IMPORTED", "", map[string]string{})
	if err != nil {
		return rep, err
	}
	switch contentType {
	case "text/csv":
		rep, err = s.Importer.ImportCSV(ctx, r)
	case "application/json":
		rep, err = s.Importer.ImportJSON(ctx, r)
	default:
		return rep, invalid("request", "Content-Type", "content.type.unsupported", "import text/csv or application/json", truncate(contentType, 64))
	}
	if err != nil && rep.Accepted == 0 {
		return rep, err
	}
	if rep.Rejected == nil {
		rep.Rejected = []hub.RejectedLine{}
	}
	ev.Detail["accepted"], ev.Detail["rejected"] = strconv.Itoa(rep.Accepted), strconv.Itoa(len(rep.Rejected))
	if err != nil {
		ev.Detail["stoppedEarly"] = string(hub.ErrorCode(err))
	}
	if rerr := s.emit(ctx, ev); rerr != nil {
		return rep, rerr
	}
	return rep, err
}

// NewUser is a human account to create, optionally with privileges in the
// organisation it is created for.
type NewUser struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Email      string   `json:"email,omitempty"`
	Password   string   `json:"password"`
	Privileges []string `json:"privileges,omitempty"`
}

// CreateUser creates a local account (argon2id password hash) for org
// (recorded in org's event log) and grants it nu.Privileges there. Every
// field and every grant is checked before anything is stored, so a grant
// the creator may not make refuses the whole creation (Forbidden).
// Conflict when the id is taken.
func (s *Service) CreateUser(ctx context.Context, a Actor, org string, nu NewUser) (UserGrants, error) {
	out := UserGrants{Privileges: []string{}}
	if !rbac.ValidUserID(nu.ID) {
		return out, invalid("user", "id", "user.id.invalid", rbac.UserIDRule, truncate(nu.ID, rbac.MaxUserIDLen))
	}
	if err := hub.CheckText("user", "name", "user.name", nu.Name, hub.MaxNameLen, true); err != nil {
		return out, err
	}
	if err := hub.CheckText("user", "email", "user.email", nu.Email, hub.MaxEmailLen, false); err != nil {
		return out, err
	}
	if len(nu.Password) > rbac.MaxPasswordLen {
		return out, invalid("user", "password", "password.too.long", "a password has at most 1024 bytes", "")
	}
	var grants []rbac.Grant
	var events []hub.Event
	for _, r := range nu.Privileges {
		g := rbac.Grant{User: nu.ID, Role: r, Domain: org}
		if slices.Contains(grants, g) {
			continue
		}
		if err := s.grantorMay(a, g); err != nil {
			return out, err
		}
		ev, err := s.prepare(a, "PRIVILEGES_GRANTED", orgOf(g.Domain), map[string]string{"userId": g.User, "privilege": g.Role, "scope": g.Domain})
		if err != nil {
			return out, err
		}
		grants, events = append(grants, g), append(events, ev)
	}
	created, err := s.prepare(a, "IDENTITY_CREATED", org, map[string]string{"userId": nu.ID})
	if err != nil {
		return out, err
	}
	// A user without a password logs in only through an OpenID provider.
	var hash string
	if nu.Password != "" {
		if hash, err = s.Hasher.Hash(ctx, nu.Password); err != nil {
			return out, err
		}
	}
	out.User = hub.User{ID: nu.ID, Name: strings.TrimSpace(nu.Name), Email: strings.TrimSpace(nu.Email), Org: org, PasswordHash: hash, Created: s.now(), Active: true}
	if err := s.Store.CreateUser(ctx, out.User); err != nil {
		return out, err
	}
	if err := s.emit(ctx, created); err != nil {
		return out, err
	}
	for i, g := range grants {
		if err := s.Enforcer.Grant(ctx, g); err != nil {
			return out, err
		}
		out.Privileges = append(out.Privileges, g.Role)
		if err := s.emit(ctx, events[i]); err != nil {
			return out, err
		}
	}
	return out, nil
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

// Grant gives a user a privilege. The user must exist and, unless a hub
// operator grants, belong to the privilege's organisation (HomeOf); the
// grantor must hold the privilege's permissions (see grantorMay). Another
// organisation's user is answered as an unknown one (user.unknown), so
// that nobody learns which ids other organisations use, nor ends their
// sessions by granting them something.
func (s *Service) Grant(ctx context.Context, a Actor, g rbac.Grant) error {
	if err := s.grantorMay(a, g); err != nil {
		return err
	}
	ev, err := s.prepare(a, "PRIVILEGES_GRANTED", orgOf(g.Domain), map[string]string{"userId": g.User, "privilege": g.Role, "scope": g.Domain})
	if err != nil {
		return err
	}
	u, err := s.Store.GetUser(ctx, g.User)
	if err != nil && hub.ErrorCode(err) != hub.NotFound {
		return err
	}
	if err != nil || !s.operates(a) && s.HomeOf(u) != g.Domain {
		return invalid("privilege", "userId", "user.unknown", "no user of organisation "+g.Domain+" has this id", g.User)
	}
	return s.emitChange(ctx, ev, s.Enforcer.Grant(ctx, g))
}

// HomeOf is the organisation u belongs to: its recorded Org, or, for an
// account that has none, the one organisation it holds privileges in
// ("" when none or several: only an operator grants it more).
func (s *Service) HomeOf(u hub.User) string {
	if u.Org != "" {
		return u.Org
	}
	home := ""
	for _, d := range s.Enforcer.Domains(u.ID) {
		switch {
		case d == rbac.Global:
		case home != "":
			return ""
		default:
			home = d
		}
	}
	return home
}

// emitChange records a privilege change's event when the change was
// stored — also when something after it failed (rbac.ChangeStored): the
// grant or revocation happened, and the log must say so — and returns
// err, or the event's error.
func (s *Service) emitChange(ctx context.Context, ev hub.Event, err error) error {
	if err != nil && !rbac.ChangeStored(err) {
		return err
	}
	if eerr := s.emit(ctx, ev); err == nil {
		return eerr
	}
	return err
}

// Revoke takes a privilege away, under the same rules as Grant.
func (s *Service) Revoke(ctx context.Context, a Actor, g rbac.Grant) error {
	if err := s.grantorMay(a, g); err != nil {
		return err
	}
	ev, err := s.prepare(a, "PRIVILEGES_REVOKED", orgOf(g.Domain), map[string]string{"userId": g.User, "privilege": g.Role, "scope": g.Domain})
	if err != nil {
		return err
	}
	return s.emitChange(ctx, ev, s.Enforcer.Revoke(ctx, g))
}

func orgOf(dom string) string {
	if dom == rbac.Global {
		return ""
	}
	return dom
}

// grantorMay decides whether a may grant or revoke g: g is well-formed;
// nobody changes their own privileges; a hub operator may change any
// other; everyone else needs users:write in g's organisation and every
// permission g's privilege carries, held there itself — so no grantor
// hands out (or takes from a real holder) more than it has. Forbidden
// with a field code naming the rule.
func (s *Service) grantorMay(a Actor, g rbac.Grant) error {
	if err := rbac.ValidateGrant(g); err != nil {
		return err
	}
	if a.Subject.User != "" && a.Subject.User == g.User {
		return forbidden("userId", "privilege.grantor.self", "nobody grants or revokes their own privileges", g.User)
	}
	return s.mayHandOut(a, g.Role, g.Domain)
}

// operates reports whether a is a hub operator. Without an enforcer (tests
// of the API alone) only the operator token is.
func (s *Service) operates(a Actor) bool {
	if s.Enforcer == nil {
		return a.Subject.User == "" && a.Subject.Home == rbac.Global && rbac.RoleHas(a.Subject.Role, rbac.HubOperate)
	}
	return s.Enforcer.Allowed(a.Subject, rbac.Global, rbac.HubOperate)
}

// mayHandOut is grantorMay's rule on the privilege itself, whoever gets it.
func (s *Service) mayHandOut(a Actor, role, dom string) error {
	if s.operates(a) {
		return nil
	}
	if r, _ := rbac.RoleByName(role); r.Global {
		return forbidden("privilege", "privilege.grantor.not.operator", "only a hub operator grants or revokes global privileges", role)
	}
	if !s.Enforcer.Allowed(a.Subject, dom, rbac.UsersWrite) {
		return forbidden("organisation", "privilege.grantor.not.user.administrator",
			fmt.Sprintf("granting in %s needs %s there", dom, rbac.UsersWrite), dom)
	}
	if lacks := s.Enforcer.Lacks(a.Subject, dom, role); len(lacks) > 0 {
		names := make([]string, len(lacks))
		for i, p := range lacks {
			names[i] = string(p)
		}
		return forbidden("privilege", "privilege.grantor.lacks.permissions",
			fmt.Sprintf("%s carries %s, which you do not hold in %s; a grantor grants or revokes only what it holds", role, strings.Join(names, ", "), dom), role)
	}
	return nil
}

// Grantable lists the organisation privileges a may grant and revoke in
// org (what the portal offers).
func (s *Service) Grantable(a Actor, org string) []rbac.Role {
	var out []rbac.Role
	for _, r := range rbac.Roles {
		if !r.Global && !r.System && s.mayHandOut(a, r.Name, org) == nil {
			out = append(out, r)
		}
	}
	return out
}

func forbidden(field, code, msg, value string) error {
	return &hub.Error{Code: hub.Forbidden, Message: msg, Fields: []hub.FieldError{{Resource: "privilege", Field: field, Code: code, Message: msg, RejectedValue: value}}}
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
	ev, err := s.prepare(a, "MESSAGE_RECALLED_BY_ADMINISTRATOR", org, map[string]string{"messageUUID": messageUUID})
	if err != nil {
		return hub.Message{}, err
	}
	if err := s.Ingest.Recall(ctx, org, a.Name, messageUUID); err != nil {
		return hub.Message{}, err
	}
	if err := s.emit(ctx, ev); err != nil {
		return hub.Message{}, err
	}
	m, err := s.Store.GetMessage(ctx, messageUUID)
	m.Content = nil
	return m, err
}

// SearchEvents returns org's sealed events matching q (newest first by
// default) and records the search (EVENT_LOG_SEARCHES) before answering.
func (s *Service) SearchEvents(ctx context.Context, a Actor, org string, q hub.EventQuery) ([]hub.Event, error) {
	q.Org = org
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 100
	}
	if err := s.Record(ctx, a, "EVENT_LOG_SEARCHES", org, map[string]string{"tags": strings.Join(q.Tags, ","), "actor": q.Actor,
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

// truncate cuts s to at most n bytes, at a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
