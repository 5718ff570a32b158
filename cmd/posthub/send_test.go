package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthub/posthub/memo"
)

func TestSendCommandSubmitsFilesDirectoriesAndArchives(t *testing.T) {
	h := startHub(t)
	w := h.setupWorld()
	dir := t.TempDir()
	for i := 0; i < 3; i++ {
		u, b := letterXML(t, memo.Letter{To: citizen})
		if err := os.WriteFile(filepath.Join(dir, u+".xml"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u, b := letterXML(t, memo.Letter{To: citizen})
	bad := bytes.Replace(b, []byte(citizen), []byte("1"), 1)
	if err := os.WriteFile(filepath.Join(dir, u+".xml"), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := Main(append([]string{"send", "-url", h.base, "-token", w.sender, "-q"}, args...),
			&Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
		return code, out.String() + errb.String()
	}
	code, out := run(dir)
	if code != 1 || !strings.Contains(out, "RECEIVED 3") || !strings.Contains(out, "HTTP 400") {
		t.Fatalf("directory with one bad MeMo: exit %d\n%s", code, out)
	}
	files := map[string][]byte{}
	for i := 0; i < 4; i++ {
		u, b := letterXML(t, memo.Letter{To: citizen})
		files[u+".xml"] = b
	}
	archive := filepath.Join(t.TempDir(), "batch.tar.lzma")
	if err := os.WriteFile(archive, lzmaTar(t, files), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out = run(archive)
	if code != 0 || !strings.Contains(out, "sent 4: RECEIVED 4") {
		t.Fatalf("archive: exit %d\n%s", code, out)
	}
	// Without a token the command refuses to start.
	var errb bytes.Buffer
	if code := Main([]string{"send", dir}, &Env{Stdout: &errb, Stderr: &errb, Getenv: func(string) string { return "" }}); code != 2 {
		t.Fatalf("no token: exit %d", code)
	}
}
