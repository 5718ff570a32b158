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

// SealerLock is the name of the lock only one sealer holds at a time.
const SealerLock = "eventlog-sealer"

// SealerOptions tune a Sealer. The zero value is a good default (no
// checkpoints, no retention).
type SealerOptions struct {
	// Holder names this sealer in the lock (default "sealer-<random>").
	Holder string
	// Batch caps the entries sealed in one SealEvents (default 2000).
	Batch int
	// Idle is how long Run waits when nothing is pending (default 100ms).
	Idle time.Duration
	// LockTTL is the lock's lease; it is renewed before every batch
	// (default 15s).
	LockTTL time.Duration
	// Key signs checkpoints; nil disables them.
	Key ed25519.PrivateKey
	// CheckpointEvery seals a checkpoint after this many entries (default
	// 10,000) and CheckpointInterval after this long if anything new was
	// sealed (default 1 minute).
	CheckpointEvery    uint64
	CheckpointInterval time.Duration
	// Retention deletes entries older than this (0 keeps everything);
	// checked every RetentionInterval (default 1 hour) by the lock holder.
	Retention         time.Duration
	RetentionInterval time.Duration
	// Notify is called after every sealed batch (Log.Notify).
	Notify func()
	Log    *slog.Logger
	Now    func() time.Time
}

// Sealer seals pending entries into the hash chain. Any number of sealers
// may run (one per hub instance); the lock makes one of them do the work
// at a time, and SealEvents' Conflict on a taken Seq makes a sealer that
// lost its lease without noticing reload and retry instead of forking the
// chain.
type Sealer struct {
	store hub.EventStore
	locks hub.Locks
	opts  SealerOptions

	// The chain's head as this sealer last saw it; valid while haveHead.
	haveHead bool
	headSeq  uint64
	headHash string
	// Checkpoint state, loaded with the head.
	cpSeq        uint64
	cpTime       time.Time
	lastRetained time.Time
}

// NewSealer returns a sealer over store using locks for the single-sealer lease.
func NewSealer(store hub.EventStore, locks hub.Locks, opts SealerOptions) *Sealer {
	if opts.Holder == "" {
		opts.Holder = "sealer-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	if opts.Batch <= 0 {
		opts.Batch = 2000
	}
	if opts.Idle <= 0 {
		opts.Idle = 100 * time.Millisecond
	}
	if opts.LockTTL <= 0 {
		opts.LockTTL = 15 * time.Second
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
	return &Sealer{store: store, locks: locks, opts: opts}
}

// Run seals until ctx ends, then releases the lock.
func (s *Sealer) Run(ctx context.Context) {
	defer func() {
		_ = s.locks.ReleaseLock(context.Background(), SealerLock, s.opts.Holder)
	}()
	for ctx.Err() == nil {
		n, err := s.Step(ctx)
		if err != nil && ctx.Err() == nil {
			s.opts.Log.Warn("eventlog: sealing", "holder", s.opts.Holder, "error", err)
		}
		if n > 0 && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(s.opts.Idle):
		}
	}
}

// Step takes or renews the lock and, if held, seals one batch (plus a
// checkpoint when one is due) and runs retention when due. It returns the
// number of entries sealed (0 when not the lock holder or nothing was
// pending).
func (s *Sealer) Step(ctx context.Context) (int, error) {
	ok, err := s.locks.AcquireLock(ctx, SealerLock, s.opts.Holder, s.opts.LockTTL, s.opts.Now())
	if err != nil {
		return 0, err
	}
	if !ok {
		s.haveHead = false // another sealer moves the head
		return 0, nil
	}
	n, err := s.SealOnce(ctx)
	if err == nil && s.opts.Retention > 0 && s.opts.Now().Sub(s.lastRetained) >= s.opts.RetentionInterval {
		s.lastRetained = s.opts.Now()
		if _, rerr := Retain(ctx, s.store, s.opts.Now().Add(-s.opts.Retention)); rerr != nil {
			s.opts.Log.Warn("eventlog: retention", "error", rerr)
		}
	}
	return n, err
}

// SealOnce seals one batch of pending entries without looking at the lock
// (Step and Run do); a Conflict from the store (another sealer moved the
// head) is absorbed: the head is reloaded on the next call and 0 returned.
func (s *Sealer) SealOnce(ctx context.Context) (int, error) {
	if err := s.loadHead(ctx); err != nil {
		return 0, err
	}
	n := s.opts.Batch
	if s.opts.Key != nil {
		// End the batch where a checkpoint is due, so that one follows
		// exactly every CheckpointEvery entries.
		if since := s.headSeq - s.cpSeq; since < s.opts.CheckpointEvery {
			n = min(n, int(s.opts.CheckpointEvery-since))
		}
	}
	pend, err := s.store.PendingEvents(ctx, n)
	if err != nil {
		return 0, err
	}
	now := s.opts.Now()
	seq, prev := s.headSeq, s.headHash
	batch := make([]hub.Event, 0, len(pend)+1)
	for _, ev := range pend {
		seq++
		ev.Seq, ev.PrevHash, ev.Time = seq, prev, CanonicalTime(ev.Time)
		ev.Hash = Hash(ev)
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
		prev = ev.Hash
		batch = append(batch, ev)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	if err := s.store.SealEvents(ctx, batch); err != nil {
		s.haveHead = false
		if hub.ErrorCode(err) == hub.Conflict {
			return 0, nil
		}
		return 0, err
	}
	s.headSeq, s.headHash = seq, prev
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

// loadHead reads the chain's head (and the last checkpoint) from the store
// unless this sealer has moved it itself since.
func (s *Sealer) loadHead(ctx context.Context) error {
	if s.haveHead {
		return nil
	}
	last, err := s.store.LastSealed(ctx)
	switch {
	case hub.ErrorCode(err) == hub.NotFound:
		s.headSeq, s.headHash = 0, Genesis
	case err != nil:
		return err
	default:
		s.headSeq, s.headHash = last.Seq, last.Hash
	}
	s.cpSeq, s.cpTime = 0, time.Time{}
	if s.opts.Key != nil && s.headSeq > 0 {
		cps, err := s.store.QueryEvents(ctx, hub.EventQuery{Tags: []string{string(EventLogCheckpoint)}, Descending: true, Limit: 1})
		if err != nil {
			return err
		}
		if len(cps) == 1 {
			s.cpSeq, s.cpTime = cps[0].Seq, cps[0].Time
		} else {
			// No checkpoint yet: count from the start, time from now, so
			// the first one comes after CheckpointEvery entries or
			// CheckpointInterval.
			s.cpTime = s.opts.Now()
		}
	} else {
		s.cpTime = s.opts.Now()
	}
	s.haveHead = true
	return nil
}

// Retain deletes entries older than cutoff, but never the newest entry, so
// the chain always continues from a stored head. It returns the number of
// entries deleted. The remaining log verifies from its first entry, whose
// PrevHash is the anchor (trustworthy when a signed checkpoint follows it).
func Retain(ctx context.Context, store hub.EventStore, cutoff time.Time) (int64, error) {
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
