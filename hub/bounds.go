package hub

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds of what an administrator may store. Every administrative change
// is recorded in the event log, whose entries carry at most
// MaxEventDetailValue bytes per detail value; a name is recorded whole, so
// MaxNameLen characters of at most utf8.UTFMax bytes each must fit in one
// value. Checking these before anything is written is what lets a change be
// refused whole rather than stored and then found unloggable.
const (
	// MaxNameLen is the longest name, in characters, of an organisation,
	// system, contact group, contact point or user.
	MaxNameLen = MaxEventDetailValue / utf8.UTFMax
	// MaxURLLen bounds a receiver system's push and receipt endpoints.
	MaxURLLen = 2048
	// MaxEmailLen is RFC 5321's longest forward path.
	MaxEmailLen = 254
	// MaxCodeLen bounds a contact-point code and a routing rule's value.
	MaxCodeLen = 128
	// MaxCodesPerPoint and MaxGroupsPerPoint bound a contact point's lists.
	MaxCodesPerPoint  = 32
	MaxGroupsPerPoint = 32
	// MaxSendFor bounds the organisations one may send on behalf of.
	MaxSendFor = 100
)

// OrgLimit bounds how many records of one kind an organisation has. The
// router reads an organisation's systems and routing rules, and for a
// letter with contact-point codes its contact points, for every letter
// addressed to it, so what one organisation registers must not make
// everyone's letters slow. Each store checks the bound in the write that
// adds a record (so concurrent additions cannot pass it together) and
// answers Limited; replacing or deleting a record is never refused.
type OrgLimit struct {
	Resource string // the API resource, e.g. "routingRule"
	Code     string // the field error's code
	What     string // the records, in prose
	Max      int
}

// The organisations' bounds. Systems count whether active or not (a
// system is deactivated, never deleted); receiver systems obey the
// five-system rule besides. Max is a variable so that tests can lower it.
var (
	SystemsLimit       = OrgLimit{Resource: "system", Code: "system.limit.organisation", What: "systems", Max: 100}
	RulesLimit         = OrgLimit{Resource: "routingRule", Code: "routing.rule.limit", What: "routing rules", Max: 1000}
	ContactGroupsLimit = OrgLimit{Resource: "contactGroup", Code: "contact.group.limit", What: "contact groups", Max: 1000}
	ContactPointsLimit = OrgLimit{Resource: "contactPoint", Code: "contact.point.limit", What: "contact points", Max: 1000}
)

// Limited is the Conflict a store answers a record beyond l in org with.
func (l OrgLimit) Limited(org string) error {
	msg := fmt.Sprintf("organisation %s has %d %s, the most an organisation may have; delete one first", org, l.Max, l.What)
	if l.Resource == "system" {
		msg = fmt.Sprintf("organisation %s has %d systems (active or deactivated), the most an organisation may have", org, l.Max)
	}
	return &Error{Code: Conflict, Message: msg, Fields: []FieldError{{Resource: l.Resource, Code: l.Code, Message: msg}}}
}

// Bounds of one event-log entry: identifiers and small metadata, never
// message content. The event log refuses an entry beyond them (CheckEvent).
const (
	MaxEventDetailEntries = 32
	MaxEventDetailValue   = 1024
	MaxEventOrgs          = 16
)

