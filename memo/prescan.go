package memo

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/posthub/posthub/hub"
)

// prescanLimit bounds how much of a document the prescan looks at: the
// prolog (XML declaration, comments, processing instructions) and the root
// start tag must fit. Real MeMo prologs are a few hundred bytes; the bound
// keeps the check O(1) in the document size and refuses prologs built to
// make us read a lot before libxml2 starts.
const prescanLimit = 64 << 10

// Codes of the problems the prescan reports (FieldError.Code).
const (
	CodeDoctypeNotAllowed     = "xml.doctype.not.allowed"
	CodeNotWellFormed         = "xml.not.well.formed"
	CodeEncodingNotSupported  = "xml.encoding.not.supported"
	CodePrologTooLong         = "xml.prolog.too.long"
	CodeRootInvalid           = "memo.root.invalid"
	CodeVersionMissing        = "memo.version.missing"
	CodeVersionNotSupported   = "memo.version.not.supported"
	CodeTooLarge              = "memo.too.large"
	CodeSchemaElementUnexpect = "schema.element.unexpected"
	CodeSchemaElementMissing  = "schema.element.missing"
	CodeSchemaValueInvalid    = "schema.value.invalid"
	CodeSchemaAttrInvalid     = "schema.attribute.invalid"
	CodeSchemaAttrMissing     = "schema.attribute.missing"
	CodeSchemaAttrUnexpected  = "schema.attribute.unexpected"
	CodeSchemaInvalid         = "schema.invalid"
)

// SupportedVersions lists the memoVersion values the hub validates, in the
// order an error message names them.
var SupportedVersions = []string{Version11, Version12}

// prescanError is one refusal of the prescan, with the 1-based line it was
// found on.
type prescanError struct {
	code  string
	msg   string
	field string
	value string
	line  int
}

// prolog is what the prescan learns about a document.
type prolog struct {
	// version is the canonical memoVersion ("1.1" or "1.2").
	version string
	// rootLine is the line of the root start tag.
	rootLine int
	// rootOffset is where the root start tag begins (set where the scan
	// stops at any root).
	rootOffset int
}

// prescan checks the start of a document in pure Go, before libxml2 sees a
// byte of it. b holds the first bytes of the document (at most
// prescanLimit are looked at); complete says b is the whole document.
//
// It refuses every DOCTYPE — with no DTD there are no entity declarations,
// so no billion laughs and no external entities, whatever libxml2's options
// — and any encoding but UTF-8 (the only one MeMo allows, and the only one in
// which this byte-level scan sees what libxml2 will see). It then finds the
// root element, which must be Message in the MeMo namespace under any prefix
// or the default namespace, and reads its memoVersion to pick the schema.
func prescan(b []byte, complete bool) (prolog, *prescanError) {
	s := prologScanner{b: b, complete: complete}
	if len(b) > prescanLimit {
		s.b = b[:prescanLimit]
		s.complete = false
	}
	return s.run()
}

// PrologLimit is how much of a document's start CheckProlog looks at: the
// prolog and the root's '<' must come within it.
const PrologLimit = prescanLimit

// prologLookahead is how far past where it stops the scan may have looked
// (a "<!DOCTYPE" it had to see whole).
const prologLookahead = len("<!DOCTYPE")

// CheckProlog makes the prescan's refusals on the start of an XML document
// that need not be a MeMo (an envelope that carries one, a schema's
// instance), so that every document the hub reads is held to the one
// rule: no DOCTYPE (so no entity declarations, internal or external), no
// encoding but UTF-8 (a BOM of UTF-16 or UTF-32 included), and nothing
// but comments and processing instructions before the root element.
//
// head is the start of the document; complete says it is all of it. The
// verdict is the one the document's first PrologLimit bytes get: a prolog
// that does not end within them is xml.prolog.too.long. When head is
// shorter than that and the verdict depends on what follows it, more is
// true: call again with a longer head. Otherwise it returns the offset in
// head of the root element's '<', or the refusal as a field error with
// the prescan's code (xml.doctype.not.allowed, xml.encoding.not.supported,
// xml.not.well.formed, xml.prolog.too.long), message and line, for the
// caller to name its Resource.
func CheckProlog(head []byte, complete bool) (root int, more bool, refusal *hub.FieldError) {
	s := prologScanner{b: head, complete: complete, anyRoot: true}
	if len(head) > prescanLimit {
		s.b = head[:prescanLimit]
		s.complete = false
	}
	p, err := s.run()
	if !s.complete && len(s.b) < prescanLimit && (err != nil && err.code == CodePrologTooLong || s.pos+prologLookahead > len(s.b)) {
		return 0, true, nil
	}
	if err != nil {
		return 0, false, &hub.FieldError{Field: err.field, Code: err.code, Message: err.msg, RejectedValue: err.value, Line: err.line}
	}
	return p.rootOffset, false, nil
}

