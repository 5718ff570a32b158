package limit

import (
	"io"
	"net/http"
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
}

// Handler puts the deadlines on the bodies of the requests next serves.
// A zero Timeout (small bodies) or MinRate (uploads) leaves those without
// a deadline. A body that falls behind fails to read, and the server,
// whose own try to read the rest fails too, closes the connection after
// the answer. Once a body has arrived the server lifts the deadline
// itself as it starts watching the connection for a close.
func (b Bodies) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if b.IsUpload == nil || !b.IsUpload(r) {
			if b.Timeout > 0 {
				_ = rc.SetReadDeadline(time.Now().Add(b.Timeout))
			}
			next.ServeHTTP(w, r)
			return
		}
		if quota := int64(float64(b.MinRate) * b.Window.Seconds()); quota > 0 && rc.SetReadDeadline(time.Now().Add(b.Grace)) == nil {
			r.Body = &upload{ReadCloser: r.Body, rc: rc, window: b.Window, quota: quota}
		}
		next.ServeHTTP(w, r)
	})
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
