// Package accept is the one way a letter comes into the hub, whatever the
// door: the NgDP route, a mass-send archive, the SF1601 façade, a CLI
// import. It owns the steps between the bytes and a receipt —
//
//	receive (in memory when small, else spooled under the size limit, the
//	XSD running while the body arrives) → validate (schema and business
//	rules) → durable (the spool file's fsync) → the MeMo becomes a
//	hub.Letter → hub.Ingest.Submit (route, store, events, statistics)
//
// — and what happens when one of them refuses: the validation-failed
// event (once, here, for schema, rule and routing refusals alike) and, for
// an entry of an archive, a stored INVALID receipt the sender can list.
// HTTP handlers decode a request, call a method here and encode the answer;
// they do not know these steps.
package accept

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
)

// Receipts is where the receipts of refused archive entries are kept
// (hub.Store has it).
type Receipts interface {
	PutReceipt(ctx context.Context, r hub.Receipt) error
}

// Service accepts letters. Its zero value is not usable; set every field
// but Now and Outcome.
type Service struct {
	Validator *memo.Validator
	Ingest    *hub.Ingest
	Receipts  Receipts
	// Events receives the validation-failed events (may be nil).
	Events hub.EventSink
	// SpoolDir is where bodies over SmallBody bytes are spooled; on the
	// blob store's filesystem the spool file becomes the stored content.
	SpoolDir string
	// MaxSize is the largest MeMo in bytes.
	MaxSize int64
	// Outcome, when set, is told how each letter ended: "accepted",
	// "duplicate", "invalid", "too_large" or another hub.Code (metrics).
	Outcome func(outcome string)
	Log     *slog.Logger
	Now     func() time.Time
}

// SmallBody is the largest body validated in memory instead of spooled.
const SmallBody = 1 << 20

// Request is what a door knows about a letter besides its bytes.
type Request struct {
	System hub.System
	// WantUUID, when not "", is the messageUUID the request says the MeMo
	// carries (NgDP's memo-message-uuid); a MeMo with another is Invalid.
	WantUUID string
	Mode     hub.Mode
	Archive  hub.ArchiveChoice
	// Envelope is what the door says beside the MeMo (SF1601: a
	// transaction id and a print rendition).
	Envelope hub.Envelope
	// Complete, when set, is called once the body has been read to its
	// end and the MeMo validated, just before the letter is submitted. A
	// door whose envelope is in the same body after the MeMo (SF1601's
	// kombi_request) fills in Mode and Envelope there, or refuses the
	// letter: its error is returned as it is.
	Complete func(*Request) error
}

// Body is a letter's bytes as they arrive.
type Body struct {
	R io.Reader
	// Size is the announced length (Content-Length, a tar header), or -1.
	Size int64
}

// Letter accepts one MeMo. created is false for an idempotent
// resubmission, answered with the first receipt. Errors: TooLarge (over
// MaxSize, found while streaming), Invalid (schema, rules, routing, a
// WantUUID mismatch, a body shorter than announced), Forbidden, Conflict
// (the UUID was used with other bytes), Unavailable.
func (s *Service) Letter(ctx context.Context, req Request, body Body) (hub.Receipt, bool, error) {
	r, created, err := s.letter(ctx, req, body)
	s.outcome(r, created, err)
	return r, created, err
}

func (s *Service) letter(ctx context.Context, req Request, body Body) (hub.Receipt, bool, error) {
	if body.Size > s.MaxSize {
		return hub.Receipt{}, false, memo.TooLarge(s.MaxSize)
	}
	var sp memo.Spooled
	var inMemory []byte
	src := body.R
	switch n := body.Size; {
	case n > 0 && n <= SmallBody:
		// Small bodies are validated in memory: no spool file round trip.
		buf := getBuf(int(n))
		defer s.release(buf, n)
		inMemory = *buf
		if _, err := io.ReadFull(src, inMemory); err != nil {
			return hub.Receipt{}, false, memo.ReadError(err)
		}
	case n < 0:
		// A body of unknown length (chunked, or streamed by a door) that
		// ends within SmallBody bytes is one too; a longer one is spooled
		// from its start.
		head, buf, err := readSmall(src)
		if err != nil {
			return hub.Receipt{}, false, err
		}
		if buf != nil {
			defer s.release(buf, int64(len(head)))
			if int64(len(head)) > s.MaxSize {
				return hub.Receipt{}, false, memo.TooLarge(s.MaxSize)
			}
			inMemory = head
		} else {
			src = io.MultiReader(bytes.NewReader(head), src)
		}
	}
	if inMemory != nil {
		sum := sha256.Sum256(inMemory)
		sp.Size, sp.SHA256 = int64(len(inMemory)), hex.EncodeToString(sum[:])
	} else {
		var err error
		sp, err = s.Validator.Spool(src, s.SpoolDir, s.MaxSize)
		if err != nil {
			return hub.Receipt{}, false, err
		}
		defer os.Remove(sp.Path)
	}
	var m *memo.Message
	var err error
	if inMemory != nil {
		m, err = s.Validator.ValidateBytes(inMemory, s.now())
	} else {
		m, err = s.Validator.ValidateSpooledFile(sp, s.now())
	}
	if err != nil {
		s.validationFailed(ctx, req.System, "", err)
		return hub.Receipt{}, false, err
	}
	if req.WantUUID != "" && !strings.EqualFold(req.WantUUID, m.MessageHeader.MessageUUID) {
		return hub.Receipt{}, false, hub.InvalidField("request", "memo-message-uuid", "memo.message.uuid.mismatch",
			"memo-message-uuid must equal MessageHeader/messageUUID", req.WantUUID)
	}
	if req.Complete != nil {
		// Completed in a copy: a Request whose address is taken lives on
		// the heap, and only a door with an envelope after the MeMo needs it.
		done := req
		if err := done.Complete(&done); err != nil {
			return hub.Receipt{}, false, err
		}
		req = done
	}
	// The spool file's fsync has been running beside the validation; the
	// receipt may only promise what is on disk.
	if err := sp.Durable(); err != nil {
		return hub.Receipt{}, false, err
	}
	l := LetterOf(m, sp.Size)
	if h := m.MessageHeader; h.DoNotDeliverUntilDate != "" && l.NotBefore.IsZero() {
		// The rules read every date they let through; a hold never
		// silently becomes a delivery now.
		return hub.Receipt{}, false, hub.InvalidField("memo", "/Message/MessageHeader/doNotDeliverUntilDate", memo.RuleDeliveryDateFormat,
			"doNotDeliverUntilDate is not a date", h.DoNotDeliverUntilDate)
	}
	r, created, err := s.Ingest.Submit(ctx, hub.Submission{System: req.System, Letter: l,
		Path: sp.Path, Body: inMemory, Size: sp.Size, SHA256: sp.SHA256, Mode: req.Mode, Archive: req.Archive,
		Envelope: req.Envelope})
	if hub.Is(err, hub.Invalid) { // routing refused it
		s.validationFailed(ctx, req.System, strings.ToLower(m.MessageHeader.MessageUUID), err)
	}
	return r, created, err
}

