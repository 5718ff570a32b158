package mongo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/posthub/posthub/hub"
)

var _ hub.Store = (*Store)(nil)

// Config says where the store lives.
type Config struct {
	// URI is a mongodb:// or mongodb+srv:// connection string.
	URI string
	// Database is the database holding posthub's collections.
	Database string
	// Instance names this hub instance as a lock holder (the counter
	// compactor); random when empty.
	Instance string
	// PendingGrace is how long an unfinished PutMessage may stay
	// unfinished before Repair undoes it (default 10 minutes). PutMessage
	// itself gives up (and undoes its writes) after half of it.
	PendingGrace time.Duration
	// Timeout bounds connecting and server selection (default 10 s).
	Timeout time.Duration
	// Log receives what the store cannot return to a caller (default
	// slog.Default()).
	Log *slog.Logger
	// Monitor, when set, observes every command the store sends (the
	// command budget tests count them with it; metrics or tracing could).
	Monitor *event.CommandMonitor
	// AuthCacheTTL is how long SystemByToken and AssertionKeys answers are
	// kept in this instance's memory (0: not at all). A change made through
	// another instance reaches this one within it (see authcache.go).
	AuthCacheTTL time.Duration
	// EventRepairWindow is how far back Repair looks for stored messages
	// whose first events and counters a crash lost (default 6 hours: a
	// letter delta's tombstone is kept twice as long); EventRepairMax
	// how many messages one Repair looks at, at most (default 100,000: Repair
	// runs every 5 minutes, so 333 letters/s, six times a 5-million-letter
	// day's average, before the cursor lags).
	// See eventrepair.go.
	EventRepairWindow time.Duration
	EventRepairMax    int
}

// Store is the hub.Store on MongoDB (or a MongoDB-wire server such as
// FerretDB). It is safe for concurrent use and for use by several hub
// instances sharing one database.
type Store struct {
	client   *mongo.Client
	db       *mongo.Database
	instance string
	grace    time.Duration
	logger   *slog.Logger

	eventRepairWindow time.Duration
	eventRepairMax    int

	orgs, systems, receivers, tokens, touches, groups *mongo.Collection
	points, codes, rules                              *mongo.Collection
	contacts, users, sessionGens, policies, meta      *mongo.Collection
	messages, deliveries, leases, parked, receipts    *mongo.Collection
	pending, events, counters, locks                  *mongo.Collection
	mbItems, consents, notifs, cursors, assertKeys    *mongo.Collection
	places                                            *mongo.Collection

	seqMu   sync.Mutex
	lastSeq int64

	auth *authCache
	// claims counts the ClaimNext calls running per queue (queues.go).
	claims sync.Map

	// afterFence, when set (by tests), runs after fenceUnfinished removed
	// the fenced documents: where another instance's fenced commit can
	// arrive.
	afterFence func(uuid string)
}

func (s *Store) log() *slog.Logger {
	if s.logger != nil {
		return s.logger
	}
	return slog.Default()
}

