package accept

import (
	"io"
	"math/bits"
	"sync"
)

// A small body is read into a buffer that serves letter after letter: at
// thousands of letters a second, a fresh buffer each time is most of what
// a letter allocates above the store, and the garbage collector's work.
//
// A buffer goes back to its pool only when nothing refers to it any more
// once the letter is answered. What sees the bytes: the memo model
// (memo.Message's files refer to them, and the model does not outlive
// letter), hub.Ingest.Submit (the content of a letter it keeps inline goes
// to the metadata store, which copies it before PutMessageWith returns:
// storage/bolt into its accept log frame or the bbolt page, storage/mongo
// into the encoded command), and the blob store for a body over
// hub.Ingest.InlineMax. An HTTP client may read a request body after the
// request has returned (a transport that gave up on the answer), so a
// body that may have gone to the blob store is left to the garbage
// collector instead. Receipts, events and errors carry strings copied
// from the model, never the body.

// Buffers are pooled in power-of-two classes from 4 KiB to SmallBody.
const (
	minBufShift = 12
	maxBufShift = 20
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

// poison, when set (tests), is called with a buffer's bytes as it goes
// back to its pool, to overwrite them: whatever still refers to them shows.
var poison func([]byte)

// bufClass is the smallest class that holds n bytes, or -1 beyond them.
func bufClass(n int) int {
	if n > 1<<maxBufShift {
		return -1
	}
	return max(bits.Len(uint(max(n, 1)-1)), minBufShift) - minBufShift
}

// getBuf returns a buffer of length n, pooled when n is within the classes.
func getBuf(n int) *[]byte {
	c := bufClass(n)
	if c < 0 {
		b := make([]byte, n)
		return &b
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, 1<<(c+minBufShift))
	return &b
}

// putBuf returns a buffer from getBuf to its pool; nothing may use it after.
func putBuf(p *[]byte) {
	c := bufClass(cap(*p))
	if c < 0 || cap(*p) != 1<<(c+minBufShift) {
		return
	}
	if poison != nil {
		poison((*p)[:cap(*p)])
	}
	bufPools[c].Put(p)
}

// readSmall reads r to its end if it ends within SmallBody bytes (whole),
// into a buffer from getBuf. Otherwise it returns the bytes read so far
// (SmallBody and one more) in head, in a buffer of its own, and buf is
// nil. A failed read is Invalid, as when the spool reads it.
func readSmall(r io.Reader) (head []byte, buf *[]byte, err error) {
	buf = getBuf(16 << 10)
	n := 0
	for {
		if n == len(*buf) {
			if n == SmallBody {
				// Full: the body ends here, or it is spooled.
				var one [1]byte
				m, err := io.ReadFull(r, one[:])
				if err == io.EOF {
					return (*buf)[:n], buf, nil
				}
				if err != nil {
					putBuf(buf)
					return nil, nil, readFailed(err)
				}
				head = append((*buf)[:n:n], one[:m]...)
				putBuf(buf)
				return head, nil, nil
			}
			bigger := getBuf(min(2*n, SmallBody))
			copy(*bigger, (*buf)[:n])
			putBuf(buf)
			buf = bigger
		}
		m, err := r.Read((*buf)[n:])
		n += m
		if err == io.EOF {
			return (*buf)[:n], buf, nil
		}
		if err != nil {
			putBuf(buf)
			return nil, nil, readFailed(err)
		}
	}
}
