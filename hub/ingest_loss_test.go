package hub_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/bolt"
)

// reviewLetter is a submission of a small letter to a registered citizen,
// its content bound for the blob store (InlineMax 0).
func reviewLetter(sys hub.System, uuid string) hub.Submission {
	body := []byte("<memo:Message>" + uuid + "</memo:Message>")
	sum := sha256.Sum256(body)
	return hub.Submission{System: sys, Body: body, Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]),
		Mode: hub.ModeAutomatic, Letter: hub.Letter{UUID: uuid, MessageType: "DIGITALPOST", SenderID: "11111111",
			RecipientID: "0101701234", RecipientType: "CPR", Size: int64(len(body))}}
}

// contentOK reports whether the stored message uuid (if any) can be read.
func contentOK(t *testing.T, w envelopeWorld, uuid string) (stored, readable bool) {
	t.Helper()
	ctx := context.Background()
	m, err := w.store.GetMessage(ctx, uuid)
	if hub.Is(err, hub.NotFound) {
		return false, false
	}
	if err != nil {
		t.Fatal(err)
	}
	rc, err := hub.OpenContent(ctx, w.blobs, m)
	if err != nil {
		return true, false
	}
	rc.Close()
	return true, true
}

// Losses found by a review of the layers above the stores (each test failed
// before its fix).

// TestAnAbandonedResubmissionLeavesTheAcceptedContent: a sender retries a
// letter (same UUID, same bytes) while its first submission is still
// committing, and gives up on the retry (client timeout, disconnect). Both
// submissions used to write one content key, msg/<uuid>/<sha>; the retry's
// commit, waiting in bolt's accept log for the first one's entry and its
// context ended, answered Unavailable ("write abandoned"), and Submit then
// deleted the blob the first, accepted, letter names (23-119 of 400
// letters lost their content in each run). Real bolt and fs stores, no
// fault injection; the race depends on timing, so it is run many times.
func TestAnAbandonedResubmissionLeavesTheAcceptedContent(t *testing.T) {
	w := newEnvelopeWorld(t, 0)
	w.in.Store = w.store
	if err := w.store.PutContacts(context.Background(), []hub.Contact{{ID: "0101701234", Status: hub.Registered}}); err != nil {
		t.Fatal(err)
	}
	lost := 0
	const runs = 400
	for i := range runs {
		uuid := fmt.Sprintf("0b5c9c1e-6a53-4a4e-9d43-%012d", i)
		s := reviewLetter(w.sys, uuid)
		var wg sync.WaitGroup
		var errA, errB error
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _, errA = w.in.Submit(context.Background(), s)
		}()
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(400))*time.Microsecond)
			defer cancel()
			_, _, errB = w.in.Submit(ctx, s)
		}()
		wg.Wait()
		if errA != nil {
			continue
		}
		if stored, readable := contentOK(t, w, uuid); stored && !readable {
			lost++
			if lost <= 3 {
				t.Logf("letter %s: first submission accepted; retry answered %v; content gone", uuid, errB)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d accepted letters (201 to the first submission) have no content: an abandoned identical resubmission deleted the shared blob", lost, runs)
	}
}

// failAfterWinner is a store whose PutMessageWith, for the submission
// marked loser, waits until the winner has committed and then fails with
// a non-Conflict error, as bolt's accept log does for a retry whose context
// ends while the first submission's entry is being synced ("write
// abandoned"), and as storage/mongo does on any transient error.
type failAfterWinner struct {
	*bolt.Store
	committed chan struct{}
	reached   chan struct{} // closed when the loser's commit starts
}

type loserKey struct{}

func (f failAfterWinner) PutMessageWith(ctx context.Context, m hub.Message, ds []hub.Delivery, r hub.Receipt, evs []hub.Event, cs []hub.Counter) error {
	if ctx.Value(loserKey{}) != nil {
		close(f.reached)
		<-f.committed
		return hub.Errorf(hub.Unavailable, "bolt: write abandoned")
	}
	err := f.Store.PutMessageWith(ctx, m, ds, r, evs, cs)
	close(f.committed)
	return err
}

