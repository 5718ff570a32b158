package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/jsonenc"
)

// The send routes answer every accepted letter with its receipt, thousands
// a second, and encoding/json's reflection was a visible part of the
// request's CPU and garbage. appendReceiptJSON writes the same bytes as
// json.Marshal(r) directly (internal/jsonenc); for a time json.Marshal
// refuses (a year outside 0-9999, a zone offset of 24 hours or more) it
// says so, and writeReceipt uses encoding/json, which answers the error.

// appendReceiptJSON appends r as json.Marshal encodes it; ok is false when
// it did not (b is then unspecified).
func appendReceiptJSON(b []byte, r hub.Receipt) (_ []byte, ok bool) {
	str := func(key, v string, omitEmpty bool) {
		if omitEmpty && v == "" {
			return
		}
		if b[len(b)-1] != '{' {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, key...)
		b = append(b, `":`...)
		b = jsonenc.AppendString(b, v)
	}
	b = append(b, '{')
	str("transmissionId", r.TransmissionID, false)
	str("messageUUID", r.MessageUUID, false)
	str("messageId", r.MessageID, true)
	str("errorCode", r.ErrorCode, true)
	str("errorMessage", r.ErrorMessage, true)
	b = append(b, `,"timeStamp":`...)
	if b, ok = jsonenc.AppendTime(b, r.Time); !ok {
		return b, false
	}
	str("receiptStatus", string(r.Status), false)
	str("transactionId", r.TransactionID, true)
	return append(b, '}'), true
}

// writeReceipt answers status with r as JSON, as c.JSON would.
func writeReceipt(c *gin.Context, status int, r hub.Receipt) {
	if b, ok := appendReceiptJSON(make([]byte, 0, 256), r); ok {
		c.Render(status, rawJSON(b))
		return
	}
	c.JSON(status, r)
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
