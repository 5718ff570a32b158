package eventlog

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/posthub/posthub/hub"
)

// SealerOptions tune a Sealer. The zero value is a good default (no
// checkpoints, no retention).
type SealerOptions struct {
	// Holder names this sealer in the lease (default "sealer-<random>").
	Holder string
	// Batch caps the entries sealed in one SealEvents (default 2000), and
	// BatchBytes their encoded size (default 4 MiB; a batch always takes at
	// least one entry).
	Batch      int
	BatchBytes int
	// Wake, when set, is signalled after events were appended on this
	// instance (Log.Appended): the sealer then seals at once instead of
	// waiting for its next poll.
	Wake <-chan struct{}
	// Idle is how long Run waits after sealing before it looks at the store
	// again when nothing woke it (default 100ms); each empty look doubles
	// the wait, up to IdleMax (default 5s). Events appended by other
	// instances wait at most IdleMax to be sealed.
	Idle    time.Duration
	IdleMax time.Duration
	// LockTTL is the lease's length (default 30s). The holder renews it
	// after a third of it; another instance takes over at most this long
	// after the holder stopped.
	LockTTL time.Duration
	// Key signs checkpoints; nil disables them.
	Key ed25519.PrivateKey
	// CheckpointEvery seals a checkpoint after this many entries (default
	// 10,000) and CheckpointInterval after this long if anything new was
	// sealed (default 1 minute).
	CheckpointEvery    uint64
	CheckpointInterval time.Duration
	// Retention deletes entries older than this (0 keeps everything);
	// checked every RetentionInterval (default 1 hour) by the lease holder.
	Retention         time.Duration
	RetentionInterval time.Duration
	// Notify is called after every sealed batch (Log.Notify).
	Notify func()
	Log    *slog.Logger
	Now    func() time.Time
}

// SealerStore is what a Sealer needs of the store (hub.EventStore has
// it): the pending entries, the sealer lease that fences the seal, the
// last checkpoint, and retention.
type SealerStore interface {
	PendingEvents(ctx context.Context, limit int) ([]hub.Event, error)
	LeaseSealer(ctx context.Context, l hub.SealerLease, ttl time.Duration, now time.Time) (hub.SealerLease, error)
	ReleaseSealer(ctx context.Context, l hub.SealerLease) error
	// SealEvents returns Conflict, storing nothing, when l is no longer the
	// current lease.
	SealEvents(ctx context.Context, l hub.SealerLease, evs []hub.Event) (hub.SealerLease, error)
	Querier
	Scanner // retention's look-up of the first entry it keeps (no query bound)
	RetentionStore
}

// RetentionStore is what Retain needs: the chain's head, which it never
// deletes, and deleting sealed entries older than a time.
type RetentionStore interface {
	// LastSealed returns NotFound when nothing is sealed.
	LastSealed(ctx context.Context) (hub.Event, error)
	DeleteEventsBefore(ctx context.Context, t time.Time) (int64, error)
}

// Sealer seals pending entries into the hash chain. Any number of sealers
// may run (one per hub instance); the store's sealer lease makes one of
// them do the work at a time, and fences it: a sealer whose lease another
// took (it paused past its expiry) gets Conflict from SealEvents and has
// written nothing, so the chain never forks and never loses an entry.
type Sealer struct {
	store SealerStore
	opts  SealerOptions

	// The lease as the store last returned it: Epoch 0 when not held (then
	// Holder and Expires say whose it is, if known).
	lease   hub.SealerLease
	renewed time.Time // when this sealer last took or renewed it
	// Checkpoint state, loaded when the lease is taken; valid while haveCP.
	haveCP       bool
	cpSeq        uint64
	cpTime       time.Time
	lastRetained time.Time
}

