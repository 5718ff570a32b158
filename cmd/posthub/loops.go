package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
)

// backgroundLoops is serve's third stage: the work a hub does outside
// requests — following the policies, sealing the event log, repair,
// retrieval's reconciler, purges, notifications, the print and SMS
// outboxes — each loop in its own goroutine under one context, so that
// serve stops them together, after the listeners have drained and before
// the stores close.
//
// They look at the store at intervals set by serve's flags (-repair-interval,
// -outbox-interval, -notify-interval, …), whose defaults keep an idle
// instance well under one command a second (the sealer and the policy
// check wake on demand; see TestIdleInstanceCommandBudget, which runs them
// scaled down).
type backgroundLoops struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	active map[string]bool // loops not yet returned
}

// startLoops starts every background loop over h.
func startLoops(h *hubServices) *backgroundLoops {
	ctx, cancel := context.WithCancel(context.Background())
	l := &backgroundLoops{cancel: cancel, active: map[string]bool{}}
	cfg, store, log := h.cfg, h.store, h.log
	l.run(ctx, "policies", h.az.enforcer.Run)
	// Seal pending events into the chain (one sealer at a time across
	// instances, by lease), woken by this instance's appends.
	l.run(ctx, "event-log sealer", eventlog.NewSealer(store, eventlog.SealerOptions{Holder: instanceName(), Log: log,
		Key: h.evKey, CheckpointEvery: cfg.EventlogCheckpointEvery, CheckpointInterval: cfg.EventlogCheckpointInterval,
		Retention: cfg.EventlogRetention, Notify: h.evlog.Notify, Wake: h.evlog.Appended(), LockTTL: cfg.EventlogSealerTTL,
		IdleMax: cfg.EventlogPollInterval}).Run)
	// Repair undoes what a crash left (claims older than the pending grace,
	// 10 minutes on MongoDB) and folds counters; every 5 minutes (the
	// default) is often enough for that, and cheap when idle.
	l.run(ctx, "repair", every(cfg.RepairInterval, log, "repair", func(ctx context.Context) error { return store.Repair(ctx, time.Now()) }))
	l.run(ctx, "retrieval", h.fetching.Run)
	l.run(ctx, "mailbox purge", func(ctx context.Context) { h.viewer.RunPurge(ctx, cfg.MailboxPurgeInterval) })
	l.run(ctx, "notifier", func(ctx context.Context) { h.notifier.Run(ctx, cfg.NotifyInterval) })
	archive := &hub.SentArchive{Store: store, Blobs: h.blobs}
	l.run(ctx, "sent-archive purge", every(cfg.ArchivePurgeInterval, log, "sent-archive purge", func(ctx context.Context) error { _, err := archive.Purge(ctx); return err }))
	// Message content no message names (a failure that may have stored
	// its letter keeps the blob; a crash between upload and commit)
	// goes once it is a day old, looked for every six hours.
	// Receipts no sender read (SF1601 clients never do) go after the
	// retention, looked for every hour.
	receipts := &hub.ReceiptPurge{Store: store, Retention: cfg.ReceiptRetention, Holder: instanceName(), Log: log}
	l.run(ctx, "receipt purge", every(time.Hour, log, "receipt purge", func(ctx context.Context) error { _, err := receipts.Purge(ctx); return err }))
	sweeper := &hub.ContentSweeper{Store: store, Blobs: h.blobs, MinAge: 24 * time.Hour, Holder: instanceName(), Log: log}
	l.run(ctx, "content sweeper", every(6*time.Hour, log, "content sweeper", func(ctx context.Context) error { _, err := sweeper.Sweep(ctx); return err }))
	for _, q := range []string{hub.PrintQueue, hub.SMSQueue} {
		// The spool fails only for local reasons (its disk), never for one
		// item's: an item it refuses is tried again every lease (5 minutes)
		// until it takes it, never parked for failing (nothing unparks
		// print or SMS); only an item whose message or content is gone,
		// which no retry can mend, is parked. Failures are in the event log
		// (at doubling intervals) and in posthub_outbox_items_total.
		ob := &hub.Outbox{Store: store, Blobs: h.blobs, Events: h.evlog, Queue: q, Holder: instanceName(), Lease: 5 * time.Minute,
			Log: log, Dispatcher: hub.SpoolDispatcher{Dir: filepath.Join(cfg.Data, "outbox", q)}, Wake: h.outboxWake[q],
			Outcome: func(queue, outcome string) { h.outboxItems.WithLabelValues(queue, outcome).Inc() }}
		l.run(ctx, "outbox "+q, func(ctx context.Context) { ob.Run(ctx, cfg.OutboxInterval) })
	}
	return l
}

// run starts one loop.
func (l *backgroundLoops) run(ctx context.Context, name string, loop func(context.Context)) {
	l.mu.Lock()
	l.active[name] = true
	l.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		loop(ctx)
		l.mu.Lock()
		delete(l.active, name)
		l.mu.Unlock()
	}()
}

// running names the loops that have not returned.
func (l *backgroundLoops) running() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var names []string
	for n := range l.active {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// stop ends the loops and waits for them, at most grace; an error names
// those still running then.
func (l *backgroundLoops) stop(grace time.Duration) error {
	l.cancel()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("background loops still running after %s: %v", grace, l.running())
	}
}

// every is a loop that runs job at each interval until its context ends,
// logging failures.
func every(interval time.Duration, log *slog.Logger, name string, job func(context.Context) error) func(context.Context) {
	return func(ctx context.Context) {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := job(ctx); err != nil && ctx.Err() == nil {
					log.Warn(name, "error", err)
				}
			}
		}
	}
}
