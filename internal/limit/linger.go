package limit

import (
	"bufio"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
)

// arriving is a request body as the server hands it over, counting what
// has arrived of it. Its counts are atomic: a handler may read the body in
// another goroutine (a pipe into the spool) while it answers.
type arriving struct {
	io.ReadCloser
	size int64 // declared; -1 when unknown (chunked)
	got  atomic.Int64
	read atomic.Bool // the handler has asked for some of it
	eof  atomic.Bool
}

func (a *arriving) Read(p []byte) (int, error) {
	a.read.Store(true)
	n, err := a.ReadCloser.Read(p)
	a.got.Add(int64(n))
	if err == io.EOF {
		a.eof.Store(true)
	}
	return n, err
}

// done reports whether the whole body has arrived.
func (a *arriving) done() bool {
	return a.eof.Load() || (a.size >= 0 && a.got.Load() >= a.size)
}

// maxHeld bounds an answer held back: refusals are a few hundred bytes of
// JSON or SOAP. A longer one goes out as it is written, without waiting.
const maxHeld = 64 << 10

// early holds back an answer a handler starts before the request's body
// has arrived, until the handler returns. Sent then, whole, it carries its
// Content-Length, so the client can read all of it while the hub discards
// the rest of the body; flushed while the handler was still running, it
// would go out chunked, and its end only after the discard.
//
// An answer started after the body arrived, and one longer than maxHeld,
// is written through as the handler writes it. A handler that flushes or
// hijacks gets the held answer out first.
type early struct {
	http.ResponseWriter
	body *arriving
	head bool // a HEAD request: its answer has no body to count

	status int         // held; 0 when none
	header http.Header // the header as WriteHeader saw it
	held   []byte
	passed bool // writes go straight through
}

func (e *early) WriteHeader(code int) {
	switch {
	case e.passed:
		e.ResponseWriter.WriteHeader(code)
	case e.status != 0:
		// A second WriteHeader is ignored, as the server ignores it.
	case code < 200 || e.body.done():
		// An informational answer (103) is no answer; one given after
		// the body arrived is the ordinary case.
		if code >= 200 {
			e.passed = true
		}
		e.ResponseWriter.WriteHeader(code)
	default:
		e.status, e.header = code, e.ResponseWriter.Header().Clone()
	}
}

func (e *early) Write(p []byte) (int, error) {
	if !e.passed && e.status == 0 {
		e.WriteHeader(http.StatusOK)
	}
	if e.passed {
		return e.ResponseWriter.Write(p)
	}
	if len(e.held)+len(p) > maxHeld {
		e.send(false)
		return e.ResponseWriter.Write(p)
	}
	e.held = append(e.held, p...)
	return len(p), nil
}

func (e *early) WriteString(s string) (int, error) { return e.Write([]byte(s)) }

// ReadFrom keeps the server's ReadFrom (sendfile) for answers written
// through.
func (e *early) ReadFrom(r io.Reader) (int64, error) {
	if !e.passed && e.status == 0 {
		e.WriteHeader(http.StatusOK)
	}
	if !e.passed {
		e.send(false)
	}
	if rf, ok := e.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(e.ResponseWriter, r)
}

// send writes the held answer out and lets later writes through; whole
// means the handler has returned, so held is the answer's whole body.
func (e *early) send(whole bool) {
	if e.passed {
		return
	}
	e.passed = true
	if e.status == 0 {
		return
	}
	h := e.ResponseWriter.Header()
	clear(h)
	maps.Copy(h, e.header)
	if whole && !e.head && bodyAllowed(e.status) && h.Get("Content-Length") == "" && h.Get("Transfer-Encoding") == "" {
		h.Set("Content-Length", strconv.Itoa(len(e.held)))
	}
	e.ResponseWriter.WriteHeader(e.status)
	if len(e.held) > 0 {
		_, _ = e.ResponseWriter.Write(e.held)
	}
	e.held = nil
}

// release sends what the handler left held, once it has returned; with
// closing, a held answer says that the connection closes after it. A
// handler that wrote nothing answers 200 with no body, as the server would
// answer for it.
func (e *early) release(closing bool) {
	if !e.passed && e.status == 0 {
		e.status, e.header = http.StatusOK, e.ResponseWriter.Header().Clone()
	}
	if closing && !e.passed {
		e.header.Set("Connection", "close")
	}
	e.send(true)
}

func (e *early) FlushError() error {
	e.send(false)
	return http.NewResponseController(e.ResponseWriter).Flush()
}

func (e *early) Flush() { _ = e.FlushError() }

func (e *early) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	e.send(false)
	return http.NewResponseController(e.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the server's writer for
// deadlines (Flush and Hijack stop here first).
func (e *early) Unwrap() http.ResponseWriter { return e.ResponseWriter }

// bodyAllowed reports whether an answer with status may carry a body
// (RFC 9110: not 1xx, 204 or 304).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
