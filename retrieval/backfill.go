package retrieval

import (
	"context"
	"strconv"
	"time"

	"github.com/posthub/posthub/hub"
)

// moveBatch is how many mailbox deliveries one step of a move handles.
const moveBatch = 500

// Connect runs the first-connection backfill after a receiver system was
// registered or reactivated: the post waiting in the mailbox it serves is
// queued to it. It returns how many messages were moved.
func (s *Service) Connect(ctx context.Context, sys hub.System) (int, error) {
	if sys.Role != hub.RecipientSystem || !sys.Active {
		return 0, nil
	}
	return s.Backfill(ctx, sys.OrgCVR)
}

// servingSystems returns, per mailbox kind, the active receiver system that
// serves an organisation's mailbox: the default authority-post system and
// the CVR-post system.
func servingSystems(systems []hub.System) map[hub.MailboxKind]hub.System {
	out := map[hub.MailboxKind]hub.System{}
	for _, s := range systems {
		if s.Role != hub.RecipientSystem || !s.Active {
			continue
		}
		switch {
		case s.Mailbox == hub.CVRPost:
			out[hub.CVRPost] = s
		case s.Default:
			out[hub.AuthorityPost] = s
		}
	}
	return out
}

// Backfill moves every message waiting in an organisation's mailboxes to
// the receiver system serving that mailbox, in arrival order. Organisations
// with setup MAILBOX_ONLY keep their post in the mailbox. Safe to run
// concurrently on several instances (one at a time gets the organisation's
// lock; the others return 0) and to rerun after a crash.
func (s *Service) Backfill(ctx context.Context, org string) (int, error) {
	o, err := s.store.GetOrg(ctx, org)
	if err != nil {
		return 0, err
	}
	if o.Setup == hub.SetupMailboxOnly || !o.Active {
		return 0, nil
	}
	systems, err := s.store.ListSystems(ctx, org)
	if err != nil {
		return 0, err
	}
	serving := servingSystems(systems)
	if len(serving) == 0 {
		return 0, nil
	}
	lock := "retrieval/mailbox/" + org
	ok, err := s.store.AcquireLock(ctx, lock, s.cfg.Instance, 2*time.Minute, s.clock())
	if err != nil || !ok {
		return 0, err
	}
	defer func() { _ = s.store.ReleaseLock(context.WithoutCancel(ctx), lock, s.cfg.Instance) }()
	n := 0
	for _, kind := range []hub.MailboxKind{hub.AuthorityPost, hub.CVRPost} {
		sys, ok := serving[kind]
		if !ok {
			continue
		}
		moved, err := s.move(ctx, hub.MailboxQueue(org, kind), sys, nil, "firstConnection", func() bool {
			ok, err := s.store.AcquireLock(ctx, lock, s.cfg.Instance, 2*time.Minute, s.clock())
			return err == nil && ok
		})
		n += len(moved)
		if err != nil {
			return n, err
		}
	}
	if n > 0 {
		s.log.Info("retrieval: mailbox post queued to its receiver systems", "organisation", org, "messages", n)
	}
	return n, nil
}

// move transfers the deliveries of a mailbox queue that keep accepts to
// sys's queue, batch by batch in Seq order: add the system deliveries
// (idempotent), then acknowledge the mailbox ones. A crash between the two
// leaves a message in both queues, which a rerun resolves; the ordering
// means no crash loses one. renew, called before each batch, keeps the
// caller's lock and stops the move when it returns false. It returns the
// UUIDs of the messages moved.
func (s *Service) move(ctx context.Context, queue string, sys hub.System, keep func(hub.Delivery) (bool, error), why string, renew func() bool) ([]string, error) {
	to := func(d hub.Delivery, now time.Time) hub.Delivery {
		return hub.Delivery{ID: deliveryOf(sys, d.MessageUUID), MessageUUID: d.MessageUUID,
			Channel: hub.ChannelSystem, Queue: queueOf(sys), OrgCVR: sys.OrgCVR, SystemID: sys.ID,
			Created: now, AvailableAt: d.AvailableAt, State: hub.DeliveryReady, Size: d.Size,
			Meta: map[string]string{"movedFrom": queue, "movedBy": why}}
	}
	return s.moveTo(ctx, queue, to, keep, why, renew)
}

