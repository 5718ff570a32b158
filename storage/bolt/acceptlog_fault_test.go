package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/storagetest"
)

// diskFault makes the accept log's segment files fail as a full or
// failing disk does, while an error is set for the operation.
type diskFault struct {
	mu                  sync.Mutex
	write, sync, reopen error
}

func (d *diskFault) set(write, sync, reopen error) {
	d.mu.Lock()
	d.write, d.sync, d.reopen = write, sync, reopen
	d.mu.Unlock()
}

func (d *diskFault) get() (write, sync, reopen error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.write, d.sync, d.reopen
}

type faultySegment struct {
	segmentFile
	d *diskFault
}

func (f faultySegment) WriteAt(b []byte, off int64) (int, error) {
	if err, _, _ := f.d.get(); err != nil {
		// A full disk takes part of the write before it refuses the rest.
		n, _ := f.segmentFile.WriteAt(b[:len(b)/2], off)
		return n, &os.PathError{Op: "write", Path: "segment", Err: err}
	}
	return f.segmentFile.WriteAt(b, off)
}

func (f faultySegment) Sync() error {
	if _, err, _ := f.d.get(); err != nil {
		return &os.PathError{Op: "fdatasync", Path: "segment", Err: err}
	}
	return f.segmentFile.Sync()
}

// injectDiskFaults has every segment the log opens from now on fail as
// the returned diskFault says.
func injectDiskFaults(t *testing.T) *diskFault {
	t.Helper()
	d := &diskFault{}
	real := openSegment
	openSegment = func(path string, flag int) (segmentFile, error) {
		if _, _, err := d.get(); err != nil && flag&os.O_CREATE == 0 {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		f, err := real(path, flag)
		if err != nil {
			return nil, err
		}
		return faultySegment{f, d}, nil
	}
	t.Cleanup(func() { openSegment = real })
	return d
}

// tryPut is put that returns the error.
func tryPut(s *Store, uuid string) ([]hub.Delivery, error) {
	ds := []hub.Delivery{storagetest.Delivery(uuid, "system/a", t0)}
	err := s.PutMessage(context.Background(), storagetest.Message(uuid, []byte("content of "+uuid), t0), ds, storagetest.Receipt(uuid, t0))
	return ds, err
}

func putErr(s *Store, uuid string) error {
	_, err := tryPut(s, uuid)
	return err
}

// within fails the test when fn has not returned after a generous time:
// what it checks must answer, not hang.
func within(t *testing.T, what string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not answer", what)
		return nil
	}
}

// eventually retries fn until it succeeds.
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err = fn(); err == nil {
			return
		}
	}
	t.Fatalf("%s: %v", what, err)
}

func TestAcceptLogTakesEntriesAgainOnceTheDiskDoes(t *testing.T) {
	for _, c := range []struct {
		name        string
		write, sync error
		roll        bool // every append starts a new segment
	}{
		{name: "disk full: the write is cut short", write: syscall.ENOSPC},
		{name: "fdatasync fails: the bytes are written, their fate unknown", sync: syscall.EIO},
		{name: "disk full in a segment just started", write: syscall.ENOSPC, roll: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.roll {
				segmentsOf(t, 1)
			}
			disk := injectDiskFaults(t)
			path := filepath.Join(t.TempDir(), "posthub.db")
			s := openHeld(t, path)
			before := put(t, s, "before", "system/a")

			disk.set(c.write, c.sync, nil)
			for i := range 3 {
				err := putErr(s, fmt.Sprintf("refused-%d", i))
				if hub.ErrorCode(err) != hub.Unavailable {
					t.Fatalf("accept on a failing disk: %v, want unavailable", err)
				}
				if c.write != nil && !hub.DiskFull(err) {
					t.Fatalf("accept on a full disk: %v, want it to say the disk is full", err)
				}
			}
			if err := s.Ping(context.Background()); c.write != nil && err != nil {
				// Cutting the tail back needs no space: the log is
				// repaired, and only waits for space.
				t.Fatalf("Ping with a repaired tail: %v", err)
			}

			// The disk works again: accepts go through, without a restart.
			disk.set(nil, nil, nil)
			var after []hub.Delivery
			eventually(t, "accept once the disk works again", func() (err error) { after, err = tryPut(s, "after"); return err })
			if err := s.Ping(context.Background()); err != nil {
				t.Fatalf("Ping after the repair: %v", err)
			}
			if after[0].Seq <= before[0].Seq {
				t.Fatalf("seq %d after %d", after[0].Seq, before[0].Seq)
			}
			whole(t, s, "before", before)
			whole(t, s, "after", after)

			// A crash now: the replay finds what was acknowledged, in order
			// and without a gap, and nothing that was refused.
			r := openHeld(t, snapshot(t, path))
			whole(t, r, "before", before)
			whole(t, r, "after", after)
			for i := range 3 {
				if _, err := r.GetMessage(context.Background(), fmt.Sprintf("refused-%d", i)); hub.ErrorCode(err) != hub.NotFound {
					t.Fatalf("refused message after replay: %v", err)
				}
			}
			if n, _ := r.CountQueue(context.Background(), "system/a"); n != 2 {
				t.Fatalf("queue holds %d after replay, want 2", n)
			}
		})
	}
}

