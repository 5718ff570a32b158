package bolt

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

// randomText draws strings with what encoding/json escapes or treats
// specially: <, > and &, quotes and backslashes, control bytes, invalid
// UTF-8, U+2028/U+2029, non-ASCII letters.
func randomText(r *rand.Rand) string {
	parts := []string{"", "a", "memo:", "12345678", "<", ">", "&", `"`, `\`, "\n", "\t", "\x00", "\x1f", "\x7f",
		"\xff", "\xc3", "æøå", "\u2028", "\u2029", "💌", " ", "/", "\ufffd", "e\u0301"}
	n := r.IntN(6)
	var b []byte
	for range n {
		b = append(b, parts[r.IntN(len(parts))]...)
	}
	return string(b)
}

func randomEvent(r *rand.Rand) hub.Event {
	zones := []*time.Location{time.UTC, time.FixedZone("CET", 3600), time.FixedZone("", -9000), time.Local}
	ev := hub.Event{ID: randomText(r), Tag: randomText(r), Actor: randomText(r), SystemID: randomText(r),
		MessageUUID: randomText(r), Party: randomText(r), PrevHash: randomText(r), Hash: randomText(r),
		Time: time.Unix(r.Int64N(1<<34)-1<<33, r.Int64N(1e9)).In(zones[r.IntN(len(zones))])}
	if r.IntN(8) == 0 {
		ev.Time = time.Time{}
	}
	switch r.IntN(3) {
	case 1:
		ev.Orgs = []string{}
	case 2:
		for range 1 + r.IntN(3) {
			ev.Orgs = append(ev.Orgs, randomText(r))
		}
	}
	switch r.IntN(3) {
	case 1:
		ev.Detail = map[string]string{}
	case 2:
		ev.Detail = map[string]string{}
		for range 1 + r.IntN(4) {
			ev.Detail[randomText(r)] = randomText(r)
		}
	}
	switch r.IntN(3) {
	case 1:
		ev.Seq = r.Uint64()
	case 2:
		ev.Seq = math.MaxUint64
	}
	return ev
}

// sameDecoding checks that decodeEvent reads raw as json.Unmarshal into a
// zero hub.Event does: the same value, or an error for both.
func sameDecoding(t *testing.T, raw []byte) {
	t.Helper()
	var want hub.Event
	werr := json.Unmarshal(raw, &want)
	got, err := decodeEvent(raw)
	if (err != nil) != (werr != nil) || err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decode %q:\n got %#v (%v)\nwant %#v (%v)", raw, got, err, want, werr)
	}
}

// The event records on disk do not change: appendEvent writes what
// json.Marshal writes, byte for byte, and decodeEvent reads it, and every
// variation of it, as json.Unmarshal does.
func TestEventJSONIsEncodingJSONs(t *testing.T) {
	if !eventJSONKnown {
		t.Fatal("hub.Event's fields are not those eventjson.go encodes: teach it the change (eventFields, appendEvent, scanEvent)")
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		ev := randomEvent(r)
		want, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeEvent([]byte("prefix"), &ev)
		if err != nil || !bytes.Equal(got[len("prefix"):], want) || string(got[:len("prefix")]) != "prefix" {
			t.Fatalf("encode %#v:\n got %s (%v)\nwant %s", ev, got, err, want)
		}
		sameDecoding(t, want)
	}
	// A time json.Marshal refuses is refused.
	for _, tm := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)} {
		ev := hub.Event{ID: "a", Time: tm}
		_, werr := json.Marshal(ev)
		if _, err := encodeEvent(nil, &ev); err == nil || werr == nil {
			t.Fatalf("encode of year %d: %v, json.Marshal: %v", tm.Year(), err, werr)
		}
	}
	// What another encoder or an earlier version may have written.
	for _, raw := range []string{
		`{}`, `{"id":"a"}`, ` {"id":"a"}`, `{"id":"a"} `, `{"id" : "a"}`, `{"id":"a\u0041"}`, `{"ID":"a"}`, `{"id":"a","id":"b"}`,
		`{"id":null}`, `{"eventTime":null}`, `{"eventTime":"2026-03-01T09:00:00Z"}`, `{"eventTime":"2026-03-01T09:00:00+01:00"}`,
		`{"eventTime":"2026-03-01 09:00:00Z"}`, `{"eventTime":"2026-03-01T09:00:00\u005a"}`, `{"eventTime":3}`,
		`{"organisations":[]}`, `{"organisations":null}`, `{"organisations":["a",]}`, `{"organisations":["a","b"]}`,
		`{"detail":{}}`, `{"detail":{"a":"1","a":"2"}}`, `{"detail":{"a":"1"},"detail":{"b":"2"}}`, `{"detail":{"a":1}}`,
		`{"seq":0}`, `{"seq":01}`, `{"seq":-1}`, `{"seq":1e3}`, `{"seq":1.0}`, `{"seq":18446744073709551616}`, `{"seq":"1"}`,
		`{"unknown":1,"id":"a"}`, `{"id":"a",}`, `{"id":"a"`, `{"id":"\xff"}`, "{\"id\":\"a\x01\"}", `{"id":"a"}{}`, `[]`, `null`, ``,
	} {
		sameDecoding(t, []byte(raw))
	}
}

func FuzzDecodeEvent(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		ev := randomEvent(r)
		raw, _ := json.Marshal(ev)
		f.Add(raw)
	}
	f.Add([]byte(`{"detail":{"a":"1","a":"2"},"seq":1}`))
	f.Fuzz(func(t *testing.T, raw []byte) { sameDecoding(t, raw) })
}

// BenchmarkEventJSON compares encoding/json with this package's event
// encoder and decoder on an event as the hub writes three of per letter.
func BenchmarkEventJSON(b *testing.B) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)
	ev := hub.Event{ID: "memo:5f0c1f9e-8a3b-4d6e-9c1a-2b3c4d5e6f70:1772355600123:MEMO_SEND_RECEIVED:0", Time: now,
		Tag: "MEMO_SEND_RECEIVED", Orgs: []string{"12345678"}, SystemID: "sender-sys",
		MessageUUID: "5f0c1f9e-8a3b-4d6e-9c1a-2b3c4d5e6f70", Party: "0101011234", Seq: 123456, Hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
	raw, _ := json.Marshal(ev)
	b.Run("encode/encoding-json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(ev)
		}
	})
	b.Run("encode/appendEvent", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf, _ = encodeEvent(buf[:0], &ev)
		}
	})
	b.Run("decode/encoding-json", func(b *testing.B) {
		for b.Loop() {
			var ev hub.Event
			_ = json.Unmarshal(raw, &ev)
		}
	})
	b.Run("decode/decodeEvent", func(b *testing.B) {
		for b.Loop() {
			_, _ = decodeEvent(raw)
		}
	})
}
