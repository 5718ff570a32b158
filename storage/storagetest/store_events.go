package storagetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

func event(id string, at time.Time, tag string, orgs ...string) hub.Event {
	return hub.Event{ID: id, Time: at, Tag: tag, Actor: "sys:" + id[:1], Orgs: orgs, SystemID: "sys-" + tag,
		MessageUUID: "m-" + id, Party: "0101011234", Detail: map[string]string{"k": "v"}}
}

// chain seals evs after last (nil: after nothing) with test hashes.
func chain(last *hub.Event, evs []hub.Event) []hub.Event {
	var seq uint64
	prev := ""
	if last != nil {
		seq, prev = last.Seq, last.Hash
	}
	out := make([]hub.Event, len(evs))
	for i, ev := range evs {
		seq++
		ev.Seq, ev.PrevHash = seq, prev
		ev.Hash = sha([]byte(fmt.Sprintf("%s|%d|%s", prev, seq, ev.ID)))
		prev = ev.Hash
		out[i] = ev
	}
	return out
}

func lastSealed(t *testing.T, s hub.Store) *hub.Event {
	t.Helper()
	ev, err := s.LastSealed(ctx)
	if hub.Is(err, hub.NotFound) {
		return nil
	}
	must(t, err, "LastSealed")
	return &ev
}

// chainAfter seals evs after the head of lease l.
func chainAfter(l hub.SealerLease, evs []hub.Event) []hub.Event {
	if l.Seq == 0 {
		return chain(nil, evs)
	}
	return chain(&hub.Event{Seq: l.Seq, Hash: l.Hash}, evs)
}

// lease takes the sealer lease for holder (at the wall clock, for an hour).
func lease(t *testing.T, s hub.Store, holder string) hub.SealerLease {
	t.Helper()
	l, err := s.LeaseSealer(ctx, hub.SealerLease{Holder: holder}, time.Hour, time.Now())
	must(t, err, "LeaseSealer")
	if l.Epoch == 0 {
		t.Fatalf("LeaseSealer(%s): not held (held by %q)", holder, l.Holder)
	}
	return l
}

// seal seals already chained events under a fresh lease.
func seal(t *testing.T, s hub.Store, sealed []hub.Event) {
	t.Helper()
	_, err := s.SealEvents(ctx, lease(t, s, "contract"), sealed)
	must(t, err, "SealEvents")
}

// sealAll appends evs and seals them in one call.
func sealAll(t *testing.T, s hub.Store, evs []hub.Event) []hub.Event {
	t.Helper()
	must(t, s.AppendEvents(ctx, evs), "AppendEvents")
	sealed := chain(lastSealed(t, s), evs)
	seal(t, s, sealed)
	return sealed
}

func scanAll(t *testing.T, s hub.Store, from uint64) []hub.Event {
	t.Helper()
	var out []hub.Event
	must(t, s.ScanEvents(ctx, from, func(ev hub.Event) error {
		out = append(out, ev)
		return nil
	}), "ScanEvents")
	return out
}

// derivedIDsHold appends evs (IDs a store may keep apart, and others),
// twice; seals the first n; appends all again; and checks that each is
// pending until sealed, sealed once (a second seal is Conflict) and in the
// log once.
func derivedIDsHold(t *testing.T, s hub.Store, n int, evs ...hub.Event) {
	t.Helper()
	must(t, s.AppendEvents(ctx, evs), "AppendEvents")
	must(t, s.AppendEvents(ctx, evs[1:]), "AppendEvents again")
	p, err := s.PendingEvents(ctx, 10)
	must(t, err, "PendingEvents")
	sameStrings(t, evIDs(p), evIDs(evs), "pending")
	sealed := chain(nil, p[:n])
	seal(t, s, sealed)
	must(t, s.AppendEvents(ctx, evs), "AppendEvents after sealing")
	p, _ = s.PendingEvents(ctx, 10)
	sameStrings(t, evIDs(p), evIDs(evs[n:]), "pending after sealing")
	again := chain(&sealed[n-1], []hub.Event{evs[0]})
	_, err = s.SealEvents(ctx, lease(t, s, "contract"), again)
	wantCode(t, err, hub.Conflict, "sealing a sealed event again")
	seal(t, s, chain(&sealed[n-1], p))
	sameStrings(t, evIDs(scanAll(t, s, 0)), evIDs(evs), "the log")
	p, _ = s.PendingEvents(ctx, 10)
	sameStrings(t, evIDs(p), nil, "pending at the end")
}

