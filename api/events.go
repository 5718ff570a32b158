package api

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
)

// eventRoutes are the event log's routes (query, feed, export).
func (s *Server) eventRoutes() []Route {
	filters := map[string]string{
		"dateFrom":                "entries at or after this time (yyyy-MM-ddTHH:mm:ss.SSSZ, RFC 3339, or yyyy-MM-dd)",
		"dateTo":                  "entries before this time (a bare date includes that whole day)",
		"senderOrRecipientSystem": "the system involved (id)",
		"senderOrRecipient":       "a CPR/CVR: the recipient party, or for the operator an organisation involved",
		"ownerOrActor":            "who acted (system id, user, or service)",
		"eventTag":                "event tags, comma-separated (OR)",
		"messageUUID":             "entries about one message",
	}
	query := map[string]string{
		"page":       "zero-based page; offset paging reaches 10,000 entries deep: (page+1)×size ≤ 10000 (deeper: after=)",
		"size":       "page size (default 20, max 1000)",
		"sortFields": "eventTime:asc (default), eventTime:desc, seq:asc or seq:desc; entries come in the order they were sealed (seq), which is time order but for entries restored or repaired later; each page's own EVENT_LOG_SEARCHES entry shifts later descending offset pages by one (page ascending with after= to read a stable list)",
		"after":      "cursor paging: entries with seq greater than this (ascending; see nextCursor)",
	}
	for k, v := range filters {
		query[k] = v
	}
	query["organisation"] = "the organisation whose entries to read: any for auditors, else the caller's own"
	export := map[string]string{"format": "csv or jsonl (default)", "organisation": "only entries concerning this CVR (auditors: any; others: their own)"}
	for k, v := range filters {
		export[k] = v
	}
	return []Route{
		{Method: "GET", Path: v1 + "/events/", Access: Authenticated, Tag: "events",
			Summary: "Query the event log (NgDP QueryEvents): a system sees its organisation's entries; a user holding eventlog:read in an organisation " +
				"(MESSAGE_LOG_ADMINISTRATOR, ORGANISATION_ADMINISTRATOR) that organisation's (X-Posthub-Organisation or organisation= chooses it when the user has several); " +
				"the operator and holders of eventlog:read globally (AUDITOR, HUB_OPERATOR) all. " +
				"A sender never sees MESSAGE_READ of its letters. Every query is itself logged (EVENT_LOG_SEARCHES).",
			Params: query, Produces: "application/json", Status: 200, Schema: "EventLogSearchResult", Handler: s.handleQueryEvents},
		{Method: "GET", Path: v1 + "/events/feed", Access: Authenticated, Tag: "events",
			Summary: "Follow the event log: long-poll (JSON) or Server-Sent Events (Accept: text/event-stream, resumes from Last-Event-ID). " +
				"Seqs are gap-free and sealed in order, so following nextCursor misses nothing.",
			Params: map[string]string{"after": "entries with seq greater than this (default 0, max 2^63-1)",
				"wait": "long-poll: how long to wait for an entry (default 30s, max 60s)", "limit": "at most this many entries (default and max 1000)"},
			Produces: "application/json", Status: 200, Schema: "EventFeed", Handler: s.handleEventFeed},
		{Method: "GET", Path: v1 + "/events/export", Perm: rbac.EventLogRead, Tag: "events",
			Summary: "Export the event log for auditors as JSON lines or CSV, with seq, prevHash and hash for outside verification: " +
				"holders of eventlog:read globally (AUDITOR, HUB_OPERATOR, the operator token) export every entry, an organisation's " +
				"MESSAGE_LOG_ADMINISTRATOR or ORGANISATION_ADMINISTRATOR the entries it may see. Every export is logged (EVENT_LOG_EXPORTED).",
			Params: export, Produces: "application/x-ndjson", Status: 200, Handler: s.handleExportEvents},
		{Method: "GET", Path: v1 + "/events/checkpoints", Perm: rbac.EventLogRead, Tag: "events",
			Summary:  "The log's signed checkpoints as JSON lines (seq, hash, time, keyId, ed25519 signature), to keep outside the hub; for auditors (eventlog:read globally).",
			Params:   map[string]string{"from": "checkpoints from this seq on"},
			Produces: "application/x-ndjson", Status: 200, Handler: s.handleExportCheckpoints},
	}
}

// EventLogEntry is one entry as the API shows it, in NgDP's EventLog
// terms where they exist.
type EventLogEntry struct {
	ID              string            `json:"id"`
	Seq             uint64            `json:"seq"`
	EventTime       time.Time         `json:"eventTime"`
	EventTag        string            `json:"eventTag"`
	Actor           string            `json:"actor,omitempty"`
	Owner           string            `json:"owner,omitempty"` // the CPR/CVR party
	Organisations   []string          `json:"organisations"`
	System          *SystemRef        `json:"system,omitempty"`
	MessageUUID     string            `json:"messageUUID,omitempty"`
	EventProperties map[string]string `json:"eventProperties"`
	PrevHash        string            `json:"prevHash"`
	Hash            string            `json:"hash"`
}

