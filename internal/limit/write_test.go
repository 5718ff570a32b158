package limit

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAClientThatReadsNothingIsDisconnected: an answer far larger than the
// sockets' buffers, asked for by a client that never reads, blocks the
// server's write; with WriteIdle the write gives up and the connection is
// closed, its place given back, whether the answer is written (Write) or
// copied from a file (ReadFrom, sendfile).
func TestAClientThatReadsNothingIsDisconnected(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 64<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	for _, c := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"written", func(w http.ResponseWriter, r *http.Request) {
			started <- struct{}{}
			chunk := bytes.Repeat([]byte("y"), 64<<10)
			for range 1024 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}},
		{"from a file", func(w http.ResponseWriter, r *http.Request) {
			started <- struct{}{}
			f, err := os.Open(big)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			_, _ = io.Copy(w, f)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, _ := ask(t, 200*time.Millisecond, c.handler, 4<<10)
			// The client reads nothing; once its answer has begun, the
			// server must let go on its own.
			select {
			case <-started:
			case <-time.After(time.Minute):
				t.Fatal("the request did not reach the handler")
			}
			if l.Open() != 1 {
				t.Fatalf("%d connections open while answering, want 1", l.Open())
			}
			deadline := time.Now().Add(60 * time.Second)
			for l.Open() != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the connection of a client reading nothing is still open after a minute (%d open)", l.Open())
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestASteadyReaderGetsALargeAnswerWhole: an answer written in one piece
// far larger than what the sockets buffer, read by a client that takes
// longer than WriteIdle for the whole but never pauses that long, arrives
// whole: each chunk of it has its own write deadline.
func TestASteadyReaderGetsALargeAnswerWhole(t *testing.T) {
	const size = 8 << 20
	_, conn := ask(t, 2*time.Second, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(bytes.Repeat([]byte("z"), size)) // one Write of the whole
	}, 32<<10)
	// About 64 KiB every 40 ms: some 5 s for the whole, never a pause of
	// 2 s (on a loaded machine slower still, which only makes the point).
	start := time.Now()
	got := 0
	buf := make([]byte, 64<<10)
	for got < size {
		n, err := conn.Read(buf)
		got += n
		if err != nil {
			break
		}
		time.Sleep(40 * time.Millisecond)
	}
	if got < size {
		t.Fatalf("read %d bytes of an answer of %d (plus headers) in %s", got, size, time.Since(start))
	}
}

// ask serves handler on a Listener with WriteIdle idle and sends it one GET
// from a client whose receive buffer is rcvbuf bytes; both end with t.
func ask(t *testing.T, idle time.Duration, handler http.HandlerFunc, rcvbuf int) (*Listener, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, Conns{WriteIdle: idle}, nil)
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.(*net.TCPConn).SetReadBuffer(rcvbuf)
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return l, conn
}
