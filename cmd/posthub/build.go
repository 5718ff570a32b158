package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/posthub/posthub/admin"
	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/bulk"
	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/notify"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/retrieval"
	"github.com/posthub/posthub/viewer"
	"github.com/prometheus/client_golang/prometheus"
)

// hubServices is serve's first stage: the stores, opened and repaired, and
// every service over them, wired but not yet running (no listener, no
// background loop). close releases them, the event log before the stores.
type hubServices struct {
	cfg serveConfig
	log *slog.Logger

	store     hub.Store
	blobs     hub.Blobs
	validator *memo.Validator
	evlog     *eventlog.Log
	evKey     ed25519.PrivateKey // nil: no checkpoints
	spool     string

	registry *hub.Registry
	ingest   *hub.Ingest
	importer *hub.ContactImporter
	fetching *retrieval.Service
	az       *authz
	viewer   *viewer.Service
	notifier *notify.Notifier
	api      *api.Server
	// outboxWake wakes the print and SMS outboxes when this instance
	// queued something for them.
	outboxWake map[string]chan struct{}
	// outboxItems counts what became of the items the outboxes claimed.
	outboxItems   *prometheus.CounterVec
	operatorToken string

	closers []func() // run in reverse by close
}

// build opens the stores cfg names, repairs what a crash left, and
// constructs the services. On error whatever it opened is closed.
func build(ctx context.Context, env *Env, cfg serveConfig, log *slog.Logger) (_ *hubServices, err error) {
	h := &hubServices{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	store, blobs, err := openBackends(ctx, cfg.storeConfig, openOptions{monitor: env.mongoMonitor, authCacheTTL: cfg.AuthCacheTTL})
	if err != nil {
		return nil, err
	}
	h.store, h.blobs = store, blobs
	h.closers = append(h.closers, func() { store.Close() })
	if c, ok := blobs.(io.Closer); ok {
		h.closers = append(h.closers, func() { c.Close() })
	}

	mcfg := memo.DefaultConfig()
	mcfg.MaxSize, mcfg.MaxDelay = cfg.MaxMemoSize, cfg.MaxDelay
	h.spool = filepath.Join(cfg.Data, "spool")
	if err := os.MkdirAll(h.spool, 0o700); err != nil {
		return nil, err
	}
	if h.validator, err = memo.NewValidator(mcfg); err != nil {
		return nil, err
	}
	h.closers = append(h.closers, func() { h.validator.Close() })

	if err := store.Repair(ctx, time.Now()); err != nil {
		return nil, fmt.Errorf("start-up repair: %w", err)
	}
	// The event log: appends are group-committed pending entries; the
	// sealer (a background loop) chains them, one sealer at a time across
	// instances.
	h.evlog = eventlog.New(store, eventlog.Options{})
	h.closers = append(h.closers, func() { h.evlog.Close() })
	var events hub.EventSink = h.evlog
	if h.evKey, err = eventlogKey(cfg); err != nil {
		return nil, err
	}
	h.registry = &hub.Registry{Store: store}
	h.ingest = &hub.Ingest{Store: store, Blobs: blobs, Router: &hub.Router{Store: store}, Events: events,
		InlineMax: cfg.InlineMax, ArchiveRetention: cfg.ArchiveRetention}
	h.importer = &hub.ContactImporter{Store: store}
	h.fetching = retrieval.New(retrieval.Config{LeaseTTL: cfg.LeaseTTL, MaxAttempts: cfg.MaxAttempts, InactiveAfter: cfg.InactiveAfter,
		ReconcileInterval: cfg.ReconcileInterval, WatchInterval: cfg.InactiveWatch, TempDir: h.spool}, retrieval.Deps{Store: store, Blobs: blobs, Events: events, Log: log})

	h.operatorToken = cfg.OperatorToken
	if cfg.Demo && h.operatorToken == "" {
		h.operatorToken, _ = hub.NewToken()
	}
	acfg := api.Config{MaxMemoSize: cfg.MaxMemoSize, SpoolDir: h.spool, Memo: mcfg, MetricsElsewhere: cfg.MetricsAddr != "",
		SecureCookies: cfg.secureCookies(), NoPasswords: !cfg.PasswordLogin, SF1601Prefix: cfg.SF1601Prefix,
		MaxPrintSize: cfg.SF1601MaxPrint, MaxKombiEnvelope: cfg.SF1601MaxEnvelope, MaxKombiDepth: cfg.SF1601MaxDepth,
		Archive: bulk.Limits{MaxCompressed: cfg.MaxArchiveSize, MaxBytes: cfg.MaxArchiveBytes, MaxEntries: cfg.MaxArchiveEntries,
			MaxDictionary: cfg.MaxArchiveDictionary}}
	if h.operatorToken != "" {
		acfg.OperatorTokenHash = hub.HashToken(h.operatorToken)
	}
	if cfg.MetricsToken != "" {
		acfg.MetricsTokenHash = hub.HashToken(cfg.MetricsToken)
	}
	if h.az, err = newAuthz(ctx, env, cfg, store, &admin.Service{Store: store, Registry: h.registry, Ingest: h.ingest, Importer: h.importer, Events: events}, log); err != nil {
		return nil, err
	}
	// The viewer side (viewing clients, consents, notifications) runs on
	// every backend: hub.Store includes hub.MailboxStore.
	var mailboxes hub.MailboxStore = store
	h.viewer = &viewer.Service{Store: store, Mailboxes: mailboxes, Blobs: blobs, Events: events, Log: log,
		Roles: enforcerRoles{h.az.enforcer}, Config: viewer.Config{Retention: cfg.MailboxRetention}}
	h.notifier = newNotifier(cfg, store, mailboxes, blobs, events, log)
	// The print and SMS outboxes drain at once when this instance queued
	// something for them; their interval (loops.go) only catches what other
	// instances queued and retries.
	h.outboxWake = map[string]chan struct{}{hub.PrintQueue: make(chan struct{}, 1), hub.SMSQueue: make(chan struct{}, 1)}
	h.ingest.Delivered = h.delivered
	h.outboxItems = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "posthub_outbox_items_total",
		Help: "Print and SMS outbox items by queue and outcome: sent (handed over), failed (an attempt the provider refused), parked."},
		[]string{"queue", "outcome"})
	h.api = api.New(acfg, api.Deps{Store: store, Blobs: blobs, Registry: h.registry, Ingest: h.ingest, Retrieval: h.fetching,
		Importer: h.importer, Validator: h.validator, Events: h.evlog, Log: log, Enforcer: h.az.enforcer, Sessions: h.az.sessions,
		Portal: h.az.portal, OIDC: h.az.oidc, Viewer: h.viewer, Collectors: []prometheus.Collector{h.outboxItems}})
	return h, nil
}

