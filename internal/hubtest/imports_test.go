package hubtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const importPath = "github.com/posthub/posthub/internal/hubtest"

// importers lists the non-test Go files below root that import path,
// whatever their build tags: a production file that imports hubtest under
// any tag would link test fixtures into a binary. Hidden directories (the
// .cache of binaries), testdata and vendor are not Go source of the module.
func importers(root, path string) ([]string, error) {
	var out []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			if v, _ := strconv.Unquote(imp.Path.Value); v == path {
				rel, _ := filepath.Rel(root, p)
				out = append(out, rel)
			}
		}
		return nil
	})
	return out, err
}

// TestNoProductionFileImportsHubtest: hubtest is imported from _test.go
// files only.
func TestNoProductionFileImportsHubtest(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not at %s: %v", root, err)
	}
	found, err := importers(root, importPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) > 0 {
		t.Fatalf("production files import %s (test fixtures only): %v", importPath, found)
	}
}

// TestImportersFindsProductionImports: the check above finds a non-test
// importer, in a nested package and under a build tag, and passes over
// test files, testdata and hidden directories.
func TestImportersFindsProductionImports(t *testing.T) {
	root := t.TempDir()
	imp := "import _ " + strconv.Quote(importPath) + "\n"
	for name, src := range map[string]string{
		"a/a.go":          "package a\n" + imp,
		"b/c/c.go":        "//go:build linux\n\npackage c\n\nimport (\n\t\"fmt\"\n\th " + strconv.Quote(importPath) + "\n)\n",
		"a/a_test.go":     "package a\n" + imp,
		"a/testdata/t.go": "package t\n" + imp,
		".cache/x/x.go":   "package x\n" + imp,
		"d/d.go":          "package d\nimport _ \"github.com/posthub/posthub/hub\"\n",
	} {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	found, err := importers(root, importPath)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(found)
	if want := []string{filepath.FromSlash("a/a.go"), filepath.FromSlash("b/c/c.go")}; !slices.Equal(found, want) {
		t.Fatalf("importers: %v, want %v", found, want)
	}
}
