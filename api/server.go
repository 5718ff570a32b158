// Package api is posthub's HTTP interface under /apis/v1, in the dialect
// of the national hub (NgDP): the sender API (memos, mass send, receipts,
// recall, registration look-up), the operator's registry API, health,
// metrics and the OpenAPI document.
//
// Handlers are thin: decode, call a hub service, map the error, encode.
// Every route is declared once in a table (Routes) with the access it
// requires; the router, the OpenAPI document and the permission tests are
// all generated from that table, so a route cannot exist undocumented or
// unguarded. A route without a permission (Perm, or an Access level that
// maps to one) panics at start-up; see auth.go.
//
// One vocabulary on every route: an error is the NgDP body with a code of
// the closed set, at the status api/status maps it to (errors.go); a list
// is one page of paging.Result, NgDP's PagingResult (api/paging), but for
// the two lists whose shapes NgDP defines (events, system-fetches); paging
// parameters are read and bounded in paging.go, and a bad query parameter
// answers 400 with a field code ending in ".invalid"; a DELETE answers 204
// without a body. Tests hold every route to this:
// TestEveryRouteAnswersOnlyDocumentedErrors, TestListRoutesAnswerPaging,
// TestDeleteRoutesAnswerNoContent.
package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/posthub/posthub/accept"
	"github.com/posthub/posthub/admin"
	"github.com/posthub/posthub/bulk"
	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/rbac/oidc"
	"github.com/posthub/posthub/retrieval"
	"github.com/posthub/posthub/sf1601"
	"github.com/posthub/posthub/viewer"
)

// Config holds the API's limits and choices.
type Config struct {
	// MaxMemoSize is the largest single MeMo, in bytes; it is also the
	// largest entry of a mass-send archive.
	MaxMemoSize int64
	// Archive bounds a mass-send archive (zero fields: bulk's defaults;
	// its MaxEntrySize is always MaxMemoSize).
	Archive bulk.Limits
	// SpoolDir is where request bodies are spooled (same filesystem as
	// the blob store when that is local, so content is moved, not copied).
	SpoolDir string
	// OperatorTokenHash is hub.HashToken of the hub operator's token ("" disables it).
	OperatorTokenHash string
	// MetricsTokenHash is hub.HashToken of the metrics scrape token ("" for
	// none). Presented as the Authorization credential it opens /metrics,
	// and nothing else; without it /metrics needs hub:operate.
	MetricsTokenHash string
	// MetricsElsewhere leaves /metrics off the API: MetricsHandler serves
	// it on a listener of its own (posthub serve -metrics-addr).
	MetricsElsewhere bool
	// SecureCookies marks session cookies Secure even when the request did
	// not arrive over TLS (a TLS-terminating proxy in front).
	SecureCookies bool
	// NoPasswords refuses password logins (OpenID Connect only).
	NoPasswords bool
	// Memo holds the business-rule limits.
	Memo memo.Config
	// SF1601Prefix is the path the SF1601 routes are mounted under
	// (default "": /service/KombiPostAfsend_1/… at the hub's root, where
	// urljoin(base, "service/…") lands for a base URL that is the hub's).
	SF1601Prefix string
	// MaxPrintSize bounds the fjernprint part of a kombi_request, which is
	// held in memory (default 20 MiB); MaxKombiEnvelope and MaxKombiDepth
	// are the rest of its bounds (sf1601.Limits; 0: the package defaults).
	MaxPrintSize     int64
	MaxKombiEnvelope int64
	MaxKombiDepth    int
}

// DefaultMaxPrintSize is Config.MaxPrintSize's default.
const DefaultMaxPrintSize = 20 << 20

// Server is the HTTP API. Build one with New.
type Server struct {
	cfg       Config
	store     hub.Store
	blobs     hub.Blobs
	registry  *hub.Registry
	ingest    *hub.Ingest
	importer  *hub.ContactImporter
	archive   *hub.SentArchive
	retrieval *retrieval.Service
	accepter  *accept.Service
	// printSlots bounds the fjernprint parts held in memory at once.
	printSlots chan struct{}
	viewer     *viewer.Service
	events     *eventlog.Log
	log        *slog.Logger
	now        func() time.Time
	metrics    *metrics
	engine     *gin.Engine
	routes     []Route
	uploads    map[string]bool // method and path of the Upload routes
	enforcer   *rbac.Enforcer
	oidc       *oidc.RP
	sessions   *rbac.Sessions
	admin      *admin.Service
	handler    http.Handler
	// printSchema compiles the fjernprint schema on first use.
	printSchema func() (*sf1601.PrintSchema, error)
}

