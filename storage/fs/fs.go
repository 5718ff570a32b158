// Package fs stores blobs as files under one local directory: the embedded
// default content store.
//
// What it guarantees:
//   - Put is atomic and durable. The bytes go to a temporary file next to the
//     final one, which is fsynced, renamed over the final name, and the
//     directory is fsynced (as is every directory Put had to create). A
//     reader sees the old object or the whole new one, never a part; a crash
//     part-way leaves at most a temporary file, which Open removes.
//   - Memory does not grow with an object's size: bytes are streamed.
//   - The key space is flat, as in S3: "a" and "a/b" can both exist. Key
//     "a/b" is the file a/b~ (a directory per segment, then a file named after
//     the last segment plus "~", a character keys cannot contain), so no key
//     can name a directory, a temporary file or a path outside the root.
//   - One Store owns its directory: Open takes an exclusive lock on it, so
//     the start-up sweep cannot remove another process's temporary files.
//
// Keys are 1–1024 bytes of [A-Za-z0-9._-] segments separated by single "/",
// with no "." or ".." segment and no segment over 200 bytes; anything else is
// hub.Invalid. The filesystem must be case-sensitive.
package fs

import (
	"context"
	"errors"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/atomicfile"
)

const (
	objSuffix = "~"    // an object's file name is its last key segment + objSuffix
	tmpMark   = "~"    // temporary files are "<segment>~<random>.tmp"
	tmpExt    = ".tmp" // ...and end in tmpExt
	lockName  = ".lock"
)

var _ hub.Blobs = (*Store)(nil)

// Store is a hub.Blobs on a local directory. It is safe for concurrent use.
type Store struct {
	root string
	lock *os.File
}

// Open opens (creating it if needed) the blob directory dir, locks it for
// this Store, and removes temporary files a crash left behind. Returns
// Unavailable when another Store holds the directory.
func Open(dir string) (*Store, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, hub.Wrap(hub.Invalid, err, "blob directory %q", dir)
	}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, hub.Wrap(hub.Internal, err, "create blob directory %s", root)
	}
	lock, err := os.OpenFile(filepath.Join(root, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, hub.Wrap(hub.Internal, err, "open lock file in %s", root)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, hub.Wrap(hub.Unavailable, err, "blob directory %s is in use by another store", root)
		}
		return nil, hub.Wrap(hub.Internal, err, "lock blob directory %s", root)
	}
	s := &Store{root: root, lock: lock}
	if _, err := s.Sweep(context.Background(), 0); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the directory lock. The Store must not be used afterwards.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

// Dir returns the directory the Store keeps its files in.
func (s *Store) Dir() string { return s.root }

// Sweep removes temporary files older than age (all of them when age is 0)
// and reports how many it removed. Open sweeps everything, since the lock
// means no other Put is running; a long-lived process may call Sweep with an
// age longer than any Put takes.
func (s *Store) Sweep(ctx context.Context, age time.Duration) (int, error) {
	cutoff := time.Now().Add(-age)
	n := 0
	err := filepath.WalkDir(s.root, func(path string, d iofs.DirEntry, err error) error {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil // removed by a concurrent Delete
		}
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !isTemp(d.Name()) {
			return nil
		}
		if age > 0 {
			fi, err := d.Info()
			if err != nil || fi.ModTime().After(cutoff) {
				return nil // gone already, or maybe still being written
			}
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, hub.Wrap(hub.Internal, err, "sweep temporary files in %s", s.root)
	}
	return n, nil
}

// Put streams r into a temporary file, fsyncs it, renames it over key's file
// and fsyncs the directory. When size >= 0, r must hold exactly size bytes.
// Returns Invalid for a bad key or a size mismatch.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) (hub.BlobInfo, error) {
	if err := checkKey(key); err != nil {
		return hub.BlobInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return hub.BlobInfo{}, hub.Wrap(hub.Unavailable, err, "put %q", key)
	}
	final := s.path(key)
	dir := filepath.Dir(final)
	f, err := s.createTemp(dir, filepath.Base(final))
	if err != nil {
		return hub.BlobInfo{}, hub.Wrap(hub.Internal, err, "put %q", key)
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.Remove(tmp)
		}
	}()

	n, err := copyExact(f, ctxReader{ctx, r}, size)
	if err != nil {
		return hub.BlobInfo{}, err
	}
	if err := f.Sync(); err != nil {
		return hub.BlobInfo{}, hub.Wrap(hub.Internal, err, "put %q: fsync", key)
	}
	if err := f.Close(); err != nil {
		return hub.BlobInfo{}, hub.Wrap(hub.Internal, err, "put %q: close", key)
	}
	if err := os.Rename(tmp, final); err != nil {
		return hub.BlobInfo{}, hub.Wrap(hub.Internal, err, "put %q: rename", key)
	}
	committed = true
	if err := atomicfile.SyncDir(dir); err != nil {
		return hub.BlobInfo{}, hub.Wrap(hub.Internal, err, "put %q: fsync directory", key)
	}
	return hub.BlobInfo{Key: key, Size: n}, nil
}