type prologScanner struct {
	b        []byte
	pos      int
	complete bool
	// anyRoot stops the scan at the root start tag, whatever it is.
	anyRoot bool
}

func (s *prologScanner) line() int { return 1 + bytes.Count(s.b[:s.pos], []byte{'\n'}) }

func (s *prologScanner) fail(code, format string, args ...any) *prescanError {
	return &prescanError{code: code, msg: fmt.Sprintf(format, args...), line: s.line()}
}

// short reports running out of input: a truncated document if it is
// complete, a prolog longer than the bound otherwise.
func (s *prologScanner) short(what string) *prescanError {
	if s.complete {
		return s.fail(CodeNotWellFormed, "document ends inside %s", what)
	}
	return s.fail(CodePrologTooLong, "the prolog and the root start tag must fit in the first %d KiB", prescanLimit>>10)
}

func prologSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func (s *prologScanner) skipSpace() {
	for s.pos < len(s.b) && prologSpace(s.b[s.pos]) {
		s.pos++
	}
}

func (s *prologScanner) hasPrefix(p string) bool { return bytes.HasPrefix(s.b[s.pos:], []byte(p)) }

func (s *prologScanner) run() (prolog, *prescanError) {
	b := s.b
	switch {
	case bytes.HasPrefix(b, []byte{0xEF, 0xBB, 0xBF}):
		s.pos = 3
	case bytes.HasPrefix(b, []byte{0xFE, 0xFF}), bytes.HasPrefix(b, []byte{0xFF, 0xFE}),
		bytes.HasPrefix(b, []byte{0, 0}), bytes.HasPrefix(b, []byte{'<', 0}), bytes.HasPrefix(b, []byte{0, '<'}):
		return prolog{}, s.fail(CodeEncodingNotSupported, "MeMo documents are encoded in UTF-8")
	}
	if s.hasPrefix("<?xml") && len(b) > s.pos+5 && prologSpace(b[s.pos+5]) {
		if err := s.xmlDecl(); err != nil {
			return prolog{}, err
		}
	}
	for {
		s.skipSpace()
		if s.pos >= len(b) {
			if s.complete {
				return prolog{}, s.fail(CodeNotWellFormed, "the document has no root element")
			}
			return prolog{}, s.short("the prolog")
		}
		switch {
		case s.hasPrefix("<!--"):
			// The first "--" after "<!--" ends the comment: "-->".
			end := bytes.Index(b[s.pos+4:], []byte("--"))
			if end < 0 || s.pos+4+end+2 >= len(b) {
				return prolog{}, s.short("a comment")
			}
			if b[s.pos+4+end+2] != '>' {
				return prolog{}, s.fail(CodeNotWellFormed, "'--' is not allowed inside a comment")
			}
			s.pos += 4 + end + 3
		case s.hasPrefix("<?"):
			// An XML declaration stands only at the very start, and a
			// processing instruction has a target.
			if t := b[s.pos+2:]; len(t) >= 4 && strings.EqualFold(string(t[:3]), "xml") && (prologSpace(t[3]) || t[3] == '?') {
				return prolog{}, s.fail(CodeNotWellFormed, "an XML declaration is allowed only at the start of the document")
			} else if len(t) >= 1 && (prologSpace(t[0]) || t[0] == '?') {
				return prolog{}, s.fail(CodeNotWellFormed, "a processing instruction needs a target")
			}
			end := bytes.Index(b[s.pos+2:], []byte("?>"))
			if end < 0 {
				return prolog{}, s.short("a processing instruction")
			}
			s.pos += 2 + end + 2
		case s.hasPrefix("<!"):
			// <!DOCTYPE is the only markup declaration allowed here; refuse
			// it (and any misspelling of it) without looking further.
			if len(b)-s.pos >= 9 && strings.EqualFold(string(b[s.pos:s.pos+9]), "<!DOCTYPE") {
				return prolog{}, s.fail(CodeDoctypeNotAllowed, "a document type declaration (DOCTYPE) is not allowed in a MeMo")
			}
			return prolog{}, s.fail(CodeNotWellFormed, "unexpected markup declaration before the root element")
		case b[s.pos] == '<':
			if s.anyRoot {
				return prolog{rootLine: s.line(), rootOffset: s.pos}, nil
			}
			return s.root()
		default:
			return prolog{}, s.fail(CodeNotWellFormed, "content is not allowed before the root element")
		}
	}
}

