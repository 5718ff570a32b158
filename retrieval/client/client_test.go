package client_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/retrieval/client"
)

// refusing is a transport whose first refuse dials are refused, as by a
// hub instance that is down; then it sends requests on.
type refusing struct {
	refuse atomic.Int64
	calls  atomic.Int64
}

func (r *refusing) RoundTrip(req *http.Request) (*http.Response, error) {
	r.calls.Add(1)
	if r.refuse.Add(-1) >= 0 {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	return http.DefaultTransport.RoundTrip(req)
}

// breaking is a transport that sends every request and loses the answer
// the first lose times (the connection broke after the request went out).
type breaking struct {
	lose  atomic.Int64
	calls atomic.Int64
}

func (b *breaking) RoundTrip(req *http.Request) (*http.Response, error) {
	b.calls.Add(1)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && b.lose.Add(-1) >= 0 {
		resp.Body.Close()
		return nil, io.ErrUnexpectedEOF
	}
	return resp, err
}

// hubStub answers the receiver API: each route answers the statuses of its
// list in turn (the last one from then on) and counts its calls.
type hubStub struct {
	statuses map[string][]int
	calls    map[string]*atomic.Int64
	bodies   chan string
}

func newHubStub(t *testing.T, statuses map[string][]int) (*hubStub, *httptest.Server) {
	h := &hubStub{statuses: statuses, calls: map[string]*atomic.Int64{}, bodies: make(chan string, 10)}
	for k := range statuses {
		h.calls[k] = &atomic.Int64{}
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv
}

func (h *hubStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Method + " " + r.URL.Path
	n, ok := h.calls[key]
	if !ok {
		http.NotFound(w, r)
		return
	}
	i := int(n.Add(1)) - 1
	st := h.statuses[key]
	status := st[min(i, len(st)-1)]
	if b, _ := io.ReadAll(r.Body); len(b) > 0 {
		h.bodies <- string(b)
	}
	switch {
	case status >= 300:
		w.WriteHeader(status)
		io.WriteString(w, `{"code":"unavailable","message":"try again"}`)
	case r.URL.Path == "/apis/v1/memos/next":
		w.Header().Set("X-Posthub-Message-Uuid", "m1")
		w.Header().Set("X-Posthub-Lease", "l1")
		io.WriteString(w, "<memo/>")
	case r.URL.Path == "/apis/v1/memos/":
		io.WriteString(w, `{"content":["m1"],"totalElements":1}`)
	default:
		w.WriteHeader(status)
	}
}

func retrying(base string, hc *http.Client) *client.Client {
	c := client.New(base, "token", hc)
	c.Retry = client.Retry{Attempts: 4, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}
	return c
}

// TestRetryRepeatsIdempotentRequests: an ack and a listing that met an
// unavailable hub (503, 502) or a broken connection are sent again.
func TestRetryRepeatsIdempotentRequests(t *testing.T) {
	ctx := context.Background()
	h, srv := newHubStub(t, map[string][]int{"DELETE /apis/v1/memos/m1": {503, 503, 204}, "GET /apis/v1/memos/": {502, 200}})
	c := retrying(srv.URL, nil)
	if err := c.Ack(ctx, "m1"); err != nil {
		t.Fatalf("ack: %v", err)
	}
	if n := h.calls["DELETE /apis/v1/memos/m1"].Load(); n != 3 {
		t.Fatalf("ack sent %d times, want 3", n)
	}
	if p, err := c.List(ctx, 0, 10); err != nil || len(p.Content) != 1 {
		t.Fatalf("list: %+v, %v", p, err)
	}

	tr := &breaking{}
	tr.lose.Store(2)
	c = retrying(srv.URL, &http.Client{Transport: tr})
	if err := c.Ack(ctx, "m1"); err != nil {
		t.Fatalf("ack over a connection that broke twice: %v", err)
	}
	if n := tr.calls.Load(); n != 3 {
		t.Fatalf("ack sent %d times over the breaking connection, want 3", n)
	}
}

// TestRetryNeverRepeatsALeaseThatMayHaveReachedTheHub: a fetch that met a
// 503 or a broken connection may have leased the message, so it is not
// repeated (the lease runs out; the caller decides), nor is a receipt.
func TestRetryNeverRepeatsALeaseThatMayHaveReachedTheHub(t *testing.T) {
	ctx := context.Background()
	h, srv := newHubStub(t, map[string][]int{"GET /apis/v1/memos/next": {503, 200}, "POST /apis/v1/memos/m1/receipt": {503, 200}})
	c := retrying(srv.URL, nil)
	if _, err := c.Next(ctx, time.Second); !hub.Is(err, hub.Unavailable) {
		t.Fatalf("next after a 503: %v, want Unavailable", err)
	}
	if err := c.Receipt(ctx, "m1", hub.ReceiptCompleted, "", "", ""); err == nil {
		t.Fatal("receipt after a 503: no error")
	}
	for _, k := range []string{"GET /apis/v1/memos/next", "POST /apis/v1/memos/m1/receipt"} {
		if n := h.calls[k].Load(); n != 1 {
			t.Fatalf("%s sent %d times, want 1", k, n)
		}
	}
	tr := &breaking{}
	tr.lose.Store(1)
	c = retrying(srv.URL, &http.Client{Transport: tr})
	if _, err := c.Next(ctx, time.Second); !hub.Is(err, hub.Unavailable) {
		t.Fatalf("next over a broken connection: %v, want Unavailable", err)
	}
	if n := tr.calls.Load(); n != 1 {
		t.Fatalf("next sent %d times over a broken connection, want 1", n)
	}
}

// TestRetryRepeatsAnythingTheHubNeverGot: a refused connection reached no
// hub, so even a fetch and a receipt (with its body) are sent again.
func TestRetryRepeatsAnythingTheHubNeverGot(t *testing.T) {
	ctx := context.Background()
	h, srv := newHubStub(t, map[string][]int{"GET /apis/v1/memos/next": {200}, "POST /apis/v1/memos/m1/receipt": {200}})
	tr := &refusing{}
	tr.refuse.Store(2)
	c := retrying(srv.URL, &http.Client{Transport: tr})
	m, err := c.Next(ctx, time.Second)
	if err != nil || m == nil || m.UUID != "m1" {
		t.Fatalf("next after two refused connections: %+v, %v", m, err)
	}
	m.Close()
	tr.refuse.Store(2)
	if err := c.Receipt(ctx, "m1", hub.ReceiptCompleted, "", "", "l1"); err != nil {
		t.Fatalf("receipt after two refused connections: %v", err)
	}
	if body := <-h.bodies; body == "" || body[0] != '{' {
		t.Fatalf("the receipt sent after refusals has body %q", body)
	}
	if n := tr.calls.Load(); n != 6 {
		t.Fatalf("%d requests, want 6 (two refused before each)", n)
	}

	// A real refusal: nothing listens on the port any more.
	closed := closedURL(t)
	counted := &refusing{} // refuses nothing itself: counts and sends on
	if _, err := retrying(closed, &http.Client{Transport: counted}).Next(ctx, time.Second); !hub.Is(err, hub.Unavailable) {
		t.Fatalf("next to a closed port: %v", err)
	}
	if n := counted.calls.Load(); n != 4 {
		t.Fatalf("next to a closed port tried %d times, want Attempts (4)", n)
	}
}

// TestRetryIsBounded: Attempts tries in all, then the last error; an
// answer the hub gave (404) is never repeated; the zero Retry tries once.
func TestRetryIsBounded(t *testing.T) {
	ctx := context.Background()
	h, srv := newHubStub(t, map[string][]int{"DELETE /apis/v1/memos/m1": {503}, "DELETE /apis/v1/memos/m2": {404}})
	if err := retrying(srv.URL, nil).Ack(ctx, "m1"); !hub.Is(err, hub.Unavailable) {
		t.Fatalf("ack of an always unavailable hub: %v", err)
	}
	if n := h.calls["DELETE /apis/v1/memos/m1"].Load(); n != 4 {
		t.Fatalf("ack sent %d times, want Attempts (4)", n)
	}
	if err := retrying(srv.URL, nil).Ack(ctx, "m2"); err == nil {
		t.Fatal("ack answered 404: no error")
	}
	if n := h.calls["DELETE /apis/v1/memos/m2"].Load(); n != 1 {
		t.Fatalf("ack answered 404 sent %d times, want 1", n)
	}
	h.calls["DELETE /apis/v1/memos/m1"].Store(0)
	if err := client.New(srv.URL, "token", nil).Ack(ctx, "m1"); err == nil {
		t.Fatal("no error")
	}
	if n := h.calls["DELETE /apis/v1/memos/m1"].Load(); n != 1 {
		t.Fatalf("without Retry the ack was sent %d times, want 1", n)
	}
}

// closedURL is the URL of a loopback port nothing listens on any more: a
// connection to it is refused.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}
