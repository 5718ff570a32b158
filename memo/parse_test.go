package memo

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/posthub/posthub/hub"
)

func TestParseSamplesAllEntryPointsAgree(t *testing.T) {
	for _, path := range memoSamples(t) {
		t.Run(path, func(t *testing.T) {
			doc, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			m1, err1 := ParseFile(path)
			m2, err2 := Parse(&trickle{b: doc})
			m3, err3 := ParseBytes(doc)
			if strings.Contains(path, "legacy") {
				for _, err := range []error{err1, err2, err3} {
					assertInvalid(t, err, CodeVersionNotSupported)
				}
				return
			}
			for _, err := range []error{err1, err2, err3} {
				if err != nil {
					t.Fatal(err)
				}
			}
			a, b, c := modelJSON(t, m1), modelJSON(t, m2), modelJSON(t, m3)
			if a != b || a != c {
				t.Fatalf("ParseFile, Parse and ParseBytes disagree:\n%s\n---\n%s\n---\n%s", a, b, c)
			}
			if m1.Size != int64(len(doc)) || m2.Size != int64(len(doc)) || m3.Size != int64(len(doc)) {
				t.Fatalf("sizes %d %d %d, want %d", m1.Size, m2.Size, m3.Size, len(doc))
			}
		})
	}
}

// trickle hands out a few bytes per Read, to exercise every buffer edge.
type trickle struct{ b []byte }

func (r *trickle) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 7)], r.b)
	r.b = r.b[n:]
	return n, nil
}

func assertInvalid(t *testing.T, err error, code string) {
	t.Helper()
	var he *hub.Error
	if !errors.As(err, &he) || he.Code != hub.Invalid {
		t.Fatalf("got %v, want an Invalid *hub.Error", err)
	}
	if code != "" && (len(he.Fields) == 0 || he.Fields[0].Code != code) {
		t.Fatalf("got fields %+v, want code %s", he.Fields, code)
	}
}

const minimal12 = `<memo:Message xmlns:memo="https://DigitalPost.dk/MeMo-1" memoVersion="1.2">
	<memo:MessageHeader>
		<memo:messageType>DIGITALPOST</memo:messageType>
		<memo:messageUUID>78212f5c-6d79-4012-8ed1-e2420243bd17</memo:messageUUID>
		<memo:label>Label</memo:label>
		<memo:Sender><memo:senderID>12345678</memo:senderID><memo:idType>CVR</memo:idType><memo:label>S</memo:label></memo:Sender>
		<memo:Recipient><memo:recipientID>2211771212</memo:recipientID><memo:idType>CPR</memo:idType></memo:Recipient>
		<memo:ContentData><grd:CPRdata xmlns:grd="https://data.gov.dk/model/core/"><grd:cprNumber>2211771212</grd:cprNumber></grd:CPRdata></memo:ContentData>
	</memo:MessageHeader>
	<memo:MessageBody>
		<memo:createdDateTime>2000-01-01T00:00:00Z</memo:createdDateTime>
		<memo:MainDocument>
			<memo:File>
				<memo:encodingFormat>text/plain</memo:encodingFormat>
				<memo:filename>a.txt</memo:filename>
				<memo:language>da</memo:language>
				<memo:content>CONTENT</memo:content>
			</memo:File>
		</memo:MainDocument>
	</memo:MessageBody>
</memo:Message>`

// variants of one document that must all give the same model.
func TestParseSpellings(t *testing.T) {
	base := strings.Replace(minimal12, "CONTENT", "SGVsbG8sIHdvcmxkIQ==", 1)
	want := mustParse(t, []byte(base))
	defaultNS := strings.NewReplacer("<memo:", "<", "</memo:", "</", `xmlns:memo=`, `xmlns=`).Replace(base)
	otherPrefix := strings.NewReplacer("memo:", "m:", "grd:", "g:", "xmlns:grd", "xmlns:g", "xmlns:memo", "xmlns:m").Replace(base)
	variants := map[string]string{
		"default namespace":           defaultNS,
		"other prefixes":              otherPrefix,
		"BOM":                         "\uFEFF" + base,
		"CRLF":                        strings.ReplaceAll(base, "\n", "\r\n"),
		"declaration and comments":    `<?xml version="1.0" encoding="utf-8"?>` + "\n<!-- hi -->\n" + base + "\n<!-- bye -->\n",
		"wrapped base64":              strings.Replace(base, "SGVsbG8sIHdvcmxkIQ==", "SGVs\r\n  bG8s\n\tIHdv cmxk\nIQ==\n", 1),
		"char refs in base64":         strings.Replace(base, "SGVsbG8sIHdvcmxkIQ==", "SGVs&#98;G8sIHdvcmxkIQ&#x3D;=", 1),
		"CDATA and comment in base64": strings.Replace(base, "SGVsbG8sIHdvcmxkIQ==", "SGVsbG8s<!-- c --><![CDATA[IHdvcmxk]]>IQ==", 1),
		"self-closing optional":       strings.Replace(base, "<memo:label>S</memo:label>", "<memo:label>S</memo:label>", 1),
		"single quotes":               strings.Replace(base, `memoVersion="1.2"`, `memoVersion='1.20'`, 1),
	}
	for name, doc := range variants {
		t.Run(name, func(t *testing.T) {
			got := mustParse(t, []byte(doc))
			if a, b := modelJSON(t, want), modelJSON(t, got); a != b {
				t.Fatalf("model differs:\n%s\n---\n%s", a, b)
			}
			f := got.Files()[0]
			if f.DecodedSize() != 13 || f.EncodedSize() != 20 {
				t.Fatalf("sizes: decoded %d encoded %d", f.DecodedSize(), f.EncodedSize())
			}
		})
	}
}

