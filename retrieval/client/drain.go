package client

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/atomicfile"
)

// Drainer is a receiver system that empties its queue into a directory.
//
// Each message becomes Dir/<messageUUID>.xml, written atomically (a
// temporary file, fsync, rename, fsync of the directory) BEFORE the
// message is acknowledged, so killing the process at any moment loses
// nothing: an unacknowledged message stays on the hub and is fetched again
// once its lease expires. A message whose file already exists is
// acknowledged without being rewritten, so nothing is duplicated either.
// Before writing, a marker Dir/.<uuid>.pending is created; it becomes
// durable with the directory fsync that makes the file durable, and is
// removed after the ack. On start the Drainer acknowledges every message
// whose marker and file exist — the ones a previous run wrote but may not
// have acknowledged — so those need not wait for their lease to expire.
// One Drainer at a time may use a directory (an flock on Dir/.posthub-fetch.lock).
//
// A request that fails on the way (the hub restarting, a proxy answering
// 502, 503 or 504) is repeated as Client.Retry allows, a long poll too
// after a lost answer: a lease it may have taken expires, and the message
// is fetched and stored then. What still fails ends Run with that error,
// so the zero Retry gives up at the first refused connection and a hub
// that never answers cannot keep Run waiting.
type Drainer struct {
	Client *Client
	Dir    string
	// Workers is the number of concurrent pollers (default 8).
	Workers int
	// Follow keeps waiting for new post; otherwise Run returns once the
	// queue has nothing available.
	Follow bool
	// Wait is each long poll's wait (default 30s with Follow, else 1s).
	Wait time.Duration
	Log  *slog.Logger
	// OnMessage, when set, is called after each acknowledged message.
	OnMessage func(messageUUID string, existed bool)
}

// Stats counts what a run did.
type Stats struct {
	Written   int64 // messages written and acknowledged
	Existing  int64 // messages already in the directory, acknowledged without rewriting
	Recovered int64 // pending messages of an earlier run acknowledged on start
	// NotStored counts fetches whose message could not be stored (a full
	// disk, a path that is not a file): not acknowledged, the message
	// stays on the hub and is fetched again once its lease expires. A run
	// without Follow that leaves any returns an error.
	NotStored int64
}

const (
	tmpPrefix     = ".posthub-tmp-" // temporary files of earlier versions
	pendingSuffix = ".pending"
	lockName      = ".posthub-fetch.lock"
)

// Run drains the queue until it is empty (or, with Follow, until ctx ends).
func (d *Drainer) Run(ctx context.Context) (Stats, error) {
	var st Stats
	if d.Workers <= 0 {
		d.Workers = 8
	}
	if d.Wait <= 0 {
		d.Wait = time.Second
		if d.Follow {
			d.Wait = 30 * time.Second
		}
	}
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(d.Dir, 0o750); err != nil {
		return st, err
	}
	unlock, err := lockDir(d.Dir)
	if err != nil {
		return st, err
	}
	defer unlock()
	n, err := d.recover(ctx)
	st.Recovered = n
	if err != nil {
		return st, err
	}
	var (
		written, existing, notStored atomic.Int64
		wg                           sync.WaitGroup
		errOnce                      sync.Once
		firstErr                     error
		storeErr                     atomic.Value // the first error that left a message not stored
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range d.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.worker(ctx, &written, &existing, func(err error) { notStored.Add(1); storeErr.CompareAndSwap(nil, err) }); err != nil {
				errOnce.Do(func() { firstErr = err; cancel() })
			}
		}()
	}
	wg.Wait()
	st.Written, st.Existing, st.NotStored = written.Load(), existing.Load(), notStored.Load()
	if firstErr != nil {
		return st, firstErr
	}
	if st.NotStored > 0 && !d.Follow {
		// The queue looked empty because those messages are leased to
		// this run: it did not empty it.
		return st, hub.Wrap(hub.Unavailable, storeErr.Load().(error),
			"%d fetched messages could not be stored; they stay on the hub and are fetched again once their lease expires", st.NotStored)
	}
	return st, nil
}

