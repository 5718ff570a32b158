// Package limit bounds what clients can hold of the hub's HTTP server
// before any of them is authenticated: connections, per client address and
// in total (Listener), and the time a request body may take to arrive
// (Bodies). Without them a few hundred connections that trickle a body a
// byte at a time stay open for ever, and once the process runs out of
// descriptors it accepts nobody.
//
// Guarantees: the Listener never hands out more connections than its caps
// allow; one over a cap is closed the moment it is accepted, so refused
// connections never pile up as descriptors. A body read through Bodies
// fails (and the server closes the connection) once it falls behind its
// deadline; a body that has arrived puts no deadline on the handler's
// work. A request answered before its body arrived lingers (Bodies): its
// answer is sent whole, then the rest of the body discarded within a time
// and a byte bound, so that a client still sending reads the answer
// instead of losing it to the reset of a close.
package limit

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Conns are the connection caps; 0 leaves a cap off.
type Conns struct {
	// PerAddr caps the open connections of one client address (an IPv6
	// client's /64, which one subscriber usually holds whole).
	PerAddr int
	// Total caps the open connections of all clients.
	Total int
	// Shared are addresses many clients come through (trusted reverse
	// proxies): their connections count in the total only.
	Shared []netip.Prefix
	// WriteIdle is how long one write to a client may wait for the client
	// to read: a client that reads nothing for this long (its answers
	// queue in the kernel's buffers) has its connection closed instead of
	// holding it, and its place, for ever. Every 256 KiB written starts
	// its own wait, so a long answer read steadily is never cut.
	WriteIdle time.Duration
}

// Listener hands out the connections of the listener it wraps within the
// caps of Conns.
type Listener struct {
	net.Listener
	caps Conns
	log  *slog.Logger

	mu      sync.Mutex
	open    int
	byAddr  map[netip.Prefix]int
	refused int       // since the last report
	lastLog time.Time // of that report
}

// NewListener wraps ln; refusals are reported to log at most every few
// seconds.
func NewListener(ln net.Listener, caps Conns, log *slog.Logger) *Listener {
	return &Listener{Listener: ln, caps: caps, log: log, byAddr: map[netip.Prefix]int{}}
}

// reportEvery spaces the refusal reports: a flood must not flood the log.
const reportEvery = 10 * time.Second

// Accept returns the next connection within the caps; one over a cap is
// closed at once (with a reset, so that it holds nothing here) and the
// next taken.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := l.addrKey(c.RemoteAddr())
		if reason := l.admit(key); reason != "" {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
			l.report(reason, key)
			continue
		}
		return &conn{Conn: c, l: l, key: key}, nil
	}
}

// Open reports the connections open now (for tests and metrics).
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (l *Listener) admit(key netip.Prefix) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.caps.Total > 0 && l.open >= l.caps.Total:
		return "connections: total cap reached"
	case l.caps.PerAddr > 0 && key.IsValid() && l.byAddr[key] >= l.caps.PerAddr:
		return "connections: cap of one client address reached"
	}
	l.open++
	if key.IsValid() {
		l.byAddr[key]++
	}
	return ""
}

func (l *Listener) release(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if !key.IsValid() {
		return
	}
	if l.byAddr[key]--; l.byAddr[key] <= 0 {
		delete(l.byAddr, key)
	}
}

func (l *Listener) report(reason string, key netip.Prefix) {
	l.mu.Lock()
	l.refused++
	now := time.Now()
	if l.log == nil || now.Sub(l.lastLog) < reportEvery {
		l.mu.Unlock()
		return
	}
	n := l.refused
	l.refused, l.lastLog = 0, now
	open := l.open
	l.mu.Unlock()
	l.log.Warn(reason+"; refusing new connections", "address", key.String(), "refused", n, "open", open,
		"perAddress", l.caps.PerAddr, "total", l.caps.Total)
}

// addrKey is the address the per-address cap counts: the IP, an IPv6
// client's /64. A shared address, or one that is not IP (a Unix socket),
// has none (the invalid Prefix) and is counted in the total only.
func (l *Listener) addrKey(a net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap().WithZone("")
	for _, p := range l.caps.Shared {
		if p.Contains(ip) {
			return netip.Prefix{}
		}
	}
	bits := ip.BitLen()
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// conn gives its place back when closed (once, however often Close is
// called).
type conn struct {
	net.Conn
	l    *Listener
	key  netip.Prefix
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}

// Write writes p a chunk per write deadline, so that a large answer
// written at once (a rendered letter, a MeMo) is not cut while the client
// reads it steadily.
func (c *conn) Write(p []byte) (int, error) {
	d := c.l.caps.WriteIdle
	if d <= 0 {
		return c.Conn.Write(p)
	}
	n := 0
	for n < len(p) {
		if err := c.Conn.SetWriteDeadline(time.Now().Add(d)); err != nil {
			return n, err
		}
		m, err := c.Conn.Write(p[n:min(len(p), n+writeChunk)])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// writeChunk is how much is written under one write deadline: a client
// reading at least writeChunk per WriteIdle (256 KiB a minute by default,
// about 4 KB/s) is never cut off.
const writeChunk = 256 << 10

// ReadFrom keeps the underlying connection's ReadFrom (sendfile, splice)
// for response bodies copied from files, a chunk per write deadline.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	d := c.l.caps.WriteIdle
	if d <= 0 {
		return io.Copy(c.Conn, r)
	}
	var n int64
	for {
		if err := c.Conn.SetWriteDeadline(time.Now().Add(d)); err != nil {
			return n, err
		}
		m, err := io.CopyN(c.Conn, r, writeChunk)
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// DefaultTotal is the default total cap: 4096 connections, or a quarter
// of the open-file limit when that is lower, leaving descriptors for what
// the requests open themselves (spool and blob files, the store, outgoing
// connections).
func DefaultTotal() int {
	if n, ok := openFileLimit(); ok && n/4 < 4096 {
		return max(n/4, 1)
	}
	return 4096
}
