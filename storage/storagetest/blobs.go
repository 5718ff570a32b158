package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

// LargeBlobSize is the size of the object TestBlobs streams through a
// backend to check that memory does not grow with an object's size.
const LargeBlobSize = 200 << 20

// maxBlobHeapGrowth is how much the heap in use may grow while a large blob is
// written or read: a few multipart buffers, far below LargeBlobSize.
const maxBlobHeapGrowth = 64 << 20

// TestBlobs is the contract every hub.Blobs backend must pass. newBlobs
// returns an empty store of the test's own; it is called once per subtest.
// The large-blob case streams LargeBlobSize bytes twice and is skipped with
// -short.
func TestBlobs(t *testing.T, newBlobs func(t *testing.T) hub.Blobs) {
	t.Run("PutOpenStatDelete", func(t *testing.T) { testBlobPutOpenStatDelete(t, newBlobs(t)) })
	t.Run("AbsentIsNotFound", func(t *testing.T) { testBlobAbsent(t, newBlobs(t)) })
	t.Run("Overwrite", func(t *testing.T) { testBlobOverwrite(t, newBlobs(t)) })
	t.Run("EmptyObject", func(t *testing.T) { testBlobEmpty(t, newBlobs(t)) })
	t.Run("PutFileStoresAndRemovesTheFile", func(t *testing.T) { testBlobPutFile(t, newBlobs(t)) })
	t.Run("BadKeysAreInvalid", func(t *testing.T) { testBlobBadKeys(t, newBlobs(t)) })
	t.Run("KeysAreNamesNotPaths", func(t *testing.T) { testBlobKeysAreNames(t, newBlobs(t)) })
	t.Run("SizeMismatchStoresNothing", func(t *testing.T) { testBlobSizeMismatch(t, newBlobs(t)) })
	t.Run("ListInKeyOrderByPrefix", func(t *testing.T) { testBlobList(t, newBlobs(t)) })
	t.Run("ListStopsAtCallbackError", func(t *testing.T) { testBlobListStops(t, newBlobs(t)) })
	t.Run("ConcurrentPutsOfDistinctKeys", func(t *testing.T) { testBlobConcurrentPuts(t, newBlobs(t)) })
	t.Run("FailedPutLeavesNothingVisible", func(t *testing.T) { testBlobFailedPut(t, newBlobs(t)) })
	t.Run("LargeBlobStreamsInConstantMemory", func(t *testing.T) {
		if testing.Short() {
			t.Skipf("streams %d MiB twice; not with -short", LargeBlobSize>>20)
		}
		testBlobLarge(t, newBlobs(t))
	})
}

func testBlobPutFile(t *testing.T, s hub.Blobs) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "spooled")
	want := []byte("<Message>spooled body</Message>")
	if err := os.WriteFile(src, want, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutFile(ctx, "msg/../x", src); hub.ErrorCode(err) != hub.Invalid {
		t.Fatalf("PutFile with a bad key: %v, want invalid", err)
	}
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("a refused PutFile removed its file: %v", err)
	}
	info, err := s.PutFile(ctx, "msg/u1/put-file", src)
	if err != nil || info.Size != int64(len(want)) {
		t.Fatalf("PutFile: %+v %v", info, err)
	}
	if _, err := os.Stat(src); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file is still there after PutFile: %v", err)
	}
	rc, err := s.Open(ctx, "msg/u1/put-file")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("stored %q (%v), want %q", got, err, want)
	}
}

// BlobDataReader returns n bytes from a deterministic PRNG seeded with seed:
// the same arguments give the same bytes, without holding them in memory.
func BlobDataReader(seed uint64, n int64) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	return io.LimitReader(rand.NewChaCha8(key), n)
}

// BlobData returns BlobDataReader(seed, n)'s bytes.
func BlobData(seed uint64, n int) []byte {
	b, err := io.ReadAll(BlobDataReader(seed, int64(n)))
	if err != nil {
		panic(err)
	}
	return b
}

func blobPut(t *testing.T, b hub.Blobs, key string, data []byte) {
	t.Helper()
	info, err := b.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	if info.Key != key || info.Size != int64(len(data)) {
		t.Fatalf("Put(%q) = %+v, want size %d", key, info, len(data))
	}
}