func TestAcceptLogReportsATailItCannotRepair(t *testing.T) {
	disk := injectDiskFaults(t)
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openHeld(t, path)
	before := put(t, s, "before", "system/a")

	disk.set(syscall.EIO, nil, syscall.EIO)
	if err := putErr(s, "refused"); hub.ErrorCode(err) != hub.Unavailable {
		t.Fatalf("accept on a failing disk: %v", err)
	}
	// The log takes nothing until its tail is repaired, and says so to
	// whoever asks whether the hub is ready.
	if err := putErr(s, "refused-too"); hub.ErrorCode(err) != hub.Unavailable {
		t.Fatalf("accept before the repair: %v", err)
	}
	if err := s.Ping(context.Background()); hub.ErrorCode(err) != hub.Unavailable || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Ping with a broken tail: %v, want unavailable with the cause", err)
	}
	// Reads of what was acknowledged still answer.
	whole(t, s, "before", before)

	disk.set(nil, nil, nil)
	eventually(t, "accept once the disk works again", func() error { return putErr(s, "after") })
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping after the repair: %v", err)
	}
	r := openHeld(t, snapshot(t, path))
	whole(t, r, "before", before)
	for _, u := range []string{"refused", "refused-too"} {
		if _, err := r.GetMessage(context.Background(), u); hub.ErrorCode(err) != hub.NotFound {
			t.Fatalf("refused message %s after replay: %v", u, err)
		}
	}
	if _, err := r.GetMessage(context.Background(), "after"); err != nil {
		t.Fatal(err)
	}
}

func TestAcceptLogAnswersWhileApplyingFails(t *testing.T) {
	var mu sync.Mutex
	var applyErr error
	logBeforeApply = func() error {
		mu.Lock()
		defer mu.Unlock()
		return applyErr
	}
	t.Cleanup(func() { logBeforeApply = nil })
	failApply := func(err error) {
		mu.Lock()
		applyErr = err
		mu.Unlock()
	}
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openHeld(t, path)
	ctx := context.Background()

	failApply(&os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC})
	ds := put(t, s, "m", "system/a") // durable in the log: acknowledged
	// Reads and writes behind the barrier answer Unavailable instead of
	// waiting for an apply that cannot happen yet.
	err := within(t, "ListQueue", func() error { _, err := s.ListQueue(ctx, "system/a", 0, 10, false, t0); return err })
	if hub.ErrorCode(err) != hub.Unavailable || !hub.DiskFull(err) {
		t.Fatalf("read while applying fails: %v, want unavailable (storage full)", err)
	}
	err = within(t, "DeleteMessage", func() error { return s.DeleteMessage(ctx, "m") })
	if hub.ErrorCode(err) != hub.Unavailable {
		t.Fatalf("write while applying fails: %v, want unavailable", err)
	}
	if err := within(t, "Ping", func() error { return s.Ping(ctx) }); hub.ErrorCode(err) != hub.Unavailable {
		t.Fatalf("Ping while applying fails: %v", err)
	}
	// The accept path's own reads still find the message in the log.
	if m, err := s.GetMessage(ctx, "m"); err != nil || m.UUID != "m" {
		t.Fatalf("GetMessage from the log: %v", err)
	}

	failApply(nil)
	eventually(t, "read once applying works again", func() error {
		_, err := s.ListQueue(ctx, "system/a", 0, 10, false, t0)
		return err
	})
	whole(t, s, "m", ds)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after the apply: %v", err)
	}
	r := openHeld(t, snapshot(t, path))
	whole(t, r, "m", ds)
}

func TestAcceptLogGivesUpItsSparesWhenAnAppendFails(t *testing.T) {
	segmentsOf(t, 4<<10)
	d := injectDiskFaults(t)
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openHeld(t, path)
	for i := range 24 {
		put(t, s, fmt.Sprintf("m-%02d", i), "system/a")
	}
	if _, err := s.CountQueue(context.Background(), "system/a"); err != nil { // applies
		t.Fatal(err)
	}
	count := func(glob string) int {
		p, _ := filepath.Glob(filepath.Join(logDir(path), glob))
		return len(p)
	}
	spares := func() int { return count(logSpareGlob) }
	// Once both spares are kept (filled) and only the current segment is
	// left, the applier has retired the rest and stays idle: nothing adds
	// a spare behind the test's back.
	eventually(t, "spares kept", func() error {
		s.alog.mu.Lock()
		kept := len(s.alog.spares)
		s.alog.mu.Unlock()
		if n, segs := spares(), count(logSegmentGlob); kept != logSpares || n != logSpares || segs != 1 {
			return fmt.Errorf("%d spares kept, %d spare files, %d segments", kept, n, segs)
		}
		return nil
	})
	d.set(syscall.ENOSPC, nil, nil)
	if err := putErr(s, "refused"); hub.ErrorCode(err) != hub.Unavailable {
		t.Fatalf("put on a full disk: %v", err)
	}
	if n := spares(); n != 0 {
		t.Fatalf("%d spares kept after a failed append, want their room given back", n)
	}
	d.set(nil, nil, nil)
	if err := putErr(s, "after"); err != nil {
		t.Fatalf("put once the disk takes writes again: %v", err)
	}
}
