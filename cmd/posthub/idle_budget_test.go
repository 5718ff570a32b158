package main

import (
	"flag"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/internal/testservers"
)

// idleLoop is one background loop as an idle MongoDB-backed instance runs
// it: the interval it ticks at (its default, and the flag that sets it)
// and the commands it sends per tick, counted at the wire by
// command:collection. own are commands no other idle loop sends, so their
// count is this loop's ticks; shared are further commands per tick on
// collections other loops use too.
type idleLoop struct {
	name         string
	flag         string        // the flag that sets the interval
	every        time.Duration // the default interval between ticks
	ticksPerFlag int           // the flag's value in ticks (the sealer renews at a third of its TTL)
	own          map[string]int
	shared       map[string]int
}

// idleLoops is what an idle instance sends, loop by loop (measured at the
// wire over 90 s at the defaults: 54 commands, 0.60/s). Repair (every
// 5 minutes, about twenty commands) and the purges (hourly) fall outside
// the window even scaled; the policy stamp is read only when a decision is
// asked for, which an idle instance does not.
var idleLoops = []idleLoop{
	{name: "event-log sealer, looking for other instances' appends", flag: "eventlog-poll-interval", every: 10 * time.Second, ticksPerFlag: 1,
		own: map[string]int{"find:events_pending": 1}},
	{name: "event-log sealer, renewing its lease", flag: "eventlog-sealer-ttl", every: 10 * time.Second, ticksPerFlag: 3,
		own: map[string]int{"update:locks": 1}, shared: map[string]int{"find:locks": 1}},
	{name: "print and SMS outboxes", flag: "outbox-interval", every: 30 * time.Second, ticksPerFlag: 1,
		own: map[string]int{"find:deliveries": 2, "find:leases": 2, "find:parked": 2}},
	{name: "notifier", flag: "notify-interval", every: time.Minute, ticksPerFlag: 1,
		own: map[string]int{"find:cursors": 1, "find:notifications": 1}, shared: map[string]int{"find:events": 1, "find:locks": 2, "insert:locks": 1}},
	{name: "retrieval reconciler", flag: "reconcile-interval", every: 30 * time.Second, ticksPerFlag: 1,
		own: map[string]int{"find:orgs": 1}},
}