// Deps are the services the API calls.
type Deps struct {
	Store    hub.Store
	Blobs    hub.Blobs
	Registry *hub.Registry
	Ingest   *hub.Ingest
	Importer *hub.ContactImporter
	// Retrieval serves receiver systems (nil: their routes answer 503).
	Retrieval *retrieval.Service
	Validator *memo.Validator
	// Viewer serves viewing clients and consents (nil: their routes answer 503).
	Viewer *viewer.Service
	// Events is the event log the events routes read (nil: they answer 503).
	Events *eventlog.Log
	Log    *slog.Logger
	Now    func() time.Time
	// Enforcer decides permissions (built over Store when nil; it then
	// does not follow other instances' changes).
	Enforcer *rbac.Enforcer
	// Sessions, when set, lets humans log in (cookie sessions).
	Sessions *rbac.Sessions
	// Portal, when set, is served under /admin/ (the admin portal).
	Portal http.Handler
	// OIDC, when set, is the relying party whose portal providers log
	// people in (GET /apis/v1/session/providers); their sessions are the
	// API's.
	OIDC *oidc.RP
	// Collectors are metrics of the hub's other parts (the outboxes'
	// posthub_outbox_items_total), served on /metrics with the API's own.
	Collectors []prometheus.Collector
}

// New builds the server and its routes.
func New(cfg Config, d Deps) *Server {
	if cfg.MaxMemoSize == 0 {
		cfg.MaxMemoSize = memo.DefaultMaxSize
	}
	cfg.Archive.MaxEntrySize = cfg.MaxMemoSize
	if cfg.MaxPrintSize == 0 {
		cfg.MaxPrintSize = DefaultMaxPrintSize
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	gin.SetMode(gin.ReleaseMode)
	s := &Server{cfg: cfg, store: d.Store, blobs: d.Blobs, registry: d.Registry, ingest: d.Ingest, importer: d.Importer,
		archive: &hub.SentArchive{Store: d.Store, Blobs: d.Blobs, Now: d.Now},
		events:  d.Events, log: d.Log, now: d.Now, metrics: newMetrics(),
		printSchema: sync.OnceValues(sf1601.NewPrintSchema)}
	// Every way a letter comes in (NgDP send, mass send, SF1601) goes
	// through the one accept service.
	// At most two fjernprint parts per CPU in memory at once (each up to
	// MaxPrintSize); the validation they wait for is CPU-bound anyway.
	s.printSlots = make(chan struct{}, 2*runtime.NumCPU())
	s.accepter = &accept.Service{Validator: d.Validator, Ingest: d.Ingest, Receipts: d.Store, SpoolDir: cfg.SpoolDir,
		MaxSize: cfg.MaxMemoSize, Now: d.Now, Log: d.Log, Outcome: func(o string) { s.metrics.accepted.WithLabelValues(o).Inc() }}
	if d.Ingest != nil {
		s.accepter.Events = d.Ingest.Events
	}
	s.initAuth(&d)
	s.viewer = d.Viewer
	s.oidc = d.OIDC
	s.retrieval = d.Retrieval
	if s.retrieval != nil {
		r := s.retrieval
		s.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "posthub_retrieval_long_polls",
			Help: "Receiver systems' long polls (next) waiting for a message now."}, func() float64 { return float64(r.LongPolls()) }))
	}
	s.metrics.reg.MustRegister(d.Collectors...)
	if d.Events != nil {
		l := d.Events
		s.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "posthub_eventlog_feed_waits",
			Help: "Event-log feed reads (long polls and event streams) waiting for entries now."}, func() float64 { return float64(l.FeedWaits()) }))
	}
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.Use(s.recoverer(), s.requestContext())
	e.NoRoute(func(c *gin.Context) {
		writeError(c, s.log, hub.Errorf(hub.NotFound, "no route %s %s", c.Request.Method, c.Request.URL.Path))
	})
	e.NoMethod(func(c *gin.Context) {
		// Inside the closed set of codes: there is no such operation.
		writeError(c, s.log, hub.Errorf(hub.NotFound, "no route %s %s (the path exists with other methods)", c.Request.Method, c.Request.URL.Path))
	})
	s.routes = s.table()
	s.uploads = map[string]bool{}
	for _, r := range s.routes {
		// authorize panics for a route with neither Perm nor Access.
		e.Handle(r.Method, r.Path, s.authorize(r), r.Handler)
		if r.Upload {
			if strings.ContainsAny(r.Path, ":*") {
				panic("api: upload route " + r.Path + " has path parameters")
			}
			s.uploads[r.Method+" "+r.Path] = true
		}
	}
	s.engine = e
	s.handler = e
	if d.Portal != nil {
		mux := http.NewServeMux()
		mux.Handle("/admin/", d.Portal)
		mux.Handle("/", e)
		s.handler = mux
	}
	return s
}

