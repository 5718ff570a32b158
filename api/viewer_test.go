package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/api/paging"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/hubtest"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/viewer"
)

type viewerHub struct {
	t        *testing.T
	ts       *httptest.Server
	token    string // the viewer system's API token
	sysID    string
	key      ed25519.PrivateKey
	uuid     string
	operator string
	svc      *viewer.Service
}

func newViewerHub(t *testing.T) *viewerHub {
	t.Helper()
	ctx := context.Background()
	fx := hubtest.Open(t)
	store, reg := fx.Store, fx.Registry
	fx.Org(hub.Organisation{CVR: "11111111", Name: "Demo Kommune", Kind: hub.Authority, Setup: hub.SetupContactable})
	sender, _ := fx.System("11111111", hub.SystemSpec{Name: "s", Role: hub.SenderSystem})
	vsys, vtok := fx.System("11111111", hub.SystemSpec{Name: "viewer", Role: hub.ViewerSystem})
	fx.Registered("0101701234")
	ingest := fx.Ingest(nil, 1<<20)
	m := memo.NewLetter(memo.Letter{From: "11111111", To: "0101701234", Label: "Brev", Main: memo.PDF("brev.pdf", memo.SamplePDF("Hej")),
		Attachments: []memo.Attachment{{Filename: "bilag \"1\"; æ.txt", Data: []byte("bilag")}, {Filename: "side.html", Data: []byte("<script>x</script>")}}})
	m.MessageBody.MainDocument.Actions = []memo.Action{{Label: "Mød op", ActionCode: "AFTALE", Reservation: &memo.Reservation{
		Description: "d", ReservationUUID: "8C2EA15D-61FB-4BA9-9366-42F8B194D241", Abstract: "a", Location: "l",
		StartDateTime: "2026-04-01T08:00:00Z", EndDateTime: "2026-04-01T09:00:00Z"}}}
	var b bytes.Buffer
	_, _ = m.WriteTo(&b)
	sum := sha256.Sum256(b.Bytes())
	l := hub.Letter{UUID: m.MessageHeader.MessageUUID, MessageType: "DIGITALPOST", MemoVersion: "1.2", Label: "Brev",
		SenderID: "11111111", RecipientID: "0101701234", RecipientType: "CPR", Size: int64(b.Len())}
	if _, _, err := ingest.Submit(ctx, hub.Submission{System: sender, Letter: l, Body: b.Bytes(), Size: int64(b.Len()), SHA256: hex.EncodeToString(sum[:])}); err != nil {
		t.Fatal(err)
	}
	svc := &viewer.Service{Store: store, Mailboxes: store}
	const op = "ph_viewer-test-operator"
	srv := api.New(api.Config{SpoolDir: t.TempDir(), OperatorTokenHash: hub.HashToken(op)},
		api.Deps{Store: store, Registry: reg, Ingest: ingest, Viewer: svc})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	h := &viewerHub{t: t, ts: ts, token: vtok, sysID: vsys.ID, key: key, uuid: l.UUID, operator: op, svc: svc}
	der, _ := x509.MarshalPKIXPublicKey(pub)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	body, _ := json.Marshal(map[string]string{"kid": "k1", "publicKey": pemKey})
	res := h.do("POST", "/apis/v1/organisations/11111111/systems/"+vsys.ID+"/assertion-keys", op, "", bytes.NewReader(body))
	if res.StatusCode != 201 {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("register key: %d %s", res.StatusCode, b)
	}
	return h
}

func (h *viewerHub) do(method, path, token, assertion string, body io.Reader) *http.Response {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.ts.URL+path, body)
	if token != "" {
		req.Header.Set("Authorization", "Basic "+token)
	}
	if assertion != "" {
		req.Header.Set(api.AssertionHeader, assertion)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { res.Body.Close() })
	return res
}

func (h *viewerHub) assertion(cpr string, at time.Time) string {
	tok, err := viewer.SignAssertion(h.key, "k1", h.sysID, "posthub", viewer.Person{CPR: cpr}, at, 5*time.Minute)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

func TestViewerAPIRefusesOtherCPRTamperedAndExpiredAssertions(t *testing.T) {
	h := newViewerHub(t)
	list := "/apis/v1/mailboxes/0101701234/messages/"
	good := h.assertion("0101701234", time.Now())
	if r := h.do("GET", list, h.token, good, nil); r.StatusCode != 200 {
		t.Fatalf("own mailbox: %d", r.StatusCode)
	}
	parts := strings.Split(good, ".")
	cases := []struct {
		name, path, token, assertion string
		status                       int
	}{
		{"assertion for another CPR than the mailbox owner is refused", list, h.token, h.assertion("0202702345", time.Now()), 403},
		{"letter through another CPR's mailbox is refused", "/apis/v1/mailboxes/0202702345/messages/" + h.uuid, h.token, good, 403},
		{"tampered signature is refused", list, h.token, parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])), 401},
		{"expired assertion is refused", list, h.token, h.assertion("0101701234", time.Now().Add(-time.Hour)), 401},
		{"missing assertion is refused", list, h.token, "", 401},
		{"missing system token is refused", list, "", good, 401},
		{"operator token is no viewing client", list, h.operator, good, 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if r := h.do("GET", tc.path, tc.token, tc.assertion, nil); r.StatusCode != tc.status {
				b, _ := io.ReadAll(r.Body)
				t.Fatalf("status %d, want %d: %s", r.StatusCode, tc.status, b)
			}
		})
	}
}

