package bolt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// getters answers as Bucket.Get does, in a write transaction whose Puts
// and Deletes come between its gets (pages split, keys appear and go,
// values are empty or nil), for keys present, absent, before the first
// and after the last, and in a read transaction.
func TestGettersAnswerAsGet(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := rand.New(rand.NewPCG(7, 8))
	keyOf := func() []byte { return []byte(fmt.Sprintf("k%05d", r.IntN(3000))) }
	check := func(tx *bolt.Tx, g *getters) {
		t.Helper()
		for range 50 {
			k := keyOf()
			if r.IntN(10) == 0 {
				k = [][]byte{{0}, []byte("z"), []byte("k"), []byte("k99999")}[r.IntN(4)]
			}
			for _, name := range [][]byte{bMessages, bDeliveries} {
				want := tx.Bucket(name).Get(k)
				got := g.get(name, k)
				if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
					t.Fatalf("get %s %q: %q, Get: %q", name, k, got, want)
				}
			}
		}
	}
	for range 5 {
		if err := db.Update(func(tx *bolt.Tx) error {
			for _, name := range [][]byte{bMessages, bDeliveries} {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			g := getters{tx: tx}
			for range 400 {
				b := tx.Bucket([][]byte{bMessages, bDeliveries}[r.IntN(2)])
				k := keyOf()
				var err error
				switch r.IntN(4) {
				case 0:
					err = b.Delete(k)
				case 1:
					err = b.Put(k, nil)
				default:
					err = b.Put(k, bytes.Repeat([]byte{'v'}, r.IntN(600)))
				}
				if err != nil {
					return err
				}
				check(tx, &g)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.View(func(tx *bolt.Tx) error {
			check(tx, &getters{tx: tx})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}
