package storagetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

// The "at most N" and "exactly one" rules: at most four authority-post
// receiver systems, one CVR-post system, one system of a company, exactly
// one default, one organisation per CVR, one user per id, one system per
// token, one contact point per code. Each is decided in the write it
// guards, so each is tested here with attempts made at the same instant:
// exactly the allowed number succeed, the rest get Conflict with the
// rule's code, and what is stored agrees with what was answered. The
// receiver rules are the hub's own (hub.Registry), run on the store under
// test.

// attempts is how many callers try at once; rounds how often a rule is
// tried (each round on fresh records).
const (
	attempts = 16
	rounds   = 3
)

func receiver(id, org string, mb hub.MailboxKind) hub.System {
	return hub.System{ID: id, OrgCVR: org, Name: "Receiver " + id, Role: hub.RecipientSystem, Mailbox: mb,
		Protocol: hub.RestPull, MemoVersion: "1.2", TokenHash: "hash-" + id, Active: true, Created: T0, Updated: T0, Version: 1}
}

// admitAll is a receiver rule without limits: it adds r, the default when
// its mailbox is authority post and there is none.
func admitAll(r hub.Receiver) hub.ReceiverRule {
	return func(active []hub.Receiver) ([]hub.Receiver, error) {
		def := false
		for _, a := range active {
			def = def || a.Default
		}
		r.Default = r.Mailbox == hub.AuthorityPost && !def
		return append(active, r), nil
	}
}

func join(t *testing.T, s hub.Store, sys hub.System) hub.System {
	t.Helper()
	must(t, s.ChangeReceivers(ctx, sys.OrgCVR, hub.ReceiverChange{Add: &sys, At: T0,
		Rule: admitAll(hub.Receiver{ID: sys.ID, Mailbox: sys.Mailbox})}), "ChangeReceivers adding "+sys.ID)
	return sys
}

func registry(s hub.Store) *hub.Registry {
	return &hub.Registry{Store: s, Now: func() time.Time { return T0 }}
}

func newOrg(t *testing.T, s hub.Store, cvr string, kind hub.OrgKind) {
	t.Helper()
	setup := hub.SetupSystemRetrieval
	if kind == hub.Authority {
		setup = hub.SetupContactable
	}
	_, err := registry(s).CreateOrg(ctx, hub.Organisation{CVR: cvr, Name: "Org " + cvr, Kind: kind, Setup: setup})
	must(t, err, "CreateOrg "+cvr)
}

// fieldCode is the rule code of a refusal (its first field error's code),
// or its hub code when it has none.
func fieldCode(err error) string {
	var he *hub.Error
	if errors.As(err, &he) {
		if len(he.Fields) > 0 {
			return string(he.Code) + "/" + he.Fields[0].Code
		}
		return string(he.Code)
	}
	return fmt.Sprintf("unexpected error %v", err)
}

// outcomes counts the answers of concurrent attempts: "ok" or the code.
type outcomes struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *outcomes) add(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	if err == nil {
		o.n["ok"]++
		return
	}
	o.n[fieldCode(err)]++
}

// race runs fn(i) for i < attempts at the same instant and returns the
// answers.
func race(fn func(i int) error) map[string]int {
	var o outcomes
	parallel(attempts, func(i int) { o.add(fn(i)) })
	return o.n
}

// wantOutcomes fails unless the answers are exactly want (codes with
// their counts; a code with count 0 is left out of want).
func wantOutcomes(t *testing.T, got, want map[string]int, what string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: answers %v, want %v", what, got, want)
	}
}

