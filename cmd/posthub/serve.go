package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"
)

// runServe runs `posthub serve` until SIGINT or SIGTERM.
func runServe(env *Env, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, env, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(env.Stderr, "posthub serve:", err)
		return 1
	}
	return 0
}

// serve runs the hub until ctx ends. ready, when set, is called with the
// listening address once the hub accepts connections (tests use it).
//
// It runs in three stages, each a function of its own: build opens the
// stores and constructs the services (build.go), listen opens the
// listeners (listen.go), startLoops starts the background loops
// (loops.go). Shutdown goes the other way: stop accepting and drain
// in-flight requests (at most -shutdown-timeout), stop the loops, then
// close the event log and the stores.
func serve(ctx context.Context, env *Env, args []string, ready func(addr string)) error {
	var cfg serveConfig
	fset := flag.NewFlagSet("posthub serve", flag.ContinueOnError)
	fset.SetOutput(env.Stderr)
	if err := cfg.load(fset, args, env.Getenv); err != nil {
		return err
	}
	log := newLogger(cfg, env.Stderr)
	setGCPercent(fset, cfg.GCPercent, env.Getenv)

	h, err := build(ctx, env, cfg, log)
	if err != nil {
		return err
	}
	defer h.close()
	l, err := listen(cfg, h.az.sessions.Proxies, log)
	if err != nil {
		return err
	}
	defer l.close()
	if cfg.Demo {
		if err := h.seedDemo(ctx, l.base(), env.Stdout); err != nil {
			return err
		}
	}
	handler, err := h.handler(ctx, l.base(), env.Stdout)
	if err != nil {
		return err
	}
	errc := l.serve(handler, h.api.MetricsHandler())
	loops := startLoops(h)
	if ready != nil {
		ready(l.api.Addr().String())
	}
	select {
	case err = <-errc:
	case <-ctx.Done():
		log.Info("shutting down", "grace", cfg.ShutdownTimeout)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if serr := l.shutdown(sctx); err == nil {
		err = serr
	}
	// The loops get what is left of the grace, and at least a few seconds.
	grace := time.Until(deadlineOf(sctx))
	if lerr := loops.stop(max(grace, 5*time.Second)); lerr != nil {
		log.Warn("shutdown", "error", lerr)
	}
	return err
}

// setGCPercent sets Go's garbage-collection target to -gc-percent, unless
// the flag was left at its default and GOGC is set in the environment.
// An accepted letter allocates some 100 KB, nearly all garbage at once; at
// Go's default of 100 the collector ran several times a second under load
// and took some 15 % of the hub's CPU. At 400 the heap under a full send
// load grows by ~120 MB and throughput rises 10–20 % (#18). GOMEMLIMIT, when
// set, still caps the heap (Go reads it itself).
func setGCPercent(fs *flag.FlagSet, pct int, getenv func(string) string) {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "gc-percent" })
	if !given && getenv("GOGC") != "" {
		return
	}
	debug.SetGCPercent(pct)
}

// deadlineOf is ctx's deadline (now when it has none).
func deadlineOf(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now()
	}
	return d
}

// seedDemo creates the demo organisations, systems and users and prints
// their tokens and logins.
func (h *hubServices) seedDemo(ctx context.Context, base string, stdout io.Writer) error {
	if err := seedDemo(ctx, h.store, h.registry, h.importer, stdout, base, h.operatorToken); err != nil {
		return fmt.Errorf("demo data: %w", err)
	}
	if err := seedDemoUsers(ctx, h.store, h.az.enforcer, stdout, base); err != nil {
		return fmt.Errorf("demo users: %w", err)
	}
	return nil
}

func newLogger(cfg serveConfig, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
