package memo

import (
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/posthub/posthub/hub"
)

// maxLeafText bounds the text of any element but File/content. The schemas
// allow at most 512 characters; the bound only keeps odd input cheap.
const maxLeafText = 64 << 10

// ParseFile reads the MeMo in the file at path into a Message. File
// contents are not read into memory: each File refers to the byte ranges of
// its base64 text in the file, and File.Open decodes them on demand, so the
// file must stay in place and unchanged while the Message is used.
//
// The document is expected to have passed XSD validation; anything odd is
// still reported, never panicked on: Invalid (*hub.Error with one field
// error) for malformed XML or an element the model does not know, Internal
// for I/O failures.
func ParseFile(path string) (*Message, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, hub.Wrap(hub.Internal, err, "memo: open %s", path)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() <= smallFile {
		// Small documents are read whole: one read, no window to manage,
		// and the contents stay valid even if the file goes away.
		b := make([]byte, st.Size()+1)
		n, err := io.ReadFull(f, b)
		if err != io.ErrUnexpectedEOF && err != nil {
			return nil, hub.Wrap(hub.Internal, err, "memo: read %s", path)
		}
		if n <= int(st.Size()) {
			return ParseBytes(b[:n])
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, hub.Wrap(hub.Internal, err, "memo: read %s", path)
		}
	}
	st := newStreamParse(f)
	defer st.release()
	st.p.path = path
	m, err := st.p.parse()
	if err != nil {
		return nil, err
	}
	m.Size = st.s.offset()
	return m, nil
}

// smallFile is the size up to which ParseFile reads a document whole.
const smallFile = 256 << 10

// Parse reads a MeMo from r. File contents are base64-decoded once, while
// the document streams by, and held in memory; nothing else is buffered
// beyond a small window. Errors as ParseFile.
func Parse(r io.Reader) (*Message, error) {
	st := newStreamParse(r)
	defer st.release()
	st.p.decode = true
	m, err := st.p.parse()
	if err != nil {
		return nil, err
	}
	m.Size = st.s.offset()
	return m, nil
}

// ParseHeader reads a MeMo's MessageHeader from r and stops there: the body
// and its files are neither read nor held, so a letter of any size costs a
// small window. For what needs a stored letter's header only (a
// notification's text). Errors as ParseFile, for the part read.
func ParseHeader(r io.Reader) (*MessageHeader, error) {
	st := newStreamParse(r)
	defer st.release()
	st.p.headerOnly = true
	m, err := st.p.parse()
	if err != nil {
		return nil, err
	}
	return &m.MessageHeader, nil
}

// errHeaderRead stops a header-only parse once the header is read.
var errHeaderRead = errors.New("memo: header read")

// ParseBytes reads a MeMo held in b without copying it: File contents refer
// to b, which must not be modified while the Message is used. Errors as
// ParseFile.
func ParseBytes(b []byte) (*Message, error) {
	st := newBytesParse(b)
	defer st.release()
	m, err := st.p.parse()
	if err != nil {
		return nil, err
	}
	m.Size = int64(len(b))
	return m, nil
}

type parser struct {
	s      *pullScanner
	decode bool // stream input: decode content into memory
	// headerOnly stops the parse after the MessageHeader (ParseHeader).
	headerOnly bool
	path       string // file input: contents refer to this file
	src        []byte // byte input: contents refer to this slice
	str        stringSink
	b64        base64Sink // the File/content being read
	arena      []byte
	files      slab[File]
	parts      modelParts
	segs       []segment // room for content segments, carved like the arena

	// The repeated elements of a parent being read, gathered so that the
	// parent's slice is made once, of their number (see gather).
	filePtrs      gather[*File]
	actions       gather[Action]
	addDocs       gather[Document]
	techDocs      gather[Document]
	replies       gather[ReplyData]
	replyExtras   gather[AdditionalReplyData]
	contactInfo   gather[ContactInfo]
	contentExtras gather[AdditionalContentData]
}

// modelParts hands out the parts of a Message, from the Message itself to
// an AttentionData's children, from slabs as files does Files: a letter
// like the full example has some forty of them, one allocation each
// otherwise.
type modelParts struct {
	address              slab[Address]
	addressPoint         slab[AddressPoint]
	attentionData        slab[AttentionData]
	attentionPerson      slab[AttentionPerson]
	cprData              slab[CPRdata]
	cvrData              slab[CVRdata]
	caseID               slab[CaseID]
	contactPoint         slab[ContactPoint]
	contentData          slab[ContentData]
	contentResponsible   slab[ContentResponsible]
	eid                  slab[EID]
	email                slab[EMail]
	education            slab[Education]
	entryPoint           slab[EntryPoint]
	formData             slab[FORMdata]
	forwardData          slab[ForwardData]
	generatingSystem     slab[GeneratingSystem]
	globalLocationNumber slab[GlobalLocationNumber]
	kleData              slab[KLEdata]
	message              slab[Message]
	messageBody          slab[MessageBody]
	motorVehicle         slab[MotorVehicle]
	productionUnit       slab[ProductionUnit]
	propertyNumber       slab[PropertyNumber]
	representative       slab[Representative]
	reservation          slab[Reservation]
	seNumber             slab[SEnumber]
	sorData              slab[SORdata]
	telephone            slab[Telephone]
	unstructuredAddress  slab[UnstructuredAddress]
}

