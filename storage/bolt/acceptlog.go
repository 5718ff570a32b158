package bolt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/atomicfile"
)

// The accept log makes an accepted message durable with one sequential
// append and one fdatasync, shared by every accept waiting at that moment,
// instead of a bbolt commit per group of waiting accepts. A bbolt commit
// rewrites the root and branch pages of every bucket it touches and costs
// two fdatasyncs, so its price per message falls with the group's size;
// with sixteen senders a group held about six messages. The log is applied
// to bbolt in the background in groups of everything durable by then
// (typically tens to hundreds of messages); applied segments are reused
// or deleted (see below).
//
// Only the writes that create messages and deliveries go through the log
// (PutMessage, PutMessageWith, AddDeliveries). Everything else is as
// before, with one rule that keeps the store linearisable: a read or write
// of data the log writes first waits until every log entry that was
// durable when it began is applied (barrier), and has the applier apply at
// once instead of at its next interval (Options.ApplyInterval). Reads of
// organisations, systems, contacts, policies, users, locks, mailbox state
// and sealed events never wait, since the log never writes them; the event
// sealer's read of pending events waits for the next interval without
// hurrying it. GetMessage and ReceiptFor, which the accept path itself uses
// to answer resubmissions, look at the unapplied entries first instead of
// waiting.
//
// A message's conflict check (UUID or delivery taken) is made when it is
// logged, under the log's mutex, against the unapplied entries and bbolt.
// Delivery Seqs are assigned then too, from a counter that continues the
// deliveries bucket's sequence; entries are applied in log order, so Seq
// order within a queue is commit order as before.
//
// On Open the log is replayed: entries after the last applied sequence
// number (kept in the meta bucket, written in the same transaction as
// every applied group) are applied, a torn last entry (a crash in the
// middle of an append, never acknowledged) is dropped, and the segments
// are deleted. A damaged or missing entry in an older segment refuses
// the open: those entries were acknowledged and must not be skipped
// silently. In the newest segment damage cannot be told from a torn last
// append, and ends the log there.
//
// Applied segments are kept, up to logSpares, and reused by the next
// rolls (retire): appending into blocks a file has already costs one
// fdatasync of the data, where growing a file costs a journal commit too.
// A reused segment keeps the frames of its earlier use behind the new
// ones (overwriting them would double the log's writes and stall its
// appends behind the flush): like bbolt's free pages, the log directory
// may hold letters deleted since, until they are overwritten. They
// cannot be read back as entries: every frame's checksum is seeded with
// a key drawn at random when the log opens and named in its segments'
// file names, so a frame of an earlier run, or one a sender put inside a
// letter's content, fails it; and a frame of this run written before
// the segment was reused has an lsn older than the one in its name.
//
// A failed append (the disk refused the write or its fdatasync: a full
// disk, an I/O error) refuses its entries and every entry logged behind
// them; their callers get Unavailable and none was acknowledged. The log
// then takes no entry until its tail is repaired: the writer cuts the
// segment back to the end of the last durable entry and fdatasyncs it
// through a new descriptor, so the failed bytes are gone from disk before
// anything else is appended, and the next entry takes the lsn after the
// last durable one. Nothing is acknowledged after entries whose fate on
// disk is unknown, and a replay finds the lsns without a gap. Once space
// returns the next append succeeds, without a restart. When the repair
// fails too, each later accept retries it, and Ping reports the log
// broken so that a supervisor can restart the hub (the next open replays
// what is durable).
//
// A failed apply (bbolt refuses the commit, e.g. on a full disk) loses
// nothing either: the entries stay in the log, on disk, and the applier
// retries with growing pauses until they go in, in order. Meanwhile
// nothing waits for it without bound: a read or write behind the barrier,
// an accept waiting for room in the log, and Ping answer Unavailable at
// once with the apply's error.

const (
	// logPendingMax bounds the bytes of unapplied entries: accepts wait
	// beyond it, so a stalled apply (disk full) cannot grow memory without
	// limit.
	logPendingMax = 64 << 20
	logApplyMax   = 2000
	logHeader     = 4 + 4 + 8 // length, crc32c, lsn
	// logSpares is how many applied segments are kept for reuse.
	logSpares = 2
	// DefaultApplyInterval is how long the applier lets entries gather
	// before it writes them to bbolt, unless a reader waits for them.
	DefaultApplyInterval = 200 * time.Millisecond
)

var (
	// logSegmentMax is the size a segment grows to before the next one
	// starts, unless a single append is larger (a variable for tests).
	logSegmentMax int64 = 32 << 20
	// logBeforeSync, when set (by tests), runs between an append's write
	// and its fdatasync.
	logBeforeSync func(*acceptLog)
	// logBeforeApply, when set (by tests), runs before each apply and
	// fails it by returning an error.
	logBeforeApply func() error
	// openSegment opens a segment file (tests inject failing files).
	openSegment = func(path string, flag int) (segmentFile, error) {
		f, err := os.OpenFile(path, flag, 0o600)
		if err != nil {
			return nil, err
		}
		return osSegment{f}, nil
	}

	crcTable       = crc32.MakeTable(crc32.Castagnoli)
	logAppliedKey  = []byte("acceptlog.applied")
	errStoreClosed = hub.Errorf(hub.Unavailable, "bolt: store closed")
	logSegmentGlob = "accept-*.log"
	logSpareGlob   = "spare-*.log"
)

