package main

// Hostile input, end to end against the real `posthub serve` (issue 13):
// paging values that overflow (item 9), letters nested too deep to render
// (item 10), mass-send archives that expand (item 2).

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash/crc32"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz/lzma"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/api/paging"
	"github.com/posthub/posthub/bulk"
	"github.com/posthub/posthub/hub"
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
	h := startHub(t, "-web-mailbox", "-mailbox-demo-login")
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
	// Lists read whole and paged in memory (an organisation's systems…).
	whole := map[string]call{
		"/apis/v1/privilege-types/":                                {token: h.operator},
		"/apis/v1/organisations/":                                  {token: h.operator},
		"/apis/v1/organisations/{org}/systems/":                    {},
		"/apis/v1/organisations/{org}/contact-groups/":             {},
		"/apis/v1/organisations/{org}/contact-points/":             {},
		"/apis/v1/organisations/{org}/routing-rules/":              {},
		"/apis/v1/organisations/{org}/users/":                      {},
		"/apis/v1/organisations/{org}/privileges/":                 {},
		"/apis/v1/organisations/{org}/parked-memos/":               {},
		"/apis/v1/organisations/{org}/inactive-systems/":           {},
		"/apis/v1/organisations/{org}/systems/{id}/assertion-keys": {path: "/apis/v1/organisations/" + orgA + "/systems/" + v.id + "/assertion-keys", token: h.operator},
		"/apis/v1/mailboxes/{owner}/consents/":                     {path: "/apis/v1/mailboxes/" + citizen + "/consents/", token: v.token, user: true},
	}
	wholeBad := []string{"page=" + huge + "&size=2", "page=0&size=" + huge, "page=" + negOne, "size=0", "size=1001", "page=10&size=1000"}
	for route, c := range whole {
		if c.token == "" {
			c = call{path: strings.Replace(route, "{org}", orgA, 1), token: h.operator}
		}
		routes[route] = c
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
	checkPaging := func(route string, bad, good []string) {
		t.Helper()
		c, ok := routes[route]
		if !ok {
			t.Fatalf("no caller for %s", route)
		}
		for _, q := range bad {
			r := get(c, route, q)
			var e api.ErrorMessage
			_ = json.Unmarshal(r.body, &e)
			param, _, _ := strings.Cut(q, "=")
			if r.status != 400 || len(e.FieldErrors) != 1 || !strings.HasSuffix(e.FieldErrors[0].Code, ".invalid") ||
				(e.FieldErrors[0].Field != param && !strings.Contains(q, "&"+e.FieldErrors[0].Field+"=")) {
				t.Errorf("GET %s?%s: %d %s", route, q, r.status, r.body)
			}
		}
		for _, q := range good {
			if r := get(c, route, q); r.status != 200 {
				t.Errorf("GET %s?%s: %d %s", route, q, r.status, r.body)
			}
		}
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
		{"/apis/v1/organisations/{org}/messages/", []string{"size=" + huge, "size=0", "page=10&size=1000"}, []string{"page=9&size=1000"}},
		{"/apis/v1/mailboxes/{owner}/messages/", []string{"size=" + huge, "size=501", "after=" + maxU64, "after=" + negOne},
			[]string{"size=500&after=" + maxI64}},
		{"/apis/v1/consented/{cpr}/messages/", []string{"size=" + huge, "after=" + over64}, []string{"size=500&after=" + maxI64}},
	} {
		checkPaging(tc.route, tc.bad, tc.good)
	}
	for route := range whole {
		checkPaging(route, wholeBad, []string{"page=9&size=1000"})
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
	h := startHub(t, "-web-mailbox", "-mailbox-demo-login")
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
	var letters []viewer.Letter
	r := viaAPI("?folder=INBOX")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	r.list(t, &letters)
	for _, l := range letters {
		if !l.Read {
			t.Errorf("letter %s (%s) is not marked read", l.MessageUUID, l.Label)
		}
	}
}

// bulkAnswer is a mass send's answer (api.BulkReceipts), or its refusal.
type bulkAnswer struct {
	Receipts     []hub.Receipt     `json:"receipts"`
	Accepted     int               `json:"accepted"`
	Rejected     int               `json:"rejected"`
	ArchiveError *api.ErrorMessage `json:"archiveError"`
	StoppedAt    *bulk.Position    `json:"stoppedAt"`
}

// procStatus reads a field of /proc/<pid>/status in bytes (VmHWM: the
// process's peak resident memory).
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in /proc/%d/status", field, pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// cpuTime is the process's user+system CPU time (for the log only).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * time.Second / 100 // USER_HZ
}