// gather collects the items of a repeated element (a document's Files, a
// body's AdditionalDocuments, ...) while their parent is read, in a
// buffer the parser keeps, and hands the parent a slice of exactly their
// number: one allocation instead of one per doubling. An item is filled
// in place (add's pointer) before its next sibling is added; no element
// holds an element of its own type, so a gather is never added to while
// one of its items is being filled.
type gather[T any] struct{ buf []T }

// mark is where the items of the parent about to be read start.
func (g *gather[T]) mark() int { return len(g.buf) }

// add appends a zero item and returns it, to be filled.
func (g *gather[T]) add() *T {
	var zero T
	g.buf = append(g.buf, zero)
	return &g.buf[len(g.buf)-1]
}

// take returns a copy of the items from mark on (nil for none) and
// forgets them.
func (g *gather[T]) take(mark int) []T {
	if len(g.buf) == mark {
		return nil
	}
	out := slices.Clone(g.buf[mark:])
	g.reset(mark)
	return out
}

// reset forgets the items from mark on, dropping what they refer to.
func (g *gather[T]) reset(mark int) {
	clear(g.buf[mark:])
	g.buf = g.buf[:mark]
	if cap(g.buf) > pooledCap {
		g.buf = nil
	}
}

// resetGathers empties every gather, as after a parse that failed half way.
func (p *parser) resetGathers() {
	p.filePtrs.reset(0)
	p.actions.reset(0)
	p.addDocs.reset(0)
	p.techDocs.reset(0)
	p.replies.reset(0)
	p.replyExtras.reset(0)
	p.contactInfo.reset(0)
	p.contentExtras.reset(0)
}

// slab hands out zeroed model objects carved from chunks of a few: one
// allocation for several Files. Like the arena it only ever moves on, so
// an object once handed out is never handed out again, and a pooled
// parser passes the unused rest of a chunk on to the next letter.
type slab[T any] struct{ free []T }

// slabChunk is how many objects a slab allocates at a time.
const slabChunk = 8

func (s *slab[T]) take() *T {
	if len(s.free) == 0 {
		s.free = make([]T, slabChunk)
	}
	t := &s.free[0]
	s.free = s.free[1:]
	return t
}

// segsChunk is how many content segments the parser allocates at a time;
// a File of a letter has one or two.
const segsChunk = 32

// parseState is the state of one parse (of a document in memory, or of
// a stream), reused from letter to letter through parseStates: the
// parser, its scanner, the records it follows and their buffers (open
// elements, namespaces, a leaf's text, the gathers). None of it is part
// of a Message but the arena and the slabs (text, Files, parts, content
// segments), which only ever move on: what they handed out is the
// model's alone and never written again (see intern), and the rest goes
// to the next letter.
type parseState struct {
	p   parser
	s   pullScanner
	rec records
}

var parseStates = sync.Pool{New: func() any { return new(parseState) }}

// newBytesParse returns a parser of b from the pool; release it after.
func newBytesParse(b []byte) *parseState {
	st := parseStates.Get().(*parseState)
	s := &st.s
	*s = pullScanner{buf: b, end: len(b), eof: true, line: 1,
		open: s.open[:0], ns: s.ns[:0], attrs: s.attrs[:0], scratch: s.scratch[:0]}
	st.p.s, st.p.src, st.p.decode, st.p.path, st.p.headerOnly = s, b, false, "", false
	return st
}

// newStreamParse returns a parser of r from the pool, reading through a
// window from windows; release it after.
func newStreamParse(r io.Reader) *parseState {
	st := parseStates.Get().(*parseState)
	s := &st.s
	*s = pullScanner{r: r, buf: *windows.Get().(*[]byte), line: 1,
		open: s.open[:0], ns: s.ns[:0], attrs: s.attrs[:0], scratch: s.scratch[:0]}
	st.p.s, st.p.src, st.p.decode, st.p.path, st.p.headerOnly = s, nil, false, "", false
	return st
}

// pooledCap bounds the buffers a pooled parse keeps: an odd document's
// deep nesting or long leaf text is not kept for the next letter.
const pooledCap = 4 << 10