// NewSealer returns a sealer over store.
func NewSealer(store SealerStore, opts SealerOptions) *Sealer {
	if opts.Holder == "" {
		opts.Holder = "sealer-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	if opts.Batch <= 0 {
		opts.Batch = 2000
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 4 << 20
	}
	if opts.Idle <= 0 {
		opts.Idle = 100 * time.Millisecond
	}
	if opts.IdleMax < opts.Idle {
		opts.IdleMax = max(opts.Idle, 5*time.Second)
	}
	if opts.LockTTL <= 0 {
		opts.LockTTL = 30 * time.Second
	}
	if opts.CheckpointEvery == 0 {
		opts.CheckpointEvery = 10_000
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = time.Minute
	}
	if opts.RetentionInterval <= 0 {
		opts.RetentionInterval = time.Hour
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Sealer{store: store, opts: opts}
}

// Run seals until ctx ends, then releases the lease. It looks at the store
// only when there is a reason: an append on this instance (Wake), a poll
// for other instances' appends that backs off from Idle to IdleMax while
// nothing comes, the lease's renewal at a third of its length, a
// checkpoint or retention falling due, or, when another instance holds the
// lease, that lease's expiry.
func (s *Sealer) Run(ctx context.Context) {
	defer func() {
		if s.lease.Epoch != 0 {
			_ = s.store.ReleaseSealer(context.Background(), s.lease)
		}
	}()
	poll := s.opts.Idle
	for ctx.Err() == nil {
		n, err := s.Step(ctx)
		if err != nil && ctx.Err() == nil {
			s.opts.Log.Warn("eventlog: sealing", "holder", s.opts.Holder, "error", err)
		}
		if n > 0 && err == nil {
			poll = s.opts.Idle
			continue
		}
		wait := s.nextLook(poll, err != nil)
		if s.lease.Epoch != 0 {
			poll = min(2*poll, s.opts.IdleMax)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-s.opts.Wake:
			poll = s.opts.Idle
		}
		t.Stop()
	}
}

// nextLook is how long Run may wait before its next Step.
func (s *Sealer) nextLook(poll time.Duration, failed bool) time.Duration {
	now := s.opts.Now()
	if s.lease.Epoch == 0 {
		if failed || s.lease.Holder == "" {
			return poll
		}
		// Another's lease: look again when it would have expired.
		return min(max(s.lease.Expires.Sub(now)+time.Millisecond, s.opts.Idle), s.opts.LockTTL)
	}
	wait := min(poll, s.renewed.Add(s.opts.LockTTL/3).Sub(now))
	if s.opts.Key != nil && s.haveCP && s.lease.Seq > s.cpSeq {
		wait = min(wait, s.cpTime.Add(s.opts.CheckpointInterval).Sub(now))
	}
	if s.opts.Retention > 0 {
		wait = min(wait, s.lastRetained.Add(s.opts.RetentionInterval).Sub(now))
	}
	return max(wait, 0)
}

// Step takes the lease, or renews it when a third of it has passed, and
// while held seals one batch (plus a checkpoint when one is due) and runs
// retention when due. It returns the number of entries sealed (0 when
// another instance holds the lease or nothing was pending). While another
// holder's lease is live by this instance's clock it asks the store
// nothing.
func (s *Sealer) Step(ctx context.Context) (int, error) {
	now := s.opts.Now()
	if s.lease.Epoch == 0 && s.lease.Holder != "" && s.lease.Holder != s.opts.Holder && now.Before(s.lease.Expires) {
		return 0, nil
	}
	if s.lease.Epoch == 0 || now.Sub(s.renewed) >= s.opts.LockTTL/3 {
		prev := s.lease.Epoch
		l, err := s.store.LeaseSealer(ctx, hub.SealerLease{Holder: s.opts.Holder, Epoch: s.lease.Epoch, Seq: s.lease.Seq, Hash: s.lease.Hash},
			s.opts.LockTTL, now)
		if err != nil {
			s.lease = hub.SealerLease{}
			return 0, err
		}
		s.lease, s.renewed = l, now
		if l.Epoch == 0 || l.Epoch != prev {
			s.haveCP = false // a new holding: the head may have moved
		}
		if l.Epoch == 0 {
			return 0, nil
		}
	}
	n, err := s.sealBatch(ctx)
	if err == nil && s.opts.Retention > 0 && s.opts.Now().Sub(s.lastRetained) >= s.opts.RetentionInterval {
		s.lastRetained = s.opts.Now()
		if rerr := s.retain(ctx, s.opts.Now().Add(-s.opts.Retention)); rerr != nil {
			s.opts.Log.Warn("eventlog: retention", "error", rerr)
		}
	}
	return n, err
}

// sealBatch seals one batch of pending entries under the lease. A Conflict
// from the store (the lease was lost, or a seal of the previous holder
// was still landing) drops the lease: the next Step takes it again if it
// is free, with the head as it then is.
func (s *Sealer) sealBatch(ctx context.Context) (int, error) {
	if err := s.loadCheckpoint(ctx); err != nil {
		return 0, err
	}
	n := s.opts.Batch
	if s.opts.Key != nil {
		// End the batch where a checkpoint is due, so that one follows
		// exactly every CheckpointEvery entries.
		if since := s.lease.Seq - s.cpSeq; since < s.opts.CheckpointEvery {
			n = min(n, int(s.opts.CheckpointEvery-since))
		}
	}
	pend, err := s.store.PendingEvents(ctx, n)
	if err != nil {
		return 0, err
	}
	now := s.opts.Now()
	seq, prev := s.lease.Seq, s.lease.Hash
	if seq == 0 {
		prev = Genesis
	}
	batch := make([]hub.Event, 0, len(pend)+1)
	size := 0
	for _, ev := range pend {
		ev.Time = CanonicalTime(ev.Time)
		ev.Seq, ev.PrevHash = seq+1, prev
		enc := Encode(ev) // once: its length bounds the batch, its hash chains it
		if size += len(enc); size > s.opts.BatchBytes && len(batch) > 0 {
			break
		}
		seq++
		ev.Hash = hashOf(enc)
		prev = ev.Hash
		batch = append(batch, ev)
	}
	if s.checkpointDue(seq, now) {
		var last hub.Event
		if len(batch) > 0 {
			last = batch[len(batch)-1]
		} else {
			last = hub.Event{Seq: seq, Hash: prev}
		}
		cp := Checkpoint{Seq: last.Seq, Hash: last.Hash, Time: CanonicalTime(now)}
		cp.Sign(s.opts.Key)
		seq++
		ev := cp.Event(s.opts.Holder)
		ev.Seq, ev.PrevHash = seq, prev
		ev.Hash = Hash(ev)
		batch = append(batch, ev)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	l, err := s.store.SealEvents(ctx, s.lease, batch)
	if err != nil {
		s.lease = hub.SealerLease{}
		if hub.ErrorCode(err) == hub.Conflict {
			s.opts.Log.Debug("eventlog: seal fenced off", "holder", s.opts.Holder, "error", err)
			return 0, nil
		}
		return 0, err
	}
	s.lease = l
	if last := batch[len(batch)-1]; last.Tag == string(EventLogCheckpoint) {
		s.cpSeq, s.cpTime = last.Seq, now
	}
	if s.opts.Notify != nil {
		s.opts.Notify()
	}
	return len(batch), nil
}

func (s *Sealer) checkpointDue(seq uint64, now time.Time) bool {
	if s.opts.Key == nil || seq == 0 || seq <= s.cpSeq {
		return false
	}
	return seq-s.cpSeq >= s.opts.CheckpointEvery || now.Sub(s.cpTime) >= s.opts.CheckpointInterval
}

// loadCheckpoint reads the last checkpoint once per holding of the lease.
func (s *Sealer) loadCheckpoint(ctx context.Context) error {
	if s.haveCP {
		return nil
	}
	s.cpSeq, s.cpTime = 0, s.opts.Now()
	if s.opts.Key != nil && s.lease.Seq > 0 {
		cps, err := s.store.QueryEvents(ctx, hub.EventQuery{Tags: []string{string(EventLogCheckpoint)}, Descending: true, Limit: 1})
		if err != nil {
			return err
		}
		// With none yet, count from the start and time from now, so the
		// first one comes after CheckpointEvery entries or
		// CheckpointInterval.
		if len(cps) == 1 {
			s.cpSeq, s.cpTime = cps[0].Seq, cps[0].Time
		}
	}
	s.haveCP = true
	return nil
}

// Retain deletes entries older than cutoff, but never the newest entry, so
// the chain always continues from a stored head. It returns the number of
// entries deleted. The remaining log verifies from its first entry, whose
// PrevHash is the anchor (trustworthy when a signed checkpoint follows it).
func Retain(ctx context.Context, store RetentionStore, cutoff time.Time) (int64, error) {
	last, err := store.LastSealed(ctx)
	if hub.ErrorCode(err) == hub.NotFound {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if last.Time.Before(cutoff) {
		cutoff = last.Time
	}
	n, err := store.DeleteEventsBefore(ctx, cutoff)
	if err != nil {
		return n, fmt.Errorf("eventlog: retention: %w", err)
	}
	return n, nil
}

var errStop = errors.New("stop")
