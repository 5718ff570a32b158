package api

// SF1601 compatibility: KOMBIT's KombiPostAfsend and PostForespoerg, so a
// municipality's SF1601 integration sends through posthub by changing its
// base URL (and its credential). These handlers are a façade: the envelope
// is package sf1601's, the letter goes through the accept service as every
// letter does (accept.Service.Letter: spool, validate, durable, Letter,
// Ingest.Submit), and the look-up answers with the NgDP look-up's own
// handler.
//
// Decisions, documented in openapi.json and the README:
//   - A letter that cannot be delivered in the chosen mode (Digital Post
//     to an exempt citizen, NemSMS to someone not registered for it) is
//     answered 400 (code invalid, its field error the receipt's reason,
//     e.g. recipient.exempt) with its NOT_ALLOWED receipt in "receipt": a
//     client that reads only the status must not believe it is on its way.
//     The status is the closed set's, as every error of the API. Unlike
//     other 400s the letter is recorded — as the NgDP route records it
//     (NOT_ALLOWED receipt, MEMO_SEND_NOT_DELIVERED), where it answers 201
//     — so a retry gets the same answer.
//   - The receipt is JSON, or XML when the client asks for XML first in
//     Accept (the PHP client does). Errors are always the hub's JSON
//     ErrorMessage, as on every route (the authentication in front of the
//     handler answers JSON too).
//   - X-TransaktionsId must be a UUID; it is echoed and recorded on the
//     receipt and the MEMO_SEND_RECEIVED event. Without one the hub makes
//     one up, so every kombi send has one. X-TransaktionsTid is accepted
//     and not used.

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"sync"

	"github.com/gin-gonic/gin"
	"github.com/gin-gonic/gin/binding"
	"github.com/google/uuid"

	"github.com/posthub/posthub/accept"
	"github.com/posthub/posthub/api/status"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/sf1601"
)

// TransactionHeader is SF1601's per-call id header.
const TransactionHeader = "X-TransaktionsId"

// NotDelivered is the answer to a kombi send that was received but cannot
// be delivered in the chosen mode: the hub's error body with the letter's
// NOT_ALLOWED receipt.
type NotDelivered struct {
	ErrorMessage
	Receipt hub.Receipt `json:"receipt"`
}

func (s *Server) sf1601Routes() []Route {
	p := s.cfg.SF1601Prefix + "/service"
	send := func(path, who string) Route {
		return Route{Method: "POST", Path: p + "/KombiPostAfsend_1/" + path, Access: Sender, Tag: "sf1601",
			Summary: "SF1601 KombiPostAfsend (" + who + "): a kombi_request — KombiValgKode, one memo:Message, optionally a fjernprint " +
				"ForsendelseISamling — sent through the same accept path as POST /apis/v1/memos/. The MeMo's messageUUID is the key: the same " +
				"bytes again answer with the first receipt, others 409. 201 with the receipt (JSON, or XML for Accept: application/xml); " +
				"400 (code invalid, the reason as field error) with the NOT_ALLOWED receipt in \"receipt\" when the letter cannot be delivered in the chosen mode. Headers: X-TransaktionsId (uuid, echoed, " +
				"recorded on the receipt and the event), X-TransaktionsTid.",
			Consumes: []string{"application/xml", "text/xml"}, Produces: "application/json", ProducesAlso: []string{"application/xml"},
			Status: 201, Schema: "Receipt", Errors: []int{http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable},
			Upload: true, Handler: s.handleKombi}
	}
	ask := func(kind, what string) Route {
		return Route{Method: "GET", Path: p + "/PostForespoerg_1/" + kind, Access: Sender, Tag: "sf1601",
			Summary: "SF1601 PostForespoerg: " + what + " The answer of GET /apis/v1/registrations/" + kind +
				", except that an id that is not a valid CPR/CVR (and, for NemSMS, any cvrNumber) answers {\"result\": false}, as SF1601 does.",
			Params:   map[string]string{"cprNumber": "a CPR number", "cvrNumber": "a CVR number (clients send any id that is not 10 characters here)"},
			Produces: "application/json", Status: 200, Schema: "RegistrationResult", Handler: s.handlePostForespoerg(kind)}
	}
	return []Route{
		send("memos", "the path python-serviceplatformen posts to"),
		send("kombi", "the path KOMBIT documents and the PHP client posts to"),
		ask("digitalpost", "can this CPR/CVR receive Digital Post?"),
		ask("nemsms", "is this CPR registered for NemSMS?"),
	}
}