// createTemp makes the directories down to dir (fsyncing each parent that
// gained an entry) and a temporary file in it. A concurrent Delete may remove
// an empty directory between the two steps; then it tries again.
func (s *Store) createTemp(dir, base string) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		err := s.mkdirAll(dir)
		if err == nil {
			var f *os.File
			if f, err = os.CreateTemp(dir, base[:len(base)-len(objSuffix)]+tmpMark+"*"+tmpExt); err == nil {
				return f, nil
			}
		}
		if !errors.Is(err, iofs.ErrNotExist) || attempt == 20 {
			return nil, err
		}
	}
}

// mkdirAll creates dir below the root durably (atomicfile.MkdirAll).
func (s *Store) mkdirAll(dir string) error { return atomicfile.MkdirAll(dir, 0o750) }

// copyExact copies r to w. With size >= 0 it fails unless r holds exactly
// size bytes.
func copyExact(w io.Writer, r io.Reader, size int64) (int64, error) {
	if size < 0 {
		n, err := io.Copy(w, r)
		if err != nil {
			return n, readErr(err)
		}
		return n, nil
	}
	n, err := io.CopyN(w, r, size)
	if errors.Is(err, io.EOF) {
		return n, hub.Errorf(hub.Invalid, "body has %d bytes, want %d", n, size)
	}
	if err != nil {
		return n, readErr(err)
	}
	var one [1]byte
	if m, _ := io.ReadFull(r, one[:]); m > 0 {
		return n, hub.Errorf(hub.Invalid, "body has more than the %d bytes announced", size)
	}
	return n, nil
}

// readErr keeps the code of an error that already has one (e.g. a reader
// that enforces a size limit) and otherwise blames the input.
func readErr(err error) error {
	var he *hub.Error
	if errors.As(err, &he) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return hub.Wrap(hub.Unavailable, err, "put cancelled")
	}
	return hub.Wrap(hub.Internal, err, "write blob")
}

// Open returns the object's file. Returns NotFound when absent.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(key))
	if err != nil {
		return nil, pathErr(err, "open", key)
	}
	return f, nil
}

// Stat returns the object's size. Returns NotFound when absent.
func (s *Store) Stat(ctx context.Context, key string) (hub.BlobInfo, error) {
	if err := checkKey(key); err != nil {
		return hub.BlobInfo{}, err
	}
	fi, err := os.Stat(s.path(key))
	if err != nil {
		return hub.BlobInfo{}, pathErr(err, "stat", key)
	}
	return hub.BlobInfo{Key: key, Size: fi.Size()}, nil
}

// Delete removes the object's file, fsyncs its directory and removes
// directories it left empty. Deleting an absent key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	p := s.path(key)
	if err := os.Remove(p); err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil
		}
		return hub.Wrap(hub.Internal, err, "delete %q", key)
	}
	dir := filepath.Dir(p)
	if err := atomicfile.SyncDir(dir); err != nil {
		return hub.Wrap(hub.Internal, err, "delete %q: fsync directory", key)
	}
	// Fails, as it should, on the first directory that is not empty.
	for ; dir != s.root && os.Remove(dir) == nil; dir = filepath.Dir(dir) {
	}
	return nil
}

// List calls fn for each object whose key starts with prefix, in key order.
// Returns Invalid when prefix holds a character no key can.
func (s *Store) List(ctx context.Context, prefix string, fn func(hub.BlobInfo) error) error {
	for i := 0; i < len(prefix); i++ {
		if !hub.BlobKeyByte(prefix[i]) {
			return hub.Errorf(hub.Invalid, "prefix %q: character %q is not allowed in keys", prefix, prefix[i])
		}
	}
	// Start in the directory the prefix names in full, if it can name one.
	base := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		base = prefix[:i+1]
		if checkKey(prefix[:i]) != nil {
			return nil // no key has this prefix
		}
	}
	return s.list(ctx, filepath.Join(s.root, filepath.FromSlash(base)), base, prefix, fn)
}

