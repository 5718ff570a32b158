package retrieval_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/retrieval"
)

// TestSimultaneousStartsMoveOneJob: "one system-fetch moving per mailbox"
// is checked and written under the organisation's start lock, so of eight
// starts at once exactly one starts and seven are refused with the rule's
// conflict.
func TestSimultaneousStartsMoveOneJob(t *testing.T) {
	e := newEnv(t, retrieval.Config{})
	q := hub.MailboxQueue(senderOrg, hub.AuthorityPost)
	for range 300 {
		e.put(q, senderOrg, "", "1.1", false)
	}
	sys := e.mailboxOnlyReceiver(senderOrg, hub.SystemSpec{})
	mb := retrieval.MailboxID(senderOrg, hub.AuthorityPost)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = e.svc.StartFetch(ctx, sys, mb, retrieval.FetchRequest{})
		}()
	}
	close(start)
	wg.Wait()
	started, conflicts := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			started++
		case hub.Is(err, hub.Conflict):
			conflicts++
		default:
			t.Errorf("start: %v", err)
		}
	}
	if started != 1 || conflicts != n-1 {
		t.Fatalf("%d started, %d refused; want 1 and %d", started, conflicts, n-1)
	}
}

// TestSystemFetchInputsAreBounded: a contactPointId is at most 64
// printable characters, and an organisation keeps its newest 50 ended
// jobs, deleting older ones that ended over ten minutes ago as new ones
// start.
func TestSystemFetchInputsAreBounded(t *testing.T) {
	e := newEnv(t, retrieval.Config{})
	sys := e.mailboxOnlyReceiver(senderOrg, hub.SystemSpec{})
	mb := retrieval.MailboxID(senderOrg, hub.AuthorityPost)
	for _, id := range []string{strings.Repeat("x", 65), "a b", "ø"} {
		if _, err := e.svc.StartFetch(ctx, sys, mb, retrieval.FetchRequest{ContactPointID: id}); hub.ErrorCode(err) != hub.Invalid {
			t.Errorf("contactPointId %.20q: %v, want invalid", id, err)
		}
	}
	for i := range 60 {
		if i == 59 {
			// Only jobs ended a while ago are deleted: the moves of the
			// jobs so far end first (their last write stamps the job), then
			// time passes.
			e.svc.Wait()
			e.clock.Add(11 * time.Minute)
		}
		f, err := e.svc.StartFetch(ctx, sys, mb, retrieval.FetchRequest{ContactPointID: "cp-1"})
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		// An empty mailbox's job ends at once; stop it in case it has not.
		if _, err := e.svc.UpdateFetch(ctx, sys, mb, f.ID, retrieval.FetchStopped); err != nil {
			t.Fatalf("stop %d: %v", i, err)
		}
	}
	fs, err := e.svc.ListFetches(ctx, sys, mb, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 51 { // 50 kept when the last one started, and the last one
		t.Fatalf("%d jobs listed, want 51", len(fs))
	}
}
