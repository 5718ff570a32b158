package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/bulk"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/limit"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/sf1601"
	"github.com/posthub/posthub/storage/bolt"
	"github.com/posthub/posthub/storage/fs"
	"github.com/posthub/posthub/storage/mongo"
	"github.com/posthub/posthub/storage/s3"
)

// Configuration has one path for every subcommand. A setting is a flag;
// it may also come from the environment, POSTHUB_<NAME> (upper case, dashes
// as underscores), or from the JSON file named by -config / POSTHUB_CONFIG
// (keys as the flag names). Flags win over the environment, which wins over
// the file. serve declares every setting (serveConfig); admin and eventlog
// declare the ones that say where the hub's data lives (storeConfig), read
// them through the same loadConfig and open the stores through the same
// openMetadata, so one configuration reaches the same store from each.
// A subcommand's own arguments (admin -name, eventlog -from) are flags of
// the command line only.

// storeConfig says where the hub's data lives: which backends, and where.
type storeConfig struct {
	Data     string
	Metadata string // bolt or mongo
	Blobs    string // fs or s3
	MongoURI string
	MongoDB  string
	// The MongoDB store's repair (see storage/mongo/eventrepair.go).
	MongoPendingGrace      time.Duration
	MongoEventRepairWindow time.Duration
	MongoEventRepairMax    int
	S3Endpoint             string
	S3AccessKey            string
	S3SecretKey            string
	S3Bucket               string
	S3Region               string
	S3TLS                  bool
}

// flags declares the store settings, with the same defaults everywhere.
func (c *storeConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Data, "data", "./data", "data directory of the embedded default (bolt file, blobs, spool)")
	fs.StringVar(&c.Metadata, "metadata", "bolt", "metadata store: bolt (embedded) or mongo")
	fs.StringVar(&c.Blobs, "blobs", "fs", "content store: fs (files under the data directory) or s3")
	fs.StringVar(&c.MongoURI, "mongo-uri", "", "MongoDB connection string (metadata=mongo)")
	fs.StringVar(&c.MongoDB, "mongo-db", "posthub", "MongoDB database name")
	fs.DurationVar(&c.MongoPendingGrace, "mongo-pending-grace", 10*time.Minute, "metadata=mongo: how long a letter's store write may stay unfinished before the repair undoes it (a write gives up after half of it); the instances' clocks must agree within half of it")
	fs.DurationVar(&c.MongoEventRepairWindow, "mongo-event-repair-window", 6*time.Hour, "metadata=mongo: how far back the repair looks for letters whose first events and counters a crash after their commit lost; the same on every instance")
	fs.IntVar(&c.MongoEventRepairMax, "mongo-event-repair-max", 100000, "metadata=mongo: most letters one repair run (every -repair-interval) looks at")
	fs.StringVar(&c.S3Endpoint, "s3-endpoint", "", "S3 endpoint host:port (blobs=s3)")
	fs.StringVar(&c.S3AccessKey, "s3-access-key", "", "S3 access key")
	fs.StringVar(&c.S3SecretKey, "s3-secret-key", "", "S3 secret key")
	fs.StringVar(&c.S3Bucket, "s3-bucket", "posthub", "S3 bucket (created if absent)")
	fs.StringVar(&c.S3Region, "s3-region", "", "S3 region")
	fs.BoolVar(&c.S3TLS, "s3-tls", false, "use https for S3")
}

// check refuses a backend name that is neither built-in one, before
// anything is opened.
func (c *storeConfig) check() error {
	switch {
	case c.Metadata != "bolt" && c.Metadata != "mongo":
		return fmt.Errorf("-metadata %q: bolt or mongo", c.Metadata)
	case c.Blobs != "fs" && c.Blobs != "s3":
		return fmt.Errorf("-blobs %q: fs or s3", c.Blobs)
	case c.Metadata == "mongo" && c.MongoURI == "":
		return errors.New("-metadata mongo needs -mongo-uri (or POSTHUB_MONGO_URI)")
	case c.Blobs == "s3" && c.S3Endpoint == "":
		return errors.New("-blobs s3 needs -s3-endpoint (or POSTHUB_S3_ENDPOINT)")
	case c.MongoPendingGrace <= 0:
		return fmt.Errorf("-mongo-pending-grace %s: must be positive", c.MongoPendingGrace)
	case c.MongoEventRepairWindow <= 0:
		return fmt.Errorf("-mongo-event-repair-window %s: must be positive", c.MongoEventRepairWindow)
	case c.MongoEventRepairMax <= 0:
		return fmt.Errorf("-mongo-event-repair-max %d: must be positive", c.MongoEventRepairMax)
	}
	return nil
}