// list walks dir, whose objects' keys start with base. Within a directory,
// entries are visited in the order of what they add to the key — a file
// "x~" adds "x", a directory "x" adds "x/" — which is key order overall.
func (s *Store) list(ctx context.Context, dir, base, prefix string, fn func(hub.BlobInfo) error) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil // removed by a concurrent Delete, or never there
		}
		return hub.Wrap(hub.Internal, err, "list %q", prefix)
	}
	type entry struct {
		key string // the key, or for a directory the key prefix ending in "/"
		d   iofs.DirEntry
	}
	var todo []entry
	for _, d := range entries {
		name := d.Name()
		switch {
		case d.IsDir():
			k := base + name + "/"
			if strings.HasPrefix(k, prefix) || strings.HasPrefix(prefix, k) {
				todo = append(todo, entry{k, d})
			}
		case isObject(name):
			k := base + strings.TrimSuffix(name, objSuffix)
			if strings.HasPrefix(k, prefix) {
				todo = append(todo, entry{k, d})
			}
		}
	}
	slices.SortFunc(todo, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	for _, e := range todo {
		if err := ctx.Err(); err != nil {
			return hub.Wrap(hub.Unavailable, err, "list %q", prefix)
		}
		if e.d.IsDir() {
			if err := s.list(ctx, filepath.Join(dir, e.d.Name()), e.key, prefix, fn); err != nil {
				return err
			}
			continue
		}
		fi, err := e.d.Info()
		if errors.Is(err, iofs.ErrNotExist) {
			continue // deleted since ReadDir
		}
		if err != nil {
			return hub.Wrap(hub.Internal, err, "list %q", prefix)
		}
		if err := fn(hub.BlobInfo{Key: e.key, Size: fi.Size(), Modified: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// path maps a valid key to its object file.
func (s *Store) path(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(key)) + objSuffix
}

func isObject(name string) bool {
	return strings.HasSuffix(name, objSuffix) && strings.Count(name, "~") == 1
}

func isTemp(name string) bool {
	return strings.Contains(name, tmpMark) && strings.HasSuffix(name, tmpExt)
}

func checkKey(key string) error { return hub.CheckBlobKey(key) }

func pathErr(err error, op, key string) error {
	if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return hub.Wrap(hub.NotFound, err, "blob %q", key)
	}
	return hub.Wrap(hub.Internal, err, "%s blob %q", op, key)
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// PutFile moves the file at path into the store under key: it fsyncs the
// file, renames it into place and fsyncs the directory, so a message
// spooled on the same filesystem is stored without a second copy. When
// path is on another filesystem it falls back to Put and removes path.
// Returns Invalid for a bad key.
func (s *Store) PutFile(ctx context.Context, key, path string) (hub.BlobInfo, error) {
	if err := checkKey(key); err != nil {
		return hub.BlobInfo{}, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return hub.BlobInfo{}, hub.Wrap(hub.Internal, err, "put %q: open %s", key, path)
	}
	st, err := f.Stat()
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err != nil {
		return hub.BlobInfo{}, hub.Wrap(hub.Internal, err, "put %q: fsync source", key)
	}
	final := s.path(key)
	dir := filepath.Dir(final)
	if err := s.mkdirAll(dir); err != nil {
		return hub.BlobInfo{}, hub.Wrap(hub.Internal, err, "put %q", key)
	}
	if err := os.Rename(path, final); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) && errors.Is(le.Err, syscall.EXDEV) {
			src, oerr := os.Open(path)
			if oerr != nil {
				return hub.BlobInfo{}, hub.Wrap(hub.Internal, oerr, "put %q", key)
			}
			defer src.Close()
			info, perr := s.Put(ctx, key, src, st.Size())
			if perr == nil {
				os.Remove(path)
			}
			return info, perr
		}
		return hub.BlobInfo{}, hub.Wrap(hub.Internal, err, "put %q: rename", key)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return hub.BlobInfo{}, hub.Wrap(hub.Internal, err, "put %q: fsync directory", key)
	}
	return hub.BlobInfo{Key: key, Size: st.Size()}, nil
}
