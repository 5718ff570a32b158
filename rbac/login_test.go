package rbac_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
)

const annePassword = "anne's long password"

// loginWorld is a store with one active user (anne) and one inactive
// (ivan), and Sessions over it.
func loginWorld(t *testing.T) (*rbac.Sessions, hub.Store) {
	t.Helper()
	ctx := context.Background()
	store := boltStore(t)
	hash, err := rbac.HashPassword(annePassword)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []hub.User{{ID: "anne", PasswordHash: hash, Active: true}, {ID: "ivan", PasswordHash: hash}} {
		if err := store.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	return &rbac.Sessions{Key: make([]byte, 32), Users: store, Hasher: rbac.NewHasher(1, 0)}, store
}

func TestLoginAnswers(t *testing.T) {
	ctx := context.Background()
	s, _ := loginWorld(t)
	for _, c := range []struct {
		name, id, pw string
		want         hub.Code
	}{
		{"the right password logs in", "anne", annePassword, ""},
		{"a wrong password is unauthorized", "anne", "not anne's password", hub.Unauthorized},
		{"an unknown user is unauthorized", "nobody", annePassword, hub.Unauthorized},
		{"an inactive user is unauthorized, even with the right password", "ivan", annePassword, hub.Unauthorized},
		{"an id no account can have is unauthorized", "Not A Valid Id!", annePassword, hub.Unauthorized},
	} {
		t.Run(c.name, func(t *testing.T) {
			u, ss, v, err := s.Login(ctx, c.id, c.pw, "192.0.2.1")
			if hub.ErrorCode(err) != c.want {
				t.Fatalf("Login: %v, want code %q", err, c.want)
			}
			if c.want == "" && (u.ID != c.id || ss.User != c.id || v == "") {
				t.Fatalf("Login: user %+v session %+v cookie %q", u, ss, v)
			}
		})
	}
}

// TestLoginSpendsAHashOnEveryAccount: unknown and inactive users go
// through the same bounded password check as real ones (the constant-time
// path) — with the only hash slot taken, every one of them is refused as
// busy rather than answered at once.
func TestLoginSpendsAHashOnEveryAccount(t *testing.T) {
	ctx := context.Background()
	s, _ := loginWorld(t)
	release := rbac.HoldSlot(s.Hasher)
	defer release()
	for _, id := range []string{"anne", "nobody", "ivan"} {
		_, _, _, err := s.Login(ctx, id, "some wrong password", "192.0.2.1")
		if hub.ErrorCode(err) != hub.Unavailable || hub.RetryAfterSeconds(err) < 1 {
			t.Errorf("login of %s with the hash slot taken: %v, want unavailable with a Retry-After", id, err)
		}
	}
}

// TestOverlongPasswordIsRefusedWithoutHashing: a login with a password
// longer than any account can have is wrong at once — with the only hash
// slot taken it is still unauthorized, not busy — and no hash is made of
// one.
func TestOverlongPasswordIsRefusedWithoutHashing(t *testing.T) {
	ctx := context.Background()
	s, _ := loginWorld(t)
	release := rbac.HoldSlot(s.Hasher)
	defer release()
	long := strings.Repeat("x", rbac.MaxPasswordLen+1)
	if _, _, _, err := s.Login(ctx, "anne", long, "192.0.2.1"); hub.ErrorCode(err) != hub.Unauthorized {
		t.Errorf("login with a %d-byte password: %v, want unauthorized", len(long), err)
	}
	if _, err := rbac.HashPassword(long); hub.ErrorCode(err) != hub.Invalid {
		t.Errorf("HashPassword of %d bytes: %v, want invalid", len(long), err)
	}
	if _, err := s.Hasher.Hash(ctx, long); hub.ErrorCode(err) != hub.Invalid {
		t.Errorf("Hasher.Hash of %d bytes with no slot free: %v, want invalid at once", len(long), err)
	}
}

func TestHasherBoundsConcurrencyAndWaits(t *testing.T) {
	ctx := context.Background()
	h := rbac.NewHasher(2, 50*time.Millisecond)
	hash, err := rbac.HashPassword(annePassword)
	if err != nil {
		t.Fatal(err)
	}
	// 12 checks at once on 2 slots with a 50 ms wait: argon2id takes
	// longer than that, so some are refused — quickly, with a Retry-After —
	// and every check that ran answered right.
	var mu sync.Mutex
	var ok, busy int
	var wg sync.WaitGroup
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			good, err := h.Check(ctx, hash, annePassword)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && good:
				ok++
			case hub.ErrorCode(err) == hub.Unavailable && hub.RetryAfterSeconds(err) >= 1:
				busy++
			default:
				t.Errorf("check: %v %v", good, err)
			}
		}()
	}
	wg.Wait()
	if ok < 2 || busy == 0 || ok+busy != 12 {
		t.Fatalf("%d checked, %d refused as busy", ok, busy)
	}
	// Once the burst is over, the slots are free again.
	if good, err := h.Check(ctx, hash, annePassword); err != nil || !good {
		t.Fatalf("check after the burst: %v %v", good, err)
	}
}

