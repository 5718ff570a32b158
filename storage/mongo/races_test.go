package mongo_test

// Races between hub instances found by a review of the Mongo store (each
// failed before its fix). Each test opens several Stores on one database
// (several hub instances) and pauses one of them at a chosen command with
// the driver's command monitor (Config.Monitor), so the interleaving is
// exact, not timed.

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/storage/mongo"
	"github.com/posthub/posthub/storage/storagetest"
)

// gate pauses the first command that match accepts, until open is called.
type gate struct {
	mu      sync.Mutex
	match   func(*event.CommandStartedEvent) bool
	armed   bool
	reached chan struct{}
	release chan struct{}
}

func newGate() *gate {
	return &gate{reached: make(chan struct{}), release: make(chan struct{})}
}

// arm makes the gate pause the next command match accepts.
func (g *gate) arm(match func(*event.CommandStartedEvent) bool) {
	g.mu.Lock()
	g.match, g.armed = match, true
	g.mu.Unlock()
}

func (g *gate) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		g.mu.Lock()
		hit := g.armed && g.match(e)
		if hit {
			g.armed = false
		}
		g.mu.Unlock()
		if hit {
			close(g.reached)
			<-g.release
		}
	}}
}

func (g *gate) wait(t *testing.T) {
	t.Helper()
	select {
	case <-g.reached:
	case <-time.After(60 * time.Second):
		t.Fatal("the paused command was never sent")
	}
}

func (g *gate) open() { close(g.release) }

// on matches a command by name and collection.
func on(cmd, coll string) func(*event.CommandStartedEvent) bool {
	return func(e *event.CommandStartedEvent) bool {
		if e.CommandName != cmd {
			return false
		}
		v, err := e.Command.LookupErr(cmd)
		return err == nil && v.StringValue() == coll
	}
}

// instances opens n Stores on one fresh database; gates[i] pauses store i.
func instances(t *testing.T, n int) ([]*mongo.Store, []*gate) {
	uri, db := testservers.FerretDB(t), testservers.DatabaseName(t)
	var ss []*mongo.Store
	var gs []*gate
	for i := 0; i < n; i++ {
		g := newGate()
		gs = append(gs, g)
		ss = append(ss, openConfig(t, mongo.Config{URI: uri, Database: db, Monitor: g.monitor()}))
	}
	return ss, gs
}

