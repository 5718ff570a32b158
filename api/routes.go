package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/posthub/posthub/rbac"
)

// Route is one entry of the route table.
type Route struct {
	Method string
	Path   string // gin syntax: /apis/v1/receipts/:id
	Access Access
	// Perm is the permission the route needs (decided by rbac in the
	// route's :org, or the caller's organisation). Routes with Perm "" use
	// the permission their Access maps to.
	Perm    rbac.Perm
	Tag     string
	Summary string
	// Params documents query parameters: name → description.
	Params map[string]string
	// Consumes lists accepted request content types ("" for none).
	Consumes []string
	// Produces is the success content type and status; ProducesAlso
	// lists other content types of the same body, chosen by Accept.
	Produces     string
	ProducesAlso []string
	Status       int
	// Errors lists error statuses the route answers beyond those the
	// OpenAPI document derives from its shape (401/403, 400, 404, 409).
	Errors []int
	// Schema names the success body's schema in the OpenAPI components.
	Schema string
	// Upload marks a route whose body may be large and slow to arrive (a
	// MeMo, an archive, an import): it is held to a minimum upload rate
	// instead of the small bodies' deadline (see IsUpload). Its path has
	// no parameters.
	Upload bool
	// Optional marks a route served by a service a hub may run without
	// (system retrieval, the viewer, the event log): without it the route
	// answers 503 unavailable, and openapi.json says so.
	Optional bool
	Handler  gin.HandlerFunc
}

const v1 = "/apis/v1"

// table is the whole route table; each area contributes its own routes.
func (s *Server) table() []Route {
	var all []Route
	for _, part := range [][]Route{s.opsRoutes(), s.sendRoutes(), s.registryRoutes(), s.sf1601Routes()} {
		all = append(all, part...)
	}
	for _, part := range [][]Route{s.retrievalRoutes(), s.eventRoutes(), s.viewerRoutes()} {
		for _, r := range part {
			r.Optional = true
			all = append(all, r)
		}
	}
	return all
}

func (s *Server) opsRoutes() []Route {
	rs := []Route{
		{Method: "GET", Path: "/healthz", Access: Public, Tag: "operations", Summary: "Liveness: the process serves requests.",
			Produces: "application/json", Status: 200, Handler: s.handleHealthz},
		{Method: "GET", Path: "/readyz", Access: Public, Tag: "operations", Summary: "Readiness: the metadata store is reachable and serves (503 with the reason when not, e.g. its accept log cannot be written or applied).",
			Produces: "application/json", Status: 200, Handler: s.handleReadyz},
		{Method: "GET", Path: v1 + "/openapi.json", Access: Public, Tag: "operations", Summary: "This API's OpenAPI 3 document.",
			Produces: "application/json", Status: 200, Handler: s.handleOpenAPI},
	}
	if !s.cfg.MetricsElsewhere {
		rs = append(rs, Route{Method: "GET", Path: "/metrics", Access: Scraper, Tag: "operations",
			Summary:  "Prometheus metrics: for the metrics token (-metrics-token) or a holder of hub:operate. Absent here when served on -metrics-addr.",
			Produces: "text/plain", Status: 200, Handler: s.handleMetrics()})
	}
	return rs
}

