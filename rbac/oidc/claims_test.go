package oidc

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coreos/go-oidc/v3/oidc/oidctest"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
)

// claimsOP is a hostileOP whose token endpoint issues a valid, signed ID
// token carrying the claims a test chooses, and an RP of it with users,
// privileges and an event log the test reads.
type claimsOP struct {
	*hostileOP
	events *eventList
	pol    *recordingPolicies
	users  *countingUsers

	mu     sync.Mutex
	claims map[string]any
	nonce  string
}

// recordingPolicies is fakePolicies counting the writes it was asked for.
type recordingPolicies struct {
	fakePolicies
	writes int
}

func (r *recordingPolicies) Grant(ctx context.Context, g rbac.Grant) error {
	r.mu.Lock()
	r.writes++
	r.mu.Unlock()
	return r.fakePolicies.Grant(ctx, g)
}

func (r *recordingPolicies) Revoke(ctx context.Context, g rbac.Grant) error {
	r.mu.Lock()
	r.writes++
	r.mu.Unlock()
	return r.fakePolicies.Revoke(ctx, g)
}

// countingUsers is fakeUsers counting the look-ups.
type countingUsers struct {
	fakeUsers
	mu    sync.Mutex
	reads int
}

func (c *countingUsers) GetUser(ctx context.Context, id string) (hub.User, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.fakeUsers.GetUser(ctx, id)
}

// long64 is a user id of exactly rbac.ValidUserID's bound,
// rbac.MaxUserIDLen (64) bytes: a user claim one byte longer must not be
// cut into it.
var long64 = strings.Repeat("a", rbac.MaxUserIDLen)

func newClaimsOP(t *testing.T, cfg ProviderConfig) *claimsOP {
	t.Helper()
	op := &claimsOP{hostileOP: newHostileOP(t), events: &eventList{},
		pol: &recordingPolicies{fakePolicies: fakePolicies{grants: []rbac.Grant{{User: "anne", Role: rbac.RecallAdmin, Domain: orgA}}}},
		users: &countingUsers{fakeUsers: fakeUsers{"anne": {ID: "anne", Active: true}, "karen": {ID: "karen", Active: true},
			long64: {ID: long64, Active: true}}}}
	op.mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		op.mu.Lock()
		m := map[string]any{"iss": op.issuer, "aud": "posthub", "sub": "s-1", "nonce": op.nonce, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
		maps.Copy(m, op.claims)
		op.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at-1", "token_type": "Bearer",
			"id_token": oidctest.SignIDToken(op.key, testKeyID, "RS256", mustJSON(t, m))})
	})
	cfg.Name, cfg.Label, cfg.Issuer, cfg.ClientID = "idp", "The IdP", op.issuer, "posthub"
	cfg.Use = []Purpose{Portal, Mailbox}
	cfgs, err := ParseProviders(mustJSON(t, []ProviderConfig{cfg}), nil)
	if err != nil {
		t.Fatal(err)
	}
	op.rp, err = New(cfgs, Options{Key: bytes.Repeat([]byte{5}, 32), HTTPClient: &http.Client{Transport: op.reads},
		Users: op.users, Privileges: op.pol, Events: op.events})
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// start begins a login for purpose whose ID token will carry claims, and
// returns the flow cookie and the callback's query.
func (op *claimsOP) start(t *testing.T, purpose Purpose, claims map[string]any) (string, url.Values) {
	t.Helper()
	authURL, cookie, err := op.rp.Start("idp", purpose, "https://posthub.example/cb", "")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(authURL)
	op.mu.Lock()
	op.claims, op.nonce = claims, u.Query().Get("nonce")
	op.mu.Unlock()
	return cookie, url.Values{"state": {u.Query().Get("state")}, "code": {"code-1"}}
}