// lzmaBomb is the 79-byte archive: an lzma header asking for dict bytes
// of dictionary (size unknown) and 66 bytes of a real lzma stream.
func lzmaBomb(t *testing.T, dict uint32) []byte {
	var b bytes.Buffer
	w, err := lzma.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(make([]byte, 1<<20))
	w.Close()
	bomb := b.Bytes()[:79]
	binary.LittleEndian.PutUint32(bomb[1:5], dict)
	return bomb
}

// xzBomb is an xz stream whose first block's LZMA2 filter asks for a
// 4 GiB - 1 dictionary (code 40).
func xzBomb() []byte {
	var b bytes.Buffer
	b.Write([]byte{0xFD, '7', 'z', 'X', 'Z', 0})
	flags := []byte{0, 0x01}
	b.Write(flags)
	b.Write(binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(flags)))
	hdr := []byte{2, 0x00, 0x21, 0x01, 40, 0, 0, 0}
	b.Write(hdr)
	b.Write(binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(hdr)))
	b.Write(bytes.Repeat([]byte{0xE0, 0xFF, 0xFF}, 20))
	return b.Bytes()
}

type tarFile struct {
	name string
	data []byte
	size int64 // declared size when more than len(data): the archive ends after data
}

// lzmaTarOf writes files in order into a tar compressed with lzma.
func lzmaTarOf(t *testing.T, files ...tarFile) []byte {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, f := range files {
		size := max(f.size, int64(len(f.data)))
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data)
		if size > int64(len(f.data)) {
			break
		}
	}
	if files[len(files)-1].size <= int64(len(files[len(files)-1].data)) {
		tw.Close()
	}
	var b bytes.Buffer
	w, err := lzma.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw.Bytes())
	w.Close()
	return b.Bytes()
}

func multipartArchive(t *testing.T, archive []byte) (string, []byte) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	part, err := mw.CreateFormFile("file", "archive.tar.lzma")
	if err != nil {
		t.Fatal(err)
	}
	part.Write(archive)
	mw.Close()
	return mw.FormDataContentType(), b.Bytes()
}

