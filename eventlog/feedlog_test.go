package eventlog_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/eventlog"
)

// TestAFollowedFeedIsLoggedOncePerWindow: every long-poll of the feed was
// logged (EVENT_LOG_SEARCHES), and an auditor sees those entries, so each
// poll's entry answered the next poll at once: a script following the feed
// never waited and wrote one log entry per poll, for ever. One reader's
// following is logged once per FeedLogEvery; another reader's, or the same
// reader's after the window, again.
func TestAFollowedFeedIsLoggedOncePerWindow(t *testing.T) {
	s := openBolt(t, "")
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	l := eventlog.New(s, eventlog.Options{Now: func() time.Time { return now }})
	t.Cleanup(func() { _ = l.Close() })
	ctx := context.Background()
	auditor := eventlog.Reader{Auditor: true, Actor: "user:revisor"}
	other := eventlog.Reader{Org: senderOrg, Actor: "user:anne"}
	feeds := func() int {
		t.Helper()
		evs, err := s.PendingEvents(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ev := range evs {
			if ev.Tag == string(eventlog.EventLogSearches) && strings.HasPrefix(ev.Detail["query"], "feed ") {
				n++
			}
		}
		return n
	}
	for i := range 20 {
		if err := l.LogFeed(ctx, auditor, "after="+string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	if n := feeds(); n != 1 {
		t.Fatalf("20 polls of one reader logged %d times, want once", n)
	}
	if err := l.LogFeed(ctx, other, "after=1"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(eventlog.FeedLogEvery)
	if err := l.LogFeed(ctx, auditor, "after=99"); err != nil {
		t.Fatal(err)
	}
	if n := feeds(); n != 3 {
		t.Fatalf("logged %d times, want 3 (another reader, and the first after the window)", n)
	}
}