// mustParse parses doc in all three ways, checks they agree, and returns one.
func mustParse(t *testing.T, doc []byte) *Message {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.xml")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	m1, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Parse(&trickle{b: doc})
	if err != nil {
		t.Fatal(err)
	}
	m3, err := ParseBytes(doc)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := modelJSON(t, m1), modelJSON(t, m2), modelJSON(t, m3)
	if a != b || a != c {
		t.Fatalf("ParseFile, Parse and ParseBytes disagree:\n%s\n---\n%s\n---\n%s", a, b, c)
	}
	return m1
}

func TestParseTextDecoding(t *testing.T) {
	doc := strings.Replace(minimal12, "<memo:label>Label</memo:label>",
		"<memo:label>a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos; &#230;&#xF8; <![CDATA[<e>]]><!-- x -->f\r\ng\rh</memo:label>", 1)
	doc = strings.Replace(doc, "CONTENT", "QQ==", 1)
	m := mustParse(t, []byte(doc))
	if got, want := m.MessageHeader.Label, "a <b> & \"c\" 'd' æø <e>f\ng\nh"; got != want {
		t.Fatalf("label %q, want %q", got, want)
	}
}

func TestParseRefusesOddInput(t *testing.T) {
	ok := strings.Replace(minimal12, "CONTENT", "QQ==", 1)
	cases := map[string]struct{ doc, code string }{
		"doctype":            {"<!DOCTYPE x [<!ENTITY a 'b'>]>" + ok, CodeNotWellFormed},
		"unknown entity":     {strings.Replace(ok, "Label<", "&foo;<", 1), CodeNotWellFormed},
		"truncated":          {ok[:len(ok)/2], CodeNotWellFormed},
		"mismatched end tag": {strings.Replace(ok, "</memo:label>", "</memo:labe>", 1), CodeNotWellFormed},
		"unknown element":    {strings.Replace(ok, "<memo:label>Label</memo:label>", "<memo:label>Label</memo:label><memo:extra/>", 1), CodeSchemaElementUnexpect},
		"wrong root":         {strings.NewReplacer("memo:Message", "memo:Letter").Replace(ok), CodeRootInvalid},
		"wrong namespace":    {strings.Replace(ok, "https://DigitalPost.dk/MeMo-1", "urn:other", 1), CodeRootInvalid},
		"version 1.0":        {strings.Replace(ok, `"1.2"`, `"1.0"`, 1), CodeVersionNotSupported},
		"utf-16 declared":    {`<?xml version="1.0" encoding="UTF-16"?>` + ok, CodeNotWellFormed},
		"bad base64":         {strings.Replace(ok, "QQ==", "Q!Q=", 1), ""},
		"two roots":          {ok + ok, CodeNotWellFormed},
		"text in complex":    {strings.Replace(ok, "<memo:Sender>", "<memo:Sender>oops", 1), CodeNotWellFormed},
		"undeclared prefix":  {strings.Replace(ok, "<memo:label>Label", "<x:label>Label", 1), CodeNotWellFormed},
		"empty":              {"", CodeNotWellFormed},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.doc))
			assertInvalid(t, err, c.code)
			_, err = ParseBytes([]byte(c.doc))
			if c.code != "" || err != nil { // references are decoded lazily: bad base64 shows on Open
				assertInvalid(t, err, c.code)
			}
		})
	}
}

