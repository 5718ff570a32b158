// Package sf1601test writes kombi_requests the way the SF1601 clients in
// use write them, for tests and the load generator. Each function takes a
// MeMo as posthub's memo package writes it and re-serialises it in the
// client's form; the forms are described from reading the clients
// (python-serviceplatformen 3.1.0 @ 42035a4, itk-dev/serviceplatformen
// 1.9.0 @ 9afa635), not copied from them.
package sf1601test

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// pythonPrefixes are the prefixes python-serviceplatformen registers with
// ElementTree (models/message.py NAME_SPACES), by namespace.
var pythonPrefixes = map[string]string{
	"http://www.w3.org/2001/XMLSchema-instance":                                                                   "xsi",
	"https://DigitalPost.dk/MeMo-1":                                                                               "memo",
	"https://www.gs1.dk/gs1-standarder/identifikation/gln-global-location-number/":                                "gln",
	"https://www.dst.dk/da/TilSalg/Forskningsservice/Dokumentation/hoejkvalitetsvariable/elevregister-2/udd#":     "udd",
	"https://www.nets.eu/dk-da/løsninger/nemid/nemid-tjenesteudbyder/supplerende-tjenester/pid-rid-cpr-tjenester": "rid",
	"https://indberet.virk.dk/myndigheder/stat/ERST/P-enhedsloesningen":                                           "pnum",
	"http://www.form-online.dk/":                                                                                  "form",
	"http://kle-online.dk/":                                                                                       "kle",
	"https://motorregister.skat.dk/":                                                                              "dmv",
	"https://data.gov.dk/model/core/":                                                                             "grd",
	"http://www.w3.org/2001/XMLSchema#":                                                                           "xsd",
	"https://services.nsi.dk/en/Services/SOR":                                                                     "sor",
}

// Python writes a kombi_request as python-serviceplatformen 3.x's
// digital_post.send_message does: the MeMo built as an ElementTree, put
// into <kombi_request> after <KombiValgKode>, serialised with
// ElementTree.tostring(encoding="utf8"). That means: the declaration
// <?xml version='1.0' encoding='utf8'?> and a newline; every namespace the
// tree uses declared once, on <kombi_request>, sorted by prefix; no
// whitespace between elements; text escaped (&amp; &lt; &gt;), attribute
// values too (and &quot;, &#10;). Timestamps are the client's naive local
// time with a "Z" (date_helper.format_datetime on datetime.now()): here
// MessageBody/createdDateTime becomes now in Danish time, marked Z.
func Python(memoXML []byte, choice string) ([]byte, error) {
	var body bytes.Buffer
	used := map[string]string{} // prefix -> namespace
	next := 0
	prefix := func(ns string) string {
		if ns == "" {
			return ""
		}
		p, ok := pythonPrefixes[ns]
		if !ok {
			for q, u := range used {
				if u == ns {
					return q
				}
			}
			p = fmt.Sprintf("ns%d", next)
			next++
		}
		used[p] = ns
		return p
	}
	qname := func(n xml.Name) string {
		if p := prefix(n.Space); p != "" {
			return p + ":" + n.Local
		}
		return n.Local
	}
	dk, _ := time.LoadLocation("Europe/Copenhagen")
	if dk == nil {
		dk = time.FixedZone("CET", 3600)
	}
	naive := time.Now().In(dk).Format("2006-01-02T15:04:05Z")
	d := xml.NewDecoder(bytes.NewReader(memoXML))
	var open []string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			body.WriteString("<" + qname(t.Name))
			for _, a := range t.Attr {
				if a.Name.Space == "xmlns" || a.Name.Local == "xmlns" && a.Name.Space == "" {
					continue
				}
				body.WriteString(" " + qname(a.Name) + `="` + pyAttr(a.Value) + `"`)
			}
			body.WriteString(">")
			open = append(open, t.Name.Local)
		case xml.EndElement:
			body.WriteString("</" + qname(t.Name) + ">")
			open = open[:len(open)-1]
		case xml.CharData:
			s := string(t)
			if strings.TrimSpace(s) == "" {
				continue
			}
			if len(open) > 0 && open[len(open)-1] == "createdDateTime" {
				s = naive
			}
			body.WriteString(pyText(s))
		}
	}
	var out bytes.Buffer
	out.WriteString("<?xml version='1.0' encoding='utf8'?>\n<kombi_request")
	prefixes := make([]string, 0, len(used))
	for p := range used {
		prefixes = append(prefixes, p)
	}
	sort.Strings(prefixes)
	for _, p := range prefixes {
		out.WriteString(" xmlns:" + p + `="` + pyAttr(used[p]) + `"`)
	}
	out.WriteString("><KombiValgKode>" + pyText(choice) + "</KombiValgKode>")
	out.Write(body.Bytes())
	out.WriteString("</kombi_request>")
	return out.Bytes(), nil
}

func pyText(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func pyAttr(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "\r", "&#13;", "\n", "&#10;", "\t", "&#09;").Replace(s)
}

