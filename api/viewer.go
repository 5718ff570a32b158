package api

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/viewer"
)

// AssertionHeader carries a viewing client's signed user assertion (see
// package viewer for its format).
const AssertionHeader = "X-User-Assertion"

// viewerRoutes are the viewing-client API (mailboxes; the caller is a
// viewer system and names its user in AssertionHeader), the consent API
// for authorities' systems, and the registration of assertion keys.
func (s *Server) viewerRoutes() []Route {
	box := v1 + "/mailboxes/:owner"
	msg := box + "/messages/:uuid"
	kind := map[string]string{"kind": "organisations: CVR_POST (default) or AUTHORITY_POST"}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	return []Route{
		{Method: "GET", Path: box + "/messages/", Perm: rbac.MailboxRead, Tag: "viewer",
			Summary: "List a mailbox (viewing client acting for its owner, named in X-User-Assertion), in arrival order. One request reads at most 1,000 letters to fill its page: a filter that matches few may answer a short or empty page with a next cursor; the listing ends at a page without one.",
			Params: with(kind, "folder", "INBOX (default), ARCHIVE, DELETED or ALL", "sender", "sender CVR",
				"from", "received at or after (RFC 3339 or YYYY-MM-DD)", "to", "received before", "unread", "true: unread only",
				"after", "cursor: the previous page's nextCursor", "size", "page size (default 50, max 500)"),
			Produces: "application/json", Status: 200, Schema: "MailboxLetterList", Handler: s.handleMailboxList},
		{Method: "GET", Path: msg, Perm: rbac.MailboxRead, Tag: "viewer", Summary: "A letter's metadata and state.",
			Params: kind, Produces: "application/json", Status: 200, Schema: "MailboxLetter", Handler: s.handleMailboxGet},
		{Method: "GET", Path: msg + "/render", Perm: rbac.MailboxRead, Tag: "viewer",
			Summary: "The letter as a self-contained safe HTML page (strict Content-Security-Policy); marks it read.",
			Params:  kind, Produces: "text/html", Status: 200, Handler: s.handleMailboxRender},
		{Method: "GET", Path: msg + "/documents/:doc/files/:file", Perm: rbac.MailboxRead, Tag: "viewer",
			Summary: "One file of a document, decoded, with its content type and a safe Content-Disposition.",
			Params:  with(kind, "disposition", "attachment (default) or inline"), Produces: "application/octet-stream", Status: 200,
			Handler: s.handleMailboxFile},
		{Method: "GET", Path: msg + "/documents/:doc/actions/:action/ics", Perm: rbac.MailboxRead, Tag: "viewer",
			Summary: "The iCalendar file of a Reservation action.", Params: kind, Produces: "text/calendar", Status: 200,
			Handler: s.handleMailboxICS},
		{Method: "POST", Path: msg + "/read", Perm: rbac.MailboxRead, Tag: "viewer", Summary: "Mark the letter read.",
			Params: kind, Produces: "application/json", Status: 200, Schema: "MailboxLetter", Handler: s.handleMailboxRead(true)},
		{Method: "POST", Path: msg + "/unread", Perm: rbac.MailboxRead, Tag: "viewer", Summary: "Mark the letter unread.",
			Params: kind, Produces: "application/json", Status: 200, Schema: "MailboxLetter", Handler: s.handleMailboxRead(false)},
		{Method: "POST", Path: msg + "/move", Perm: rbac.MailboxRead, Tag: "viewer",
			Summary: "Move the letter to INBOX or ARCHIVE (restores a deleted letter).", Params: with(kind, "folder", "INBOX or ARCHIVE"),
			Produces: "application/json", Status: 200, Schema: "MailboxLetter", Handler: s.handleMailboxMove},
		{Method: "DELETE", Path: msg, Perm: rbac.MailboxRead, Tag: "viewer",
			Summary: "Delete the letter: it moves to DELETED (GET shows it there, POST …/move restores it) and is purged after the retention period.",
			Params:  kind, Status: 204, Handler: s.handleMailboxDelete},
		{Method: "GET", Path: box + "/consents/", Perm: rbac.MailboxRead, Tag: "consent", Summary: "The citizen's consents.",
			Params: wholeDoc, Produces: "application/json", Status: 200, Schema: "ConsentList", Handler: s.handleConsentList},
		{Method: "PUT", Path: box + "/consents/:cvr", Perm: rbac.MailboxRead, Tag: "consent",
			Summary:  "The citizen grants authority :cvr read access to the letters it sent them.",
			Produces: "application/json", Status: 200, Schema: "Consent", Handler: s.handleConsentGrant},
		{Method: "DELETE", Path: box + "/consents/:cvr", Perm: rbac.MailboxRead, Tag: "consent", Summary: "The citizen revokes a consent.",
			Status: 204, Handler: s.handleConsentRevoke},
		{Method: "GET", Path: v1 + "/consented/:cpr/messages/", Perm: rbac.MemosSend, Tag: "consent",
			Summary:  "An authority's system lists the letters its organisation sent a citizen who consented (every access logged).",
			Params:   map[string]string{"after": "cursor: the previous page's nextCursor", "size": "page size (default 50, max 500)"},
			Produces: "application/json", Status: 200, Schema: "MailboxLetterList", Handler: s.handleConsentedList},
		{Method: "GET", Path: v1 + "/consented/:cpr/messages/:uuid", Perm: rbac.MemosSend, Tag: "consent",
			Summary:  "An authority's system fetches one such letter as MeMo XML (every access logged).",
			Produces: "application/xml", Status: 200, Handler: s.handleConsentedFetch},
		{Method: "POST", Path: v1 + "/organisations/:org/systems/:id/assertion-keys", Perm: rbac.HubOperate, Tag: "registry",
			Summary:  "Register a viewing client's public key (Ed25519 or P-256, PEM) for signing user assertions (hub operator only: a key opens any mailbox its assertions name).",
			Consumes: []string{"application/json"}, Produces: "application/json", Status: 201, Schema: "AssertionKey",
			Handler: s.handleAddAssertionKey},
		{Method: "GET", Path: v1 + "/organisations/:org/systems/:id/assertion-keys", Perm: rbac.SystemsRead, Tag: "registry",
			Summary: "List a viewing client's assertion keys.", Params: wholeDoc, Produces: "application/json", Status: 200, Schema: "AssertionKeyList",
			Handler: s.handleListAssertionKeys},
	}
}