// Open connects, checks that the server answers and creates the indexes
// (idempotently).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.URI == "" || cfg.Database == "" {
		return nil, hub.Errorf(hub.Invalid, "mongo: URI and Database are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.PendingGrace <= 0 {
		cfg.PendingGrace = 10 * time.Minute
	}
	if cfg.Instance == "" {
		cfg.Instance = "mongo-" + randomID()
	}
	if cfg.EventRepairWindow <= 0 {
		cfg.EventRepairWindow = 6 * time.Hour
	}
	if cfg.EventRepairMax <= 0 {
		cfg.EventRepairMax = 100000
	}
	// Majority and journal: an acknowledged write survives the loss of the
	// primary and a crash of every node ("accepted means durable").
	wc := writeconcern.Majority()
	j := true
	wc.Journal = &j
	opts := options.Client().ApplyURI(cfg.URI).
		SetWriteConcern(wc).
		SetReadPreference(readpref.Primary()).
		SetServerSelectionTimeout(cfg.Timeout).
		SetConnectTimeout(cfg.Timeout)
	if cfg.Monitor != nil {
		opts.SetMonitor(cfg.Monitor)
	}
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, translate(err, "connect to MongoDB")
	}
	db := client.Database(cfg.Database)
	s := &Store{client: client, db: db, instance: cfg.Instance, grace: cfg.PendingGrace, logger: cfg.Log,
		auth: newAuthCache(cfg.AuthCacheTTL), eventRepairWindow: cfg.EventRepairWindow, eventRepairMax: cfg.EventRepairMax}
	for _, c := range []struct {
		p    **mongo.Collection
		name string
	}{
		{&s.orgs, "orgs"}, {&s.systems, "systems"}, {&s.receivers, "receivers"}, {&s.tokens, "system_tokens"}, {&s.touches, "system_fetches"},
		{&s.groups, "contact_groups"}, {&s.points, "contact_points"}, {&s.codes, "contact_point_codes"}, {&s.rules, "routing_rules"},
		{&s.contacts, "contacts"}, {&s.users, "users"}, {&s.sessionGens, "session_generations"}, {&s.policies, "policies"}, {&s.meta, "meta"},
		{&s.messages, "messages"}, {&s.deliveries, "deliveries"}, {&s.leases, "leases"}, {&s.parked, "parked"},
		{&s.receipts, "receipts"}, {&s.pending, "events_pending"}, {&s.events, "events"},
		{&s.counters, "counters"}, {&s.locks, "locks"},
		{&s.mbItems, "mailbox_items"}, {&s.consents, "consents"}, {&s.notifs, "notifications"},
		{&s.cursors, "cursors"}, {&s.assertKeys, "viewer_assertion_keys"}, {&s.places, "org_places"},
	} {
		*c.p = db.Collection(c.name)
	}
	if err := s.Ping(ctx); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	if err := s.createIndexes(ctx); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	return s, nil
}

func (s *Store) createIndexes(ctx context.Context) error {
	unique := options.Index().SetUnique(true)
	idx := sortBy // an index's keys read as a sort's
	versioned := []mongo.IndexModel{
		{Keys: idx("k", "rv"), Options: unique}, // Options set only for unique indexes
		{Keys: idx("org", "k")},
	}
	all := []struct {
		c  *mongo.Collection
		ms []mongo.IndexModel
	}{
		{s.orgs, versioned}, {s.groups, versioned}, {s.points, versioned}, {s.receivers, versioned},
		{s.systems, append(versioned, mongo.IndexModel{Keys: idx("org", "cs")})},
		{s.rules, []mongo.IndexModel{{Keys: idx("org", "prio")}}},
		{s.messages, []mongo.IndexModel{{Keys: idx("sender", "-rcv", "-_id")}, {Keys: idx("c", "claimed")},
			// A fence and the commit it fences off repeat a tx (messages.go).
			{Keys: idx("tx"), Options: unique}}},
		{s.deliveries, []mongo.IndexModel{{Keys: idx("q", "s")}, {Keys: idx("msg")}, {Keys: idx("p")}}},
		{s.leases, []mongo.IndexModel{{Keys: idx("d", "e"), Options: unique},
			// A queue's chains (read beside a page of it), an acknowledged
			// message's acks, pending acks and retired chains (Repair).
			{Keys: idx("q", "s", "d", "e")}, {Keys: idx("m")}, {Keys: idx("pend", "at")}, {Keys: idx("ga")}}},
		{s.parked, []mongo.IndexModel{{Keys: idx("q")}}},
		{s.receipts, []mongo.IndexModel{{Keys: idx("sys", "t")}, {Keys: idx("sys", "msg")}, {Keys: idx("p")}, {Keys: idx("msg")}}},
		{s.pending, []mongo.IndexModel{{Keys: idx("t", "ins")}}},
		{s.events, []mongo.IndexModel{
			{Keys: idx("eid"), Options: unique}, {Keys: idx("orgs", "t")}, {Keys: idx("t")},
			{Keys: idx("sys")}, {Keys: idx("msg")},
		}},
		{s.counters, []mongo.IndexModel{{Keys: idx("kind", "g", "e")}, {Keys: idx("items.o", "items.d")}}},
		{s.locks, []mongo.IndexModel{{Keys: idx("n", "e"), Options: unique}}},
		// The mailbox side (mailbox.go). Purge and due times are present
		// only while an item is deleted or a notification pending.
		{s.mbItems, []mongo.IndexModel{{Keys: idx("pa")}}},
		{s.consents, []mongo.IndexModel{{Keys: idx("c", "o"), Options: unique}, {Keys: idx("o", "g")}}},
		{s.notifs, []mongo.IndexModel{{Keys: idx("due")}}},
		{s.assertKeys, []mongo.IndexModel{{Keys: idx("sys", "kid"), Options: unique}}},
		{s.places, []mongo.IndexModel{{Keys: idx("kind", "org", "item")}}},
		{s.sessionGens, []mongo.IndexModel{{Keys: idx("u", "g"), Options: unique}}},
	}
	for _, x := range all {
		// Create only the missing ones: FerretDB v1.24 mishandles a
		// createIndexes of indexes that exist (it can mix up index
		// metadata or panic on the connection), and on MongoDB it is a
		// no-op anyway.
		specs, err := x.c.Indexes().ListSpecifications(ctx)
		if err != nil {
			return translate(err, "list indexes of %s", x.c.Name())
		}
		have := map[string]bool{}
		for _, sp := range specs {
			have[sp.Name] = true
		}
		for _, m := range x.ms {
			name := indexName(m.Keys.(bson.D))
			if have[name] {
				continue
			}
			o := options.Index().SetName(name)
			if m.Options != nil {
				o = options.Index().SetName(name).SetUnique(true)
			}
			if _, err := x.c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: m.Keys, Options: o}); err != nil {
				return translate(err, "create index %s on %s", name, x.c.Name())
			}
		}
	}
	return nil
}