func evIDs(evs []hub.Event) []string { return ids(evs, func(e hub.Event) string { return e.ID }) }

var eventTests = []storeTest{
	{"event IDs derived from a message (memo:UUID:…) are idempotent and sealed once, beside other IDs", func(t *testing.T, s hub.Store) {
		// hub.Ingest derives a letter's event IDs from its message; a store
		// may keep them apart from other IDs (storage/bolt keeps them
		// beside the message), with the same guarantees.
		id := func(uuid, tag string, n int) string { return fmt.Sprintf("memo:%s:1767225600000:%s:%d", uuid, tag, n) }
		u1, u2 := "0f0e0d0c-0b0a-4909-8807-060504030201", "1f0e0d0c-0b0a-4909-8807-060504030201"
		derivedIDsHold(t, s, 3, event(id(u1, "MEMO_SEND_RECEIVED", 0), T0, "x", "1"), event(id(u1, "MEMO_VALIDATED", 0), T0, "x", "1"),
			event("other-1", T0, "x", "1"), event(id(u2, "MEMO_SEND_RECEIVED", 0), T0, "x", "1"),
			event("memo:not-a-uuid:1:X:0", T0, "x", "1"))
	}},
	{"event IDs derived from a delivery (P:UUID@queue, P:UUID/…) are idempotent and sealed once, beside other IDs", func(t *testing.T, s hub.Store) {
		// retrieval and viewer derive the IDs of a delivery's events from
		// its ID (hub.DeliveryID); storage/bolt keeps those beside the
		// message, with the same guarantees as any other.
		u1, u2 := "0f0e0d0c-0b0a-4909-8807-060504030201", "1f0e0d0c-0b0a-4909-8807-060504030201"
		derivedIDsHold(t, s, 2, event("retrieval:fetched:"+u1+"@system/a", T0, "x", "1"), event("viewer:read:"+u1+"/mailbox/0101011234", T0, "x", "1"),
			event("retrieval:fetched:"+u2+"@system/a", T0, "x", "1"), event("retrieval:fetched:short@system/a", T0, "x", "1"),
			event(":"+u1+"@system/a", T0, "x", "1"), event("retrieval:transform:"+u1+"@system/a:2", T0, "x", "1"))
	}},
	{"AppendEvents is idempotent by ID and PendingEvents is oldest first", func(t *testing.T, s hub.Store) {
		evs := []hub.Event{event("a1", T0, "MessageReceived", "1"), event("a2", T0, "MessageReceived", "1")}
		must(t, s.AppendEvents(ctx, evs), "AppendEvents")
		must(t, s.AppendEvents(ctx, []hub.Event{evs[1], event("a3", T0, "MessageFetched", "1")}), "AppendEvents again")
		p, err := s.PendingEvents(ctx, 10)
		must(t, err, "PendingEvents")
		sameStrings(t, evIDs(p), []string{"a1", "a2", "a3"}, "pending")
		p, _ = s.PendingEvents(ctx, 2)
		sameStrings(t, evIDs(p), []string{"a1", "a2"}, "pending with limit")
		seal(t, s, chain(nil, p))
		must(t, s.AppendEvents(ctx, []hub.Event{evs[0]}), "AppendEvents of a sealed ID")
		p, _ = s.PendingEvents(ctx, 10)
		sameStrings(t, evIDs(p), []string{"a3"}, "pending after sealing")
	}},
	{"SealEvents keeps the chain gap-free: a taken Seq is Conflict and stores nothing", func(t *testing.T, s hub.Store) {
		_, err := s.LastSealed(ctx)
		wantCode(t, err, hub.NotFound, "LastSealed of an empty log")
		sealed := sealAll(t, s, []hub.Event{event("a1", T0, "x", "1"), event("a2", T0, "x", "1")})
		must(t, s.AppendEvents(ctx, []hub.Event{event("b1", T0, "y", "1")}), "AppendEvents")
		l := lease(t, s, "contract")
		if l.Seq != 2 || l.Hash != sealed[1].Hash {
			t.Fatalf("lease head seq %d hash %.8s, want 2 %.8s", l.Seq, l.Hash, sealed[1].Hash)
		}
		clash := chain(&sealed[0], []hub.Event{event("b1", T0, "y", "1")})
		_, err = s.SealEvents(ctx, l, clash)
		wantCode(t, err, hub.Conflict, "SealEvents of a taken Seq")
		all := scanAll(t, s, 0)
		sameStrings(t, evIDs(all), []string{"a1", "a2"}, "log after conflict")
		if all[1].Hash != sealed[1].Hash {
			t.Fatalf("conflicting entry overwrote seq 2")
		}
		gap := chain(&sealed[1], []hub.Event{event("b1", T0, "y", "1")})
		gap[0].Seq = 4
		if _, err := s.SealEvents(ctx, l, gap); err == nil {
			t.Fatalf("SealEvents leaving a gap succeeded")
		}
		next := chain(&sealed[1], []hub.Event{event("b1", T0, "y", "1")})
		l2, err := s.SealEvents(ctx, l, next)
		must(t, err, "SealEvents of the next Seq")
		if l2.Epoch <= l.Epoch || l2.Seq != 3 || l2.Hash != next[0].Hash {
			t.Fatalf("lease after seal: %+v (before %+v)", l2, l)
		}
		last, err := s.LastSealed(ctx)
		must(t, err, "LastSealed")
		if last.Seq != 3 || last.ID != "b1" || last.PrevHash != sealed[1].Hash {
			t.Fatalf("LastSealed %+v", last)
		}
		p, _ := s.PendingEvents(ctx, 10)
		if len(p) != 0 {
			t.Fatalf("sealed events still pending: %v", evIDs(p))
		}
	}},
	{"A sealer whose lease another took can never seal: the lease's epoch fences every sealed write", func(t *testing.T, s hub.Store) {
		evs := []hub.Event{event("a1", T0, "x", "1"), event("a2", T0, "x", "1")}
		must(t, s.AppendEvents(ctx, evs), "AppendEvents")
		a, err := s.LeaseSealer(ctx, hub.SealerLease{Holder: "A"}, time.Minute, T0)
		must(t, err, "LeaseSealer A")
		if a.Epoch == 0 || a.Holder != "A" || !a.Expires.Equal(T0.Add(time.Minute)) {
			t.Fatalf("A's lease %+v", a)
		}
		b, err := s.LeaseSealer(ctx, hub.SealerLease{Holder: "B"}, time.Minute, T0.Add(30*time.Second))
		must(t, err, "LeaseSealer B while A's lease is live")
		if b.Epoch != 0 || b.Holder != "A" || !b.Expires.Equal(a.Expires) {
			t.Fatalf("B got %+v while A holds the lease", b)
		}
		// A's lease expires unrenewed (A paused); B takes over.
		b, err = s.LeaseSealer(ctx, hub.SealerLease{Holder: "B"}, time.Minute, T0.Add(2*time.Minute))
		must(t, err, "LeaseSealer B after A's lease expired")
		if b.Epoch == 0 || b.Epoch == a.Epoch {
			t.Fatalf("B's lease %+v (A's %+v)", b, a)
		}
		// A wakes up and seals what it had read: fenced, nothing written.
		_, err = s.SealEvents(ctx, a, chainAfter(a, evs))
		wantCode(t, err, hub.Conflict, "SealEvents under a lost lease")
		if got := scanAll(t, s, 0); len(got) != 0 {
			t.Fatalf("a fenced sealer wrote %v", evIDs(got))
		}
		again, err := s.LeaseSealer(ctx, a, time.Minute, T0.Add(2*time.Minute+time.Second))
		must(t, err, "A renews")
		if again.Epoch != 0 || again.Holder != "B" {
			t.Fatalf("A renewed a lease B holds: %+v", again)
		}
		// B seals; renews keep its epoch and head.
		b2, err := s.SealEvents(ctx, b, chainAfter(b, evs))
		must(t, err, "SealEvents B")
		b3, err := s.LeaseSealer(ctx, b2, time.Minute, T0.Add(3*time.Minute))
		must(t, err, "B renews")
		if b3.Epoch != b2.Epoch || b3.Seq != 2 || b3.Hash != b2.Hash || !b3.Expires.Equal(T0.Add(4*time.Minute)) {
			t.Fatalf("B's renewal %+v after %+v", b3, b2)
		}
		// The renewal counts: A cannot take over at B's first expiry.
		if x, err := s.LeaseSealer(ctx, hub.SealerLease{Holder: "A"}, time.Minute, T0.Add(3*time.Minute+30*time.Second)); err != nil || x.Epoch != 0 {
			t.Fatalf("A took a renewed lease: %+v %v", x, err)
		}
		// Released, it is A's at once, with B's head.
		must(t, s.ReleaseSealer(ctx, b3), "ReleaseSealer")
		a2, err := s.LeaseSealer(ctx, hub.SealerLease{Holder: "A"}, time.Minute, T0.Add(3*time.Minute+31*time.Second))
		must(t, err, "LeaseSealer A after release")
		if a2.Epoch == 0 || a2.Seq != 2 || a2.Hash != b2.Hash {
			t.Fatalf("A's lease after B released: %+v", a2)
		}
		if _, err := s.SealEvents(ctx, b3, chainAfter(b3, []hub.Event{event("b1", T0, "x", "1")})); !hub.Is(err, hub.Conflict) {
			t.Fatalf("B sealed after releasing: %v", err)
		}
		sameStrings(t, evIDs(scanAll(t, s, 0)), []string{"a1", "a2"}, "log")
	}},
	{"Concurrent sealers whose leases keep expiring: the fence lets each event in exactly once, the log stays gap-free", func(t *testing.T, s hub.Store) {
		const sealers, each = 6, 8
		own := make([][]hub.Event, sealers)
		for i := range own {
			for j := 0; j < each; j++ {
				own[i] = append(own[i], event(fmt.Sprintf("s%d-%02d", i, j), T0, "x", "1"))
			}
			must(t, s.AppendEvents(ctx, own[i]), "AppendEvents")
		}
		var mu sync.Mutex
		var errs []error
		fenced := 0
		fail := func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		parallel(sealers, func(i int) {
			// A lease of 1 ns: every other sealer's next LeaseSealer takes it.
			l := hub.SealerLease{Holder: fmt.Sprint("sealer-", i)}
			for j, tries := 0, 0; j < each; tries++ {
				if tries > 2000 {
					fail(fmt.Errorf("sealer %d: no progress", i))
					return
				}
				var err error
				if l, err = s.LeaseSealer(ctx, l, time.Nanosecond, time.Now()); err != nil {
					fail(err)
					return
				}
				if l.Epoch == 0 {
					l = hub.SealerLease{Holder: fmt.Sprint("sealer-", i)}
					continue
				}
				next, err := s.SealEvents(ctx, l, chainAfter(l, own[i][j:j+1]))
				switch {
				case err == nil:
					l = next
					j++
				case hub.Is(err, hub.Conflict):
					mu.Lock()
					fenced++
					mu.Unlock()
					l = hub.SealerLease{Holder: l.Holder}
				default:
					fail(err)
					return
				}
			}
		})
		if len(errs) > 0 {
			t.Fatalf("sealers failed: %v", errs)
		}
		all := scanAll(t, s, 0)
		if len(all) != sealers*each {
			t.Fatalf("%d sealed, want %d", len(all), sealers*each)
		}
		seen := map[string]bool{}
		prev := ""
		for i, ev := range all {
			if ev.Seq != uint64(i+1) || ev.PrevHash != prev || seen[ev.ID] {
				t.Fatalf("entry %d: seq %d prev %.8s (want %.8s) id %s seen %v", i, ev.Seq, ev.PrevHash, prev, ev.ID, seen[ev.ID])
			}
			seen[ev.ID] = true
			prev = ev.Hash
		}
		t.Logf("%d seals fenced off or refused", fenced)
	}},
	{"ScanEvents visits sealed events from a Seq in order", func(t *testing.T, s hub.Store) {
		var evs []hub.Event
		for i := 0; i < 25; i++ {
			evs = append(evs, event("e"+n(i), T0, "x", "1"))
		}
		sealAll(t, s, evs)
		got := scanAll(t, s, 20)
		sameStrings(t, evIDs(got), evIDs(evs[19:]), "scan from 20")
		if got[0].Seq != 20 {
			t.Fatalf("first scanned seq %d", got[0].Seq)
		}
		sameJSON(t, got[0].Detail, evs[19].Detail, "detail")
	}},
	{"QueryEvents filters by organisation, half-open time range, tags, fields, cursor and limit", func(t *testing.T, s hub.Store) {
		var evs []hub.Event
		tags := []string{"MessageReceived", "MessageFetched", "MessageDelivered"}
		orgs := [][]string{{"11111111"}, {"22222222"}, {"11111111", "22222222"}, nil}
		for i := 0; i < 60; i++ {
			// Times are not monotone in Seq: the index must not assume it.
			at := T0.Add(time.Duration((i*7)%60) * time.Minute)
			evs = append(evs, event("e"+n(i), at, tags[i%3], orgs[i%4]...))
		}
		sealed := sealAll(t, s, evs)
		queries := []hub.EventQuery{
			{},
			{Org: "11111111"},
			{Org: "22222222", Limit: 5},
			{Org: "11111111", From: T0.Add(10 * time.Minute), To: T0.Add(20 * time.Minute)},
			{From: T0.Add(50 * time.Minute)},
			{To: T0.Add(5 * time.Minute), Descending: true},
			{Org: "11111111", From: T0.Add(10 * time.Minute), To: T0.Add(40 * time.Minute), Limit: 4, AfterSeq: 20},
			{Org: "11111111", From: T0.Add(10 * time.Minute), To: T0.Add(40 * time.Minute), Limit: 4, Descending: true},
			{Tags: []string{"MessageFetched", "MessageDelivered"}, Org: "22222222"},
			{SystemID: "sys-MessageFetched", Limit: 3, AfterSeq: 30},
			{MessageUUID: "m-e0007"},
			{Party: "0101011234", Actor: "sys:e", Limit: 2, Descending: true},
			{Org: "33333333"},
			{Org: "22222222", Descending: true, AfterSeq: 40},
		}
		for _, q := range queries {
			got, err := s.QueryEvents(ctx, q)
			must(t, err, "QueryEvents")
			sameStrings(t, evIDs(got), evIDs(oracle(sealed, q)), fmt.Sprintf("query %+v", q))
		}
	}},
	{"DeleteEventsBefore removes the old prefix and keeps the rest verifiable", func(t *testing.T, s hub.Store) {
		var evs []hub.Event
		for i := 0; i < 10; i++ {
			evs = append(evs, event("e"+n(i), T0.Add(time.Duration(i)*time.Minute), "x", "1"))
		}
		sealed := sealAll(t, s, evs)
		nDel, err := s.DeleteEventsBefore(ctx, T0.Add(4*time.Minute))
		must(t, err, "DeleteEventsBefore")
		if nDel != 4 {
			t.Fatalf("deleted %d, want 4", nDel)
		}
		rest := scanAll(t, s, 0)
		sameStrings(t, evIDs(rest), evIDs(sealed[4:]), "remaining log")
		if rest[0].PrevHash != sealed[3].Hash {
			t.Fatalf("first remaining entry lost its PrevHash")
		}
		got, _ := s.QueryEvents(ctx, hub.EventQuery{Org: "1"})
		sameStrings(t, evIDs(got), evIDs(sealed[4:]), "query after retention")
		got, _ = s.QueryEvents(ctx, hub.EventQuery{Org: "1", From: T0, To: T0.Add(time.Hour)})
		sameStrings(t, evIDs(got), evIDs(sealed[4:]), "time query after retention")
		last, _ := s.LastSealed(ctx)
		if last.Seq != 10 {
			t.Fatalf("LastSealed after retention: %d", last.Seq)
		}
		seal(t, s, chain(&last, []hub.Event{event("f1", T0.Add(time.Hour), "x", "1")}))
	}},
}

// oracle answers q by brute force, the way the EventQuery doc defines it.
func oracle(evs []hub.Event, q hub.EventQuery) []hub.Event {
	var out []hub.Event
	for i := range evs {
		ev := evs[i]
		if q.Descending {
			ev = evs[len(evs)-1-i]
		}
		switch {
		case ev.Seq <= q.AfterSeq,
			!q.From.IsZero() && ev.Time.Before(q.From),
			!q.To.IsZero() && !ev.Time.Before(q.To),
			q.Org != "" && !has(ev.Orgs, q.Org),
			len(q.Tags) > 0 && !has(q.Tags, ev.Tag),
			q.SystemID != "" && ev.SystemID != q.SystemID,
			q.MessageUUID != "" && ev.MessageUUID != q.MessageUUID,
			q.Party != "" && ev.Party != q.Party,
			q.Actor != "" && ev.Actor != q.Actor:
			continue
		}
		out = append(out, ev)
		if q.Limit > 0 && len(out) == q.Limit {
			break
		}
	}
	return out
}

func has(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
