package memo

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
	_ "time/tzdata" // letters are shown in Danish time on any host
	"unicode/utf8"
)

// Rendering a MeMo for a reader.
//
// Render writes one self-contained HTML page: header data a reader needs
// (sender, recipient, label, dates, case and attention data), the main
// document inline when it is text, HTML (sanitised by SanitizeHTML), an
// image or a PDF, the other documents as downloads, and the actions.
//
// Safety rests on two layers. The page itself carries no script, loads
// nothing remote and inlines only sanitised markup; and it is meant to be
// served with RenderCSP as its Content-Security-Policy header (the page
// repeats the policy in a meta element, which covers a saved copy but
// cannot express frame-ancestors). The policy:
//
//	default-src 'none'; img-src data:; style-src 'sha256-…' (the page's own
//	stylesheet, so no style attribute or injected style applies);
//	object-src 'self' (the PDF); form-action 'none'; base-uri 'none';
//	frame-ancestors 'none'
//
// PDF main documents are embedded with <object> from a same-origin URL
// (RenderOptions.FileURL), not a data: URL: a PDF may be close to 100 MB
// and a data: URL would put all of it in the page, and Chromium refuses to
// show data: PDFs in some contexts. The object has a download link as its
// fallback content. Images (PNG, JPEG, GIF, WebP up to MaxInline) are data:
// URLs; SVG is never inlined (it can carry script).
//
// Actions: an EntryPoint becomes a link that opens in a new browsing
// context without opener or referrer, visibly labelled "link outside the
// letter"; only http and https addresses are linked, anything else is
// shown as text. A Reservation offers an .ics file (ReservationICS) at
// RenderOptions.ICSURL. Payment, signing and confirmation actions are
// EntryPoints with their own action codes and are shown the same way.
// Technical documents are for systems and are not shown.

// RenderOptions tune Render.
type RenderOptions struct {
	// FileURL is the address of file f of document d (indices into
	// Message.Documents() and Document.Files). Default "files/<d>/<f>".
	FileURL func(d, f int) string
	// ICSURL is the address of the .ics of action a of document d.
	// Default "actions/<d>/<a>.ics".
	ICSURL func(d, a int) string
	// MaxInline is the largest text, HTML or image file shown inline
	// (default 10 MiB); bigger ones are offered as downloads.
	MaxInline int64
	// Location is the time zone dates are shown in (default Europe/Copenhagen).
	Location *time.Location
}

// renderStyle is the page's only stylesheet; RenderCSP allows it by hash.
const renderStyle = `
body{font-family:system-ui,sans-serif;margin:0;background:#f4f4f4;color:#1a1a1a;line-height:1.5}
main{max-width:50rem;margin:0 auto;background:#fff;padding:1.5rem 2rem 2rem}
h1{font-size:1.6rem;margin:.2rem 0 1rem}
h2{font-size:1.15rem;margin:1.6rem 0 .5rem;border-bottom:1px solid #ccc}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}
dl.meta dt{font-weight:600}
dl.meta dd{margin:0}
.document{border:1px solid #ccc;padding:1rem;margin-top:1rem;overflow-wrap:anywhere}
.document pre{white-space:pre-wrap;font-family:inherit;margin:0}
.document img{max-width:100%;height:auto}
object.pdf{width:100%;height:70vh;border:0}
ul.actions,ul.files{list-style:none;padding:0}
ul.actions li,ul.files li{margin:.4rem 0}
a.action{display:inline-block;padding:.45rem .9rem;background:#0b5cad;color:#fff;border-radius:.3rem;text-decoration:none}
a.action:focus,a.action:hover{background:#084785;outline:3px solid #f6b400}
.outside{font-size:.85em}
.note{color:#555;font-size:.9rem}
`

// RenderCSP is the Content-Security-Policy to serve a rendered page with.
var RenderCSP = "default-src 'none'; img-src data:; style-src '" + styleHash() + "'; object-src 'self'; " +
	"form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

// metaCSP is RenderCSP without the directives a meta element cannot carry.
var metaCSP = strings.TrimSuffix(RenderCSP, "; frame-ancestors 'none'")

