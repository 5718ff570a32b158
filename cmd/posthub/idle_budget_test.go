package main

import (
	"net/url"
	"testing"
	"time"

	"github.com/posthub/posthub/internal/testservers"
)

// An idle `posthub serve -metadata mongo` issues at most one database
// command per second: the sealer renews its lease at a third of its TTL
// (30 s) and is woken by appends, backing off to a 10 s poll for other
// instances' appends; the policy stamp is read only when a decision is
// asked for; the outboxes wake on this instance's deliveries and look every
// 30 s; the notifier reconciles every minute and Repair runs every 5. The
// commands are counted at the wire (every command the process sends to
// FerretDB, by name, the driver's own monitoring apart) over a 90 s window
// after start-up has settled: whichever way the loops' ticks fall into the
// window (each loop at most one tick more or less), the sum stays below 90
// — the counts per loop are fixed by the intervals, not by timing.
//
// Why 90 s and not less: the loops bounded here tick every 30 s (the two
// outboxes) and 60 s (the notifier), and their intervals are fixed in
// loops.go. A window shorter than those periods would see none of their
// commands, or one tick's worth over a fraction of its period, and so
// measure some other rate than the idle one: a test that passes by looking
// away or fails by phase. Three outbox periods is the shortest window
// whose count does not depend on where the ticks fall. (Repair's 5-minute
// tick is outside it; by its code, about twenty commands when idle, under
// 0.1/s over its period: inside the margin, though not measured here.) To shorten it, make the loops' intervals settable and
// run the process with all of them divided by k, asserting at most k
// commands a second over 90/k s: the same commands per tick.
func TestIdleInstanceCommandBudget(t *testing.T) {
	uri := testservers.FerretDB(t)
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	wc := startWireCounter(t, u.Host)
	p := startHubProcess(t, "-data", t.TempDir(), "-metadata", "mongo", "-mongo-uri", "mongodb://"+wc.Addr()+"/",
		"-mongo-db", testservers.DatabaseName(t), "-operator-token", "ph_idle-operator")
	defer func() {
		if t.Failed() {
			t.Log(p.log())
		}
	}()
	// Start-up (indexes, repair, first lease, first policy load) is not idle.
	settle := time.Now().Add(15 * time.Second) // past the sealer's back-off from 100 ms to 10 s
	for time.Now().Before(settle) {
		time.Sleep(100 * time.Millisecond)
	}
	before, n0 := wc.snapshot()
	start := time.Now()
	const window = 90 * time.Second
	for time.Since(start) < window {
		time.Sleep(500 * time.Millisecond)
	}
	after, n1 := wc.snapshot()
	secs := time.Since(start).Seconds()
	t.Logf("idle for %.1fs: %d commands (%.2f/s): %s", secs, n1-n0, float64(n1-n0)/secs, diff(before, after))
	if float64(n1-n0) > secs {
		t.Fatalf("an idle instance issued %d commands in %.1fs (> 1/s): %s", n1-n0, secs, diff(before, after))
	}
}
