package eventlog_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
)

// instance is one hub instance's event log: a Log and a Sealer.
type instance struct {
	log    *eventlog.Log
	sealer *eventlog.Sealer
}

// runInstances emits total events through n instances sharing store s
// (each with emitters goroutines emitting 4 events per call, as the ingest
// does per letter) while their sealers run, and waits until everything is
// sealed.
func runInstances(t *testing.T, s eventStore, n, emitters, total int, sopts eventlog.SealerOptions) {
	t.Helper()
	stores := make([]eventStore, n)
	for i := range stores {
		stores[i] = s
	}
	runInstancesOn(t, stores, emitters, total, sopts)
}

// runInstancesOn runs one instance per store (the stores may share one
// database through separate connections).
func runInstancesOn(t *testing.T, stores []eventStore, emitters, total int, sopts eventlog.SealerOptions) {
	t.Helper()
	runInstancesWrapped(t, stores, nil, emitters, total, sopts)
}

// runInstancesWrapped is runInstancesOn with each sealer's store wrapped
// (to count what the store answered).
func runInstancesWrapped(t *testing.T, stores []eventStore, wrap func(eventStore) hub.EventStore, emitters, total int, sopts eventlog.SealerOptions) {
	t.Helper()
	n, s := len(stores), stores[0]
	sctx, stop := context.WithCancel(ctx)
	var sealers sync.WaitGroup
	insts := make([]instance, n)
	for i := range insts {
		l := eventlog.New(stores[i], eventlog.Options{})
		o := sopts
		o.Holder, o.Notify, o.Wake = fmt.Sprintf("instance-%d", i), l.Notify, l.Appended()
		if wrap != nil {
			insts[i] = instance{log: l, sealer: eventlog.NewSealer(wrap(stores[i]), o)}
		} else {
			insts[i] = instance{log: l, sealer: eventlog.NewSealer(stores[i], o)}
		}
		sealers.Add(1)
		go func() { defer sealers.Done(); insts[i].sealer.Run(sctx) }()
	}
	perCall := 4
	calls := total / perCall
	var wg sync.WaitGroup
	errs := make(chan error, n*emitters)
	next := make(chan int, calls)
	for c := 0; c < calls; c++ {
		next <- c
	}
	close(next)
	for i := 0; i < n; i++ {
		for e := 0; e < emitters; e++ {
			wg.Add(1)
			go func(l *eventlog.Log) {
				defer wg.Done()
				for c := range next {
					evs := make([]hub.Event, perCall)
					for k := range evs {
						evs[k] = letterEvent(c*perCall+k, eventlog.MemoSendReceived, "11111111")
						evs[k].ID = fmt.Sprintf("ev-%08d", c*perCall+k)
					}
					if err := l.Emit(ctx, evs...); err != nil {
						errs <- err
						return
					}
				}
			}(insts[i].log)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Emit: %v", err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		p, err := s.PendingEvents(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events still pending after 5 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	sealers.Wait()
	for _, in := range insts {
		_ = in.log.Close()
	}
}

// checkOneChain verifies the log and that it holds each of the total
// events exactly once, gap-free.
func checkOneChain(t *testing.T, s eventStore, total int) {
	t.Helper()
	r := verifyOK(t, s)
	seen := make(map[string]bool, total)
	var seq uint64
	cps := 0
	if err := s.ScanEvents(ctx, 0, func(ev hub.Event) error {
		seq++
		if ev.Seq != seq {
			return fmt.Errorf("seq %d where %d was due", ev.Seq, seq)
		}
		if ev.Tag == string(eventlog.EventLogCheckpoint) {
			cps++
			return nil
		}
		if seen[ev.ID] {
			return fmt.Errorf("event %s sealed twice", ev.ID)
		}
		seen[ev.ID] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != total {
		t.Fatalf("chain holds %d events, want %d", len(seen), total)
	}
	t.Logf("one chain: seq 1..%d, %d events, %d checkpoints", r.Last, len(seen), cps)
}

// Three hub instances (Log + Sealer each) on one shared bolt store: the
// 100,000 events they append together form one gap-free verifiable chain.
// (bolt allows one process per file, so the instances share the store
// object; several processes need the Mongo store, tested below with a
// smaller count.)
func TestThreeInstancesOneChainBolt(t *testing.T) {
	total := 100_000
	if testing.Short() {
		total = 10_000
	}
	s := openBolt(t, "")
	runInstances(t, s, 3, 8, total, eventlog.SealerOptions{Key: testKey, CheckpointEvery: 5000, LockTTL: 2 * time.Second, Idle: 5 * time.Millisecond, IdleMax: 50 * time.Millisecond})
	checkOneChain(t, s, total)
}
