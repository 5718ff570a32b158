package fs_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/fs"
	"github.com/posthub/posthub/storage/storagetest"
)

func open(t *testing.T, dir string) *fs.Store {
	t.Helper()
	s, err := fs.Open(dir)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storagetest.TestBlobs(t, func(t *testing.T) hub.Blobs { return open(t, t.TempDir()) })
}

// TestOpenSweepsTemporaryFiles checks the start-up cleanup of what a crash
// in the middle of Put leaves: temporary files, never objects.
func TestOpenSweepsTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := context.Background()
	if _, err := s.Put(ctx, "msg/1/a", strings.NewReader("kept"), 4); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, p := range []string{"msg/1/a~123.tmp", "msg/2/b~9.tmp", "c~77.tmp"} {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = open(t, dir)
	var left []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".tmp") {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Fatalf("temporary files survived Open: %q", left)
	}
	var keys []string
	s.List(ctx, "", func(i hub.BlobInfo) error { keys = append(keys, i.Key); return nil })
	if strings.Join(keys, ",") != "msg/1/a" {
		t.Fatalf("List after sweep = %q, want [msg/1/a]", keys)
	}
}

// TestSweepSparesRecentFiles checks that Sweep with an age leaves files a
// running Put may still be writing.
func TestSweepSparesRecentFiles(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	old, recent := filepath.Join(dir, "old~1.tmp"), filepath.Join(dir, "new~2.tmp")
	for _, p := range []string{old, recent} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hourAgo := time.Now().Add(-time.Hour)
	if err := os.Chtimes(old, hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	n, err := s.Sweep(context.Background(), 10*time.Minute)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 removed", n, err)
	}
	if _, err := os.Stat(recent); err != nil {
		t.Fatalf("recent temporary file removed: %v", err)
	}
}

// TestOneStorePerDirectory checks the lock that makes the start-up sweep
// safe.
func TestOneStorePerDirectory(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := fs.Open(dir); !hub.Is(err, hub.Unavailable) {
		t.Fatalf("second Open of a locked directory: %v, want unavailable", err)
	}
	s.Close()
	open(t, dir)
}

// TestDeleteRemovesEmptyDirectories checks that deleting keeps the tree
// from filling with empty per-message directories.
func TestDeleteRemovesEmptyDirectories(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := context.Background()
	for _, k := range []string{"msg/1/a", "msg/2/b"} {
		if _, err := s.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "msg/1/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "msg", "1")); !os.IsNotExist(err) {
		t.Fatalf("msg/1 still there after its only object was deleted: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "msg", "2", "b~")); err != nil {
		t.Fatalf("sibling object gone: %v", err)
	}
}

// TestPutRacesDeleteOfEmptyDirectories checks that a Put never fails
// because a concurrent Delete removed the directory it was about to use.
func TestPutRacesDeleteOfEmptyDirectories(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				key := fmt.Sprintf("msg/%d/%d/blob", i%3, g)
				if _, err := s.Put(ctx, key, strings.NewReader("x"), 1); err != nil {
					t.Errorf("Put(%q): %v", key, err)
					return
				}
				if err := s.Delete(ctx, key); err != nil {
					t.Errorf("Delete(%q): %v", key, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestPutFileMovesWithoutCopy(t *testing.T) {
	dir := t.TempDir()
	s, err := fs.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	src := filepath.Join(dir, "spooled.xml")
	if err := os.WriteFile(src, []byte("<memo/>"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	info, err := s.PutFile(ctx, "msg/a/b", src)
	if err != nil || info.Size != 7 {
		t.Fatalf("PutFile: %+v %v", info, err)
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Fatalf("source still there: %v", err)
	}
	rc, err := s.Open(ctx, "msg/a/b")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "<memo/>" {
		t.Fatalf("content %q", b)
	}
	if _, err := s.PutFile(ctx, "../x", src); hub.ErrorCode(err) != hub.Invalid {
		t.Fatalf("bad key: %v", err)
	}
}
