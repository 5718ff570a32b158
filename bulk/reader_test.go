package bulk

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/posthub/posthub/hub"
)

type file struct {
	name string
	size int64  // declared size (0: len(data))
	data []byte // content written (nil: size zero bytes)
}

// tarOf writes a tar archive; an entry whose data is shorter than its size
// is cut off there (the archive ends), as the bounds never need its rest.
func tarOf(t testing.TB, files ...file) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		if f.data == nil {
			f.data = make([]byte, f.size)
		}
		if f.size == 0 {
			f.size = int64(len(f.data))
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: f.size, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
		if int64(len(f.data)) < f.size {
			return b.Bytes()
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func lzmaOf(t testing.TB, raw []byte) []byte {
	t.Helper()
	return compressed(t, raw, func(w io.Writer) (io.WriteCloser, error) { return lzma.NewWriter(w) })
}

func xzOf(t testing.TB, raw []byte, cfg xz.WriterConfig) []byte {
	t.Helper()
	return compressed(t, raw, func(w io.Writer) (io.WriteCloser, error) { return cfg.NewWriter(w) })
}

// compressed is raw written through the compressor newWriter makes.
func compressed(t testing.TB, raw []byte, newWriter func(io.Writer) (io.WriteCloser, error)) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := newWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// withDict rewrites an lzma header's dictionary size.
func withDict(b []byte, dict uint32) []byte {
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint32(b[1:5], dict)
	return b
}

// readAll reads every entry; it returns the names read and the error that
// stopped the archive (nil at its end).
func readAll(t testing.TB, r io.Reader, l Limits) (*Reader, []string, error) {
	t.Helper()
	ar, err := NewReader(r, l)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	for {
		e, err := ar.Next()
		if err == io.EOF {
			return ar, names, nil
		}
		if err != nil {
			return ar, names, err
		}
		if _, err := io.Copy(io.Discard, ar); err != nil {
			return ar, names, err
		}
		names = append(names, e.Name)
	}
}

func fieldCode(t testing.TB, err error) (hub.Code, string) {
	t.Helper()
	var he *hub.Error
	if !errors.As(err, &he) || len(he.Fields) != 1 {
		t.Fatalf("not a hub error with one field error: %v", err)
	}
	return he.Code, he.Fields[0].Code
}

func TestArchiveBounds(t *testing.T) {
	memo := func(i int) file { return file{name: fmt.Sprintf("m%d.xml", i), data: []byte("<memo/>")} }
	small := Limits{MaxEntrySize: 1 << 20, MaxEntries: 3, MaxBytes: 4 << 20, MaxDictionary: 8 << 20}
	three := tarOf(t, memo(1), memo(2), memo(3))
	for _, tc := range []struct {
		name    string
		body    []byte
		limits  Limits
		code    hub.Code
		field   string
		read    int // entries read before the error
		stopAt  int
		maxRead int64 // decompressed bytes read at most
	}{
		{name: "an archive within every bound reads whole", body: lzmaOf(t, three), limits: small, read: 3},
		{name: "lzma dictionary of 2 GiB is refused before it is allocated", body: withDict(lzmaOf(t, three), 1<<31), limits: Limits{},
			code: hub.TooLarge, field: CodeDictionaryTooLarge},
		{name: "lzma dictionary of 2 GiB - 1, the lzma library's cap, is refused", body: withDict(lzmaOf(t, three), 1<<31-1),
			code: hub.TooLarge, field: CodeDictionaryTooLarge},
		{name: "lzma dictionary of 100 MiB, as 7-Zip writes it, is refused", body: withDict(lzmaOf(t, three), 100<<20),
			code: hub.TooLarge, field: CodeDictionaryTooLarge},
		{name: "a dictionary no encoder writes means the body is no lzma at all", body: withDict(lzmaOf(t, three), 0x6C20746F),
			code: hub.Invalid, field: CodeMalformed},
		{name: "lzma dictionary of 4 GiB is refused", body: withDict(lzmaOf(t, three), 1<<32-1), limits: Limits{},
			code: hub.TooLarge, field: CodeDictionaryTooLarge},
		{name: "lzma dictionary over a configured bound is refused", body: withDict(lzmaOf(t, three), 12<<20), limits: small,
			code: hub.TooLarge, field: CodeDictionaryTooLarge},
		{name: "declared uncompressed size over the budget is refused up front", body: declaredSize(t, three, 5<<20), limits: small,
			code: hub.TooLarge, field: CodeDecompressedTooLarge},
		{name: "an entry over the MeMo size stops the archive at its header",
			body:   lzmaOf(t, tarOf(t, memo(1), file{name: "big.xml", size: 1_200_000_000, data: make([]byte, 64<<10)})),
			limits: Limits{MaxEntrySize: 1 << 20}, code: hub.TooLarge, field: CodeEntryTooLarge, read: 1, stopAt: 2, maxRead: 4 << 10},
		{name: "one more entry than allowed stops the archive at its header",
			body: lzmaOf(t, tarOf(t, memo(1), memo(2), memo(3), memo(4), memo(5))), limits: small,
			code: hub.TooLarge, field: CodeTooManyEntries, read: 3, stopAt: 4, maxRead: 8 << 10},
		{name: "an entry that does not fit in what is left of the budget stops the archive at its header",
			body:   lzmaOf(t, tarOf(t, file{name: "a.xml", size: 90 << 10}, file{name: "b.xml", size: 90 << 10}, file{name: "c.xml", size: 90 << 10})),
			limits: Limits{MaxBytes: 200 << 10}, code: hub.TooLarge, field: CodeDecompressedTooLarge, read: 2, stopAt: 3, maxRead: 200 << 10},
		{name: "compressed bytes over the bound", body: lzmaOf(t, tarOf(t, file{name: "r.xml", data: random(24 << 10)})),
			limits: Limits{MaxCompressed: 12 << 10}, code: hub.TooLarge, field: CodeTooLarge, stopAt: 1},
		{name: "not compressed at all", body: []byte("not lzma at all"), code: hub.Invalid, field: CodeMalformed},
		{name: "a corrupt stream stops where it breaks", body: corrupt(lzmaOf(t, tarOf(t, file{name: "r.xml", data: random(24 << 10)}))),
			code: hub.Invalid, field: CodeMalformed, stopAt: 1},
		{name: "xz within every bound reads whole", body: xzOf(t, three, xz.WriterConfig{}), limits: small, read: 3},
		{name: "xz block dictionary over the bound is refused before it is allocated",
			body: xzWithDictCode(t, 40), code: hub.TooLarge, field: CodeDictionaryTooLarge},
		{name: "xz entries are bounded as lzma's are", body: xzOf(t, tarOf(t, memo(1), memo(2), memo(3), memo(4)), xz.WriterConfig{}),
			limits: small, code: hub.TooLarge, field: CodeTooManyEntries, read: 3, stopAt: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ar, names, err := readAll(t, bytes.NewReader(tc.body), tc.limits)
			if tc.field == "" {
				if err != nil || len(names) != tc.read {
					t.Fatalf("read %v, err %v", names, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("read %v without an error", names)
			}
			if code, field := fieldCode(t, err); code != tc.code || field != tc.field {
				t.Fatalf("%s/%s, want %s/%s: %v", code, field, tc.code, tc.field, err)
			}
			if len(names) != tc.read {
				t.Errorf("read %d entries before the error, want %d", len(names), tc.read)
			}
			if ar == nil {
				return // refused before reading
			}
			if ar.Err() == nil || !errors.Is(ar.Err(), err) {
				t.Errorf("Err() = %v", ar.Err())
			}
			if _, again := ar.Next(); again != err {
				t.Errorf("the error is not sticky: %v", again)
			}
			p := ar.Pos()
			if tc.stopAt != 0 && p.Entry != tc.stopAt {
				t.Errorf("stopped at entry %d, want %d (%+v)", p.Entry, tc.stopAt, p)
			}
			if tc.maxRead != 0 && p.Offset > tc.maxRead {
				t.Errorf("decompressed %d bytes before stopping, want at most %d", p.Offset, tc.maxRead)
			}
		})
	}
}

// declaredSize is an lzma stream whose header declares its size.
func declaredSize(t *testing.T, raw []byte, size uint64) []byte {
	var b bytes.Buffer
	w, err := lzma.WriterConfig{Size: int64(len(raw)), SizeInHeader: true}.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw)
	w.Close()
	out := b.Bytes()
	binary.LittleEndian.PutUint64(out[5:13], size)
	return out
}

func random(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7919 + i/251*31 + i*i%253)
	}
	h := sha256.New()
	for i := 0; i < n; i += 32 {
		h.Write(b[i:min(i+32, n)])
		copy(b[i:min(i+32, n)], h.Sum(nil))
	}
	return b
}

