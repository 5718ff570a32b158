package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posthub/posthub/hub"
)

func counterKey(k hub.CounterKey) []byte {
	return key(k.Org, k.Day, k.MessageType, k.Channel, k.SystemID, k.Direction, k.SizeBucket)
}

func (s *Store) AddCounters(ctx context.Context, deltas []hub.Counter) error {
	return s.update(ctx, func(tx *bolt.Tx) error { return addCounters(tx, deltas) })
}

func addCounters(tx *bolt.Tx, deltas []hub.Counter) error {
	b := bk(tx, bCounters)
	g := getters{tx: tx}
	for _, d := range deltas {
		k := counterKey(d.Key)
		v := make([]byte, 16)
		if old := g.get(bCounters, k); len(old) == 16 {
			copy(v, old)
		}
		binary.BigEndian.PutUint64(v, uint64(int64(binary.BigEndian.Uint64(v))+d.Count))
		binary.BigEndian.PutUint64(v[8:], uint64(int64(binary.BigEndian.Uint64(v[8:]))+d.Bytes))
		if err := b.Put(k, v); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) ReadCounters(ctx context.Context, q hub.CounterQuery) ([]hub.Counter, error) {
	var out []hub.Counter
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bCounters).Cursor()
		var p []byte
		if q.Org != "" {
			p = prefix(q.Org)
		}
		start := p
		if q.Org != "" && q.FromDay != "" {
			start = cat(p, []byte(q.FromDay))
		}
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			parts := strings.Split(string(k), "\x00")
			if len(parts) != 7 || len(v) != 16 {
				continue
			}
			day := parts[1]
			if q.ToDay != "" && day > q.ToDay {
				if q.Org != "" {
					break
				}
				continue
			}
			if q.FromDay != "" && day < q.FromDay {
				continue
			}
			out = append(out, hub.Counter{
				Key:   hub.CounterKey{Org: parts[0], Day: day, MessageType: parts[2], Channel: parts[3], SystemID: parts[4], Direction: parts[5], SizeBucket: parts[6]},
				Count: int64(binary.BigEndian.Uint64(v)),
				Bytes: int64(binary.BigEndian.Uint64(v[8:])),
			})
		}
		return nil
	})
	return out, err
}

var policyStampKey = []byte("policyStamp")

func bumpPolicyStamp(tx *bolt.Tx) error {
	b := bk(tx, bMeta)
	var n uint64
	if v := b.Get(policyStampKey); len(v) == 8 {
		n = readU64(v)
	}
	return b.Put(policyStampKey, u64(n+1))
}

func (s *Store) LoadPolicies(ctx context.Context) ([]hub.PolicyLine, error) {
	var out []hub.PolicyLine
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bPolicies).ForEach(func(_, v []byte) error {
			var p hub.PolicyLine
			if err := jsonDecode(v, &p); err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
	})
	return out, err
}

func (s *Store) AddPolicy(ctx context.Context, p hub.PolicyLine) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b := bk(tx, bPolicies)
		k := []byte(p.Key())
		if b.Get(k) != nil {
			return hub.Errorf(hub.Conflict, "policy line exists")
		}
		if err := putJSON(b, k, p); err != nil {
			return err
		}
		return bumpPolicyStamp(tx)
	})
}

func (s *Store) RemovePolicy(ctx context.Context, p hub.PolicyLine) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b := bk(tx, bPolicies)
		k := []byte(p.Key())
		if b.Get(k) == nil {
			return hub.Errorf(hub.NotFound, "policy line not found")
		}
		if err := b.Delete(k); err != nil {
			return err
		}
		return bumpPolicyStamp(tx)
	})
}

func (s *Store) PolicyStamp(ctx context.Context) (string, error) {
	var stamp string
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		var n uint64
		if v := tx.Bucket(bMeta).Get(policyStampKey); len(v) == 8 {
			n = readU64(v)
		}
		stamp = strconv.FormatUint(n, 10)
		return nil
	})
	return stamp, err
}

type userRec struct {
	hub.User
	PasswordHash string `json:"passwordHash,omitempty"`
}

func (r userRec) value() hub.User {
	u := r.User
	u.PasswordHash = r.PasswordHash
	return u
}

func (s *Store) CreateUser(ctx context.Context, u hub.User) error {
	if u.ID == "" {
		return hub.Errorf(hub.Invalid, "user without ID")
	}
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b := bk(tx, bUsers)
		if b.Get([]byte(u.ID)) != nil {
			return hub.Errorf(hub.Conflict, "user %s exists", u.ID)
		}
		return putJSON(b, []byte(u.ID), userRec{User: u, PasswordHash: u.PasswordHash})
	})
}

func (s *Store) PutUser(ctx context.Context, u hub.User) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b := bk(tx, bUsers)
		if b.Get([]byte(u.ID)) == nil {
			return notFound("user", u.ID)
		}
		return putJSON(b, []byte(u.ID), userRec{User: u, PasswordHash: u.PasswordHash})
	})
}

func (s *Store) GetUser(ctx context.Context, id string) (hub.User, error) {
	var r userRec
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bUsers), []byte(id), &r)
		if err == nil && !ok {
			err = notFound("user", id)
		}
		return err
	})
	return r.value(), err
}

