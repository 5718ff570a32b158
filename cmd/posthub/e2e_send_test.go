package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ulikunitz/xz/lzma"

	"github.com/posthub/posthub/api/paging"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/storage/bolt"
)

// testHub is a running `posthub serve` (the real Main path) on :0.
type testHub struct {
	t        *testing.T
	base     string
	data     string
	operator string
	cancel   context.CancelFunc
	done     chan error
	client   *http.Client // nil: http.DefaultClient
}

const testOperatorToken = "ph_test-operator-token"

func startHub(t *testing.T, extra ...string) *testHub {
	t.Helper()
	return startHubIn(t, t.TempDir(), "http", extra...)
}

// startHubIn starts a hub on an existing data directory; scheme is the
// one its base URL gets (https when extra has -tls-cert).
func startHubIn(t *testing.T, data, scheme string, extra ...string) *testHub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &testHub{t: t, data: data, operator: testOperatorToken, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan string, 1)
	args := append([]string{"-addr", "127.0.0.1:0", "-data", data, "-operator-token", testOperatorToken,
		"-log-level", "warn"}, extra...)
	env := &Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	go func() { h.done <- serve(ctx, env, args, func(a string) { ready <- a }) }()
	select {
	case a := <-ready:
		h.base = scheme + "://" + a
	case err := <-h.done:
		t.Fatalf("serve: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	t.Cleanup(h.stop)
	return h
}

func (h *testHub) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("serve: %v", err)
	}
}

// openStore opens the stopped hub's bolt file to look at what was stored.
func (h *testHub) openStore() hub.Store {
	h.t.Helper()
	h.stop()
	s, err := bolt.Open(filepath.Join(h.data, "posthub.db"), bolt.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { s.Close() })
	return s
}

type response struct {
	status int
	body   []byte
	header http.Header
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// list decodes a list route's answer, one page of the API's one list
// shape, into v (a pointer to a slice): the page's content.
func (r response) list(t *testing.T, v any) {
	t.Helper()
	contentOf(t, r.body, v)
}

// contentOf decodes a page (paging.Result) and its content into v.
func contentOf(t *testing.T, body []byte, v any) {
	t.Helper()
	var p paging.Result[json.RawMessage]
	if err := json.Unmarshal(body, &p); err != nil || p.Content == nil || p.Size == 0 {
		t.Fatalf("not a page: %s (%v)", body, err)
	}
	b, _ := json.Marshal(p.Content)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode the page's content %s: %v", b, err)
	}
}

func (r response) errorCode(t *testing.T) (code string, fields []string) {
	t.Helper()
	var e struct {
		Code        string `json:"code"`
		FieldErrors []struct {
			Code string `json:"code"`
		} `json:"fieldErrors"`
	}
	r.json(t, &e)
	for _, f := range e.FieldErrors {
		fields = append(fields, f.Code)
	}
	return e.Code, fields
}

func (h *testHub) do(method, path, token, ctype string, body io.Reader) response {
	h.t.Helper()
	headers := map[string]string{}
	if token != "" {
		headers["Authorization"] = "Basic " + token
	}
	if ctype != "" {
		headers["Content-Type"] = ctype
	}
	return h.callWith(method, path, headers, body)
}

func (h *testHub) operatorJSON(method, path string, v any) response {
	h.t.Helper()
	b, _ := json.Marshal(v)
	return h.do(method, path, h.operator, "application/json", bytes.NewReader(b))
}

// world is a set of organisations and systems registered through the API.
type world struct {
	sender     string // token of authority A's sender system
	senderB    string // token of authority B's sender system
	defaultSys string // A's default authority-post receiver (id)
	pointSys   string // receiver behind the contact point
	ruleSys    string // receiver chosen by the KLE rule
	cvrSys     string // A's CVR-post receiver
	companySys string
	contactPt  string
}

const (
	orgA      = "11111111"
	orgB      = "33333333"
	company   = "22222222"
	mailOnly  = "44444444"
	citizen   = "0101701234"
	exempt    = "0202702345"
	smsPerson = "0303703456"
)

