package memo

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

var renderFixedTime = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// hostileLetter is an HTML main document trying every way out we know of,
// with a PDF attachment and an EntryPoint and a Reservation action.
func hostileLetter() *Message {
	doc := `<!DOCTYPE html><html><head><title>x</title><style>body{background:url(https://evil.example/bg.png)}</style>
<script>alert(1)</script><link rel=stylesheet href="https://evil.example/s.css"><meta http-equiv=refresh content="0;url=https://evil.example/"></head>
<body onload="alert(2)"><h1 style="color:red">Kære borger</h1>
<p>Se <a href="javascript:alert(3)">her</a>, <a href="https://example.org/info" onclick="alert(4)">info</a> og <a href="/apis/v1/x">intern</a>.</p>
<img src="https://evil.example/pixel.gif" alt="sporing"><img src="x" onerror="alert(5)">
<iframe src="https://evil.example/"></iframe><object data="https://evil.example/x.swf"></object><embed src="x.swf">
<form action="https://evil.example/"><input name=cpr><button>Send</button></form>
<svg><script>alert(6)</script></svg><math><mi xlink:href="javascript:alert(7)">x</mi></math>
<table><tr><td colspan="2" onmouseover="alert(8)">celle</td></tr></table>
<a href="  JaVaScRiPt:alert(9)">x</a><a href="data:text/html,<script>alert(10)</script>">y</a>
<p>Tekst &lt;script&gt; bliver tekst.</p><noscript><img src="https://evil.example/ns.gif"></noscript>
<base href="https://evil.example/"><template><script>alert(11)</script></template></body></html>`
	m := NewLetter(Letter{UUID: "8e0c6c39-27a4-4f4e-9c3d-5a1c1c2b7d10", From: "11111111", SenderLabel: "Demo Kommune",
		To: "0101701234", RecipientLabel: "Demo Borger", Label: "Hostile <b>HTML</b> letter", Created: renderFixedTime,
		Main:        Attachment{Filename: "brev.html", MIMEType: "text/html", Data: []byte(doc)},
		Attachments: []Attachment{PDF("bilag.pdf", SamplePDF("Bilag"))}})
	m.MessageBody.MainDocument.Actions = []Action{
		{Label: "Betal", ActionCode: "BETALING", EntryPoint: &EntryPoint{URL: "https://pay.example.org/?id=1&x=<2>"}},
		{Label: "Klik", ActionCode: "SELVBETJENING", EntryPoint: &EntryPoint{URL: "javascript:alert(12)"}},
		{Label: "Møde", ActionCode: "AFTALE", Reservation: &Reservation{Description: "Møde, om sagen; med\nlinjeskift",
			ReservationUUID: "8C2EA15D-61FB-4BA9-9366-42F8B194D241", Abstract: "Møde", Location: "Rådhuset",
			StartDateTime: "2026-04-01T08:00:00Z", EndDateTime: "2026-04-01T09:00:00Z", OrganizerMail: "a@example.org", OrganizerName: "A"}},
	}
	return m
}

func renderSamples(t *testing.T) map[string]*Message {
	out := map[string]*Message{"hostile-html": hostileLetter()}
	for _, v := range []string{"v1.1", "v1.2"} {
		paths, _ := filepath.Glob(filepath.Join("testdata", "samples", v, "*.xml"))
		for _, p := range paths {
			m, err := ParseFile(p)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			out[v+"_"+strings.TrimSuffix(filepath.Base(p), ".xml")] = m
		}
	}
	if len(out) < 9 {
		t.Fatalf("only %d samples found", len(out))
	}
	return out
}

// TestRenderGolden renders every v1.1 and v1.2 sample (1.0 is refused by
// the hub and never rendered) and the hostile letter, and compares with
// testdata/golden; go test ./memo -run TestRenderGolden -update rewrites
// them.
func TestRenderGolden(t *testing.T) {
	for name, m := range renderSamples(t) {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Render(&b, m, RenderOptions{}); err != nil {
				t.Fatal(err)
			}
			checkSafePage(t, b.String())
			golden := filepath.Join("testdata", "golden", name+".html")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("rendered HTML differs from %s (run with -update after checking the change)\n%s", golden, b.String())
			}
		})
	}
}

