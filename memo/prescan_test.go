package memo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrescan(t *testing.T) {
	const ns = `xmlns:memo="https://DigitalPost.dk/MeMo-1"`
	long := strings.Repeat("x", prescanLimit)
	// many is more attributes than rootAttrs compares pairwise.
	var many string
	for i := range rootAttrsLinear + 1 {
		many += fmt.Sprintf(` a%d="%d"`, i, i)
	}
	many += " "
	tests := []struct {
		name    string
		doc     string
		version string
		code    string
		line    int
	}{
		{name: "prefixed root", doc: `<memo:Message ` + ns + ` memoVersion="1.2"/>`, version: "1.2"},
		{name: "default namespace", doc: `<Message xmlns="https://DigitalPost.dk/MeMo-1" memoVersion="1.1">`, version: "1.1"},
		{name: "any prefix", doc: `<m:Message xmlns:m="https://DigitalPost.dk/MeMo-1" memoVersion='1.2'>`, version: "1.2"},
		{name: "bom, declaration, comments and PIs", doc: "\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<!-- c -->\r\n<?pi x?>\r\n<memo:Message\r\n " + ns + "\r\n memoVersion=\"1.2\">", version: "1.2"},
		{name: "decimal version is canonicalised", doc: `<memo:Message ` + ns + ` memoVersion=" 01.10 ">`, version: "1.1"},
		{name: "character reference in version", doc: `<memo:Message ` + ns + ` memoVersion="1&#46;2">`, version: "1.2"},
		{name: "greater-than inside an attribute value", doc: `<memo:Message a="x>y" ` + ns + ` memoVersion="1.2">`, version: "1.2"},
		{name: "many attributes", doc: `<memo:Message ` + many + ns + ` memoVersion="1.2">`, version: "1.2"},
		{name: "namespace declared after many attributes", doc: `<memo:Message ` + many + ` a17="1" ` + ns + ` memoVersion="1.2">`, version: "1.2"},

		{name: "doctype refused", doc: "<?xml version=\"1.0\"?>\n<!DOCTYPE Message>\n<Message/>", code: CodeDoctypeNotAllowed, line: 2},
		{name: "lowercase doctype refused", doc: "<!doctype Message><Message/>", code: CodeDoctypeNotAllowed, line: 1},
		{name: "doctype after a comment refused", doc: "<!-- hi -->\n\n<!DOCTYPE x [<!ENTITY a 'b'>]><x/>", code: CodeDoctypeNotAllowed, line: 3},
		{name: "other declaration refused", doc: "<!ENTITY a 'b'><x/>", code: CodeNotWellFormed, line: 1},
		{name: "version 1.0 refused", doc: `<memo:Message ` + ns + ` memoVersion="1.0">`, code: CodeVersionNotSupported, line: 1},
		{name: "version garbage refused", doc: `<memo:Message ` + ns + ` memoVersion="two">`, code: CodeVersionNotSupported, line: 1},
		{name: "version missing", doc: "\n<memo:Message " + ns + `>`, code: CodeVersionMissing, line: 2},
		{name: "prefixed version attribute is not memoVersion", doc: `<memo:Message ` + ns + ` memo:memoVersion="1.2">`, code: CodeVersionMissing, line: 1},
		{name: "wrong root element", doc: `<memo:Letter ` + ns + ` memoVersion="1.2">`, code: CodeRootInvalid, line: 1},
		{name: "wrong namespace", doc: `<memo:Message xmlns:memo="https://DigitalPost.dk/MeMo-2" memoVersion="1.2">`, code: CodeRootInvalid, line: 1},
		{name: "no namespace", doc: `<Message memoVersion="1.2">`, code: CodeRootInvalid, line: 1},
		{name: "undeclared prefix", doc: `<memo:Message memoVersion="1.2">`, code: CodeRootInvalid, line: 1},
		{name: "utf-16 refused", doc: "\xFF\xFE<\x00M\x00", code: CodeEncodingNotSupported, line: 1},
		{name: "declared latin-1 refused", doc: `<?xml version="1.0" encoding="ISO-8859-1"?><x/>`, code: CodeEncodingNotSupported, line: 1},
		{name: "text before root", doc: `hello <x/>`, code: CodeNotWellFormed, line: 1},
		{name: "empty document", doc: "", code: CodeNotWellFormed, line: 1},
		{name: "truncated start tag", doc: `<memo:Message ` + ns + ` memoVersion="1.2"`, code: CodeNotWellFormed, line: 1},
		{name: "unquoted attribute", doc: `<memo:Message memoVersion=1.2>`, code: CodeNotWellFormed, line: 1},
		{name: "repeated attribute", doc: `<memo:Message ` + ns + ` memoVersion="1.2" memoVersion="1.1">`, code: CodeNotWellFormed, line: 1},
		{name: "repeated attribute among many", doc: `<memo:Message ` + ns + many + ` memoVersion="1.2" a3="2">`, code: CodeNotWellFormed, line: 1},
		{name: "repeated attribute after many", doc: `<memo:Message ` + ns + ` memoVersion="1.2"` + many + ` memoVersion="1.1">`, code: CodeNotWellFormed, line: 1},
		{name: "repeated namespace declaration", doc: `<memo:Message ` + ns + " " + ns + ` memoVersion="1.2">`, code: CodeNotWellFormed, line: 1},
		{name: "undefined entity in attribute", doc: `<memo:Message ` + ns + ` memoVersion="&v;">`, code: CodeNotWellFormed, line: 1},
		{name: "prolog longer than the bound", doc: "<!--" + long + "-->" + `<memo:Message ` + ns + ` memoVersion="1.2">`, code: CodePrologTooLong, line: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := prescan([]byte(tt.doc), true)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("refused: %s: %s", err.code, err.msg)
				}
				if p.version != tt.version {
					t.Fatalf("version %q, want %q", p.version, tt.version)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted (version %q), want %s", p.version, tt.code)
			}
			if err.code != tt.code || err.line != tt.line {
				t.Fatalf("got %s at line %d (%s), want %s at line %d", err.code, err.line, err.msg, tt.code, tt.line)
			}
		})
	}
}