func (h *testHub) mustStatus(r response, want int) response {
	h.t.Helper()
	if r.status != want {
		h.t.Fatalf("status %d, want %d: %s", r.status, want, r.body)
	}
	return r
}

func (h *testHub) system(org string, spec map[string]any) (id, token string) {
	h.t.Helper()
	r := h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/"+org+"/systems/", spec), 201)
	var st struct {
		System   hub.System `json:"system"`
		APIToken string     `json:"apiToken"`
	}
	r.json(h.t, &st)
	return st.System.ID, st.APIToken
}

func (h *testHub) setupWorld() world {
	h.t.Helper()
	for _, o := range []map[string]any{
		{"cvr": orgA, "name": "Kommune A", "kind": "AUTHORITY", "setup": "CONTACTABLE"},
		{"cvr": orgB, "name": "Styrelse B", "kind": "AUTHORITY", "setup": "SYSTEM_RETRIEVAL"},
		{"cvr": company, "name": "Firma ApS", "kind": "COMPANY", "setup": "SYSTEM_RETRIEVAL"},
		{"cvr": mailOnly, "name": "Lille Myndighed", "kind": "AUTHORITY", "setup": "MAILBOX_ONLY"},
	} {
		h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/", o), 201)
	}
	var w world
	_, w.sender = h.system(orgA, map[string]any{"name": "A sender", "role": "SENDER"})
	_, w.senderB = h.system(orgB, map[string]any{"name": "B sender", "role": "SENDER"})
	w.defaultSys, _ = h.system(orgA, map[string]any{"name": "A default", "role": "RECIPIENT"})
	w.pointSys, _ = h.system(orgA, map[string]any{"name": "A byggesag", "role": "RECIPIENT"})
	w.ruleSys, _ = h.system(orgA, map[string]any{"name": "A skole", "role": "RECIPIENT", "memoVersion": "1.2"})
	w.cvrSys, _ = h.system(orgA, map[string]any{"name": "A cvr", "role": "RECIPIENT", "mailbox": "CVR_POST"})
	w.companySys, _ = h.system(company, map[string]any{"name": "Firma ERP", "role": "RECIPIENT"})
	r := h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/"+orgA+"/contact-points/",
		map[string]any{"name": "Byggesager", "systemId": w.pointSys, "active": true, "visible": true,
			"memoSizeThresholdMB": 1, "allowedNumberOfAttachments": 1}), 201)
	var cp hub.ContactPoint
	r.json(h.t, &cp)
	w.contactPt = cp.ID
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/"+orgA+"/routing-rules/",
		map[string]any{"priority": 1, "field": "KLE", "value": "17.*", "systemId": w.ruleSys}), 201)
	csv := "id,digitalPost,nemSms,phone,address\n" +
		citizen + ",REGISTERED,false,,\n" +
		exempt + ",EXEMPT,false,,Fritaget Borger|Eksempelvej 1|1234 Demoby\n" +
		smsPerson + ",REGISTERED,true,+4512345678,\n"
	h.mustStatus(h.do("POST", "/apis/v1/contacts/import", h.operator, "text/csv", strings.NewReader(csv)), 200)
	return w
}

func letterXML(t *testing.T, l memo.Letter) (string, []byte) {
	t.Helper()
	if l.From == "" {
		l.From = orgA
	}
	if l.Main.Filename == "" && l.Type != memo.TypeNemSMS {
		l.Main = memo.PDF("brev.pdf", memo.SamplePDF("Hej"))
	}
	m := memo.NewLetter(l)
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return m.MessageHeader.MessageUUID, buf.Bytes()
}

func (h *testHub) send(token string, uuid string, body []byte, query string) response {
	h.t.Helper()
	return h.do("POST", "/apis/v1/memos/?memo-message-uuid="+uuid+query, token, "application/xml", bytes.NewReader(body))
}

