package mongo_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/storage/mongo"
	"github.com/posthub/posthub/storage/storagetest"
)

func TestMain(m *testing.M) { testservers.Main(m) }

// open returns an empty store in a database of the test's own on the
// shared FerretDB (skipped, or failed under POSTHUB_TEST_SERVERS=require,
// when FerretDB is not installed).
func open(t testing.TB) *mongo.Store {
	t.Helper()
	return openDB(t, testservers.FerretDB(t), testservers.DatabaseName(t))
}

func openDB(t testing.TB, uri, db string) *mongo.Store {
	t.Helper()
	return openConfig(t, mongo.Config{URI: uri, Database: db})
}

// openConfig opens the store cfg describes, dropped and closed when t ends.
func openConfig(t testing.TB, cfg mongo.Config) *mongo.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := mongo.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("mongo.Open: %v", err)
	}
	t.Cleanup(func() {
		_ = s.Drop(context.Background())
		_ = s.Close()
	})
	return s
}

// repairAfterGrace runs Repair as another instance whose grace period
// (50 ms) has passed since since: what Repair removes once a crash's
// leftovers are old enough, without waiting ten minutes.
func repairAfterGrace(t *testing.T, uri, db string, since time.Time) {
	t.Helper()
	const grace = 50 * time.Millisecond
	short := openConfig(t, mongo.Config{URI: uri, Database: db, PendingGrace: grace})
	for time.Since(since) <= grace {
		time.Sleep(grace - time.Since(since) + time.Millisecond) // the wall clock must pass the grace period
	}
	if err := short.Repair(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestContract(t *testing.T) {
	storagetest.TestStore(t, func(t *testing.T) hub.Store { return open(t) })
}

func TestOpenUnreachableIsUnavailable(t *testing.T) {
	ctx := context.Background()
	_, err := mongo.Open(ctx, mongo.Config{URI: "mongodb://127.0.0.1:1/", Database: "x", Timeout: 300 * time.Millisecond})
	if !hub.Is(err, hub.Unavailable) {
		t.Fatalf("Open of an unreachable server: %v, want unavailable", err)
	}
}

func TestMailboxStore(t *testing.T) {
	storagetest.TestMailboxStore(t, func(t *testing.T) hub.MailboxStore { return open(t) })
}

// ClaimNext and ListQueue read a queue's lease links and park markers in a
// window beside each page; with more parked and more leased deliveries
// than the window holds, in front of the available ones, nothing is
// skipped and nothing starves.
func TestQueueStateBeyondItsWindow(t *testing.T) {
	mongo.SetStateWindow(t, 16)
	storagetest.QueueBehindUnavailable(t, open(t), 40, 40)
}

// TestPolicyChangeCutShortIsSeenEverywhere: an instance dies in the middle
// of a privilege change (FerretDB has no transactions: the policy line and
// the stamp other instances poll are two writes). Whatever it had
// written, another instance's enforcer, polling as rbac.Enforcer.Run does,
// ends on the stored set within a few polls and then stays put.
func TestPolicyChangeCutShortIsSeenEverywhere(t *testing.T) {
	ctx := context.Background()
	uri, db := testservers.FerretDB(t), testservers.DatabaseName(t)
	dying, other := openDB(t, uri, db), openDB(t, uri, db)
	en, err := rbac.New(ctx, other, rbac.Options{PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	g := rbac.Grant{User: "anne", Role: rbac.OrgAdmin, Domain: "11111111"}
	line := hub.PolicyLine{Ptype: "g", V: []string{rbac.UserSubject(g.User), g.Role, g.Domain}}
	held := func() bool { return len(en.Grants(g.Domain, g.User)) == 1 }
	// settled polls until the enforcer's stamp is the stored one, at most
	// a few times (a poll that finds a cut-short change restamps the set,
	// and the next reloads it).
	settled := func(what string) {
		t.Helper()
		for range 4 {
			if err := en.Refresh(ctx); err != nil {
				t.Fatalf("%s: poll: %v", what, err)
			}
			stored, err := other.PolicyStamp(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if stored == en.Stamp() {
				return
			}
		}
		t.Fatalf("%s: the enforcer's stamp %q never became the stored one", what, en.Stamp())
	}
	steps := []struct {
		what      string
		add, line bool
		want      bool
	}{
		{"an addition that died after writing the line", true, true, true},
		{"a removal that died before removing the line", false, false, true},
		{"a removal that died after removing the line", false, true, false},
		{"an addition that died before writing the line", true, false, false},
	}
	for _, st := range steps {
		if err := dying.ChangePolicyCutShort(ctx, line, st.add, st.line); err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
		settled(st.what)
		if held() != st.want {
			t.Fatalf("%s: the other instance holds the grant: %v, want %v", st.what, held(), st.want)
		}
		// Settled means settled: a later poll reloads nothing new.
		before := en.Stamp()
		if err := en.Refresh(ctx); err != nil || en.Stamp() != before {
			t.Fatalf("%s: a poll after settling moved the stamp (%q to %q, %v)", st.what, before, en.Stamp(), err)
		}
	}
}

// TestConcurrentPolicyChangesSettle: privilege changes at once on two
// instances, each stamp written last-writer-wins; another instance's
// enforcer ends holding every change, on a stamp that stays put.
func TestConcurrentPolicyChangesSettle(t *testing.T) {
	ctx := context.Background()
	uri, db := testservers.FerretDB(t), testservers.DatabaseName(t)
	a, b, watcher := openDB(t, uri, db), openDB(t, uri, db), openDB(t, uri, db)
	en, err := rbac.New(ctx, watcher, rbac.Options{PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := []*mongo.Store{a, b}[i%2]
			// Poll while the changes run, so loads fall between stamps and lines.
			_ = en.Refresh(ctx)
			if err := s.AddPolicy(ctx, hub.PolicyLine{Ptype: "g", V: []string{rbac.UserSubject(fmt.Sprintf("u%02d", i)), rbac.OrgAdmin, "11111111"}}); err != nil {
				t.Errorf("AddPolicy %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	settledOn := ""
	for range 6 {
		if err := en.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if stored, err := watcher.PolicyStamp(ctx); err != nil {
			t.Fatal(err)
		} else if stored == en.Stamp() {
			settledOn = stored
			break
		}
	}
	if settledOn == "" {
		t.Fatalf("the watcher's stamp %q never became the stored one", en.Stamp())
	}
	// Grants with an empty user lists every user's.
	if got := len(en.Grants("11111111", "")); got != n {
		t.Fatalf("the watcher holds %d grants, want %d", got, n)
	}
}