// receiverState reads what is stored of org's receivers: the active ones
// per mailbox and the defaults, and checks the rules that hold whatever
// happened: at most maxAuth authority-post and maxCVR CVR-post systems,
// exactly one default when any authority-post system is active (none
// otherwise), and the default an active authority-post system.
func receiverState(t *testing.T, s hub.Store, org string, maxAuth, maxCVR int) (auth, cvr []string, def string) {
	t.Helper()
	ss, err := s.ListSystems(ctx, org)
	must(t, err, "ListSystems")
	var defaults []string
	for _, x := range ss {
		if x.Default {
			defaults = append(defaults, x.ID)
			if !x.Active || x.Mailbox != hub.AuthorityPost || x.Role != hub.RecipientSystem {
				t.Fatalf("default %s is not an active authority-post receiver: %+v", x.ID, x)
			}
		}
		if x.Role != hub.RecipientSystem || !x.Active {
			continue
		}
		if x.Mailbox == hub.CVRPost {
			cvr = append(cvr, x.ID)
		} else {
			auth = append(auth, x.ID)
		}
		// What one system says of itself agrees with the list.
		one, err := s.GetSystem(ctx, x.ID)
		must(t, err, "GetSystem")
		if one.Active != x.Active || one.Default != x.Default {
			t.Fatalf("GetSystem %s: active %v default %v; ListSystems: %v %v", x.ID, one.Active, one.Default, x.Active, x.Default)
		}
	}
	if len(auth) > maxAuth || len(cvr) > maxCVR {
		t.Fatalf("organisation %s has %d authority-post and %d CVR-post receiver systems (at most %d and %d)", org, len(auth), len(cvr), maxAuth, maxCVR)
	}
	switch {
	case len(auth) > 0 && len(defaults) != 1:
		t.Fatalf("organisation %s: %d authority-post systems and defaults %q, want exactly one", org, len(auth), defaults)
	case len(auth) == 0 && len(defaults) != 0:
		t.Fatalf("organisation %s: defaults %q without an authority-post system", org, defaults)
	}
	if len(defaults) == 1 {
		def = defaults[0]
	}
	return auth, cvr, def
}

// register registers a receiver system through the hub's rules.
func register(s hub.Store, org, name string, mb hub.MailboxKind, def bool) (hub.System, error) {
	sys, _, err := registry(s).RegisterSystem(ctx, org, hub.SystemSpec{Name: name, Role: hub.RecipientSystem, Mailbox: mb, Default: def})
	return sys, err
}

func mustRegister(t *testing.T, s hub.Store, org, name string, mb hub.MailboxKind) hub.System {
	t.Helper()
	sys, err := register(s, org, name, mb, false)
	must(t, err, "register "+name)
	return sys
}

func roundOrg(round int) string { return fmt.Sprintf("%08d", 40000000+round) }