func TestSendRoutesEveryBranch(t *testing.T) {
	h := startHub(t)
	w := h.setupWorld()
	kle := func(m *memo.Message) {
		m.MessageHeader.ContentData = &memo.ContentData{KLEdata: &memo.KLEdata{SubjectKey: "17.01.00", Version: "KL", Label: "Skole"}}
	}
	cases := []struct {
		name    string
		letter  memo.Letter
		edit    func(*memo.Message)
		query   string
		status  string // receipt status
		queue   string // expected single delivery queue ("" for none)
		channel hub.Channel
	}{
		{name: "citizen registered → citizen mailbox", letter: memo.Letter{To: citizen},
			status: "RECEIVED", queue: hub.MailboxQueue(citizen, ""), channel: hub.ChannelMailbox},
		{name: "citizen exempt, automatic → print", letter: memo.Letter{To: exempt},
			status: "RECEIVED", queue: hub.PrintQueue, channel: hub.ChannelPrint},
		{name: "citizen exempt, digital only → not delivered", letter: memo.Letter{To: exempt}, query: "&mode=DIGITAL",
			status: "NOT_ALLOWED"},
		{name: "print chosen → print", letter: memo.Letter{To: exempt}, query: "&mode=Fysisk%20Post",
			status: "RECEIVED", queue: hub.PrintQueue, channel: hub.ChannelPrint},
		{name: "NemSMS to registered → sms outbox", letter: memo.Letter{To: smsPerson, Type: memo.TypeNemSMS, Notification: "Du har post"},
			status: "RECEIVED", queue: hub.SMSQueue, channel: hub.ChannelSMS},
		{name: "NemSMS to unregistered → not delivered", letter: memo.Letter{To: citizen, Type: memo.TypeNemSMS, Notification: "Du har post"},
			status: "NOT_ALLOWED"},
		{name: "authority, contact point → its system", letter: memo.Letter{To: orgA},
			edit: func(m *memo.Message) {
				m.MessageHeader.Recipient.ContactPoint = &memo.ContactPoint{ContactPointID: w.contactPt}
			},
			status: "RECEIVED", queue: hub.SystemQueue(w.pointSys), channel: hub.ChannelSystem},
		{name: "authority, KLE rule → rule system", letter: memo.Letter{To: orgA}, edit: kle,
			status: "RECEIVED", queue: hub.SystemQueue(w.ruleSys), channel: hub.ChannelSystem},
		{name: "authority, nothing specific → default system", letter: memo.Letter{To: orgA},
			status: "RECEIVED", queue: hub.SystemQueue(w.defaultSys), channel: hub.ChannelSystem},
		{name: "authority, VIRKSOMHEDSPOST → CVR-post system", letter: memo.Letter{To: orgA, PostType: "VIRKSOMHEDSPOST"},
			status: "RECEIVED", queue: hub.SystemQueue(w.cvrSys), channel: hub.ChannelSystem},
		{name: "company with a system → its system", letter: memo.Letter{To: company},
			status: "RECEIVED", queue: hub.SystemQueue(w.companySys), channel: hub.ChannelSystem},
		{name: "authority without system retrieval → its mailbox", letter: memo.Letter{To: mailOnly},
			status: "RECEIVED", queue: hub.MailboxQueue(mailOnly, hub.AuthorityPost), channel: hub.ChannelMailbox},
		{name: "authority without systems → its mailbox", letter: memo.Letter{To: orgB},
			status: "RECEIVED", queue: hub.MailboxQueue(orgB, hub.AuthorityPost), channel: hub.ChannelMailbox},
		{name: "company not on the hub → CVR mailbox", letter: memo.Letter{To: "55555555"},
			status: "RECEIVED", queue: hub.MailboxQueue("55555555", hub.CVRPost), channel: hub.ChannelMailbox},
		{name: "held until a future date", letter: memo.Letter{To: citizen, DoNotDeliverUntil: time.Now().AddDate(0, 0, 10)},
			status: "RECEIVED", queue: hub.MailboxQueue(citizen, ""), channel: hub.ChannelMailbox},
	}
	sent := map[string]int{}
	for i, c := range cases {
		m := memo.NewLetter(withDefaults(c.letter))
		if c.edit != nil {
			c.edit(m)
		}
		var buf bytes.Buffer
		if _, err := m.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		r := h.send(w.sender, m.MessageHeader.MessageUUID, buf.Bytes(), c.query)
		if r.status != 201 {
			t.Fatalf("%s: status %d: %s", c.name, r.status, r.body)
		}
		var rc hub.Receipt
		r.json(t, &rc)
		if string(rc.Status) != c.status {
			t.Errorf("%s: receipt %s, want %s (%s)", c.name, rc.Status, c.status, r.body)
		}
		sent[m.MessageHeader.MessageUUID] = i
	}
	store := h.openStore()
	ctx := context.Background()
	for uuid, i := range sent {
		c := cases[i]
		ds, err := store.DeliveriesOf(ctx, uuid)
		if err != nil {
			t.Fatal(err)
		}
		if c.queue == "" {
			if len(ds) != 0 {
				t.Errorf("%s: %d deliveries, want none", c.name, len(ds))
			}
			continue
		}
		if len(ds) == 0 && (c.queue == hub.PrintQueue || c.queue == hub.SMSQueue) {
			// The outbox, woken by the delivery, may have handed it to the
			// spool and acknowledged it already.
			if _, err := os.Stat(filepath.Join(h.data, "outbox", c.queue, uuid+".json")); err == nil {
				continue
			}
		}
		if len(ds) != 1 || ds[0].Queue != c.queue || ds[0].Channel != c.channel {
			t.Errorf("%s: deliveries %+v, want one to %s", c.name, ds, c.queue)
		}
		m, err := store.GetMessage(ctx, uuid)
		if err != nil {
			t.Fatal(err)
		}
		if !c.letter.DoNotDeliverUntil.IsZero() && (m.State != hub.MessageHeld || !ds[0].AvailableAt.After(time.Now())) {
			t.Errorf("%s: state %s, available %s; want held", c.name, m.State, ds[0].AvailableAt)
		}
	}
}

