package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/posthub/posthub/internal/limit"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/rbac/oidc"
	"github.com/posthub/posthub/viewer/web"
)

// listeners is serve's second stage: the API's listener — connection caps
// first, so that a TLS handshake holds a place too, then TLS — and the side
// listeners for /metrics and pprof, open but not yet serving.
type listeners struct {
	cfg     serveConfig
	log     *slog.Logger
	api     net.Listener
	scheme  string       // http or https
	metrics net.Listener // nil: /metrics is on the API
	debug   net.Listener // nil: no pprof
	tls     *tls.Config
	// Once serving: the API's server and those of the side listeners.
	apiServer *http.Server
	side      []*http.Server
}

// sideConns caps the connections of the metrics and debug listeners.
const sideConns = 32

// listen opens the listeners cfg asks for; on error none stays open.
// proxies are -trusted-proxies, whose connections count in -max-conns only.
func listen(cfg serveConfig, proxies rbac.TrustedProxies, log *slog.Logger) (_ *listeners, err error) {
	l := &listeners{cfg: cfg, log: log, scheme: "http"}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	if l.api, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, err
	}
	l.api = limit.NewListener(l.api, limit.Conns{PerAddr: cfg.MaxConnsPerAddr, Total: cfg.MaxConns, Shared: proxies,
		WriteIdle: cfg.WriteTimeout}, log)
	if cfg.TLSCert != "" {
		if l.tls, err = tlsConfig(cfg); err != nil {
			return nil, err
		}
		l.api = tls.NewListener(l.api, l.tls)
		l.scheme = "https"
	}
	// The side listeners are for scrapers and operators on a private
	// network, but bounded all the same.
	side := limit.Conns{PerAddr: sideConns, Total: sideConns, WriteIdle: cfg.WriteTimeout}
	if cfg.MetricsAddr != "" {
		if l.metrics, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("-metrics-addr: %w", err)
		}
		l.metrics = limit.NewListener(l.metrics, side, log)
	}
	if cfg.DebugAddr != "" {
		// pprof is a convenience: the hub runs without it.
		if l.debug, err = net.Listen("tcp", cfg.DebugAddr); err != nil {
			log.Warn("debug listener", "error", err)
			l.debug, err = nil, nil
		} else {
			l.debug = limit.NewListener(l.debug, side, log)
		}
	}
	return l, nil
}

// base is the API's URL as shown to people (localhost for a wildcard).
func (l *listeners) base() string { return l.scheme + "://" + displayAddr(l.api.Addr()) }

// handler is the hub's HTTP handler: the API, the web mailbox when it is
// on (its demo viewing client registered first), HSTS when the hub is
// served over TLS, and the body deadlines and lingering of limit.Bodies
// around them.
func (h *hubServices) handler(ctx context.Context, base string, stdout io.Writer) (http.Handler, error) {
	cfg := h.cfg
	var handler http.Handler = h.api.Handler()
	if cfg.Demo || cfg.WebMailbox {
		demoLogin := cfg.Demo || cfg.MailboxDemoLogin
		if !demoLogin && len(h.az.oidc.Providers(oidc.Mailbox)) == 0 {
			return nil, errors.New("-web-mailbox needs a way to log in: a provider in -oidc-providers with use \"mailbox\" (or -mailbox-demo-login, which lets anyone act as anyone: demos and tests only)")
		}
		dv, err := seedDemoViewer(ctx, h.store, h.store, h.registry, cfg.Data)
		if err != nil {
			return nil, fmt.Errorf("demo viewing client: %w", err)
		}
		printDemoViewer(stdout, base, dv, true, cfg.Demo)
		wm, err := web.New(web.Config{API: handler, SystemID: dv.SystemID, Token: dv.Token, Key: dv.Key, KeyID: dv.KeyID,
			SessionKey: h.az.sessions.Key, Secure: cfg.secureCookies(), People: demoPeople, DemoLogin: demoLogin, OIDC: h.az.oidc,
			PublicURL: cfg.PublicURL, Revocations: h.store, Log: h.log})
		if err != nil {
			return nil, err
		}
		mux := http.NewServeMux()
		mux.Handle(web.Prefix+"/", wm)
		mux.Handle("/", handler)
		handler = mux
	}
	if cfg.secureCookies() {
		handler = strictTransport(handler)
	}
	return limit.Bodies{Timeout: cfg.BodyTimeout, MinRate: cfg.UploadMinRate, Window: cfg.UploadWindow, Grace: cfg.UploadGrace,
		IsUpload: h.api.IsUpload, Linger: cfg.LingerTime, LingerBytes: cfg.LingerBytes}.Handler(handler), nil
}

