package atomicfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestWriteReplacesWhole(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := Write(p, strings.NewReader("one"), -1, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, strings.NewReader("two!"), 4, 0o640); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "two!" {
		t.Fatalf("content %q", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
}

func TestWriteShortContentLeavesOldFileAndNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := Write(p, strings.NewReader("old"), -1, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, strings.NewReader("ab"), 3, 0o600); err == nil {
		t.Fatal("short content accepted")
	}
	b, _ := os.ReadFile(p)
	ents, _ := os.ReadDir(dir)
	if string(b) != "old" || len(ents) != 1 {
		t.Fatalf("content %q, %d entries", b, len(ents))
	}
}

// Sixteen processes' worth of concurrent first starts agree on one key.
func TestLoadOrCreateConcurrentAgree(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "key")
	var wg sync.WaitGroup
	got := make([][]byte, 16)
	errs := make([]error, 16)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = LoadOrCreate(p, 0o600, func() ([]byte, error) { return []byte{byte(i), 1, 2, 3}, nil },
				func(b []byte) ([]byte, error) { return b, nil })
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(got[i], got[0]) {
			t.Fatalf("caller %d got %v, caller 0 %v", i, got[i], got[0])
		}
	}
	onDisk, _ := os.ReadFile(p)
	if !bytes.Equal(onDisk, got[0]) {
		t.Fatalf("disk %v, callers %v", onDisk, got[0])
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Fatalf("%d entries left in the directory", len(ents))
	}
}

func TestLoadOrCreateParseErrorNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "key")
	os.WriteFile(p, []byte("junk"), 0o600)
	_, err := LoadOrCreate(p, 0o600, func() ([]byte, error) { return nil, errors.New("must not create") },
		func(b []byte) (int, error) { return 0, errors.New("not a key") })
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("err %v", err)
	}
}

// TestMkdirAllSyncsWhatItCreates: MkdirAll creates the missing directories
// of a path (the print spool's, on first use), fsyncing each one's parent,
// leaves existing ones alone and refuses a path through a file. (The
// fsync itself shows only across a power loss; the crash harness keeps the
// page cache.)
func TestMkdirAllSyncsWhatItCreates(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "outbox", "print", "deep")
	for range 2 { // the second time everything exists
		if err := MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Fatalf("%s: %v %v", dir, fi, err)
		}
	}
	file := filepath.Join(root, "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(filepath.Join(file, "below"), 0o750); err == nil {
		t.Fatal("a directory below a file was made")
	}
}