func readFailed(err error) error { return memo.ReadError(err) }

// release returns a small body's buffer to its pool once the letter is
// answered, unless its content may have gone to the blob store (see
// buffers.go).
func (s *Service) release(buf *[]byte, size int64) {
	if size <= s.Ingest.InlineMax {
		putBuf(buf)
	}
}

// Entry accepts one MeMo of a mass send and yields a receipt: a refused
// entry gets an INVALID receipt, stored so the sender can list it with the
// others. name is the entry's file name; a name that is a UUID labels the
// receipt of an entry too broken to carry its own. When the hub cannot
// take the entry now (Unavailable: its storage is full, a dependency is
// down, a store write failed) there is no verdict on the MeMo and no
// receipt: Entry returns the error, and the caller stops reading the
// archive, whose rest the sender sends again.
func (s *Service) Entry(ctx context.Context, req Request, name string, body Body) (hub.Receipt, error) {
	rc, _, err := s.Letter(ctx, req, body)
	if err == nil {
		return rc, nil
	}
	if hub.Is(err, hub.Unavailable) {
		// No verdict on the MeMo (hub.Ingest answers a store failure that
		// may have stored the letter Unavailable too: a resent entry is
		// answered with its receipt, where INVALID would say it was not).
		return hub.Receipt{}, err
	}
	base := path.Base(name)
	guess := strings.TrimSuffix(base, path.Ext(base))
	if _, err := uuid.Parse(guess); err != nil {
		guess = ""
	}
	rc = hub.Receipt{TransmissionID: hub.NewID(), SystemID: req.System.ID, MessageUUID: guess, Time: s.now(),
		Status: hub.ReceiptInvalid, ErrorCode: string(hub.ErrorCode(err)), ErrorMessage: err.Error()}
	var he *hub.Error
	if errors.As(err, &he) {
		rc.ErrorMessage = he.Message
		if len(he.Fields) > 0 {
			f := he.Fields[0]
			rc.ErrorCode = f.Code
			rc.ErrorMessage = f.Message
			if f.Field != "" {
				rc.ErrorMessage = f.Field + ": " + f.Message
			}
			if f.Line > 0 {
				rc.ErrorMessage = "line " + strconv.Itoa(f.Line) + ": " + rc.ErrorMessage
			}
		}
	}
	if hub.ErrorCode(err) == hub.Internal {
		rc.ErrorMessage = "internal error"
	}
	if perr := s.Receipts.PutReceipt(ctx, rc); perr != nil {
		// The sender has the receipt in the answer; only the listing lacks it.
		s.log().Error("accept: receipt of a refused archive entry not stored", "error", perr)
	}
	return rc, nil
}

func (s *Service) validationFailed(ctx context.Context, sys hub.System, messageUUID string, err error) {
	if s.Events == nil {
		return
	}
	detail := map[string]string{"errorCode": string(hub.ErrorCode(err))}
	var he *hub.Error
	if errors.As(err, &he) && len(he.Fields) > 0 {
		detail["errorCode"] = he.Fields[0].Code
		detail["errors"] = strconv.Itoa(len(he.Fields))
	}
	_ = s.Events.Emit(ctx, hub.Event{Tag: "MEMO_SEND_VALIDATION_FAILED", Actor: sys.ID, Orgs: []string{sys.OrgCVR},
		SystemID: sys.ID, MessageUUID: messageUUID, Detail: detail})
}

func (s *Service) outcome(r hub.Receipt, created bool, err error) {
	if s.Outcome == nil {
		return
	}
	switch {
	case err != nil:
		s.Outcome(string(hub.ErrorCode(err)))
	case created:
		s.Outcome("accepted")
	default:
		s.Outcome("duplicate")
	}
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}