// CheckEvent enforces the bounds every event-log entry obeys. The event log
// applies it to every entry it appends; a service that records a change
// applies it to the entry before it makes the change. Invalid for an entry
// without a tag or with too much detail.
func CheckEvent(ev Event) error {
	if ev.Tag == "" {
		return Errorf(Invalid, "event without tag")
	}
	for name, v := range map[string]string{"tag": ev.Tag, "actor": ev.Actor, "systemId": ev.SystemID,
		"messageUUID": ev.MessageUUID, "party": ev.Party} {
		if len(v) > MaxEventDetailValue {
			return Errorf(Invalid, "event %.40q: %s is longer than %d bytes", ev.Tag, name, MaxEventDetailValue)
		}
	}
	if len(ev.Orgs) > MaxEventOrgs {
		return Errorf(Invalid, "event %s concerns %d organisations (at most %d)", ev.Tag, len(ev.Orgs), MaxEventOrgs)
	}
	for _, o := range ev.Orgs {
		if len(o) > MaxEventDetailValue {
			return Errorf(Invalid, "event %s: an organisation is longer than %d bytes", ev.Tag, MaxEventDetailValue)
		}
	}
	if len(ev.Detail) > MaxEventDetailEntries {
		return Errorf(Invalid, "event %s has %d detail entries (at most %d)", ev.Tag, len(ev.Detail), MaxEventDetailEntries)
	}
	for k, v := range ev.Detail {
		if len(k) > MaxEventDetailValue || len(v) > MaxEventDetailValue {
			return Errorf(Invalid, "event %s detail %.40q is longer than %d bytes: identifiers and metadata only", ev.Tag, k, MaxEventDetailValue)
		}
	}
	return nil
}

// CheckText checks a free-text field an administrator supplies: present
// when required, valid UTF-8 without control characters, at most max
// characters. The field error's code is prefix + ".missing", ".invalid" or
// ".too.long" (e.g. "system.name.too.long").
func CheckText(resource, field, prefix, v string, max int, required bool) error {
	switch {
	case strings.TrimSpace(v) == "":
		if required {
			return InvalidField(resource, field, prefix+".missing", fmt.Sprintf("%s is required", field), "")
		}
	case !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl):
		return InvalidField(resource, field, prefix+".invalid", fmt.Sprintf("%s must be text without control characters", field), shorten(v))
	case utf8.RuneCountInString(v) > max:
		return InvalidField(resource, field, prefix+".too.long",
			fmt.Sprintf("%s is at most %d characters (got %d)", field, max, utf8.RuneCountInString(v)), shorten(v))
	}
	return nil
}

// shorten keeps a rejected value short enough to echo, as valid UTF-8.
func shorten(v string) string {
	const keep = 40
	if len(v) > keep {
		n := keep
		for n > 0 && !utf8.RuneStart(v[n]) {
			n--
		}
		v = v[:n] + "…"
	}
	return strings.ToValidUTF8(v, "\uFFFD")
}

// CheckOrg checks everything an organisation's creator supplies (an empty
// setup stands for DefaultSetup), before anything is stored.
func CheckOrg(o Organisation) error {
	if !ValidCVR(o.CVR) {
		return InvalidField("organisation", "cvr", "organisation.cvr.invalid", "a CVR number is 8 digits", shorten(o.CVR))
	}
	if err := CheckText("organisation", "name", "organisation.name", o.Name, MaxNameLen, true); err != nil {
		return err
	}
	switch o.Kind {
	case Authority, Company:
	default:
		return InvalidField("organisation", "kind", "organisation.kind.invalid", "kind is AUTHORITY or COMPANY", shorten(string(o.Kind)))
	}
	switch o.Setup {
	case "", SetupContactable, SetupSystemRetrieval, SetupMailboxOnly:
	default:
		return InvalidField("organisation", "setup", "organisation.setup.invalid", "setup is CONTACTABLE, SYSTEM_RETRIEVAL or MAILBOX_ONLY", shorten(string(o.Setup)))
	}
	if o.Kind == Company && o.Setup == SetupContactable {
		return InvalidField("organisation", "setup", "organisation.setup.invalid", "only authorities have a contact structure", string(o.Setup))
	}
	if len(o.SendFor) > MaxSendFor {
		return InvalidField("organisation", "sendFor", "organisation.sendfor.too.many",
			fmt.Sprintf("an organisation sends on behalf of at most %d others", MaxSendFor), "")
	}
	for _, c := range o.SendFor {
		if !ValidCVR(c) {
			return InvalidField("organisation", "sendFor", "organisation.cvr.invalid", "a CVR number is 8 digits", shorten(c))
		}
	}
	return nil
}

