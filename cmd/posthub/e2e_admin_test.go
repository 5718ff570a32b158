package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
)

// session is a logged-in human on a test hub.
type session struct {
	h      *testHub
	cookie *http.Cookie
	csrf   string
}

// userWith creates a user holding privileges in org (through the
// operator) and logs them in.
func (h *testHub) userWith(id, org string, privileges ...string) *session {
	h.t.Helper()
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/"+org+"/users/",
		map[string]any{"id": id, "name": id, "password": id + "-password-1", "privileges": privileges}), 201)
	return h.login(id, id+"-password-1")
}

// login logs an existing user in.
func (h *testHub) login(id, password string) *session {
	h.t.Helper()
	b, _ := json.Marshal(map[string]string{"userId": id, "password": password})
	resp, err := http.Post(h.base+"/apis/v1/session", "application/json", bytes.NewReader(b))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var s struct {
		CSRFToken string `json:"csrfToken"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != 200 {
		h.t.Fatalf("login %s: %d %v", id, resp.StatusCode, err)
	}
	u := &session{h: h, csrf: s.CSRFToken}
	for _, c := range resp.Cookies() {
		if c.Name == "posthub_session" {
			u.cookie = c
		}
	}
	return u
}

func (u *session) do(method, path, ctype string, body []byte) response {
	u.h.t.Helper()
	req, _ := http.NewRequest(method, u.h.base+path, bytes.NewReader(body))
	req.AddCookie(u.cookie)
	req.Header.Set("X-CSRF-Token", u.csrf)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		u.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return response{status: resp.StatusCode, body: buf.Bytes(), header: resp.Header}
}

func (u *session) json(method, path string, v any) response {
	b, _ := json.Marshal(v)
	return u.do(method, path, "application/json", b)
}

// TestRecallAdministrator: an organisation's recall administrator lists and
// recalls a held message of the organisation; another organisation's cannot
// even list them; the event log names the administrator.
func TestRecallAdministrator(t *testing.T) {
	h := startHub(t)
	w := h.setupWorld()
	uuid, body := letterXML(t, memo.Letter{To: citizen, DoNotDeliverUntil: time.Now().AddDate(0, 0, 5)})
	h.mustStatus(h.send(w.sender, uuid, body, ""), 201)
	ra := h.userWith("rita", orgA, "RECALL_ADMINISTRATOR")
	rb := h.userWith("bent", orgB, "RECALL_ADMINISTRATOR")
	var held []hub.Message
	h.mustStatus(ra.do("GET", "/apis/v1/organisations/"+orgA+"/messages/", "", nil), 200).list(t, &held)
	if len(held) != 1 || held[0].UUID != uuid {
		t.Fatalf("held messages: %+v", held)
	}
	h.mustStatus(rb.do("GET", "/apis/v1/organisations/"+orgA+"/messages/", "", nil), 403)
	h.mustStatus(rb.do("POST", "/apis/v1/organisations/"+orgA+"/messages/"+uuid+"/recall", "", nil), 403)
	// B's administrator in B's own organisation does not find A's letter.
	h.mustStatus(rb.do("POST", "/apis/v1/organisations/"+orgB+"/messages/"+uuid+"/recall", "", nil), 404)
	var m hub.Message
	h.mustStatus(ra.do("POST", "/apis/v1/organisations/"+orgA+"/messages/"+uuid+"/recall", "", nil), 200).json(t, &m)
	if m.State != hub.MessageRecalled {
		t.Fatalf("state %s", m.State)
	}
	store := h.openStore()
	if !hasEvent(t, store, "MESSAGE_RECALLED_BY_ADMINISTRATOR", "user:rita", orgA) {
		t.Fatal("no MESSAGE_RECALLED_BY_ADMINISTRATOR by user:rita")
	}
}

// hasEvent looks for an event (sealed or pending) with tag, actor and org.
func hasEvent(t *testing.T, store hub.Store, tag, actor, org string) bool {
	t.Helper()
	ctx := context.Background()
	var all []hub.Event
	_ = store.ScanEvents(ctx, 0, func(e hub.Event) error { all = append(all, e); return nil })
	p, _ := store.PendingEvents(ctx, 100000)
	for _, e := range append(all, p...) {
		if e.Tag == tag && e.Actor == actor && (org == "" || strings.Contains(strings.Join(e.Orgs, ","), org)) {
			return true
		}
	}
	return false
}

func selfSigned(t *testing.T) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ESDH FOCES"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestAdminAPIAsOrganisationRoles walks the admin API as the roles that
// own each part, checking results and that each change is logged with its
// actor: system manager (modify, certificate, rotate), contact
// administrator (groups, points, rules), statistics administrator (JSON,
// CSV), user administrator (grant, revoke).
func TestAdminAPIAsOrganisationRoles(t *testing.T) {
	h := startHub(t)
	w := h.setupWorld()
	base := "/apis/v1/organisations/" + orgA
	sm := h.userWith("sune", orgA, "SYSTEM_MANAGER")
	var sys hub.System
	h.mustStatus(sm.json("PUT", base+"/systems/"+w.ruleSys, map[string]any{"name": "A skole v2", "memoVersion": "1.1"}), 200).json(t, &sys)
	if sys.Name != "A skole v2" || sys.MemoVersion != "1.1" {
		t.Fatalf("modified system: %+v", sys)
	}
	h.mustStatus(sm.json("PUT", base+"/systems/"+w.ruleSys, map[string]any{"name": "stale", "version": 1}), 409)
	h.mustStatus(sm.do("POST", base+"/systems/"+w.ruleSys+"/certificate/", "application/x-pem-file", selfSigned(t)), 201).json(t, &sys)
	if len(sys.CertFingerprint) != 64 {
		t.Fatalf("fingerprint %q", sys.CertFingerprint)
	}
	h.mustStatus(sm.do("POST", base+"/systems/"+w.ruleSys+"/certificate/", "application/x-pem-file", []byte("not a cert")), 400)
	// Another organisation's system is not found through A's path.
	h.mustStatus(sm.json("PUT", base+"/systems/"+w.companySys, map[string]any{"name": "x"}), 404)

	ca := h.userWith("carl", orgA, "CONTACT_ADMINISTRATOR")
	var g hub.ContactGroup
	h.mustStatus(ca.json("POST", base+"/contact-groups/", map[string]any{"name": "Teknik og miljø"}), 201).json(t, &g)
	var cp hub.ContactPoint
	h.mustStatus(ca.json("POST", base+"/contact-points/", map[string]any{"name": "Miljø", "systemId": w.pointSys,
		"contactGroups": []string{g.ID}, "contactPointCodes": []map[string]string{{"type": "KLE", "code": "09.00"}}, "active": true}), 201).json(t, &cp)
	h.mustStatus(ca.json("POST", base+"/contact-points/", map[string]any{"name": "Fremmed", "systemId": w.companySys}), 400)
	h.mustStatus(ca.do("GET", base+"/contact-points/"+cp.ID, "", nil), 200)
	h.mustStatus(ca.do("DELETE", base+"/contact-points/"+cp.ID, "", nil), 204)
	h.mustStatus(ca.do("GET", base+"/contact-points/"+cp.ID, "", nil), 404)
	h.mustStatus(ca.json("PUT", base+"/systems/"+w.ruleSys, map[string]any{"name": "no"}), 403)

	// Three letters to A's authority post make statistics.
	for i := 0; i < 3; i++ {
		u, b := letterXML(t, memo.Letter{From: orgB, To: orgA, PostType: "MYNDIGHEDSPOST"})
		h.mustStatus(h.send(w.senderB, u, b, ""), 201)
	}
	st := h.userWith("stina", orgA, "STATISTICS_ADMINISTRATOR")
	var stats struct {
		TotalCount int64 `json:"totalCount"`
		Rows       []struct {
			Channel string `json:"channel"`
			Count   int64  `json:"count"`
		} `json:"rows"`
	}
	h.mustStatus(st.do("GET", base+"/statistics/?period=total&groupBy=channel,direction", "", nil), 200).json(t, &stats)
	if stats.TotalCount != 3 || len(stats.Rows) != 1 || stats.Rows[0].Channel != "SYSTEM" {
		t.Fatalf("statistics: %+v", stats)
	}
	csv := h.mustStatus(st.do("GET", base+"/statistics/?format=csv&groupBy=messageType", "", nil), 200)
	if !strings.HasPrefix(string(csv.body), "organisation,period,") || !strings.Contains(string(csv.body), orgA+",") {
		t.Fatalf("csv: %s", csv.body)
	}
	h.mustStatus(st.do("GET", "/apis/v1/organisations/"+orgB+"/statistics/", "", nil), 403)
	h.mustStatus(st.do("GET", base+"/statistics/?period=week", "", nil), 400)

	// A user administrator grants and revokes what it holds itself (its
	// own privilege), not the event log it cannot read.
	ua := h.userWith("ulla", orgA, "ORGANISATION_USER_ADMINISTRATOR")
	h.mustStatus(ua.json("POST", base+"/privileges/", map[string]any{"userId": "stina", "privilege": "MESSAGE_LOG_ADMINISTRATOR"}), 403)
	h.mustStatus(ua.json("POST", base+"/privileges/", map[string]any{"userId": "stina", "privilege": "ORGANISATION_USER_ADMINISTRATOR"}), 201)
	var grants []map[string]string
	h.mustStatus(ua.do("GET", base+"/privileges/", "", nil), 200).list(t, &grants)
	if len(grants) != 5 {
		t.Fatalf("grants in A: %v", grants)
	}
	h.mustStatus(ua.do("DELETE", base+"/privileges/stina/ORGANISATION_USER_ADMINISTRATOR", "", nil), 204)
	h.mustStatus(ua.do("DELETE", base+"/privileges/stina/ORGANISATION_USER_ADMINISTRATOR", "", nil), 404)

	store := h.openStore()
	for _, c := range []struct{ tag, actor string }{
		{"SYSTEM_CHANGED", "user:sune"}, {"CONTACT_GROUP_CHANGED", "user:carl"}, {"CONTACT_POINT_CHANGED", "user:carl"},
		{"STATISTICS_READ", "user:stina"}, {"PRIVILEGES_GRANTED", "user:ulla"}, {"PRIVILEGES_REVOKED", "user:ulla"},
		{"IDENTITY_CREATED", "operator"},
	} {
		if !hasEvent(t, store, c.tag, c.actor, orgA) {
			t.Errorf("no %s by %s in A's log", c.tag, c.actor)
		}
	}
}