// release returns st to the pool, without the document, the records (C
// memory of a libxml2 context) and any outsized buffer.
func (st *parseState) release() {
	s := &st.s
	s.release()
	if cap(s.open) > pooledCap || cap(s.ns) > pooledCap || cap(s.attrs) > pooledCap {
		s.open, s.ns, s.attrs = nil, nil, nil
	}
	if cap(s.scratch) > pooledCap {
		s.scratch = nil
	}
	if cap(st.p.str.b) > pooledCap {
		st.p.str.b = nil
	}
	*s = pullScanner{open: s.open[:0], ns: s.ns[:0], attrs: s.attrs[:0], scratch: s.scratch[:0]}
	// The arena, the slab, the segments' room and the (emptied) gathers
	// go on to the next letter; the document and the last sink do not.
	st.p.s, st.p.src, st.p.headerOnly = nil, nil, false
	st.p.str = stringSink{b: st.p.str.b[:0]}
	st.p.b64 = base64Sink{}
	st.p.resetGathers()
	st.rec = records{}
	parseStates.Put(st)
}

// parseError carries a hub.Error out of the parser.
func (p *parser) invalid(code, field, msg string, line int) error {
	return &hub.Error{Code: hub.Invalid, Message: "the MeMo cannot be read: " + msg, Fields: []hub.FieldError{{
		Resource: "memo", Field: field, Code: code, Message: msg, Line: line,
	}}}
}

func (p *parser) wrap(err error) error {
	var he *hub.Error
	if errors.As(err, &he) {
		return err
	}
	var se *syntaxError
	if errors.As(err, &se) {
		return p.invalid(CodeNotWellFormed, "", se.msg, se.line)
	}
	return hub.Wrap(hub.Internal, err, "memo: read")
}

func (p *parser) parse() (m *Message, err error) {
	defer func() {
		// The parser is written not to panic; this is the last line of
		// defence for outside input, turning a bug into an Invalid answer.
		if r := recover(); r != nil {
			m, err = nil, hub.Errorf(hub.Invalid, "the MeMo cannot be read: internal parser error")
		}
	}()
	tok, err := p.s.next()
	if err != nil {
		return nil, p.wrap(err)
	}
	if tok != tokStart || p.s.name != "Message" {
		return nil, p.invalid(CodeRootInvalid, "/", "the root element is not MeMo's Message", p.s.tokLine)
	}
	m = p.parts.message.take()
	line := p.s.tokLine
	var version string
	for _, a := range p.s.attrs {
		if a.ns != nsNone {
			continue
		}
		switch a.local {
		case "memoVersion":
			version = normaliseVersion(a.value)
		case "memoSchVersion":
			m.SchVersion = strings.TrimSpace(a.value)
		}
	}
	switch version {
	case Version11, Version12:
		m.Version = version
	default:
		return nil, p.invalid(CodeVersionNotSupported, "/Message/@memoVersion", "memoVersion must be 1.1 or 1.2", line)
	}
	err = p.children("/Message", func(name string) error {
		switch name {
		case "MessageHeader":
			if err := p.header(&m.MessageHeader); err != nil || !p.headerOnly {
				return err
			}
			return errHeaderRead
		case "MessageBody":
			m.MessageBody = p.parts.messageBody.take()
			return p.body(m.MessageBody)
		}
		return p.unexpected("/Message", name)
	})
	if err == errHeaderRead {
		return m, nil
	}
	if err != nil {
		return nil, p.wrap(err)
	}
	if tok, err := p.s.next(); err != nil || tok != tokEOF {
		if err == nil {
			err = p.s.fail("content after the root element")
		}
		return nil, p.wrap(err)
	}
	return m, nil
}

// normaliseVersion turns an xs:decimal like " 1.10 " or "+01.2" into "1.1"/"1.2".
func normaliseVersion(v string) string {
	v = strings.TrimSpace(v)
	v = strings.TrimPrefix(v, "+")
	if strings.Contains(v, ".") {
		v = strings.TrimRight(v, "0")
		v = strings.TrimSuffix(v, ".")
	}
	for len(v) > 1 && v[0] == '0' && v[1] != '.' {
		v = v[1:]
	}
	return v
}

// children calls fn for each child element of the element just opened, and
// consumes its end tag. fn must consume the child completely.
func (p *parser) children(path string, fn func(name string) error) error {
	for {
		tok, err := p.s.next()
		if err != nil {
			return err
		}
		switch tok {
		case tokEnd:
			return nil
		case tokEOF:
			return p.s.fail("unexpected end of document")
		}
		if err := fn(p.s.name); err != nil {
			return err
		}
	}
}

