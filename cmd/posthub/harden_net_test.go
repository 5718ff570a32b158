//go:build linux

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthub/posthub/memo"
)

// The loopback addresses the clients of these tests come from (on Linux
// all of 127/8 is loopback).
func loopback(n byte) net.IP { return net.IPv4(127, 0, 0, n) }

// clientFrom is an HTTP client whose connections come from ip and are
// closed after each request.
func clientFrom(ip net.IP) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func dialFrom(t *testing.T, ip net.IP, base string) (net.Conn, error) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// hold opens a connection from ip that the hub serves (one request
// answered) and then keeps open, idle; ok is false when the hub refused
// it instead.
func hold(t *testing.T, ip net.IP, base string) (c net.Conn, ok bool) {
	t.Helper()
	c, err := dialFrom(t, ip, base)
	if err != nil {
		if closedByPeer(err) { // the reset came before the connect returned
			return nil, false
		}
		t.Fatalf("dial from %s: %v", ip, err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: posthub\r\n\r\n"); err != nil {
		return c, false
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if closedByPeer(err) {
			return c, false
		}
		t.Fatalf("connection from %s: %v", ip, err)
	}
	resp.Body.Close()
	return c, resp.StatusCode == http.StatusOK
}

func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// ended waits for the hub to end c, reading (and dropping) whatever it
// answers; it reports how long that took, or fails after limit.
func ended(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the hub kept the connection open for %s", limit)
	}
	return time.Since(start)
}

// paced is a body that arrives chunk bytes at a time, one chunk every
// interval.
type paced struct {
	b        []byte
	chunk    int
	interval time.Duration
}

func (p *paced) Read(b []byte) (int, error) {
	if len(p.b) == 0 {
		return 0, io.EOF
	}
	time.Sleep(p.interval)
	n := copy(b[:min(len(b), p.chunk)], p.b)
	p.b = p.b[n:]
	return n, nil
}

