package eventlog_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/storage/mongo"
)

func TestMain(m *testing.M) { testservers.Main(m) }

// openMongo opens a store on a database of the test's own on the shared
// FerretDB, returning it with the database's URI and name.
func openMongo(t *testing.T) (*mongo.Store, string, string) {
	t.Helper()
	uri, db := testservers.FerretDB(t), testservers.DatabaseName(t)
	s := openMongoDB(t, uri, db)
	t.Cleanup(func() { _ = s.Drop(context.Background()) })
	return s, uri, db
}

func openMongoDB(t *testing.T, uri, db string) *mongo.Store {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := mongo.Open(c, mongo.Config{URI: uri, Database: db})
	if err != nil {
		t.Fatalf("mongo.Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// mongoRaw edits storage/mongo's "events" collection directly: one
// document per entry, _id = the seq slot, the entry itself under "x" and
// copies of its indexed fields beside it.
type mongoRaw struct{ coll *mongodrv.Collection }

func (r mongoRaw) get(t *testing.T, slot uint64) hub.Event {
	t.Helper()
	var d struct {
		X hub.Event `bson:"x"`
	}
	if err := r.coll.FindOne(ctx, bson.M{"_id": int64(slot)}).Decode(&d); err != nil {
		t.Fatalf("mongo: slot %d: %v", slot, err)
	}
	return d.X
}

func (r mongoRaw) put(t *testing.T, slot uint64, ev hub.Event) {
	t.Helper()
	// The event ID is unique across documents: move it aside on another
	// document that still holds it (a tamperer would do the same).
	if _, err := r.coll.UpdateMany(ctx, bson.M{"eid": ev.ID, "_id": bson.M{"$ne": int64(slot)}},
		bson.M{"$set": bson.M{"eid": ev.ID + "~moved"}}); err != nil {
		t.Fatal(err)
	}
	doc := bson.M{"_id": int64(slot), "eid": ev.ID, "t": ev.Time, "orgs": ev.Orgs, "tag": ev.Tag, "sys": ev.SystemID,
		"msg": ev.MessageUUID, "party": ev.Party, "actor": ev.Actor, "x": ev}
	if _, err := r.coll.ReplaceOne(ctx, bson.M{"_id": int64(slot)}, doc, options.Replace().SetUpsert(true)); err != nil {
		t.Fatalf("mongo: put slot %d: %v", slot, err)
	}
}

func (r mongoRaw) del(t *testing.T, slot uint64) {
	t.Helper()
	if _, err := r.coll.DeleteOne(ctx, bson.M{"_id": int64(slot)}); err != nil {
		t.Fatal(err)
	}
}

func TestTamperMongo(t *testing.T) {
	runTamperCases(t, func(t *testing.T) (eventStore, func(func(rawLog)) eventStore) {
		s, uri, db := openMongo(t)
		return s, func(edit func(rawLog)) eventStore {
			cl, err := mongodrv.Connect(options.Client().ApplyURI(uri))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Disconnect(ctx)
			edit(mongoRaw{cl.Database(db).Collection("events")})
			return s
		}
	})
}

// Three hub instances, each with its own connection (its own mongo.Store)
// to one shared FerretDB database, append together and seal one chain.
// FerretDB on SQLite is slow for this (measured: ~40 events/s appended and
// sealed, each step being several finds and inserts of milliseconds), so
// this appends 2,000 events rather than 100,000 (100,000 run on bolt above, where the store
// object is shared because bbolt allows one process per file); the
// correctness argument is the same: the lock and the unique _id = Seq.
func TestThreeInstancesOneChainMongo(t *testing.T) {
	s, uri, db := openMongo(t)
	total := 2000
	if testing.Short() {
		total = 600
	}
	stores := []eventStore{s, openMongoDB(t, uri, db), openMongoDB(t, uri, db)}
	runInstancesOn(t, stores, 8, total, eventlog.SealerOptions{Key: testKey, CheckpointEvery: 1000, LockTTL: 10 * time.Second, Idle: 5 * time.Millisecond, IdleMax: 50 * time.Millisecond})
	checkOneChain(t, s, total)
}