// Handler returns the http.Handler serving the API (and the portal).
func (s *Server) Handler() http.Handler { return s.handler }

// IsUpload reports whether r goes to a route whose body may be large and
// slow to arrive (Route.Upload).
func (s *Server) IsUpload(r *http.Request) bool { return s.uploads[r.Method+" "+r.URL.Path] }

// Routes returns the route table (for documentation and permission tests).
func (s *Server) Routes() []Route { return s.routes }

// Engine exposes the gin engine's own route list, for tests that compare
// it with the table.
func (s *Server) Engine() *gin.Engine { return s.engine }

type ctxKey int

const requestIDKey ctxKey = 1

func requestID(c *gin.Context) string { return c.GetString("requestId") }

// RequestID is the id of the API request whose context ctx is (or derives
// from), "" outside a request: what a store does on a request's behalf can
// be told from background work by it.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// requestContext assigns a request id, logs the request (never its
// Authorization header) and records metrics.
func (s *Server) requestContext() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader("X-Request-Id")
		if id == "" || len(id) > 64 {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		var idv any = id // boxed once for the two that keep it
		c.Set("requestId", idv)
		c.Header("X-Request-Id", id)
		c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), requestIDKey, idv))
		start := time.Now()
		c.Next()
		d := time.Since(start)
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		status := strconv.Itoa(c.Writer.Status())
		s.metrics.requests.WithLabelValues(c.Request.Method, route, status).Inc()
		s.metrics.duration.WithLabelValues(c.Request.Method, route).Observe(d.Seconds())
		if route == "/healthz" || route == "/metrics" {
			return
		}
		// Room for the principal from the start: grown by the append, the
		// slice would move to the heap at twice its size on every request.
		attrs := append(make([]slog.Attr, 0, 6), slog.String("requestId", id), slog.String("method", c.Request.Method),
			slog.String("route", route), slog.Int("status", c.Writer.Status()), slog.Duration("duration", d))
		if p, ok := c.Get("principal"); ok {
			attrs = append(attrs, slog.String("principal", p.(Principal).String()))
		}
		s.log.LogAttrs(c.Request.Context(), slog.LevelInfo, "request", attrs...)
	}
}

func (s *Server) recoverer() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				writeError(c, s.log, hub.Errorf(hub.Internal, "panic: %v", r))
			}
		}()
		c.Next()
	}
}

type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	accepted *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "posthub_http_requests_total",
		Help: "HTTP requests by method, route and status."}, []string{"method", "route", "status"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "posthub_http_request_duration_seconds",
		Help: "HTTP request latency.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"method", "route"})
	m.accepted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "posthub_memos_total",
		Help: "MeMo submissions by outcome (accepted, duplicate, invalid, refused)."}, []string{"outcome"})
	m.reg.MustRegister(m.requests, m.duration, m.accepted,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (s *Server) handleMetrics() gin.HandlerFunc {
	h := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
	return func(c *gin.Context) { h.ServeHTTP(c.Writer, c.Request) }
}

// MetricsHandler serves GET /metrics on a listener of its own (see
// Config.MetricsElsewhere); when a metrics token is set the scraper must
// present it, else the listener's address is the protection.
func (s *Server) MetricsHandler() http.Handler {
	h := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.MetricsTokenHash != "" && !s.scrapeToken(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="posthub metrics"`)
			http.Error(w, "the metrics token is required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
	return mux
}

// scrapeToken reports whether an Authorization header carries the
// metrics token.
func (s *Server) scrapeToken(h string) bool {
	if s.cfg.MetricsTokenHash == "" {
		return false
	}
	raw, decoded := bearer(h)
	for _, t := range []string{raw, decoded} {
		if t != "" && subtle.ConstantTimeCompare([]byte(hub.HashToken(t)), []byte(s.cfg.MetricsTokenHash)) == 1 {
			return true
		}
	}
	return false
}

func (s *Server) handleHealthz(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) }

// handleReadyz answers 503 with the reason while the metadata store cannot
// serve: unreachable, or (bolt) its accept log cannot be written or
// applied. A supervisor restarting on it fixes what does not mend itself.
func (s *Server) handleReadyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 3*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		writeError(c, s.log, hub.Wrap(hub.Unavailable, err, "metadata store not ready: %s", reason(err)))
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// reason is the messages of the hub errors in err's chain, outermost
// first: what went wrong, without the causes' own text (paths, addresses).
func reason(err error) string {
	var msgs []string
	for err != nil {
		if he, ok := err.(*hub.Error); ok {
			msgs = append(msgs, he.Message)
		}
		err = errors.Unwrap(err)
	}
	if len(msgs) == 0 {
		return "unknown"
	}
	return strings.Join(msgs, ": ")
}