func corrupt(b []byte) []byte {
	b = bytes.Clone(b)
	for i := len(b) / 2; i < len(b)/2+64; i++ {
		b[i] ^= 0x5A
	}
	return b
}

// xzWithDictCode is an xz stream header and a block header whose LZMA2
// filter asks for dictionary code c (40: 4 GiB - 1), then some data.
func xzWithDictCode(t *testing.T, c byte) []byte {
	var b bytes.Buffer
	b.Write(xzMagic)
	flags := []byte{0, 0x01}
	b.Write(flags)
	b.Write(binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(flags)))
	hdr := []byte{2, 0x00, 0x21, 0x01, c, 0, 0, 0}
	b.Write(hdr)
	b.Write(binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(hdr)))
	b.Write(bytes.Repeat([]byte{0xE0, 0xFF, 0xFF}, 20))
	return b.Bytes()
}

// TestXZReadsWhatXZWrites decodes xz(1)'s output: a stream of three blocks
// with their sizes in the headers and CRC64 (xz -T2 --block-size=4096),
// stream padding, and a second stream with SHA-256 (xz --check=sha256).
func TestXZReadsWhatXZWrites(t *testing.T) {
	b, err := os.ReadFile("testdata/streams.tar.xz")
	if err != nil {
		t.Fatal(err)
	}
	got := decodeXZ(t, b, DefaultMaxDictionary)
	sum := sha256.Sum256(got)
	if len(got) != 20480 || hex.EncodeToString(sum[:]) != "6f3ad3bf8bb800db814b1ae1ab71a786b4338602a9064317416a407d6915edb9" {
		t.Fatalf("decoded %d bytes, sha256 %x", len(got), sum)
	}
	// A flipped bit anywhere is found: in data, a check, the index or the footer.
	for _, at := range []int{40, 2990, 6860, 6867, 6880, len(b) - 3} {
		bad := bytes.Clone(b)
		bad[at] ^= 0x01
		x, err := newXZReader(bufioOf(bad), DefaultMaxDictionary)
		if err == nil {
			_, err = io.Copy(io.Discard, x)
		}
		if err == nil {
			t.Errorf("a flipped bit at %d went unnoticed", at)
		}
	}
}

