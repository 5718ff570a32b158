package bolt

import (
	"encoding"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/jsonenc"
)

// Events are the records the store encodes and decodes most: an accepted
// letter's three are encoded for the pending bucket, decoded by the sealer
// and encoded again sealed, and encoding/json spends most of that on
// reflection. appendEvent writes the very bytes json.Marshal writes (the
// records on disk do not change: TestEventJSONIsEncodingJSONs compares
// them), and scanEvent reads exactly the records such an encoder writes,
// leaving anything else (an escape in a string, whitespace, null, an
// unknown or repeated key: what an earlier version or another encoder may
// have written) to json.Unmarshal, so every stored record reads as before.
// Both are used only while hub.Event has exactly the fields they know
// (eventJSONKnown, checked by reflection once): a field added to it turns
// them off, and a test fails, rather than the field being dropped.

// eventFields are hub.Event's fields as this file encodes them, in order.
var eventFields = []jsonField{
	{"ID", "id", reflect.TypeFor[string]()},
	{"Time", "eventTime", reflect.TypeFor[time.Time]()},
	{"Tag", "eventTag", reflect.TypeFor[string]()},
	{"Actor", "actor,omitempty", reflect.TypeFor[string]()},
	{"Orgs", "organisations,omitempty", reflect.TypeFor[[]string]()},
	{"SystemID", "systemId,omitempty", reflect.TypeFor[string]()},
	{"MessageUUID", "messageUUID,omitempty", reflect.TypeFor[string]()},
	{"Party", "party,omitempty", reflect.TypeFor[string]()},
	{"Detail", "detail,omitempty", reflect.TypeFor[map[string]string]()},
	{"Seq", "seq,omitempty", reflect.TypeFor[uint64]()},
	{"PrevHash", "prevHash,omitempty", reflect.TypeFor[string]()},
	{"Hash", "hash,omitempty", reflect.TypeFor[string]()},
}

// eventJSONKnown reports whether hub.Event is the struct eventFields
// describes.
var eventJSONKnown = jsonFieldsAre(reflect.TypeFor[hub.Event](), eventFields)

// jsonField is a struct field as a hand-written encoder expects it: its
// name, json tag and type.
type jsonField struct {
	name, tag string
	typ       reflect.Type
}

// jsonFieldsAre reports whether struct t has exactly the fields fs, in
// order, none of whose types (but time.Time's) encodes itself
// (json.Marshaler, encoding.TextMarshaler), so that an encoder written for
// fs writes what json.Marshal writes for t.
func jsonFieldsAre(t reflect.Type, fs []jsonField) bool {
	if t.NumField() != len(fs) || encodesItself(t) {
		return false
	}
	for i, f := range fs {
		sf := t.Field(i)
		if sf.Name != f.name || sf.Tag.Get("json") != f.tag || sf.Type != f.typ {
			return false
		}
		if sf.Type != reflect.TypeFor[time.Time]() && encodesItself(sf.Type) {
			return false
		}
	}
	return true
}

// encodesItself reports whether encoding/json encodes a t with a method of
// t's (or *t's).
func encodesItself(t reflect.Type) bool {
	for _, i := range []reflect.Type{reflect.TypeFor[json.Marshaler](), reflect.TypeFor[encoding.TextMarshaler]()} {
		if t.Implements(i) || reflect.PointerTo(t).Implements(i) {
			return true
		}
	}
	return false
}

// encodeEvent appends ev's JSON, as json.Marshal encodes it, to b.
func encodeEvent(b []byte, ev *hub.Event) ([]byte, error) {
	if eventJSONKnown {
		if out, ok := appendEvent(b, ev); ok {
			return out, nil
		}
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return b, err
	}
	return append(b, raw...), nil
}

// appendEvent is encodeEvent's own encoder; false when a time cannot be
// encoded (json.Marshal then reports why).
func appendEvent(b []byte, ev *hub.Event) ([]byte, bool) {
	b = append(b, `{"id":`...)
	b = jsonenc.AppendString(b, ev.ID)
	b, ok := jsonenc.AppendTime(append(b, `,"eventTime":`...), ev.Time)
	if !ok {
		return nil, false
	}
	b = append(b, `,"eventTag":`...)
	b = jsonenc.AppendString(b, ev.Tag)
	b = appendOmitEmpty(b, `,"actor":`, ev.Actor)
	if len(ev.Orgs) > 0 {
		b = append(b, `,"organisations":[`...)
		for i, o := range ev.Orgs {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonenc.AppendString(b, o)
		}
		b = append(b, ']')
	}
	b = appendOmitEmpty(b, `,"systemId":`, ev.SystemID)
	b = appendOmitEmpty(b, `,"messageUUID":`, ev.MessageUUID)
	b = appendOmitEmpty(b, `,"party":`, ev.Party)
	if len(ev.Detail) > 0 {
		b = appendStringMap(append(b, `,"detail":`...), ev.Detail)
	}
	if ev.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, ev.Seq, 10)
	}
	b = appendOmitEmpty(b, `,"prevHash":`, ev.PrevHash)
	b = appendOmitEmpty(b, `,"hash":`, ev.Hash)
	return append(b, '}'), true
}

