package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/posthub/posthub/api/status"
	"github.com/posthub/posthub/hub"
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

// Every error response openapi.json documents carries a code of the closed
// set, and the status that code maps to; a request with an unknown method
// answers inside the set too.
func TestOpenAPIErrorsUseTheClosedSetOfCodes(t *testing.T) {
	s := New(Config{}, Deps{})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/apis/v1/openapi.json", nil))
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Code string `json:"x-code"`
			} `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	closed := map[string]bool{}
	for _, c := range status.Codes() {
		closed[string(c)] = true
	}
	n := 0
	for p, ops := range doc.Paths {
		for m, op := range ops {
			for st, resp := range op.Responses {
				code, _ := strconv.Atoi(st)
				if code < 400 {
					continue
				}
				n++
				if !closed[resp.Code] {
					t.Errorf("%s %s: response %s documents code %q, outside the closed set", m, p, st, resp.Code)
				} else if status.Of(hub.Code(resp.Code)) != code {
					t.Errorf("%s %s: response %s documents code %q, which maps to %d", m, p, st, resp.Code, status.Of(hub.Code(resp.Code)))
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("openapi.json documents no error responses")
	}
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("PATCH", "/apis/v1/openapi.json", nil))
	var body ErrorMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || !closed[body.Code] || rec.Code != status.Of(hub.Code(body.Code)) {
		t.Fatalf("unknown method: %d %s", rec.Code, rec.Body)
	}
}

// TestDeleteRoutesAnswerNoContent: every DELETE route answers 204 without
// a body, as the national hub's DELETEs do, and openapi.json says so.
func TestDeleteRoutesAnswerNoContent(t *testing.T) {
	s := New(Config{}, Deps{})
	doc := OpenAPI(s.Routes())
	n := 0
	for _, r := range s.Routes() {
		if r.Method != "DELETE" {
			continue
		}
		n++
		if r.Status != http.StatusNoContent || r.Schema != "" || r.Produces != "" {
			t.Errorf("DELETE %s: status %d, schema %q, produces %q; want 204 without a body", r.Path, r.Status, r.Schema, r.Produces)
		}
		op := doc["paths"].(obj)[OpenAPIPath(r.Path)].(obj)["delete"].(obj)
		if ok, has := op["responses"].(obj)["204"].(obj); has == false || ok["content"] != nil {
			t.Errorf("DELETE %s: openapi.json documents %v", r.Path, op["responses"])
		}
	}
	if n < 8 {
		t.Fatalf("only %d DELETE routes in the table", n)
	}
}