// delivered is the ingest's hook for new deliveries: it hands them to
// retrieval, notifies the recipients and wakes the outboxes.
func (h *hubServices) delivered(ctx context.Context, ds []hub.Delivery) {
	h.fetching.Delivered(ds)
	// The sender's answer does not wait for the notification (its reads
	// and insert are round trips on a replica set); the notifier's
	// reconcile loop catches what a hook cut short missed.
	go h.notifier.Hook(hub.AfterAnswer(ctx), ds)
	for _, d := range ds {
		if w, ok := h.outboxWake[d.Queue]; ok {
			select {
			case w <- struct{}{}:
			default:
			}
		}
	}
}

// close releases what build opened, last opened first: the event log
// (flushing its pending appends) and the validator before the stores.
func (h *hubServices) close() {
	for i := len(h.closers) - 1; i >= 0; i-- {
		h.closers[i]()
	}
	h.closers = nil
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
	n := &notify.Notifier{Store: store, Mailboxes: mb, Blobs: blobs, Events: events, Log: log, Holder: instanceName(),
		SMS: notify.SpoolSMS{Dir: filepath.Join(cfg.Data, "outbox", "sms-notify")}}
	if cfg.SMTPAddr != "" {
		n.Mail = notify.SMTP{Addr: cfg.SMTPAddr, From: cfg.SMTPFrom, Username: cfg.SMTPUser, Password: cfg.SMTPPassword,
			RequireTLS: cfg.SMTPStartTLS}
	}
	return n
}

// instanceName names this process among the hub's instances (lease
// holders): host/pid.
func instanceName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", host, os.Getpid())
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