// TestAFailedIdenticalSubmissionLeavesTheWinnersContent is the
// deterministic form of the race above: of two identical submissions, one
// commits (201) and the other's commit fails with a non-Conflict error; the
// failing one's cleanup used to delete the content key both shared.
func TestAFailedIdenticalSubmissionLeavesTheWinnersContent(t *testing.T) {
	w := newEnvelopeWorld(t, 0)
	if err := w.store.PutContacts(context.Background(), []hub.Contact{{ID: "0101701234", Status: hub.Registered}}); err != nil {
		t.Fatal(err)
	}
	loser := failAfterWinner{Store: w.store, committed: make(chan struct{}), reached: make(chan struct{})}
	w.in.Store = loser
	uuid := "0b5c9c1e-6a53-4a4e-9d43-00000000abcd"
	s := reviewLetter(w.sys, uuid)
	var wg sync.WaitGroup
	var errA, errB error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _, errB = w.in.Submit(context.WithValue(context.Background(), loserKey{}, true), s)
	}()
	<-loser.reached // the loser has uploaded its content and waits in its commit
	_, _, errA = w.in.Submit(context.Background(), s)
	wg.Wait()
	if errA != nil {
		t.Fatalf("winner: %v", errA)
	}
	t.Logf("loser answered: %v", errB)
	if stored, readable := contentOK(t, w, uuid); !stored || !readable {
		t.Fatalf("accepted letter %s: stored=%v, content readable=%v — the failed submission's cleanup deleted the shared blob", uuid, stored, readable)
	}
}

// landedButFailed is storage/mongo's documented ambiguous commit
// (messages.go: "The commit may or may not have landed; Repair resolves
// either way"): the message is stored and the call still fails.
type landedButFailed struct{ *bolt.Store }

func (l landedButFailed) PutMessageWith(ctx context.Context, m hub.Message, ds []hub.Delivery, r hub.Receipt, evs []hub.Event, cs []hub.Counter) error {
	if err := l.Store.PutMessageWith(ctx, m, ds, r, evs, cs); err != nil {
		return err
	}
	return hub.Errorf(hub.Unavailable, "commit message %s: connection reset", m.UUID)
}

// TestAnUncertainCommitErrorKeepsTheContent: on a commit error Submit used
// to delete the content it uploaded, although a failed PutMessageWith may
// have committed (storage/mongo says so; an answer can be lost). The sender
// retried and got the first receipt for a message whose content was gone.
// Now the content stays unless the store says for certain it stored
// nothing.
func TestAnUncertainCommitErrorKeepsTheContent(t *testing.T) {
	w := newEnvelopeWorld(t, 0)
	if err := w.store.PutContacts(context.Background(), []hub.Contact{{ID: "0101701234", Status: hub.Registered}}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	uuid := "0b5c9c1e-6a53-4a4e-9d43-00000000abce"
	s := reviewLetter(w.sys, uuid)
	w.in.Store = landedButFailed{w.store}
	if _, _, err := w.in.Submit(ctx, s); err == nil {
		t.Fatal("the stand-in commit did not fail")
	}
	w.in.Store = w.store
	r, created, err := w.in.Submit(ctx, s)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	t.Logf("retry answered receipt %s status %s created=%v", r.TransmissionID, r.Status, created)
	if stored, readable := contentOK(t, w, uuid); stored && !readable {
		t.Fatalf("the retry was answered with a receipt, but letter %s has no content (deleted after the ambiguous commit)", uuid)
	}
}

// failingDispatcher fails its first fails calls (a print provider or the
// spool directory briefly unavailable), then takes everything.
type failingDispatcher struct {
	mu    sync.Mutex
	fails int
	calls int
	took  []string
}

func (d *failingDispatcher) Dispatch(_ context.Context, it hub.OutboxItem) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if d.calls <= d.fails {
		return fmt.Errorf("print provider unavailable")
	}
	d.took = append(d.took, it.Message.UUID)
	return nil
}

