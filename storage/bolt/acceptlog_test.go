package bolt

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/storagetest"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// openHeld opens a store whose accept log applies only when a reader waits
// (the interval is an hour), so entries stay in the log until then.
func openHeld(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{ApplyInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// snapshot copies the bolt file and the accept log as a crash at this
// moment would leave them (nothing is being written while it copies) and
// returns the copy's database path.
func snapshot(t *testing.T, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "posthub.db")
	copyFile(t, path, dst)
	if err := os.MkdirAll(logDir(dst), 0o750); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(logDir(path), logSegmentGlob))
	for _, p := range segs {
		copyFile(t, p, filepath.Join(logDir(dst), filepath.Base(p)))
	}
	return dst
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// segmentsOf makes the accept log start a new segment after max bytes
// (1: one per write) for the rest of the test.
func segmentsOf(t *testing.T, max int64) {
	old := logSegmentMax
	logSegmentMax = max
	t.Cleanup(func() { logSegmentMax = old })
}

// damageLastByte flips the last byte of a segment, the end of its last
// entry.
func damageLastByte(t *testing.T, path string) {
	t.Helper()
	b, _ := os.ReadFile(path)
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// wantOpenRefused checks that opening the store at path fails as damage
// to acknowledged entries does.
func wantOpenRefused(t *testing.T, path string) {
	t.Helper()
	if s, err := Open(path, Options{}); hub.ErrorCode(err) != hub.Internal {
		if err == nil {
			s.Close()
		}
		t.Fatalf("open over a damaged acknowledged entry: %v, want internal", err)
	}
}

func put(t *testing.T, s *Store, uuid string, queues ...string) []hub.Delivery {
	t.Helper()
	var ds []hub.Delivery
	for _, q := range queues {
		ds = append(ds, storagetest.Delivery(uuid, q, t0))
	}
	evs := []hub.Event{{ID: "ev-" + uuid, Tag: "MEMO_SEND_RECEIVED", Time: t0, MessageUUID: uuid, Orgs: []string{"12345678"}}}
	cs := []hub.Counter{{Key: hub.CounterKey{Org: "12345678", Day: "2026-03-01", Direction: "SENT"}, Count: 1, Bytes: 10}}
	if err := s.PutMessageWith(context.Background(), storagetest.Message(uuid, []byte("content of "+uuid), t0), ds, storagetest.Receipt(uuid, t0), evs, cs); err != nil {
		t.Fatalf("PutMessageWith %s: %v", uuid, err)
	}
	return ds
}

func unapplied(s *Store) int {
	s.alog.mu.Lock()
	defer s.alog.mu.Unlock()
	return len(s.alog.byUUID)
}

// whole checks that message uuid is stored with its content, deliveries
// (with the Seqs PutMessage reported), receipt, event and counter share.
func whole(t *testing.T, s *Store, uuid string, ds []hub.Delivery) {
	t.Helper()
	ctx := context.Background()
	m, err := s.GetMessage(ctx, uuid)
	if err != nil || !bytes.Equal(m.Content, []byte("content of "+uuid)) {
		t.Fatalf("message %s: %v, content %q", uuid, err, m.Content)
	}
	for _, d := range ds {
		got, err := s.GetDelivery(ctx, d.ID)
		if err != nil || got.Seq != d.Seq || got.Queue != d.Queue {
			t.Fatalf("delivery %s: %v, seq %d want %d", d.ID, err, got.Seq, d.Seq)
		}
	}
	if r, err := s.ReceiptFor(ctx, "sender-sys", uuid); err != nil || r.TransmissionID != "tx-"+uuid {
		t.Fatalf("receipt of %s: %v %+v", uuid, err, r)
	}
	if r, err := s.GetReceipt(ctx, "sender-sys", "tx-"+uuid); err != nil || r.MessageUUID != uuid {
		t.Fatalf("receipt tx-%s: %v %+v", uuid, err, r)
	}
}

func TestAcceptLogAnswersFromTheLogBeforeItIsApplied(t *testing.T) {
	s := openHeld(t, filepath.Join(t.TempDir(), "posthub.db"))
	ctx := context.Background()
	ds := put(t, s, "m1", "system/a")
	if unapplied(s) != 1 {
		t.Fatalf("want the message held in the log, %d are", unapplied(s))
	}
	// The accept path's own reads are answered from the log, without
	// forcing an apply.
	if m, err := s.GetMessage(ctx, "m1"); err != nil || string(m.Content) != "content of m1" {
		t.Fatalf("GetMessage from the log: %v %q", err, m.Content)
	}
	if r, err := s.ReceiptFor(ctx, "sender-sys", "m1"); err != nil || r.TransmissionID != "tx-m1" {
		t.Fatalf("ReceiptFor from the log: %v %+v", err, r)
	}
	if _, err := s.ReceiptFor(ctx, "other-sys", "m1"); hub.ErrorCode(err) != hub.NotFound {
		t.Fatalf("ReceiptFor of another system: %v", err)
	}
	if unapplied(s) != 1 {
		t.Fatal("the accept path's reads applied the log")
	}
	// A second message with the UUID, or with a delivery it holds, is a
	// Conflict while the first is still only in the log.
	err := s.PutMessage(ctx, storagetest.Message("m1", []byte("other"), t0), nil, hub.Receipt{})
	if hub.ErrorCode(err) != hub.Conflict {
		t.Fatalf("same UUID while logged: %v", err)
	}
	err = s.PutMessage(ctx, storagetest.Message("m2", []byte("x"), t0), []hub.Delivery{{ID: ds[0].ID, MessageUUID: "m2", Queue: "system/a"}}, hub.Receipt{})
	if hub.ErrorCode(err) != hub.Conflict {
		t.Fatalf("taken delivery while logged: %v", err)
	}
	// Any other read waits for the apply and sees the message whole.
	got, err := s.ListQueue(ctx, "system/a", 0, 10, false, t0)
	if err != nil || len(got) != 1 || got[0].Seq != ds[0].Seq {
		t.Fatalf("ListQueue after accept: %v %+v", err, got)
	}
	if unapplied(s) != 0 {
		t.Fatal("the read did not apply the log")
	}
	whole(t, s, "m1", ds)
	pend, err := s.PendingEvents(ctx, 10)
	if err != nil || len(pend) != 1 || pend[0].ID != "ev-m1" {
		t.Fatalf("pending events: %v %+v", err, pend)
	}
}

func TestAcceptLogSeqsFollowLogOrder(t *testing.T) {
	s := openHeld(t, filepath.Join(t.TempDir(), "posthub.db"))
	ctx := context.Background()
	var last int64
	for i := range 5 {
		uuid := "m" + string(rune('a'+i))
		ds := put(t, s, uuid, "system/a")
		extra := storagetest.Delivery(uuid, "system/b", t0)
		if err := s.AddDeliveries(ctx, []hub.Delivery{extra, ds[0]}); err != nil {
			t.Fatal(err)
		}
		if ds[0].Seq <= last {
			t.Fatalf("seq %d after %d", ds[0].Seq, last)
		}
		last = ds[0].Seq
	}
	a, _ := s.ListQueue(ctx, "system/a", 0, 10, false, t0)
	b, _ := s.ListQueue(ctx, "system/b", 0, 10, false, t0)
	if len(a) != 5 || len(b) != 5 {
		t.Fatalf("queues hold %d and %d, want 5 each (AddDeliveries skips the delivery that exists)", len(a), len(b))
	}
	var seqs []int64
	for i := range 5 {
		seqs = append(seqs, a[i].Seq, b[i].Seq)
	}
	if !slices.IsSorted(seqs) {
		t.Fatalf("seqs not in log order: %v", seqs)
	}
	// After a reopen the sequence goes on above everything applied.
	path := s.db.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openHeld(t, path)
	ds := put(t, s2, "after", "system/a")
	if ds[0].Seq <= seqs[len(seqs)-1] {
		t.Fatalf("seq %d after reopen, not above %d", ds[0].Seq, seqs[len(seqs)-1])
	}
}

func TestAcceptLogReplaysWhatACrashLeftUnapplied(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openHeld(t, path)
	applied := put(t, s, "applied", "system/a")
	if _, err := s.ListQueue(context.Background(), "system/a", 0, 1, false, t0); err != nil { // applies
		t.Fatal(err)
	}
	held := map[string][]hub.Delivery{}
	for _, u := range []string{"h1", "h2", "h3"} {
		held[u] = put(t, s, u, "system/a", "mailbox/0101011234")
	}
	crashed := snapshot(t, path)

	r := openHeld(t, crashed)
	whole(t, r, "applied", applied)
	for u, ds := range held {
		whole(t, r, u, ds)
	}
	if n, _ := r.CountQueue(context.Background(), "system/a"); n != 4 {
		t.Fatalf("queue count %d after replay, want 4", n)
	}
	pend, _ := r.PendingEvents(context.Background(), 10)
	if len(pend) != 4 {
		t.Fatalf("%d pending events after replay, want 4", len(pend))
	}
	cs, _ := r.ReadCounters(context.Background(), hub.CounterQuery{Org: "12345678"})
	if len(cs) != 1 || cs[0].Count != 4 {
		t.Fatalf("counters after replay: %+v", cs)
	}
	if segs, _ := filepath.Glob(filepath.Join(logDir(crashed), logSegmentGlob)); len(segs) != 1 {
		t.Fatalf("segments after replay: %v, want only the new one", segs)
	}
	// A replay is not repeated: a second open finds nothing to do, and a
	// message deleted since stays deleted.
	if err := r.DeleteMessage(context.Background(), "h1"); err != nil {
		t.Fatal(err)
	}
	again := snapshot(t, crashed)
	r2 := openHeld(t, again)
	if _, err := r2.GetMessage(context.Background(), "h1"); hub.ErrorCode(err) != hub.NotFound {
		t.Fatalf("deleted message after reopen: %v", err)
	}
}

func TestAcceptLogDoesNotResurrectWhatWasAppliedAndDeleted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openHeld(t, path)
	put(t, s, "gone", "system/a")
	put(t, s, "kept", "system/a")
	ctx := context.Background()
	if err := s.DeleteMessage(ctx, "gone"); err != nil { // applies, then deletes
		t.Fatal(err)
	}
	// The applied entries are still in the current segment.
	if !logDirInUse(path) {
		t.Fatal("no segment")
	}
	r := openHeld(t, snapshot(t, path))
	if _, err := r.GetMessage(ctx, "gone"); hub.ErrorCode(err) != hub.NotFound {
		t.Fatalf("deleted message came back from the log: %v", err)
	}
	if _, err := r.GetMessage(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
}

func TestAcceptLogDropsATornLastEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openHeld(t, path)
	first := put(t, s, "whole", "system/a")
	put(t, s, "torn", "system/a")
	crashed := snapshot(t, path)
	segs, _ := filepath.Glob(filepath.Join(logDir(crashed), logSegmentGlob))
	if len(segs) != 1 {
		t.Fatalf("%d segments", len(segs))
	}
	st, _ := os.Stat(segs[0])
	if err := os.Truncate(segs[0], st.Size()-7); err != nil { // the append a crash cut short
		t.Fatal(err)
	}
	r := openHeld(t, crashed)
	whole(t, r, "whole", first)
	if _, err := r.GetMessage(context.Background(), "torn"); hub.ErrorCode(err) != hub.NotFound {
		t.Fatalf("torn entry: %v", err)
	}
	// The next accept continues the log after the entry that was kept.
	put(t, r, "next", "system/a")
	if _, err := r.ListQueue(context.Background(), "system/a", 0, 5, false, t0); err != nil {
		t.Fatal(err)
	}
}

// crashedInThreeSegments logs a, b and c unapplied, one segment each, and
// returns a crash's copy of the store and its segments in log order.
func crashedInThreeSegments(t *testing.T) (string, []string) {
	t.Helper()
	segmentsOf(t, 1) // every write starts a new segment
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openHeld(t, path)
	for _, u := range []string{"a", "b", "c"} {
		put(t, s, u, "system/a")
	}
	crashed := snapshot(t, path)
	segs, _ := filepath.Glob(filepath.Join(logDir(crashed), logSegmentGlob))
	if len(segs) != 3 {
		t.Fatalf("%d segments, want one per write", len(segs))
	}
	return crashed, segs
}

func TestAcceptLogRefusesDamageBeforeTheNewestSegment(t *testing.T) {
	crashed, segs := crashedInThreeSegments(t)
	damageLastByte(t, segs[0])
	wantOpenRefused(t, crashed)
}

func TestAcceptLogRefusesDamageBeforeATornNewestSegment(t *testing.T) {
	crashed, segs := crashedInThreeSegments(t)
	// b damaged, and c torn: no later entry shows that b is missing, only
	// the name of c's segment does.
	damageLastByte(t, segs[1])
	st, _ := os.Stat(segs[2])
	if err := os.Truncate(segs[2], st.Size()-7); err != nil {
		t.Fatal(err)
	}
	wantOpenRefused(t, crashed)
}

func TestAcceptLogOpensOverDamageToAppliedEntries(t *testing.T) {
	segmentsOf(t, 1)
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openHeld(t, path)
	a := put(t, s, "a", "system/a")
	if _, err := s.CountQueue(context.Background(), "system/a"); err != nil { // applies a
		t.Fatal(err)
	}
	b := put(t, s, "b", "system/a") // a segment of its own; a's stays, the current one when it was applied
	crashed := snapshot(t, path)
	segs, _ := filepath.Glob(filepath.Join(logDir(crashed), logSegmentGlob))
	if len(segs) != 2 {
		t.Fatalf("%d segments, want a's and b's", len(segs))
	}
	damageLastByte(t, segs[0])
	// a is in bbolt already: its damaged copy in the log loses nothing.
	r := openHeld(t, crashed)
	whole(t, r, "a", a)
	whole(t, r, "b", b)
}

func TestAcceptLogReplaysSegmentsOfEarlierVersions(t *testing.T) {
	// Before segment names carried a key, frames were checksummed
	// unseeded and named accept-<first lsn>.log: a crash left by such a
	// version replays.
	path := filepath.Join(t.TempDir(), "posthub.db")
	ds := []hub.Delivery{storagetest.Delivery("m-old", "system/a", t0)}
	w, err := encodeMessageWrite(storagetest.Message("m-old", []byte("content of m-old"), t0), ds, storagetest.Receipt("m-old", t0), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var seq uint64
	if err := w.setSeqs(func() (uint64, error) { seq++; return seq, nil }); err != nil {
		t.Fatal(err)
	}
	e := &logEntry{w: w}
	e.encode(&frameFree{})
	e.seal(1, 0)
	if err := os.MkdirAll(logDir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(logDir(path), fmt.Sprintf("accept-%016x.log", 1)), e.frame, 0o600); err != nil {
		t.Fatal(err)
	}
	s := openHeld(t, path)
	if m, err := s.GetMessage(context.Background(), "m-old"); err != nil || string(m.Content) != "content of m-old" {
		t.Fatalf("message of the earlier version's log: %v %q", err, m.Content)
	}
}

func TestSegmentName(t *testing.T) {
	for name, want := range map[string]bool{
		"accept-0000000000000001-ABCDEFGH23456789.log": true,
		"accept-000000000000002a.log":                  true,
		"accept-2a.log":                                false,
		"accept-000000000000002a-.log":                 false,
		"accept-000000000000002g.log":                  false,
		"spare-1.log":                                  false,
	} {
		first, _, err := segmentName(name)
		if (err == nil) != want || (want && first != 1 && first != 0x2a) {
			t.Errorf("%s: first %d, error %v; want valid %v", name, first, err, want)
		}
	}
	_, a, _ := segmentName("accept-0000000000000001-AAAA.log")
	_, b, _ := segmentName("accept-0000000000000001-BBBB.log")
	_, unseeded, _ := segmentName("accept-0000000000000001.log")
	if a == b || unseeded != 0 {
		t.Fatalf("seeds %x %x %x: want two different keys to give different seeds, and none to give 0", a, b, unseeded)
	}
}

func TestReadSegmentEndsWhereAnEarlierUseBegins(t *testing.T) {
	frameOf := func(uuid string, lsn uint64, seed uint32) []byte {
		w, err := encodeMessageWrite(storagetest.Message(uuid, []byte("content of "+uuid), t0), nil, storagetest.Receipt(uuid, t0), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		e := &logEntry{w: w}
		e.encode(&frameFree{})
		e.seal(lsn, seed)
		return bytes.Clone(e.frame)
	}
	const seed = 0x5eed
	frame := func(uuid string, lsn uint64) []byte { return frameOf(uuid, lsn, seed) }
	read := func(first uint64, frames ...[]byte) ([]uint64, uint64) {
		t.Helper()
		p := filepath.Join(t.TempDir(), "accept.log")
		if err := os.WriteFile(p, append(bytes.Join(frames, nil), make([]byte, 100)...), 0o600); err != nil {
			t.Fatal(err)
		}
		var got []uint64
		end, err := readSegment(p, first, seed, func(e *logEntry) error { got = append(got, e.lsn); return nil })
		if err != nil {
			t.Fatal(err)
		}
		return got, end
	}
	// Used for lsns 1 to 3, then for 8 and 9: the frames are the same
	// size, so the first use's third is whole behind the new ones.
	if got, end := read(8, frame("m-a", 8), frame("m-b", 9), frame("m-c", 3)); !slices.Equal(got, []uint64{8, 9}) || end != 9 {
		t.Fatalf("entries %v, end %d; want [8 9], 9", got, end)
	}
	if got, end := read(8, frame("m-c", 3)); len(got) != 0 || end != 7 {
		t.Fatalf("entries %v, end %d; want none, 7", got, end)
	}
	if got, end := read(8, frame("m-a", 8), frame("m-b", 10)); !slices.Equal(got, []uint64{8}) || end != 8 {
		t.Fatalf("entries %v, end %d; want [8], 8", got, end)
	}
	// A frame of another run (or one a sender wrote inside a letter's
	// content), with the lsn that comes next: its checksum has another seed.
	if got, end := read(8, frame("m-a", 8), frameOf("m-b", 9, 0), frameOf("m-c", 9, 1)); !slices.Equal(got, []uint64{8}) || end != 8 {
		t.Fatalf("entries %v, end %d; want [8], 8", got, end)
	}
}

func TestAcceptLogRollsAndDeletesAppliedSegments(t *testing.T) {
	segmentsOf(t, 1)
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openHeld(t, path)
	for _, u := range []string{"a", "b", "c", "d"} {
		put(t, s, u, "system/a")
	}
	if _, err := s.CountQueue(context.Background(), "system/a"); err != nil { // applies
		t.Fatal(err)
	}
	// The applier removes them right after the apply the read waited for.
	var segs []string
	for range 200 {
		if segs, _ = filepath.Glob(filepath.Join(logDir(path), logSegmentGlob)); len(segs) == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(segs) != 1 {
		t.Fatalf("%d segments after the apply, want only the one being written", len(segs))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if logDirInUse(path) {
		t.Fatal("a clean close left segments")
	}
}

func TestAcceptLogReusesAppliedSegmentsWithoutReplayingTheirEntries(t *testing.T) {
	segmentsOf(t, 4<<10) // a few entries per segment
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openHeld(t, path)
	ctx := context.Background()
	glob := func(pattern string) []string {
		p, _ := filepath.Glob(filepath.Join(logDir(path), pattern))
		return p
	}
	// First use: the segments fill, are applied and become spares.
	var gone []string
	for i := range 24 {
		u := fmt.Sprintf("old-%02d", i)
		put(t, s, u, "system/a")
		gone = append(gone, u)
	}
	if _, err := s.CountQueue(ctx, "system/a"); err != nil { // applies
		t.Fatal(err)
	}
	// Both spares kept (filled, in the log's list) and only the current
	// segment left: the applier is done with the first use.
	var spares []os.FileInfo
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s.alog.mu.Lock()
		kept := len(s.alog.spares)
		s.alog.mu.Unlock()
		spares = spares[:0]
		for _, p := range glob(logSpareGlob) {
			if st, err := os.Stat(p); err == nil {
				spares = append(spares, st)
			}
		}
		if kept == logSpares && len(spares) == logSpares && len(glob(logSegmentGlob)) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spares kept, %d spare files after the apply, want %d", kept, len(spares), logSpares)
		}
	}
	// Applied, then deleted: their frames stay in the spares, behind
	// whatever the second use writes.
	for _, u := range gone {
		if err := s.DeleteMessage(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	// Second use: the next segments are the spares, the last one not full
	// (three entries fill one).
	kept := map[string][]hub.Delivery{}
	for i := range 5 {
		u := fmt.Sprintf("new-%02d", i)
		kept[u] = put(t, s, u, "system/b")
	}
	reused := 0
	for _, p := range glob(logSegmentGlob) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(spares, func(sp os.FileInfo) bool { return os.SameFile(sp, st) }) {
			reused++
			if st.Size() != logSegmentMax {
				t.Fatalf("reused segment %s is %d bytes, want %d: appends grew it", filepath.Base(p), st.Size(), logSegmentMax)
			}
		}
	}
	if reused == 0 {
		t.Fatal("no spare was reused")
	}
	r := openHeld(t, snapshot(t, path))
	for u, ds := range kept {
		whole(t, r, u, ds)
	}
	for _, u := range gone {
		if _, err := r.GetMessage(ctx, u); hub.ErrorCode(err) != hub.NotFound {
			t.Fatalf("deleted message %s came back from a reused segment: %v", u, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if p := glob("*"); len(p) != 0 {
		t.Fatalf("a clean close left %v", p)
	}
}

func TestAcceptLogCloseAppliesEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openHeld(t, path)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			put(t, s, "c"+string(rune('a'+i)), "system/a")
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMessage(context.Background(), storagetest.Message("late", nil, t0), nil, hub.Receipt{}); hub.ErrorCode(err) != hub.Unavailable {
		t.Fatalf("put after close: %v", err)
	}
	// Without the log the file must hold everything.
	r, err := Open(path, Options{NoAcceptLog: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if n, _ := r.CountQueue(context.Background(), "system/a"); n != 20 {
		t.Fatalf("%d in the queue after close, want 20", n)
	}
}

func TestNoAcceptLogRefusesAFileWithUnappliedEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openHeld(t, path)
	put(t, s, "m", "system/a")
	crashed := snapshot(t, path)
	if r, err := Open(crashed, Options{NoAcceptLog: true}); hub.ErrorCode(err) != hub.Unavailable {
		if err == nil {
			r.Close()
		}
		t.Fatalf("open without the log over its entries: %v", err)
	}
	r := openHeld(t, crashed)
	whole(t, r, "m", nil)
}

// stallSync holds every append between its write and its fdatasync until
// the returned release is called; fail makes the held append fail.
func stallSync(t *testing.T) (held <-chan struct{}, release func(fail bool)) {
	h, r, over := make(chan struct{}, 16), make(chan bool), make(chan struct{})
	logBeforeSync = func(l *acceptLog) {
		h <- struct{}{}
		select {
		case fail := <-r:
			if fail {
				l.f.Close()
			}
		case <-over: // the test ended early: let the store close
		}
	}
	t.Cleanup(func() { close(over) })
	return h, func(fail bool) { r <- fail }
}

func TestAcceptLogAnswersOnlyWithWhatIsDurable(t *testing.T) {
	t.Cleanup(func() { logBeforeSync = nil })
	for _, fail := range []bool{false, true} {
		s := openHeld(t, filepath.Join(t.TempDir(), "posthub.db"))
		ctx := context.Background()
		held, release := stallSync(t)
		putDone := make(chan error, 1)
		go func() {
			putDone <- s.PutMessage(ctx, storagetest.Message("m", []byte("x"), t0), []hub.Delivery{storagetest.Delivery("m", "system/a", t0)}, storagetest.Receipt("m", t0))
		}()
		<-held // written, not yet synced
		type answer struct {
			m   hub.Message
			err error
		}
		got := make(chan answer, 1)
		go func() {
			m, err := s.GetMessage(ctx, "m")
			got <- answer{m, err}
		}()
		conflict := make(chan error, 1)
		go func() { // a resubmission of the same UUID must not be refused on an entry that may yet fail
			conflict <- s.PutMessage(ctx, storagetest.Message("m", []byte("x"), t0), nil, hub.Receipt{})
		}()
		select {
		case a := <-got:
			t.Fatalf("GetMessage answered (%v) before the entry was durable", a.err)
		case err := <-conflict:
			t.Fatalf("PutMessage of the same UUID answered (%v) before the first was durable", err)
		case <-time.After(100 * time.Millisecond):
		}
		release(fail)
		perr := <-putDone
		if !fail {
			a := <-got
			if perr != nil || a.err != nil || a.m.UUID != "m" {
				t.Fatalf("after the sync: put %v, get %v", perr, a.err)
			}
			if err := <-conflict; hub.ErrorCode(err) != hub.Conflict {
				t.Fatalf("second PutMessage after the first is durable: %v", err)
			}
			continue
		}
		if hub.ErrorCode(perr) != hub.Unavailable {
			t.Fatalf("after a failed sync: put %v, want unavailable", perr)
		}
		// The resubmission is no Conflict: the first was never
		// acknowledged. It is logged once the tail is repaired (its own
		// append is held, and let go, like the first).
		select {
		case err := <-conflict:
			t.Fatalf("second PutMessage after the failed append: %v, want it logged", err)
		case <-held:
			release(false)
		}
		if err := <-conflict; err != nil {
			t.Fatalf("second PutMessage after the failed append: %v", err)
		}
		// The read waited past the failed entry: it found nothing, or the
		// resubmission once that was durable.
		if a := <-got; hub.ErrorCode(a.err) != hub.NotFound && (a.err != nil || a.m.UUID != "m") {
			t.Fatalf("GetMessage after a failed sync: %v", a.err)
		}
	}
}

func TestAcceptLogRefusesKeysBboltCannotStore(t *testing.T) {
	s := openHeld(t, filepath.Join(t.TempDir(), "posthub.db"))
	long := string(bytes.Repeat([]byte("x"), maxIDLen+1))
	err := s.PutMessage(context.Background(), storagetest.Message(long, []byte("x"), t0), nil, hub.Receipt{})
	if hub.ErrorCode(err) != hub.Invalid {
		t.Fatalf("PutMessage with a %d-byte UUID: %v", len(long), err)
	}
	err = s.AddDeliveries(context.Background(), []hub.Delivery{{ID: long, MessageUUID: "m", Queue: "system/a"}})
	if hub.ErrorCode(err) != hub.Invalid {
		t.Fatalf("AddDeliveries with a long ID: %v", err)
	}
	if unapplied(s) != 0 {
		t.Fatal("a refused write was logged")
	}
}

func TestAcceptLogRefusesAnEntryThatDoesNotDecode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posthub.db")
	s := openHeld(t, path)
	put(t, s, "m", "system/a")
	crashed := snapshot(t, path)
	segs, _ := filepath.Glob(filepath.Join(logDir(crashed), logSegmentGlob))
	// A whole entry, checksum and all, of a kind the log never writes:
	// damage, not a torn append, even in the newest segment.
	e := &logEntry{frame: append(make([]byte, logHeader), 'X')}
	_, seed, err := segmentName(filepath.Base(segs[len(segs)-1]))
	if err != nil {
		t.Fatal(err)
	}
	e.seal(2, seed)
	f, err := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(e.frame); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if r, err := Open(crashed, Options{}); hub.ErrorCode(err) != hub.Internal {
		if err == nil {
			r.Close()
		}
		t.Fatalf("open over an entry that does not decode: %v, want internal", err)
	}
}

// The frame is encoded under the log's mutex: it is written once, into a
// buffer taken from the free frames for its exact size (never grown), for
// a message with events and deliveries and for deliveries alone, and
// decodes to what was written.
func TestAcceptLogFrameIsSizedExactly(t *testing.T) {
	uuid := "m-frame"
	ds := []hub.Delivery{storagetest.Delivery(uuid, "system/a", t0), storagetest.Delivery(uuid, "system/b", t0)}
	evs := []hub.Event{
		{ID: "ev-1", Tag: "MEMO_SEND_RECEIVED", Time: t0, MessageUUID: uuid, Orgs: []string{"12345678"}, Detail: map[string]string{"long": string(bytes.Repeat([]byte("x"), 600))}},
		{ID: "ev-2", Tag: "MEMO_DELIVERED", Time: t0, MessageUUID: uuid, Orgs: []string{"12345678"}},
	}
	cs := []hub.Counter{{Key: hub.CounterKey{Org: "12345678", Day: "2026-03-01", Direction: "SENT"}, Count: 1, Bytes: 10}}
	content := bytes.Repeat([]byte("c"), 12000)
	w, err := encodeMessageWrite(storagetest.Message(uuid, content, t0), ds, storagetest.Receipt(uuid, t0), evs, cs)
	if err != nil {
		t.Fatal(err)
	}
	var seq uint64
	if err := w.setSeqs(func() (uint64, error) { seq++; return seq, nil }); err != nil {
		t.Fatal(err)
	}
	alone := &messageWrite{ds: w.ds, dsRaw: w.dsRaw}
	for name, w := range map[string]*messageWrite{"message": w, "deliveries alone": alone} {
		e := &logEntry{w: w}
		e.encode(&frameFree{})
		e.seal(7, 0)
		if _, size := frameClass(len(e.frame)); e.pooled == nil || cap(e.frame) != size || &e.frame[0] != &(*e.pooled)[:1][0] {
			t.Errorf("%s: frame of %d bytes in a buffer of %d, not the reused one of its class (%d bytes)", name, len(e.frame), cap(e.frame), size)
		}
		got, n, err := decodeFrame(e.frame, e.lsn, 0)
		if err != nil || n != len(e.frame) || got.lsn != 7 {
			t.Fatalf("%s: decode: %v, %d of %d bytes, lsn %d", name, err, n, len(e.frame), got.lsn)
		}
		if !bytes.Equal(got.w.m.Content, w.m.Content) || len(got.w.evRaw) != len(w.evRaw) || len(got.w.dsRaw) != len(w.dsRaw) {
			t.Fatalf("%s: decoded entry differs", name)
		}
	}
}
