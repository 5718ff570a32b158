package rbac

// HoldSlot takes one of h's hash slots until the returned func is called.
func HoldSlot(h *Hasher) (release func()) {
	h.slots <- struct{}{}
	return func() { <-h.slots }
}

// ThrottleSizes is how many pairs and addresses t remembers.
func ThrottleSizes(t *Throttle) (pairs, addrs int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pairs), len(t.addrs)
}

// CacheLen is how many decisions e has cached.
func CacheLen(e *Enforcer) int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return len(e.cache)
}
