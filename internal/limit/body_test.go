package limit

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// refusal is the hub's kind of refusal: a small JSON body, written by a
// handler that has not read (all of) the request body.
const refusal = `{"code":"too_large","message":"the body is larger than the hub accepts"}`

func refuse(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, refusal)
}

// countingListener counts the bytes the server reads from its connections.
type countingListener struct {
	net.Listener
	read atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &l.read}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// serve serves h within b on a real TCP listener on loopback.
func serve(t *testing.T, b Bodies, h http.HandlerFunc) (addr string, l *countingListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l = &countingListener{Listener: ln}
	srv := &http.Server{Handler: b.Handler(h), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), l
}

// zeros is an endless body.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// hubBodies are the bounds the hub serves with by default.
func hubBodies(upload bool) Bodies {
	return Bodies{Timeout: 30 * time.Second, MinRate: 8 << 10, Window: 30 * time.Second, Grace: time.Minute,
		IsUpload: func(*http.Request) bool { return upload }, Linger: 2 * time.Second, LingerBytes: 8 << 20}
}

// TestARefusedSenderReadsItsRefusal: a client that sends a large body
// without Expect: 100-continue is still writing when the hub refuses it;
// it must read the refusal, whole, every time (run with -count 50). Before
// lingering, the reset of the close discarded the refusal unread in about
// half the runs of the upload case.
func TestARefusedSenderReadsItsRefusal(t *testing.T) {
	const size = 64 << 20
	for _, c := range []struct {
		name     string
		upload   bool
		declared bool // Content-Length sent; else chunked
		handler  http.HandlerFunc
		status   int
	}{
		{"an upload refused at its declared length", true, true, func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > 1<<20 {
				w.Header().Set("Connection", "close") // as api's send does
				refuse(w, http.StatusRequestEntityTooLarge)
			}
		}, 413},
		{"a small body refused at its declared length", false, true, func(w http.ResponseWriter, r *http.Request) {
			refuse(w, http.StatusRequestEntityTooLarge)
		}, 413},
		{"a streamed body refused for its credentials before a byte is read", true, false, func(w http.ResponseWriter, r *http.Request) {
			refuse(w, http.StatusUnauthorized)
		}, 401},
		{"a streamed upload refused part-way", true, false, func(w http.ResponseWriter, r *http.Request) {
			if n, _ := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 1<<20)); n >= 1<<20 {
				refuse(w, http.StatusRequestEntityTooLarge)
			}
		}, 413},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, _ := serve(t, hubBodies(c.upload), c.handler)
			var body io.Reader = io.LimitReader(zeros{}, size)
			if !c.declared {
				body = io.MultiReader(body) // no length: sent chunked
			}
			req, err := http.NewRequest("POST", "http://"+addr+"/apis/v1/memos/", body)
			if err != nil {
				t.Fatal(err)
			}
			if c.declared {
				req.ContentLength = size
			}
			tr := &http.Transport{DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatalf("the refusal was lost: %v", err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != c.status || string(b) != refusal {
				t.Fatalf("%d %q %v, want %d and the whole refusal", resp.StatusCode, b, err, c.status)
			}
			if resp.ContentLength != int64(len(refusal)) {
				t.Errorf("Content-Length %d, want %d: the refusal is sent whole before the discard", resp.ContentLength, len(refusal))
			}
		})
	}
}

// rawRequest opens a connection and sends a request head.
func rawRequest(t *testing.T, addr, head string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The guard of a test that would otherwise hang: not a measured time.
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	return c
}

// readRefusal reads the status line, the header and the body of the
// answer on c, and then waits for the server to end the connection.
func readRefusal(t *testing.T, c net.Conn, req *http.Request) (status int, ended error) {
	t.Helper()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != refusal {
		t.Fatalf("answer body %q, %v", b, err)
	}
	_, err = io.Copy(io.Discard, br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server still held the connection at the test's guard: lingering did not stop at its bound")
	}
	return resp.StatusCode, err
}

const gib = 1 << 30

// TestLingerStopsAtItsByteBound: against a sender that never stops, the
// discard ends after LingerBytes (the time bound is far away), and it did
// discard them.
func TestLingerStopsAtItsByteBound(t *testing.T) {
	const bound = 1 << 20
	b := Bodies{Linger: time.Hour, LingerBytes: bound}
	addr, l := serve(t, b, func(w http.ResponseWriter, r *http.Request) { refuse(w, 413) })
	head := fmt.Sprintf("POST / HTTP/1.1\r\nHost: hub\r\nContent-Length: %d\r\n\r\n", gib)
	c := rawRequest(t, addr, head)
	go func() { _, _ = io.Copy(c, zeros{}) }() // until the server ends the connection
	if status, _ := readRefusal(t, c, nil); status != 413 {
		t.Fatalf("status %d", status)
	}
	got := l.read.Load() - int64(len(head))
	if got < bound || got > bound+64<<10 {
		t.Fatalf("the server read %d bytes of the body, want %d and a buffer's worth at most", got, bound)
	}
}

