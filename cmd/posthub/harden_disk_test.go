//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/storage/bolt"
)

// mountTmpfs mounts a tmpfs of size bytes at dir until the test ends.
func mountTmpfs(t *testing.T, dir string, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testservers.SkipUnlessRequired(t, "filling a disk needs a small filesystem of its own: mounting a tmpfs needs root, and this test does not fill a real disk")
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
}

// fill writes a file at path until the filesystem has no byte left.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for chunk := 1 << 20; chunk >= 512; chunk /= 2 {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill %s: %v", path, err)
				}
				break
			}
		}
	}
}

// refusedForNow checks that a send on a full disk is refused as passing:
// 507, or 503 with Retry-After, never a 5xx that says the hub is broken.
func refusedForNow(t *testing.T, what string, r response) {
	t.Helper()
	switch {
	case r.status == http.StatusInsufficientStorage:
	case r.status == http.StatusServiceUnavailable && r.header.Get("Retry-After") != "":
	default:
		t.Fatalf("%s on a full disk: %d (Retry-After %q) %s; want 507, or 503 with Retry-After", what, r.status, r.header.Get("Retry-After"), r.body)
	}
}

// answered checks that a read or an administrator's write answered, with
// its result or as passing (503/507), and not with a 500.
func answered(t *testing.T, what string, r response, ok int) {
	t.Helper()
	if r.status != ok && r.status != http.StatusServiceUnavailable && r.status != http.StatusInsufficientStorage {
		t.Fatalf("%s on a full disk: %d %s; want %d, 503 or 507", what, r.status, r.body, ok)
	}
	t.Logf("%s on a full disk: %d", what, r.status)
}

// eventually GETs path until it answers status.
func (h *testHub) eventually(path, token string, status int) {
	h.t.Helper()
	var r response
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r = h.do("GET", path, token, "", nil); r.status == status {
			return
		}
	}
	h.t.Fatalf("GET %s: %d %s, want %d", path, r.status, r.body, status)
}

