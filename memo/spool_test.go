package memo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
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
	body := []byte(readSample(t, "1.2", "MeMo_Minimum_Example.xml"))
	sp, err := Spool(bytes.NewReader(body), dir, int64(len(body)))
	if err != nil {
		t.Fatal(err)
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