// checkEvents fails unless every event's actor and detail values are at
// most max bytes of valid UTF-8 without a control, formatting or
// line-breaking character. It checks by its own rules, not clean's.
func checkEvents(t *testing.T, evs []hub.Event, max int) {
	t.Helper()
	for _, ev := range evs {
		values := map[string]string{"actor": ev.Actor}
		maps.Copy(values, ev.Detail)
		for k, v := range values {
			if len(v) > max {
				t.Errorf("%s %s is %d bytes, want at most %d: %.80q…", ev.Tag, k, len(v), max, v)
			}
			if !utf8.ValidString(v) {
				t.Errorf("%s %s is not UTF-8: %.80q", ev.Tag, k, v)
			}
			for _, r := range v {
				if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
					t.Errorf("%s %s carries %U: %.80q", ev.Tag, k, r, v)
					break
				}
			}
		}
	}
}

// TestLoginRefusesClaimsThatAreNotIdentifiers: a provider's ID token
// carries a subject, user id or organisation that is not what it claims
// to be — 100 KB long, with CR/LF/NUL or a bidirectional override, nine
// digits or letters for a CVR number, a user id that folding or cutting
// would turn into another user's. The login is refused with a precise
// reason, nothing is written (for a subject or an organisation nothing is
// even read), and the refusal's event shows the claims clean and bounded.
func TestLoginRefusesClaimsThatAreNotIdentifiers(t *testing.T) {
	portal := ProviderConfig{UserClaim: "preferred_username", OrganisationClaim: "cvr", GroupClaim: "groups",
		GroupPrivileges: []GroupPrivilege{{Group: "stat", Privilege: rbac.StatisticsAdm, Organisation: orgA}}}
	company := ProviderConfig{UserClaim: "preferred_username", OrganisationClaim: "cvr", CPRClaim: "cpr"}
	huge := "s-" + strings.Repeat("x", 100<<10)
	for _, c := range []struct {
		name    string
		purpose Purpose
		cfg     ProviderConfig
		claims  map[string]any
		reason  string
		code    hub.Code
		read    bool // whether the user may have been looked up
	}{
		{"a 100 KB subject", Portal, portal, map[string]any{"sub": huge, "preferred_username": "anne", "cvr": orgA, "groups": []string{"stat"}},
			"oidc.subject.invalid", hub.Unauthorized, false},
		{"a subject one byte over OpenID's 255", Portal, portal, map[string]any{"sub": strings.Repeat("s", 256), "preferred_username": "anne", "cvr": orgA},
			"oidc.subject.invalid", hub.Unauthorized, false},
		{"a subject with CR LF and a forged event", Portal, portal, map[string]any{"sub": "s-1\r\nUSER_LOGGED_IN user:admin", "preferred_username": "anne", "cvr": orgA},
			"oidc.subject.invalid", hub.Unauthorized, false},
		{"a subject with a bidirectional override", Portal, portal, map[string]any{"sub": "s-1\u202egpj.exe", "preferred_username": "anne", "cvr": orgA},
			"oidc.subject.invalid", hub.Unauthorized, false},
		{"a subject with a NUL", Portal, portal, map[string]any{"sub": "s-1\x00", "preferred_username": "anne", "cvr": orgA},
			"oidc.subject.invalid", hub.Unauthorized, false},
		{"an empty subject", Portal, portal, map[string]any{"sub": "", "preferred_username": "anne", "cvr": orgA},
			"oidc.subject.invalid", hub.Unauthorized, false},
		{"a user id with CR LF", Portal, portal, map[string]any{"preferred_username": "anne\r\n", "cvr": orgA}, "oidc.user.invalid", hub.Forbidden, false},
		{"a user id with a NUL", Portal, portal, map[string]any{"preferred_username": "anne\x00", "cvr": orgA}, "oidc.user.invalid", hub.Forbidden, false},
		{"a user id with a bidirectional override", Portal, portal, map[string]any{"preferred_username": "\u202eanne", "cvr": orgA},
			"oidc.user.invalid", hub.Forbidden, false},
		{"a user id with spaces around it", Portal, portal, map[string]any{"preferred_username": " anne ", "cvr": orgA}, "oidc.user.invalid", hub.Forbidden, false},
		{"a user id whose Kelvin sign lower-cases to karen's k", Portal, portal, map[string]any{"preferred_username": "\u212Aaren", "cvr": orgA},
			"oidc.user.invalid", hub.Forbidden, false},
		{"a user id one byte longer than another user's whole id", Portal, portal, map[string]any{"preferred_username": long64 + "b", "cvr": orgA},
			"oidc.user.invalid", hub.Forbidden, false},
		{"a 100 KB user id", Portal, portal, map[string]any{"preferred_username": huge, "cvr": orgA}, "oidc.user.invalid", hub.Forbidden, false},
		{"an organisation of nine digits", Portal, portal, map[string]any{"preferred_username": "anne", "cvr": orgA + "9"},
			"oidc.organisation.invalid", hub.Forbidden, false},
		{"an organisation of nine digits as a number", Portal, portal, map[string]any{"preferred_username": "anne", "cvr": 123456789},
			"oidc.organisation.invalid", hub.Forbidden, false},
		{"an organisation of letters", Portal, portal, map[string]any{"preferred_username": "anne", "cvr": "abcdefgh"},
			"oidc.organisation.invalid", hub.Forbidden, false},
		{"an organisation with a newline after its CVR", Portal, portal, map[string]any{"preferred_username": "anne", "cvr": orgA + "\n"},
			"oidc.organisation.invalid", hub.Forbidden, false},
		{"a 100 KB organisation", Portal, portal, map[string]any{"preferred_username": "anne", "cvr": huge}, "oidc.organisation.invalid", hub.Forbidden, false},
		{"a mailbox company user of a nine-digit organisation", Mailbox, company, map[string]any{"preferred_username": "anne", "cvr": orgA + "9"},
			"oidc.organisation.invalid", hub.Forbidden, false},
		{"a mailbox company user whose user id has CR LF", Mailbox, company, map[string]any{"preferred_username": "anne\r\n", "cvr": orgA},
			"oidc.user.invalid", hub.Forbidden, false},
		{"a mailbox citizen of a 100 KB subject", Mailbox, company, map[string]any{"sub": huge, "cpr": "0101701234"},
			"oidc.subject.invalid", hub.Unauthorized, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			op := newClaimsOP(t, c.cfg)
			before := slices.Clone(op.pol.grants)
			cookie, q := op.start(t, c.purpose, c.claims)
			var err error
			if c.purpose == Portal {
				var u hub.User
				u, _, _, err = op.rp.LoginPortal(context.Background(), cookie, q, "https://posthub.example/cb")
				if err == nil {
					t.Fatalf("logged in as %+v", u)
				}
			} else {
				var p Person
				p, _, err = op.rp.LoginMailbox(context.Background(), cookie, q, "https://posthub.example/cb")
				if err == nil {
					t.Fatalf("logged in as %+v", p)
				}
			}
			if Reason(err) != c.reason || hub.ErrorCode(err) != c.code {
				t.Fatalf("reason %q code %q (%v), want %q %q", Reason(err), hub.ErrorCode(err), err, c.reason, c.code)
			}
			if op.pol.writes != 0 || !slices.Equal(op.pol.grants, before) {
				t.Errorf("privileges written: %d writes, %v (were %v)", op.pol.writes, op.pol.grants, before)
			}
			if !c.read && op.users.reads != 0 {
				t.Errorf("the user was looked up %d times for a refused claim", op.users.reads)
			}
			_, msg, ok := Explain(err)
			if !ok {
				t.Fatalf("no page for %v", err)
			}
			checkEcho(t, "the page's message", msg)
			if len(op.events.evs) != 1 || op.events.evs[0].Tag != TagLoginRefused || op.events.evs[0].Detail["reason"] != c.reason {
				t.Fatalf("events %.500v, want one refusal of reason %s", op.events.evs, c.reason)
			}
			ev := op.events.evs[0]
			checkEvents(t, op.events.evs, maxSubject+len(cutMarker))
			if ev.Detail["provider"] != "idp" || ev.Actor != "oidc:idp" || len(ev.Orgs) != 0 && !slices.Equal(ev.Orgs, []string{orgA}) {
				t.Errorf("refusal event %+v", ev)
			}
			// A shown claim that is not the claim itself never reads as a
			// valid one: a user id or CVR it was cut or cleaned into.
			if v, ok := ev.Detail["userId"]; ok && v != c.claims["preferred_username"] && rbac.ValidUserID(v) {
				t.Errorf("the event names user %q for the claim %.80q", v, c.claims["preferred_username"])
			}
			if v, ok := ev.Detail["organisation"]; ok && hub.ValidCVR(v) && v != c.claims["cvr"] {
				t.Errorf("the event names organisation %q for the claim %.80q", v, c.claims["cvr"])
			}
			if _, ok := ev.Detail["cpr"]; ok || strings.Contains(mustJSON(t, ev), "0101701234") {
				t.Errorf("the event carries the CPR number: %+v", ev)
			}
		})
	}
}