// viewerSchemas are the component schemas of the viewer and consent routes.
func viewerSchemas() obj {
	date := obj{"type": "string", "format": "date-time"}
	return obj{
		"MailboxLetter": obj{"type": "object", "properties": obj{"messageUUID": str(""), "messageId": str(""), "label": str(""),
			"senderCvr": str(""), "senderName": str(""), "received": date, "size": obj{"type": "integer"},
			"folder": obj{"type": "string", "enum": []string{"INBOX", "ARCHIVE", "DELETED"}}, "read": obj{"type": "boolean"},
			"deletedAt": date, "purgeAt": date, "seq": obj{"type": "integer", "description": "position in the mailbox: the paging cursor"}}},
		"MailboxLetterList": listOf("MailboxLetter"),
		"Consent": obj{"type": "object", "properties": obj{"citizen": str("CPR"), "organisation": str("the authority's CVR"),
			"scope": str(""), "granted": date, "revoked": obj{"type": "string", "format": "date-time", "description": "absent while in force"}}},
		"ConsentList": listOf("Consent"),
		"AssertionKey": obj{"type": "object", "properties": obj{"systemId": str(""), "kid": str(""),
			"alg": obj{"type": "string", "enum": []string{"EdDSA", "ES256"}}, "publicKey": str("PKIX DER, base64"), "created": date}},
		"AssertionKeyList": listOf("AssertionKey"),
	}
}

func (s *Server) viewerService(c *gin.Context) (*viewer.Service, bool) {
	if s.viewer == nil {
		writeError(c, s.log, hub.Errorf(hub.Unavailable, "the viewer service is not enabled on this hub"))
		return nil, false
	}
	return s.viewer, true
}

// person verifies the caller's user assertion.
func (s *Server) person(c *gin.Context) (viewer.Person, bool) {
	v, ok := s.viewerService(c)
	if !ok {
		return viewer.Person{}, false
	}
	p, err := v.VerifyAssertion(c.Request.Context(), principal(c).System, c.GetHeader(AssertionHeader))
	if err != nil {
		writeError(c, s.log, err)
		return viewer.Person{}, false
	}
	return p, true
}

