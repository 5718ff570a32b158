package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/sf1601"
	"github.com/posthub/posthub/sf1601/sf1601test"
)

// call sends one request with exactly the given headers.
func (h *testHub) call(method, path string, headers map[string]string, body []byte) response {
	h.t.Helper()
	return h.callWith(method, path, headers, bytes.NewReader(body))
}

// callStreamed sends body without a Content-Length (chunked), as a client
// streaming from a file does: the hub spools what it cannot size.
func (h *testHub) callStreamed(method, path string, headers map[string]string, body []byte) response {
	h.t.Helper()
	return h.callWith(method, path, headers, io.MultiReader(bytes.NewReader(body)))
}

func (h *testHub) callWith(method, path string, headers map[string]string, body io.Reader) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.base+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	client := h.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, body: b, header: resp.Header}
}

// pythonHeaders are the headers python-serviceplatformen's send_message
// and is_registered send (the token as the README tells them to give it).
func pythonHeaders(token, tx string) map[string]string {
	return map[string]string{"X-TransaktionsId": tx, "X-TransaktionsTid": time.Now().Format("2006-01-02T15:04:05Z"),
		"authorization": "Bearer " + token, "Content-Type": "application/xml"}
}

// phpHeaders are the headers itk-dev/serviceplatformen's kombiPostAfsend
// sends; this one uses the NgDP-style Basic credential.
func phpHeaders(token, tx string) map[string]string {
	return map[string]string{"Authorization": "Basic " + token, "x-TransaktionsId": tx,
		"x-TransaktionsTid": time.Now().UTC().Format("2006-01-02T15:04:05Z"), "content-type": "application/xml", "accept": "application/xml"}
}

