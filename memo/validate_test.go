package memo

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

// testNow is the moment the business rules are judged against.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// validateAllWays runs doc through every entry point of the Validator and
// hands each result to check.
func validateAllWays(t *testing.T, v *Validator, doc []byte, check func(t *testing.T, m *Message, err error)) {
	t.Helper()
	t.Run("bytes", func(t *testing.T) {
		m, err := v.ValidateBytes(doc, testNow)
		check(t, m, err)
	})
	t.Run("file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "m.xml")
		if err := os.WriteFile(path, doc, 0o600); err != nil {
			t.Fatal(err)
		}
		m, err := v.ValidateFile(path, testNow)
		check(t, m, err)
	})
	t.Run("reader", func(t *testing.T) {
		m, err := v.ValidateReader(bytes.NewReader(doc), testNow)
		check(t, m, err)
	})
}

func wantFieldCode(code string, line int) func(t *testing.T, m *Message, err error) {
	return func(t *testing.T, m *Message, err error) {
		t.Helper()
		he := hubError(t, err, hub.Invalid)
		if m != nil {
			t.Fatal("a refused document returned a model")
		}
		if len(he.Fields) != 1 || he.Fields[0].Code != code || (line > 0 && he.Fields[0].Line != line) {
			t.Fatalf("got %+v, want one %s at line %d", he.Fields, code, line)
		}
	}
}

// The official samples carry placeholder data that the hub's business rules
// refuse (ids like "Sender ID", http entry points); what matters here is
// that each gets through the prescan, the XSD and the model parser, and
// that only business rules stand in the way.
func TestSamplesPassTheFullPipeline(t *testing.T) {
	v := newTestValidator(t)
	for _, version := range SupportedVersions {
		for _, p := range samplePaths(t, version) {
			t.Run(version+"/"+filepath.Base(p), func(t *testing.T) {
				m, err := v.ValidateFile(p, testNow)
				if err != nil {
					he := hubError(t, err, hub.Invalid)
					for _, f := range he.Fields {
						if strings.HasPrefix(f.Code, "schema.") || strings.HasPrefix(f.Code, "xml.") || strings.HasPrefix(f.Code, "memo.") {
							t.Fatalf("refused before the business rules: %+v", f)
						}
					}
					return
				}
				if m.Version != version || m.MessageHeader.MessageUUID == "" {
					t.Fatalf("model: version %q uuid %q", m.Version, m.MessageHeader.MessageUUID)
				}
			})
		}
	}
	m, err := v.ValidateFile(filepath.Join("testdata", "samples", "v1.2", "MeMo_Minimum_Example.xml"), testNow)
	if err != nil || m.MessageHeader.Label != "Pladsanvisning" {
		t.Fatalf("the minimum example is a clean MeMo: %v", err)
	}
}

func TestLegacyVersionRefused(t *testing.T) {
	v := newTestValidator(t)
	doc, err := os.ReadFile(filepath.Join("testdata", "samples", "legacy-v1.0", "MeMo_Scenarie1_Eksempel_v1.0.xml"))
	if err != nil {
		t.Fatal(err)
	}
	validateAllWays(t, v, doc, func(t *testing.T, m *Message, err error) {
		wantFieldCode(CodeVersionNotSupported, 13)(t, m, err)
		he := err.(*hub.Error)
		if msg := he.Fields[0].Message; !strings.Contains(msg, "1.1") || !strings.Contains(msg, "1.2") {
			t.Fatalf("message should name the supported versions: %q", msg)
		}
	})
}