func (p *parser) unexpected(path, name string) error {
	return p.invalid(CodeSchemaElementUnexpect, path+"/"+name, "element "+name+" is not part of MeMo here", p.s.tokLine)
}

// text reads a simple element's text and its end tag.
func (p *parser) text() (string, error) {
	p.str.b = p.str.b[:0]
	p.str.skipLF, p.str.over, p.str.limit = false, false, maxLeafText
	if err := p.s.text(&p.str); err != nil {
		return "", err
	}
	if p.str.over {
		return "", p.s.fail("text too long")
	}
	tok, err := p.s.next()
	if err != nil {
		return "", err
	}
	if tok != tokEnd {
		return "", p.s.fail("expected an end tag")
	}
	return p.intern(p.str.b), nil
}

// intern copies b into the parser's arena and returns it as a string: one
// allocation per few kilobytes of text instead of one per element. The arena
// is append-only, so the bytes behind a returned string never change; a
// pooled parser (parseState) goes on filling its arena with the next
// letter's text, so that letters share chunks.
func (p *parser) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if cap(p.arena)-len(p.arena) < len(b) {
		p.arena = make([]byte, 0, max(arenaChunk, len(b)))
	}
	start := len(p.arena)
	p.arena = append(p.arena, b...)
	return unsafe.String(&p.arena[start], len(b))
}

// arenaChunk is the size of an arena's chunks: the text of two or three
// letters like the full example.
const arenaChunk = 8 << 10

// str reads a simple element into *dst.
func (p *parser) into(dst *string) error {
	v, err := p.text()
	*dst = v
	return err
}

func (p *parser) boolean(dst **bool) error {
	v, err := p.text()
	if err != nil {
		return err
	}
	switch strings.TrimSpace(v) {
	case "true", "1":
		*dst = Bool(true)
	case "false", "0":
		*dst = Bool(false)
	default:
		return p.invalid(CodeSchemaValueInvalid, "", "not a boolean: "+clip(v), p.s.tokLine)
	}
	return nil
}

// leaves reads a complex element, parent+"/"+elem, whose children are all
// simple, mapping each child name to its destination. The element's path
// is only spelled out for an error: a letter passes here some thirty
// times, and the concatenation was a tenth of its allocations.
func (p *parser) leaves(parent, elem string, kv ...leaf) error {
	for {
		tok, err := p.s.next()
		if err != nil {
			return err
		}
		switch tok {
		case tokEnd:
			return nil
		case tokEOF:
			return p.s.fail("unexpected end of document")
		}
		name := p.s.name
		found := false
		for _, l := range kv {
			if l.name == name {
				if err := p.into(l.dst); err != nil {
					return err
				}
				found = true
				break
			}
		}
		if !found {
			return p.unexpected(parent+"/"+elem, name)
		}
	}
}

type leaf struct {
	name string
	dst  *string
}

func (p *parser) header(h *MessageHeader) error {
	const path = "/Message/MessageHeader"
	h.lines.header = p.s.tokLine
	replies := p.replies.mark()
	defer func() { h.ReplyData = p.replies.take(replies) }()
	return p.children(path, func(name string) error {
		line := p.s.tokLine
		switch name {
		case "messageType":
			h.lines.messageType = line
			return p.into(&h.MessageType)
		case "messageUUID":
			h.lines.messageUUID = line
			return p.into(&h.MessageUUID)
		case "messageID":
			return p.into(&h.MessageID)
		case "messageCode":
			return p.into(&h.MessageCode)
		case "label":
			return p.into(&h.Label)
		case "notification":
			h.lines.notification = line
			return p.into(&h.Notification)
		case "additionalNotification":
			return p.into(&h.AdditionalNotification)
		case "reply":
			return p.boolean(&h.Reply)
		case "replyByDateTime":
			return p.into(&h.ReplyByDateTime)
		case "doNotDeliverUntilDate":
			h.lines.doNotDeliverUntilDate = line
			return p.into(&h.DoNotDeliverUntilDate)
		case "mandatory":
			return p.boolean(&h.Mandatory)
		case "legalNotification":
			return p.boolean(&h.LegalNotification)
		case "postType":
			return p.into(&h.PostType)
		case "Sender":
			return p.sender(&h.Sender)
		case "Recipient":
			return p.recipient(&h.Recipient)
		case "ContentData":
			h.ContentData = p.parts.contentData.take()
			return p.contentData(h.ContentData)
		case "ForwardData":
			h.ForwardData = p.parts.forwardData.take()
			return p.forwardData(h.ForwardData)
		case "ReplyData":
			return p.replyData(p.replies.add())
		}
		return p.unexpected(path, name)
	})
}