// logEntry is one logged write: a message with its deliveries, receipt,
// events and counters (PutMessageWith), or deliveries alone
// (AddDeliveries, w.m.UUID ""), with the records encoded as bbolt stores
// them.
type logEntry struct {
	w      *messageWrite
	lsn    uint64
	size   int // bytes held for it until applied
	frame  []byte
	pooled *[]byte       // frame's buffer, given back once applied (framepool.go)
	synced chan struct{} // closed once durable, or forgotten after a failed append
	err    error         // the append's outcome, set before synced is closed
}

type segment struct {
	first uint64 // lsn of its first entry
	path  string
}

// segmentFile is what the writer needs of a segment's descriptor.
type segmentFile interface {
	WriteAt(b []byte, off int64) (int, error)
	Truncate(size int64) error
	Sync() error // fdatasync
	Close() error
}

type osSegment struct{ *os.File }

func (f osSegment) Sync() error { return fdatasync(f.File) }

type acceptLog struct {
	s     *Store
	dir   string
	log   *slog.Logger
	every time.Duration // apply interval

	mu        sync.Mutex
	byUUID    map[string]*logEntry // logged, not yet applied
	byDeliv   map[string]*logEntry
	held      int // bytes of unapplied entries
	nextLSN   uint64
	delSeq    uint64      // last delivery Seq handed out
	toWrite   []*logEntry // logged, not yet handed to the writer
	toApply   []*logEntry // durable, not yet applied, in lsn order
	segs      []segment
	key       string   // names this run's segments: accept-<first lsn>-<key>.log
	seed      uint32   // crc32c of key, the frames' checksum seed
	spares    []string // applied segments kept for reuse (retire)
	spareSeq  int
	broken    error // an append failed and the tail is not yet repaired
	applyErr  error // the last apply failed (nil once one succeeds)
	closing   bool
	changedCh chan struct{} // closed when entries leave the log (applied, or forgotten after a failed append)
	frames    frameFree     // applied entries' frames, for encode to reuse

	durable atomic.Uint64 // every entry up to this lsn is durable
	applied atomic.Uint64 // every entry up to this lsn is in bbolt

	f   segmentFile
	off int64 // end of the last durable entry in f

	writeSig  chan struct{}
	applySig  chan struct{}
	urgent    chan struct{} // a reader waits: apply now
	applyQuit chan struct{} // closed by writeLoop after its last write
	stopped   chan struct{} // closed when applyLoop has returned
	wg        sync.WaitGroup
}

func logDir(dbPath string) string { return dbPath + ".acceptlog" }

// openAcceptLog replays what an earlier run left and starts a new segment.
// The committer must be running.
func openAcceptLog(s *Store, dbPath string, every time.Duration, log *slog.Logger) (*acceptLog, error) {
	l := &acceptLog{s: s, dir: logDir(dbPath), log: log, every: every, key: rand.Text()[:16], byUUID: map[string]*logEntry{}, byDeliv: map[string]*logEntry{},
		changedCh: make(chan struct{}), writeSig: make(chan struct{}, 1), applySig: make(chan struct{}, 1),
		urgent: make(chan struct{}, 1), applyQuit: make(chan struct{}), stopped: make(chan struct{})}
	l.seed = crc32.Checksum([]byte(l.key), crcTable)
	if err := os.MkdirAll(l.dir, 0o750); err != nil {
		return nil, hub.Wrap(hub.Unavailable, err, "bolt: create accept log directory")
	}
	// The directory's own entry must be on disk before an entry in it is
	// acknowledged (POSIX does not promise it after a power cut otherwise).
	if err := atomicfile.SyncDir(filepath.Dir(l.dir)); err != nil {
		return nil, hub.Wrap(hub.Unavailable, err, "bolt: sync the accept log directory's parent")
	}
	last, err := l.replay()
	if err != nil {
		return nil, err
	}
	if err := l.removeSpares(); err != nil {
		return nil, hub.Wrap(hub.Internal, err, "bolt: remove accept log spares")
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		l.delSeq = tx.Bucket(bDeliveries).Sequence()
		return nil
	}); err != nil {
		return nil, hub.Wrap(hub.Internal, err, "bolt: read delivery sequence")
	}
	l.nextLSN = last + 1
	l.durable.Store(last)
	l.applied.Store(last)
	if err := l.roll(l.nextLSN); err != nil {
		return nil, err
	}
	l.wg.Add(2)
	go l.writeLoop()
	go l.applyLoop()
	return l, nil
}

