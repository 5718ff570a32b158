package main

// Hostile input, end to end against the real `posthub serve` (issue 13):
// paging values that overflow (item 9), letters nested too deep to render
// (item 10).

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/viewer"
)

// TestListRoutesBoundPaging sends overflowing, negative and out-of-range
// paging values to every list route: each is answered 400 with a field
// error naming the parameter (once page=4611686018427387904&size=2 on
// receipts and memos was a 500 "slice bounds out of range"), and the
// largest values in range are answered 200. Every GET route of the OpenAPI
// document with a page, size or limit parameter must be in the table.
func TestListRoutesBoundPaging(t *testing.T) {
	h := startHub(t, "-web-mailbox")
	w := h.setupWorld()
	_, recipient := h.system(orgB, map[string]any{"name": "B modtager", "role": "RECIPIENT"})
	v := h.viewingClient(orgA)
	// The citizen lets authority A's systems list the letters A sent them.
	req, _ := http.NewRequest("PUT", h.base+"/apis/v1/mailboxes/"+citizen+"/consents/"+orgA, nil)
	req.Header.Set("Authorization", "Basic "+v.token)
	req.Header.Set(api.AssertionHeader, v.assertion(t, citizen))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("consent: %v %v", resp, err)
	}
	const (
		huge    = "4611686018427387904"  // 2^62: page×size overflows int
		over64  = "18446744073709551616" // 2^64: not an int64 at all
		maxU64  = "18446744073709551615" // a uint64 a seq cursor once wrapped to 0 with
		maxI64  = "9223372036854775807"
		negOne  = "-1"
		mailbox = "/apis/v1/mailboxes/" + citizen + "/messages/"
	)
	type call struct {
		path  string
		token string
		user  bool // with a citizen's user assertion
	}
	routes := map[string]call{
		"/apis/v1/receipts/":                     {token: w.sender},
		"/apis/v1/memos/":                        {token: recipient},
		"/apis/v1/sent/":                         {token: w.sender},
		"/apis/v1/events/":                       {token: w.sender},
		"/apis/v1/events/feed":                   {token: w.sender},
		"/apis/v1/events/checkpoints":            {token: h.operator},
		"/apis/v1/organisations/{org}/messages/": {path: "/apis/v1/organisations/" + orgA + "/messages/", token: h.operator},
		"/apis/v1/mailboxes/{owner}/messages/":   {path: mailbox, token: v.token, user: true},
		"/apis/v1/consented/{cpr}/messages/":     {path: "/apis/v1/consented/" + citizen + "/messages/", token: w.sender},
	}
	get := func(c call, route, query string) response {
		t.Helper()
		path := c.path
		if path == "" {
			path = route
		}
		req, _ := http.NewRequest("GET", h.base+path+"?"+query, nil)
		req.Header.Set("Authorization", "Basic "+c.token)
		if c.user {
			req.Header.Set(api.AssertionHeader, v.assertion(t, citizen))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return response{status: resp.StatusCode, body: b}
	}
	for _, tc := range []struct {
		route string
		bad   []string // query strings answered 400 with a field error on their parameter
		good  []string // the largest values in range
	}{
		{"/apis/v1/receipts/", []string{"page=" + huge + "&size=2", "page=0&size=" + huge, "page=" + over64, "page=" + negOne,
			"size=0", "size=1001", "page=5000&size=2", "page=10&size=1000"}, []string{"page=4999&size=2", "page=9&size=1000"}},
		{"/apis/v1/memos/", []string{"page=" + huge + "&size=2", "page=0&size=" + huge, "page=" + over64, "page=" + negOne,
			"size=1001", "page=5000&size=2"}, []string{"page=4999&size=2", "page=9&size=1000"}},
		{"/apis/v1/sent/", []string{"size=" + huge, "size=" + negOne, "size=1001"}, []string{"size=1000"}},
		{"/apis/v1/events/", []string{"page=" + huge + "&size=2", "page=0&size=" + huge, "page=" + negOne, "page=5000&size=2",
			"after=" + maxU64, "after=" + over64, "after=" + negOne}, []string{"page=4999&size=2", "after=" + maxI64}},
		{"/apis/v1/events/feed", []string{"limit=" + huge + "&wait=0s", "limit=0&wait=0s", "after=" + maxU64 + "&wait=0s",
			"after=" + negOne + "&wait=0s"}, []string{"limit=1000&after=" + maxI64 + "&wait=0s"}},
		{"/apis/v1/events/checkpoints", []string{"from=" + maxU64, "from=" + over64}, []string{"from=" + maxI64}},
		{"/apis/v1/organisations/{org}/messages/", []string{"size=" + huge, "size=0"}, []string{"size=1000"}},
		{"/apis/v1/mailboxes/{owner}/messages/", []string{"size=" + huge, "size=501", "after=" + maxU64, "after=" + negOne},
			[]string{"size=500&after=" + maxI64}},
		{"/apis/v1/consented/{cpr}/messages/", []string{"size=" + huge, "after=" + over64}, []string{"size=500&after=" + maxI64}},
	} {
		c, ok := routes[tc.route]
		if !ok {
			t.Fatalf("no caller for %s", tc.route)
		}
		for _, q := range tc.bad {
			r := get(c, tc.route, q)
			var e api.ErrorMessage
			_ = json.Unmarshal(r.body, &e)
			param, _, _ := strings.Cut(q, "=")
			if r.status != 400 || len(e.FieldErrors) != 1 || !strings.HasSuffix(e.FieldErrors[0].Code, ".invalid") ||
				(e.FieldErrors[0].Field != param && !strings.Contains(q, "&"+e.FieldErrors[0].Field+"=")) {
				t.Errorf("GET %s?%s: %d %s", tc.route, q, r.status, r.body)
			}
		}
		for _, q := range tc.good {
			if r := get(c, tc.route, q); r.status != 200 {
				t.Errorf("GET %s?%s: %d %s", tc.route, q, r.status, r.body)
			}
		}
	}
	// Every route that pages is in the table above.
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct{ Name string } `json:"parameters"`
		} `json:"paths"`
	}
	h.mustStatus(h.do("GET", "/apis/v1/openapi.json", "", "", nil), 200).json(t, &doc)
	for path, ops := range doc.Paths {
		for _, p := range ops["get"].Parameters {
			if _, ok := routes[path]; !ok && (p.Name == "page" || p.Name == "size" || p.Name == "limit") {
				t.Errorf("GET %s pages (%s) but is not tested here", path, p.Name)
			}
		}
	}
	// The web mailbox passes its cursor on: a value past the end is an
	// empty page, a bad one an error page, never a 500.
	jar := h.webLogin(citizen)
	for q, want := range map[string]int{"after=" + maxI64: 200, "after=" + negOne: 400, "after=" + over64: 200} {
		resp, err := jar.Get(h.base + "/mailbox/box/" + citizen + "/?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("web mailbox ?%s: %d, want %d", q, resp.StatusCode, want)
		}
	}
}

