package main

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

// Regression tests of unbounded inputs found by review, against a running
// `posthub serve`.

// TestPortalAndMailboxFormsAreBounded: the admin portal's and the web
// mailbox's forms are parsed whole, the login forms by anyone; a form over
// the bound (256 KiB in the portal, files included; 64 KiB in the mailbox)
// is refused before it is read — 413 when it declares its length, and as a
// form that could not be read when it does not.
func TestPortalAndMailboxFormsAreBounded(t *testing.T) {
	h := startHub(t, "-web-mailbox", "-mailbox-demo-login")
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/", map[string]any{"cvr": orgA, "name": "Kommune A", "kind": "AUTHORITY"}), 201)
	admin := h.userWith("anne", orgA, "ORGANISATION_ADMINISTRATOR")

	multipartBody := func(size int) (*bytes.Buffer, string) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		_ = mw.WriteField("csrf", admin.csrf)
		_ = mw.WriteField("name", "Modtager")
		_ = mw.WriteField("role", "RECIPIENT")
		fw, _ := mw.CreateFormFile("certificate", "big.pem")
		_, _ = fw.Write(bytes.Repeat([]byte("A"), size))
		_ = mw.Close()
		return &b, mw.FormDataContentType()
	}
	post := func(path, ctype string, body io.Reader, cookie bool) int {
		t.Helper()
		req, _ := http.NewRequest("POST", h.base+path, body)
		req.Header.Set("Content-Type", ctype)
		if cookie {
			req.AddCookie(admin.cookie)
		}
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	big, ctype := multipartBody(4 << 20)
	if code := post("/admin/login", ctype, bytes.NewReader(big.Bytes()), false); code != 413 {
		t.Errorf("a 4 MiB login form: %d, want 413", code)
	}
	if code := post("/admin/orgs/"+orgA+"/systems", ctype, bytes.NewReader(big.Bytes()), true); code != 413 {
		t.Errorf("a 4 MiB portal form: %d, want 413", code)
	}
	// Without a declared length (chunked), the bound ends the read.
	chunked := func(b []byte) io.Reader { return io.MultiReader(bytes.NewReader(b)) }
	if code := post("/admin/orgs/"+orgA+"/systems", ctype, chunked(big.Bytes()), true); code != 400 {
		t.Errorf("a 4 MiB chunked portal form: %d, want 400", code)
	}
	if code := post("/admin/login", ctype, chunked(big.Bytes()), false); code == 200 {
		t.Errorf("a 4 MiB chunked login form: %d", code)
	}
	field := "cpr=" + strings.Repeat("1", 1<<20)
	if code := post("/mailbox/login", "application/x-www-form-urlencoded", strings.NewReader(field), false); code != 413 {
		t.Errorf("a 1 MiB mailbox login form: %d, want 413", code)
	}
	// Forms within the bound work as before.
	small, sctype := multipartBody(1 << 10)
	if code := post("/admin/orgs/"+orgA+"/systems", sctype, small, true); code != 200 {
		t.Errorf("a small portal form: %d, want 200 (the page with the new system's token)", code)
	}
}