// checkSafePage parses a rendered page and fails on anything that could
// run script or load from elsewhere.
func checkSafePage(t *testing.T, page string) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "iframe", "frame", "embed", "applet", "form", "input", "button", "base", "link", "svg", "math":
				t.Errorf("element <%s> in rendered page", n.Data)
			}
			for _, a := range n.Attr {
				k, v := strings.ToLower(a.Key), strings.ToLower(strings.TrimSpace(a.Val))
				if strings.HasPrefix(k, "on") {
					t.Errorf("event handler %s=%q on <%s>", a.Key, a.Val, n.Data)
				}
				if k == "style" {
					t.Errorf("style attribute on <%s>", n.Data)
				}
				if (k == "href" || k == "src" || k == "data" || k == "action") && (strings.HasPrefix(v, "javascript:") || strings.HasPrefix(v, "vbscript:")) {
					t.Errorf("%s=%q on <%s>", k, a.Val, n.Data)
				}
				if k == "src" && !strings.HasPrefix(v, "data:image/") {
					t.Errorf("src=%q loads from elsewhere", a.Val)
				}
				if n.Data == "a" && k == "target" && !strings.Contains(htmlAttr(n, "rel"), "noopener") {
					t.Errorf("link to %q opens without noopener", htmlAttr(n, "href"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if !strings.Contains(page, `http-equiv="Content-Security-Policy"`) {
		t.Error("no CSP meta element")
	}
}

func htmlAttr(n *html.Node, k string) string {
	for _, a := range n.Attr {
		if a.Key == k {
			return a.Val
		}
	}
	return ""
}

func TestRenderHostileHTMLIsInert(t *testing.T) {
	var b bytes.Buffer
	if err := Render(&b, hostileLetter(), RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	checkSafePage(t, page)
	for _, bad := range []string{"evil.example", "alert(", "<script", "onload", "onerror", "javascript:", "<iframe", "<style>body{background"} {
		if strings.Contains(strings.ToLower(page), strings.ToLower(bad)) {
			t.Errorf("rendered page contains %q", bad)
		}
	}
	for _, want := range []string{
		`<h1>Kære borger</h1>`,
		`<a href="https://example.org/info" rel="noopener noreferrer nofollow" target="_blank" referrerpolicy="no-referrer">info<span class="outside"> (link outside the letter)</span></a>`,
		`<td colspan="2">celle</td>`,
		`[sporing]`,
		`Tekst &lt;script&gt; bliver tekst.`,
		`(link outside the letter)`,
		`href="https://pay.example.org/?id=1&amp;x=%3c2%3e" rel="noopener noreferrer" target="_blank"`,
		`download="Møde.ics"`,
		`<object class="pdf"`[:0] + `Download bilag.pdf`,
		`Hostile &lt;b&gt;HTML&lt;/b&gt; letter`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
}

// TestRenderHTMLItCannotShowIsOfferedAsDownload: a main document whose
// HTML the parser refuses (nested deeper than its 512 elements) or that
// keeps nothing to read once sanitised still renders a page with the
// letter's data, a note and the document's download link — never an error
// or an empty page.
func TestRenderHTMLItCannotShowIsOfferedAsDownload(t *testing.T) {
	const note = "This document cannot be shown in the browser. Download it below."
	for name, doc := range map[string]string{
		"nested deeper than the parser allows": strings.Repeat("<div>", 600) + "Kære borger" + strings.Repeat("</div>", 600),
		"nothing left once sanitised":          `<script>document.write("Kære borger")</script><svg><text>x</text></svg>  `,
	} {
		t.Run(name, func(t *testing.T) {
			m := NewLetter(Letter{From: "11111111", To: "0101701234", Label: "Dybt brev", Created: renderFixedTime,
				Main: Attachment{Filename: "brev.html", MIMEType: "text/html", Data: []byte(doc)}})
			var b bytes.Buffer
			if err := Render(&b, m, RenderOptions{}); err != nil {
				t.Fatal(err)
			}
			page := b.String()
			checkSafePage(t, page)
			for _, want := range []string{"<h1 id=\"letter-title\">Dybt brev</h1>", note, `href="files/0/0" download="brev.html"`} {
				if !strings.Contains(page, want) {
					t.Errorf("page lacks %q:\n%s", want, page)
				}
			}
		})
	}
	// Below the parser's limit the letter is shown.
	m := NewLetter(Letter{From: "11111111", To: "0101701234", Label: "Brev", Created: renderFixedTime,
		Main: Attachment{Filename: "brev.html", MIMEType: "text/html",
			Data: []byte(strings.Repeat("<div>", 400) + "Kære borger" + strings.Repeat("</div>", 400))}})
	var b bytes.Buffer
	if err := Render(&b, m, RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Kære borger") || strings.Contains(b.String(), note) {
		t.Errorf("a letter nested 400 deep is not shown:\n%s", b.String())
	}
}

func TestRenderPDFMainDocumentIsObject(t *testing.T) {
	m := NewLetter(Letter{From: "11111111", To: "0101701234", Created: renderFixedTime, Main: PDF("brev.pdf", SamplePDF("Hej"))})
	var b bytes.Buffer
	if err := Render(&b, m, RenderOptions{FileURL: func(d, f int) string { return "/letters/x/files/0/0" }}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `<object class="pdf" type="application/pdf" data="/letters/x/files/0/0"`) {
		t.Fatalf("no PDF object:\n%s", b.String())
	}
}

func TestRenderCSPIsStrict(t *testing.T) {
	for _, want := range []string{"default-src 'none'", "img-src data:", "style-src 'sha256-", "frame-ancestors 'none'", "form-action 'none'", "base-uri 'none'"} {
		if !strings.Contains(RenderCSP, want) {
			t.Errorf("RenderCSP %q lacks %q", RenderCSP, want)
		}
	}
	if strings.Contains(RenderCSP, "script-src") || strings.Contains(RenderCSP, "unsafe") {
		t.Errorf("RenderCSP allows script or unsafe sources: %q", RenderCSP)
	}
}

func TestReservationICS(t *testing.T) {
	m := hostileLetter()
	ics := string(ReservationICS(m, m.MessageBody.MainDocument.Actions[2]))
	for _, want := range []string{"BEGIN:VCALENDAR\r\n", "UID:8c2ea15d-61fb-4ba9-9366-42f8b194d241@posthub\r\n",
		"DTSTART:20260401T080000Z\r\n", "DTEND:20260401T090000Z\r\n", `DESCRIPTION:Møde\, om sagen\; med\nlinjeskift`,
		"ORGANIZER;CN=\"A\":mailto:a@example.org\r\n", "END:VCALENDAR\r\n"} {
		if !strings.Contains(ics, want) {
			t.Errorf("ics lacks %q:\n%s", want, ics)
		}
	}
	for _, l := range strings.Split(ics, "\r\n") {
		if len(l) > 75 {
			t.Errorf("line longer than 75 octets: %q", l)
		}
	}
}

func FuzzSanitizeHTML(f *testing.F) {
	f.Add(`<p onclick="x">a</p><script>b</script><a href="javascript:c">d</a>`)
	f.Add(`<img src="https://x/y.png"><iframe src=x></iframe>`)
	f.Fuzz(func(t *testing.T, in string) {
		var b bytes.Buffer
		if err := SanitizeHTML(&b, strings.NewReader(in)); err != nil {
			return
		}
		checkSafePage(t, `<meta http-equiv="Content-Security-Policy" content="x">`+b.String())
	})
}