// CheckSystemSpec checks what a system's registrant supplies that needs no
// look-up: its role and free-text fields. The receiver rules (protocol,
// mailbox, limits) are checked on registration, still before anything is
// stored.
func CheckSystemSpec(sp SystemSpec) error {
	switch sp.Role {
	case SenderSystem, RecipientSystem, ViewerSystem:
	default:
		return InvalidField("system", "role", "system.role.invalid", "role is SENDER, RECIPIENT or VIEWER", shorten(string(sp.Role)))
	}
	return CheckSystemFields(sp.Name, sp.Endpoint, sp.ReceiptEndpoint)
}

// CheckSystemFields checks a system's free-text fields (name, endpoints).
func CheckSystemFields(name, endpoint, receiptEndpoint string) error {
	if err := CheckText("system", "name", "system.name", name, MaxNameLen, true); err != nil {
		return err
	}
	if err := CheckText("system", "endpoint", "system.endpoint", endpoint, MaxURLLen, false); err != nil {
		return err
	}
	return CheckText("system", "receiptEndpoint", "system.receipt.endpoint", receiptEndpoint, MaxURLLen, false)
}

// maxIDLen bounds an identifier given to refer to a stored record (they
// are UUIDs); a longer one cannot name anything.
const maxIDLen = 64

// CheckContactPoint checks a contact point's own fields and lists.
func CheckContactPoint(p ContactPoint) error {
	if err := CheckText("contactPoint", "name", "contact.point.name", p.Name, MaxNameLen, true); err != nil {
		return err
	}
	if len(p.SystemID) > maxIDLen {
		return InvalidField("contactPoint", "systemId", "contact.point.system.invalid", "a contact point maps to a receiver system of its own organisation", shorten(p.SystemID))
	}
	if len(p.Codes) > MaxCodesPerPoint {
		return InvalidField("contactPoint", "contactPointCodes", "contact.point.codes.too.many",
			fmt.Sprintf("a contact point has at most %d codes", MaxCodesPerPoint), "")
	}
	if len(p.GroupIDs) > MaxGroupsPerPoint {
		return InvalidField("contactPoint", "contactGroups", "contact.point.groups.too.many",
			fmt.Sprintf("a contact point belongs to at most %d groups", MaxGroupsPerPoint), "")
	}
	for i, c := range p.Codes {
		if err := CheckText("contactPoint", "contactPointCodes", "contact.point.code", c.Code, MaxCodeLen, false); err != nil {
			return err
		}
		if slices.Contains(p.Codes[:i], c) {
			return InvalidField("contactPoint", "contactPointCodes", "contact.point.code.duplicate",
				"a contact point lists each code once", shorten(string(c.Type)+" "+c.Code))
		}
	}
	return nil
}

// CheckKeys refuses identifiers a store keys records by (UUIDs, delivery
// and transmission IDs, queues) that are not valid UTF-8: a store that
// reads a record back through JSON or BSON (a replay of bolt's accept log)
// would find it under another key. Invalid.
func CheckKeys(ids ...string) error {
	for _, id := range ids {
		if !utf8.ValidString(id) {
			return Errorf(Invalid, "identifier %q is not valid UTF-8", shorten(id))
		}
	}
	return nil
}

// CheckDeliveries refuses one write of deliveries that names an ID twice
// (a store would keep one record and index it twice) or an ID that is not
// a key (CheckKeys). Invalid.
func CheckDeliveries(ds []Delivery) error {
	var seen map[string]bool // a letter's few deliveries are compared pairwise (the accept path)
	if len(ds) > 8 {
		seen = make(map[string]bool, len(ds))
	}
	for i, d := range ds {
		twice := false
		if seen != nil {
			twice, seen[d.ID] = seen[d.ID], true
		} else {
			for _, e := range ds[:i] {
				twice = twice || e.ID == d.ID
			}
		}
		if twice {
			return Errorf(Invalid, "delivery %s named twice", shorten(d.ID))
		}
		if err := CheckKeys(d.ID, d.Queue, d.MessageUUID); err != nil {
			return err
		}
	}
	return nil
}
