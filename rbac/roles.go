package rbac

import "slices"

// Global is the domain of hub-wide roles and permissions.
const Global = "*"

// Perm is a permission: "<resource>:<action>".
type Perm string

// The permissions. Global ones are only ever asked for in the Global
// domain; the others in an organisation's domain.
const (
	OrgsCreate     Perm = "orgs:create"     // global: create organisations
	OrgsList       Perm = "orgs:list"       // global: list every organisation
	OrgsRead       Perm = "orgs:read"       // read the organisation's record
	SystemsRead    Perm = "systems:read"    // list and read systems
	SystemsWrite   Perm = "systems:write"   // register, modify, make default, rotate tokens, certificates, deactivate
	ContactsRead   Perm = "contacts:read"   // contact groups, points, routing rules
	ContactsWrite  Perm = "contacts:write"  // change the contact structure and routing rules
	RegisterRead   Perm = "register:read"   // global: read the contact register (kontaktregister)
	RegisterWrite  Perm = "register:write"  // global: import the contact register
	UsersRead      Perm = "users:read"      // list users and their privileges in the organisation
	UsersWrite     Perm = "users:write"     // create users, grant and revoke organisation roles
	StatisticsRead Perm = "statistics:read" // statistics of the organisation
	EventLogRead   Perm = "eventlog:read"   // the organisation's event log
	MessagesRecall Perm = "messages:recall" // list held messages and recall them
	MailboxRead    Perm = "mailbox:read"    // read the organisation's mailbox in a viewing client
	MemosSend      Perm = "memos:send"      // sender system: send, receipts, registration look-up, own recall
	MailboxFetch   Perm = "mailbox:fetch"   // receiver system: list, fetch, acknowledge
	HubOperate     Perm = "hub:operate"     // global: hub operations (outboxes, parked deliveries, …)
	// Self is held by every authenticated principal: its own session.
	Self Perm = "self"
)

// Perms lists every permission; a decision on any other is false.
var Perms = []Perm{OrgsCreate, OrgsList, OrgsRead, SystemsRead, SystemsWrite, ContactsRead, ContactsWrite,
	RegisterRead, RegisterWrite, UsersRead, UsersWrite, StatisticsRead, EventLogRead, MessagesRecall,
	MailboxRead, MemosSend, MailboxFetch, HubOperate, Self}

// GlobalPerms are asked for in the Global domain only.
var GlobalPerms = []Perm{OrgsCreate, OrgsList, RegisterRead, RegisterWrite, HubOperate}

// IsGlobal reports whether p is a hub-wide permission.
func IsGlobal(p Perm) bool { return slices.Contains(GlobalPerms, p) }

// Role names follow the national hub's privilege names.
const (
	OrgAdmin       = "ORGANISATION_ADMINISTRATOR"
	UserAdmin      = "ORGANISATION_USER_ADMINISTRATOR"
	SystemManager  = "SYSTEM_MANAGER"
	ContactAdmin   = "CONTACT_ADMINISTRATOR"
	StatisticsAdm  = "STATISTICS_ADMINISTRATOR"
	MessageLogAdm  = "MESSAGE_LOG_ADMINISTRATOR"
	RecallAdmin    = "RECALL_ADMINISTRATOR"
	MessageEmploye = "MESSAGE_EMPLOYEE"
	SenderSystem   = "SENDER_SYSTEM"
	RecipientSys   = "RECIPIENT_SYSTEM"
	ViewerSystem   = "VIEWER_SYSTEM"
	HubOperator    = "HUB_OPERATOR"
	Auditor        = "AUDITOR"
)

// Role describes one built-in role.
type Role struct {
	Name string `json:"name"`
	// Global roles are granted in the Global domain and apply everywhere.
	Global bool `json:"global"`
	// System roles are held by systems through their registration and
	// cannot be granted to users.
	System      bool   `json:"system"`
	Description string `json:"description"`
	Perms       []Perm `json:"permissions"`
}

// Roles is the role → permission table.
var Roles = []Role{
	{Name: OrgAdmin, Description: "Organisation administrator: everything the organisation administers",
		Perms: []Perm{OrgsRead, SystemsRead, SystemsWrite, ContactsRead, ContactsWrite, UsersRead, UsersWrite, StatisticsRead, EventLogRead, MessagesRecall, Self}},
	{Name: UserAdmin, Description: "User administrator: users and their privileges",
		Perms: []Perm{OrgsRead, UsersRead, UsersWrite, Self}},
	{Name: SystemManager, Description: "System manager: sender and receiver systems",
		Perms: []Perm{OrgsRead, SystemsRead, SystemsWrite, ContactsRead, Self}},
	{Name: ContactAdmin, Description: "Contact administrator: contact groups, contact points, routing rules",
		Perms: []Perm{OrgsRead, SystemsRead, ContactsRead, ContactsWrite, Self}},
	{Name: StatisticsAdm, Description: "Statistics administrator",
		Perms: []Perm{OrgsRead, StatisticsRead, Self}},
	{Name: MessageLogAdm, Description: "Message-log administrator: reads the event log",
		Perms: []Perm{OrgsRead, EventLogRead, Self}},
	{Name: RecallAdmin, Description: "Recall administrator: recalls held messages of the organisation",
		Perms: []Perm{OrgsRead, MessagesRecall, Self}},
	{Name: MessageEmploye, Description: "Message employee: reads the organisation's mailbox in a viewing client",
		Perms: []Perm{OrgsRead, MailboxRead, Self}},
	{Name: SenderSystem, System: true, Description: "Sender system", Perms: []Perm{MemosSend, Self}},
	{Name: RecipientSys, System: true, Description: "Receiver system", Perms: []Perm{MailboxFetch, Self}},
	{Name: ViewerSystem, System: true, Description: "Viewing client", Perms: []Perm{MailboxRead, Self}},
	{Name: HubOperator, Global: true, Description: "Hub operator: every administrative permission in every organisation",
		Perms: []Perm{OrgsCreate, OrgsList, OrgsRead, SystemsRead, SystemsWrite, ContactsRead, ContactsWrite, RegisterRead, RegisterWrite,
			UsersRead, UsersWrite, StatisticsRead, EventLogRead, MessagesRecall, HubOperate, Self}},
	{Name: Auditor, Global: true, Description: "Auditor: reads everything, changes nothing",
		Perms: []Perm{OrgsList, OrgsRead, SystemsRead, ContactsRead, RegisterRead, UsersRead, StatisticsRead, EventLogRead, Self}},
}

// RoleByName returns the built-in role.
func RoleByName(name string) (Role, bool) {
	for _, r := range Roles {
		if r.Name == name {
			return r, true
		}
	}
	return Role{}, false
}

// RoleHas reports whether the built-in role holds p.
func RoleHas(role string, p Perm) bool {
	r, ok := RoleByName(role)
	return ok && slices.Contains(r.Perms, p)
}

// model is the casbin model: roles per domain, global roles in every domain.
const modelText = `
[request_definition]
r = sub, dom, perm

[policy_definition]
p = sub, perm

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = (g(r.sub, p.sub, r.dom) || g(r.sub, p.sub, "*")) && r.perm == p.perm
`