// appendStringMap appends m as encoding/json encodes a map of strings:
// its keys in byte order.
func appendStringMap(b []byte, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonenc.AppendString(b, k)
		b = append(b, ':')
		b = jsonenc.AppendString(b, m[k])
	}
	return append(b, '}')
}

func appendOmitEmpty(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return jsonenc.AppendString(append(b, key...), s)
}

// decodeEvent decodes a stored event record as json.Unmarshal into a zero
// hub.Event does.
func decodeEvent(raw []byte) (hub.Event, error) {
	if eventJSONKnown {
		if ev, ok := scanEvent(raw); ok {
			return ev, nil
		}
	}
	var ev hub.Event
	err := json.Unmarshal(raw, &ev)
	return ev, err
}

// scanEvent reads raw when it is an object as appendEvent writes them
// (keys in any order, each at most once); false for anything else.
func scanEvent(raw []byte) (hub.Event, bool) {
	var ev hub.Event
	s := jsonScan{b: raw}
	if !s.lit('{') {
		return ev, false
	}
	if s.lit('}') {
		return ev, s.done()
	}
	var seen uint32
	for {
		k, ok := s.str()
		if !ok || !s.lit(':') {
			return ev, false
		}
		f := eventKey(k)
		if f < 0 || seen&(1<<f) != 0 {
			return ev, false
		}
		seen |= 1 << f
		switch f {
		case 0:
			ev.ID, ok = s.text()
		case 1:
			// The literal with its quotes, as json.Unmarshal hands it to
			// time.Time's UnmarshalJSON.
			start := s.i
			if _, ok = s.str(); ok {
				ok = ev.Time.UnmarshalJSON(raw[start:s.i]) == nil
			}
		case 2:
			ev.Tag, ok = s.text()
		case 3:
			ev.Actor, ok = s.text()
		case 4:
			ev.Orgs, ok = s.strings()
		case 5:
			ev.SystemID, ok = s.text()
		case 6:
			ev.MessageUUID, ok = s.text()
		case 7:
			ev.Party, ok = s.text()
		case 8:
			ev.Detail, ok = s.stringMap()
		case 9:
			ev.Seq, ok = s.uint()
		case 10:
			ev.PrevHash, ok = s.text()
		case 11:
			ev.Hash, ok = s.text()
		}
		if !ok {
			return ev, false
		}
		if s.lit(',') {
			continue
		}
		if s.lit('}') {
			return ev, s.done()
		}
		return ev, false
	}
}

// eventKey is the index in eventFields of the field a key names, -1 for
// none.
func eventKey(k []byte) int {
	switch string(k) {
	case "id":
		return 0
	case "eventTime":
		return 1
	case "eventTag":
		return 2
	case "actor":
		return 3
	case "organisations":
		return 4
	case "systemId":
		return 5
	case "messageUUID":
		return 6
	case "party":
		return 7
	case "detail":
		return 8
	case "seq":
		return 9
	case "prevHash":
		return 10
	case "hash":
		return 11
	}
	return -1
}

// jsonScan reads the compact JSON this package's encoders write; each
// method reports false for anything it does not read exactly as
// json.Unmarshal would, and the caller then leaves the record to it.
type jsonScan struct {
	b []byte
	i int
}

func (s *jsonScan) lit(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *jsonScan) done() bool { return s.i == len(s.b) }

// str reads a string without escapes, whose bytes are its value: valid
// UTF-8 without control bytes (json.Unmarshal would refuse those, or
// replace invalid UTF-8).
func (s *jsonScan) str() ([]byte, bool) {
	if !s.lit('"') {
		return nil, false
	}
	start := s.i
	ascii := true
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			return v, ascii || utf8.Valid(v)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

func (s *jsonScan) text() (string, bool) {
	v, ok := s.str()
	return string(v), ok
}

// strings reads an array of strings; [] is an empty slice, not nil, as
// json.Unmarshal makes it.
func (s *jsonScan) strings() ([]string, bool) {
	if !s.lit('[') {
		return nil, false
	}
	out := []string{}
	if s.lit(']') {
		return out, true
	}
	for {
		v, ok := s.text()
		if !ok {
			return nil, false
		}
		out = append(out, v)
		if s.lit(',') {
			continue
		}
		return out, s.lit(']')
	}
}

// stringMap reads an object of strings; {} is an empty map, not nil.
func (s *jsonScan) stringMap() (map[string]string, bool) {
	if !s.lit('{') {
		return nil, false
	}
	out := map[string]string{}
	if s.lit('}') {
		return out, true
	}
	for {
		k, ok := s.text()
		if !ok || !s.lit(':') {
			return nil, false
		}
		v, ok := s.text()
		if !ok {
			return nil, false
		}
		out[k] = v
		if s.lit(',') {
			continue
		}
		return out, s.lit('}')
	}
}

// uint reads a non-negative integer without sign, fraction, exponent or
// leading zero, that fits 64 bits.
func (s *jsonScan) uint() (uint64, bool) {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	d := s.b[start:s.i]
	if len(d) == 0 || len(d) > 1 && d[0] == '0' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(d), 10, 64)
	return n, err == nil
}
