package api

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/hubtest"
	"github.com/posthub/posthub/rbac"
)

// BenchmarkAuthorize measures the authorisation middleware on one core
// (make bench): the decision alone as the middleware makes it (domain from
// :org, enforcer bits), and the whole middleware (authentication included)
// for a session cookie and for a system token.
func BenchmarkAuthorize(b *testing.B) {
	ctx := context.Background()
	fx := hubtest.Open(b)
	store, reg := fx.Store, fx.Registry
	const org = "11111111"
	fx.Org(hub.Organisation{CVR: org, Name: "K", Kind: hub.Authority})
	_, token := fx.System(org, hub.SystemSpec{Name: "s", Role: hub.SenderSystem})
	en, err := rbac.New(ctx, store, rbac.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := store.CreateUser(ctx, hub.User{ID: "anne", Name: "Anne", Active: true}); err != nil {
		b.Fatal(err)
	}
	if err := en.Grant(ctx, rbac.Grant{User: "anne", Role: rbac.OrgAdmin, Domain: org}); err != nil {
		b.Fatal(err)
	}
	sessions := &rbac.Sessions{Key: bytes.Repeat([]byte{1}, 32), Users: store}
	s := New(Config{}, Deps{Store: store, Registry: reg, Enforcer: en, Sessions: sessions, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	gen, err := store.SessionGeneration(ctx, "anne")
	if err != nil {
		b.Fatal(err)
	}
	_, cookie := sessions.Issue("anne", gen)
	var orgRoute, senderRoute Route
	for _, r := range s.Routes() {
		switch {
		case r.Method == "GET" && r.Path == v1+"/organisations/:org/systems/":
			orgRoute = r
		case r.Method == "GET" && r.Path == v1+"/receipts/":
			senderRoute = r
		}
	}
	gin.SetMode(gin.ReleaseMode)

	b.Run("decision", func(b *testing.B) {
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequest("GET", "/apis/v1/organisations/"+org+"/systems/", nil)
		c.Params = gin.Params{{Key: "org", Value: org}}
		u := hub.User{ID: "anne"}
		p := Principal{User: &u}
		b.ReportAllocs()
		for b.Loop() {
			if !s.allowed(c, p, rbac.SystemsRead, true) {
				b.Fatal("refused")
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
	run := func(b *testing.B, r Route, path string, set func(*http.Request)) {
		h := s.authorize(r)
		req := httptest.NewRequest("GET", path, nil)
		set(req)
		w := httptest.NewRecorder()
		b.ReportAllocs()
		for b.Loop() {
			// A fresh context per request, as gin's pool would hand out (its index cannot be reset from here).
			c, _ := gin.CreateTestContext(w)
			c.Request = req
			c.Params = gin.Params{{Key: "org", Value: org}}
			h(c)
			if c.Writer.Written() {
				b.Fatalf("refused: %d %s", w.Code, w.Body)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
	}
	b.Run("middleware-session", func(b *testing.B) {
		run(b, orgRoute, "/apis/v1/organisations/"+org+"/systems/", func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: rbac.SessionCookie, Value: cookie})
		})
	})
	b.Run("middleware-token", func(b *testing.B) {
		run(b, senderRoute, "/apis/v1/receipts/", func(r *http.Request) { r.Header.Set("Authorization", "Basic "+token) })
	})
}
