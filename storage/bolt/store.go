// Package bolt is posthub's embedded metadata store: one bbolt file holding
// organisations, systems, contact structure, messages (with small content
// inline), deliveries, leases, receipts, the event log, statistics, policies,
// users and locks.
//
// Guarantees:
//   - Durable: every write method returns nil only once its write is on
//     disk. PutMessage, PutMessageWith and AddDeliveries append to the
//     accept log (acceptlog.go: one fdatasync per group of waiting
//     writers) and are applied to bbolt in the background, replayed after
//     a crash; every other write commits one bbolt read-write transaction
//     and bbolt fsyncs the file on commit (NoSync is never set). Leases are
//     the exception: they live in memory (leases.go), since this process
//     alone arbitrates them, and a restart ends them all as an expiry would.
//   - Read your writes: a read sees every write that returned before it
//     began; reads of messages, deliveries, receipts and events wait for
//     the accept log's apply when it holds such writes.
//   - Atomic: each method's changes are one transaction, so PutMessage's
//     message, deliveries and receipt, an Ack's removals, or a SealEvents
//     batch become visible together or not at all, also across a crash.
//   - Exclusive: bbolt serialises writers, so a SealEvents or AcquireLock
//     decision is made against the latest committed state, and the lease
//     table's mutex does the same for Lease and ClaimNext; exactly one of
//     any number of concurrent callers wins. The file is
//     locked (flock) by one process; several hub instances need MongoDB.
//
// Group commit: writes are not committed one by one. A single committer
// goroutine takes every write request that is waiting, runs them in one
// transaction and commits (one fsync pair for the whole group); each caller
// returns when the commit it was part of is durable. With one writer there
// is no added delay; with many, the fsync cost is shared. A request whose
// function fails is taken out of the group (the transaction is rolled back
// and the rest re-run) and run alone afterwards, so it sees exactly its own
// error; request functions therefore must be safe to run more than once and
// must report results only through variables they overwrite.
//
// Layout: one bucket per entity keyed by its id, and index buckets whose
// keys are composed of NUL-separated strings, big-endian sequence numbers
// and sortable time stamps (see keys.go): token hash → system, queue+seq →
// delivery, sender+received → message, org+time → event, seq → event.
// What a letter writes under keys derived from its random UUID is kept
// beside its message in the messages bucket (its deliveries, its sender's
// receipt and its events' IDs; see keys.go, messages.go and events.go), so
// that applying or acknowledging it dirties that one page rather than one
// per bucket.
package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/posthub/posthub/hub"
)

var _ hub.Store = (*Store)(nil)

// Options tune the store. The zero value is a good default.
type Options struct {
	// Timeout bounds the wait for the file lock held by another process
	// (default 5s).
	Timeout time.Duration
	// MaxBatch caps how many write requests share one commit (default 256).
	MaxBatch int
	// InitialMmapSize pre-sizes the memory map so that readers are not
	// blocked by remapping while the file grows (default 256 MiB).
	InitialMmapSize int
	// NoAcceptLog writes messages and deliveries to bbolt directly instead
	// of through the accept log (acceptlog.go); for comparisons.
	NoAcceptLog bool
	// ApplyInterval is how long accept log entries gather before they are
	// applied to bbolt when no reader waits for them (default
	// DefaultApplyInterval).
	ApplyInterval time.Duration
	// Log receives the accept log's replay and apply reports (default
	// slog.Default()).
	Log *slog.Logger
}

// Store implements hub.Store on one bbolt file.
type Store struct {
	db       *bolt.DB
	leases   *leaseTable
	alog     *acceptLog               // nil with Options.NoAcceptLog
	tokens   readCache[hub.System]    // systems by token hash
	contacts readCache[cachedContact] // contacts by ID, found or not

	reqs     chan *request
	quit     chan struct{}
	done     chan struct{}
	maxBatch int
	close    sync.Once
}

type request struct {
	fn  func(*bolt.Tx) error
	err chan error
}

