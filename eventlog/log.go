package eventlog

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posthub/posthub/hub"
)

// Limits on what an event may carry: identifiers and small metadata, never
// message content (hub.CheckEvent enforces them, here on every entry and in
// the services on an entry before the change it records).
const (
	MaxDetailEntries = hub.MaxEventDetailEntries
	MaxDetailValue   = hub.MaxEventDetailValue
	MaxOrgs          = hub.MaxEventOrgs
)

// Options tune a Log. The zero value is a good default.
type Options struct {
	// MaxBatch caps how many events one AppendEvents carries (default 4096).
	MaxBatch int
	// PollInterval is how often a waiting feed looks at the store for
	// entries sealed by another instance (default 500ms).
	PollInterval time.Duration
	Now          func() time.Time
}

// Store is what a Log needs of the store: appending pending entries and
// querying sealed ones (hub.EventStore has it).
type Store interface {
	// AppendEvents durably records pending events; an ID that exists is
	// skipped.
	AppendEvents(ctx context.Context, evs []hub.Event) error
	Querier
}

// Querier is what reading sealed entries needs (Search, Feed,
// ExportCheckpoints).
type Querier interface {
	// QueryEvents returns sealed events matching q in Seq order (or
	// descending).
	QueryEvents(ctx context.Context, q hub.EventQuery) ([]hub.Event, error)
}

// Log is the event log's write and read side on one hub instance. It
// implements hub.EventSink: Emit appends pending entries, and concurrent
// Emits share one AppendEvents (group commit). Entries become visible to
// readers once a Sealer (on this or another instance) has sealed them.
type Log struct {
	store Store
	opts  Options

	reqs chan *emitReq
	quit chan struct{}
	done chan struct{}
	once sync.Once

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever entries were sealed here

	appended chan struct{} // signalled (without blocking) after every append

	feedWaits atomic.Int32 // Feed calls waiting now (FeedWaits)

	feedMu     sync.Mutex
	feedLogged map[Reader]time.Time // when each reader's feed was last logged (LogFeed)
}

var _ hub.EventSink = (*Log)(nil)

type emitReq struct {
	evs []hub.Event
	err chan error
}

// New returns a running Log over store; Close stops it.
func New(store Store, opts Options) *Log {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 4096
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 500 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Log{store: store, opts: opts, reqs: make(chan *emitReq), quit: make(chan struct{}),
		done: make(chan struct{}), changed: make(chan struct{}), appended: make(chan struct{}, 1)}
	go l.appendLoop()
	return l
}

// Close stops the append loop after the group in progress. Emit after
// Close fails with Unavailable.
func (l *Log) Close() error {
	l.once.Do(func() {
		close(l.quit)
		<-l.done
	})
	return nil
}

// Store returns the store the log reads and writes.
func (l *Log) Store() Store { return l.store }

// Emit implements hub.EventSink: it completes the events (ID, canonical
// time, read-event visibility), checks their size and appends them as
// pending entries, returning once they are durable. Invalid for an event
// without a tag or with too much detail; Unavailable when the store fails
// or the log is closed. It modifies evs in place.
func (l *Log) Emit(ctx context.Context, evs ...hub.Event) error {
	if len(evs) == 0 {
		return nil
	}
	now := l.opts.Now()
	for i := range evs {
		if err := normalise(&evs[i], now); err != nil {
			return err
		}
	}
	r := &emitReq{evs: evs, err: make(chan error, 1)}
	select {
	case l.reqs <- r:
	case <-l.quit:
		return hub.Errorf(hub.Unavailable, "event log closed")
	case <-ctx.Done():
		return hub.Wrap(hub.Unavailable, ctx.Err(), "event not logged")
	}
	return <-r.err
}

// normalise fills ID and time and enforces the rules every entry obeys.
func normalise(ev *hub.Event, now time.Time) error {
	if err := hub.CheckEvent(*ev); err != nil {
		return err
	}
	if ev.ID == "" {
		ev.ID = hub.NewID()
	}
	if ev.Time.IsZero() {
		ev.Time = now
	}
	ev.Time = CanonicalTime(ev.Time)
	ev.Seq, ev.PrevHash, ev.Hash = 0, "", ""
	// A read event is visible to the recipient side only: drop the sender
	// from Orgs (unless it is itself the recipient).
	if IsReadTag(ev.Tag) {
		if s := ev.Detail[DetailSenderOrg]; s != "" && s != ev.Party && slices.Contains(ev.Orgs, s) {
			ev.Orgs = slices.DeleteFunc(slices.Clone(ev.Orgs), func(o string) bool { return o == s })
		}
	}
	return nil
}

// appendLoop is the group commit: it takes every Emit that is waiting and
// appends all their events with one AppendEvents.
func (l *Log) appendLoop() {
	defer close(l.done)
	for {
		var group []*emitReq
		select {
		case r := <-l.reqs:
			group = append(group, r)
		case <-l.quit:
			return
		}
		n := len(group[0].evs)
	more:
		for n < l.opts.MaxBatch {
			select {
			case r := <-l.reqs:
				group = append(group, r)
				n += len(r.evs)
			default:
				break more
			}
		}
		evs := group[0].evs
		if len(group) > 1 {
			evs = make([]hub.Event, 0, n)
			for _, r := range group {
				evs = append(evs, r.evs...)
			}
		}
		// The group's callers may have gone; the write still completes.
		err := l.store.AppendEvents(context.Background(), evs)
		for _, r := range group {
			r.err <- err
		}
		if err == nil {
			select {
			case l.appended <- struct{}{}:
			default: // a wake-up is pending already
			}
		}
	}
}

// Appended is signalled after entries were appended on this instance
// (coalesced: one signal may stand for many appends). Give it to this
// instance's Sealer as SealerOptions.Wake; it has one reader.
func (l *Log) Appended() <-chan struct{} { return l.appended }

// Notify wakes feeds waiting on this instance; the Sealer calls it after
// every sealed batch.
func (l *Log) Notify() {
	l.mu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *Log) changedCh() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}