func styleHash() string {
	sum := sha256.Sum256([]byte(renderStyle))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// Render writes m as a self-contained HTML page (see the package notes on
// rendering above). It fails only when writing or reading content fails;
// content it cannot show (HTML nested too deep to parse, for one) is
// offered as a download with a note saying so. A failure can come after
// part of the page was written: render into a buffer to answer an error
// instead of half a page.
func Render(w io.Writer, m *Message, opts RenderOptions) error {
	if opts.FileURL == nil {
		opts.FileURL = func(d, f int) string { return fmt.Sprintf("files/%d/%d", d, f) }
	}
	if opts.ICSURL == nil {
		opts.ICSURL = func(d, a int) string { return fmt.Sprintf("actions/%d/%d.ics", d, a) }
	}
	if opts.MaxInline <= 0 {
		opts.MaxInline = 10 << 20
	}
	if opts.Location == nil {
		if loc, err := time.LoadLocation("Europe/Copenhagen"); err == nil {
			opts.Location = loc
		} else {
			opts.Location = time.UTC
		}
	}
	v, err := buildView(m, opts)
	if err != nil {
		return err
	}
	return pageTemplate.Execute(w, v)
}

type pageView struct {
	Lang, Title, CSP string
	Style            template.CSS
	Meta             []metaRow
	Notice           []string
	Main             *docView
	Others           []*docView
}

type metaRow struct{ Label, Value string }

type docView struct {
	Label   string
	Inline  template.HTML // the main document shown in the page
	Files   []fileView
	Actions []actionView
}

type fileView struct {
	URL      string
	Filename string
	Format   string
	Size     string
}

type actionView struct {
	Label, Code, Window string
	URL                 template.URL // EntryPoint (http/https only)
	BadURL              string       // an EntryPoint that is not linked
	ICS                 string       // Reservation download
	ICSName             string
	Reservation         *Reservation
	When                string
}

func buildView(m *Message, o RenderOptions) (*pageView, error) {
	h := &m.MessageHeader
	v := &pageView{Title: h.Label, CSP: metaCSP, Style: template.CSS(renderStyle), Lang: "da"}
	add := func(label, value string) {
		if value = strings.TrimSpace(value); value != "" {
			v.Meta = append(v.Meta, metaRow{label, value})
		}
	}
	add("From", party(h.Sender.Label, h.Sender.IDType, h.Sender.SenderID))
	if r := h.Sender.Representative; r != nil {
		add("On behalf of", party(r.Label, r.IDType, r.RepresentativeID))
	}
	add("To", party(h.Recipient.Label, h.Recipient.IDType, h.Recipient.RecipientID))
	if b := m.MessageBody; b != nil {
		add("Date", o.dateTime(b.CreatedDateTime))
	}
	add("Reply by", o.dateTime(h.ReplyByDateTime))
	add("Message ID", h.MessageID)
	attention(add, "Sender", h.Sender.AttentionData)
	if cp := h.Sender.ContactPoint; cp != nil {
		add("Contact", cp.Label)
		for _, ci := range cp.ContactInfo {
			add(ci.Label, ci.Value)
		}
	}
	attention(add, "Recipient", h.Recipient.AttentionData)
	if cd := h.ContentData; cd != nil {
		if cd.CaseID != nil {
			add("Case", cd.CaseID.CaseID)
		}
		if cd.KLEdata != nil {
			add("Subject", cd.KLEdata.Label)
		}
		if cd.CPRdata != nil {
			add("Concerning", party(cd.CPRdata.Name, "CPR", cd.CPRdata.CPRNumber))
		}
		if cd.CVRdata != nil {
			add("Concerning company", party(cd.CVRdata.CompanyName, "CVR", cd.CVRdata.CVRNumber))
		}
		if cd.MotorVehicle != nil {
			add("Vehicle", cd.MotorVehicle.LicenseNumber)
		}
		if cd.PropertyNumber != nil {
			add("Property", cd.PropertyNumber.PropertyNumber)
		}
		if cd.Education != nil {
			add("Education", cd.Education.EducationName)
		}
		for _, a := range cd.AdditionalContentData {
			add(a.ContentDataName, a.ContentDataValue)
		}
	}
	if f := h.ForwardData; f != nil {
		add("Forwarded from", f.OriginalSender)
		add("Originally sent", o.dateTime(f.OriginalMessageDateTime))
		add("Forwarding comment", f.Comment)
	}
	if h.LegalNotification != nil && *h.LegalNotification {
		v.Notice = append(v.Notice, "This letter is a legal notification (retsvirkning): it counts as received once it is in your mailbox.")
	}
	if h.Mandatory != nil && *h.Mandatory {
		v.Notice = append(v.Notice, "This letter is mandatory post and cannot be declined.")
	}
	if h.Reply != nil && *h.Reply {
		v.Notice = append(v.Notice, "The sender accepts a reply to this letter.")
	}
	if m.MessageBody == nil {
		if h.Notification != "" {
			v.Main = &docView{Label: h.Label, Inline: template.HTML("<pre>" + template.HTMLEscapeString(h.Notification) + "</pre>")}
		}
		return v, nil
	}
	for di, ref := range m.Documents() {
		if ref.Kind == TechnicalDocumentKind {
			continue
		}
		dv := &docView{Label: ref.Document.Label}
		for fi, f := range ref.Document.Files {
			dv.Files = append(dv.Files, fileView{URL: o.FileURL(di, fi), Filename: f.Filename,
				Format: formatName(f.EncodingFormat, f.Filename), Size: humanSize(f.DecodedSize())})
			if dv.Label == "" {
				dv.Label = f.Filename
			}
		}
		for ai, a := range ref.Document.Actions {
			dv.Actions = append(dv.Actions, o.action(di, ai, a))
		}
		if ref.Kind == MainDocumentKind {
			inline, err := o.inline(ref.Document, di)
			if err != nil {
				return nil, err
			}
			dv.Inline = inline
			v.Main = dv
			continue
		}
		v.Others = append(v.Others, dv)
	}
	return v, nil
}

func party(label, idType, id string) string {
	if id == "" {
		return label
	}
	if label == "" {
		return idType + " " + id
	}
	return label + " (" + idType + " " + id + ")"
}

func attention(add func(string, string), who string, a *AttentionData) {
	if a == nil {
		return
	}
	if p := a.AttentionPerson; p != nil {
		add(who+": attention", p.Label)
	}
	if c := a.ContentResponsible; c != nil {
		add(who+": responsible", c.Label)
	}
	if e := a.EMail; e != nil {
		add(who+": e-mail", e.EmailAddress)
	}
	if t := a.Telephone; t != nil {
		add(who+": telephone", t.TelephoneNumber)
	}
	if p := a.ProductionUnit; p != nil {
		add(who+": production unit", p.ProductionUnitName)
	}
	if u := a.UnstructuredAddress; u != nil {
		add(who+": address", u.Unstructured)
	}
}

// dateTime shows an xs:dateTime or xs:date in the reader's zone; text it
// cannot read is shown as it is.
func (o RenderOptions) dateTime(s string) string {
	if s == "" {
		return ""
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			if layout == time.DateOnly {
				return t.Format("2 January 2006")
			}
			return t.In(o.Location).Format("2 January 2006 15:04 MST")
		}
	}
	return s
}

