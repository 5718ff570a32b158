package memo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

// The one-parse pipeline (ValidateBytes: libxml2's element records guide
// the model's reading) must accept and refuse exactly what the two-parse
// pipeline (validateBytesTwoParse: libxml2 validates, ParseBytes reads the
// bytes again) did, with the same codes, field paths, lines and messages,
// and build the same model. These tests run both over every sample and
// over thousands of deterministic mutants of them.

var mutants = flag.Int("mutants", 0, "how many mutants TestOneParseMatchesTwoParseOnMutants compares (0: 3,000, or 800 with -short or -race)")

// diffBases are the documents the mutants are made from: every sample,
// and the full examples with https entry points, which pass the rules too.
func diffBases(t testing.TB) map[string][]byte {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join("testdata", "samples", "*", "*.xml"))
	if len(paths) < 9 {
		t.Fatalf("samples missing: %v", paths)
	}
	docs := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		docs[p] = b
		if strings.HasSuffix(p, "MeMo_Full_Example.xml") {
			docs[p+"#https"] = bytes.ReplaceAll(b, []byte("<memo:url>http://"), []byte("<memo:url>https://"))
		}
	}
	docs["minimal12"] = []byte(minimal12)
	return docs
}

// diffNows are the moments the rules judge at: the samples' own time
// (their doNotDeliverUntilDate is in 2018) and the tests' usual one.
var diffNows = []time.Time{benchNow, testNow}

// outcome is what a pipeline made of one document.
type diffOutcome struct {
	m   *Message
	err error
}

func sameOutcome(a, b diffOutcome) string {
	if (a.err == nil) != (b.err == nil) {
		return fmt.Sprintf("verdicts differ: two-parse error %v, one-parse error %v", a.err, b.err)
	}
	if a.err != nil {
		if ca, cb := hub.ErrorCode(a.err), hub.ErrorCode(b.err); ca != cb {
			return fmt.Sprintf("codes differ: %s vs %s (%v / %v)", ca, cb, a.err, b.err)
		}
		var ha, hb *hub.Error
		if errors.As(a.err, &ha) != errors.As(b.err, &hb) {
			return fmt.Sprintf("error kinds differ: %v vs %v", a.err, b.err)
		}
		if ha != nil && (ha.Message != hb.Message || !reflect.DeepEqual(ha.Fields, hb.Fields)) {
			return fmt.Sprintf("errors differ:\ntwo-parse %q %+v\none-parse %q %+v", ha.Message, ha.Fields, hb.Message, hb.Fields)
		}
		return ""
	}
	if !reflect.DeepEqual(a.m, b.m) {
		return fmt.Sprintf("models differ:\ntwo-parse %+v\none-parse %+v", a.m, b.m)
	}
	return ""
}

// compareOne runs both pipelines on doc and returns a difference, or "",
// and the outcome's first code ("accepted" when accepted).
func compareOne(v *Validator, doc []byte, now time.Time) (string, string) {
	m1, e1 := v.validateBytesTwoParse(doc, now)
	m2, e2 := v.ValidateBytes(doc, now)
	diff := sameOutcome(diffOutcome{m1, e1}, diffOutcome{m2, e2})
	code := "accepted"
	var he *hub.Error
	if errors.As(e1, &he) && len(he.Fields) > 0 {
		code = he.Fields[0].Code
	} else if e1 != nil {
		code = string(hub.ErrorCode(e1))
	}
	return diff, code
}

func TestOneParseMatchesTwoParseOnSamples(t *testing.T) {
	v := newTestValidator(t)
	bases := diffBases(t)
	names := make([]string, 0, len(bases))
	for n := range bases {
		names = append(names, n)
	}
	sort.Strings(names)
	accepted := 0
	for _, n := range names {
		for _, now := range diffNows {
			diff, code := compareOne(v, bases[n], now)
			if diff != "" {
				t.Errorf("%s at %s: %s", n, now.Format(time.DateOnly), diff)
			}
			if code == "accepted" {
				accepted++
			}
		}
	}
	// The https full examples at benchNow, at least, are letters the hub takes.
	if accepted < 2 {
		t.Fatalf("only %d sample runs accepted: the comparison would not reach the model", accepted)
	}
}

