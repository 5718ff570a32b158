package api

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/retrieval"
)

// Headers of a fetched MeMo.
const (
	// HeaderLease carries the lease token of a fetch ("<delivery>#<epoch>").
	HeaderLease = "X-Posthub-Lease"
	// HeaderLeaseExpires is when the lease ends (RFC 3339).
	HeaderLeaseExpires = "X-Posthub-Lease-Expires"
	// HeaderAttempt is the 1-based number of this fetch attempt.
	HeaderAttempt = "X-Posthub-Attempt"
	// HeaderMessageUUID names the fetched message (GET /memos/next).
	HeaderMessageUUID = "X-Posthub-Message-Uuid"
	// HeaderMemoVersion is the MeMo version of the body.
	HeaderMemoVersion = "X-Posthub-Memo-Version"
)

// retrievalRoutes are the receiver systems' routes (list, fetch, ack,
// system-fetch jobs) and the organisation administrators' view of parked
// deliveries and inactive systems (systems:read, unpark systems:write).
func (s *Server) retrievalRoutes() []Route {
	return []Route{
		{Method: "GET", Path: v1 + "/memos/", Access: Recipient, Tag: "retrieval",
			Summary:  "List the messages available to the calling receiver system, in arrival order (totalElements counts its whole queue, leased and held ones included).",
			Params:   pagingDoc,
			Produces: "application/json", Status: 200, Schema: "PagingResultUUID", Handler: s.handleListMemos},
		{Method: "GET", Path: v1 + "/memos/next", Access: Recipient, Tag: "retrieval",
			Summary:  "Long poll: lease and return the next available message as GET /memos/{id} does, or 204 when none arrives within wait.",
			Params:   map[string]string{"wait": "how long to wait for a message, e.g. 30s (default 0, at most the server's maximum)"},
			Produces: "application/xml", Status: 200, Handler: s.handleNextMemo},
		{Method: "GET", Path: v1 + "/memos/:id", Access: Recipient, Tag: "retrieval",
			Summary: "Fetch a message as MeMo XML in the system's MeMo version, leasing it to the caller (lease token in X-Posthub-Lease). " +
				"404 when it is not designated to this system, 409 while another poller's lease lives or when it is parked.",
			Produces: "application/xml", Status: 200, Errors: []int{http.StatusConflict}, Handler: s.handleFetchMemo},
		{Method: "DELETE", Path: v1 + "/memos/:id", Access: Recipient, Tag: "retrieval",
			Summary: "Acknowledge a fetched message: it leaves the mailbox (and storage), the sender's receipt becomes COMPLETED. Idempotent.",
			Status:  204, Handler: s.handleAckMemo},
		{Method: "POST", Path: v1 + "/memos/:id/receipt", Access: Recipient, Tag: "retrieval",
			Summary:  "Business receipt: COMPLETED acknowledges as DELETE does; INVALID sets the message aside (or gives the lease back, per the hub's policy).",
			Consumes: []string{"application/json"}, Status: 204, Handler: s.handleBusinessReceipt},
		{Method: "POST", Path: v1 + "/mailboxes/:owner/system-fetches/", Access: Recipient, Tag: "retrieval",
			Summary:  "Start a system-fetch: the mailbox's messages (<cvr>:AUTHORITY_POST or <cvr>:CVR_POST), optionally from/to a date, move to the calling system.",
			Consumes: []string{"application/json"}, Produces: "application/json", Status: 201, Schema: "SystemFetch", Handler: s.handleStartFetch},
		{Method: "GET", Path: v1 + "/mailboxes/:owner/system-fetches/", Access: Recipient, Tag: "retrieval",
			Summary:  "List the mailbox's system-fetches (running, stopped or finished), newest first.",
			Params:   map[string]string{"fromDate": "only jobs created on or after this date (yyyy-MM-dd)"},
			Produces: "application/json", Status: 200, Schema: "SystemFetchListResult", Handler: s.handleListFetches},
		{Method: "GET", Path: v1 + "/mailboxes/:owner/system-fetches/:fid", Access: Recipient, Tag: "retrieval",
			Summary:  "Read a system-fetch with its progress (totalMessages, fetchedMessages, failedMessages).",
			Produces: "application/json", Status: 200, Schema: "SystemFetch", Handler: s.handleGetFetch},
		{Method: "PUT", Path: v1 + "/mailboxes/:owner/system-fetches/:fid", Access: Recipient, Tag: "retrieval",
			Summary:  "Stop a system-fetch ({\"systemFetchStatusType\":\"STOPPED\"}); messages already moved stay with the system.",
			Consumes: []string{"application/json"}, Produces: "application/json", Status: 200, Schema: "SystemFetch", Handler: s.handleUpdateFetch},
		{Method: "GET", Path: v1 + "/organisations/:org/parked-memos/", Perm: rbac.SystemsRead, Tag: "retrieval",
			Summary: "List the organisation's deliveries to receiver systems that were set aside after failed attempts.",
			Params:  wholeDoc, Produces: "application/json", Status: 200, Schema: "DeliveryList", Handler: s.handleListParked},
		{Method: "POST", Path: v1 + "/organisations/:org/parked-memos/:id/unpark", Perm: rbac.SystemsWrite, Tag: "retrieval",
			Summary:  "Make a parked message fetchable again, its attempts reset.",
			Produces: "application/json", Status: 200, Schema: "Delivery", Handler: s.handleUnpark},
		{Method: "GET", Path: v1 + "/organisations/:org/inactive-systems/", Perm: rbac.SystemsRead, Tag: "retrieval",
			Summary: "List the organisation's receiver systems that have not fetched for the configured period while post waits.",
			Params:  wholeDoc, Produces: "application/json", Status: 200, Schema: "InactiveSystemList", Handler: s.handleInactive},
	}
}

