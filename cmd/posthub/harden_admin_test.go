package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/storage/bolt"
)

// Regression tests of issue 13's items 3, 7 and 12 against a running
// `posthub serve`: what one administrator may grant another, changes that
// are refused whole or recorded, the event log for auditors and log
// administrators, the default setup of an organisation, contact-point codes
// that route, and who may read /metrics.

// get is a GET with the session's cookie and extra headers (name, value…).
func (u *session) get(path string, hdr ...string) response {
	u.h.t.Helper()
	req, _ := http.NewRequest("GET", u.h.base+path, nil)
	req.AddCookie(u.cookie)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		u.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, body: b, header: resp.Header}
}

// form posts an admin-portal form as the session's user.
func (u *session) form(path string, v url.Values) response {
	u.h.t.Helper()
	v.Set("csrf", u.csrf)
	req, _ := http.NewRequest("POST", u.h.base+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(u.cookie)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		u.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, body: b, header: resp.Header}
}

// allEvents is every entry of a stopped hub's log, sealed or pending.
func allEvents(t *testing.T, store hub.Store) []hub.Event {
	t.Helper()
	ctx := context.Background()
	var all []hub.Event
	if err := store.ScanEvents(ctx, 0, func(e hub.Event) error { all = append(all, e); return nil }); err != nil {
		t.Fatal(err)
	}
	p, err := store.PendingEvents(ctx, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return append(all, p...)
}

func fieldCode(t *testing.T, r response) string {
	t.Helper()
	_, fields := r.errorCode(t)
	if len(fields) == 0 {
		return ""
	}
	return fields[0]
}

// TestGrantorGrantsOnlyWhatItHolds (item 3): an
// ORGANISATION_USER_ADMINISTRATOR cannot grant ORGANISATION_ADMINISTRATOR,
// create a user holding it, or revoke it from the real administrator —
// through the API or the portal — and can grant a privilege it holds.
func TestGrantorGrantsOnlyWhatItHolds(t *testing.T) {
	h := startHub(t)
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/", map[string]any{"cvr": orgA, "name": "Kommune A", "kind": "AUTHORITY"}), 201)
	base := "/apis/v1/organisations/" + orgA
	h.userWith("anne", orgA, "ORGANISATION_ADMINISTRATOR")
	h.userWith("bo", orgA, "STATISTICS_ADMINISTRATOR")
	ua := h.userWith("ulrik", orgA, "ORGANISATION_USER_ADMINISTRATOR")

	r := h.mustStatus(ua.json("POST", base+"/privileges/", map[string]any{"userId": "bo", "privilege": "ORGANISATION_ADMINISTRATOR"}), 403)
	if code := fieldCode(t, r); code != "privilege.grantor.lacks.permissions" {
		t.Fatalf("grant ORGANISATION_ADMINISTRATOR: field code %q: %s", code, r.body)
	}
	r = h.mustStatus(ua.json("POST", base+"/users/", map[string]any{"id": "mallory", "name": "Mallory", "password": "mallory-password-1",
		"privileges": []string{"ORGANISATION_ADMINISTRATOR"}}), 403)
	if code := fieldCode(t, r); code != "privilege.grantor.lacks.permissions" {
		t.Fatalf("create a user holding ORGANISATION_ADMINISTRATOR: field code %q: %s", code, r.body)
	}
	b, _ := json.Marshal(map[string]string{"userId": "mallory", "password": "mallory-password-1"})
	resp, err := http.Post(h.base+"/apis/v1/session", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("the refused user logs in: %d", resp.StatusCode)
	}
	r = h.mustStatus(ua.do("DELETE", base+"/privileges/anne/ORGANISATION_ADMINISTRATOR", "", nil), 403)
	if code := fieldCode(t, r); code != "privilege.grantor.lacks.permissions" {
		t.Fatalf("revoke the administrator: field code %q", code)
	}
	// Through the portal's form too: refused, nothing changes.
	h.mustStatus(ua.form("/admin/orgs/"+orgA+"/grants", url.Values{"userId": {"bo"}, "privilege": {"ORGANISATION_ADMINISTRATOR"}, "action": {"grant"}}), 303)
	h.mustStatus(ua.form("/admin/orgs/"+orgA+"/grants", url.Values{"userId": {"anne"}, "privilege": {"ORGANISATION_ADMINISTRATOR"}, "action": {"revoke"}}), 303)
	page := h.mustStatus(ua.get("/admin/orgs/"+orgA+"/users"), 200)
	if strings.Contains(string(page.body), `<option value="ORGANISATION_ADMINISTRATOR">`) ||
		!strings.Contains(string(page.body), `<option value="ORGANISATION_USER_ADMINISTRATOR">`) {
		t.Fatal("the portal offers the user administrator privileges it may not grant, or not the one it may")
	}

	// What it fully holds it grants, to an existing user and a new one.
	h.mustStatus(ua.json("POST", base+"/privileges/", map[string]any{"userId": "bo", "privilege": "ORGANISATION_USER_ADMINISTRATOR"}), 201)
	h.mustStatus(ua.json("POST", base+"/users/", map[string]any{"id": "ida", "name": "Ida", "password": "ida-password-123",
		"privileges": []string{"ORGANISATION_USER_ADMINISTRATOR"}}), 201)

	var grants []struct{ UserID, Privilege string }
	h.mustStatus(h.do("GET", base+"/privileges/", h.operator, "", nil), 200).list(t, &grants)
	held := map[string]bool{}
	for _, g := range grants {
		held[g.UserID+" "+g.Privilege] = true
	}
	for _, want := range []string{"anne ORGANISATION_ADMINISTRATOR", "bo ORGANISATION_USER_ADMINISTRATOR", "ida ORGANISATION_USER_ADMINISTRATOR"} {
		if !held[want] {
			t.Errorf("missing grant %s: %v", want, grants)
		}
	}
	for _, never := range []string{"bo ORGANISATION_ADMINISTRATOR", "mallory ORGANISATION_ADMINISTRATOR"} {
		if held[never] {
			t.Errorf("escalation: %s holds", never)
		}
	}
	for _, e := range allEvents(t, h.openStore()) {
		if strings.HasPrefix(e.Tag, "USER_LOGIN") {
			continue // logins, refused ones included, are logged by design
		}
		if e.Actor == "user:ulrik" && e.Detail["privilege"] == "ORGANISATION_ADMINISTRATOR" || e.Detail["userId"] == "mallory" {
			t.Errorf("a refused change is in the log: %s %v", e.Tag, e.Detail)
		}
	}
}

// TestOversizedNamesAreRefusedWhole (item 7): a 2,000-character name is
// refused with a field error and nothing is stored or logged; a valid
// change is stored and its event logged, at the bound itself too.
func TestOversizedNamesAreRefusedWhole(t *testing.T) {
	h := startHub(t)
	long := strings.Repeat("x", 2000)
	r := h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/", map[string]any{"cvr": orgB, "name": long, "kind": "AUTHORITY"}), 400)
	if code := fieldCode(t, r); code != "organisation.name.too.long" {
		t.Fatalf("organisation: field code %q", code)
	}
	h.mustStatus(h.do("GET", "/apis/v1/organisations/"+orgB, h.operator, "", nil), 404)

	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/", map[string]any{"cvr": orgA, "name": "Kommune A", "kind": "AUTHORITY"}), 201)
	base := "/apis/v1/organisations/" + orgA
	r = h.mustStatus(h.operatorJSON("POST", base+"/systems/", map[string]any{"name": long, "role": "RECIPIENT"}), 400)
	if code := fieldCode(t, r); code != "system.name.too.long" {
		t.Fatalf("system: field code %q", code)
	}
	var systems []hub.System
	h.mustStatus(h.do("GET", base+"/systems/", h.operator, "", nil), 200).list(t, &systems)
	if len(systems) != 0 {
		t.Fatalf("the refused system is stored: %+v", systems)
	}
	// Every other named thing is bounded the same way.
	for _, c := range []struct {
		path string
		body map[string]any
		code string
	}{
		{base + "/contact-groups/", map[string]any{"name": long}, "contact.group.name.too.long"},
		{base + "/users/", map[string]any{"id": "langt-navn", "name": long, "password": "a-password-123"}, "user.name.too.long"},
		{base + "/routing-rules/", map[string]any{"field": "KLE", "value": long, "systemId": "x"}, "routing.rule.value.too.long"},
	} {
		r := h.mustStatus(h.operatorJSON("POST", c.path, c.body), 400)
		if code := fieldCode(t, r); code != c.code {
			t.Errorf("%s: field code %q, want %s", c.path, code, c.code)
		}
	}

	// A name at the bound, of the widest characters, is stored and logged.
	atBound := strings.Repeat("𝔸", hub.MaxNameLen)
	id, _ := h.system(orgA, map[string]any{"name": atBound, "role": "RECIPIENT"})
	r = h.mustStatus(h.operatorJSON("PUT", base+"/systems/"+id, map[string]any{"name": atBound + "x"}), 400)
	if code := fieldCode(t, r); code != "system.name.too.long" {
		t.Fatalf("update: field code %q", code)
	}

	// A viewing client's assertion key is an administrative change too.
	viewerID, _ := h.system(orgA, map[string]any{"name": "Webpostkasse", "role": "VIEWER"})
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	h.mustStatus(h.operatorJSON("POST", base+"/systems/"+viewerID+"/assertion-keys",
		map[string]string{"kid": "k1", "publicKey": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}), 201)

	store := h.openStore()
	var created []hub.Event
	keyLogged := false
	for _, e := range allEvents(t, store) {
		keyLogged = keyLogged || e.Tag == "SYSTEM_CHANGED" && e.SystemID == viewerID && e.Detail["change"] == "assertionkey"
		for _, v := range e.Detail {
			if strings.Contains(v, long[:300]) {
				t.Errorf("an entry carries the refused name: %s", e.Tag)
			}
		}
		if e.Tag == "SYSTEM_CREATED" || e.Tag == "ORGANISATION_CREATED" {
			created = append(created, e)
		}
	}
	if len(created) != 3 || created[0].Tag != "ORGANISATION_CREATED" || created[0].Detail["name"] != "Kommune A" ||
		created[1].SystemID != id || created[1].Detail["name"] != atBound {
		t.Fatalf("creations logged: %+v", created)
	}
	if !keyLogged {
		t.Error("the assertion key is not in the log")
	}
	if _, err := store.GetOrg(context.Background(), orgB); hub.ErrorCode(err) != hub.NotFound {
		t.Fatalf("the refused organisation: %v", err)
	}
}

// TestEventLogForAuditorsAndLogAdministrators (item 12a): an AUDITOR reads
// and exports the whole log; an organisation's MESSAGE_LOG_ADMINISTRATOR
// reads and exports its own organisation's entries and no other's; holders
// of neither are refused.
func TestEventLogForAuditorsAndLogAdministrators(t *testing.T) {
	data := t.TempDir()
	env := &Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	// The global AUDITOR privilege is granted offline (the CLI).
	for _, args := range [][]string{
		{"admin", "bootstrap", "-data", data, "-password", "auditor-password-1", "revisor"},
		{"admin", "grant", "-data", data, "revisor", "AUDITOR", "*"},
		{"admin", "revoke", "-data", data, "revisor", "HUB_OPERATOR", "*"},
	} {
		if rc := Main(args, env); rc != 0 {
			t.Fatalf("%v: exit %d", args, rc)
		}
	}
	h := startHubIn(t, data, "http")
	w := h.setupWorld()
	aud := h.login("revisor", "auditor-password-1")
	mla := h.userWith("mette", orgA, "MESSAGE_LOG_ADMINISTRATOR")
	stats := h.userWith("stig", orgA, "STATISTICS_ADMINISTRATOR")

	var res struct {
		Events []struct {
			EventTag      string   `json:"eventTag"`
			Organisations []string `json:"organisations"`
		} `json:"events"`
	}
	// Wait for the sealer to seal B's creation, then read as the auditor.
	deadline := time.Now().Add(20 * time.Second)
	for {
		h.mustStatus(aud.get("/apis/v1/events/?size=1000&eventTag=ORGANISATION_CREATED"), 200).json(t, &res)
		if len(res.Events) >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	orgs := map[string]bool{}
	for _, e := range res.Events {
		for _, o := range e.Organisations {
			orgs[o] = true
		}
	}
	if !orgs[orgA] || !orgs[orgB] || !orgs[company] {
		t.Fatalf("the auditor sees organisations %v", orgs)
	}

	h.mustStatus(mla.get("/apis/v1/events/?size=1000"), 200).json(t, &res)
	tags := map[string]bool{}
	for _, e := range res.Events {
		tags[e.EventTag] = true
		if !slices.Contains(e.Organisations, orgA) {
			t.Fatalf("the log administrator of %s sees an entry of %v", orgA, e.Organisations)
		}
	}
	if !tags["ORGANISATION_CREATED"] || !tags["SYSTEM_CREATED"] {
		t.Fatalf("the log administrator sees %v", tags)
	}
	h.mustStatus(mla.get("/apis/v1/events/?organisation="+orgB), 403)
	h.mustStatus(mla.get("/apis/v1/events/", "X-Posthub-Organisation", orgB), 403)
	h.mustStatus(mla.get("/apis/v1/events/feed?wait=0s"), 200)
	h.mustStatus(stats.get("/apis/v1/events/"), 403)
	h.mustStatus(stats.get("/apis/v1/events/export"), 403)

	// Exports: the auditor's is the whole chain; the log administrator's
	// its organisation's entries; a system exports nothing.
	exported := func(s *session, query string) []hub.Event {
		t.Helper()
		r := h.mustStatus(s.get("/apis/v1/events/export"+query), 200)
		var out []hub.Event
		sc := bufio.NewScanner(bytes.NewReader(r.body))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e hub.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatal(err)
			}
			if eventlog.Hash(e) != e.Hash {
				t.Fatalf("exported entry %d does not verify", e.Seq)
			}
			out = append(out, e)
		}
		return out
	}
	all := exported(aud, "")
	for i := 1; i < len(all); i++ {
		if all[i].Seq != all[i-1].Seq+1 || all[i].PrevHash != all[i-1].Hash {
			t.Fatalf("the auditor's export is not the chain at seq %d", all[i].Seq)
		}
	}
	mine := exported(mla, "")
	if len(mine) == 0 || len(mine) >= len(all) {
		t.Fatalf("the log administrator exported %d of %d entries", len(mine), len(all))
	}
	for _, e := range mine {
		if !slices.Contains(e.Orgs, orgA) {
			t.Fatalf("the log administrator exported an entry of %v", e.Orgs)
		}
	}
	h.mustStatus(mla.get("/apis/v1/events/export?organisation="+orgB), 403)
	h.mustStatus(h.do("GET", "/apis/v1/events/export", w.sender, "", nil), 403)
	h.mustStatus(aud.get("/apis/v1/events/checkpoints"), 200)
	h.mustStatus(mla.get("/apis/v1/events/checkpoints"), 403)
}