// boltPath is the embedded metadata store's file.
func (c *storeConfig) boltPath() string { return filepath.Join(c.Data, "posthub.db") }

// openOptions are what differs between the subcommands that open a store.
type openOptions struct {
	// monitor, when set, observes every MongoDB command (serve's budget test).
	monitor *event.CommandMonitor
	// authCacheTTL is serve's -auth-cache-ttl (MongoDB).
	authCacheTTL time.Duration
	// boltWait bounds the wait for the bolt file, which a running embedded
	// hub holds (0: bolt's default).
	boltWait time.Duration
	// existing refuses to create an embedded store that is not there (a
	// reader such as eventlog must not make an empty hub).
	existing bool
}

// errNoStore is openMetadata's answer when opts.existing and there is no
// embedded store at -data.
var errNoStore = errors.New("no embedded hub there")

// openMetadata is the one place that chooses the metadata backend.
func openMetadata(ctx context.Context, c storeConfig, opts openOptions) (hub.Store, error) {
	switch c.Metadata {
	case "bolt":
		if opts.existing {
			if _, err := os.Stat(c.boltPath()); errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("-data %s: %w (no %s)", c.Data, errNoStore, filepath.Base(c.boltPath()))
			}
		}
		if err := os.MkdirAll(c.Data, 0o700); err != nil {
			return nil, err
		}
		s, err := bolt.Open(c.boltPath(), bolt.Options{Timeout: opts.boltWait})
		if err != nil {
			return nil, err
		}
		return s, nil
	case "mongo":
		s, err := mongo.Open(ctx, mongo.Config{URI: c.MongoURI, Database: c.MongoDB, Monitor: opts.monitor,
			AuthCacheTTL: opts.authCacheTTL, PendingGrace: c.MongoPendingGrace,
			EventRepairWindow: c.MongoEventRepairWindow, EventRepairMax: c.MongoEventRepairMax})
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown metadata store %q (bolt or mongo)", c.Metadata)
}

// openBlobs is the one place that chooses the content backend.
func openBlobs(ctx context.Context, c storeConfig) (hub.Blobs, error) {
	switch c.Blobs {
	case "fs":
		return fs.Open(filepath.Join(c.Data, "blobs"))
	case "s3":
		return s3.Open(ctx, s3.Config{Endpoint: c.S3Endpoint, AccessKey: c.S3AccessKey, SecretKey: c.S3SecretKey,
			Bucket: c.S3Bucket, Region: c.S3Region, UseTLS: c.S3TLS})
	}
	return nil, fmt.Errorf("unknown blob store %q (fs or s3)", c.Blobs)
}

// openBackends opens both stores (serve).
func openBackends(ctx context.Context, c storeConfig, opts openOptions) (hub.Store, hub.Blobs, error) {
	store, err := openMetadata(ctx, c, opts)
	if err != nil {
		return nil, nil, err
	}
	blobs, err := openBlobs(ctx, c)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	return store, blobs, nil
}

