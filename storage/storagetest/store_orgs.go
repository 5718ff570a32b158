package storagetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

func org(cvr string) hub.Organisation {
	return hub.Organisation{CVR: cvr, Name: "Org " + cvr, Kind: hub.Authority, Setup: hub.SetupContactable,
		Created: T0, Updated: T0, Active: true, SendFor: []string{"11111111"}}
}

// system is a sender system (receiver systems join with ChangeReceivers;
// see store_rules.go).
func system(id, org, token string) hub.System {
	return hub.System{ID: id, OrgCVR: org, Name: "System " + id, Role: hub.SenderSystem,
		TokenHash: token, Active: true, Created: T0, Updated: T0}
}

var orgTests = []storeTest{
	{"CreateOrg conflicts on an existing CVR", func(t *testing.T, s hub.Store) {
		must(t, s.CreateOrg(ctx, org("12345678")), "CreateOrg")
		wantCode(t, s.CreateOrg(ctx, org("12345678")), hub.Conflict, "second CreateOrg")
		got, err := s.GetOrg(ctx, "12345678")
		must(t, err, "GetOrg")
		sameJSON(t, got, org("12345678"), "stored organisation")
		list, err := s.ListOrgs(ctx)
		must(t, err, "ListOrgs")
		sameStrings(t, ids(list, func(o hub.Organisation) string { return o.CVR }), []string{"12345678"}, "ListOrgs")
	}},
	{"GetOrg of an absent CVR is NotFound", func(t *testing.T, s hub.Store) {
		_, err := s.GetOrg(ctx, "99999999")
		wantCode(t, err, hub.NotFound, "GetOrg")
		wantCode(t, s.UpdateOrg(ctx, org("99999999")), hub.NotFound, "UpdateOrg of absent")
	}},
	{"UpdateOrg needs the stored Version and increments it", func(t *testing.T, s hub.Store) {
		must(t, s.CreateOrg(ctx, org("12345678")), "CreateOrg")
		o, err := s.GetOrg(ctx, "12345678")
		must(t, err, "GetOrg")
		v := o.Version
		o.Name = "Renamed"
		must(t, s.UpdateOrg(ctx, o), "UpdateOrg")
		stale := o
		stale.Name = "Stale"
		wantCode(t, s.UpdateOrg(ctx, stale), hub.Conflict, "UpdateOrg with stale Version")
		got, err := s.GetOrg(ctx, "12345678")
		must(t, err, "GetOrg")
		if got.Name != "Renamed" || got.Version != v+1 {
			t.Fatalf("after update: name %q version %d, want Renamed %d", got.Name, got.Version, v+1)
		}
	}},
	{"CreateSystem conflicts on a taken ID or token", func(t *testing.T, s hub.Store) {
		must(t, s.CreateSystem(ctx, system("a", "12345678", "hash-a")), "CreateSystem")
		wantCode(t, s.CreateSystem(ctx, system("a", "12345678", "hash-x")), hub.Conflict, "same ID")
		wantCode(t, s.CreateSystem(ctx, system("b", "12345678", "hash-a")), hub.Conflict, "same token")
		_, err := s.GetSystem(ctx, "b")
		wantCode(t, err, hub.NotFound, "GetSystem of refused system")
	}},
	{"SystemByToken finds the system by token hash", func(t *testing.T, s hub.Store) {
		must(t, s.CreateSystem(ctx, system("a", "12345678", "hash-a")), "CreateSystem")
		must(t, s.CreateSystem(ctx, system("b", "12345678", "hash-b")), "CreateSystem")
		got, err := s.SystemByToken(ctx, "hash-b")
		must(t, err, "SystemByToken")
		if got.ID != "b" || got.TokenHash != "hash-b" {
			t.Fatalf("SystemByToken: got %s/%s", got.ID, got.TokenHash)
		}
		_, err = s.SystemByToken(ctx, "hash-none")
		wantCode(t, err, hub.NotFound, "unknown token")
		got.TokenHash = "hash-b2"
		must(t, s.UpdateSystem(ctx, got), "UpdateSystem with new token")
		_, err = s.SystemByToken(ctx, "hash-b")
		wantCode(t, err, hub.NotFound, "old token after rotation")
		got, err = s.SystemByToken(ctx, "hash-b2")
		must(t, err, "SystemByToken after rotation")
		// Deactivation and a recorded fetch show at once, however often
		// the token was looked up before.
		got.Active = false
		must(t, s.UpdateSystem(ctx, got), "UpdateSystem deactivating")
		got, err = s.SystemByToken(ctx, "hash-b2")
		must(t, err, "SystemByToken after deactivation")
		if got.Active {
			t.Fatal("SystemByToken after deactivation: still active")
		}
		must(t, s.TouchSystem(ctx, "b", T0.Add(time.Hour)), "TouchSystem")
		got, err = s.SystemByToken(ctx, "hash-b2")
		must(t, err, "SystemByToken after TouchSystem")
		if !got.LastFetch.Equal(T0.Add(time.Hour)) {
			t.Fatalf("SystemByToken after TouchSystem: last fetch %v", got.LastFetch)
		}
		got.TokenHash = "hash-a"
		wantCode(t, s.UpdateSystem(ctx, got), hub.Conflict, "UpdateSystem to another system's token")
	}},
	{"UpdateSystem needs the stored Version; TouchSystem does not change it", func(t *testing.T, s hub.Store) {
		must(t, s.CreateSystem(ctx, system("a", "12345678", "hash-a")), "CreateSystem")
		wantCode(t, s.UpdateSystem(ctx, system("zz", "12345678", "")), hub.NotFound, "UpdateSystem of absent")
		sys, err := s.GetSystem(ctx, "a")
		must(t, err, "GetSystem")
		must(t, s.TouchSystem(ctx, "a", T0.Add(1000)), "TouchSystem")
		sys.Name = "Renamed"
		must(t, s.UpdateSystem(ctx, sys), "UpdateSystem after touch")
		wantCode(t, s.UpdateSystem(ctx, sys), hub.Conflict, "UpdateSystem with stale Version")
		got, err := s.GetSystem(ctx, "a")
		must(t, err, "GetSystem")
		if got.Version != sys.Version+1 || got.Name != "Renamed" {
			t.Fatalf("after update: version %d name %q", got.Version, got.Name)
		}
		wantCode(t, s.TouchSystem(ctx, "zz", T0), hub.NotFound, "TouchSystem of absent")
	}},
	{"ListSystems returns an organisation's systems in creation order", func(t *testing.T, s hub.Store) {
		for _, id := range []string{"z", "a", "m"} {
			must(t, s.CreateSystem(ctx, system(id, "12345678", "hash-"+id)), "CreateSystem")
		}
		must(t, s.CreateSystem(ctx, system("other", "87654321", "hash-other")), "CreateSystem")
		list, err := s.ListSystems(ctx, "12345678")
		must(t, err, "ListSystems")
		sameStrings(t, ids(list, func(x hub.System) string { return x.ID }), []string{"z", "a", "m"}, "ListSystems")
	}},
	{"PutContactGroup with Version 0 creates and conflicts when the ID exists", func(t *testing.T, s hub.Store) {
		g := hub.ContactGroup{ID: "g1", OrgCVR: "12345678", Name: "Group", Created: T0}
		must(t, s.PutContactGroup(ctx, g), "create")
		wantCode(t, s.PutContactGroup(ctx, g), hub.Conflict, "create again")
		list, err := s.ListContactGroups(ctx, "12345678")
		must(t, err, "ListContactGroups")
		if len(list) != 1 {
			t.Fatalf("ListContactGroups: %d groups", len(list))
		}
		g = list[0]
		g.Name = "Renamed"
		must(t, s.PutContactGroup(ctx, g), "update with stored Version")
		wantCode(t, s.PutContactGroup(ctx, g), hub.Conflict, "update with stale Version")
		list, _ = s.ListContactGroups(ctx, "12345678")
		if len(list) != 1 || list[0].Name != "Renamed" || list[0].Version != g.Version+1 {
			t.Fatalf("after update: %+v", list)
		}
		other, _ := s.ListContactGroups(ctx, "87654321")
		if len(other) != 0 {
			t.Fatalf("another organisation sees %d groups", len(other))
		}
		wantCode(t, s.DeleteContactGroup(ctx, "87654321", "g1"), hub.NotFound, "delete from another organisation")
		must(t, s.DeleteContactGroup(ctx, "12345678", "g1"), "delete")
		list, _ = s.ListContactGroups(ctx, "12345678")
		if len(list) != 0 {
			t.Fatalf("after delete: %d groups", len(list))
		}
	}},
	{"PutContactPoint versions like groups and GetContactPoint finds it", func(t *testing.T, s hub.Store) {
		p := hub.ContactPoint{ID: "p1", OrgCVR: "12345678", Name: "Point", SystemID: "a", GroupIDs: []string{"g1"},
			Codes: []hub.ContactPointCode{{Type: hub.CodeKLE, Code: "00.01"}}, Active: true, Created: T0}
		must(t, s.PutContactPoint(ctx, p), "create")
		wantCode(t, s.PutContactPoint(ctx, p), hub.Conflict, "create again")
		got, err := s.GetContactPoint(ctx, "p1")
		must(t, err, "GetContactPoint")
		want := p
		want.Version = got.Version
		sameJSON(t, got, want, "stored point")
		got.Name = "Renamed"
		must(t, s.PutContactPoint(ctx, got), "update")
		wantCode(t, s.PutContactPoint(ctx, got), hub.Conflict, "stale update")
		missing := p
		missing.ID, missing.Version = "p9", 3
		wantCode(t, s.PutContactPoint(ctx, missing), hub.NotFound, "update of absent")
		list, err := s.ListContactPoints(ctx, "12345678")
		must(t, err, "ListContactPoints")
		if len(list) != 1 || list[0].Name != "Renamed" {
			t.Fatalf("ListContactPoints: %+v", list)
		}
		must(t, s.DeleteContactPoint(ctx, "12345678", "p1"), "delete")
		_, err = s.GetContactPoint(ctx, "p1")
		wantCode(t, err, hub.NotFound, "GetContactPoint after delete")
	}},
	{"ListRoutingRules orders by ascending Priority and PutRoutingRule replaces by ID", func(t *testing.T, s hub.Store) {
		for i, prio := range []int{30, 10, 20} {
			must(t, s.PutRoutingRule(ctx, hub.RoutingRule{ID: n(i), OrgCVR: "12345678", Priority: prio, Field: "KLE", Value: "00.*", SystemID: "a", Created: T0}), "PutRoutingRule")
		}
		must(t, s.PutRoutingRule(ctx, hub.RoutingRule{ID: n(0), OrgCVR: "12345678", Priority: 5, Field: "FORM", Value: "x", SystemID: "a", Created: T0}), "replace")
		list, err := s.ListRoutingRules(ctx, "12345678")
		must(t, err, "ListRoutingRules")
		sameStrings(t, ids(list, func(r hub.RoutingRule) string { return r.ID }), []string{n(0), n(1), n(2)}, "rules by priority")
		if list[0].Field != "FORM" {
			t.Fatalf("replaced rule has field %q", list[0].Field)
		}
		must(t, s.DeleteRoutingRule(ctx, "12345678", n(1)), "delete")
		list, _ = s.ListRoutingRules(ctx, "12345678")
		sameStrings(t, ids(list, func(r hub.RoutingRule) string { return r.ID }), []string{n(0), n(2)}, "after delete")
	}},
	{"Contacts are put in bulk, replaced by ID and deleted", func(t *testing.T, s hub.Store) {
		cs := []hub.Contact{
			{ID: "0101011234", Status: hub.Registered, NemSMS: true, Phone: "+4512345678", Updated: T0},
			{ID: "12345678", Status: hub.Exempt, Address: []string{"Vej 1", "1000 By"}, Updated: T0},
		}
		must(t, s.PutContacts(ctx, cs), "PutContacts")
		got, err := s.GetContact(ctx, "12345678")
		must(t, err, "GetContact")
		sameJSON(t, got, cs[1], "stored contact")
		cs[1].Status = hub.Registered
		must(t, s.PutContacts(ctx, cs[1:]), "replace")
		got, _ = s.GetContact(ctx, "12345678")
		if got.Status != hub.Registered {
			t.Fatalf("replaced contact status %q", got.Status)
		}
		must(t, s.DeleteContact(ctx, "12345678"), "DeleteContact")
		_, err = s.GetContact(ctx, "12345678")
		wantCode(t, err, hub.NotFound, "GetContact after delete")
		must(t, s.DeleteContact(ctx, "12345678"), "DeleteContact of absent")
	}},
	{"PutContacts replaces a batch of stored contacts (a re-import), the last entry of an ID winning", func(t *testing.T, s hub.Store) {
		// 120 is above the 50 PostgreSQL connections FerretDB holds at most:
		// one bulk of upserts replacing them never returned there.
		const contacts = 120
		batch := func(status hub.DigitalStatus) []hub.Contact {
			cs := make([]hub.Contact, contacts)
			for i := range cs {
				cs[i] = hub.Contact{ID: fmt.Sprintf("020202%04d", i), Status: status, Updated: T0}
			}
			return cs
		}
		must(t, s.PutContacts(ctx, batch(hub.Registered)), "import")
		again := batch(hub.Exempt)
		again = append(again, hub.Contact{ID: again[0].ID, Status: hub.Registered, Name: "last", Updated: T0})
		must(t, s.PutContacts(ctx, again), "re-import")
		for i := 0; i < contacts; i++ {
			got, err := s.GetContact(ctx, again[i].ID)
			must(t, err, "GetContact")
			want := again[i]
			if i == 0 {
				want = again[contacts]
			}
			sameJSON(t, got, want, "re-imported contact "+want.ID)
		}
	}},
}