// TestLoginEventsHoldTheClaimsAsSent: an accepted login's events — the
// login and the group mapping's grant — hold the subject, user id and
// organisation exactly as the provider sent them, a subject of OpenID's
// full 255 bytes (not all ASCII) included.
func TestLoginEventsHoldTheClaimsAsSent(t *testing.T) {
	sub := strings.Repeat("æ", 100) + strings.Repeat("s", 55) // 255 bytes
	op := newClaimsOP(t, ProviderConfig{UserClaim: "preferred_username", OrganisationClaim: "cvr", GroupClaim: "groups",
		GroupPrivileges: []GroupPrivilege{{Group: "stat", Privilege: rbac.StatisticsAdm, Organisation: orgA}}})
	cookie, q := op.start(t, Portal, map[string]any{"sub": sub, "preferred_username": "Anne", "cvr": orgA, "groups": []string{"stat"}})
	u, id, _, err := op.rp.LoginPortal(context.Background(), cookie, q, "https://posthub.example/cb")
	if err != nil || u.ID != "anne" || id.Subject != sub {
		t.Fatalf("login: %+v %+v %v", u, id, err)
	}
	var tags []string
	for _, ev := range op.events.evs {
		tags = append(tags, ev.Tag)
		if ev.Detail["subject"] != sub || ev.Detail["userId"] != "anne" || !slices.Equal(ev.Orgs, []string{orgA}) {
			t.Errorf("event %+v", ev)
		}
	}
	if !slices.Equal(tags, []string{"PRIVILEGES_GRANTED", TagLoggedIn}) {
		t.Fatalf("events %v", tags)
	}
	if ev := op.events.evs[1]; ev.Detail["organisation"] != orgA {
		t.Errorf("login event %+v", ev)
	}
	checkEvents(t, op.events.evs, maxSubject)
}

func TestClean(t *testing.T) {
	for _, c := range []struct {
		name, in string
		max      int
		want     string
	}{
		{"a printable value is kept as it is", "anne@kommune.example æøå", 64, "anne@kommune.example æøå"},
		{"control characters become spaces", "a\r\nb\x00c\x1b[2J", 64, "a  b c [2J"},
		{"formatting characters become spaces", "a\u202eb\u200bc", 64, "a b c"},
		{"line and paragraph separators become spaces", "a\u2028b\u2029c", 64, "a b c"},
		{"spaces other than ' ' become spaces", "a\u00a0b", 64, "a b"},
		{"invalid UTF-8 becomes a replacement character", "a\xffb", 64, "a\uFFFDb"},
		{"a value over its bound is cut and marked", "abcdefghij", 8, "abcdefgh" + cutMarker},
		{"a cut never splits a character", "abcdefgæ", 8, "abcdefg" + cutMarker},
		{"a value exactly at its bound is kept", "abcdefgh", 8, "abcdefgh"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := clean(c.in, c.max); got != c.want {
				t.Fatalf("clean(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
			}
		})
	}
}