func TestFileOpenReportsBadBase64Lazily(t *testing.T) {
	m, err := ParseBytes([]byte(strings.Replace(minimal12, "CONTENT", "Q!Q=", 1)))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := m.Files()[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rc); err == nil {
		t.Fatal("bad base64 decoded without error")
	}
}

// writeLarge writes a MeMo with one attachment of size bytes to a file.
func writeLarge(t testing.TB, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "large.xml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	m := NewLetter(Letter{From: "12345678", To: "2211771212", Main: Attachment{Filename: "big.txt", Reader: io.LimitReader(&pattern{}, size), Size: size}})
	if _, err := m.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// pattern is an endless stream of the alphabet.
type pattern struct{ i int }

func (r *pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte('a' + r.i%26)
		r.i++
	}
	return len(p), nil
}

func TestParseFileLargeReferencesContent(t *testing.T) {
	const size = 6 << 20
	path := writeLarge(t, size)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Fatalf("ParseFile allocated %d bytes for a %d-byte attachment", alloc, size)
	}
	f := m.Files()[0]
	if f.DecodedSize() != size || f.EncodedSize() != int64(base64.StdEncoding.EncodedLen(size)) {
		t.Fatalf("sizes %d/%d", f.DecodedSize(), f.EncodedSize())
	}
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := io.ReadAll(io.LimitReader(&pattern{}, size))
	if !bytes.Equal(got, want) {
		t.Fatal("content differs")
	}
	if errs := m.Check(DefaultConfig(), fixedNow); len(errs) != 0 {
		t.Fatalf("%+v", errs)
	}
}

