package eventlog

import (
	"context"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/posthub/posthub/hub"
)

// Reader is who reads the log.
type Reader struct {
	// Org is the organisation (CVR) whose events the reader may see.
	Org string
	// Auditor readers (the hub operator, global auditors) see every entry.
	Auditor bool
	// Actor and SystemID are recorded on the EVENT_LOG_SEARCHES entry.
	Actor    string
	SystemID string
}

// Visible is the visibility rule: an auditor sees everything; an
// organisation sees the entries whose Orgs contain it, except the log's own
// bookkeeping (checkpoints, searches, exports) and, as a sender, reads of
// its letters (a read event names the sender only in DetailSenderOrg, and
// is hidden from it even if a faulty emitter put it in Orgs).
func Visible(ev hub.Event, r Reader) bool {
	switch {
	case r.Auditor:
		return true
	case r.Org == "", auditorOnly[ev.Tag], !slices.Contains(ev.Orgs, r.Org):
		return false
	case IsReadTag(ev.Tag) && ev.Detail[DetailSenderOrg] == r.Org && ev.Party != r.Org:
		return false
	}
	return true
}

// Paging limits: offset paging reaches at most MaxWindow entries deep
// (cursor paging has no limit); totals are exact up to CountCap.
const (
	MaxPageSize = 1000
	MaxWindow   = 10_000
	CountCap    = 10_000
)

// Search is one query of the log.
type Search struct {
	// Query filters; for a non-auditor its Org is set to the reader's.
	Query hub.EventQuery
	// Page (zero-based) and Size page by offset; with Cursor, Query.AfterSeq
	// is the cursor and Page is ignored (ascending order only).
	Page, Size int
	Cursor     bool
	// Params describe the request for the EVENT_LOG_SEARCHES entry.
	Params string
}

// Result is one page.
type Result struct {
	Events        []hub.Event
	CurrentPage   int
	TotalPages    int
	TotalElements int64
	// TotalExact is false when the total was capped at CountCap.
	TotalExact bool
	// NextCursor is the after= value of the next page (0 when this page
	// is the last one, or in descending order).
	NextCursor uint64
}

// Search runs s for r, logging the search (EVENT_LOG_SEARCHES, with the
// reader as actor) before answering. Invalid for bad paging, Forbidden for
// a reader without organisation.
func (l *Log) Search(ctx context.Context, r Reader, s Search) (Result, error) {
	q, err := scoped(r, s.Query)
	if err != nil {
		return Result{}, err
	}
	if s.Size <= 0 {
		s.Size = 20
	}
	if s.Size > MaxPageSize || s.Page < 0 {
		return Result{}, hub.Errorf(hub.Invalid, "page size must be 1..%d and page ≥ 0", MaxPageSize)
	}
	if s.Cursor && q.Descending {
		return Result{}, hub.Errorf(hub.Invalid, "cursor paging (after=) is in ascending order only")
	}
	if !s.Cursor && (s.Page+1)*s.Size > MaxWindow {
		return Result{}, hub.Errorf(hub.Invalid, "offset paging reaches %d entries deep at most; use cursor paging (after=)", MaxWindow)
	}
	if err := l.logSearch(ctx, r, EventLogSearches, s.Params); err != nil {
		return Result{}, err
	}
	res := Result{CurrentPage: s.Page, TotalExact: true}
	if s.Cursor {
		res.CurrentPage = 0
		evs, _, err := l.fetch(ctx, r, q, s.Size)
		if err != nil {
			return Result{}, err
		}
		res.Events = evs
		if len(evs) == s.Size {
			res.NextCursor = evs[len(evs)-1].Seq
		}
		// Totals in cursor mode count what remains after the cursor.
		if err := l.count(ctx, r, q, &res, len(evs) < s.Size); err != nil {
			return Result{}, err
		}
		res.TotalPages = pages(res.TotalElements, s.Size)
		return res, nil
	}
	want := (s.Page + 1) * s.Size
	evs, _, err := l.fetch(ctx, r, q, want)
	if err != nil {
		return Result{}, err
	}
	if off := s.Page * s.Size; off < len(evs) {
		res.Events = evs[off:]
	}
	if !q.Descending && len(evs) == want {
		res.NextCursor = evs[len(evs)-1].Seq
	}
	if err := l.count(ctx, r, q, &res, len(evs) < want); err != nil {
		return Result{}, err
	}
	if len(evs) < want {
		res.TotalElements = int64(len(evs))
	}
	res.TotalPages = pages(res.TotalElements, s.Size)
	return res, nil
}

func pages(total int64, size int) int { return int((total + int64(size) - 1) / int64(size)) }

// scoped returns q as r may run it.
func scoped(r Reader, q hub.EventQuery) (hub.EventQuery, error) {
	if r.Auditor {
		return q, nil
	}
	if r.Org == "" {
		return q, hub.Errorf(hub.Forbidden, "no organisation to read the event log of")
	}
	if q.Org != "" && q.Org != r.Org {
		return q, hub.Errorf(hub.Forbidden, "the event log of organisation %s is not yours to read", q.Org)
	}
	q.Org = r.Org
	return q, nil
}

// fetch returns up to n entries of q visible to r, reading on past
// invisible ones in ascending order; scanned is the last Seq looked at.
func (l *Log) fetch(ctx context.Context, r Reader, q hub.EventQuery, n int) (out []hub.Event, scanned uint64, err error) {
	scanned = q.AfterSeq
	for {
		q.Limit = n - len(out)
		raw, err := l.store.QueryEvents(ctx, q)
		if err != nil {
			return nil, 0, err
		}
		for _, ev := range raw {
			if Visible(ev, r) {
				out = append(out, ev)
			}
		}
		if len(raw) > 0 && !q.Descending {
			scanned = raw[len(raw)-1].Seq
		}
		// Descending order has no cursor to continue from: a page may come
		// out short when invisible entries were skipped.
		if len(raw) < q.Limit || len(out) >= n || q.Descending {
			return out, scanned, nil
		}
		q.AfterSeq = scanned
	}
}