func indexName(keys bson.D) string {
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s_%v", k.Key, k.Value))
	}
	return strings.Join(parts, "_")
}

// Ping reports whether the server answers (Unavailable if not).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx, readpref.Primary()); err != nil {
		return hub.Wrap(hub.Unavailable, err, "MongoDB does not answer")
	}
	return nil
}

// Close disconnects.
func (s *Store) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.client.Disconnect(ctx)
}

// Drop removes the store's database (tests and tooling).
func (s *Store) Drop(ctx context.Context) error {
	return translate(s.db.Drop(ctx), "drop database")
}

// translate maps a driver error to the hub's codes: duplicate key is
// Conflict, no document NotFound, network, timeouts and server selection
// Unavailable, anything else Internal.
func translate(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	var he *hub.Error
	if errors.As(err, &he) {
		return err
	}
	what := fmt.Sprintf(format, args...)
	var sse topology.ServerSelectionError
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return hub.Wrap(hub.NotFound, err, "%s", what)
	case mongo.IsDuplicateKeyError(err):
		return hub.Wrap(hub.Conflict, err, "%s", what)
	case mongo.IsNetworkError(err), mongo.IsTimeout(err), errors.As(err, &sse),
		errors.Is(err, mongo.ErrClientDisconnected), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled):
		return hub.Wrap(hub.Unavailable, err, "%s", what)
	}
	return hub.Wrap(hub.Internal, err, "%s", what)
}

func isDup(err error) bool { return err != nil && mongo.IsDuplicateKeyError(err) }

// onlyDups reports whether every write error of err is a duplicate key
// (unordered bulk inserts that skip existing documents).
func onlyDups(err error) bool {
	if err == nil {
		return true
	}
	var codes []int
	var bwe mongo.BulkWriteException
	var we mongo.WriteException
	switch {
	case errors.As(err, &bwe):
		if bwe.WriteConcernError != nil {
			return false
		}
		for _, e := range bwe.WriteErrors {
			codes = append(codes, e.Code)
		}
	case errors.As(err, &we):
		if we.WriteConcernError != nil {
			return false
		}
		for _, e := range we.WriteErrors {
			codes = append(codes, e.Code)
		}
	}
	for _, c := range codes {
		if c != 11000 && c != 11001 && c != 12582 {
			return false
		}
	}
	return len(codes) > 0
}

