package client_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/retrieval/client"
)

// queueStub is a hub whose queue holds one message: its long poll answers
// the statuses of next in turn (200: the message, leased; 204: nothing; the
// last one from then on), and it counts long polls and acks.
type queueStub struct {
	next        []int
	polls, acks atomic.Int64
}

const stubUUID = "0b0f5a8e-3c53-4c1e-9a57-5d3f1b7f0c11"

func (q *queueStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == "GET" && r.URL.Path == "/apis/v1/memos/next":
		i := int(q.polls.Add(1)) - 1
		switch st := q.next[min(i, len(q.next)-1)]; st {
		case http.StatusOK:
			w.Header().Set("X-Posthub-Message-Uuid", stubUUID)
			w.Header().Set("X-Posthub-Lease", "l1")
			io.WriteString(w, "<memo/>")
		case http.StatusNoContent:
			w.WriteHeader(st)
		default:
			w.WriteHeader(st)
			io.WriteString(w, `{"code":"unavailable","message":"try again"}`)
		}
	case r.Method == "DELETE" && r.URL.Path == "/apis/v1/memos/"+stubUUID:
		q.acks.Add(1)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

func drain(t *testing.T, c *client.Client) (client.Stats, error) {
	t.Helper()
	// The deadline only stops a Drainer that would wait for ever; Run
	// ending by it returns no error, which the tests below count as a
	// failure.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := &client.Drainer{Client: c, Dir: t.TempDir(), Workers: 1, Wait: time.Millisecond}
	return d.Run(ctx)
}

// TestDrainerWaitsOutALostLongPoll: a long poll whose answer was lost
// (the connection broke after the hub may have leased a message) is sent
// again under Retry, which a bare Next never does: the message it may
// have leased comes back when that lease expires, and the Drainer stores
// and acknowledges it then.
func TestDrainerWaitsOutALostLongPoll(t *testing.T) {
	q := &queueStub{next: []int{200, 200, 200, 204}}
	srv := httptest.NewServer(q)
	defer srv.Close()
	tr := &breaking{}
	tr.lose.Store(2)
	st, err := drain(t, retrying(srv.URL, &http.Client{Transport: tr}))
	if err != nil {
		t.Fatalf("drain over a connection that broke twice: %v", err)
	}
	if st.Written != 1 || q.polls.Load() != 4 || q.acks.Load() != 1 {
		t.Fatalf("written %d, long polls %d (want 4: two lost, the message, empty), acks %d", st.Written, q.polls.Load(), q.acks.Load())
	}
}

// TestDrainerGivesUpWhenRetryDoes: a hub that stays unavailable (503, or
// a closed port) ends Run with Unavailable after Retry's attempts — at the
// first failure with the zero Retry — instead of waiting for ever.
func TestDrainerGivesUpWhenRetryDoes(t *testing.T) {
	q := &queueStub{next: []int{503}}
	srv := httptest.NewServer(q)
	defer srv.Close()
	if _, err := drain(t, client.New(srv.URL, "token", nil)); !hub.Is(err, hub.Unavailable) {
		t.Fatalf("drain of a 503 hub without Retry: %v, want Unavailable", err)
	}
	if n := q.polls.Load(); n != 1 {
		t.Fatalf("without Retry: %d long polls, want 1", n)
	}
	q.polls.Store(0)
	if _, err := drain(t, retrying(srv.URL, nil)); !hub.Is(err, hub.Unavailable) {
		t.Fatalf("drain of a 503 hub: %v, want Unavailable", err)
	}
	if n := q.polls.Load(); n != 4 {
		t.Fatalf("%d long polls, want Attempts (4)", n)
	}

	closed := closedURL(t)
	counted := &refusing{}
	if _, err := drain(t, retrying(closed, &http.Client{Transport: counted})); !hub.Is(err, hub.Unavailable) {
		t.Fatalf("drain of a closed port: %v, want Unavailable", err)
	}
	if n := counted.calls.Load(); n != 4 {
		t.Fatalf("%d requests to a closed port, want Attempts (4)", n)
	}
}

// TestDrainerRecoveryAckIsRetried: a message an earlier run stored but did
// not acknowledge is acknowledged on start, through refused connections.
func TestDrainerRecoveryAckIsRetried(t *testing.T) {
	q := &queueStub{next: []int{204}}
	srv := httptest.NewServer(q)
	defer srv.Close()
	dir := t.TempDir()
	for _, name := range []string{stubUUID + ".xml", "." + stubUUID + ".pending"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("<memo/>"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tr := &refusing{}
	tr.refuse.Store(2)
	d := &client.Drainer{Client: retrying(srv.URL, &http.Client{Transport: tr}), Dir: dir, Workers: 1, Wait: time.Millisecond}
	st, err := d.Run(context.Background())
	if err != nil || st.Recovered != 1 || q.acks.Load() != 1 {
		t.Fatalf("recovered %d, acks %d, err %v", st.Recovered, q.acks.Load(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "."+stubUUID+".pending")); !os.IsNotExist(err) {
		t.Fatalf("the pending marker survived its ack: %v", err)
	}
}

// TestDrainerReportsMessagesItCouldNotStore: a fetched message whose file
// cannot be written (here a directory stands at its path — not the
// message, though something is there) is neither taken as stored nor
// acknowledged, and a run without Follow that leaves it on the hub ends
// with an error saying so instead of succeeding.
func TestDrainerReportsMessagesItCouldNotStore(t *testing.T) {
	q := &queueStub{next: []int{200, 204}}
	srv := httptest.NewServer(q)
	defer srv.Close()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, stubUUID+".xml"), 0o750); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := &client.Drainer{Client: client.New(srv.URL, "token", nil), Dir: dir, Workers: 1, Wait: time.Millisecond}
	st, err := d.Run(ctx)
	if !hub.Is(err, hub.Unavailable) || st.NotStored != 1 || st.Written+st.Existing != 0 {
		t.Fatalf("Run = %+v, %v; want Unavailable with one message not stored", st, err)
	}
	if q.acks.Load() != 0 {
		t.Fatalf("acknowledged %d messages it did not store", q.acks.Load())
	}
}
