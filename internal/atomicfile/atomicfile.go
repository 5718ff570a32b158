// Package atomicfile writes files so that a reader, or the process after a
// crash, sees either the old content or the whole new content, never part
// of it; and creates key files so that two processes starting at once end
// up with the same key.
//
// Write goes through a temporary file in the target's directory: write,
// fsync, rename over the target, fsync the directory (without the last step
// a crash can forget the rename). LoadOrCreate publishes a fully written
// and fsynced temporary file with link(2), which fails when the name
// exists: the loser of a race reads the winner's file, never a half-written
// one (os.OpenFile with O_EXCL followed by writes would let it).
package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Write writes r to path atomically and durably. When size ≥ 0, r must
// yield exactly size bytes, or nothing is written. The file gets mode perm.
func Write(path string, r io.Reader, size int64, perm fs.FileMode) error {
	tmp, err := writeTemp(filepath.Dir(path), r, size, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// LoadOrCreate returns the content of path. When the file does not exist
// it calls create, writes what it returns to path (mode perm, the directory
// created 0700 if needed) and returns it; when another process creates the
// file at the same time, the content that won is returned. parse checks
// and decodes the content, and runs on both paths; its error names the file.
func LoadOrCreate[T any](path string, perm fs.FileMode, create func() ([]byte, error), parse func([]byte) (T, error)) (T, error) {
	var zero T
	load := func() (T, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return zero, err
		}
		v, err := parse(b)
		if err != nil {
			return zero, fmt.Errorf("%s: %w", path, err)
		}
		return v, nil
	}
	v, err := load()
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return v, err
	}
	b, err := create()
	if err != nil {
		return zero, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return zero, err
	}
	tmp, err := writeTemp(dir, bytes.NewReader(b), int64(len(b)), perm)
	if err != nil {
		return zero, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) { // another process won the race
			return load()
		}
		return zero, err
	}
	if err := SyncDir(dir); err != nil {
		return zero, err
	}
	return parse(b)
}

// TempPrefix starts the names of temporary files; a crash can leave
// them behind, and a directory's owner may remove them at start.
const TempPrefix = ".tmp-"

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// MkdirAll is os.MkdirAll that also fsyncs the parent of each directory
// it creates, so that the new entries survive a crash (a file made durable
// in a directory whose own entry was not is lost with it).
func MkdirAll(dir string, perm fs.FileMode) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, perm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	return SyncDir(parent)
}

// writeTemp writes r to a new fsynced temporary file in dir and returns
// its name; on error nothing is left behind.
func writeTemp(dir string, r io.Reader, size int64, perm fs.FileMode) (name string, err error) {
	f, err := os.CreateTemp(dir, TempPrefix+"*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	n, err := io.Copy(f, r)
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("short content: %d of %d bytes", n, size)
	}
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return f.Name(), nil
}
