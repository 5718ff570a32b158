package limit

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Bodies are the deadlines of request bodies. A small body (JSON, a form,
// a login) must have arrived within Timeout. An upload (a MeMo, an
// archive, a contact import: up to ~100 MB, perhaps over a slow line)
// gets Grace for its first Window of bytes, and then each further Window
// must bring MinRate × Window more: a deadline that moves on as bytes
// arrive, so a slow but steady upload of any size finishes, while one
// that stalls, or trickles below the floor, is cut off within a window.
// The header has its own deadline, the server's ReadHeaderTimeout.
type Bodies struct {
	Timeout time.Duration
	MinRate int64 // bytes per second, averaged over Window
	Window  time.Duration
	Grace   time.Duration
	// IsUpload tells uploads from small bodies.
	IsUpload func(*http.Request) bool
	// Linger and LingerBytes bound the lingering discard of a body the
	// handler answered before it arrived (see Handler): for at most
	// Linger, and at most LingerBytes. Either zero: no lingering.
	Linger      time.Duration
	LingerBytes int64
}

// Handler puts the deadlines on the bodies of the requests next serves.
// A zero Timeout (small bodies) or MinRate (uploads) leaves those without
// a deadline. A body that falls behind fails to read, and the server,
// whose own try to read the rest fails too, closes the connection after
// the answer. Once a body has arrived the server lifts the deadline
// itself as it starts watching the connection for a close.
//
// A request answered before its body has arrived (refused at its declared
// length, for its credentials, or part-way through) lingers, as nginx's
// lingering_close does: the answer is held back until the handler returns,
// sent whole (with its Content-Length) and flushed, and then the rest of
// the body is read and thrown away, for at most Linger and LingerBytes,
// before the server closes the connection (a rest under 256 KiB of a
// declared length the server reads itself, within Linger, and keeps the
// connection). A client that
// sends without Expect: 100-continue is still writing when it is refused;
// closed at once, the connection is reset, and the reset throws away the
// refusal in the client's buffers before the client has read it. Lingering
// gives the client the time to read it, within bounds that a slow or an
// endless sender cannot stretch: a deadline fixed when lingering starts,
// a byte count, and no goroutine or buffer beyond the request's own. Not
// lingered over: a body the client holds back until told to continue
// (Expect: 100-continue, never read), and HTTP/2, whose refusal resets a
// stream, not the connection.
func (b Bodies) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		// What a request with a body may need, in one allocation.
		st := &struct {
			in   arriving
			held early
			up   upload
		}{}
		in := &st.in
		in.ReadCloser, in.size = r.Body, r.ContentLength
		r.Body = in
		// The server recognises a body a handler left unread only as its
		// own (then, for some clients, it half-closes and waits a moment
		// before the close, and it knows how much is left): it gets it back.
		defer func() { r.Body = in.ReadCloser }()
		var held *early
		if b.Linger > 0 && b.LingerBytes > 0 && r.ProtoMajor == 1 {
			held = &st.held
			held.ResponseWriter, held.body, held.head = w, in, r.Method == http.MethodHead
			w = held
		}
		switch {
		case b.IsUpload == nil || !b.IsUpload(r):
			if b.Timeout > 0 {
				_ = rc.SetReadDeadline(time.Now().Add(b.Timeout))
			}
		default:
			if quota := int64(float64(b.MinRate) * b.Window.Seconds()); quota > 0 && rc.SetReadDeadline(time.Now().Add(b.Grace)) == nil {
				st.up = upload{ReadCloser: in, rc: rc, window: b.Window, quota: quota}
				r.Body = &st.up
			}
		}
		next.ServeHTTP(w, r)
		if held != nil {
			b.linger(held, rc, r, in)
		}
	})
}

// linger sends the answer held and, when the body has not arrived and the
// client is sending it, discards the rest within the bounds.
func (b Bodies) linger(held *early, rc *http.ResponseController, r *http.Request, in *arriving) {
	sending := !in.done() && (in.read.Load() || !expectsContinue(r))
	// Sending a header, the server first reads up to 256 KiB of a body
	// left unread itself, to keep the connection, unless it knows that
	// more than that is left (a declared length) or the answer closes the
	// connection. A body of unknown length is answered with a close, so
	// that its answer goes out at once; for a declared length the server
	// decides well (within the deadline below).
	held.release(sending && in.size < 0)
	if !sending {
		return
	}
	r.Body = in.ReadCloser // see Handler
	if rc.SetReadDeadline(time.Now().Add(b.Linger)) != nil || rc.Flush() != nil {
		return
	}
	_, _ = io.CopyN(io.Discard, in, b.LingerBytes)
}

func expectsContinue(r *http.Request) bool {
	return strings.EqualFold(strings.TrimSpace(r.Header.Get("Expect")), "100-continue")
}

// upload is an upload's body, whose deadline moves on by a window each
// time a window's worth has arrived.
type upload struct {
	io.ReadCloser
	rc     *http.ResponseController
	window time.Duration
	quota  int64 // bytes each window must bring
	got    int64 // bytes since the deadline last moved
}

func (u *upload) Read(p []byte) (int, error) {
	n, err := u.ReadCloser.Read(p)
	if u.got += int64(n); err == nil && u.got >= u.quota {
		u.got = 0
		_ = u.rc.SetReadDeadline(time.Now().Add(u.window))
	}
	return n, err
}

// Form bounds a posted form a handler will parse whole (into memory):
// a body declared larger than max is answered 413 at once (false: the
// request is done), and the body is cut at max for the parser, whose
// error the handler answers. Other methods pass untouched.
func Form(w http.ResponseWriter, r *http.Request, max int64) bool {
	if r.Method != http.MethodPost {
		return true
	}
	if r.ContentLength > max {
		http.Error(w, fmt.Sprintf("The form is too large (at most %d KiB).", max>>10), http.StatusRequestEntityTooLarge)
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, max)
	return true
}