// Bucket names.
var (
	bOrgs        = []byte("orgs")
	bSystems     = []byte("systems")
	bSysToken    = []byte("systems_by_token")
	bSysOrg      = []byte("systems_by_org")
	bGroups      = []byte("contact_groups")
	bGroupOrg    = []byte("contact_groups_by_org")
	bPoints      = []byte("contact_points")
	bPointOrg    = []byte("contact_points_by_org")
	bPointCode   = []byte("contact_points_by_code")
	bRules       = []byte("routing_rules")
	bRuleOrg     = []byte("routing_rules_by_org")
	bContacts    = []byte("contacts")
	bMessages    = []byte("messages")
	bContent     = []byte("message_content")
	bMsgSender   = []byte("messages_by_sender")
	bDeliveries  = []byte("deliveries")
	bDelQueue    = []byte("deliveries_by_queue")
	bQueueCount  = []byte("queue_counts")
	bReceipts    = []byte("receipts")
	bRcptTime    = []byte("receipts_by_time")
	bPending     = []byte("events_pending")
	bEvents      = []byte("events")
	bEventIDs    = []byte("events_by_id")
	bEvTime      = []byte("events_by_time")
	bEvOrgTime   = []byte("events_by_org_time")
	bEvOrgSeq    = []byte("events_by_org_seq")
	bCounters    = []byte("counters")
	bPolicies    = []byte("policies")
	bUsers       = []byte("users")
	bSessionGen  = []byte("session_generations")
	bLocks       = []byte("locks")
	bMeta        = []byte("meta")
	allBuckets   = [][]byte{bOrgs, bSystems, bSysToken, bSysOrg, bGroups, bGroupOrg, bPoints, bPointOrg, bPointCode, bRules, bRuleOrg, bContacts, bMessages, bContent, bMsgSender, bDeliveries, bDelQueue, bQueueCount, bReceipts, bRcptTime, bPending, bEvents, bEventIDs, bEvTime, bEvOrgTime, bEvOrgSeq, bCounters, bPolicies, bUsers, bSessionGen, bLocks, bMeta}
	appendOnlyBk = [][]byte{bContent, bPending, bEvents, bEvTime, bDelQueue}
)

// Buckets of an earlier layout: leases (now in memory, see leaseTable),
// the per-message delivery index (now in bDeliveries, see indexKey) and
// the receipts-by-message index (now in bMessages, see receiptIndexKey).
var (
	oldLeases  = []byte("leases")
	oldDelMsg  = []byte("deliveries_by_message")
	oldRcptMsg = []byte("receipts_by_message")
)

// migrateDeliveryBuckets drops the leases of a file written by an earlier
// version (a restart ends every lease) and moves its per-message delivery
// index into the deliveries bucket and its receipts-by-message index into
// the messages bucket, in the transaction that opens the file: the change
// happens whole or not at all.
func migrateDeliveryBuckets(tx *bolt.Tx) error {
	move := func(name, into []byte, keyOf func(k []byte) []byte) error {
		old := tx.Bucket(name)
		if old == nil {
			return nil
		}
		b := tx.Bucket(into)
		if err := old.ForEach(func(k, v []byte) error { return b.Put(keyOf(k), bytes.Clone(v)) }); err != nil {
			return fmt.Errorf("migrate bucket %s: %w", name, err)
		}
		return tx.DeleteBucket(name)
	}
	if tx.Bucket(oldLeases) != nil {
		if err := tx.DeleteBucket(oldLeases); err != nil {
			return fmt.Errorf("drop bucket %s: %w", oldLeases, err)
		}
	}
	if err := move(oldDelMsg, bDeliveries, func(k []byte) []byte {
		i := bytes.IndexByte(k, 0) // messageUUID NUL deliveryID
		return indexKey(string(k[:i]), string(k[i+1:]))
	}); err != nil {
		return err
	}
	return move(oldRcptMsg, bMessages, func(k []byte) []byte {
		i := bytes.IndexByte(k, 0) // systemID NUL messageUUID
		return receiptIndexKey(string(k[i+1:]), string(k[:i]))
	})
}

// migrateDeliveriesBeside moves the deliveries that earlier versions kept
// in the deliveries bucket beside their messages, where deliveryPlace puts
// them, and drops their index entries (the keys beside the message are
// the index), in the transaction that opens the file: whole or not at all.
// Cheap once done: the bucket then holds only the deliveries whose IDs do
// not begin with their message's UUID, and only those of them shaped as
// if they did are decoded.
func migrateDeliveriesBeside(tx *bolt.Tx) error {
	db, mb := tx.Bucket(bDeliveries), tx.Bucket(bMessages)
	var moved [][]byte
	err := db.ForEach(func(k, v []byte) error {
		if id, ok := indexedDelivery(k); ok {
			uuid := k[:bytes.IndexByte(k, 0)]
			if b, _ := deliveryPlace(hub.Delivery{ID: string(id), MessageUUID: string(uuid)}); bytes.Equal(b, bMessages) {
				moved = append(moved, bytes.Clone(k))
			}
			return nil
		}
		if besideKey(string(k)) == nil {
			return nil
		}
		var d struct {
			MessageUUID string `json:"messageUUID"`
		}
		if err := jsonDecode(v, &d); err != nil {
			return err
		}
		b, nk := deliveryPlace(hub.Delivery{ID: string(k), MessageUUID: d.MessageUUID})
		if !bytes.Equal(b, bMessages) {
			return nil
		}
		moved = append(moved, bytes.Clone(k))
		return mb.Put(nk, bytes.Clone(v))
	})
	if err != nil {
		return fmt.Errorf("migrate deliveries: %w", err)
	}
	for _, k := range moved {
		if err := db.Delete(k); err != nil {
			return fmt.Errorf("migrate deliveries: %w", err)
		}
	}
	return nil
}