// replay applies the entries of the segments left on disk that are newer
// than the applied mark, deletes the segments and returns the highest lsn
// seen (or the applied mark).
//
// A segment holds the entries from the lsn in its name on, one after the
// other; its valid part ends where the file does, or at the first frame
// that is torn, damaged or of another run (a reused segment keeps the
// frames of its earlier use), or whose lsn is not the next one (a frame
// of the earlier use in this run). In the newest segment that end is the
// log's end: a torn last append, or damage that cannot be told from one.
// An older one must reach the lsn before the next segment's first, unless
// those entries were applied: anything else is damage to acknowledged
// entries and refuses the open.
func (l *acceptLog) replay() (uint64, error) {
	paths, err := filepath.Glob(filepath.Join(l.dir, logSegmentGlob))
	if err != nil {
		return 0, hub.Wrap(hub.Internal, err, "bolt: list accept log")
	}
	sort.Strings(paths) // the names carry the first lsn in fixed-width hex
	firsts := make([]uint64, len(paths))
	seeds := make([]uint32, len(paths))
	for i, p := range paths {
		var err error
		if firsts[i], seeds[i], err = segmentName(filepath.Base(p)); err != nil {
			return 0, hub.Wrap(hub.Internal, err, "bolt: accept log segment name %s", filepath.Base(p))
		}
	}
	var mark uint64
	if err := l.s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bMeta).Get(logAppliedKey); len(v) == 8 {
			mark = readU64(v)
		}
		return nil
	}); err != nil {
		return 0, hub.Wrap(hub.Internal, err, "bolt: read accept log mark")
	}
	last := mark
	for i, p := range paths {
		var batch []*logEntry
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			err := l.applyBatch(batch, true)
			batch = batch[:0]
			return err
		}
		end, err := readSegment(p, firsts[i], seeds[i], func(e *logEntry) error {
			if e.lsn <= mark {
				return nil
			}
			if e.lsn != last+1 {
				return fmt.Errorf("accept log %s: entry %d follows %d", filepath.Base(p), e.lsn, last)
			}
			last = e.lsn
			batch = append(batch, e)
			if len(batch) >= logApplyMax {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err == nil && i+1 < len(paths) {
			if want := firsts[i+1] - 1; want > mark && end < want {
				err = fmt.Errorf("accept log %s: entries %d to %d are damaged or missing", filepath.Base(p), max(end, mark)+1, want)
			}
		}
		if err != nil {
			return 0, hub.Wrap(hub.Internal, err, "bolt: replay accept log")
		}
	}
	if len(paths) > 0 && last > mark {
		l.log.Info("bolt: accept log replayed", "entries", last-mark)
	}
	for _, p := range paths {
		if err := os.Remove(p); err != nil {
			return 0, hub.Wrap(hub.Internal, err, "bolt: remove applied accept log")
		}
	}
	return last, nil
}

// segmentName returns the first lsn and the checksum seed that a
// segment's name gives: accept-<first lsn>-<key>.log, or
// accept-<first lsn>.log (unseeded) as versions before keys wrote them.
func segmentName(name string) (uint64, uint32, error) {
	rest, ok := strings.CutPrefix(name, "accept-")
	rest, ok2 := strings.CutSuffix(rest, ".log")
	hexLSN, key, keyed := strings.Cut(rest, "-")
	first, err := strconv.ParseUint(hexLSN, 16, 64)
	if !ok || !ok2 || err != nil || len(hexLSN) != 16 || (keyed && key == "") {
		return 0, 0, fmt.Errorf("not a segment name")
	}
	if !keyed {
		return first, 0, nil
	}
	return first, crc32.Checksum([]byte(key), crcTable), nil
}

// readSegment calls fn for each entry of the segment's valid part (see
// replay), the first of which has lsn first, and returns the lsn of the
// last one (first-1 when there is none). seed is the segment's checksum
// seed. An entry whose checksum and lsn hold but which does not decode is
// an error.
func readSegment(path string, first uint64, seed uint32, fn func(*logEntry) error) (uint64, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	next := first
	for off := 0; off < len(raw); {
		e, n, err := decodeFrame(raw[off:], next, seed)
		if errors.Is(err, errTorn) || errors.Is(err, errStale) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("accept log %s at %d: %w", filepath.Base(path), off, err)
		}
		if err := fn(e); err != nil {
			return 0, err
		}
		next++
		off += n
	}
	return next - 1, nil
}

// Frame: length (of what follows the checksum), crc32c (of what follows
// it), lsn, then 'M' and the sections message record, content, receipt,
// counters, the events and the deliveries, or 'D' and the deliveries. A
// section is a 4-byte length and its bytes; a list is a 4-byte count and
// its sections.
//
// The frame's buffer is taken from free (guarded by the log's mutex, as
// encode runs under it).
func (e *logEntry) encode(free *frameFree) {
	w := e.w
	// The frame is sized exactly: it is encoded under the log's mutex, and
	// a guess that falls short copies the whole frame, content and all,
	// once more (an event's record is longer than any fixed guess). Its
	// buffer is reused, and goes back once the entry is applied (recycle).
	n := logHeader + 1 + 4 + len(w.dsRaw)*4
	for _, b := range w.dsRaw {
		n += len(b)
	}
	if w.m.UUID != "" {
		n += 4*5 + len(w.rec) + len(w.m.Content) + len(w.rRaw) + len(w.csRaw) + len(w.evRaw)*4
		for _, b := range w.evRaw {
			n += len(b)
		}
	}
	f, pooled := free.get(n)
	f = f[:logHeader]
	section := func(b []byte) {
		f = binary.BigEndian.AppendUint32(f, uint32(len(b)))
		f = append(f, b...)
	}
	list := func(bs [][]byte) {
		f = binary.BigEndian.AppendUint32(f, uint32(len(bs)))
		for _, b := range bs {
			section(b)
		}
	}
	if w.m.UUID != "" {
		f = append(f, 'M')
		section(w.rec)
		at := len(f) + 4
		section(w.m.Content)
		// From here on the content is the frame's copy, not the caller's.
		w.m.Content = f[at : at+len(w.m.Content) : at+len(w.m.Content)]
		section(w.rRaw)
		section(w.csRaw)
		list(w.evRaw)
	} else {
		f = append(f, 'D')
	}
	list(w.dsRaw)
	e.frame, e.pooled = f, pooled
}

