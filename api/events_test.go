package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/hubtest"
	"github.com/posthub/posthub/storage/bolt"
)

const (
	sender    = "11111111"
	recipient = "22222222"
	other     = "33333333"
	opToken   = "operator-token"
)

type eventsFixture struct {
	srv    *httptest.Server
	log    *eventlog.Log
	sealer *eventlog.Sealer
	store  *bolt.Store
	tokens map[string]string // org → its system's token
}

func newEventsFixture(t *testing.T) *eventsFixture {
	t.Helper()
	ctx := context.Background()
	st := hubtest.Open(t).Store
	f := &eventsFixture{store: st, tokens: map[string]string{}}
	for _, org := range []string{sender, recipient, other} {
		tok, hash := hub.NewToken()
		if err := st.CreateSystem(ctx, hub.System{ID: "sys-" + org, OrgCVR: org, Name: "system", Role: hub.SenderSystem,
			TokenHash: hash, Active: true}); err != nil {
			t.Fatal(err)
		}
		f.tokens[org] = tok
	}
	f.log = eventlog.New(st, eventlog.Options{PollInterval: 20 * time.Millisecond})
	t.Cleanup(func() { _ = f.log.Close() })
	f.sealer = eventlog.NewSealer(st, eventlog.SealerOptions{Notify: f.log.Notify})
	s := api.New(api.Config{OperatorTokenHash: hub.HashToken(opToken)},
		api.Deps{Store: st, Registry: &hub.Registry{Store: st}, Events: f.log})
	f.srv = httptest.NewServer(s.Handler())
	t.Cleanup(f.srv.Close)

	both := []string{sender, recipient}
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	evs := []hub.Event{
		{Time: at, Tag: "MEMO_SEND_RECEIVED", Actor: "sys-" + sender, SystemID: "sys-" + sender, Orgs: both, MessageUUID: "m1", Party: recipient},
		{Time: at.Add(time.Minute), Tag: "MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM", Actor: "sys-" + recipient, SystemID: "sys-" + recipient, Orgs: both, MessageUUID: "m1", Party: recipient},
		{Time: at.Add(2 * time.Minute), Tag: "MESSAGE_READ", Actor: "user-b", Orgs: []string{recipient}, MessageUUID: "m1", Party: recipient,
			Detail: map[string]string{eventlog.DetailSenderOrg: sender}},
		{Time: at.Add(24 * time.Hour), Tag: "SYSTEM_CHANGED", Actor: "operator", Orgs: []string{other}, SystemID: "sys-" + other},
	}
	if err := f.log.Emit(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	f.seal(t)
	return f
}

func (f *eventsFixture) seal(t *testing.T) {
	t.Helper()
	for {
		n, err := f.sealer.Step(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

func (f *eventsFixture) get(t *testing.T, token, path string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", f.srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

func (f *eventsFixture) query(t *testing.T, token, qs string) api.EventLogSearchResult {
	t.Helper()
	res := f.get(t, token, "/apis/v1/events/"+qs)
	if res.StatusCode != 200 {
		t.Fatalf("GET /events/%s: %d", qs, res.StatusCode)
	}
	var out api.EventLogSearchResult
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func eventTags(r api.EventLogSearchResult) []string {
	var out []string
	for _, e := range r.Events {
		out = append(out, e.EventTag)
	}
	return out
}

func TestEventsVisibilityPerRole(t *testing.T) {
	f := newEventsFixture(t)
	cases := []struct {
		name, token string
		want        []string
	}{
		{"a sender system sees delivered and fetched, never read", f.tokens[sender], []string{"MEMO_SEND_RECEIVED", "MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM"}},
		{"the recipient's system sees the read", f.tokens[recipient], []string{"MEMO_SEND_RECEIVED", "MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM", "MESSAGE_READ"}},
		{"an uninvolved organisation sees only its own", f.tokens[other], []string{"SYSTEM_CHANGED"}},
		{"the operator audits all", opToken, []string{"MEMO_SEND_RECEIVED", "MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM", "MESSAGE_READ", "SYSTEM_CHANGED"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := f.query(t, tc.token, "?size=100")
			tags := slices.DeleteFunc(eventTags(got), func(s string) bool { return s == "EVENT_LOG_SEARCHES" })
			if !slices.Equal(tags, tc.want) {
				t.Fatalf("sees %v, want %v", tags, tc.want)
			}
		})
	}
	t.Run("a sender asking for MESSAGE_READ explicitly gets nothing", func(t *testing.T) {
		got := f.query(t, f.tokens[sender], "?eventTag=MESSAGE_READ")
		if len(got.Events) != 0 || got.TotalElements != 0 {
			t.Fatalf("sender sees %v", eventTags(got))
		}
	})
	t.Run("anonymous is refused", func(t *testing.T) {
		if res := f.get(t, "", "/apis/v1/events/"); res.StatusCode != 401 {
			t.Fatalf("status %d", res.StatusCode)
		}
	})
	t.Run("a system may not export", func(t *testing.T) {
		if res := f.get(t, f.tokens[recipient], "/apis/v1/events/export"); res.StatusCode != 403 {
			t.Fatalf("status %d", res.StatusCode)
		}
	})
	t.Run("every query was logged with its principal, visible to the auditor only", func(t *testing.T) {
		f.seal(t)
		got := f.query(t, opToken, "?eventTag=EVENT_LOG_SEARCHES&size=100")
		actors := map[string]bool{}
		for _, e := range got.Events {
			actors[e.Actor] = true
		}
		for _, want := range []string{"sys-" + sender, "sys-" + recipient, "sys-" + other, "operator"} {
			if !actors[want] {
				t.Fatalf("no search logged for %s: %v", want, actors)
			}
		}
		if mine := f.query(t, f.tokens[sender], "?eventTag=EVENT_LOG_SEARCHES"); len(mine.Events) != 0 {
			t.Fatalf("a system sees search entries: %v", eventTags(mine))
		}
	})
}

func TestEventsFiltersAndPaging(t *testing.T) {
	f := newEventsFixture(t)
	day := f.query(t, opToken, "?dateFrom=2026-03-02&dateTo=2026-03-02&eventTag=MEMO_SEND_RECEIVED,MESSAGE_READ,memo_send_received,MESSAGE_READ")
	if !slices.Equal(eventTags(day), []string{"MEMO_SEND_RECEIVED", "MESSAGE_READ"}) {
		t.Fatalf("day + tags: %v", eventTags(day))
	}
	if got := f.query(t, opToken, "?dateFrom=2026-03-02T10:00:30.000Z&dateTo=2026-03-03T00:00:00.000Z"); len(got.Events) != 2 {
		t.Fatalf("time range: %v", eventTags(got))
	}
	if got := f.query(t, opToken, "?senderOrRecipientSystem=sys-"+recipient); !slices.Equal(eventTags(got), []string{"MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM"}) {
		t.Fatalf("system filter: %v", eventTags(got))
	}
	if got := f.query(t, opToken, "?ownerOrActor=user-b"); !slices.Equal(eventTags(got), []string{"MESSAGE_READ"}) {
		t.Fatalf("actor filter: %v", eventTags(got))
	}
	if got := f.query(t, opToken, "?senderOrRecipient="+other+"&eventTag=SYSTEM_CHANGED"); len(got.Events) != 1 {
		t.Fatalf("organisation filter: %v", eventTags(got))
	}
	desc := f.query(t, f.tokens[recipient], "?sortFields=eventTime:desc&size=2&eventTag=MEMO_SEND_RECEIVED,MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM,MESSAGE_READ")
	if len(desc.Events) != 2 || desc.Events[0].EventTag != "MESSAGE_READ" || desc.TotalElements != 3 || desc.TotalPages != 2 {
		t.Fatalf("descending page: %+v", desc)
	}
	// Cursor paging walks every visible entry once.
	page := f.query(t, f.tokens[recipient], "?after=0&size=2&eventTag=MEMO_SEND_RECEIVED,MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM,MESSAGE_READ")
	if len(page.Events) != 2 || page.NextCursor != page.Events[1].Seq || !strings.Contains(page.Next, "after=") {
		t.Fatalf("first cursor page: %+v", page)
	}
	rest := f.query(t, f.tokens[recipient], page.Next)
	if len(rest.Events) != 1 || rest.Events[0].EventTag != "MESSAGE_READ" || rest.NextCursor != 0 {
		t.Fatalf("second cursor page: %+v", rest)
	}
	var manyTags string
	for i := range 33 {
		manyTags += fmt.Sprintf("TAG_%d,", i)
	}
	for _, bad := range []string{"?dateFrom=yesterday", "?size=0", "?sortFields=label:asc", "?after=x", "?senderOrRecipient=abc",
		"?eventTag=" + manyTags, "?eventTag=" + strings.Repeat("A", 65), "?eventTag=MEMO%00X", "?eventTag=" + strings.Repeat("A,", 100000)} {
		if res := f.get(t, opToken, "/apis/v1/events/"+bad); res.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", bad, res.StatusCode)
		}
	}
	if res := f.get(t, f.tokens[sender], "/apis/v1/events/export?format=jsonl&organisation="+recipient); res.StatusCode != 403 {
		t.Errorf("export by a system: %d", res.StatusCode)
	}
}

func TestEventsLongPollAndSSE(t *testing.T) {
	f := newEventsFixture(t)
	last := f.query(t, f.tokens[recipient], "?size=100")
	after := last.Events[len(last.Events)-1].Seq
	type answer struct {
		feed api.EventFeed
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		var a answer
		req, _ := http.NewRequest("GET", f.srv.URL+"/apis/v1/events/feed?wait=30s&after="+itoa(after), nil)
		req.Header.Set("Authorization", "Basic "+f.tokens[recipient])
		res, err := http.DefaultClient.Do(req)
		if a.err = err; err == nil {
			a.err = json.NewDecoder(res.Body).Decode(&a.feed)
			res.Body.Close()
		}
		got <- a
	}()
	// Sealed only once the long poll waits, so that the wake-up is what
	// answers it.
	for deadline := time.Now().Add(time.Minute); f.log.FeedWaits() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the long poll did not start waiting within a minute")
		}
	}
	// The gauge operators see says so too.
	m := f.get(t, opToken, "/metrics")
	if b, _ := io.ReadAll(m.Body); m.StatusCode != 200 || !strings.Contains(string(b), "\nposthub_eventlog_feed_waits 1\n") {
		t.Errorf("/metrics while one feed waits: %d %s", m.StatusCode, b)
	}
	_ = f.log.Emit(context.Background(), hub.Event{Tag: "MEMO_SEND_READY_FOR_FETCH", Orgs: []string{sender, recipient}, MessageUUID: "m2"})
	f.seal(t)
	a := <-got
	if a.err != nil {
		t.Fatal(a.err)
	}
	feed := a.feed
	if len(feed.Events) != 1 || feed.Events[0].EventTag != "MEMO_SEND_READY_FOR_FETCH" || feed.NextCursor != feed.Events[0].Seq {
		t.Fatalf("long-poll: %+v", feed)
	}

	// SSE: resume after the read event; the sender's stream must skip it.
	sse := f.get(t, f.tokens[sender], "/apis/v1/events/feed", "Accept", "text/event-stream", "Last-Event-ID", "0")
	if ct := sse.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(sse.Body)
	var names []string
	for sc.Scan() && len(names) < 3 {
		if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			names = append(names, ev)
		}
	}
	if !slices.Equal(names, []string{"MEMO_SEND_RECEIVED", "MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM", "MEMO_SEND_READY_FOR_FETCH"}) {
		t.Fatalf("sender's stream: %v", names)
	}
}

func TestEventsExportForAuditor(t *testing.T) {
	f := newEventsFixture(t)
	res := f.get(t, opToken, "/apis/v1/events/export?format=csv&eventTag=MESSAGE_READ")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv export: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(res.Body)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "seq,id,eventTime,eventTag") || !strings.Contains(lines[1], "MESSAGE_READ") {
		t.Fatalf("csv: %q", lines)
	}
	res = f.get(t, opToken, "/apis/v1/events/export")
	dec := json.NewDecoder(res.Body)
	var prev string
	n := 0
	for dec.More() {
		var ev hub.Event
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		if eventlog.Hash(ev) != ev.Hash || (n > 0 && ev.PrevHash != prev) {
			t.Fatalf("exported entry %d does not verify", ev.Seq)
		}
		prev, n = ev.Hash, n+1
	}
	if n < 4 {
		t.Fatalf("exported %d entries", n)
	}
}

func itoa(n uint64) string { b, _ := json.Marshal(n); return string(b) }
