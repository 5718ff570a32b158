package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/posthub/posthub/admin"
	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/bulk"
	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/limit"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/notify"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/rbac/oidc"
	"github.com/posthub/posthub/retrieval"
	"github.com/posthub/posthub/viewer"
	"github.com/posthub/posthub/viewer/web"
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
func serve(ctx context.Context, env *Env, args []string, ready func(addr string)) error {
	var cfg serveConfig
	fset := flag.NewFlagSet("posthub serve", flag.ContinueOnError)
	fset.SetOutput(env.Stderr)
	if err := cfg.load(fset, args, env.Getenv); err != nil {
		return err
	}
	stdout, stderr := env.Stdout, env.Stderr
	log := newLogger(cfg, stderr)

	store, blobs, err := openBackends(ctx, cfg.storeConfig, openOptions{monitor: env.mongoMonitor, authCacheTTL: cfg.AuthCacheTTL})
	if err != nil {
		return err
	}
	defer store.Close()
	if c, ok := blobs.(io.Closer); ok {
		defer c.Close()
	}

	mcfg := memo.DefaultConfig()
	mcfg.MaxSize, mcfg.MaxDelay = cfg.MaxMemoSize, cfg.MaxDelay
	spool := filepath.Join(cfg.Data, "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return err
	}
	validator, err := memo.NewValidator(mcfg)
	if err != nil {
		return err
	}
	defer validator.Close()

	if err := store.Repair(ctx, time.Now()); err != nil {
		return fmt.Errorf("start-up repair: %w", err)
	}
	// The event log: appends are group-committed pending entries; the
	// sealer below chains them (one sealer at a time across instances).
	evlog := eventlog.New(store, eventlog.Options{})
	defer evlog.Close()
	var events hub.EventSink = evlog
	evKey, err := eventlogKey(cfg)
	if err != nil {
		return err
	}
	registry := &hub.Registry{Store: store}
	ingest := &hub.Ingest{Store: store, Blobs: blobs, Router: &hub.Router{Store: store}, Events: events,
		InlineMax: cfg.InlineMax, ArchiveRetention: cfg.ArchiveRetention}
	importer := &hub.ContactImporter{Store: store}
	fetching := retrieval.New(retrieval.Config{LeaseTTL: cfg.LeaseTTL, MaxAttempts: cfg.MaxAttempts, InactiveAfter: cfg.InactiveAfter,
		ReconcileInterval: cfg.ReconcileInterval, TempDir: spool}, retrieval.Deps{Store: store, Blobs: blobs, Events: events, Log: log})

	operatorToken := cfg.OperatorToken
	if cfg.Demo && operatorToken == "" {
		operatorToken, _ = hub.NewToken()
	}
	acfg := api.Config{MaxMemoSize: cfg.MaxMemoSize, SpoolDir: spool, Memo: mcfg, MetricsElsewhere: cfg.MetricsAddr != "",
		SecureCookies: cfg.secureCookies(), NoPasswords: !cfg.PasswordLogin, SF1601Prefix: cfg.SF1601Prefix,
		MaxPrintSize: cfg.SF1601MaxPrint, MaxKombiEnvelope: cfg.SF1601MaxEnvelope, MaxKombiDepth: cfg.SF1601MaxDepth,
		Archive: bulk.Limits{MaxCompressed: cfg.MaxArchiveSize, MaxBytes: cfg.MaxArchiveBytes, MaxEntries: cfg.MaxArchiveEntries,
			MaxDictionary: cfg.MaxArchiveDictionary}}
	if operatorToken != "" {
		acfg.OperatorTokenHash = hub.HashToken(operatorToken)
	}
	if cfg.MetricsToken != "" {
		acfg.MetricsTokenHash = hub.HashToken(cfg.MetricsToken)
	}
	az, err := newAuthz(ctx, env, cfg, &admin.Service{Store: store, Registry: registry, Ingest: ingest, Importer: importer, Events: ingest.Events}, log)
	if err != nil {
		return err
	}
	// The viewer side (viewing clients, consents, notifications) runs on
	// every backend: hub.Store includes hub.MailboxStore.
	var mailboxes hub.MailboxStore = store
	viewerSvc := &viewer.Service{Store: store, Mailboxes: mailboxes, Blobs: blobs, Events: events, Log: log,
		Roles: enforcerRoles{az.enforcer}, Config: viewer.Config{Retention: cfg.MailboxRetention}}
	notifier := newNotifier(cfg, store, mailboxes, blobs, events, log)
	retrievalHook := fetching.Delivered
	// The print and SMS outboxes drain at once when this instance queued
	// something for them; their interval below only catches what other
	// instances queued and retries.
	outboxWake := map[string]chan struct{}{hub.PrintQueue: make(chan struct{}, 1), hub.SMSQueue: make(chan struct{}, 1)}
	ingest.Delivered = func(ctx context.Context, ds []hub.Delivery) {
		retrievalHook(ds)
		// The sender's answer does not wait for the notification (its
		// reads and insert are round trips on a replica set); Reconcile
		// catches what a hook cut short missed.
		go notifier.Hook(hub.AfterAnswer(ctx), ds)
		for _, d := range ds {
			if w, ok := outboxWake[d.Queue]; ok {
				select {
				case w <- struct{}{}:
				default:
				}
			}
		}
	}
	srv := api.New(acfg, api.Deps{Store: store, Blobs: blobs, Registry: registry, Ingest: ingest, Retrieval: fetching,
		Importer: importer, Validator: validator, Events: evlog, Log: log, Enforcer: az.enforcer, Sessions: az.sessions, Portal: az.portal, OIDC: az.oidc,
		Viewer: viewerSvc})

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("-metrics-addr: %w", err)
		}
		metricsSrv := &http.Server{Handler: srv.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go func() {
			if err := metricsSrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Warn("metrics listener", "error", err)
			}
		}()
		defer metricsSrv.Close()
		log.Info("posthub metrics listening", "url", "http://"+displayAddr(mln.Addr())+"/metrics", "token", cfg.MetricsToken != "")
	}
	// Caps on connections come before TLS, so that a handshake holds a
	// place too; the header has ReadHeaderTimeout, the body the deadlines
	// of limit.Bodies (wrapped around the handler below).
	ln = limit.NewListener(ln, limit.Conns{PerAddr: cfg.MaxConnsPerAddr, Total: cfg.MaxConns, Shared: az.sessions.Proxies}, log)
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	scheme := "http"
	if cfg.TLSCert != "" {
		tc, err := tlsConfig(cfg)
		if err != nil {
			ln.Close()
			return err
		}
		hs.TLSConfig = tc
		ln = tls.NewListener(ln, tc)
		scheme = "https"
	}
	base := scheme + "://" + displayAddr(ln.Addr())
	if cfg.Demo {
		if err := seedDemo(ctx, store, registry, importer, stdout, base, operatorToken); err != nil {
			ln.Close()
			return fmt.Errorf("demo data: %w", err)
		}
		if err := seedDemoUsers(ctx, store, az.enforcer, stdout, base); err != nil {
			ln.Close()
			return fmt.Errorf("demo users: %w", err)
		}
	}
	if cfg.Demo || cfg.WebMailbox {
		demoLogin := cfg.Demo || cfg.MailboxDemoLogin
		if !demoLogin && len(az.oidc.Providers(oidc.Mailbox)) == 0 {
			ln.Close()
			return errors.New("-web-mailbox needs a way to log in: a provider in -oidc-providers with use \"mailbox\" (or -mailbox-demo-login, which lets anyone act as anyone: demos and tests only)")
		}
		dv, err := seedDemoViewer(ctx, store, mailboxes, registry, cfg.Data)
		if err != nil {
			ln.Close()
			return fmt.Errorf("demo viewing client: %w", err)
		}
		printDemoViewer(stdout, base, dv, true)
		wm, err := web.New(web.Config{API: hs.Handler, SystemID: dv.SystemID, Token: dv.Token, Key: dv.Key, KeyID: dv.KeyID,
			SessionKey: az.sessions.Key, Secure: cfg.secureCookies(), People: demoPeople, DemoLogin: demoLogin, OIDC: az.oidc,
			PublicURL: cfg.PublicURL, Revocations: store, Log: log})
		if err != nil {
			ln.Close()
			return err
		}
		mux := http.NewServeMux()
		mux.Handle(web.Prefix+"/", wm)
		mux.Handle("/", hs.Handler)
		hs.Handler = mux
	}
	hs.Handler = limit.Bodies{Timeout: cfg.BodyTimeout, MinRate: cfg.UploadMinRate, Window: cfg.UploadWindow, Grace: cfg.UploadGrace,
		IsUpload: srv.IsUpload}.Handler(hs.Handler)
	log.Info("posthub listening", "url", base, "metadata", cfg.Metadata, "blobs", cfg.Blobs,
		"maxConns", cfg.MaxConns, "maxConnsPerAddr", cfg.MaxConnsPerAddr)
	if cfg.DebugAddr != "" {
		go serveDebug(cfg.DebugAddr, log)
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	// Seal pending events into the chain (one sealer at a time across
	// instances, by lease), woken by this instance's appends.
	sealerHolder, _ := os.Hostname()
	go eventlog.NewSealer(store, eventlog.SealerOptions{Holder: fmt.Sprintf("%s/%d", sealerHolder, os.Getpid()), Log: log,
		Key: evKey, CheckpointEvery: cfg.EventlogCheckpointEvery, CheckpointInterval: cfg.EventlogCheckpointInterval,
		Retention: cfg.EventlogRetention, Notify: evlog.Notify, Wake: evlog.Appended(), LockTTL: cfg.EventlogSealerTTL, IdleMax: 10 * time.Second}).Run(ctx)
	// Repair undoes what a crash left (claims older than the pending grace,
	// 10 minutes on MongoDB) and folds counters; every 5 minutes is often
	// enough for that, and cheap when idle.
	go every(ctx, 5*time.Minute, log, "repair", func(ctx context.Context) error { return store.Repair(ctx, time.Now()) })
	go fetching.Run(ctx)
	go viewerSvc.RunPurge(ctx, time.Hour)
	// Background loops look at the store at these intervals, so that an idle
	// instance issues well under one command a second (the sealer and the
	// policy check wake on demand; see TestIdleInstanceCommandBudget).
	go notifier.Run(ctx, time.Minute)
	archive := &hub.SentArchive{Store: store, Blobs: blobs}
	go every(ctx, time.Hour, log, "sent-archive purge", func(ctx context.Context) error { _, err := archive.Purge(ctx); return err })
	holder, _ := os.Hostname()
	holder = fmt.Sprintf("%s/%d", holder, os.Getpid())
	for _, q := range []string{hub.PrintQueue, hub.SMSQueue} {
		ob := &hub.Outbox{Store: store, Blobs: blobs, Events: events, Queue: q, Holder: holder, Lease: 5 * time.Minute,
			MaxAttempts: 10, Log: log, Dispatcher: hub.SpoolDispatcher{Dir: filepath.Join(cfg.Data, "outbox", q)}, Wake: outboxWake[q]}
		go ob.Run(ctx, 30*time.Second)
	}
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return err
	}
	return nil
}