// moveTo is move with the delivery each one becomes given by to (to a
// system's queue, or back to a mailbox).
func (s *Service) moveTo(ctx context.Context, queue string, to func(hub.Delivery, time.Time) hub.Delivery, keep func(hub.Delivery) (bool, error), why string, renew func() bool) ([]string, error) {
	var moved []string
	var after int64
	for ctx.Err() == nil {
		if renew != nil && !renew() {
			return moved, nil
		}
		now := s.clock()
		ds, err := s.store.ListQueue(ctx, queue, after, moveBatch, false, now)
		if err != nil {
			return moved, err
		}
		if len(ds) == 0 {
			return moved, nil
		}
		var add, from, done []hub.Delivery
		for _, d := range ds {
			after = d.Seq
			if d.State == hub.DeliveryParked {
				continue
			}
			if keep != nil {
				ok, err := keep(d)
				if err != nil {
					return moved, err
				}
				if !ok {
					continue
				}
			}
			nd := to(d, now)
			if nd.Channel == hub.ChannelSystem {
				// A move cut short by a crash (its target added, this copy
				// not yet removed) may have been fetched and acknowledged
				// since: then the target is gone, and adding it again would
				// deliver the letter twice. Its receipt says so.
				if ok, err := s.completed(ctx, d.MessageUUID); err != nil {
					return moved, err
				} else if ok {
					done = append(done, d)
					continue
				}
			}
			add = append(add, nd)
			from = append(from, d)
		}
		for _, d := range done {
			if _, err := s.store.Ack(ctx, d.ID, now); err != nil {
				return moved, err
			}
		}
		if len(add) == 0 {
			continue
		}
		if err := s.store.AddDeliveries(ctx, add); err != nil {
			return moved, err
		}
		evs := make([]hub.Event, 0, len(add))
		for i, d := range from {
			if _, err := s.store.Ack(ctx, d.ID, now); err != nil {
				return moved, err
			}
			moved = append(moved, d.MessageUUID)
			tag := TagReadyForFetch
			if add[i].Channel != hub.ChannelSystem {
				tag = TagReturnedToMailbox
			}
			evs = append(evs, hub.Event{ID: "retrieval:moved:" + add[i].ID, Time: now, Tag: tag, Actor: "retrieval",
				Orgs: []string{add[i].OrgCVR}, SystemID: add[i].SystemID, MessageUUID: d.MessageUUID,
				Detail: map[string]string{"queue": add[i].Queue, "from": queue, "reason": why}})
		}
		s.emit(ctx, evs...)
		s.waiters.notify(add[0].Queue)
	}
	return moved, ctx.Err()
}

// Disconnect returns the post waiting for a deactivated receiver system
// to its organisation: to the system now serving the mailbox the post was
// routed for (the default authority-post system, or the CVR-post system),
// or, while there is none, to that mailbox, where viewing clients see it
// and a receiver system's first connection takes it. Without it the post
// stayed in a queue no one fetches. It returns how many messages moved.
func (s *Service) Disconnect(ctx context.Context, sys hub.System) (int, error) {
	if sys.Role != hub.RecipientSystem || sys.Active {
		return 0, nil
	}
	systems, err := s.store.ListSystems(ctx, sys.OrgCVR)
	if err != nil {
		return 0, err
	}
	kind := sys.Mailbox
	if kind != hub.CVRPost {
		kind = hub.AuthorityPost
	}
	lock := "retrieval/mailbox/" + sys.OrgCVR
	renew := func() bool {
		ok, err := s.store.AcquireLock(ctx, lock, s.cfg.Instance, 2*time.Minute, s.clock())
		return err == nil && ok
	}
	if !renew() {
		return 0, nil // another instance moves this organisation's post; the reconcile loop comes back
	}
	defer func() { _ = s.store.ReleaseLock(context.WithoutCancel(ctx), lock, s.cfg.Instance) }()
	var moved []string
	if to, ok := servingSystems(systems)[kind]; ok {
		moved, err = s.move(ctx, queueOf(sys), to, nil, "systemDeactivated", renew)
	} else {
		mq := hub.MailboxQueue(sys.OrgCVR, kind)
		moved, err = s.moveTo(ctx, queueOf(sys), func(d hub.Delivery, now time.Time) hub.Delivery {
			return hub.Delivery{ID: hub.DeliveryID(d.MessageUUID, mq), MessageUUID: d.MessageUUID, Channel: hub.ChannelMailbox,
				Queue: mq, OrgCVR: sys.OrgCVR, Created: now, AvailableAt: d.AvailableAt, State: hub.DeliveryReady, Size: d.Size,
				Meta: map[string]string{"movedFrom": queueOf(sys), "movedBy": "systemDeactivated"}}
		}, nil, "systemDeactivated", renew)
	}
	if len(moved) > 0 {
		s.log.Info("retrieval: post of a deactivated receiver system returned", "system", sys.ID, "organisation", sys.OrgCVR, "messages", len(moved))
	}
	return len(moved), err
}