func TestOneParseMatchesTwoParseOnMutants(t *testing.T) {
	n := 3000
	if testing.Short() || raceEnabled {
		n = 800 // the race detector slows the Go parser tenfold
	}
	if *mutants > 0 {
		n = *mutants
	}
	v := newTestValidator(t)
	bases := diffBases(t)
	names := make([]string, 0, len(bases))
	for k := range bases {
		names = append(names, k)
	}
	sort.Strings(names)
	// Most mutants start from a letter the hub takes, so that many of them
	// pass the schema and reach the model and the rules.
	type start struct {
		name string
		now  time.Time
	}
	var all, good []start
	for _, name := range names {
		for _, now := range diffNows {
			all = append(all, start{name, now})
			if _, err := v.validateBytesTwoParse(bases[name], now); err == nil {
				good = append(good, start{name, now})
			}
		}
	}
	if len(good) == 0 {
		t.Fatal("no sample is accepted")
	}
	rng := rand.New(rand.NewPCG(18, 2026))
	codes := map[string]int{}
	failures, modelled := 0, 0
	for i := range n {
		from := all[rng.IntN(len(all))]
		if rng.IntN(4) != 0 {
			from = good[rng.IntN(len(good))]
		}
		base, now := from.name, from.now
		doc := mutate(rng, bases[base])
		diff, code := compareOne(v, doc, now)
		codes[code]++
		if !strings.HasPrefix(code, "schema.") && !strings.HasPrefix(code, "xml.") && !strings.HasPrefix(code, "memo.") {
			modelled++ // accepted, or refused by a rule: judged on the model
		}
		if diff != "" {
			failures++
			if failures <= 5 {
				t.Errorf("mutant %d of %s: %s\n--- document ---\n%s", i, base, diff, clipDoc(doc))
			}
		}
	}
	if failures > 0 {
		t.Fatalf("%d of %d mutants differ", failures, n)
	}
	t.Logf("%d mutants, %d judged on the model: %v", n, modelled, codes)
	// A generator that only broke documents, or never did, would compare
	// little: both must be well represented.
	if modelled < n/5 || modelled > n*9/10 || codes["accepted"] < n/10 {
		t.Fatalf("mutants judged on the model: %d of %d, accepted %d; the mix is off: %v", modelled, n, codes["accepted"], codes)
	}
	if len(codes) < 8 {
		t.Fatalf("mutants reached only %d outcomes: %v", len(codes), codes)
	}
}

func clipDoc(b []byte) string {
	if len(b) > 4000 {
		return string(b[:4000]) + "…"
	}
	return string(b)
}

// FuzzOneParse holds the one-parse pipeline to the two-parse one on
// whatever the fuzzer makes of the samples.
func FuzzOneParse(f *testing.F) {
	for _, b := range diffBases(f) {
		f.Add(b)
	}
	fuzzOnce.Do(func() {
		var err error
		fuzzValidator, err = NewValidator(DefaultConfig())
		if err != nil {
			f.Fatal(err)
		}
	})
	v := fuzzValidator
	f.Fuzz(func(t *testing.T, doc []byte) {
		if len(doc) > 64<<10 {
			return
		}
		if diff, _ := compareOne(v, doc, benchNow); diff != "" {
			t.Fatal(diff)
		}
	})
}

// TestParseRecordedFallsBackOnBadRecords: records that do not fit the
// document (here: shifted offsets, cut short, or none) must not change the
// model: parseRecorded then reads the bytes itself.
func TestParseRecordedFallsBackOnBadRecords(t *testing.T) {
	v := newTestValidator(t)
	doc := diffBases(t)[filepath.Join("testdata", "samples", "v1.1", "MeMo_Full_Example.xml")+"#https"]
	var recs []byte
	if _, err := v.validateSchemaBytes(doc, func(r []byte) { recs = bytes.Clone(r) }); err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 {
		t.Fatal("libxml2 recorded nothing")
	}
	want, err := ParseBytes(doc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseRecorded(doc, recs)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("good records: %v, model equal %v", err, reflect.DeepEqual(got, want))
	}
	// The first element start record (after the namespace records): its
	// offset moved by one.
	shifted := bytes.Clone(recs)
	i := 0
	for shifted[i] == 3 {
		i += 5 + int(binary.LittleEndian.Uint32(shifted[i+1:]))
	}
	if shifted[i] != 1 {
		t.Fatalf("record %d at %d", shifted[i], i)
	}
	shifted[i+4]++
	for name, r := range map[string][]byte{"shifted": shifted, "cut": recs[:len(recs)/2], "none": nil, "garbage": bytes.Repeat([]byte{1}, 64)} {
		got, err := parseRecorded(doc, r)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s records: %v, model equal %v", name, err, reflect.DeepEqual(got, want))
		}
	}
}

// The mutator. Each mutant gets one to three edits, drawn from what a
// sender's generator gets wrong (dropped, repeated or misplaced elements,
// odd values) and from what XML allows that a hand-written reader may
// not (comments, CDATA and character references in odd places, CRLF,
// another prefix for the MeMo namespace, self-closed elements).

var tagRe = regexp.MustCompile(`<(/?)([A-Za-z_][\w.\-]*(?::[\w.\-]+)?)[^<>]*?(/?)>`)