func (o RenderOptions) action(di, ai int, a Action) actionView {
	av := actionView{Label: a.Label, Code: a.ActionCode}
	if a.StartDateTime != "" || a.EndDateTime != "" {
		av.When = strings.TrimSpace(strings.Join([]string{o.dateTime(a.StartDateTime), o.dateTime(a.EndDateTime)}, " – "))
		av.When = strings.Trim(av.When, " –")
	}
	switch {
	case a.EntryPoint != nil:
		u, ok := safeLink(a.EntryPoint.URL)
		if ok && !strings.HasPrefix(strings.ToLower(u), "mailto:") {
			av.URL = template.URL(u)
		} else {
			av.BadURL = a.EntryPoint.URL
		}
	case a.Reservation != nil:
		av.ICS = o.ICSURL(di, ai)
		av.ICSName = icsFilename(a.Label)
		r := *a.Reservation
		r.StartDateTime, r.EndDateTime = o.dateTime(r.StartDateTime), o.dateTime(r.EndDateTime)
		av.Reservation = &r
	}
	return av
}

// inline renders the first file of the main document a browser can show
// safely; the others stay downloads. When none can be shown, it is a note
// pointing at the downloads.
func (o RenderOptions) inline(d *Document, di int) (template.HTML, error) {
	for fi, f := range d.Files {
		mt := mediaType(f.EncodingFormat)
		size := f.DecodedSize()
		small := size >= 0 && size <= o.MaxInline
		switch {
		case mt == "application/pdf":
			u := template.HTMLEscapeString(o.FileURL(di, fi))
			return template.HTML(`<object class="pdf" type="application/pdf" data="` + u + `" aria-label="` +
				template.HTMLEscapeString(f.Filename) + `"><p>The PDF cannot be shown here. <a href="` + u +
				`" download>Download ` + template.HTMLEscapeString(f.Filename) + `</a></p></object>`), nil
		case !small:
			continue
		case mt == "text/plain":
			b, err := readAll(f)
			if err != nil {
				return "", err
			}
			return template.HTML("<pre>" + template.HTMLEscapeString(toUTF8(b)) + "</pre>"), nil
		case mt == "text/html" || mt == "application/xhtml+xml":
			b, err := readAll(f)
			if err != nil {
				return "", err
			}
			frag, visible, err := sanitize(bytes.NewReader(b))
			if err != nil || !visible {
				// HTML the parser refuses (nested deeper than it allows) or
				// that keeps nothing to read once sanitised: the reader gets
				// the note and the download, never an empty document.
				continue
			}
			return template.HTML(frag), nil
		case mt == "image/png" || mt == "image/jpeg" || mt == "image/gif" || mt == "image/webp":
			b, err := readAll(f)
			if err != nil {
				return "", err
			}
			return template.HTML(`<img src="data:` + mt + `;base64,` + base64.StdEncoding.EncodeToString(b) +
				`" alt="` + template.HTMLEscapeString(d.Label) + `">`), nil
		}
	}
	return template.HTML(`<p class="note">This document cannot be shown in the browser. Download it below.</p>`), nil
}