// completed reports whether the message's receipt says a receiver system
// acknowledged it (COMPLETED).
func (s *Service) completed(ctx context.Context, messageUUID string) (bool, error) {
	m, err := s.store.GetMessage(ctx, messageUUID)
	if hub.Is(err, hub.NotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if m.SenderSystemID == "" {
		return false, nil
	}
	r, err := hub.SenderReceiptOf(ctx, s.store, m)
	if hub.Is(err, hub.NotFound) {
		return false, nil
	}
	return err == nil && r.Status == hub.ReceiptCompleted, err
}

// reconcile backfills every organisation with system retrieval whose
// mailboxes hold post, and returns the post of deactivated receiver
// systems (Disconnect).
func (s *Service) reconcile(ctx context.Context) error {
	orgs, err := s.store.ListOrgs(ctx)
	if err != nil {
		return err
	}
	for _, o := range orgs {
		if !o.Active {
			continue
		}
		if err := s.disconnectInactive(ctx, o.CVR); err != nil {
			s.log.Warn("retrieval: post of deactivated systems", "organisation", o.CVR, "error", err)
		}
		if o.Setup == hub.SetupMailboxOnly {
			continue
		}
		waiting := false
		for _, k := range []hub.MailboxKind{hub.AuthorityPost, hub.CVRPost} {
			n, err := s.store.CountQueue(ctx, hub.MailboxQueue(o.CVR, k))
			if err != nil {
				return err
			}
			waiting = waiting || n > 0
		}
		if !waiting {
			continue
		}
		if _, err := s.Backfill(ctx, o.CVR); err != nil {
			s.log.Warn("retrieval: backfill", "organisation", o.CVR, "error", err)
		}
	}
	return nil
}

// disconnectInactive runs Disconnect for org's deactivated receiver
// systems whose queues hold post.
func (s *Service) disconnectInactive(ctx context.Context, org string) error {
	systems, err := s.store.ListSystems(ctx, org)
	if err != nil {
		return err
	}
	for _, sys := range systems {
		if sys.Role != hub.RecipientSystem || sys.Active {
			continue
		}
		n, err := s.store.CountQueue(ctx, queueOf(sys))
		if err != nil {
			return err
		}
		if n == 0 {
			continue
		}
		if _, err := s.Disconnect(ctx, sys); err != nil {
			return err
		}
	}
	return nil
}

// InactiveSystem is a receiver system that has post waiting and has not
// fetched for too long.
type InactiveSystem struct {
	System    hub.System `json:"system"`
	Waiting   int64      `json:"waitingMessages"`
	LastFetch time.Time  `json:"lastFetch"`
	Idle      string     `json:"idle"`
}

// Inactive lists an organisation's inactive receiver systems (all
// organisations' for org ""): active systems whose queue holds post and
// whose last fetch (or registration) is older than InactiveAfter.
func (s *Service) Inactive(ctx context.Context, org string) ([]InactiveSystem, error) {
	var orgs []string
	if org != "" {
		if _, err := s.store.GetOrg(ctx, org); err != nil {
			return nil, err
		}
		orgs = []string{org}
	} else {
		os, err := s.store.ListOrgs(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range os {
			orgs = append(orgs, o.CVR)
		}
	}
	now := s.clock()
	out := []InactiveSystem{}
	for _, o := range orgs {
		systems, err := s.store.ListSystems(ctx, o)
		if err != nil {
			return nil, err
		}
		for _, sys := range systems {
			if sys.Role != hub.RecipientSystem || !sys.Active {
				continue
			}
			last := sys.LastFetch
			if last.IsZero() {
				last = sys.Created
			}
			if now.Sub(last) < s.cfg.InactiveAfter {
				continue
			}
			n, err := s.store.CountQueue(ctx, queueOf(sys))
			if err != nil {
				return nil, err
			}
			if n == 0 {
				continue
			}
			out = append(out, InactiveSystem{System: sys, Waiting: n, LastFetch: sys.LastFetch, Idle: now.Sub(last).Round(time.Second).String()})
		}
	}
	return out, nil
}

// watch flags inactive systems: a log line and an event, at most once a
// day per system across instances (the event id names the day).
func (s *Service) watch(ctx context.Context) error {
	in, err := s.Inactive(ctx, "")
	if err != nil {
		return err
	}
	day := s.clock().Format("2006-01-02")
	for _, x := range in {
		s.log.Warn("retrieval: receiver system inactive while post waits", "system", x.System.ID, "organisation", x.System.OrgCVR,
			"waiting", x.Waiting, "idle", x.Idle)
		s.emit(ctx, hub.Event{ID: "retrieval:inactive:" + x.System.ID + ":" + day, Tag: TagInactiveWarning, Actor: "retrieval",
			Orgs: []string{x.System.OrgCVR}, SystemID: x.System.ID,
			Detail: map[string]string{"waitingMessages": strconv.FormatInt(x.Waiting, 10), "idle": x.Idle}})
	}
	return nil
}

// Run does the background work until ctx ends: the mailbox reconcile and
// system-fetch jobs every ReconcileInterval, the inactivity watch every
// WatchInterval. It returns once the moves StartFetch started have ended.
func (s *Service) Run(ctx context.Context) {
	s.base.Store(&ctx)
	defer s.Wait()
	rt := time.NewTicker(s.cfg.ReconcileInterval)
	defer rt.Stop()
	wt := time.NewTicker(s.cfg.WatchInterval)
	defer wt.Stop()
	s.runOnce(ctx, true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-rt.C:
			s.runOnce(ctx, false)
		case <-wt.C:
			if err := s.watch(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("retrieval: inactivity watch", "error", err)
			}
		}
	}
}

func (s *Service) runOnce(ctx context.Context, watch bool) {
	if err := s.reconcile(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("retrieval: reconcile", "error", err)
	}
	if err := s.resumeJobs(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("retrieval: system-fetch jobs", "error", err)
	}
	if watch {
		if err := s.watch(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("retrieval: inactivity watch", "error", err)
		}
	}
}
