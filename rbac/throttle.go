package rbac

import (
	"sync"
	"time"
)

// Throttle slows password guessing: after MaxFailures failed logins of one
// user id within Window, that id is refused until Window has passed since
// the last failure. It is per instance (a guesser spread over N instances
// gets N times the attempts) and bounded in memory (MaxEntries ids; when
// full, expired entries are dropped, then the table is reset).
type Throttle struct {
	MaxFailures int
	Window      time.Duration
	MaxEntries  int
	Now         func() time.Time

	mu sync.Mutex
	m  map[string]*throttleEntry
}

type throttleEntry struct {
	failures int
	last     time.Time
}

func (t *Throttle) defaults() (int, time.Duration, time.Time) {
	n, w := t.MaxFailures, t.Window
	if n <= 0 {
		n = 5
	}
	if w <= 0 {
		w = time.Minute
	}
	now := time.Now()
	if t.Now != nil {
		now = t.Now()
	}
	return n, w, now
}

// Allow reports whether a login of id may be tried now.
func (t *Throttle) Allow(id string) bool {
	n, w, now := t.defaults()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[id]
	return e == nil || e.failures < n || now.Sub(e.last) >= w
}

// Failed records a failed login of id.
func (t *Throttle) Failed(id string) {
	_, w, now := t.defaults()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*throttleEntry{}
	}
	max := t.MaxEntries
	if max <= 0 {
		max = 100_000
	}
	if len(t.m) >= max {
		for k, e := range t.m {
			if now.Sub(e.last) >= w {
				delete(t.m, k)
			}
		}
		if len(t.m) >= max {
			t.m = map[string]*throttleEntry{}
		}
	}
	e := t.m[id]
	if e == nil || now.Sub(e.last) >= w {
		e = &throttleEntry{}
		t.m[id] = e
	}
	e.failures++
	e.last = now
}

// Succeeded forgets id's failures.
func (t *Throttle) Succeeded(id string) {
	t.mu.Lock()
	delete(t.m, id)
	t.mu.Unlock()
}
