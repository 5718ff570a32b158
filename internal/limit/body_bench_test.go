package limit

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// deadlineRecorder is a ResponseRecorder whose read deadline can be set,
// as a server connection's can.
type deadlineRecorder struct{ *httptest.ResponseRecorder }

func (deadlineRecorder) SetReadDeadline(time.Time) error { return nil }

// rereadable is a request body that can be read again.
type rereadable struct{ bytes.Reader }

func (*rereadable) Close() error { return nil }

// BenchmarkBodiesUpload measures what Bodies adds to an upload (a MeMo)
// read to its end and answered: the deadlines and the lingering state.
func BenchmarkBodiesUpload(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 16<<10)
	h := Bodies{Timeout: time.Minute, MinRate: 1 << 10, Window: time.Second, Grace: time.Minute,
		IsUpload: func(*http.Request) bool { return true }, Linger: time.Second, LingerBytes: 1 << 20,
	}.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			b.Error(err)
		}
		w.WriteHeader(http.StatusCreated)
	}))
	body := &rereadable{}
	r := httptest.NewRequest("POST", "/apis/v1/memos/", body)
	r.ContentLength = int64(len(payload))
	w := deadlineRecorder{httptest.NewRecorder()}
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(payload)
		r.Body = body
		h.ServeHTTP(w, r)
	}
}
