package mongo_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/roundtrip"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/storage/mongo"
	"github.com/posthub/posthub/storage/storagetest"
)

// openCounted opens an empty store whose commands rec counts.
func openCounted(t *testing.T, rec *roundtrip.Recorder) *mongo.Store {
	t.Helper()
	return openConfig(t, mongo.Config{URI: testservers.FerretDB(t), Database: testservers.DatabaseName(t), Monitor: rec.Monitor(),
		AuthCacheTTL: time.Minute})
}

// budgetCase is one Store call whose commands are counted, after its
// setup (not counted), against its budget of serial commands, serial
// writes and total commands.
type budgetCase struct {
	name                        string
	setup                       func(t *testing.T, s *mongo.Store)
	op                          func(ctx context.Context, s *mongo.Store) error
	serial, serialWrites, total int
}

// letter is an accepted letter as hub.Ingest stores it: one delivery, the
// sender's receipt, four events and two counters.
func letter(uuid, queue string) (hub.Message, []hub.Delivery, hub.Receipt, []hub.Event, []hub.Counter) {
	m := storagetest.Message(uuid, []byte("<memo>"+uuid+"</memo>"), storagetest.T0)
	ds := []hub.Delivery{storagetest.Delivery(uuid, queue, storagetest.T0)}
	var evs []hub.Event
	for _, tag := range []string{"MEMO_SEND_RECEIVED", "MEMO_SEND_VALIDATED", "MEMO_SEND_READY_FOR_FETCH"} {
		evs = append(evs, hub.Event{ID: hub.NewID(), Time: storagetest.T0, Tag: tag, Orgs: []string{"12345678"}, MessageUUID: uuid})
	}
	cs := []hub.Counter{
		{Key: hub.CounterKey{Org: "87654321", Day: "2026-03-02", Direction: "RECEIVED"}, Count: 1, Bytes: 10},
		{Key: hub.CounterKey{Org: "12345678", Day: "2026-03-02", Direction: "SENT"}, Count: 1, Bytes: 10},
	}
	return m, ds, storagetest.Receipt(uuid, storagetest.T0), evs, cs
}

// completed is what retrieval's ack records: the sender's receipt
// COMPLETED and the fetch event.
func completed(v hub.AckView) (*hub.Receipt, []hub.Event, error) {
	r := *v.SenderReceipt
	r.Status = hub.ReceiptCompleted
	return &r, []hub.Event{{ID: "retrieval:fetched:" + v.Delivery.ID, Time: storagetest.T0, Tag: "MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM"}}, nil
}

func putLetter(t *testing.T, s *mongo.Store, uuid, queue string) {
	t.Helper()
	m, ds, r, evs, cs := letter(uuid, queue)
	if err := s.PutMessageWith(context.Background(), m, ds, r, evs, cs); err != nil {
		t.Fatal(err)
	}
}

func sealer(s *mongo.Store) *eventlog.Sealer {
	return eventlog.NewSealer(s, eventlog.SealerOptions{Holder: "budget"})
}

