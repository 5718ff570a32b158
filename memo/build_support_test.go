package memo

import (
	"bytes"
	"encoding/json"
	"io"
	"path/filepath"
	"testing"
)

// schemaValidate checks doc against the MeMo schema of version v with the
// package's own libxml2 engine (schemas compiled from the embedded files,
// as xmllint would use them).
func schemaValidate(t testing.TB, doc []byte, v string) {
	t.Helper()
	val, err := NewValidator(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer val.Close()
	got, err := val.ValidateSchemaBytes(doc)
	if err != nil {
		t.Fatalf("MeMo %s schema rejects the document: %v", v, err)
	}
	if got != v {
		t.Fatalf("document is MeMo %s, want %s", got, v)
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