type span struct {
	start, end   int // the element, start tag to end tag inclusive
	inner, close int // its content: doc[inner:close]
	leaf         bool
}

// elements finds the elements of doc by their tags (a best effort on a
// mutated document: unmatched tags are skipped).
func elements(doc []byte) []span {
	var out []span
	type open struct {
		name  string
		start int
		inner int
		kids  bool
	}
	var stack []open
	for _, m := range tagRe.FindAllSubmatchIndex(doc, -1) {
		name := string(doc[m[4]:m[5]])
		switch {
		case m[2] != m[3]: // end tag
			if len(stack) == 0 || stack[len(stack)-1].name != name {
				continue
			}
			o := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			out = append(out, span{start: o.start, end: m[1], inner: o.inner, close: m[0], leaf: !o.kids})
		case m[6] != m[7]: // <x/>
			if len(stack) > 0 {
				stack[len(stack)-1].kids = true
			}
			out = append(out, span{start: m[0], end: m[1], inner: m[1], close: m[1], leaf: true})
		default:
			if len(stack) > 0 {
				stack[len(stack)-1].kids = true
			}
			stack = append(stack, open{name: name, start: m[0], inner: m[1]})
		}
	}
	return out
}

var leafValues = []string{
	"", " ", "x", "true", "false", "1", "0", "yes", " true ",
	"2018-09-15", "2099-01-01", "2018-13-45", "2018-05-03T12:00:00Z", "2018-05-03T12:00:00+02:00",
	"8c2ea15d-61fb-4ba9-9366-42f8b194c114", "8C2EA15D-61FB-4BA9-9366-42F8B194C114", "not-a-uuid",
	"DIGITALPOST", "NEMSMS", "FYSISKPOST", "MYNDIGHEDSPOST", "CPR", "CVR", "cpr",
	"0101701234", "12345678", "1234567", "https://example.org/x", "http://example.org/x",
	"application/pdf", "text/plain", "image/x-evil", "JVBERi0x", "QUJD\nQUJD", "QUJD====", "!!!",
	"a&amp;b", "&#x41;&#66;C", "&#x0000000000000041;", "&#13;", "&lt;p&gt;", "<![CDATA[cdata]]>",
	"<![CDATA[QUJD]]>QUJD", "QU<!--c-->JD", "x<?pi y?>z", "a\r\nb", "æøå", "\u00a0x", "da", "en",
	strings.Repeat("a", 600), strings.Repeat("QUJD", 17000),
}

var snippets = []string{
	"<!-- c -->", "<?pi x?>", "&amp;", "&#65;", "<![CDATA[x]]>", "<![CDATA[ ]]>", "\r\n", " ", "\t",
	"<x/>", "&", "<", ">", "]]>", "\"", "'", "\xc3\xa6", "\xff", "&#0;", "&foo;", "</", "<memo:label>x</memo:label>",
}

func mutate(rng *rand.Rand, base []byte) []byte {
	doc := bytes.Clone(base)
	for range 1 + rng.IntN(3) {
		doc = mutateOnce(rng, doc)
	}
	return doc
}

