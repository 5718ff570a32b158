package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/storage/bolt"
)

// stageConfig is serve's configuration from args on an empty environment.
func stageConfig(t *testing.T, args ...string) serveConfig {
	t.Helper()
	var cfg serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	if err := cfg.load(fs, args, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// boltClosed reports whether the bolt file at data is free: bbolt locks it
// per open file, so a second open in this process waits while any handle
// is open.
func boltClosed(t *testing.T, data string) bool {
	t.Helper()
	s, err := bolt.Open(filepath.Join(data, "posthub.db"), bolt.Options{Timeout: 500 * time.Millisecond})
	if err != nil {
		return false
	}
	s.Close()
	return true
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

var quietEnv = &Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}

// TestServeStagesStartAndStopInOrder runs serve's stages one by one: build
// opens the store, listen and serve answer requests, startLoops starts
// every background loop; shutdown drains the listener, the loops all end
// when told, and close frees the store.
func TestServeStagesStartAndStopInOrder(t *testing.T) {
	data := t.TempDir()
	cfg := stageConfig(t, "-addr", "127.0.0.1:0", "-data", data, "-metrics-addr", "127.0.0.1:0")
	ctx := context.Background()
	h, err := build(ctx, quietEnv, cfg, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	if boltClosed(t, data) {
		t.Fatal("build: the store is not open")
	}
	l, err := listen(cfg, h.az.sessions.Proxies, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	handler, err := h.handler(ctx, l.base(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	errc := l.serve(handler, h.api.MetricsHandler())
	loops := startLoops(h)
	want := []string{"content sweeper", "event-log sealer", "mailbox purge", "notifier", "outbox print", "outbox sms", "policies", "receipt purge", "repair", "retrieval", "sent-archive purge"}
	if got := loops.running(); !slices.Equal(got, want) {
		t.Fatalf("running loops: %v, want %v", got, want)
	}
	for _, u := range []string{l.base() + "/healthz", "http://" + l.metrics.Addr().String() + "/metrics"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", u, resp.StatusCode)
		}
	}

	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := l.shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != http.ErrServerClosed {
		t.Fatalf("the API server ended with %v", err)
	}
	if _, err := http.Get(l.base() + "/healthz"); err == nil {
		t.Fatal("the API still answers after shutdown")
	}
	if got := loops.running(); len(got) != len(want) {
		t.Fatalf("loops ended with the listener: %v", got)
	}
	if err := loops.stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := loops.running(); len(got) != 0 {
		t.Fatalf("loops still running after stop: %v", got)
	}
	h.close()
	if !boltClosed(t, data) {
		t.Fatal("close left the store open")
	}
}

// TestBuildClosesWhatItOpenedOnError: a configuration refused half way
// through build (after the store is open) leaves the store closed, and a
// refused listen leaves no listener open.
func TestBuildClosesWhatItOpenedOnError(t *testing.T) {
	data := t.TempDir()
	cfg := stageConfig(t, "-data", data, "-oidc-providers", `[{"name":"x"}]`)
	if _, err := build(context.Background(), quietEnv, cfg, quietLog); err == nil || !strings.Contains(err.Error(), "-oidc-providers") {
		t.Fatalf("build: %v, want the -oidc-providers error", err)
	}
	if !boltClosed(t, data) {
		t.Fatal("a failed build left the store open")
	}

	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	cfg = stageConfig(t, "-addr", addr, "-data", data, "-tls-cert", filepath.Join(data, "missing.pem"), "-tls-key", filepath.Join(data, "missing.key"))
	l, err := listen(cfg, nil, quietLog)
	if err == nil || !strings.Contains(err.Error(), "tls") || l != nil {
		t.Fatalf("listen: %v %v, want the tls error", l, err)
	}
	again, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("a failed listen left %s open: %v", addr, err)
	}
	again.Close()
}