func BenchmarkParseFullExample(b *testing.B) {
	for _, v := range []string{"v1.1", "v1.2"} {
		path := "testdata/samples/" + v + "/MeMo_Full_Example.xml"
		doc, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(v+"/ParseBytes", func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := ParseBytes(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(v+"/Parse", func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := Parse(bytes.NewReader(doc)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(v+"/ParseFile+Check", func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			cfg := DefaultConfig()
			for i := 0; i < b.N; i++ {
				m, err := ParseFile(path)
				if err != nil {
					b.Fatal(err)
				}
				m.Check(cfg, fixedNow)
			}
		})
	}
}

// BenchmarkParseFileLarge parses a 99 MB MeMo (one 74 MB attachment).
func BenchmarkParseFileLarge(b *testing.B) {
	path := writeLarge(b, 74<<20)
	st, _ := os.Stat(path)
	b.SetBytes(st.Size())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m, err := ParseFile(path)
		if err != nil {
			b.Fatal(err)
		}
		m.Check(DefaultConfig(), fixedNow)
	}
}

// BenchmarkParseStreamLarge parses the same from a reader, decoding into memory.
func BenchmarkParseStreamLarge(b *testing.B) {
	path := writeLarge(b, 74<<20)
	st, _ := os.Stat(path)
	b.SetBytes(st.Size())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, _ := os.Open(path)
		if _, err := Parse(f); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

func FuzzParse(f *testing.F) {
	paths, _ := filepath.Glob("testdata/samples/*/*.xml")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(strings.Replace(minimal12, "CONTENT", "SGVs<!--x--><![CDATA[bG8=]]>", 1)))
	f.Fuzz(func(t *testing.T, doc []byte) {
		m1, err1 := Parse(bytes.NewReader(doc))
		m2, err2 := ParseBytes(doc)
		for _, err := range []error{err1, err2} {
			var he *hub.Error
			if err != nil && !errors.As(err, &he) {
				t.Fatalf("error is not a *hub.Error: %v", err)
			}
		}
		if err2 != nil && err1 == nil {
			t.Fatalf("ParseBytes refused what Parse accepted: %v", err2)
		}
		if err1 == nil {
			m1.Check(DefaultConfig(), fixedNow)
			_, _ = m1.WriteTo(io.Discard)
			_ = m2
		}
	})
}

// TestParseNamesWhereAnUnknownElementIs: the parser spells out the path of
// an element it does not know, in every kind of parent, though it spells
// out none while reading a letter it knows.
func TestParseNamesWhereAnUnknownElementIs(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("testdata", "samples", "v1.1", "MeMo_Full_Example.xml"))
	if err != nil {
		t.Fatal(err)
	}
	const extra = "<memo:extra/>"
	cases := []struct{ after, field string }{
		{"<grd:Address>", "/Message/MessageHeader/Sender/AttentionData/grd:Address/extra"},
		{"<grd:AddressPoint>", "/Message/MessageHeader/Sender/AttentionData/grd:Address/grd:AddressPoint/extra"},
		{"<grd:CPRdata>", "/Message/MessageHeader/ContentData/grd:CPRdata/extra"},
		{"<grd:CVRdata>", "/Message/MessageHeader/ContentData/grd:CVRdata/extra"},
		{"<memo:MainDocument>", "/Message/MessageBody/MainDocument/extra"},
		{"<memo:AdditionalDocument>", "/Message/MessageBody/AdditionalDocument/extra"},
		{"<memo:TechnicalDocument>", "/Message/MessageBody/TechnicalDocument/extra"},
		{"<memo:File>", "/Message/MessageBody/MainDocument/File/extra"},
		{"<memo:Action>", "/Message/MessageBody/MainDocument/Action/extra"},
		{"<memo:EntryPoint>", "/Message/MessageBody/MainDocument/Action/EntryPoint/extra"},
		{"<memo:Reservation>", "/Message/MessageBody/MainDocument/Action/Reservation/extra"},
	}
	for _, c := range cases {
		if !bytes.Contains(doc, []byte(c.after)) {
			t.Fatalf("%s is not in the example", c.after)
		}
		odd := bytes.Replace(doc, []byte(c.after), []byte(c.after+extra), 1)
		_, err := ParseBytes(odd)
		assertInvalid(t, err, CodeSchemaElementUnexpect)
		if f := err.(*hub.Error).Fields[0].Field; f != c.field {
			t.Errorf("after %s: field %q, want %q", c.after, f, c.field)
		}
	}
}

// TestParsedModelsShareNoMutableMemory: ParseBytes, Parse and
// ValidateBytes reuse their parsers through a pool, so a model's strings must be copies
// of the document's text that no later parse writes to, and its files'
// segments its own. Each goroutine parses its own letter over and over
// while the others parse theirs; it overwrites every other document after
// its parse (the model's text must not change) and keeps the rest: at the
// end, every model kept must read as the first did, files included.
func TestParsedModelsShareNoMutableMemory(t *testing.T) {
	v := newTestValidator(t)
	base, err := os.ReadFile(filepath.Join("testdata", "samples", "v1.1", "MeMo_Full_Example.xml"))
	if err != nil {
		t.Fatal(err)
	}
	base = bytes.ReplaceAll(base, []byte("<memo:url>http://"), []byte("<memo:url>https://"))
	// read is what a reader sees of m: its fields and its files' contents.
	read := func(m *Message) ([]byte, error) {
		out, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		for _, f := range m.Files() {
			rc, err := f.Open()
			if err != nil {
				return nil, err
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return nil, err
			}
			out = append(out, b...)
		}
		return out, nil
	}
	const workers = 4
	errs := make(chan error, workers)
	for w := range workers {
		// Each letter has text and content of its own (and lengths of its
		// own), so that a shared buffer would show.
		doc := bytes.ReplaceAll(base, []byte("Pladsanvisning"), []byte(strings.Repeat("Plads", w+1)))
		doc = bytes.Replace(doc, []byte("<memo:content>"), []byte("<memo:content>"+strings.Repeat("QUJD", w+1)), -1)
		go func() {
			errs <- func() error {
				var first []byte
				var kept []*Message
				for i := range 60 {
					mine := bytes.Clone(doc)
					var m *Message
					var err error
					switch i % 3 {
					case 0:
						m, err = v.ValidateBytes(mine, benchNow)
					case 1:
						m, err = ParseBytes(mine)
					default:
						m, err = Parse(bytes.NewReader(mine))
					}
					if err != nil {
						return err
					}
					got, err := read(m)
					if err != nil {
						return err
					}
					if first == nil {
						first = got
					}
					if !bytes.Equal(got, first) {
						return fmt.Errorf("worker %d, parse %d: the model differs from the first", w, i)
					}
					if i%4 != 0 {
						kept = append(kept, m)
						continue
					}
					fields, _ := json.Marshal(m)
					for k := range mine {
						mine[k] = 'x'
					}
					if after, _ := json.Marshal(m); !bytes.Equal(after, fields) {
						return fmt.Errorf("worker %d, parse %d: the model changed with its document:\n%s\n%s", w, i, fields, after)
					}
				}
				for i, m := range kept {
					if got, err := read(m); err != nil || !bytes.Equal(got, first) {
						return fmt.Errorf("worker %d: model %d kept changed (%v)", w, i, err)
					}
				}
				return nil
			}()
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// The encoding names the Go parser takes in an XML declaration: the
// upper case of the name must be UTF-8, UTF8 or US-ASCII.
func TestUTF8EncodingNames(t *testing.T) {
	for name, want := range map[string]bool{
		"UTF-8": true, "utf-8": true, "Utf8": true, "us-ascii": true, "US-ASCII": true,
		"\u017ftf-8": false, "u\u017f-a\u017fcii": true, // long s upper-cases to S
		"UTF-16": false, "ISO-8859-1": false, "": false, "UTF-8 ": false, "utf\u20138": false,
	} {
		if got := utf8Encoding([]byte(name)); got != want {
			t.Errorf("utf8Encoding(%q) = %v, want %v", name, got, want)
		}
		up := string(bytes.ToUpper([]byte(name)))
		if old := up == "UTF-8" || up == "UTF8" || up == "US-ASCII"; old != want {
			t.Errorf("%q: the table disagrees with bytes.ToUpper", name)
		}
	}
}

// TestParseKeepsEveryRepeatedElement: the repeated elements of the full
// example, counted in its text, are all in the model, each under its own
// parent and in document order.
func TestParseKeepsEveryRepeatedElement(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("testdata", "samples", "v1.1", "MeMo_Full_Example.xml"))
	if err != nil {
		t.Fatal(err)
	}
	count := func(name string) int { return bytes.Count(doc, []byte("<memo:"+name+">")) }
	for _, parse := range []func([]byte) (*Message, error){
		ParseBytes,
		func(b []byte) (*Message, error) { return Parse(bytes.NewReader(b)) },
	} {
		m, err := parse(doc)
		if err != nil {
			t.Fatal(err)
		}
		h, b := &m.MessageHeader, m.MessageBody
		var replyExtras, infos, files, actions int
		for _, r := range h.ReplyData {
			replyExtras += len(r.AdditionalReplyData)
		}
		for _, cp := range []*ContactPoint{h.Sender.ContactPoint, h.Recipient.ContactPoint} {
			if cp != nil {
				infos += len(cp.ContactInfo)
			}
		}
		var ids []string
		for _, d := range m.Documents() {
			files += len(d.Document.Files)
			actions += len(d.Document.Actions)
			ids = append(ids, d.Document.DocumentID)
		}
		got := map[string]int{
			"ReplyData": len(h.ReplyData), "AdditionalReplyData": replyExtras, "ContactInfo": infos,
			"AdditionalContentData": len(h.ContentData.AdditionalContentData),
			"AdditionalDocument":    len(b.AdditionalDocument), "TechnicalDocument": len(b.TechnicalDocument),
			"File": files, "Action": actions,
		}
		for name, n := range got {
			if want := count(name); n != want || n == 0 {
				t.Errorf("%d %s in the model, %d in the document", n, name, want)
			}
		}
		// Document order: the ids as they stand in the text.
		last := -1
		for _, id := range ids {
			i := bytes.Index(doc, []byte("DocumentID>"+id+"<"))
			if i <= last {
				t.Errorf("documents out of order: %v", ids)
				break
			}
			last = i
		}
	}
}

// ParseHeader answers the header Parse does, and reads no further than the
// window past it: a letter's files are neither read nor held.
func TestParseHeaderReadsTheHeaderOnly(t *testing.T) {
	for _, path := range []string{"testdata/samples/v1.2/MeMo_Full_Example.xml", "testdata/samples/v1.1/MeMo_Full_Example.xml"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		whole, err := Parse(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		h, err := ParseHeader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*h, whole.MessageHeader) {
			t.Errorf("%s: header %+v, want %+v", path, *h, whole.MessageHeader)
		}
	}
	big := NewLetter(Letter{From: "11111111", To: "0101701234", Notification: "Husk mødet", Main: PDF("brev.pdf", SamplePDF("Hej")),
		Attachments: []Attachment{PDF("bilag.pdf", bytes.Repeat([]byte("%PDF-1.4 bilag "), 1<<20))}})
	var buf bytes.Buffer
	if _, err := big.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	// The body is cut off: a whole parse fails, the header's does not.
	doc := buf.Bytes()[:buf.Len()-100]
	if _, err := Parse(bytes.NewReader(doc)); err == nil {
		t.Fatal("a cut-off letter parsed whole")
	}
	cr := &countWriter{w: io.Discard} // what the parse reads passes through it
	h, err := ParseHeader(io.TeeReader(bytes.NewReader(doc), cr))
	if err != nil {
		t.Fatal(err)
	}
	if h.Notification != "Husk mødet" || h.MessageUUID != big.MessageHeader.MessageUUID {
		t.Errorf("header %+v", *h)
	}
	if cr.n > 2*scanWindow || cr.n >= int64(len(doc))/4 {
		t.Errorf("read %d of the letter's %d bytes for its header", cr.n, len(doc))
	}
	// The pooled parser reads the next letter whole again.
	if _, err := Parse(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("whole parse after a header parse: %v", err)
	}
}