// PHP writes a kombi_request as itk-dev/serviceplatformen's
// SF1601::kombiPostAfsend does: a DOMDocument <kombi_request> with its
// <KombiValgKode>, the MeMo serialised by JMS (prefixed memo:, its own
// namespace declarations, text in CDATA sections, indented) imported into
// it, and, when forsendelseI is given, a <ForsendelseISamling> in the
// default namespace urn:oio:fjernprint:1.0.0 holding it; saved with
// saveXML(), so <?xml version="1.0"?> first and a newline last. The
// client sends it with Accept: application/xml.
func PHP(memoXML []byte, choice string, forsendelseI []byte) ([]byte, error) {
	msg, err := jmsStyle(memoXML)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.WriteString("<?xml version=\"1.0\"?>\n<kombi_request><KombiValgKode>" + pyText(choice) + "</KombiValgKode>")
	out.Write(msg)
	if forsendelseI != nil {
		out.WriteString(`<ForsendelseISamling xmlns="urn:oio:fjernprint:1.0.0">`)
		out.Write(forsendelseI)
		out.WriteString("</ForsendelseISamling>")
	}
	out.WriteString("</kombi_request>\n")
	return out.Bytes(), nil
}

// jmsStyle rewrites a MeMo's text content as CDATA sections, as JMS
// writes strings, keeping everything else (memo's writer already puts the
// namespaces on the prefixed root as JMS does).
func jmsStyle(memoXML []byte) ([]byte, error) {
	b := memoXML
	if i := bytes.Index(b, []byte("?>")); bytes.HasPrefix(b, []byte("<?xml")) && i >= 0 {
		b = bytes.TrimLeft(b[i+2:], "\r\n")
	}
	var out bytes.Buffer
	for len(b) > 0 {
		lt := bytes.IndexByte(b, '<')
		if lt < 0 {
			out.Write(b)
			break
		}
		text := b[:lt]
		if len(bytes.TrimSpace(text)) > 0 {
			s, err := unescape(text)
			if err != nil {
				return nil, err
			}
			out.WriteString("<![CDATA[" + strings.ReplaceAll(s, "]]>", "]]]]><![CDATA[>") + "]]>")
		} else {
			out.Write(text)
		}
		gt := bytes.IndexByte(b[lt:], '>')
		if gt < 0 {
			return nil, fmt.Errorf("sf1601test: unterminated tag")
		}
		out.Write(b[lt : lt+gt+1])
		b = b[lt+gt+1:]
	}
	return bytes.TrimRight(out.Bytes(), "\r\n"), nil
}

func unescape(text []byte) (string, error) {
	var s string
	err := xml.Unmarshal(append(append([]byte("<t>"), text...), "</t>"...), &s)
	return s, err
}

// jmsPrefix is the prefix JMS invents for an element of a namespace its
// metadata gives no prefix: "ns-" and eight hex digits of the namespace's
// SHA-1.
func jmsPrefix(ns string) string {
	sum := sha1.Sum([]byte(ns))
	return "ns-" + hex.EncodeToString(sum[:])[:8]
}

// ForsendelseI is a valid fjernprint ForsendelseI for a letter to cpr
// (name and address lines: street, house number, postcode), carrying pdf,
// written as JMS writes Oio\Fjernprint\ForsendelseI: the default namespace
// urn:oio:fjernprint:1.0.0 on the root, every other namespace declared on
// the element that uses it under a "ns-…" prefix, strings in CDATA.
func ForsendelseI(id, cpr, name, street, number, postcode string, pdf []byte) []byte {
	el := func(ns, local, text string) string {
		p := jmsPrefix(ns)
		return "<" + p + ":" + local + " xmlns:" + p + `="` + ns + `"><![CDATA[` + text + "]]></" + p + ":" + local + ">"
	}
	const (
		dkal    = "urn:oio:dkal:1.0.0"
		adir    = "urn:oio:adir:dagpenge:2009.07.01"
		itst    = "http://rep.oio.dk/itst.dk/xml/schemas/2006/01/17/"
		dkcc05  = "http://rep.oio.dk/ebxml/xml/schemas/dkcc/2005/03/15/"
		dkcc03  = "http://rep.oio.dk/ebxml/xml/schemas/dkcc/2003/02/13/"
		content = "MeddelelseIndholdData"
	)
	mp := jmsPrefix(dkal)
	var b strings.Builder
	b.WriteString(`<ForsendelseI xmlns="urn:oio:fjernprint:1.0.0">` + "\n")
	b.WriteString("  <AfsendelseIdentifikator><![CDATA[" + id + "]]></AfsendelseIdentifikator>\n")
	b.WriteString("  <ForsendelseTypeIdentifikator>265</ForsendelseTypeIdentifikator>\n")
	b.WriteString("  <ForsendelseModtager>\n    <" + mp + ":AfsendelseModtager xmlns:" + mp + `="` + dkal + `">` +
		el(adir, "CPRnummerIdentifikator", cpr) + "</" + mp + ":AfsendelseModtager>\n")
	b.WriteString("    <ModtagerAdresse>" + el(itst, "PersonName", name) + el(dkcc05, "StreetName", street) +
		el(dkcc03, "StreetBuildingIdentifier", number) + el(dkcc05, "PostCodeIdentifier", postcode) +
		"<" + jmsPrefix(dkcc03) + `:CountryIdentificationCode scheme="iso3166-alpha2" xmlns:` + jmsPrefix(dkcc03) + `="` + dkcc03 + `">DK</` +
		jmsPrefix(dkcc03) + ":CountryIdentificationCode></ModtagerAdresse>\n")
	b.WriteString("  </ForsendelseModtager>\n")
	b.WriteString("  " + el(dkal, "FilformatNavn", "pdf") + "\n")
	b.WriteString("  <" + mp + ":" + content + " xmlns:" + mp + `="` + dkal + `">` + base64.StdEncoding.EncodeToString(pdf) + "</" + mp + ":" + content + ">\n")
	b.WriteString("  <DokumentParametre/>\n")
	b.WriteString("</ForsendelseI>")
	return []byte(b.String())
}