// xmlDecl reads the XML declaration and refuses encodings other than UTF-8.
func (s *prologScanner) xmlDecl() *prescanError {
	end := bytes.Index(s.b[s.pos:], []byte("?>"))
	if end < 0 {
		return s.short("the XML declaration")
	}
	decl := s.b[s.pos+5 : s.pos+end]
	if i := bytes.Index(decl, []byte("encoding")); i >= 0 {
		rest := bytes.TrimLeft(decl[i+len("encoding"):], " \t\r\n")
		if bytes.HasPrefix(rest, []byte("=")) {
			rest = bytes.TrimLeft(rest[1:], " \t\r\n")
			if len(rest) > 0 && (rest[0] == '"' || rest[0] == '\'') {
				if j := bytes.IndexByte(rest[1:], rest[0]); j >= 0 {
					enc := rest[1 : 1+j]
					if !bytes.EqualFold(enc, []byte("UTF-8")) && !bytes.EqualFold(enc, []byte("UTF8")) {
						return s.fail(CodeEncodingNotSupported, "encoding %q is not supported; MeMo documents are encoded in UTF-8", enc)
					}
				}
			}
		}
	}
	s.pos += end + 2
	return nil
}

func prologNameByte(c byte) bool {
	return c >= 0x80 || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '-' || c == '.' || c == ':'
}

// name reads an XML name at pos. It aliases the scanned bytes.
func (s *prologScanner) name() []byte {
	start := s.pos
	for s.pos < len(s.b) && prologNameByte(s.b[s.pos]) {
		s.pos++
	}
	return s.b[start:s.pos]
}

// prologAttr is an attribute of the root start tag: its name as written
// and its value with references decoded, both aliasing the scanned bytes
// unless the value had references to decode.
type prologAttr struct{ name, val []byte }

// rootAttrs holds the root's attributes while root reads them. A MeMo's
// root has a dozen (mostly namespace declarations), which are compared
// pairwise for repeats without a map; a root with more gets a map, so
// that a tag built of thousands of attributes costs linear time. The
// methods take and return it by value, so that its first room can stay
// on root's stack.
type rootAttrs struct {
	list []prologAttr
	seen map[string]struct{}
}

// rootAttrsLinear is how many attributes rootAttrs compares pairwise.
const rootAttrsLinear = 16

// add appends a, or reports false when an attribute of its name is there.
func (r rootAttrs) add(a prologAttr) (rootAttrs, bool) {
	if r.seen == nil && len(r.list) < rootAttrsLinear {
		if r.find(a.name) >= 0 {
			return r, false
		}
		r.list = append(r.list, a)
		return r, true
	}
	if r.seen == nil {
		r.seen = make(map[string]struct{}, 2*len(r.list))
		for _, b := range r.list {
			r.seen[string(b.name)] = struct{}{}
		}
	}
	if _, dup := r.seen[string(a.name)]; dup {
		return r, false
	}
	r.seen[string(a.name)] = struct{}{}
	r.list = append(r.list, a)
	return r, true
}

