package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
)

// Two administrators at once must not break the receiver rules: at most
// four authority-post systems, exactly one default, one CVR-post system
// (issue 13, item 11). And an organisation that receives in its mailbox
// only refuses a receiver system it would never deliver to (item 12).

// rulesClient talks to one or more `posthub serve` instances as the hub
// operator; call i goes to instance i modulo their number.
type rulesClient struct {
	t        *testing.T
	bases    []string
	operator string
}

type rulesAnswer struct {
	status int
	body   []byte
}

func (c rulesClient) call(i int, method, path string, body any) rulesAnswer {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.bases[i%len(c.bases)]+path, rd)
	if err != nil {
		c.t.Error(err)
		return rulesAnswer{}
	}
	req.Header.Set("Authorization", "Basic "+c.operator)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Error(err)
		return rulesAnswer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rulesAnswer{status: resp.StatusCode, body: b}
}

func (c rulesClient) must(a rulesAnswer, status int, what string) rulesAnswer {
	c.t.Helper()
	if a.status != status {
		c.t.Fatalf("%s: status %d, want %d: %s", what, a.status, status, a.body)
	}
	return a
}

// outcome is "201" or "409 <code>/<field code>" (or the status and body
// of anything else).
func (a rulesAnswer) outcome() string {
	if a.status == http.StatusCreated || a.status == http.StatusOK {
		return fmt.Sprint(a.status)
	}
	var e struct {
		Code        string `json:"code"`
		FieldErrors []struct {
			Code string `json:"code"`
		} `json:"fieldErrors"`
	}
	if json.Unmarshal(a.body, &e) != nil || len(e.FieldErrors) == 0 {
		return fmt.Sprintf("%d %s", a.status, a.body)
	}
	return fmt.Sprintf("%d %s/%s", a.status, e.Code, e.FieldErrors[0].Code)
}

// atOnce runs fn(i) for i < n at the same instant and counts the outcomes.
func atOnce(n int, fn func(i int) string) map[string]int {
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			o := fn(i)
			mu.Lock()
			got[o]++
			mu.Unlock()
		}(i)
	}
	close(start)
	wg.Wait()
	return got
}

// receiversOf reads an organisation's receiver systems through the API and
// checks the rules: at most four active authority-post systems, exactly one
// default among them (none without them), at most one CVR-post system.
func (c rulesClient) receiversOf(org string) (auth, cvr int) {
	c.t.Helper()
	var ss []hub.System
	contentOf(c.t, c.must(c.call(0, "GET", "/apis/v1/organisations/"+org+"/systems/", nil), 200, "list systems").body, &ss)
	defaults := 0
	for _, s := range ss {
		if s.Default {
			defaults++
			if !s.Active || s.Mailbox != hub.AuthorityPost {
				c.t.Fatalf("the default is not an active authority-post system: %+v", s)
			}
		}
		if s.Role != hub.RecipientSystem || !s.Active {
			continue
		}
		if s.Mailbox == hub.CVRPost {
			cvr++
		} else {
			auth++
		}
	}
	if auth > hub.MaxAuthorityPostSystems || cvr > 1 || (auth > 0) != (defaults == 1) || defaults > 1 {
		c.t.Fatalf("organisation %s ends with %d authority-post systems, %d defaults, %d CVR-post systems", org, auth, defaults, cvr)
	}
	return auth, cvr
}

// checkConcurrentRegistrations fires 8 authority-post and 4 CVR-post
// registrations at once, then 16 makedefaultrecipient calls at once, for a
// few fresh organisations, spreading the calls over c's instances.
func checkConcurrentRegistrations(t *testing.T, c rulesClient) {
	for round := 0; round < 3; round++ {
		org := fmt.Sprintf("%08d", 51000000+round)
		c.must(c.call(round, "POST", "/apis/v1/organisations/", map[string]any{"cvr": org, "name": "Kommune", "kind": "AUTHORITY", "setup": "SYSTEM_RETRIEVAL"}), 201, "create organisation")
		var mu sync.Mutex
		var ids []string
		got := atOnce(12, func(i int) string {
			spec := map[string]any{"name": fmt.Sprint("system ", i), "role": "RECIPIENT", "mailbox": "AUTHORITY_POST"}
			if i%3 == 2 {
				spec["mailbox"] = "CVR_POST"
			}
			a := c.call(i, "POST", "/apis/v1/organisations/"+org+"/systems/", spec)
			if a.status == http.StatusCreated {
				var st struct {
					System hub.System `json:"system"`
				}
				_ = json.Unmarshal(a.body, &st)
				if st.System.Mailbox == hub.AuthorityPost {
					mu.Lock()
					ids = append(ids, st.System.ID)
					mu.Unlock()
				}
			}
			return spec["mailbox"].(string) + " " + a.outcome()
		})
		want := map[string]int{
			"AUTHORITY_POST 201": 4, "AUTHORITY_POST 409 conflict/system.limit.authority.post": 4,
			"CVR_POST 201": 1, "CVR_POST 409 conflict/system.limit.cvr.post": 3,
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d: 8 authority-post and 4 CVR-post registrations at once answered %v, want %v", round, got, want)
		}
		if auth, cvr := c.receiversOf(org); auth != 4 || cvr != 1 {
			t.Fatalf("round %d: %d authority-post and %d CVR-post systems stored, 4 and 1 answered 201", round, auth, cvr)
		}
		got = atOnce(16, func(i int) string {
			return c.call(i, "POST", "/apis/v1/organisations/"+org+"/systems/"+ids[i%len(ids)]+"/makedefaultrecipient", nil).outcome()
		})
		if got["200"] != 16 {
			t.Fatalf("round %d: 16 makedefaultrecipient calls answered %v", round, got)
		}
		c.receiversOf(org)
	}
}

