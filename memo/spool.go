package memo

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

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
	// check is the schema validation Validator.Spool ran while spooling.
	check *schemaCheck
}

// Durable waits until the spooled file's bytes are on stable storage and
// returns Internal (Unavailable when the disk is full, see hub.Wrap) when
// they could not be made so; the file must then not
// be stored. For a body of a MiB or more Spool starts the fsync the moment
// the body is written, so it runs beside the validation and waiting for it
// after that costs little — a blob store that fsyncs the file again when
// taking it over finds nothing left to write. Smaller bodies, and a
// Spooled not made by Spool, have nothing to wait for: their durable point
// is the store's fsync.
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
// store) and, for a large body, the file's fsync is under way: see
// Spooled.Durable. Errors:
// TooLarge (code memo.too.large; the partial file is removed), Internal for
// I/O failures of the spool file (Unavailable when the disk is full: the
// sender retries later), and r's own errors wrapped as Invalid.
func Spool(r io.Reader, dir string, max int64) (Spooled, error) {
	return spool(r, dir, max, nil)
}

// Spool spools r like the package's Spool and, while the body arrives,
// runs the size check, the prescan and the XSD of ValidateFile on it:
// libxml2 reads the spool file as it grows, so a large body is mostly
// checked by the time its last byte is written. ValidateSpooledFile
// collects the verdict. Errors as the package's Spool.
func (v *Validator) Spool(r io.Reader, dir string, max int64) (Spooled, error) {
	c := &schemaCheck{v: v}
	sp, err := spool(r, dir, max, c)
	if err != nil {
		return Spooled{}, err
	}
	sp.check = c
	return sp, nil
}

// ValidateSpooledFile validates a body spooled by Spool and returns its
// model, as ValidateFile does for the file at sp.Path and with its errors,
// but collecting the outcome of the checks Validator.Spool ran while
// spooling instead of reading the file again for them.
func (v *Validator) ValidateSpooledFile(sp Spooled, now time.Time) (*Message, error) {
	c := sp.check
	if c == nil || c.v != v || c.deferred {
		return v.ValidateFile(sp.Path, now)
	}
	if err := c.early(); err != nil {
		return nil, err
	}
	return v.modelBeside(sp.Path, now, c.verdict)
}

// spool writes r to a new file in dir, showing each write to tap when it
// is not nil.
func spool(r io.Reader, dir string, max int64, tap *schemaCheck) (Spooled, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "memo-*.xml")
	if err != nil {
		return Spooled{}, hub.Wrap(hub.Internal, err, "cannot create a spool file")
	}
	if tap != nil {
		tap.path = f.Name()
	}
	sp, err := spoolInto(f, r, max, tap)
	if tap != nil {
		tap.end(err)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return Spooled{}, err
	}
	sp.Path = f.Name()
	if sp.Size < earlySyncMin {
		// The blob store's own fsync reports any write-back error, since
		// no fsync has seen it yet.
		if err := f.Close(); err != nil {
			os.Remove(sp.Path)
			return Spooled{}, hub.Wrap(hub.Internal, err, "cannot write the spool file")
		}
		return sp, nil
	}
	sp.synced = syncInBackground(f)
	return sp, nil
}

// earlySyncMin is the smallest body Spool fsyncs early. Smaller ones are
// quick to fsync where they are stored, and are often kept inline in the
// metadata instead, where an fsync of the spool file would be wasted.
const earlySyncMin = 1 << 20

// schemaCheck runs the stages of ValidateSchemaFile on a body while spool
// writes it: the prescan once its first prescanLimit bytes (or all of it)
// are in, then libxml2 on the growing file. It is driven by the spool
// loop's goroutine (written, end) and read after end (early, verdict).
type schemaCheck struct {
	v    *Validator
	path string

	size       int64  // bytes written so far
	head       []byte // the body's start, until the prescan has run
	prescanned bool
	deferred   bool  // no streaming slot was free: the XSD runs after spooling
	tooBig     bool  // the body is over the validator's MaxSize
	failed     error // the prescan's refusal, or an internal failure
	feed       *xsdFeed
	ended      chan struct{} // closed by end: the feed is no longer written to
	wait       func() error  // the XSD's verdict, once it started
}