// The spellings a sender may legitimately use are all accepted.
func TestAcceptedSpellings(t *testing.T) {
	v := newTestValidator(t)
	min12 := readSample(t, "1.2", "MeMo_Minimum_Example.xml")
	defaultNS := strings.NewReplacer("memo:", "", `xmlns:memo=`, `xmlns=`).Replace(min12)
	tests := map[string]string{
		"prefixed namespace": min12,
		"default namespace":  defaultNS,
		"utf-8 bom":          "\xEF\xBB\xBF" + min12,
		"crlf line ends":     strings.ReplaceAll(min12, "\n", "\r\n"),
		"bom, crlf, default namespace, no declaration": "\xEF\xBB\xBF" +
			strings.ReplaceAll(strings.TrimPrefix(defaultNS, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"), "\n", "\r\n"),
	}
	for name, doc := range tests {
		t.Run(name, func(t *testing.T) {
			validateAllWays(t, v, []byte(doc), func(t *testing.T, m *Message, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if m.Version != "1.2" || m.MessageHeader.MessageUUID != "8C2EA15D-61FB-4BA9-9366-42F8B194C114" {
					t.Fatalf("model: %q %q", m.Version, m.MessageHeader.MessageUUID)
				}
			})
		})
	}
}

// The size of a line in the XSD errors is exact past 65535 lines
// (XML_PARSE_BIG_LINES).
func TestLineNumbersPast65535(t *testing.T) {
	v := newTestValidator(t)
	doc := readSample(t, "1.2", "MeMo_Minimum_Example.xml")
	doc = strings.Replace(doc, "<memo:messageType>DIGITALPOST", strings.Repeat("\n", 70000)+"<memo:messageType>LETTER", 1)
	_, err := v.ValidateSchemaBytes([]byte(doc))
	he := hubError(t, err, hub.Invalid)
	if he.Fields[0].Line != 70004 {
		t.Fatalf("line %d, want 70004", he.Fields[0].Line)
	}
}

// listener counts the connections made to it: any is a network access the
// validator must never make.
func listener(t *testing.T) (addr string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), conns
}

func TestHostileDocumentsRefused(t *testing.T) {
	v := newTestValidator(t)
	addr, conns := listener(t)
	root := `<memo:Message xmlns:memo="https://DigitalPost.dk/MeMo-1" memoVersion="1.2">`
	var laughs strings.Builder
	laughs.WriteString("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&laughs, "<!ENTITY lol%d \"%s\">\n", i, strings.Repeat(fmt.Sprintf("&lol%d;", i-1), 10))
	}
	laughs.WriteString("]>\n" + root + "&lol9;</memo:Message>")
	tests := []struct {
		name, doc string
		line      int
	}{
		{"billion laughs", strings.ReplaceAll(laughs.String(), "&lol0;", "&lol;"), 2},
		{"xxe file", "<?xml version=\"1.0\"?>\n<!DOCTYPE m [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n" + root + "&xxe;</memo:Message>", 2},
		{"xxe http", "<!DOCTYPE m [<!ENTITY xxe SYSTEM \"http://" + addr + "/x\">]>" + root + "&xxe;</memo:Message>", 1},
		{"external subset", "<!DOCTYPE m SYSTEM \"http://" + addr + "/x.dtd\">" + root + "</memo:Message>", 1},
		{"parameter entity", "<!DOCTYPE m [<!ENTITY % p SYSTEM \"http://" + addr + "/p\"> %p;]>" + root + "</memo:Message>", 1},
		{"plain doctype", "<!DOCTYPE Message>\n" + root + "</memo:Message>", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			validateAllWays(t, v, []byte(tt.doc), wantFieldCode(CodeDoctypeNotAllowed, tt.line))
		})
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("the validator connected %d times to the test listener", n)
	}
}