func TestViewerAPIRenderAndFiles(t *testing.T) {
	h := newViewerHub(t)
	as := h.assertion("0101701234", time.Now())
	base := "/apis/v1/mailboxes/0101701234/messages/" + h.uuid
	r := h.do("GET", base+"/render", h.token, as, nil)
	page, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 || r.Header.Get("Content-Security-Policy") != memo.RenderCSP || r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("render: %d %v", r.StatusCode, r.Header)
	}
	// Relative links resolve against the page's own URL, .../render.
	if !strings.Contains(string(page), `data="documents/0/files/0"`) {
		t.Fatalf("PDF object URL not relative to the render path:\n%s", page)
	}
	if u, _ := url.Parse(base + "/render"); u.ResolveReference(&url.URL{Path: "documents/0/files/0"}).Path != base+"/documents/0/files/0" {
		t.Fatal("the relative PDF URL does not resolve to the file route")
	}
	var l viewer.Letter
	r = h.do("GET", base, h.token, as, nil)
	_ = json.NewDecoder(r.Body).Decode(&l)
	if !l.Read {
		t.Fatal("rendering did not mark the letter read")
	}
	for _, tc := range []struct {
		path, ctype, disp string
	}{
		{"/documents/0/files/0?disposition=inline", "application/pdf", `inline; filename="brev.pdf"; filename*=UTF-8''brev.pdf`},
		{"/documents/1/files/0", "text/plain; charset=utf-8", `attachment; filename="bilag _1__ _.txt"; filename*=UTF-8''bilag%20%221%22%3B%20%C3%A6.txt`},
		{"/documents/2/files/0?disposition=inline", "application/octet-stream", `attachment; filename="side.html"; filename*=UTF-8''side.html`},
		{"/documents/0/actions/0/ics", "text/calendar; charset=utf-8", `attachment; filename="M_d op.ics"; filename*=UTF-8''M%C3%B8d%20op.ics`},
	} {
		r := h.do("GET", base+tc.path, h.token, as, nil)
		if r.StatusCode != 200 || r.Header.Get("Content-Type") != tc.ctype || r.Header.Get("Content-Disposition") != tc.disp ||
			r.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d type %q disposition %q", tc.path, r.StatusCode, r.Header.Get("Content-Type"), r.Header.Get("Content-Disposition"))
		}
	}
	if r := h.do("DELETE", base, h.token, as, nil); r.StatusCode != 204 || r.ContentLength > 0 {
		t.Fatalf("delete: %d, %d bytes", r.StatusCode, r.ContentLength)
	}
	r = h.do("GET", "/apis/v1/mailboxes/0101701234/messages/?folder=deleted", h.token, as, nil)
	var p paging.Result[viewer.Letter]
	_ = json.NewDecoder(r.Body).Decode(&p)
	if len(p.Content) != 1 || p.Content[0].PurgeAt == nil || p.Content[0].Folder != hub.FolderDeleted || p.NextCursor != "" || p.TotalElements != nil {
		t.Fatalf("deleted folder: %+v", p)
	}
}

// TestAssertionKeyBodyIsBounded: the key registration's JSON body is read
// within the API's 1 MiB bound and its PEM within 4 KiB.
func TestAssertionKeyBodyIsBounded(t *testing.T) {
	h := newViewerHub(t)
	path := "/apis/v1/organisations/11111111/systems/" + h.sysID + "/assertion-keys"
	huge, _ := json.Marshal(map[string]string{"kid": "k2", "publicKey": strings.Repeat("A", 2<<20)})
	if res := h.do("POST", path, h.operator, "", bytes.NewReader(huge)); res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 2 MiB body: %d, want 413", res.StatusCode)
	}
	long, _ := json.Marshal(map[string]string{"kid": "k2", "publicKey": strings.Repeat("A", 5<<10)})
	res := h.do("POST", path, h.operator, "", bytes.NewReader(long))
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 400 || !strings.Contains(string(b), "publicKey.too.long") {
		t.Errorf("a 5 KiB key: %d %s", res.StatusCode, b)
	}
}

// TestRenderingWaitsForTheParseBudget: rendering a letter, downloading
// one of its files or its .ics each hold the letter's size of the
// viewer's parse budget while the parsed letter lives; with the budget
// taken they wait (a client that gives up leaves nothing behind), and go
// on once it is given back.
func TestRenderingWaitsForTheParseBudget(t *testing.T) {
	h := newViewerHub(t)
	release, err := h.svc.Hold(context.Background(), 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/render", "/documents/0/files/0", "/documents/0/actions/0/ics"} {
		req, _ := http.NewRequest("GET", h.ts.URL+"/apis/v1/mailboxes/0101701234/messages/"+h.uuid+p, nil)
		req.Header.Set("Authorization", "Basic "+h.token)
		req.Header.Set(api.AssertionHeader, h.assertion("0101701234", time.Now()))
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		res, err := http.DefaultClient.Do(req.WithContext(ctx))
		cancel()
		if err == nil {
			res.Body.Close()
			t.Fatalf("%s answered %d while the parse budget was taken", p, res.StatusCode)
		}
	}
	release()
	for _, p := range []string{"/render", "/documents/0/files/0", "/documents/0/actions/0/ics"} {
		res := h.do("GET", "/apis/v1/mailboxes/0101701234/messages/"+h.uuid+p, h.token, h.assertion("0101701234", time.Now()), nil)
		if res.StatusCode != 200 {
			t.Errorf("%s after the budget was given back: %d", p, res.StatusCode)
		}
	}
}