func (s *Server) sendRoutes() []Route {
	return []Route{
		{Method: "POST", Path: v1 + "/memos/", Access: Sender, Tag: "send",
			Summary: "Send one MeMo (application/xml) or many in a tar archive compressed with lzma (application/x-lzma, or multipart/form-data part \"file\"). " +
				"An archive is held to the hub's bounds (413 archive.too.large, archive.dictionary.too.large, archive.decompressed.too.large, " +
				"archive.entry.too.large, archive.entries.too.many); crossed after MeMos were read, the answer is 201 BulkReceipts with archiveError and stoppedAt.",
			Params: map[string]string{
				"memo-message-uuid": "the MeMo's messageUUID (single MeMo only; must equal MessageHeader/messageUUID)",
				"mode":              "delivery mode: AUTOMATIC (default; digital, else print), DIGITAL (digital only), PRINT, NEMSMS; SF1601 names accepted",
				"archive":           "sent-archive copy: FORWARD_ONLY (default), FORWARD_ELSE_KEEP, FORWARD_AND_KEEP",
			},
			Consumes: []string{"application/xml", "text/xml", "application/x-lzma", "multipart/form-data"},
			Produces: "application/json", Status: 201, Schema: "Receipt", Upload: true, Handler: s.handleSendMemo},
		{Method: "POST", Path: v1 + "/memos/:id/recall", Access: Sender, Tag: "send",
			Summary:  "Recall a message held by doNotDeliverUntilDate, before that date: one the calling system's organisation sent, or one a system of it sent on another organisation's behalf (sendFor).",
			Produces: "application/json", Status: 200, Schema: "Message", Handler: s.handleRecall},
		{Method: "GET", Path: v1 + "/sent/", Access: Sender, Tag: "send",
			Summary:  "List the organisation's sent-archive: letters sent with archive=FORWARD_AND_KEEP (or FORWARD_ELSE_KEEP and undelivered), newest first.",
			Params:   map[string]string{"after": "cursor: the previous page's nextCursor (a messageUUID)", "size": "page size (default 100, max 1000)"},
			Produces: "application/json", Status: 200, Schema: "MessageList", Handler: s.handleListSent},
		{Method: "GET", Path: v1 + "/sent/:id", Access: Sender, Tag: "send",
			Summary:  "Read an archived letter's MeMo as sent.",
			Produces: "application/xml", Status: 200, Handler: s.handleGetSent},
		{Method: "GET", Path: v1 + "/receipts/", Access: Sender, Tag: "send", Summary: "List the sender system's receipts (UUIDs of transmissions).",
			Params:   pagingDoc,
			Produces: "application/json", Status: 200, Schema: "PagingResultUUID", Handler: s.handleListReceipts},
		{Method: "GET", Path: v1 + "/receipts/:id", Access: Sender, Tag: "send", Summary: "Read one receipt, deleting it unless delete=false.",
			Params:   map[string]string{"delete": "whether the receipt is deleted as part of the GET (default true)"},
			Produces: "application/json", Status: 200, Schema: "Receipt", Handler: s.handleGetReceipt},
		{Method: "GET", Path: v1 + "/registrations/digitalpost", Access: Sender, Tag: "send",
			Summary:  "Is a CPR/CVR able to receive Digital Post (not exempt)?",
			Params:   map[string]string{"cprNumber": "a CPR number", "cvrNumber": "a CVR number"},
			Produces: "application/json", Status: 200, Schema: "RegistrationResult", Handler: s.handleRegistration("digitalpost")},
		{Method: "GET", Path: v1 + "/registrations/nemsms", Access: Sender, Tag: "send",
			Summary:  "Is a CPR registered for NemSMS?",
			Params:   map[string]string{"cprNumber": "a CPR number"},
			Produces: "application/json", Status: 200, Schema: "RegistrationResult", Handler: s.handleRegistration("nemsms")},
	}
}