func (p *parser) sender(s *Sender) error {
	const path = "/Message/MessageHeader/Sender"
	return p.children(path, func(name string) error {
		switch name {
		case "senderID":
			s.idLine = p.s.tokLine
			return p.into(&s.SenderID)
		case "idType":
			s.idTypeLine = p.s.tokLine
			return p.into(&s.IDType)
		case "idTypeLabel":
			return p.into(&s.IDTypeLabel)
		case "label":
			return p.into(&s.Label)
		case "AttentionData":
			s.AttentionData = p.parts.attentionData.take()
			return p.attention(path+"/AttentionData", s.AttentionData)
		case "ContactPoint":
			s.ContactPoint = p.parts.contactPoint.take()
			return p.contactPoint(path+"/ContactPoint", s.ContactPoint)
		case "Representative":
			r := p.parts.representative.take()
			r.line = p.s.tokLine
			s.Representative = r
			return p.leaves(path, "Representative", leaf{"representativeID", &r.RepresentativeID}, leaf{"idType", &r.IDType}, leaf{"idTypeLabel", &r.IDTypeLabel}, leaf{"label", &r.Label})
		}
		return p.unexpected(path, name)
	})
}

func (p *parser) recipient(r *Recipient) error {
	const path = "/Message/MessageHeader/Recipient"
	return p.children(path, func(name string) error {
		switch name {
		case "recipientID":
			r.idLine = p.s.tokLine
			return p.into(&r.RecipientID)
		case "idType":
			r.idTypeLine = p.s.tokLine
			return p.into(&r.IDType)
		case "idTypeLabel":
			return p.into(&r.IDTypeLabel)
		case "label":
			return p.into(&r.Label)
		case "AttentionData":
			r.AttentionData = p.parts.attentionData.take()
			return p.attention(path+"/AttentionData", r.AttentionData)
		case "ContactPoint":
			r.ContactPoint = p.parts.contactPoint.take()
			return p.contactPoint(path+"/ContactPoint", r.ContactPoint)
		}
		return p.unexpected(path, name)
	})
}

func (p *parser) contactPoint(path string, c *ContactPoint) error {
	infos := p.contactInfo.mark()
	defer func() { c.ContactInfo = p.contactInfo.take(infos) }()
	return p.children(path, func(name string) error {
		switch name {
		case "contactGroup":
			return p.into(&c.ContactGroup)
		case "contactPointID":
			c.idLine = p.s.tokLine
			return p.into(&c.ContactPointID)
		case "label":
			return p.into(&c.Label)
		case "ContactInfo":
			ci := p.contactInfo.add()
			return p.leaves(path, "ContactInfo", leaf{"label", &ci.Label}, leaf{"value", &ci.Value})
		}
		return p.unexpected(path, name)
	})
}

func (p *parser) attention(path string, a *AttentionData) error {
	return p.children(path, func(name string) error {
		switch name {
		case "AttentionPerson":
			v := p.parts.attentionPerson.take()
			a.AttentionPerson = v
			return p.leaves(path, name, leaf{"personID", &v.PersonID}, leaf{"label", &v.Label})
		case "grd:ProductionUnit":
			a.ProductionUnit = p.parts.productionUnit.take()
			return p.productionUnit(path, name, a.ProductionUnit)
		case "gln:GlobalLocationNumber":
			v := p.parts.globalLocationNumber.take()
			a.GlobalLocationNumber = v
			return p.leaves(path, name, leaf{"gln:globalLocationNumber", &v.GlobalLocationNumber}, leaf{"gln:location", &v.Location})
		case "EMail":
			v := p.parts.email.take()
			a.EMail = v
			return p.leaves(path, name, leaf{"emailAddress", &v.EmailAddress}, leaf{"relatedAgent", &v.RelatedAgent})
		case "grd:SEnumber":
			v := p.parts.seNumber.take()
			a.SEnumber = v
			return p.leaves(path, name, leaf{"grd:seNumber", &v.SENumber}, leaf{"grd:companyName", &v.CompanyName})
		case "Telephone":
			v := p.parts.telephone.take()
			a.Telephone = v
			return p.leaves(path, name, leaf{"telephoneNumber", &v.TelephoneNumber}, leaf{"relatedAgent", &v.RelatedAgent})
		case "grd:EID":
			v := p.parts.eid.take()
			a.EID = v
			return p.leaves(path, name, leaf{"grd:eID", &v.EID}, leaf{"grd:label", &v.Label})
		case "ContentResponsible":
			v := p.parts.contentResponsible.take()
			a.ContentResponsible = v
			return p.leaves(path, name, leaf{"contentResponsibleID", &v.ContentResponsibleID}, leaf{"label", &v.Label})
		case "GeneratingSystem":
			v := p.parts.generatingSystem.take()
			a.GeneratingSystem = v
			return p.leaves(path, name, leaf{"generatingSystemID", &v.GeneratingSystemID}, leaf{"label", &v.Label})
		case "sor:SORdata":
			v := p.parts.sorData.take()
			a.SORdata = v
			return p.leaves(path, name, leaf{"sor:sorIdentifier", &v.SORIdentifier}, leaf{"sor:entryName", &v.EntryName})
		case "grd:Address":
			a.Address = p.parts.address.take()
			return p.address(path, a.Address)
		case "grd:UnstructuredAddress":
			v := p.parts.unstructuredAddress.take()
			a.UnstructuredAddress = v
			return p.leaves(path, name, leaf{"grd:unstructured", &v.Unstructured})
		}
		return p.unexpected(path, name)
	})
}

