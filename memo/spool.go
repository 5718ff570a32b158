package memo

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"sync"

	"github.com/posthub/posthub/hub"
)

// Spooled is a request body written to disk.
type Spooled struct {
	// Path is the file holding the body.
	Path string
	// Size is its length in bytes.
	Size int64
	// SHA256 is the lowercase hex SHA-256 of the body.
	SHA256 string

	// synced yields the result of the fsync Spool started.
	synced func() error
}

// Durable waits until the spooled file's bytes are on stable storage and
// returns Internal when they could not be made so; the file must then not
// be stored. Spool starts the fsync the moment the body is written, so it
// runs beside the validation and waiting for it after that costs little —
// a blob store that fsyncs the file again when taking it over finds nothing
// left to write. A Spooled not made by Spool has nothing to wait for.
//
// The result must come from this fsync, not a later one: once an fsync has
// reported a write-back error, an fsync on a newly opened descriptor of the
// same file returns success although the bytes were lost.
func (s Spooled) Durable() error {
	if s.synced == nil {
		return nil
	}
	return s.synced()
}

// spoolBuf is the copy buffer of Spool; large enough that a 99 MB body
// takes few syscalls, small enough to never matter.
const spoolBuf = 256 << 10

// Spool copies r into a new file in dir (os.TempDir() when empty) while
// hashing it, and stops reading the moment more than max bytes arrive: the
// body is never held in memory and at most max+1 bytes of it are read. On
// success the caller owns the file (remove it, or move it into the blob
// store) and the file's fsync is under way: see Spooled.Durable. Errors:
// TooLarge (code memo.too.large; the partial file is removed), Internal for
// I/O failures of the spool file, and r's own errors wrapped as Invalid.
func Spool(r io.Reader, dir string, max int64) (Spooled, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "memo-*.xml")
	if err != nil {
		return Spooled{}, hub.Wrap(hub.Internal, err, "cannot create a spool file")
	}
	sp, err := spoolInto(f, r, max)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return Spooled{}, err
	}
	sp.Path = f.Name()
	sp.synced = syncInBackground(f)
	return sp, nil
}

// syncInBackground fsyncs and closes f on its own goroutine and returns a
// function that waits for the outcome. The goroutine does not wait for
// anyone: a caller that never asks (the body was invalid) leaks nothing.
func syncInBackground(f *os.File) func() error {
	done := make(chan error, 1)
	go func() {
		err := f.Sync()
		if err != nil {
			err = hub.Wrap(hub.Internal, err, "cannot fsync the spool file")
		}
		if cerr := f.Close(); err == nil && cerr != nil {
			err = hub.Wrap(hub.Internal, cerr, "cannot write the spool file")
		}
		done <- err
	}()
	return sync.OnceValue(func() error { return <-done })
}

func spoolInto(f *os.File, r io.Reader, max int64) (Spooled, error) {
	// Hashing runs beside the copy, on buffers handed over through a
	// channel, so a 99 MB body costs the time of the slower of the two
	// rather than their sum.
	const nbuf = 4
	free := make(chan []byte, nbuf)
	for i := 0; i < nbuf; i++ {
		free <- make([]byte, spoolBuf)
	}
	toHash := make(chan []byte, nbuf)
	sum := make(chan []byte, 1)
	go func() {
		h := sha256.New()
		for b := range toHash {
			h.Write(b)
			free <- b[:cap(b)]
		}
		sum <- h.Sum(nil)
	}()
	var n int64
	var err error
	for {
		buf := <-free
		// Never ask for more than one byte past the limit.
		want := int64(len(buf))
		if rest := max + 1 - n; rest < want {
			want = rest
		}
		k, rerr := r.Read(buf[:want])
		if k > 0 {
			n += int64(k)
			if n > max {
				err = tooLarge(max)
				break
			}
			if _, werr := f.Write(buf[:k]); werr != nil {
				err = hub.Wrap(hub.Internal, werr, "cannot write the spool file")
				break
			}
			toHash <- buf[:k]
		} else {
			free <- buf
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = hub.Wrap(hub.Invalid, rerr, "reading the MeMo failed")
			break
		}
	}
	close(toHash)
	digest := <-sum
	if err != nil {
		return Spooled{}, err
	}
	return Spooled{Size: n, SHA256: hex.EncodeToString(digest)}, nil
}