// TestOutboxTriesAFailedItemOncePerLease: the outbox used to release a
// failed item and claim it again at once, so one Drain spent all of
// MaxAttempts (10) within a brief outage of the print provider (2 ms) and
// parked the letter for good. A failed item now keeps its lease and is
// tried again when the lease expires: one attempt per Drain and lease, and
// printed once the provider is back.
func TestOutboxTriesAFailedItemOncePerLease(t *testing.T) {
	w := newEnvelopeWorld(t, 1<<20)
	ctx := context.Background()
	_, uuid := w.submit(t, ctx, "0202702345", hub.ModePrintOnly, hub.Envelope{})
	d := &failingDispatcher{fails: 3}
	now := time.Now()
	const lease = 5 * time.Minute
	ob := &hub.Outbox{Store: w.store, Blobs: w.blobs, Queue: hub.PrintQueue, Holder: "t", Lease: lease,
		MaxAttempts: 10, Dispatcher: d, Now: func() time.Time { return now }}
	for i := 1; i <= 3; i++ {
		if n, err := ob.Drain(ctx); n != 0 || err != nil {
			t.Fatalf("drain %d during the outage: %d, %v", i, n, err)
		}
		if d.calls != i {
			t.Fatalf("after drain %d: %d dispatch attempts, want %d", i, d.calls, i)
		}
		if n, err := ob.Drain(ctx); n != 0 || err != nil || d.calls != i {
			t.Fatalf("a drain within the lease: %d, %v, %d attempts", n, err, d.calls)
		}
		now = now.Add(lease + time.Second)
	}
	if n, err := ob.Drain(ctx); n != 1 || err != nil {
		t.Fatalf("drain once the provider is back: %d, %v", n, err)
	}
	if len(d.took) != 1 || d.took[0] != uuid {
		t.Fatalf("printed %v, want %s", d.took, uuid)
	}
}

// ackFailsOnce fails the first Ack (a transient storage error, or the
// recalling client's context ending after SetMessageState).
type ackFailsOnce struct {
	*bolt.Store
	failed *bool
}

func (a ackFailsOnce) Ack(ctx context.Context, id string, now time.Time) (hub.AckResult, error) {
	if !*a.failed {
		*a.failed = true
		return hub.AckResult{}, hub.Errorf(hub.Unavailable, "bolt: write abandoned")
	}
	return a.Store.Ack(ctx, id, now)
}

// TestARecallCutShortIsFinishedByItsRetry: Recall sets RECALLED first and
// removes the deliveries after. When a removal failed, the sender's retry
// used to answer success at once (the state already RECALLED) and the
// deliveries stayed: at doNotDeliverUntilDate the recalled letter was
// printed. The retry now removes what is left, and the outbox drops a
// delivery of a recalled letter rather than print it.
func TestARecallCutShortIsFinishedByItsRetry(t *testing.T) {
	w := newEnvelopeWorld(t, 1<<20)
	ctx := context.Background()
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	w.in.Now = func() time.Time { return now }
	uuid := "0b5c9c1e-6a53-4a4e-9d43-00000000abcf"
	body := []byte("<memo:Message>" + uuid + "</memo:Message>")
	sum := sha256.Sum256(body)
	_, _, err := w.in.Submit(ctx, hub.Submission{System: w.sys, Body: body, Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]),
		Mode: hub.ModePrintOnly, Letter: hub.Letter{UUID: uuid, MessageType: "DIGITALPOST", SenderID: "11111111",
			RecipientID: "0202702345", RecipientType: "CPR", Size: int64(len(body)), NotBefore: now.Add(24 * time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	failed := false
	w.in.Store = ackFailsOnce{w.store, &failed}
	err1 := w.in.Recall(ctx, "11111111", "sender", uuid)
	err2 := w.in.Recall(ctx, "11111111", "sender", uuid)
	m, _ := w.store.GetMessage(ctx, uuid)
	t.Logf("first recall: %v; retried recall: %v; state %s", err1, err2, m.State)
	d := &failingDispatcher{}
	ob := &hub.Outbox{Store: w.store, Blobs: w.blobs, Queue: hub.PrintQueue, Holder: "t", Lease: time.Minute, MaxAttempts: 10,
		Dispatcher: d, Now: func() time.Time { return now.Add(25 * time.Hour) }}
	if _, err := ob.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err2 != nil || m.State != hub.MessageRecalled {
		t.Fatalf("the retried recall: %v, state %s", err2, m.State)
	}
	if ds, err := w.store.DeliveriesOf(ctx, uuid); err != nil || len(ds) != 0 {
		t.Fatalf("deliveries after the retried recall: %+v, %v", ds, err)
	}
	if len(d.took) > 0 {
		t.Fatalf("recall answered success (state %s) but the letter was printed after its date: %v", m.State, d.took)
	}
}
