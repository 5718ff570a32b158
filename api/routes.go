package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// Route is one entry of the route table.
type Route struct {
	Method  string
	Path    string // gin syntax: /apis/v1/receipts/:id
	Access  Access
	Tag     string
	Summary string
	// Params documents query parameters: name → description.
	Params map[string]string
	// Consumes lists accepted request content types ("" for none).
	Consumes []string
	// Produces is the success content type and status.
	Produces string
	Status   int
	// Schema names the success body's schema in the OpenAPI components.
	Schema  string
	Handler gin.HandlerFunc
}

const v1 = "/apis/v1"

// table is the whole route table; each area contributes its own routes.
func (s *Server) table() []Route {
	var all []Route
	for _, part := range [][]Route{s.opsRoutes(), s.sendRoutes(), s.registryRoutes(), s.retrievalRoutes(), s.eventRoutes()} {
		all = append(all, part...)
	}
	return all
}

func (s *Server) opsRoutes() []Route {
	return []Route{
		{Method: "GET", Path: "/healthz", Access: Public, Tag: "operations", Summary: "Liveness: the process serves requests.",
			Produces: "application/json", Status: 200, Handler: s.handleHealthz},
		{Method: "GET", Path: "/readyz", Access: Public, Tag: "operations", Summary: "Readiness: the metadata store is reachable.",
			Produces: "application/json", Status: 200, Handler: s.handleReadyz},
		{Method: "GET", Path: "/metrics", Access: Public, Tag: "operations", Summary: "Prometheus metrics.",
			Produces: "text/plain", Status: 200, Handler: s.handleMetrics()},
		{Method: "GET", Path: v1 + "/openapi.json", Access: Public, Tag: "operations", Summary: "This API's OpenAPI 3 document.",
			Produces: "application/json", Status: 200, Handler: s.handleOpenAPI},
	}
}