// recycle gives the frame of an applied entry back for reuse. Only the
// applier calls it, with l.mu held, after the commit that applied e and
// after forget: e is in none of the log's maps or lists then, and every
// reader of its frame (the writer's copy into the segment, message's copy
// of the content) reads under l.mu or before e became durable, so none
// can reach the buffer any more.
func (l *acceptLog) recycle(e *logEntry) {
	if e.pooled == nil {
		return
	}
	p := e.pooled
	e.frame, e.pooled = nil, nil
	if e.w.m.UUID != "" {
		e.w.m.Content = nil // it pointed into the frame
	}
	l.frames.put(p)
}

// seal stamps the lsn, length and checksum.
func (e *logEntry) seal(lsn uint64, seed uint32) {
	e.lsn = lsn
	f := e.frame
	binary.BigEndian.PutUint32(f[0:], uint32(len(f)-8))
	binary.BigEndian.PutUint64(f[8:], lsn)
	binary.BigEndian.PutUint32(f[4:], crc32.Update(seed, crcTable, f[8:]))
}

var (
	errTorn      = errors.New("incomplete or damaged entry")
	errStale     = errors.New("entry of an earlier use of the segment")
	errMalformed = errors.New("entry does not decode")
)

func decodeFrame(b []byte, lsn uint64, seed uint32) (*logEntry, int, error) {
	if len(b) < logHeader+1 {
		return nil, 0, errTorn
	}
	n := int(binary.BigEndian.Uint32(b)) + 8
	if n < logHeader+1 || n > len(b) || crc32.Update(seed, crcTable, b[8:n]) != binary.BigEndian.Uint32(b[4:]) {
		return nil, 0, errTorn
	}
	if binary.BigEndian.Uint64(b[8:]) != lsn {
		return nil, 0, errStale
	}
	e := &logEntry{lsn: lsn, w: &messageWrite{}}
	r := frameReader{b: b[logHeader+1 : n]}
	if err := e.w.decode(b[logHeader], &r); err != nil {
		return nil, 0, fmt.Errorf("decode entry %d: %w", e.lsn, err)
	}
	return e, n, nil
}

type frameReader struct {
	b   []byte
	bad bool
}

func (r *frameReader) u32() int {
	if len(r.b) < 4 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return int(v)
}

func (r *frameReader) section() []byte {
	n := r.u32()
	if r.bad || n > len(r.b) {
		r.bad = true
		return nil
	}
	v := bytes.Clone(r.b[:n])
	r.b = r.b[n:]
	return v
}

func (r *frameReader) list() [][]byte {
	n := r.u32()
	if r.bad || n > len(r.b) {
		r.bad = true
		return nil
	}
	out := make([][]byte, 0, n)
	for range n {
		out = append(out, r.section())
	}
	return out
}

// decode reads a logged write back, the records as bytes to store and as
// values for the keys they are stored under.
func (w *messageWrite) decode(kind byte, r *frameReader) error {
	if kind == 'M' {
		rec, content, rRaw, cs, evs := r.section(), r.section(), r.section(), r.section(), r.list()
		if r.bad {
			return errMalformed
		}
		var mr messageRec
		if err := json.Unmarshal(rec, &mr); err != nil {
			return err
		}
		w.m, w.rec = mr.Message, rec
		w.m.ContentKey = mr.ContentKey
		if len(content) > 0 {
			w.m.Content = content
		}
		if len(rRaw) > 0 {
			var rr receiptRec
			if err := json.Unmarshal(rRaw, &rr); err != nil {
				return err
			}
			w.r, w.rRaw = rr.value(), rRaw
		}
		if err := json.Unmarshal(cs, &w.cs); err != nil {
			return err
		}
		w.evRaw = evs
		w.evs = make([]hub.Event, len(evs))
		for i, raw := range evs {
			var err error
			if w.evs[i], err = decodeEvent(raw); err != nil {
				return err
			}
		}
	} else if kind != 'D' {
		return errMalformed
	}
	w.dsRaw = r.list()
	if r.bad {
		return errMalformed
	}
	w.ds = make([]hub.Delivery, len(w.dsRaw))
	for i, raw := range w.dsRaw {
		if err := json.Unmarshal(raw, &w.ds[i]); err != nil {
			return err
		}
	}
	return nil
}