// find returns the index of the attribute named name, or -1.
func (r rootAttrs) find(name []byte) int {
	for i, a := range r.list {
		if bytes.Equal(a.name, name) {
			return i
		}
	}
	return -1
}

// nsOf returns the namespace the root declares for prefix ("" for the
// default namespace) and whether it declares one. "xmlns" and "xmlns:"
// both declare the default namespace; the later one counts.
func (r rootAttrs) nsOf(prefix []byte) (uri []byte, declared bool) {
	for _, a := range r.list {
		if n := a.name; bytes.HasPrefix(n, []byte("xmlns")) &&
			(len(prefix) == 0 && len(n) == 5 || len(n) == 6+len(prefix) && n[5] == ':' && bytes.Equal(n[6:], prefix)) {
			uri, declared = a.val, true
		}
	}
	return uri, declared
}

// root reads the root start tag: its name, namespace declarations and
// memoVersion. It runs for every letter, so it allocates nothing but its
// refusals.
func (s *prologScanner) root() (prolog, *prescanError) {
	rootLine := s.line()
	s.pos++ // '<'
	qname := s.name()
	if len(qname) == 0 {
		return prolog{}, s.fail(CodeNotWellFormed, "invalid root element name")
	}
	var room [rootAttrsLinear]prologAttr
	attrs := rootAttrs{list: room[:0]}
	for {
		sawSpace := s.pos < len(s.b) && prologSpace(s.b[s.pos])
		s.skipSpace()
		if s.pos >= len(s.b) {
			return prolog{}, s.short("the root start tag")
		}
		c := s.b[s.pos]
		if c == '>' || c == '/' {
			break
		}
		if !sawSpace {
			return prolog{}, s.fail(CodeNotWellFormed, "malformed root start tag")
		}
		name := s.name()
		if len(name) == 0 {
			return prolog{}, s.fail(CodeNotWellFormed, "malformed attribute in the root start tag")
		}
		s.skipSpace()
		if s.pos >= len(s.b) {
			return prolog{}, s.short("the root start tag")
		}
		if s.b[s.pos] != '=' {
			return prolog{}, s.fail(CodeNotWellFormed, "attribute %s has no value", name)
		}
		s.pos++
		s.skipSpace()
		if s.pos >= len(s.b) {
			return prolog{}, s.short("the root start tag")
		}
		q := s.b[s.pos]
		if q != '"' && q != '\'' {
			return prolog{}, s.fail(CodeNotWellFormed, "attribute %s has an unquoted value", name)
		}
		end := bytes.IndexByte(s.b[s.pos+1:], q)
		if end < 0 {
			return prolog{}, s.short("the root start tag")
		}
		raw := s.b[s.pos+1 : s.pos+1+end]
		s.pos += end + 2
		val, ok := prologAttrValue(raw)
		if !ok {
			return prolog{}, s.fail(CodeNotWellFormed, "attribute %s has a malformed value", name)
		}
		var fresh bool
		if attrs, fresh = attrs.add(prologAttr{name, val}); !fresh {
			return prolog{}, s.fail(CodeNotWellFormed, "attribute %s is repeated", name)
		}
	}
	var prefix, local []byte
	if i := bytes.IndexByte(qname, ':'); i >= 0 {
		prefix, local = qname[:i], qname[i+1:]
	} else {
		local = qname
	}
	uri, declared := attrs.nsOf(prefix)
	fail := func(code, format string, args ...any) (prolog, *prescanError) {
		return prolog{}, &prescanError{code: code, msg: fmt.Sprintf(format, args...), line: rootLine, field: "/" + string(local)}
	}
	switch {
	case len(prefix) != 0 && !declared:
		return fail(CodeRootInvalid, "the root element's prefix %q is not declared", prefix)
	case string(local) != "Message":
		return fail(CodeRootInvalid, "the root element must be Message in namespace %s, not %s", NSMemo, local)
	case string(uri) != NSMemo:
		if len(uri) == 0 {
			return fail(CodeRootInvalid, "the root element Message must be in namespace %s; it has no namespace", NSMemo)
		}
		return fail(CodeRootInvalid, "the root element Message must be in namespace %s, not %s", NSMemo, uri)
	}
	i := attrs.find([]byte("memoVersion"))
	if i < 0 {
		return fail(CodeVersionMissing, "the Message element has no memoVersion attribute; supported versions are %s", strings.Join(SupportedVersions, " and "))
	}
	rawVersion := attrs.list[i].val
	for _, sv := range SupportedVersions {
		// The canonical spelling, as nearly every letter writes it, needs
		// no canonicalDecimal.
		if string(rawVersion) == sv {
			return prolog{version: sv, rootLine: rootLine}, nil
		}
	}
	raw := string(rawVersion)
	v := canonicalDecimal(raw)
	for _, sv := range SupportedVersions {
		if v == sv {
			return prolog{version: sv, rootLine: rootLine}, nil
		}
	}
	p, err := fail(CodeVersionNotSupported, "memoVersion %q is not supported; supported versions are %s", raw, strings.Join(SupportedVersions, " and "))
	err.field = "/Message/@memoVersion"
	if len(raw) <= 32 {
		err.value = raw
	}
	return p, err
}