func (s *Server) sendRoutes() []Route {
	return []Route{
		{Method: "POST", Path: v1 + "/memos/", Access: Sender, Tag: "send",
			Summary: "Send one MeMo (application/xml) or many in a tar archive compressed with lzma (application/x-lzma, or multipart/form-data part \"file\").",
			Params: map[string]string{
				"memo-message-uuid": "the MeMo's messageUUID (single MeMo only; must equal MessageHeader/messageUUID)",
				"mode":              "delivery mode: AUTOMATIC (default; digital, else print), DIGITAL (digital only), PRINT, NEMSMS; SF1601 names accepted",
				"archive":           "sent-archive copy: FORWARD_ONLY (default), FORWARD_ELSE_KEEP, FORWARD_AND_KEEP",
			},
			Consumes: []string{"application/xml", "text/xml", "application/x-lzma", "multipart/form-data"},
			Produces: "application/json", Status: 201, Schema: "Receipt", Handler: s.handleSendMemo},
		{Method: "POST", Path: v1 + "/memos/:id/recall", Access: Sender, Tag: "send",
			Summary:  "Recall a message held by doNotDeliverUntilDate, before that date.",
			Produces: "application/json", Status: 200, Schema: "Message", Handler: s.handleRecall},
		{Method: "GET", Path: v1 + "/sent/", Access: Sender, Tag: "send",
			Summary:  "List the organisation's sent-archive: letters sent with archive=FORWARD_AND_KEEP (or FORWARD_ELSE_KEEP and undelivered), newest first.",
			Params:   map[string]string{"after": "messageUUID of the previous page's last letter", "size": "page size (max 1000)"},
			Produces: "application/json", Status: 200, Schema: "MessageList", Handler: s.handleListSent},
		{Method: "GET", Path: v1 + "/sent/:id", Access: Sender, Tag: "send",
			Summary:  "Read an archived letter's MeMo as sent.",
			Produces: "application/xml", Status: 200, Handler: s.handleGetSent},
		{Method: "GET", Path: v1 + "/receipts/", Access: Sender, Tag: "send", Summary: "List the sender system's receipts (UUIDs of transmissions).",
			Params:   map[string]string{"page": "zero-based page", "size": "page size (max 1000)"},
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

func (s *Server) registryRoutes() []Route {
	return []Route{
		{Method: "POST", Path: v1 + "/organisations/", Access: Operator, Tag: "registry", Summary: "Create an organisation.",
			Consumes: []string{"application/json"}, Produces: "application/json", Status: 201, Schema: "Organisation", Handler: s.handleCreateOrg},
		{Method: "GET", Path: v1 + "/organisations/", Access: Operator, Tag: "registry", Summary: "List organisations.",
			Produces: "application/json", Status: 200, Schema: "OrganisationList", Handler: s.handleListOrgs},
		{Method: "GET", Path: v1 + "/organisations/:org", Access: Operator, Tag: "registry", Summary: "Read an organisation.",
			Produces: "application/json", Status: 200, Schema: "Organisation", Handler: s.handleGetOrg},
		{Method: "POST", Path: v1 + "/organisations/:org/systems/", Access: Operator, Tag: "registry",
			Summary:  "Register a sender, receiver or viewer system; the answer carries its API token, shown once.",
			Consumes: []string{"application/json"}, Produces: "application/json", Status: 201, Schema: "SystemWithToken", Handler: s.handleCreateSystem},
		{Method: "GET", Path: v1 + "/organisations/:org/systems/", Access: Operator, Tag: "registry", Summary: "List an organisation's systems.",
			Produces: "application/json", Status: 200, Schema: "SystemList", Handler: s.handleListSystems},
		{Method: "POST", Path: v1 + "/organisations/:org/systems/:id/makedefaultrecipient", Access: Operator, Tag: "registry",
			Summary:  "Make an authority-post receiver system the default (and unmark the previous default).",
			Produces: "application/json", Status: 200, Schema: "System", Handler: s.handleMakeDefault},
		{Method: "POST", Path: v1 + "/organisations/:org/systems/:id/renewapitoken", Access: Operator, Tag: "registry",
			Summary:  "Issue a new API token (shown once); the old one stops working.",
			Produces: "application/json", Status: 200, Schema: "SystemWithToken", Handler: s.handleRenewToken},
		{Method: "POST", Path: v1 + "/organisations/:org/systems/:id/deactivate", Access: Operator, Tag: "registry",
			Summary:  "Deactivate a system.",
			Produces: "application/json", Status: 200, Schema: "System", Handler: s.handleDeactivate},
		{Method: "POST", Path: v1 + "/organisations/:org/contact-points/", Access: Operator, Tag: "registry",
			Summary:  "Create a contact point mapped to one of the organisation's receiver systems.",
			Consumes: []string{"application/json"}, Produces: "application/json", Status: 201, Schema: "ContactPoint", Handler: s.handleCreateContactPoint},
		{Method: "GET", Path: v1 + "/organisations/:org/contact-points/", Access: Operator, Tag: "registry", Summary: "List contact points.",
			Produces: "application/json", Status: 200, Schema: "ContactPointList", Handler: s.handleListContactPoints},
		{Method: "POST", Path: v1 + "/organisations/:org/routing-rules/", Access: Operator, Tag: "registry",
			Summary:  "Add a routing rule (attention/content data → receiver system).",
			Consumes: []string{"application/json"}, Produces: "application/json", Status: 201, Schema: "RoutingRule", Handler: s.handleCreateRule},
		{Method: "POST", Path: v1 + "/contacts/import", Access: Operator, Tag: "registry",
			Summary:  "Bulk import of the contact register (text/csv or application/json array), streamed; answers with a report of rejected lines.",
			Consumes: []string{"text/csv", "application/json"}, Produces: "application/json", Status: 200, Schema: "ImportReport", Handler: s.handleImportContacts},
		{Method: "GET", Path: v1 + "/contacts/:id", Access: Operator, Tag: "registry", Summary: "Read a contact-register entry.",
			Produces: "application/json", Status: 200, Schema: "Contact", Handler: s.handleGetContact},
	}
}

func (s *Server) handleOpenAPI(c *gin.Context) {
	c.JSON(http.StatusOK, OpenAPI(s.routes))
}
