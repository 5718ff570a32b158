package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/posthub/posthub/hub"
)

// checkReceiptJSON fails t when appendReceiptJSON writes other bytes than
// json.Marshal, or gives up on a receipt without a reason to.
func checkReceiptJSON(t *testing.T, r hub.Receipt, mustEncode bool) {
	t.Helper()
	want, werr := json.Marshal(r)
	got, ok := appendReceiptJSON(nil, r)
	switch {
	case ok && werr != nil:
		t.Fatalf("%+v: wrote %s, json.Marshal refuses it: %v", r, got, werr)
	case ok && !bytes.Equal(got, want):
		t.Fatalf("%+v:\n got %s\nwant %s", r, got, want)
	case !ok && mustEncode:
		t.Fatalf("%+v: not written, json.Marshal writes %s", r, want)
	}
}

// The receipt the send route answers with is the bytes encoding/json
// writes for it, and a receipt it cannot write so goes to encoding/json.
func TestReceiptJSONIsEncodingJSONs(t *testing.T) {
	now := time.Date(2026, 12, 4, 23, 59, 1, 123456789, time.UTC)
	ok := hub.Receipt{TransmissionID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", SystemID: "sys", MessageUUID: "8c2ea15d-61fb-4ba9-9366-42f8b194c114",
		MessageID: "MSG-12345", Time: now, Status: hub.ReceiptReceived}
	cases := map[string]struct {
		r          hub.Receipt
		mustEncode bool
	}{
		"received":              {ok, true},
		"empty optional fields": {hub.Receipt{Time: now, Status: hub.ReceiptReceived}, true},
		"zero":                  {hub.Receipt{}, true},
		"not allowed, with reason": {func() hub.Receipt {
			r := ok
			r.Status, r.ErrorCode, r.ErrorMessage = hub.ReceiptNotAllowed, "recipient.exempt", "the recipient is exempt"
			return r
		}(), true},
		"transaction id":      {func() hub.Receipt { r := ok; r.TransactionID = "tx-1"; return r }(), true},
		"Danish letters":      {func() hub.Receipt { r := ok; r.MessageID = "brev-æøå-ÆØÅ"; return r }(), true},
		"whole seconds":       {func() hub.Receipt { r := ok; r.Time = now.Truncate(time.Second); return r }(), true},
		"another zone":        {func() hub.Receipt { r := ok; r.Time = now.In(time.FixedZone("", 3600)); return r }(), true},
		"DEL":                 {func() hub.Receipt { r := ok; r.MessageID = "a\x7fb"; return r }(), true},
		"HTML characters":     {func() hub.Receipt { r := ok; r.ErrorMessage = "<b> & </b>"; return r }(), false},
		"quote and backslash": {func() hub.Receipt { r := ok; r.MessageID = `a"b\c`; return r }(), false},
		"control character":   {func() hub.Receipt { r := ok; r.ErrorMessage = "line\nbreak"; return r }(), false},
		"invalid UTF-8":       {func() hub.Receipt { r := ok; r.MessageID = "a\xffb"; return r }(), false},
		"line separator":      {func() hub.Receipt { r := ok; r.MessageID = "a\u2028b"; return r }(), false},
		"year 10000":          {func() hub.Receipt { r := ok; r.Time = now.AddDate(8000, 0, 0); return r }(), false},
		"year before 0":       {func() hub.Receipt { r := ok; r.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC); return r }(), false},
		"zone of 24 hours":    {func() hub.Receipt { r := ok; r.Time = now.In(time.FixedZone("", 24*3600)); return r }(), false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) { checkReceiptJSON(t, c.r, c.mustEncode) })
	}
}

func FuzzReceiptJSON(f *testing.F) {
	f.Add("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "8c2ea15d-61fb-4ba9-9366-42f8b194c114", "MSG-1", "", "", "RECEIVED", "", int64(1764892741123456789), 0)
	f.Add("t", "u", "æ<ø>", "code", "a \"message\"\n", "NOT_ALLOWED", "tx", int64(-62135596800000000), 3600)
	f.Fuzz(func(t *testing.T, tid, uuid, mid, code, msg, status, tx string, unixNano int64, offset int) {
		r := hub.Receipt{TransmissionID: tid, MessageUUID: uuid, MessageID: mid, ErrorCode: code, ErrorMessage: msg,
			Status: hub.ReceiptStatus(status), TransactionID: tx, Time: time.Unix(0, unixNano).In(time.FixedZone("", offset%(48*3600)))}
		checkReceiptJSON(t, r, false)
	})
}

// The answer's headers are those of gin's c.JSON.
func TestReceiptAnswerHasGinsJSONHeaders(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	r := hub.Receipt{TransmissionID: "t", MessageUUID: "u", Time: time.Unix(0, 0).UTC(), Status: hub.ReceiptReceived}
	answer := func(render func(c *gin.Context)) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		render(c)
		return w
	}
	b, ok := appendReceiptJSON(nil, r)
	if !ok {
		t.Fatal("not written")
	}
	got := answer(func(c *gin.Context) { c.Render(http.StatusCreated, rawJSON(b)) })
	want := answer(func(c *gin.Context) { c.JSON(http.StatusCreated, r) })
	if got.Code != want.Code || got.Body.String() != want.Body.String() || !equalHeaders(got.Header(), want.Header()) {
		t.Fatalf("answer %d %v %s, c.JSON's %d %v %s", got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
	}
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if len(b[k]) != len(v) {
			return false
		}
		for i := range v {
			if b[k][i] != v[i] {
				return false
			}
		}
	}
	return true
}

// BenchmarkReceiptJSON compares the send route's receipt encoding with
// encoding/json's on an accepted letter's receipt.
func BenchmarkReceiptJSON(b *testing.B) {
	r := hub.Receipt{TransmissionID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", SystemID: "sys", MessageUUID: "8c2ea15d-61fb-4ba9-9366-42f8b194c114",
		MessageID: "MSG-12345", Time: time.Now().UTC(), Status: hub.ReceiptReceived}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := appendReceiptJSON(make([]byte, 0, 256), r); !ok {
				b.Fatal("not written")
			}
		}
	})
}
