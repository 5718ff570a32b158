package hub

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// ContentSweeper removes message content blobs no message names: what a
// submission uploaded before a failure that may have stored its letter
// (Ingest keeps the blob then), before a crash, or what an acknowledgement
// that emptied a message left when its instance died before deleting it.
// A blob under "msg/<uuid>/" goes when it is older than MinAge and the
// message <uuid> is gone or names another content key; nothing else is
// touched (print renditions, under "print/", go with their deliveries).
// MinAge must exceed the longest a submission can take between its upload
// and its commit (bounded by the request's deadlines: minutes).
type ContentSweeper struct {
	Store interface {
		GetMessage(ctx context.Context, uuid string) (Message, error)
		Locks
	}
	Blobs  Blobs
	MinAge time.Duration
	Holder string // this instance, for the sweeper's lock
	Log    *slog.Logger
	Now    func() time.Time
}

// sweepBatch bounds the orphans one Sweep collects before it deletes them.
const sweepBatch = 10_000

// Sweep removes up to sweepBatch orphaned content blobs, if this instance
// gets the sweeper's lock, and returns how many went.
func (c *ContentSweeper) Sweep(ctx context.Context) (int, error) {
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	const lock = "posthub-content-sweeper"
	ok, err := c.Store.AcquireLock(ctx, lock, c.Holder, time.Hour, now)
	if err != nil || !ok {
		return 0, err
	}
	defer func() { _ = c.Store.ReleaseLock(context.WithoutCancel(ctx), lock, c.Holder) }()
	var orphans []string
	errFull := Errorf(Unavailable, "enough for one sweep")
	err = c.Blobs.List(ctx, "msg/", func(b BlobInfo) error {
		if b.Modified.IsZero() || now.Sub(b.Modified) < c.MinAge {
			return nil
		}
		uuid, _, ok := strings.Cut(strings.TrimPrefix(b.Key, "msg/"), "/")
		if !ok || uuid == "" {
			return nil
		}
		m, err := c.Store.GetMessage(ctx, uuid)
		switch {
		case ErrorCode(err) == NotFound, err == nil && m.ContentKey != b.Key:
			orphans = append(orphans, b.Key)
		case err != nil:
			return err
		}
		if len(orphans) >= sweepBatch {
			return errFull
		}
		return nil
	})
	if err != nil && err != error(errFull) {
		return 0, err
	}
	n := 0
	for _, k := range orphans {
		if err := c.Blobs.Delete(ctx, k); err != nil {
			return n, err
		}
		n++
	}
	if n > 0 && c.Log != nil {
		c.Log.Info("content sweeper: unreferenced message content removed", "blobs", n)
	}
	return n, nil
}
