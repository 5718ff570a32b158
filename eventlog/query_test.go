package eventlog_test

import (
	"crypto/ed25519"
	"slices"
	"testing"
	"time"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
)

const (
	senderOrg    = "11111111" // an authority sending letters
	recipientOrg = "22222222" // a company receiving them
	otherOrg     = "33333333"
)

// visibilityLog seals a letter's life from sender to reader, plus the
// log's own bookkeeping, and returns the Log.
func visibilityLog(t *testing.T) (*eventlog.Log, eventStore) {
	s := openBolt(t, "")
	l := eventlog.New(s, eventlog.Options{})
	t.Cleanup(func() { _ = l.Close() })
	both := []string{senderOrg, recipientOrg}
	evs := []hub.Event{
		{Tag: string(eventlog.MemoSendReceived), Orgs: both, MessageUUID: "m1", Party: recipientOrg},
		{Tag: string(eventlog.MemoSendReadyForFetch), Orgs: both, MessageUUID: "m1", Party: recipientOrg},
		{Tag: string(eventlog.MemoSendFetchedByRecipientSystem), Orgs: both, MessageUUID: "m1", Party: recipientOrg},
		// The read event as it should be emitted: recipient side in Orgs,
		// sender only in the detail.
		{Tag: string(eventlog.MessageRead), Orgs: []string{recipientOrg}, MessageUUID: "m1", Party: recipientOrg,
			Detail: map[string]string{eventlog.DetailSenderOrg: senderOrg}},
		// A faulty emitter putting the sender in Orgs: Emit strips it.
		{Tag: string(eventlog.MessageRead), Orgs: both, MessageUUID: "m1", Party: recipientOrg,
			Detail: map[string]string{eventlog.DetailSenderOrg: senderOrg}},
		{Tag: string(eventlog.SystemChanged), Orgs: []string{otherOrg}, SystemID: "sys-c"},
		{Tag: string(eventlog.PrivilegesGranted), Orgs: []string{recipientOrg}, Actor: "admin"},
		{Tag: string(eventlog.EventLogSearches), Orgs: []string{recipientOrg}, Actor: "sys-b"},
	}
	if err := l.Emit(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	sealAll(t, eventlog.NewSealer(s, eventlog.SealerOptions{Holder: "test", Key: testKey, CheckpointEvery: 4}))
	return l, s
}

func tagsOf(evs []hub.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Tag)
	}
	return out
}

func TestVisibilityPerOrganisation(t *testing.T) {
	l, _ := visibilityLog(t)
	cases := []struct {
		name   string
		reader eventlog.Reader
		want   []string
	}{
		{"the sender sees received, ready and fetched but never read", eventlog.Reader{Org: senderOrg, Actor: "sys-a"},
			[]string{"MEMO_SEND_RECEIVED", "MEMO_SEND_READY_FOR_FETCH", "MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM"}},
		{"the recipient sees its letter's life including reads and its privileges", eventlog.Reader{Org: recipientOrg, Actor: "sys-b"},
			[]string{"MEMO_SEND_RECEIVED", "MEMO_SEND_READY_FOR_FETCH", "MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM", "MESSAGE_READ", "MESSAGE_READ", "PRIVILEGES_GRANTED"}},
		{"another organisation sees only its own system change", eventlog.Reader{Org: otherOrg, Actor: "sys-c"},
			[]string{"SYSTEM_CHANGED"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := l.Search(ctx, tc.reader, eventlog.Search{Size: 100})
			if err != nil {
				t.Fatal(err)
			}
			if got := tagsOf(res.Events); !slices.Equal(got, tc.want) {
				t.Fatalf("sees %v, want %v", got, tc.want)
			}
			if res.TotalElements != int64(len(tc.want)) {
				t.Fatalf("totalElements %d, want %d", res.TotalElements, len(tc.want))
			}
		})
	}
	t.Run("the auditor sees everything, the bookkeeping and the searches above included", func(t *testing.T) {
		res, err := l.Search(ctx, eventlog.Reader{Auditor: true, Actor: "operator"}, eventlog.Search{Size: 100})
		if err != nil {
			t.Fatal(err)
		}
		got := tagsOf(res.Events)
		for _, want := range []string{"MESSAGE_READ", "SYSTEM_CHANGED", "EVENT_LOG_CHECKPOINT", "EVENT_LOG_SEARCHES"} {
			if !slices.Contains(got, want) {
				t.Fatalf("auditor does not see %s: %v", want, got)
			}
		}
		for _, ev := range res.Events {
			if ev.Tag == "MESSAGE_READ" && slices.Contains(ev.Orgs, senderOrg) {
				t.Fatalf("a read event was sealed with the sender in Orgs: %+v", ev)
			}
		}
	})
	t.Run("asking for another organisation's log is forbidden", func(t *testing.T) {
		_, err := l.Search(ctx, eventlog.Reader{Org: senderOrg}, eventlog.Search{Query: hub.EventQuery{Org: recipientOrg}})
		if hub.ErrorCode(err) != hub.Forbidden {
			t.Fatalf("err %v, want forbidden", err)
		}
	})
	t.Run("a reader without organisation sees nothing", func(t *testing.T) {
		_, err := l.Search(ctx, eventlog.Reader{Actor: "nobody"}, eventlog.Search{})
		if hub.ErrorCode(err) != hub.Forbidden {
			t.Fatalf("err %v, want forbidden", err)
		}
	})
}

