package storagetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

// lowerLimit makes l.Max n for the rest of t (the contract's cases run
// one at a time), so that a case fills an organisation's places with a
// few records instead of a thousand.
func lowerLimit(t *testing.T, l *hub.OrgLimit, n int) {
	old := l.Max
	l.Max = n
	t.Cleanup(func() { l.Max = old })
}

// limitedKind is one kind of record an organisation has a bounded number
// of, as the contract drives it: add (a new record i of org), replace (an
// existing one), del and count.
type limitedKind struct {
	name    string
	limit   *hub.OrgLimit
	add     func(s hub.Store, org string, i int) error
	replace func(s hub.Store, org string, i int) error
	del     func(s hub.Store, org string, i int) error // nil: never deleted
	count   func(s hub.Store, org string) (int, error)
}

func limitID(kind, org string, i int) string { return fmt.Sprintf("%s-%s-%d", kind, org, i) }

var limitedKinds = []limitedKind{
	{name: "routing rules", limit: &hub.RulesLimit,
		add: func(s hub.Store, org string, i int) error {
			return s.PutRoutingRule(ctx, hub.RoutingRule{ID: limitID("rule", org, i), OrgCVR: org, Priority: i, Field: "KLE", Value: "00.*", SystemID: "a", Created: T0})
		},
		replace: func(s hub.Store, org string, i int) error {
			return s.PutRoutingRule(ctx, hub.RoutingRule{ID: limitID("rule", org, i), OrgCVR: org, Priority: i, Field: "FORM", Value: "x", SystemID: "a", Created: T0})
		},
		del: func(s hub.Store, org string, i int) error {
			return s.DeleteRoutingRule(ctx, org, limitID("rule", org, i))
		},
		count: func(s hub.Store, org string) (int, error) {
			rs, err := s.ListRoutingRules(ctx, org)
			return len(rs), err
		}},
	{name: "contact groups", limit: &hub.ContactGroupsLimit,
		add: func(s hub.Store, org string, i int) error {
			return s.PutContactGroup(ctx, hub.ContactGroup{ID: limitID("group", org, i), OrgCVR: org, Name: "Group", Created: T0})
		},
		replace: func(s hub.Store, org string, i int) error {
			return s.PutContactGroup(ctx, hub.ContactGroup{ID: limitID("group", org, i), OrgCVR: org, Name: "Renamed", Created: T0, Version: 1})
		},
		del: func(s hub.Store, org string, i int) error {
			return s.DeleteContactGroup(ctx, org, limitID("group", org, i))
		},
		count: func(s hub.Store, org string) (int, error) {
			gs, err := s.ListContactGroups(ctx, org)
			return len(gs), err
		}},
	{name: "contact points", limit: &hub.ContactPointsLimit,
		add: func(s hub.Store, org string, i int) error {
			return s.PutContactPoint(ctx, hub.ContactPoint{ID: limitID("point", org, i), OrgCVR: org, Name: "Point", SystemID: "a", Active: true, Created: T0,
				Codes: []hub.ContactPointCode{{Type: "KLE", Code: fmt.Sprint("00.0", i)}}})
		},
		replace: func(s hub.Store, org string, i int) error {
			return s.PutContactPoint(ctx, hub.ContactPoint{ID: limitID("point", org, i), OrgCVR: org, Name: "Renamed", SystemID: "a", Active: true, Created: T0, Version: 1})
		},
		del: func(s hub.Store, org string, i int) error {
			return s.DeleteContactPoint(ctx, org, limitID("point", org, i))
		},
		count: func(s hub.Store, org string) (int, error) {
			ps, err := s.ListContactPoints(ctx, org)
			return len(ps), err
		}},
	{name: "systems", limit: &hub.SystemsLimit,
		add: func(s hub.Store, org string, i int) error {
			id := limitID("sys", org, i)
			if i%2 == 1 {
				// Receiver systems count too.
				sys := receiver(id, org, hub.AuthorityPost)
				return s.ChangeReceivers(ctx, org, hub.ReceiverChange{Add: &sys, At: T0, Rule: admitAll(hub.Receiver{ID: id, Mailbox: hub.AuthorityPost})})
			}
			return s.CreateSystem(ctx, system(id, org, "hash-"+id))
		},
		replace: func(s hub.Store, org string, i int) error {
			sys, err := s.GetSystem(ctx, limitID("sys", org, i))
			if err != nil {
				return err
			}
			sys.Name = "Renamed"
			return s.UpdateSystem(ctx, sys)
		},
		count: func(s hub.Store, org string) (int, error) {
			ss, err := s.ListSystems(ctx, org)
			return len(ss), err
		}},
}

func wantCount(t *testing.T, k limitedKind, s hub.Store, org string, want int) {
	t.Helper()
	n, err := k.count(s, org)
	must(t, err, "count "+k.name)
	if n != want {
		t.Fatalf("%s of %s: %d stored, want %d", k.name, org, n, want)
	}
}