// retrievalSchemas are the component schemas of the retrieval routes.
func retrievalSchemas() obj {
	date := obj{"type": "string", "format": "date-time"}
	count := obj{"type": "integer"}
	return obj{
		"SystemFetch": obj{"type": "object", "properties": obj{
			"id": str(""), "version": count, "createdDateTime": date, "lastUpdated": date, "finishedDateTime": date,
			"systemFetchStatusType": obj{"type": "string", "enum": []string{"RUNNING", "FINISHED", "STOPPED"}},
			"mailboxId":             str("<cvr>:AUTHORITY_POST or <cvr>:CVR_POST"), "organisationId": str("CVR"), "systemId": str(""),
			"contactPointId": str(""), "totalMessages": count, "fetchedMessages": count, "failedMessages": count,
			"preferOriginalMessageRecipient": obj{"type": "boolean"}, "fromDateTime": date, "toDateTime": date}},
		"SystemFetchListResult": obj{"type": "object", "properties": obj{"systemFetches": arrayOf("SystemFetch")}},
		"Delivery": obj{"type": "object", "properties": obj{"id": str(""), "messageUUID": str(""), "queue": str(""),
			"systemId": str(""), "state": obj{"type": "string", "enum": []string{"READY", "PARKED"}}, "attempts": count,
			"meta": obj{"type": "object", "additionalProperties": str(""), "description": "parkedReason says why it was set aside"}}},
		"DeliveryList": listOf("Delivery"),
		"InactiveSystem": obj{"type": "object", "properties": obj{"system": ref("System"), "waitingMessages": count,
			"lastFetch": date, "idle": str("time since the last fetch")}},
		"InactiveSystemList": listOf("InactiveSystem"),
	}
}

func (s *Server) retrievalService(c *gin.Context) (*retrieval.Service, bool) {
	if s.retrieval == nil {
		writeError(c, s.log, hub.Errorf(hub.Unavailable, "system retrieval is not enabled on this hub"))
		return nil, false
	}
	return s.retrieval, true
}

func (s *Server) handleListMemos(c *gin.Context) {
	rs, ok := s.retrievalService(c)
	if !ok {
		return
	}
	page, size, err := pageParams(c, 100, MaxPageSize)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	ids, total, err := rs.List(c.Request.Context(), principal(c).System, page, size)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	writeOffset(c, ids, page, size, total)
}

