package storagetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

func ckey(org, day string) hub.CounterKey {
	return hub.CounterKey{Org: org, Day: day, MessageType: "DIGITALPOST", Channel: "SYSTEM", SystemID: "a", Direction: "RECEIVED", SizeBucket: "<100K"}
}

var miscTests = []storeTest{
	{"AddCounters is exact under concurrency", func(t *testing.T, s hub.Store) {
		const goroutines, each = 8, 500
		var failed atomic.Int64
		parallel(goroutines, func(i int) {
			for j := 0; j < each; j++ {
				ds := []hub.Counter{{Key: ckey("11111111", "2026-03-02"), Count: 1, Bytes: 10}}
				if j%2 == 0 {
					ds = append(ds, hub.Counter{Key: ckey("22222222", "2026-03-02"), Count: 2, Bytes: 1})
				}
				if err := s.AddCounters(ctx, ds); err != nil {
					failed.Add(1)
				}
			}
		})
		if failed.Load() > 0 {
			t.Fatalf("%d AddCounters calls failed", failed.Load())
		}
		got, err := s.ReadCounters(ctx, hub.CounterQuery{Org: "11111111"})
		must(t, err, "ReadCounters")
		if len(got) != 1 || got[0].Count != goroutines*each || got[0].Bytes != 10*goroutines*each {
			t.Fatalf("counters %+v, want count %d", got, goroutines*each)
		}
		sameJSON(t, got[0].Key, ckey("11111111", "2026-03-02"), "counter key")
		got, _ = s.ReadCounters(ctx, hub.CounterQuery{Org: "22222222"})
		if len(got) != 1 || got[0].Count != goroutines*each || got[0].Bytes != goroutines*each/2 {
			t.Fatalf("second cell %+v", got)
		}
	}},
	{"ReadCounters selects an organisation (or all) over an inclusive day range", func(t *testing.T, s hub.Store) {
		for _, d := range []string{"2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"} {
			must(t, s.AddCounters(ctx, []hub.Counter{{Key: ckey("11111111", d), Count: 1}, {Key: ckey("2", d), Count: 5}}), "AddCounters")
		}
		days := func(cs []hub.Counter) []string {
			return sorted(ids(cs, func(c hub.Counter) string { return c.Key.Org + "/" + c.Key.Day }))
		}
		got, err := s.ReadCounters(ctx, hub.CounterQuery{Org: "11111111", FromDay: "2026-03-02", ToDay: "2026-03-03"})
		must(t, err, "ReadCounters")
		sameStrings(t, days(got), []string{"11111111/2026-03-02", "11111111/2026-03-03"}, "one org, two days")
		got, _ = s.ReadCounters(ctx, hub.CounterQuery{FromDay: "2026-03-04"})
		sameStrings(t, days(got), []string{"11111111/2026-03-04", "2/2026-03-04"}, "all orgs, from a day")
		got, _ = s.ReadCounters(ctx, hub.CounterQuery{Org: "2", ToDay: "2026-03-01"})
		sameStrings(t, days(got), []string{"2/2026-03-01"}, "one org, to a day")
	}},
	{"Policies: AddPolicy conflicts on an existing line and the stamp changes on every change", func(t *testing.T, s hub.Store) {
		p := hub.PolicyLine{Ptype: "p", V: []string{"admin", "11111111", "systems", "write"}}
		s0, err := s.PolicyStamp(ctx)
		must(t, err, "PolicyStamp")
		must(t, s.AddPolicy(ctx, p), "AddPolicy")
		wantCode(t, s.AddPolicy(ctx, p), hub.Conflict, "AddPolicy again")
		must(t, s.AddPolicy(ctx, hub.PolicyLine{Ptype: "g", V: []string{"alice", "admin", "11111111"}}), "AddPolicy g")
		s1, _ := s.PolicyStamp(ctx)
		if s1 == s0 {
			t.Fatalf("stamp unchanged after AddPolicy")
		}
		lines, err := s.LoadPolicies(ctx)
		must(t, err, "LoadPolicies")
		sameStrings(t, sorted(ids(lines, hub.PolicyLine.Key)), sorted([]string{p.Key(), "g\x1falice\x1fadmin\x1f11111111"}), "policies")
		must(t, s.RemovePolicy(ctx, p), "RemovePolicy")
		s2, _ := s.PolicyStamp(ctx)
		if s2 == s1 || s2 == s0 {
			t.Fatalf("stamp %q after RemovePolicy (before %q, %q)", s2, s1, s0)
		}
		wantCode(t, s.RemovePolicy(ctx, p), hub.NotFound, "RemovePolicy of absent")
		if s3, _ := s.PolicyStamp(ctx); s3 != s2 {
			t.Fatalf("stamp %q after a RemovePolicy that removed nothing, want %q", s3, s2)
		}
		lines, _ = s.LoadPolicies(ctx)
		if len(lines) != 1 {
			t.Fatalf("%d lines after remove", len(lines))
		}
	}},
	{"Users: CreateUser conflicts, PutUser needs an existing user", func(t *testing.T, s hub.Store) {
		u := hub.User{ID: "alice", Name: "Alice", Email: "a@example.dk", Org: "11111111", PasswordHash: "$argon2id$x", Created: T0, Active: true}
		must(t, s.CreateUser(ctx, u), "CreateUser")
		wantCode(t, s.CreateUser(ctx, u), hub.Conflict, "CreateUser again")
		wantCode(t, s.PutUser(ctx, hub.User{ID: "bob"}), hub.NotFound, "PutUser of absent")
		_, err := s.GetUser(ctx, "bob")
		wantCode(t, err, hub.NotFound, "GetUser of absent")
		u.Name = "Alice B"
		must(t, s.PutUser(ctx, u), "PutUser")
		got, err := s.GetUser(ctx, "alice")
		must(t, err, "GetUser")
		sameJSON(t, got, u, "user")
		if got.PasswordHash != u.PasswordHash {
			t.Fatalf("PasswordHash not kept")
		}
		list, err := s.ListUsers(ctx)
		must(t, err, "ListUsers")
		if len(list) != 1 {
			t.Fatalf("%d users", len(list))
		}
	}},
	{"Session generations start at 0, only go up, and a bump ends everything read before it, under concurrency", func(t *testing.T, s hub.Store) {
		g, err := s.SessionGeneration(ctx, "alice")
		must(t, err, "SessionGeneration of a user never bumped")
		if g != 0 {
			t.Fatalf("fresh generation %d, want 0", g)
		}
		g1, err := s.BumpSessionGeneration(ctx, "alice")
		must(t, err, "BumpSessionGeneration")
		if got, _ := s.SessionGeneration(ctx, "alice"); got != g1 || g1 == 0 {
			t.Fatalf("after a bump: generation %d, bump answered %d", got, g1)
		}
		if got, _ := s.SessionGeneration(ctx, "bob"); got != 0 {
			t.Fatalf("bob's generation %d moved with alice's", got)
		}
		// Each of 16 concurrent bumps must leave the generation above what
		// was read before it started, and no reader ever sees it go down.
		var mu sync.Mutex
		var bad []string
		parallel(16, func(i int) {
			before, err := s.SessionGeneration(ctx, "alice")
			if err != nil {
				t.Errorf("SessionGeneration: %v", err)
				return
			}
			after, err := s.BumpSessionGeneration(ctx, "alice")
			if err != nil {
				t.Errorf("BumpSessionGeneration: %v", err)
				return
			}
			now, err := s.SessionGeneration(ctx, "alice")
			if err != nil {
				t.Errorf("SessionGeneration: %v", err)
				return
			}
			if after <= before || now < after {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("read %d, bumped to %d, then read %d", before, after, now))
				mu.Unlock()
			}
		})
		if len(bad) > 0 {
			t.Fatalf("a bump did not end what was read before it: %v", bad)
		}
		last, _ := s.SessionGeneration(ctx, "alice")
		if last <= g1 {
			t.Fatalf("after 16 more bumps the generation is %d (was %d)", last, g1)
		}
	}},
	{"AcquireLock is exclusive among concurrent holders", func(t *testing.T, s hub.Store) {
		for round := 0; round < 5; round++ {
			name := "sealer-" + n(round)
			var mu sync.Mutex
			winners := 0
			parallel(8, func(i int) {
				ok, err := s.AcquireLock(ctx, name, "instance-"+n(i), time.Minute, T0)
				if err != nil {
					t.Errorf("AcquireLock: %v", err)
				}
				if ok {
					mu.Lock()
					winners++
					mu.Unlock()
				}
			})
			if winners != 1 {
				t.Fatalf("%s: %d holders, want 1", name, winners)
			}
		}
	}},
	{"An expired lock is taken over by exactly one of many at once, epoch after epoch; a live one only its holder renews", func(t *testing.T, s hub.Store) {
		// Twelve epochs (more than any backend keeps of a lock's history):
		// each round the last holder's lease has expired, and it races
		// seven others for the lock; then, while the new lease lives, the
		// new holder renews while the seven try again.
		holder := ""
		for round := 0; round < 12; round++ {
			at := T0.Add(time.Duration(round) * 2 * time.Minute)
			racers := make([]string, 8)
			for i := range racers {
				racers[i] = "instance-" + n(round) + "-" + n(i)
			}
			if holder != "" {
				racers[0] = holder
			}
			won := make([]bool, len(racers))
			parallel(len(racers), func(i int) {
				ok, err := s.AcquireLock(ctx, "taken-over", racers[i], time.Minute, at)
				if err != nil {
					t.Errorf("round %d: AcquireLock: %v", round, err)
				}
				won[i] = ok
			})
			var winners []string
			for i, ok := range won {
				if ok {
					winners = append(winners, racers[i])
				}
			}
			if len(winners) != 1 {
				t.Fatalf("round %d: holders %v of an expired lock, want one", round, winners)
			}
			holder = winners[0]
			others := []string{holder}
			for _, r := range racers {
				if r != holder {
					others = append(others, r)
				}
			}
			parallel(len(others), func(i int) {
				h := others[i]
				ok, err := s.AcquireLock(ctx, "taken-over", h, time.Minute, at.Add(30*time.Second))
				if err != nil {
					t.Errorf("round %d: AcquireLock: %v", round, err)
				}
				if ok != (h == holder) {
					t.Errorf("round %d: %s got %v while %s's lease lived", round, h, ok, holder)
				}
			})
		}
	}},
	{"Locks: the holder renews, another takes over after expiry, release frees it", func(t *testing.T, s hub.Store) {
		lock := func(holder string, at time.Time) bool {
			t.Helper()
			ok, err := s.AcquireLock(ctx, "sealer", holder, time.Minute, at)
			must(t, err, "AcquireLock")
			return ok
		}
		if !lock("a", T0) {
			t.Fatalf("a could not take a free lock")
		}
		if lock("b", T0.Add(30*time.Second)) {
			t.Fatalf("b took a live lock")
		}
		if !lock("a", T0.Add(50*time.Second)) {
			t.Fatalf("a could not renew")
		}
		if lock("b", T0.Add(61*time.Second)) {
			t.Fatalf("b took a renewed lock")
		}
		if !lock("b", T0.Add(111*time.Second)) {
			t.Fatalf("b could not take an expired lock")
		}
		must(t, s.ReleaseLock(ctx, "sealer", "a"), "ReleaseLock by a non-holder")
		if lock("a", T0.Add(112*time.Second)) {
			t.Fatalf("a non-holder's release freed the lock")
		}
		must(t, s.ReleaseLock(ctx, "sealer", "b"), "ReleaseLock")
		if !lock("a", T0.Add(113*time.Second)) {
			t.Fatalf("a could not take a released lock")
		}
	}},
	{"Repair is idempotent and leaves a consistent store as it is", func(t *testing.T, s hub.Store) {
		ds := fillQueue(t, s, "system/a", 4)
		_, err := s.Lease(ctx, ds[0].ID, "p1", ttl, T0)
		must(t, err, "Lease")
		_, err = s.Ack(ctx, ds[1].ID, T0)
		must(t, err, "Ack")
		must(t, s.Park(ctx, ds[2].ID, "x"), "Park")
		before, err := s.ListQueue(ctx, "system/a", 0, 10, false, T0)
		must(t, err, "ListQueue")
		if len(before) == 0 {
			t.Fatal("nothing queued before Repair")
		}
		for i := 0; i < 2; i++ {
			must(t, s.Repair(ctx, T0.Add(time.Hour)), "Repair")
		}
		after, err := s.ListQueue(ctx, "system/a", 0, 10, false, T0)
		must(t, err, "ListQueue")
		sameJSON(t, after, before, "queue after Repair")
		if n, err := s.CountQueue(ctx, "system/a"); err != nil || n != 2 {
			t.Fatalf("CountQueue after Repair = %d, want 2", n)
		}
		_, err = s.Lease(ctx, ds[0].ID, "p2", ttl, T0.Add(time.Second))
		wantCode(t, err, hub.Conflict, "live lease after Repair")
		for _, d := range ds {
			_, err := s.GetMessage(ctx, d.MessageUUID)
			must(t, err, "GetMessage after Repair")
		}
		must(t, s.Ping(ctx), "Ping")
	}},
}