// written is told that the file now holds total bytes, the last ones b.
func (c *schemaCheck) written(b []byte, total int64) {
	c.size = total
	if c.tooBig {
		return
	}
	if total > c.v.cfg.MaxSize {
		c.tooBig = true
		if c.feed != nil {
			c.feed.end(false)
		}
		return
	}
	if c.prescanned {
		if c.feed != nil {
			c.feed.grow(total)
		}
		return
	}
	c.head = append(c.head, b[:min(len(b), prescanLimit-len(c.head))]...)
	if total > prescanLimit {
		c.prescan(false, total)
	}
}

// prescan runs the prescan on the head and, when it passes, starts
// libxml2 on the file, which holds total bytes so far.
func (c *schemaCheck) prescan(complete bool, total int64) {
	c.prescanned = true
	pl, perr := prescan(c.head, complete)
	c.head = nil
	if perr != nil {
		c.failed = prescanFailure(perr)
		return
	}
	select {
	case c.v.streams <- struct{}{}:
	default:
		c.deferred = true // every streaming slot is taken: validate once spooled
		return
	}
	release := func() { <-c.v.streams }
	f, err := os.Open(c.path)
	if err != nil {
		release()
		c.failed = hub.Wrap(hub.Internal, err, "cannot open the MeMo")
		return
	}
	feed, err := newXSDFeed(f, total)
	if err != nil {
		release()
		f.Close()
		c.failed = hub.Wrap(hub.Internal, err, "XSD validation failed")
		return
	}
	c.feed = feed
	c.ended = make(chan struct{})
	result := make(chan error, 1)
	go func() {
		err := c.v.xsd(pl.version, func(s *xsdSchema) ([]hub.FieldError, error) { return s.validateFeed(feed, f) })
		// libxml2 may stop reading early (a fatal error); the feed lives
		// until the spool loop has stopped announcing growth too.
		<-c.ended
		feed.free()
		f.Close()
		release()
		result <- err
	}()
	c.wait = sync.OnceValue(func() error { return <-result })
}

// end is told that spooling finished, with err when it failed; a failed
// spool abandons the XSD and waits for libxml2 to let go of the file.
func (c *schemaCheck) end(err error) {
	if err == nil && !c.prescanned && !c.tooBig {
		c.prescan(true, c.size)
	}
	if c.feed == nil {
		return
	}
	c.feed.end(err == nil && !c.tooBig)
	close(c.ended)
	if err != nil {
		c.wait()
	}
}

// early is the verdict known when spooling ended: the size check's and
// the prescan's, in ValidateFile's order.
func (c *schemaCheck) early() error {
	if c.tooBig {
		return TooLarge(c.v.cfg.MaxSize)
	}
	return c.failed
}

// verdict waits for the XSD; call it only when early found nothing.
func (c *schemaCheck) verdict() error { return c.wait() }

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

func spoolInto(f *os.File, r io.Reader, max int64, tap *schemaCheck) (Spooled, error) {
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
				err = TooLarge(max)
				break
			}
			if _, werr := f.Write(buf[:k]); werr != nil {
				err = hub.Wrap(hub.Internal, werr, "cannot write the spool file")
				break
			}
			if tap != nil {
				tap.written(buf[:k], n)
			}
			toHash <- buf[:k]
		} else {
			free <- buf
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = ReadError(rerr)
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

// ReadError is the refusal of a request body that could not be read to
// its end: one that arrived too slowly (the server's read deadline, see
// -body-timeout and -upload-min-rate), one that ended before its declared
// length, or another failure of the client's connection.
func ReadError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return &hub.Error{Code: hub.Invalid, Message: "the body arrived too slowly", Err: err, Fields: []hub.FieldError{{Resource: "request", Field: "body",
			Code: "body.too.slow", Message: "the body arrived too slowly: a body must arrive within the hub's body timeout, an upload at its minimum rate"}}}
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return &hub.Error{Code: hub.Invalid, Message: "the body ended before its declared length", Err: err, Fields: []hub.FieldError{{Resource: "request", Field: "body",
			Code: "body.incomplete", Message: "the body ended before Content-Length bytes"}}}
	}
	return &hub.Error{Code: hub.Invalid, Message: "the body could not be read", Err: err, Fields: []hub.FieldError{{Resource: "request", Field: "body",
		Code: "body.unreadable", Message: "the body could not be read to its end"}}}
}
