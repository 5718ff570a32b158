package memo

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// A small namespace-aware pull pullScanner for the well-formed, already
// schema-valid documents the hub parses. It exists because encoding/xml is
// several times slower and buffers every text node whole: a 99 MB
// attachment would be copied twice before the model saw it. This pullScanner
// reads through a fixed window and hands character data to a sink in chunks,
// with their absolute offsets, so large text can be referenced instead of
// copied.
//
// Supported: elements, attributes, namespace declarations (default and
// prefixed), the five predefined entities and numeric character references,
// CDATA sections, comments, processing instructions, a UTF-8 BOM, CRLF line
// ends. Refused: DOCTYPE (no DTDs, no entity expansion), other entities,
// encodings other than UTF-8, and anything not well-formed enough to parse.

const (
	scanWindow  = 64 << 10
	maxTagBytes = 1 << 20 // a start tag (with its attributes) larger than this is refused
)

type tokKind int

const (
	tokEOF tokKind = iota
	tokStart
	tokEnd
)

// Namespace ids: the known namespaces get small numbers; any other is nsOther.
const (
	nsNone = iota
	nsOther
	nsMemoID
	nsGrdID
	nsKleID
	nsFormID
	nsDmvID
	nsGlnID
	nsUddID
	nsSorID
	nsCount
)

var nsIDs = map[string]int{
	NSMemo: nsMemoID, NSGrd: nsGrdID, NSKle: nsKleID, NSForm: nsFormID,
	NSDmv: nsDmvID, NSGln: nsGlnID, NSUdd: nsUddID, NSSor: nsSorID,
}

// nsPrefix is the canonical prefix of each known namespace, used in the
// element names the pullScanner reports ("grd:CPRdata"; MeMo's own elements
// have no prefix).
var nsPrefix = [nsCount]string{nsNone: "?:", nsOther: "?:", nsMemoID: "", nsGrdID: "grd:", nsKleID: "kle:", nsFormID: "form:", nsDmvID: "dmv:", nsGlnID: "gln:", nsUddID: "udd:", nsSorID: "sor:"}

type nsBinding struct {
	prefix string
	uri    string
	id     int
	depth  int
}

type attr struct {
	local string
	ns    int
	value string
}

// textSink receives character data: raw bytes are literal document bytes at
// absolute offset off (still subject to line-end normalisation); char bytes
// come from a character or entity reference.
type textSink interface {
	raw(b []byte, off int64)
	char(b []byte)
}

type pullScanner struct {
	r        io.Reader // nil when the whole document is in buf
	buf      []byte
	pos, end int
	base     int64 // absolute offset of buf[0]
	line     int
	eof      bool
	rerr     error

	depth    int
	open     []string
	ns       []nsBinding
	names    [nsCount]map[string]string
	attrs    []attr
	selfEnd  bool // the last start tag was <x/>: report its end next
	started  bool
	rootSeen bool

	// the current token
	name     string // canonical element name, e.g. "Sender" or "grd:CPRdata"
	tokLine  int
	tokDepth int
	scratch  []byte

	// rec, when not nil, holds libxml2's records of the document's
	// elements (recorded.go): next takes the tags from them instead of
	// reading them.
	rec *records
}

type syntaxError struct {
	line int
	msg  string
}

func (e *syntaxError) Error() string { return "line " + strconv.Itoa(e.line) + ": " + e.msg }

// windows recycles scan windows: nothing refers into a window after a
// parse (text is copied, contents are offsets or decoded copies).
var windows = sync.Pool{New: func() any { b := make([]byte, scanWindow); return &b }}

// release returns the window to the pool; the scanner is unusable after.
func (s *pullScanner) release() {
	if s.r != nil && len(s.buf) == scanWindow {
		b := s.buf
		windows.Put(&b)
	}
	s.buf = nil
}

func (s *pullScanner) fail(msg string) error { return &syntaxError{line: s.line, msg: msg} }

// offset is the absolute offset of buf[pos].
func (s *pullScanner) offset() int64 { return s.base + int64(s.pos) }

