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
// message. A request that fails on the way is repeated -retries times
// with backoff (see client.Retry), so a hub restart costs a wait, not the
// run; after that the command fails rather than wait for a hub that is
// gone.
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
	retries := fset.Int("retries", 3, "repeat a request that failed on the way (connection refused or broken, 502/503/504) up to this many times before giving up, so a hub restart is waited for")
	backoff := fset.Duration("retry-backoff", 500*time.Millisecond, "wait before the first repeat, doubled before each further one")
	maxBackoff := fset.Duration("retry-max-backoff", 5*time.Second, "longest wait between repeats")
	if code := parseFlags(fset, args); code >= 0 {
		return code
	}
	if *out == "" || *token == "" {
		fmt.Fprintln(stderr, "posthub fetch: --out and a receiver token (--token or POSTHUB_TOKEN) are needed")
		fset.Usage()
		return 2
	}
	if *retries < 0 || *backoff <= 0 || *maxBackoff < *backoff {
		return usageError(env, fset, "-retries must be at least 0, and -retry-backoff positive and at most -retry-max-backoff")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c := client.New(*base, *token, nil)
	c.Retry = client.Retry{Attempts: 1 + *retries, Backoff: *backoff, MaxBackoff: *maxBackoff,
		Notify: func(err error, wait time.Duration) {
			log.Warn("fetch: hub unavailable, retrying", "error", err, "in", wait)
		}}
	d := &client.Drainer{Client: c, Dir: *out, Workers: *workers, Follow: *follow, Wait: *wait, Log: log}
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
	fmt.Fprintf(stderr, "posthub fetch: %d written, %d already stored, %d recovered, %d not stored in %s\n",
		st.Written, st.Existing, st.Recovered, st.NotStored, time.Since(start).Round(time.Millisecond))
	if err != nil {
		fmt.Fprintln(stderr, "posthub fetch:", err)
		return 1
	}
	return 0
}