// SystemRef is NgDP's SystemDto, reduced to what the log knows.
type SystemRef struct {
	ID string `json:"id"`
}

func entryOf(ev hub.Event) EventLogEntry {
	e := EventLogEntry{ID: ev.ID, Seq: ev.Seq, EventTime: ev.Time.UTC(), EventTag: ev.Tag, Actor: ev.Actor, Owner: ev.Party,
		Organisations: ev.Orgs, MessageUUID: ev.MessageUUID, EventProperties: ev.Detail, PrevHash: ev.PrevHash, Hash: ev.Hash}
	if e.Organisations == nil {
		e.Organisations = []string{}
	}
	if e.EventProperties == nil {
		e.EventProperties = map[string]string{}
	}
	if ev.SystemID != "" {
		e.System = &SystemRef{ID: ev.SystemID}
	}
	return e
}

func entriesOf(evs []hub.Event) []EventLogEntry {
	out := make([]EventLogEntry, len(evs))
	for i, ev := range evs {
		out[i] = entryOf(ev)
	}
	return out
}

// EventLogSearchResult is NgDP's answer to QueryEvents, plus cursor paging.
type EventLogSearchResult struct {
	Events         []EventLogEntry `json:"events"`
	CurrentPage    int             `json:"currentPage"`
	TotalPages     int             `json:"totalPages"`
	ElementsOnPage int             `json:"elementsOnPage"`
	TotalElements  int64           `json:"totalElements"`
	// TotalIsLowerBound is set when more than 10,000 entries match and the
	// total was not counted further.
	TotalIsLowerBound bool `json:"totalIsLowerBound,omitempty"`
	// Next is the query string of the next page (cursor paging), "" at the end.
	Next       string `json:"next,omitempty"`
	NextCursor uint64 `json:"nextCursor,omitempty"`
}

// EventFeed is a long-poll answer.
type EventFeed struct {
	Events     []EventLogEntry `json:"events"`
	NextCursor uint64          `json:"nextCursor"`
}

// reader is the event-log reader a principal is: the operator token and
// users holding eventlog:read globally (AUDITOR, HUB_OPERATOR) audit
// everything; a system reads its organisation's entries; a user holding
// eventlog:read in an organisation (MESSAGE_LOG_ADMINISTRATOR,
// ORGANISATION_ADMINISTRATOR) reads that organisation's — the one chosen by
// X-Posthub-Organisation or organisation=, or its only one. Forbidden for a
// user without eventlog:read there.
func (s *Server) reader(c *gin.Context, p Principal) (eventlog.Reader, error) {
	switch {
	case p.User != nil:
		sub := p.Subject()
		if s.enforcer == nil {
			return eventlog.Reader{}, hub.Errorf(hub.Forbidden, "no policies to decide on")
		}
		if s.enforcer.Allowed(sub, rbac.Global, rbac.EventLogRead) {
			return eventlog.Reader{Auditor: true, Actor: p.String()}, nil
		}
		dom := s.domain(c, p, rbac.EventLogRead, false)
		if dom == "" || dom == rbac.Global || !s.enforcer.Allowed(sub, dom, rbac.EventLogRead) {
			return eventlog.Reader{}, hub.Errorf(hub.Forbidden,
				"reading the event log needs %s in the organisation concerned (choose it with %s when you hold privileges in several)", rbac.EventLogRead, OrgHeader)
		}
		return eventlog.Reader{Org: dom, Actor: p.String()}, nil
	case p.Operator:
		return eventlog.Reader{Auditor: true, Actor: "operator"}, nil
	}
	return eventlog.Reader{Org: p.System.OrgCVR, Actor: p.System.ID, SystemID: p.System.ID}, nil
}

func (s *Server) eventLog(c *gin.Context) (*eventlog.Log, bool) {
	if s.events == nil {
		writeError(c, s.log, hub.Errorf(hub.Unavailable, "the event log is not configured"))
		return nil, false
	}
	return s.events, true
}

