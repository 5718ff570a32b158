package hub

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Limits of receiver systems per organisation (the national hub's rule):
// an authority connects up to four systems for authority post, exactly one
// of them the default, plus one for its CVR post; a company connects one.
const (
	MaxAuthorityPostSystems = 4
	MaxCompanySystems       = 1
)

var (
	cvrRe = regexp.MustCompile(`^[0-9]{8}$`)
	cprRe = regexp.MustCompile(`^[0-9]{10}$`)
)

// ValidCVR and ValidCPR check the shape of party ids.
func ValidCVR(s string) bool { return cvrRe.MatchString(s) }
func ValidCPR(s string) bool { return cprRe.MatchString(s) }

// Registry manages organisations, their systems and contact structure,
// enforcing the domain's rules. Where a rule is about a whole set (at most
// four authority-post systems, exactly one default) the rule is a
// ReceiverRule that the store decides in the same step as it writes
// (Store.ChangeReceivers), so concurrent administrators cannot break it.
type Registry struct {
	Store Store
	Now   func() time.Time
}

func (g *Registry) now() time.Time {
	if g.Now != nil {
		return g.Now().UTC()
	}
	return time.Now().UTC()
}

// DefaultSetup is the setup of an organisation created without one:
// receiver systems fetch its post once it connects any, and until then the
// post waits in its mailbox (and is queued to the first system that
// connects). It never strands post, as MAILBOX_ONLY would for an
// organisation that then connects a receiver system.
const DefaultSetup = SetupSystemRetrieval

// CreateOrg registers an organisation; an empty setup is DefaultSetup.
// Invalid for a bad CVR, name, kind, setup or sendFor (checked before
// anything is stored); Conflict when it exists.
func (g *Registry) CreateOrg(ctx context.Context, o Organisation) (Organisation, error) {
	if err := CheckOrg(o); err != nil {
		return o, err
	}
	if o.Setup == "" {
		o.Setup = DefaultSetup
	}
	now := g.now()
	o.Created, o.Updated, o.Version, o.Active = now, now, 1, true
	return o, g.Store.CreateOrg(ctx, o)
}

// ChangeSetup sets how an organisation receives its post. version, when
// not 0, must equal the stored Version (Conflict otherwise, as for a
// concurrent change). Invalid for an unknown setup, or CONTACTABLE for a
// company. Receiver systems of an organisation switched to MAILBOX_ONLY
// stay registered and get no post until the setup changes back.
func (g *Registry) ChangeSetup(ctx context.Context, org string, setup Setup, version int64) (Organisation, error) {
	o, err := g.Store.GetOrg(ctx, org)
	if err != nil {
		return o, err
	}
	switch setup {
	case SetupContactable, SetupSystemRetrieval, SetupMailboxOnly:
	default:
		return o, InvalidField("organisation", "setup", "organisation.setup.invalid", "setup is CONTACTABLE, SYSTEM_RETRIEVAL or MAILBOX_ONLY", string(setup))
	}
	if o.Kind == Company && setup == SetupContactable {
		return o, InvalidField("organisation", "setup", "organisation.setup.invalid", "only authorities have a contact structure", string(setup))
	}
	if version != 0 && version != o.Version {
		return o, Errorf(Conflict, "organisation %s changed (version %d, not %d); reload and retry", org, o.Version, version)
	}
	o.Setup, o.Updated = setup, g.now()
	if err := g.Store.UpdateOrg(ctx, o); err != nil {
		return o, err
	}
	o.Version++
	return o, nil
}

// NewToken returns a fresh API token and the hash stored for it. The token
// is shown to the administrator once and never stored.
func NewToken() (token, hash string) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	token = "ph_" + base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token)
}

// HashToken is the stored form of an API token.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// SystemSpec is what an administrator supplies to register a system.
type SystemSpec struct {
	Name            string
	Role            SystemRole
	Mailbox         MailboxKind
	Default         bool
	Protocol        Protocol
	Endpoint        string
	ReceiptEndpoint string
	MemoVersion     string
}

