package api_test

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/api/status"
	"github.com/posthub/posthub/hub"
)

// TestEveryRouteAnswersOnlyDocumentedErrors walks the whole route table,
// every method of every path, and asks each route as every caller of the
// matrix (and anonymously): once with no parameters and no body, once
// with every documented query parameter and path parameter nonsense and
// a broken body. Every error answer must be a status openapi.json
// documents for that route and method, with an ErrorMessage whose code is
// of the closed set (api/status) and maps to that status. So a route
// cannot answer an error its documentation does not name, nor a code
// outside the set.
func TestEveryRouteAnswersOnlyDocumentedErrors(t *testing.T) {
	for _, services := range []bool{false, true} {
		t.Run(map[bool]string{false: "optional services off", true: "optional services on"}[services], func(t *testing.T) {
			walkRoutes(t, newMatrixHubWith(t, services))
		})
	}
}

func walkRoutes(t *testing.T, m *matrixHub) {
	doc := api.OpenAPI(m.srv.Routes())
	paths := doc["paths"].(map[string]any)
	closed := map[string]bool{}
	for _, c := range status.Codes() {
		closed[string(c)] = true
	}
	callers := append([]caller{{}}, m.callers...)
	callers[0].user = "" // anonymous
	undocumented := map[string]bool{}
	asked := 0
	for _, r := range m.srv.Routes() {
		op, ok := paths[api.OpenAPIPath(r.Path)].(map[string]any)[strings.ToLower(r.Method)].(map[string]any)
		if !ok {
			t.Errorf("%s %s is not in openapi.json", r.Method, r.Path)
			continue
		}
		responses := op["responses"].(map[string]any)
		for _, nonsense := range []bool{false, true} {
			path := strings.NewReplacer(":org", ownOrg).Replace(r.Path)
			q := url.Values{}
			var body string
			if nonsense {
				path = strings.NewReplacer(":org", "x").Replace(r.Path)
				for name := range r.Params {
					q.Set(name, "x")
				}
				body = "{<"
			} else if _, ok := r.Params["wait"]; ok {
				q.Set("wait", "0s") // no long poll
			}
			parts := strings.Split(path, "/")
			for i, p := range parts {
				if strings.HasPrefix(p, ":") {
					parts[i] = "x"
				}
			}
			target := strings.Join(parts, "/")
			if len(q) > 0 {
				target += "?" + q.Encode()
			}
			for i := range callers {
				req := httptest.NewRequest(r.Method, target, strings.NewReader(body))
				if len(r.Consumes) > 0 {
					req.Header.Set("Content-Type", r.Consumes[0])
				}
				// ask renews a user's session, which logging out and
				// revoking privileges end.
				rec := m.ask(req, &callers[i])
				asked++
				if rec.Code < 400 {
					continue
				}
				key := r.Method + " " + r.Path + " " + strconv.Itoa(rec.Code)
				if _, ok := responses[strconv.Itoa(rec.Code)]; !ok {
					if !undocumented[key] {
						t.Errorf("%s %s answers %d, which openapi.json does not document: %.300s", r.Method, target, rec.Code, rec.Body)
					}
					undocumented[key] = true
				}
				var e api.ErrorMessage
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !closed[e.Code] || status.Of(hub.Code(e.Code)) != rec.Code {
					t.Errorf("%s %s: %d with body %.300s: not an ErrorMessage with a code of the closed set for that status", r.Method, target, rec.Code, rec.Body)
				}
			}
		}
	}
	var keys []string
	for k := range undocumented {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 0 {
		t.Logf("undocumented: %s", strings.Join(keys, "; "))
	}
	t.Logf("%d requests over %d routes", asked, len(m.srv.Routes()))
}

// documented fails t unless openapi.json documents status for the route:
// for answers the route walk cannot bring about (a lease held, a message
// parked), asserted where a test brings them about.
func documented(t *testing.T, method, route string, code int) {
	t.Helper()
	doc := api.OpenAPI(api.New(api.Config{}, api.Deps{}).Routes())
	op, _ := doc["paths"].(map[string]any)[api.OpenAPIPath(route)].(map[string]any)[strings.ToLower(method)].(map[string]any)
	if _, ok := op["responses"].(map[string]any)[strconv.Itoa(code)]; !ok {
		t.Errorf("%s %s answered %d, which openapi.json does not document", method, route, code)
	}
}