func TestConcurrentReceiverRegistrationsKeepTheRules(t *testing.T) {
	h := startHub(t)
	checkConcurrentRegistrations(t, rulesClient{t: t, bases: []string{h.base}, operator: h.operator})
}

// Two hub instances sharing one MongoDB database (FerretDB) take the
// registrations at the same instant.
func TestConcurrentReceiverRegistrationsOnTwoInstancesKeepTheRules(t *testing.T) {
	uri, db := testservers.FerretDB(t), testservers.DatabaseName(t)
	const operator = "ph_rules-operator"
	var bases []string
	for i := 0; i < 2; i++ {
		p := startHubProcess(t, "-data", t.TempDir(), "-metadata", "mongo", "-mongo-uri", uri, "-mongo-db", db, "-operator-token", operator)
		bases = append(bases, p.base)
	}
	checkConcurrentRegistrations(t, rulesClient{t: t, bases: bases, operator: operator})
}

func TestMailboxOnlyOrganisationRefusesReceiverSystems(t *testing.T) {
	h := startHub(t)
	c := rulesClient{t: t, bases: []string{h.base}, operator: h.operator}
	const org = "52000000"
	c.must(c.call(0, "POST", "/apis/v1/organisations/", map[string]any{"cvr": org, "name": "Lille Myndighed", "kind": "AUTHORITY", "setup": "MAILBOX_ONLY"}), 201, "create organisation")
	a := c.call(0, "POST", "/apis/v1/organisations/"+org+"/systems/", map[string]any{"name": "ESDH", "role": "RECIPIENT"})
	if a.outcome() != "409 conflict/organisation.setup.mailbox.only" {
		t.Fatalf("registering a receiver system of a MAILBOX_ONLY organisation: %s", a.outcome())
	}
	var e struct {
		Message     string `json:"message"`
		FieldErrors []struct {
			Field         string `json:"field"`
			RejectedValue string `json:"rejectedValue"`
		} `json:"fieldErrors"`
	}
	_ = json.Unmarshal(a.body, &e)
	if !strings.Contains(e.Message, "SYSTEM_RETRIEVAL") || e.FieldErrors[0].Field != "setup" || e.FieldErrors[0].RejectedValue != "MAILBOX_ONLY" {
		t.Fatalf("the refusal does not say how to change the setup: %s", a.body)
	}
	c.must(c.call(0, "POST", "/apis/v1/organisations/"+org+"/systems/", map[string]any{"name": "Afsender", "role": "SENDER"}), 201, "a sender system")
	var ss []hub.System
	contentOf(t, c.must(c.call(0, "GET", "/apis/v1/organisations/"+org+"/systems/", nil), 200, "list systems").body, &ss)
	if len(ss) != 1 || ss[0].Role != hub.SenderSystem {
		t.Fatalf("systems stored: %+v", ss)
	}
	// What the refusal says to do works.
	if !strings.Contains(e.Message, "PUT /apis/v1/organisations/"+org) {
		t.Fatalf("the refusal names no way to change the setup: %s", e.Message)
	}
	if a := c.call(0, "PUT", "/apis/v1/organisations/"+org, map[string]any{"setup": "NONSENSE"}); a.outcome() != "400 invalid/organisation.setup.invalid" {
		t.Fatalf("an unknown setup: %s", a.outcome())
	}
	var o hub.Organisation
	_ = json.Unmarshal(c.must(c.call(0, "PUT", "/apis/v1/organisations/"+org, map[string]any{"setup": "SYSTEM_RETRIEVAL"}), 200, "change the setup").body, &o)
	if o.Setup != hub.SetupSystemRetrieval {
		t.Fatalf("after the change: %+v", o)
	}
	if a := c.call(0, "PUT", "/apis/v1/organisations/"+org, map[string]any{"setup": "CONTACTABLE", "version": o.Version - 1}); a.outcome() != "409 conflict" && a.status != http.StatusConflict {
		t.Fatalf("a change on a stale version: %s", a.outcome())
	}
	c.must(c.call(0, "POST", "/apis/v1/organisations/"+org+"/systems/", map[string]any{"name": "ESDH", "role": "RECIPIENT"}), 201, "a receiver system once the setup allows it")
}

