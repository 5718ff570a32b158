package sf1601

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
)

// NSFjernprint is the namespace of the OIO fjernprint format.
const NSFjernprint = "urn:oio:fjernprint:1.0.0"

// Codes of the problems the Decoder reports (hub.FieldError.Code), beside
// memo's xml.not.well.formed, xml.doctype.not.allowed,
// xml.encoding.not.supported, xml.prolog.too.long, memo.root.invalid (a
// Message outside the MeMo namespace) and memo.too.large (a Message over
// Limits.MaxMemo).
const (
	CodeRootInvalid       = "kombi.root.invalid"
	CodeChoiceMissing     = "kombi.valg.kode.missing"
	CodeChoiceDuplicate   = "kombi.valg.kode.duplicate"
	CodeChoiceUnknown     = "kombi.valg.kode.unknown"
	CodeMessageMissing    = "kombi.message.missing"
	CodeMessageDuplicate  = "kombi.message.duplicate"
	CodePrintDuplicate    = "kombi.fjernprint.duplicate"
	CodePrintTooLarge     = "kombi.fjernprint.too.large"
	CodePrintRecipients   = "kombi.fjernprint.recipients"
	CodeElementUnexpected = "kombi.element.unexpected"
	CodeTextUnexpected    = "kombi.text.unexpected"
	CodeTooLarge          = "kombi.too.large"
	CodeTooDeep           = "xml.nesting.too.deep"
)

// Limits bound what one request may make the Decoder read and hold.
type Limits struct {
	// MaxMemo is the largest Message, in bytes as written out (the hub's
	// MeMo size limit).
	MaxMemo int64
	// MaxPrint is the largest fjernprint part, in bytes as written out;
	// it is held in memory.
	MaxPrint int64
	// MaxEnvelope bounds every other byte of the request together: the
	// prolog, the wrapper's tags, KombiValgKode, whitespace and comments
	// between them (default 64 KiB).
	MaxEnvelope int64
	// MaxDepth bounds element nesting inside the Message and the
	// fjernprint part (default 256, libxml2's own default bound).
	MaxDepth int
	// PrintSlots, when set, bounds how many fjernprint parts are held in
	// memory at once across every Decoder sharing it (each up to MaxPrint):
	// a request finding none free is Unavailable, to be retried. A Decoder
	// holds its slot until Release.
	PrintSlots chan struct{}
}

// DefaultMaxEnvelope and DefaultMaxDepth are the Limits' defaults.
const (
	DefaultMaxEnvelope = 64 << 10
	DefaultMaxDepth    = 256
)

// MaxBody is the most bytes a request within lim can have: a larger
// declared Content-Length can be refused before reading.
func (lim Limits) MaxBody() int64 {
	lim = lim.withDefaults()
	return lim.MaxMemo + lim.MaxPrint + lim.MaxEnvelope
}

func (lim Limits) withDefaults() Limits {
	if lim.MaxMemo <= 0 {
		lim.MaxMemo = memo.DefaultMaxSize
	}
	if lim.MaxPrint <= 0 {
		lim.MaxPrint = lim.MaxMemo
	}
	if lim.MaxEnvelope <= 0 {
		lim.MaxEnvelope = DefaultMaxEnvelope
	}
	if lim.MaxDepth <= 0 {
		lim.MaxDepth = DefaultMaxDepth
	}
	return lim
}

// Request is what a kombi_request says besides its Message.
type Request struct {
	// Choice is the KombiValgKode as sent (entities decoded, trimmed).
	Choice string
	// Mode is the delivery mode it names.
	Mode hub.Mode
	// MessageLine is the line of the request the Message starts on.
	MessageLine int
	// Print is the fjernprint part as a standalone document
	// (ForsendelseISamling with its in-scope namespace declarations), nil
	// when the request has none.
	Print []byte
	// PrintLine is the line of the request Print starts on.
	PrintLine int
}

// ParseChoice maps a KombiValgKode to the hub's delivery mode. SF1601's
// four values are accepted in any letter case; anything else is Invalid
// with code kombi.valg.kode.unknown.
func ParseChoice(s string) (hub.Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "automatisk valg":
		return hub.ModeAutomatic, nil
	case "digital post":
		return hub.ModeDigitalOnly, nil
	case "fysisk post":
		return hub.ModePrintOnly, nil
	case "nemsms":
		return hub.ModeNemSMS, nil
	}
	v := s
	if len(v) > 64 {
		v = v[:64]
	}
	return "", fail(CodeChoiceUnknown, "/kombi_request/KombiValgKode", 0, v,
		"KombiValgKode must be one of \"Automatisk Valg\", \"Digital Post\", \"Fysisk Post\" and \"NemSMS\"")
}

// fail builds the Decoder's error: Invalid, or TooLarge for the size
// codes, with one field error.
func fail(code, field string, line int, value, format string, args ...any) *hub.Error {
	msg := fmt.Sprintf(format, args...)
	c := hub.Invalid
	switch code {
	case CodeTooLarge, CodePrintTooLarge, memo.CodeTooLarge:
		c = hub.TooLarge
	}
	return &hub.Error{Code: c, Message: "the kombi_request is not acceptable: " + msg,
		Fields: []hub.FieldError{{Resource: "kombi", Field: field, Code: code, Message: msg, RejectedValue: value, Line: line}}}
}