func blobRead(t *testing.T, b hub.Blobs, key string) []byte {
	t.Helper()
	rc, err := b.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return got
}

func blobWantCode(t *testing.T, what string, err error, code hub.Code) {
	t.Helper()
	if got := hub.ErrorCode(err); got != code {
		t.Fatalf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
}

func blobKeys(t *testing.T, b hub.Blobs, prefix string) []string {
	t.Helper()
	var ks []string
	err := b.List(context.Background(), prefix, func(i hub.BlobInfo) error {
		ks = append(ks, i.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return ks
}

func blobAbsent(t *testing.T, b hub.Blobs, key string) {
	t.Helper()
	ctx := context.Background()
	_, err := b.Stat(ctx, key)
	blobWantCode(t, fmt.Sprintf("Stat(%q)", key), err, hub.NotFound)
	rc, err := b.Open(ctx, key)
	if err == nil {
		rc.Close()
	}
	blobWantCode(t, fmt.Sprintf("Open(%q)", key), err, hub.NotFound)
	if ks := blobKeys(t, b, key); slices.Contains(ks, key) {
		t.Fatalf("List(%q) = %q, want no %q", key, ks, key)
	}
}

func testBlobPutOpenStatDelete(t *testing.T, b hub.Blobs) {
	ctx := context.Background()
	key := "msg/6f1c2a4e-0b7d-4c55-9a43-0d1e2f3a4b5c/3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"
	data := BlobData(1, 100_000)
	blobPut(t, b, key, data)
	if got := blobRead(t, b, key); !bytes.Equal(got, data) {
		t.Fatalf("Open(%q) read %d bytes, not the %d put", key, len(got), len(data))
	}
	info, err := b.Stat(ctx, key)
	if err != nil || info != (hub.BlobInfo{Key: key, Size: int64(len(data))}) {
		t.Fatalf("Stat(%q) = %+v, %v; want size %d", key, info, err, len(data))
	}
	if err := b.Delete(ctx, key); err != nil {
		t.Fatalf("Delete(%q): %v", key, err)
	}
	blobAbsent(t, b, key)
	if err := b.Delete(ctx, key); err != nil {
		t.Fatalf("second Delete(%q): %v, want nil", key, err)
	}
}

func testBlobAbsent(t *testing.T, b hub.Blobs) {
	blobAbsent(t, b, "never/written")
	if err := b.Delete(context.Background(), "never/written"); err != nil {
		t.Fatalf("Delete of an absent key: %v, want nil", err)
	}
	blobPut(t, b, "a/b", []byte("x"))
	blobAbsent(t, b, "a") // a "directory" of another key is not an object
	blobAbsent(t, b, "a/b/c")
	blobAbsent(t, b, "a/bc")
}

func testBlobOverwrite(t *testing.T, b hub.Blobs) {
	blobPut(t, b, "k", BlobData(2, 5000))
	second := BlobData(3, 1234)
	blobPut(t, b, "k", second)
	if got := blobRead(t, b, "k"); !bytes.Equal(got, second) {
		t.Fatalf("after overwrite read %d bytes, want the second object's %d", len(got), len(second))
	}
	if info, err := b.Stat(context.Background(), "k"); err != nil || info.Size != int64(len(second)) {
		t.Fatalf("Stat after overwrite = %+v, %v; want size %d", info, err, len(second))
	}
	if ks := blobKeys(t, b, ""); !slices.Equal(ks, []string{"k"}) {
		t.Fatalf("List after overwrite = %q, want [k]", ks)
	}
}

func testBlobEmpty(t *testing.T, b hub.Blobs) {
	blobPut(t, b, "empty/known", nil)
	info, err := b.Put(context.Background(), "empty/unknown", strings.NewReader(""), -1)
	if err != nil || info.Size != 0 {
		t.Fatalf("Put of an empty reader with size -1 = %+v, %v", info, err)
	}
	for _, k := range []string{"empty/known", "empty/unknown"} {
		if got := blobRead(t, b, k); len(got) != 0 {
			t.Fatalf("%s read %d bytes, want 0", k, len(got))
		}
	}
}

// badBlobKeys break the rule on hub.Blobs keys: 1–1024 bytes of [A-Za-z0-9._-]
// segments joined by single "/", no "." or ".." segment.
var badBlobKeys = map[string]string{
	"empty":                 "",
	"absolute":              "/etc/passwd",
	"trailing slash":        "a/",
	"empty segment":         "a//b",
	"dot dot":               "..",
	"dot dot segment":       "a/../../b",
	"dot segment":           "./a",
	"trailing dot":          "a/.",
	"space":                 "a b",
	"backslash":             `a\b`,
	"tilde":                 "a~",
	"non-ASCII":             "bjørn",
	"NUL":                   "a\x00b",
	"newline":               "a\nb",
	"percent":               "a%2e",
	"over 1024 bytes":       strings.Repeat("a/", 512) + "a",
	"one 1025-byte segment": strings.Repeat("x", 1025),
}

func testBlobBadKeys(t *testing.T, b hub.Blobs) {
	ctx := context.Background()
	for name, key := range badBlobKeys {
		t.Run(name, func(t *testing.T) {
			_, err := b.Put(ctx, key, strings.NewReader("x"), 1)
			blobWantCode(t, "Put", err, hub.Invalid)
			rc, err := b.Open(ctx, key)
			if err == nil {
				rc.Close()
			}
			blobWantCode(t, "Open", err, hub.Invalid)
			_, err = b.Stat(ctx, key)
			blobWantCode(t, "Stat", err, hub.Invalid)
			blobWantCode(t, "Delete", b.Delete(ctx, key), hub.Invalid)
		})
	}
	if ks := blobKeys(t, b, ""); len(ks) != 0 {
		t.Fatalf("bad keys stored objects: %q", ks)
	}
}

// testBlobKeysAreNames checks that dots inside segments and leading dots
// are plain bytes, not path syntax. (Whether "a" and "a/b" can both exist is
// left to the backend: S3 and storage/fs allow it, MinIO does not.)
func testBlobKeysAreNames(t *testing.T, b hub.Blobs) {
	ks := []string{"..a", "a..b", ".hidden", "x.tmp", "y.tmp/z", "A-Z_a.z-0.9", "d/.../e", "_/-/." + "x"}
	for i, k := range ks {
		blobPut(t, b, k, []byte(k+fmt.Sprint(i)))
	}
	for i, k := range ks {
		if got := string(blobRead(t, b, k)); got != k+fmt.Sprint(i) {
			t.Fatalf("%q holds %q, want %q", k, got, k+fmt.Sprint(i))
		}
	}
	want := slices.Sorted(slices.Values(ks))
	if got := blobKeys(t, b, ""); !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
}

func testBlobSizeMismatch(t *testing.T, b hub.Blobs) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		n    int
		size int64
	}{
		{"shorter than size", 10, 20},
		{"longer than size", 20, 10},
		{"empty but size given", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "mismatch/" + strings.ReplaceAll(tc.name, " ", "-")
			_, err := b.Put(ctx, key, bytes.NewReader(BlobData(4, tc.n)), tc.size)
			blobWantCode(t, "Put", err, hub.Invalid)
			blobAbsent(t, b, key)
		})
	}
}

func testBlobList(t *testing.T, b hub.Blobs) {
	// No key is a "directory" of another, which MinIO refuses.
	all := []string{"b", "a-c", "a/a/x", "a/b", "c/d", "ab", "a/b0", "a0", "msg/1/x", "msg/10/x", "msg/2/x"}
	// When each was stored, to the second (what a sweeper of old objects
	// relies on); the clocks of the test and the server may differ a little.
	before := time.Now().Add(-time.Minute)
	sizes := map[string]int64{}
	for i, k := range all {
		data := BlobData(uint64(i), 10*i)
		blobPut(t, b, k, data)
		sizes[k] = int64(len(data))
	}
	var infos []hub.BlobInfo
	if err := b.List(context.Background(), "", func(i hub.BlobInfo) error {
		infos = append(infos, i)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(slices.Values(all))
	if len(infos) != len(want) {
		t.Fatalf("List(\"\") gave %d objects, want %d", len(infos), len(want))
	}
	for i, info := range infos {
		if info.Key != want[i] || info.Size != sizes[want[i]] {
			t.Fatalf("List(\"\")[%d] = %+v, want {%s %d} (order %q)", i, info, want[i], sizes[want[i]], want)
		}
		if info.Modified.Before(before) || info.Modified.After(time.Now().Add(time.Minute)) {
			t.Fatalf("List(\"\")[%d] = %+v: Modified is not when it was stored", i, info)
		}
	}
	for prefix, want := range map[string][]string{
		"a":      {"a-c", "a/a/x", "a/b", "a/b0", "a0", "ab"},
		"a/":     {"a/a/x", "a/b", "a/b0"},
		"a/b":    {"a/b", "a/b0"},
		"a/a/":   {"a/a/x"},
		"msg/1":  {"msg/1/x", "msg/10/x"},
		"msg/1/": {"msg/1/x"},
		"c/d":    {"c/d"},
		"c/d/":   nil,
		"zz":     nil,
		"zz/":    nil,
		"b":      {"b"},
	} {
		if got := blobKeys(t, b, prefix); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
}

func testBlobListStops(t *testing.T, b hub.Blobs) {
	for _, k := range []string{"s/1", "s/2", "s/3"} {
		blobPut(t, b, k, []byte(k))
	}
	stop := errors.New("enough")
	var seen []string
	err := b.List(context.Background(), "s/", func(i hub.BlobInfo) error {
		seen = append(seen, i.Key)
		if len(seen) == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("List returned %v, want the callback's error", err)
	}
	if !slices.Equal(seen, []string{"s/1", "s/2"}) {
		t.Fatalf("List called back with %q, want [s/1 s/2]", seen)
	}
}

func testBlobConcurrentPuts(t *testing.T, b hub.Blobs) {
	const n = 16
	errs := make(chan error, n)
	parallel(n, func(i int) {
		key := fmt.Sprintf("conc/%02d/blob", i)
		size := int64(1000 + 777*i)
		if i%2 == 1 {
			size = -1
		}
		_, err := b.Put(context.Background(), key, BlobDataReader(uint64(i), int64(1000+777*i)), size)
		if err != nil {
			errs <- fmt.Errorf("Put(%q): %w", key, err)
		}
	})
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	for i := range n {
		key := fmt.Sprintf("conc/%02d/blob", i)
		if got := blobRead(t, b, key); !bytes.Equal(got, BlobData(uint64(i), 1000+777*i)) {
			t.Fatalf("%s holds other bytes than were put", key)
		}
	}
	if ks := blobKeys(t, b, "conc/"); len(ks) != n {
		t.Fatalf("List(conc/) gave %d keys, want %d", len(ks), n)
	}
}

// blobFailingReader yields n bytes of data, then fails.
type blobFailingReader struct {
	r   io.Reader
	err error
}

func (f *blobFailingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

// blobCancellingReader cancels its context once n bytes have been read.
type blobCancellingReader struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *blobCancellingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= int64(n); c.n <= 0 {
		c.cancel()
	}
	return n, err
}

func testBlobFailedPut(t *testing.T, b hub.Blobs) {
	const n = 3 << 20 // past a small part size, below a large one
	old := []byte("the previous object")
	for _, size := range []int64{-1, 2 * n} {
		for _, how := range []string{"reader error", "context cancelled"} {
			t.Run(fmt.Sprintf("%s/size=%d", how, size), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var r io.Reader
				boom := errors.New("disk on fire")
				if how == "reader error" {
					r = &blobFailingReader{r: BlobDataReader(5, n), err: boom}
				} else {
					r = &blobCancellingReader{r: BlobDataReader(5, 2*n), n: n, cancel: cancel}
				}
				key := "failed/new"
				if _, err := b.Put(ctx, key, r, size); err == nil {
					t.Fatalf("Put from a failing reader returned nil")
				}
				blobAbsent(t, b, key)

				// A failed overwrite keeps the previous object.
				key = "failed/existing"
				blobPut(t, b, key, old)
				ctx, cancel = context.WithCancel(context.Background())
				defer cancel()
				if how == "reader error" {
					r = &blobFailingReader{r: BlobDataReader(5, n), err: boom}
				} else {
					r = &blobCancellingReader{r: BlobDataReader(5, 2*n), n: n, cancel: cancel}
				}
				if _, err := b.Put(ctx, key, r, size); err == nil {
					t.Fatalf("overwriting Put from a failing reader returned nil")
				}
				if got := blobRead(t, b, key); !bytes.Equal(got, old) {
					t.Fatalf("after a failed overwrite %q holds %d bytes, want the previous %d", key, len(got), len(old))
				}
				if ks := blobKeys(t, b, "failed/"); !slices.Equal(ks, []string{"failed/existing"}) {
					t.Fatalf("List(failed/) = %q after failed puts", ks)
				}
				if err := b.Delete(context.Background(), key); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// blobHeapWatch records the highest HeapInuse seen by sample.
type blobHeapWatch struct {
	base, peak uint64
}

func newBlobHeapWatch() *blobHeapWatch {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return &blobHeapWatch{base: ms.HeapInuse, peak: ms.HeapInuse}
}

func (h *blobHeapWatch) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.peak = max(h.peak, ms.HeapInuse)
}

func (h *blobHeapWatch) growth() uint64 { return h.peak - h.base }

// blobSampling passes bytes through, hashing them and blobSampling the heap every
// few MiB.
type blobSampling struct {
	r     io.Reader
	h     hash.Hash
	watch *blobHeapWatch
	n     int64
	next  int64
}

func (s *blobSampling) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.h.Write(p[:n])
	if s.n += int64(n); s.n >= s.next {
		s.watch.sample()
		s.next = s.n + 4<<20
	}
	return n, err
}

func testBlobLarge(t *testing.T, b hub.Blobs) {
	ctx := context.Background()
	for _, size := range []int64{-1, LargeBlobSize} {
		t.Run(fmt.Sprintf("size=%d", size), func(t *testing.T) {
			key := fmt.Sprintf("large/%d", size)
			watch := newBlobHeapWatch()
			src := &blobSampling{r: BlobDataReader(7, LargeBlobSize), h: sha256.New(), watch: watch}
			info, err := b.Put(ctx, key, src, size)
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			watch.sample()
			if info.Size != LargeBlobSize || src.n != LargeBlobSize {
				t.Fatalf("Put = %+v after reading %d bytes, want size %d", info, src.n, LargeBlobSize)
			}
			t.Logf("Put: heap grew %d KiB", watch.growth()>>10)
			if g := watch.growth(); g > maxBlobHeapGrowth {
				t.Errorf("Put of %d MiB grew the heap by %d MiB, want < %d MiB", LargeBlobSize>>20, g>>20, maxBlobHeapGrowth>>20)
			}
			if st, err := b.Stat(ctx, key); err != nil || st.Size != LargeBlobSize {
				t.Fatalf("Stat = %+v, %v", st, err)
			}

			watch = newBlobHeapWatch()
			rc, err := b.Open(ctx, key)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			dst := &blobSampling{r: rc, h: sha256.New(), watch: watch}
			_, err = io.Copy(io.Discard, dst)
			rc.Close()
			if err != nil {
				t.Fatalf("read back: %v", err)
			}
			watch.sample()
			t.Logf("read: heap grew %d KiB", watch.growth()>>10)
			if g := watch.growth(); g > maxBlobHeapGrowth {
				t.Errorf("reading %d MiB grew the heap by %d MiB, want < %d MiB", LargeBlobSize>>20, g>>20, maxBlobHeapGrowth>>20)
			}
			if dst.n != LargeBlobSize || !bytes.Equal(dst.h.Sum(nil), src.h.Sum(nil)) {
				t.Fatalf("read back %d bytes with sha256 %x, want %d bytes with %x", dst.n, dst.h.Sum(nil), LargeBlobSize, src.h.Sum(nil))
			}
			if err := b.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
		})
	}
}