// limitTests: an organisation has at most hub.*Limit.Max systems, routing
// rules, contact groups and contact points, checked in the write that
// adds one, so that concurrent additions cannot pass the bound together.
var limitTests = []storeTest{
	{"An organisation's records of each kind are bounded: the next is Conflict, replacing is not, a deleted record's place is free again", func(t *testing.T, s hub.Store) {
		const max = 3
		for _, k := range limitedKinds {
			lowerLimit(t, k.limit, max)
			for i := 0; i < max; i++ {
				must(t, k.add(s, "12345678", i), fmt.Sprint("add ", k.name, " ", i))
			}
			err := k.add(s, "12345678", max)
			if got := fieldCode(err); got != "conflict/"+k.limit.Code {
				t.Fatalf("%s beyond the bound: %s (%v), want conflict/%s", k.name, got, err, k.limit.Code)
			}
			wantCount(t, k, s, "12345678", max)
			must(t, k.replace(s, "12345678", 0), "replace one of "+k.name+" at the bound")
			// Another organisation has places of its own.
			must(t, k.add(s, "87654321", 0), "add "+k.name+" of another organisation")
			if k.del == nil {
				continue
			}
			must(t, k.del(s, "12345678", 1), "delete one of "+k.name)
			must(t, k.add(s, "12345678", max), "add "+k.name+" in the freed place")
			wantCount(t, k, s, "12345678", max)
			err = k.add(s, "12345678", max+1)
			if got := fieldCode(err); got != "conflict/"+k.limit.Code {
				t.Fatalf("%s beyond the bound again: %s (%v)", k.name, got, err)
			}
		}
	}},
	{"Concurrent additions to an organisation with three free places: three are stored, the others are Conflict", func(t *testing.T, s hub.Store) {
		for _, k := range limitedKinds {
			lowerLimit(t, k.limit, 5)
			for i := 0; i < 2; i++ {
				must(t, k.add(s, "12345678", i), fmt.Sprint("add ", k.name, " ", i))
			}
			got := race(func(i int) error { return k.add(s, "12345678", 2+i) })
			wantOutcomes(t, got, map[string]int{"ok": 3, "conflict/" + k.limit.Code: attempts - 3}, k.name+" added at once")
			wantCount(t, k, s, "12345678", 5)
		}
	}},
}

// keyTests: a write that names a delivery twice, or an identifier that is
// not valid UTF-8, is refused whole before anything is stored (bolt used
// to store one record indexed twice, which wedged the queue once it was
// acknowledged, and to replay a non-UTF-8 UUID under another key).
var keyTests = []storeTest{
	{"PutMessage and AddDeliveries naming a delivery twice, or with an identifier that is not UTF-8, are Invalid and store nothing", func(t *testing.T, s hub.Store) {
		d := Delivery("m1", "system/a", T0)
		err := s.PutMessage(ctx, Message("m1", []byte("x"), T0), []hub.Delivery{d, d}, Receipt("m1", T0))
		wantCode(t, err, hub.Invalid, "PutMessage with one delivery twice")
		_, err = s.GetMessage(ctx, "m1")
		wantCode(t, err, hub.NotFound, "GetMessage after the refusal")
		bad := "m-\xff"
		err = s.PutMessage(ctx, Message(bad, []byte("x"), T0), []hub.Delivery{Delivery(bad, "system/a", T0)}, Receipt(bad, T0))
		wantCode(t, err, hub.Invalid, "PutMessage of a UUID that is not UTF-8")
		if n, err := s.CountQueue(ctx, "system/a"); err != nil || n != 0 {
			t.Fatalf("queue holds %d (%v) after the refusals", n, err)
		}
		ds := putMsg(t, s, "m2", T0, "system/a")
		add := Delivery("m2", "system/b", T0)
		wantCode(t, s.AddDeliveries(ctx, []hub.Delivery{add, add}), hub.Invalid, "AddDeliveries with one delivery twice")
		if n, err := s.CountQueue(ctx, "system/b"); err != nil || n != 0 {
			t.Fatalf("system/b holds %d (%v) after the refusal", n, err)
		}
		// What was stored before is whole: acknowledged, the queue is empty
		// and claims nothing.
		_, err = s.Ack(ctx, ds[0].ID, T0)
		must(t, err, "Ack")
		_, err = s.ClaimNext(ctx, "system/a", "p", time.Minute, T0)
		wantCode(t, err, hub.NotFound, "ClaimNext of the emptied queue")
	}},
}

// codeTwiceTests: a contact point whose list names one code twice is
// stored as bolt always stored it (MongoDB's code claims refused the second
// claim of the same code by the same put for good; found by a review).
var codeTwiceTests = []storeTest{
	{"PutContactPoint listing one code twice stores the point, which holds the code", func(t *testing.T, s hub.Store) {
		c := hub.ContactPointCode{Type: hub.CodeKLE, Code: "00.01"}
		p := hub.ContactPoint{ID: "p1", OrgCVR: "12345678", Name: "P", SystemID: "a", Codes: []hub.ContactPointCode{c, c}, Created: T0}
		must(t, s.PutContactPoint(ctx, p), "PutContactPoint")
		other := hub.ContactPoint{ID: "p2", OrgCVR: "12345678", Name: "Q", SystemID: "a", Codes: []hub.ContactPointCode{c}, Created: T0}
		if err := s.PutContactPoint(ctx, other); !hub.Is(err, hub.Conflict) {
			t.Fatalf("another point with the code: %v, want Conflict", err)
		}
	}},
}
