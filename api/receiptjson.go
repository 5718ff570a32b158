package api

import (
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/posthub/posthub/hub"
)

// The send route answers every accepted letter with its receipt, thousands
// a second, and encoding/json's reflection was a visible part of the
// request's CPU and garbage. appendReceiptJSON writes the same bytes as
// json.Marshal(r) directly; for the rare receipt it cannot write exactly
// so (a string encoding/json would escape, a time outside years 0-9999) it
// says so, and the caller uses encoding/json.

// appendReceiptJSON appends r as json.Marshal encodes it; ok is false when
// it did not (b is then unspecified).
func appendReceiptJSON(b []byte, r hub.Receipt) (_ []byte, ok bool) {
	str := func(key, v string, omitEmpty bool) {
		if !ok || omitEmpty && v == "" {
			return
		}
		if b[len(b)-1] != '{' {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, key...)
		b = append(b, `":"`...)
		if !plainJSON(v) {
			ok = false
			return
		}
		b = append(b, v...)
		b = append(b, '"')
	}
	ok = true
	b = append(b, '{')
	str("transmissionId", r.TransmissionID, false)
	str("messageUUID", r.MessageUUID, false)
	str("messageId", r.MessageID, true)
	str("errorCode", r.ErrorCode, true)
	str("errorMessage", r.ErrorMessage, true)
	b = append(b, `,"timeStamp":"`...)
	n0 := len(b)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	// What time.Time.MarshalJSON refuses: a year not 4 digits wide, a
	// zone offset of 24 hours or more.
	if b[n0+4] != '-' {
		return b, false
	}
	if z := b[len(b)-6:]; b[len(b)-1] != 'Z' && (z[0] >= '0' && z[0] <= '9' || (z[1]-'0')*10+(z[2]-'0') >= 24) {
		return b, false
	}
	b = append(b, '"')
	str("receiptStatus", string(r.Status), false)
	str("transactionId", r.TransactionID, true)
	return append(b, '}'), ok
}

// plainJSON reports whether encoding/json writes s between its quotes as
// it is: valid UTF-8 without control characters, quotes, backslashes, the
// HTML characters it escapes (<, >, &) or U+2028 and U+2029.
func plainJSON(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || r == '\u2028' || r == '\u2029' {
			return false
		}
		i += n
	}
	return true
}

// jsonType is gin's own Content-Type for JSON.
var jsonType = []string{"application/json; charset=utf-8"}

// rawJSON renders bytes already encoded as gin's JSON render does.
type rawJSON []byte

func (j rawJSON) Render(w http.ResponseWriter) error {
	j.WriteContentType(w)
	_, err := w.Write(j)
	return err
}

func (rawJSON) WriteContentType(w http.ResponseWriter) {
	if h := w.Header(); len(h["Content-Type"]) == 0 {
		h["Content-Type"] = jsonType
	}
}
