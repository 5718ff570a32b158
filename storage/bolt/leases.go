package bolt

import (
	"maps"
	"sync"
	"time"

	"github.com/posthub/posthub/hub"
)

// leaseTable holds the leases of this store. Leases live in memory, not in
// the file: the file is held by one process (flock), so this process is
// the only arbiter of who holds a delivery, and a lease then costs no
// commit — a drained message costs one durable write (its ack) instead of
// two. A restart ends every lease at once, exactly as if all had expired:
// the deliveries become fetchable again (at-least-once), and a poller that
// was working on one may still acknowledge it (Ack needs no lease).
//
// Epochs keep increasing across restarts: a delivery's first lease in a
// process takes an epoch above base, the microseconds since 1970 at Open,
// which exceeds any epoch a previous process handed out unless one
// delivery was leased more than once per microsecond of its life. Attempts
// count within a process; they restart at zero with the process (a
// delivery is parked after too many attempts in one run).
type leaseTable struct {
	mu   sync.Mutex
	base int64
	m    map[string]leaseRec // by delivery ID
}

func newLeaseTable(now time.Time) *leaseTable {
	return &leaseTable{base: now.UnixMicro(), m: map[string]leaseRec{}}
}

// live reports whether a live lease holds the delivery.
func (t *leaseTable) live(id string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.m[id]
	return ok && l.live(now)
}

// claim leases d to holder unless a live lease holds it. Exactly one of
// any number of concurrent callers wins.
func (t *leaseTable) claim(d hub.Delivery, holder string, ttl time.Duration, now time.Time) (hub.Lease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.m[d.ID]
	if ok && old.live(now) {
		return hub.Lease{}, false
	}
	attempts := d.Attempts // what the file says (files of earlier versions)
	if ok {
		attempts = old.Attempt
	}
	l := hub.Lease{DeliveryID: d.ID, Holder: holder, Epoch: max(old.Epoch, t.base) + 1, Expires: now.Add(ttl), Attempt: attempts + 1}
	t.m[d.ID] = leaseRec{Lease: l}
	return l, true
}

// release ends l early if it is still the delivery's current lease.
func (t *leaseTable) release(l hub.Lease) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur, ok := t.m[l.DeliveryID]
	if ok && cur.Epoch == l.Epoch && cur.Holder == l.Holder {
		cur.Released = true
		t.m[l.DeliveryID] = cur
	}
}

// end ends any lease of the delivery (parked); reset also restarts its
// attempts (unparked). Both keep the epoch.
func (t *leaseTable) end(id string, reset bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur, ok := t.m[id]
	if !ok {
		return
	}
	cur.Released = true
	if reset {
		cur.Attempt = 0
	}
	t.m[id] = cur
}

// drop forgets an acknowledged delivery.
func (t *leaseTable) drop(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, id)
}

// attempts fills d.Attempts from the delivery's leases in this process.
func (t *leaseTable) attempts(d *hub.Delivery) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.m[d.ID]; ok {
		d.Attempts = l.Attempt
	}
}

// claimRead is what ClaimNext decoded of a delivery and of its message,
// kept with the lease so that the acknowledgement, which runs in the
// store's one writer, need not decode them again: AckWith uses them only
// when the stored bytes are still exactly raw (the same bytes decode to
// the same values), and decodes as before otherwise. Immutable once kept.
type claimRead struct {
	delRaw []byte
	del    hub.Delivery
	msgRaw []byte // nil when the message was not read from bbolt
	msg    messageRec
}

// remember keeps r with l while l is the delivery's lease; a later claim
// replaces the record and so forgets r.
func (t *leaseTable) remember(l hub.Lease, r *claimRead) {
	r.del.Meta = maps.Clone(r.del.Meta)
	r.msg.Attrs = maps.Clone(r.msg.Attrs)
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, ok := t.m[l.DeliveryID]; ok && cur.Epoch == l.Epoch && cur.Holder == l.Holder {
		cur.read = r
		t.m[l.DeliveryID] = cur
	}
}

// read returns what the claim of the delivery's current lease decoded, or
// nil.
func (t *leaseTable) read(id string) *claimRead {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[id].read
}