func TestXZReadsEveryCheckAndManyBlocks(t *testing.T) {
	raw := random(24 << 10)
	for _, cfg := range []xz.WriterConfig{
		{CheckSum: xz.None}, {CheckSum: xz.CRC32}, {CheckSum: xz.CRC64}, {CheckSum: xz.SHA256},
		{CheckSum: xz.CRC32, BlockSize: 8 << 10}, {CheckSum: xz.CRC64, BlockSize: 4 << 10, DictCap: 4 << 10},
	} {
		t.Run(fmt.Sprintf("check %d block %d", cfg.CheckSum, cfg.BlockSize), func(t *testing.T) {
			got := decodeXZ(t, xzOf(t, raw, cfg), DefaultMaxDictionary)
			if !bytes.Equal(got, raw) {
				t.Fatalf("decoded %d bytes, not the %d written", len(got), len(raw))
			}
		})
	}
	// Zeros compress into few chunks; incompressible data into uncompressed ones.
	zeros := make([]byte, 256<<10)
	if got := decodeXZ(t, xzOf(t, zeros, xz.WriterConfig{}), DefaultMaxDictionary); !bytes.Equal(got, zeros) {
		t.Fatalf("zeros: %d bytes", len(got))
	}
}

func decodeXZ(t *testing.T, b []byte, maxDict int64) []byte {
	t.Helper()
	x, err := newXZReader(bufioOf(b), maxDict)
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(x)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPositionNamesTheEntry(t *testing.T) {
	body := lzmaOf(t, tarOf(t, file{name: "ok.xml", data: []byte("<x/>")}, file{name: "dir/huge.xml", size: 2 << 20, data: []byte("x")}))
	ar, names, err := readAll(t, bytes.NewReader(body), Limits{MaxEntrySize: 1 << 20})
	if err == nil || len(names) != 1 {
		t.Fatalf("%v %v", names, err)
	}
	if p := ar.Pos(); p.Entry != 2 || p.Name != "dir/huge.xml" || p.Offset != 1536 {
		t.Fatalf("position %+v", p)
	}
	var he *hub.Error
	errors.As(err, &he)
	if f := he.Fields[0]; f.Field != "dir/huge.xml" || f.RejectedValue != "2097152" || !strings.Contains(f.Message, "entry 2") {
		t.Fatalf("field error %+v", f)
	}
}

// FuzzArchive: whatever the bytes, reading stays within the limits and
// fails only with the package's codes.
func FuzzArchive(f *testing.F) {
	f.Add(lzmaOf(f, tarOf(f, file{name: "a.xml", data: []byte("<a/>")})))
	f.Add(xzOf(f, tarOf(f, file{name: "a.xml", data: []byte("<a/>")}), xz.WriterConfig{}))
	f.Add([]byte{0x5D, 0, 0, 0, 0x80, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0})
	l := Limits{MaxCompressed: 1 << 20, MaxDictionary: 1 << 20, MaxBytes: 1 << 20, MaxEntrySize: 64 << 10, MaxEntries: 8}
	f.Fuzz(func(t *testing.T, b []byte) {
		ar, names, err := readAll(t, bytes.NewReader(b), l)
		if len(names) > l.MaxEntries {
			t.Fatalf("%d entries", len(names))
		}
		if ar != nil && ar.out.n > l.MaxBytes+1 {
			t.Fatalf("decompressed %d bytes", ar.out.n)
		}
		if err != nil {
			switch _, code := fieldCode(t, err); code {
			case CodeTooLarge, CodeDictionaryTooLarge, CodeDecompressedTooLarge, CodeEntryTooLarge, CodeTooManyEntries, CodeMalformed:
			default:
				t.Fatalf("code %s", code)
			}
		}
	})
}

func bufioOf(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