// RegisterSystem adds a system to an organisation and returns it with its
// API token (shown once). A receiver system needs an organisation that
// receives through systems: Conflict "organisation.setup.mailbox.only"
// for one whose setup is MAILBOX_ONLY. Receiver systems obey the limits,
// checked in the write itself (Store.ChangeReceivers), so they hold when
// administrators register at the same instant: Conflict with code
// "system.limit.authority.post" (a fifth authority-post system),
// "system.limit.cvr.post" (a second CVR-post system),
// "system.limit.company" (a second system of a company),
// "system.default.exists" (a second default). The first authority-post
// system becomes the default.
func (g *Registry) RegisterSystem(ctx context.Context, org string, sp SystemSpec) (System, string, error) {
	o, err := g.Store.GetOrg(ctx, org)
	if err != nil {
		return System{}, "", err
	}
	if err := CheckSystemSpec(sp); err != nil {
		return System{}, "", err
	}
	s := System{ID: uuid.NewString(), OrgCVR: org, Name: sp.Name, Role: sp.Role, Active: true, Version: 1}
	if sp.Role == RecipientSystem {
		if err := checkReceiver(o, &sp); err != nil {
			return System{}, "", err
		}
		s.Mailbox, s.Default = sp.Mailbox, sp.Default
		s.Protocol, s.Endpoint, s.ReceiptEndpoint = sp.Protocol, sp.Endpoint, sp.ReceiptEndpoint
		s.MemoVersion = sp.MemoVersion
	}
	token, hash := NewToken()
	s.TokenHash = hash
	now := g.now()
	s.Created, s.Updated = now, now
	if sp.Role == RecipientSystem {
		err = g.Store.ChangeReceivers(ctx, org, ReceiverChange{Add: &s, At: now, Rule: admitReceiver(o.Kind, s)})
	} else {
		err = g.Store.CreateSystem(ctx, s)
	}
	if err != nil {
		return System{}, "", err
	}
	return s, token, nil
}

// checkReceiver validates a receiver system's spec against its
// organisation and fills in the defaults (REST_PULL, MeMo 1.1, authority
// post for an authority, CVR post for a company).
func checkReceiver(o Organisation, sp *SystemSpec) error {
	if o.Setup == SetupMailboxOnly {
		msg := "organisation " + o.CVR + " has setup MAILBOX_ONLY: its post stays in its mailbox for viewing clients and a receiver system would never get any. " +
			`Change the organisation's setup first (PUT /apis/v1/organisations/` + o.CVR + ` with {"setup":"SYSTEM_RETRIEVAL"}`
		if o.Kind == Authority {
			msg += `, or "CONTACTABLE" with a contact structure`
		}
		msg += "), then register the receiver system"
		return &Error{Code: Conflict, Message: msg, Fields: []FieldError{{Resource: "organisation", Field: "setup",
			Code: "organisation.setup.mailbox.only", Message: msg, RejectedValue: string(o.Setup)}}}
	}
	if sp.Protocol == "" {
		sp.Protocol = RestPull
	}
	if sp.Protocol != RestPull && sp.Protocol != RestPush {
		return InvalidField("system", "protocol", "system.protocol.invalid", "protocol is REST_PULL or REST_PUSH", string(sp.Protocol))
	}
	if sp.Protocol == RestPush && !strings.HasPrefix(sp.Endpoint, "https://") && !strings.HasPrefix(sp.Endpoint, "http://") {
		return InvalidField("system", "endpoint", "system.endpoint.invalid", "a REST_PUSH system needs an http(s) endpoint", sp.Endpoint)
	}
	switch sp.MemoVersion {
	case "":
		sp.MemoVersion = "1.1"
	case "1.1", "1.2":
	default:
		return InvalidField("system", "memoVersion", "system.memo.version.invalid", "memoVersion is 1.1 or 1.2", sp.MemoVersion)
	}
	if o.Kind == Company {
		sp.Mailbox, sp.Default = CVRPost, false
		return nil
	}
	switch sp.Mailbox {
	case "":
		sp.Mailbox = AuthorityPost
	case CVRPost:
		sp.Default = false
	case AuthorityPost:
	default:
		return InvalidField("system", "mailbox", "system.mailbox.invalid", "mailbox is AUTHORITY_POST or CVR_POST", string(sp.Mailbox))
	}
	return nil
}