func TestSessionGenerations(t *testing.T) {
	ctx := context.Background()
	s, store := loginWorld(t)
	_, ss, v, err := s.Login(ctx, "anne", annePassword, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, u, err := s.Authenticate(ctx, v); err != nil || u.ID != "anne" {
		t.Fatalf("a fresh session: %v", err)
	}
	_, _, v2, err := s.Login(ctx, "anne", annePassword, "192.0.2.9")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Logout(ctx, ss.User); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{v, v2} {
		if _, _, err := s.Authenticate(ctx, c); hub.ErrorCode(err) != hub.Unauthorized {
			t.Fatalf("a session issued before logout: %v, want unauthorized", err)
		}
	}
	_, _, v3, err := s.Login(ctx, "anne", annePassword, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Authenticate(ctx, v3); err != nil {
		t.Fatalf("a session issued after logout: %v", err)
	}
	// A privilege change made through the Enforcer ends them too.
	en, err := rbac.New(ctx, store, rbac.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := en.Grant(ctx, rbac.Grant{User: "anne", Role: rbac.OrgAdmin, Domain: "11111111"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Authenticate(ctx, v3); hub.ErrorCode(err) != hub.Unauthorized {
		t.Fatalf("a session issued before a grant: %v, want unauthorized", err)
	}
	_, _, v4, _ := s.Login(ctx, "anne", annePassword, "192.0.2.1")
	if err := en.Revoke(ctx, rbac.Grant{User: "anne", Role: rbac.OrgAdmin, Domain: "11111111"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Authenticate(ctx, v4); hub.ErrorCode(err) != hub.Unauthorized {
		t.Fatalf("a session issued before a revocation: %v, want unauthorized", err)
	}
}

func TestThrottleGrowingDelaysPerUserAndAddress(t *testing.T) {
	now := time.Unix(1000, 0)
	th := &rbac.Throttle{Free: 3, Delay: time.Second, MaxDelay: 8 * time.Second, PerAddress: -1, Now: func() time.Time { return now }}
	const attacker, elsewhere = "192.0.2.66", "198.51.100.7"
	for i := range 3 {
		if w := th.Allow("admin", attacker); w != 0 {
			t.Fatalf("free attempt %d waits %v", i+1, w)
		}
		th.Failed("admin", attacker)
	}
	// Beyond the free attempts, each failure doubles the wait, up to the cap.
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		if w := th.Allow("admin", attacker); w != want {
			t.Fatalf("wait %v, want %v", w, want)
		}
		if w := th.Allow("admin", elsewhere); w != 0 {
			t.Fatalf("the real admin at another address waits %v", w)
		}
		if w := th.Allow("anne", attacker); w != 0 {
			t.Fatalf("another user at the attacker's address waits %v", w)
		}
		now = now.Add(want)
		if w := th.Allow("admin", attacker); w != 0 {
			t.Fatalf("after waiting %v: still %v", want, w)
		}
		th.Failed("admin", attacker)
	}
	th.Succeeded("admin", attacker)
	if w := th.Allow("admin", attacker); w != 0 {
		t.Fatalf("after a success: %v", w)
	}
}

func TestThrottlePerAddressRate(t *testing.T) {
	now := time.Unix(1000, 0)
	th := &rbac.Throttle{PerAddress: 4, Now: func() time.Time { return now }}
	for i := range 4 {
		if w := th.Allow("user"+strconv.Itoa(i), "192.0.2.1"); w != 0 {
			t.Fatalf("attempt %d waits %v", i+1, w)
		}
		th.Failed("user"+strconv.Itoa(i), "192.0.2.1")
	}
	if w := th.Allow("usere", "192.0.2.1"); w <= 0 || w > 15*time.Second {
		t.Fatalf("fifth attempt within the minute waits %v, want (0, 15s]", w)
	}
	if w := th.Allow("usere", "192.0.2.2"); w != 0 {
		t.Fatalf("another address waits %v", w)
	}
	// Succeeded and Refund give an attempt back.
	th.Refund("192.0.2.1")
	if w := th.Allow("usere", "192.0.2.1"); w != 0 {
		t.Fatalf("after a refund: %v", w)
	}
	now = now.Add(15 * time.Second)
	if w := th.Allow("userf", "192.0.2.1"); w != 0 {
		t.Fatalf("a quarter of a minute later: %v", w)
	}
	// An IPv6 client is one client across its /64.
	for i := range 4 {
		th.Allow("v6", "2001:db8:1:2::"+strconv.Itoa(i+1))
	}
	if w := th.Allow("v6", "2001:db8:1:2:ffff::1"); w == 0 {
		t.Fatal("a fifth address of the same /64 is not throttled")
	}
}

func TestThrottleIsBoundedInMemory(t *testing.T) {
	th := &rbac.Throttle{MaxEntries: 100, PerAddress: 1000}
	for i := range 10_000 {
		addr := "10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
		th.Allow("u", addr)
		th.Failed("u"+strconv.Itoa(i), addr)
	}
	if pairs, addrs := rbac.ThrottleSizes(th); pairs > 100 || addrs > 100 {
		t.Fatalf("the throttle remembers %d pairs and %d addresses, bound 100", pairs, addrs)
	}
	if w := th.Allow("fresh", "192.0.2.1"); w != 0 {
		t.Fatalf("a fresh client waits %v", w)
	}
}

func TestClientAddr(t *testing.T) {
	proxies, err := rbac.ParseTrustedProxies("10.0.0.0/8, 192.0.2.10")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		proxies rbac.TrustedProxies
		remote  string
		xff     []string
		want    string
	}{
		{"without trusted proxies the peer is the client", nil, "198.51.100.1:5000", []string{"203.0.113.9"}, "198.51.100.1"},
		{"an untrusted peer's X-Forwarded-For is ignored", proxies, "198.51.100.1:5000", []string{"203.0.113.9"}, "198.51.100.1"},
		{"a trusted proxy names the client", proxies, "10.1.2.3:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"entries the client wrote left of it prove nothing", proxies, "10.1.2.3:5000", []string{"1.2.3.4, 203.0.113.9"}, "203.0.113.9"},
		{"a chain of trusted proxies is walked from the right", proxies, "10.1.2.3:5000", []string{"203.0.113.9, 192.0.2.10", "10.9.9.9"}, "203.0.113.9"},
		{"garbage stops the walk at the last trusted hop", proxies, "10.1.2.3:5000", []string{"not-an-address"}, "10.1.2.3"},
		{"IPv6 peers", nil, "[2001:db8::1]:443", nil, "2001:db8::1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", nil)
			r.RemoteAddr = c.remote
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := c.proxies.ClientAddr(r); got != c.want {
				t.Fatalf("ClientAddr = %q, want %q", got, c.want)
			}
		})
	}
	if _, err := rbac.ParseTrustedProxies("10.0.0.0/8, proxy.example"); err == nil {
		t.Fatal("a host name was taken as a trusted proxy")
	}
}

// TestResumeWithoutAccounts: a session of a person with no account
// (Generations only, as the web mailbox keeps them) lives while its
// generation does, and a logout on any instance ends it.
func TestResumeWithoutAccounts(t *testing.T) {
	ctx := context.Background()
	_, store := loginWorld(t)
	key := make([]byte, 32)
	a := &rbac.Sessions{Key: key, Generations: store}
	b := &rbac.Sessions{Key: key, Generations: store} // another instance
	ss, v, err := a.Begin(ctx, "cpr-0101011234")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Resume(ctx, v); err != nil || got.User != ss.User {
		t.Fatalf("a fresh session: %+v, %v", got, err)
	}
	if _, err := b.Resume(ctx, v+"x"); hub.ErrorCode(err) != hub.Unauthorized {
		t.Fatalf("a forged session: %v, want unauthorized", err)
	}
	if _, err := (&rbac.Sessions{Key: key}).Resume(ctx, v); hub.ErrorCode(err) != hub.Unauthorized {
		t.Fatalf("no generations to check against: %v, want unauthorized", err)
	}
	if err := b.Logout(ctx, ss.User); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Resume(ctx, v); hub.ErrorCode(err) != hub.Unauthorized {
		t.Fatalf("a session issued before logout: %v, want unauthorized", err)
	}
	_, v2, err := a.Begin(ctx, ss.User)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Resume(ctx, v2); err != nil {
		t.Fatalf("a session issued after logout: %v", err)
	}
}

// failingAccounts is a store whose account or generation read fails with
// the given error (nil: answers as the store does).
type failingAccounts struct {
	rbac.Accounts
	user, gen error
}

func (f failingAccounts) GetUser(ctx context.Context, id string) (hub.User, error) {
	if f.user != nil {
		return hub.User{}, f.user
	}
	return f.Accounts.GetUser(ctx, id)
}

func (f failingAccounts) SessionGeneration(ctx context.Context, id string) (uint64, error) {
	if f.gen != nil {
		return 0, f.gen
	}
	return f.Accounts.SessionGeneration(ctx, id)
}

// TestAuthenticateWhenAReadFails: the account and the generation are read
// at once, and the answer is the one a serial read (account first) gives:
// a failed read is that read's error, a missing or inactive account is
// Unauthorized whatever the generation read answered, and nothing is
// granted.
func TestAuthenticateWhenAReadFails(t *testing.T) {
	ctx := context.Background()
	s, store := loginWorld(t)
	_, _, anne, err := s.Login(ctx, "anne", annePassword, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	_, ivan := s.Issue("ivan", 0)
	_, ghost := s.Issue("ghost", 0)
	down := hub.Errorf(hub.Unavailable, "the user store is down")
	broken := hub.Errorf(hub.Internal, "the generation store is broken")
	for _, c := range []struct {
		name      string
		cookie    string
		user, gen error
		want      hub.Code
		wantErr   error
	}{
		{"the generation read's error is the answer", anne, nil, broken, hub.Internal, broken},
		{"the account read's error is the answer", anne, down, nil, hub.Unavailable, down},
		{"the account read's error comes before the generation read's", anne, down, broken, hub.Unavailable, down},
		{"an inactive account is unauthorized whatever the generation read answered", ivan, nil, broken, hub.Unauthorized, nil},
		{"a missing account is unauthorized whatever the generation read answered", ghost, nil, broken, hub.Unauthorized, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &rbac.Sessions{Key: s.Key, Users: failingAccounts{Accounts: store, user: c.user, gen: c.gen}}
			ss, u, err := f.Authenticate(ctx, c.cookie)
			if hub.ErrorCode(err) != c.want {
				t.Fatalf("err = %v, want %s", err, c.want)
			}
			if c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Fatalf("err = %v, want the failed read's own error %v", err, c.wantErr)
			}
			if ss != (rbac.Session{}) || u.ID != "" {
				t.Fatalf("granted %+v %+v on a failed read", ss, u)
			}
		})
	}
}

// rendezvousAccounts makes each of the two reads wait until the other has
// begun: an Authenticate that reads them one after the other fails (after
// the guard) instead of passing.
type rendezvousAccounts struct {
	rbac.Accounts
	user, gen chan struct{}
}

func (r rendezvousAccounts) meet(mine, other chan struct{}) error {
	close(mine)
	select {
	case <-other:
		return nil
	case <-time.After(10 * time.Second):
		return hub.Errorf(hub.Unavailable, "the other read never began: the reads are serial")
	}
}

func (r rendezvousAccounts) GetUser(ctx context.Context, id string) (hub.User, error) {
	if err := r.meet(r.user, r.gen); err != nil {
		return hub.User{}, err
	}
	return r.Accounts.GetUser(ctx, id)
}

func (r rendezvousAccounts) SessionGeneration(ctx context.Context, id string) (uint64, error) {
	if err := r.meet(r.gen, r.user); err != nil {
		return 0, err
	}
	return r.Accounts.SessionGeneration(ctx, id)
}

// TestAuthenticateReadsAccountAndGenerationAtOnce: one store round trip,
// not two, per request with a session; and a logout is still seen by the
// next request.
func TestAuthenticateReadsAccountAndGenerationAtOnce(t *testing.T) {
	ctx := context.Background()
	s, store := loginWorld(t)
	_, ss, v, err := s.Login(ctx, "anne", annePassword, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	at := func() *rbac.Sessions {
		return &rbac.Sessions{Key: s.Key, Users: rendezvousAccounts{Accounts: store, user: make(chan struct{}), gen: make(chan struct{})}}
	}
	if _, u, err := at().Authenticate(ctx, v); err != nil || u.ID != "anne" {
		t.Fatalf("a live session: %v", err)
	}
	if err := s.Logout(ctx, ss.User); err != nil {
		t.Fatal(err)
	}
	if _, _, err := at().Authenticate(ctx, v); hub.ErrorCode(err) != hub.Unauthorized {
		t.Fatalf("a session after logout: %v, want unauthorized", err)
	}
}