// enforcerRoles answers viewer.Roles from the policies: a company user may
// read an organisation's post when they hold mailbox:read there (the
// message-employee privilege).
type enforcerRoles struct{ en *rbac.Enforcer }

func (r enforcerRoles) MayReadMail(_ context.Context, userID, cvr string) (bool, error) {
	return r.en.Allowed(rbac.Subject{User: userID}, cvr, rbac.MailboxRead), nil
}

// newNotifier sends notifications (advisering): e-mail through -smtp-addr
// when set, SMS into the spool directory DATA/outbox/sms-notify, where an
// SMS gateway integration picks them up.
func newNotifier(cfg serveConfig, store hub.Store, mb hub.MailboxStore, blobs hub.Blobs, events hub.EventSink, log *slog.Logger) *notify.Notifier {
	holder, _ := os.Hostname()
	n := &notify.Notifier{Store: store, Mailboxes: mb, Blobs: blobs, Events: events, Log: log,
		Holder: fmt.Sprintf("%s/%d", holder, os.Getpid()),
		SMS:    notify.SpoolSMS{Dir: filepath.Join(cfg.Data, "outbox", "sms-notify")}}
	if cfg.SMTPAddr != "" {
		n.Mail = notify.SMTP{Addr: cfg.SMTPAddr, From: cfg.SMTPFrom, Username: cfg.SMTPUser, Password: cfg.SMTPPassword,
			RequireTLS: cfg.SMTPStartTLS}
	}
	return n
}

