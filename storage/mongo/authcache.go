package mongo

import (
	"sync"
	"time"

	"github.com/posthub/posthub/hub"
)

// authCache answers the two lookups every authenticated request makes —
// the system an API token belongs to (SystemByToken, three reads) and a
// viewing client's assertion keys (AssertionKeys, one read) — from this
// instance's memory for at most Config.AuthCacheTTL.
//
// What it guarantees:
//   - Only answers MongoDB gave are kept (an unknown token is asked every
//     time), keyed by the token's hash, resp. the system ID, at most
//     authCacheMax of each.
//   - A change made through this instance (CreateSystem, UpdateSystem,
//     ChangeReceivers, PutAssertionKey, DeleteAssertionKey) empties the
//     cache when it returns, and a lookup that started before the change
//     does not store what it read (a generation count), so this instance
//     sees its own changes at once.
//   - A change made through another instance reaches this one within the
//     TTL: a token revoked, a system deactivated or an assertion key
//     deleted elsewhere keeps working here for at most AuthCacheTTL (2 s by
//     default, `posthub serve -auth-cache-ttl`; the policy poll of package
//     rbac takes up to 1 s for a revoked privilege). TTL 0 turns the cache
//     off.
type authCache struct {
	ttl time.Duration

	mu      sync.Mutex
	gen     uint64
	systems map[string]cached[hub.System]
	keys    map[string]cached[[]hub.AssertionKey]
}

type cached[V any] struct {
	v  V
	at time.Time
}

// authCacheMax bounds each map; a full map is emptied (simpler than LRU,
// and the working set of a hub — its systems — is far below it).
const authCacheMax = 10_000

func newAuthCache(ttl time.Duration) *authCache {
	return &authCache{ttl: ttl, systems: map[string]cached[hub.System]{}, keys: map[string]cached[[]hub.AssertionKey]{}}
}

func lookup[V any](c *authCache, m map[string]cached[V], k string) (V, uint64, bool) {
	var zero V
	if c.ttl <= 0 {
		return zero, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := m[k]
	if ok && time.Since(e.at) < c.ttl {
		return e.v, c.gen, true
	}
	delete(m, k)
	return zero, c.gen, false
}

func store[V any](c *authCache, m map[string]cached[V], k string, v V, gen uint64, at time.Time) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return // a change went through this instance while we read
	}
	if len(m) >= authCacheMax {
		clear(m)
	}
	m[k] = cached[V]{v, at}
}

func (c *authCache) system(hash string) (hub.System, uint64, bool) { return lookup(c, c.systems, hash) }

// putSystem keeps sys, read from MongoDB since at, under its token hash.
func (c *authCache) putSystem(hash string, sys hub.System, gen uint64, at time.Time) {
	store(c, c.systems, hash, sys, gen, at)
}

func (c *authCache) assertionKeys(systemID string) ([]hub.AssertionKey, uint64, bool) {
	return lookup(c, c.keys, systemID)
}

func (c *authCache) putAssertionKeys(systemID string, ks []hub.AssertionKey, gen uint64, at time.Time) {
	store(c, c.keys, systemID, ks, gen, at)
}

// forget empties the cache after a change through this instance.
func (c *authCache) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.systems)
	clear(c.keys)
}
