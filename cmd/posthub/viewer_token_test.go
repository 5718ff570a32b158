package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// bannerOf starts serve with args, stops it once it listens, and returns
// what it wrote to its standard output.
func bannerOf(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- serve(ctx, env, append([]string{"-addr", "127.0.0.1:0", "-data", t.TempDir(), "-log-level", "warn"}, args...),
			func(a string) { ready <- a })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	return out.String()
}

// TestTheViewingClientsTokenIsPrintedForADemoOnly: every start with the
// web mailbox printed the viewing client's API token — which, with its
// assertion key, reads any mailbox — to standard output, also outside a
// demo, where whatever collects the hub's output keeps it.
func TestTheViewingClientsTokenIsPrintedForADemoOnly(t *testing.T) {
	line := func(banner string) string {
		for _, l := range strings.Split(banner, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "API token") {
				return l
			}
		}
		t.Fatalf("no API token line in:\n%s", banner)
		return ""
	}
	if l := line(bannerOf(t, "-web-mailbox", "-mailbox-demo-login", "-operator-token", testOperatorToken)); !strings.Contains(l, "not shown") {
		t.Errorf("the web mailbox's viewing client token is printed outside a demo: %q", l)
	}
	if l := line(bannerOf(t, "-demo")); strings.Contains(l, "not shown") || len(strings.Fields(l)) < 3 {
		t.Errorf("a demo's banner lacks the viewing client's token: %q", l)
	}
}
