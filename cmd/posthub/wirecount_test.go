package main

import (
	"encoding/binary"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// wireCounter is a TCP proxy in front of the MongoDB-wire server that
// counts the commands a hub process sends through it, by name, as the
// server receives them (a process's mongo-driver cannot be given a command
// monitor from outside). The driver's own server monitoring (hello,
// isMaster) is not a command of the hub's and is counted apart.
type wireCounter struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	counts map[string]int
}

// startWireCounter proxies a loopback port to upstream (host:port) until
// the test ends.
func startWireCounter(t *testing.T, upstream string) *wireCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &wireCounter{ln: ln, upstream: upstream, counts: map[string]int{}}
	var conns sync.WaitGroup
	t.Cleanup(func() { ln.Close(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() { defer conns.Done(); w.serve(c) }()
		}
	}()
	return w
}

// Addr is the proxy's host:port.
func (w *wireCounter) Addr() string { return w.ln.Addr().String() }

func (w *wireCounter) serve(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", w.upstream)
	if err != nil {
		return
	}
	defer up.Close()
	go func() { _, _ = io.Copy(c, up); c.Close() }()
	for {
		var hdr [16]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.LittleEndian.Uint32(hdr[0:4]))
		if n < 16 || n > 64<<20 {
			return
		}
		body := make([]byte, n-16)
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		w.count(binary.LittleEndian.Uint32(hdr[12:16]), body)
		if _, err := up.Write(append(hdr[:], body...)); err != nil {
			return
		}
	}
}

// count files one message: OP_MSG (2013) is flag bits, then sections; a
// kind-0 section is the command document, whose first key names it.
func (w *wireCounter) count(op uint32, body []byte) {
	name := "?"
	if op == 2013 && len(body) > 5 && body[4] == 0 {
		if els, err := bson.Raw(body[5:]).Elements(); err == nil && len(els) > 0 {
			name = els[0].Key()
			if coll, ok := els[0].Value().StringValueOK(); ok && !monitoring(name) {
				name += ":" + coll
			}
		}
	} else if op == 2004 {
		name = "legacy-query" // the driver's first handshake
	}
	w.mu.Lock()
	w.counts[name]++
	w.mu.Unlock()
}

// monitoring says whether a command is the driver's server monitoring.
func monitoring(name string) bool {
	switch strings.ToLower(strings.SplitN(name, ":", 2)[0]) {
	case "hello", "ismaster", "legacy-query":
		return true
	}
	return false
}

// snapshot returns the counts so far, without the driver's monitoring,
// and their total.
func (w *wireCounter) snapshot() (map[string]int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out, total := map[string]int{}, 0
	for k, v := range w.counts {
		if !monitoring(k) {
			out[k] = v
			total += v
		}
	}
	return out, total
}

// diff is after minus before, as "name=n" sorted by name.
func diff(before, after map[string]int) string {
	var parts []string
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			parts = append(parts, k+"="+itoa(d))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for n >= 10 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	i--
	b[i] = byte('0' + n)
	return string(b[i:])
}