func conflictField(field, code, msg string) *Error {
	return &Error{Code: Conflict, Message: msg, Fields: []FieldError{{Resource: "system", Field: field, Code: code, Message: msg}}}
}

// admitReceiver is the receiver rule for a new receiver system s of an
// organisation of the given kind: an authority connects at most four
// systems for authority post, exactly one of them the default (the first
// one, or the one registered with Default while there is none), and one
// for its CVR post; a company connects one.
func admitReceiver(kind OrgKind, s System) ReceiverRule {
	return func(active []Receiver) ([]Receiver, error) {
		var auth, cvr int
		var hasDefault bool
		for _, r := range active {
			if r.Mailbox == CVRPost {
				cvr++
			} else {
				auth++
				hasDefault = hasDefault || r.Default
			}
		}
		r := Receiver{ID: s.ID, Mailbox: s.Mailbox}
		switch {
		case kind == Company:
			if auth+cvr >= MaxCompanySystems {
				return nil, conflictField("role", "system.limit.company", "a company connects at most one receiver system")
			}
		case s.Mailbox == CVRPost:
			if cvr >= 1 {
				return nil, conflictField("mailbox", "system.limit.cvr.post", "an authority connects exactly one receiver system for its CVR post, and it exists already")
			}
		default:
			if auth >= MaxAuthorityPostSystems {
				return nil, conflictField("mailbox", "system.limit.authority.post", "an authority connects at most four receiver systems for authority post")
			}
			if s.Default && hasDefault {
				return nil, conflictField("default", "system.default.exists", "the organisation has a default receiver system; use makedefaultrecipient to change it")
			}
			// There is exactly one default once any authority-post system
			// is active: the first one is it.
			r.Default = !hasDefault
		}
		return append(active, r), nil
	}
}

// MakeDefault marks an active authority-post receiver system as the
// default and unmarks the previous one, in one step (Store.ChangeReceivers):
// concurrent calls leave exactly one default. Conflict
// "system.default.not.eligible" for any other system.
func (g *Registry) MakeDefault(ctx context.Context, org, id string) (System, error) {
	if _, err := g.systemOf(ctx, org, id); err != nil {
		return System{}, err
	}
	err := g.Store.ChangeReceivers(ctx, org, ReceiverChange{At: g.now(), Rule: func(active []Receiver) ([]Receiver, error) {
		found := false
		for _, r := range active {
			found = found || (r.ID == id && r.Mailbox == AuthorityPost)
		}
		if !found {
			return nil, &Error{Code: Conflict, Message: "only an active authority-post receiver system can be the default",
				Fields: []FieldError{{Resource: "system", Field: "id", Code: "system.default.not.eligible", Message: "not an active authority-post receiver system", RejectedValue: id}}}
		}
		out := make([]Receiver, len(active))
		for i, r := range active {
			r.Default = r.ID == id
			out[i] = r
		}
		return out, nil
	}})
	if err != nil {
		return System{}, err
	}
	return g.Store.GetSystem(ctx, id)
}

// RotateToken replaces a system's API token; the old one stops working.
func (g *Registry) RotateToken(ctx context.Context, org, id string) (System, string, error) {
	s, err := g.systemOf(ctx, org, id)
	if err != nil {
		return s, "", err
	}
	token, hash := NewToken()
	s.TokenHash, s.Updated = hash, g.now()
	if err := g.Store.UpdateSystem(ctx, s); err != nil {
		return s, "", err
	}
	s.Version++
	return s, token, nil
}