// serveConfig is every setting of the hub, as `posthub serve` takes them.
type serveConfig struct {
	storeConfig
	Addr             string
	AuthCacheTTL     time.Duration
	InlineMax        int64
	MaxMemoSize      int64
	MaxDelay         time.Duration
	ArchiveRetention time.Duration
	ReceiptRetention time.Duration
	TLSCert          string
	TLSKey           string
	ClientCA         string
	OperatorToken    string
	Demo             bool
	LogFormat        string
	LogLevel         string
	ShutdownTimeout  time.Duration
	DebugAddr        string
	GCPercent        int
	MetricsAddr      string
	MetricsToken     string
	// Human logins and the policies.
	SecureCookies      bool
	SessionKey         string
	PolicyPollInterval time.Duration
	MaxPasswordHashes  int
	PasswordHashWait   time.Duration
	LoginRate          int
	LoginDelay         time.Duration
	TrustedProxies     string
	// Connections and request bodies (0 leaves a bound off).
	MaxConns        int
	MaxConnsPerAddr int
	BodyTimeout     time.Duration
	WriteTimeout    time.Duration
	UploadMinRate   int64
	UploadWindow    time.Duration
	UploadGrace     time.Duration
	LingerTime      time.Duration
	LingerBytes     int64
	// Mass-send archives.
	MaxArchiveSize       int64
	MaxArchiveBytes      int64
	MaxArchiveEntries    int
	MaxArchiveDictionary int64
	// System retrieval.
	LeaseTTL          time.Duration
	MaxAttempts       int
	InactiveAfter     time.Duration
	InactiveWatch     time.Duration
	ReconcileInterval time.Duration
	// The event log.
	EventlogKey                string
	EventlogRetention          time.Duration
	EventlogCheckpointEvery    uint64
	EventlogCheckpointInterval time.Duration
	EventlogSealerTTL          time.Duration
	EventlogPollInterval       time.Duration
	// The other background loops' intervals (loops.go).
	RepairInterval       time.Duration
	MailboxPurgeInterval time.Duration
	ArchivePurgeInterval time.Duration
	NotifyInterval       time.Duration
	OutboxInterval       time.Duration
	// Mailboxes, viewing clients and notifications.
	MailboxRetention time.Duration
	WebMailbox       bool
	SMTPAddr         string
	SMTPFrom         string
	SMTPUser         string
	SMTPPassword     string
	SMTPStartTLS     bool
	// OpenID Connect logins.
	OIDCProviders    string
	PasswordLogin    bool
	PublicURL        string
	MailboxDemoLogin bool
	// The SF1601 façade.
	SF1601Prefix      string
	SF1601MaxPrint    int64
	SF1601MaxEnvelope int64
	SF1601MaxDepth    int
}

