package admin_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/posthub/posthub/admin"
	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/storage/bolt"
)

// ownOrg is the organisation the fixture's users administer.
const ownOrg = "11111111"

type serviceFixture struct {
	ctx   context.Context
	store *bolt.Store
	en    *rbac.Enforcer
	svc   *admin.Service
}

func newServiceFixture(t *testing.T) *serviceFixture {
	t.Helper()
	ctx := context.Background()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	en, err := rbac.New(ctx, store, rbac.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := eventlog.New(store, eventlog.Options{})
	t.Cleanup(func() { log.Close() })
	reg := &hub.Registry{Store: store}
	f := &serviceFixture{ctx: ctx, store: store, en: en, svc: &admin.Service{Store: store, Registry: reg, Enforcer: en, Events: log,
		Importer: &hub.ContactImporter{Store: store}, Ingest: &hub.Ingest{Store: store, Events: log}}}
	if _, err := reg.CreateOrg(ctx, hub.Organisation{CVR: ownOrg, Name: "Org", Kind: hub.Authority}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *serviceFixture) user(t *testing.T, id, role, dom string) admin.Actor {
	t.Helper()
	org := dom
	if dom == rbac.Global {
		org = ""
	}
	if err := f.store.CreateUser(f.ctx, hub.User{ID: id, Name: id, Org: org, Active: true}); err != nil {
		t.Fatal(err)
	}
	if role != "" {
		if err := f.en.Grant(f.ctx, rbac.Grant{User: id, Role: role, Domain: dom}); err != nil {
			t.Fatal(err)
		}
	}
	return admin.Actor{Name: "user:" + id, Subject: rbac.Subject{User: id}}
}

// TestGrantorMatrix: every grantor role against every organisation
// privilege, granting and revoking: allowed exactly for a hub operator, or
// for a holder of users:write that holds every permission of the privilege.
func TestGrantorMatrix(t *testing.T) {
	f := newServiceFixture(t)
	grantors := map[string]admin.Actor{"operator-token": {Name: "operator", Subject: rbac.Subject{Role: rbac.HubOperator, Home: rbac.Global}}}
	holds := map[string][]rbac.Perm{"operator-token": nil}
	for _, r := range rbac.Roles {
		if r.System {
			continue
		}
		dom := ownOrg
		if r.Global {
			dom = rbac.Global
		}
		grantors[r.Name] = f.user(t, "g-"+strings.ToLower(strings.ReplaceAll(r.Name, "_", "-")), r.Name, dom)
		holds[r.Name] = r.Perms
	}
	f.user(t, "target", "", ownOrg)
	var allowed, refused int
	for gname, a := range grantors {
		operator := gname == "operator-token" || gname == rbac.HubOperator
		for _, p := range rbac.Roles {
			if p.Global || p.System {
				continue
			}
			want := operator || slices.Contains(holds[gname], rbac.UsersWrite) && !slices.ContainsFunc(p.Perms, func(x rbac.Perm) bool { return !slices.Contains(holds[gname], x) })
			g := rbac.Grant{User: "target", Role: p.Name, Domain: ownOrg}
			err := f.svc.Grant(f.ctx, a, g)
			if (err == nil) != want || err != nil && hub.ErrorCode(err) != hub.Forbidden {
				t.Errorf("%s grants %s: %v, want allowed=%v", gname, p.Name, err, want)
				continue
			}
			if !want {
				refused++
				// A grant the grantor may not make it may not revoke either.
				if err := f.en.Grant(f.ctx, g); err != nil {
					t.Fatal(err)
				}
				if err := f.svc.Revoke(f.ctx, a, g); hub.ErrorCode(err) != hub.Forbidden {
					t.Errorf("%s revokes %s: %v, want forbidden", gname, p.Name, err)
				}
			} else {
				allowed++
			}
			if err := f.en.Revoke(f.ctx, g); err != nil {
				t.Fatal(err)
			}
		}
	}
	if allowed == 0 || refused == 0 {
		t.Fatalf("allowed %d, refused %d", allowed, refused)
	}
	// What the portal offers is what the rule allows.
	ua := grantors[rbac.UserAdmin]
	var names []string
	for _, r := range f.svc.Grantable(ua, ownOrg) {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{rbac.UserAdmin}) {
		t.Fatalf("a user administrator is offered %v", names)
	}
}

// TestOversizedInputChangesNothing: each write refuses an input beyond its
// bound with a field error before it changes anything, and logs nothing.
func TestOversizedInputChangesNothing(t *testing.T) {
	f := newServiceFixture(t)
	op := admin.Actor{Name: "operator", Subject: rbac.Subject{Role: rbac.HubOperator, Home: rbac.Global}}
	sys, _, err := f.svc.Registry.RegisterSystem(f.ctx, ownOrg, hub.SystemSpec{Name: "ESDH", Role: hub.RecipientSystem})
	if err != nil {
		t.Fatal(err)
	}
	before, err := f.store.PendingEvents(f.ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 2000)
	cases := map[string]func() error{
		"organisation name": func() error {
			_, err := f.svc.CreateOrg(f.ctx, op, hub.Organisation{CVR: "22222222", Name: long, Kind: hub.Authority})
			return err
		},
		"organisation kind": func() error {
			_, err := f.svc.CreateOrg(f.ctx, op, hub.Organisation{CVR: "22222222", Name: "x", Kind: hub.OrgKind(long)})
			return err
		},
		"system name": func() error {
			_, _, err := f.svc.RegisterSystem(f.ctx, op, ownOrg, hub.SystemSpec{Name: long, Role: hub.RecipientSystem})
			return err
		},
		"system role": func() error {
			_, _, err := f.svc.RegisterSystem(f.ctx, op, ownOrg, hub.SystemSpec{Name: "x", Role: hub.SystemRole(long)})
			return err
		},
		"system endpoint": func() error {
			_, _, err := f.svc.RegisterSystem(f.ctx, op, ownOrg, hub.SystemSpec{Name: "x", Role: hub.RecipientSystem, Protocol: hub.RestPush,
				Endpoint: "https://" + strings.Repeat("a", hub.MaxURLLen)})
			return err
		},
		"system update": func() error {
			_, err := f.svc.UpdateSystem(f.ctx, op, ownOrg, sys.ID, admin.SystemUpdate{Name: &long})
			return err
		},
		"contact group name": func() error {
			_, err := f.svc.PutContactGroup(f.ctx, op, hub.ContactGroup{OrgCVR: ownOrg, Name: long})
			return err
		},
		"contact point name": func() error {
			_, err := f.svc.PutContactPoint(f.ctx, op, hub.ContactPoint{OrgCVR: ownOrg, Name: long, SystemID: sys.ID})
			return err
		},
		"contact point code": func() error {
			_, err := f.svc.PutContactPoint(f.ctx, op, hub.ContactPoint{OrgCVR: ownOrg, Name: "x", SystemID: sys.ID,
				Codes: []hub.ContactPointCode{{Type: hub.CodeKLE, Code: long}}})
			return err
		},
		"contact point codes": func() error {
			_, err := f.svc.PutContactPoint(f.ctx, op, hub.ContactPoint{OrgCVR: ownOrg, Name: "x", SystemID: sys.ID,
				Codes: make([]hub.ContactPointCode, hub.MaxCodesPerPoint+1)})
			return err
		},
		"routing rule value": func() error {
			_, err := f.svc.CreateRule(f.ctx, op, hub.RoutingRule{OrgCVR: ownOrg, Field: "KLE", Value: long, SystemID: sys.ID})
			return err
		},
		"user name": func() error {
			_, err := f.svc.CreateUser(f.ctx, op, ownOrg, admin.NewUser{ID: "u", Name: long, Password: "a-password-123"})
			return err
		},
		"user e-mail": func() error {
			_, err := f.svc.CreateUser(f.ctx, op, ownOrg, admin.NewUser{ID: "u", Name: "U", Email: long + "@x.dk", Password: "a-password-123"})
			return err
		},
		"a deleted group's id": func() error { return f.svc.DeleteContactGroup(f.ctx, op, ownOrg, long) },
		"a deleted point's id": func() error { return f.svc.DeleteContactPoint(f.ctx, op, ownOrg, long) },
		"a deleted rule's id":  func() error { return f.svc.DeleteRule(f.ctx, op, ownOrg, long) },
	}
	for name, call := range cases {
		if err := call(); hub.ErrorCode(err) != hub.Invalid {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
	after, err := f.store.PendingEvents(f.ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("%d entries logged", len(after)-len(before))
	}
	orgs, _ := f.store.ListOrgs(f.ctx)
	systems, _ := f.store.ListSystems(f.ctx, ownOrg)
	groups, _ := f.store.ListContactGroups(f.ctx, ownOrg)
	points, _ := f.store.ListContactPoints(f.ctx, ownOrg)
	rules, _ := f.store.ListRoutingRules(f.ctx, ownOrg)
	if len(orgs) != 1 || len(systems) != 1 || systems[0].Name != "ESDH" || len(groups)+len(points)+len(rules) != 0 {
		t.Errorf("stored: %d orgs, %d systems, %d groups, %d points, %d rules", len(orgs), len(systems), len(groups), len(points), len(rules))
	}
	if _, err := f.store.GetUser(f.ctx, "u"); hub.ErrorCode(err) != hub.NotFound {
		t.Errorf("the refused user: %v", err)
	}
}

// bumpFails is a store whose BumpSessionGeneration fails while fail is set.
type bumpFails struct {
	*bolt.Store
	fail atomic.Bool
}

func (b *bumpFails) BumpSessionGeneration(ctx context.Context, user string) (uint64, error) {
	if b.fail.Load() {
		return 0, hub.Errorf(hub.Unavailable, "session generations are down")
	}
	return b.Store.BumpSessionGeneration(ctx, user)
}

// tagSink records the tags of the events emitted.
type tagSink struct {
	mu   sync.Mutex
	tags []string
}

func (s *tagSink) Emit(_ context.Context, evs ...hub.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range evs {
		s.tags = append(s.tags, ev.Tag)
	}
	return nil
}

// TestPrivilegeChangeIsLoggedWhenWhatFollowsItFails: a revocation that is
// stored but whose sessions could not be ended is answered Unavailable
// (rbac's rule) and still recorded as PRIVILEGES_REVOKED — it happened; a
// grant or revocation that was not stored is not recorded.
func TestPrivilegeChangeIsLoggedWhenWhatFollowsItFails(t *testing.T) {
	f := newServiceFixture(t)
	store := &bumpFails{Store: f.store}
	en, err := rbac.New(f.ctx, store, rbac.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sink := &tagSink{}
	svc := &admin.Service{Store: f.store, Registry: &hub.Registry{Store: f.store}, Enforcer: en, Events: sink}
	f.user(t, "anne", "", "")
	op := admin.Actor{Name: "operator", Subject: rbac.Subject{Role: rbac.HubOperator, Home: rbac.Global}}
	g := rbac.Grant{User: "anne", Role: rbac.OrgAdmin, Domain: ownOrg}
	if err := svc.Grant(f.ctx, op, g); err != nil {
		t.Fatal(err)
	}
	store.fail.Store(true)
	if err := svc.Revoke(f.ctx, op, g); !hub.Is(err, hub.Unavailable) {
		t.Fatalf("a revocation whose sessions could not be ended: %v, want unavailable", err)
	}
	if err := svc.Revoke(f.ctx, op, g); !hub.Is(err, hub.NotFound) {
		t.Fatalf("the revocation again: %v, want not_found", err)
	}
	want := []string{"PRIVILEGES_GRANTED", "PRIVILEGES_REVOKED"}
	if !slices.Equal(sink.tags, want) {
		t.Fatalf("events %q, want %q", sink.tags, want)
	}
}

// TestGrantsReachOnlyTheOrganisationsOwnUsers: accounts are global, so an
// organisation's user administrator could once grant privileges to another
// organisation's user (ending that user's sessions, learning which ids
// exist) and, worse, to an account another organisation had created with
// a password it knows. Now a grant by anyone but an operator reaches only
// users of the grant's organisation — recorded at creation, or, for an
// account from before, the one organisation it holds privileges in — and
// any other user is answered exactly as an unknown one, changing nothing.
func TestGrantsReachOnlyTheOrganisationsOwnUsers(t *testing.T) {
	f := newServiceFixture(t)
	const otherOrg = "22222222"
	if _, err := f.svc.Registry.CreateOrg(f.ctx, hub.Organisation{CVR: otherOrg, Name: "Other", Kind: hub.Authority}); err != nil {
		t.Fatal(err)
	}
	op := admin.Actor{Name: "operator", Subject: rbac.Subject{Role: rbac.HubOperator, Home: rbac.Global}}
	alice := f.user(t, "alice", rbac.OrgAdmin, ownOrg)
	bob := f.user(t, "bob", rbac.OrgAdmin, otherOrg)
	// Alice creates an account named for the other organisation's staff.
	if _, err := f.svc.CreateUser(f.ctx, alice, ownOrg, admin.NewUser{ID: "carol", Name: "Carol", Password: "alice-knows-this-1"}); err != nil {
		t.Fatal(err)
	}
	if u, _ := f.store.GetUser(f.ctx, "carol"); u.Org != ownOrg {
		t.Fatalf("the created account belongs to %q, want %s", u.Org, ownOrg)
	}
	unknown := f.svc.Grant(f.ctx, bob, rbac.Grant{User: "nobody", Role: rbac.SystemManager, Domain: otherOrg})
	for _, c := range []struct {
		name string
		a    admin.Actor
		g    rbac.Grant
	}{
		{"the other organisation's administrator grants alice's account", bob, rbac.Grant{User: "carol", Role: rbac.SystemManager, Domain: otherOrg}},
		{"alice grants the other organisation's administrator", alice, rbac.Grant{User: "bob", Role: rbac.StatisticsAdm, Domain: ownOrg}},
	} {
		err := f.svc.Grant(f.ctx, c.a, c.g)
		var he, ue *hub.Error
		if !errors.As(err, &he) || !errors.As(unknown, &ue) || he.Code != ue.Code || len(he.Fields) != 1 || he.Fields[0].Code != ue.Fields[0].Code ||
			he.Message != strings.Replace(ue.Message, otherOrg, c.g.Domain, 1) {
			t.Errorf("%s: %v, want the answer an unknown user gets (%v)", c.name, err, unknown)
		}
		if slices.Contains(f.en.Grants("", c.g.User), c.g) {
			t.Errorf("%s: granted", c.name)
		}
	}
	// Its own users it grants as before; an operator grants anyone.
	if err := f.svc.Grant(f.ctx, alice, rbac.Grant{User: "carol", Role: rbac.StatisticsAdm, Domain: ownOrg}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Grant(f.ctx, op, rbac.Grant{User: "carol", Role: rbac.StatisticsAdm, Domain: otherOrg}); err != nil {
		t.Fatal(err)
	}
	// An account from before accounts recorded their organisation belongs
	// to the one organisation it holds privileges in; with none, or
	// several, to no organisation's administrator.
	f.user(t, "legacy", rbac.RecallAdmin, otherOrg)
	legacy, _ := f.store.GetUser(f.ctx, "legacy")
	legacy.Org = ""
	if err := f.store.PutUser(f.ctx, legacy); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Grant(f.ctx, bob, rbac.Grant{User: "legacy", Role: rbac.StatisticsAdm, Domain: otherOrg}); err != nil {
		t.Errorf("the legacy account's organisation grants it: %v", err)
	}
	if err := f.svc.Grant(f.ctx, alice, rbac.Grant{User: "legacy", Role: rbac.StatisticsAdm, Domain: ownOrg}); hub.ErrorCode(err) != hub.Invalid {
		t.Errorf("another organisation grants the legacy account: %v", err)
	}
}