func TestVisibleHidesReadsFromSenderEvenInOrgs(t *testing.T) {
	ev := hub.Event{Tag: "MESSAGE_READ", Orgs: []string{senderOrg, recipientOrg}, Party: recipientOrg,
		Detail: map[string]string{eventlog.DetailSenderOrg: senderOrg}}
	if eventlog.Visible(ev, eventlog.Reader{Org: senderOrg}) {
		t.Fatal("sender sees the read")
	}
	if !eventlog.Visible(ev, eventlog.Reader{Org: recipientOrg}) {
		t.Fatal("recipient does not see the read")
	}
	self := ev
	self.Party = senderOrg // an organisation writing to itself reads its own letter
	if !eventlog.Visible(self, eventlog.Reader{Org: senderOrg}) {
		t.Fatal("an organisation that is its own recipient does not see its read")
	}
}

func TestSearchIsLogged(t *testing.T) {
	l, s := visibilityLog(t)
	if _, err := l.Search(ctx, eventlog.Reader{Org: senderOrg, Actor: "sys-a", SystemID: "sys-a"}, eventlog.Search{Params: "eventTag=MESSAGE_READ"}); err != nil {
		t.Fatal(err)
	}
	if _, err := eventlog.NewSealer(s, eventlog.SealerOptions{Holder: "test"}).Step(ctx); err != nil {
		t.Fatal(err)
	}
	evs, err := s.QueryEvents(ctx, hub.EventQuery{Tags: []string{"EVENT_LOG_SEARCHES"}, Actor: "sys-a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].SystemID != "sys-a" || evs[0].Detail[eventlog.DetailSearchedOrg] != senderOrg || evs[0].Detail["query"] != "eventTag=MESSAGE_READ" {
		t.Fatalf("search entries %+v", evs)
	}
}

func TestOffsetAndCursorPaging(t *testing.T) {
	s := openBolt(t, "")
	buildChain(t, s, 45, 0)
	l := eventlog.New(s, eventlog.Options{})
	defer l.Close()
	r := eventlog.Reader{Org: senderOrg, Actor: "sys-a"}
	res, err := l.Search(ctx, r, eventlog.Search{Page: 2, Size: 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 5 || res.Events[0].Seq != 41 || res.TotalElements != 45 || res.TotalPages != 3 || res.CurrentPage != 2 {
		t.Fatalf("page 2: %d events from %d, total %d, pages %d", len(res.Events), res.Events[0].Seq, res.TotalElements, res.TotalPages)
	}
	var got []uint64
	var after uint64
	for {
		res, err := l.Search(ctx, r, eventlog.Search{Cursor: true, Size: 20, Query: hub.EventQuery{AfterSeq: after}})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range res.Events {
			got = append(got, ev.Seq)
		}
		if res.NextCursor == 0 {
			break
		}
		after = res.NextCursor
	}
	if len(got) != 45 || got[0] != 1 || got[44] != 45 {
		t.Fatalf("cursor paging read %d entries", len(got))
	}
	desc, err := l.Search(ctx, r, eventlog.Search{Size: 10, Query: hub.EventQuery{Descending: true}})
	if err != nil || desc.Events[0].Seq != 45 {
		t.Fatalf("descending: %v %v", desc.Events, err)
	}
	if _, err := l.Search(ctx, r, eventlog.Search{Page: 600, Size: 20}); hub.ErrorCode(err) != hub.Invalid {
		t.Fatalf("deep offset: %v, want invalid", err)
	}
}

func TestFeedWakesWhenSealed(t *testing.T) {
	s := openBolt(t, "")
	l := eventlog.New(s, eventlog.Options{PollInterval: time.Hour})
	defer l.Close()
	sl := eventlog.NewSealer(s, eventlog.SealerOptions{Notify: l.Notify})
	r := eventlog.Reader{Org: recipientOrg, Actor: "sys-b"}
	type result struct {
		evs  []hub.Event
		next uint64
	}
	got := make(chan result, 1)
	go func() {
		evs, next, err := l.Feed(ctx, r, 0, 10, time.Minute)
		if err != nil {
			t.Error(err)
		}
		got <- result{evs, next}
	}()
	// Emitted only once the feed waits, so that the wake-up is what
	// finds it.
	for deadline := time.Now().Add(time.Minute); l.FeedWaits() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the feed did not start waiting within a minute")
		}
	}
	// Invisible to the reader first, then its own.
	if err := l.Emit(ctx, letterEvent(1, eventlog.SystemChanged, otherOrg), letterEvent(2, eventlog.MemoSendReadyForFetch, recipientOrg)); err != nil {
		t.Fatal(err)
	}
	sealAll(t, sl)
	select {
	case res := <-got:
		if len(res.evs) != 1 || res.evs[0].Seq != 2 || res.next != 2 {
			t.Fatalf("feed: %+v next %d", res.evs, res.next)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the feed did not wake up")
	}
	evs, next, err := l.Feed(ctx, r, 2, 10, 20*time.Millisecond)
	if err != nil || len(evs) != 0 || next != 2 {
		t.Fatalf("empty feed: %v %d %v", evs, next, err)
	}
}

func TestEmitRefusesContentSizedDetail(t *testing.T) {
	s := openBolt(t, "")
	l := eventlog.New(s, eventlog.Options{})
	defer l.Close()
	big := make([]byte, eventlog.MaxDetailValue+1)
	err := l.Emit(ctx, hub.Event{Tag: "MEMO_SEND_RECEIVED", Detail: map[string]string{"body": string(big)}})
	if hub.ErrorCode(err) != hub.Invalid {
		t.Fatalf("err %v, want invalid", err)
	}
	if err := l.Emit(ctx, hub.Event{}); hub.ErrorCode(err) != hub.Invalid {
		t.Fatalf("untagged: %v, want invalid", err)
	}
}

// Retention deletes a prefix; the rest verifies from its first entry, and
// a checkpoint after it makes the anchor trustworthy.
func TestRetentionKeepsAVerifiableSuffix(t *testing.T) {
	s := openBolt(t, "")
	log := buildChain(t, s, 30, 10) // entries at t0 + i seconds; checkpoints at 11, 22, 33
	cut := log[15].Time             // seq 16
	n, err := eventlog.Retain(ctx, s, cut)
	if err != nil {
		t.Fatal(err)
	}
	r := verifyOK(t, s)
	if n == 0 || r.First == 1 || r.Anchor == eventlog.Genesis {
		t.Fatalf("retention deleted %d; verify from %d anchor %s", n, r.First, r.Anchor)
	}
	r, err = eventlog.VerifyWith(ctx, s, eventlog.VerifyOptions{PublicKey: testKey.Public().(ed25519.PublicKey)})
	if err != nil || r.Problem != nil || !r.Anchored || r.Checkpoints == 0 {
		t.Fatalf("with key: %+v %v", r, err)
	}
	// Retention never deletes the newest entry, whatever the cutoff.
	if _, err := eventlog.Retain(ctx, s, time.Now().Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if evs := scan(t, s); len(evs) == 0 || evs[len(evs)-1].Seq != log[len(log)-1].Seq {
		t.Fatalf("after retention of everything: %d entries", len(evs))
	}
	verifyOK(t, s)
}