// A document still arriving must not be judged before the root start tag.
func TestPrescanIncompleteHeadIsTooLong(t *testing.T) {
	doc := []byte(`<memo:Message xmlns:memo="https://DigitalPost.dk/MeMo-1" a="` + strings.Repeat("y", 2*prescanLimit) + `" memoVersion="1.2">`)
	_, err := prescan(doc, false)
	if err == nil || err.code != CodePrologTooLong {
		t.Fatalf("got %v, want %s", err, CodePrologTooLong)
	}
}

func TestPrescanNamesSupportedVersions(t *testing.T) {
	_, err := prescan([]byte(`<Message xmlns="https://DigitalPost.dk/MeMo-1" memoVersion="1.0">`), true)
	if err == nil || !strings.Contains(err.msg, "1.1") || !strings.Contains(err.msg, "1.2") {
		t.Fatalf("message should name the supported versions: %+v", err)
	}
	if err.field != "/Message/@memoVersion" || err.value != "1.0" {
		t.Fatalf("field %q value %q", err.field, err.value)
	}
}

func TestCanonicalDecimal(t *testing.T) {
	for in, want := range map[string]string{"1.1": "1.1", "1.10": "1.1", "01.2": "1.2", "+1.2": "1.2", "1": "1.0", ".5": "0.5", "1.2.3": "1.2.3", "-1.1": "-1.1", "x": "x"} {
		if got := canonicalDecimal(in); got != want {
			t.Errorf("canonicalDecimal(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCheckPrologAsksForMoreRatherThanGuess: on any cut of a document's
// start, CheckProlog either asks for more or gives the verdict of the
// document's first PrologLimit bytes; it never decides on a cut "<!DOC"
// or BOM what the rest would change.
func TestCheckPrologAsksForMoreRatherThanGuess(t *testing.T) {
	docs := []string{
		"\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<!-- c -->\r\n<?pi x?>\r\n<kombi_request>",
		"<?xml version='1.0' encoding='ISO-8859-1'?><x/>",
		"\xFF\xFE<\x00x\x00",
		"<!-- a -->\n<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><x/>",
		"<!-- a --><!ENTITY e 'v'><x/>",
		"  \n\t<x a='1'/>",
		"<?xml version=\"1.0\"?>\n<x>",
		"hej <x/>",
		"<!--" + strings.Repeat("x", 100) + "--><!--y--><x/>",
	}
	for _, doc := range docs {
		wantRoot, wantMore, want := CheckProlog([]byte(doc), true)
		if wantMore {
			t.Fatalf("%q: asks for more when complete", doc)
		}
		for n := 0; n < len(doc); n++ {
			root, more, got := CheckProlog([]byte(doc[:n]), false)
			if more {
				continue
			}
			if (got == nil) != (want == nil) || got != nil && (got.Code != want.Code || got.Line != want.Line) || root != wantRoot {
				t.Fatalf("%q cut at %d: root %d, %+v; whole: root %d, %+v", doc, n, root, got, wantRoot, want)
			}
		}
	}
	if _, more, got := CheckProlog([]byte("<!--"+strings.Repeat("x", PrologLimit)), false); more || got == nil || got.Code != CodePrologTooLong {
		t.Fatalf("a prolog past PrologLimit: more %v, %+v; want %s", more, got, CodePrologTooLong)
	}
	if root, _, got := CheckProlog([]byte("<!-- c -->\n<memo:Message/>"), true); got != nil || root != len("<!-- c -->\n") {
		t.Fatalf("root at %d, %+v", root, got)
	}
}

// The prescan runs before every letter: on a valid one it allocates
// nothing (its refusals excepted).
func TestPrescanOfALetterAllocatesNothing(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("testdata", "samples", "v1.1", "MeMo_Full_Example.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, perr := prescan(doc, true); perr != nil {
		t.Fatalf("refused: %+v", perr)
	}
	if n := testing.AllocsPerRun(100, func() { prescan(doc, true) }); n != 0 {
		t.Fatalf("%v allocations per prescan, want 0", n)
	}
}
