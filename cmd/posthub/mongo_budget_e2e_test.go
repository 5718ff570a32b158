package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/roundtrip"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/viewer"
)

// commandsTableEnv names a file the budget tests append their rows of
// `make bench`'s "commands per operation" table to (scripts/bench-commands.sh
// sets it); it also turns on the idle measurement, which takes 10 s.
const commandsTableEnv = "POSTHUB_COMMANDS_TABLE"

// tableRow appends one row (operation, counts) to the commands table file.
func tableRow(t *testing.T, op string, c roundtrip.Counts, per int) {
	t.Helper()
	path := os.Getenv(commandsTableEnv)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	div := func(n int) string {
		if per <= 1 {
			return fmt.Sprint(n)
		}
		return fmt.Sprintf("%.1f", float64(n)/float64(per))
	}
	fmt.Fprintf(f, "%s\t%s\t%s\t%s\t%s\t%s\n", op, div(c.Serial), div(c.Total), div(c.Writes), div(c.SerialWrites), strings.Join(c.Trace, " "))
}

// TestMongoCommandBudget counts, with mongo-driver's command monitor, the
// MongoDB commands a real `posthub serve -metadata mongo` (in-process, on
// FerretDB) sends for one API request, by request id: an accepted letter,
// a drained message (GET /memos/next, then DELETE /memos/{id}) and a page
// of a citizen's mailbox, each after a first request of the same kind has
// warmed the caches (so what is counted is the steady state a loaded hub
// sees). It fails when a path goes over its budget: on a replica set a
// request costs its serial round trips, and these budgets are what makes
// 1,000 letters/s per instance possible (storage/mongo's package doc).
func TestMongoCommandBudget(t *testing.T) {
	uri := testservers.FerretDB(t)
	// Commands of work a request left running once answered (the
	// notification hook) are filed apart: they add to its commands, not to
	// its critical path.
	byRequest := func(ctx context.Context) string {
		if id := api.RequestID(ctx); id != "" && hub.IsAfterAnswer(ctx) {
			return id + " (after answer)"
		}
		return api.RequestID(ctx)
	}
	rec := roundtrip.NewRecorder(byRequest, roundtrip.Dilate)
	h := startMongoHub(t, rec, uri, testservers.DatabaseName(t))

	// A sender organisation, an authority with a default receiver system,
	// a citizen with a phone number (so a letter to them is also a
	// notification), and a viewing client with an assertion key.
	w := setupReceivers(t, h.base, h.operator)
	recv := w.systems[0]
	csv := "id,digitalPost,nemSms,phone,address\n" + smsPerson + ",REGISTERED,true,+4512345678,\n"
	h.mustStatus(h.do("POST", "/apis/v1/contacts/import", h.operator, "text/csv", strings.NewReader(csv)), 200)
	viewerID, viewerToken := h.system(rwAuthority, map[string]any{"name": "Visningsklient", "role": "VIEWER"})
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/"+rwAuthority+"/systems/"+viewerID+"/assertion-keys",
		map[string]string{"kid": "k1", "publicKey": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}), 201)
	assertion := func() string {
		tok, err := viewer.SignAssertion(key, "k1", viewerID, "posthub", viewer.Person{CPR: smsPerson}, time.Now(), 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	// call sends one request under request id id and returns its counts
	// (after any work it left running, such as the notification hook).
	call := func(id, method, path, token string, hdr map[string]string, body []byte, want int) (response, roundtrip.Counts) {
		t.Helper()
		req, _ := http.NewRequest(method, h.base+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Basic "+token)
		req.Header.Set("X-Request-Id", id)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		after := id + " (after answer)"
		rec.Settle(after, 300*time.Millisecond, 10*time.Second)
		return response{status: resp.StatusCode, body: b, header: resp.Header}, rec.Take(id).After(rec.Take(after))
	}
	xml := map[string]string{"Content-Type": "application/xml"}
	citizenLetter := func(label string) (string, []byte) {
		m := memo.NewLetter(memo.Letter{From: rwSender, To: smsPerson, Label: label, Main: memo.PDF("a.pdf", []byte("%PDF-1.4 tiny"))})
		var b bytes.Buffer
		if _, err := m.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		return m.MessageHeader.MessageUUID, b.Bytes()
	}
	send := func(id string, uuid string, body []byte) roundtrip.Counts {
		_, c := call(id, "POST", "/apis/v1/memos/?memo-message-uuid="+uuid, w.sender, xml, body, 201)
		return c
	}

	type budget struct {
		name                string
		serial, serialWrite int
		got                 roundtrip.Counts
	}
	var checks []budget

	// Accept: a letter to a citizen (routing reads the contact register)
	// and one to an authority's receiver system (routing reads the
	// organisation, its systems and rules).
	for i := 0; i < 4; i++ { // warm-up; also fills the mailbox the viewer lists
		uuid, body := citizenLetter(fmt.Sprintf("Brev %d", i))
		send(fmt.Sprintf("warm-citizen-%d", i), uuid, body)
	}
	uuid, body := citizenLetter("Målt brev")
	c := send("accept-citizen", uuid, body)
	t.Logf("accept (citizen): %s", c)
	tableRow(t, "accept (letter to a citizen)", c, 1)
	checks = append(checks, budget{"accept (citizen)", 5, 3, c})

	uuid, body = w.designatedLetter(0)
	send("warm-system", uuid, body)
	uuid, body = w.designatedLetter(0)
	c = send("accept-system", uuid, body)
	t.Logf("accept (receiver system): %s", c)
	tableRow(t, "accept (letter to a receiver system)", c, 1)
	checks = append(checks, budget{"accept (receiver system)", 5, 3, c})

	// Drain: the receiver system fetches the next message and acknowledges
	// it, twice (the first cycle warms the caches and records the system's
	// last fetch, which happens once a minute).
	var drain roundtrip.Counts
	for i, id := range []string{"warm", "drain"} {
		r, fetch := call(id+"-fetch", "GET", "/apis/v1/memos/next", w.tokens[recv], nil, nil, 200)
		got := r.header.Get(api.HeaderMessageUUID)
		_, ack := call(id+"-ack", "DELETE", "/apis/v1/memos/"+got, w.tokens[recv], nil, nil, 204)
		if i == 1 {
			t.Logf("drain: fetch %s", fetch)
			t.Logf("drain: ack %s", ack)
			drain = fetch.Add(ack)
			tableRow(t, "drain cycle: fetch (GET /memos/next)", fetch, 1)
			tableRow(t, "drain cycle: ack (DELETE /memos/{id})", ack, 1)
			tableRow(t, "drain cycle (fetch + ack)", drain, 1)
		}
	}
	checks = append(checks, budget{"drain cycle (fetch + ack)", 6, 6, drain})

	// A page of the citizen's mailbox (five letters from one sender).
	box := "/apis/v1/mailboxes/" + smsPerson + "/messages/"
	call("warm-page", "GET", box, viewerToken, map[string]string{api.AssertionHeader: assertion()}, nil, 200)
	r, page := call("viewer-page", "GET", box, viewerToken, map[string]string{api.AssertionHeader: assertion()}, nil, 200)
	if n := strings.Count(string(r.body), `"messageUUID"`); n != 5 {
		t.Fatalf("the mailbox page lists %d letters, want 5: %s", n, r.body)
	}
	t.Logf("viewer page (5 letters): %s", page)
	tableRow(t, "viewer mailbox page (5 letters)", page, 1)
	checks = append(checks, budget{"viewer mailbox page", 2, 2, page})

	if os.Getenv(commandsTableEnv) != "" {
		// What an idle instance sends: everything but requests, over 10 s.
		time.Sleep(2 * time.Second)
		rec.Take("")
		time.Sleep(10 * time.Second)
		idle := rec.Take("")
		t.Logf("idle, 10 s: %s", idle)
		idle.Trace = nil
		tableRow(t, "idle instance, per second", idle, 10)
	}

	for _, b := range checks {
		if b.got.Serial > b.serial || b.got.SerialWrites > b.serialWrite {
			t.Errorf("%s: %d serial commands (%d of them writes), budget %d (%d): %s",
				b.name, b.got.Serial, b.got.SerialWrites, b.serial, b.serialWrite, b.got)
		}
	}
}

// startMongoHub runs `posthub serve -metadata mongo` in-process on the
// FerretDB at uri, its MongoDB commands observed by rec.
func startMongoHub(t *testing.T, rec *roundtrip.Recorder, uri, db string) *testHub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &testHub{t: t, data: t.TempDir(), operator: testOperatorToken, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan string, 1)
	args := []string{"-addr", "127.0.0.1:0", "-data", h.data, "-operator-token", testOperatorToken, "-log-level", "warn",
		"-metadata", "mongo", "-mongo-uri", uri, "-mongo-db", db, "-auth-cache-ttl", "1m"}
	env := &Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" },
		mongoMonitor: rec.Monitor()}
	go func() { h.done <- serve(ctx, env, args, func(a string) { ready <- a }) }()
	select {
	case a := <-ready:
		h.base = "http://" + a
	case err := <-h.done:
		t.Fatalf("serve: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not start")
	}
	t.Cleanup(h.stop)
	return h
}