// roll starts a new segment for entries from lsn first on: a spare
// renamed (see retire), else a new file.
func (l *acceptLog) roll(first uint64) error {
	p := filepath.Join(l.dir, fmt.Sprintf("accept-%016x-%s.log", first, l.key))
	l.mu.Lock()
	var spare string
	if n := len(l.spares); n > 0 {
		spare, l.spares = l.spares[n-1], l.spares[:n-1]
	}
	l.mu.Unlock()
	var f segmentFile
	var err error
	if spare != "" {
		if err = os.Rename(spare, p); err == nil {
			f, err = openSegment(p, os.O_WRONLY)
		}
		if err != nil {
			l.log.Warn("bolt: reuse a spare accept log segment", "error", err)
			_ = os.Remove(spare)
			_ = os.Remove(p)
		}
	}
	if spare == "" || err != nil {
		f, err = openSegment(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY)
	}
	if err == nil {
		// The name must be on disk before any entry is: a replay reads a
		// segment's entries from the lsn its name carries.
		if err = atomicfile.SyncDir(l.dir); err != nil {
			_ = f.Close()
		}
	}
	if err != nil {
		// Gone again, so that the roll can be tried again for the same
		// first lsn once the log is repaired.
		_ = os.Remove(p)
		return hub.Wrap(hub.Unavailable, err, "bolt: create accept log segment")
	}
	if l.f != nil {
		_ = l.f.Close()
	}
	l.f, l.off = f, 0
	l.mu.Lock()
	l.segs = append(l.segs, segment{first: first, path: p})
	l.mu.Unlock()
	return nil
}

// retire disposes of an applied segment. Up to logSpares are kept as
// spares for the next rolls, filled to logSegmentMax: an append that
// overwrites blocks the file already has makes fdatasync write the data
// alone, while one that grows the file has it commit the file system's
// journal as well, which costs more and queues behind bbolt's writes (on
// ext4, this VM: 0.23 ms instead of 0.26-0.44 ms per append of 108 KiB,
// and 0.4-0.5 ms instead of 0.9-3.1 ms at the 99th percentile while
// another file is written and synced). The rest are deleted, and all of
// them while the log is closing or broken (a failed append drops the
// spares: see dropSpares). Called by the applier only.
func (l *acceptLog) retire(p string) {
	l.mu.Lock()
	keep := len(l.spares) < logSpares && !l.closing && l.broken == nil
	l.spareSeq++
	spare := filepath.Join(l.dir, fmt.Sprintf("spare-%d.log", l.spareSeq))
	l.mu.Unlock()
	if keep {
		err := os.Rename(p, spare)
		if err == nil {
			p = spare
			err = fillSpare(spare)
		}
		if err == nil {
			l.mu.Lock()
			l.spares = append(l.spares, spare)
			l.mu.Unlock()
			return
		}
		l.log.Warn("bolt: keep an applied accept log segment for reuse", "error", err)
	}
	if err := os.Remove(p); err != nil {
		l.log.Warn("bolt: remove applied accept log segment", "error", err)
	}
}

// fillSpare extends a spare to logSegmentMax with zeros, durably. What it
// held stays (see the package comment).
func fillSpare(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() >= logSegmentMax {
		return nil
	}
	zeros := make([]byte, min(1<<20, logSegmentMax-st.Size()))
	for off := st.Size(); off < logSegmentMax; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros[:min(int64(len(zeros)), logSegmentMax-off)], off); err != nil {
			return err
		}
	}
	return fdatasync(f)
}

// dropSpares deletes the spares kept now.
func (l *acceptLog) dropSpares() {
	l.mu.Lock()
	spares := l.spares
	l.spares = nil
	l.mu.Unlock()
	for _, p := range spares {
		if err := os.Remove(p); err != nil {
			l.log.Warn("bolt: remove a spare accept log segment", "error", err)
		}
	}
}

// removeSpares deletes the spares, and those an earlier run left.
func (l *acceptLog) removeSpares() error {
	paths, err := filepath.Glob(filepath.Join(l.dir, logSpareGlob))
	if err != nil {
		return err
	}
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	l.mu.Lock()
	l.spares = nil
	l.mu.Unlock()
	return nil
}

// put logs e: the conflict check, Seq assignment, encoding of the
// deliveries and lsn happen under the mutex; put returns once e is durable.
func (l *acceptLog) put(ctx context.Context, e *logEntry, check func(tx *bolt.Tx) error) error {
	w := e.w
	l.mu.Lock()
	for {
		if err := l.usable(); err != nil {
			l.mu.Unlock()
			return err
		}
		// Wait while the log is full, or while an entry that holds this
		// message or one of its deliveries is logged but not yet durable:
		// what it decides (a Conflict, a skipped delivery) may only rest
		// on what is on disk.
		var wait <-chan struct{}
		if l.held >= logPendingMax {
			if l.applyErr != nil {
				// Room comes only with an apply, and applying fails.
				l.mu.Unlock()
				return applyFailed(l.applyErr)
			}
			wait = l.changedCh
		} else if h := l.unsynced(w); h != nil {
			wait = h.synced
		}
		if wait == nil {
			break
		}
		l.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			// Before this write's entry was appended: nothing of it stored.
			return hub.NotStored(hub.Wrap(hub.Unavailable, ctx.Err(), "bolt: write abandoned"))
		}
		l.mu.Lock()
	}
	if err := l.conflicts(w, check); err != nil {
		l.mu.Unlock()
		return err
	}
	if w.m.UUID == "" && len(w.ds) == 0 {
		l.mu.Unlock()
		return nil
	}
	if err := w.setSeqs(func() (uint64, error) { l.delSeq++; return l.delSeq, nil }); err != nil {
		l.mu.Unlock()
		return hub.Wrap(hub.Internal, err, "bolt")
	}
	e.encode(&l.frames)
	e.seal(l.nextLSN, l.seed)
	l.nextLSN++
	e.size = len(e.frame)
	l.held += e.size
	if w.m.UUID != "" {
		l.byUUID[w.m.UUID] = e
	}
	for _, d := range w.ds {
		l.byDeliv[d.ID] = e
	}
	e.synced = make(chan struct{})
	l.toWrite = append(l.toWrite, e)
	l.mu.Unlock()
	signal(l.writeSig)
	// Once logged the entry may become durable: wait for the outcome.
	<-e.synced
	return e.err
}