// prologAttrValue decodes the references XML allows in an attribute value
// without a DTD (the five predefined entities and character references) and
// normalises whitespace as XML does. Any other reference is malformed. A
// value with nothing to decode is raw itself, not a copy.
func prologAttrValue(raw []byte) ([]byte, bool) {
	if bytes.IndexByte(raw, '<') >= 0 {
		return nil, false
	}
	if bytes.IndexByte(raw, '&') < 0 && !bytes.ContainsAny(raw, "\t\r\n") {
		return raw, true
	}
	v, ok := DecodeReferences(raw, true)
	return []byte(v), ok
}

// DecodeReferences decodes the references XML allows without a DTD — the
// five predefined entities and character references — in character data,
// or (attr) in an attribute value, where it also normalises whitespace as
// XML does and refuses '<'. Any other reference is malformed (false).
func DecodeReferences(raw []byte, attr bool) (string, bool) {
	if attr && bytes.IndexByte(raw, '<') >= 0 {
		return "", false
	}
	var out strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case attr && (c == '\t' || c == '\r' || c == '\n'):
			out.WriteByte(' ')
		case c == '&':
			end := bytes.IndexByte(raw[i:], ';')
			if end < 0 {
				return "", false
			}
			ref := string(raw[i+1 : i+end])
			i += end
			switch ref {
			case "amp":
				out.WriteByte('&')
			case "lt":
				out.WriteByte('<')
			case "gt":
				out.WriteByte('>')
			case "quot":
				out.WriteByte('"')
			case "apos":
				out.WriteByte('\'')
			default:
				r, ok := charRef(ref)
				if !ok {
					return "", false
				}
				out.WriteRune(r)
			}
		default:
			out.WriteByte(c)
		}
	}
	return out.String(), true
}

func charRef(ref string) (rune, bool) {
	if len(ref) < 2 || ref[0] != '#' {
		return 0, false
	}
	base, digits := 10, ref[1:]
	if digits[0] == 'x' {
		base, digits = 16, digits[1:]
	}
	if digits == "" || len(digits) > 8 {
		return 0, false
	}
	var r rune
	for _, c := range digits {
		var d rune
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case base == 16 && c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case base == 16 && c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r*rune(base) + d
	}
	return r, r > 0 && r <= 0x10FFFF
}

// canonicalDecimal writes an xs:decimal lexical value in its canonical
// form, so that " 1.10 " selects the same schema as "1.1" (the schema types
// memoVersion as xs:decimal). Values that are not decimals come back
// trimmed and otherwise unchanged.
func canonicalDecimal(v string) string {
	v = strings.TrimSpace(v)
	s := strings.TrimPrefix(v, "+")
	if s == "" || strings.HasPrefix(s, "-") {
		return v
	}
	intPart, frac, _ := strings.Cut(s, ".")
	for _, c := range intPart + frac {
		if c < '0' || c > '9' {
			return v
		}
	}
	intPart = strings.TrimLeft(intPart, "0")
	frac = strings.TrimRight(frac, "0")
	if intPart == "" {
		intPart = "0"
	}
	if frac == "" {
		frac = "0"
	}
	return intPart + "." + frac
}
