package bolt

import (
	"bytes"
	"encoding/binary"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posthub/posthub/hub"
)

// key joins parts with NUL, the separator that sorts before every other
// byte, so that "a"+sep sorts before "ab".
func key(parts ...string) []byte {
	n := len(parts)
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

// prefix is key(parts...) followed by the separator.
func prefix(parts ...string) []byte { return append(key(parts...), 0) }

func u64(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}

func readU64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// tkey is a 12-byte time stamp that sorts like the time (sign-flipped
// seconds, then nanoseconds).
func tkey(t time.Time) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint64(b, uint64(t.Unix())^(1<<63))
	binary.BigEndian.PutUint32(b[8:], uint32(t.Nanosecond()))
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// scanPrefix calls fn for each key with prefix p in order, stopping when fn
// returns false or an error.
func scanPrefix(b *bolt.Bucket, p []byte, fn func(k, v []byte) (bool, error)) error {
	c := b.Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		more, err := fn(k, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// deletePrefix removes every key with prefix p.
func deletePrefix(b *bolt.Bucket, p []byte) error {
	var ks [][]byte
	_ = scanPrefix(b, p, func(k, _ []byte) (bool, error) {
		ks = append(ks, append([]byte(nil), k...))
		return true, nil
	})
	for _, k := range ks {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// A delivery is stored beside its message, in the messages bucket under
// besideKey, when its ID begins with its message's UUID followed by '@' or
// '/' (the hub's IDs are UUID@queue, see hub.DeliveryID): accepting a
// letter then dirties the message's page for it, not a random page of a
// bucket of its own, and an acknowledgement the same page. The message's
// deliveries are then the keys with prefix besidePrefix, so they need no
// index entries. Other deliveries are in the deliveries bucket under
// their ID, with the message's index of them beside them (indexKey), since
// their IDs need not begin with the message UUID. IDs never contain NUL
// (PutMessage and AddDeliveries refuse them), so a key with NUL is an
// index entry there. deliveryRaw finds a delivery by its ID alone: where
// besideKey puts it, else in the deliveries bucket. The deliveries
// bucket's sequence numbers every delivery, wherever it is stored.

// besideKey is the key in the messages bucket of a delivery whose ID has
// the shape UUID sep rest (sep '@' or '/', UUID the part before the first
// of them): UUID NUL 'D' sep rest. Nil for any other ID. Whether a
// delivery is stored there depends on its message (deliveryPlace).
func besideKey(id string) []byte {
	i := strings.IndexAny(id, "@/")
	if i <= 0 || strings.IndexByte(id, 0) >= 0 {
		return nil
	}
	k := make([]byte, 0, len(id)+2)
	return append(append(append(k, id[:i]...), 0, 'D'), id[i:]...)
}

// besidePrefix starts the keys of a message's deliveries stored beside it.
func besidePrefix(messageUUID string) []byte { return append([]byte(messageUUID), 0, 'D') }

// deliveryPlace is where delivery d is stored: beside its message when
// its ID has the shape besideKey expects with the message's UUID, else in
// the deliveries bucket under its ID.
func deliveryPlace(d hub.Delivery) (bucket, key []byte) {
	if i := strings.IndexAny(d.ID, "@/"); i > 0 && d.ID[:i] == d.MessageUUID {
		if k := besideKey(d.ID); k != nil {
			return bMessages, k
		}
	}
	return bDeliveries, []byte(d.ID)
}

// deliveryRaw returns the record of the delivery with this ID (valid in
// tx only), or nil when there is none.
func deliveryRaw(tx *bolt.Tx, id string) []byte {
	g := getters{tx: tx}
	return g.deliveryRaw(id)
}

// deliveryRaw is deliveryRaw through g.
func (g *getters) deliveryRaw(id string) []byte {
	if k := besideKey(id); k != nil {
		if v := g.get(bMessages, k); v != nil {
			return v
		}
	}
	if strings.IndexByte(id, 0) >= 0 {
		return nil // such a key would name an index entry
	}
	return g.get(bDeliveries, []byte(id))
}

// getters does a transaction's Gets through one cursor per bucket. bbolt's
// Bucket.Get makes a new cursor per call, whose stack is allocated anew at
// each level of the tree, and in a read transaction Tx.Bucket makes a new
// Bucket: together over a third of the objects this package allocated for
// an accepted letter. A cursor's Seek starts from the root again and
// reuses its stack. Valid in its transaction only; a Put or Delete in the
// bucket between two gets is fine, since Seek starts from the root.
// Buckets are told apart by their name's identity (the package's
// variables), as bk does.
type getters struct {
	tx   *bolt.Tx
	n    int
	open [4]struct {
		name []byte
		c    *bolt.Cursor
	}
}

// get is tx.Bucket(name).Get(k).
func (g *getters) get(name, k []byte) []byte {
	var c *bolt.Cursor
	for i := range g.n {
		if &g.open[i].name[0] == &name[0] {
			c = g.open[i].c
			break
		}
	}
	if c == nil {
		c = g.tx.Bucket(name).Cursor()
		if g.n < len(g.open) {
			g.open[g.n].name, g.open[g.n].c = name, c
			g.n++
		}
	}
	got, v := c.Seek(k)
	if !bytes.Equal(got, k) {
		return nil
	}
	return v
}

// indexPrefix starts the keys of a message's index of its deliveries that
// are stored in the deliveries bucket.
func indexPrefix(messageUUID string) []byte { return append([]byte(messageUUID), 0, 'I') }

// indexKey is the index entry of one delivery of a message.
func indexKey(messageUUID, deliveryID string) []byte {
	return append(indexPrefix(messageUUID), deliveryID...)
}

// indexedDelivery returns the delivery ID an index entry's key names, and
// false for the key of a delivery itself.
func indexedDelivery(k []byte) ([]byte, bool) {
	i := bytes.IndexByte(k, 0)
	if i < 0 || i+2 > len(k) {
		return nil, false
	}
	return k[i+2:], true
}

// receiptIndexKey is the key, in the messages bucket, of systemID's
// receipt for a message (its record, or the transmission id of one kept
// in the receipts bucket; see besideMark): next to the message's record
// (whose key is its UUID and has no NUL), so that accepting a message
// writes one page of the bucket for both. The messages bucket is read by
// key and by the prefixes of one message's keys (besidePrefix), never
// iterated whole.
func receiptIndexKey(messageUUID, systemID string) []byte {
	return append(append([]byte(messageUUID), 0, 'R'), systemID...)
}
