package mongo

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/posthub/posthub/hub"
)

// PutMessageFirstStep does PutMessage's first step only (deliveries and
// receipt, pending), which is what a PutMessage whose instance died before
// its commit leaves behind; it returns the tx.
func (s *Store) PutMessageFirstStep(ctx context.Context, m hub.Message, ds []hub.Delivery, r hub.Receipt) (string, error) {
	for i := range ds {
		ds[i].Seq = s.nextSeq()
	}
	tx := randomID()
	return tx, s.insertPendingMessage(ctx, m.UUID, tx, ds, r, time.Now())
}

// CommitFirstStep is the commit of the PutMessage that wrote tx, arriving
// now: Conflict when the message's _id is taken or tx was fenced off.
func (s *Store) CommitFirstStep(ctx context.Context, m hub.Message, tx string) error {
	_, err := s.messages.InsertOne(ctx, msgDoc{ID: m.UUID, C: true, Tx: tx, Claimed: time.Now(), Sender: m.SenderCVR, Rcv: m.Received, M: m})
	if isDup(err) {
		return hub.Wrap(hub.Conflict, err, "message %s exists", m.UUID)
	}
	return translate(err, "commit message %s", m.UUID)
}

// AfterFence makes fn run where PutMessage has fenced off another
// PutMessage of the UUID and removed its documents, before it stores its
// own, for the rest of t.
func (s *Store) AfterFence(t testing.TB, fn func(uuid string)) {
	s.afterFence = fn
	t.Cleanup(func() { s.afterFence = nil })
}

// Fence is PutMessage's fencing of the unfinished PutMessages whose
// pending deliveries ds collide with; it reports whether it fenced any.
func (s *Store) Fence(ctx context.Context, uuid string, ds []hub.Delivery) (bool, error) {
	return s.fenceUnfinished(ctx, uuid, ds)
}

// HasFence reports whether a fence of the PutMessage tx is stored.
func (s *Store) HasFence(ctx context.Context, tx string) (bool, error) {
	_, ok, err := findOne[msgDoc](ctx, s.messages, bson.M{"_id": fenceID(tx), "c": false})
	return ok, err
}

// SetStateWindow makes the queue state window n for the rest of t (the
// tests of this package run one at a time), so that a test can overflow it
// with a few dozen deliveries instead of thousands.
func SetStateWindow(t testing.TB, n int) {
	old := stateWindow
	stateWindow = n
	t.Cleanup(func() { stateWindow = old })
}

// PutMessageCutOff is PutMessageWith cut off by a crash right after its
// commit: the message is committed (carrying evs and cs, as
// PutMessageWith's commit does) and none of its events, counters or
// settling is written.
func (s *Store) PutMessageCutOff(ctx context.Context, m hub.Message, ds []hub.Delivery, r hub.Receipt, evs []hub.Event, cs []hub.Counter) error {
	_, err := s.putMessage(ctx, m, ds, r, evs, cs)
	return err
}

// RepairEventsAt runs Repair's event step as if the wall clock said wall.
func (s *Store) RepairEventsAt(ctx context.Context, wall time.Time) (int, error) {
	return s.repairEvents(ctx, wall)
}

// ResetEventRepairCursor makes the event step look at every message in
// its window again.
func (s *Store) ResetEventRepairCursor(ctx context.Context) error {
	_, err := s.meta.DeleteOne(ctx, bson.M{"_id": eventRepairID})
	return translate(err, "reset the event repair cursor")
}

// ChangePolicyCutShort is what AddPolicy (add) or RemovePolicy of p leaves
// when its instance dies before the end: the stamp written and, with
// line, the line too.
func (s *Store) ChangePolicyCutShort(ctx context.Context, p hub.PolicyLine, add, line bool) error {
	return s.changePolicyFirst(ctx, p, add, line)
}

// TakeRulePlace takes a place of org for routing rule id, as
// PutRoutingRule does before it writes a new rule.
func (s *Store) TakeRulePlace(ctx context.Context, org, id string) error {
	_, err := s.takePlace(ctx, rulePlaces, org, id)
	return err
}

// RulePlaces counts org's places for routing rules.
func (s *Store) RulePlaces(ctx context.Context, org string) (int, error) {
	n, err := s.places.CountDocuments(ctx, bson.M{"kind": rulePlaces.name, "org": org})
	return int(n), translate(err, "count places")
}

// ForgetPlaces removes every place and the note that the places were
// filled: the store as a version before places left it.
func (s *Store) ForgetPlaces(ctx context.Context) error {
	if _, err := s.places.DeleteMany(ctx, bson.M{}); err != nil {
		return translate(err, "forget places")
	}
	_, err := s.meta.DeleteOne(ctx, bson.M{"_id": placesID})
	return translate(err, "forget places")
}

// SetEventQueryTime makes one QueryEvents' time bound d for the rest of t.
func SetEventQueryTime(t testing.TB, d time.Duration) {
	old := eventQueryTime
	eventQueryTime = d
	t.Cleanup(func() { eventQueryTime = old })
}

func SetEventQueryPing(t testing.TB, d time.Duration) {
	old := eventQueryPing
	eventQueryPing = d
	t.Cleanup(func() { eventQueryPing = old })
}