// viewingClient is a viewing-client system of org with a registered
// assertion key.
type viewingClient struct {
	id, token string
	key       ed25519.PrivateKey
}

func (h *testHub) viewingClient(org string) viewingClient {
	h.t.Helper()
	id, token := h.system(org, map[string]any{"name": "Visningsklient", "role": "VIEWER"})
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/"+org+"/systems/"+id+"/assertion-keys",
		map[string]string{"kid": "k1", "publicKey": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}), 201)
	return viewingClient{id: id, token: token, key: key}
}

func (v viewingClient) assertion(t *testing.T, cpr string) string {
	t.Helper()
	a, err := viewer.SignAssertion(v.key, "k1", v.id, "posthub", viewer.Person{CPR: cpr}, time.Now(), 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// webLogin logs cpr into the web mailbox (the demo login form) and returns
// the client holding the session.
func (h *testHub) webLogin(cpr string) *http.Client {
	h.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(h.base + "/mailbox/")
	if err != nil {
		h.t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		h.t.Fatalf("no login form: %s", page)
	}
	resp, err = c.PostForm(h.base+"/mailbox/login", url.Values{"csrf": {string(m[1])}, "cpr": {cpr}})
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasSuffix(resp.Request.URL.Path, "/box/"+cpr+"/") {
		h.t.Fatalf("login: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	return c
}

// TestLetterTooDeepToRenderIsReadable sends a letter whose HTML body nests
// 600 elements deep (the HTML parser stops at 512) and one nested 400
// deep, and reads both as the citizen: through the viewer API and through
// the web mailbox. The shallow one shows its text; the deep one is a page
// with the letter's data, a note that it cannot be shown and its download
// link — never the empty 200 it once was — and the download is the
// document as sent.
func TestLetterTooDeepToRenderIsReadable(t *testing.T) {
	h := startHub(t, "-web-mailbox")
	w := h.setupWorld()
	v := h.viewingClient(orgA)
	nested := func(depth int) []byte {
		return []byte(strings.Repeat("<div>", depth) + "<p>Kære borger, din ansøgning er modtaget.</p>" + strings.Repeat("</div>", depth))
	}
	send := func(label string, doc []byte) string {
		u, b := letterXML(t, memo.Letter{To: citizen, Label: label,
			Main: memo.Attachment{Filename: "brev.html", MIMEType: "text/html", Data: doc}})
		h.mustStatus(h.send(w.sender, u, b, ""), 201)
		return u
	}
	deep, deepDoc := send("Dybt indlejret brev", nested(600)), nested(600)
	shallow := send("Indlejret brev", nested(400))
	const note = "This document cannot be shown in the browser. Download it below."

	viaAPI := func(path string) response {
		req, _ := http.NewRequest("GET", h.base+"/apis/v1/mailboxes/"+citizen+"/messages/"+path, nil)
		req.Header.Set("Authorization", "Basic "+v.token)
		req.Header.Set(api.AssertionHeader, v.assertion(t, citizen))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return response{status: resp.StatusCode, body: b, header: resp.Header}
	}
	web := h.webLogin(citizen)
	viaWeb := func(path string) response {
		resp, err := web.Get(h.base + "/mailbox/box/" + citizen + "/messages/" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return response{status: resp.StatusCode, body: b, header: resp.Header}
	}
	for name, get := range map[string]func(string) response{"viewer API": viaAPI, "web mailbox": viaWeb} {
		r := get(deep + "/render")
		page := string(r.body)
		if r.status != 200 || !strings.Contains(page, "Dybt indlejret brev") || !strings.Contains(page, note) ||
			!strings.Contains(page, `download="brev.html"`) {
			t.Fatalf("%s: the deep letter renders as %d (%d bytes): %.600s", name, r.status, len(r.body), page)
		}
		if r.header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s: the rendered page has no Content-Security-Policy", name)
		}
		href := regexp.MustCompile(`href="(documents/[^"]+)" download="brev.html"`).FindStringSubmatch(page)
		if href == nil {
			t.Fatalf("%s: no download link: %s", name, page)
		}
		if f := get(deep + "/" + strings.ReplaceAll(href[1], "&amp;", "&")); f.status != 200 || !bytes.Equal(f.body, deepDoc) {
			t.Fatalf("%s: the download is %d (%d bytes), not the document sent", name, f.status, len(f.body))
		}
		r = get(shallow + "/render")
		if r.status != 200 || !strings.Contains(string(r.body), "Kære borger, din ansøgning er modtaget.") || strings.Contains(string(r.body), note) {
			t.Fatalf("%s: the letter nested 400 deep renders as %d: %.600s", name, r.status, r.body)
		}
	}
	// The letter list marks both read: they were shown.
	var pg viewer.Page
	r := viaAPI("?folder=INBOX")
	if err := json.Unmarshal(r.body, &pg); err != nil || r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for _, l := range pg.Letters {
		if !l.Read {
			t.Errorf("letter %s (%s) is not marked read", l.MessageUUID, l.Label)
		}
	}
}