// flags declares the settings. The README's configuration table has a row
// for each (TestREADMEConfigurationTableListsEveryFlag keeps them in step).
func (c *serveConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", ":8080", "listen address")
	c.storeConfig.flags(fs)
	fs.DurationVar(&c.AuthCacheTTL, "auth-cache-ttl", 2*time.Second, "metadata=mongo: how long a system's API token and a viewing client's assertion keys are answered from this instance's memory; a token revoked through another instance still works here for at most this long (0: ask MongoDB every time)")
	fs.Int64Var(&c.InlineMax, "inline-max", 256<<10, "content up to this many bytes is kept inline in the metadata store")
	fs.Int64Var(&c.MaxMemoSize, "max-memo-size", memo.DefaultMaxSize, "largest accepted MeMo in bytes (99.5 MiB)")
	fs.Int64Var(&c.MaxArchiveSize, "max-archive-size", bulk.DefaultMaxCompressed, "largest mass-send archive as sent, in bytes (1 GiB)")
	fs.Int64Var(&c.MaxArchiveBytes, "max-archive-bytes", bulk.DefaultMaxBytes, "most bytes a mass-send archive may decompress to (1 GiB)")
	fs.IntVar(&c.MaxArchiveEntries, "max-archive-entries", bulk.DefaultMaxEntries, "most MeMos in one mass-send archive")
	fs.Int64Var(&c.MaxArchiveDictionary, "max-archive-dictionary", bulk.DefaultMaxDictionary, "largest lzma/xz dictionary a mass-send archive may ask for, in bytes (64 MiB)")
	fs.DurationVar(&c.MaxDelay, "max-delay", 365*24*time.Hour, "how far ahead doNotDeliverUntilDate may lie")
	fs.DurationVar(&c.ArchiveRetention, "archive-retention", 90*24*time.Hour, "how long a sender's sent-archive copy is kept")
	fs.DurationVar(&c.ReceiptRetention, "receipt-retention", 90*24*time.Hour, "how long a sender's receipt is kept when it is not read (with deletion) before; purged hourly (0 keeps receipts until they are read; otherwise at least 168h)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "private key of -tls-cert (PEM)")
	fs.StringVar(&c.ClientCA, "client-ca", "", "CA bundle (PEM) for optional client-certificate authentication")
	fs.BoolVar(&c.SecureCookies, "secure-cookies", false, "the hub is reached over TLS: mark the browser cookies Secure, name them __Host- and send Strict-Transport-Security (automatic with -tls-cert; set it behind a TLS-terminating proxy)")
	fs.StringVar(&c.SessionKey, "session-key", "", "key (hex, at least 32 bytes) signing session cookies; share it between the instances behind one load balancer (prefer the environment: POSTHUB_SESSION_KEY); empty: DATA/session.key, created on first start")
	fs.DurationVar(&c.PolicyPollInterval, "policy-poll-interval", time.Second, "how often the policies are checked for another instance's change: a privilege changed on one instance is in force on the others within this plus one policy load")
	fs.IntVar(&c.MaxPasswordHashes, "max-password-hashes", 0, "password checks (argon2id, 64 MiB each) that run at once; 0: one per CPU")
	fs.DurationVar(&c.PasswordHashWait, "password-hash-wait", time.Second, "how long a login waits for a password-check slot before it is refused with 503 and Retry-After")
	fs.IntVar(&c.LoginRate, "login-rate", 30, "failed logins (and logins refused as busy) one client address may make a minute, over all user ids (negative: no limit)")
	fs.DurationVar(&c.LoginDelay, "login-delay", time.Second, "after 5 failed logins of one user from one address, the wait before the next attempt from there; it doubles with each further failure, up to 15 min")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated addresses or CIDR prefixes of reverse proxies whose X-Forwarded-For names the client a login is throttled by (empty: the header is ignored)")
	fs.StringVar(&c.OperatorToken, "operator-token", "", "the hub operator's API token (prefer the environment: POSTHUB_OPERATOR_TOKEN)")
	fs.BoolVar(&c.Demo, "demo", false, "create demo organisations, systems and contacts, and print their tokens")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight requests get on shutdown")
	fs.IntVar(&c.MaxConns, "max-conns", limit.DefaultTotal(), "most open client connections; more are closed at once (default 4096, at most a quarter of the open-file limit; 0: no cap)")
	fs.IntVar(&c.MaxConnsPerAddr, "max-conns-per-addr", 128, "most open connections of one client address (an IPv6 /64); more are closed at once; those of -trusted-proxies count in -max-conns only (0: no cap)")
	fs.DurationVar(&c.BodyTimeout, "body-timeout", 30*time.Second, "how long a request body other than an upload (JSON, forms, logins) may take to arrive")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", time.Minute, "how long each 256 KiB of an answer may wait for the client to read it; a client that reads nothing for this long is disconnected (each piece waits afresh, so a long answer read steadily, at 4 KB/s or more by default, is never cut)")
	fs.Int64Var(&c.UploadMinRate, "upload-min-rate", 8<<10, "slowest accepted upload (MeMo, archive, contact import), in bytes per second averaged over -upload-window")
	fs.DurationVar(&c.UploadWindow, "upload-window", 30*time.Second, "the window -upload-min-rate is averaged over")
	fs.DurationVar(&c.UploadGrace, "upload-grace", time.Minute, "how long an upload may take for its first window's bytes")
	fs.DurationVar(&c.LingerTime, "linger-time", 2*time.Second, "after answering a request before its body arrived (a refusal), how long the hub goes on discarding the body before it closes, so that the client reads the answer rather than a reset (0: close at once)")
	fs.Int64Var(&c.LingerBytes, "linger-bytes", 8<<20, "most bytes of such a body the hub discards within -linger-time (0: close at once)")
	fs.StringVar(&c.EventlogKey, "eventlog-key", "", "ed25519 key (PEM) signing event-log checkpoints; created if absent (default on bolt: DATA/eventlog-ed25519.pem; on mongo unset = no checkpoints)")
	fs.DurationVar(&c.EventlogRetention, "eventlog-retention", 0, "delete event-log entries older than this (0 keeps them forever; otherwise at least 24h); the newest entry is always kept")
	fs.Uint64Var(&c.EventlogCheckpointEvery, "eventlog-checkpoint-every", 10_000, "seal a signed checkpoint after this many event-log entries")
	fs.DurationVar(&c.EventlogCheckpointInterval, "eventlog-checkpoint-interval", time.Minute, "... or after this long when anything new was sealed")
	fs.DurationVar(&c.EventlogSealerTTL, "eventlog-sealer-ttl", 30*time.Second, "lease of the one instance that seals the event log (renewed at a third of it; another instance takes over this long after the holder died)")
	fs.DurationVar(&c.EventlogPollInterval, "eventlog-poll-interval", 10*time.Second, "longest wait (at least 100ms) of the event-log sealer before it looks for entries appended through other instances (an append on this instance wakes it at once)")
	fs.DurationVar(&c.RepairInterval, "repair-interval", 5*time.Minute, "how often this instance undoes what a crash left half done (claims older than the pending grace) and folds the statistics counters")
	fs.DurationVar(&c.MailboxPurgeInterval, "mailbox-purge-interval", time.Hour, "how often letters deleted longer than -mailbox-retention ago are purged")
	fs.DurationVar(&c.ArchivePurgeInterval, "archive-purge-interval", time.Hour, "how often sent-archive copies older than -archive-retention are purged")
	fs.DurationVar(&c.NotifyInterval, "notify-interval", time.Minute, "how often notifications of new post are worked out and sent")
	fs.DurationVar(&c.OutboxInterval, "outbox-interval", 30*time.Second, "how often the print and SMS outboxes are looked at besides when this instance queues to them (items queued through another instance, or due for a retry, wait at most this long)")
	fs.IntVar(&c.GCPercent, "gc-percent", 400, "Go's garbage-collection target: the heap grows this many percent over what is live before a collection (Go's own default is 100; the GOGC environment variable, when set, wins over this default but not over the flag)")
	fs.StringVar(&c.DebugAddr, "debug-addr", "", "serve Go's pprof profiles on this address (keep it on loopback)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "", "serve /metrics on this address instead of the API's (open to whoever reaches it unless -metrics-token is set); empty: on the API, for the operator or the metrics token")
	fs.StringVar(&c.MetricsToken, "metrics-token", "", "a token that opens /metrics and nothing else, for the Prometheus scraper (prefer the environment: POSTHUB_METRICS_TOKEN)")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", 5*time.Minute, "how long a message fetched by a receiver system stays leased to it before it is fetchable again")
	fs.IntVar(&c.MaxAttempts, "max-attempts", 10, "fetches without acknowledgement after which a message is parked for an administrator")
	fs.DurationVar(&c.InactiveAfter, "inactive-after", 7*24*time.Hour, "flag a receiver system that has not fetched for this long while post waits")
	fs.DurationVar(&c.InactiveWatch, "inactive-watch-interval", time.Hour, "how often receiver systems are checked against -inactive-after")
	fs.DurationVar(&c.MailboxRetention, "mailbox-retention", 30*24*time.Hour, "how long a letter its owner deleted is kept before it is purged (the legal retention period; set it to what applies to you)")
	fs.BoolVar(&c.WebMailbox, "web-mailbox", false, "serve the reference web mailbox at /mailbox/ (on with -demo; it needs the demo viewing client)")
	fs.StringVar(&c.SMTPAddr, "smtp-addr", "", "SMTP server host:port for e-mail notifications (empty: no e-mail notifications)")
	fs.StringVar(&c.SMTPFrom, "smtp-from", "posthub@localhost", "sender address of e-mail notifications")
	fs.StringVar(&c.SMTPUser, "smtp-user", "", "SMTP user name (PLAIN auth, needs STARTTLS)")
	fs.StringVar(&c.SMTPPassword, "smtp-password", "", "SMTP password (prefer the environment: POSTHUB_SMTP_PASSWORD)")
	fs.BoolVar(&c.SMTPStartTLS, "smtp-starttls", false, "refuse to send unless the SMTP server offers STARTTLS (it is used whenever offered, and always with -smtp-user)")
	fs.StringVar(&c.OIDCProviders, "oidc-providers", "", "OpenID providers people log in through (portal, session API, web mailbox): a JSON list, or a file holding one (see README)")
	fs.BoolVar(&c.PasswordLogin, "password-login", true, "allow local password logins (the break-glass operator); false: OpenID Connect only")
	fs.StringVar(&c.PublicURL, "public-url", "", "the hub's external base URL (https://posthub.example.dk), for the redirect URIs registered at OpenID providers (empty: the request's host)")
	fs.BoolVar(&c.MailboxDemoLogin, "mailbox-demo-login", false, "offer the web mailbox's demo login, which lets anyone act as any person (on with -demo; never in production)")
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", 30*time.Second, "how often mailbox post is queued to newly connected receiver systems and system-fetch jobs resumed")
	fs.StringVar(&c.SF1601Prefix, "sf1601-prefix", "", "path prefix of the SF1601 routes (/service/KombiPostAfsend_1/…, /service/PostForespoerg_1/…); empty: at the hub's root")
	fs.Int64Var(&c.SF1601MaxPrint, "sf1601-max-print-size", api.DefaultMaxPrintSize, "largest fjernprint part (ForsendelseISamling) of a kombi_request in bytes; it is held in memory")
	fs.Int64Var(&c.SF1601MaxEnvelope, "sf1601-max-envelope", sf1601.DefaultMaxEnvelope, "bytes of a kombi_request outside its Message and fjernprint part (prolog, KombiValgKode, whitespace, comments)")
	fs.IntVar(&c.SF1601MaxDepth, "sf1601-max-depth", sf1601.DefaultMaxDepth, "how deep elements may nest in a kombi_request's Message and fjernprint part")
}

// secureCookies reports whether cookies are Secure (and the session's
// __Host- named): when the hub serves TLS itself, or is told it is behind
// a TLS-terminating proxy.
func (c *serveConfig) secureCookies() bool { return c.SecureCookies || c.TLSCert != "" }

// load parses args over the environment and the config file, and checks
// the result.
func (c *serveConfig) load(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	c.flags(fs)
	if err := loadConfig(fs, args, getenv); err != nil {
		return err
	}
	return c.check()
}

// flagError is a command line the flag package refused (and reported).
type flagError struct{ error }

func (e flagError) Unwrap() error { return e.error }

// parseConfig is loadConfig for a subcommand: it reports a configuration
// error and returns the exit code (2; 0 for -h), or -1 to go on.
func parseConfig(env *Env, fs *flag.FlagSet, args []string) int {
	err := loadConfig(fs, args, env.Getenv)
	var fe flagError
	switch {
	case err == nil:
		return -1
	case errors.Is(err, flag.ErrHelp):
		return 0
	case !errors.As(err, &fe): // the flag package has reported its own
		fmt.Fprintf(env.Stderr, "%s: %v\n", fs.Name(), err)
	}
	return 2
}

// settingNames is every setting of the hub: the flags of serve. A config
// file may hold any of them (each subcommand takes those it declares) and
// no other key.
var settingNames = sync.OnceValue(func() map[string]bool {
	var c serveConfig
	fs := flag.NewFlagSet("settings", flag.ContinueOnError)
	c.flags(fs)
	names := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { names[f.Name] = true })
	return names
})

// loadConfig is the one configuration path of every subcommand. It adds
// -config to fs, parses args, and then gives each setting of fs that the
// command line left unset its POSTHUB_<NAME> value, else its value in the
// -config file. Flags of fs that are not settings (a subcommand's own
// arguments) come from the command line only.
func loadConfig(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	configFile := fs.String("config", getenv("POSTHUB_CONFIG"), "optional JSON config file (keys are the flag names of posthub serve); also POSTHUB_CONFIG")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return flagError{err}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	settings := settingNames()
	if *configFile != "" {
		b, err := os.ReadFile(*configFile)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		var kv map[string]any
		if err := json.Unmarshal(b, &kv); err != nil {
			return fmt.Errorf("config file %s: %w", *configFile, err)
		}
		for k, v := range kv {
			if !settings[k] {
				return fmt.Errorf("config file %s: unknown setting %q", *configFile, k)
			}
			f := fs.Lookup(k)
			if f == nil || set[k] || getenv(envName(k)) != "" {
				continue // another subcommand's setting, or given otherwise
			}
			switch v.(type) {
			case []any, map[string]any:
				// A list or object setting (-oidc-providers) is given as JSON.
				b, _ := json.Marshal(v)
				v = string(b)
			}
			if err := f.Value.Set(fmt.Sprint(v)); err != nil {
				return fmt.Errorf("config file %s: %s: %w", *configFile, k, err)
			}
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || !settings[f.Name] || err != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s: %w", envName(f.Name), e)
			}
		}
	})
	return err
}