// mailbox resolves :owner for the caller's user.
func (s *Server) mailbox(c *gin.Context) (viewer.Mailbox, bool) {
	p, ok := s.person(c)
	if !ok {
		return viewer.Mailbox{}, false
	}
	b, err := s.viewer.Open(c.Request.Context(), p, c.Param("owner"), hub.MailboxKind(strings.ToUpper(c.Query("kind"))))
	if err != nil {
		writeError(c, s.log, err)
		return viewer.Mailbox{}, false
	}
	return b, true
}

func parseTimeParam(c *gin.Context, name string) (time.Time, error) {
	v := c.Query(name)
	if v == "" {
		return time.Time{}, nil
	}
	for _, l := range []string{time.RFC3339, time.DateOnly} {
		if t, err := time.Parse(l, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, hub.InvalidField("request", name, "time.invalid", name+" must be RFC 3339 or YYYY-MM-DD", v)
}

func mailboxQuery(c *gin.Context) (viewer.Query, error) {
	var q viewer.Query
	var err error
	if q.Folder, err = viewer.ParseFolder(c.Query("folder")); err != nil {
		return q, err
	}
	q.Sender = c.Query("sender")
	if q.From, err = parseTimeParam(c, "from"); err != nil {
		return q, err
	}
	if q.To, err = parseTimeParam(c, "to"); err != nil {
		return q, err
	}
	q.UnreadOnly = c.Query("unread") == "true"
	after, err := seqCursor(c.Query("after"), "after", "cursor.invalid")
	if err != nil {
		return q, err
	}
	q.After = int64(after)
	if q.Size, err = intParam(c, "size", 50, 1, 500); err != nil {
		return q, err
	}
	return q, nil
}

func (s *Server) handleMailboxList(c *gin.Context) {
	b, ok := s.mailbox(c)
	if !ok {
		return
	}
	q, err := mailboxQuery(c)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	p, err := s.viewer.List(c.Request.Context(), b, q)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	writeLetters(c, q, p)
}

// writeLetters answers a page of a mailbox listing, cursor-paged by seq.
func writeLetters(c *gin.Context, q viewer.Query, p viewer.Page) {
	next := ""
	if p.Next != 0 {
		next = strconv.FormatInt(p.Next, 10)
	}
	writeCursor(c, p.Letters, q.Size, next)
}

func (s *Server) handleMailboxGet(c *gin.Context) {
	b, ok := s.mailbox(c)
	if !ok {
		return
	}
	l, err := s.viewer.Get(c.Request.Context(), b, c.Param("uuid"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.JSON(http.StatusOK, l)
}

// SetRenderHeaders sets the headers a rendered letter is served with.
func SetRenderHeaders(h http.Header) {
	h.Set("Content-Security-Policy", memo.RenderCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "private, no-store")
	h.Set("X-Frame-Options", "DENY")
}

func (s *Server) handleMailboxRender(c *gin.Context) {
	b, ok := s.mailbox(c)
	if !ok {
		return
	}
	uuid := c.Param("uuid")
	l, err := s.viewer.Get(c.Request.Context(), b, uuid)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	release, err := s.viewer.Hold(c.Request.Context(), l.Size)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	defer release()
	_, msg, err := s.viewer.Read(c.Request.Context(), b, uuid)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	// Relative to the page's URL, .../messages/<uuid>/render (so they
	// resolve to .../messages/<uuid>/documents/...): a client serving the
	// page at the same path on its own origin proxies the files unchanged.
	q := ""
	if k := c.Query("kind"); k != "" {
		q = "?kind=" + url.QueryEscape(k)
	}
	opts := memo.RenderOptions{
		FileURL: func(d, f int) string { return fmt.Sprintf("documents/%d/files/%d%s", d, f, q) },
		ICSURL:  func(d, a int) string { return fmt.Sprintf("documents/%d/actions/%d/ics%s", d, a, q) },
	}
	// Rendered into a buffer: a failure (content that cannot be read) is
	// answered as an error, never as a 200 with half a page or none.
	var page bytes.Buffer
	if err := memo.Render(&page, msg, opts); err != nil {
		writeError(c, s.log, hub.Wrap(hub.ErrorCode(err), err, "the letter cannot be shown"))
		return
	}
	SetRenderHeaders(c.Writer.Header())
	c.Data(http.StatusOK, "text/html; charset=utf-8", page.Bytes())
}

// ContentDisposition is a safe Content-Disposition for a file name: an
// ASCII fallback and the RFC 6266 / RFC 5987 filename* with the UTF-8 name.
func ContentDisposition(disposition, filename string) string {
	if disposition != "inline" {
		disposition = "attachment"
	}
	fallback := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' || r == '/' || r == ';' {
			return '_'
		}
		return r
	}, filename)
	if fallback == "" {
		fallback = "file"
	}
	return fmt.Sprintf(`%s; filename="%s"; filename*=UTF-8''%s`, disposition, fallback, url.PathEscape(filename))
}

// safeContentType is the type a file is served with: its encodingFormat,
// except types a browser would run as a page or script, which are served
// as downloads.
func safeContentType(format string) (ctype string, inlineOK bool) {
	mt, params, err := mime.ParseMediaType(format)
	if err != nil {
		return "application/octet-stream", false
	}
	switch mt {
	case "application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp":
		return mt, true
	case "text/plain", "text/csv", "text/calendar":
		cs := params["charset"]
		if cs == "" {
			cs = "utf-8"
		}
		return mime.FormatMediaType(mt, map[string]string{"charset": cs}), true
	case "text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml", "text/javascript", "application/javascript":
		return "application/octet-stream", false
	}
	if mt == "" || strings.Contains(mt, "script") {
		return "application/octet-stream", false
	}
	return mt, false
}

func (s *Server) handleMailboxFile(c *gin.Context) {
	b, ok := s.mailbox(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	l, err := s.viewer.Get(ctx, b, c.Param("uuid"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	release, err := s.viewer.Hold(ctx, l.Size)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	defer release()
	msg, err := s.viewer.Content(ctx, c.Param("uuid"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	d, err1 := strconv.Atoi(c.Param("doc"))
	fi, err2 := strconv.Atoi(c.Param("file"))
	if err1 != nil || err2 != nil {
		writeError(c, s.log, hub.Errorf(hub.NotFound, "no such file"))
		return
	}
	f, rc, err := viewer.File(msg, d, fi)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	defer rc.Close()
	serveFile(c, f, rc)
}

func serveFile(c *gin.Context, f *memo.File, rc io.Reader) {
	ctype, inlineOK := safeContentType(f.EncodingFormat)
	disp := "attachment"
	if c.Query("disposition") == "inline" && inlineOK {
		disp = "inline"
	}
	h := c.Writer.Header()
	h.Set("Content-Type", ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", ContentDisposition(disp, f.Filename))
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Cache-Control", "private, no-store")
	if n := f.DecodedSize(); n >= 0 {
		h.Set("Content-Length", strconv.FormatInt(n, 10))
	}
	c.Status(http.StatusOK)
	_, _ = io.Copy(c.Writer, rc)
}

func (s *Server) handleMailboxICS(c *gin.Context) {
	b, ok := s.mailbox(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	l, err := s.viewer.Get(ctx, b, c.Param("uuid"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	release, err := s.viewer.Hold(ctx, l.Size)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	defer release()
	msg, err := s.viewer.Content(ctx, c.Param("uuid"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	d, _ := strconv.Atoi(c.Param("doc"))
	a, err := strconv.Atoi(c.Param("action"))
	if err != nil {
		a = -1
	}
	ics, name, err := viewer.ICS(msg, d, a)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("Content-Disposition", ContentDisposition("attachment", name))
	c.Data(http.StatusOK, "text/calendar; charset=utf-8", ics)
}

func (s *Server) handleMailboxRead(read bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		b, ok := s.mailbox(c)
		if !ok {
			return
		}
		l, err := s.viewer.SetRead(c.Request.Context(), b, c.Param("uuid"), read)
		if err != nil {
			writeError(c, s.log, err)
			return
		}
		c.JSON(http.StatusOK, l)
	}
}

func (s *Server) handleMailboxMove(c *gin.Context) {
	b, ok := s.mailbox(c)
	if !ok {
		return
	}
	f, err := viewer.ParseFolder(c.Query("folder"))
	if err != nil || c.Query("folder") == "" {
		if err == nil {
			err = hub.InvalidField("request", "folder", "folder.missing", "folder is required", "")
		}
		writeError(c, s.log, err)
		return
	}
	l, err := s.viewer.Move(c.Request.Context(), b, c.Param("uuid"), f)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.JSON(http.StatusOK, l)
}

func (s *Server) handleMailboxDelete(c *gin.Context) {
	b, ok := s.mailbox(c)
	if !ok {
		return
	}
	_, err := s.viewer.Delete(c.Request.Context(), b, c.Param("uuid"))
	s.noContent(c, err)
}

// citizen resolves :owner to the caller's citizen (consents are theirs).
func (s *Server) citizen(c *gin.Context) (viewer.Person, bool) {
	b, ok := s.mailbox(c)
	if !ok {
		return viewer.Person{}, false
	}
	if b.Person.CPR == "" {
		writeError(c, s.log, hub.Errorf(hub.Forbidden, "consents are given by citizens"))
		return viewer.Person{}, false
	}
	return b.Person, true
}

func (s *Server) handleConsentList(c *gin.Context) {
	p, ok := s.citizen(c)
	if !ok {
		return
	}
	cs, err := s.viewer.Consents(c.Request.Context(), p)
	writeWhole(s, c, cs, err)
}

func (s *Server) handleConsentGrant(c *gin.Context) {
	p, ok := s.citizen(c)
	if !ok {
		return
	}
	cs, err := s.viewer.Grant(c.Request.Context(), p, c.Param("cvr"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.JSON(http.StatusOK, cs)
}

func (s *Server) handleConsentRevoke(c *gin.Context) {
	p, ok := s.citizen(c)
	if !ok {
		return
	}
	_, err := s.viewer.Revoke(c.Request.Context(), p, c.Param("cvr"))
	s.noContent(c, err)
}

func (s *Server) handleConsentedList(c *gin.Context) {
	v, ok := s.viewerService(c)
	if !ok {
		return
	}
	q, err := mailboxQuery(c)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	q.Folder = viewer.FolderAll
	p, err := v.ConsentedLetters(c.Request.Context(), principal(c).System, c.Param("cpr"), q)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	writeLetters(c, q, p)
}

func (s *Server) handleConsentedFetch(c *gin.Context) {
	v, ok := s.viewerService(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	_, err := v.ConsentedCheck(ctx, principal(c).System, c.Param("cpr"), c.Param("uuid"), "fetch")
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	m, err := s.store.GetMessage(ctx, c.Param("uuid"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	rc, err := hub.OpenContent(ctx, s.blobs, m)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	defer rc.Close()
	c.Header("X-Content-Type-Options", "nosniff")
	c.DataFromReader(http.StatusOK, m.Size, "application/xml", rc, nil)
}

type assertionKeyRequest struct {
	KeyID     string `json:"kid"`
	PublicKey string `json:"publicKey"`
}

func (s *Server) viewerSystem(c *gin.Context) (hub.System, bool) {
	sys, err := s.store.GetSystem(c.Request.Context(), c.Param("id"))
	if err == nil && (sys.OrgCVR != c.Param("org") || sys.Role != hub.ViewerSystem) {
		err = hub.Errorf(hub.NotFound, "no viewing-client system %s in %s", c.Param("id"), c.Param("org"))
	}
	if err != nil {
		writeError(c, s.log, err)
		return hub.System{}, false
	}
	return sys, true
}

func (s *Server) handleAddAssertionKey(c *gin.Context) {
	if _, ok := s.viewerService(c); !ok {
		return
	}
	sys, ok := s.viewerSystem(c)
	if !ok {
		return
	}
	var req assertionKeyRequest
	if err := decodeJSON(c, &req); err != nil {
		writeError(c, s.log, err)
		return
	}
	k, err := s.viewer.RegisterAssertionKey(c.Request.Context(), principal(c).String(), sys, req.KeyID, req.PublicKey)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.JSON(http.StatusCreated, k)
}

func (s *Server) handleListAssertionKeys(c *gin.Context) {
	if _, ok := s.viewerService(c); !ok {
		return
	}
	sys, ok := s.viewerSystem(c)
	if !ok {
		return
	}
	ks, err := s.viewer.AssertionKeys(c.Request.Context(), sys.ID)
	writeWhole(s, c, ks, err)
}