func (p *parser) productionUnit(parent, name string, v *ProductionUnit) error {
	return p.leaves(parent, name, leaf{"grd:productionUnitNumber", &v.ProductionUnitNumber}, leaf{"grd:productionUnitName", &v.ProductionUnitName})
}

// address reads parent's grd:Address; its path is spelled out only for
// an error.
func (p *parser) address(parent string, a *Address) error {
	return p.children(parent, func(name string) error {
		switch name {
		case "grd:id":
			return p.into(&a.ID)
		case "grd:addressLabel":
			return p.into(&a.AddressLabel)
		case "grd:houseNumber":
			return p.into(&a.HouseNumber)
		case "grd:door":
			return p.into(&a.Door)
		case "grd:floor":
			return p.into(&a.Floor)
		case "grd:co":
			return p.into(&a.Co)
		case "grd:zipCode":
			return p.into(&a.ZipCode)
		case "grd:city":
			return p.into(&a.City)
		case "grd:country":
			return p.into(&a.Country)
		case "grd:AddressPoint":
			v := p.parts.addressPoint.take()
			a.AddressPoint = v
			return p.leaves(parent, "grd:Address/grd:AddressPoint", leaf{"grd:geographicEastingMeasure", &v.GeographicEastingMeasure}, leaf{"grd:geographicNorthingMeasure", &v.GeographicNorthingMeasure}, leaf{"grd:geographicHeightMeasure", &v.GeographicHeightMeasure})
		}
		return p.unexpected(parent+"/grd:Address", name)
	})
}

func (p *parser) contentData(c *ContentData) error {
	const path = "/Message/MessageHeader/ContentData"
	extras := p.contentExtras.mark()
	defer func() { c.AdditionalContentData = p.contentExtras.take(extras) }()
	return p.children(path, func(name string) error {
		switch name {
		case "grd:CPRdata":
			v := p.parts.cprData.take()
			c.CPRdata = v
			return p.children(path+"/grd:CPRdata", func(n string) error {
				switch n {
				case "grd:cprNumber":
					v.line = p.s.tokLine
					return p.into(&v.CPRNumber)
				case "grd:name":
					return p.into(&v.Name)
				}
				return p.unexpected(path+"/grd:CPRdata", n)
			})
		case "grd:CVRdata":
			v := p.parts.cvrData.take()
			c.CVRdata = v
			return p.children(path+"/grd:CVRdata", func(n string) error {
				switch n {
				case "grd:cvrNumber":
					v.line = p.s.tokLine
					return p.into(&v.CVRNumber)
				case "grd:companyName":
					return p.into(&v.CompanyName)
				}
				return p.unexpected(path+"/grd:CVRdata", n)
			})
		case "dmv:MotorVehicle":
			v := p.parts.motorVehicle.take()
			c.MotorVehicle = v
			return p.leaves(path, name, leaf{"dmv:licenseNumber", &v.LicenseNumber}, leaf{"dmv:chassisNumber", &v.ChassisNumber})
		case "grd:PropertyNumber":
			v := p.parts.propertyNumber.take()
			c.PropertyNumber = v
			return p.leaves(path, name, leaf{"grd:propertyNumber", &v.PropertyNumber})
		case "CaseID":
			v := p.parts.caseID.take()
			c.CaseID = v
			return p.leaves(path, name, leaf{"caseID", &v.CaseID}, leaf{"caseSystem", &v.CaseSystem})
		case "kle:KLEdata":
			v := p.parts.kleData.take()
			c.KLEdata = v
			return p.leaves(path, name, leaf{"kle:subjectKey", &v.SubjectKey}, leaf{"kle:version", &v.Version}, leaf{"kle:activityFacet", &v.ActivityFacet}, leaf{"kle:label", &v.Label})
		case "form:FORMdata":
			v := p.parts.formData.take()
			c.FORMdata = v
			return p.leaves(path, name, leaf{"form:taskKey", &v.TaskKey}, leaf{"form:version", &v.Version}, leaf{"form:activityFacet", &v.ActivityFacet}, leaf{"form:label", &v.Label})
		case "grd:ProductionUnit":
			c.ProductionUnit = p.parts.productionUnit.take()
			return p.productionUnit(path, name, c.ProductionUnit)
		case "udd:Education":
			v := p.parts.education.take()
			c.Education = v
			return p.leaves(path, name, leaf{"udd:educationCode", &v.EducationCode}, leaf{"udd:educationName", &v.EducationName})
		case "grd:Address":
			c.Address = p.parts.address.take()
			return p.address(path, c.Address)
		case "grd:UnstructuredAddress":
			v := p.parts.unstructuredAddress.take()
			c.UnstructuredAddress = v
			return p.leaves(path, name, leaf{"grd:unstructured", &v.Unstructured})
		case "AdditionalContentData":
			v := p.contentExtras.add()
			return p.leaves(path, name, leaf{"contentDataType", &v.ContentDataType}, leaf{"contentDataName", &v.ContentDataName}, leaf{"contentDataValue", &v.ContentDataValue})
		}
		return p.unexpected(path, name)
	})
}

