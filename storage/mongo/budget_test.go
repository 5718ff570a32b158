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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := mongo.Open(ctx, mongo.Config{URI: testservers.FerretDB(t), Database: testservers.DatabaseName(t), Monitor: rec.Monitor()})
	if err != nil {
		t.Fatalf("mongo.Open: %v", err)
	}
	t.Cleanup(func() {
		_ = s.Drop(context.Background())
		_ = s.Close()
	})
	return s
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

func putLetter(t *testing.T, s *mongo.Store, uuid, queue string) {
	t.Helper()
	m, ds, r, evs, cs := letter(uuid, queue)
	if err := s.PutMessageWith(context.Background(), m, ds, r, evs, cs); err != nil {
		t.Fatal(err)
	}
}

func sealer(s *mongo.Store) *eventlog.Sealer {
	return eventlog.NewSealer(s, s, eventlog.SealerOptions{Holder: "budget"})
}

// TestStoreCommandBudget counts the MongoDB commands of the Store methods on
// the hot paths (accept, drain, viewer) and fails over budget. Serial
// commands are what a caller waits for on a replica set; see the package
// doc for what the budgets buy.
func TestStoreCommandBudget(t *testing.T) {
	const q = "system/recv"
	var sl *eventlog.Sealer // the sealer cases' sealer, made in their setup
	cases := []budgetCase{
		{name: "SystemByToken (cached)",
			setup: func(t *testing.T, s *mongo.Store) {
				must(t, s.CreateOrg(context.Background(), hub.Organisation{CVR: "12345678", Name: "A"}))
				must(t, s.CreateSystem(context.Background(), hub.System{ID: "sys", OrgCVR: "12345678", TokenHash: "h1", Active: true}))
				_, err := s.SystemByToken(context.Background(), "h1")
				must(t, err)
			},
			op: func(ctx context.Context, s *mongo.Store) error { _, err := s.SystemByToken(ctx, "h1"); return err },
		},
		{name: "PutMessageWith (one delivery, 3 events, 2 counters)",
			op: func(ctx context.Context, s *mongo.Store) error {
				m, ds, r, evs, cs := letter("m1", q)
				return s.PutMessageWith(ctx, m, ds, r, evs, cs)
			},
		},
		{name: "ClaimNext",
			setup: func(t *testing.T, s *mongo.Store) { putLetter(t, s, "m1", q); putLetter(t, s, "m2", q) },
			op: func(ctx context.Context, s *mongo.Store) error {
				_, _, err := s.ClaimNext(ctx, q, "p", time.Minute, storagetest.T0)
				return err
			},
		},
		{name: "AckWith (last delivery, inline content)",
			setup: func(t *testing.T, s *mongo.Store) { putLetter(t, s, "m1", q) },
			op: func(ctx context.Context, s *mongo.Store) error {
				r := storagetest.Receipt("m1", storagetest.T0)
				r.Status = hub.ReceiptCompleted
				_, err := s.AckWith(ctx, "m1/"+q, storagetest.T0, &r, []hub.Event{{ID: "retrieval:fetched:m1/" + q, Time: storagetest.T0, Tag: "X"}})
				return err
			},
		},
		{name: "ListQueue (page of 5)",
			setup: func(t *testing.T, s *mongo.Store) {
				for i := 0; i < 5; i++ {
					putLetter(t, s, fmt.Sprint("m", i), "mailbox/0101011234")
				}
			},
			op: func(ctx context.Context, s *mongo.Store) error {
				_, err := s.ListQueue(ctx, "mailbox/0101011234", 0, 200, false, storagetest.T0)
				return err
			},
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
		},
		{name: "sealer step (nothing pending)",
			setup: func(t *testing.T, s *mongo.Store) {
				sl = sealer(s)
				putLetter(t, s, "m0", q)
				_, err := sl.Step(context.Background())
				must(t, err)
			},
			op: func(ctx context.Context, s *mongo.Store) error {
				_, err := sl.Step(ctx)
				return err
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := roundtrip.NewRecorder(nil, 3*time.Millisecond)
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
