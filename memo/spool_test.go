package memo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/posthub/posthub/hub"
)

func TestSpool(t *testing.T) {
	dir := t.TempDir()
	body := []byte(readSample(t, "1.1", "MeMo_Full_Example.xml"))
	sp, err := Spool(bytes.NewReader(body), dir, int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if sp.Size != int64(len(body)) || sp.SHA256 != hex.EncodeToString(sum[:]) || filepath.Dir(sp.Path) != dir {
		t.Fatalf("spooled %+v", sp)
	}
	got, err := os.ReadFile(sp.Path)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("spool file differs: %v", err)
	}
	_, err = Spool(bytes.NewReader(body), dir, int64(len(body))-1)
	hubError(t, err, hub.TooLarge)
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 1 {
		t.Fatalf("a refused spool left files: %v", left)
	}
}

func TestSpoolFsyncsAndClosesTheFile(t *testing.T) {
	dir := t.TempDir()
	body, err := os.ReadFile(bigMessage(t, t.TempDir(), earlySyncMin))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := Spool(bytes.NewReader(body), dir, int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	if sp.synced == nil {
		t.Fatal("no early fsync for a body of a MiB")
	}
	for range 2 { // asking again gives the same answer
		if err := sp.Durable(); err != nil {
			t.Fatal(err)
		}
	}
	// The descriptor is closed only after its fsync returned.
	if fds := openDescriptorsOf(t, sp.Path); fds != 0 {
		t.Fatalf("%d descriptors of the spool file still open after Durable", fds)
	}
	if got, err := os.ReadFile(sp.Path); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("spool file differs: %v", err)
	}
}

func TestSpoolLeavesASmallBodysFsyncToTheStore(t *testing.T) {
	body := []byte(readSample(t, "1.2", "MeMo_Minimum_Example.xml"))
	sp, err := Spool(bytes.NewReader(body), t.TempDir(), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	if sp.synced != nil || sp.Durable() != nil {
		t.Fatal("a small body was fsynced early")
	}
	if fds := openDescriptorsOf(t, sp.Path); fds != 0 {
		t.Fatalf("%d descriptors of the spool file still open", fds)
	}
}

func TestDurableReportsTheFsyncFailure(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "memo-*.xml")
	if err != nil {
		t.Fatal(err)
	}
	f.Close() // fsync on a closed file fails: the stand-in for a write-back error
	sp := Spooled{Path: f.Name(), synced: syncInBackground(f)}
	for range 2 {
		hubError(t, sp.Durable(), hub.Internal)
	}
}

func TestSpooledNotFromSpoolHasNothingToWaitFor(t *testing.T) {
	if err := (Spooled{Path: "elsewhere"}).Durable(); err != nil {
		t.Fatal(err)
	}
}

// openDescriptorsOf counts this process's descriptors open on path.
func openDescriptorsOf(t *testing.T, path string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd to count descriptors in:", err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && target == path {
			n++
		}
	}
	return n
}

// chunkReader hands out its bytes a few at a time, as a slow network
// would, so that libxml2 catches up with the spool and waits for it.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[k:]
	return k, nil
}

// failingReader breaks off after its bytes.
type failingReader struct{ r io.Reader }

func (f failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset")
	}
	return n, err
}

func TestSpoolingValidatorAgreesWithValidateFile(t *testing.T) {
	v := newTestValidator(t)
	good := []byte(readSample(t, "1.2", "MeMo_Minimum_Example.xml"))
	long := bigMessage(t, t.TempDir(), 3<<20) // past the prescan's window
	longBody, err := os.ReadFile(long)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"valid":                        good,
		"valid past the prescan":       longBody,
		"business rule broken":         bytes.Replace(good, []byte("DIGITALPOST"), []byte("X"), 1),
		"schema broken at the end":     bytes.Replace(good, []byte("</memo:Message>"), []byte("<memo:x/></memo:Message>"), 1),
		"cut off":                      good[:len(good)-10],
		"doctype":                      bytes.Replace(good, []byte("?>"), []byte("?><!DOCTYPE x>"), 1),
		"empty":                        {},
		"schema broken past prescan":   append(bytes.Clone(longBody[:len(longBody)-len("</memo:Message>\n")]), "<memo:x/></memo:Message>\n"...),
		"not well-formed past prescan": append(bytes.Clone(longBody[:len(longBody)/2]), "<</memo:Message>"...),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "m.xml")
			if err := os.WriteFile(path, body, 0o600); err != nil {
				t.Fatal(err)
			}
			want, wantErr := v.ValidateFile(path, testNow)
			for _, chunk := range []int{1 << 20, 4093} {
				sp, err := v.Spool(&chunkReader{b: body, n: chunk}, t.TempDir(), 100<<20)
				if err != nil {
					t.Fatal(err)
				}
				got, gotErr := v.ValidateSpooledFile(sp, testNow)
				if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || (got == nil) != (want == nil) {
					t.Fatalf("chunks of %d: got %v, want %v", chunk, gotErr, wantErr)
				}
				if want != nil && got.MessageHeader.MessageUUID != want.MessageHeader.MessageUUID {
					t.Fatalf("chunks of %d: model of another message", chunk)
				}
				var gh, wh *hub.Error
				if errors.As(gotErr, &gh) && errors.As(wantErr, &wh) && fmt.Sprint(gh.Fields) != fmt.Sprint(wh.Fields) {
					t.Fatalf("chunks of %d: fields %+v, want %+v", chunk, gh.Fields, wh.Fields)
				}
			}
		})
	}
}

