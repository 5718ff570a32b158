package eventlog

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/posthub/posthub/hub"
)

// HashVersion names the canonical encoding; it is the first thing hashed,
// so a future encoding can never collide with this one.
const HashVersion = "posthub.eventlog.v1"

// Genesis is the PrevHash of the first entry of a log (Seq 1).
var Genesis = strings.Repeat("0", 64)

// TimeLayout is the fixed-precision UTC form of an event's time in the
// encoding: milliseconds, because that is what every backend (BSON dates
// included) keeps exactly.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// CanonicalTime is t in UTC truncated to the millisecond; the log stores
// and hashes only canonical times.
func CanonicalTime(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// Encode returns the canonical encoding v1 of a sealed entry:
//
//	"posthub.eventlog.v1" 0x00
//	u64(Seq)
//	str(PrevHash) str(ID) str(Time as TimeLayout, UTC) str(Tag) str(Actor)
//	u32(len(Orgs)) str(Orgs[0]) … (in stored order)
//	str(SystemID) str(MessageUUID) str(Party)
//	u32(len(Detail)) str(key) str(value) … (keys in byte order)
//
// where u64/u32 are big-endian and str(s) is u32(len(s)) followed by the
// bytes of s. Length prefixes make the encoding injective (no two entries
// share one); nil and empty Orgs/Detail encode alike, as backends may not
// tell them apart. Hash is not part of the encoding.
func Encode(ev hub.Event) []byte {
	n := len(HashVersion) + 1 + 8 + 4*12 + len(ev.PrevHash) + len(ev.ID) + len(TimeLayout) + len(ev.Tag) +
		len(ev.Actor) + len(ev.SystemID) + len(ev.MessageUUID) + len(ev.Party)
	for _, o := range ev.Orgs {
		n += 4 + len(o)
	}
	for k, v := range ev.Detail {
		n += 8 + len(k) + len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, HashVersion...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, ev.Seq)
	str := func(s string) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	str(ev.PrevHash)
	str(ev.ID)
	str(ev.Time.UTC().Format(TimeLayout))
	str(ev.Tag)
	str(ev.Actor)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ev.Orgs)))
	for _, o := range ev.Orgs {
		str(o)
	}
	str(ev.SystemID)
	str(ev.MessageUUID)
	str(ev.Party)
	keys := make([]string, 0, len(ev.Detail))
	for k := range ev.Detail {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		str(k)
		str(ev.Detail[k])
	}
	return b
}

// Hash is the lowercase hex SHA-256 of Encode(ev).
func Hash(ev hub.Event) string { return hashOf(Encode(ev)) }

// hashOf is the lowercase hex SHA-256 of an encoding.
func hashOf(enc []byte) string {
	sum := sha256.Sum256(enc)
	return hex.EncodeToString(sum[:])
}