// Defence in depth: even a DOCTYPE that got past the prescan makes libxml2
// neither load nor expand external entities, nor touch the network.
func TestLibxml2AloneLoadsNoExternalEntities(t *testing.T) {
	v := newTestValidator(t)
	addr, conns := listener(t)
	min12 := readSample(t, "1.2", "MeMo_Minimum_Example.xml")
	docs := []string{
		strings.Replace(strings.Replace(min12, "<memo:Message", "<!DOCTYPE memo:Message [<!ENTITY xxe SYSTEM \"http://"+addr+"/x\">]>\n<memo:Message", 1),
			"Pladsanvisning<", "&xxe;<", 1),
		strings.Replace(strings.Replace(min12, "<memo:Message", "<!DOCTYPE memo:Message [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n<memo:Message", 1),
			"Pladsanvisning<", "&xxe;<", 1),
		strings.Replace(min12, "<memo:Message", "<!DOCTYPE memo:Message SYSTEM \"http://"+addr+"/x.dtd\">\n<memo:Message", 1),
	}
	for i, doc := range docs {
		fields, err := v.schemas["1.2"].validateBytes([]byte(doc), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fields {
			if strings.Contains(f.Message, "root:") {
				t.Fatalf("doc %d: /etc/passwd leaked into an error: %q", i, f.Message)
			}
		}
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("libxml2 connected %d times to the test listener", n)
	}
}

// bigMessage writes a MeMo 1.2 whose one File carries contentBytes of
// base64 (in lines of 76), streaming, and returns its path.
func bigMessage(t testing.TB, dir string, contentBytes int64) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("big-%d.xml", contentBytes))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteBigMessage(f, contentBytes); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// WriteBigMessage is in the test build only: benchmarks and the bench
// script's helper share it.
func WriteBigMessage(w io.Writer, contentBytes int64) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	head, tail := bigMessageFrame()
	bw.WriteString(head)
	line := []byte(strings.Repeat("QUJD", 19) + "\n") // 76 base64 chars
	for n := int64(0); n < contentBytes; n += int64(len(line)) {
		bw.Write(line)
	}
	bw.WriteString(tail)
	return bw.Flush()
}

func bigMessageFrame() (head, tail string) {
	head = `<?xml version="1.0" encoding="UTF-8"?>
<memo:Message xmlns:memo="https://DigitalPost.dk/MeMo-1" memoVersion="1.2">
	<memo:MessageHeader>
		<memo:messageType>DIGITALPOST</memo:messageType>
		<memo:messageUUID>8c2ea15d-61fb-4ba9-9366-42f8b194c114</memo:messageUUID>
		<memo:label>Stor forsendelse</memo:label>
		<memo:Sender>
			<memo:senderID>12345678</memo:senderID>
			<memo:idType>CVR</memo:idType>
			<memo:label>Kommunen</memo:label>
		</memo:Sender>
		<memo:Recipient>
			<memo:recipientID>2211771212</memo:recipientID>
			<memo:idType>CPR</memo:idType>
		</memo:Recipient>
	</memo:MessageHeader>
	<memo:MessageBody>
		<memo:createdDateTime>2024-05-03T12:00:00Z</memo:createdDateTime>
		<memo:MainDocument>
			<memo:File>
				<memo:encodingFormat>text/plain</memo:encodingFormat>
				<memo:filename>stor.txt</memo:filename>
				<memo:language>da</memo:language>
				<memo:content>`
	tail = `</memo:content>
			</memo:File>
		</memo:MainDocument>
	</memo:MessageBody>
</memo:Message>
`
	return head, tail
}

func TestThirtyMegabyteAttachmentAccepted(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 30 MB file; skipped in -short mode")
	}
	v := newTestValidator(t)
	path := bigMessage(t, t.TempDir(), 30<<20)
	m, err := v.ValidateFile(path, testNow)
	if err != nil {
		t.Fatal(err)
	}
	files := m.Files()
	if len(files) != 1 {
		t.Fatalf("%d files", len(files))
	}
	sp, err := func() (Spooled, error) {
		f, err := os.Open(path)
		if err != nil {
			return Spooled{}, err
		}
		defer f.Close()
		_, sp, err := v.ValidateSpooled(f, testNow)
		return sp, err
	}()
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(sp.Path)
	st, _ := os.Stat(path)
	if sp.Size != st.Size() {
		t.Fatalf("spooled %d bytes of %d", sp.Size, st.Size())
	}
}

// endless yields a MeMo start followed by base64 forever, counting what was
// read from it and the peak heap in use while it was read.
type endless struct {
	head     []byte
	n        int64
	peakHeap uint64
	nextPeek int64
}