func TestSpoolingValidatorRefusesWhatIsOverItsLimit(t *testing.T) {
	v, err := NewValidator(Config{MaxSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	body, err := os.ReadFile(bigMessage(t, t.TempDir(), 2<<20))
	if err != nil {
		t.Fatal(err)
	}
	// Spool's own limit is the caller's; the validator's is checked after.
	sp, err := v.Spool(bytes.NewReader(body), t.TempDir(), 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.ValidateSpooledFile(sp, testNow)
	if he := hubError(t, err, hub.TooLarge); he.Fields[0].Code != CodeTooLarge {
		t.Fatalf("fields %+v", he.Fields)
	}
}

func TestSpoolingValidatorLetsGoOfABrokenBody(t *testing.T) {
	v := newTestValidator(t)
	body, err := os.ReadFile(bigMessage(t, t.TempDir(), 2<<20))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, cut := range []int{100, len(body) / 2} { // before and after libxml2 started
		_, err := v.Spool(failingReader{&chunkReader{b: body[:cut], n: 64 << 10}}, dir, 100<<20)
		hubError(t, err, hub.Invalid)
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
			t.Fatalf("a broken body left files: %v", left)
		}
	}
	_, err = v.Spool(bytes.NewReader(body), dir, int64(len(body))-1)
	hubError(t, err, hub.TooLarge)
}

// Mangled samples, in chunks of every size, get the same verdict from the
// spooling validator as from ValidateBytes, and none leaves it waiting for
// a body that has ended.
func TestSpoolingValidatorAgreesOnMangledSamples(t *testing.T) {
	v := newTestValidator(t)
	paths, _ := filepath.Glob(filepath.Join("testdata", "samples", "*", "*.xml"))
	if len(paths) == 0 {
		t.Fatal("no samples")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		b, err := os.ReadFile(paths[rng.IntN(len(paths))])
		if err != nil {
			t.Fatal(err)
		}
		for k := rng.IntN(4); k > 0; k-- {
			b[rng.IntN(len(b))] = byte(rng.IntN(256))
		}
		if rng.IntN(3) == 0 {
			b = b[:rng.IntN(len(b))]
		}
		chunk := 1 + rng.IntN(5000)
		_, want := v.ValidateBytes(b, testNow)
		sp, err := v.Spool(&chunkReader{b: b, n: chunk}, dir, 100<<20)
		if err != nil {
			t.Fatal(err)
		}
		_, got := v.ValidateSpooledFile(sp, testNow)
		os.Remove(sp.Path)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("case %d (%d bytes in chunks of %d): spooled %v, in memory %v", i, len(b), chunk, got, want)
		}
	}
}

// With every streaming slot taken, Spool only spools and the XSD runs once
// the body is in: the same verdicts, and no slot is used or leaked.
func TestSpoolingValidatorDefersWhenEveryStreamIsTaken(t *testing.T) {
	v := newTestValidator(t)
	for range cap(v.streams) {
		v.streams <- struct{}{}
	}
	good := []byte(readSample(t, "1.2", "MeMo_Minimum_Example.xml"))
	for name, body := range map[string][]byte{
		"valid":  good,
		"broken": bytes.Replace(good, []byte("</memo:Message>"), []byte("<memo:x/></memo:Message>"), 1),
	} {
		path := filepath.Join(t.TempDir(), "m.xml")
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
		want, wantErr := v.ValidateFile(path, testNow)
		sp, err := v.Spool(bytes.NewReader(body), t.TempDir(), 100<<20)
		if err != nil {
			t.Fatal(err)
		}
		if !sp.check.deferred {
			t.Fatalf("%s: streamed without a free slot", name)
		}
		got, gotErr := v.ValidateSpooledFile(sp, testNow)
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || (got == nil) != (want == nil) {
			t.Fatalf("%s: got %v, want %v", name, gotErr, wantErr)
		}
	}
	for range cap(v.streams) {
		<-v.streams
	}
	sp, err := v.Spool(bytes.NewReader(good), t.TempDir(), 100<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.ValidateSpooledFile(sp, testNow); err != nil || sp.check.deferred {
		t.Fatalf("with slots free again: deferred %v, %v", sp.check.deferred, err)
	}
	if n := len(v.streams); n != 0 {
		t.Fatalf("%d streaming slots still held after the checks ended", n)
	}
}

// TestReadErrorSaysWhyTheBodyEnded: a body cut off by the server's read
// deadline, one shorter than declared and any other failed read each get
// their own field code.
func TestReadErrorSaysWhyTheBodyEnded(t *testing.T) {
	for _, c := range []struct {
		err  error
		code string
	}{
		{fmt.Errorf("read tcp: %w", os.ErrDeadlineExceeded), "body.too.slow"},
		{io.ErrUnexpectedEOF, "body.incomplete"},
		{errors.New("connection reset by peer"), "body.unreadable"},
	} {
		var he *hub.Error
		if err := ReadError(c.err); !errors.As(err, &he) || he.Code != hub.Invalid || len(he.Fields) != 1 || he.Fields[0].Code != c.code {
			t.Errorf("%v: %v, want invalid %s", c.err, err, c.code)
		}
	}
}
