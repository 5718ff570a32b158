package rbac

import (
	"net/netip"
	"sync"
	"time"
)

// Throttle slows password guessing without locking the real user out.
// Two rules, both kept in this instance's memory (a guesser spread over N
// instances gets N times the attempts; the Hasher bounds each instance's
// work regardless):
//
//   - Per (user id, client address): the first Free failed logins cost
//     nothing; after that each attempt must wait Delay, doubled with every
//     further failure up to MaxDelay. A success forgets the pair, and so
//     does an hour without failures. A guesser hammering "admin" from one
//     address therefore slows only that address's attempts on "admin":
//     the real admin, from anywhere else, logs in as usual.
//   - Per client address: at most PerAddress failed or refused logins a
//     minute, over all user ids (a token bucket: an attempt takes a token,
//     a success gives it back), so one address can neither try password
//     after password on one account after another nor keep the password
//     hashing queue full.
//
// Memory is bounded: at most MaxEntries pairs and MaxEntries addresses;
// when a table is full, entries that no longer matter are dropped, then,
// if it is still full, the table is emptied. IPv6 clients are counted by
// their /64, which one host usually holds whole.
type Throttle struct {
	// Free is how many failed logins of one user from one address go
	// without delay (default 5).
	Free int
	// Delay is the wait after the first failure beyond Free (default 1s);
	// it doubles with each further failure up to MaxDelay (default 15 min).
	Delay, MaxDelay time.Duration
	// PerAddress is how many failed (or busy-refused) logins one address
	// may make a minute (default 30; negative: no limit).
	PerAddress int
	MaxEntries int
	Now        func() time.Time

	mu    sync.Mutex
	pairs map[pairKey]*pairState
	addrs map[string]*bucket
}

type pairKey struct{ user, addr string }

type pairState struct {
	failures int
	last     time.Time
}

// bucket is a token bucket: tokens at time at.
type bucket struct {
	tokens float64
	at     time.Time
}

// forgetPair is how long a pair without failures is remembered.
const forgetPair = time.Hour

func (t *Throttle) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *Throttle) free() int {
	if t.Free <= 0 {
		return 5
	}
	return t.Free
}

func (t *Throttle) perAddress() int {
	if t.PerAddress == 0 {
		return 30
	}
	return t.PerAddress
}

// delay is the wait a pair with n failures owes before its next attempt.
func (t *Throttle) delay(n int) time.Duration {
	if n < t.free() {
		return 0
	}
	d, maxD := t.Delay, t.MaxDelay
	if d <= 0 {
		d = time.Second
	}
	if maxD <= 0 {
		maxD = 15 * time.Minute
	}
	for i := t.free(); i < n && d < maxD; i++ {
		d *= 2
	}
	return min(d, maxD)
}

// refill brings b's tokens up to now.
func (t *Throttle) refill(b *bucket, now time.Time) {
	limit := float64(t.perAddress())
	b.tokens = min(limit, b.tokens+now.Sub(b.at).Minutes()*limit)
	b.at = now
}

// Allow reports how long a login of user from addr must wait: 0 means it
// may be tried now, and it is counted against addr's rate until Succeeded
// or Refund gives it back.
func (t *Throttle) Allow(user, addr string) time.Duration {
	now, addr := t.now(), addrKey(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.pairs[pairKey{user, addr}]; p != nil {
		if wait := p.last.Add(t.delay(p.failures)).Sub(now); wait > 0 {
			return wait
		}
	}
	if t.perAddress() < 0 {
		return 0
	}
	b := t.addrs[addr]
	if b == nil {
		if t.addrs == nil {
			t.addrs = map[string]*bucket{}
		}
		t.makeRoom(func() int { return len(t.addrs) }, func() {
			for k, b := range t.addrs {
				if t.refill(b, now); b.tokens >= float64(t.perAddress()) {
					delete(t.addrs, k)
				}
			}
		}, func() { t.addrs = map[string]*bucket{} })
		b = &bucket{tokens: float64(t.perAddress()), at: now}
		t.addrs[addr] = b
	}
	t.refill(b, now)
	if b.tokens < 1 {
		return time.Duration((1 - b.tokens) / float64(t.perAddress()) * float64(time.Minute))
	}
	b.tokens--
	return 0
}

// Failed records a failed login of user from addr.
func (t *Throttle) Failed(user, addr string) {
	now, k := t.now(), pairKey{user, addrKey(addr)}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pairs == nil {
		t.pairs = map[pairKey]*pairState{}
	}
	p := t.pairs[k]
	if p == nil {
		t.makeRoom(func() int { return len(t.pairs) }, func() {
			for k, p := range t.pairs {
				if now.Sub(p.last) >= forgetPair {
					delete(t.pairs, k)
				}
			}
		}, func() { t.pairs = map[pairKey]*pairState{} })
		p = &pairState{}
		t.pairs[k] = p
	}
	if now.Sub(p.last) >= forgetPair {
		p.failures = 0
	}
	p.failures++
	p.last = now
}

// Succeeded forgets the pair's failures and gives addr its attempt back.
func (t *Throttle) Succeeded(user, addr string) {
	t.mu.Lock()
	delete(t.pairs, pairKey{user, addrKey(addr)})
	t.mu.Unlock()
	t.Refund(addr)
}

// Refund gives addr back an attempt that failed for the hub's own reasons
// (the store failed).
func (t *Throttle) Refund(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b := t.addrs[addrKey(addr)]; b != nil {
		b.tokens = min(float64(t.perAddress()), b.tokens+1)
	}
}

// makeRoom runs drop when a table is full, and reset when dropping freed
// nothing.
func (t *Throttle) makeRoom(size func() int, drop, reset func()) {
	limit := t.MaxEntries
	if limit <= 0 {
		limit = 100_000
	}
	if size() < limit {
		return
	}
	drop()
	if size() >= limit {
		reset()
	}
}

// addrKey is the key a client address is counted under: the address
// itself, an IPv6 address's /64.
func addrKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