// eventFilters reads the NgDP filters into a query.
func eventFilters(c *gin.Context, auditor bool) (hub.EventQuery, error) {
	var q hub.EventQuery
	var err error
	if q.From, err = parseEventTime(c.Query("dateFrom"), false); err != nil {
		return q, hub.InvalidField("request", "dateFrom", "event.date.invalid", err.Error(), c.Query("dateFrom"))
	}
	if q.To, err = parseEventTime(c.Query("dateTo"), true); err != nil {
		return q, hub.InvalidField("request", "dateTo", "event.date.invalid", err.Error(), c.Query("dateTo"))
	}
	q.SystemID = c.Query("senderOrRecipientSystem")
	q.Actor = c.Query("ownerOrActor")
	q.MessageUUID = c.Query("messageUUID")
	if v := c.Query("senderOrRecipient"); v != "" {
		switch {
		case hub.ValidCPR(v):
			q.Party = v
		case hub.ValidCVR(v) && auditor:
			q.Org = v
		case hub.ValidCVR(v):
			q.Party = v
		default:
			return q, hub.InvalidField("request", "senderOrRecipient", "event.party.invalid", "senderOrRecipient is a CPR (10 digits) or CVR (8 digits) number", v)
		}
	}
	if v := c.Query("organisation"); v != "" {
		// A non-auditor naming another organisation is refused when the
		// query is scoped to its own (eventlog: Forbidden).
		q.Org = v
	}
	if v := c.Query("eventTag"); len(v) > maxEventTags*(maxEventTag+1) {
		return q, hub.InvalidField("request", "eventTag", "event.tags.too.many",
			fmt.Sprintf("eventTag lists at most %d tags of at most %d characters", maxEventTags, maxEventTag), "")
	}
	for _, t := range strings.Split(c.Query("eventTag"), ",") {
		t = strings.ToUpper(strings.TrimSpace(t))
		switch {
		case t == "" || slices.Contains(q.Tags, t):
		case len(t) > maxEventTag || strings.ContainsFunc(t, func(r rune) bool { return (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' }):
			return q, hub.InvalidField("request", "eventTag", "event.tag.invalid",
				fmt.Sprintf("an event tag is at most %d letters, digits and underscores (e.g. MEMO_SEND_RECEIVED)", maxEventTag), t[:min(len(t), maxEventTag)])
		case len(q.Tags) == maxEventTags:
			return q, hub.InvalidField("request", "eventTag", "event.tags.too.many",
				fmt.Sprintf("eventTag lists at most %d tags", maxEventTags), "")
		default:
			q.Tags = append(q.Tags, t)
		}
	}
	return q, nil
}

// The eventTag filter's bounds: each scanned entry is compared with every
// tag.
const (
	maxEventTags = 32
	maxEventTag  = 64
)

// parseEventTime accepts NgDP's yyyy-MM-ddTHH:mm:ss.SSSZ, any RFC 3339 time
// and a bare date; a bare date as an upper bound means the end of that day.
func parseEventTime(v string, upper bool) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05.000Z0700", time.RFC3339Nano} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		if upper {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("a time is yyyy-MM-ddTHH:mm:ss.SSSZ, RFC 3339 or yyyy-MM-dd")
}

func (s *Server) handleQueryEvents(c *gin.Context) {
	l, ok := s.eventLog(c)
	if !ok {
		return
	}
	r, err := s.reader(c, principal(c))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	q, err := eventFilters(c, r.Auditor)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	search := eventlog.Search{Query: q, Params: c.Request.URL.RawQuery}
	if search.Page, search.Size, err = pageParams(c, 20, eventlog.MaxPageSize); err != nil {
		writeError(c, s.log, err)
		return
	}
	if sf := c.Query("sortFields"); sf != "" {
		field, dir, _ := strings.Cut(strings.Split(sf, ",")[0], ":")
		if (field != "eventTime" && field != "seq") || (dir != "" && dir != "asc" && dir != "desc") {
			writeError(c, s.log, hub.InvalidField("request", "sortFields", "event.sort.invalid", "sort by eventTime or seq, asc or desc", sf))
			return
		}
		search.Query.Descending = dir == "desc"
	}
	if v := c.Query("after"); v != "" {
		if search.Query.AfterSeq, err = seqCursor(v, "after", "event.cursor.invalid"); err != nil {
			writeError(c, s.log, err)
			return
		}
		search.Cursor = true
	}
	res, err := l.Search(c.Request.Context(), r, search)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	out := EventLogSearchResult{Events: entriesOf(res.Events), CurrentPage: res.CurrentPage, TotalPages: res.TotalPages,
		ElementsOnPage: len(res.Events), TotalElements: res.TotalElements, TotalIsLowerBound: !res.TotalExact, NextCursor: res.NextCursor}
	if res.NextCursor != 0 {
		next := c.Request.URL.Query()
		next.Del("page")
		next.Set("after", strconv.FormatUint(res.NextCursor, 10))
		out.Next = "?" + next.Encode()
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) handleEventFeed(c *gin.Context) {
	l, ok := s.eventLog(c)
	if !ok {
		return
	}
	r, err := s.reader(c, principal(c))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	after, err := seqCursor(c.Query("after"), "after", "event.cursor.invalid")
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	limit, err := intParam(c, "limit", eventlog.MaxPageSize, 1, eventlog.MaxPageSize)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	wait := 30 * time.Second
	if v := c.Query("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 || wait > time.Minute {
			writeError(c, s.log, hub.InvalidField("request", "wait", "event.wait.invalid", "wait is a duration up to 60s (e.g. 30s)", v))
			return
		}
	}
	sse := strings.Contains(c.GetHeader("Accept"), "text/event-stream")
	if id := c.GetHeader("Last-Event-ID"); sse && id != "" {
		if after, err = seqCursor(id, "Last-Event-ID", "event.cursor.invalid"); err != nil {
			writeError(c, s.log, err)
			return
		}
	}
	ctx := c.Request.Context()
	if err := l.LogFeed(ctx, r, c.Request.URL.RawQuery); err != nil {
		writeError(c, s.log, err)
		return
	}
	if !sse {
		evs, next, err := l.Feed(ctx, r, after, limit, wait)
		if err != nil {
			writeError(c, s.log, err)
			return
		}
		c.JSON(http.StatusOK, EventFeed{Events: entriesOf(evs), NextCursor: next})
		return
	}
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)
	c.Writer.Flush()
	for ctx.Err() == nil {
		evs, next, err := l.Feed(ctx, r, after, limit, 15*time.Second)
		if err != nil {
			fmt.Fprintf(c.Writer, "event: error\ndata: %q\n\n", hub.ErrorCode(err))
			c.Writer.Flush()
			return
		}
		if len(evs) == 0 {
			// A comment keeps proxies from closing an idle stream.
			fmt.Fprintf(c.Writer, ": idle after %d\n\n", next)
		}
		for _, ev := range evs {
			b, _ := json.Marshal(entryOf(ev))
			fmt.Fprintf(c.Writer, "id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Tag, b)
		}
		c.Writer.Flush()
		after = next
	}
}

func (s *Server) handleExportEvents(c *gin.Context) {
	l, ok := s.eventLog(c)
	if !ok {
		return
	}
	r, err := s.reader(c, principal(c))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	q, err := eventFilters(c, r.Auditor)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	format := c.DefaultQuery("format", "jsonl")
	if format != "jsonl" && format != "csv" {
		writeError(c, s.log, hub.InvalidField("request", "format", "event.export.format", "format is jsonl or csv", format))
		return
	}
	started := false
	var cw *csv.Writer
	var enc *json.Encoder
	start := func() {
		started = true
		name := "posthub-events-" + time.Now().UTC().Format("20060102T150405Z")
		if format == "csv" {
			c.Header("Content-Type", "text/csv; charset=utf-8")
			c.Header("Content-Disposition", `attachment; filename="`+name+`.csv"`)
			c.Status(http.StatusOK)
			cw = csv.NewWriter(c.Writer)
			_ = cw.Write([]string{"seq", "id", "eventTime", "eventTag", "actor", "organisations", "systemId", "messageUUID", "party", "detail", "prevHash", "hash"})
			return
		}
		c.Header("Content-Type", "application/x-ndjson")
		c.Header("Content-Disposition", `attachment; filename="`+name+`.jsonl"`)
		c.Status(http.StatusOK)
		enc = json.NewEncoder(c.Writer)
	}
	err = l.Export(c.Request.Context(), r, q, c.Request.URL.RawQuery, func(ev hub.Event) error {
		if !started {
			start()
		}
		if cw != nil {
			d, _ := json.Marshal(ev.Detail)
			return cw.Write([]string{strconv.FormatUint(ev.Seq, 10), ev.ID, ev.Time.UTC().Format(eventlog.TimeLayout), ev.Tag, ev.Actor,
				strings.Join(ev.Orgs, ";"), ev.SystemID, ev.MessageUUID, ev.Party, string(d), ev.PrevHash, ev.Hash})
		}
		return enc.Encode(ev)
	})
	if err != nil && !started {
		writeError(c, s.log, err)
		return
	}
	if !started {
		start()
	}
	if cw != nil {
		cw.Flush()
	}
	if err != nil {
		// Headers are out; a truncated body is all that can be said.
		s.log.Warn("event export cut short", "requestId", requestID(c), "error", err)
	}
}

func (s *Server) handleExportCheckpoints(c *gin.Context) {
	l, ok := s.eventLog(c)
	if !ok {
		return
	}
	if r, err := s.reader(c, principal(c)); err != nil || !r.Auditor {
		writeError(c, s.log, hub.Errorf(hub.Forbidden, "the checkpoints are for auditors (%s in every organisation)", rbac.EventLogRead))
		return
	}
	from, err := seqCursor(c.Query("from"), "from", "event.cursor.invalid")
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.Header("Content-Type", "application/x-ndjson")
	c.Status(http.StatusOK)
	if _, err := eventlog.ExportCheckpoints(c.Request.Context(), l.Store(), from, c.Writer); err != nil {
		s.log.Warn("checkpoint export cut short", "requestId", requestID(c), "error", err)
	}
}
