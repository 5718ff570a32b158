package mongo_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/storage/mongo"
	"github.com/posthub/posthub/storage/storagetest"
)

// cutAfterAckLink opens a store whose ack stops right after its link:
// cancel, once armed, is called when the insert of an "acked" lease link
// has succeeded, so the writes that apply the link fail as after a crash
// of the acknowledging instance (AckWith still reports success: the ack is
// decided and durable).
func cutAfterAckLink(t *testing.T) (*mongo.Store, func(context.CancelFunc)) {
	t.Helper()
	var mu sync.Mutex
	var cancel context.CancelFunc
	var linkReq int64 = -1
	mon := &event.CommandMonitor{
		Started: func(_ context.Context, e *event.CommandStartedEvent) {
			if e.CommandName == "insert" && strings.Contains(e.Command.String(), `"leases"`) &&
				strings.Contains(e.Command.String(), `"k": "acked"`) {
				mu.Lock()
				linkReq = e.RequestID
				mu.Unlock()
			}
		},
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) {
			mu.Lock()
			defer mu.Unlock()
			if e.RequestID == linkReq && cancel != nil {
				cancel()
				cancel = nil
			}
		},
	}
	s := openConfig(t, mongo.Config{URI: testservers.FerretDB(t), Database: testservers.DatabaseName(t), Monitor: mon})
	return s, func(c context.CancelFunc) { mu.Lock(); cancel = c; mu.Unlock() }
}

// An acknowledged delivery is never listed, counted or claimed again, even
// while its acknowledgement is not yet applied (the acknowledging instance
// died after the link): the link itself takes it off the queue.
func TestAckedDeliveryLeavesTheQueueWithItsLink(t *testing.T) {
	const q = "system/recv"
	for _, leased := range []bool{false, true} {
		name := map[bool]string{false: "never leased", true: "leased"}[leased]
		t.Run(name, func(t *testing.T) {
			s, arm := cutAfterAckLink(t)
			bg := context.Background()
			putLetter(t, s, "m1", q)
			putLetter(t, s, "m2", q)
			if leased {
				if _, err := s.Lease(bg, "m1/"+q, "p", time.Minute, storagetest.T0); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			arm(cancel)
			if res, err := s.AckWith(ctx, "m1/"+q, "m1", storagetest.T0, completed); err != nil || res.AlreadyAcked {
				t.Fatalf("AckWith: %+v, %v", res, err)
			}
			if ctx.Err() == nil {
				t.Fatal("the ack's link was not seen: nothing was cut")
			}
			for _, avail := range []bool{false, true} {
				ds, err := s.ListQueue(bg, q, 0, 100, avail, storagetest.T0.Add(time.Hour))
				if err != nil {
					t.Fatal(err)
				}
				if len(ds) != 1 || ds[0].ID != "m2/"+q {
					t.Fatalf("ListQueue(onlyAvailable %v) after the ack: %v, want only m2", avail, ds)
				}
			}
			if n, err := s.CountQueue(bg, q); err != nil || n != 1 {
				t.Fatalf("CountQueue after the ack: %d, %v, want 1", n, err)
			}
			if _, err := s.GetDelivery(bg, "m1/"+q); !hub.Is(err, hub.NotFound) {
				t.Fatalf("GetDelivery of the acknowledged delivery: %v, want not_found", err)
			}
			c, err := s.ClaimNext(bg, q, "p2", time.Minute, storagetest.T0.Add(time.Hour))
			if err != nil || c.Delivery.ID != "m2/"+q {
				t.Fatalf("ClaimNext after the ack: %+v, %v, want m2", c.Delivery, err)
			}
			// Repair applies the link; the delivery stays gone.
			if err := s.Repair(bg, time.Now()); err != nil {
				t.Fatal(err)
			}
			ds, err := s.ListQueue(bg, q, 0, 100, false, storagetest.T0)
			if err != nil || len(ds) != 1 || ds[0].ID != "m2/"+q {
				t.Fatalf("ListQueue after Repair: %v, %v, want only m2", ds, err)
			}
			if res, err := s.Ack(bg, "m1/"+q, storagetest.T0); err != nil || !res.AlreadyAcked {
				t.Fatalf("Ack again: %+v, %v, want AlreadyAcked", res, err)
			}
		})
	}
}