// serveDebug exposes pprof on a separate listener, never on the API's.
func serveDebug(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		log.Warn("debug listener", "error", err)
	}
}

func displayAddr(a net.Addr) string {
	s := a.String()
	if strings.HasPrefix(s, "[::]:") || strings.HasPrefix(s, "0.0.0.0:") {
		return "localhost:" + s[strings.LastIndex(s, ":")+1:]
	}
	return s
}

// every runs job at each interval until ctx ends, logging failures.
func every(ctx context.Context, interval time.Duration, log *slog.Logger, name string, job func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := job(ctx); err != nil && ctx.Err() == nil {
				log.Warn(name, "error", err)
			}
		}
	}
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

func tlsConfig(cfg serveConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.ClientCA != "" {
		pem, err := os.ReadFile(cfg.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s: no certificates", cfg.ClientCA)
		}
		// Optional: systems with a registered certificate must present it
		// (checked per system); others authenticate with their token.
		tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

// eventlogKey loads the checkpoint signing key: -eventlog-key, or on the
// embedded default a key generated in the data directory on first start.
// With MongoDB and no key configured, checkpoints are off (every instance
// must sign with the same key, so it has to come from the configuration).
func eventlogKey(cfg serveConfig) (ed25519.PrivateKey, error) {
	switch {
	case cfg.EventlogKey != "":
		return eventlog.LoadOrCreateKey(cfg.EventlogKey)
	case cfg.Metadata == "bolt":
		return eventlog.LoadOrCreateKey(filepath.Join(cfg.Data, "eventlog-ed25519.pem"))
	}
	return nil, nil
}