var ruleTests = []storeTest{
	{"CreateSystem refuses an active receiver system and UpdateSystem a change of what the receiver rule governs", func(t *testing.T, s hub.Store) {
		wantCode(t, s.CreateSystem(ctx, receiver("r", "12345678", hub.AuthorityPost)), hub.Invalid, "CreateSystem of an active receiver")
		r := join(t, s, receiver("r", "12345678", hub.AuthorityPost))
		snd := system("snd", "12345678", "hash-snd")
		must(t, s.CreateSystem(ctx, snd), "CreateSystem of a sender")
		for _, tc := range []struct {
			name string
			edit func(*hub.System)
		}{
			{"deactivating a receiver", func(x *hub.System) { x.Active = false }},
			{"unmarking the default", func(x *hub.System) { x.Default = false }},
			{"changing the mailbox", func(x *hub.System) { x.Mailbox = hub.CVRPost }},
			{"changing the role", func(x *hub.System) { x.Role = hub.SenderSystem }},
		} {
			got, err := s.GetSystem(ctx, r.ID)
			must(t, err, "GetSystem")
			tc.edit(&got)
			wantCode(t, s.UpdateSystem(ctx, got), hub.Invalid, "UpdateSystem "+tc.name)
		}
		got, _ := s.GetSystem(ctx, snd.ID)
		got.Role = hub.RecipientSystem
		wantCode(t, s.UpdateSystem(ctx, got), hub.Invalid, "UpdateSystem turning a sender into a receiver")
		got, _ = s.GetSystem(ctx, r.ID)
		if !got.Active || !got.Default || got.Version != 1 {
			t.Fatalf("after refused updates: %+v", got)
		}
		got.Name = "Renamed"
		must(t, s.UpdateSystem(ctx, got), "UpdateSystem of the name")
	}},
	{"ChangeReceivers writes the rule's decision, and nothing when the rule refuses", func(t *testing.T, s hub.Store) {
		a := join(t, s, receiver("a", "12345678", hub.AuthorityPost))
		if !a.Active || !a.Default {
			t.Fatalf("first authority-post system as stored: %+v", a)
		}
		b := join(t, s, receiver("b", "12345678", hub.AuthorityPost))
		c := join(t, s, receiver("c", "12345678", hub.CVRPost))
		if b.Default || c.Default {
			t.Fatalf("later systems marked default: %+v %+v", b, c)
		}
		var seen []hub.Receiver
		at := T0.Add(time.Hour)
		// Make b the default and drop c.
		must(t, s.ChangeReceivers(ctx, "12345678", hub.ReceiverChange{At: at, Rule: func(active []hub.Receiver) ([]hub.Receiver, error) {
			seen = append(active[:0:0], active...)
			return []hub.Receiver{{ID: "a", Mailbox: hub.AuthorityPost}, {ID: "b", Mailbox: hub.AuthorityPost, Default: true}}, nil
		}}), "ChangeReceivers")
		sameJSON(t, seen, []hub.Receiver{{ID: "a", Mailbox: hub.AuthorityPost, Default: true}, {ID: "b", Mailbox: hub.AuthorityPost}, {ID: "c", Mailbox: hub.CVRPost}}, "what the rule was given")
		for _, want := range []struct {
			id              string
			active, def     bool
			version         int64
			updatedAtChange bool
		}{{"a", true, false, 2, true}, {"b", true, true, 2, true}, {"c", false, false, 2, true}} {
			got, err := s.GetSystem(ctx, want.id)
			must(t, err, "GetSystem "+want.id)
			if got.Active != want.active || got.Default != want.def || got.Version != want.version || !got.Updated.Equal(at) {
				t.Fatalf("%s after the change: active %v default %v version %d updated %v", want.id, got.Active, got.Default, got.Version, got.Updated)
			}
		}
		refusal := hub.Errorf(hub.Conflict, "no")
		d := receiver("d", "12345678", hub.AuthorityPost)
		err := s.ChangeReceivers(ctx, "12345678", hub.ReceiverChange{Add: &d, At: at, Rule: func([]hub.Receiver) ([]hub.Receiver, error) { return nil, refusal }})
		if err != refusal {
			t.Fatalf("the rule's error comes back unchanged: %v", err)
		}
		_, err = s.GetSystem(ctx, "d")
		wantCode(t, err, hub.NotFound, "a system whose rule refused")
		_, err = s.SystemByToken(ctx, "hash-d")
		wantCode(t, err, hub.NotFound, "the token of a system whose rule refused")
		keepInactive := func([]hub.Receiver) ([]hub.Receiver, error) {
			return []hub.Receiver{{ID: "a", Mailbox: hub.AuthorityPost, Default: true}, {ID: "c", Mailbox: hub.CVRPost}}, nil
		}
		wantCode(t, s.ChangeReceivers(ctx, "12345678", hub.ReceiverChange{At: at, Rule: keepInactive}), hub.Invalid, "a rule keeping an inactive system")
		d2 := receiver("d", "12345678", hub.AuthorityPost)
		leaveOut := func(active []hub.Receiver) ([]hub.Receiver, error) { return active, nil }
		wantCode(t, s.ChangeReceivers(ctx, "12345678", hub.ReceiverChange{Add: &d2, At: at, Rule: leaveOut}), hub.Invalid, "a rule leaving out the added system")
		taken := receiver("e", "12345678", hub.AuthorityPost)
		taken.TokenHash = "hash-a"
		wantCode(t, s.ChangeReceivers(ctx, "12345678", hub.ReceiverChange{Add: &taken, At: at, Rule: admitAll(hub.Receiver{ID: "e", Mailbox: hub.AuthorityPost})}), hub.Conflict, "adding with a taken token")
		again := receiver("a", "12345678", hub.AuthorityPost)
		again.TokenHash = "hash-a2"
		wantCode(t, s.ChangeReceivers(ctx, "12345678", hub.ReceiverChange{Add: &again, At: at, Rule: admitAll(hub.Receiver{ID: "a", Mailbox: hub.AuthorityPost})}), hub.Conflict, "adding a taken ID")
		auth, cvr, def := receiverState(t, s, "12345678", 4, 1)
		sameStrings(t, auth, []string{"a", "b"}, "active authority-post systems")
		sameStrings(t, cvr, nil, "active CVR-post systems")
		if def != "b" {
			t.Fatalf("default %q, want b", def)
		}
		// A system in creation order; deactivated ones stay listed.
		list, _ := s.ListSystems(ctx, "12345678")
		sameStrings(t, ids(list, func(x hub.System) string { return x.ID }), []string{"a", "b", "c"}, "ListSystems")
	}},
	{"16 authority-post registrations at once: four succeed, one of them the default", func(t *testing.T, s hub.Store) {
		for round := 0; round < rounds; round++ {
			org := roundOrg(round)
			newOrg(t, s, org, hub.Authority)
			got := race(func(i int) error {
				_, err := register(s, org, fmt.Sprint("auth ", i), hub.AuthorityPost, false)
				return err
			})
			wantOutcomes(t, got, map[string]int{"ok": 4, "conflict/system.limit.authority.post": attempts - 4}, "authority-post registrations")
			auth, _, _ := receiverState(t, s, org, 4, 1)
			if len(auth) != 4 {
				t.Fatalf("%d authority-post systems stored, 4 registrations answered ok", len(auth))
			}
		}
	}},
	{"16 CVR-post registrations at once: one succeeds", func(t *testing.T, s hub.Store) {
		for round := 0; round < rounds; round++ {
			org := roundOrg(round)
			newOrg(t, s, org, hub.Authority)
			got := race(func(i int) error {
				_, err := register(s, org, fmt.Sprint("cvr ", i), hub.CVRPost, false)
				return err
			})
			wantOutcomes(t, got, map[string]int{"ok": 1, "conflict/system.limit.cvr.post": attempts - 1}, "CVR-post registrations")
			if _, cvr, _ := receiverState(t, s, org, 4, 1); len(cvr) != 1 {
				t.Fatalf("%d CVR-post systems stored", len(cvr))
			}
		}
	}},
	{"16 registrations of a company's receiver system at once: one succeeds", func(t *testing.T, s hub.Store) {
		for round := 0; round < rounds; round++ {
			org := roundOrg(round)
			newOrg(t, s, org, hub.Company)
			got := race(func(i int) error {
				_, err := register(s, org, fmt.Sprint("erp ", i), "", false)
				return err
			})
			wantOutcomes(t, got, map[string]int{"ok": 1, "conflict/system.limit.company": attempts - 1}, "company registrations")
			if auth, cvr, _ := receiverState(t, s, org, 0, 1); len(auth)+len(cvr) != 1 {
				t.Fatalf("company has %d receiver systems", len(auth)+len(cvr))
			}
		}
	}},
	{"12 authority-post and 4 CVR-post registrations at once: at most five systems, one default", func(t *testing.T, s hub.Store) {
		for round := 0; round < rounds; round++ {
			org := roundOrg(round)
			newOrg(t, s, org, hub.Authority)
			got := race(func(i int) error {
				mb := hub.AuthorityPost
				if i%4 == 3 {
					mb = hub.CVRPost
				}
				_, err := register(s, org, fmt.Sprint("sys ", i), mb, false)
				return err
			})
			wantOutcomes(t, got, map[string]int{"ok": 5, "conflict/system.limit.authority.post": 8, "conflict/system.limit.cvr.post": 3}, "mixed registrations")
			auth, cvr, _ := receiverState(t, s, org, 4, 1)
			if len(auth) != 4 || len(cvr) != 1 {
				t.Fatalf("stored %d authority-post and %d CVR-post systems", len(auth), len(cvr))
			}
		}
	}},
	{"16 registrations asking to be the default at once: one succeeds", func(t *testing.T, s hub.Store) {
		for round := 0; round < rounds; round++ {
			org := roundOrg(round)
			newOrg(t, s, org, hub.Authority)
			var mu sync.Mutex
			var winner string
			got := race(func(i int) error {
				sys, err := register(s, org, fmt.Sprint("default ", i), hub.AuthorityPost, true)
				if err == nil {
					mu.Lock()
					winner = sys.ID
					mu.Unlock()
				}
				return err
			})
			// The first one is the default; the others find a default
			// (three of them while there is room, then the limit).
			if got["ok"] != 1 || got["ok"]+got["conflict/system.default.exists"]+got["conflict/system.limit.authority.post"] != attempts {
				t.Fatalf("registrations asking to be the default: %v", got)
			}
			auth, _, def := receiverState(t, s, org, 4, 1)
			if len(auth) != 1 || def != winner {
				t.Fatalf("stored %q with default %q; the registration answered ok was %s", auth, def, winner)
			}
		}
	}},
	{"16 MakeDefault calls at once leave exactly one default", func(t *testing.T, s hub.Store) {
		for round := 0; round < rounds; round++ {
			org := roundOrg(round)
			newOrg(t, s, org, hub.Authority)
			var sys []string
			for i := 0; i < 4; i++ {
				sys = append(sys, mustRegister(t, s, org, fmt.Sprint("sys ", i), hub.AuthorityPost).ID)
			}
			cvr := mustRegister(t, s, org, "cvr", hub.CVRPost).ID
			got := race(func(i int) error {
				id := sys[i%4]
				if i%8 == 7 {
					id = cvr // not eligible
				}
				_, err := registry(s).MakeDefault(ctx, org, id)
				return err
			})
			wantOutcomes(t, got, map[string]int{"ok": attempts - 2, "conflict/system.default.not.eligible": 2}, "MakeDefault")
			receiverState(t, s, org, 4, 1)
		}
	}},
	{"Deactivating the default while others register leaves exactly one default", func(t *testing.T, s hub.Store) {
		for round := 0; round < rounds; round++ {
			org := roundOrg(round)
			newOrg(t, s, org, hub.Authority)
			d := mustRegister(t, s, org, "default", hub.AuthorityPost)
			var mu sync.Mutex
			registered := 0
			got := race(func(i int) error {
				if i%2 == 0 {
					_, err := registry(s).DeactivateSystem(ctx, org, d.ID)
					return err
				}
				_, err := register(s, org, fmt.Sprint("new ", i), hub.AuthorityPost, false)
				if err == nil {
					mu.Lock()
					registered++
					mu.Unlock()
				}
				return err
			})
			for code := range got {
				switch code {
				case "ok", "conflict/system.default.required", "conflict/system.limit.authority.post":
				default:
					t.Fatalf("unexpected answer %s: %v", code, got)
				}
			}
			auth, _, _ := receiverState(t, s, org, 4, 1)
			dActive := strings.Contains(strings.Join(auth, ","), d.ID)
			want := registered
			if dActive {
				want++
			}
			if len(auth) != want {
				t.Fatalf("stored %d authority-post systems; %d registrations answered ok, the first default active: %v", len(auth), registered, dActive)
			}
		}
	}},
	{"Deactivating the default while another is made the default leaves exactly one default", func(t *testing.T, s hub.Store) {
		for round := 0; round < rounds; round++ {
			org := roundOrg(round)
			newOrg(t, s, org, hub.Authority)
			d := mustRegister(t, s, org, "default", hub.AuthorityPost)
			x := mustRegister(t, s, org, "other", hub.AuthorityPost)
			got := race(func(i int) error {
				var err error
				switch i % 2 {
				case 0:
					_, err = registry(s).DeactivateSystem(ctx, org, d.ID)
				case 1:
					_, err = registry(s).MakeDefault(ctx, org, x.ID)
				}
				return err
			})
			for code := range got {
				if code != "ok" && code != "conflict/system.default.required" {
					t.Fatalf("unexpected answer %s: %v", code, got)
				}
			}
			if got["ok"] < attempts/2 {
				t.Fatalf("every MakeDefault succeeds: %v", got)
			}
			auth, _, def := receiverState(t, s, org, 4, 1)
			if def != x.ID {
				t.Fatalf("default %s, want %s (made the default)", def, x.ID)
			}
			// d may be deactivated only once x was the default.
			if len(auth) == 1 && got["conflict/system.default.required"] == attempts/2 {
				t.Fatalf("d inactive although every deactivation was refused: %v", got)
			}
		}
	}},
	{"A contact-point code names one contact point of an organisation", func(t *testing.T, s hub.Store) {
		kle := hub.ContactPointCode{Type: hub.CodeKLE, Code: "02.00"}
		point := func(id, org string, codes ...hub.ContactPointCode) hub.ContactPoint {
			return hub.ContactPoint{ID: id, OrgCVR: org, Name: "Point " + id, SystemID: "a", Codes: codes, Active: true, Created: T0}
		}
		must(t, s.PutContactPoint(ctx, point("p1", "12345678", kle)), "p1 with the code")
		err := s.PutContactPoint(ctx, point("p2", "12345678", hub.ContactPointCode{Type: hub.CodeFORM, Code: "x"}, kle))
		if fieldCode(err) != "conflict/contact.point.code.taken" {
			t.Fatalf("p2 with p1's code: %v", err)
		}
		_, err = s.GetContactPoint(ctx, "p2")
		wantCode(t, err, hub.NotFound, "the refused point")
		must(t, s.PutContactPoint(ctx, point("p2", "12345678", hub.ContactPointCode{Type: hub.CodeFORM, Code: "x"})), "p2 without it")
		must(t, s.PutContactPoint(ctx, point("q1", "87654321", kle)), "another organisation's point with the code")
		must(t, s.PutContactPoint(ctx, point("p3", "12345678", hub.ContactPointCode{Type: hub.CodeGLN, Code: "02.00"})), "the same value of another type")
		p1, _ := s.GetContactPoint(ctx, "p1")
		p1.Name = "Renamed"
		must(t, s.PutContactPoint(ctx, p1), "p1 keeping its code")
		p2, _ := s.GetContactPoint(ctx, "p2")
		p2.Codes = append(p2.Codes, kle)
		if err := s.PutContactPoint(ctx, p2); fieldCode(err) != "conflict/contact.point.code.taken" {
			t.Fatalf("p2 updated to p1's code: %v", err)
		}
		p1, _ = s.GetContactPoint(ctx, "p1")
		p1.Codes = nil
		must(t, s.PutContactPoint(ctx, p1), "p1 dropping its code")
		p2, _ = s.GetContactPoint(ctx, "p2")
		p2.Codes = append(p2.Codes, kle)
		must(t, s.PutContactPoint(ctx, p2), "p2 taking the dropped code")
		must(t, s.DeleteContactPoint(ctx, "12345678", "p2"), "delete p2")
		must(t, s.PutContactPoint(ctx, point("p4", "12345678", kle)), "p4 taking the deleted point's code")
	}},
	{"16 contact points with one code at once: one is stored", func(t *testing.T, s hub.Store) {
		for round := 0; round < rounds; round++ {
			org := roundOrg(round)
			code := hub.ContactPointCode{Type: hub.CodeKLE, Code: fmt.Sprintf("%02d.00", round)}
			var mu sync.Mutex
			var winner string
			got := race(func(i int) error {
				id := fmt.Sprintf("p-%d-%d", round, i)
				err := s.PutContactPoint(ctx, hub.ContactPoint{ID: id, OrgCVR: org, Name: id, SystemID: "a", Codes: []hub.ContactPointCode{code}, Active: true, Created: T0})
				if err == nil {
					mu.Lock()
					winner = id
					mu.Unlock()
				}
				return err
			})
			wantOutcomes(t, got, map[string]int{"ok": 1, "conflict/contact.point.code.taken": attempts - 1}, "contact points with one code")
			list, err := s.ListContactPoints(ctx, org)
			must(t, err, "ListContactPoints")
			if len(list) != 1 || list[0].ID != winner {
				t.Fatalf("stored %v, the point answered ok was %s", ids(list, func(p hub.ContactPoint) string { return p.ID }), winner)
			}
		}
	}},
	{"16 writers updating one organisation at once: every update answered ok is a version", func(t *testing.T, s hub.Store) {
		// Optimistic concurrency is an "exactly one" rule too: of the
		// updates made on one Version exactly one wins, so the stored
		// Version counts exactly the updates answered ok, however stale
		// the Version a writer read.
		must(t, s.CreateOrg(ctx, org("12345678")), "CreateOrg")
		first, _ := s.GetOrg(ctx, "12345678")
		var mu sync.Mutex
		oks := 0
		parallel(attempts, func(i int) {
			for try := 0; try < 4; try++ {
				o, err := s.GetOrg(ctx, "12345678")
				if err != nil {
					t.Error(err)
					return
				}
				o.Name = fmt.Sprintf("writer %d try %d", i, try)
				if err := s.UpdateOrg(ctx, o); err == nil {
					mu.Lock()
					oks++
					mu.Unlock()
				} else if !hub.Is(err, hub.Conflict) {
					t.Error(err)
				}
			}
		})
		got, err := s.GetOrg(ctx, "12345678")
		must(t, err, "GetOrg")
		if got.Version != first.Version+int64(oks) {
			t.Fatalf("version %d after %d updates answered ok (from %d)", got.Version, oks, first.Version)
		}
	}},
	{"16 AddPolicy calls of one line at once: one succeeds", func(t *testing.T, s hub.Store) {
		for round := 0; round < rounds; round++ {
			line := hub.PolicyLine{Ptype: "g", V: []string{fmt.Sprint("user", round), "ORGANISATION_ADMINISTRATOR", "12345678"}}
			got := race(func(int) error { return s.AddPolicy(ctx, line) })
			wantOutcomes(t, got, map[string]int{"ok": 1, "conflict": attempts - 1}, "AddPolicy")
			lines, err := s.LoadPolicies(ctx)
			must(t, err, "LoadPolicies")
			if len(lines) != round+1 {
				t.Fatalf("%d policy lines after %d rounds", len(lines), round+1)
			}
		}
	}},
	{"16 CreateOrg calls of one CVR at once: one succeeds", func(t *testing.T, s hub.Store) {
		for round := 0; round < rounds; round++ {
			org := roundOrg(round)
			got := race(func(i int) error {
				return s.CreateOrg(ctx, hub.Organisation{CVR: org, Name: fmt.Sprint("Org ", i), Kind: hub.Authority, Setup: hub.SetupContactable, Active: true, Version: 1})
			})
			wantOutcomes(t, got, map[string]int{"ok": 1, "conflict": attempts - 1}, "CreateOrg")
			list, err := s.ListOrgs(ctx)
			must(t, err, "ListOrgs")
			if len(list) != round+1 {
				t.Fatalf("%d organisations stored after %d rounds", len(list), round+1)
			}
		}
	}},
	{"16 CreateUser calls of one id at once: one succeeds", func(t *testing.T, s hub.Store) {
		for round := 0; round < rounds; round++ {
			id := fmt.Sprint("user", round)
			var mu sync.Mutex
			var winner string
			got := race(func(i int) error {
				name := fmt.Sprint("User ", i)
				err := s.CreateUser(ctx, hub.User{ID: id, Name: name, PasswordHash: "$argon2id$" + name, Created: T0, Active: true})
				if err == nil {
					mu.Lock()
					winner = name
					mu.Unlock()
				}
				return err
			})
			wantOutcomes(t, got, map[string]int{"ok": 1, "conflict": attempts - 1}, "CreateUser")
			u, err := s.GetUser(ctx, id)
			must(t, err, "GetUser")
			if u.Name != winner || u.PasswordHash != "$argon2id$"+winner {
				t.Fatalf("stored user %q, the one answered ok was %q", u.Name, winner)
			}
		}
	}},
	{"16 systems with one token hash at once: one is created", func(t *testing.T, s hub.Store) {
		for round := 0; round < rounds; round++ {
			hash := fmt.Sprint("hash-", round)
			var mu sync.Mutex
			var winner string
			got := race(func(i int) error {
				id := fmt.Sprintf("sys-%d-%d", round, i)
				err := s.CreateSystem(ctx, system(id, "12345678", hash))
				if err == nil {
					mu.Lock()
					winner = id
					mu.Unlock()
				}
				return err
			})
			wantOutcomes(t, got, map[string]int{"ok": 1, "conflict": attempts - 1}, "CreateSystem with one token")
			sys, err := s.SystemByToken(ctx, hash)
			must(t, err, "SystemByToken")
			if sys.ID != winner {
				t.Fatalf("token belongs to %s, the one answered ok was %s", sys.ID, winner)
			}
			list, _ := s.ListSystems(ctx, "12345678")
			if len(list) != round+1 {
				t.Fatalf("%d systems stored after %d rounds", len(list), round+1)
			}
		}
	}},
}