// An idle `posthub serve -metadata mongo` issues at most one database
// command per second, each background loop no more than its ticks' worth:
// the sealer renews its lease at a third of its TTL and is woken by
// appends, backing off to -eventlog-poll-interval for other instances'
// appends; the outboxes wake on this instance's deliveries and look every
// -outbox-interval; the notifier reconciles every -notify-interval, the
// retrieval reconciler runs every -reconcile-interval. The commands are
// counted at the wire (every command the process sends to FerretDB, by
// name and collection, the driver's own monitoring apart).
//
// The process runs with every interval divided by scale, and the window
// is 90 s divided by scale: a loop ticks as often in it as in 90 s at the
// defaults, so the same commands per tick are asserted in a tenth of the
// time. Whichever way the ticks fall into the window, a loop of interval
// T ticks at most ⌊window/T⌋+1 times in it (tickers drop ticks, they never
// bunch them); each loop's own commands are held to that, so a loop that
// ticks twice as often as its interval fails (doubled, it ticks at least
// ⌊2·window/T⌋ times, more than ⌊window/T⌋+1 for every loop here, whose
// window/T is at least 1.5); all commands together are held to the sum of
// the loops' ticks, and to one a second scaled (scale a second). A command
// no loop accounts for fails too: an idle instance sends nothing else.
func TestIdleInstanceCommandBudget(t *testing.T) {
	const scale = 10
	uri := testservers.FerretDB(t)
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	wc := startWireCounter(t, u.Host)
	args := []string{"-data", t.TempDir(), "-metadata", "mongo", "-mongo-uri", "mongodb://" + wc.Addr() + "/", "-mongo-db", testservers.DatabaseName(t),
		"-operator-token", "ph_idle-operator",
		// Out of the window either way, but scaled like the others.
		"-repair-interval", (5 * time.Minute / scale).String(),
		"-mailbox-purge-interval", (time.Hour / scale).String(), "-archive-purge-interval", (time.Hour / scale).String()}
	for _, l := range idleLoops {
		args = append(args, "-"+l.flag, (time.Duration(l.ticksPerFlag) * l.every / scale).String())
	}
	p := startHubProcess(t, args...)
	defer func() {
		if t.Failed() {
			t.Log(p.log())
		}
	}()
	// Start-up (indexes, repair, first lease, first policy load, the loops'
	// first runs) is not idle; nor is the sealer's back-off from 100 ms to
	// its poll interval: the window opens once two of its looks in a row
	// were most of that interval apart.
	settle := time.Now().Add(30 * time.Second / scale)
	for time.Now().Before(settle) {
		time.Sleep(100 * time.Millisecond)
	}
	sealerSettled(t, wc, idleLoops[0].every/scale)
	before, n0 := wc.snapshot()
	start := time.Now()
	window := 90 * time.Second / scale
	for time.Since(start) < window {
		time.Sleep(100 * time.Millisecond)
	}
	after, n1 := wc.snapshot()
	elapsed := time.Since(start)
	secs := elapsed.Seconds()
	got := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			got[k] = d
		}
	}
	t.Logf("idle for %.1fs with intervals divided by %d: %d commands (%.2f/s, %.2f/s at the defaults): %s",
		secs, scale, n1-n0, float64(n1-n0)/secs, float64(n1-n0)/secs/scale, diff(before, after))

	known := map[string]bool{}
	sum := 0
	for _, l := range idleLoops {
		tick := l.every / scale
		ticks := int(elapsed/tick) + 1
		perTick := 0
		for name, n := range l.own {
			known[name] = true
			perTick += n
			if got[name] > n*ticks {
				t.Errorf("%s: %s=%d in %.1fs, more than %d ticks of one every %s allow (%d)", l.name, name, got[name], secs, ticks, tick, n*ticks)
			}
		}
		for name, n := range l.shared {
			known[name] = true
			perTick += n
		}
		sum += perTick * ticks
	}
	var unknown []string
	for name, n := range got {
		if !known[name] {
			unknown = append(unknown, name+"="+itoa(n))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		t.Errorf("commands no background loop accounts for: %s", strings.Join(unknown, " "))
	}
	if n1-n0 > sum {
		t.Errorf("an idle instance issued %d commands in %.1fs, more than its loops' ticks account for (%d)", n1-n0, secs, sum)
	}
	if float64(n1-n0) > secs*scale {
		t.Errorf("an idle instance issued %d commands in %.1fs with its intervals divided by %d: more than one a second at the defaults", n1-n0, secs, scale)
	}
}

// sealerSettled waits until the sealer's looks for pending entries
// (find:events_pending) are most of poll apart: its back-off from 100 ms
// is over.
func sealerSettled(t *testing.T, wc *wireCounter, poll time.Duration) {
	t.Helper()
	looks := func() int { c, _ := wc.snapshot(); return c["find:events_pending"] }
	deadline := time.Now().Add(30 * time.Second)
	n, last := looks(), time.Time{}
	for time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		m := looks()
		if m == n {
			continue
		}
		now := time.Now()
		if !last.IsZero() && now.Sub(last) > poll*8/10 {
			return
		}
		n, last = m, now
	}
	t.Fatalf("the event-log sealer did not settle to a look every %s", poll)
}

// TestLoopIntervalsRefuseNonsense: a loop interval of zero or less (which
// would stop serve with a ticker panic) or a sealer poll under its first
// 100 ms wait is a configuration error naming the flag.
func TestLoopIntervalsRefuseNonsense(t *testing.T) {
	for _, bad := range [][]string{
		{"-repair-interval", "0s"}, {"-mailbox-purge-interval", "-1s"}, {"-archive-purge-interval", "0s"},
		{"-notify-interval", "0s"}, {"-outbox-interval", "-5s"}, {"-reconcile-interval", "0s"}, {"-eventlog-poll-interval", "50ms"},
		{"-mongo-pending-grace", "0s"}, {"-mongo-event-repair-window", "-1h"}, {"-mongo-event-repair-max", "0"}, {"-inactive-watch-interval", "0s"},
	} {
		var c serveConfig
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		err := c.load(fs, bad, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: %v, want an error naming %s", bad, err, bad[0])
		}
	}
	var c serveConfig
	if err := c.load(flag.NewFlagSet("serve", flag.ContinueOnError), nil, func(string) string { return "" }); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
}
