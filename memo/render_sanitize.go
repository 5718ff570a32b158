package memo

import (
	"bytes"
	"io"
	"net/url"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// SanitizeHTML writes a safe fragment of the HTML document read from r to
// w. It is an allow-list sanitizer: the document is parsed as the HTML5
// parser of a browser would (golang.org/x/net/html), and only listed
// elements and attributes are written back, re-serialised and escaped by
// us, never copied. What a letter cannot carry:
//   - scripts of any kind: script, noscript, template, event-handler
//     attributes (on*), javascript:/vbscript:/data: links;
//   - anything that loads or embeds: iframe, frame, object, embed, applet,
//     link, meta, base, form controls, svg, math, audio, video, and images
//     whose src is not a data: URL of a raster image (remote images are
//     dropped, so opening a letter cannot tell anyone it was read);
//   - style elements and style attributes (CSS can load URLs and overlay
//     the page's own chrome).
//
// Elements that are dropped with their content are listed in dropped;
// unknown elements are unwrapped (their text stays). Links keep only
// http, https and mailto addresses and open outside the letter.
//
// It fails when the parser does: on HTML nested deeper than 512 elements.
func SanitizeHTML(w io.Writer, r io.Reader) error {
	frag, _, err := sanitize(r)
	if err != nil {
		return err
	}
	_, err = w.Write(frag)
	return err
}

// sanitize returns the safe fragment and whether it shows anything: text
// other than white space, or an image.
func sanitize(r io.Reader) (frag []byte, visible bool, err error) {
	body := &html.Node{Type: html.ElementNode, Data: "body", DataAtom: atom.Body}
	nodes, err := html.ParseFragment(r, body)
	if err != nil {
		return nil, false, err
	}
	s := sanitizer{}
	for _, n := range nodes {
		s.node(n)
	}
	return s.b.Bytes(), s.visible, nil
}

type sanitizer struct {
	b       bytes.Buffer
	visible bool
}

// allowedElements maps an element to the attributes it may keep (beyond
// the global ones).
var allowedElements = map[string][]string{
	"a": {"href"}, "abbr": nil, "address": nil, "article": nil, "b": nil, "bdi": nil, "bdo": nil,
	"blockquote": nil, "br": nil, "caption": nil, "cite": nil, "code": nil, "col": {"span"},
	"colgroup": {"span"}, "dd": nil, "del": nil, "dfn": nil, "div": nil, "dl": nil, "dt": nil,
	"em": nil, "figcaption": nil, "figure": nil, "footer": nil, "h1": nil, "h2": nil, "h3": nil,
	"h4": nil, "h5": nil, "h6": nil, "header": nil, "hr": nil, "i": nil, "img": {"src", "alt", "width", "height"},
	"ins": nil, "kbd": nil, "li": {"value"}, "main": nil, "mark": nil, "ol": {"start", "reversed", "type"},
	"p": nil, "pre": nil, "q": nil, "s": nil, "samp": nil, "section": nil, "small": nil, "span": nil,
	"strong": nil, "sub": nil, "sup": nil, "table": nil, "tbody": nil, "td": {"colspan", "rowspan", "headers"},
	"tfoot": nil, "th": {"colspan", "rowspan", "scope", "headers"}, "thead": nil, "time": {"datetime"},
	"tr": nil, "u": nil, "ul": nil, "var": nil, "wbr": nil,
}

// globalAttributes may appear on every allowed element.
var globalAttributes = []string{"title", "lang", "dir"}

// dropped elements go with everything inside them.
var dropped = map[string]bool{
	"script": true, "noscript": true, "template": true, "style": true, "iframe": true, "frame": true,
	"frameset": true, "object": true, "embed": true, "applet": true, "link": true, "meta": true,
	"base": true, "head": true, "title": true, "svg": true, "math": true, "audio": true, "video": true,
	"source": true, "track": true, "canvas": true, "input": true, "button": true, "select": true,
	"textarea": true, "option": true, "datalist": true, "output": true, "portal": true, "picture": true,
	"map": true, "area": true, "param": true, "dialog": true, "xmp": true, "plaintext": true,
}

var voidElements = map[string]bool{"br": true, "col": true, "hr": true, "img": true, "wbr": true}

func (s *sanitizer) node(n *html.Node) {
	b := &s.b
	switch n.Type {
	case html.TextNode:
		b.WriteString(html.EscapeString(n.Data))
		s.visible = s.visible || strings.TrimSpace(n.Data) != ""
		return
	case html.ElementNode:
	case html.DocumentNode:
		s.children(n)
		return
	default: // comments, doctypes, raw nodes
		return
	}
	name := strings.ToLower(n.Data)
	if n.Namespace != "" || dropped[name] {
		return
	}
	allowed, ok := allowedElements[name]
	if !ok {
		s.children(n) // unwrap html, body, font, center, form, unknown…
		return
	}
	var attrs []html.Attribute
	for _, a := range n.Attr {
		k := strings.ToLower(a.Key)
		if a.Namespace != "" || (!contains(allowed, k) && !contains(globalAttributes, k)) {
			continue
		}
		switch k {
		case "href":
			u, ok := safeLink(a.Val)
			if !ok {
				continue
			}
			a.Val = u
		case "src":
			if !safeImageData(a.Val) {
				continue
			}
		case "dir":
			if v := strings.ToLower(a.Val); v != "ltr" && v != "rtl" && v != "auto" {
				continue
			}
		}
		attrs = append(attrs, html.Attribute{Key: k, Val: a.Val})
	}
	if name == "img" && !hasAttr(attrs, "src") {
		// A remote or scripted image is dropped; its alt text stays.
		for _, a := range attrs {
			if a.Key == "alt" && a.Val != "" {
				b.WriteString("[" + html.EscapeString(a.Val) + "]")
				s.visible = s.visible || strings.TrimSpace(a.Val) != ""
			}
		}
		return
	}
	s.visible = s.visible || name == "img"
	if name == "a" && hasAttr(attrs, "href") {
		attrs = append(attrs, html.Attribute{Key: "rel", Val: "noopener noreferrer nofollow"},
			html.Attribute{Key: "target", Val: "_blank"}, html.Attribute{Key: "referrerpolicy", Val: "no-referrer"})
	}
	b.WriteByte('<')
	b.WriteString(name)
	for _, a := range attrs {
		b.WriteByte(' ')
		b.WriteString(a.Key)
		b.WriteString(`="`)
		b.WriteString(html.EscapeString(a.Val))
		b.WriteByte('"')
	}
	b.WriteByte('>')
	if voidElements[name] {
		return
	}
	s.children(n)
	if name == "a" && hasAttr(attrs, "href") {
		b.WriteString(`<span class="outside"> (link outside the letter)</span>`)
	}
	b.WriteString("</" + name + ">")
}

func (s *sanitizer) children(n *html.Node) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		s.node(c)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func hasAttr(attrs []html.Attribute, k string) bool {
	for _, a := range attrs {
		if a.Key == k {
			return true
		}
	}
	return false
}

// safeLink accepts absolute http, https and mailto URLs and returns them
// re-encoded; anything else (javascript:, data:, relative paths that would
// resolve against the hub) is refused.
func safeLink(raw string) (string, bool) {
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil {
		return "", false
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		if u.Host == "" {
			return "", false
		}
	case "mailto":
	default:
		return "", false
	}
	return u.String(), true
}

// safeImageData accepts data: URLs of raster images, the only images the
// page's Content-Security-Policy lets load.
func safeImageData(v string) bool {
	v = strings.TrimSpace(strings.ToLower(v))
	for _, p := range []string{"data:image/png;", "data:image/jpeg;", "data:image/gif;", "data:image/webp;"} {
		if strings.HasPrefix(v, p) {
			return true
		}
	}
	return false
}
