package api_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/benchmemo"
	"github.com/posthub/posthub/internal/hubtest"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/rbac"
)

// sendBenchLetters numbers BenchmarkSendMemo's letters: each its own
// messageUUID, whichever door and however often the benchmark runs.
var sendBenchLetters int

// BenchmarkSendMemo measures one accepted letter through the NgDP send
// route's (and SF1601 KombiPostAfsend's) whole handler chain in process (request id, authentication and
// authorisation, the accept service, the receipt's JSON), without the
// network: MeMo_Full_Example made deliverable as make bench sends it, a
// fresh messageUUID each time, on the embedded store with the event log.
// allocs/op and B/op are what to compare; they include the store's
// background apply, so they vary by a few percent.
func BenchmarkSendMemo(b *testing.B) {
	ctx := context.Background()
	fx := hubtest.Open(b)
	dir, store := fx.Dir, fx.Store
	const sender, citizen = "11111111", "0101701234"
	fx.Org(hub.Organisation{CVR: sender, Name: "Afsender", Kind: hub.Authority, Setup: hub.SetupContactable})
	_, token := fx.System(sender, hub.SystemSpec{Name: "sender", Role: hub.SenderSystem})
	fx.Registered(citizen)
	en, err := rbac.New(ctx, store, rbac.Options{})
	if err != nil {
		b.Fatal(err)
	}
	v, err := memo.NewValidator(memo.DefaultConfig(), memo.WithSpoolDir(dir))
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	events := eventlog.New(store, eventlog.Options{})
	defer events.Close()
	gin.SetMode(gin.ReleaseMode)
	srv := api.New(api.Config{SpoolDir: dir, MaxMemoSize: 200 << 20, Memo: memo.DefaultConfig()}, api.Deps{
		Store: store, Blobs: fx.Blobs, Registry: fx.Registry, Enforcer: en, Validator: v, Events: events,
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ingest: fx.Ingest(events, 256<<10)}).Handler()
	l, err := benchmemo.FromFile(filepath.Join("..", "memo", "testdata", "samples", "v1.1", "MeMo_Full_Example.xml"), sender, citizen)
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, l *benchmemo.Letter, request func(id string, body io.Reader) *http.Request) {
		body := bytes.NewReader(l.Body)
		b.SetBytes(int64(len(l.Body)))
		b.ReportAllocs()
		for b.Loop() {
			sendBenchLetters++
			id := l.Next(sendBenchLetters)
			body.Reset(l.Body)
			req := request(id, body)
			req.Header.Set("Content-Type", "application/xml")
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, req)
			if w.Code != http.StatusCreated {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	}
	b.Run("ngdp", func(b *testing.B) {
		run(b, l, func(id string, body io.Reader) *http.Request {
			req := httptest.NewRequest("POST", "/apis/v1/memos/?memo-message-uuid="+id, body)
			req.Header.Set("Authorization", "Basic "+token)
			return req
		})
	})
	// The same letters through SF1601's door, each in a kombi_request.
	b.Run("kombi", func(b *testing.B) {
		run(b, l.Kombi(), func(_ string, body io.Reader) *http.Request {
			req := httptest.NewRequest("POST", "/service/KombiPostAfsend_1/memos", body)
			req.Header.Set("Authorization", "Bearer "+token)
			return req
		})
	})
}