// TestDiskFullRefusesSendsAndRecoversWithoutARestart runs `posthub serve`
// on a small tmpfs and fills it: sends are refused as passing, reads and
// administrators' writes answer (none waits without bound), and once
// space returns sends are accepted again without a restart. Every letter
// acknowledged on the way is there after a crash and a restart.
func TestDiskFullRefusesSendsAndRecoversWithoutARestart(t *testing.T) {
	data := t.TempDir()
	mountTmpfs(t, data, "48m")
	const operator = "ph_disk-full-operator"
	args := []string{"-data", data, "-operator-token", operator}
	p := startHubProcess(t, args...)
	// A hub that hangs fails the request, and the test, here.
	h := &testHub{t: t, base: p.base, data: data, operator: operator, client: &http.Client{Timeout: 20 * time.Second}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hub log:\n%s", p.log())
		}
	})
	w := h.setupWorld()

	var acked []string
	send := func(body []byte, uuid string) response {
		r := h.send(w.sender, uuid, body, "")
		if r.status == http.StatusCreated {
			acked = append(acked, uuid)
		}
		return r
	}
	for range 5 {
		u, b := letterXML(t, memo.Letter{To: citizen})
		h.mustStatus(send(b, u), http.StatusCreated)
	}

	// Leave room for one more letter in the accept log, but not for it in
	// bbolt too: it is acknowledged, and its apply fails.
	h.mustStatus(h.do("GET", "/apis/v1/receipts/", w.sender, "", nil), http.StatusOK) // the five are applied
	room := filepath.Join(data, "room")
	if err := os.WriteFile(room, make([]byte, 400<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(data, "filler")
	fill(t, filler)
	if err := os.Remove(room); err != nil {
		t.Fatal(err)
	}
	lu, inline := letterXML(t, memo.Letter{To: citizen, Main: memo.PDF("brev.pdf", bytes.Repeat([]byte("%PDF-1.4 "), 19_000))})
	if len(inline) < 200<<10 || len(inline) > 256<<10 {
		t.Fatalf("the letter has %d bytes: it must fill the room half and be kept inline", len(inline))
	}
	h.mustStatus(send(inline, lu), http.StatusCreated)
	// What waits for the apply answers rather than waiting for space.
	answered(t, "list receipts while the apply fails", h.do("GET", "/apis/v1/receipts/", w.sender, "", nil), http.StatusOK)
	fill(t, filler+"2")

	// Sends: a small letter (validated in memory, then the accept log), a
	// large one (spooled to disk first) and a mass send.
	u, small := letterXML(t, memo.Letter{To: citizen})
	refusedForNow(t, "a small letter", send(small, u))
	refusedForNow(t, "the same letter again", send(small, u))
	bu, big := letterXML(t, memo.Letter{To: citizen, Main: memo.PDF("stor.pdf", bytes.Repeat([]byte("%PDF-1.4 "), 200_000))})
	if len(big) <= 1<<20 {
		t.Fatalf("the large letter has %d bytes: it would not be spooled", len(big))
	}
	refusedForNow(t, "a large letter", send(big, bu))
	au, ab := letterXML(t, memo.Letter{To: citizen})
	refusedForNow(t, "a mass send", h.do("POST", "/apis/v1/memos/", w.sender, "application/x-lzma", bytes.NewReader(lzmaTar(t, map[string][]byte{au + ".xml": ab}))))

	// Reads and administrators' writes answer.
	answered(t, "list receipts", h.do("GET", "/apis/v1/receipts/", w.sender, "", nil), http.StatusOK)
	answered(t, "list systems", h.do("GET", "/apis/v1/organisations/"+orgA+"/systems/", operator, "", nil), http.StatusOK)
	answered(t, "list messages", h.do("GET", "/apis/v1/organisations/"+orgA+"/messages/", operator, "", nil), http.StatusOK)
	answered(t, "create a contact group", h.operatorJSON("POST", "/apis/v1/organisations/"+orgA+"/contact-groups/", map[string]any{"name": "Fuld disk"}), http.StatusCreated)
	answered(t, "register a system", h.operatorJSON("POST", "/apis/v1/organisations/"+company+"/systems/", map[string]any{"name": "Firma afsender", "role": "SENDER"}), http.StatusCreated)
	answered(t, "readyz", h.do("GET", "/readyz", "", "", nil), http.StatusOK)

	// Space returns: sends are accepted again at once, without a restart,
	// and reads once the store has caught up (the apply retries after a
	// pause of at most a few seconds).
	for _, f := range []string{filler, filler + "2"} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	h.mustStatus(send(small, u), http.StatusCreated)
	h.mustStatus(send(big, bu), http.StatusCreated)
	for range 3 {
		u, b := letterXML(t, memo.Letter{To: citizen})
		h.mustStatus(send(b, u), http.StatusCreated)
	}
	h.eventually("/readyz", "", http.StatusOK)
	h.eventually("/apis/v1/receipts/", w.sender, http.StatusOK)

	// A crash, and a restart: every acknowledged letter is there, whole.
	_ = p.cmd.Process.Kill()
	<-p.done
	p2 := startHubProcess(t, args...)
	h.base = p2.base
	h.mustStatus(h.do("GET", "/readyz", "", "", nil), http.StatusOK)
	p2.stop()
	store, err := bolt.Open(filepath.Join(data, "posthub.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, uuid := range acked {
		m, err := store.GetMessage(context.Background(), uuid)
		if err != nil {
			t.Fatalf("acknowledged letter %s after the restart: %v", uuid, err)
		}
		if ds, err := store.DeliveriesOf(context.Background(), uuid); err != nil || len(ds) != 1 || ds[0].Queue != hub.MailboxQueue(citizen, "") {
			t.Fatalf("deliveries of acknowledged letter %s: %v %+v", uuid, err, ds)
		}
		if m.Size == 0 || !strings.EqualFold(m.UUID, uuid) {
			t.Fatalf("acknowledged letter %s: %+v", uuid, m)
		}
	}
	t.Logf("%d letters acknowledged, all there after the restart", len(acked))
}
