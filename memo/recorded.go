package memo

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// One parse per letter. ValidateBytes used to parse a document twice:
// libxml2 built a tree to validate, then the Go pull scanner read the same
// bytes again, tag by tag, for the model. Now libxml2 records, as it builds
// the tree, where each element's start and end tags end and the element's
// namespace and local name (ph_rec in xsd.go), and the Go parser walks the
// document's bytes along those records: it no longer reads a tag's name,
// attributes or namespace declarations (the root's excepted, whose
// memoVersion it needs), it jumps from tag to tag. Everything between the
// tags is read exactly as before by the same code — text, character
// references, CDATA, comments, processing instructions, line counting —
// so the model, with its lines, is the one ParseBytes builds.
//
// Every record is checked against the bytes: a start tag must begin where
// the scanner stands and hold no '<' up to its recorded '>' (or "/>"), an
// end tag likewise, and the records must be used up at the end. Should
// anything not match, or the Go parser refuse the document (which the
// schema makes rare: a character reference it cannot read, a leaf text
// over maxLeafText), parseRecorded reads the document with ParseBytes
// instead, so such a document gets the very answer it got before.

// records reads libxml2's element records (the format is described at
// ph_rec in xsd.go).
type records struct {
	b     []byte
	pos   int
	nuris int
	ns    [maxRecordURIs + 1]int // namespace id of each uri index; 0 is no namespace
}

var errRecords = errors.New("memo: libxml2's element records do not match the document")

func (r *records) done() bool      { return r.pos == len(r.b) }
func (r *records) mismatch() error { return errRecords }

// uris takes the namespace records before an element's.
func (r *records) uris() bool {
	for r.pos < len(r.b) && r.b[r.pos] == 3 {
		if len(r.b)-r.pos < 5 || r.nuris == maxRecordURIs {
			return false
		}
		n := int64(binary.LittleEndian.Uint32(r.b[r.pos+1:]))
		if int64(len(r.b)-r.pos-5) < n {
			return false
		}
		uri := r.b[r.pos+5 : r.pos+5+int(n)]
		id := nsOther
		if k, ok := nsIDs[string(uri)]; ok {
			id = k
		}
		r.nuris++
		r.ns[r.nuris] = id
		r.pos += 5 + int(n)
	}
	return true
}

// start takes a start tag's record: the element's namespace id, its local
// name and the offset of the tag's closing '>' (or the '/' of "/>").
func (r *records) start() (ns int, local []byte, off int64, ok bool) {
	if !r.uris() || len(r.b)-r.pos < 12 || r.b[r.pos] != 1 {
		return 0, nil, 0, false
	}
	idx := int(r.b[r.pos+1])
	n := int(binary.LittleEndian.Uint16(r.b[r.pos+2:]))
	off = int64(binary.LittleEndian.Uint64(r.b[r.pos+4:]))
	if idx > r.nuris || len(r.b)-r.pos-12 < n || n == 0 {
		return 0, nil, 0, false
	}
	local = r.b[r.pos+12 : r.pos+12+n]
	r.pos += 12 + n
	return r.ns[idx], local, off, true
}

// end takes an end tag's record: the offset just past its '>'.
func (r *records) end() (off int64, ok bool) {
	if len(r.b)-r.pos < 9 || r.b[r.pos] != 2 {
		return 0, false
	}
	off = int64(binary.LittleEndian.Uint64(r.b[r.pos+1:]))
	r.pos += 9
	return off, true
}

// parseRecorded reads the model of b, which libxml2 has just parsed and
// found valid, along libxml2's records of its elements. With no records
// (libxml2 could not make them) it is ParseBytes. Errors as ParseBytes.
func parseRecorded(b, recs []byte) (*Message, error) {
	if recs == nil {
		return ParseBytes(b)
	}
	m, err := followRecords(b, recs)
	if err != nil {
		return ParseBytes(b)
	}
	return m, nil
}

// followRecords is parseRecorded without the fallback.
func followRecords(b, recs []byte) (*Message, error) {
	st := newBytesParse(b)
	defer st.release()
	st.rec = records{b: recs}
	st.s.rec = &st.rec
	m, err := st.p.parse()
	if err != nil {
		return nil, err
	}
	m.Size = int64(len(b))
	return m, nil
}

