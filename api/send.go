package api

import (
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/posthub/posthub/accept"
	"github.com/posthub/posthub/api/paging"
	"github.com/posthub/posthub/bulk"
	"github.com/posthub/posthub/hub"
)

// BulkReceipts answers a mass send: one receipt per MeMo read from the
// archive.
type BulkReceipts struct {
	Receipts []hub.Receipt `json:"receipts"`
	Accepted int           `json:"accepted"`
	Rejected int           `json:"rejected"`
	// ArchiveError is set when the hub stopped reading the archive before
	// its end: a bound was crossed or the archive broke (codes in package
	// bulk). The receipts before it stand, each stored as a single send's
	// is; StoppedAt says where reading stopped.
	ArchiveError *ErrorMessage `json:"archiveError,omitempty"`
	// StoppedAt is the entry the hub stopped at. Stopped at its header (a
	// bound) or unable to take it now (Unavailable: the disk full), it has
	// no receipt; broken inside it, it has an INVALID one.
	// The entries after it were not read: send them again (a MeMo sent
	// again is answered with its first receipt, so resending all of them
	// is safe too).
	StoppedAt *bulk.Position `json:"stoppedAt,omitempty"`
}

func (s *Server) handleSendMemo(c *gin.Context) {
	mode, err := hub.ParseMode(c.Query("mode"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	archive, err := hub.ParseArchiveChoice(c.Query("archive"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	ct, params, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	switch ct {
	case "application/xml", "text/xml":
		s.sendOne(c, mode, archive)
	case "application/x-lzma", "application/x-xz":
		s.sendArchive(c, c.Request.Body, mode, archive)
	case "multipart/form-data":
		part, err := filePart(c.Request, params["boundary"])
		if err != nil {
			writeError(c, s.log, err)
			return
		}
		s.sendArchive(c, part, mode, archive)
	default:
		writeError(c, s.log, hub.InvalidField("request", "Content-Type", "content.type.unsupported",
			"send one MeMo as application/xml, or many as application/x-lzma (a tar archive compressed with lzma)", ct))
	}
}

func filePart(r *http.Request, boundary string) (io.Reader, error) {
	if boundary == "" {
		return nil, hub.InvalidField("request", "Content-Type", "multipart.boundary.missing", "multipart/form-data needs a boundary", "")
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, hub.InvalidField("request", "body", "multipart.malformed", err.Error(), "")
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil, hub.InvalidField("request", "file", "multipart.file.missing", "the archive must be in a part named \"file\"", "")
		}
		if err != nil {
			return nil, hub.InvalidField("request", "body", "multipart.malformed", err.Error(), "")
		}
		if p.FormName() == "file" {
			return p, nil
		}
	}
}

// sendOne accepts a single MeMo through the accept service.
func (s *Server) sendOne(c *gin.Context, mode hub.Mode, archive hub.ArchiveChoice) {
	want := c.Query("memo-message-uuid")
	if want == "" {
		writeError(c, s.log, hub.InvalidField("request", "memo-message-uuid", "memo.message.uuid.missing",
			"the query parameter memo-message-uuid must carry the MeMo's messageUUID", ""))
		return
	}
	r, created, err := s.accepter.Letter(c.Request.Context(),
		accept.Request{System: principal(c).System, WantUUID: want, Mode: mode, Archive: archive},
		accept.Body{R: c.Request.Body, Size: c.Request.ContentLength})
	if err != nil {
		if hub.ErrorCode(err) == hub.TooLarge {
			c.Header("Connection", "close") // the rest of the body is not read
		}
		writeError(c, s.log, err)
		return
	}
	if !created {
		c.Header("X-Posthub-Duplicate", "true")
	}
	writeReceipt(c, http.StatusCreated, r)
}

// sendArchive accepts a mass send: every MeMo in the tar archive is
// validated and submitted on its own, each with its own receipt; a bad MeMo
// does not sink the others. Receipts of refused MeMos are also kept for
// GET /receipts/.
//
// The archive is read within the bounds of s.cfg.Archive (see package
// bulk). A bound found before any entry was read (the declared length, the
// compression header, the first entry's header) refuses the archive with
// its status and code. Crossed later, reading stops at that entry's
// header, before its content: the answer is 201 with the receipts so far,
// ArchiveError and StoppedAt.
func (s *Server) sendArchive(c *gin.Context, body io.Reader, mode hub.Mode, archive hub.ArchiveChoice) {
	ctx := c.Request.Context()
	req := accept.Request{System: principal(c).System, Mode: mode, Archive: archive}
	if err := s.cfg.Archive.Admit(c.Request.ContentLength); err != nil {
		s.refuseArchive(c, err)
		return
	}
	ar, err := bulk.NewReader(body, s.cfg.Archive)
	if err != nil {
		s.refuseArchive(c, err)
		return
	}
	out := BulkReceipts{Receipts: []hub.Receipt{}}
	for {
		e, err := ar.Next()
		if err == io.EOF {
			break
		}
		if err == nil {
			// The entry's size was held to MaxMemoSize at its header. An
			// error is the hub unable to take MeMos now (its disk full):
			// no verdict on this entry, and the rest is not read.
			var r hub.Receipt
			if r, err = s.accepter.Entry(ctx, req, e.Name, accept.Body{R: ar, Size: e.Size}); err == nil {
				if r.Status == hub.ReceiptInvalid {
					out.Rejected++
				} else {
					out.Accepted++
				}
				out.Receipts = append(out.Receipts, r)
				if err = ar.Err(); err == nil {
					continue
				}
			}
		}
		if len(out.Receipts) == 0 {
			s.refuseArchive(c, err)
			return
		}
		why, pos := errorBody(c, s.log, err), ar.Pos()
		out.ArchiveError, out.StoppedAt = &why, &pos
		// The rest of the body is not read.
		c.Header("Connection", "close")
		break
	}
	c.JSON(http.StatusCreated, out)
}

// refuseArchive answers an archive refused before any of its entries was
// read; the rest of the body is not read.
func (s *Server) refuseArchive(c *gin.Context, err error) {
	c.Header("Connection", "close")
	writeError(c, s.log, err)
}

func (s *Server) handleRecall(c *gin.Context) {
	sys := principal(c).System
	id := strings.ToLower(c.Param("id"))
	if err := s.ingest.Recall(c.Request.Context(), sys.OrgCVR, sys.ID, id); err != nil {
		writeError(c, s.log, err)
		return
	}
	m, err := s.store.GetMessage(c.Request.Context(), id)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.JSON(http.StatusOK, m)
}

func (s *Server) handleListReceipts(c *gin.Context) {
	page, size, err := pageParams(c, 100, MaxPageSize)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	sys := principal(c).System
	// Receipts are consumed as they are read, so the list stays short; a
	// page is found by walking the cursor.
	var all []string
	after := ""
	for {
		rs, err := s.store.ListReceipts(c.Request.Context(), sys.ID, after, 1000)
		if err != nil {
			writeError(c, s.log, err)
			return
		}
		for _, r := range rs {
			all = append(all, r.TransmissionID)
		}
		if len(rs) < 1000 || len(all) > (page+1)*size+100_000 {
			break
		}
		after = rs[len(rs)-1].TransmissionID
	}
	c.JSON(http.StatusOK, paging.Whole(all, page, size))
}

func (s *Server) handleGetReceipt(c *gin.Context) {
	sys := principal(c).System
	del := true
	if v := c.Query("delete"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(c, s.log, hub.InvalidField("request", "delete", "delete.invalid", "delete is true or false", v))
			return
		}
		del = b
	}
	r, err := s.store.GetReceipt(c.Request.Context(), sys.ID, c.Param("id"))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	if del {
		if err := s.store.DeleteReceipt(c.Request.Context(), sys.ID, r.TransmissionID); err != nil {
			writeError(c, s.log, err)
			return
		}
	}
	c.JSON(http.StatusOK, r)
}

func (s *Server) handleRegistration(kind string) gin.HandlerFunc {
	return func(c *gin.Context) {
		cpr, cvr := c.Query("cprNumber"), c.Query("cvrNumber")
		id := cpr
		switch {
		case cpr != "" && cvr != "":
			writeError(c, s.log, hub.InvalidField("request", "cprNumber", "registration.query.ambiguous", "give cprNumber or cvrNumber, not both", ""))
			return
		case cpr != "":
			if !hub.ValidCPR(cpr) {
				writeError(c, s.log, hub.InvalidField("request", "cprNumber", "cpr.invalid", "a CPR number is 10 digits", cpr))
				return
			}
		case cvr != "" && kind == "digitalpost":
			if !hub.ValidCVR(cvr) {
				writeError(c, s.log, hub.InvalidField("request", "cvrNumber", "cvr.invalid", "a CVR number is 8 digits", cvr))
				return
			}
			id = cvr
		default:
			writeError(c, s.log, hub.InvalidField("request", "cprNumber", "registration.query.missing", "give cprNumber (or, for digitalpost, cvrNumber)", ""))
			return
		}
		ct, err := s.store.GetContact(c.Request.Context(), id)
		found := err == nil
		if err != nil && hub.ErrorCode(err) != hub.NotFound {
			writeError(c, s.log, err)
			return
		}
		var result bool
		if kind == "nemsms" {
			result = found && ct.NemSMS && ct.Phone != ""
		} else {
			// Digital Post is the rule; only an exempt party cannot receive it.
			result = !found || ct.Status != hub.Exempt
		}
		c.JSON(http.StatusOK, gin.H{"result": result})
	}
}

func (s *Server) handleListSent(c *gin.Context) {
	size, err := intParam(c, "size", 100, 1, MaxPageSize)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	sys := principal(c).System
	ms, err := s.archive.List(c.Request.Context(), sys.OrgCVR, c.Query("after"), size)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	next := ""
	if len(ms) == size {
		next = ms[len(ms)-1].UUID
	}
	writeCursor(c, ms, size, next)
}

func (s *Server) handleGetSent(c *gin.Context) {
	sys := principal(c).System
	m, rc, err := s.archive.Open(c.Request.Context(), sys.OrgCVR, strings.ToLower(c.Param("id")))
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	defer rc.Close()
	c.DataFromReader(http.StatusOK, m.Size, "application/xml", rc, nil)
}