// Decoder reads one kombi_request: Message streams its memo:Message out,
// Finish reads the rest. Not safe for concurrent use.
type Decoder struct {
	br     *bufio.Reader
	pooled *bufio.Reader // br as NewDecoder took it from readers
	lim    Limits

	printSlot bool // holds one of lim.PrintSlots

	line     int   // current line, 1-based
	envelope int64 // bytes read that were not copied out

	// Copying: while w is set, every byte read goes to w (through out).
	w       io.Writer
	out     []byte
	outp    *[]byte // out's buffer as copyElement took it from outs
	copied  int64
	copyMax int64
	tooBig  func() error
	// The open elements inside the element being copied: their names end
	// to end in names, where each starts at its offset in stack.
	names []byte
	stack []int

	started  bool   // the root start tag has been read
	ended    bool   // the root end tag has been read
	rootName string // the root's qualified name
	rootNS   []nsDecl

	req        Request
	haveChoice bool
	messages   int
	err        error // sticky: the first failure
}

// nsDecl is a namespace declaration as written: name is "xmlns" or
// "xmlns:p", raw the attribute's source text (name="value").
type nsDecl struct {
	name, prefix, uri, raw string
}

// Release gives back the print slot the Decoder holds (see
// Limits.PrintSlots) and its buffers, once the Decoder is done with: it
// must not be used after (what it returned stays valid: the Message went
// to the writer, the Request's fields are its own). It may be called more
// than once.
func (d *Decoder) Release() {
	if d.printSlot {
		d.printSlot = false
		<-d.lim.PrintSlots
	}
	if d.pooled != nil {
		d.pooled.Reset(nil)
		readers.Put(d.pooled)
		d.pooled, d.br = nil, nil
	}
	if d.outp != nil {
		if cap(d.out) == outBuf {
			*d.outp = d.out[:0]
			outs.Put(d.outp)
		}
		d.outp, d.out = nil, nil
	}
}

// A kombi_request of a few KiB would allocate more for the Decoder's read
// and copy buffers than its own size; released Decoders give them back.
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBuf) }}
	outs    = sync.Pool{New: func() any { b := make([]byte, 0, outBuf); return &b }}
)

// NewDecoder reads a kombi_request from r within lim.
func NewDecoder(r io.Reader, lim Limits) *Decoder {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return &Decoder{br: br, pooled: br, lim: lim.withDefaults(), line: 1}
}

// Message reads the request up to the end of its memo:Message, writing
// the Message to w as a standalone MeMo document (see the package doc) as
// it arrives; any KombiValgKode or fjernprint part before it is taken in
// on the way. It fails with kombi.message.missing when the request ends
// without one, and with the first problem it meets before that.
func (d *Decoder) Message(w io.Writer) error {
	if d.err != nil {
		return d.err
	}
	if d.messages > 0 {
		return errors.New("sf1601: Message called twice")
	}
	for d.messages == 0 {
		done, err := d.step(w)
		if err != nil {
			d.err = err
			return err
		}
		if done {
			d.err = fail(CodeMessageMissing, "/kombi_request", 0, "", "the kombi_request has no memo:Message (namespace %s)", memo.NSMemo)
			return d.err
		}
	}
	return nil
}

// Finish reads the rest of the request after Message and returns what it
// says. Errors: kombi.message.duplicate, kombi.valg.kode.missing and the
// rest of the package's codes for what follows the Message.
func (d *Decoder) Finish() (Request, error) {
	if d.err != nil {
		return Request{}, d.err
	}
	if d.messages == 0 {
		return Request{}, errors.New("sf1601: Finish called before Message")
	}
	for {
		done, err := d.step(nil)
		if err != nil {
			d.err = err
			return Request{}, err
		}
		if done {
			break
		}
	}
	if !d.haveChoice {
		d.err = fail(CodeChoiceMissing, "/kombi_request/KombiValgKode", 0, "", "the kombi_request has no KombiValgKode")
		return Request{}, d.err
	}
	return d.req, nil
}

// step reads the next part of the request: the prolog and root start tag,
// one child of the root (a Message goes to w), or the root's end and what
// follows it. done is true once the request has been read to its end.
func (d *Decoder) step(w io.Writer) (done bool, err error) {
	if !d.started {
		return false, d.prolog()
	}
	if d.ended {
		return true, nil
	}
	for {
		space, err := d.text(nil, 0)
		if err != nil {
			return false, err
		}
		if !space {
			return false, fail(CodeTextUnexpected, "/kombi_request", d.line, "", "kombi_request holds elements only, no text")
		}
		if _, err := d.peekN(2); err != nil {
			return false, d.short("the kombi_request element")
		}
		b, _ := d.peekN(2)
		switch {
		case b[1] == '/':
			if err := d.rootEnd(); err != nil {
				return false, err
			}
			return true, d.epilog()
		case b[1] == '!' || b[1] == '?':
			if err := d.markup(true); err != nil {
				return false, err
			}
			continue
		}
		return false, d.child(w)
	}
}

// short reports a request that ended early.
func (d *Decoder) short(inside string) error {
	return fail(memo.CodeNotWellFormed, "", d.line, "", "the request ends inside %s", inside)
}

// readErr turns a read failure of the body into the Decoder's error.
func (d *Decoder) readErr(err error, inside string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return d.short(inside)
	}
	var he *hub.Error
	if errors.As(err, &he) {
		return err
	}
	return hub.Wrap(hub.Invalid, err, "reading the kombi_request failed")
}

