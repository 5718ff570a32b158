package bolt

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// A logged letter's frame holds its whole content (16 KiB for a typical
// MeMo) and lives only until the entry is applied: allocating one per
// letter was an eighth of every byte the hub allocated. Frames are
// therefore reused, by size class, once nothing can read them (see
// acceptLog.recycle): the entry is applied, the bbolt transaction that put
// its content (bbolt keeps the slice until the commit) has committed, and
// the entry has left the log's maps under its mutex, so that no reader can
// find it any more.
//
// Given-back frames go to the log's free lists, up to framesFreeMax bytes,
// and beyond that to a sync.Pool per class. A pool alone keeps few of
// them: a frame waits for its apply for up to the apply interval (200 ms),
// long enough for the collector to run twice and empty the pools, so most
// frames would be allocated anew. The free lists hold at most what one
// apply gives back at a steady 1,800 letters/s; they live with the log and
// are read and written under its mutex, as encode and recycle run there.
//
// The classes are four per octave (a frame of n bytes, 2^(b-1) < n ≤ 2^b,
// takes a buffer of the next multiple of 2^(b-3)), so a buffer is at most
// a quarter larger than its frame. Frames above framePoolMax are allocated
// and left to the collector: they are rare, and keeping them would hold
// their memory between bursts.
const (
	framePoolMinBits = 12 // the smallest class: 4 KiB
	framePoolMaxBits = 20 // the largest: 1 MiB
	framePoolMin     = 1 << framePoolMinBits
	framePoolMax     = 1 << framePoolMaxBits
	frameClasses     = 1 + 4*(framePoolMaxBits-framePoolMinBits)
	framesFreeMax    = 16 << 20
)

var (
	framePools [frameClasses]sync.Pool
	// framesRecycled counts the frames given back (for tests).
	framesRecycled atomic.Int64
)

// frameFree is the log's free lists of frames (guarded by acceptLog.mu).
type frameFree struct {
	lists [frameClasses][]*[]byte
	bytes int
}

// frameClass returns the class and the buffer size for a frame of n
// bytes, or -1 when frames of that size are not reused.
func frameClass(n int) (int, int) {
	if n > framePoolMax {
		return -1, n
	}
	if n <= framePoolMin {
		return 0, framePoolMin
	}
	b := bits.Len(uint(n - 1)) // 2^(b-1) < n ≤ 2^b
	step := 1 << (b - 3)
	k := (n - 1 - 1<<(b-1)) / step // 0..3
	return 1 + 4*(b-1-framePoolMinBits) + k, 1<<(b-1) + (k+1)*step
}

// get returns a buffer of length 0 and a capacity of at least n, and the
// handle to give it back with (nil when it is not reused).
func (f *frameFree) get(n int) ([]byte, *[]byte) {
	c, size := frameClass(n)
	if c < 0 {
		return make([]byte, 0, n), nil
	}
	if l := f.lists[c]; len(l) > 0 {
		p := l[len(l)-1]
		l[len(l)-1] = nil
		f.lists[c] = l[:len(l)-1]
		f.bytes -= cap(*p)
		return (*p)[:0], p
	}
	if p, _ := framePools[c].Get().(*[]byte); p != nil {
		return (*p)[:0], p
	}
	buf := make([]byte, 0, size)
	return buf, &buf
}

// put gives a buffer from get back. Nothing may read or write it
// afterwards.
func (f *frameFree) put(p *[]byte) {
	if p == nil {
		return
	}
	c, size := frameClass(cap(*p))
	if c < 0 || size != cap(*p) {
		return
	}
	framesRecycled.Add(1)
	if f.bytes+size <= framesFreeMax {
		f.lists[c] = append(f.lists[c], p)
		f.bytes += size
		return
	}
	framePools[c].Put(p)
}