// TestMassSendArchiveBounds sends archives that expand to a `posthub
// serve` process: the 79-byte bombs whose lzma header asks for a 2 GiB
// (2^31-1, the lzma library's cap, and 2^31) and a 4 GiB dictionary, the 169 KB archive of one 1.2 GB entry (as it is, and
// with its header asking for 2 GiB), an xz block asking for 4 GiB, an
// archive of 5,000 tiny entries against -max-archive-entries 100, and one
// that outgrows -max-archive-bytes after three good MeMos. Each is refused
// at the header that tells, with its code, or — when MeMos were accepted
// before — answered with their receipts (stored, listed by GET /receipts/)
// and where and why reading stopped. The hub's peak resident memory
// (VmHWM) grows by less than 100 MiB over all of it; before the bounds,
// the 2 GiB-dictionary copy of the big entry alone took it past 1.2 GB.
func TestMassSendArchiveBounds(t *testing.T) {
	p := startHubProcess(t, "-data", t.TempDir(), "-operator-token", testOperatorToken,
		"-max-archive-entries", "100", "-max-archive-bytes", strconv.Itoa(16<<20))
	h := &testHub{t: t, base: p.base, operator: testOperatorToken}
	w := h.setupWorld()
	pid := p.cmd.Process.Pid
	peak0, cpu0 := procStatus(t, pid, "VmHWM"), cpuTime(t, pid)

	big, err := os.ReadFile("testdata/big-entry.tar.lzma") // one entry of 1.2 GB zeros, lzma -6
	if err != nil {
		t.Fatal(err)
	}
	const bigName = "9d7c2f1e-5b8a-4c3d-9e0f-1a2b3c4d5e6f.xml"
	send := func(t *testing.T, token, ctype string, body []byte) (response, bulkAnswer) {
		t.Helper()
		r := h.do("POST", "/apis/v1/memos/", token, ctype, bytes.NewReader(body))
		var a bulkAnswer
		if r.status == 201 {
			r.json(t, &a)
		}
		return r, a
	}
	refused := func(t *testing.T, r response, status int, field string) {
		t.Helper()
		code, fields := r.errorCode(t)
		if r.status != status || len(fields) != 1 || fields[0] != field {
			t.Fatalf("%d %s %v, want %d %s: %s", r.status, code, fields, status, field, r.body)
		}
	}
	stopped := func(t *testing.T, a bulkAnswer, field string, entry int, name string) {
		t.Helper()
		if a.ArchiveError == nil || a.ArchiveError.Code != "too_large" || len(a.ArchiveError.FieldErrors) != 1 ||
			a.ArchiveError.FieldErrors[0].Code != field {
			t.Fatalf("archive error %+v, want %s", a.ArchiveError, field)
		}
		if a.StoppedAt == nil || a.StoppedAt.Entry != entry || (name != "" && a.StoppedAt.Name != name) {
			t.Fatalf("stopped at %+v, want entry %d %s", a.StoppedAt, entry, name)
		}
	}

	t.Run("the 79-byte bombs are refused at the lzma header", func(t *testing.T) {
		for _, dict := range []uint32{1<<31 - 1, 1 << 31, 1<<32 - 1} {
			bomb := lzmaBomb(t, dict)
			if len(bomb) != 79 {
				t.Fatalf("bomb of %d bytes", len(bomb))
			}
			r, _ := send(t, w.sender, "application/x-lzma", bomb)
			refused(t, r, 413, bulk.CodeDictionaryTooLarge)
			ctype, form := multipartArchive(t, bomb)
			r, _ = send(t, w.sender, ctype, form)
			refused(t, r, 413, bulk.CodeDictionaryTooLarge)
		}
	})
	t.Run("the big entry asking for a 2 GiB dictionary is refused at the lzma header", func(t *testing.T) {
		b := bytes.Clone(big)
		binary.LittleEndian.PutUint32(b[1:5], 1<<31-1)
		r, _ := send(t, w.sender, "application/x-lzma", b)
		refused(t, r, 413, bulk.CodeDictionaryTooLarge)
	})
	t.Run("an xz block asking for 4 GiB is refused at its header", func(t *testing.T) {
		r, _ := send(t, w.sender, "application/x-lzma", xzBomb())
		refused(t, r, 413, bulk.CodeDictionaryTooLarge)
	})
	t.Run("the 1.2 GB entry is refused at its tar header", func(t *testing.T) {
		r, _ := send(t, w.sender, "application/x-lzma", big)
		refused(t, r, 413, bulk.CodeEntryTooLarge)
		var e api.ErrorMessage
		r.json(t, &e)
		if f := e.FieldErrors[0]; f.Field != bigName || f.RejectedValue != "1200000000" {
			t.Fatalf("field error %+v", f)
		}
	})
	t.Run("after a good MeMo, the big entry stops the archive at its header", func(t *testing.T) {
		u, good := letterXML(t, memo.Letter{To: citizen})
		ctype, form := multipartArchive(t, lzmaTarOf(t, tarFile{name: u + ".xml", data: good},
			tarFile{name: "big.xml", data: make([]byte, 1<<20), size: 1_200_000_000}))
		r, a := send(t, w.sender, ctype, form)
		if r.status != 201 || a.Accepted != 1 || len(a.Receipts) != 1 || a.Receipts[0].MessageUUID != u {
			t.Fatalf("%d %s", r.status, r.body)
		}
		stopped(t, a, bulk.CodeEntryTooLarge, 2, "big.xml")
		if max := int64(len(good)) + 3<<10; a.StoppedAt.Offset > max {
			t.Fatalf("decompressed %d bytes, more than the good MeMo and two headers (%d)", a.StoppedAt.Offset, max)
		}
	})
	t.Run("more entries than allowed: the first 100 get receipts, reading stops at the 101st", func(t *testing.T) {
		files := make([]tarFile, 5000)
		for i := range files {
			files[i] = tarFile{name: fmt.Sprintf("tiny-%05d.xml", i+1), data: []byte("x")}
		}
		r, a := send(t, w.senderB, "application/x-lzma", lzmaTarOf(t, files...))
		if r.status != 201 || a.Rejected != 100 || len(a.Receipts) != 100 {
			t.Fatalf("%d: %d receipts, %d rejected", r.status, len(a.Receipts), a.Rejected)
		}
		stopped(t, a, bulk.CodeTooManyEntries, 101, "tiny-00101.xml")
		// Exactly those receipts are stored.
		var page paging.Result[string]
		h.mustStatus(h.do("GET", "/apis/v1/receipts/?size=1000", w.senderB, "", nil), 200).json(t, &page)
		if page.Total() != 100 || len(page.Content) != 100 {
			t.Fatalf("%d receipts stored, want 100", page.Total())
		}
	})
	t.Run("outgrowing the decompressed budget stops the archive after the MeMos that fit", func(t *testing.T) {
		var files []tarFile
		var uuids []string
		for range 3 {
			u, b := letterXML(t, memo.Letter{To: citizen})
			files, uuids = append(files, tarFile{name: u + ".xml", data: b}), append(uuids, u)
		}
		files = append(files, tarFile{name: "large.xml", data: make([]byte, 20<<20)})
		r, a := send(t, w.sender, "application/x-lzma", lzmaTarOf(t, files...))
		if r.status != 201 || a.Accepted != 3 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		stopped(t, a, bulk.CodeDecompressedTooLarge, 4, "large.xml")
		for i, rc := range a.Receipts {
			var stored hub.Receipt
			h.mustStatus(h.do("GET", "/apis/v1/receipts/"+rc.TransmissionID+"?delete=false", w.sender, "", nil), 200).json(t, &stored)
			if stored.MessageUUID != uuids[i] || stored.Status != hub.ReceiptReceived {
				t.Fatalf("stored receipt %+v", stored)
			}
		}
	})

	grown := procStatus(t, pid, "VmHWM") - peak0
	t.Logf("hub: VmHWM %d MiB → +%d MiB, CPU %s for all the archives", peak0>>20, grown>>20, cpuTime(t, pid)-cpu0)
	if grown > 100<<20 {
		t.Fatalf("the hub's peak resident memory grew by %d MiB", grown>>20)
	}
}

// TestSendCommandReportsAnArchiveCutShort: `posthub send` shows where and
// why the hub stopped reading an archive, and exits 1.
func TestSendCommandReportsAnArchiveCutShort(t *testing.T) {
	h := startHub(t, "-max-archive-entries", "2")
	w := h.setupWorld()
	var files []tarFile
	for range 4 {
		u, b := letterXML(t, memo.Letter{To: citizen})
		files = append(files, tarFile{name: u + ".xml", data: b})
	}
	archive := filepath.Join(t.TempDir(), "batch.tar.lzma")
	if err := os.WriteFile(archive, lzmaTarOf(t, files...), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code := Main([]string{"send", "-url", h.base, "-token", w.sender, "-q", archive},
		&Env{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }})
	want := "the hub stopped reading at entry 3 (" + files[2].name + "); it and the entries after it were not sent: " +
		bulk.CodeTooManyEntries
	if code != 1 || !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "ARCHIVE_STOPPED 1, RECEIVED 2") {
		t.Fatalf("exit %d\n%s", code, out.String())
	}
}
