package api

import (
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/posthub/posthub/api/status"
	"github.com/posthub/posthub/hub"
)

// OpenAPIPath converts a gin path (/a/:id) to OpenAPI syntax (/a/{id}).
func OpenAPIPath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if strings.HasPrefix(s, ":") || strings.HasPrefix(s, "*") {
			parts[i] = "{" + s[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}

type obj = map[string]any

func str(desc string) obj { return obj{"type": "string", "description": desc} }

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

func arrayOf(name string) obj { return obj{"type": "array", "items": ref(name)} }

// listOf is the schema of a list route's answer: the one list shape,
// PagingResult, whose content holds items of the named schema.
func listOf(name string) obj { return pagingOf(ref(name)) }

func pagingOf(item obj) obj {
	return obj{"allOf": []obj{ref("PagingResult"),
		{"type": "object", "properties": obj{"content": obj{"type": "array", "items": item}}}}}
}

// pagingResult is the schema of paging.Result.
var pagingResult = obj{"type": "object", "required": []string{"content", "number", "size"},
	"description": "one page of a list (NgDP's PagingResult): every list route answers this shape, " +
		"except GET /events/ and GET …/system-fetches/, whose shapes NgDP defines",
	"properties": obj{
		"content":       obj{"type": "array", "items": obj{}, "description": "the page's items"},
		"number":        obj{"type": "integer", "description": "zero-based page number (0 on a cursor-paged list)"},
		"size":          obj{"type": "integer", "description": "the page size"},
		"totalElements": obj{"type": "integer", "description": "items in the whole list; absent on a cursor-paged list"},
		"totalPages":    obj{"type": "integer", "description": "pages in the whole list; absent on a cursor-paged list"},
		"nextCursor":    str("cursor-paged lists: the after= value of the next page, absent on the last")}}

// schemas are the component schemas the route table refers to.
func schemas() obj {
	fieldError := obj{"type": "object", "properties": obj{
		"resource": str("the checked resource (memo, request, system…)"), "field": str("path of the offending element or field"),
		"code": str("stable rule code"), "message": str("explanation"), "rejectedValue": str("the offending value"),
		"line": obj{"type": "integer", "description": "line in the submitted document"}}}
	name := obj{"type": "string", "maxLength": hub.MaxNameLen, "description": "no control characters"}
	all := obj{
		"ErrorMessage": obj{"type": "object", "required": []string{"code", "message", "fieldErrors"}, "properties": obj{
			"code":    obj{"type": "string", "description": "the kind of failure, one of a closed set", "enum": status.Codes()},
			"message": str("what went wrong"), "fieldErrors": obj{"type": "array", "items": fieldError},
			"requestId": str("quote it when asking the operator"),
			"receipt":   obj{"$ref": "#/components/schemas/Receipt", "description": "SF1601 only: the NOT_ALLOWED receipt of a letter that cannot be delivered in the chosen mode"}}},
		"Receipt": obj{"type": "object", "properties": obj{
			"transmissionId": str("uuid of this transmission"), "messageUUID": str("the MeMo's messageUUID"), "messageId": str("the MeMo's messageID"),
			"errorCode": str("why the message was not delivered or accepted"), "errorMessage": str("explanation"),
			"timeStamp":     obj{"type": "string", "format": "date-time"},
			"receiptStatus": obj{"type": "string", "enum": []string{"NOT_ALLOWED", "INVALID", "RECEIVED", "COMPLETED"}},
			"transactionId": str("the X-TransaktionsId of the SF1601 call that sent the message")}},
		"BulkReceipts": obj{"type": "object", "properties": obj{"receipts": arrayOf("Receipt"),
			"accepted": obj{"type": "integer"}, "rejected": obj{"type": "integer"},
			"archiveError": ref("ErrorMessage"),
			"stoppedAt": obj{"type": "object", "description": "where the hub stopped reading the archive: this entry and the ones after it got no receipt",
				"properties": obj{"entry": obj{"type": "integer", "description": "1-based number among the archive's regular files"},
					"name": str("its name in the archive"), "offset": obj{"type": "integer", "description": "decompressed bytes read before it"}}}}},
		"PagingResult":       pagingResult,
		"PagingResultUUID":   pagingOf(obj{"type": "string", "format": "uuid"}),
		"RegistrationResult": obj{"type": "object", "properties": obj{"result": obj{"type": "boolean"}}},
		"EventLog": obj{"type": "object", "properties": obj{"id": str("entry id"), "seq": obj{"type": "integer", "description": "gap-free sequence number"},
			"eventTime": obj{"type": "string", "format": "date-time"}, "eventTag": str("NgDP EventLogEventTag or a posthub addition"),
			"actor": str(""), "owner": str("the CPR/CVR party"), "organisations": obj{"type": "array", "items": str("CVR")},
			"system": obj{"type": "object", "properties": obj{"id": str("")}}, "messageUUID": str(""),
			"eventProperties": obj{"type": "object", "additionalProperties": str("")},
			"prevHash":        str("hash of the entry before (hex SHA-256)"), "hash": str("SHA-256 of the canonical encoding posthub.eventlog.v1")}},
		"EventLogSearchResult": obj{"type": "object", "properties": obj{"events": arrayOf("EventLog"), "currentPage": obj{"type": "integer"},
			"totalPages": obj{"type": "integer"}, "elementsOnPage": obj{"type": "integer"}, "totalElements": obj{"type": "integer"},
			"totalIsLowerBound": obj{"type": "boolean"}, "next": str("query string of the next page (cursor paging)"),
			"nextCursor": obj{"type": "integer", "description": "after= value of the next page"}}},
		"EventFeed": obj{"type": "object", "properties": obj{"events": arrayOf("EventLog"), "nextCursor": obj{"type": "integer"}}},
		"Message": obj{"type": "object", "properties": obj{"messageUUID": str(""), "state": str("ACTIVE, HELD, RECALLED, NOT_DELIVERED"),
			"recipientId": str(""), "received": obj{"type": "string", "format": "date-time"},
			"receiptId": str("transmissionId of the receipt issued when the message was accepted (absent for messages accepted before it was kept)")}},
		"MessageList": listOf("Message"),
		"Organisation": obj{"type": "object", "required": []string{"cvr", "name", "kind"}, "properties": obj{
			"cvr": str("8-digit CVR number"), "name": name, "kind": obj{"type": "string", "enum": []string{"AUTHORITY", "COMPANY"}},
			"setup": obj{"type": "string", "enum": []string{"CONTACTABLE", "SYSTEM_RETRIEVAL", "MAILBOX_ONLY"}, "default": string(hub.DefaultSetup),
				"description": "how the organisation receives post. CONTACTABLE: a contact structure routes it to receiver systems (authorities only). " +
					"SYSTEM_RETRIEVAL (the default when absent): its receiver systems fetch it; until one connects it waits in the mailbox and is queued to the first that does. " +
					"MAILBOX_ONLY: it stays in the mailbox for viewing clients and no receiver system gets it."},
			"sendFor": obj{"type": "array", "maxItems": hub.MaxSendFor, "items": obj{"type": "string"}}, "active": obj{"type": "boolean"}, "version": obj{"type": "integer"}}},
		"OrganisationList": listOf("Organisation"),
		"System": obj{"type": "object", "properties": obj{
			"id": str(""), "organisation": str("CVR"), "name": name,
			"role":     obj{"type": "string", "enum": []string{"SENDER", "RECIPIENT", "VIEWER"}},
			"mailbox":  obj{"type": "string", "enum": []string{"AUTHORITY_POST", "CVR_POST"}},
			"default":  obj{"type": "boolean"},
			"protocol": obj{"type": "string", "enum": []string{"REST_PULL", "REST_PUSH"}},
			"endpoint": obj{"type": "string", "maxLength": hub.MaxURLLen, "description": "push endpoint"}, "memoVersion": obj{"type": "string", "enum": []string{"1.1", "1.2"}},
			"active": obj{"type": "boolean"}, "version": obj{"type": "integer"}}},
		"SystemList":      listOf("System"),
		"SystemWithToken": obj{"type": "object", "properties": obj{"system": ref("System"), "apiToken": str("shown once; send as Authorization: Basic <token>")}},
		"ContactPoint": obj{"type": "object", "properties": obj{
			"id": str(""), "name": name, "systemId": str("the receiver system that gets its post"),
			"contactPointCodes": obj{"type": "array", "maxItems": hub.MaxCodesPerPoint, "description": "a letter whose KLE, FORM, GLN or SOR code matches " +
				"(KLE and FORM also a level above: 02.00 covers 02.00.05) is routed to this point's system, after an explicit contact point and before routing rules",
				"items": obj{"type": "object", "properties": obj{"type": str("KLE, FORM, GLN, SOR, CUSTOM"),
					"code": obj{"type": "string", "maxLength": hub.MaxCodeLen}}}},
			"memoSizeThresholdMB":        obj{"type": "number"},
			"allowedNumberOfAttachments": obj{"type": "integer"}, "active": obj{"type": "boolean"}, "visible": obj{"type": "boolean"}}},
		"ContactPointList": listOf("ContactPoint"),
		"RoutingRule": obj{"type": "object", "properties": obj{"id": str(""), "priority": obj{"type": "integer"},
			"field": str("KLE, FORM, CaseID, GLN, SOR, messageCode or label"), "value": str("exact value, or prefix ending in *"), "systemId": str("")}},
		"Contact": obj{"type": "object", "properties": obj{"id": str("CPR or CVR"), "digitalPost": obj{"type": "string", "enum": []string{"REGISTERED", "EXEMPT"}},
			"nemSms": obj{"type": "boolean"}, "email": str(""), "phone": str(""), "name": str(""),
			"address": obj{"type": "array", "items": obj{"type": "string"}}}},
		"ImportReport": obj{"type": "object", "properties": obj{"accepted": obj{"type": "integer"},
			"rejected": obj{"type": "array", "items": obj{"type": "object", "properties": obj{"line": obj{"type": "integer"}, "id": str(""), "code": str(""), "message": str("")}}}}},
	}
	for _, more := range []obj{retrievalSchemas(), viewerSchemas()} {
		for k, v := range more {
			all[k] = v
		}
	}
	return all
}

// OpenAPI builds the OpenAPI 3 document of a route table.
func OpenAPI(routes []Route) obj {
	paths := obj{}
	rs := append([]Route(nil), routes...)
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Path < rs[j].Path })
	for _, r := range rs {
		p := OpenAPIPath(r.Path)
		item, _ := paths[p].(obj)
		if item == nil {
			item = obj{}
			paths[p] = item
		}
		var params []obj
		for _, seg := range strings.Split(r.Path, "/") {
			if strings.HasPrefix(seg, ":") {
				params = append(params, obj{"name": seg[1:], "in": "path", "required": true, "schema": obj{"type": "string"}})
			}
		}
		names := make([]string, 0, len(r.Params))
		for n := range r.Params {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			params = append(params, obj{"name": n, "in": "query", "description": r.Params[n], "schema": obj{"type": "string"}})
		}
		success := obj{"description": http.StatusText(r.Status)}
		if r.Schema != "" {
			content := obj{r.Produces: obj{"schema": ref(r.Schema)}}
			for _, p := range r.ProducesAlso {
				content[p] = obj{"schema": ref(r.Schema)}
			}
			success["content"] = content
		} else if r.Produces != "" {
			success["content"] = obj{r.Produces: obj{}}
		}
		responses := obj{strconv.Itoa(r.Status): success}
		errBody := obj{"content": obj{"application/json": obj{"schema": ref("ErrorMessage")}}}
		add := func(code int) {
			// x-code: the error code a response of this status carries.
			e := obj{"description": http.StatusText(code), "x-code": status.Code(code)}
			for k, v := range errBody {
				e[k] = v
			}
			responses[strconv.Itoa(code)] = e
		}
		if _, public := RoutePerm(r); !public {
			add(401)
			add(403)
		}
		if len(params) > 0 || len(r.Consumes) > 0 {
			add(400)
		}
		if strings.Contains(r.Path, ":") {
			add(404)
		}
		if r.Method == "POST" || r.Method == "PUT" {
			// POST: a rule or a unique id taken; PUT: a stale version
			// (If-Match) or a rule.
			add(409)
		}
		if r.Path == v1+"/memos/" {
			add(413)
			add(503)
		}
		if r.Optional {
			add(503)
		}
		for _, code := range r.Errors {
			add(code)
		}
		op := obj{"summary": r.Summary, "tags": []string{r.Tag}, "responses": responses,
			"operationId": strings.ToLower(r.Method) + strings.NewReplacer("/", "_", ":", "", "{", "", "}", "", "-", "_", ".", "_").Replace(r.Path)}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if perm, public := RoutePerm(r); !public {
			op["security"] = []obj{{"apiToken": []string{}}, {"session": []string{}}}
			op["x-permission"] = string(perm)
		}
		if len(r.Consumes) > 0 {
			content := obj{}
			for _, ct := range r.Consumes {
				content[ct] = obj{}
			}
			op["requestBody"] = obj{"required": true, "content": content}
		}
		item[strings.ToLower(r.Method)] = op
	}
	return obj{
		"openapi": "3.0.3",
		"info": obj{"title": "posthub API", "version": "1",
			"description": "A Digital Post hub in the style of the Danish national hub (NgDP). Systems authenticate with Authorization: Basic <api token>."},
		"paths": paths,
		"components": obj{"schemas": withAdminSchemas(schemas()), "securitySchemes": obj{
			"apiToken": obj{"type": "http", "scheme": "basic", "description": "the system's API token as the Basic credential, as NgDP does; Bearer is accepted too"},
			"session":  obj{"type": "apiKey", "in": "cookie", "name": "posthub_session", "description": "a human's session (POST /apis/v1/session); unsafe methods also need the X-CSRF-Token header"}}},
	}
}