func (p *parser) forwardData(f *ForwardData) error {
	const path = "/Message/MessageHeader/ForwardData"
	return p.children(path, func(name string) error {
		switch name {
		case "messageUUID":
			return p.into(&f.MessageUUID)
		case "originalMessageDateTime":
			return p.into(&f.OriginalMessageDateTime)
		case "originalSender":
			return p.into(&f.OriginalSender)
		case "originalContentResponsible":
			return p.into(&f.OriginalContentResponsible)
		case "originalRepresentative":
			return p.into(&f.OriginalRepresentative)
		case "contactPointID":
			f.contactPointIDLine = p.s.tokLine
			return p.into(&f.ContactPointID)
		case "comment":
			return p.into(&f.Comment)
		}
		return p.unexpected(path, name)
	})
}

func (p *parser) replyData(r *ReplyData) error {
	const path = "/Message/MessageHeader/ReplyData"
	extras := p.replyExtras.mark()
	defer func() { r.AdditionalReplyData = p.replyExtras.take(extras) }()
	return p.children(path, func(name string) error {
		switch name {
		case "messageID":
			return p.into(&r.MessageID)
		case "messageUUID":
			return p.into(&r.MessageUUID)
		case "replyUUID":
			return p.into(&r.ReplyUUID)
		case "senderID":
			return p.into(&r.SenderID)
		case "recipientID":
			return p.into(&r.RecipientID)
		case "caseID":
			return p.into(&r.CaseID)
		case "contactPointID":
			r.contactPointIDLine = p.s.tokLine
			return p.into(&r.ContactPointID)
		case "generatingSystemID":
			return p.into(&r.GeneratingSystemID)
		case "comment":
			return p.into(&r.Comment)
		case "AdditionalReplyData":
			v := p.replyExtras.add()
			return p.leaves(path, name, leaf{"label", &v.Label}, leaf{"value", &v.Value})
		}
		return p.unexpected(path, name)
	})
}

func (p *parser) body(b *MessageBody) error {
	const path = "/Message/MessageBody"
	adds, techs := p.addDocs.mark(), p.techDocs.mark()
	defer func() {
		b.AdditionalDocument = p.addDocs.take(adds)
		b.TechnicalDocument = p.techDocs.take(techs)
	}()
	return p.children(path, func(name string) error {
		switch name {
		case "createdDateTime":
			return p.into(&b.CreatedDateTime)
		case "MainDocument":
			return p.document(MainDocumentKind, &b.MainDocument)
		case "AdditionalDocument":
			return p.document(AdditionalDocumentKind, p.addDocs.add())
		case "TechnicalDocument":
			return p.document(TechnicalDocumentKind, p.techDocs.add())
		}
		return p.unexpected(path, name)
	})
}

// documentPaths are the element paths the parser names in its errors
// inside a document of each kind: constants, so that reading a letter
// spells out none of them.
var documentPaths = [...]struct{ doc, file, action, entryPoint string }{
	MainDocumentKind: {
		"/Message/MessageBody/MainDocument", "/Message/MessageBody/MainDocument/File",
		"/Message/MessageBody/MainDocument/Action", "/Message/MessageBody/MainDocument/Action/EntryPoint",
	},
	AdditionalDocumentKind: {
		"/Message/MessageBody/AdditionalDocument", "/Message/MessageBody/AdditionalDocument/File",
		"/Message/MessageBody/AdditionalDocument/Action", "/Message/MessageBody/AdditionalDocument/Action/EntryPoint",
	},
	TechnicalDocumentKind: {
		"/Message/MessageBody/TechnicalDocument", "/Message/MessageBody/TechnicalDocument/File",
		"/Message/MessageBody/TechnicalDocument/Action", "/Message/MessageBody/TechnicalDocument/Action/EntryPoint",
	},
}