// A contact-point code names one contact point of an organisation: 16
// administrators creating points with the same KLE code at once get one
// point.
func TestConcurrentContactPointsWithOneCodeKeepItUnique(t *testing.T) {
	h := startHub(t)
	c := rulesClient{t: t, bases: []string{h.base}, operator: h.operator}
	const org = "53000000"
	c.must(c.call(0, "POST", "/apis/v1/organisations/", map[string]any{"cvr": org, "name": "Kommune", "kind": "AUTHORITY", "setup": "CONTACTABLE"}), 201, "create organisation")
	var st struct {
		System hub.System `json:"system"`
	}
	if err := json.Unmarshal(c.must(c.call(0, "POST", "/apis/v1/organisations/"+org+"/systems/", map[string]any{"name": "ESDH", "role": "RECIPIENT"}), 201, "register").body, &st); err != nil {
		t.Fatal(err)
	}
	got := atOnce(16, func(i int) string {
		return c.call(i, "POST", "/apis/v1/organisations/"+org+"/contact-points/", map[string]any{"name": fmt.Sprint("point ", i), "systemId": st.System.ID,
			"active": true, "visible": true, "contactPointCodes": []map[string]string{{"type": "KLE", "code": "02.00"}}}).outcome()
	})
	if want := map[string]int{"201": 1, "409 conflict/contact.point.code.taken": 15}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("16 contact points with one code at once answered %v, want %v", got, want)
	}
	var ps []hub.ContactPoint
	contentOf(t, c.must(c.call(0, "GET", "/apis/v1/organisations/"+org+"/contact-points/", nil), 200, "list").body, &ps)
	if len(ps) != 1 {
		t.Fatalf("%d contact points stored", len(ps))
	}
}

// What one organisation registers is bounded (hub.OrgLimit), checked in
// the write: 16 routing rules at once with three places left store three,
// and the others get 409 with the bound's code; a deleted rule frees its
// place. The systems' bound counts receiver and sender systems alike.
func TestOrganisationBoundsAnswer409(t *testing.T) {
	for _, l := range []*hub.OrgLimit{&hub.RulesLimit, &hub.SystemsLimit} {
		old := l.Max
		t.Cleanup(func() { l.Max = old })
	}
	hub.RulesLimit.Max, hub.SystemsLimit.Max = 3, 2
	h := startHub(t)
	c := rulesClient{t: t, bases: []string{h.base}, operator: h.operator}
	const org = "54000000"
	base := "/apis/v1/organisations/" + org
	c.must(c.call(0, "POST", "/apis/v1/organisations/", map[string]any{"cvr": org, "name": "Kommune", "kind": "AUTHORITY", "setup": "SYSTEM_RETRIEVAL"}), 201, "create organisation")
	var st struct {
		System hub.System `json:"system"`
	}
	if err := json.Unmarshal(c.must(c.call(0, "POST", base+"/systems/", map[string]any{"name": "ESDH", "role": "RECIPIENT"}), 201, "register").body, &st); err != nil {
		t.Fatal(err)
	}
	c.must(c.call(0, "POST", base+"/systems/", map[string]any{"name": "Afsender", "role": "SENDER"}), 201, "a second system")
	a := c.call(0, "POST", base+"/systems/", map[string]any{"name": "Tredje", "role": "SENDER"})
	if a.outcome() != "409 conflict/system.limit.organisation" || !strings.Contains(string(a.body), "2 systems") {
		t.Fatalf("a system beyond the bound: %s %s", a.outcome(), a.body)
	}

	got := atOnce(16, func(i int) string {
		return c.call(i, "POST", base+"/routing-rules/", map[string]any{"field": "KLE", "value": fmt.Sprint("0", i, ".*"), "systemId": st.System.ID, "priority": i}).outcome()
	})
	if want := map[string]int{"201": 3, "409 conflict/routing.rule.limit": 13}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("16 routing rules at once with 3 places answered %v, want %v", got, want)
	}
	var rs []hub.RoutingRule
	contentOf(t, c.must(c.call(0, "GET", base+"/routing-rules/", nil), 200, "list").body, &rs)
	if len(rs) != 3 {
		t.Fatalf("%d routing rules stored, want 3", len(rs))
	}
	c.must(c.call(0, "DELETE", base+"/routing-rules/"+rs[0].ID, nil), 204, "delete a rule")
	c.must(c.call(0, "POST", base+"/routing-rules/", map[string]any{"field": "FORM", "value": "x", "systemId": st.System.ID}), 201, "a rule in the freed place")
}