// check refuses settings that cannot work.
func (c *serveConfig) check() error {
	if err := c.storeConfig.check(); err != nil {
		return err
	}
	for _, iv := range []struct {
		flag string
		d    time.Duration
	}{{"repair-interval", c.RepairInterval}, {"mailbox-purge-interval", c.MailboxPurgeInterval}, {"archive-purge-interval", c.ArchivePurgeInterval},
		{"notify-interval", c.NotifyInterval}, {"outbox-interval", c.OutboxInterval}, {"reconcile-interval", c.ReconcileInterval},
		{"inactive-watch-interval", c.InactiveWatch}} {
		if iv.d <= 0 {
			return fmt.Errorf("-%s %s: must be positive", iv.flag, iv.d)
		}
	}
	switch {
	case c.ReceiptRetention < 0 || (c.ReceiptRetention > 0 && c.ReceiptRetention < 7*24*time.Hour):
		// A sender polls its receipts for the COMPLETED status, and a
		// mailbox move rerun after a crash reads it.
		return fmt.Errorf("-receipt-retention %s: 0 (keep until read) or at least 168h", c.ReceiptRetention)
	case c.PolicyPollInterval <= 0:
		return fmt.Errorf("-policy-poll-interval %s: must be positive", c.PolicyPollInterval)
	case c.EventlogRetention < 0 || (c.EventlogRetention > 0 && c.EventlogRetention < 24*time.Hour):
		// A resubmission restores a letter's first events for an hour after
		// its acceptance (hub.Ingest), and MongoDB's repair for its event
		// repair window: retention must not remove them sooner.
		return fmt.Errorf("-eventlog-retention %s: 0 (keep for ever) or at least 24h", c.EventlogRetention)
	case c.EventlogRetention > 0 && c.Metadata == "mongo" && c.MongoEventRepairWindow >= c.EventlogRetention:
		return fmt.Errorf("-mongo-event-repair-window %s: must be shorter than -eventlog-retention %s (the repair would restore events retention removed)", c.MongoEventRepairWindow, c.EventlogRetention)
	case c.EventlogPollInterval < 100*time.Millisecond:
		return fmt.Errorf("-eventlog-poll-interval %s: at least 100ms (the sealer's first wait after sealing)", c.EventlogPollInterval)
	case c.MaxConns < 0 || c.MaxConnsPerAddr < 0 || c.BodyTimeout < 0 || c.WriteTimeout < 0 || c.UploadMinRate < 0:
		return fmt.Errorf("-max-conns, -max-conns-per-addr, -body-timeout, -write-timeout and -upload-min-rate must not be negative (0 leaves the bound off)")
	case c.GCPercent < 25 || c.GCPercent > 10000:
		return fmt.Errorf("-gc-percent %d: between 25 and 10000", c.GCPercent)
	case c.LingerTime < 0 || c.LingerBytes < 0:
		return fmt.Errorf("-linger-time and -linger-bytes must not be negative (0: no lingering)")
	case c.UploadMinRate > 0 && (c.UploadWindow < time.Second || c.UploadGrace < c.UploadWindow):
		return fmt.Errorf("-upload-window must be at least 1s and -upload-grace at least -upload-window")
	case c.SF1601Prefix != "" && (!strings.HasPrefix(c.SF1601Prefix, "/") || strings.HasSuffix(c.SF1601Prefix, "/") || strings.ContainsAny(c.SF1601Prefix, ":*?# ")):
		return fmt.Errorf("-sf1601-prefix %q: a path such as /sf1601, starting with / and not ending with one", c.SF1601Prefix)
	}
	return nil
}

func envName(flagName string) string {
	return "POSTHUB_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}
