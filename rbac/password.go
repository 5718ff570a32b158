package rbac

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/posthub/posthub/hub"
)

// Argon2id parameters (RFC 9106's second recommended option, with 64 MiB).
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 2
	argonKeyLen  = 32
)

// MinPasswordLen is the shortest password accepted.
const MinPasswordLen = 12

// MaxPasswordLen is the longest, in bytes: argon2id reads all of it, and a
// login with a longer one is refused before any hashing.
const MaxPasswordLen = 1024

// HashPassword returns the PHC string of an argon2id hash of pw.
func HashPassword(pw string) (string, error) {
	if len(pw) < MinPasswordLen {
		return "", field("password", "password.too.short", fmt.Sprintf("a password has at least %d characters", MinPasswordLen), "")
	}
	if len(pw) > MaxPasswordLen {
		return "", field("password", "password.too.long", fmt.Sprintf("a password has at most %d bytes", MaxPasswordLen), "")
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// CheckPassword reports whether pw matches the PHC string hash. It reads
// the parameters from the hash, so stronger settings apply to new hashes
// without invalidating old ones.
func CheckPassword(hash, pw string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m > 1<<20 || t > 16 || p == 0 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is checked against when a user does not exist, so a login's
// time does not tell whether the account exists. It is made on first use,
// not at start-up: argon2id takes 64 MiB and a noticeable moment, which
// every posthub command (memo validate, send…) would otherwise pay.
var dummyHash = sync.OnceValue(func() string {
	h, _ := HashPassword("posthub-no-such-user-password")
	return h
})

// CheckNoUser spends the time of a password check and returns false.
func CheckNoUser(pw string) bool {
	CheckPassword(dummyHash(), pw)
	return false
}

// Hasher bounds the argon2id work of one process. Every hash costs
// argonMemory (64 MiB) while it runs, and logins are unauthenticated, so
// without a bound a burst of wrong logins takes the hub's memory: 32 at
// once took it from 161 MB to 2.1 GB. A Hasher lets Concurrency hashes run
// at once; a further one waits at most Wait for a slot (and at most
// 4×Concurrency wait at all), then is refused with Unavailable and a
// RetryAfter — requests are never queued without bound. Share one Hasher
// between everything that hashes in a process (logins on every path,
// account creation). A nil *Hasher does not bound (offline CLI, tests).
type Hasher struct {
	wait       time.Duration
	maxWaiting int64
	slots      chan struct{}
	waiting    atomic.Int64
}

// NewHasher returns a Hasher running at most concurrency hashes at once
// (<= 0: one per CPU) and letting a request wait at most wait for a slot.
func NewHasher(concurrency int, wait time.Duration) *Hasher {
	if concurrency <= 0 {
		concurrency = runtime.NumCPU()
	}
	return &Hasher{wait: max(wait, 0), maxWaiting: 4 * int64(concurrency), slots: make(chan struct{}, concurrency)}
}

// acquire takes a slot; the caller calls release when its hash is done.
func (h *Hasher) acquire(ctx context.Context) (release func(), err error) {
	if h == nil {
		return func() {}, nil
	}
	release = func() { <-h.slots }
	select {
	case h.slots <- struct{}{}:
		return release, nil
	default:
	}
	busy := &hub.Error{Code: hub.Unavailable, Message: "the hub is busy checking other passwords; try again in a moment",
		RetryAfter: max(h.wait, time.Second)}
	if h.wait == 0 {
		return nil, busy
	}
	if h.waiting.Add(1) > h.maxWaiting {
		h.waiting.Add(-1)
		return nil, busy
	}
	defer h.waiting.Add(-1)
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return release, nil
	case <-t.C:
		return nil, busy
	case <-ctx.Done():
		return nil, hub.Wrap(hub.Unavailable, ctx.Err(), "the request ended while waiting to check a password")
	}
}

// Hash is HashPassword within the bound.
func (h *Hasher) Hash(ctx context.Context, pw string) (string, error) {
	if len(pw) < MinPasswordLen || len(pw) > MaxPasswordLen {
		return HashPassword(pw) // refused before any work
	}
	release, err := h.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return HashPassword(pw)
}

// Check is CheckPassword within the bound.
func (h *Hasher) Check(ctx context.Context, hash, pw string) (bool, error) {
	release, err := h.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	return CheckPassword(hash, pw), nil
}

// CheckNoUser is CheckNoUser within the bound: it spends the time of a
// password check and answers false (or the bound's refusal).
func (h *Hasher) CheckNoUser(ctx context.Context, pw string) (bool, error) {
	release, err := h.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	return CheckNoUser(pw), nil
}