// layoutVersion is the file layout this version writes, recorded in the
// meta bucket on every open after the migrations above have run: 2 has
// deliveries, receipts and letters' event IDs beside their messages (no
// version recorded: earlier layouts, migrated on open). A file with a
// higher version is refused rather than misread — an older posthub would
// not find what a newer one moved. (Versions before 2 do not check it.)
const layoutVersion = 2

var layoutKey = []byte("layout.version")

// Open opens (creating if needed) the store file at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.InitialMmapSize <= 0 {
		opts.InitialMmapSize = 256 << 20
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, hub.Wrap(hub.Unavailable, err, "bolt: create directory")
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         opts.Timeout,
		InitialMmapSize: opts.InitialMmapSize,
		FreelistType:    bolt.FreelistMapType,
		// The freelist is rebuilt from the pages on open instead of being
		// written on every commit; durability is unaffected.
		NoFreelistSync: true,
	})
	if err != nil {
		return nil, hub.Wrap(hub.Unavailable, err, "bolt: open %s", path)
	}
	var newer uint64
	_ = db.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bMeta); m != nil {
			if v := m.Get(layoutKey); len(v) == 8 && readU64(v) > layoutVersion {
				newer = readU64(v)
			}
		}
		return nil
	})
	if newer != 0 {
		_ = db.Close()
		return nil, hub.Errorf(hub.Internal, "bolt: %s has layout %d, written by a newer posthub (this one reads layouts up to %d): run that version, or a backup taken before it", path, newer, layoutVersion)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		indexCodes := tx.Bucket(bPointCode) == nil
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		if indexCodes {
			if err := indexPointCodes(tx); err != nil {
				return err
			}
		}
		if err := migrateDeliveryBuckets(tx); err != nil {
			return err
		}
		if err := migrateDeliveriesBeside(tx); err != nil {
			return err
		}
		if err := migrateEventRefs(tx); err != nil {
			return err
		}
		if err := migrateReceiptsBeside(tx); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Put(layoutKey, u64(layoutVersion))
	}); err != nil {
		_ = db.Close()
		return nil, hub.Wrap(hub.Internal, err, "bolt: initialise %s", path)
	}
	if opts.NoAcceptLog && logDirInUse(path) {
		// Entries left by a run with the log must be applied first.
		_ = db.Close()
		return nil, hub.Errorf(hub.Unavailable, "bolt: %s holds accept log entries; open it once with the accept log", logDir(path))
	}
	s := &Store{db: db, leases: newLeaseTable(time.Now()), reqs: make(chan *request), quit: make(chan struct{}), done: make(chan struct{}), maxBatch: opts.MaxBatch}
	s.tokens.max, s.contacts.max = 10000, contactCacheMax
	go s.commitLoop()
	if opts.NoAcceptLog {
		return s, nil
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.ApplyInterval <= 0 {
		opts.ApplyInterval = DefaultApplyInterval
	}
	if s.alog, err = openAcceptLog(s, path, opts.ApplyInterval, opts.Log); err != nil {
		close(s.quit) // the replay needed the committer
		<-s.done
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// Close stops the committer after the group in progress and closes the file.
func (s *Store) Close() error {
	var err error
	s.close.Do(func() {
		if s.alog != nil {
			err = s.alog.close()
		}
		close(s.quit)
		<-s.done
		if cerr := s.db.Close(); err == nil {
			err = cerr
		}
	})
	if err != nil {
		return hub.Wrap(hub.Internal, err, "bolt: close")
	}
	return nil
}

// Ping reports Unavailable once the store is closed, and while the accept
// log cannot serve (an append failed and its tail could not be repaired,
// or applying it fails), with the reason.
func (s *Store) Ping(ctx context.Context) error {
	if s.alog != nil {
		if err := s.alog.health(); err != nil {
			return err
		}
	}
	return s.view(ctx, func(*bolt.Tx) error { return nil })
}

// update runs fn in a write transaction shared with other waiting writers
// (group commit) and returns once that transaction is durable. It first
// waits until every accept log entry durable by now is applied, so fn sees
// every message and delivery whose write has returned.
func (s *Store) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := s.barrier(ctx, true); err != nil {
		return err
	}
	return s.updateDirect(ctx, fn)
}

// view runs fn in a read transaction after the barrier of update.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := s.barrier(ctx, true); err != nil {
		return err
	}
	return s.viewDirect(ctx, fn)
}

