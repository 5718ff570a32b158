package hub

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Code is the kind of a failure, carried unchanged from the place it happened
// (a backend, the MeMo validator, a service) to the HTTP edge, which maps it
// to a status (the table is in package api/status).
type Code string

// The small, closed set of error kinds.
const (
	Invalid      Code = "invalid"      // the input breaks a rule; Fields say which
	NotFound     Code = "not_found"    // the thing does not exist (or is not visible to the caller)
	Conflict     Code = "conflict"     // it exists already, or a concurrent change won
	Forbidden    Code = "forbidden"    // authenticated, but not allowed
	Unauthorized Code = "unauthorized" // no or bad credentials
	TooLarge     Code = "too_large"    // a size limit was crossed
	RateLimited  Code = "rate_limited" // the caller is going too fast; retry after Error.RetryAfter
	Unavailable  Code = "unavailable"  // a dependency is down, the hub is busy or the disk is full; retry later
	Internal     Code = "internal"     // a bug or an unexpected failure; details are logged, not shown
)

// FieldError is one precise complaint about one part of the input, in the
// shape of the national hub's fieldErrors entries.
type FieldError struct {
	// Resource is the thing being checked, e.g. "memo" or "system".
	Resource string `json:"resource,omitempty"`
	// Field is the path of the offending element or field, e.g.
	// "/Message/MessageHeader/messageUUID".
	Field string `json:"field,omitempty"`
	// Code is the stable rule code, e.g. "do.not.deliver.until.date.too.early".
	Code string `json:"code"`
	// Message explains the rule in English for a human integrator.
	Message string `json:"message"`
	// RejectedValue is the offending value, when it is short and safe to echo.
	RejectedValue string `json:"rejectedValue,omitempty"`
	// Line is the 1-based line in the submitted document, when known.
	Line int `json:"line,omitempty"`
}

// Error is the one error type the hub passes across package boundaries.
type Error struct {
	Code    Code
	Message string
	Fields  []FieldError
	Err     error
	// RetryAfter, when set (RateLimited, Unavailable), is how long the
	// caller should wait before trying again; the HTTP edge sends it as
	// Retry-After.
	RetryAfter time.Duration
	// NothingStored is set by a store on a write's error after which it
	// certainly stored nothing of the write (it gave up before it began, or
	// undid it). Without it a failed write may still have landed.
	NothingStored bool
}

// NotStored marks e as an error after which nothing of the write was
// stored (Error.NothingStored) and returns it.
func NotStored(e *Error) *Error {
	e.NothingStored = true
	return e
}

// StoredNothing reports whether err says a write stored nothing for
// certain: Conflict and Invalid refuse before writing, and a store marks
// other such errors NothingStored.
func StoredNothing(err error) bool {
	if c := ErrorCode(err); c == Conflict || c == Invalid {
		return true
	}
	var e *Error
	return errors.As(err, &e) && e.NothingStored
}

func (e *Error) Error() string {
	s := string(e.Code) + ": " + e.Message
	if len(e.Fields) > 0 {
		s += fmt.Sprintf(" (%d field errors; first: %s: %s)", len(e.Fields), e.Fields[0].Code, e.Fields[0].Message)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error of the given code with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// InvalidField is the Invalid error about one field of the input, the
// refusal every package builds for a bad value: the error's message and
// its one FieldError's are the same. resource is what was checked
// ("request" for an HTTP request's parameters and body), value what was
// rejected ("" for none).
func InvalidField(resource, field, code, msg, value string) *Error {
	return &Error{Code: Invalid, Message: msg, Fields: []FieldError{{Resource: resource, Field: field, Code: code, Message: msg, RejectedValue: value}}}
}

// Wrap builds an *Error of the given code around a cause. An Internal
// error whose cause is a full disk or an exhausted quota (ENOSPC, EDQUOT)
// is Unavailable instead, and says so: nothing is wrong with the request
// or the code, the same request succeeds once space returns, and the
// client should retry rather than report a bug. Every write path (spool,
// blob store, metadata store) wraps its I/O errors here, so none of them
// needs to tell a full disk apart itself.
func Wrap(code Code, err error, format string, args ...any) *Error {
	e := &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
	if code == Internal && DiskFull(err) {
		e.Code, e.Message = Unavailable, e.Message+" (storage full)"
	}
	return e
}

// DiskFull reports whether err is, or wraps, ENOSPC or EDQUOT.
func DiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// ErrorCode reports the code of err: the Code of the first *Error in its
// chain, Internal for any other non-nil error, "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var he *Error
	if errors.As(err, &he) {
		return he.Code
	}
	return Internal
}

// RetryAfterSeconds is how long err asks the caller to wait, in whole
// seconds rounded up as a Retry-After header counts them (0: no advice).
func RetryAfterSeconds(err error) int {
	var he *Error
	if errors.As(err, &he) && he.RetryAfter > 0 {
		return int((he.RetryAfter + time.Second - 1) / time.Second)
	}
	return 0
}

// Is reports whether err carries the given code.
func Is(err error, code Code) bool { return ErrorCode(err) == code }