// dupIndexes returns the indexes of the documents an unordered bulk write
// refused for a duplicate key, and false when it failed otherwise.
func dupIndexes(err error) ([]int, bool) {
	var bwe mongo.BulkWriteException
	if !onlyDups(err) || !errors.As(err, &bwe) {
		return nil, false
	}
	out := make([]int, 0, len(bwe.WriteErrors))
	for _, e := range bwe.WriteErrors {
		out = append(out, e.Index)
	}
	return out, true
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// nextSeq returns a delivery sequence number: the wall clock in
// microseconds, forced strictly above the last one this Store handed out.
// See the package doc for why this is not a counter document.
func (s *Store) nextSeq() int64 {
	s.seqMu.Lock()
	defer s.seqMu.Unlock()
	v := time.Now().UnixMicro()
	if v <= s.lastSeq {
		v = s.lastSeq + 1
	}
	s.lastSeq = v
	return v
}

// findAll runs a find and decodes every document.
func findAll[T any](ctx context.Context, c *mongo.Collection, filter any, opts ...options.Lister[options.FindOptions]) ([]T, error) {
	cur, err := c.Find(ctx, filter, opts...)
	if err != nil {
		return nil, translate(err, "find in %s", c.Name())
	}
	var out []T
	if err := cur.All(ctx, &out); err != nil {
		return nil, translate(err, "read from %s", c.Name())
	}
	return out, nil
}

// maxIn bounds the values of one $in list: a longer list is sent in slices
// of it, keeping each command far below MongoDB's 16 MiB.
const maxIn = 1000

// inSlices calls fn with consecutive slices of xs of at most maxIn values,
// stopping at the first error.
func inSlices[T any](xs []T, fn func([]T) error) error {
	for i := 0; i < len(xs); i += maxIn {
		if err := fn(xs[i:min(i+maxIn, len(xs))]); err != nil {
			return err
		}
	}
	return nil
}

// findByIDs reads the documents whose _id is one of ids (and that match
// more, when given), maxIn at a time, keyed as pick says.
func findByIDs[D, V any](ctx context.Context, c *mongo.Collection, ids []string, more bson.M, pick func(D) (string, V),
	opts ...options.Lister[options.FindOptions]) (map[string]V, error) {
	out := make(map[string]V, len(ids))
	err := inSlices(ids, func(ids []string) error {
		f := bson.M{"_id": bson.M{"$in": ids}}
		for k, v := range more {
			f[k] = v
		}
		docs, err := findAll[D](ctx, c, f, opts...)
		for _, d := range docs {
			k, v := pick(d)
			out[k] = v
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// findOne decodes one document; ok is false when none matches.
func findOne[T any](ctx context.Context, c *mongo.Collection, filter any, opts ...options.Lister[options.FindOneOptions]) (T, bool, error) {
	var v T
	err := c.FindOne(ctx, filter, opts...).Decode(&v)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return v, false, nil
	}
	if err != nil {
		return v, false, translate(err, "find in %s", c.Name())
	}
	return v, true, nil
}

// count counts matching documents with the count command, which FerretDB
// implements natively (its aggregation $sum is not to be trusted).
func (s *Store) count(ctx context.Context, c *mongo.Collection, filter any) (int64, error) {
	var res struct {
		N int64 `bson:"n"`
	}
	err := s.db.RunCommand(ctx, bson.D{{Key: "count", Value: c.Name()}, {Key: "query", Value: filter}}).Decode(&res)
	if err != nil {
		return 0, translate(err, "count %s", c.Name())
	}
	return res.N, nil
}

func sortBy(keys ...string) bson.D {
	var d bson.D
	for _, k := range keys {
		if strings.HasPrefix(k, "-") {
			d = append(d, bson.E{Key: k[1:], Value: -1})
		} else {
			d = append(d, bson.E{Key: k, Value: 1})
		}
	}
	return d
}
