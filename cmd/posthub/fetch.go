package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/posthub/posthub/retrieval/client"
)

// runFetch runs `posthub fetch`: a working receiver system that drains its
// queue into a directory, one DIR/<messageUUID>.xml per message, each
// written durably before it is acknowledged (see client.Drainer), so the
// command may be killed at any moment without losing or duplicating a
// message.
func runFetch(env *Env, args []string) int {
	stdout, stderr := env.Stdout, env.Stderr
	fset := newFlagSet(env, "posthub fetch", "[flags] --out DIR")
	base := fset.String("url", envOr(env, "POSTHUB_URL", "http://localhost:8080"), "hub base URL (POSTHUB_URL)")
	token := fset.String("token", env.Getenv("POSTHUB_TOKEN"), "receiver system API token (POSTHUB_TOKEN)")
	out := fset.String("out", "", "directory the messages are written to")
	follow := fset.Bool("follow", false, "keep waiting for new post instead of stopping when the queue is empty")
	workers := fset.Int("c", 8, "concurrent pollers")
	wait := fset.Duration("wait", 0, "long-poll wait per request (default 30s with --follow, else 1s)")
	quiet := fset.Bool("q", false, "print only the summary")
	if code := parseFlags(fset, args); code >= 0 {
		return code
	}
	if *out == "" || *token == "" {
		fmt.Fprintln(stderr, "posthub fetch: --out and a receiver token (--token or POSTHUB_TOKEN) are needed")
		fset.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &client.Drainer{Client: client.New(*base, *token, nil), Dir: *out, Workers: *workers, Follow: *follow, Wait: *wait,
		Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if !*quiet {
		d.OnMessage = func(id string, existed bool) {
			if existed {
				fmt.Fprintln(stdout, id, "already stored; acknowledged")
				return
			}
			fmt.Fprintln(stdout, id)
		}
	}
	start := time.Now()
	st, err := d.Run(ctx)
	fmt.Fprintf(stderr, "posthub fetch: %d written, %d already stored, %d recovered in %s\n",
		st.Written, st.Existing, st.Recovered, time.Since(start).Round(time.Millisecond))
	if err != nil {
		fmt.Fprintln(stderr, "posthub fetch:", err)
		return 1
	}
	return 0
}