// barrier waits for the accept log (see acceptLog.wait); background work
// that need not see the newest entries at once (the event sealer) passes
// urgent false and so does not cut the applier's batches short.
func (s *Store) barrier(ctx context.Context, urgent bool) error {
	if s.alog == nil {
		return nil
	}
	return s.alog.wait(ctx, urgent)
}

// updateDirect is update without the barrier, for data the accept log
// never writes (organisations, systems, contacts, policies, users, locks,
// mailbox state) and for the log's own apply.
func (s *Store) updateDirect(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	// Abandoned before the write is handed over: nothing of it stored.
	if err := ctx.Err(); err != nil {
		return hub.NotStored(hub.Wrap(hub.Unavailable, err, "bolt: write abandoned"))
	}
	r := &request{fn: fn, err: make(chan error, 1)}
	select {
	case s.reqs <- r:
	case <-s.quit:
		return errStoreClosed
	case <-ctx.Done():
		return hub.NotStored(hub.Wrap(hub.Unavailable, ctx.Err(), "bolt: write abandoned"))
	}
	// Once handed over the write may commit, so wait for its outcome.
	return edge(<-r.err)
}

// viewDirect is view without the barrier; see updateDirect.
func (s *Store) viewDirect(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return hub.Wrap(hub.Unavailable, err, "bolt: read abandoned")
	}
	return edge(s.db.View(fn))
}

func (s *Store) commitLoop() {
	defer close(s.done)
	for {
		var first *request
		select {
		case first = <-s.reqs:
		case <-s.quit:
			return
		}
		group := []*request{first}
	drain:
		for len(group) < s.maxBatch {
			select {
			case r := <-s.reqs:
				group = append(group, r)
			default:
				break drain
			}
		}
		s.commit(group)
	}
}

// commit runs the group in one transaction. A failing function is removed
// and the rest re-run (the failed attempt rolled everything back); failed
// requests then run alone so each sees its own outcome.
func (s *Store) commit(group []*request) {
	var alone []*request
	for len(group) > 0 {
		failed := -1
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i, r := range group {
				if err := safeRun(r.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			alone = append(alone, group[failed])
			group = append(group[:failed:failed], group[failed+1:]...)
			continue
		}
		for _, r := range group {
			r.err <- err
		}
		break
	}
	for _, r := range alone {
		r.err <- s.db.Update(func(tx *bolt.Tx) error { return safeRun(r.fn, tx) })
	}
}

func safeRun(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = hub.Errorf(hub.Internal, "bolt: panic in write: %v", p)
		}
	}()
	return fn(tx)
}

// edge translates errors at the package boundary: hub errors pass, a closed
// database is Unavailable, anything else is Internal.
func edge(err error) error {
	if err == nil {
		return nil
	}
	var he *hub.Error
	if errors.As(err, &he) {
		return err
	}
	if errors.Is(err, berrors.ErrDatabaseNotOpen) || errors.Is(err, berrors.ErrTimeout) {
		return hub.Wrap(hub.Unavailable, err, "bolt")
	}
	return hub.Wrap(hub.Internal, err, "bolt")
}

// bk returns the named bucket; buckets whose keys only grow get their pages
// filled completely, since nothing is inserted between existing keys.
func bk(tx *bolt.Tx, name []byte) *bolt.Bucket {
	b := tx.Bucket(name)
	for _, a := range appendOnlyBk {
		if &a[0] == &name[0] {
			b.FillPercent = 0.95
		}
	}
	return b
}

func notFound(what, id string) error { return hub.Errorf(hub.NotFound, "%s %q not found", what, id) }

func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("decode %s/%q: %w", "record", key, err)
	}
	return true, nil
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %q: %w", key, err)
	}
	return b.Put(key, raw)
}

func jsonDecode(raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	return nil
}
