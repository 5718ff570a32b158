package api_test

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/hubtest"
	"github.com/posthub/posthub/memo"
)

// kombiRoute is the route label of the kombi send.
const kombiRoute = "/service/KombiPostAfsend_1/kombi"

// TestKombiSendIsCountedOnceAsEveryLetter: a kombi request moves the
// request counter of the shared middleware by one, under its route and
// status, and the letter counter (posthub_memos_total, fed by the accept
// service's Outcome) by one, under the code it is answered with — whether
// it is accepted, refused in its envelope before the accept service, or
// refused in its envelope while the Message streams into the spool.
func TestKombiSendIsCountedOnceAsEveryLetter(t *testing.T) {
	fx := hubtest.Open(t)
	v, err := memo.NewValidator(memo.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	const envelope = 4 << 10
	srv := api.New(api.Config{OperatorTokenHash: hub.HashToken(retrievalOperator), SpoolDir: fx.Dir, MaxKombiEnvelope: envelope},
		api.Deps{Store: fx.Store, Blobs: fx.Blobs, Registry: fx.Registry, Validator: v, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ingest: fx.Ingest(hub.StoreEvents{Store: fx.Store}, 0)})
	h := srv.Handler()
	fx.Authorities(hub.SetupSystemRetrieval, ownOrg, otherOrg)
	fx.System(ownOrg, hub.SystemSpec{Name: "recv", Role: hub.RecipientSystem})
	_, sender := fx.System(otherOrg, hub.SystemSpec{Name: "sender", Role: hub.SenderSystem})

	kombi := func(choice, after string) []byte {
		var m bytes.Buffer
		if _, err := memo.NewLetter(memo.Letter{From: otherOrg, To: ownOrg, Main: memo.PDF("brev.pdf", memo.SamplePDF("Hej"))}).WriteTo(&m); err != nil {
			t.Fatal(err)
		}
		_, msg, _ := bytes.Cut(m.Bytes(), []byte("?>\n"))
		b := []byte("<kombi_request>" + choice)
		return append(append(b, msg...), after+"</kombi_request>"...)
	}
	valg := "<KombiValgKode>Digital Post</KombiValgKode>"
	for _, c := range []struct {
		name     string
		body     []byte
		length   int64 // -1: streamed, without a Content-Length
		status   int
		outcome  string
		wantCode string
	}{
		{"accepted", kombi(valg, ""), 0, http.StatusCreated, "accepted", ""},
		{"refused in the envelope before the accept service", kombi("", ""), 0, http.StatusBadRequest, "invalid", "kombi.valg.kode.missing"},
		{"refused at its declared length", kombi(valg, ""), 1 << 40, http.StatusRequestEntityTooLarge, "too_large", "kombi.too.large"},
		{"refused in the envelope while the Message streams", kombi(valg, strings.Repeat(" ", 2*envelope)), -1, http.StatusRequestEntityTooLarge, "too_large", "kombi.too.large"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := scrape(t, h)
			var body io.Reader = bytes.NewReader(c.body)
			if c.length < 0 {
				body = io.MultiReader(body)
			}
			req := httptest.NewRequest("POST", kombiRoute, body)
			switch {
			case c.length < 0:
				req.ContentLength = -1
			case c.length > 0:
				req.ContentLength = c.length
			}
			req.Header.Set("Authorization", "Basic "+sender)
			req.Header.Set("Content-Type", "application/xml")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.status || fieldCode(t, rec) != c.wantCode {
				t.Fatalf("%d %s, want %d %s: %s", rec.Code, fieldCode(t, rec), c.status, c.wantCode, rec.Body)
			}
			after := scrape(t, h)
			route := `posthub_http_requests_total{method="POST",route="` + kombiRoute + `",status="` + strconv.Itoa(c.status) + `"}`
			if d := after[route] - before[route]; d != 1 {
				t.Errorf("%s moved by %v, want 1", route, d)
			}
			outcome := `posthub_memos_total{outcome="` + c.outcome + `"}`
			if d := after[outcome] - before[outcome]; d != 1 {
				t.Errorf("%s moved by %v, want 1", outcome, d)
			}
			for _, total := range []string{"posthub_memos_total", "posthub_http_requests_total"} {
				if d := sum(after, total) - sum(before, total); d != 1 {
					t.Errorf("%s moved by %v in all, want 1", total, d)
				}
			}
		})
	}
}

// scrape reads /metrics as the operator; the scrape itself is counted
// once the answer is written, so it does not show in what it reads.
func scrape(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Authorization", "Basic "+retrievalOperator)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// sum adds every series of the metric name, except the scrapes of
// /metrics.
func sum(series map[string]float64, name string) float64 {
	var n float64
	for k, v := range series {
		if strings.HasPrefix(k, name+"{") && !strings.Contains(k, `route="/metrics"`) {
			n += v
		}
	}
	return n
}