// recordedTag checks that the tag whose recorded end is off begins at pos:
// no '<' between. It returns the offset of the tag's last byte ('>').
func (s *pullScanner) recordedTag(off int64, minLen int) (int, bool) {
	o := off - s.base
	if o < int64(s.pos+minLen-1) || o >= int64(s.end) || bytes.IndexByte(s.buf[s.pos+1:o], '<') >= 0 {
		return 0, false
	}
	return int(o), true
}

// recordedStart is startTag for a recorded document: the tag at pos is the
// next start tag record's. Only the root's attributes are read (they carry
// memoVersion).
func (s *pullScanner) recordedStart() error {
	ns, local, off, ok := s.rec.start()
	if !ok {
		return s.rec.mismatch()
	}
	o, ok := s.recordedTag(off, 3)
	if !ok {
		return s.rec.mismatch()
	}
	gt, self := o, false
	switch s.buf[o] {
	case '>':
	case '/':
		if o+1 >= s.end || s.buf[o+1] != '>' {
			return s.rec.mismatch()
		}
		gt, self = o+1, true
	default:
		return s.rec.mismatch()
	}
	s.attrs = s.attrs[:0]
	if !s.rootSeen {
		if err := s.recordedRootAttrs(local, o); err != nil {
			return err
		}
	}
	s.tokLine = s.line
	s.depth++
	s.tokDepth = s.depth
	s.rootSeen = true
	s.name = s.intern(ns, local)
	s.open = append(s.open, s.name)
	s.advance(gt + 1 - s.pos)
	s.selfEnd = self
	if self {
		// "<x/>" has an end record too, right after its start's.
		if off, ok := s.rec.end(); !ok || off-s.base != int64(s.pos) {
			return s.rec.mismatch()
		}
	}
	return nil
}

// recordedRootAttrs reads the attributes of the root's start tag, which
// begins at pos and whose attributes end at o, into attrs as startTag
// would, keeping only the two the parser reads: memoVersion and
// memoSchVersion. Namespace
// declarations need no binding (the records name every element's
// namespace), so an attribute with any other prefix, which startTag would
// resolve and the schema refuses on Message anyway, sends the document to
// ParseBytes.
func (s *pullScanner) recordedRootAttrs(local []byte, o int) error {
	tag := s.buf[s.pos+1 : o]
	n := 0
	for n < len(tag) && pullNameByte(tag[n]) {
		n++
	}
	name := tag[:n]
	if c := bytes.IndexByte(name, ':'); c >= 0 {
		name = name[c+1:]
	}
	if !bytes.Equal(name, local) {
		return s.rec.mismatch()
	}
	var raws [16]rawAttr
	list, err := s.splitAttrs(tag[n:], raws[:0])
	if err != nil {
		return err
	}
	for _, a := range list {
		if bytes.Equal(a.name, []byte("xmlns")) || bytes.HasPrefix(a.name, []byte("xmlns:")) {
			continue
		}
		if bytes.IndexByte(a.name, ':') >= 0 {
			return s.rec.mismatch()
		}
		var local string
		switch string(a.name) {
		case "memoVersion":
			local = "memoVersion"
		case "memoSchVersion":
			local = "memoSchVersion"
		default:
			// The parser reads no other attribute of the root: its value
			// is only decoded if there is anything to decode, for the
			// error startTag would give.
			if bytes.IndexByte(a.val, '&') >= 0 || bytes.ContainsAny(a.val, "\t\r\n<") {
				if _, err := s.attrValue(a.val); err != nil {
					return err
				}
			}
			continue
		}
		var v string
		switch string(a.val) {
		case Version11, Version12:
			// The version as nearly every letter spells it needs no copy.
			v = versionOf(a.val)
		default:
			var err error
			if v, err = s.attrValue(a.val); err != nil {
				return err
			}
		}
		s.attrs = append(s.attrs, attr{local: local, ns: nsNone, value: v})
	}
	return nil
}

// versionOf returns the constant that spells v, which is Version11 or
// Version12.
func versionOf(v []byte) string {
	if string(v) == Version11 {
		return Version11
	}
	return Version12
}

// recordedEnd is endTag for a recorded document.
func (s *pullScanner) recordedEnd() error {
	off, ok := s.rec.end()
	if !ok || s.depth == 0 {
		return s.rec.mismatch()
	}
	o, ok := s.recordedTag(off-1, 4)
	if !ok || s.buf[o] != '>' {
		return s.rec.mismatch()
	}
	top := s.open[len(s.open)-1]
	s.name = top
	s.open = s.open[:len(s.open)-1]
	s.tokLine = s.line
	s.advance(o + 1 - s.pos)
	s.depth--
	s.popNS()
	return nil
}