// unsynced returns an entry not yet durable that holds w's message or one
// of its deliveries. Called with l.mu held.
func (l *acceptLog) unsynced(w *messageWrite) *logEntry {
	durable := l.durable.Load()
	if e := l.byUUID[w.m.UUID]; w.m.UUID != "" && e != nil && e.lsn > durable {
		return e
	}
	for _, d := range w.ds {
		if e := l.byDeliv[d.ID]; e != nil && e.lsn > durable {
			return e
		}
	}
	return nil
}

// usable reports why the log takes no entry now; a log whose repair
// failed has the writer try again. Called with l.mu held.
func (l *acceptLog) usable() error {
	if l.broken != nil {
		signal(l.writeSig)
		return brokenLog(l.broken)
	}
	if l.closing {
		return errStoreClosed
	}
	return nil
}

// conflicts reports Conflict when w's message or one of its deliveries is
// logged or stored already. AddDeliveries entries skip taken deliveries
// instead (their check drops them from w). Called with l.mu held.
func (l *acceptLog) conflicts(w *messageWrite, check func(tx *bolt.Tx) error) error {
	if w.m.UUID != "" {
		if _, ok := l.byUUID[w.m.UUID]; ok {
			return hub.Errorf(hub.Conflict, "message %s exists", w.m.UUID)
		}
		for _, d := range w.ds {
			if _, ok := l.byDeliv[d.ID]; ok {
				return hub.Errorf(hub.Conflict, "delivery %s exists", d.ID)
			}
		}
	} else {
		w.ds = slices.DeleteFunc(w.ds, func(d hub.Delivery) bool { return l.byDeliv[d.ID] != nil })
	}
	// Anything not logged and unapplied now is in bbolt or nowhere: the
	// applier takes entries out of the maps only after their commit.
	return edge(l.s.db.View(check))
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// writeLoop appends what is waiting with one write and one fdatasync,
// and repairs the tail after a failed append.
func (l *acceptLog) writeLoop() {
	defer l.wg.Done()
	defer close(l.applyQuit)
	var buf []byte
	for range l.writeSig {
		l.mu.Lock()
		batch := l.toWrite
		l.toWrite = nil
		closing := l.closing
		l.mu.Unlock()
		if len(batch) > 0 {
			buf = buf[:0]
			for _, e := range batch {
				buf = append(buf, e.frame...)
			}
			err := l.append(buf, batch[0].lsn)
			l.mu.Lock()
			if err != nil {
				// The entries' fate on disk is unknown until the tail is
				// repaired: refuse them and those logged behind them (put
				// takes no new ones meanwhile), so that nothing is
				// acknowledged after a gap.
				l.broken = err
				batch = append(batch, l.toWrite...)
				l.toWrite = nil
				for _, e := range batch {
					l.forget(e)
				}
				l.changed()
			} else {
				l.toApply = append(l.toApply, batch...)
				l.durable.Store(batch[len(batch)-1].lsn)
			}
			l.mu.Unlock()
			if err != nil {
				l.log.Error("bolt: accept log append failed; its entries are refused", "error", err, "entries", len(batch))
				// The disk may be full: the spares' room is the first to
				// give back.
				l.dropSpares()
				// Repaired before the refusals go out, so that a caller
				// that retries at once finds the log taking entries
				// again when the disk does.
				l.repair()
				err = hub.Wrap(hub.Unavailable, err, "bolt: write accept log")
			} else {
				signal(l.applySig)
			}
			for _, e := range batch {
				e.err = err
				close(e.synced)
			}
		} else if l.broken != nil && !closing {
			// Only this goroutine sets and clears broken: a put found it
			// set and asks for another try.
			l.repair()
		}
		// Once closing is set no entry is added (put checks it under the
		// mutex), so the batch just taken was the last.
		if closing {
			return
		}
	}
}

// append writes b at the end of the last durable entry and fdatasyncs it;
// only then is the end moved past it.
func (l *acceptLog) append(b []byte, first uint64) error {
	if l.off > 0 && l.off+int64(len(b)) > logSegmentMax {
		if err := l.roll(first); err != nil {
			return err
		}
	}
	if _, err := l.f.WriteAt(b, l.off); err != nil {
		return err
	}
	if logBeforeSync != nil {
		logBeforeSync(l)
	}
	if err := l.f.Sync(); err != nil {
		return err
	}
	l.off += int64(len(b))
	return nil
}

// repair cuts the segment being written back to the end of its last
// durable entry and fdatasyncs it, through a new descriptor (the old one
// may be what failed, and an fdatasync error it reported once is not
// reported again); then the log takes entries again, from the lsn after
// the last durable one. When it fails the log stays broken, and the next
// put has it tried again. Called by writeLoop only.
func (l *acceptLog) repair() {
	l.mu.Lock()
	path := l.segs[len(l.segs)-1].path
	l.mu.Unlock()
	f, err := openSegment(path, os.O_WRONLY)
	if err == nil {
		if err = f.Truncate(l.off); err == nil {
			err = f.Sync()
		}
		if err != nil {
			_ = f.Close()
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.broken = err
		l.log.Error("bolt: accept log tail not repaired; accepts stay refused", "error", err, "segment", path)
		return
	}
	_ = l.f.Close()
	l.f = f
	l.broken = nil
	l.nextLSN = l.durable.Load() + 1
	l.log.Warn("bolt: accept log tail repaired; accepting again", "segment", path, "size", l.off)
}

// changed wakes whoever waits for entries to leave the log (room, or the
// barrier). Called with l.mu held.
func (l *acceptLog) changed() {
	close(l.changedCh)
	l.changedCh = make(chan struct{})
}

// forget drops e from the unapplied maps. Called with l.mu held.
func (l *acceptLog) forget(e *logEntry) {
	l.held -= e.size
	e.size = 0
	if u := e.w.m.UUID; u != "" && l.byUUID[u] == e {
		delete(l.byUUID, u)
	}
	for _, d := range e.w.ds {
		if l.byDeliv[d.ID] == e {
			delete(l.byDeliv, d.ID)
		}
	}
}

// applyLoop applies durable entries to bbolt in groups, in lsn order.
func (l *acceptLog) applyLoop() {
	defer l.wg.Done()
	defer close(l.stopped)
	backoff := 10 * time.Millisecond
	last := time.Now()
	for quit := false; !quit; {
		select {
		case <-l.applySig:
		case <-l.applyQuit:
			quit = true // after applying what is durable
		}
		if wait := time.Until(last.Add(l.every)); !quit && wait > 0 {
			// Let entries gather: a bbolt commit costs much the same for
			// one message as for many.
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-l.urgent:
			case <-l.applyQuit:
				quit = true
			}
			t.Stop()
		}
		last = time.Now()
		for {
			l.mu.Lock()
			batch := l.toApply[:min(len(l.toApply), logApplyMax)]
			backlog := len(l.toApply) > logApplyMax
			l.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			if err := l.applyBatch(batch, false); err != nil {
				if quit || errors.Is(err, errStoreClosed) {
					// Closing: the entries stay in the log, and the next
					// Open applies them.
					l.log.Error("bolt: applying the accept log failed; the next open replays it", "error", err, "entries", len(batch))
					return
				}
				// Nothing accepted is dropped: retry until it goes in.
				// Meanwhile the barrier answers with the error instead of
				// waiting.
				l.log.Error("bolt: applying the accept log failed; retrying", "error", err, "entries", len(batch), "retry", backoff)
				l.mu.Lock()
				l.applyErr = err
				l.changed()
				l.mu.Unlock()
				select {
				case <-time.After(backoff):
				case <-l.applyQuit:
					quit = true
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 10 * time.Millisecond
			l.mu.Lock()
			l.applyErr = nil
			l.toApply = l.toApply[len(batch):]
			for _, e := range batch {
				l.forget(e)
				l.recycle(e)
			}
			upTo := batch[len(batch)-1].lsn
			l.applied.Store(upTo)
			l.changed()
			done := l.appliedSegments(upTo)
			l.mu.Unlock()
			for _, p := range done {
				l.retire(p)
			}
			if !backlog && !quit {
				break // what arrived meanwhile waits for the next interval
			}
		}
	}
}

// appliedSegments removes from l.segs and returns the segments whose
// entries are all applied. Called with l.mu held.
func (l *acceptLog) appliedSegments(applied uint64) []string {
	var out []string
	for len(l.segs) > 1 && l.segs[1].first <= applied+1 {
		out = append(out, l.segs[0].path)
		l.segs = l.segs[1:]
	}
	return out
}

// applyBatch writes entries to bbolt in one transaction, with the applied
// mark. An entry whose message is in bbolt already was applied before (a
// replay); its writes are skipped whole.
func (l *acceptLog) applyBatch(batch []*logEntry, replay bool) error {
	if logBeforeApply != nil && !replay {
		if err := logBeforeApply(); err != nil {
			return err
		}
	}
	last := batch[len(batch)-1].lsn
	return l.s.updateDirect(context.Background(), func(tx *bolt.Tx) error {
		for _, e := range batch {
			if err := l.applyEntry(tx, e, replay); err != nil {
				return err
			}
		}
		return bk(tx, bMeta).Put(logAppliedKey, u64(last))
	})
}

func (l *acceptLog) applyEntry(tx *bolt.Tx, e *logEntry, replay bool) error {
	if e.w.m.UUID == "" {
		return addDeliveriesTx(tx, e.w)
	}
	err := putMessageTx(tx, e.w, false)
	if hub.ErrorCode(err) == hub.Conflict {
		// putMessageTx checks before it writes: nothing is half-done. On a
		// replay the message is there from an apply the mark did not
		// record; otherwise the checks when it was logged should have
		// refused it.
		if !replay {
			l.log.Warn("bolt: accept log entry conflicts with the store; skipped", "message", e.w.m.UUID, "error", err)
		}
		return nil
	}
	return err
}

// wait is the barrier: it returns once every entry that was durable when
// it was called is applied. An urgent wait has the applier apply at once
// instead of at its next interval. While applying fails it answers
// Unavailable at once rather than wait for an apply that may not come
// until space returns.
func (l *acceptLog) wait(ctx context.Context, urgent bool) error {
	target := l.durable.Load()
	if urgent && l.applied.Load() < target {
		signal(l.urgent)
	}
	for l.applied.Load() < target {
		l.mu.Lock()
		ch, failed := l.changedCh, l.applyErr
		l.mu.Unlock()
		if l.applied.Load() >= target {
			break
		}
		if failed != nil {
			return applyFailed(failed)
		}
		select {
		case <-ch:
		case <-l.stopped:
			if l.applied.Load() < target {
				return errStoreClosed
			}
		case <-ctx.Done():
			return hub.Wrap(hub.Unavailable, ctx.Err(), "bolt: waiting for the accept log")
		}
	}
	return nil
}

// health reports what keeps the log from serving: an append failed and
// its tail could not be repaired, or applying fails while entries wait.
func (l *acceptLog) health() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.broken != nil {
		return brokenLog(l.broken)
	}
	if l.applyErr != nil {
		return applyFailed(l.applyErr)
	}
	return nil
}

func brokenLog(err error) error {
	return hub.Wrap(hub.Unavailable, err, "bolt: the accept log cannot be written")
}

func applyFailed(err error) error {
	return hub.Wrap(hub.Unavailable, err, "bolt: the accept log cannot be applied to the store")
}

// logged returns the durable, unapplied entry of message uuid, waiting
// while it is logged but not yet durable (it may still fail).
func (l *acceptLog) logged(ctx context.Context, uuid string) (*logEntry, error) {
	for {
		l.mu.Lock()
		e := l.byUUID[uuid]
		if e == nil || e.lsn <= l.durable.Load() {
			l.mu.Unlock()
			return e, nil
		}
		l.mu.Unlock()
		select {
		case <-e.synced:
		case <-ctx.Done():
			return nil, hub.Wrap(hub.Unavailable, ctx.Err(), "bolt: read abandoned")
		}
	}
}

// message returns the logged, unapplied message uuid, with a copy of its
// content when withContent.
func (l *acceptLog) message(ctx context.Context, uuid string, withContent bool) (hub.Message, bool, error) {
	e, err := l.logged(ctx, uuid)
	if e == nil || err != nil {
		return hub.Message{}, false, err
	}
	// The content is in the entry's frame, which goes back to its pool
	// once the entry is applied (recycle, under l.mu): it is copied under
	// l.mu while the entry is still logged, else read from bbolt.
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byUUID[uuid] != e {
		return hub.Message{}, false, nil // applied meanwhile: in bbolt now
	}
	m := e.w.m
	m.Content = nil
	if withContent {
		m.Content = bytes.Clone(e.w.m.Content)
	}
	return m, true, nil
}

// receiptFor returns the receipt of a logged, unapplied message.
func (l *acceptLog) receiptFor(ctx context.Context, systemID, uuid string) (hub.Receipt, bool, error) {
	e, err := l.logged(ctx, uuid)
	if e == nil || err != nil || e.w.r.TransmissionID == "" || e.w.r.SystemID != systemID {
		return hub.Receipt{}, false, err
	}
	return e.w.r, true, nil
}

// close writes and applies what is logged, then stops; later puts are
// Unavailable. The committer must still be running.
func (l *acceptLog) close() error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return nil
	}
	l.closing = true
	l.mu.Unlock()
	signal(l.writeSig)
	l.wg.Wait()
	l.mu.Lock()
	clean := l.broken == nil && len(l.toApply) == 0
	segs := l.segs
	l.mu.Unlock()
	var err error
	if clean {
		// Everything is in bbolt: the segments can go.
		for _, sg := range segs {
			if rerr := os.Remove(sg.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = rerr
			}
		}
	}
	if rerr := l.removeSpares(); rerr != nil && err == nil {
		err = rerr
	}
	if cerr := l.f.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// logDirInUse reports whether the accept log beside dbPath holds segments.
func logDirInUse(dbPath string) bool {
	entries, err := os.ReadDir(logDir(dbPath))
	if err != nil {
		return false
	}
	return slices.ContainsFunc(entries, func(e os.DirEntry) bool {
		ok, _ := filepath.Match(logSegmentGlob, e.Name())
		return ok
	})
}