// TestConnectionsAndBodiesAreBounded runs `posthub serve` with small
// bounds: trickled bodies are cut off, one address cannot hold more than
// its share of connections while others are served, the total is capped,
// a slow but steady upload above the floor goes through, one below it
// does not, and the hub accepts throughout.
func TestConnectionsAndBodiesAreBounded(t *testing.T) {
	const operator = "ph_net-operator"
	const perAddr, total = 4, 12
	p := startHubProcess(t, "-data", t.TempDir(), "-operator-token", operator,
		"-body-timeout", "1s", "-upload-min-rate", "32768", "-upload-window", "1s", "-upload-grace", "2s",
		"-max-conns-per-addr", fmt.Sprint(perAddr), "-max-conns", fmt.Sprint(total), "-trusted-proxies", loopback(9).String())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hub log:\n%s", p.log())
		}
	})
	h := &testHub{t: t, base: p.base, operator: operator, client: clientFrom(loopback(1))}
	w := h.setupWorld()
	get := func(ip net.IP) error {
		resp, err := clientFrom(ip).Get(p.base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	served := func(ip net.IP) {
		t.Helper()
		if err := get(ip); err != nil {
			t.Fatalf("a client from %s: %v", ip, err)
		}
	}
	// servedSoon allows for connections closed by their clients that the
	// hub has not yet seen closed (their places are given back then).
	servedSoon := func(ip net.IP) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if err = get(ip); err == nil {
				return
			}
		}
		t.Fatalf("a client from %s: %v", ip, err)
	}

	t.Run("trickled bodies are cut off", func(t *testing.T) {
		// Logins (API and portal) and an admin write, their bodies sent a
		// byte every 200ms: 1000 bytes would take over three minutes.
		heads := []string{
			"POST /apis/v1/session HTTP/1.1\r\nHost: posthub\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
			"POST /admin/login HTTP/1.1\r\nHost: posthub\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n",
			"POST /apis/v1/organisations/ HTTP/1.1\r\nHost: posthub\r\nAuthorization: Basic " + operator + "\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
		}
		for _, head := range heads {
			c, err := dialFrom(t, loopback(2), p.base)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(c, head+"{"); err != nil {
				t.Fatal(err)
			}
			go func() {
				for range 999 {
					time.Sleep(200 * time.Millisecond)
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
				}
			}()
			took := ended(t, c, 20*time.Second)
			t.Logf("%s: the hub closed the connection after %s", strings.Fields(head)[1], took.Round(100*time.Millisecond))
		}
		served(loopback(2))
	})

	t.Run("a flood of trickled logins from one address", func(t *testing.T) {
		const flood = 60
		login := "POST /apis/v1/session HTTP/1.1\r\nHost: posthub\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
		answered := make(chan bool, flood) // true: the hub took it and answered it
		for range flood {
			go func() {
				c, err := dialFrom(t, loopback(6), p.base)
				if err != nil {
					answered <- false
					return
				}
				go func() {
					if _, err := io.WriteString(c, login); err != nil {
						return
					}
					for range 999 {
						time.Sleep(200 * time.Millisecond)
						if _, err := c.Write([]byte(" ")); err != nil {
							return
						}
					}
				}()
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				b, err := io.ReadAll(c)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Errorf("the hub kept a trickling connection open for 20s")
				}
				answered <- bytes.HasPrefix(b, []byte("HTTP/1.1 "))
			}()
		}
		// Meanwhile the hub serves others.
		served(loopback(7))
		took := 0
		for range flood {
			if <-answered {
				took++
			}
		}
		if took == flood {
			t.Fatalf("the hub took all %d connections of one address; its cap is %d", flood, perAddr)
		}
		t.Logf("of %d connections from one address the hub took %d and refused the rest", flood, took)
	})

	t.Run("one address holds at most its share", func(t *testing.T) {
		var held []net.Conn
		for i := range perAddr {
			c, ok := hold(t, loopback(3), p.base)
			if !ok {
				t.Fatalf("connection %d of %d from one address refused", i+1, perAddr)
			}
			held = append(held, c)
		}
		if _, ok := hold(t, loopback(3), p.base); ok {
			t.Fatalf("connection %d from one address served; the cap is %d", perAddr+1, perAddr)
		}
		served(loopback(4))
		// A place that is given back can be taken again.
		held[0].Close()
		var ok bool
		for deadline := time.Now().Add(10 * time.Second); !ok && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			held[0], ok = hold(t, loopback(3), p.base)
		}
		if !ok {
			t.Fatal("a connection closed by its client did not give its place back")
		}
		for _, c := range held {
			c.Close()
		}
	})

	t.Run("all addresses together hold at most the total", func(t *testing.T) {
		var held []net.Conn
		for n := byte(10); len(held) < total; n++ {
			for range perAddr {
				var c net.Conn
				var ok bool
				// The connections closed before may still hold their places
				// for a moment.
				for deadline := time.Now().Add(10 * time.Second); !ok && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
					c, ok = hold(t, loopback(n), p.base)
				}
				if !ok {
					t.Fatalf("connection %d of %d refused", len(held)+1, total)
				}
				held = append(held, c)
			}
		}
		if _, ok := hold(t, loopback(20), p.base); ok {
			t.Fatalf("connection %d served; the total cap is %d", total+1, total)
		}
		for _, c := range held {
			c.Close()
		}
	})

	t.Run("a trusted proxy counts in the total only", func(t *testing.T) {
		var held []net.Conn
		for range perAddr + 2 {
			var c net.Conn
			var ok bool
			for deadline := time.Now().Add(10 * time.Second); !ok && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				c, ok = hold(t, loopback(9), p.base)
			}
			if !ok {
				t.Fatalf("connection %d from the trusted proxy refused; only the total of %d caps it", len(held)+1, total)
			}
			held = append(held, c)
		}
		for _, c := range held {
			c.Close()
		}
	})

	// A MeMo of 256 KiB, uploaded at about twice the floor of 32 KiB/s,
	// and at about a quarter of it.
	uuid, body := letterXML(t, memo.Letter{To: citizen, Main: memo.PDF("brev.pdf", bytes.Repeat([]byte("%PDF-1.4 "), 21_000))})
	// With a length the hub reads the body into memory, without one it
	// spools it to disk.
	upload := func(rate int, uuid string, body []byte, withLength bool) (*http.Response, error) {
		req, err := http.NewRequest("POST", p.base+"/apis/v1/memos/?memo-message-uuid="+uuid, &paced{b: body, chunk: rate / 8, interval: 125 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if withLength {
			req.ContentLength = int64(len(body))
		}
		req.Header.Set("Authorization", "Basic "+w.sender)
		req.Header.Set("Content-Type", "application/xml")
		return clientFrom(loopback(5)).Do(req)
	}
	servedSoon(loopback(5))
	t.Run("a slow but steady upload above the floor goes through", func(t *testing.T) {
		start := time.Now()
		resp, err := upload(64<<10, uuid, body, false)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		t.Logf("%d bytes in %s", len(body), time.Since(start).Round(100*time.Millisecond))
	})
	t.Run("an upload below the floor is cut off", func(t *testing.T) {
		u2, b2 := letterXML(t, memo.Letter{To: citizen, Main: memo.PDF("brev.pdf", bytes.Repeat([]byte("%PDF-1.4 "), 21_000))})
		start := time.Now()
		resp, err := upload(8<<10, u2, b2, true) // would take over 30s
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"body.too.slow"`) {
				t.Fatalf("an upload at a quarter of the floor: %d %s, want 400 body.too.slow", resp.StatusCode, b)
			}
			t.Logf("answered %d after %s: %s", resp.StatusCode, time.Since(start).Round(100*time.Millisecond), b)
		} else {
			t.Logf("cut off after %s: %v", time.Since(start).Round(100*time.Millisecond), err)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Fatalf("the hub read the slow upload for %s", took)
		}
	})

	// The hub accepts throughout, also from the addresses it refused.
	for _, n := range []byte{1, 2, 3, 20} {
		servedSoon(loopback(n))
	}
	h.mustStatus(h.do("GET", "/readyz", "", "", nil), http.StatusOK)
}
