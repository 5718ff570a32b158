package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/posthub/posthub/memo"
)

// Regression tests of tenancy holes found by review against a running
// `posthub serve`: what an organisation's own administrators can no longer
// reach in other organisations.

// TestOnlyTheOperatorRegistersViewingClients: a viewing client reads the
// mailbox of whoever its signed assertions name — any citizen, any
// organisation's post — so an organisation's administrator who could
// register one, and its key, could read every mailbox. Only the hub
// operator registers either; the organisation's own administrators are
// refused through the API and the portal, and nothing is stored or logged.
func TestOnlyTheOperatorRegistersViewingClients(t *testing.T) {
	h := startHub(t)
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/", map[string]any{"cvr": orgA, "name": "Kommune A", "kind": "AUTHORITY"}), 201)
	base := "/apis/v1/organisations/" + orgA
	admin := h.userWith("anne", orgA, "ORGANISATION_ADMINISTRATOR")
	manager := h.userWith("sune", orgA, "SYSTEM_MANAGER")

	for i, u := range []*session{admin, manager} {
		r := h.mustStatus(u.json("POST", base+"/systems/", map[string]any{"name": "Egen webpostkasse", "role": "VIEWER"}), 403)
		if code := fieldCode(t, r); code != "system.viewer.not.operator" {
			t.Fatalf("register a VIEWER: field code %q: %s", code, r.body)
		}
		// Sender and receiver systems remain theirs to register.
		h.mustStatus(u.json("POST", base+"/systems/", map[string]any{"name": fmt.Sprintf("Modtager %d", i), "role": "RECIPIENT"}), 201)
	}
	h.mustStatus(admin.form("/admin/orgs/"+orgA+"/systems", url.Values{"name": {"Portal-webpostkasse"}, "role": {"VIEWER"}}), 303)
	page := h.mustStatus(admin.get("/admin/orgs/"+orgA+"/systems"), 200)
	if strings.Contains(string(page.body), `value="VIEWER"`) {
		t.Error("the portal offers an organisation administrator the VIEWER role")
	}

	viewerID, _ := h.system(orgA, map[string]any{"name": "Webpostkasse", "role": "VIEWER"})
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	key := map[string]string{"kid": "k1", "publicKey": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}
	for _, u := range []*session{admin, manager} {
		h.mustStatus(u.json("POST", base+"/systems/"+viewerID+"/assertion-keys", key), 403)
	}
	var keys []struct{ Kid string }
	h.mustStatus(h.do("GET", base+"/systems/"+viewerID+"/assertion-keys", h.operator, "", nil), 200).list(t, &keys)
	if len(keys) != 0 {
		t.Fatalf("a refused key was stored: %+v", keys)
	}
	h.mustStatus(h.operatorJSON("POST", base+"/systems/"+viewerID+"/assertion-keys", key), 201)

	var systems []struct{ Name, Role string }
	h.mustStatus(h.do("GET", base+"/systems/", h.operator, "", nil), 200).list(t, &systems)
	viewers := 0
	for _, s := range systems {
		if s.Role == "VIEWER" {
			viewers++
			if s.Name != "Webpostkasse" {
				t.Errorf("a refused viewing client was registered: %q", s.Name)
			}
		}
	}
	if viewers != 1 {
		t.Fatalf("%d viewing clients, want the operator's one: %+v", viewers, systems)
	}
	for _, e := range allEvents(t, h.openStore()) {
		if e.Tag == "SYSTEM_CREATED" && e.Detail["role"] == "VIEWER" && e.Actor != "operator" {
			t.Errorf("a refused registration is in the log: %s by %s", e.Tag, e.Actor)
		}
	}
}