func (p *parser) document(kind DocumentKind, d *Document) error {
	d.line = p.s.tokLine
	idName := kind.idElement()
	paths := &documentPaths[kind]
	path := paths.doc
	files, actions := p.filePtrs.mark(), p.actions.mark()
	defer func() {
		d.Files = p.filePtrs.take(files)
		d.Actions = p.actions.take(actions)
	}()
	return p.children(path, func(name string) error {
		switch name {
		case idName:
			return p.into(&d.DocumentID)
		case "label":
			return p.into(&d.Label)
		case "File":
			f := p.files.take()
			f.line = p.s.tokLine
			*p.filePtrs.add() = f
			return p.file(paths.file, f)
		case "Action":
			if kind != TechnicalDocumentKind {
				a := p.actions.add()
				a.line = p.s.tokLine
				return p.action(paths.action, paths.entryPoint, a)
			}
		}
		return p.unexpected(path, name)
	})
}

func (p *parser) file(path string, f *File) error {
	return p.children(path, func(name string) error {
		line := p.s.tokLine
		switch name {
		case "encodingFormat":
			f.lines.encodingFormat = line
			return p.into(&f.EncodingFormat)
		case "filename":
			f.lines.filename = line
			return p.into(&f.Filename)
		case "language":
			return p.into(&f.Language)
		case "content":
			f.lines.content = line
			return p.content(f)
		}
		return p.unexpected(path, name)
	})
}

// content streams File/content to a base64Sink: as references into the
// document, or decoded into memory for stream input.
func (p *parser) content(f *File) error {
	p.b64 = base64Sink{decode: p.decode}
	sink := &p.b64
	if !p.decode {
		// The segments go into the parser's room (see segs), unless they
		// outgrow it.
		if cap(p.segs)-len(p.segs) < 4 {
			p.segs = make([]segment, 0, segsChunk)
		}
		sink.segs = p.segs[len(p.segs):len(p.segs)]
	}
	if err := p.s.text(sink); err != nil {
		return err
	}
	if sink.err != nil {
		return p.invalid(CodeSchemaValueInvalid, "", "File content is not valid base64", f.lines.content)
	}
	if tok, err := p.s.next(); err != nil || tok != tokEnd {
		if err == nil {
			err = p.s.fail("expected an end tag")
		}
		return err
	}
	c := content{encoded: sink.n, decoded: sink.decodedSize()}
	switch {
	case p.decode:
		if sink.nq != 0 {
			return p.invalid(CodeSchemaValueInvalid, "", "File content is not valid base64", f.lines.content)
		}
		c.data, c.hasData = sink.out, true
		if c.data == nil {
			c.data = []byte{}
		}
		c.decoded = int64(len(c.data))
	default:
		c.path, c.src = p.path, p.src
		n := len(sink.segs)
		if n > 0 && cap(sink.segs) == cap(p.segs)-len(p.segs) {
			// Still in the room: the room moves past them.
			p.segs = p.segs[:len(p.segs)+n]
		}
		c.segs = sink.segs[:n:n]
		if n == 0 {
			c.segs = []segment{}
		}
	}
	f.content = c
	return nil
}

func (p *parser) action(path, entryPath string, a *Action) error {
	return p.children(path, func(name string) error {
		switch name {
		case "label":
			return p.into(&a.Label)
		case "actionCode":
			return p.into(&a.ActionCode)
		case "startDateTime":
			return p.into(&a.StartDateTime)
		case "endDateTime":
			return p.into(&a.EndDateTime)
		case "Reservation":
			r := p.parts.reservation.take()
			a.Reservation = r
			return p.leaves(path, "Reservation", leaf{"description", &r.Description}, leaf{"reservationUUID", &r.ReservationUUID}, leaf{"abstract", &r.Abstract}, leaf{"location", &r.Location}, leaf{"startDateTime", &r.StartDateTime}, leaf{"endDateTime", &r.EndDateTime}, leaf{"organizerMail", &r.OrganizerMail}, leaf{"organizerName", &r.OrganizerName})
		case "EntryPoint":
			e := p.parts.entryPoint.take()
			e.line = p.s.tokLine
			a.EntryPoint = e
			return p.children(entryPath, func(n string) error {
				if n == "url" {
					e.line = p.s.tokLine
					return p.into(&e.URL)
				}
				return p.unexpected(entryPath, n)
			})
		}
		return p.unexpected(path, name)
	})
}

// clip shortens v for an error message.
func clip(v string) string {
	if len(v) > 64 {
		return v[:64] + "…"
	}
	return v
}