// waitForFile polls for path until the deadline.
func waitForFile(t *testing.T, path string) []byte {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear: %v", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSF1601KombiSendsEndToEnd is an SF1601 municipality pointed at
// posthub: over TLS with its client certificate, it sends each
// KombiValgKode the way python-serviceplatformen 3.x writes a
// kombi_request and the way the PHP client does, and every letter is
// found where it belongs — the citizen's mailbox, the authority's
// receiver system, the print spool (with the fjernprint part), the NemSMS
// spool — with the transaction id on its receipt and in the event log. A
// letter that cannot be delivered as chosen is 400 with its NOT_ALLOWED
// receipt. PostForespoerg answers as the NgDP look-up does.
func TestSF1601KombiSendsEndToEnd(t *testing.T) {
	cw := newCertWorld(t, "kommunens fagsystem")
	data, tlsArgs, w, clientPair, clientWith := cw.data, cw.tlsArgs, cw.world, cw.client, cw.clientWith
	ctx, sys := context.Background(), cw.sender
	var err error
	h := startHubIn(t, data, "https", tlsArgs...)
	h.client = clientWith(clientPair)

	type sent struct {
		name, uuid, tx, queue string
		channel               hub.Channel
		print                 []byte // the fjernprint part as sent, for print letters
	}
	var all []sent
	cases := []struct {
		choice  string
		letter  memo.Letter
		queue   string
		channel hub.Channel
	}{
		{"Automatisk Valg", memo.Letter{To: citizen, Label: "Æblegrød & kanel"}, hub.MailboxQueue(citizen, ""), hub.ChannelMailbox},
		{"Digital Post", memo.Letter{To: orgA, Label: "Til fagsystemet"}, hub.SystemQueue(w.defaultSys), hub.ChannelSystem},
		{"Fysisk Post", memo.Letter{To: exempt, Label: "Brev på papir"}, hub.PrintQueue, hub.ChannelPrint},
		{"NemSMS", memo.Letter{To: smsPerson, Type: memo.TypeNemSMS, Notification: "Du har post fra kommunen"}, hub.SMSQueue, hub.ChannelSMS},
		{"Automatisk Valg", memo.Letter{To: exempt, Label: "Fritaget: automatisk på papir"}, hub.PrintQueue, hub.ChannelPrint},
	}
	for _, form := range []string{"python", "php"} {
		for i, c := range cases {
			l := withDefaults(c.letter)
			l.UUID = memo.NewUUID()
			_, alone := letterXML(t, l)
			tx := uuid.NewString()
			var body, print []byte
			path, headers := "/service/KombiPostAfsend_1/memos", pythonHeaders(w.sender, tx)
			if form == "python" {
				body, err = sf1601test.Python(alone, c.choice)
			} else {
				path, headers = "/service/KombiPostAfsend_1/kombi", phpHeaders(w.sender, tx)
				var fp []byte
				if c.channel == hub.ChannelPrint {
					fp = sf1601test.ForsendelseI("posthub-e2e-"+l.UUID[:8], exempt, "Fritaget Borger", "Eksempelvej", "1", "1234", memo.SamplePDF(l.Label))
				}
				body, err = sf1601test.PHP(alone, c.choice, fp)
				if fp != nil {
					d := sf1601.NewDecoder(bytes.NewReader(body), sf1601.Limits{})
					if d.Message(io.Discard) != nil {
						t.Fatal("test request does not decode")
					}
					req, err := d.Finish()
					if err != nil {
						t.Fatal(err)
					}
					print = req.Print
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			name := form + " " + c.choice + " #" + string(rune('0'+i))
			r := h.call("POST", path, headers, body)
			if i == len(cases)-1 {
				// The last of each goes without a Content-Length, so its
				// Message takes the spool, as a large one does.
				r = h.callStreamed("POST", path, headers, body)
			}
			if r.status != 201 {
				t.Fatalf("%s: %d %s", name, r.status, r.body)
			}
			if got := r.header.Get("X-TransaktionsId"); got != tx {
				t.Errorf("%s: X-TransaktionsId echoed as %q, sent %q", name, got, tx)
			}
			var rc hub.Receipt
			if form == "php" {
				if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/xml") {
					t.Errorf("%s: Accept: application/xml answered %s", name, ct)
				}
				if err := xml.Unmarshal(r.body, &rc); err != nil {
					t.Fatalf("%s: XML receipt %s: %v", name, r.body, err)
				}
			} else {
				r.json(t, &rc)
			}
			if rc.Status != hub.ReceiptReceived || rc.TransactionID != tx || !strings.EqualFold(rc.MessageUUID, l.UUID) || rc.TransmissionID == "" {
				t.Errorf("%s: receipt %+v (%s)", name, rc, r.body)
			}
			all = append(all, sent{name: name, uuid: strings.ToLower(l.UUID), tx: tx, queue: c.queue, channel: c.channel, print: print})
		}
	}

	t.Run("a retry is the same letter; other bytes under its UUID are 409", func(t *testing.T) {
		l := withDefaults(memo.Letter{To: citizen, UUID: memo.NewUUID()})
		_, alone := letterXML(t, l)
		body, _ := sf1601test.Python(alone, "Digital Post")
		first := h.call("POST", "/service/KombiPostAfsend_1/memos", pythonHeaders(w.sender, uuid.NewString()), body)
		again := h.call("POST", "/service/KombiPostAfsend_1/memos", pythonHeaders(w.sender, uuid.NewString()), body)
		var r1, r2 hub.Receipt
		first.json(t, &r1)
		again.json(t, &r2)
		if first.status != 201 || again.status != 201 || again.header.Get("X-Posthub-Duplicate") != "true" || r1.TransmissionID != r2.TransmissionID {
			t.Fatalf("retry: %d %s / %d %s", first.status, first.body, again.status, again.body)
		}
		other, _ := sf1601test.Python(bytes.Replace(alone, []byte("<memo:label>"), []byte("<memo:label>Ny "), 1), "Digital Post")
		if r := h.call("POST", "/service/KombiPostAfsend_1/memos", pythonHeaders(w.sender, uuid.NewString()), other); r.status != 409 {
			t.Fatalf("other bytes: %d %s", r.status, r.body)
		}
	})

	t.Run("undeliverable as chosen is 400 with the NOT_ALLOWED receipt", func(t *testing.T) {
		for _, c := range []struct {
			choice string
			letter memo.Letter
			code   string
		}{
			{"Digital Post", memo.Letter{To: exempt}, "recipient.exempt"},
			{"NemSMS", memo.Letter{To: citizen, Type: memo.TypeNemSMS, Notification: "Hej"}, "nemsms.not.registered"},
		} {
			_, alone := letterXML(t, withDefaults(c.letter))
			body, _ := sf1601test.PHP(alone, c.choice, nil)
			r := h.call("POST", "/service/KombiPostAfsend_1/kombi", phpHeaders(w.sender, uuid.NewString()), body)
			var nd struct {
				Code        string           `json:"code"`
				FieldErrors []hub.FieldError `json:"fieldErrors"`
				Receipt     hub.Receipt      `json:"receipt"`
			}
			r.json(t, &nd)
			if r.status != 400 || nd.Code != "invalid" || len(nd.FieldErrors) != 1 || nd.FieldErrors[0].Code != c.code ||
				nd.Receipt.Status != hub.ReceiptNotAllowed || nd.Receipt.ErrorCode != c.code || nd.Receipt.TransmissionID == "" {
				t.Errorf("%s: %d %s", c.choice, r.status, r.body)
			}
			// A retry gets the same answer.
			again := h.call("POST", "/service/KombiPostAfsend_1/kombi", phpHeaders(w.sender, uuid.NewString()), body)
			var nd2 struct {
				Receipt hub.Receipt `json:"receipt"`
			}
			again.json(t, &nd2)
			if again.status != 400 || nd2.Receipt.TransmissionID != nd.Receipt.TransmissionID {
				t.Errorf("%s again: %d %s", c.choice, again.status, again.body)
			}
		}
	})

	t.Run("the registered client certificate is required", func(t *testing.T) {
		_, alone := letterXML(t, withDefaults(memo.Letter{To: citizen}))
		body, _ := sf1601test.Python(alone, "Digital Post")
		bare := &testHub{t: t, base: h.base, client: clientWith()}
		if r := bare.call("POST", "/service/KombiPostAfsend_1/memos", pythonHeaders(w.sender, uuid.NewString()), body); r.status != 401 {
			t.Fatalf("without the certificate: %d %s", r.status, r.body)
		}
		if r := bare.call("GET", "/service/PostForespoerg_1/digitalpost?cprNumber="+citizen, pythonHeaders(w.sender, uuid.NewString()), nil); r.status != 401 {
			t.Fatalf("PostForespoerg without the certificate: %d %s", r.status, r.body)
		}
	})

	t.Run("PostForespoerg answers as the NgDP look-up", func(t *testing.T) {
		for _, c := range []struct {
			name, kind, query string
			want              bool
			ngdp              bool // the NgDP route answers the same question
		}{
			{"registered citizen", "digitalpost", "cprNumber=" + citizen, true, true},
			{"exempt citizen", "digitalpost", "cprNumber=" + exempt, false, true},
			{"NemSMS registered", "nemsms", "cprNumber=" + smsPerson, true, true},
			{"NemSMS not registered", "nemsms", "cprNumber=" + citizen, false, true},
			{"unknown CPR (Digital Post is the rule)", "digitalpost", "cprNumber=0909091234", true, true},
			{"unknown CPR, NemSMS", "nemsms", "cprNumber=0909091234", false, true},
			{"authority by CVR", "digitalpost", "cvrNumber=" + orgA, true, true},
			{"garbage id as cvrNumber (python)", "digitalpost", "cvrNumber=FooBar", false, false},
			{"garbage id as cprNumber (php)", "nemsms", "cprNumber=FooBar", false, false},
			{"NemSMS about a CVR", "nemsms", "cvrNumber=" + orgA, false, false},
		} {
			r := h.call("GET", "/service/PostForespoerg_1/"+c.kind+"?"+c.query, pythonHeaders(w.sender, uuid.NewString()), nil)
			var got struct {
				Result *bool `json:"result"`
			}
			r.json(t, &got)
			if r.status != 200 || got.Result == nil || *got.Result != c.want {
				t.Errorf("%s: %d %s", c.name, r.status, r.body)
			}
			if c.ngdp {
				n := h.call("GET", "/apis/v1/registrations/"+c.kind+"?"+c.query, map[string]string{"Authorization": "Basic " + w.sender}, nil)
				if n.status != 200 || !bytes.Equal(bytes.TrimSpace(n.body), bytes.TrimSpace(r.body)) {
					t.Errorf("%s: NgDP answers %d %s, PostForespoerg %s", c.name, n.status, n.body, r.body)
				}
			}
		}
	})

	// The print and SMS outboxes hand their letters to the spool.
	for _, s := range all {
		switch s.channel {
		case hub.ChannelPrint:
			meta := waitForFile(t, filepath.Join(data, "outbox", "print", s.uuid+".json"))
			if _, err := os.Stat(filepath.Join(data, "outbox", "print", s.uuid+".xml")); err != nil {
				t.Errorf("%s: the MeMo is not in the print spool: %v", s.name, err)
			}
			fp, err := os.ReadFile(filepath.Join(data, "outbox", "print", s.uuid+".fjernprint.xml"))
			switch {
			case s.print == nil && err == nil:
				t.Errorf("%s: a fjernprint part appeared from nowhere", s.name)
			case s.print != nil && (err != nil || !bytes.Equal(fp, s.print)):
				t.Errorf("%s: fjernprint part %q, %v; sent %q", s.name, fp, err, s.print)
			case s.print != nil && !strings.Contains(string(meta), s.uuid+".fjernprint.xml"):
				t.Errorf("%s: the print item's metadata does not name its fjernprint part: %s", s.name, meta)
			}
		case hub.ChannelSMS:
			var m struct {
				Meta map[string]string `json:"meta"`
			}
			if err := json.Unmarshal(waitForFile(t, filepath.Join(data, "outbox", "sms", s.uuid+".json")), &m); err != nil ||
				m.Meta["phone"] != "+4512345678" || m.Meta["text"] != "Du har post fra kommunen" {
				t.Errorf("%s: SMS spool item %+v %v", s.name, m, err)
			}
		}
	}

	store := h.openStore()
	var events []hub.Event
	_ = store.ScanEvents(ctx, 0, func(e hub.Event) error { events = append(events, e); return nil })
	pending, _ := store.PendingEvents(ctx, 100000)
	events = append(events, pending...)
	for _, s := range all {
		if s.channel == hub.ChannelMailbox || s.channel == hub.ChannelSystem {
			ds, err := store.DeliveriesOf(ctx, s.uuid)
			if err != nil || len(ds) != 1 || ds[0].Queue != s.queue {
				t.Errorf("%s: deliveries %+v %v; want one to %s", s.name, ds, err, s.queue)
			}
		}
		rc, err := store.ReceiptFor(ctx, sys.ID, s.uuid)
		if err != nil || rc.TransactionID != s.tx {
			t.Errorf("%s: stored receipt %+v %v", s.name, rc, err)
		}
		var logged bool
		for _, e := range events {
			logged = logged || e.Tag == "MEMO_SEND_RECEIVED" && e.MessageUUID == s.uuid && e.Detail["transactionId"] == s.tx
		}
		if !logged {
			t.Errorf("%s: no MEMO_SEND_RECEIVED with transactionId %s", s.name, s.tx)
		}
	}
}

// TestSF1601MalformedRequestsChangeNothing sends a table of refused
// kombi_requests over HTTP: each gets its status and precise code, and
// afterwards the hub holds no message, delivery, receipt, counter, blob or
// spool file — only the event log's MEMO_SEND_VALIDATION_FAILED entries,
// which the NgDP route writes for an invalid MeMo too.
func TestSF1601MalformedRequestsChangeNothing(t *testing.T) {
	h := startHub(t, "-max-memo-size", "300000", "-sf1601-max-print-size", "20000", "-sf1601-prefix", "/sf1601")
	w := h.setupWorld()
	_, receiverToken := h.system(orgA, map[string]any{"name": "A modtager", "role": "RECIPIENT"})
	const send = "/sf1601/service/KombiPostAfsend_1/kombi"
	_, good := letterXML(t, withDefaults(memo.Letter{To: citizen}))
	_, bad := letterXML(t, withDefaults(memo.Letter{To: citizen}))
	bad = bytes.Replace(bad, []byte("<memo:recipientID>"+citizen+"<"), []byte("<memo:recipientID>12<"), 1)
	_, big := letterXML(t, withDefaults(memo.Letter{To: citizen, Main: memo.PDF("stor.pdf", bytes.Repeat([]byte("%PDF"), 60_000))}))
	_, huge := letterXML(t, withDefaults(memo.Letter{To: citizen, Main: memo.PDF("stor.pdf", bytes.Repeat([]byte("%PDF"), 100_000))}))
	_, sms := letterXML(t, withDefaults(memo.Letter{To: smsPerson, Type: memo.TypeNemSMS, Notification: "Hej"}))
	php := func(memoXML []byte, choice string, fp []byte) []byte {
		return must(sf1601test.PHP(memoXML, choice, fp))
	}
	python := func(memoXML []byte, choice string) []byte { return must(sf1601test.Python(memoXML, choice)) }
	okPrint := sf1601test.ForsendelseI("x-1", exempt, "Fritaget Borger", "Eksempelvej", "1", "1234", memo.SamplePDF("Hej"))
	badPrint := bytes.Replace(okPrint, []byte("<AfsendelseIdentifikator>"), []byte("<AfsendelseId>"), 1)
	badPrint = bytes.Replace(badPrint, []byte("</AfsendelseIdentifikator>"), []byte("</AfsendelseId>"), 1)
	bigPrint := sf1601test.ForsendelseI("x-1", exempt, "Fritaget Borger", "Eksempelvej", "1", "1234", bytes.Repeat([]byte("%PDF"), 10_000))
	hdr := func(extra ...string) map[string]string {
		m := pythonHeaders(w.sender, uuid.NewString())
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	cases := []struct {
		name     string
		headers  map[string]string
		body     []byte
		streamed bool // no Content-Length: the Message goes through the spool
		status   int
		code     string // the first field error's code ("" for errors without fields)
		errCode  string // the error's code
	}{
		{"not XML", hdr(), []byte(`{"KombiValgKode":"Digital Post"}`), false, 400, memo.CodeNotWellFormed, "invalid"},
		{"DOCTYPE", hdr(), append([]byte(`<?xml version="1.0"?><!DOCTYPE kombi_request [<!ENTITY lol "lol">]>`), php(good, "Digital Post", nil)[22:]...), false, 400, memo.CodeDoctypeNotAllowed, "invalid"},
		{"Latin-1 declared", hdr(), []byte(`<?xml version="1.0" encoding="ISO-8859-1"?><kombi_request/>`), false, 400, memo.CodeEncodingNotSupported, "invalid"},
		{"wrong root", hdr(), []byte(`<kombi><KombiValgKode>NemSMS</KombiValgKode></kombi>`), false, 400, sf1601.CodeRootInvalid, "invalid"},
		{"a MeMo alone", hdr(), good, false, 400, sf1601.CodeRootInvalid, "invalid"},
		{"no Message", hdr(), []byte(`<kombi_request><KombiValgKode>NemSMS</KombiValgKode></kombi_request>`), false, 400, sf1601.CodeMessageMissing, "invalid"},
		{"two Messages", hdr(), bytes.Replace(php(good, "Digital Post", nil), []byte("</kombi_request>"), append(jmsMessage(t, good), "</kombi_request>"...), 1), false, 400, sf1601.CodeMessageDuplicate, "invalid"},
		{"no KombiValgKode", hdr(), bytes.Replace(python(good, "Digital Post"), []byte("<KombiValgKode>Digital Post</KombiValgKode>"), nil, 1), false, 400, sf1601.CodeChoiceMissing, "invalid"},
		{"unknown KombiValgKode", hdr(), python(good, "Brevdue"), false, 400, sf1601.CodeChoiceUnknown, "invalid"},
		// The choice must fit the MeMo: a letter sent by SMS would reach
		// no mailbox (it was accepted, and its documents went nowhere).
		{"a DIGITALPOST MeMo sent as NemSMS", hdr(), python(good, "NemSMS"), false, 400, "mode.message.type.mismatch", "invalid"},
		{"a NEMSMS MeMo sent as Fysisk Post", hdr(), python(sms, "Fysisk Post"), false, 400, "mode.message.type.mismatch", "invalid"},
		{"unexpected element", hdr(), bytes.Replace(python(good, "Digital Post"), []byte("</kombi_request>"), []byte("<Prioritet>D</Prioritet></kombi_request>"), 1), false, 400, sf1601.CodeElementUnexpected, "invalid"},
		{"fjernprint part not of the schema", hdr(), php(good, "Fysisk Post", badPrint), false, 400, "schema.element.unexpected", "invalid"},
		{"two fjernprint parts", hdr(), bytes.Replace(php(good, "Fysisk Post", okPrint), []byte("</kombi_request>"),
			[]byte(`<ForsendelseISamling xmlns="urn:oio:fjernprint:1.0.0">`+string(okPrint)+`</ForsendelseISamling></kombi_request>`), 1), false, 400, sf1601.CodePrintDuplicate, "invalid"},
		{"fjernprint part for another recipient", hdr(), php(good, "Fysisk Post", okPrint), false, 400, "kombi.fjernprint.recipient.mismatch", "invalid"},
		{"fjernprint part over -sf1601-max-print-size", hdr(), php(good, "Fysisk Post", bigPrint), false, 413, sf1601.CodePrintTooLarge, "too_large"},
		{"MeMo over -max-memo-size", hdr(), python(big, "Digital Post"), false, 413, memo.CodeTooLarge, "too_large"},
		{"MeMo over -max-memo-size, streamed", hdr(), python(big, "Digital Post"), true, 413, memo.CodeTooLarge, "too_large"},
		// Refused at its Content-Length, before a byte of the body is read:
		// by a client that asks first (Expect: 100-continue) and is never
		// sent the go-ahead, and by one that just sends, which is still
		// sending when the hub answers. The hub lingers over the rest of
		// that body (-linger-time, -linger-bytes), so the client reads
		// its 413 instead of losing it to the reset of a connection
		// closed under it.
		{"Content-Length over every bound together, asked first", hdr("Expect", "100-continue"), python(huge, "Digital Post"), false, 413, sf1601.CodeTooLarge, "too_large"},
		{"Content-Length over every bound together, just sent", hdr(), python(huge, "Digital Post"), false, 413, sf1601.CodeTooLarge, "too_large"},
		{"truncated, streamed", hdr(), python(good, "Digital Post")[:len(good)/2], true, 400, memo.CodeNotWellFormed, "invalid"},
		{"MeMo breaks a rule, streamed", hdr(), php(bad, "Digital Post", nil), true, 400, "cpr.number.format.not.allowed", "invalid"},
		{"MeMo breaks the schema", hdr(), php(bytes.Replace(good, []byte(">DIGITALPOST<"), []byte(">BREVDUE<"), 1), "Digital Post", nil), false, 400, memo.CodeSchemaValueInvalid, "invalid"},
		{"MeMo breaks a rule", hdr(), php(bad, "Digital Post", nil), false, 400, "cpr.number.format.not.allowed", "invalid"},
		{"wrong Content-Type", hdr("Content-Type", "application/json"), php(good, "Digital Post", nil), false, 400, "content.type.unsupported", "invalid"},
		{"X-TransaktionsId not a UUID", hdr("X-TransaktionsId", "tx-1"), php(good, "Digital Post", nil), false, 400, "request.transaction.id.invalid", "invalid"},
		{"no credentials", map[string]string{"Content-Type": "application/xml"}, php(good, "Digital Post", nil), false, 401, "", "unauthorized"},
		{"a receiver system's token", hdr("authorization", "Bearer "+receiverToken), php(good, "Digital Post", nil), false, 403, "", "forbidden"},
		{"another organisation's sender system", hdr("authorization", "Bearer "+w.senderB), php(good, "Digital Post", nil), false, 403, "sender.not.allowed", "forbidden"},
	}
	for _, c := range cases {
		r := h.call("POST", send, c.headers, c.body)
		if c.streamed {
			r = h.callStreamed("POST", send, c.headers, c.body)
		}
		code, fields := r.errorCode(t)
		if r.status != c.status || code != c.errCode || (c.code != "" && (len(fields) == 0 || fields[0] != c.code)) {
			t.Errorf("%s: %d %s; want %d %s %s", c.name, r.status, r.body, c.status, c.errCode, c.code)
		}
	}
	// A choice that does not fit the MeMo names the KombiValgKode.
	var e struct {
		FieldErrors []hub.FieldError `json:"fieldErrors"`
	}
	h.call("POST", send, hdr(), python(good, "NemSMS")).json(t, &e)
	if len(e.FieldErrors) != 1 || e.FieldErrors[0].Field != "/kombi_request/KombiValgKode" || e.FieldErrors[0].RejectedValue != "NemSMS" {
		t.Errorf("mode mismatch: %+v", e.FieldErrors)
	}
	// The MeMo's error points at its line in the kombi_request.
	r := h.call("POST", send, hdr(), php(bad, "Digital Post", nil))
	e.FieldErrors = nil
	r.json(t, &e)
	lines := strings.Split(string(php(bad, "Digital Post", nil)), "\n")
	if len(e.FieldErrors) == 0 || e.FieldErrors[0].Line < 1 || e.FieldErrors[0].Line > len(lines) ||
		!strings.Contains(lines[e.FieldErrors[0].Line-1], "recipientID") {
		t.Errorf("MeMo error %+v does not point at the recipientID line", e.FieldErrors)
	}

	store := h.openStore()
	ctx := context.Background()
	sys, err := store.SystemByToken(ctx, hub.HashToken(w.sender))
	if err != nil {
		t.Fatal(err)
	}
	if ms, _ := store.ListMessagesBySender(ctx, orgA, "", 10); len(ms) != 0 {
		t.Errorf("messages stored: %+v", ms)
	}
	if rs, _ := store.ListReceipts(ctx, sys.ID, "", 10); len(rs) != 0 {
		t.Errorf("receipts stored: %+v", rs)
	}
	for _, q := range []string{hub.MailboxQueue(citizen, ""), hub.MailboxQueue(exempt, ""), hub.MailboxQueue(smsPerson, ""), hub.PrintQueue, hub.SMSQueue} {
		if n, _ := store.CountQueue(ctx, q); n != 0 {
			t.Errorf("queue %s holds %d", q, n)
		}
	}
	if cs, _ := store.ReadCounters(ctx, hub.CounterQuery{Org: orgA, FromDay: "2000-01-01", ToDay: "2999-12-31"}); len(cs) != 0 {
		t.Errorf("counters: %+v", cs)
	}
	for _, d := range []string{"blobs", "spool"} {
		_ = filepath.WalkDir(filepath.Join(h.data, d), func(p string, de fs.DirEntry, err error) error {
			if err == nil && !de.IsDir() && de.Name() != ".lock" {
				t.Errorf("left behind: %s", p)
			}
			return nil
		})
	}
	var events []hub.Event
	_ = store.ScanEvents(ctx, 0, func(e hub.Event) error { events = append(events, e); return nil })
	pending, _ := store.PendingEvents(ctx, 100000)
	for _, e := range append(events, pending...) {
		if e.MessageUUID != "" && e.Tag != "MEMO_SEND_VALIDATION_FAILED" {
			t.Errorf("event %s %+v", e.Tag, e)
		}
	}
}

// jmsMessage is a MeMo as the PHP client embeds it.
func jmsMessage(t *testing.T, memoXML []byte) []byte {
	t.Helper()
	b := must(sf1601test.PHP(memoXML, "x", nil))
	start := bytes.Index(b, []byte("<memo:Message"))
	end := bytes.LastIndex(b, []byte("</kombi_request>"))
	return b[start:end]
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestSF1601PrintGoesToTheRenditionsAddress: a "Fysisk Post" letter whose
// fjernprint part names the recipient's address is printed there — it is
// the address on the paper — also when the contact register has none (it
// was refused, 400 recipient.address.unknown, and recorded as not
// delivered, so that the letter could never be sent under its UUID).
func TestSF1601PrintGoesToTheRenditionsAddress(t *testing.T) {
	h := startHub(t)
	w := h.setupWorld()
	id, alone := letterXML(t, withDefaults(memo.Letter{To: citizen, Label: "Brev på papir"}))
	fp := sf1601test.ForsendelseI("posthub-1", citizen, "Registreret Borger", "Eksempelvej", "1", "1234", memo.SamplePDF("Hej"))
	kombi, err := sf1601test.PHP(alone, "Fysisk Post", fp)
	if err != nil {
		t.Fatal(err)
	}
	h.mustStatus(h.call("POST", "/service/KombiPostAfsend_1/kombi", phpHeaders(w.sender, uuid.NewString()), kombi), 201)
	var item struct {
		Meta map[string]string `json:"meta"`
	}
	if err := json.Unmarshal(waitForFile(t, filepath.Join(h.data, "outbox", "print", id+".json")), &item); err != nil {
		t.Fatal(err)
	}
	if item.Meta["address"] != "Registreret Borger\nEksempelvej 1\n1234" || item.Meta["addressSource"] != "rendition" {
		t.Errorf("printed to %q (%s), want the rendition's address", item.Meta["address"], item.Meta["addressSource"])
	}
}