// DeactivateSystem turns a system off. The default receiver cannot be
// deactivated while other authority-post systems are active (make another
// the default first): Conflict "system.default.required", decided in the
// same step as the write (Store.ChangeReceivers).
func (g *Registry) DeactivateSystem(ctx context.Context, org, id string) (System, error) {
	s, err := g.systemOf(ctx, org, id)
	if err != nil {
		return s, err
	}
	if s.Role != RecipientSystem {
		if !s.Active {
			return s, nil
		}
		s.Active, s.Updated = false, g.now()
		if err := g.Store.UpdateSystem(ctx, s); err != nil {
			return s, err
		}
		s.Version++
		return s, nil
	}
	err = g.Store.ChangeReceivers(ctx, org, ReceiverChange{At: g.now(), Rule: func(active []Receiver) ([]Receiver, error) {
		var out []Receiver
		var isDefault, others bool
		for _, r := range active {
			if r.ID == id {
				isDefault = r.Default
				continue
			}
			others = others || r.Mailbox == AuthorityPost
			out = append(out, r)
		}
		if isDefault && others {
			return nil, conflictField("default", "system.default.required", "make another system the default before deactivating this one")
		}
		return out, nil
	}})
	if err != nil {
		return System{}, err
	}
	return g.Store.GetSystem(ctx, id)
}

func (g *Registry) systemOf(ctx context.Context, org, id string) (System, error) {
	s, err := g.Store.GetSystem(ctx, id)
	if err != nil {
		return s, err
	}
	if s.OrgCVR != org {
		// Another organisation's system does not exist for this caller.
		return System{}, Errorf(NotFound, "no system %s in organisation %s", id, org)
	}
	return s, nil
}

// Authenticate finds the active system an API token belongs to.
// Unauthorized for an unknown token or an inactive system.
func (g *Registry) Authenticate(ctx context.Context, token string) (System, error) {
	if token == "" {
		return System{}, Errorf(Unauthorized, "missing API token")
	}
	s, err := g.Store.SystemByToken(ctx, HashToken(token))
	if ErrorCode(err) == NotFound {
		return System{}, Errorf(Unauthorized, "unknown API token")
	}
	if err != nil {
		return System{}, err
	}
	if !s.Active {
		return System{}, Errorf(Unauthorized, "the system is deactivated")
	}
	return s, nil
}

// PutContactPoint validates and stores a contact point: its system must be
// an active receiver system of the same organisation.
func (g *Registry) PutContactPoint(ctx context.Context, p ContactPoint) (ContactPoint, error) {
	if err := CheckContactPoint(p); err != nil {
		return p, err
	}
	s, err := g.Store.GetSystem(ctx, p.SystemID)
	if ErrorCode(err) == NotFound || (err == nil && (s.OrgCVR != p.OrgCVR || s.Role != RecipientSystem)) {
		return p, InvalidField("contactPoint", "systemId", "contact.point.system.invalid", "a contact point maps to a receiver system of its own organisation", p.SystemID)
	}
	if err != nil {
		return p, err
	}
	for _, c := range p.Codes {
		switch c.Type {
		case CodeKLE, CodeFORM, CodeGLN, CodeSOR, CodeCustom:
		default:
			return p, InvalidField("contactPoint", "contactPointCodes", "contact.point.code.type.invalid", "code type is KLE, FORM, GLN, SOR or CUSTOM", string(c.Type))
		}
		if strings.TrimSpace(c.Code) == "" {
			return p, InvalidField("contactPoint", "contactPointCodes", "contact.point.code.empty", "a contact point code needs a value", "")
		}
	}
	if p.SizeThresholdMB < 0 || p.AttachmentLimit < 0 {
		return p, InvalidField("contactPoint", "memoSizeThresholdMB", "contact.point.limit.invalid", "limits are zero (none) or positive", "")
	}
	if p.ID == "" {
		p.ID = uuid.NewString()
		p.Created = g.now()
		p.Version = 0
	}
	if err := g.Store.PutContactPoint(ctx, p); err != nil {
		return p, err
	}
	p.Version++
	return p, nil
}

// CodeTaken is the store's refusal of a contact point whose code c another
// point (owner) of the organisation carries.
func CodeTaken(c ContactPointCode, owner string) error {
	msg := "contact-point code " + string(c.Type) + " " + c.Code + " belongs to another contact point of the organisation (" + owner + ")"
	return &Error{Code: Conflict, Message: msg, Fields: []FieldError{{Resource: "contactPoint", Field: "contactPointCodes",
		Code: "contact.point.code.taken", Message: "a contact-point code names one contact point of an organisation", RejectedValue: string(c.Type) + " " + c.Code}}}
}