func (e *endless) Read(p []byte) (int, error) {
	if e.n >= e.nextPeek {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		e.peakHeap = max(e.peakHeap, ms.HeapInuse)
		e.nextPeek += 8 << 20
	}
	k := 0
	if e.n < int64(len(e.head)) {
		k = copy(p, e.head[e.n:])
	}
	for i := k; i < len(p); i++ {
		p[i] = 'A'
	}
	e.n += int64(len(p))
	return len(p), nil
}

func TestTwoHundredMegabyteBodyStopsAtTheLimit(t *testing.T) {
	v := newTestValidator(t)
	head, _ := bigMessageFrame()
	r := &endless{head: []byte(head)}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := v.ValidateReader(io.LimitReader(r, 200<<20), testNow)
	he := hubError(t, err, hub.TooLarge)
	if len(he.Fields) != 1 || he.Fields[0].Code != CodeTooLarge {
		t.Fatalf("fields %+v", he.Fields)
	}
	limit := DefaultConfig().MaxSize
	if r.n < limit || r.n > limit+spoolBuf {
		t.Fatalf("read %d bytes; the limit is %d and reading must stop right after it", r.n, limit)
	}
	if grew := int64(r.peakHeap) - int64(before.HeapInuse); grew > 16<<20 {
		t.Fatalf("heap in use grew by %d MB while spooling: the body was buffered", grew>>20)
	}
	left, _ := filepath.Glob(filepath.Join(v.spoolDir, "*"))
	if len(left) != 0 {
		t.Fatalf("spool files left behind: %v", left)
	}
}

func TestValidateSpooledKeepsTheFile(t *testing.T) {
	v := newTestValidator(t)
	body := readSample(t, "1.2", "MeMo_Minimum_Example.xml")
	m, sp, err := v.ValidateSpooled(strings.NewReader(body), testNow)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(sp.Path)
	if _, err := os.Stat(sp.Path); err != nil {
		t.Fatalf("spool file gone: %v", err)
	}
	rc, err := m.Files()[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, _ := io.ReadAll(rc); string(b) != "This is a test" {
		t.Fatalf("content %q", b)
	}

	_, sp, err = v.ValidateSpooled(strings.NewReader(strings.Replace(body, "DIGITALPOST", "X", 1)), testNow)
	hubError(t, err, hub.Invalid)
	if left, _ := filepath.Glob(filepath.Join(v.spoolDir, "*")); len(left) != 1 {
		t.Fatalf("a refused body left its spool file: %v", left)
	}
}

func TestFileSizeLimit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxSize = 1000
	v, err := NewValidator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	body := []byte(readSample(t, "1.1", "MeMo_Full_Example.xml"))
	path := filepath.Join(t.TempDir(), "m.xml")
	os.WriteFile(path, body, 0o600)
	_, err = v.ValidateFile(path, testNow)
	hubError(t, err, hub.TooLarge)
	_, err = v.ValidateBytes(body, testNow)
	hubError(t, err, hub.TooLarge)
}

var (
	fuzzOnce      sync.Once
	fuzzValidator *Validator
)

// FuzzValidate feeds arbitrary bytes through the whole pipeline: prescan,
// libxml2 and the model. It must never crash, hang or leak a libxml2
// failure as anything but a coded error.
func FuzzValidate(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "samples", "*", "*.xml"))
	if len(paths) < 9 {
		f.Fatalf("samples missing: %v", paths)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("<!DOCTYPE m [<!ENTITY a 'b'>]><m>&a;</m>"))
	f.Add([]byte("\xEF\xBB\xBF<Message xmlns=\"https://DigitalPost.dk/MeMo-1\" memoVersion=\"1.1\"/>"))
	fuzzOnce.Do(func() {
		var err error
		fuzzValidator, err = NewValidator(DefaultConfig())
		if err != nil {
			f.Fatal(err)
		}
	})
	v := fuzzValidator
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 64<<10 {
			return // keep each run cheap; size handling has its own tests
		}
		m, err := v.ValidateBytes(b, testNow)
		if err == nil {
			if m == nil {
				t.Fatal("no model and no error")
			}
			return
		}
		code := hub.ErrorCode(err)
		if code != hub.Invalid {
			t.Fatalf("code %s for bad input: %v", code, err)
		}
	})
}
