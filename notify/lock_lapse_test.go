package notify_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/notify"
)

// countingMailer counts what it sent per subject+address; before its first
// send it runs stall (a slow mail server: the batch outlives the lock).
type countingMailer struct {
	mu    sync.Mutex
	sent  map[string]int
	total int
	stall func()
	fired bool
}

func (m *countingMailer) SendMail(_ context.Context, to, subject, body string) error {
	m.mu.Lock()
	stall := m.stall != nil && !m.fired
	m.fired = true
	m.mu.Unlock()
	if stall {
		m.stall()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.total++
	m.sent[to+"|"+body]++
	return nil
}

// TestANotifierThatLostItsLockStops: two instances; A takes the notifier
// lock (2 minutes) and starts a batch; its first SMTP exchange stalls past
// the lock's TTL (a slow or greylisting server: 30 s timeout each, 50 a
// batch), so B takes the lock and sends every due notification. A used to
// go on with the batch it had listed and send them all again, and its
// renewal at the end of the batch ignored that the lock was B's, so both
// sent everything from then on (5 letters, 10 e-mails; found by a review).
// A now renews before each attempt and stops once the lock is B's: only
// the notification in flight when the lock lapsed goes out twice
// (notifications are sent at least once).
func TestANotifierThatLostItsLockStops(t *testing.T) {
	ms := startMailServer(t)
	w := newWorld(t, ms)
	ctx := context.Background()
	w.n.SMS = nil
	const letters = 5
	for i := 0; i < letters; i++ {
		w.send(t, "brev", time.Time{})
	}
	shared := &countingMailer{sent: map[string]int{}}
	b := &notify.Notifier{Store: w.store, Mailboxes: w.store, Holder: "instance-b", Now: func() time.Time { return w.now },
		Mail: shared}
	a := &notify.Notifier{Store: w.store, Mailboxes: w.store, Holder: "instance-a", Now: func() time.Time { return w.now },
		Mail: shared}
	shared.stall = func() {
		w.now = w.now.Add(3 * time.Minute) // A's lock lapses while its first send hangs
		if n, err := b.Send(ctx); err != nil || n != letters {
			t.Errorf("B sent %d (%v), want %d", n, err, letters)
		}
	}
	if _, err := a.Send(ctx); err != nil {
		t.Fatal(err)
	}
	if shared.total != letters+1 {
		t.Errorf("%d letters, %d e-mails sent; want %d (each once, and the one in flight when A's lock lapsed twice)", letters, shared.total, letters+1)
	}
	twice := 0
	for _, n := range shared.sent {
		if n > 1 {
			twice++
		}
	}
	if twice > 1 {
		t.Errorf("%d notifications sent more than once: %v", twice, shared.sent)
	}
	if n, err := a.Send(ctx); err != nil || n != 0 {
		t.Errorf("A again while B holds the lock: %d, %v", n, err)
	}
}
