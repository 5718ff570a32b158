package api_test

import (
	"encoding/json"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/api/paging"
	"github.com/posthub/posthub/hub"
)

// listSchema reports whether a route's success schema is the one list
// shape (an allOf over PagingResult).
func listSchema(t *testing.T, schemas map[string]any, name string) bool {
	t.Helper()
	s, ok := schemas[name].(map[string]any)
	if !ok {
		t.Fatalf("schema %q is not in openapi.json's components", name)
	}
	all, _ := s["allOf"].([]map[string]any)
	return len(all) > 0 && all[0]["$ref"] == "#/components/schemas/PagingResult"
}

// notLists are the GET routes on collection paths (ending in /) that do
// not answer PagingResult, and why.
var notLists = map[string]string{
	"EventLogSearchResult":  "NgDP QueryEvents' own shape (currentPage, totalPages, elementsOnPage, totalElements)",
	"SystemFetchListResult": "NgDP's own shape for GET /mailboxes/{id}/system-fetches/",
	"Statistics":            "a report: one query's counters, also as CSV",
}

// TestListRoutesAnswerPaging: every GET route on a collection path (one
// ending in /, as NgDP's are) documents the one list shape
// (PagingResult), but for the named exceptions, and no route answers a
// bare array. Then every list route the matrix hub can answer is asked
// and its answer decoded as a page, and an organisation's systems are
// paged one at a time.
func TestListRoutesAnswerPaging(t *testing.T) {
	m := newMatrixHub(t)
	doc := api.OpenAPI(m.srv.Routes())
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	lists := 0
	for _, r := range m.srv.Routes() {
		list := r.Schema != "" && listSchema(t, schemas, r.Schema)
		switch {
		case list && r.Method != "GET":
			t.Errorf("%s %s answers a list", r.Method, r.Path)
		case list:
			lists++
		case r.Method == "GET" && strings.HasSuffix(r.Path, "/") && notLists[r.Schema] == "":
			t.Errorf("GET %s answers %q, not PagingResult", r.Path, r.Schema)
		case r.Schema != "" && schemas[r.Schema].(map[string]any)["type"] == "array":
			t.Errorf("%s %s answers a bare array (%s)", r.Method, r.Path, r.Schema)
		}
	}
	if lists < 15 {
		t.Fatalf("only %d list routes", lists)
	}
	listRoutesAnswerOnePage(t, m, schemas)
}

// listRoutesAnswerOnePage asks every list route the matrix hub can answer
// (those needing the retrieval or viewer service answer 503 here) as the
// callers allowed to, and decodes the answer as paging.Result; then pages
// an organisation's systems one at a time.
func listRoutesAnswerOnePage(t *testing.T, m *matrixHub, schemas map[string]any) {
	answered := map[string]bool{}
	for _, r := range m.srv.Routes() {
		if r.Schema == "" || !listSchema(t, schemas, r.Schema) {
			continue
		}
		path := strings.NewReplacer(":org", ownOrg).Replace(r.Path)
		if strings.Contains(path, ":") {
			continue // a mailbox or a system: the viewer routes, tested in viewer_test.go
		}
		for _, c := range m.callers {
			req := httptest.NewRequest("GET", path, nil)
			c.header(req)
			rec := httptest.NewRecorder()
			m.srv.Handler().ServeHTTP(rec, req)
			if rec.Code != 200 {
				continue
			}
			var p map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatalf("GET %s: %v: %s", path, err, rec.Body)
			}
			for _, f := range []string{"content", "number", "size"} {
				if p[f] == nil || string(p["content"]) == "null" {
					t.Errorf("GET %s: no %s in %s", path, f, rec.Body)
				}
			}
			answered[r.Path] = true
			break
		}
	}
	var got []string
	for p := range answered {
		got = append(got, strings.TrimPrefix(p, "/apis/v1"))
	}
	sort.Strings(got)
	for _, want := range []string{"/organisations/", "/organisations/:org/systems/", "/organisations/:org/contact-groups/",
		"/organisations/:org/contact-points/", "/organisations/:org/routing-rules/", "/organisations/:org/users/",
		"/organisations/:org/privileges/", "/organisations/:org/messages/", "/privilege-types/", "/receipts/", "/sent/"} {
		if i := sort.SearchStrings(got, want); i == len(got) || got[i] != want {
			t.Errorf("GET %s did not answer a page; answered: %v", want, got)
		}
	}

	// ownOrg has three systems (one per system role): page 1 of size 1
	// is the second, of three pages.
	for _, tc := range []struct {
		query       string
		status, len int
		code        string
	}{
		{"", 200, 3, ""},
		{"?size=1&page=1", 200, 1, ""},
		{"?size=2&page=5", 200, 0, ""},
		{"?size=0", 400, 0, "size.invalid"},
		{"?size=1001", 400, 0, "size.invalid"},
		{"?size=1000&page=10", 400, 0, "page.invalid"},
	} {
		req := httptest.NewRequest("GET", "/apis/v1/organisations/"+ownOrg+"/systems/"+tc.query, nil)
		m.callers[0].header(req)
		rec := httptest.NewRecorder()
		m.srv.Handler().ServeHTTP(rec, req)
		if rec.Code != tc.status {
			t.Errorf("systems%s: %d, want %d: %s", tc.query, rec.Code, tc.status, rec.Body)
			continue
		}
		if tc.code != "" {
			var e api.ErrorMessage
			if json.Unmarshal(rec.Body.Bytes(), &e); len(e.FieldErrors) != 1 || e.FieldErrors[0].Code != tc.code {
				t.Errorf("systems%s: %s, want field code %s", tc.query, rec.Body, tc.code)
			}
			continue
		}
		var p paging.Result[hub.System]
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || len(p.Content) != tc.len || p.Total() != 3 || p.TotalPages == nil ||
			*p.TotalPages != (3+p.Size-1)/p.Size || p.NextCursor != "" {
			t.Errorf("systems%s: %s", tc.query, rec.Body)
		}
	}
}