// recover cleans temporary files and acknowledges pending messages whose
// file was completed by an earlier run.
func (d *Drainer) recover(ctx context.Context) (int64, error) {
	ents, err := os.ReadDir(d.Dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, atomicfile.TempPrefix), strings.HasPrefix(name, tmpPrefix):
			if err := os.Remove(filepath.Join(d.Dir, name)); err != nil && !os.IsNotExist(err) {
				return n, err
			}
		case strings.HasPrefix(name, ".") && strings.HasSuffix(name, pendingSuffix):
			id := strings.TrimSuffix(strings.TrimPrefix(name, "."), pendingSuffix)
			if d.stored(id) {
				if err := d.ack(ctx, id); err != nil {
					return n, err
				}
				n++
			}
			if err := os.Remove(filepath.Join(d.Dir, name)); err != nil && !os.IsNotExist(err) {
				return n, err
			}
		}
	}
	return n, nil
}

func (d *Drainer) final(id string) string { return filepath.Join(d.Dir, id+".xml") }

// stored says whether message id's file is there: a regular file (a
// directory or anything else by that name is not the message).
func (d *Drainer) stored(id string) bool {
	fi, err := os.Lstat(d.final(id))
	return err == nil && fi.Mode().IsRegular()
}

func (d *Drainer) marker(id string) string { return filepath.Join(d.Dir, "."+id+pendingSuffix) }

func (d *Drainer) worker(ctx context.Context, written, existing *atomic.Int64, notStored func(error)) error {
	for ctx.Err() == nil {
		m, err := d.Client.next(ctx, d.Wait, true)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if m == nil {
			if d.Follow {
				continue
			}
			return nil
		}
		existed, err := d.handle(ctx, m)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !retryable(err) {
				return err
			}
			// The message stays leased on the hub and comes back when the
			// lease expires; carry on with the others.
			d.Log.Warn("fetch: message not stored, will be fetched again", "message", m.UUID, "error", err)
			notStored(err)
			continue
		}
		if existed {
			existing.Add(1)
		} else {
			written.Add(1)
		}
		if d.OnMessage != nil {
			d.OnMessage(m.UUID, existed)
		}
	}
	return nil
}

// handle stores one fetched message (unless it is there already) and
// acknowledges it.
func (d *Drainer) handle(ctx context.Context, m *Memo) (existed bool, err error) {
	defer m.Close()
	if _, err := uuid.Parse(m.UUID); err != nil || strings.ContainsAny(m.UUID, `/\`) {
		return false, hub.Errorf(hub.Invalid, "the hub sent a message without a valid UUID header (%q)", m.UUID)
	}
	if d.stored(m.UUID) {
		_, _ = io.Copy(io.Discard, m.Body)
		return true, d.ack(ctx, m.UUID)
	}
	mk, err := os.OpenFile(d.marker(m.UUID), os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		return false, err
	}
	mk.Close()
	if err := atomicfile.Write(d.final(m.UUID), m.Body, m.Size, 0o600); err != nil {
		os.Remove(d.marker(m.UUID))
		return false, hub.Wrap(hub.Unavailable, err, "store message %s", m.UUID)
	}
	if err := d.ack(ctx, m.UUID); err != nil {
		return false, err
	}
	// Not synced: a marker that survives a crash only costs one more ack.
	_ = os.Remove(d.marker(m.UUID))
	return false, nil
}

// ack acknowledges (repeated as Client.Retry allows); a message the hub
// no longer knows as ours (NotFound) counts as done.
func (d *Drainer) ack(ctx context.Context, id string) error {
	err := d.Client.Ack(ctx, id)
	if hub.Is(err, hub.NotFound) {
		d.Log.Warn("fetch: the hub does not know this message as ours any more", "message", id)
		return nil
	}
	return err
}

func retryable(err error) bool {
	switch hub.ErrorCode(err) {
	case hub.Unavailable, hub.Internal, hub.Conflict:
		return true
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// lockDir takes an exclusive flock on the directory's lock file.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, hub.Errorf(hub.Conflict, "another fetch is using %s", dir)
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}
