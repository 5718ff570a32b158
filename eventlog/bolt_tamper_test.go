package eventlog_test

import (
	"encoding/binary"
	"encoding/json"
	"path/filepath"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/bolt"
)

// boltRaw edits the "events" bucket of a closed bolt store file: key is the
// big-endian seq, value the entry as JSON (storage/bolt's layout).
type boltRaw struct{ tx *bbolt.Tx }

func slotKey(slot uint64) []byte { return binary.BigEndian.AppendUint64(nil, slot) }

func (r boltRaw) get(t *testing.T, slot uint64) hub.Event {
	t.Helper()
	v := r.tx.Bucket([]byte("events")).Get(slotKey(slot))
	if v == nil {
		t.Fatalf("bolt: no entry in slot %d", slot)
	}
	var ev hub.Event
	if err := json.Unmarshal(v, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func (r boltRaw) put(t *testing.T, slot uint64, ev hub.Event) {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.tx.Bucket([]byte("events")).Put(slotKey(slot), b); err != nil {
		t.Fatal(err)
	}
}

func (r boltRaw) del(t *testing.T, slot uint64) {
	t.Helper()
	if err := r.tx.Bucket([]byte("events")).Delete(slotKey(slot)); err != nil {
		t.Fatal(err)
	}
}

func TestTamperBolt(t *testing.T) {
	runTamperCases(t, func(t *testing.T) (eventStore, func(func(rawLog)) eventStore) {
		path := filepath.Join(t.TempDir(), "posthub.db")
		s := openBolt(t, path)
		return s, func(edit func(rawLog)) eventStore {
			return editBolt(t, s, path, func(raw boltRaw) { edit(raw) })
		}
	})
}

// editBolt closes s, edits its file's events bucket with edit (as someone
// with the database would) and opens the store again.
func editBolt(t *testing.T, s interface{ Close() error }, path string, edit func(boltRaw)) *bolt.Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		edit(boltRaw{tx})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return openBolt(t, path)
}
