package bolt

import (
	"bytes"
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
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

// The deliveries bucket holds, beside each delivery under its ID, the
// message's index of its deliveries, under keys that sort next to the
// delivery, since the hub's delivery IDs begin with the message UUID
// (hub.DeliveryID): an ack then dirties one page of the bucket instead of
// one page in each of two. IDs never contain NUL (PutMessage and
// AddDeliveries refuse them), so a key with NUL is an index entry.

// indexPrefix starts the keys of a message's index of its deliveries.
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

// receiptIndexKey is the key, in the messages bucket, of the transmission
// id of systemID's receipt for a message: next to the message's record
// (whose key is its UUID and has no NUL), so that accepting a message
// writes one page of the bucket for both. The messages bucket is only ever
// read by key, never iterated.
func receiptIndexKey(messageUUID, systemID string) []byte {
	return append(append([]byte(messageUUID), 0, 'R'), systemID...)
}