// hsts is the Strict-Transport-Security of a hub served over TLS (-tls-cert,
// or -secure-cookies behind a TLS-terminating proxy): for a year a browser
// that has seen it reaches the hub over HTTPS only, so no plain-HTTP page
// can stand in for the hub's. Without includeSubDomains: the hub owns its
// own name, not the names under it (posthub.kommune.dk cannot speak for
// its subdomains, which may serve plain HTTP); an operator who owns them
// can add it at the proxy. The cookies' protection against other hosts of
// the domain is their __Host- prefix, not this header.
const hsts = "max-age=31536000"

// strictTransport sends hsts on every answer. Browsers ignore it over
// plain HTTP, so behind a proxy it is the proxy's HTTPS answer that counts.
func strictTransport(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", hsts)
		next.ServeHTTP(w, r)
	})
}

// serve starts serving handler on the API listener and metrics on its
// own; the channel gets the API server's end.
func (l *listeners) serve(handler, metrics http.Handler) <-chan error {
	errLog := slog.NewLogLogger(l.log.Handler(), slog.LevelWarn)
	if l.metrics != nil {
		ms := &http.Server{Handler: metrics, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: errLog}
		l.side = append(l.side, ms)
		go func() {
			if err := ms.Serve(l.metrics); err != nil && !errors.Is(err, http.ErrServerClosed) {
				l.log.Warn("metrics listener", "error", err)
			}
		}()
		l.log.Info("posthub metrics listening", "url", "http://"+displayAddr(l.metrics.Addr())+"/metrics", "token", l.cfg.MetricsToken != "")
	}
	if l.debug != nil {
		ds := &http.Server{Handler: debugHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: errLog}
		l.side = append(l.side, ds)
		go func() {
			if err := ds.Serve(l.debug); err != nil && !errors.Is(err, http.ErrServerClosed) {
				l.log.Warn("debug listener", "error", err)
			}
		}()
	}
	// The header has ReadHeaderTimeout, the body the deadlines of
	// limit.Bodies (in handler).
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, TLSConfig: l.tls,
		ErrorLog: errLog}
	l.apiServer = hs
	l.log.Info("posthub listening", "url", l.base(), "metadata", l.cfg.Metadata, "blobs", l.cfg.Blobs,
		"maxConns", l.cfg.MaxConns, "maxConnsPerAddr", l.cfg.MaxConnsPerAddr)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l.api) }()
	return errc
}

// shutdown stops accepting and lets in-flight requests finish until ctx
// ends; then the side listeners close.
func (l *listeners) shutdown(ctx context.Context) error {
	err := l.apiServer.Shutdown(ctx)
	for _, s := range l.side {
		s.Close()
	}
	return err
}

// close closes the listeners if they were never served (a server closes
// its own).
func (l *listeners) close() {
	if l.apiServer != nil {
		return
	}
	for _, ln := range []net.Listener{l.api, l.metrics, l.debug} {
		if ln != nil {
			ln.Close()
		}
	}
}

// debugHandler is Go's pprof, on its own listener, never on the API's.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

func displayAddr(a net.Addr) string {
	s := a.String()
	if strings.HasPrefix(s, "[::]:") || strings.HasPrefix(s, "0.0.0.0:") {
		return "localhost:" + s[strings.LastIndex(s, ":")+1:]
	}
	return s
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
