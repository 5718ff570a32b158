package api

import (
	"archive/tar"
	"bufio"
	"bytes"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/posthub/posthub/accept"
	"github.com/posthub/posthub/hub"
)

// BulkReceipts answers a mass send: one receipt per MeMo in the archive.
type BulkReceipts struct {
	Receipts []hub.Receipt `json:"receipts"`
	Accepted int           `json:"accepted"`
	Rejected int           `json:"rejected"`
	// ArchiveError is set when the archive itself broke off part-way; the
	// receipts before it stand.
	ArchiveError *ErrorMessage `json:"archiveError,omitempty"`
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
		writeError(c, s.log, badRequest("Content-Type", "content.type.unsupported",
			"send one MeMo as application/xml, or many as application/x-lzma (a tar archive compressed with lzma)", ct))
	}
}

func filePart(r *http.Request, boundary string) (io.Reader, error) {
	if boundary == "" {
		return nil, badRequest("Content-Type", "multipart.boundary.missing", "multipart/form-data needs a boundary", "")
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, badRequest("body", "multipart.malformed", err.Error(), "")
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil, badRequest("file", "multipart.file.missing", "the archive must be in a part named \"file\"", "")
		}
		if err != nil {
			return nil, badRequest("body", "multipart.malformed", err.Error(), "")
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
		writeError(c, s.log, badRequest("memo-message-uuid", "memo.message.uuid.missing",
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
	c.JSON(http.StatusCreated, r)
}

// limitedReader fails with TooLarge once more than n bytes were read.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return 0, &hub.Error{Code: hub.TooLarge, Message: "the archive is larger than the hub accepts"}
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		return n, &hub.Error{Code: hub.TooLarge, Message: "the archive is larger than the hub accepts"}
	}
	return n, err
}

// decompressor opens an lzma ("LZMA alone", as NgDP specifies) or xz stream.
func decompressor(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(6)
	if bytes.Equal(magic, []byte{0xFD, '7', 'z', 'X', 'Z', 0}) {
		return xz.NewReader(br)
	}
	return lzma.NewReader(br)
}

// sendArchive accepts a mass send: every MeMo in the tar archive is
// validated and submitted on its own, each with its own receipt; a bad MeMo
// does not sink the others. Receipts of refused MeMos are also kept for
// GET /receipts/.
func (s *Server) sendArchive(c *gin.Context, body io.Reader, mode hub.Mode, archive hub.ArchiveChoice) {
	ctx := c.Request.Context()
	sys := principal(c).System
	if c.Request.ContentLength > s.cfg.MaxArchiveSize {
		writeError(c, s.log, &hub.Error{Code: hub.TooLarge, Message: "the archive is larger than the hub accepts"})
		return
	}
	zr, err := decompressor(&limitedReader{r: body, n: s.cfg.MaxArchiveSize})
	if err != nil {
		writeError(c, s.log, badRequest("body", "archive.malformed", "the body is not lzma/xz-compressed: "+err.Error(), ""))
		return
	}
	tr := tar.NewReader(zr)
	out := BulkReceipts{Receipts: []hub.Receipt{}}
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if n == 0 {
				writeError(c, s.log, archiveError(err))
				return
			}
			e := archiveError(err)
			out.ArchiveError = &ErrorMessage{Code: string(hub.ErrorCode(e)), Message: e.Error(), FieldErrors: []hub.FieldError{}}
			break
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if n >= s.cfg.MaxArchiveEntries {
			out.ArchiveError = &ErrorMessage{Code: string(hub.TooLarge), Message: "the archive holds more MeMos than the hub accepts at once",
				FieldErrors: []hub.FieldError{}}
			break
		}
		r, err := s.accepter.Entry(ctx, accept.Request{System: sys, Mode: mode, Archive: archive}, hdr.Name, accept.Body{R: tr, Size: hdr.Size})
		if err != nil {
			// The hub cannot take MeMos now (the disk is full): the
			// rest is not read, and the sender sends it again later.
			if len(out.Receipts) == 0 {
				writeError(c, s.log, err)
				return
			}
			s.log.Error("mass send broken off", "requestId", requestID(c), "error", err)
			out.ArchiveError = &ErrorMessage{Code: string(hub.Unavailable), Message: "the hub cannot take more MeMos now; send the rest again later",
				FieldErrors: []hub.FieldError{}}
			break
		}
		if r.Status == hub.ReceiptInvalid {
			out.Rejected++
		} else {
			out.Accepted++
		}
		out.Receipts = append(out.Receipts, r)
	}
	c.JSON(http.StatusCreated, out)
}

func archiveError(err error) error {
	if hub.ErrorCode(err) == hub.TooLarge {
		return err
	}
	return badRequest("body", "archive.malformed", "the archive is not a valid lzma-compressed tar: "+err.Error(), "")
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

// PagingResultUUID is NgDP's paged list of ids.
type PagingResultUUID struct {
	Content       []string `json:"content"`
	Number        int      `json:"number"`
	Size          int      `json:"size"`
	TotalElements int64    `json:"totalElements"`
	TotalPages    int      `json:"totalPages"`
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
	res := PagingResultUUID{Content: []string{}, Number: page, Size: size, TotalElements: int64(len(all))}
	res.TotalPages = (len(all) + size - 1) / size
	if lo := page * size; lo < len(all) {
		res.Content = all[lo:min(lo+size, len(all))]
	}
	c.JSON(http.StatusOK, res)
}

func (s *Server) handleGetReceipt(c *gin.Context) {
	sys := principal(c).System
	del := true
	if v := c.Query("delete"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(c, s.log, badRequest("delete", "delete.invalid", "delete is true or false", v))
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
			writeError(c, s.log, badRequest("cprNumber", "registration.query.ambiguous", "give cprNumber or cvrNumber, not both", ""))
			return
		case cpr != "":
			if !hub.ValidCPR(cpr) {
				writeError(c, s.log, badRequest("cprNumber", "cpr.invalid", "a CPR number is 10 digits", cpr))
				return
			}
		case cvr != "" && kind == "digitalpost":
			if !hub.ValidCVR(cvr) {
				writeError(c, s.log, badRequest("cvrNumber", "cvr.invalid", "a CVR number is 8 digits", cvr))
				return
			}
			id = cvr
		default:
			writeError(c, s.log, badRequest("cprNumber", "registration.query.missing", "give cprNumber (or, for digitalpost, cvrNumber)", ""))
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
	if ms == nil {
		ms = []hub.Message{}
	}
	c.JSON(http.StatusOK, ms)
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