// TestWebMailboxProxiesOnlyTheLettersOwnResources: the web mailbox passes
// a letter's rendering, files and .ics on from the viewer API with the
// viewing client's credentials. An escaped "/" in a file's name once
// reached other API routes (the session, the viewing client's
// organisation's event log) through a path the API cleaned and redirected;
// now such a name is only ever a file name, and redirects are not followed.
func TestWebMailboxProxiesOnlyTheLettersOwnResources(t *testing.T) {
	h := startHub(t, "-web-mailbox", "-mailbox-demo-login")
	w := h.setupWorld()
	u, b := letterXML(t, memo.Letter{To: citizen, Label: "Brev med bilag",
		Attachments: []memo.Attachment{{Filename: "bilag.txt", Data: []byte("bilagets tekst")}}})
	h.mustStatus(h.send(w.sender, u, b, ""), 201)
	web := h.webLogin(citizen)
	get := func(path string) response {
		t.Helper()
		req, _ := http.NewRequest("GET", h.base+"/mailbox/box/"+citizen+"/messages/"+path, nil)
		resp, err := web.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return response{status: resp.StatusCode, body: body, header: resp.Header}
	}
	if r := get(u + "/render"); r.status != 200 {
		t.Fatalf("the letter's rendering: %d %.200s", r.status, r.body)
	}
	up := strings.Repeat("..%2F", 7)
	for _, p := range []string{
		u + "/documents/0/files/" + up + "session",
		"x/documents/0/files/" + up + "session",
		u + "/documents/0/files/" + up + "events%2F",
		u + "/documents/0/actions/" + up + "session%23/ics",
		u + "/documents/" + up + "session%23/files/x",
	} {
		r := get(p)
		if r.status == 200 || strings.Contains(string(r.body), `"principal"`) || strings.Contains(string(r.body), `"events"`) {
			t.Errorf("%s: %d %.300s", p, r.status, r.body)
		}
	}
}

// TestAdministratorsGrantOnlyTheirOwnOrganisationsUsers, end to end: an
// account one organisation creates (with a password it knows) cannot be
// given privileges by another organisation's administrator, and no
// administrator can grant another organisation's user anything (which
// once ended that user's sessions and told which ids exist).
func TestAdministratorsGrantOnlyTheirOwnOrganisationsUsers(t *testing.T) {
	h := startHub(t)
	for _, o := range []map[string]any{{"cvr": orgA, "name": "Kommune A", "kind": "AUTHORITY"}, {"cvr": orgB, "name": "Styrelse B", "kind": "AUTHORITY"}} {
		h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/", o), 201)
	}
	alice := h.userWith("alice", orgA, "ORGANISATION_ADMINISTRATOR")
	bob := h.userWith("bob", orgB, "ORGANISATION_ADMINISTRATOR")
	h.mustStatus(alice.json("POST", "/apis/v1/organisations/"+orgA+"/users/",
		map[string]any{"id": "carol@b-styrelse.dk", "name": "Carol", "password": "alice-knows-this-1"}), 201)

	unknown := fieldCode(t, h.mustStatus(bob.json("POST", "/apis/v1/organisations/"+orgB+"/privileges/",
		map[string]any{"userId": "nobody@b-styrelse.dk", "privilege": "SYSTEM_MANAGER"}), 400))
	r := h.mustStatus(bob.json("POST", "/apis/v1/organisations/"+orgB+"/privileges/",
		map[string]any{"userId": "carol@b-styrelse.dk", "privilege": "SYSTEM_MANAGER"}), 400)
	if code := fieldCode(t, r); code != unknown || code != "user.unknown" {
		t.Fatalf("granting another organisation's account: %q, want %q as for an unknown user", code, unknown)
	}
	carol := h.login("carol@b-styrelse.dk", "alice-knows-this-1")
	h.mustStatus(carol.get("/apis/v1/organisations/"+orgB+"/systems/"), 403)

	h.mustStatus(alice.json("POST", "/apis/v1/organisations/"+orgA+"/privileges/",
		map[string]any{"userId": "bob", "privilege": "STATISTICS_ADMINISTRATOR"}), 400)
	h.mustStatus(bob.get("/apis/v1/organisations/"+orgB+"/systems/"), 200) // its session lives on

	// The operator may still grant across organisations.
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/"+orgB+"/privileges/",
		map[string]any{"userId": "carol@b-styrelse.dk", "privilege": "STATISTICS_ADMINISTRATOR"}), 201)
}