func withDefaults(l memo.Letter) memo.Letter {
	if l.From == "" {
		l.From = orgA
	}
	if l.Main.Filename == "" && l.Type != memo.TypeNemSMS {
		l.Main = memo.PDF("brev.pdf", memo.SamplePDF("Hej"))
	}
	return l
}

func TestSendRefusals(t *testing.T) {
	h := startHub(t)
	w := h.setupWorld()
	uuid, body := letterXML(t, memo.Letter{To: citizen})

	t.Run("missing token → 401", func(t *testing.T) {
		r := h.send("", uuid, body, "")
		if code, _ := r.errorCode(t); r.status != 401 || code != "unauthorized" {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("unknown token → 401", func(t *testing.T) {
		r := h.send("ph_nope", uuid, body, "")
		if r.status != 401 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("sender CVR not the system's organisation → 403", func(t *testing.T) {
		r := h.send(w.senderB, uuid, body, "")
		code, fields := r.errorCode(t)
		if r.status != 403 || code != "forbidden" || len(fields) == 0 || fields[0] != "sender.not.allowed" {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("query uuid differs from header → 400", func(t *testing.T) {
		r := h.send(w.sender, memo.NewUUID(), body, "")
		if _, f := r.errorCode(t); r.status != 400 || len(f) == 0 || f[0] != "memo.message.uuid.mismatch" {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("invalid MeMo → 400 with field errors", func(t *testing.T) {
		bad := bytes.Replace(body, []byte(citizen), []byte("123"), 1)
		r := h.send(w.sender, uuid, bad, "")
		if _, f := r.errorCode(t); r.status != 400 || len(f) == 0 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("contact point size threshold → 400", func(t *testing.T) {
		m := memo.NewLetter(withDefaults(memo.Letter{To: orgA, ContactPointID: w.contactPt,
			Main: memo.Attachment{Filename: "big.pdf", MIMEType: "application/pdf", Data: bytes.Repeat([]byte("%PDF"), 400_000)}}))
		var buf bytes.Buffer
		m.WriteTo(&buf)
		r := h.send(w.sender, m.MessageHeader.MessageUUID, buf.Bytes(), "")
		if _, f := r.errorCode(t); r.status != 400 || len(f) == 0 || f[0] != "contact.point.size.exceeded" {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("unknown delivery mode → 400", func(t *testing.T) {
		r := h.send(w.sender, uuid, body, "&mode=PIGEON")
		if _, f := r.errorCode(t); r.status != 400 || len(f) == 0 || f[0] != "mode.unknown" {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("receiver system cannot send → 403", func(t *testing.T) {
		_, tok := h.system(orgA, map[string]any{"name": "A fourth", "role": "RECIPIENT"})
		r := h.send(tok, uuid, body, "")
		if r.status != 403 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
}

func TestSendIsIdempotent(t *testing.T) {
	h := startHub(t)
	w := h.setupWorld()
	uuid, body := letterXML(t, memo.Letter{To: citizen})
	first := h.mustStatus(h.send(w.sender, uuid, body, ""), 201)
	var r1, r2 hub.Receipt
	first.json(t, &r1)
	again := h.mustStatus(h.send(w.sender, uuid, body, ""), 201)
	again.json(t, &r2)
	if r1.TransmissionID != r2.TransmissionID || r2.Status != hub.ReceiptReceived {
		t.Fatalf("resubmission answered %+v, first %+v", r2, r1)
	}
	_, other := letterXML(t, memo.Letter{To: citizen, UUID: uuid, Label: "Et andet brev"})
	r := h.send(w.sender, uuid, other, "")
	if _, f := r.errorCode(t); r.status != 409 || len(f) == 0 || f[0] != "message.uuid.duplicate" {
		t.Fatalf("other bytes: %d %s", r.status, r.body)
	}
	// Concurrent identical submissions of a fresh UUID: one message, one receipt.
	uuid2, body2 := letterXML(t, memo.Letter{To: citizen})
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.send(w.sender, uuid2, body2, "")
			var rc hub.Receipt
			if r.status == 201 {
				json.Unmarshal(r.body, &rc)
			}
			ids[i] = rc.TransmissionID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id == "" || id != ids[0] {
			t.Fatalf("concurrent resubmissions got receipts %v", ids)
		}
	}
	// Receipts: listed, read without and with deletion.
	lst := h.mustStatus(h.do("GET", "/apis/v1/receipts/", w.sender, "", nil), 200)
	var page struct {
		Content []string `json:"content"`
	}
	lst.json(t, &page)
	if len(page.Content) != 2 {
		t.Fatalf("receipts %v", page.Content)
	}
	h.mustStatus(h.do("GET", "/apis/v1/receipts/"+r1.TransmissionID+"?delete=false", w.sender, "", nil), 200)
	h.mustStatus(h.do("GET", "/apis/v1/receipts/"+r1.TransmissionID, w.sender, "", nil), 200)
	h.mustStatus(h.do("GET", "/apis/v1/receipts/"+r1.TransmissionID, w.sender, "", nil), 404)
	// Another organisation's system cannot read them.
	h.mustStatus(h.do("GET", "/apis/v1/receipts/"+ids[0], w.senderB, "", nil), 404)
}

// slowZeros is an endless body that is not all in memory at once.
type patternReader struct{ left int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(b)), p.left)
	for i := range b[:n] {
		b[i] = 'A'
	}
	p.left -= n
	return int(n), nil
}

func TestSendTooLargeIsRefusedWhileStreaming(t *testing.T) {
	h := startHub(t)
	w := h.setupWorld()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	// 150 MB without Content-Length: the hub must stop reading at the
	// limit. The client, which did not ask first, is still sending when
	// the hub answers; the hub lingers over the rest (-linger-time,
	// -linger-bytes) before it closes, so the client reads its 413.
	req, _ := http.NewRequest("POST", h.base+"/apis/v1/memos/?memo-message-uuid="+memo.NewUUID(),
		io.MultiReader(strings.NewReader("<?xml version=\"1.0\"?>\n<memo:Message xmlns:memo=\"https://DigitalPost.dk/MeMo-1\" memoVersion=\"1.2\"><x>"),
			&patternReader{left: 150 << 20}))
	req.Header.Set("Authorization", "Basic "+w.sender)
	req.Header.Set("Content-Type", "application/xml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("streamed over the limit: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("streamed over the limit: status %d: %s", resp.StatusCode, body)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 48<<20 {
		t.Fatalf("heap grew by %d MiB while refusing a 150 MB body", grown>>20)
	}
	// With a declared Content-Length above the limit the answer comes
	// before the body: to a client that asks first (Expect: 100-continue)
	// and is never sent the go-ahead, and to one that just sends, which is
	// still sending when the hub answers. The hub lingers over the rest
	// of that body (-linger-time, -linger-bytes), so the client reads its
	// 413 instead of losing it to the reset of a connection closed under
	// it.
	for _, c := range []struct {
		name   string
		expect bool
	}{{"asked first", true}, {"just sent", false}} {
		req, _ = http.NewRequest("POST", h.base+"/apis/v1/memos/?memo-message-uuid="+memo.NewUUID(),
			io.LimitReader(&patternReader{left: 150 << 20}, 150<<20))
		req.ContentLength = 150 << 20
		req.Header.Set("Authorization", "Basic "+w.sender)
		req.Header.Set("Content-Type", "application/xml")
		if c.expect {
			req.Header.Set("Expect", "100-continue")
		}
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("declared Content-Length over the limit, %s: %v", c.name, err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("declared Content-Length over the limit, %s: status %d: %s", c.name, resp.StatusCode, body)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(h.data, "spool")); len(entries) != 0 {
		t.Fatalf("spool not cleaned: %d files", len(entries))
	}
}

func lzmaTar(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := lzma.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	for name, b := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestMassSendMixedArchive(t *testing.T) {
	h := startHub(t)
	w := h.setupWorld()
	files := map[string][]byte{}
	good := map[string]bool{}
	for i := 0; i < 5; i++ {
		u, b := letterXML(t, memo.Letter{To: citizen})
		files[u+".xml"] = b
		good[u] = true
	}
	u1, b1 := letterXML(t, memo.Letter{To: citizen})
	files[u1+".xml"] = bytes.Replace(b1, []byte(citizen), []byte("12"), 1) // id rule
	junk := make([]byte, 100)
	rand.Read(junk)
	files["junk.xml"] = junk // not XML at all
	u2, b2 := letterXML(t, memo.Letter{To: citizen})
	files[u2+".xml"] = append([]byte("<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>\n"), b2...)
	r := h.mustStatus(h.do("POST", "/apis/v1/memos/", w.sender, "application/x-lzma", bytes.NewReader(lzmaTar(t, files))), 201)
	var bulk struct {
		Receipts []hub.Receipt `json:"receipts"`
		Accepted int           `json:"accepted"`
		Rejected int           `json:"rejected"`
	}
	r.json(t, &bulk)
	if bulk.Accepted != 5 || bulk.Rejected != 3 || len(bulk.Receipts) != 8 {
		t.Fatalf("accepted %d rejected %d: %s", bulk.Accepted, bulk.Rejected, r.body)
	}
	for _, rc := range bulk.Receipts {
		if good[rc.MessageUUID] != (rc.Status == hub.ReceiptReceived) {
			t.Errorf("receipt %+v", rc)
		}
		if rc.Status == hub.ReceiptInvalid && rc.ErrorCode == "" {
			t.Errorf("invalid receipt without a code: %+v", rc)
		}
	}
	// A corrupt archive is refused as a whole.
	r = h.do("POST", "/apis/v1/memos/", w.sender, "application/x-lzma", bytes.NewReader([]byte("not lzma at all")))
	if r.status != 400 {
		t.Fatalf("corrupt archive: %d %s", r.status, r.body)
	}
}

func TestReceiverSystemLimits(t *testing.T) {
	h := startHub(t)
	h.setupWorld() // orgA has 3 authority-post systems and its CVR-post system; company has one
	code := func(r response) string {
		_, f := r.errorCode(t)
		if len(f) == 0 {
			return fmt.Sprintf("status %d %s", r.status, r.body)
		}
		return f[0]
	}
	h.system(orgA, map[string]any{"name": "A fourth", "role": "RECIPIENT"})
	r := h.operatorJSON("POST", "/apis/v1/organisations/"+orgA+"/systems/", map[string]any{"name": "A fifth", "role": "RECIPIENT"})
	if r.status != 409 || code(r) != "system.limit.authority.post" {
		t.Errorf("fifth authority-post system: %s", code(r))
	}
	r = h.operatorJSON("POST", "/apis/v1/organisations/"+orgA+"/systems/", map[string]any{"name": "A cvr 2", "role": "RECIPIENT", "mailbox": "CVR_POST"})
	if r.status != 409 || code(r) != "system.limit.cvr.post" {
		t.Errorf("second CVR-post system: %s", code(r))
	}
	r = h.operatorJSON("POST", "/apis/v1/organisations/"+company+"/systems/", map[string]any{"name": "Firma 2", "role": "RECIPIENT"})
	if r.status != 409 || code(r) != "system.limit.company" {
		t.Errorf("second company system: %s", code(r))
	}
	_, _ = h.system(orgB, map[string]any{"name": "B first", "role": "RECIPIENT"})
	r = h.operatorJSON("POST", "/apis/v1/organisations/"+orgB+"/systems/", map[string]any{"name": "B second", "role": "RECIPIENT", "default": true})
	if r.status != 409 || code(r) != "system.default.exists" {
		t.Errorf("second default: %s", code(r))
	}
	// The first authority-post system became the default automatically.
	var systems []hub.System
	h.mustStatus(h.do("GET", "/apis/v1/organisations/"+orgB+"/systems/", h.operator, "", nil), 200).list(t, &systems)
	defaults := 0
	for _, s := range systems {
		if s.Default {
			defaults++
		}
	}
	if defaults != 1 {
		t.Errorf("%d defaults, want exactly 1", defaults)
	}
}

func TestRecallHeldMessage(t *testing.T) {
	h := startHub(t)
	w := h.setupWorld()
	uuid, body := letterXML(t, memo.Letter{To: citizen, DoNotDeliverUntil: time.Now().AddDate(0, 0, 5)})
	h.mustStatus(h.send(w.sender, uuid, body, ""), 201)
	// Another organisation cannot recall it.
	h.mustStatus(h.do("POST", "/apis/v1/memos/"+uuid+"/recall", w.senderB, "", nil), 404)
	h.mustStatus(h.do("POST", "/apis/v1/memos/"+uuid+"/recall", w.sender, "", nil), 200)
	h.mustStatus(h.do("POST", "/apis/v1/memos/"+uuid+"/recall", w.sender, "", nil), 200) // idempotent
	// A message delivered at once cannot be recalled.
	u2, b2 := letterXML(t, memo.Letter{To: citizen})
	h.mustStatus(h.send(w.sender, u2, b2, ""), 201)
	r := h.do("POST", "/apis/v1/memos/"+u2+"/recall", w.sender, "", nil)
	if _, f := r.errorCode(t); r.status != 409 || len(f) == 0 || f[0] != "message.recall.too.late" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	store := h.openStore()
	m, err := store.GetMessage(context.Background(), uuid)
	if err != nil || m.State != hub.MessageRecalled {
		t.Fatalf("state %v %v", m.State, err)
	}
	if ds, _ := store.DeliveriesOf(context.Background(), uuid); len(ds) != 0 {
		t.Fatalf("recalled message still has deliveries: %+v", ds)
	}
}

// A system that sends on another organisation's behalf (its organisation's
// sendFor) may recall what it sent, as may the organisation named as the
// sender; nobody else may, and the sender is refused what it may not send.
func TestALetterSentOnAnotherOrganisationsBehalfIsRecalledByEither(t *testing.T) {
	h := startHub(t)
	w := h.setupWorld()
	const vendor = "55555555"
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/", map[string]any{"cvr": vendor, "name": "IT-leverandør",
		"kind": "AUTHORITY", "setup": "MAILBOX_ONLY", "sendFor": []string{orgA}}), 201)
	vendorID, vendorSys := h.system(vendor, map[string]any{"name": "vendor sender", "role": "SENDER"})

	// For A (which it sends for), not for B.
	held := memo.Letter{From: orgB, To: citizen, DoNotDeliverUntil: time.Now().AddDate(0, 0, 5)}
	u0, b0 := letterXML(t, held)
	r := h.send(vendorSys, u0, b0, "")
	if _, f := r.errorCode(t); r.status != 403 || len(f) == 0 || f[0] != "sender.not.allowed" {
		t.Fatalf("sent for B: %d %s", r.status, r.body)
	}
	held.From = orgA
	u1, b1 := letterXML(t, held)
	h.mustStatus(h.send(vendorSys, u1, b1, ""), 201)
	u2, b2 := letterXML(t, held)
	h.mustStatus(h.send(vendorSys, u2, b2, ""), 201)

	// Neither B nor A's own sender system of another organisation's letter.
	h.mustStatus(h.do("POST", "/apis/v1/memos/"+u1+"/recall", w.senderB, "", nil), 404)
	// The sending system recalls the first, the sender organisation's system the second.
	h.mustStatus(h.do("POST", "/apis/v1/memos/"+u1+"/recall", vendorSys, "", nil), 200)
	h.mustStatus(h.do("POST", "/apis/v1/memos/"+u2+"/recall", w.sender, "", nil), 200)

	store := h.openStore()
	for _, u := range []string{u1, u2} {
		m, err := store.GetMessage(context.Background(), u)
		if err != nil || m.State != hub.MessageRecalled || m.SenderCVR != orgA {
			t.Fatalf("%s: state %v sender %s, %v", u, m.State, m.SenderCVR, err)
		}
		if ds, _ := store.DeliveriesOf(context.Background(), u); len(ds) != 0 {
			t.Fatalf("recalled message still has deliveries: %+v", ds)
		}
	}
	// The recall by the sending system is in both organisations' logs.
	for _, org := range []string{vendor, orgA} {
		if !hasEvent(t, store, "MEMO_MESSAGE_RECALLED", vendorID, org) {
			t.Errorf("no MEMO_MESSAGE_RECALLED by the vendor's system in %s's log", org)
		}
	}
}

func TestRegistrationLookupAndImportReport(t *testing.T) {
	h := startHub(t)
	w := h.setupWorld()
	check := func(path string, want bool) {
		t.Helper()
		var res struct{ Result bool }
		h.mustStatus(h.do("GET", path, w.sender, "", nil), 200).json(t, &res)
		if res.Result != want {
			t.Errorf("%s: %v, want %v", path, res.Result, want)
		}
	}
	check("/apis/v1/registrations/digitalpost?cprNumber="+citizen, true)
	check("/apis/v1/registrations/digitalpost?cprNumber="+exempt, false)
	check("/apis/v1/registrations/nemsms?cprNumber="+smsPerson, true)
	check("/apis/v1/registrations/nemsms?cprNumber="+citizen, false)
	r := h.do("GET", "/apis/v1/registrations/digitalpost?cprNumber=12", w.sender, "", nil)
	if r.status != 400 {
		t.Errorf("bad cpr: %d", r.status)
	}
	csv := "id,digitalPost,nemSms,phone\n0404041234,REGISTERED,false,\nnot-a-cpr,REGISTERED,false,\n0505051234,MAYBE,false,\n0606061234,REGISTERED,true,\n"
	var rep hub.ImportReport
	h.mustStatus(h.do("POST", "/apis/v1/contacts/import", h.operator, "text/csv", strings.NewReader(csv)), 200).json(t, &rep)
	codes := map[string]int{}
	for _, rj := range rep.Rejected {
		codes[rj.Code] = rj.Line
	}
	if rep.Accepted != 1 || codes["contact.id.invalid"] != 3 || codes["contact.status.invalid"] != 4 || codes["contact.nemsms.phone.missing"] != 5 {
		t.Fatalf("report %+v", rep)
	}
	// A sender system is not the operator.
	h.mustStatus(h.do("POST", "/apis/v1/contacts/import", w.sender, "text/csv", strings.NewReader(csv)), 403)
}
