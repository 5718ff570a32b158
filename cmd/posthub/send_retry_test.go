package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/posthub/posthub/memo"
)

// TestSendResubmitsWhenTheAnswerIsLost: `posthub send` sends a MeMo file
// again, the same bytes under the same UUID, when its answer is lost (the
// connection broke after the hub read the request, or a 503), at most
// -retries times; an answer the hub gave (400) is final.
func TestSendResubmitsWhenTheAnswerIsLost(t *testing.T) {
	uuid, body := letterXML(t, memo.Letter{To: citizen})
	file := filepath.Join(t.TempDir(), uuid+".xml")
	if err := os.WriteFile(file, body, 0o644); err != nil {
		t.Fatal(err)
	}
	// stub answers the i-th request with answers[i] (the last from then on):
	// 0 breaks the connection once the request is read.
	stub := func(answers ...int) (string, func() []string) {
		var mu sync.Mutex
		var got []string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			got = append(got, r.URL.Query().Get("memo-message-uuid")+" "+string(b))
			status := answers[min(len(got), len(answers))-1]
			mu.Unlock()
			switch status {
			case 0:
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
			case 201:
				w.WriteHeader(201)
				io.WriteString(w, `{"receiptStatus":"RECEIVED","messageUUID":"`+uuid+`"}`)
			default:
				w.WriteHeader(status)
				io.WriteString(w, `{"code":"unavailable","message":"no"}`)
			}
		}))
		t.Cleanup(srv.Close)
		return srv.URL, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }
	}
	send := func(base string, args ...string) (int, string) {
		var out bytes.Buffer
		code := Main(append(append([]string{"send", "-url", base, "-token", "ph_sender", "-q"}, args...), file),
			&Env{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }})
		return code, out.String()
	}
	for _, c := range []struct {
		name     string
		answers  []int
		args     []string
		requests int
		code     int
		summary  string
	}{
		{"answer lost with the connection, then the receipt", []int{0, 201}, nil, 2, 0, "RECEIVED 1"},
		{"unavailable twice, then the receipt", []int{503, 503, 201}, nil, 3, 0, "RECEIVED 1"},
		{"unavailable every time: -retries resubmissions", []int{503}, []string{"-retries", "2"}, 3, 1, "HTTP 503"},
		{"no resubmission with -retries 0", []int{0, 201}, []string{"-retries", "0"}, 1, 1, "TRANSPORT_ERROR 1"},
		{"an answer the hub gave is final", []int{400, 201}, nil, 1, 1, "HTTP 400"},
	} {
		t.Run(c.name, func(t *testing.T) {
			base, got := stub(c.answers...)
			code, out := send(base, c.args...)
			reqs := got()
			if code != c.code || !strings.Contains(out, c.summary) || len(reqs) != c.requests {
				t.Fatalf("exit %d after %d requests, want %d after %d (%q)\n%s", code, len(reqs), c.code, c.requests, c.summary, out)
			}
			for _, r := range reqs {
				if r != uuid+" "+string(body) {
					t.Fatalf("a resubmission differs from the MeMo: %.80q", r)
				}
			}
		})
	}
}
