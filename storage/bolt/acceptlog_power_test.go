package bolt

// Power-loss tests of the accept log (segment reuse, repair, torn groups,
// replay after an ack), written by a review that found no loss.
// They reproduce crashes by copying the store's files (snapshot) and, for
// a power loss, by mixing the bytes an unsynced append wrote with the
// bytes the segment held before, sector by sector.

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/storagetest"
)

// reviewCurrentSegment is the path of the segment being written and the
// end of its last durable entry.
func reviewCurrentSegment(s *Store) (string, int64) {
	s.alog.mu.Lock()
	defer s.alog.mu.Unlock()
	return s.alog.segs[len(s.alog.segs)-1].path, s.alog.off
}

// reviewIntoReusedSegment runs a first use of the log (old-NN, applied,
// then deleted), then puts new-NN until the segment being written is a
// reused spare. It returns the spare files' infos and the new messages.
func reviewIntoReusedSegment(t *testing.T, s *Store, oldN int) ([]os.FileInfo, map[string][]hub.Delivery) {
	t.Helper()
	ctx := context.Background()
	path := s.db.Path()
	glob := func(pattern string) []string {
		p, _ := filepath.Glob(filepath.Join(logDir(path), pattern))
		return p
	}
	var gone []string
	for i := range oldN {
		u := fmt.Sprintf("old-%03d", i)
		put(t, s, u, "system/a")
		gone = append(gone, u)
	}
	if _, err := s.CountQueue(ctx, "system/a"); err != nil { // applies
		t.Fatal(err)
	}
	var spares []os.FileInfo
	eventually(t, "spares kept", func() error {
		s.alog.mu.Lock()
		kept := len(s.alog.spares)
		s.alog.mu.Unlock()
		spares = spares[:0]
		for _, p := range glob(logSpareGlob) {
			if st, err := os.Stat(p); err == nil {
				spares = append(spares, st)
			}
		}
		if kept != logSpares || len(spares) != logSpares || len(glob(logSegmentGlob)) != 1 {
			return fmt.Errorf("%d kept, %d spare files, %d segments", kept, len(spares), len(glob(logSegmentGlob)))
		}
		return nil
	})
	for _, u := range gone {
		if err := s.DeleteMessage(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	kept := map[string][]hub.Delivery{}
	for i := 0; ; i++ {
		if i > 10*oldN {
			t.Fatal("never rolled into a spare")
		}
		u := fmt.Sprintf("new-%03d", i)
		kept[u] = put(t, s, u, "system/b")
		cur, _ := reviewCurrentSegment(s)
		st, err := os.Stat(cur)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(spares, func(sp os.FileInfo) bool { return os.SameFile(sp, st) }) {
			return spares, kept
		}
	}
}

// reviewCheck opens the store copy at path and checks: every acknowledged
// message whole, no old (applied then deleted) message back, the unacked
// candidates present as a prefix, no delivery listed twice, and the queue
// count equal to what is listed.
func reviewCheck(t *testing.T, path string, acked map[string][]hub.Delivery, oldN int, unacked []string) {
	t.Helper()
	ctx := context.Background()
	r, err := Open(path, Options{ApplyInterval: time.Hour})
	if err != nil {
		t.Fatalf("open after the crash: %v", err)
	}
	defer r.Close()
	for u, ds := range acked {
		whole(t, r, u, ds)
	}
	for i := range oldN {
		u := fmt.Sprintf("old-%03d", i)
		if _, err := r.GetMessage(ctx, u); hub.ErrorCode(err) != hub.NotFound {
			t.Fatalf("deleted %s came back: %v", u, err)
		}
	}
	present := false
	for i := len(unacked) - 1; i >= 0; i-- {
		_, err := r.GetMessage(ctx, unacked[i])
		switch {
		case err == nil:
			present = true
		case hub.ErrorCode(err) != hub.NotFound:
			t.Fatalf("unacked %s: %v", unacked[i], err)
		case present:
			t.Fatalf("unacked %s missing while a later one of its group is there (a gap)", unacked[i])
		}
	}
	for _, q := range []string{"system/a", "system/b"} {
		ds, err := r.ListQueue(ctx, q, 0, 10000, false, t0)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		var seqs []int64
		for _, d := range ds {
			if seen[d.ID] {
				t.Fatalf("delivery %s listed twice in %s", d.ID, q)
			}
			seen[d.ID] = true
			seqs = append(seqs, d.Seq)
		}
		if !slices.IsSorted(seqs) {
			t.Fatalf("seqs of %s out of order: %v", q, seqs)
		}
		if n, err := r.CountQueue(ctx, q); err != nil || n != int64(len(ds)) {
			t.Fatalf("count of %s %d (%v), listed %d", q, n, err, len(ds))
		}
	}
	// The log goes on after the replay.
	put(t, r, "after-crash", "system/b")
}

// TestATornGroupInAReusedSegmentLosesNothingAcknowledged: a group of three entries is written
// into a reused spare over frames of its first use and the power fails
// before its fdatasync. Any mix of the group's sectors and the stale ones
// replays only a prefix of the group, every acknowledged entry, and none
// of the first use's (deleted) letters.
func TestATornGroupInAReusedSegmentLosesNothingAcknowledged(t *testing.T) {
	segmentsOf(t, 64<<10)
	t.Cleanup(func() { logBeforeSync = nil })
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openHeld(t, path)
	const oldN = 150
	_, acked := reviewIntoReusedSegment(t, s, oldN)

	type image struct {
		seg  string
		off  int64
		data []byte
		db   string // a crash copy taken at the same moment
	}
	var (
		mu      sync.Mutex
		images  []image
		stalled = make(chan struct{}, 4)
		goOn    = make(chan struct{})
	)
	logBeforeSync = func(l *acceptLog) {
		p := l.segs[len(l.segs)-1].path
		b, err := os.ReadFile(p)
		if err != nil {
			panic(err)
		}
		mu.Lock()
		images = append(images, image{seg: p, off: l.off, data: b, db: snapshot(t, path)})
		mu.Unlock()
		stalled <- struct{}{}
		<-goOn
	}
	ctx := context.Background()
	aDone := make(chan error, 1)
	var aDs []hub.Delivery
	go func() {
		aDs = []hub.Delivery{storagetest.Delivery("A", "system/b", t0)}
		aDone <- s.PutMessage(ctx, storagetest.Message("A", []byte("content of A"), t0), aDs, storagetest.Receipt("A", t0))
	}()
	<-stalled // A written, not synced: image 0 is the segment before the group
	group := []string{"B", "C", "D"}
	var order []string // group in lsn order
	var wg sync.WaitGroup
	for _, u := range group {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ds := []hub.Delivery{storagetest.Delivery(u, "system/b", t0)}
			_ = s.PutMessage(ctx, storagetest.Message(u, []byte("content of "+u), t0), ds, storagetest.Receipt(u, t0))
		}()
	}
	eventually(t, "group waiting", func() error {
		s.alog.mu.Lock()
		defer s.alog.mu.Unlock()
		if n := len(s.alog.toWrite); n != len(group) {
			return fmt.Errorf("%d waiting", n)
		}
		// The group in lsn order (the goroutines raced to log).
		order = order[:0]
		for _, e := range s.alog.toWrite {
			order = append(order, e.w.m.UUID)
		}
		return nil
	})
	goOn <- struct{}{} // A synced and acknowledged
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	acked["A"] = aDs
	<-stalled // the group written as one, not synced: image 1
	mu.Lock()
	pre, post := images[0], images[1]
	mu.Unlock()
	close(goOn)
	wg.Wait()
	logBeforeSync = nil
	if pre.seg != post.seg {
		t.Fatalf("the group went to another segment (%s, %s): enlarge the segments", pre.seg, post.seg)
	}
	start, end := post.off, int64(len(post.data))
	// The group's bytes: where post differs from pre after A's end.
	for end > start && post.data[end-1] == pre.data[end-1] {
		end--
	}
	if end <= start {
		t.Fatal("the group wrote nothing over the spare")
	}
	t.Logf("group at [%d,%d) of a reused segment of %d bytes", start, end, len(post.data))
	const sector = 512
	first := start / sector
	last := (end - 1) / sector
	masks := []func(i int64) bool{
		func(int64) bool { return false },                 // nothing of the group reached the disk
		func(int64) bool { return true },                  // all of it (never synced)
		func(i int64) bool { return i == first },          // only its first sector
		func(i int64) bool { return i == last },           // only its last
		func(i int64) bool { return i != first },          // all but the first
		func(i int64) bool { return (i-first)%2 == 1 },    // every other
		func(i int64) bool { return i <= (first+last)/2 }, // its first half
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	for range 25 {
		keep := map[int64]bool{}
		for i := first; i <= last; i++ {
			keep[i] = rng.IntN(2) == 0
		}
		masks = append(masks, func(i int64) bool { return keep[i] })
	}
	for k, mask := range masks {
		t.Run(fmt.Sprint("mix-", k), func(t *testing.T) {
			b := slices.Clone(pre.data)
			for i := first; i <= last; i++ {
				if mask(i) {
					lo, hi := max(i*sector, start), min((i+1)*sector, end)
					copy(b[lo:hi], post.data[lo:hi])
				}
			}
			dst := snapshot(t, post.db)
			if err := os.WriteFile(filepath.Join(logDir(dst), filepath.Base(post.seg)), b, 0o600); err != nil {
				t.Fatal(err)
			}
			reviewCheck(t, dst, acked, oldN, order)
		})
	}
}

// TestARepairInAReusedSegmentCutsOnlyTheRefusedBytes: the leftover "accept log repair
// truncates a reused segment". An append into a reused spare whose
// fdatasync fails is cut back by repair; the spare loses its preallocated
// length (it is truncated to the durable end), and nothing acknowledged is
// cut. A crash afterwards replays every acknowledged letter, no refused
// one, and none of the spare's first use.
func TestARepairInAReusedSegmentCutsOnlyTheRefusedBytes(t *testing.T) {
	for _, c := range []struct {
		name        string
		write, sync error
	}{
		{"fdatasync fails", nil, syscall.EIO},
		{"disk full", syscall.ENOSPC, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			segmentsOf(t, 64<<10)
			disk := injectDiskFaults(t)
			path := filepath.Join(t.TempDir(), "posthub.db")
			s := openHeld(t, path)
			const oldN = 150
			_, acked := reviewIntoReusedSegment(t, s, oldN)
			seg, off := reviewCurrentSegment(s)
			if st, _ := os.Stat(seg); st.Size() != logSegmentMax {
				t.Fatalf("reused segment is %d bytes before the fault", st.Size())
			}
			disk.set(c.write, c.sync, nil)
			refused := []string{"refused-0", "refused-1"}
			for _, u := range refused {
				if err := putErr(s, u); hub.ErrorCode(err) != hub.Unavailable {
					t.Fatalf("put on a failing disk: %v", err)
				}
			}
			disk.set(nil, nil, nil)
			if st, _ := os.Stat(seg); st.Size() != off {
				t.Fatalf("after repair the reused segment is %d bytes, durable end %d", st.Size(), off)
			} else {
				t.Logf("repair cut the reused segment from %d to %d bytes (its durable end): preallocation gone, nothing acknowledged cut", logSegmentMax, st.Size())
			}
			for i := range 5 {
				u := fmt.Sprintf("later-%d", i)
				var err error
				eventually(t, "accept after repair", func() error { acked[u], err = tryPut(s, u); return err })
			}
			crashed := snapshot(t, path)
			ctx := context.Background()
			reviewCheck(t, crashed, acked, oldN, nil)
			r := openHeld(t, snapshot(t, path))
			for _, u := range refused {
				if _, err := r.GetMessage(ctx, u); hub.ErrorCode(err) != hub.NotFound {
					t.Fatalf("refused %s after replay: %v", u, err)
				}
			}
		})
	}
}

// TestAnAcknowledgedDeliveryStaysAcknowledgedAfterReplay: a delivery applied,
// fetched and acknowledged while its entry is still in the segment does
// not come back when the segment is replayed after a crash (no second
// delivery), and its sibling stays.
func TestAnAcknowledgedDeliveryStaysAcknowledgedAfterReplay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openHeld(t, path)
	ctx := context.Background()
	put(t, s, "m", "system/a", "system/b")
	c, err := s.ClaimNext(ctx, "system/a", "poller", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ack(ctx, c.Delivery.ID, t0); err != nil {
		t.Fatal(err)
	}
	put(t, s, "later", "system/a") // unapplied, behind the acknowledged one
	if !logDirInUse(path) {
		t.Fatal("no segment")
	}
	r := openHeld(t, snapshot(t, path))
	if _, err := r.GetDelivery(ctx, c.Delivery.ID); hub.ErrorCode(err) != hub.NotFound {
		t.Fatalf("acknowledged delivery after replay: %v", err)
	}
	ds, err := r.ListQueue(ctx, "system/a", 0, 10, false, t0)
	if err != nil || len(ds) != 1 || ds[0].MessageUUID != "later" {
		t.Fatalf("queue after replay: %v %+v", err, ds)
	}
	if ds, _ := r.ListQueue(ctx, "system/b", 0, 10, false, t0); len(ds) != 1 {
		t.Fatalf("sibling delivery after replay: %+v", ds)
	}
}