func readAll(f *File) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// toUTF8 reads text as UTF-8, falling back to Latin-1 (common in Danish
// text files) when it is not valid UTF-8.
func toUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

func formatName(mt, filename string) string {
	switch mediaType(mt) {
	case "application/pdf":
		return "PDF"
	case "text/plain":
		return "text"
	case "text/html":
		return "HTML"
	}
	if e := extension(filename); e != "" {
		return strings.ToUpper(strings.TrimPrefix(e, "."))
	}
	return mt
}

func humanSize(n int64) string {
	switch {
	case n < 0:
		return ""
	case n < 1024:
		return fmt.Sprintf("%d bytes", n)
	case n < 1<<20:
		return fmt.Sprintf("%.0f KB", float64(n)/1024)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}

var pageTemplate = template.Must(template.New("letter").Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{{.CSP}}">
<meta name="referrer" content="no-referrer">
<title>{{.Title}}</title>
<style>{{.Style}}</style>
</head>
<body>
<main aria-labelledby="letter-title">
<header>
<h1 id="letter-title">{{.Title}}</h1>
<dl class="meta">
{{- range .Meta}}
<dt>{{.Label}}</dt><dd>{{.Value}}</dd>
{{- end}}
</dl>
{{- range .Notice}}
<p class="note" role="note">{{.}}</p>
{{- end}}
</header>
{{- with .Main}}
<section class="document" aria-label="{{.Label}}">
{{.Inline}}
</section>
{{- template "doc" .}}
{{- end}}
{{- if .Others}}
<h2 id="attachments">Attachments</h2>
{{- range .Others}}
<section aria-label="{{.Label}}">
<h3>{{.Label}}</h3>
{{- template "doc" .}}
</section>
{{- end}}
{{- end}}
</main>
</body>
</html>
{{define "doc"}}
{{- if .Files}}
<ul class="files" aria-label="Files of {{.Label}}">
{{- range .Files}}
<li><a href="{{.URL}}" download="{{.Filename}}">Download {{.Filename}}</a> <span class="note">({{.Format}}{{if .Size}}, {{.Size}}{{end}})</span></li>
{{- end}}
</ul>
{{- end}}
{{- if .Actions}}
<ul class="actions" aria-label="Actions">
{{- range .Actions}}
<li>
{{- if .URL}}<a class="action" href="{{.URL}}" rel="noopener noreferrer" target="_blank" referrerpolicy="no-referrer">{{.Label}} <span class="outside">(link outside the letter)</span></a>
{{- else if .ICS}}<a class="action" href="{{.ICS}}" download="{{.ICSName}}">{{.Label}} <span class="outside">(add to calendar, .ics)</span></a>
{{- with .Reservation}} <span class="note">{{.Abstract}}{{if .Location}}, {{.Location}}{{end}}, {{.StartDateTime}} – {{.EndDateTime}}</span>{{end}}
{{- else}}<span class="action-label">{{.Label}}</span>{{if .BadURL}} <span class="note">(its address is not a web address and is not linked)</span>{{end}}
{{- end}}
{{- if .When}} <span class="note">Available {{.When}}</span>{{end}}
</li>
{{- end}}
</ul>
{{- end}}
{{- end}}`))