// TestStoreCommandBudget counts the MongoDB commands of the Store methods on
// the hot paths (accept, drain, viewer) and fails over budget. Serial
// commands are what a caller waits for on a replica set; see the package
// doc for what the budgets buy.
func TestStoreCommandBudget(t *testing.T) {
	const q = "system/recv"
	var sl *eventlog.Sealer // the sealer cases' sealer, made in their setup
	cases := []budgetCase{
		{name: "SystemByToken (cached)", // AuthCacheTTL set: see openCounted
			setup: func(t *testing.T, s *mongo.Store) {
				must(t, s.CreateOrg(context.Background(), hub.Organisation{CVR: "12345678", Name: "A"}))
				must(t, s.CreateSystem(context.Background(), hub.System{ID: "sys", OrgCVR: "12345678", TokenHash: "h1", Active: true}))
				_, err := s.SystemByToken(context.Background(), "h1")
				must(t, err)
			},
			op: func(ctx context.Context, s *mongo.Store) error { _, err := s.SystemByToken(ctx, "h1"); return err },
		},
		{name: "AssertionKeys (cached)",
			setup: func(t *testing.T, s *mongo.Store) {
				must(t, s.PutAssertionKey(context.Background(), hub.AssertionKey{SystemID: "viewer", KeyID: "k1", Alg: "EdDSA", PublicKey: []byte("der")}))
				_, err := s.AssertionKeys(context.Background(), "viewer")
				must(t, err)
			},
			op: func(ctx context.Context, s *mongo.Store) error { _, err := s.AssertionKeys(ctx, "viewer"); return err },
		},
		{name: "PutMessageWith (one delivery, 3 events, 2 counters)",
			op: func(ctx context.Context, s *mongo.Store) error {
				m, ds, r, evs, cs := letter("m1", q)
				return s.PutMessageWith(ctx, m, ds, r, evs, cs)
			},
			serial: 3, serialWrites: 3, total: 7,
		},
		{name: "ClaimNext (returns the message)",
			setup: func(t *testing.T, s *mongo.Store) { putLetter(t, s, "m1", q); putLetter(t, s, "m2", q) },
			op: func(ctx context.Context, s *mongo.Store) error {
				c, err := s.ClaimNext(ctx, q, "p", time.Minute, storagetest.T0)
				if err == nil && (c.Message.UUID != "m1" || len(c.Message.Content) == 0) {
					err = fmt.Errorf("claimed %+v", c.Message)
				}
				return err
			},
			serial: 2, serialWrites: 1, total: 5,
		},
		{name: "AckWith (leased, last delivery, inline content)",
			setup: func(t *testing.T, s *mongo.Store) {
				putLetter(t, s, "m1", q)
				_, err := s.ClaimNext(context.Background(), q, "p", time.Minute, storagetest.T0)
				must(t, err)
			},
			op: func(ctx context.Context, s *mongo.Store) error {
				res, err := s.AckWith(ctx, "m1/"+q, "m1", storagetest.T0, completed)
				if err == nil && (!res.Unreferenced || res.AlreadyAcked) {
					err = fmt.Errorf("AckWith: %+v", res)
				}
				return err
			},
			serial: 4, serialWrites: 3, total: 12,
		},
		{name: "AckWith (message with a second delivery)",
			setup: func(t *testing.T, s *mongo.Store) {
				m, ds, r, _, _ := letter("m1", q)
				ds = append(ds, storagetest.Delivery("m1", "print", storagetest.T0))
				must(t, s.PutMessage(context.Background(), m, ds, r))
			},
			op: func(ctx context.Context, s *mongo.Store) error {
				res, err := s.AckWith(ctx, "m1/"+q, "m1", storagetest.T0, completed)
				if err == nil && res.Unreferenced {
					err = fmt.Errorf("AckWith: %+v", res)
				}
				return err
			},
			serial: 4, serialWrites: 3, total: 12,
		},
		{name: "Ack (outbox, viewer purge: no record)",
			setup: func(t *testing.T, s *mongo.Store) { putLetter(t, s, "m1", q) },
			op: func(ctx context.Context, s *mongo.Store) error {
				res, err := s.Ack(ctx, "m1/"+q, storagetest.T0)
				if err == nil && !res.Unreferenced {
					err = fmt.Errorf("Ack: %+v", res)
				}
				return err
			},
			serial: 5, serialWrites: 3, total: 9,
		},
		{name: "GetMessages (5 letters)",
			setup: func(t *testing.T, s *mongo.Store) {
				for i := 0; i < 5; i++ {
					putLetter(t, s, fmt.Sprint("m", i), q)
				}
			},
			op: func(ctx context.Context, s *mongo.Store) error {
				ms, err := s.GetMessages(ctx, []string{"m0", "m1", "m2", "m3", "m4", "nope"})
				if err == nil && (len(ms) != 5 || len(ms["m3"].Content) != 0) {
					err = fmt.Errorf("GetMessages: %d messages", len(ms))
				}
				return err
			},
			serial: 1, total: 1,
		},
		{name: "GetDelivery",
			setup: func(t *testing.T, s *mongo.Store) { putLetter(t, s, "m1", q) },
			op: func(ctx context.Context, s *mongo.Store) error {
				_, err := s.GetDelivery(ctx, "m1/"+q)
				return err
			},
			serial: 1, total: 3,
		},
		{name: "Lease",
			setup: func(t *testing.T, s *mongo.Store) { putLetter(t, s, "m1", q) },
			op: func(ctx context.Context, s *mongo.Store) error {
				_, err := s.Lease(ctx, "m1/"+q, "p", time.Minute, storagetest.T0)
				return err
			},
			serial: 2, serialWrites: 1, total: 4,
		},
		{name: "ListQueue (page of 5)",
			setup: func(t *testing.T, s *mongo.Store) {
				for i := 0; i < 5; i++ {
					putLetter(t, s, fmt.Sprint("m", i), "mailbox/0101011234")
				}
			},
			op: func(ctx context.Context, s *mongo.Store) error {
				ds, err := s.ListQueue(ctx, "mailbox/0101011234", 0, 200, false, storagetest.T0)
				if err == nil && len(ds) != 5 {
					err = fmt.Errorf("ListQueue: %d deliveries", len(ds))
				}
				return err
			},
			serial: 1, total: 3,
		},
		{name: "sealer step (one letter's events; lock held, head known)",
			setup: func(t *testing.T, s *mongo.Store) {
				sl = sealer(s)
				putLetter(t, s, "m0", q)
				_, err := sl.Step(context.Background())
				must(t, err)
				putLetter(t, s, "m1", q)
			},
			op: func(ctx context.Context, s *mongo.Store) error {
				n, err := sl.Step(ctx)
				if err == nil && n != 3 {
					err = fmt.Errorf("sealed %d events, want 3", n)
				}
				return err
			},
			// Pending read (and its sealed check), the epoch that fences the
			// seal, the entries, the pending copies' removal.
			serial: 5, serialWrites: 3, total: 5,
		},
		{name: "sealer step (nothing pending)",
			setup: func(t *testing.T, s *mongo.Store) {
				sl = sealer(s)
				putLetter(t, s, "m0", q)
				_, err := sl.Step(context.Background())
				must(t, err)
			},
			op: func(ctx context.Context, s *mongo.Store) error {
				n, err := sl.Step(ctx)
				if err == nil && n != 0 {
					err = fmt.Errorf("sealed %d events, want 0", n)
				}
				return err
			},
			serial: 1, total: 1, // one look at the pending events
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := roundtrip.NewRecorder(nil, roundtrip.Dilate)
			s := openCounted(t, rec)
			if tc.setup != nil {
				tc.setup(t, s)
			}
			ctx := roundtrip.WithOp(context.Background(), tc.name)
			if err := tc.op(ctx, s); err != nil {
				t.Fatal(err)
			}
			rec.Settle(tc.name, 100*time.Millisecond, 10*time.Second)
			got := rec.Take(tc.name)
			t.Logf("%s", got)
			storeRow(t, tc.name, got)
			if got.Serial > tc.serial || got.SerialWrites > tc.serialWrites || got.Total > tc.total {
				t.Errorf("over budget: %d serial (%d writes), %d total; budget %d (%d), %d",
					got.Serial, got.SerialWrites, got.Total, tc.serial, tc.serialWrites, tc.total)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// storeRow appends a row to the commands table (see cmd/posthub's
// TestMongoCommandBudget).
func storeRow(t *testing.T, op string, c roundtrip.Counts) {
	path := os.Getenv("POSTHUB_COMMANDS_TABLE")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "Store.%s\t%d\t%d\t%d\t%d\t%s\n", op, c.Serial, c.Total, c.Writes, c.SerialWrites, strings.Join(c.Trace, " "))
}

// TestAuthCacheBound: with AuthCacheTTL, SystemByToken and AssertionKeys
// are answered from memory; a change through the same instance is seen at
// once, a change through another instance (a revoked token, a deactivated
// system, a deleted assertion key) within the TTL. The other instance, b,
// is watched command by command: a stale answer must come from memory
// (b read nothing), and from an entry younger than the TTL — an answer
// from memory to a call that began a TTL after b's last read of that entry
// fails. So the test waits for a condition (b reading again, which it
// must by then), never on a deadline, and a slow machine can only make b
// read sooner.
func TestAuthCacheBound(t *testing.T) {
	const ttl = 500 * time.Millisecond
	uri, dbName := testservers.FerretDB(t), testservers.DatabaseName(t)
	openTTL := func(rec *roundtrip.Recorder) *mongo.Store {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := mongo.Open(ctx, mongo.Config{URI: uri, Database: dbName, AuthCacheTTL: ttl, Monitor: rec.Monitor()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	recB := roundtrip.NewRecorder(nil, 0)
	a, b := openTTL(roundtrip.NewRecorder(nil, 0)), openTTL(recB)
	t.Cleanup(func() { _ = a.Drop(context.Background()) })
	ctx := context.Background()
	must(t, a.CreateOrg(ctx, hub.Organisation{CVR: "12345678", Name: "A"}))
	sys := hub.System{ID: "sender", OrgCVR: "12345678", Role: hub.SenderSystem, TokenHash: "h1", Active: true}
	must(t, a.CreateSystem(ctx, sys))
	must(t, a.PutAssertionKey(ctx, hub.AssertionKey{SystemID: "viewer", KeyID: "k1", Alg: "EdDSA", PublicKey: []byte("der")}))

	// onB calls fn on b, entry being the cache entry it looks up, and says
	// whether b answered from memory; it fails when b answered from an
	// entry it should have dropped (a TTL after its last read ended).
	lastRead, readBegan := map[string]time.Time{}, map[string]time.Time{}
	calls := 0
	onB := func(entry string, fn func(ctx context.Context) error) (fromMemory bool) {
		t.Helper()
		calls++
		op := fmt.Sprintf("b%d", calls)
		began := time.Now()
		must(t, fn(roundtrip.WithOp(ctx, op)))
		if recB.Take(op).Total > 0 {
			lastRead[entry], readBegan[entry] = time.Now(), began
			return false
		}
		if read, ok := lastRead[entry]; !ok || !began.Before(read.Add(ttl)) {
			t.Fatalf("b answered %s from memory %v after its last read (TTL %v)", entry, began.Sub(read), ttl)
		}
		return true
	}
	sysOnB := func(hash string) (got hub.System, gerr error, fromMemory bool) {
		fromMemory = onB("system "+hash, func(ctx context.Context) error {
			got, gerr = b.SystemByToken(ctx, hash)
			if hub.Is(gerr, hub.NotFound) {
				return nil
			}
			return gerr
		})
		return got, gerr, fromMemory
	}
	keysOnB := func() (ks []hub.AssertionKey, fromMemory bool) {
		fromMemory = onB("keys", func(ctx context.Context) (err error) { ks, err = b.AssertionKeys(ctx, "viewer"); return err })
		return ks, fromMemory
	}

	if got, err := a.SystemByToken(ctx, "h1"); err != nil || !got.Active {
		t.Fatalf("SystemByToken: %+v, %v", got, err)
	}
	if got, err, _ := sysOnB("h1"); err != nil || !got.Active {
		t.Fatalf("SystemByToken: %+v, %v", got, err)
	}
	if ks, _ := keysOnB(); len(ks) != 1 {
		t.Fatalf("AssertionKeys: %v", ks)
	}
	// Answered from memory: no command while the entries are younger than
	// the TTL (they were read after their lookups began).
	read := readBegan["system h1"]
	if readBegan["keys"].Before(read) {
		read = readBegan["keys"]
	}
	_, _, sysMem := sysOnB("h1")
	_, keysMem := keysOnB()
	if (!sysMem || !keysMem) && time.Now().Before(read.Add(ttl)) {
		t.Fatalf("a lookup within the TTL went to the database (system from memory %v, keys %v)", sysMem, keysMem)
	}

	// Through a: deactivate the system, delete the key.
	cur, err := a.GetSystem(ctx, "sender")
	must(t, err)
	cur.Active = false
	must(t, a.UpdateSystem(ctx, cur))
	must(t, a.DeleteAssertionKey(ctx, "viewer", "k1"))
	if got, err := a.SystemByToken(ctx, "h1"); err != nil || got.Active {
		t.Fatalf("the instance that deactivated the system still sees it active: %+v, %v", got, err)
	}
	if ks, _ := a.AssertionKeys(ctx, "viewer"); len(ks) != 0 {
		t.Fatalf("the instance that deleted the key still has it: %v", ks)
	}
	// b catches up: an old answer only from memory, until it reads again.
	for {
		got, err, mem := sysOnB("h1")
		if err != nil {
			t.Fatalf("SystemByToken on b: %v", err)
		}
		if !got.Active {
			break
		}
		if !mem {
			t.Fatal("b read the deactivated system from the database and still answered it active")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		ks, mem := keysOnB()
		if len(ks) == 0 {
			break
		}
		if !mem {
			t.Fatal("b read the assertion keys after the deletion and still answered the deleted key")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A rotated token: the old one is refused here at once, elsewhere
	// once b's entry is older than the TTL.
	cur, err = a.GetSystem(ctx, "sender")
	must(t, err)
	cur.TokenHash = "h2"
	must(t, a.UpdateSystem(ctx, cur))
	if _, err := a.SystemByToken(ctx, "h1"); !hub.Is(err, hub.NotFound) {
		t.Fatalf("old token after rotation on the same instance: %v", err)
	}
	for {
		_, err, mem := sysOnB("h1")
		if hub.Is(err, hub.NotFound) {
			break
		}
		if !mem {
			t.Fatalf("b read the rotated-out token from the database and still accepted it: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got, err, _ := sysOnB("h2"); err != nil || got.ID != "sender" {
		t.Fatalf("new token: %+v, %v", got, err)
	}
}