// kombiLimits are the Decoder's bounds from the server's.
func (s *Server) kombiLimits() sf1601.Limits {
	return sf1601.Limits{MaxMemo: s.cfg.MaxMemoSize, MaxPrint: s.cfg.MaxPrintSize,
		MaxEnvelope: s.cfg.MaxKombiEnvelope, MaxDepth: s.cfg.MaxKombiDepth, PrintSlots: s.printSlots}
}

// transactionID reads X-TransaktionsId: a UUID, or a new one when absent.
func transactionID(c *gin.Context) (string, error) {
	tx := c.GetHeader(TransactionHeader)
	if tx == "" {
		return uuid.NewString(), nil
	}
	if len(tx) > 64 {
		return "", hub.InvalidField("request", TransactionHeader, "request.transaction.id.invalid", "X-TransaktionsId must be a UUID", tx[:64])
	}
	if _, err := uuid.Parse(tx); err != nil {
		return "", hub.InvalidField("request", TransactionHeader, "request.transaction.id.invalid", "X-TransaktionsId must be a UUID", tx)
	}
	return tx, nil
}

// errSpoolStopped tells the Decoder that the spool stopped reading.
var errSpoolStopped = errors.New("the spool stopped reading")

func (s *Server) handleKombi(c *gin.Context) {
	ctx := c.Request.Context()
	tx, err := transactionID(c)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.Header(TransactionHeader, tx)
	if ct, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type")); ct != "application/xml" && ct != "text/xml" {
		writeError(c, s.log, hub.InvalidField("request", "Content-Type", "content.type.unsupported", "send a kombi_request as application/xml", ct))
		return
	}
	lim := s.kombiLimits()
	if c.Request.ContentLength > lim.MaxBody() {
		s.refuseKombi(c, &hub.Error{Code: hub.TooLarge, Message: "the kombi_request is larger than the hub accepts",
			Fields: []hub.FieldError{{Resource: "kombi", Code: sf1601.CodeTooLarge,
				Message: "a kombi_request may be at most the MeMo size limit, plus the fjernprint part's, plus the envelope's"}}})
		return
	}
	ar := accept.Request{System: principal(c).System, Archive: hub.ForwardOnly, Envelope: hub.Envelope{TransactionID: tx}}
	d := sf1601.NewDecoder(c.Request.Body, lim)
	defer d.Release()
	var kr sf1601.Request
	var r hub.Receipt
	var created bool
	if n := c.Request.ContentLength; n > 0 && n <= accept.SmallBody {
		// A small request is decoded whole first, and its Message accepted
		// from memory, as a small MeMo is on the NgDP route.
		msg := kombiMessage(int(n))
		defer kombiMessages.Put(msg)
		err := d.Message(msg)
		if err == nil {
			kr, err = d.Finish()
		}
		if err == nil {
			err = s.checkPrint(kr, &ar.Envelope)
		}
		if err != nil {
			s.refuseKombi(c, err)
			return
		}
		ar.Mode = kr.Mode
		r, created, err = s.accepter.Letter(ctx, ar, accept.Body{R: msg, Size: int64(msg.Len())})
		if err != nil {
			writeError(c, s.log, kr.InRequest(err))
			return
		}
	} else {
		// The Message streams into the accept service's spool, checked while
		// it arrives as a large MeMo is; the rest of the request is decoded
		// before the spool sees its end, so the mode and the fjernprint part
		// are known (Complete) before the letter is submitted.
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := d.Message(pw)
			if err == nil {
				kr, err = d.Finish()
			}
			pw.CloseWithError(err)
			done <- err
		}()
		decoded := sync.OnceValue(func() error { return <-done })
		ar.Complete = func(ar *accept.Request) error {
			if err := decoded(); err != nil {
				return err
			}
			if err := s.checkPrint(kr, &ar.Envelope); err != nil {
				return err
			}
			ar.Mode = kr.Mode
			return nil
		}
		// The accept service counts the letter once; a refusal that is the
		// request's own fault it saw only as a failed read (invalid), so the
		// count waits for the answer's code.
		var outcome string
		accepter := *s.accepter
		accepter.Outcome = func(o string) { outcome = o }
		r, created, err = accepter.Letter(ctx, ar, accept.Body{R: pr, Size: -1})
		pr.CloseWithError(errSpoolStopped)
		if derr := decoded(); derr != nil && !errors.Is(derr, errSpoolStopped) {
			// The request's own fault, which the spool saw only as a
			// failed read.
			err, outcome = derr, string(hub.ErrorCode(derr))
		}
		s.accepter.Outcome(outcome)
		if err != nil {
			c.Header("Connection", "close")
			writeError(c, s.log, kr.InRequest(err))
			return
		}
	}
	if !created {
		c.Header("X-Posthub-Duplicate", "true")
	}
	if r.Status == hub.ReceiptNotAllowed {
		msg := "the letter cannot be delivered in the chosen mode (KombiValgKode " + kr.Choice + "); it is recorded as not delivered"
		c.JSON(status.Of(hub.Invalid), NotDelivered{Receipt: r, ErrorMessage: ErrorMessage{Code: string(hub.Invalid), Message: msg,
			RequestID: requestID(c), FieldErrors: []hub.FieldError{{Resource: "kombi", Field: "/kombi_request/KombiValgKode",
				Code: r.ErrorCode, Message: r.ErrorMessage, RejectedValue: kr.Choice}}}})
		return
	}
	switch c.NegotiateFormat(binding.MIMEJSON, binding.MIMEXML, binding.MIMEXML2) {
	case binding.MIMEXML, binding.MIMEXML2:
		c.XML(http.StatusCreated, r)
	default:
		writeReceipt(c, http.StatusCreated, r)
	}
}