func mutateOnce(rng *rand.Rand, doc []byte) []byte {
	els := elements(doc)
	pick := func(leaf bool) (span, bool) {
		var c []span
		for _, e := range els {
			if !leaf || e.leaf {
				c = append(c, e)
			}
		}
		if len(c) == 0 {
			return span{}, false
		}
		return c[rng.IntN(len(c))], true
	}
	splice := func(at, to int, with string) []byte {
		out := make([]byte, 0, len(doc)+len(with))
		out = append(out, doc[:at]...)
		out = append(out, with...)
		return append(out, doc[to:]...)
	}
	switch op := rng.IntN(16); op {
	case 0: // drop an element
		if e, ok := pick(false); ok {
			return splice(e.start, e.end, "")
		}
	case 1: // repeat an element
		if e, ok := pick(false); ok {
			return splice(e.end, e.end, string(doc[e.start:e.end]))
		}
	case 2: // move an element after another one
		if e, ok := pick(false); ok {
			if f, ok := pick(false); ok && (f.end <= e.start || f.end >= e.end) {
				el := string(doc[e.start:e.end])
				if f.end <= e.start {
					out := splice(e.start, e.end, "")
					return append(out[:f.end:f.end], append([]byte(el), out[f.end:]...)...)
				}
				out := splice(f.end, f.end, el)
				return append(out[:e.start:e.start], out[e.end:]...)
			}
		}
	case 3, 4, 5: // another value
		if e, ok := pick(true); ok && e.close >= e.inner {
			return splice(e.inner, e.close, leafValues[rng.IntN(len(leafValues))])
		}
	case 6: // a leaf's text in CDATA, or a character as a reference
		if e, ok := pick(true); ok && e.close > e.inner {
			text := string(doc[e.inner:e.close])
			if strings.ContainsAny(text, "<&") {
				break
			}
			if rng.IntN(2) == 0 {
				return splice(e.inner, e.close, "<![CDATA["+text+"]]>")
			}
			i := rng.IntN(len(text))
			return splice(e.inner+i, e.inner+i+1, fmt.Sprintf("&#x%X;", text[i]))
		}
	case 7: // self-close an element
		if e, ok := pick(true); ok && e.end > e.close {
			tag := string(doc[e.start:e.inner])
			return splice(e.start, e.end, strings.TrimSuffix(tag, ">")+"/>")
		}
	case 8: // something between tags
		if e, ok := pick(false); ok {
			at := e.inner
			if rng.IntN(2) == 0 {
				at = e.end
			}
			return splice(at, at, []string{"<!-- between -->", "<?pi between?>", "\n\n", "<![CDATA[ ]]>", "x", "&#32;"}[rng.IntN(6)])
		}
	case 9: // an attribute
		if e, ok := pick(false); ok {
			tag := doc[e.start:e.inner]
			at := e.start + bytes.LastIndexByte(tag, '>')
			if tag[len(tag)-2] == '/' {
				at--
			}
			attrs := []string{` foo="bar"`, ` xml:lang="da"`, ` memo:x="1"`, "\n\t", ` a="&gt;"`,
				` xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:nil="true"`,
				` xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="xs:string"`,
				` xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="https://DigitalPost.dk/MeMo-1 other.xsd"`,
				` xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="http://example.org/x.xsd"`}
			return splice(at, at, attrs[rng.IntN(len(attrs))])
		}
	case 10: // CRLF line ends
		return bytes.ReplaceAll(doc, []byte("\n"), []byte("\r\n"))
	case 11: // another prefix, or the default namespace, for MeMo
		if rng.IntN(2) == 0 {
			return bytes.ReplaceAll(doc, []byte("memo:"), []byte("m:"))
		}
		out := bytes.ReplaceAll(doc, []byte("xmlns:memo="), []byte("xmlns="))
		out = bytes.ReplaceAll(out, []byte("<memo:"), []byte("<"))
		return bytes.ReplaceAll(out, []byte("</memo:"), []byte("</"))
	case 12: // a byte replaced
		if len(doc) > 0 {
			i := rng.IntN(len(doc))
			s := snippets[rng.IntN(len(snippets))]
			return splice(i, i+1, s[:1])
		}
	case 13: // bytes deleted
		if len(doc) > 0 {
			i := rng.IntN(len(doc))
			return splice(i, min(len(doc), i+1+rng.IntN(8)), "")
		}
	case 14: // a snippet inserted anywhere
		i := rng.IntN(len(doc) + 1)
		return splice(i, i, snippets[rng.IntN(len(snippets))])
	case 15: // whitespace inside a tag
		if e, ok := pick(false); ok {
			tag := doc[e.start:e.inner]
			if i := bytes.IndexByte(tag, ' '); i > 0 {
				return splice(e.start+i, e.start+i+1, "\n  ")
			}
			return splice(e.inner-1, e.inner-1, "\n")
		}
	}
	return doc
}

// TestStreamValidationTakesValidLetters: the one-pass validation must
// take the valid samples itself (the tree's validation is only for
// refusals), and the model must be read along its records, or
// ValidateBytes would quietly pay for two parses.
func TestStreamValidationTakesValidLetters(t *testing.T) {
	v := newTestValidator(t)
	for name, doc := range diffBases(t) {
		version, err := v.ValidateSchemaBytes(doc)
		if inStream := v.schemas[version] != nil && v.schemas[version].validatesInStream(doc); inStream != (err == nil) {
			t.Errorf("%s: schema error %v, but one-pass validation says valid=%v", name, err, inStream)
		}
	}
	// And the records must carry the model of every valid sample without
	// the fallback to ParseBytes, or the one parse would quietly be two.
	for name, doc := range diffBases(t) {
		var recs []byte
		if _, err := v.validateSchemaBytes(doc, func(r []byte) { recs = bytes.Clone(r) }); err != nil {
			continue
		}
		if _, err := followRecords(doc, recs); err != nil {
			t.Errorf("%s: the records do not carry the model: %v", name, err)
		}
	}
	broken := strings.Replace(minimal12, "<memo:messageType>", "<memo:messageTyp>", 1)
	if v.schemas["1.2"].validatesInStream([]byte(broken)) {
		t.Error("one-pass validation takes a misnamed element")
	}
}