// count sets res.TotalElements. When the page itself showed the end, the
// caller knows the total; otherwise the matching entries are read, up to
// CountCap (no store counts without reading: a count by the store could
// not apply the sender rule to read events anyway).
func (l *Log) count(ctx context.Context, r Reader, q hub.EventQuery, res *Result, done bool) error {
	if done {
		res.TotalElements = int64(len(res.Events))
		return nil
	}
	q.Descending = false
	evs, _, err := l.fetch(ctx, r, q, CountCap)
	if err != nil {
		return err
	}
	res.TotalElements = int64(len(evs))
	res.TotalExact = len(evs) < CountCap
	return nil
}

// Feed returns the entries visible to r after Seq after, waiting up to
// wait for one to be sealed (long-poll). next is the cursor to continue
// from: the last Seq looked at, which may be past the last returned entry
// when invisible ones were skipped. Seqs are gap-free and sealed in order,
// so following the cursor never misses an entry. A feed is logged by its
// caller once per subscription (LogFeed), not per poll.
func (l *Log) Feed(ctx context.Context, r Reader, after uint64, limit int, wait time.Duration) (evs []hub.Event, next uint64, err error) {
	q, err := scoped(r, hub.EventQuery{AfterSeq: after})
	if err != nil {
		return nil, after, err
	}
	if limit <= 0 || limit > MaxPageSize {
		limit = MaxPageSize
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		changed := l.changedCh()
		evs, next, err = l.fetch(ctx, r, q, limit)
		if err != nil || len(evs) > 0 {
			return evs, next, err
		}
		q.AfterSeq = next
		poll := time.NewTimer(l.opts.PollInterval)
		l.feedWaits.Add(1)
		select {
		case <-ctx.Done():
			l.feedWaits.Add(-1)
			poll.Stop()
			return nil, next, nil
		case <-deadline.C:
			l.feedWaits.Add(-1)
			poll.Stop()
			return nil, next, nil
		case <-changed:
		case <-poll.C:
		}
		l.feedWaits.Add(-1)
		poll.Stop()
	}
}

// FeedWaits is how many Feed calls wait for entries now, having found none
// (a gauge for metrics, and for tests that seal for a waiting reader).
func (l *Log) FeedWaits() int { return int(l.feedWaits.Load()) }

// LogFeed records that r subscribed to its feed (or follows it: once per
// FeedLogEvery and reader on this instance).
func (l *Log) LogFeed(ctx context.Context, r Reader, params string) error {
	if _, err := scoped(r, hub.EventQuery{}); err != nil {
		return err
	}
	// A reader following the feed by long-poll asks again as soon as it
	// is answered; logged every time, an auditor's own entry (which it
	// sees) answered its next poll at once, for ever. Its watching is
	// logged once per FeedLogEvery instead.
	now := time.Now()
	if l.opts.Now != nil {
		now = l.opts.Now()
	}
	l.feedMu.Lock()
	last, seen := l.feedLogged[r]
	if seen && now.Sub(last) < FeedLogEvery && !now.Before(last) {
		l.feedMu.Unlock()
		return nil
	}
	if l.feedLogged == nil || len(l.feedLogged) >= maxFeedReaders {
		l.feedLogged = map[Reader]time.Time{} // at worst some feeds are logged again
	}
	l.feedLogged[r] = now
	l.feedMu.Unlock()
	if err := l.logSearch(ctx, r, EventLogSearches, "feed "+params); err != nil {
		l.feedMu.Lock()
		delete(l.feedLogged, r)
		l.feedMu.Unlock()
		return err
	}
	return nil
}

// FeedLogEvery is how often one reader's following of the feed is logged
// (EVENT_LOG_SEARCHES, "feed …") on one instance.
const FeedLogEvery = 10 * time.Minute

// maxFeedReaders bounds the readers LogFeed remembers.
const maxFeedReaders = 10_000

// Export calls fn for every entry of q visible to r (ascending,
// cursor-paged), after logging the export: an auditor's covers the whole
// log, anyone else's its organisation's entries as Search shows them.
// Forbidden for a reader without organisation or naming another's.
func (l *Log) Export(ctx context.Context, r Reader, q hub.EventQuery, params string, fn func(hub.Event) error) error {
	q, err := scoped(r, q)
	if err != nil {
		return err
	}
	if err := l.logSearch(ctx, r, EventLogExported, params); err != nil {
		return err
	}
	q.Descending = false
	for {
		q.Limit = 1000
		evs, err := l.store.QueryEvents(ctx, q)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if !Visible(ev, r) {
				continue
			}
			if err := fn(ev); err != nil {
				return err
			}
		}
		if len(evs) < q.Limit {
			return nil
		}
		q.AfterSeq = evs[len(evs)-1].Seq
	}
}

func (l *Log) logSearch(ctx context.Context, r Reader, tag Tag, params string) error {
	who := r.Actor
	if who == "" {
		who = "unknown"
	}
	d := map[string]string{"query": truncate(params, MaxDetailValue)}
	if r.Org != "" {
		d[DetailSearchedOrg] = r.Org
	}
	if r.Auditor {
		d["auditor"] = "true"
	}
	if err := l.Emit(ctx, hub.Event{Tag: string(tag), Actor: who, SystemID: r.SystemID, Detail: d}); err != nil {
		return fmt.Errorf("eventlog: the search could not be logged, so it is not answered: %w", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n-3]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}
