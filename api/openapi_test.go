package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
)

// TestOpenAPIDocumentsEveryRoute compares the router's own route list with
// the served OpenAPI document: no route undocumented, no documented route
// missing.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	s := New(Config{}, Deps{})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/apis/v1/openapi.json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("openapi.json: %d", rec.Code)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			documented[strings.ToUpper(m)+" "+p] = true
		}
	}
	served := map[string]bool{}
	for _, r := range s.Engine().Routes() {
		served[r.Method+" "+OpenAPIPath(r.Path)] = true
	}
	var missing, extra []string
	for k := range served {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !served[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("served but undocumented: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("documented but not served: %v", extra)
	}
	if len(served) < 10 {
		t.Errorf("only %d routes served; the table did not register", len(served))
	}
}

// TestEveryGuardedRouteRefusesAnonymous asks every non-public route without
// credentials: each must answer 401 with the NgDP error body.
func TestEveryGuardedRouteRefusesAnonymous(t *testing.T) {
	s := New(Config{}, Deps{})
	n := 0
	for _, r := range s.Routes() {
		if r.Access == Public {
			continue
		}
		n++
		path := strings.NewReplacer(":org", "12345678", ":id", "x").Replace(r.Path)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(r.Method, path, nil))
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s %s without credentials: %d, want 401", r.Method, r.Path, rec.Code)
			continue
		}
		var body ErrorMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Code != "unauthorized" || body.FieldErrors == nil {
			t.Errorf("%s %s: body %s", r.Method, r.Path, rec.Body.String())
		}
	}
	if n == 0 {
		t.Fatal("no guarded routes")
	}
}