// registryRoutes are the administrative routes (Administrativ Adgang):
// sessions, organisations, systems, contact structure, users and
// privileges, recall, statistics and the contact register. Each names its
// permission; the domain is the :org parameter.
func (s *Server) registryRoutes() []Route {
	const org = v1 + "/organisations/:org"
	j := "application/json"
	return []Route{
		{Method: "POST", Path: v1 + "/session", Access: Public, Tag: "session",
			Summary:  "Log in with a local user id and password (application/json); sets the session cookie and answers with the CSRF token to send as X-CSRF-Token.",
			Consumes: []string{j}, Produces: j, Status: 200, Schema: "Session", Handler: s.handleLogin},
		{Method: "GET", Path: v1 + "/session/providers", Access: Public, Tag: "session",
			Summary:  "The OpenID providers people log in through, each with the path a browser opens to start a login (?next= names where it ends); the session it ends in is this API's.",
			Produces: j, Status: 200, Handler: s.handleProviders},
		{Method: "GET", Path: v1 + "/session", Perm: rbac.Self, Tag: "session", Summary: "Who am I: the caller, its privileges and (for a session) the CSRF token.",
			Produces: j, Status: 200, Schema: "Session", Handler: s.handleWhoAmI},
		{Method: "DELETE", Path: v1 + "/session", Perm: rbac.Self, Tag: "session", Summary: "Log out: ends every session of the user, on every instance, and clears the session cookie; for a session from an OpenID provider that offers RP-initiated logout, the X-Posthub-Provider-Logout header names where to send the browser.",
			Status: 204, Handler: s.handleLogout},
		{Method: "GET", Path: v1 + "/privilege-types/", Perm: rbac.Self, Tag: "privileges", Summary: "The privileges (roles) and the permissions each holds.",
			Params: wholeDoc, Produces: j, Status: 200, Schema: "RoleList", Handler: s.handlePrivilegeTypes},

		{Method: "POST", Path: v1 + "/organisations/", Perm: rbac.OrgsCreate, Tag: "registry", Summary: "Create an organisation.",
			Consumes: []string{j}, Produces: j, Status: 201, Schema: "Organisation", Handler: s.handleCreateOrg},
		{Method: "GET", Path: v1 + "/organisations/", Perm: rbac.OrgsList, Tag: "registry", Summary: "List organisations.",
			Params: wholeDoc, Produces: j, Status: 200, Schema: "OrganisationList", Handler: s.handleListOrgs},
		{Method: "GET", Path: org, Perm: rbac.OrgsRead, Tag: "registry", Summary: "Read an organisation.",
			Produces: j, Status: 200, Schema: "Organisation", Handler: s.handleGetOrg},
		{Method: "PUT", Path: org, Perm: rbac.SystemsWrite, Tag: "registry",
			Summary:  "Change how the organisation receives its post: {\"setup\": \"CONTACTABLE\"|\"SYSTEM_RETRIEVAL\"|\"MAILBOX_ONLY\"}; If-Match or version guards against lost updates. Receiver systems of a MAILBOX_ONLY organisation get no post.",
			Consumes: []string{j}, Produces: j, Status: 200, Schema: "Organisation", Handler: s.handleUpdateOrg},

		{Method: "POST", Path: org + "/systems/", Perm: rbac.SystemsWrite, Tag: "systems",
			Summary:  "Register a sender, receiver or viewer system (at most four authority-post receivers, exactly one of them the default, and one CVR-post receiver; a company one receiver; 409 with the rule's code otherwise, also when administrators register at once). An organisation with setup MAILBOX_ONLY registers no receiver system (409 organisation.setup.mailbox.only). The answer carries the API token, shown once.",
			Consumes: []string{j}, Produces: j, Status: 201, Schema: "SystemWithToken", Handler: s.handleCreateSystem},
		{Method: "GET", Path: org + "/systems/", Perm: rbac.SystemsRead, Tag: "systems", Summary: "List an organisation's systems.",
			Params: wholeDoc, Produces: j, Status: 200, Schema: "SystemList", Handler: s.handleListSystems},
		{Method: "GET", Path: org + "/systems/:id", Perm: rbac.SystemsRead, Tag: "systems", Summary: "Read a system.",
			Produces: j, Status: 200, Schema: "System", Handler: s.handleGetSystem},
		{Method: "PUT", Path: org + "/systems/:id", Perm: rbac.SystemsWrite, Tag: "systems",
			Summary:  "Modify a system (name; for receivers protocol, endpoints, MeMo version). If-Match or version guards against lost updates.",
			Consumes: []string{j}, Produces: j, Status: 200, Schema: "System", Handler: s.handleUpdateSystem},
		{Method: "POST", Path: org + "/systems/:id/makedefaultrecipient", Perm: rbac.SystemsWrite, Tag: "systems",
			Summary:  "Make an authority-post receiver system the default (and unmark the previous default).",
			Produces: j, Status: 200, Schema: "System", Handler: s.handleMakeDefault},
		{Method: "POST", Path: org + "/systems/:id/renewapitoken", Perm: rbac.SystemsWrite, Tag: "systems",
			Summary:  "Issue a new API token (shown once); the old one stops working.",
			Produces: j, Status: 200, Schema: "SystemWithToken", Handler: s.handleRenewToken},
		{Method: "POST", Path: org + "/systems/:id/deactivate", Perm: rbac.SystemsWrite, Tag: "systems",
			Summary:  "Deactivate a system.",
			Produces: j, Status: 200, Schema: "System", Handler: s.handleDeactivate},
		{Method: "POST", Path: org + "/systems/:id/certificate/", Perm: rbac.SystemsWrite, Tag: "systems",
			Summary:  "Upload the system's client certificate (PEM or DER); from then on the system must present it with its token.",
			Consumes: []string{"application/x-pem-file", "application/pkix-cert"}, Produces: j, Status: 201, Schema: "System", Handler: s.handleUploadCertificate},

		{Method: "POST", Path: org + "/contact-groups/", Perm: rbac.ContactsWrite, Tag: "contact structure", Summary: "Create a contact group.",
			Consumes: []string{j}, Produces: j, Status: 201, Schema: "ContactGroup", Handler: s.handleCreateContactGroup},
		{Method: "GET", Path: org + "/contact-groups/", Perm: rbac.ContactsRead, Tag: "contact structure", Summary: "List contact groups.",
			Params: wholeDoc, Produces: j, Status: 200, Schema: "ContactGroupList", Handler: s.handleListContactGroups},
		{Method: "DELETE", Path: org + "/contact-groups/:id", Perm: rbac.ContactsWrite, Tag: "contact structure", Summary: "Delete a contact group.",
			Status: 204, Handler: s.handleDeleteContactGroup},
		{Method: "POST", Path: org + "/contact-points/", Perm: rbac.ContactsWrite, Tag: "contact structure",
			Summary:  "Create a contact point mapped to one of the organisation's receiver systems.",
			Consumes: []string{j}, Produces: j, Status: 201, Schema: "ContactPoint", Handler: s.handleCreateContactPoint},
		{Method: "GET", Path: org + "/contact-points/", Perm: rbac.ContactsRead, Tag: "contact structure", Summary: "List contact points.",
			Params: wholeDoc, Produces: j, Status: 200, Schema: "ContactPointList", Handler: s.handleListContactPoints},
		{Method: "GET", Path: org + "/contact-points/:id", Perm: rbac.ContactsRead, Tag: "contact structure", Summary: "Read a contact point.",
			Produces: j, Status: 200, Schema: "ContactPoint", Handler: s.handleGetContactPoint},
		{Method: "PUT", Path: org + "/contact-points/:id", Perm: rbac.ContactsWrite, Tag: "contact structure", Summary: "Replace a contact point (version guards against lost updates).",
			Consumes: []string{j}, Produces: j, Status: 200, Schema: "ContactPoint", Handler: s.handleUpdateContactPoint},
		{Method: "DELETE", Path: org + "/contact-points/:id", Perm: rbac.ContactsWrite, Tag: "contact structure", Summary: "Delete a contact point.",
			Status: 204, Handler: s.handleDeleteContactPoint},
		{Method: "POST", Path: org + "/routing-rules/", Perm: rbac.ContactsWrite, Tag: "contact structure",
			Summary:  "Add a routing rule (attention/content data → receiver system).",
			Consumes: []string{j}, Produces: j, Status: 201, Schema: "RoutingRule", Handler: s.handleCreateRule},
		{Method: "GET", Path: org + "/routing-rules/", Perm: rbac.ContactsRead, Tag: "contact structure", Summary: "List routing rules by priority.",
			Params: wholeDoc, Produces: j, Status: 200, Schema: "RoutingRuleList", Handler: s.handleListRules},
		{Method: "DELETE", Path: org + "/routing-rules/:id", Perm: rbac.ContactsWrite, Tag: "contact structure", Summary: "Delete a routing rule.",
			Status: 204, Handler: s.handleDeleteRule},

		{Method: "GET", Path: org + "/users/", Perm: rbac.UsersRead, Tag: "privileges", Summary: "Users holding privileges in the organisation, with their privileges.",
			Params: wholeDoc, Produces: j, Status: 200, Schema: "UserGrantsList", Handler: s.handleListUsers},
		{Method: "POST", Path: org + "/users/", Perm: rbac.UsersWrite, Tag: "privileges",
			Summary:  "Create a local user (argon2id password hash), optionally granting privileges in the organisation.",
			Consumes: []string{j}, Produces: j, Status: 201, Schema: "UserGrants", Handler: s.handleCreateUser},
		{Method: "GET", Path: org + "/privileges/", Perm: rbac.UsersRead, Tag: "privileges", Summary: "Privileges granted in the organisation.",
			Params: wholeDoc, Produces: j, Status: 200, Schema: "GrantList", Handler: s.handleListGrants},
		{Method: "POST", Path: org + "/privileges/", Perm: rbac.UsersWrite, Tag: "privileges", Summary: "Grant a user a privilege in the organisation.",
			Consumes: []string{j}, Produces: j, Status: 201, Schema: "Grant", Handler: s.handleGrant},
		{Method: "DELETE", Path: org + "/privileges/:user/:role", Perm: rbac.UsersWrite, Tag: "privileges", Summary: "Revoke a user's privilege in the organisation.",
			Status: 204, Handler: s.handleRevoke},

		{Method: "GET", Path: org + "/messages/", Perm: rbac.MessagesRecall, Tag: "recall",
			Summary:  "The organisation's sent messages still held by doNotDeliverUntilDate (recallable), newest first.",
			Params:   wholeDoc,
			Produces: j, Status: 200, Schema: "MessageList", Handler: s.handleHeldMessages},
		{Method: "POST", Path: org + "/messages/:id/recall", Perm: rbac.MessagesRecall, Tag: "recall",
			Summary:  "Recall a held message of the organisation, or one its systems sent on another organisation's behalf (recall administrator).",
			Produces: j, Status: 200, Schema: "Message", Handler: s.handleAdminRecall},

		{Method: "GET", Path: org + "/statistics/", Perm: rbac.StatisticsRead, Tag: "statistics",
			Summary: "Counts and bytes per period × message type × channel × system × direction, from the counters.",
			Params: map[string]string{"from": "first day YYYY-MM-DD (default 30 days before to)", "to": "last day YYYY-MM-DD (default today)",
				"period": "day (default), month, year or total", "groupBy": "comma-separated: messageType, channel, system, direction",
				"format": "json (default) or csv"},
			Produces: j, Status: 200, Schema: "Statistics", Handler: s.handleStatistics},

		{Method: "POST", Path: v1 + "/contacts/import", Perm: rbac.RegisterWrite, Tag: "contact register",
			Summary:  "Bulk import of the contact register (text/csv or application/json array), streamed; answers with a report of rejected lines.",
			Consumes: []string{"text/csv", j}, Produces: j, Status: 200, Schema: "ImportReport", Upload: true, Handler: s.handleImportContacts},
		{Method: "GET", Path: v1 + "/contacts/:id", Perm: rbac.RegisterRead, Tag: "contact register", Summary: "Read a contact-register entry.",
			Produces: j, Status: 200, Schema: "Contact", Handler: s.handleGetContact},
	}
}

func (s *Server) handleOpenAPI(c *gin.Context) {
	c.JSON(http.StatusOK, OpenAPI(s.routes))
}