func (s *Store) ListUsers(ctx context.Context) ([]hub.User, error) {
	var out []hub.User
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bUsers).ForEach(func(_, v []byte) error {
			var r userRec
			if err := jsonDecode(v, &r); err != nil {
				return err
			}
			out = append(out, r.value())
			return nil
		})
	})
	return out, err
}

// SessionGeneration reads the user's generation (absent: 0).
func (s *Store) SessionGeneration(ctx context.Context, id string) (uint64, error) {
	var g uint64
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		if v := tx.Bucket(bSessionGen).Get([]byte(id)); len(v) == 8 {
			g = readU64(v)
		}
		return nil
	})
	return g, err
}

// BumpSessionGeneration increments the user's generation in one write
// transaction, so concurrent bumps are serialised.
func (s *Store) BumpSessionGeneration(ctx context.Context, id string) (uint64, error) {
	if id == "" {
		return 0, hub.Errorf(hub.Invalid, "session generation of no user")
	}
	var g uint64
	err := s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b := bk(tx, bSessionGen)
		if v := b.Get([]byte(id)); len(v) == 8 {
			g = readU64(v)
		}
		g++
		return b.Put([]byte(id), u64(g))
	})
	return g, err
}

type lockRec struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

func (s *Store) AcquireLock(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (bool, error) {
	if name == "" || holder == "" {
		return false, hub.Errorf(hub.Invalid, "lock needs a name and a holder")
	}
	var got bool
	err := s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b := bk(tx, bLocks)
		var cur lockRec
		ok, err := getJSON(b, []byte(name), &cur)
		if err != nil {
			return err
		}
		if ok && cur.Holder != holder && now.Before(cur.Expires) {
			got = false
			return nil
		}
		got = true
		return putJSON(b, []byte(name), lockRec{Holder: holder, Expires: now.Add(ttl)})
	})
	return got, err
}

func (s *Store) ReleaseLock(ctx context.Context, name, holder string) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b := bk(tx, bLocks)
		var cur lockRec
		ok, err := getJSON(b, []byte(name), &cur)
		if err != nil || !ok || cur.Holder != holder {
			return err
		}
		return b.Delete([]byte(name))
	})
}

// Repair drops index entries and leases whose delivery is gone and
// recomputes the per-queue counts. bbolt commits atomically, so a crash
// leaves nothing half-written; this guards against bugs, not crashes. It
// looks in a read transaction first and writes only when it found a fault.
func (s *Store) Repair(ctx context.Context, now time.Time) error {
	var faulty bool
	if err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		faulty, err = repair(tx, false)
		return err
	}); err != nil || !faulty {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		_, err := repair(tx, true)
		return err
	})
}

func repair(tx *bolt.Tx, fix bool) (bool, error) {
	db := tx.Bucket(bDeliveries)
	counts := map[string]int64{}
	var bad []func() error
	// Every delivery has its queue entry, written and removed with it, so
	// the queue index lists them all, wherever they are stored (most are
	// beside their messages, see deliveryPlace).
	if err := tx.Bucket(bDelQueue).ForEach(func(k, v []byte) error {
		raw := deliveryRaw(tx, string(v))
		if raw == nil {
			k := bytes.Clone(k)
			bad = append(bad, func() error { return tx.Bucket(bDelQueue).Delete(k) })
			return nil
		}
		var d struct {
			Queue string            `json:"queue"`
			Seq   int64             `json:"seq"`
			State hub.DeliveryState `json:"state"`
		}
		if err := jsonDecode(raw, &d); err != nil {
			return err
		}
		if d.State != hub.DeliveryParked && bytes.Equal(k, cat(prefix(d.Queue), u64(uint64(d.Seq)))) {
			counts[d.Queue]++
		}
		return nil
	}); err != nil {
		return false, err
	}
	// Index entries (of the deliveries stored in their own bucket) whose
	// delivery is gone.
	if err := db.ForEach(func(k, _ []byte) error {
		if id, ok := indexedDelivery(k); ok && db.Get(id) == nil {
			k := bytes.Clone(k)
			bad = append(bad, func() error { return db.Delete(k) })
		}
		return nil
	}); err != nil {
		return false, err
	}
	qc := tx.Bucket(bQueueCount)
	if err := qc.ForEach(func(k, v []byte) error {
		if int64(readU64(v)) != counts[string(k)] {
			bad = append(bad, nil)
		}
		return nil
	}); err != nil {
		return false, err
	}
	for q, n := range counts {
		if v := qc.Get([]byte(q)); v == nil || int64(readU64(v)) != n {
			bad = append(bad, nil)
		}
	}
	if !fix || len(bad) == 0 {
		return len(bad) > 0, nil
	}
	for _, f := range bad {
		if f != nil {
			if err := f(); err != nil {
				return true, err
			}
		}
	}
	if err := deletePrefix(qc, nil); err != nil {
		return true, err
	}
	for q, n := range counts {
		if err := qc.Put([]byte(q), u64(uint64(n))); err != nil {
			return true, err
		}
	}
	return true, nil
}