func (s *Server) handleFetchMemo(c *gin.Context) {
	rs, ok := s.retrievalService(c)
	if !ok {
		return
	}
	f, err := rs.Fetch(c.Request.Context(), principal(c).System, c.Param("id"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	s.streamMemo(c, f)
}

func (s *Server) handleNextMemo(c *gin.Context) {
	rs, ok := s.retrievalService(c)
	if !ok {
		return
	}
	var wait time.Duration
	if v := c.Query("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			writeError(c, s.log, hub.InvalidField("request", "wait", "wait.invalid", "wait is a duration such as 30s", v))
			return
		}
		wait = d
	}
	f, err := rs.Next(c.Request.Context(), principal(c).System, wait)
	if hub.Is(err, hub.NotFound) {
		c.Status(http.StatusNoContent)
		return
	}
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	s.streamMemo(c, f)
}

// streamMemo writes a fetched message; a broken stream leaves the lease to
// expire, so the message is fetched again.
func (s *Server) streamMemo(c *gin.Context, f *retrieval.Fetched) {
	defer f.Close()
	h := c.Writer.Header()
	h.Set("Content-Type", "application/xml")
	h.Set(HeaderLease, f.Lease.Token())
	h.Set(HeaderLeaseExpires, f.Lease.Expires.UTC().Format(time.RFC3339Nano))
	h.Set(HeaderAttempt, strconv.Itoa(f.Lease.Attempt))
	h.Set(HeaderMessageUUID, f.Message.UUID)
	h.Set(HeaderMemoVersion, f.Version)
	if f.Size >= 0 {
		h.Set("Content-Length", strconv.FormatInt(f.Size, 10))
	}
	c.Status(http.StatusOK)
	if _, err := io.Copy(c.Writer, f.Content); err != nil {
		s.log.Warn("retrieval: message stream broken; the lease will expire", "message", f.Message.UUID, "error", err)
	}
}

func (s *Server) handleAckMemo(c *gin.Context) {
	rs, ok := s.retrievalService(c)
	if !ok {
		return
	}
	if _, err := rs.Ack(c.Request.Context(), principal(c).System, c.Param("id")); err != nil {
		writeError(c, s.log, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) handleBusinessReceipt(c *gin.Context) {
	rs, ok := s.retrievalService(c)
	if !ok {
		return
	}
	var br retrieval.BusinessReceipt
	if err := decodeJSON(c, &br); err != nil {
		writeError(c, s.log, err)
		return
	}
	if _, err := rs.Receipt(c.Request.Context(), principal(c).System, c.Param("id"), br, c.GetHeader(HeaderLease)); err != nil {
		writeError(c, s.log, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) handleStartFetch(c *gin.Context) {
	rs, ok := s.retrievalService(c)
	if !ok {
		return
	}
	var req retrieval.FetchRequest
	if err := decodeJSON(c, &req); err != nil {
		writeError(c, s.log, err)
		return
	}
	f, err := rs.StartFetch(c.Request.Context(), principal(c).System, c.Param("owner"), req)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.JSON(http.StatusCreated, f)
}

func (s *Server) handleListFetches(c *gin.Context) {
	rs, ok := s.retrievalService(c)
	if !ok {
		return
	}
	var from time.Time
	if v := c.Query("fromDate"); v != "" {
		d, err := time.Parse(time.DateOnly, v)
		if err != nil {
			writeError(c, s.log, hub.InvalidField("request", "fromDate", "from.date.invalid", "fromDate is yyyy-MM-dd", v))
			return
		}
		from = d
	}
	fs, err := rs.ListFetches(c.Request.Context(), principal(c).System, c.Param("owner"), from)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"systemFetches": fs})
}

func (s *Server) handleGetFetch(c *gin.Context) {
	rs, ok := s.retrievalService(c)
	if !ok {
		return
	}
	f, err := rs.GetFetch(c.Request.Context(), principal(c).System, c.Param("owner"), c.Param("fid"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.JSON(http.StatusOK, f)
}

func (s *Server) handleUpdateFetch(c *gin.Context) {
	rs, ok := s.retrievalService(c)
	if !ok {
		return
	}
	var req struct {
		Status retrieval.FetchStatus `json:"systemFetchStatusType"`
	}
	if err := decodeJSON(c, &req); err != nil {
		writeError(c, s.log, err)
		return
	}
	f, err := rs.UpdateFetch(c.Request.Context(), principal(c).System, c.Param("owner"), c.Param("fid"), req.Status)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.JSON(http.StatusOK, f)
}

func (s *Server) handleListParked(c *gin.Context) {
	rs, ok := s.retrievalService(c)
	if !ok {
		return
	}
	o, ok := s.orgParam(c)
	if !ok {
		return
	}
	ds, err := rs.Parked(c.Request.Context(), o.CVR)
	writeWhole(s, c, ds, err)
}

func (s *Server) handleUnpark(c *gin.Context) {
	rs, ok := s.retrievalService(c)
	if !ok {
		return
	}
	o, ok := s.orgParam(c)
	if !ok {
		return
	}
	d, err := rs.Unpark(c.Request.Context(), o.CVR, principal(c).String(), c.Param("id"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.JSON(http.StatusOK, d)
}

func (s *Server) handleInactive(c *gin.Context) {
	rs, ok := s.retrievalService(c)
	if !ok {
		return
	}
	o, ok := s.orgParam(c)
	if !ok {
		return
	}
	in, err := rs.Inactive(c.Request.Context(), o.CVR)
	writeWhole(s, c, in, err)
}