// kombiMessages holds the buffers the Message of a small kombi_request is
// decoded into. The accept service reads a small body into a buffer of its
// own, so a buffer is free again once Letter has returned.
var kombiMessages = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// kombiMessage returns an empty buffer from kombiMessages with room for n
// bytes.
func kombiMessage(n int) *bytes.Buffer {
	b := kombiMessages.Get().(*bytes.Buffer)
	b.Reset()
	b.Grow(n)
	return b
}

// checkPrint validates the request's fjernprint part, when it has one,
// and puts it on env with the recipient and address it names.
func (s *Server) checkPrint(kr sf1601.Request, env *hub.Envelope) error {
	if kr.Print == nil {
		return nil
	}
	ps, err := s.printSchema()
	if err != nil {
		return hub.Wrap(hub.Internal, err, "the fjernprint schema did not compile")
	}
	if err := ps.Check(kr); err != nil {
		return err
	}
	to, err := sf1601.Recipient(kr.Print)
	if err != nil {
		return err
	}
	env.Print, env.PrintRecipient, env.PrintAddress = kr.Print, to.ID, to.Address
	return nil
}

// refuseKombi answers a kombi_request refused before its MeMo reached the
// accept service; the rest of the body is not read. The letter is counted
// through the accept service's Outcome, as the service counts every
// letter it refuses: once, under its error's code.
func (s *Server) refuseKombi(c *gin.Context, err error) {
	s.accepter.Outcome(string(hub.ErrorCode(err)))
	c.Header("Connection", "close")
	writeError(c, s.log, err)
}

// handlePostForespoerg answers as the NgDP look-up does — it is that
// handler — except that a question SF1601 answers "no" without looking
// (an id that is not a valid CPR or CVR, NemSMS for a CVR) gets
// {"result": false} instead of 400.
func (s *Server) handlePostForespoerg(kind string) gin.HandlerFunc {
	ngdp := s.handleRegistration(kind)
	return func(c *gin.Context) {
		tx, err := transactionID(c)
		if err != nil {
			writeError(c, s.log, err)
			return
		}
		c.Header(TransactionHeader, tx)
		cpr, cvr := c.Query("cprNumber"), c.Query("cvrNumber")
		if cpr == "" || cvr == "" {
			if cpr != "" && !hub.ValidCPR(cpr) || cvr != "" && (kind == "nemsms" || !hub.ValidCVR(cvr)) {
				c.JSON(http.StatusOK, gin.H{"result": false})
				return
			}
		}
		ngdp(c)
	}
}
