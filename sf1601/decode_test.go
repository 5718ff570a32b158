package sf1601_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/sf1601"
	"github.com/posthub/posthub/sf1601/sf1601test"
)

// letter writes a MeMo with memo's writer; edit adjusts the model first.
func letter(t testing.TB, l memo.Letter, edit func(*memo.Message)) []byte {
	t.Helper()
	if l.From == "" {
		l.From = "11111111"
	}
	if l.To == "" {
		l.To = "0101701234"
	}
	if l.Main.Filename == "" && l.Type != memo.TypeNemSMS {
		l.Main = memo.PDF("brev.pdf", memo.SamplePDF("Hej"))
	}
	m := memo.NewLetter(l)
	if edit != nil {
		edit(m)
	}
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func validator(t testing.TB) *memo.Validator {
	t.Helper()
	v, err := memo.NewValidator(memo.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// decode runs the Decoder over r and returns the Message it wrote out.
func decode(r io.Reader, lim sf1601.Limits) ([]byte, sf1601.Request, error) {
	d := sf1601.NewDecoder(r, lim)
	var msg bytes.Buffer
	if err := d.Message(&msg); err != nil {
		return msg.Bytes(), sf1601.Request{}, err
	}
	req, err := d.Finish()
	return msg.Bytes(), req, err
}

func fieldCode(err error) string {
	var he *hub.Error
	if errors.As(err, &he) && len(he.Fields) > 0 {
		return he.Fields[0].Code
	}
	return string(hub.ErrorCode(err))
}

var fjernprintPDF = memo.SamplePDF("Fysisk brev")

func forsendelse() []byte {
	return sf1601test.ForsendelseI("posthub-1", "0202702345", "Fritaget Borger", "Eksempelvej", "1", "1234", fjernprintPDF)
}

// TestClientFormsDecodeToTheMeMoAsSentAlone: whatever form a client writes
// (python's hoisted namespaces and utf8 declaration, PHP's CDATA and own
// declarations), the Message the Decoder writes out validates, and reads,
// exactly as the MeMo sent alone.
func TestClientFormsDecodeToTheMeMoAsSentAlone(t *testing.T) {
	v := validator(t)
	printSchema, err := sf1601.NewPrintSchema()
	if err != nil {
		t.Fatal(err)
	}
	defer printSchema.Close()
	now := time.Now()
	letters := map[string][]byte{
		"MeMo 1.2 letter": letter(t, memo.Letter{Label: "Æblegrød & <varsel>"}, nil),
		"MeMo 1.1 letter": letter(t, memo.Letter{Version: memo.Version11}, nil),
		"KLE and an address (more namespaces)": letter(t, memo.Letter{}, func(m *memo.Message) {
			m.MessageHeader.ContentData = &memo.ContentData{KLEdata: &memo.KLEdata{SubjectKey: "17.01.00", Version: "KL", Label: "Skole"},
				Address: &memo.Address{AddressLabel: "Eksempelvej", HouseNumber: "1", ZipCode: "1234", City: "Demoby", Country: "DK"}}
		}),
		"NemSMS": letter(t, memo.Letter{Type: memo.TypeNemSMS, Notification: "Du har post"}, nil),
	}
	for name, alone := range letters {
		want, err := v.ValidateBytes(alone, now)
		if err != nil {
			t.Fatalf("%s alone: %v", name, err)
		}
		forms := map[string]func() ([]byte, error){
			"python": func() ([]byte, error) { return sf1601test.Python(alone, "Digital Post") },
			"php":    func() ([]byte, error) { return sf1601test.PHP(alone, "Digital Post", forsendelse()) },
		}
		for form, build := range forms {
			body, err := build()
			if err != nil {
				t.Fatal(err)
			}
			msg, req, err := decode(bytes.NewReader(body), sf1601.Limits{})
			if err != nil {
				t.Fatalf("%s, %s: %v\n%s", name, form, err, body)
			}
			got, err := v.ValidateBytes(msg, now)
			if err != nil {
				t.Fatalf("%s, %s: the Message does not validate alone: %v\n%s", name, form, err, msg)
			}
			if got.MessageHeader.MessageUUID != want.MessageHeader.MessageUUID || got.MessageHeader.Label != want.MessageHeader.Label ||
				got.Version != want.Version || (got.MessageHeader.ContentData == nil) != (want.MessageHeader.ContentData == nil) {
				t.Errorf("%s, %s: read as %+v, alone as %+v", name, form, got.MessageHeader, want.MessageHeader)
			}
			if req.Mode != hub.ModeDigitalOnly || req.Choice != "Digital Post" || req.MessageLine != 2 {
				t.Errorf("%s, %s: request %+v", name, form, req)
			}
			if (req.Print != nil) != (form == "php") {
				t.Errorf("%s, %s: print part %q", name, form, req.Print)
			}
			if err := printSchema.Check(req); err != nil {
				t.Errorf("%s, %s: the fjernprint part: %v\n%s", name, form, err, req.Print)
			}
		}
	}
}

// TestPythonFormCarriesTheHoistedDeclarations pins the rewrite: the
// declarations of <kombi_request> go into the Message's start tag, right
// after its name; every other byte is the sender's.
func TestPythonFormCarriesTheHoistedDeclarations(t *testing.T) {
	body := "<?xml version='1.0' encoding='utf8'?>\n" +
		`<kombi_request xmlns:grd="https://data.gov.dk/model/core/" xmlns:memo="https://DigitalPost.dk/MeMo-1">` +
		`<KombiValgKode>Automatisk Valg</KombiValgKode>` +
		`<memo:Message memoVersion="1.2" xmlns:grd='urn:own'><memo:MessageHeader/></memo:Message></kombi_request>`
	msg, req, err := decode(strings.NewReader(body), sf1601.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := `<memo:Message xmlns:memo="https://DigitalPost.dk/MeMo-1" memoVersion="1.2" xmlns:grd='urn:own'><memo:MessageHeader/></memo:Message>`
	if string(msg) != want {
		t.Fatalf("Message\n got %s\nwant %s", msg, want)
	}
	if req.Mode != hub.ModeAutomatic {
		t.Errorf("mode %s", req.Mode)
	}
}

// TestChoicesMapToModes: the four KombiValgKode values, as sent in any
// letter case or with entities, and nothing else.
func TestChoicesMapToModes(t *testing.T) {
	for in, want := range map[string]hub.Mode{"Automatisk Valg": hub.ModeAutomatic, "Digital Post": hub.ModeDigitalOnly,
		"Fysisk Post": hub.ModePrintOnly, "NemSMS": hub.ModeNemSMS, " nemsms ": hub.ModeNemSMS, "digital post": hub.ModeDigitalOnly} {
		if got, err := sf1601.ParseChoice(in); err != nil || got != want {
			t.Errorf("ParseChoice(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "DIGITAL", "PRINT", "Digital  Post", "Brevdue"} {
		if _, err := sf1601.ParseChoice(in); fieldCode(err) != sf1601.CodeChoiceUnknown {
			t.Errorf("ParseChoice(%q): %v", in, err)
		}
	}
	msg := `<memo:Message xmlns:memo="https://DigitalPost.dk/MeMo-1"/>`
	for raw, want := range map[string]hub.Mode{"Fysisk&#32;Post": hub.ModePrintOnly, "<![CDATA[NemSMS]]>": hub.ModeNemSMS,
		"Digital <!-- ja -->Post": hub.ModeDigitalOnly} {
		_, req, err := decode(strings.NewReader("<kombi_request><KombiValgKode>"+raw+"</KombiValgKode>"+msg+"</kombi_request>"), sf1601.Limits{})
		if err != nil || req.Mode != want {
			t.Errorf("KombiValgKode %q: %s %v", raw, req.Mode, err)
		}
	}
}

// kombiCase is one malformed request and the code it must get.
type kombiCase struct {
	name, body, code string
	status           hub.Code
}

const okMessage = `<memo:Message xmlns:memo="https://DigitalPost.dk/MeMo-1" memoVersion="1.2"></memo:Message>`

// MalformedCases is the table of refused envelopes the package promises
// codes for (the e2e test sends the same over HTTP).
var malformedCases = []kombiCase{
	{"not XML at all", `{"KombiValgKode": "Digital Post"}`, memo.CodeNotWellFormed, hub.Invalid},
	{"empty body", ``, memo.CodeNotWellFormed, hub.Invalid},
	{"DOCTYPE before the root", `<?xml version="1.0"?><!DOCTYPE kombi_request [<!ENTITY x "y">]><kombi_request/>`, memo.CodeDoctypeNotAllowed, hub.Invalid},
	{"DOCTYPE inside the Message", `<kombi_request><KombiValgKode>NemSMS</KombiValgKode><memo:Message xmlns:memo="https://DigitalPost.dk/MeMo-1"><!DOCTYPE x></memo:Message></kombi_request>`, memo.CodeDoctypeNotAllowed, hub.Invalid},
	{"encoding other than UTF-8", `<?xml version="1.0" encoding="ISO-8859-1"?><kombi_request/>`, memo.CodeEncodingNotSupported, hub.Invalid},
	{"UTF-16", "\xff\xfe<\x00k\x00", memo.CodeEncodingNotSupported, hub.Invalid},
	{"wrong root", `<request><KombiValgKode>NemSMS</KombiValgKode></request>`, sf1601.CodeRootInvalid, hub.Invalid},
	{"root in a namespace", `<kombi_request xmlns="urn:x"/>`, sf1601.CodeRootInvalid, hub.Invalid},
	{"a MeMo alone", okMessage, sf1601.CodeRootInvalid, hub.Invalid},
	{"no Message", `<kombi_request><KombiValgKode>NemSMS</KombiValgKode></kombi_request>`, sf1601.CodeMessageMissing, hub.Invalid},
	{"empty kombi_request", `<kombi_request/>`, sf1601.CodeMessageMissing, hub.Invalid},
	{"two Messages", `<kombi_request><KombiValgKode>NemSMS</KombiValgKode>` + okMessage + okMessage + `</kombi_request>`, sf1601.CodeMessageDuplicate, hub.Invalid},
	{"Message in no namespace", `<kombi_request><KombiValgKode>NemSMS</KombiValgKode><Message memoVersion="1.2"/></kombi_request>`, memo.CodeRootInvalid, hub.Invalid},
	{"Message with an undeclared prefix", `<kombi_request><KombiValgKode>NemSMS</KombiValgKode><memo:Message/></kombi_request>`, memo.CodeNotWellFormed, hub.Invalid},
	{"no KombiValgKode", `<kombi_request>` + okMessage + `</kombi_request>`, sf1601.CodeChoiceMissing, hub.Invalid},
	{"two KombiValgKode", `<kombi_request><KombiValgKode>NemSMS</KombiValgKode><KombiValgKode>NemSMS</KombiValgKode>` + okMessage + `</kombi_request>`, sf1601.CodeChoiceDuplicate, hub.Invalid},
	{"unknown KombiValgKode", `<kombi_request><KombiValgKode>Brevdue</KombiValgKode>` + okMessage + `</kombi_request>`, sf1601.CodeChoiceUnknown, hub.Invalid},
	{"empty KombiValgKode", `<kombi_request><KombiValgKode/>` + okMessage + `</kombi_request>`, sf1601.CodeChoiceUnknown, hub.Invalid},
	{"KombiValgKode with an element", `<kombi_request><KombiValgKode><b>NemSMS</b></KombiValgKode>` + okMessage + `</kombi_request>`, sf1601.CodeChoiceUnknown, hub.Invalid},
	{"unknown element", `<kombi_request><KombiValgKode>NemSMS</KombiValgKode><Prioritet>D</Prioritet>` + okMessage + `</kombi_request>`, sf1601.CodeElementUnexpected, hub.Invalid},
	{"ForsendelseISamling in no namespace", `<kombi_request><KombiValgKode>NemSMS</KombiValgKode>` + okMessage + `<ForsendelseISamling/></kombi_request>`, sf1601.CodeElementUnexpected, hub.Invalid},
	{"two ForsendelseISamling", `<kombi_request><KombiValgKode>Fysisk Post</KombiValgKode>` + okMessage +
		`<ForsendelseISamling xmlns="urn:oio:fjernprint:1.0.0"/><ForsendelseISamling xmlns="urn:oio:fjernprint:1.0.0"/></kombi_request>`, sf1601.CodePrintDuplicate, hub.Invalid},
	{"text in the wrapper", `<kombi_request>hej<KombiValgKode>NemSMS</KombiValgKode>` + okMessage + `</kombi_request>`, sf1601.CodeTextUnexpected, hub.Invalid},
	{"truncated inside the Message", `<kombi_request><KombiValgKode>NemSMS</KombiValgKode><memo:Message xmlns:memo="https://DigitalPost.dk/MeMo-1"><memo:MessageHeader>`, memo.CodeNotWellFormed, hub.Invalid},
	{"mismatched end tag in the Message", `<kombi_request><KombiValgKode>NemSMS</KombiValgKode><memo:Message xmlns:memo="https://DigitalPost.dk/MeMo-1"><a></b></memo:Message></kombi_request>`, memo.CodeNotWellFormed, hub.Invalid},
	// The prolog's checks hold anywhere: an XML declaration (with another
	// encoding) after the start, or markup that is not well-formed, used
	// to pass in the wrapper where the MeMo alone was refused.
	{"an XML declaration after the start", "\n<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><kombi_request><KombiValgKode>NemSMS</KombiValgKode>" + okMessage + `</kombi_request>`, memo.CodeNotWellFormed, hub.Invalid},
	{"an XML declaration in the wrapper", `<kombi_request><?XML version="1.0"?><KombiValgKode>NemSMS</KombiValgKode>` + okMessage + `</kombi_request>`, memo.CodeNotWellFormed, hub.Invalid},
	{"a processing instruction without a target", `<kombi_request><? x?><KombiValgKode>NemSMS</KombiValgKode>` + okMessage + `</kombi_request>`, memo.CodeNotWellFormed, hub.Invalid},
	{"'--' inside a comment", `<kombi_request><!-- a -- b --><KombiValgKode>NemSMS</KombiValgKode>` + okMessage + `</kombi_request>`, memo.CodeNotWellFormed, hub.Invalid},
	{"a comment ending in '--->'", `<kombi_request><!-- a ---><KombiValgKode>NemSMS</KombiValgKode>` + okMessage + `</kombi_request>`, memo.CodeNotWellFormed, hub.Invalid},
	{"content after the root", `<kombi_request><KombiValgKode>NemSMS</KombiValgKode>` + okMessage + `</kombi_request><x/>`, memo.CodeNotWellFormed, hub.Invalid},
	{"root not closed", `<kombi_request><KombiValgKode>NemSMS</KombiValgKode>` + okMessage, memo.CodeNotWellFormed, hub.Invalid},
	{"a megabyte of whitespace around the parts", `<kombi_request>` + strings.Repeat(" ", 1<<20) + `</kombi_request>`, sf1601.CodeTooLarge, hub.TooLarge},
	{"nesting deeper than the bound", `<kombi_request><KombiValgKode>NemSMS</KombiValgKode><memo:Message xmlns:memo="https://DigitalPost.dk/MeMo-1">` +
		strings.Repeat("<a>", 300) + strings.Repeat("</a>", 300) + `</memo:Message></kombi_request>`, sf1601.CodeTooDeep, hub.Invalid},
}

// TestMalformedRequestsGetTheirCodes decodes every malformed case, whole
// and one byte at a time.
func TestMalformedRequestsGetTheirCodes(t *testing.T) {
	for _, c := range malformedCases {
		for _, r := range []io.Reader{strings.NewReader(c.body), iotest.OneByteReader(strings.NewReader(c.body))} {
			_, _, err := decode(r, sf1601.Limits{})
			if fieldCode(err) != c.code || hub.ErrorCode(err) != c.status {
				t.Errorf("%s: %v; want %s (%s)", c.name, err, c.code, c.status)
			}
		}
	}
}

// TestSizeBounds: a Message, a fjernprint part and the rest each have
// their bound, found the moment it is crossed.
func TestSizeBounds(t *testing.T) {
	alone := letter(t, memo.Letter{Main: memo.PDF("stor.pdf", bytes.Repeat([]byte("%PDF"), 50_000))}, nil)
	body, _ := sf1601test.PHP(alone, "Fysisk Post", forsendelse())
	if _, _, err := decode(bytes.NewReader(body), sf1601.Limits{MaxMemo: int64(len(body))}); err != nil {
		t.Fatalf("within the bounds: %v", err)
	}
	lim := sf1601.Limits{MaxMemo: 100_000}
	if _, _, err := decode(bytes.NewReader(body), lim); fieldCode(err) != memo.CodeTooLarge || hub.ErrorCode(err) != hub.TooLarge {
		t.Errorf("Message over MaxMemo: %v", err)
	}
	lim = sf1601.Limits{MaxPrint: 1000}
	if _, _, err := decode(bytes.NewReader(body), lim); fieldCode(err) != sf1601.CodePrintTooLarge || hub.ErrorCode(err) != hub.TooLarge {
		t.Errorf("print part over MaxPrint: %v", err)
	}
	if got := (sf1601.Limits{MaxMemo: 10, MaxPrint: 20, MaxEnvelope: 30}).MaxBody(); got != 60 {
		t.Errorf("MaxBody %d", got)
	}
}

// TestPrintSlotsBoundTheHeldPrintParts: a fjernprint part is held in
// memory only with a slot of Limits.PrintSlots; with none free the request
// is unavailable (to be retried), and a Release frees the slot.
func TestPrintSlotsBoundTheHeldPrintParts(t *testing.T) {
	body, _ := sf1601test.PHP(letter(t, memo.Letter{}, nil), "Fysisk Post", forsendelse())
	lim := sf1601.Limits{PrintSlots: make(chan struct{}, 1)}
	first := sf1601.NewDecoder(bytes.NewReader(body), lim)
	if err := first.Message(io.Discard); err != nil {
		t.Fatal(err)
	}
	if req, err := first.Finish(); err != nil || req.Print == nil {
		t.Fatalf("first request: %v (print part %d bytes)", err, len(req.Print))
	}
	if _, _, err := decode(bytes.NewReader(body), lim); hub.ErrorCode(err) != hub.Unavailable || hub.RetryAfterSeconds(err) < 1 {
		t.Fatalf("second request while the first holds the only slot: %v, want unavailable with a Retry-After", err)
	}
	first.Release()
	first.Release() // a second Release is harmless
	if _, _, err := decode(bytes.NewReader(body), lim); err != nil {
		t.Fatalf("after Release: %v", err)
	}
	if len(lim.PrintSlots) != 1 {
		t.Fatalf("%d slots held after one decode that was not released, want 1", len(lim.PrintSlots))
	}
}

// TestStreamingIsChunkingBlind: the Message written out is the same
// however the body arrives, and a large one passes through a pipe without
// the Decoder holding it.
func TestStreamingIsChunkingBlind(t *testing.T) {
	small := letter(t, memo.Letter{Label: "Små & store"}, nil)
	big := letter(t, memo.Letter{Main: memo.PDF("stor.pdf", bytes.Repeat([]byte("%PDF-1.4 "), 150_000))}, nil)
	for name, alone := range map[string][]byte{"small": small, "big": big} {
		for form, body := range map[string][]byte{"python": must(sf1601test.Python(alone, "NemSMS")), "php": must(sf1601test.PHP(alone, "NemSMS", forsendelse()))} {
			want, wreq, err := decode(bytes.NewReader(body), sf1601.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			readers := map[string]io.Reader{"half": iotest.HalfReader(bytes.NewReader(body)), "data+err": iotest.DataErrReader(bytes.NewReader(body))}
			if name == "small" {
				readers["one byte"] = iotest.OneByteReader(bytes.NewReader(body))
			}
			for rn, r := range readers {
				got, req, err := decode(r, sf1601.Limits{})
				if err != nil || !bytes.Equal(got, want) || !bytes.Equal(req.Print, wreq.Print) || req.MessageLine != wreq.MessageLine {
					t.Errorf("%s %s via %s: %v, %d bytes (want %d)", name, form, rn, err, len(got), len(want))
				}
			}
			// Through a pipe read in small gulps, as a spool reads it.
			pr, pw := io.Pipe()
			d := sf1601.NewDecoder(bytes.NewReader(body), sf1601.Limits{})
			done := make(chan error, 1)
			go func() { err := d.Message(pw); pw.CloseWithError(err); done <- err }()
			var got bytes.Buffer
			if _, err := io.CopyBuffer(&got, pr, make([]byte, 4096)); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil || !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("%s %s through a pipe: %v", name, form, err)
			}
			if _, err := d.Finish(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestMeMoErrorsPointIntoTheRequest: a MeMo rule broken inside a
// kombi_request is reported with the MeMo's code and path, at its line in
// the request.
func TestMeMoErrorsPointIntoTheRequest(t *testing.T) {
	v := validator(t)
	alone := letter(t, memo.Letter{}, nil)
	bad := bytes.Replace(alone, []byte("<memo:recipientID>0101701234<"), []byte("<memo:recipientID>12<"), 1)
	_, aloneErr := v.ValidateBytes(bad, time.Now())
	var ae *hub.Error
	if !errors.As(aloneErr, &ae) || len(ae.Fields) == 0 {
		t.Fatalf("alone: %v", aloneErr)
	}
	body, _ := sf1601test.PHP(bad, "Digital Post", nil)
	msg, req, err := decode(bytes.NewReader(body), sf1601.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, verr := v.ValidateBytes(msg, time.Now())
	var he *hub.Error
	if !errors.As(req.InRequest(verr), &he) || len(he.Fields) != len(ae.Fields) {
		t.Fatalf("in the request: %v", verr)
	}
	f := he.Fields[0]
	lines := strings.Split(string(body), "\n")
	if f.Code != ae.Fields[0].Code || f.Field != ae.Fields[0].Field || f.Line < 1 || f.Line > len(lines) ||
		!strings.Contains(lines[f.Line-1], "recipientID") {
		t.Fatalf("field error %+v (alone %+v); request line %q", f, ae.Fields[0], lines[max(0, min(len(lines), f.Line)-1)])
	}
}

// TestPrintPartIsCheckedAgainstTheSchema: a fjernprint part that breaks
// the OIO schema is refused with the schema's codes, its path under
// /kombi_request and its line in the request.
func TestPrintPartIsCheckedAgainstTheSchema(t *testing.T) {
	ps, err := sf1601.NewPrintSchema()
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	bad := bytes.Replace(forsendelse(), []byte("<DokumentParametre/>"), nil, 1)
	body, _ := sf1601test.PHP(letter(t, memo.Letter{}, nil), "Fysisk Post", bad)
	_, req, err := decode(bytes.NewReader(body), sf1601.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	err = ps.Check(req)
	var he *hub.Error
	if !errors.As(err, &he) || he.Code != hub.Invalid || len(he.Fields) == 0 {
		t.Fatalf("%v", err)
	}
	f := he.Fields[0]
	lines := strings.Split(string(body), "\n")
	if f.Resource != "fjernprint" || f.Code != memo.CodeSchemaElementMissing || f.Field != "/kombi_request/ForsendelseISamling/ForsendelseI" ||
		f.Line < req.PrintLine || f.Line > len(lines) {
		t.Fatalf("%+v (print part from line %d)", f, req.PrintLine)
	}
}
