package memo

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// xmllintValidate checks doc against the embedded-schema copy of version v
// with xmllint, the reference implementation the hub's libxml2 engine uses.
func xmllintValidate(t testing.TB, doc []byte, v string) {
	t.Helper()
	if _, err := exec.LookPath("xmllint"); err != nil {
		t.Skip("xmllint not installed (make deps installs it)")
	}
	xsd := map[string]string{Version11: "../schemas/MeMo_core.xsd", Version12: "../schemas/Version1.2/MeMo_core.xsd"}[v]
	path := filepath.Join(t.TempDir(), "m.xml")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("xmllint", "--huge", "--noout", "--schema", xsd, path).CombinedOutput()
	if err != nil {
		t.Fatalf("MeMo %s schema rejects the document: %v\n%s", v, err, out)
	}
}

// modelJSON is the comparable form of a model: its exported fields plus
// every file's decoded content.
func modelJSON(t testing.TB, m *Message) string {
	t.Helper()
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.Write(b)
	for _, f := range m.Files() {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Filename, err)
		}
		buf.WriteString("\n" + f.Filename + ":")
		buf.Write(data)
	}
	return buf.String()
}

func build(t testing.TB, m *Message) []byte {
	t.Helper()
	var b bytes.Buffer
	n, err := m.WriteTo(&b)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(b.Len()) {
		t.Fatalf("WriteTo reported %d bytes, wrote %d", n, b.Len())
	}
	return b.Bytes()
}

func memoSamples(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob("testdata/samples/*/*.xml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	return paths
}
