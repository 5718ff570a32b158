package mongo_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/storage/mongo"
)

// TestAnEventQueryThatTakesTooLongIsRefused: a query of the event log that
// does not fill its page within its time bound is refused as bolt refuses
// one that reads too much (event.query.too.wide), not left to scan the
// whole collection (FerretDB uses no index; a filter matching nothing read
// every entry of the organisation, and the page count read 10,000 more).
func TestAnEventQueryThatTakesTooLongIsRefused(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if _, err := s.QueryEvents(ctx, hub.EventQuery{MessageUUID: "none", Limit: 10}); err != nil {
		t.Fatalf("a query within the bound: %v", err)
	}
	mongo.SetEventQueryTime(t, time.Nanosecond)
	_, err := s.QueryEvents(ctx, hub.EventQuery{MessageUUID: "none", Limit: 10})
	var he *hub.Error
	if !hub.Is(err, hub.Invalid) || !errors.As(err, &he) || len(he.Fields) == 0 || he.Fields[0].Code != "event.query.too.wide" {
		t.Fatalf("a query past its time bound: %v, want Invalid event.query.too.wide", err)
	}
}

// hangingProxy forwards to upstream until hang is set; from then on it
// takes every byte and answers nothing, as a server that hangs or a
// network that drops packets does (refused connections fail fast).
type hangingProxy struct {
	ln       net.Listener
	upstream string
	hang     atomic.Bool
}

func startHangingProxy(t *testing.T, upstream string) *hangingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &hangingProxy{ln: ln, upstream: upstream}
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, c, up)
			mu.Unlock()
			conns.Add(2)
			go func() { defer conns.Done(); p.pipe(up, c) }()
			go func() { defer conns.Done(); p.pipe(c, up) }()
		}
	}()
	return p
}

// pipe copies from src to dst while the proxy forwards, and drops what
// arrives once it hangs.
func (p *hangingProxy) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.hang.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestAnEventQueryOfAServerThatDoesNotAnswerIsUnavailable: the time bound
// above used to answer 400 event.query.too.wide also when the server (or
// the network to it) did not answer at all, telling an auditor to narrow
// a query that was never read; that is Unavailable (503, try again).
func TestAnEventQueryOfAServerThatDoesNotAnswerIsUnavailable(t *testing.T) {
	uri := testservers.FerretDB(t)
	host := strings.TrimSuffix(strings.TrimPrefix(uri, "mongodb://"), "/")
	p := startHangingProxy(t, host)
	s := openConfig(t, mongo.Config{URI: "mongodb://" + p.ln.Addr().String() + "/", Database: testservers.DatabaseName(t), Timeout: 2 * time.Second})
	ctx := context.Background()
	if _, err := s.QueryEvents(ctx, hub.EventQuery{MessageUUID: "none", Limit: 10}); err != nil {
		t.Fatalf("a query through the proxy: %v", err)
	}
	mongo.SetEventQueryTime(t, time.Second)
	mongo.SetEventQueryPing(t, time.Second)
	p.hang.Store(true)
	_, err := s.QueryEvents(ctx, hub.EventQuery{MessageUUID: "none", Limit: 10})
	if !hub.Is(err, hub.Unavailable) {
		t.Fatalf("a query of a server that does not answer: %v, want Unavailable", err)
	}
	p.hang.Store(false)
}