// TestOrganisationSetupDefault (item 12b): an organisation created without
// a setup gets system retrieval, says so, and its receiver system gets its
// post; the OpenAPI document states the default.
func TestOrganisationSetupDefault(t *testing.T) {
	h := startHub(t)
	var o hub.Organisation
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/", map[string]any{"cvr": orgB, "name": "Styrelse B", "kind": "AUTHORITY"}), 201).json(t, &o)
	if o.Setup != hub.SetupSystemRetrieval {
		t.Fatalf("setup %q, want SYSTEM_RETRIEVAL", o.Setup)
	}
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/", map[string]any{"cvr": orgA, "name": "Kommune A", "kind": "AUTHORITY"}), 201)
	_, sender := h.system(orgA, map[string]any{"name": "A sender", "role": "SENDER"})
	recv, _ := h.system(orgB, map[string]any{"name": "B ESDH", "role": "RECIPIENT"})
	uuid, body := letterXML(t, memo.Letter{From: orgA, To: orgB})
	h.mustStatus(h.send(sender, uuid, body, ""), 201)

	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]map[string]any `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	h.mustStatus(h.do("GET", "/apis/v1/openapi.json", "", "", nil), 200).json(t, &doc)
	if d := doc.Components.Schemas["Organisation"].Properties["setup"]["default"]; d != "SYSTEM_RETRIEVAL" {
		t.Errorf("openapi.json: Organisation.setup default %v", d)
	}

	ds, err := h.openStore().DeliveriesOf(context.Background(), uuid)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].Queue != hub.SystemQueue(recv) {
		t.Fatalf("deliveries %+v, want one to the receiver system", ds)
	}
}

// TestDemoContactPointCodesRoute (item 12c): on the demo hub a letter with
// the KLE code of the demo's contact point (02.00) — or a subject under it
// — goes to that contact point's system; another KLE to the default. The
// data directory is seeded by the demo's own seedDemo (what -demo runs),
// without -demo's users, whose argon2 hashes take minutes under -race.
func TestDemoContactPointCodesRoute(t *testing.T) {
	data := t.TempDir()
	store, err := bolt.Open(filepath.Join(data, "posthub.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = seedDemo(context.Background(), store, &hub.Registry{Store: store}, &hub.ContactImporter{Store: store}, io.Discard, "", testOperatorToken)
	store.Close()
	if err != nil {
		t.Fatal(err)
	}
	h := startHubIn(t, data, "http")
	var systems []hub.System
	h.mustStatus(h.do("GET", "/apis/v1/organisations/"+demoAuthority+"/systems/", h.operator, "", nil), 200).list(t, &systems)
	ids := map[string]string{}
	for _, s := range systems {
		ids[s.Name] = s.ID
	}
	point, def := ids["Demo byggesag (receiver)"], ids["Demo ESDH (default receiver)"]
	var renewed struct {
		APIToken string `json:"apiToken"`
	}
	h.mustStatus(h.do("POST", "/apis/v1/organisations/"+demoAuthority+"/systems/"+ids["Demo sagssystem (sender)"]+"/renewapitoken",
		h.operator, "", nil), 200).json(t, &renewed)
	want := map[string]string{}
	for kle, sys := range map[string]string{"02.00": point, "02.00.05": point, "17.01.00": def, "02.01": def} {
		m := memo.NewLetter(withDefaults(memo.Letter{From: demoAuthority, To: demoAuthority, PostType: "MYNDIGHEDSPOST"}))
		m.MessageHeader.ContentData = &memo.ContentData{KLEdata: &memo.KLEdata{SubjectKey: kle, Version: "KL", Label: "Emne"}}
		var buf bytes.Buffer
		if _, err := m.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		h.mustStatus(h.send(renewed.APIToken, m.MessageHeader.MessageUUID, buf.Bytes(), ""), 201)
		want[m.MessageHeader.MessageUUID] = kle + " → " + sys
	}
	stopped := h.openStore()
	for uuid, w := range want {
		ds, err := stopped.DeliveriesOf(context.Background(), uuid)
		if err != nil {
			t.Fatal(err)
		}
		sys := w[strings.Index(w, "→ ")+len("→ "):]
		if len(ds) != 1 || ds[0].SystemID != sys {
			t.Errorf("KLE %s: deliveries %+v", w, ds)
		}
	}
}

// freeAddr is a loopback address nothing listens on (for a second
// listener whose port the test must know).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestMetricsAccess (item 12d): /metrics is not public. By default it is on
// the API for the operator; -metrics-token opens it to a scraper (and
// nothing else); -metrics-addr moves it to a listener of its own, open
// unless the token is set.
func TestMetricsAccess(t *testing.T) {
	scrape := func(h *testHub, url, token string) response {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return response{status: resp.StatusCode, body: b}
	}
	const metric = "posthub_http_requests_total"
	const scrapeToken = "ph_scrape-token-for-tests"
	t.Run("by default for the operator only", func(t *testing.T) {
		h := startHub(t)
		h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/", map[string]any{"cvr": orgA, "name": "Kommune A", "kind": "AUTHORITY"}), 201)
		_, sender := h.system(orgA, map[string]any{"name": "A sender", "role": "SENDER"})
		h.mustStatus(scrape(h, h.base+"/metrics", ""), 401)
		h.mustStatus(scrape(h, h.base+"/metrics", sender), 403)
		if r := h.mustStatus(scrape(h, h.base+"/metrics", h.operator), 200); !strings.Contains(string(r.body), metric) {
			t.Fatalf("no %s in %s", metric, r.body)
		}
	})
	t.Run("the metrics token opens /metrics and nothing else", func(t *testing.T) {
		h := startHub(t, "-metrics-token", scrapeToken)
		h.mustStatus(scrape(h, h.base+"/metrics", ""), 401)
		if r := h.mustStatus(scrape(h, h.base+"/metrics", scrapeToken), 200); !strings.Contains(string(r.body), metric) {
			t.Fatalf("no %s", metric)
		}
		h.mustStatus(scrape(h, h.base+"/metrics", h.operator), 200)
		h.mustStatus(scrape(h, h.base+"/apis/v1/organisations/", scrapeToken), 401)
	})
	t.Run("on a listener of its own", func(t *testing.T) {
		addr := freeAddr(t)
		h := startHub(t, "-metrics-addr", addr)
		h.mustStatus(scrape(h, h.base+"/metrics", h.operator), 404)
		if r := h.mustStatus(scrape(h, "http://"+addr+"/metrics", ""), 200); !strings.Contains(string(r.body), metric) {
			t.Fatalf("no %s", metric)
		}
	})
	t.Run("on a listener of its own, with the token", func(t *testing.T) {
		addr := freeAddr(t)
		h := startHub(t, "-metrics-addr", addr, "-metrics-token", scrapeToken)
		h.mustStatus(scrape(h, "http://"+addr+"/metrics", ""), 401)
		h.mustStatus(scrape(h, "http://"+addr+"/metrics", h.operator), 401)
		h.mustStatus(scrape(h, "http://"+addr+"/metrics", scrapeToken), 200)
	})
}
