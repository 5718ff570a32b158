package oidc

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
)

func TestParseProviders(t *testing.T) {
	env := map[string]string{"ENTRA_SECRET": "s3cret"}
	getenv := func(k string) string { return env[k] }
	ps, err := ParseProviders(`[{"name":"entra","issuer":"https://login.microsoftonline.com/tenant/v2.0","clientId":"app","clientSecretEnv":"ENTRA_SECRET"},
		{"name":"mitid","issuer":"https://nemlog-in.example","clientId":"ph","use":["mailbox"],"cprClaim":"cpr"}]`, getenv)
	if err != nil {
		t.Fatal(err)
	}
	e := ps[0]
	if e.ClientSecret != "s3cret" || e.TokenAuth != "client_secret_basic" || e.UserClaim != "sub" || !e.Uses(Portal) || e.Uses(Mailbox) ||
		!slices.Equal(e.Scopes, []string{"openid", "profile", "email"}) || e.Label != "entra" {
		t.Fatalf("defaults: %+v", e)
	}
	if m := ps[1]; m.TokenAuth != "none" || !m.Uses(Mailbox) || m.Uses(Portal) {
		t.Fatalf("mailbox provider: %+v", m)
	}
	for _, c := range []struct{ name, json string }{
		{"a name with capitals", `[{"name":"Entra","issuer":"https://x.example","clientId":"a"}]`},
		{"an http issuer off loopback", `[{"name":"a","issuer":"http://idp.example","clientId":"a"}]`},
		{"no client id", `[{"name":"a","issuer":"https://x.example"}]`},
		{"a name twice", `[{"name":"a","issuer":"https://x.example","clientId":"a"},{"name":"a","issuer":"https://y.example","clientId":"b"}]`},
		{"an unknown setting", `[{"name":"a","issuer":"https://x.example","clientId":"a","clientSecrett":"x"}]`},
		{"an empty secret variable", `[{"name":"a","issuer":"https://x.example","clientId":"a","clientSecretEnv":"NOPE"}]`},
		{"basic auth without a secret", `[{"name":"a","issuer":"https://x.example","clientId":"a","tokenAuth":"client_secret_basic"}]`},
		{"an unknown use", `[{"name":"a","issuer":"https://x.example","clientId":"a","use":["api"]}]`},
		{"a mailbox provider that names no person", `[{"name":"a","issuer":"https://x.example","clientId":"a","use":["mailbox"]}]`},
		{"groups without a group claim", `[{"name":"a","issuer":"https://x.example","clientId":"a","groupPrivileges":[{"group":"g","privilege":"STATISTICS_ADMINISTRATOR","organisation":"12345678"}]}]`},
		{"a global privilege mapped", `[{"name":"a","issuer":"https://x.example","clientId":"a","groupClaim":"groups","groupPrivileges":[{"group":"g","privilege":"HUB_OPERATOR","organisation":"12345678"}]}]`},
		{"a system privilege mapped", `[{"name":"a","issuer":"https://x.example","clientId":"a","groupClaim":"groups","groupPrivileges":[{"group":"g","privilege":"SENDER_SYSTEM","organisation":"12345678"}]}]`},
		{"a mapping outside an organisation", `[{"name":"a","issuer":"https://x.example","clientId":"a","groupClaim":"groups","groupPrivileges":[{"group":"g","privilege":"STATISTICS_ADMINISTRATOR","organisation":"*"}]}]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := ParseProviders(c.json, getenv); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// fakePolicies is a Privileges over a slice that answers as the
// Enforcer does: Conflict for a grant held, NotFound for a revocation of
// one not held. When seen is set, Grants answers from it: what this
// instance saw before another instance's login wrote.
type fakePolicies struct {
	mu     sync.Mutex
	grants []rbac.Grant
	seen   []rbac.Grant
}

func (f *fakePolicies) Grants(dom, user string) []rbac.Grant {
	f.mu.Lock()
	defer f.mu.Unlock()
	from := f.grants
	if f.seen != nil {
		from = f.seen
	}
	var out []rbac.Grant
	for _, g := range from {
		if (dom == "" || g.Domain == dom) && (user == "" || g.User == user) {
			out = append(out, g)
		}
	}
	return out
}

func (f *fakePolicies) Grant(_ context.Context, g rbac.Grant) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if slices.Contains(f.grants, g) {
		return hub.Errorf(hub.Conflict, "%s holds %s in %s", g.User, g.Role, g.Domain)
	}
	f.grants = append(f.grants, g)
	return nil
}

func (f *fakePolicies) Revoke(_ context.Context, g rbac.Grant) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.grants, g) {
		return hub.Errorf(hub.NotFound, "%s does not hold %s in %s", g.User, g.Role, g.Domain)
	}
	f.grants = slices.DeleteFunc(f.grants, func(x rbac.Grant) bool { return x == g })
	return nil
}

type fakeUsers map[string]hub.User

func (f fakeUsers) GetUser(_ context.Context, id string) (hub.User, error) {
	if u, ok := f[id]; ok {
		return u, nil
	}
	return hub.User{}, hub.Errorf(hub.NotFound, "no user %s", id)
}

type eventList struct {
	mu  sync.Mutex
	evs []hub.Event
}

func (e *eventList) Emit(_ context.Context, evs ...hub.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, evs...)
	return nil
}

const (
	orgA = "12345678"
	orgB = "87654321"
)

func TestMapUser(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		cfg    ProviderConfig
		held   []rbac.Grant
		id     Identity
		want   string // reason
		grants []rbac.Grant
	}{
		{"a known user logs in with the privileges posthub granted", ProviderConfig{},
			[]rbac.Grant{{User: "anne", Role: rbac.OrgAdmin, Domain: orgA}}, Identity{UserID: "anne"}, "",
			[]rbac.Grant{{User: "anne", Role: rbac.OrgAdmin, Domain: orgA}}},
		{"an identity without the user claim gets no session", ProviderConfig{}, nil, Identity{}, "oidc.user.claim.missing", nil},
		{"an identity with no posthub user gets no session", ProviderConfig{}, nil, Identity{UserID: "bent"}, "oidc.user.unknown", nil},
		{"an inactive user gets no session", ProviderConfig{}, nil, Identity{UserID: "ivan"}, "oidc.user.unknown", nil},
		{"a user id outside the provider's namespace is refused", ProviderConfig{UserIDSuffix: "@kommune.example"}, nil,
			Identity{UserID: "anne"}, "oidc.user.outside", nil},
		{"a group grants its mapped privilege", ProviderConfig{GroupClaim: "groups", GroupPrivileges: []GroupPrivilege{
			{Group: "stat", Privilege: rbac.StatisticsAdm, Organisation: orgA}}}, nil,
			Identity{UserID: "anne", Groups: []string{"stat"}}, "", []rbac.Grant{{User: "anne", Role: rbac.StatisticsAdm, Domain: orgA}}},
		{"leaving the group revokes the mapped privilege, and only it", ProviderConfig{GroupClaim: "groups", GroupPrivileges: []GroupPrivilege{
			{Group: "stat", Privilege: rbac.StatisticsAdm, Organisation: orgA}}},
			[]rbac.Grant{{User: "anne", Role: rbac.StatisticsAdm, Domain: orgA}, {User: "anne", Role: rbac.RecallAdmin, Domain: orgA}},
			Identity{UserID: "anne"}, "", []rbac.Grant{{User: "anne", Role: rbac.RecallAdmin, Domain: orgA}}},
		{"the asserted organisation matches the privileges", ProviderConfig{OrganisationClaim: "cvr"},
			[]rbac.Grant{{User: "anne", Role: rbac.OrgAdmin, Domain: orgA}}, Identity{UserID: "anne", Organisation: orgA}, "",
			[]rbac.Grant{{User: "anne", Role: rbac.OrgAdmin, Domain: orgA}}},
		{"an asserted organisation that does not match a privilege's is refused", ProviderConfig{OrganisationClaim: "cvr"},
			[]rbac.Grant{{User: "anne", Role: rbac.OrgAdmin, Domain: orgA}}, Identity{UserID: "anne", Organisation: orgB}, "oidc.organisation.mismatch",
			[]rbac.Grant{{User: "anne", Role: rbac.OrgAdmin, Domain: orgA}}},
		{"a global privilege is no organisation's", ProviderConfig{OrganisationClaim: "cvr"},
			[]rbac.Grant{{User: "anne", Role: rbac.Auditor, Domain: rbac.Global}}, Identity{UserID: "anne", Organisation: orgA}, "oidc.organisation.mismatch",
			[]rbac.Grant{{User: "anne", Role: rbac.Auditor, Domain: rbac.Global}}},
		{"a mapped privilege in another organisation is refused and not granted", ProviderConfig{OrganisationClaim: "cvr", GroupClaim: "groups",
			GroupPrivileges: []GroupPrivilege{{Group: "stat", Privilege: rbac.StatisticsAdm, Organisation: orgB}}}, nil,
			Identity{UserID: "anne", Organisation: orgA, Groups: []string{"stat"}}, "oidc.organisation.mismatch", nil},
		{"a password account of one organisation is mapped no privilege in another", ProviderConfig{GroupClaim: "groups",
			GroupPrivileges: []GroupPrivilege{{Group: "stat", Privilege: rbac.StatisticsAdm, Organisation: orgB}}}, nil,
			Identity{UserID: "carol", Groups: []string{"stat"}}, "oidc.user.other.organisation", nil},
		{"a password account is mapped privileges in its own organisation", ProviderConfig{GroupClaim: "groups",
			GroupPrivileges: []GroupPrivilege{{Group: "stat", Privilege: rbac.StatisticsAdm, Organisation: orgA}}}, nil,
			Identity{UserID: "carol", Groups: []string{"stat"}}, "", []rbac.Grant{{User: "carol", Role: rbac.StatisticsAdm, Domain: orgA}}},
		{"an account without a password may be mapped privileges anywhere", ProviderConfig{GroupClaim: "groups",
			GroupPrivileges: []GroupPrivilege{{Group: "stat", Privilege: rbac.StatisticsAdm, Organisation: orgB}}}, nil,
			Identity{UserID: "dora", Groups: []string{"stat"}}, "", []rbac.Grant{{User: "dora", Role: rbac.StatisticsAdm, Domain: orgB}}},
		{"a provider that asserts organisations but not this one's is refused", ProviderConfig{OrganisationClaim: "cvr"}, nil,
			Identity{UserID: "anne"}, "oidc.organisation.missing", nil},
		{"an asserted organisation that is no CVR number is refused", ProviderConfig{OrganisationClaim: "cvr"}, nil,
			Identity{UserID: "anne", Organisation: "kommune"}, "oidc.organisation.invalid", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Name, c.cfg.Label = "idp", "The IdP"
			pol := &fakePolicies{grants: slices.Clone(c.held)}
			events := &eventList{}
			rp := &RP{providers: map[string]*provider{"idp": {cfg: c.cfg}}, opts: Options{Events: events, Privileges: pol,
				Users: fakeUsers{"anne": {ID: "anne", Active: true}, "ivan": {ID: "ivan"},
					"carol": {ID: "carol", Active: true, Org: orgA, PasswordHash: "$argon2id$x"},
					"dora":  {ID: "dora", Active: true, Org: orgA}}}}
			c.id.Provider, c.id.Subject = "idp", "sub-1"
			u, err := rp.mapUser(ctx, c.id)
			if Reason(err) != c.want {
				t.Fatalf("reason %q (%v), want %q", Reason(err), err, c.want)
			}
			if c.want == "" && u.ID != c.id.UserID {
				t.Fatalf("user %+v", u)
			}
			if c.want != "" && (hub.ErrorCode(err) != hub.Forbidden || !strings.Contains(err.Error(), "The IdP")) {
				t.Fatalf("a refusal says which provider and is forbidden: %v", err)
			}
			got := pol.Grants("", "")
			slices.SortFunc(got, func(a, b rbac.Grant) int { return strings.Compare(a.Role, b.Role) })
			if !slices.Equal(got, c.grants) {
				t.Fatalf("grants after login %v, want %v", got, c.grants)
			}
			for _, ev := range events.evs {
				if ev.Actor != "oidc:idp" || ev.Detail["subject"] != "sub-1" || ev.Detail["via"] != "group mapping" {
					t.Fatalf("mapping event %+v", ev)
				}
			}
		})
	}
}

// TestMapUserLogsOnlyChanges: when another login of the same user (on
// another instance) has already made the group mapping's change, this
// login's grant answers Conflict and its revocation NotFound. The login
// goes on, and nothing is logged as granted or revoked: the other login
// logged it.
func TestMapUserLogsOnlyChanges(t *testing.T) {
	stat := rbac.Grant{User: "anne", Role: rbac.StatisticsAdm, Domain: orgA}
	recall := rbac.Grant{User: "anne", Role: rbac.RecallAdmin, Domain: orgA}
	cfg := ProviderConfig{Name: "idp", Label: "The IdP", GroupClaim: "groups", GroupPrivileges: []GroupPrivilege{
		{Group: "stat", Privilege: rbac.StatisticsAdm, Organisation: orgA}, {Group: "recall", Privilege: rbac.RecallAdmin, Organisation: orgA}}}
	for _, c := range []struct {
		name       string
		seen, held []rbac.Grant
		want       []string // tags logged
	}{
		{"a change this login makes is logged", []rbac.Grant{recall}, []rbac.Grant{recall}, []string{"PRIVILEGES_GRANTED", "PRIVILEGES_REVOKED"}},
		{"a change another login made is not logged again", []rbac.Grant{recall}, []rbac.Grant{stat}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			pol := &fakePolicies{grants: slices.Clone(c.held), seen: c.seen}
			events := &eventList{}
			rp := &RP{providers: map[string]*provider{"idp": {cfg: cfg}}, opts: Options{Events: events, Privileges: pol,
				Users: fakeUsers{"anne": {ID: "anne", Active: true}}}}
			u, err := rp.mapUser(context.Background(), Identity{Provider: "idp", Subject: "sub-1", UserID: "anne", Groups: []string{"stat"}})
			if err != nil || u.ID != "anne" {
				t.Fatalf("login: %+v, %v", u, err)
			}
			if got := pol.grants; !slices.Equal(got, []rbac.Grant{stat}) {
				t.Fatalf("grants after login %v, want %v", got, []rbac.Grant{stat})
			}
			var tags []string
			for _, ev := range events.evs {
				tags = append(tags, ev.Tag)
			}
			if !slices.Equal(tags, c.want) {
				t.Fatalf("logged %v, want %v", tags, c.want)
			}
		})
	}
}

func TestLoginEventNamesProviderSubjectAndReason(t *testing.T) {
	ev := LoginEvent("portal", Identity{Provider: "entra", Subject: "s-1", UserID: "anne", Organisation: orgA},
		refusal(hub.Forbidden, "oidc.organisation.mismatch", "no", nil))
	if ev.Tag != TagLoginRefused || ev.Actor != "oidc:entra" || ev.Detail["subject"] != "s-1" || ev.Detail["provider"] != "entra" ||
		ev.Detail["reason"] != "oidc.organisation.mismatch" || ev.Detail["userId"] != "anne" || !slices.Equal(ev.Orgs, []string{orgA}) {
		t.Fatalf("%+v", ev)
	}
	ev = LoginEvent("portal", Identity{Provider: "password", UserID: "olga"}, nil)
	if ev.Tag != TagLoggedIn || ev.Actor != "user:olga" || ev.Detail["provider"] != "password" || ev.Detail["reason"] != "" {
		t.Fatalf("%+v", ev)
	}
}

func TestMailboxPerson(t *testing.T) {
	both := ProviderConfig{Label: "MitID", CPRClaim: "cpr", OrganisationClaim: "cvr"}
	for _, c := range []struct {
		name string
		cfg  ProviderConfig
		id   Identity
		want Person
		err  string
	}{
		{"a citizen by the CPR claim", both, Identity{CPR: "0101701234", UserID: "x"}, Person{CPR: "0101701234"}, ""},
		{"a company user by CVR and user id", both, Identity{Organisation: orgA, UserID: "anne"}, Person{CVR: orgA, UserID: "anne"}, ""},
		{"a CPR number of the wrong shape names no one", both, Identity{CPR: "01017012"}, Person{}, "oidc.person.unknown"},
		{"a CVR without a user id names no one", both, Identity{Organisation: orgA}, Person{}, "oidc.person.unknown"},
		{"a company user outside the provider's namespace is refused",
			ProviderConfig{Label: "Kommune-IdP", OrganisationClaim: "cvr", UserIDSuffix: "@kommune.example"},
			Identity{Organisation: orgA, UserID: "anne@elsewhere.example"}, Person{}, "oidc.user.outside"},
		{"a company user inside it is named", ProviderConfig{Label: "Kommune-IdP", OrganisationClaim: "cvr", UserIDSuffix: "@kommune.example"},
			Identity{Organisation: orgA, UserID: "anne@kommune.example"}, Person{CVR: orgA, UserID: "anne@kommune.example"}, ""},
		{"a CPR claim the provider is not configured to read is ignored", ProviderConfig{OrganisationClaim: "cvr"},
			Identity{CPR: "0101701234"}, Person{}, "oidc.person.unknown"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := c.cfg.person(c.id)
			if Reason(err) != c.err || (err == nil && p != c.want) {
				t.Fatalf("person %+v, %v; want %+v, %q", p, err, c.want, c.err)
			}
		})
	}
}
