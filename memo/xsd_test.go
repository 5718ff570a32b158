package memo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/posthub/posthub/hub"
)

func newTestValidator(t testing.TB) *Validator {
	t.Helper()
	v, err := NewValidator(DefaultConfig(), WithSpoolDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func samplePaths(t testing.TB, version string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "samples", "v"+version, "*.xml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no v%s samples: %v", version, err)
	}
	return paths
}

func readSample(t testing.TB, version, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "samples", "v"+version, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hubError asserts err is a *hub.Error of the given code and returns it.
func hubError(t testing.TB, err error, code hub.Code) *hub.Error {
	t.Helper()
	var he *hub.Error
	if !errors.As(err, &he) {
		t.Fatalf("got %v (%T), want a *hub.Error of code %s", err, err, code)
	}
	if he.Code != code {
		t.Fatalf("got code %s (%v), want %s", he.Code, he, code)
	}
	return he
}

func TestSamplesPassTheirSchema(t *testing.T) {
	v := newTestValidator(t)
	for _, version := range SupportedVersions {
		for _, p := range samplePaths(t, version) {
			t.Run(version+"/"+filepath.Base(p), func(t *testing.T) {
				got, err := v.ValidateSchemaFile(p)
				if err != nil {
					t.Fatalf("file: %v", err)
				}
				if got != version {
					t.Fatalf("version %q, want %q", got, version)
				}
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := v.ValidateSchemaBytes(b); err != nil {
					t.Fatalf("bytes: %v", err)
				}
			})
		}
	}
}

// Each class of XSD failure gets its own stable code, the line it is on and
// the path of the element it is about.
func TestSchemaFailureClasses(t *testing.T) {
	v := newTestValidator(t)
	min11 := readSample(t, "1.1", "MeMo_Minimum_Example.xml")
	min12 := readSample(t, "1.2", "MeMo_Minimum_Example.xml")
	tests := []struct {
		name       string
		doc        string
		code       string
		field      string
		line       int
		wellFormed bool
	}{
		{name: "missing required element", doc: strings.Replace(min12, "<memo:idType>CPR</memo:idType>", "", 1),
			code: CodeSchemaElementMissing, field: "/Message/MessageHeader/Recipient", line: 12},
		{name: "required element out of order", doc: strings.Replace(min12, "<memo:label>Pladsanvisning</memo:label>", "", 1),
			code: CodeSchemaElementUnexpect, field: "/Message/MessageHeader/Sender", line: 7},
		{name: "unexpected element", doc: strings.Replace(min12, "<memo:label>Pladsanvisning</memo:label>", "<memo:label>Pladsanvisning</memo:label>\n<memo:bogus/>", 1),
			code: CodeSchemaElementUnexpect, field: "/Message/MessageHeader/bogus", line: 7},
		{name: "value breaks a pattern facet", doc: strings.Replace(min12, "8C2EA15D-61FB-4BA9-9366-42F8B194C114", "not-a-uuid", 1),
			code: CodeSchemaValueInvalid, field: "/Message/MessageHeader/messageUUID", line: 5},
		{name: "value outside an enumeration", doc: strings.Replace(min12, "DIGITALPOST", "LETTER", 1),
			code: CodeSchemaValueInvalid, field: "/Message/MessageHeader/messageType", line: 4},
		{name: "value of the wrong datatype", doc: strings.Replace(min12, "2024-05-03T12:00:00Z", "yesterday", 1),
			code: CodeSchemaValueInvalid, field: "/Message/MessageBody/createdDateTime", line: 18},
		{name: "attribute not allowed", doc: strings.Replace(min12, `memoVersion="1.2"`, `memoVersion="1.2" foo="x"`, 1),
			code: CodeSchemaAttrUnexpected, field: "/Message/@foo", line: 2},
		{name: "required attribute missing", doc: strings.Replace(min11, `memoSchVersion="1.1.0"`, ``, 1),
			code: CodeSchemaAttrMissing, field: "/Message/@memoSchVersion", line: 14},
		{name: "attribute value invalid", doc: strings.Replace(min12, `<memo:label>Pladsanvisning</memo:label>`, `<memo:label xsi:nil="maybe">Pladsanvisning</memo:label>`, 1),
			code: CodeSchemaAttrInvalid, field: "/Message/MessageHeader/label/@nil", line: 6},
		{name: "not well-formed: tag mismatch", doc: strings.Replace(min12, "</memo:label>", "</memo:labl>", 1),
			code: CodeNotWellFormed, line: 6},
		{name: "not well-formed: undefined entity", doc: strings.Replace(min12, "Pladsanvisning<", "&foo;<", 1),
			code: CodeNotWellFormed, line: 6},
		{name: "not well-formed: undeclared prefix", doc: strings.Replace(min12, "<memo:label>Pladsanvisning</memo:label>", "<x:label>P</x:label>", 1),
			code: CodeNotWellFormed, line: 6},
		{name: "not well-formed: truncated", doc: min12[:len(min12)/2],
			code: CodeNotWellFormed, line: 12},
		{name: "wrong root element", doc: strings.Replace(min12, "memo:Message", "memo:Letter", 2),
			code: CodeRootInvalid, field: "/Letter", line: 2},
		{name: "wrong namespace", doc: strings.Replace(min12, "https://DigitalPost.dk/MeMo-1", "https://DigitalPost.dk/MeMo-2", 1),
			code: CodeRootInvalid, field: "/Message", line: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(t *testing.T, err error) {
				he := hubError(t, err, hub.Invalid)
				if len(he.Fields) == 0 {
					t.Fatalf("no field errors: %v", he)
				}
				f := he.Fields[0]
				if f.Code != tt.code || f.Field != tt.field || f.Line != tt.line || f.Resource != "memo" {
					t.Fatalf("got %s %q line %d (%s), want %s %q line %d", f.Code, f.Field, f.Line, f.Message, tt.code, tt.field, tt.line)
				}
				if f.Message == "" || strings.TrimSpace(f.Message) != f.Message {
					t.Fatalf("message %q is empty or untrimmed", f.Message)
				}
			}
			_, err := v.ValidateSchemaBytes([]byte(tt.doc))
			check(t, err)
			path := filepath.Join(t.TempDir(), "m.xml")
			if err := os.WriteFile(path, []byte(tt.doc), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = v.ValidateSchemaFile(path)
			check(t, err)
		})
	}
}

// All problems are reported, not just the first.
func TestSchemaReportsEveryProblem(t *testing.T) {
	v := newTestValidator(t)
	doc := readSample(t, "1.2", "MeMo_with_attachment.xml")
	doc = strings.Replace(doc, "DIGITALPOST", "LETTER", 1)
	doc = strings.Replace(doc, "<memo:language>da</memo:language>", "<memo:language>danish-language</memo:language>", -1)
	_, err := v.ValidateSchemaBytes([]byte(doc))
	he := hubError(t, err, hub.Invalid)
	if len(he.Fields) < 2 {
		t.Fatalf("want every problem, got %d: %+v", len(he.Fields), he.Fields)
	}
	seen := map[string]bool{}
	for _, f := range he.Fields {
		seen[f.Field] = true
	}
	if !seen["/Message/MessageHeader/messageType"] {
		t.Fatalf("messageType problem missing: %+v", he.Fields)
	}
}

// A generator repeating one mistake gets a capped list, not a megabyte of
// errors.
func TestSchemaErrorsAreCapped(t *testing.T) {
	v := newTestValidator(t)
	doc := readSample(t, "1.2", "MeMo_Minimum_Example.xml")
	doc = strings.Replace(doc, "<memo:label>Pladsanvisning</memo:label>",
		"<memo:label>Pladsanvisning</memo:label>"+strings.Repeat("<memo:bogus>x</memo:bogus>", 500), 1)
	_, err := v.ValidateSchemaBytes([]byte(doc))
	he := hubError(t, err, hub.Invalid)
	if len(he.Fields) > maxFieldErrors+1 {
		t.Fatalf("%d field errors, want at most %d", len(he.Fields), maxFieldErrors+1)
	}
}

// The compiled schema is shared; every validation has its own contexts and
// error collector, so concurrent calls see only their own errors.
func TestSchemaConcurrentUse(t *testing.T) {
	v := newTestValidator(t)
	good := []byte(readSample(t, "1.1", "MeMo_Full_Example.xml"))
	bad := []byte(strings.Replace(readSample(t, "1.2", "MeMo_Minimum_Example.xml"), "DIGITALPOST", "LETTER", 1))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if g%2 == 0 {
					if _, err := v.ValidateSchemaBytes(good); err != nil {
						errs <- err
						return
					}
					continue
				}
				_, err := v.ValidateSchemaBytes(bad)
				var he *hub.Error
				if !errors.As(err, &he) || len(he.Fields) != 1 || he.Fields[0].Field != "/Message/MessageHeader/messageType" {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestClosedValidatorIsUnavailable(t *testing.T) {
	v, err := NewValidator(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	_, err = v.ValidateSchemaBytes([]byte(readSample(t, "1.2", "MeMo_Minimum_Example.xml")))
	hubError(t, err, hub.Unavailable)
}

func TestAttributeInMessage(t *testing.T) {
	for msg, want := range map[string]string{
		"Element 'Message', attribute 'foo': The attribute 'foo' is not allowed.":                     "foo",
		"Element 'label', attribute '{http://www.w3.org/2001/XMLSchema-instance}nil': 'maybe' is not": "nil",
		"Element 'label': This element is not expected.":                                              "",
	} {
		got, _ := attributeInMessage(msg)
		if got != want {
			t.Errorf("attributeInMessage(%q) = %q, want %q", msg, got, want)
		}
	}
}
