package mongo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/posthub/posthub/hub"
)

// --- locks

// lockDoc is one link of a lock's chain: epochs under the unique index
// (n, e). The holder is whoever wrote the highest epoch, while it is
// unexpired; H == "" is a release. Taking, renewing and releasing all
// insert epoch head+1, which exactly one concurrent caller can do.
type lockDoc struct {
	ID  string    `bson:"_id"`
	N   string    `bson:"n"`
	E   int64     `bson:"e"`
	H   string    `bson:"h"`
	Exp time.Time `bson:"exp"`
}

// lockKeep is how many epochs below the head survive pruning. A caller
// that read a head this far back and inserts after pruning could recreate
// a pruned epoch; it then finds that it is not the head and reports false.
const lockKeep = 8

func (s *Store) lockHead(ctx context.Context, name string) (*lockDoc, error) {
	h, ok, err := findOne[lockDoc](ctx, s.locks, bson.M{"n": name}, options.FindOne().SetSort(sortBy("-e")))
	if err != nil || !ok {
		return nil, err
	}
	return &h, nil
}

func (s *Store) AcquireLock(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (bool, error) {
	if holder == "" {
		return false, hub.Errorf(hub.Invalid, "lock holder must not be empty")
	}
	h, err := s.lockHead(ctx, name)
	if err != nil {
		return false, err
	}
	if h != nil && h.H != "" && h.H != holder && h.Exp.After(now) {
		return false, nil
	}
	var e int64 = 1
	if h != nil {
		e = h.E + 1
	}
	_, err = s.locks.InsertOne(ctx, lockDoc{ID: fmt.Sprintf("%s#%016d", name, e), N: name, E: e, H: holder, Exp: now.Add(ttl)})
	if err != nil && !isDup(err) {
		return false, translate(err, "acquire lock %s", name)
	}
	// Won or lost the insert: the head says who holds the lock now (it may
	// be us, renewed concurrently by another goroutine of the same holder).
	h, err = s.lockHead(ctx, name)
	if err != nil || h == nil {
		return false, err
	}
	held := h.H == holder && h.Exp.After(now)
	if held && h.E == e && e > lockKeep {
		_, _ = s.locks.DeleteMany(ctx, bson.M{"n": name, "e": bson.M{"$lt": e - lockKeep}})
	}
	return held, nil
}

func (s *Store) ReleaseLock(ctx context.Context, name, holder string) error {
	h, err := s.lockHead(ctx, name)
	if err != nil || h == nil || h.H != holder {
		return err
	}
	_, err = s.locks.InsertOne(ctx, lockDoc{ID: fmt.Sprintf("%s#%016d", name, h.E+1), N: name, E: h.E + 1})
	if err != nil && !isDup(err) {
		return translate(err, "release lock %s", name)
	}
	return nil
}

// --- policies

type policyDoc struct {
	ID string         `bson:"_id"` // PolicyLine.Key()
	X  hub.PolicyLine `bson:"x"`
}

// stampDoc is the policy stamp: V is a random value written with every
// change (last writer wins, which is all a stamp needs), H the hash of the
// policy set it stands for (setHash).
//
// A line and the stamp are two documents, and FerretDB has no
// multi-document transactions, so a crash can fall between their writes;
// instances reload only when V changes (rbac.Enforcer). A change therefore
// writes the stamp first, with H the hash of the set it is about to leave,
// then the line, then — when the set is not what H says (a concurrent
// change) — the stamp again. Whoever loads the set (LoadPolicies) compares
// its hash with H: a set that differs is a change in flight or one a crash
// cut short, and the loader writes a stamp for the set it found, so every
// instance, itself included, loads again. So an instance dying at any
// point of a change leaves no instance caching a stale set past its next
// poll or two: died after the stamp and before the line, the loaders find
// the old set, restamp it and agree on it; died after the line, the first
// reload (the stamp moved before the line) finds the line. Only a loader
// that loaded in the instant between a stamp and its line, and loaded
// again before the line, while the writer died right after the line, is
// left to Repair, which restamps a set whose hash H does not match.
type stampDoc struct {
	ID string `bson:"_id"`
	V  string `bson:"v"`
	H  string `bson:"h"`
}

const stampID = "policy-stamp"

func (s *Store) LoadPolicies(ctx context.Context) ([]hub.PolicyLine, error) {
	var (
		docs []policyDoc
		st   stampDoc
	)
	if err := sideBySide(
		func() (err error) { docs, err = findAll[policyDoc](ctx, s.policies, bson.M{}); return err },
		func() (err error) { st, _, err = findOne[stampDoc](ctx, s.meta, bson.M{"_id": stampID}); return err },
	); err != nil {
		return nil, err
	}
	sort.Slice(docs, func(i, j int) bool { return docs[i].ID < docs[j].ID })
	out := make([]hub.PolicyLine, 0, len(docs))
	keys := make([]string, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.X)
		keys = append(keys, d.ID)
	}
	if h := setHash(keys); !stampFits(st, h) {
		// A change in flight or cut short: stamp what is there, so that
		// every instance loads it again (this one too: its caller keeps
		// the stamp it read before loading).
		if err := s.writeStamp(ctx, h); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// stampFits reports whether st stands for the set whose hash is h (no
// stamp stands for the empty set).
func stampFits(st stampDoc, h string) bool {
	return st.H == h || st.V == "" && h == emptyHash
}

func (s *Store) AddPolicy(ctx context.Context, p hub.PolicyLine) error {
	return s.changePolicy(ctx, p, true)
}

func (s *Store) RemovePolicy(ctx context.Context, p hub.PolicyLine) error {
	return s.changePolicy(ctx, p, false)
}

// changePolicy adds or removes line p: the stamp for the set it will
// leave, then the line, then the stamp again if the set is not that one
// (see stampDoc). Conflict when adding a line that exists, NotFound when
// removing one that does not; the unique insert and deleteOne decide
// between concurrent changes of one line.
func (s *Store) changePolicy(ctx context.Context, p hub.PolicyLine, add bool) error {
	if err := s.changePolicyFirst(ctx, p, add, true); err != nil {
		// The stamp may be written, and the line too (a failed write, or
		// a concurrent change of the line that won): settle, best effort.
		_ = s.settleStamp(ctx)
		return err
	}
	return s.settleStamp(ctx)
}

// changePolicyFirst is changePolicy up to its settle: the stamp and, with
// line, the line (without it, only the stamp: a test's instance that dies
// between the two).
func (s *Store) changePolicyFirst(ctx context.Context, p hub.PolicyLine, add, line bool) error {
	k := p.Key()
	keys, err := s.policyKeys(ctx)
	if err != nil {
		return err
	}
	at := slices.Index(keys, k)
	switch {
	case add && at >= 0:
		return hub.Errorf(hub.Conflict, "policy line exists")
	case !add && at < 0:
		return hub.Errorf(hub.NotFound, "policy line not found")
	case add:
		keys = append(keys, k)
		sort.Strings(keys)
	default:
		keys = slices.Delete(keys, at, at+1)
	}
	if err := s.writeStamp(ctx, setHash(keys)); err != nil || !line {
		return err
	}
	return s.writeLine(ctx, p, add)
}

// writeLine is the change's own write: insert or delete the line.
func (s *Store) writeLine(ctx context.Context, p hub.PolicyLine, add bool) error {
	if add {
		_, err := s.policies.InsertOne(ctx, policyDoc{ID: p.Key(), X: p})
		if isDup(err) {
			return hub.Wrap(hub.Conflict, err, "policy line exists")
		}
		return translate(err, "add policy")
	}
	res, err := s.policies.DeleteOne(ctx, bson.M{"_id": p.Key()})
	if err != nil {
		return translate(err, "remove policy")
	}
	if res.DeletedCount == 0 {
		// Absent, or a concurrent removal won the delete (one winner).
		return hub.Errorf(hub.NotFound, "policy line not found")
	}
	return nil
}

// settleStamp stamps the set again unless the stamp stands for it: a
// change or a loader's restamp ran beside this change.
func (s *Store) settleStamp(ctx context.Context) error {
	var (
		keys []string
		st   stampDoc
	)
	if err := sideBySide(
		func() (err error) { keys, err = s.policyKeys(ctx); return err },
		func() (err error) { st, _, err = findOne[stampDoc](ctx, s.meta, bson.M{"_id": stampID}); return err },
	); err != nil {
		return err
	}
	if h := setHash(keys); !stampFits(st, h) {
		return s.writeStamp(ctx, h)
	}
	return nil
}

// policyKeys returns the stored lines' keys, sorted.
func (s *Store) policyKeys(ctx context.Context) ([]string, error) {
	docs, err := findAll[policyDoc](ctx, s.policies, bson.M{}, options.Find().SetProjection(bson.M{"_id": 1}))
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(docs))
	for _, d := range docs {
		keys = append(keys, d.ID)
	}
	sort.Strings(keys)
	return keys, nil
}

// setHash is the hash of a policy set given its sorted keys.
func setHash(keys []string) string {
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Store) policyHash(ctx context.Context) (string, error) {
	keys, err := s.policyKeys(ctx)
	if err != nil {
		return "", err
	}
	return setHash(keys), nil
}

// writeStamp writes a new stamp standing for the set whose hash is h.
func (s *Store) writeStamp(ctx context.Context, h string) error {
	return upsert(ctx, s.meta, bson.M{"_id": stampID}, stampDoc{ID: stampID, V: randomID(), H: h}, "write policy stamp")
}

func (s *Store) PolicyStamp(ctx context.Context) (string, error) {
	d, _, err := findOne[stampDoc](ctx, s.meta, bson.M{"_id": stampID})
	return d.V, err
}

// --- repair

// Repair finishes or undoes what crashes left, in an order that is safe
// while other instances work:
//   - PutMessage claims older than the grace period are undone (their
//     deliveries and receipt first, the claim last), and fences older
//     than that are removed (with what is left of the fenced PutMessage);
//   - pending flags of committed messages' documents are cleared; pending
//     documents with no claim of their tx and older than the grace period
//     are removed;
//   - acknowledgements whose application a crash cut short (acked links
//     still pending after a minute) are applied again, and the lease chains
//     of acknowledged deliveries are removed after the grace period;
//   - lease links and park markers of deliveries that are gone without an
//     acknowledgement in their chain (the ack of an earlier version) are
//     removed;
//   - pending copies of sealed events are removed;
//   - counters are compacted (under the compactor lock);
//   - the policy stamp is rewritten if a change's stamp write was lost;
//   - token claims of systems that no longer carry the token are dropped;
//   - organisations' places (places.go) whose record never came or is gone
//     are freed after the grace period.
func (s *Store) Repair(ctx context.Context, now time.Time) error {
	wall := time.Now()
	cutoff := wall.Add(-s.grace)
	claims, err := findAll[msgDoc](ctx, s.messages, bson.M{"c": false, "claimed": bson.M{"$lt": cutoff}}, options.Find().SetProjection(bson.M{"tx": 1, "for": 1}))
	if err != nil {
		return err
	}
	for _, c := range claims {
		if c.For == "" {
			err = s.abort(ctx, c.ID, c.Tx)
		} else {
			err = s.removeFence(ctx, c)
		}
		if err != nil {
			return err
		}
	}
	if err := s.repairPending(ctx, cutoff); err != nil {
		return err
	}
	if err := s.repairPlaces(ctx, cutoff); err != nil {
		return err
	}
	if err := s.repairAcks(ctx, wall); err != nil {
		return err
	}
	if err := s.repairLeases(ctx, wall); err != nil {
		return err
	}
	pend, err := findAll[pendingDoc](ctx, s.pending, bson.M{}, options.Find().SetProjection(bson.M{"_id": 1}))
	if err != nil {
		return err
	}
	ids := make([]string, len(pend))
	for i, p := range pend {
		ids[i] = p.ID
	}
	if err := inSlices(ids, func(ids []string) error { return s.dropSealedPending(ctx, ids) }); err != nil {
		return err
	}
	if _, err := s.CompactCounters(ctx, now); err != nil {
		return err
	}
	h, err := s.policyHash(ctx)
	if err != nil {
		return err
	}
	if st, _, err := findOne[stampDoc](ctx, s.meta, bson.M{"_id": stampID}); err != nil {
		return err
	} else if !stampFits(st, h) {
		if err := s.writeStamp(ctx, h); err != nil {
			return err
		}
	}
	toks, err := findAll[tokenDoc](ctx, s.tokens, bson.M{})
	if err != nil {
		return err
	}
	for _, t := range toks {
		h, err := live[hub.System](ctx, s.systems, "system", t.System)
		if (hub.Is(err, hub.NotFound) || (err == nil && h.Tok != t.Hash)) && t.At.Before(cutoff) {
			if _, err := s.tokens.DeleteOne(ctx, bson.M{"_id": t.Hash, "sys": t.System, "at": t.At}); err != nil {
				return translate(err, "drop stale token claim")
			}
		} else if err != nil && !hub.Is(err, hub.NotFound) {
			return err
		}
	}
	_, err = s.repairEvents(ctx, wall)
	return err
}

var emptyHash = func() string { h := sha256.Sum256(nil); return hex.EncodeToString(h[:]) }()

func (s *Store) repairPending(ctx context.Context, cutoff time.Time) error {
	ds, err := findAll[delDoc](ctx, s.deliveries, bson.M{"p": true}, options.Find().SetProjection(bson.M{"msg": 1, "tx": 1, "p": 1, "pt": 1}))
	if err != nil {
		return err
	}
	rs, err := findAll[rcptDoc](ctx, s.receipts, bson.M{"p": true}, options.Find().SetProjection(bson.M{"msg": 1, "tx": 1, "p": 1, "pt": 1}))
	if err != nil {
		return err
	}
	type ref struct{ msg, tx string }
	seen := map[ref]time.Time{}
	note := func(msg, tx string, pt time.Time) {
		r := ref{msg, tx}
		if old, ok := seen[r]; !ok || pt.After(old) {
			seen[r] = pt
		}
	}
	for _, d := range ds {
		note(d.Msg, d.Tx, d.PT)
	}
	for _, r := range rs {
		note(r.Msg, r.Tx, r.PT)
	}
	for r, newest := range seen {
		m, ok, err := findOne[msgDoc](ctx, s.messages, bson.M{"_id": r.msg}, options.FindOne().SetProjection(bson.M{"tx": 1, "c": 1}))
		if err != nil {
			return err
		}
		switch {
		case ok && m.Tx == r.tx && m.C:
			s.settle(ctx, r.msg, r.tx)
		case ok && m.Tx == r.tx:
			// in flight, or undone with its claim above once old enough
		case newest.Before(cutoff):
			f := bson.M{"msg": r.msg, "tx": r.tx, "p": true}
			if _, err := s.deliveries.DeleteMany(ctx, f); err != nil {
				return translate(err, "remove orphaned deliveries")
			}
			if _, err := s.receipts.DeleteMany(ctx, f); err != nil {
				return translate(err, "remove orphaned receipts")
			}
		}
	}
	return nil
}

// repairLeases removes lease links and park markers whose delivery is gone
// (an Ack that crashed before removing them, or a Lease racing an Ack).
// It removes only the links it read, and only of chains whose every link
// is older than the grace period (a lease's expiry, an ack's time): a
// chain read while an Ack was under way gets the acked link after the
// read, which must stay so that a Lease that read the chain before it
// collides with it; and a Lease that read the chain before one of its
// links existed must not find that epoch free again.
func (s *Store) repairLeases(ctx context.Context, wall time.Time) error {
	ls, err := findAll[leaseDoc](ctx, s.leases, bson.M{"ga": bson.M{"$exists": false}}, options.Find().SetProjection(bson.M{"d": 1, "k": 1, "exp": 1, "at": 1}))
	if err != nil {
		return err
	}
	old := wall.Add(-s.grace)
	skip := map[string]bool{}
	for _, l := range ls {
		if l.K == kindAcked || l.Exp.After(old) || (l.At != nil && l.At.After(old)) {
			// acked: pending, repairAcks applies it; young: maybe in flight
			skip[l.D] = true
		}
	}
	links := map[string][]string{}
	for _, l := range ls {
		if !skip[l.D] {
			links[l.D] = append(links[l.D], l.ID)
		}
	}
	ps, err := findAll[parkDoc](ctx, s.parked, bson.M{}, options.Find().SetProjection(bson.M{"_id": 1}))
	if err != nil {
		return err
	}
	ids := map[string]bool{}
	for d := range links {
		ids[d] = true
	}
	for _, p := range ps {
		ids[p.ID] = true
	}
	return inSlices(sortedKeys(ids), func(chunk []string) error {
		exist, err := findAll[delDoc](ctx, s.deliveries, bson.M{"_id": bson.M{"$in": chunk}}, options.Find().SetProjection(bson.M{"_id": 1}))
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, d := range exist {
			have[d.ID] = true
		}
		var gone, goneLinks []string
		for _, id := range chunk {
			if !have[id] {
				gone = append(gone, id)
				goneLinks = append(goneLinks, links[id]...)
			}
		}
		if len(gone) == 0 {
			return nil
		}
		if len(goneLinks) > 0 {
			if _, err := s.leases.DeleteMany(ctx, bson.M{"_id": bson.M{"$in": goneLinks}}); err != nil {
				return translate(err, "remove leases of acknowledged deliveries")
			}
		}
		_, err = s.parked.DeleteMany(ctx, bson.M{"_id": bson.M{"$in": gone}})
		return translate(err, "remove park markers of acknowledged deliveries")
	})
}

// repairAcks applies again the acked links still pending a minute after
// their ack (the acknowledging instance died between the link and its
// application; every write of it is idempotent), then removes the chains
// of acknowledged deliveries whose grace period is over.
func (s *Store) repairAcks(ctx context.Context, wall time.Time) error {
	links, err := findAll[leaseDoc](ctx, s.leases, bson.M{"pend": true, "at": bson.M{"$lt": wall.Add(-time.Minute)}})
	if err != nil {
		return err
	}
	for _, l := range links {
		if l.K == kindAcked && l.At != nil {
			s.finishAck(ctx, l)
		}
	}
	_, err = s.leases.DeleteMany(ctx, bson.M{"ga": bson.M{"$lt": wall}})
	return translate(err, "remove retired lease chains")
}

// removeFence removes a fence older than the grace period, with whatever
// is left of the fenced PutMessage's documents: that PutMessage started
// before it was fenced, so it has given up by now rather than commit.
func (s *Store) removeFence(ctx context.Context, f msgDoc) error {
	if err := s.abortDocs(ctx, f.For, f.Tx); err != nil {
		return err
	}
	_, err := s.messages.DeleteOne(ctx, bson.M{"_id": f.ID, "c": false})
	return translate(err, "remove the fence of %s", f.For)
}