// TestRepairKeepsTheAckedLinkOfAnAckInFlight: Repair's repairLeases reads
// the lease chains, then looks up which of their deliveries are gone. It
// used to delete those chains whole ({d: $in gone}), so an ack that landed
// between the two (acked link inserted, delivery document deleted) lost
// its acked link, which must stay for the grace period so that a lease
// that read the chain before the ack collides with it: here a poller of
// another instance that read the page while the first lease had expired
// then won the epoch, and ClaimNext handed out the acknowledged delivery
// again. Repair now deletes only the links it read, of chains older than
// the grace period.
func TestRepairKeepsTheAckedLinkOfAnAckInFlight(t *testing.T) {
	ss, gs := instances(t, 3)
	consumer, poller, repairer := ss[0], ss[1], ss[2]
	ctx := context.Background()
	const q = "system/review-q"
	uuid := "m-review-ack"
	m := storagetest.Message(uuid, []byte("content"), storagetest.T0)
	ds := []hub.Delivery{storagetest.Delivery(uuid, q, storagetest.T0)}
	if err := consumer.PutMessage(ctx, m, ds, storagetest.Receipt(uuid, storagetest.T0)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// The consumer's lease (it will ack after the lease's expiry, as a slow
	// consumer does).
	c, err := consumer.ClaimNext(ctx, q, "consumer", time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}

	// A poller of another instance, later (the lease has expired for it),
	// reads the page and the chain, and is slow to insert its lease.
	later := now.Add(2 * time.Minute)
	gs[1].arm(on("insert", "leases"))
	type claimed struct {
		c   hub.Claimed
		err error
	}
	pollDone := make(chan claimed, 1)
	go func() {
		c, err := poller.ClaimNext(ctx, q, "poller", time.Minute, later)
		pollDone <- claimed{c, err}
	}()
	gs[1].wait(t)

	// Repair on a third instance has read the lease chains and stops
	// before it looks up their deliveries (its read of the park markers
	// comes between the two).
	gs[2].arm(on("find", "parked"))
	repairDone := make(chan error, 1)
	go func() { repairDone <- repairer.Repair(ctx, time.Now()) }()
	gs[2].wait(t)

	// The consumer acknowledges: acked link, delivery document removed.
	res, err := consumer.Ack(ctx, c.Delivery.ID, later)
	if err != nil || res.AlreadyAcked {
		t.Fatalf("ack: %+v, %v", res, err)
	}

	gs[2].open()
	if err := <-repairDone; err != nil {
		t.Fatalf("Repair: %v", err)
	}
	gs[1].open()
	got := <-pollDone
	if got.err == nil {
		t.Fatalf("ClaimNext handed out the acknowledged delivery %s again (lease epoch %d, holder %s): duplicate delivery",
			got.c.Delivery.ID, got.c.Lease.Epoch, got.c.Lease.Holder)
	}
	if !hub.Is(got.err, hub.NotFound) {
		t.Fatalf("poller: %v", got.err)
	}
}

// TestDuplicateReceiverAddKeepsTheWinnersTokenClaim: two ChangeReceivers
// adding the same receiver system (a double-submitted or retried admin
// request through two instances). The second used to find the token claim
// its system's own and share it, lose the roster race, and release the
// token by DeleteOne{_id: hash, sys: id}: the claim the winner's system
// relies on (it could not authenticate, and another system could claim
// the hash). A claim of the same system that its live revision does not
// carry is now another request's: the second add is refused and releases
// nothing.
func TestDuplicateReceiverAddKeepsTheWinnersTokenClaim(t *testing.T) {
	ss, gs := instances(t, 2)
	a, b := ss[0], ss[1]
	ctx := context.Background()
	const org, hash = "11112222", "review-token-hash-1"
	add := func() hub.ReceiverChange {
		sys := hub.System{ID: "recv-dup", OrgCVR: org, Role: hub.RecipientSystem, Mailbox: hub.AuthorityPost, TokenHash: hash}
		return hub.ReceiverChange{Add: &sys, At: storagetest.T0, Rule: func(active []hub.Receiver) ([]hub.Receiver, error) {
			return append(active, hub.Receiver{ID: sys.ID, Mailbox: sys.Mailbox, Default: len(active) == 0}), nil
		}}
	}
	// A has claimed the token and inserted the roster revision, and is about
	// to write the system document.
	gs[0].arm(on("insert", "systems"))
	aDone := make(chan error, 1)
	go func() { aDone <- a.ChangeReceivers(ctx, org, add()) }()
	gs[0].wait(t)
	errB := b.ChangeReceivers(ctx, org, add())
	t.Logf("the second add: %v", errB)
	gs[0].open()
	if err := <-aDone; err != nil {
		t.Fatalf("the first add: %v", err)
	}
	sys, err := b.GetSystem(ctx, "recv-dup")
	if err != nil || !sys.Active || sys.TokenHash != hash {
		t.Fatalf("system after the adds: %+v, %v", sys, err)
	}
	if _, err := b.SystemByToken(ctx, hash); err != nil {
		t.Errorf("the added system's token does not authenticate: %v", err)
	}
	other := hub.System{ID: "other-sys", OrgCVR: org, Role: hub.SenderSystem, Active: true, TokenHash: hash}
	if err := b.CreateSystem(ctx, other); err == nil {
		t.Errorf("a second system was created with the token hash of recv-dup: two systems share one token")
	}
}

// TestTokenReleaseLeavesANewerClaim: UpdateSystem changing a system's
// token T1 -> T2 ends with releaseToken(T1). A second update setting the
// token back to T1 before that release used to share the old claim, which
// the late release then deleted under the live revision. Now the second
// update is refused until the release is done (Conflict, nothing
// changed), and goes through after it.
func TestTokenReleaseLeavesANewerClaim(t *testing.T) {
	ss, gs := instances(t, 2)
	a, b := ss[0], ss[1]
	ctx := context.Background()
	const org, t1, t2 = "11113333", "review-token-t1", "review-token-t2"
	s0 := hub.System{ID: "sender-flip", OrgCVR: org, Role: hub.SenderSystem, Active: true, TokenHash: t1}
	if err := a.CreateSystem(ctx, s0); err != nil {
		t.Fatal(err)
	}
	cur, err := a.GetSystem(ctx, s0.ID)
	if err != nil {
		t.Fatal(err)
	}
	// A: T1 -> T2, paused before its release of T1.
	u1 := cur
	u1.TokenHash = t2
	gs[0].arm(on("delete", "system_tokens"))
	aDone := make(chan error, 1)
	go func() { aDone <- a.UpdateSystem(ctx, u1) }()
	gs[0].wait(t)
	// B: T2 -> T1 (the rotation rolled back).
	cur, err = b.GetSystem(ctx, s0.ID)
	if err != nil || cur.TokenHash != t2 {
		t.Fatalf("after the first update: %+v, %v", cur, err)
	}
	cur.TokenHash = t1
	err = b.UpdateSystem(ctx, cur)
	if err != nil && !hub.Is(err, hub.Conflict) {
		t.Fatalf("the second update: %v", err)
	}
	gs[0].open()
	if err := <-aDone; err != nil {
		t.Fatalf("the first update: %v", err)
	}
	if err != nil {
		// Refused while the first update still held T1: nothing changed,
		// and once it is done the same update goes through.
		if _, err := b.SystemByToken(ctx, t2); err != nil {
			t.Fatalf("after the refused update, the first update's token: %v", err)
		}
		if err := b.UpdateSystem(ctx, cur); err != nil {
			t.Fatalf("the second update again: %v", err)
		}
	}
	cur, err = b.GetSystem(ctx, s0.ID)
	if err != nil || cur.TokenHash != t1 {
		t.Fatalf("after both updates: %+v, %v", cur, err)
	}
	if _, err := b.SystemByToken(ctx, t1); err != nil {
		t.Errorf("the system's live token does not authenticate: %v", err)
	}
	other := hub.System{ID: "other-sys", OrgCVR: org, Role: hub.SenderSystem, Active: true, TokenHash: t1}
	if err := b.CreateSystem(ctx, other); err == nil {
		t.Errorf("a second system was created with the live token hash of %s: two systems share one token", s0.ID)
	}
}

// TestDuplicateReceiverAddsAtOnceKeepTheTokenClaim is the duplicate add
// without a pause: the same receiver system added by two instances at
// once, 20 times (before the fix, 18-20 of 20 lost the token claim).
func TestDuplicateReceiverAddsAtOnceKeepTheTokenClaim(t *testing.T) {
	ss, _ := instances(t, 2)
	ctx := context.Background()
	const org = "11114444"
	lost := 0
	const rounds = 20
	for i := 0; i < rounds; i++ {
		id := "recv-" + string(rune('a'+i))
		hash := "review-ungated-" + id
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, s := range ss {
			wg.Add(1)
			go func(s *mongo.Store) {
				defer wg.Done()
				sys := hub.System{ID: id, OrgCVR: org, Role: hub.RecipientSystem, Mailbox: hub.CVRPost, TokenHash: hash}
				<-start
				_ = s.ChangeReceivers(ctx, org, hub.ReceiverChange{Add: &sys, At: storagetest.T0, Rule: func(active []hub.Receiver) ([]hub.Receiver, error) {
					return append(active, hub.Receiver{ID: sys.ID, Mailbox: sys.Mailbox}), nil
				}})
			}(s)
		}
		close(start)
		wg.Wait()
		if sys, err := ss[0].GetSystem(ctx, id); err == nil && sys.TokenHash == hash {
			if _, err := ss[0].SystemByToken(ctx, hash); err != nil {
				lost++
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d double adds left the added system without its token claim", lost, rounds)
	}
}

// TestCodeReleaseLeavesANewerClaim: a put of a contact point that drops a
// code releases the code's claim after its revision. A second put of the
// point adding the code back in between used to share the claim, which
// the late release then deleted, so another point could claim the code.
// Now the second put is refused until the release is done, and goes
// through after it; the code stays the point's alone.
func TestCodeReleaseLeavesANewerClaim(t *testing.T) {
	ss, gs := instances(t, 2)
	a, b := ss[0], ss[1]
	ctx := context.Background()
	const org = "11115555"
	code := hub.ContactPointCode{Type: hub.CodeKLE, Code: "00.01.00"}
	p := hub.ContactPoint{ID: "point-1", OrgCVR: org, Name: "P1", SystemID: "sys", Codes: []hub.ContactPointCode{code}, Active: true}
	if err := a.PutContactPoint(ctx, p); err != nil {
		t.Fatal(err)
	}
	cur, err := a.GetContactPoint(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	// A drops the code, paused at the delete of its claim (after its read).
	drop := cur
	drop.Codes = nil
	gs[0].arm(on("delete", "contact_point_codes"))
	aDone := make(chan error, 1)
	go func() { aDone <- a.PutContactPoint(ctx, drop) }()
	gs[0].wait(t)
	// B adds it back.
	cur, err = b.GetContactPoint(ctx, p.ID)
	if err != nil || len(cur.Codes) != 0 {
		t.Fatalf("after the drop: %+v, %v", cur, err)
	}
	cur.Codes = []hub.ContactPointCode{code}
	err = b.PutContactPoint(ctx, cur)
	if err != nil && !hub.Is(err, hub.Conflict) {
		t.Fatalf("adding the code back: %v", err)
	}
	gs[0].open()
	if err := <-aDone; err != nil {
		t.Fatalf("the drop: %v", err)
	}
	if err != nil {
		// Refused while the drop still held the code; once it is done the
		// same put goes through.
		if err := b.PutContactPoint(ctx, cur); err != nil {
			t.Fatalf("adding the code back again: %v", err)
		}
	}
	if got, err := b.GetContactPoint(ctx, p.ID); err != nil || len(got.Codes) != 1 {
		t.Fatalf("point-1 after both puts: %+v, %v", got, err)
	}
	other := hub.ContactPoint{ID: "point-2", OrgCVR: org, Name: "P2", SystemID: "sys", Codes: []hub.ContactPointCode{code}, Active: true}
	if err := b.PutContactPoint(ctx, other); err == nil {
		t.Errorf("point-2 was given code %v, which point-1's live revision carries: two points share one code", code)
	}
}