// peekN returns the next n bytes without consuming them.
func (d *Decoder) peekN(n int) ([]byte, error) {
	b, err := d.br.Peek(n)
	if len(b) == n {
		return b, nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return b, err
}

// buffered returns at least one unread byte, as many as are buffered.
func (d *Decoder) buffered() ([]byte, error) {
	if _, err := d.br.Peek(1); err != nil {
		return nil, err
	}
	b, _ := d.br.Peek(d.br.Buffered())
	return b, nil
}

// take consumes b, which must be a prefix of the unread input: it counts
// lines and bytes, and copies b out when copying.
func (d *Decoder) take(b []byte) error {
	d.line += bytes.Count(b, []byte{'\n'})
	n := int64(len(b))
	if d.w != nil {
		d.copied += n
		if d.copied > d.copyMax {
			return d.tooBig()
		}
		if len(b) >= copyDirect || len(d.out)+len(b) > cap(d.out) {
			if err := d.flush(); err != nil {
				return err
			}
		}
		if len(b) >= copyDirect {
			if _, err := d.w.Write(b); err != nil {
				return d.writeErr(err)
			}
		} else {
			d.out = append(d.out, b...)
		}
	} else {
		d.envelope += n
		if d.envelope > d.lim.MaxEnvelope {
			return fail(CodeTooLarge, "/kombi_request", d.line, "",
				"everything but the Message and the fjernprint part may be at most %d bytes", d.lim.MaxEnvelope)
		}
	}
	_, err := d.br.Discard(len(b))
	return err
}

// readBuf is the Decoder's read buffer: small enough that a small request
// costs little more than its own bytes, large enough that a 99 MB one
// takes few trips. copyDirect is the chunk size from which take writes
// through instead of gathering in out.
const (
	readBuf    = 16 << 10
	copyDirect = 4 << 10
	outBuf     = 2 * copyDirect
)

func (d *Decoder) flush() error {
	if len(d.out) == 0 {
		return nil
	}
	_, err := d.w.Write(d.out)
	d.out = d.out[:0]
	if err != nil {
		return d.writeErr(err)
	}
	return nil
}

// writeErr passes a coded error of the writer (the spool's size limit)
// through; any other is the hub's failure.
func (d *Decoder) writeErr(err error) error {
	var he *hub.Error
	if errors.As(err, &he) {
		return err
	}
	return hub.Wrap(hub.Internal, err, "writing out the kombi_request's parts failed")
}

// emit writes bytes that are not in the input (the inherited namespace
// declarations) to the copy.
func (d *Decoder) emit(s string) error {
	d.copied += int64(len(s))
	if d.copied > d.copyMax {
		return d.tooBig()
	}
	d.out = append(d.out, s...)
	return nil
}

// byte1 consumes one byte.
func (d *Decoder) byte1(inside string) (byte, error) {
	b, err := d.peekN(1)
	if err != nil {
		return 0, d.readErr(err, inside)
	}
	c := b[0]
	return c, d.take(b)
}

// through consumes input up to and including the first occurrence of
// term. col, when not nil, collects what precedes term, up to colMax
// bytes (more fails with tooLong).
func (d *Decoder) through(term, inside string, col *[]byte, colMax int, tooLong func() error) error {
	for {
		buf, err := d.buffered()
		if err != nil {
			return d.readErr(err, inside)
		}
		if i := index(buf, term); i >= 0 {
			if col != nil {
				if len(*col)+i > colMax {
					return tooLong()
				}
				*col = append(*col, buf[:i]...)
			}
			return d.take(buf[:i+len(term)])
		}
		// Keep a tail that may be the start of term.
		n := len(buf) - (len(term) - 1)
		if n <= 0 {
			if _, err := d.peekN(len(term)); err != nil {
				return d.readErr(err, inside)
			}
			continue
		}
		if col != nil {
			if len(*col)+n > colMax {
				return tooLong()
			}
			*col = append(*col, buf[:n]...)
		}
		if err := d.take(buf[:n]); err != nil {
			return err
		}
	}
}

// index is bytes.Index(b, []byte(term)) without the conversion.
func index(b []byte, term string) int {
	if len(term) == 1 {
		return bytes.IndexByte(b, term[0])
	}
	for off := 0; ; {
		i := bytes.IndexByte(b[off:], term[0])
		if i < 0 {
			return -1
		}
		i += off
		if len(b)-i < len(term) {
			return -1
		}
		if string(b[i:i+len(term)]) == term {
			return i
		}
		off = i + 1
	}
}

// text consumes character data up to the next '<' (or the end of the
// input), collecting it into col when col is not nil (at most colMax
// bytes, else kombi.valg.kode.unknown). space reports that it was all
// whitespace.
func (d *Decoder) text(col *[]byte, colMax int) (space bool, err error) {
	space = true
	for {
		buf, err := d.buffered()
		if err == io.EOF {
			return space, nil
		}
		if err != nil {
			return false, d.readErr(err, "text")
		}
		i := bytes.IndexByte(buf, '<')
		if i < 0 {
			i = len(buf)
		}
		chunk := buf[:i]
		if space && !allSpace(chunk) {
			space = false
		}
		if col != nil {
			if len(*col)+len(chunk) > colMax {
				return false, d.choiceTooLong()
			}
			*col = append(*col, chunk...)
		}
		if err := d.take(chunk); err != nil {
			return false, err
		}
		if i < len(buf) {
			return space, nil
		}
	}
}

func (d *Decoder) choiceTooLong() error {
	return fail(CodeChoiceUnknown, "/kombi_request/KombiValgKode", d.line, "",
		"KombiValgKode must be one of \"Automatisk Valg\", \"Digital Post\", \"Fysisk Post\" and \"NemSMS\"")
}

// prolog checks the start of the request as the start of a MeMo sent
// alone is checked (memo.CheckProlog: no DOCTYPE, UTF-8 only), takes the
// prolog in as envelope bytes, and reads the root start tag.
func (d *Decoder) prolog() error {
	for {
		head, err := d.br.Peek(d.br.Size())
		if err != nil && err != io.EOF {
			return d.readErr(err, "the prolog")
		}
		root, more, refusal := memo.CheckProlog(head, err == io.EOF)
		if more && d.br.Size() < memo.PrologLimit {
			// A prolog longer than the read buffer (rare): judge it on a
			// buffer as large as memo looks.
			d.br = bufio.NewReaderSize(d.br, memo.PrologLimit)
			continue
		}
		if refusal != nil {
			return fail(refusal.Code, refusal.Field, refusal.Line, refusal.RejectedValue, "%s", refusal.Message)
		}
		if err := d.take(head[:root]); err != nil {
			return err
		}
		return d.rootStart()
	}
}

func xmlSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func allSpace(b []byte) bool {
	for _, c := range b {
		if !xmlSpace(c) {
			return false
		}
	}
	return true
}

// markup consumes a comment, processing instruction or CDATA section at
// the input ("<!" or "<?"). Where envelope is true (outside the copied
// elements) a CDATA section is text, which the wrapper may not hold. A
// DOCTYPE, anywhere, is refused.
func (d *Decoder) markup(envelope bool) error {
	b, _ := d.peekN(2)
	if b[1] == '?' {
		// An XML declaration stands only at the very start (the prolog's
		// check), and a processing instruction has a target.
		p, _ := d.br.Peek(6)
		if len(p) >= 5 && strings.EqualFold(string(p[2:5]), "xml") && (len(p) == 5 || xmlSpace(p[5]) || p[5] == '?') {
			return fail(memo.CodeNotWellFormed, "", d.line, "", "an XML declaration is allowed only at the start of the request")
		}
		if len(p) >= 3 && (xmlSpace(p[2]) || p[2] == '?') {
			return fail(memo.CodeNotWellFormed, "", d.line, "", "a processing instruction needs a target")
		}
		return d.through("?>", "a processing instruction", nil, 0, nil)
	}
	b, _ = d.br.Peek(9)
	switch {
	case bytes.HasPrefix(b, []byte("<!--")):
		// The first "--" after "<!--" ends the comment: it must be "-->".
		if err := d.take(b[:4]); err != nil {
			return err
		}
		if err := d.through("--", "a comment", nil, 0, nil); err != nil {
			return err
		}
		c, err := d.peekN(1)
		if err != nil {
			return d.readErr(err, "a comment")
		}
		if c[0] != '>' {
			return fail(memo.CodeNotWellFormed, "", d.line, "", "'--' is not allowed inside a comment")
		}
		return d.take(c[:1])
	case bytes.HasPrefix(b, []byte("<![CDATA[")):
		if envelope {
			return fail(CodeTextUnexpected, "/kombi_request", d.line, "", "kombi_request holds elements only, no text")
		}
		return d.through("]]>", "a CDATA section", nil, 0, nil)
	case len(b) == 9 && strings.EqualFold(string(b), "<!DOCTYPE"):
		return fail(memo.CodeDoctypeNotAllowed, "", d.line, "", "a document type declaration (DOCTYPE) is not allowed")
	case len(b) < 9 && !bytes.HasPrefix([]byte("<!DOCTYPE"), bytes.ToUpper(b)):
		return fail(memo.CodeNotWellFormed, "", d.line, "", "unexpected markup declaration")
	case len(b) < 9:
		return d.short("a markup declaration")
	}
	return fail(memo.CodeNotWellFormed, "", d.line, "", "unexpected markup declaration")
}

// attr is one attribute of a start tag read whole.
type attr struct {
	name  string
	raw   string // name="value" as written
	value string // decoded
}

// startTag is a start tag of the wrapper or one of its children, read
// whole (they are envelope bytes, so bounded by MaxEnvelope).
type startTag struct {
	qname, prefix, local string
	attrs                []attr
	empty                bool   // <x/>
	rest                 string // the source after the name, through '>'
	line                 int
}

// readStartTag reads a start tag at the input ('<' then a name).
func (d *Decoder) readStartTag() (startTag, error) {
	if buf, _ := d.buffered(); len(buf) > 0 {
		if n, name, empty, ok := fastStartTag(buf); ok {
			if t, ok := parseStartTag(buf[:n], name, empty); ok {
				t.line = d.line
				return t, d.take(buf[:n])
			}
		}
	}
	t := startTag{line: d.line}
	if _, err := d.byte1("a start tag"); err != nil { // '<'
		return t, err
	}
	var name []byte
	if err := d.name(&name, "a start tag"); err != nil {
		return t, err
	}
	t.qname = string(name)
	t.prefix, t.local = "", t.qname
	if i := strings.IndexByte(t.qname, ':'); i >= 0 {
		t.prefix, t.local = t.qname[:i], t.qname[i+1:]
	}
	var rest strings.Builder
	seen := map[string]bool{}
	for {
		sp, err := d.space(&rest)
		if err != nil {
			return t, err
		}
		c, err := d.byte1("a start tag")
		if err != nil {
			return t, err
		}
		rest.WriteByte(c)
		switch c {
		case '>':
			t.rest = rest.String()
			return t, nil
		case '/':
			c, err := d.byte1("a start tag")
			if err != nil {
				return t, err
			}
			if c != '>' {
				return t, fail(memo.CodeNotWellFormed, "", d.line, "", "malformed start tag <%s>", t.qname)
			}
			rest.WriteByte(c)
			t.empty, t.rest = true, rest.String()
			return t, nil
		}
		if !sp || !nameStart(c) {
			return t, fail(memo.CodeNotWellFormed, "", d.line, "", "malformed start tag <%s>", t.qname)
		}
		an := []byte{c}
		if err := d.name(&an, "a start tag"); err != nil {
			return t, err
		}
		rest.Write(an[1:])
		var val []byte
		raw, err := d.attrValue(&rest, &val, true)
		if err != nil {
			return t, err
		}
		a := attr{name: string(an), raw: string(an) + raw}
		if seen[a.name] {
			return t, fail(memo.CodeNotWellFormed, "", d.line, "", "attribute %s is repeated on <%s>", a.name, t.qname)
		}
		seen[a.name] = true
		v, ok := memo.DecodeReferences(val, true)
		if !ok {
			return t, fail(memo.CodeNotWellFormed, "", d.line, "", "attribute %s on <%s> has a malformed value", a.name, t.qname)
		}
		a.value = v
		t.attrs = append(t.attrs, a)
	}
}

// parseStartTag is readStartTag on a whole tag in memory, which
// fastStartTag has found well-formed as far as it looks; ok is false for
// what it does not check (a repeated attribute, a malformed value), which
// readStartTag's slow path then reports.
func parseStartTag(b, name []byte, empty bool) (startTag, bool) {
	t := startTag{qname: string(name), empty: empty}
	t.prefix, t.local = "", t.qname
	if i := strings.IndexByte(t.qname, ':'); i >= 0 {
		t.prefix, t.local = t.qname[:i], t.qname[i+1:]
	}
	i := 1 + len(name)
	t.rest = string(b[i:])
	for {
		for xmlSpace(b[i]) {
			i++
		}
		if b[i] == '>' || b[i] == '/' {
			return t, true
		}
		start := i
		k := scanName(b[i:])
		an := string(b[i : i+k])
		i += k
		for b[i] != '"' && b[i] != '\'' {
			i++
		}
		q := b[i]
		j := bytes.IndexByte(b[i+1:], q)
		raw := b[i+1 : i+1+j]
		i += j + 2
		for _, a := range t.attrs {
			if a.name == an {
				return t, false
			}
		}
		v, ok := memo.DecodeReferences(raw, true)
		if !ok {
			return t, false
		}
		t.attrs = append(t.attrs, attr{name: an, raw: string(b[start:i]), value: v})
	}
}

// space consumes whitespace, writing it to sb when not nil; sp reports
// whether there was any.
func (d *Decoder) space(sb *strings.Builder) (sp bool, err error) {
	for {
		b, err := d.peekN(1)
		if err != nil {
			return sp, d.readErr(err, "a tag")
		}
		if !xmlSpace(b[0]) {
			return sp, nil
		}
		if sb != nil {
			sb.WriteByte(b[0])
		}
		sp = true
		if err := d.take(b); err != nil {
			return sp, err
		}
	}
}

// maxName bounds element and attribute names.
const maxName = 1024

func nameStart(c byte) bool {
	return c >= 0x80 || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':'
}

func nameByte(c byte) bool {
	return nameStart(c) || c >= '0' && c <= '9' || c == '-' || c == '.'
}

// name consumes a name onto *n (which may hold its first byte already).
func (d *Decoder) name(n *[]byte, inside string) error {
	for {
		b, err := d.peekN(1)
		if err != nil {
			return d.readErr(err, inside)
		}
		c := b[0]
		if len(*n) == 0 && !nameStart(c) || len(*n) > 0 && !nameByte(c) {
			if len(*n) == 0 {
				return fail(memo.CodeNotWellFormed, "", d.line, "", "a name was expected in %s", inside)
			}
			return nil
		}
		if len(*n) >= maxName {
			return fail(memo.CodeNotWellFormed, "", d.line, "", "a name in %s is longer than %d bytes", inside, maxName)
		}
		*n = append(*n, c)
		if err := d.take(b); err != nil {
			return err
		}
	}
}

func quote(q byte) string {
	if q == '"' {
		return `"`
	}
	return "'"
}

// maxAttrValue bounds an attribute value the wrapper level reads whole.
const maxAttrValue = 8 << 10

// attrValue consumes `="value"` (whitespace allowed around '='). With
// collect it returns the source and collects the raw value into *val;
// without, it only consumes (inside copied elements, where values may be
// long). The source is written to rest when not nil.
func (d *Decoder) attrValue(rest *strings.Builder, val *[]byte, collect bool) (string, error) {
	var src strings.Builder
	if _, err := d.space(&src); err != nil {
		return "", err
	}
	c, err := d.byte1("a start tag")
	if err != nil {
		return "", err
	}
	if c != '=' {
		return "", fail(memo.CodeNotWellFormed, "", d.line, "", "an attribute has no value")
	}
	src.WriteByte(c)
	if _, err := d.space(&src); err != nil {
		return "", err
	}
	q, err := d.byte1("a start tag")
	if err != nil {
		return "", err
	}
	if q != '"' && q != '\'' {
		return "", fail(memo.CodeNotWellFormed, "", d.line, "", "an attribute value is not quoted")
	}
	src.WriteByte(q)
	tooLong := func() error {
		return fail(memo.CodeNotWellFormed, "", d.line, "", "an attribute value of the kombi_request is longer than %d bytes", maxAttrValue)
	}
	if collect {
		if err := d.through(quote(q), "an attribute value", val, maxAttrValue, tooLong); err != nil {
			return "", err
		}
		src.Write(*val)
		src.WriteByte(q)
	} else if err := d.through(quote(q), "an attribute value", nil, 0, nil); err != nil {
		return "", err
	}
	if rest != nil {
		rest.WriteString(src.String())
	}
	return src.String(), nil
}

// nsDecls returns the namespace declarations among a tag's attributes.
func nsDecls(attrs []attr) []nsDecl {
	var out []nsDecl
	for _, a := range attrs {
		switch {
		case a.name == "xmlns":
			out = append(out, nsDecl{name: a.name, uri: a.value, raw: a.raw})
		case strings.HasPrefix(a.name, "xmlns:"):
			out = append(out, nsDecl{name: a.name, prefix: a.name[len("xmlns:"):], uri: a.value, raw: a.raw})
		}
	}
	return out
}

// resolve finds the namespace of prefix among the tag's own declarations,
// then the root's. ok is false for an undeclared prefix.
func resolve(prefix string, own, root []nsDecl) (uri string, ok bool) {
	for _, scope := range [][]nsDecl{own, root} {
		for _, n := range scope {
			if n.prefix == prefix && (prefix != "" || n.name == "xmlns") {
				return n.uri, true
			}
		}
	}
	if prefix == "xml" {
		return "http://www.w3.org/XML/1998/namespace", true
	}
	return "", prefix == ""
}

// rootStart reads the root start tag, which must be kombi_request in no
// namespace.
func (d *Decoder) rootStart() error {
	t, err := d.readStartTag()
	if err != nil {
		return err
	}
	own := nsDecls(t.attrs)
	uri, ok := resolve(t.prefix, own, nil)
	switch {
	case t.local == "Message" && uri == memo.NSMemo:
		return fail(CodeRootInvalid, "/"+t.local, t.line, "", "the root element must be kombi_request, not a MeMo Message (send a MeMo alone to /apis/v1/memos/)")
	case !ok || t.prefix != "" || t.local != "kombi_request" || uri != "":
		return fail(CodeRootInvalid, "/"+t.local, t.line, t.qname, "the root element must be kombi_request in no namespace")
	}
	d.started, d.rootName, d.rootNS = true, t.qname, own
	if t.empty {
		d.ended = true
		return d.epilog()
	}
	return nil
}

// rootEnd reads the root end tag.
func (d *Decoder) rootEnd() error {
	if err := d.take(mustPeek(d, 2)); err != nil { // "</"
		return err
	}
	if err := d.closeTag([]byte(d.rootName)); err != nil {
		return err
	}
	d.ended = true
	return nil
}

func mustPeek(d *Decoder, n int) []byte {
	b, _ := d.peekN(n)
	return b
}

// epilog reads what follows the root: whitespace, comments and
// processing instructions only, to the end of the input.
func (d *Decoder) epilog() error {
	for {
		space, err := d.text(nil, 0)
		if err != nil {
			return err
		}
		if !space {
			return fail(memo.CodeNotWellFormed, "", d.line, "", "content is not allowed after the root element")
		}
		b, err := d.peekN(2)
		if len(b) == 0 && err != nil {
			return nil
		}
		if err != nil || (b[1] != '!' && b[1] != '?') {
			return fail(memo.CodeNotWellFormed, "", d.line, "", "content is not allowed after the root element")
		}
		if err := d.markup(true); err != nil {
			return err
		}
	}
}

// child reads one element child of the root.
func (d *Decoder) child(w io.Writer) error {
	t, err := d.readStartTag()
	if err != nil {
		return err
	}
	own := nsDecls(t.attrs)
	uri, ok := resolve(t.prefix, own, d.rootNS)
	if !ok {
		return fail(memo.CodeNotWellFormed, "/kombi_request/"+t.local, t.line, t.prefix, "the prefix %q of <%s> is not declared", t.prefix, t.qname)
	}
	field := "/kombi_request/" + t.local
	switch {
	case t.local == "KombiValgKode" && uri == "":
		if d.haveChoice {
			return fail(CodeChoiceDuplicate, field, t.line, "", "the kombi_request has more than one KombiValgKode")
		}
		return d.choice(t)
	case t.local == "Message" && uri == memo.NSMemo:
		if d.messages > 0 {
			return fail(CodeMessageDuplicate, field, t.line, "", "the kombi_request has more than one memo:Message")
		}
		if w == nil {
			return errors.New("sf1601: a Message needs a writer")
		}
		d.messages++
		d.req.MessageLine = t.line
		return d.copyElement(t, own, w, d.lim.MaxMemo, func() error {
			return fail(memo.CodeTooLarge, field, d.line, "", "a MeMo may be at most %d bytes", d.lim.MaxMemo)
		})
	case t.local == "Message":
		return fail(memo.CodeRootInvalid, field, t.line, uri, "the Message element must be in namespace %s", memo.NSMemo)
	case t.local == "ForsendelseISamling" && uri == NSFjernprint:
		if d.req.Print != nil {
			return fail(CodePrintDuplicate, field, t.line, "", "the kombi_request has more than one ForsendelseISamling")
		}
		if d.lim.PrintSlots != nil {
			select {
			case d.lim.PrintSlots <- struct{}{}:
				d.printSlot = true
			default:
				return &hub.Error{Code: hub.Unavailable, Message: "the hub holds as many fjernprint parts as it may at once; retry shortly",
					RetryAfter: time.Second}
			}
		}
		var buf bytes.Buffer
		d.req.PrintLine = t.line
		err := d.copyElement(t, own, &buf, d.lim.MaxPrint, func() error {
			return fail(CodePrintTooLarge, field, d.line, "", "the fjernprint part may be at most %d bytes", d.lim.MaxPrint)
		})
		if err != nil {
			return err
		}
		d.req.Print = buf.Bytes()
		return nil
	}
	v := t.qname
	if uri != "" {
		v = "{" + uri + "}" + t.local
	}
	return fail(CodeElementUnexpected, field, t.line, v,
		"kombi_request holds KombiValgKode, memo:Message and an optional ForsendelseISamling (%s) only", NSFjernprint)
}

// choice reads KombiValgKode's text and end tag.
func (d *Decoder) choice(t startTag) error {
	d.haveChoice = true
	var raw []byte
	if !t.empty {
		for {
			if _, err := d.text(&raw, 256); err != nil {
				return err
			}
			b, err := d.peekN(2)
			if err != nil {
				return d.short("KombiValgKode")
			}
			if b[1] == '!' || b[1] == '?' {
				b9, _ := d.br.Peek(9)
				if bytes.HasPrefix(b9, []byte("<![CDATA[")) {
					if err := d.take(b9); err != nil {
						return err
					}
					if err := d.through("]]>", "a CDATA section", &raw, 256, d.choiceTooLong); err != nil {
						return err
					}
					continue
				}
				if err := d.markup(true); err != nil {
					return err
				}
				continue
			}
			if b[1] != '/' {
				return fail(CodeChoiceUnknown, "/kombi_request/KombiValgKode", d.line, "", "KombiValgKode holds text only")
			}
			if err := d.take(b); err != nil {
				return err
			}
			if err := d.closeTag([]byte(t.qname)); err != nil {
				return err
			}
			break
		}
	}
	v, ok := memo.DecodeReferences(raw, false)
	if !ok {
		return fail(CodeChoiceUnknown, "/kombi_request/KombiValgKode", t.line, "", "KombiValgKode has a malformed reference")
	}
	d.req.Choice = strings.TrimSpace(v)
	m, err := ParseChoice(d.req.Choice)
	if err != nil {
		err.(*hub.Error).Fields[0].Line = t.line
		return err
	}
	d.req.Mode = m
	return nil
}

// copyElement writes the element whose start tag t has been read to w as
// a standalone document: the start tag with the root's namespace
// declarations that t does not override, then every byte of the element
// as sent, through its end tag.
func (d *Decoder) copyElement(t startTag, own []nsDecl, w io.Writer, max int64, tooBig func() error) error {
	d.w, d.copyMax, d.copied, d.tooBig = w, max, 0, tooBig
	if cap(d.out) == 0 {
		d.outp = outs.Get().(*[]byte)
		d.out = (*d.outp)[:0]
	}
	defer func() { d.w, d.stack, d.names = nil, d.stack[:0], d.names[:0] }()
	err := d.emit("<" + t.qname)
	for _, n := range d.rootNS {
		if err != nil {
			break
		}
		if n.name == "xmlns" || declares(own, n.name) {
			continue
		}
		err = d.emit(" " + n.raw)
	}
	if err == nil {
		err = d.emit(t.rest)
	}
	if err == nil && !t.empty {
		d.push([]byte(t.qname))
		err = d.content()
	}
	if err == nil {
		err = d.flush()
	}
	return err
}

func declares(own []nsDecl, name string) bool {
	for _, n := range own {
		if n.name == name {
			return true
		}
	}
	return false
}

// content copies the element's content through the end tag that closes
// it, checking only what finding that end needs: tags, quoting, comments,
// CDATA and processing instructions, and that end tags match. The
// document's well-formedness in full is libxml2's to judge.
func (d *Decoder) content() error {
	for len(d.stack) > 0 {
		// The buffered input is scanned token by token and taken in one
		// piece; a token that is not whole in the buffer, or is markup
		// other than tags, goes the slow way below, one at a time.
		if buf, err := d.buffered(); err == nil {
			n, err := d.scanContent(buf)
			if err != nil {
				return err
			}
			if n > 0 {
				if err := d.take(buf[:n]); err != nil {
					return err
				}
				continue
			}
		}
		if _, err := d.text(nil, 0); err != nil {
			return err
		}
		b, err := d.peekN(2)
		if err != nil {
			return d.short("<" + string(d.names[:d.openAt(1)]) + ">")
		}
		switch b[1] {
		case '!', '?':
			if err := d.markup(false); err != nil {
				return err
			}
		case '/':
			if err := d.endTag(); err != nil {
				return err
			}
		default:
			if err := d.innerStartTag(); err != nil {
				return err
			}
		}
	}
	return nil
}

// scanContent reads text, start tags and end tags from b while they are
// whole in it and the slow path would accept them, and returns how many
// bytes it read; the caller takes them.
func (d *Decoder) scanContent(b []byte) (int, error) {
	i := 0
	for len(d.stack) > 0 && i < len(b) {
		if b[i] != '<' {
			j := bytes.IndexByte(b[i:], '<')
			if j < 0 {
				return len(b), nil
			}
			i += j
			continue
		}
		if i+1 >= len(b) {
			return i, nil
		}
		switch b[i+1] {
		case '!', '?':
			// Comments, CDATA sections and processing instructions whole
			// in b; anything else (a DOCTYPE, a cut-off one) is the slow
			// path's to judge.
			open, end := "<?", "?>"
			switch {
			case bytes.HasPrefix(b[i:], []byte("<![CDATA[")):
				open, end = "<![CDATA[", "]]>"
			case bytes.HasPrefix(b[i:], []byte("<!--")):
				open, end = "<!--", "-->"
			case b[i+1] == '!':
				return i, nil
			}
			j := index(b[i+len(open):], end)
			if j < 0 {
				return i, nil
			}
			i += len(open) + j + len(end)
		case '/':
			k := scanName(b[i+2:])
			if k == 0 {
				return i, nil
			}
			e := i + 2 + k
			for e < len(b) && xmlSpace(b[e]) {
				e++
			}
			if e >= len(b) || b[e] != '>' || !bytes.Equal(b[i+2:i+2+k], d.top()) {
				return i, nil
			}
			d.pop()
			i = e + 1
		default:
			n, name, empty, ok := fastStartTag(b[i:])
			if !ok {
				return i, nil
			}
			if !empty {
				if len(d.stack) >= d.lim.MaxDepth {
					return 0, fail(CodeTooDeep, "", d.line+bytes.Count(b[:i], []byte{'\n'}), "", "elements may nest at most %d deep", d.lim.MaxDepth)
				}
				d.push(name)
			}
			i += n
		}
	}
	return i, nil
}

func (d *Decoder) endTag() error {
	// Fast path: the whole tag is buffered (nearly always).
	if buf, _ := d.buffered(); len(buf) > 2 {
		if k := scanName(buf[2:]); k > 0 {
			i := 2 + k
			for i < len(buf) && xmlSpace(buf[i]) {
				i++
			}
			if i < len(buf) && buf[i] == '>' && bytes.Equal(buf[2:2+k], d.top()) {
				d.pop()
				return d.take(buf[:i+1])
			}
		}
	}
	if err := d.take(mustPeek(d, 2)); err != nil {
		return err
	}
	if err := d.closeTag(d.top()); err != nil {
		return err
	}
	d.pop()
	return nil
}

// closeTag reads the rest of an end tag whose "</" is taken — its name,
// optional space and '>' — and refuses it unless the name is want.
func (d *Decoder) closeTag(want []byte) error {
	var n []byte
	if err := d.name(&n, "an end tag"); err != nil {
		return err
	}
	if _, err := d.space(nil); err != nil {
		return err
	}
	c, err := d.byte1("an end tag")
	if err != nil {
		return err
	}
	if c != '>' || !bytes.Equal(n, want) {
		return fail(memo.CodeNotWellFormed, "", d.line, "", "the end tag </%s> does not close <%s>", n, want)
	}
	return nil
}

// push opens an element; top is the innermost open one, openAt(i) the end
// of the i-th; pop closes the innermost.
func (d *Decoder) push(name []byte) {
	d.stack = append(d.stack, len(d.names))
	d.names = append(d.names, name...)
}

func (d *Decoder) top() []byte { return d.names[d.stack[len(d.stack)-1]:] }

func (d *Decoder) openAt(i int) int {
	if i < len(d.stack) {
		return d.stack[i]
	}
	return len(d.names)
}

func (d *Decoder) pop() {
	d.names = d.names[:d.stack[len(d.stack)-1]]
	d.stack = d.stack[:len(d.stack)-1]
}

// scanName is the length of the name b starts with (0: none; more than
// maxName: 0, for the slow path to report).
func scanName(b []byte) int {
	if len(b) == 0 || !nameStart(b[0]) {
		return 0
	}
	i := 1
	for i < len(b) && nameByte(b[i]) {
		i++
	}
	if i > maxName || i == len(b) {
		return 0
	}
	return i
}

// fastStartTag reads the start tag b begins with ('<'), when all of it is
// in b and it is what innerStartTag's slow path accepts: its length, its
// name and whether it is empty. ok is false otherwise, and the slow path
// reads it (and reports what is wrong).
func fastStartTag(b []byte) (n int, name []byte, empty, ok bool) {
	i := 1
	k := scanName(b[i:])
	if k == 0 {
		return 0, nil, false, false
	}
	name, i = b[i:i+k], i+k
	for {
		sp := i
		for i < len(b) && xmlSpace(b[i]) {
			i++
		}
		if i >= len(b) {
			return 0, nil, false, false
		}
		switch b[i] {
		case '>':
			return i + 1, name, false, true
		case '/':
			if i+1 < len(b) && b[i+1] == '>' {
				return i + 2, name, true, true
			}
			return 0, nil, false, false
		}
		if i == sp {
			return 0, nil, false, false
		}
		if k = scanName(b[i:]); k == 0 {
			return 0, nil, false, false
		}
		i += k
		for i < len(b) && xmlSpace(b[i]) {
			i++
		}
		if i >= len(b) || b[i] != '=' {
			return 0, nil, false, false
		}
		i++
		for i < len(b) && xmlSpace(b[i]) {
			i++
		}
		if i >= len(b) || b[i] != '"' && b[i] != '\'' {
			return 0, nil, false, false
		}
		q := b[i]
		j := bytes.IndexByte(b[i+1:], q)
		if j < 0 {
			return 0, nil, false, false
		}
		i += j + 2
	}
}

func (d *Decoder) innerStartTag() error {
	if buf, _ := d.buffered(); len(buf) > 0 {
		if n, name, empty, ok := fastStartTag(buf); ok {
			if !empty {
				if len(d.stack) >= d.lim.MaxDepth {
					return fail(CodeTooDeep, "", d.line, "", "elements may nest at most %d deep", d.lim.MaxDepth)
				}
				d.push(name)
			}
			return d.take(buf[:n])
		}
	}
	if _, err := d.byte1("a start tag"); err != nil { // '<'
		return err
	}
	var n []byte
	if err := d.name(&n, "a start tag"); err != nil {
		return err
	}
	for {
		sp, err := d.space(nil)
		if err != nil {
			return err
		}
		c, err := d.byte1("a start tag")
		if err != nil {
			return err
		}
		switch c {
		case '>':
			if len(d.stack) >= d.lim.MaxDepth {
				return fail(CodeTooDeep, "", d.line, "", "elements may nest at most %d deep", d.lim.MaxDepth)
			}
			d.push(n)
			return nil
		case '/':
			c, err := d.byte1("a start tag")
			if err != nil {
				return err
			}
			if c != '>' {
				return fail(memo.CodeNotWellFormed, "", d.line, "", "malformed start tag <%s>", n)
			}
			return nil
		}
		if !sp || !nameStart(c) {
			return fail(memo.CodeNotWellFormed, "", d.line, "", "malformed start tag <%s>", n)
		}
		an := []byte{c}
		if err := d.name(&an, "a start tag"); err != nil {
			return err
		}
		if _, err := d.attrValue(nil, nil, false); err != nil {
			return err
		}
	}
}