// fill reads more input, keeping buf[pos:end]. It reports whether any bytes were added.
func (s *pullScanner) fill() bool {
	if s.eof {
		return false
	}
	if s.pos > 0 {
		n := copy(s.buf, s.buf[s.pos:s.end])
		s.base += int64(s.pos)
		s.pos, s.end = 0, n
	}
	if s.end == len(s.buf) {
		if len(s.buf) >= maxTagBytes {
			s.rerr = errors.New("markup too large")
			s.eof = true
			return false
		}
		nb := make([]byte, 2*len(s.buf))
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	for {
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		if err != nil {
			s.eof = true
			if err != io.EOF {
				s.rerr = err
			}
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
}

// need makes sure n bytes are available at pos.
func (s *pullScanner) need(n int) bool {
	for s.end-s.pos < n {
		if !s.fill() {
			return false
		}
	}
	return true
}

// advance consumes n bytes, counting lines.
func (s *pullScanner) advance(n int) {
	s.line += bytes.Count(s.buf[s.pos:s.pos+n], nl)
	s.pos += n
}

var nl = []byte{'\n'}

// find returns the index relative to pos of sep, reading more as needed, or -1 at EOF.
func (s *pullScanner) find(sep []byte) int {
	from := 0
	for {
		if i := bytes.Index(s.buf[s.pos+from:s.end], sep); i >= 0 {
			return from + i
		}
		if k := s.end - s.pos - len(sep) + 1; k > from {
			from = k
		}
		if !s.fill() {
			return -1
		}
	}
}

// readErr is the error to report at an unexpected end of input.
func (s *pullScanner) readErr(msg string) error {
	if s.rerr != nil {
		return s.rerr
	}
	return s.fail(msg)
}

// next returns the next start or end tag, skipping whitespace, comments and
// processing instructions. Non-whitespace text between elements is an error.
func (s *pullScanner) next() (tokKind, error) {
	if s.selfEnd {
		s.selfEnd = false
		s.depth--
		s.popNS()
		s.name = s.open[len(s.open)-1]
		s.open = s.open[:len(s.open)-1]
		return tokEnd, nil
	}
	if !s.started {
		s.started = true
		if s.need(3) && s.buf[s.pos] == 0xEF && s.buf[s.pos+1] == 0xBB && s.buf[s.pos+2] == 0xBF {
			s.pos += 3
		} else if s.need(2) && (s.buf[s.pos] == 0xFE || s.buf[s.pos] == 0xFF || s.buf[s.pos] == 0) {
			return tokEOF, s.fail("only UTF-8 documents are accepted")
		}
	}
	for {
		// skip whitespace
		for {
			for s.pos < s.end && isWS(s.buf[s.pos]) {
				if s.buf[s.pos] == '\n' {
					s.line++
				}
				s.pos++
			}
			if s.pos < s.end || !s.fill() {
				break
			}
		}
		if s.pos >= s.end {
			if s.rerr != nil {
				return tokEOF, s.rerr
			}
			if s.depth != 0 || !s.rootSeen {
				return tokEOF, s.fail("unexpected end of document")
			}
			if s.rec != nil && !s.rec.done() {
				return tokEOF, s.rec.mismatch()
			}
			return tokEOF, nil
		}
		if s.buf[s.pos] != '<' {
			if s.depth == 0 {
				return tokEOF, s.fail("text outside the root element")
			}
			return tokEOF, s.fail("unexpected text in element content")
		}
		if !s.need(2) {
			return tokEOF, s.readErr("unexpected end of document")
		}
		switch s.buf[s.pos+1] {
		case '!':
			if err := s.bang(nil); err != nil {
				return tokEOF, err
			}
		case '?':
			if err := s.pi(); err != nil {
				return tokEOF, err
			}
		case '/':
			if s.rec != nil {
				return tokEnd, s.recordedEnd()
			}
			return tokEnd, s.endTag()
		default:
			if s.depth == 0 && s.rootSeen {
				return tokEOF, s.fail("a second root element")
			}
			if s.rec != nil {
				return tokStart, s.recordedStart()
			}
			return tokStart, s.startTag()
		}
	}
}

// bang handles <!-- -->, <![CDATA[ ]]> (only with a sink) and refuses <!DOCTYPE.
func (s *pullScanner) bang(sink textSink) error {
	s.need(9)
	rest := s.buf[s.pos:s.end]
	switch {
	case bytes.HasPrefix(rest, []byte("<!--")):
		s.advance(4)
		i := s.find([]byte("-->"))
		if i < 0 {
			return s.readErr("unterminated comment")
		}
		s.advance(i + 3)
		return nil
	case bytes.HasPrefix(rest, []byte("<![CDATA[")):
		if sink == nil {
			return s.fail("CDATA section in element content")
		}
		s.advance(9)
		for {
			i := bytes.Index(s.buf[s.pos:s.end], []byte("]]>"))
			if i >= 0 {
				if i > 0 {
					sink.raw(s.buf[s.pos:s.pos+i], s.offset())
				}
				s.advance(i + 3)
				return nil
			}
			// emit all but a possible partial terminator
			k := s.end - s.pos - 2
			if k > 0 {
				sink.raw(s.buf[s.pos:s.pos+k], s.offset())
				s.advance(k)
			}
			if !s.fill() {
				return s.readErr("unterminated CDATA section")
			}
		}
	case bytes.HasPrefix(rest, []byte("<!DOCTYPE")) || bytes.HasPrefix(rest, []byte("<!doctype")):
		return s.fail("DOCTYPE is not allowed")
	}
	return s.fail("malformed markup declaration")
}

// pi skips a processing instruction; an XML declaration must not name an
// encoding other than UTF-8.
func (s *pullScanner) pi() error {
	i := s.find([]byte("?>"))
	if i < 0 {
		return s.readErr("unterminated processing instruction")
	}
	body := s.buf[s.pos+2 : s.pos+i]
	if bytes.HasPrefix(body, []byte("xml")) && (len(body) == 3 || isWS(body[3])) {
		if k := bytes.Index(body, []byte("encoding")); k >= 0 {
			v := body[k+8:]
			v = bytes.TrimLeft(v, " \t\r\n=")
			if len(v) > 0 && (v[0] == '"' || v[0] == '\'') {
				q := v[0]
				if e := bytes.IndexByte(v[1:], q); e >= 0 {
					if !utf8Encoding(v[1 : 1+e]) {
						return s.fail("only UTF-8 documents are accepted")
					}
				}
			}
		}
	}
	s.advance(i + 2)
	return nil
}

// utf8Encoding reports whether an XML declaration's encoding name, in
// upper case, is UTF-8, UTF8 or US-ASCII. An ASCII name (every letter's)
// is compared without the copy bytes.ToUpper makes; for ASCII, EqualFold
// against an upper-case name is that comparison.
func utf8Encoding(name []byte) bool {
	for _, c := range name {
		if c >= utf8.RuneSelf {
			up := bytes.ToUpper(name)
			return bytes.Equal(up, []byte("UTF-8")) || bytes.Equal(up, []byte("UTF8")) || bytes.Equal(up, []byte("US-ASCII"))
		}
	}
	return bytes.EqualFold(name, []byte("UTF-8")) || bytes.EqualFold(name, []byte("UTF8")) || bytes.EqualFold(name, []byte("US-ASCII"))
}

func pullNameByte(c byte) bool {
	return c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '/' && c != '>' && c != '=' && c != '<' && c != '"' && c != '\''
}

// startTag parses <name attr="v" ...> or <name .../> at pos.
func (s *pullScanner) startTag() error {
	i := s.find([]byte{'>'})
	// '>' may legally occur inside an attribute value: extend past quoted values.
	for {
		if i < 0 {
			return s.readErr("unterminated start tag")
		}
		if t := s.buf[s.pos : s.pos+i]; bytes.IndexByte(t, '=') < 0 || quotesBalanced(t) {
			break
		}
		j := bytes.IndexByte(s.buf[s.pos+i+1:s.end], '>')
		for j < 0 {
			if !s.fill() {
				return s.readErr("unterminated start tag")
			}
			j = bytes.IndexByte(s.buf[s.pos+i+1:s.end], '>')
		}
		i += 1 + j
	}
	tag := s.buf[s.pos+1 : s.pos+i]
	s.tokLine = s.line
	self := len(tag) > 0 && tag[len(tag)-1] == '/'
	if self {
		tag = tag[:len(tag)-1]
	}
	// element name
	n := 0
	for n < len(tag) && pullNameByte(tag[n]) {
		n++
	}
	if n == 0 {
		return s.fail("missing element name")
	}
	qname := tag[:n]
	rest := tag[n:]
	s.depth++
	s.tokDepth = s.depth
	s.rootSeen = true
	// attributes: first pass binds namespaces, second resolves names
	s.attrs = s.attrs[:0]
	var raws [8]rawAttr
	list, err := s.splitAttrs(rest, raws[:0])
	if err != nil {
		return err
	}
	for _, a := range list {
		switch {
		case bytes.Equal(a.name, []byte("xmlns")):
			v, err := s.attrValue(a.val)
			if err != nil {
				return err
			}
			s.bind("", v)
		case bytes.HasPrefix(a.name, []byte("xmlns:")):
			v, err := s.attrValue(a.val)
			if err != nil {
				return err
			}
			if v == "" {
				return s.fail("empty namespace for a prefix")
			}
			s.bind(string(a.name[6:]), v)
		}
	}
	for _, a := range list {
		if bytes.HasPrefix(a.name, []byte("xmlns")) && (len(a.name) == 5 || a.name[5] == ':') {
			continue
		}
		ns, local := nsNone, a.name
		if c := bytes.IndexByte(a.name, ':'); c >= 0 {
			id, ok := s.lookup(a.name[:c])
			if !ok && !bytes.Equal(a.name[:c], []byte("xml")) {
				return s.fail("undeclared attribute prefix")
			}
			ns, local = id, a.name[c+1:]
		}
		v, err := s.attrValue(a.val)
		if err != nil {
			return err
		}
		s.attrs = append(s.attrs, attr{local: string(local), ns: ns, value: v})
	}
	// element name
	var prefix, local []byte
	if c := bytes.IndexByte(qname, ':'); c >= 0 {
		prefix, local = qname[:c], qname[c+1:]
	} else {
		local = qname
	}
	id, ok := s.lookup(prefix)
	if !ok && prefix != nil {
		return s.fail("undeclared element prefix")
	}
	s.name = s.intern(id, local)
	s.open = append(s.open, s.name)
	s.advance(i + 1)
	if self {
		s.selfEnd = true
	}
	return nil
}

// rawAttr is an attribute as written: its qualified name and its value
// between the quotes, undecoded.
type rawAttr struct{ name, val []byte }

// splitAttrs appends the attributes of rest, what follows the element name
// in a start tag, to list.
func (s *pullScanner) splitAttrs(rest []byte, list []rawAttr) ([]rawAttr, error) {
	for {
		k := 0
		for k < len(rest) && isWS(rest[k]) {
			k++
		}
		rest = rest[k:]
		if len(rest) == 0 {
			break
		}
		if k == 0 {
			return nil, s.fail("malformed attribute")
		}
		m := 0
		for m < len(rest) && pullNameByte(rest[m]) {
			m++
		}
		if m == 0 {
			return nil, s.fail("malformed attribute")
		}
		an := rest[:m]
		rest = bytes.TrimLeft(rest[m:], " \t\r\n")
		if len(rest) == 0 || rest[0] != '=' {
			return nil, s.fail("attribute without value")
		}
		rest = bytes.TrimLeft(rest[1:], " \t\r\n")
		if len(rest) == 0 || (rest[0] != '"' && rest[0] != '\'') {
			return nil, s.fail("unquoted attribute value")
		}
		q := rest[0]
		e := bytes.IndexByte(rest[1:], q)
		if e < 0 {
			return nil, s.fail("unterminated attribute value")
		}
		list = append(list, rawAttr{an, rest[1 : 1+e]})
		rest = rest[e+2:]
	}
	return list, nil
}

func quotesBalanced(b []byte) bool {
	var q byte
	for _, c := range b {
		switch {
		case q == 0 && (c == '"' || c == '\''):
			q = c
		case c == q:
			q = 0
		}
	}
	return q == 0
}

func (s *pullScanner) intern(id int, local []byte) string {
	if n := len(local); n > 0 {
		if v := nameCache[id][nameHash(local)]; len(v)-len(nsPrefix[id]) == n && v[len(nsPrefix[id]):] == string(local) {
			return v
		}
	}
	if v, ok := knownNames[id][string(local)]; ok {
		return v
	}
	m := s.names[id]
	if v, ok := m[string(local)]; ok {
		return v
	}
	v := nsPrefix[id] + string(local)
	if m == nil {
		m = make(map[string]string, 8)
		s.names[id] = m
	}
	if len(m) < 512 {
		m[v[len(nsPrefix[id]):]] = v
	}
	return v
}

// knownNames holds every element name of the MeMo schemas per namespace,
// canonically prefixed, so a parse allocates no names.
var knownNames = func() (k [nsCount]map[string]string) {
	lists := map[int]string{
		nsMemoID: "Action AdditionalContentData AdditionalDocument AdditionalReplyData AttentionData AttentionPerson CaseID ContactInfo ContactPoint ContentData ContentResponsible EMail EntryPoint File ForwardData GeneratingSystem MainDocument Message MessageBody MessageHeader Recipient ReplyData Representative Reservation Sender TechnicalDocument Telephone abstract actionCode additionalDocumentID additionalNotification caseID caseSystem comment contactGroup contactPointID content contentDataName contentDataType contentDataValue contentResponsibleID createdDateTime description doNotDeliverUntilDate emailAddress encodingFormat endDateTime filename generatingSystemID idType idTypeLabel label language legalNotification location mainDocumentID mandatory messageCode messageID messageType messageUUID notification organizerMail organizerName originalContentResponsible originalMessageDateTime originalRepresentative originalSender personID postType recipientID relatedAgent reply replyByDateTime replyUUID representativeID reservationUUID senderID startDateTime technicalDocumentID telephoneNumber url value",
		nsDmvID:  "MotorVehicle chassisNumber licenseNumber",
		nsFormID: "FORMdata activityFacet label taskKey version",
		nsGlnID:  "GlobalLocationNumber globalLocationNumber location",
		nsGrdID:  "Address AddressPoint CPRdata CVRdata EID ProductionUnit PropertyNumber SEnumber UnstructuredAddress addressLabel city co companyName country cprNumber cvrNumber door eID floor geographicEastingMeasure geographicHeightMeasure geographicNorthingMeasure houseNumber id label name productionUnitName productionUnitNumber propertyNumber seNumber unstructured zipCode",
		nsKleID:  "KLEdata activityFacet label subjectKey version",
		nsSorID:  "SORdata entryName sorIdentifier",
		nsUddID:  "Education educationCode educationName",
	}
	for id, list := range lists {
		k[id] = make(map[string]string)
		for _, n := range strings.Fields(list) {
			v := nsPrefix[id] + n
			k[id][n] = v
			if h := nameHash([]byte(n)); nameCache[id][h] == "" {
				nameCache[id][h] = v
			}
		}
	}
	return k
}()

// nameCache is a direct-mapped front of knownNames: most names are found
// with one hash of three bytes and one comparison, no map lookup.
var nameCache [nsCount][256]string

func nameHash(b []byte) uint8 {
	n := len(b)
	return uint8(n*31 + int(b[0])*7 + int(b[n-1])*13 + int(b[n/2])*5 + int(b[(n*3)/4])*3)
}

func (s *pullScanner) bind(prefix, uri string) {
	id := nsNone
	if uri != "" {
		id = nsOther
		if k, ok := nsIDs[uri]; ok {
			id = k
		}
	}
	s.ns = append(s.ns, nsBinding{prefix: prefix, uri: uri, id: id, depth: s.depth})
}

func (s *pullScanner) popNS() {
	for len(s.ns) > 0 && s.ns[len(s.ns)-1].depth > s.depth {
		s.ns = s.ns[:len(s.ns)-1]
	}
}

// lookup resolves a prefix (nil or empty: the default namespace).
func (s *pullScanner) lookup(prefix []byte) (int, bool) {
	for i := len(s.ns) - 1; i >= 0; i-- {
		if s.ns[i].prefix == string(prefix) {
			return s.ns[i].id, true
		}
	}
	return nsNone, len(prefix) == 0
}

// attrValue decodes references and normalises whitespace in an attribute value.
func (s *pullScanner) attrValue(v []byte) (string, error) {
	if bytes.IndexByte(v, '&') < 0 && !bytes.ContainsAny(v, "\t\r\n<") {
		return string(v), nil
	}
	if bytes.IndexByte(v, '<') >= 0 {
		return "", s.fail("'<' in attribute value")
	}
	out := s.scratch[:0]
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch c {
		case '\t', '\n':
			out = append(out, ' ')
		case '\r':
			out = append(out, ' ')
			if i+1 < len(v) && v[i+1] == '\n' {
				i++
			}
		case '&':
			e := bytes.IndexByte(v[i:], ';')
			if e < 0 {
				return "", s.fail("unterminated reference")
			}
			r, err := s.ref(v[i+1 : i+e])
			if err != nil {
				return "", err
			}
			out = append(out, r...)
			i += e
		default:
			out = append(out, c)
		}
	}
	s.scratch = out
	return string(out), nil
}

// ref decodes the body of &body; into UTF-8.
func (s *pullScanner) ref(body []byte) ([]byte, error) {
	switch string(body) {
	case "lt":
		return []byte("<"), nil
	case "gt":
		return []byte(">"), nil
	case "amp":
		return []byte("&"), nil
	case "apos":
		return []byte("'"), nil
	case "quot":
		return []byte("\""), nil
	}
	if len(body) < 2 || body[0] != '#' {
		return nil, s.fail("undefined entity")
	}
	var n uint64
	var err error
	if body[1] == 'x' {
		n, err = strconv.ParseUint(string(body[2:]), 16, 32)
	} else {
		n, err = strconv.ParseUint(string(body[1:]), 10, 32)
	}
	r := rune(n)
	if err != nil || !isXMLChar(r) {
		return nil, s.fail("invalid character reference")
	}
	var b [4]byte
	return b[:utf8.EncodeRune(b[:], r)], nil
}

func isXMLChar(r rune) bool {
	return r == 0x9 || r == 0xA || r == 0xD || (r >= 0x20 && r <= 0xD7FF) ||
		(r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
}

// endTag consumes </name> and checks it closes the innermost open element.
func (s *pullScanner) endTag() error {
	i := s.find([]byte{'>'})
	if i < 0 {
		return s.readErr("unterminated end tag")
	}
	qname := bytes.TrimRight(s.buf[s.pos+2:s.pos+i], " \t\r\n")
	var prefix, local []byte
	if c := bytes.IndexByte(qname, ':'); c >= 0 {
		prefix, local = qname[:c], qname[c+1:]
	} else {
		local = qname
	}
	id, ok := s.lookup(prefix)
	if !ok || s.depth == 0 {
		return s.fail("unexpected end tag")
	}
	top := s.open[len(s.open)-1]
	if name := s.intern(id, local); name != top {
		return s.fail("mismatched end tag </" + string(qname) + ">")
	}
	s.name = top
	s.open = s.open[:len(s.open)-1]
	s.tokLine = s.line
	s.advance(i + 1)
	s.depth--
	s.popNS()
	return nil
}

// text streams the character data of a leaf element to sink, up to (not
// including) the next tag. A child element is an error.
func (s *pullScanner) text(sink textSink) error {
	if s.selfEnd {
		return nil
	}
	for {
		if s.pos >= s.end && !s.fill() {
			return s.readErr("unexpected end of document")
		}
		w := s.buf[s.pos:s.end]
		lt := bytes.IndexByte(w, '<')
		seg := w
		if lt >= 0 {
			seg = w[:lt]
		}
		if amp := bytes.IndexByte(seg, '&'); amp >= 0 {
			if amp > 0 {
				sink.raw(seg[:amp], s.offset())
				s.advance(amp)
			}
			e := s.find([]byte{';'})
			if e < 0 || e > 16 {
				return s.readErr("malformed reference")
			}
			r, err := s.ref(s.buf[s.pos+1 : s.pos+e])
			if err != nil {
				return err
			}
			sink.char(r)
			s.advance(e + 1)
			continue
		}
		if len(seg) > 0 {
			sink.raw(seg, s.offset())
			s.advance(len(seg))
		}
		if lt < 0 {
			continue
		}
		if !s.need(2) {
			return s.readErr("unexpected end of document")
		}
		switch s.buf[s.pos+1] {
		case '/':
			return nil
		case '!':
			if err := s.bang(sink); err != nil {
				return err
			}
		case '?':
			if err := s.pi(); err != nil {
				return err
			}
		default:
			return s.fail("unexpected child element in a simple element")
		}
	}
}

// stringSink accumulates a leaf's text with XML line-end normalisation.
type stringSink struct {
	b      []byte
	skipLF bool
	limit  int
	over   bool
}

func (t *stringSink) raw(b []byte, _ int64) {
	if len(t.b)+len(b) > t.limit {
		t.over = true
		return
	}
	if bytes.IndexByte(b, '\r') < 0 {
		if t.skipLF && len(b) > 0 && b[0] == '\n' {
			b = b[1:]
		}
		t.skipLF = false
		t.b = append(t.b, b...)
		return
	}
	for _, c := range b {
		if t.skipLF {
			t.skipLF = false
			if c == '\n' {
				continue
			}
		}
		if c == '\r' {
			t.b = append(t.b, '\n')
			t.skipLF = true
			continue
		}
		t.b = append(t.b, c)
	}
}

func (t *stringSink) char(b []byte) {
	t.skipLF = false
	if len(t.b)+len(b) > t.limit {
		t.over = true
		return
	}
	t.b = append(t.b, b...)
}