// TestLingerStopsAtItsTimeBound: against a sender that trickles for ever
// (each byte would move an upload's deadline on), the discard ends at the
// deadline fixed when it began; the body has no other deadline here.
func TestLingerStopsAtItsTimeBound(t *testing.T) {
	base := runtime.NumGoroutine()
	b := Bodies{Linger: 300 * time.Millisecond, LingerBytes: gib}
	addr, l := serve(t, b, func(w http.ResponseWriter, r *http.Request) { refuse(w, 413) })
	head := fmt.Sprintf("POST / HTTP/1.1\r\nHost: hub\r\nContent-Length: %d\r\n\r\n", gib)
	c := rawRequest(t, addr, head)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 413 {
		t.Fatalf("the answer: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	trickle := make(chan struct{})
	go func() {
		defer close(trickle)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if _, err := c.Write([]byte{0}); err != nil {
				return
			}
		}
	}()
	_, err = io.Copy(io.Discard, br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the server still held the connection at the test's guard: lingering did not stop at its deadline")
	}
	<-trickle
	if got := l.read.Load() - int64(len(head)); got <= 0 {
		t.Fatalf("the server read %d bytes after its answer: it did not linger", got)
	}
	// Nothing of the request outlives it: no goroutine stays behind.
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base+1 { // +1: the server's accept loop
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before", runtime.NumGoroutine(), base)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestABodyHeldBackForContinueIsNotWaitedFor: a client that asked
// Expect: 100-continue and was refused before being told to continue
// sends nothing more; the hub closes at once instead of lingering.
func TestABodyHeldBackForContinueIsNotWaitedFor(t *testing.T) {
	b := Bodies{Linger: time.Hour, LingerBytes: gib}
	addr, l := serve(t, b, func(w http.ResponseWriter, r *http.Request) { refuse(w, 413) })
	head := fmt.Sprintf("POST / HTTP/1.1\r\nHost: hub\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", gib)
	c := rawRequest(t, addr, head)
	if status, _ := readRefusal(t, c, nil); status != 413 {
		t.Fatalf("status %d", status)
	}
	if got := l.read.Load(); got != int64(len(head)) {
		t.Fatalf("the server read %d bytes, want the head's %d", got, len(head))
	}
}

// recorder is a ResponseWriter that records when the header went out.
type recorder struct {
	*httptest.ResponseRecorder
	headerOut int // the status written through, 0 while none
}

func (r *recorder) WriteHeader(code int) {
	r.headerOut = code
	r.ResponseRecorder.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.headerOut == 0 {
		r.headerOut = http.StatusOK
	}
	return r.ResponseRecorder.Write(p)
}

// TestAnAnswerIsHeldOnlyWhileTheBodyHasNotArrived: an answer started
// after the body arrived goes straight through; one started before is held
// until the handler returns, then sent whole with its Content-Length (where
// an answer has a body) and the header as it was when the status was set.
func TestAnAnswerIsHeldOnlyWhileTheBodyHasNotArrived(t *testing.T) {
	b := Bodies{Linger: time.Second, LingerBytes: 1 << 20}
	for _, c := range []struct {
		name       string
		method     string
		readFirst  bool
		status     int
		body       string
		wantHeld   bool
		wantLength string
	}{
		{"an answer after the body is written through", "POST", true, 201, `{"id":1}`, false, ""},
		{"a refusal before the body is held and counted", "POST", false, 413, refusal, true, fmt.Sprint(len(refusal))},
		{"a 204 before the body carries no length", "POST", false, 204, "", true, ""},
		{"a HEAD answer carries no length of its own", "HEAD", false, 413, "", true, ""},
		{"a long answer before the body goes out as it is written", "POST", false, 413, strings.Repeat("x", maxHeld+1), false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{ResponseRecorder: httptest.NewRecorder()}
			req := httptest.NewRequest(c.method, "/", strings.NewReader("the body"))
			var heldInside bool
			b.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.readFirst {
					_, _ = io.ReadAll(r.Body)
				}
				w.Header().Set("X-Kept", "yes")
				w.WriteHeader(c.status)
				w.Header().Set("X-Late", "ignored, as the server ignores it")
				_, _ = io.WriteString(w, c.body)
				heldInside = rec.headerOut == 0
			})).ServeHTTP(rec, req)
			if heldInside != c.wantHeld {
				t.Fatalf("held while the handler ran: %v, want %v", heldInside, c.wantHeld)
			}
			if rec.Code != c.status || rec.Body.String() != c.body {
				t.Fatalf("answer %d %q, want %d %q", rec.Code, rec.Body, c.status, c.body)
			}
			h := rec.Result().Header
			if h.Get("X-Kept") != "yes" || (c.wantHeld && h.Get("X-Late") != "") {
				t.Fatalf("header %v", h)
			}
			if got := h.Get("Content-Length"); got != c.wantLength {
				t.Fatalf("Content-Length %q, want %q", got, c.wantLength)
			}
		})
	}
}

// TestASmallRefusedBodyKeepsItsConnection: a refused request whose small
// rest has a declared length is read to its end within the linger, and
// the connection serves the next request.
func TestASmallRefusedBodyKeepsItsConnection(t *testing.T) {
	addr, _ := serve(t, hubBodies(false), func(w http.ResponseWriter, r *http.Request) { refuse(w, 401) })
	body := strings.Repeat("x", 1000)
	req := fmt.Sprintf("POST / HTTP/1.1\r\nHost: hub\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	c := rawRequest(t, addr, req)
	br := bufio.NewReader(c)
	for i := range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 401 || string(b) != refusal || resp.Close {
			t.Fatalf("answer %d: %d %q close=%v", i, resp.StatusCode, b, resp.Close)
		}
		if i == 0 {
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
		}
	}
}
