package limit_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/posthub/posthub/internal/limit"
)

// TestFormBoundsWhatIsParsed: a posted form declared larger than the bound
// is answered 413 before anything reads it; one that only turns out larger
// (no length declared) is cut at the bound, so parsing it fails; a form
// within the bound and a GET pass untouched.
func TestFormBoundsWhatIsParsed(t *testing.T) {
	const max = 1 << 10
	parse := func(r *http.Request) (int, string) {
		w := httptest.NewRecorder()
		if !limit.Form(w, r, max) {
			return w.Code, ""
		}
		if err := r.ParseForm(); err != nil {
			return http.StatusBadRequest, ""
		}
		return http.StatusOK, r.PostFormValue("a")
	}
	post := func(body string, declared bool) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if !declared {
			r.ContentLength = -1
		}
		return r
	}
	big := "a=" + strings.Repeat("x", max)
	if code, _ := parse(post(big, true)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("declared larger: %d, want 413", code)
	}
	if code, _ := parse(post(big, false)); code != http.StatusBadRequest {
		t.Errorf("larger without a declared length: %d, want the parser's failure", code)
	}
	if code, v := parse(post("a=b", true)); code != http.StatusOK || v != "b" {
		t.Errorf("a small form: %d %q", code, v)
	}
	if code, _ := parse(httptest.NewRequest(http.MethodGet, "/?a=b", nil)); code != http.StatusOK {
		t.Errorf("a GET: %d", code)
	}
}
