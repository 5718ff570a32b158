package rbac

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/posthub/posthub/hub"
)

// Login is the one password login of the hub; the API and the portal both
// call it. In order:
//
//  1. the throttle: a (user, client) pair that failed too often, or a client
//     over its rate, is refused with RateLimited and a RetryAfter, before
//     any password is hashed;
//  2. the account: a user that does not exist or is inactive costs one
//     dummy password check, so the answer's time does not tell whether the
//     account exists;
//  3. the password check, within the Hasher's bound (over it: Unavailable
//     with a RetryAfter);
//  4. a session at the user's current session generation.
//
// A wrong password, an unknown or inactive user all answer Unauthorized
// with the same message. client is the address the login is throttled by
// (ClientAddr).
func (s *Sessions) Login(ctx context.Context, id, password, client string) (hub.User, Session, string, error) {
	if s.Users == nil {
		return hub.User{}, Session{}, "", hub.Errorf(hub.Unavailable, "human login is not configured on this hub")
	}
	wrong := hub.Errorf(hub.Unauthorized, "unknown user or wrong password")
	if !ValidUserID(id) || len(password) > MaxPasswordLen {
		// No account can have this id or this password: there is nothing
		// to time or count, and nothing is hashed.
		return hub.User{}, Session{}, "", wrong
	}
	if wait := s.Throttle.Allow(id, client); wait > 0 {
		err := &hub.Error{Code: hub.RateLimited, RetryAfter: wait}
		err.Message = fmt.Sprintf("too many failed logins; try again in %d s", hub.RetryAfterSeconds(err))
		return hub.User{}, Session{}, "", err
	}
	u, err := s.Users.GetUser(ctx, id)
	if err != nil && !hub.Is(err, hub.NotFound) {
		s.Throttle.Refund(client)
		return hub.User{}, Session{}, "", err
	}
	var ok bool
	if err != nil || !u.Active || u.PasswordHash == "" {
		ok, err = s.Hasher.CheckNoUser(ctx, password)
	} else {
		ok, err = s.Hasher.Check(ctx, u.PasswordHash, password)
	}
	if err != nil {
		// Refused as busy: the attempt still counts against the client's
		// rate, so one address cannot keep the hash queue full.
		return hub.User{}, Session{}, "", err
	}
	if !ok {
		s.Throttle.Failed(id, client)
		return hub.User{}, Session{}, "", wrong
	}
	ss, v, err := s.Begin(ctx, u.ID)
	if err != nil {
		s.Throttle.Refund(client)
		return hub.User{}, Session{}, "", err
	}
	s.Throttle.Succeeded(id, client)
	return u, ss, v, nil
}

// Begin issues a session for a user who has proved who they are (Login,
// or another way such as OpenID Connect), at the user's current session
// generation — a session issued any other way would be refused.
func (s *Sessions) Begin(ctx context.Context, user string) (Session, string, error) {
	gens := s.generations()
	if gens == nil {
		return Session{}, "", hub.Errorf(hub.Unavailable, "human login is not configured on this hub")
	}
	gen, err := gens.SessionGeneration(ctx, user)
	if err != nil {
		return Session{}, "", err
	}
	ss, v := s.Issue(user, gen)
	return ss, v, nil
}

// Authenticate checks a session cookie's value: signature, expiry, an
// active account, and a session generation that is still the user's.
// Unauthorized when any fails; a store error as the store answered it.
//
// The account and the generation are independent reads (two collections
// on MongoDB), so they are made at once and a request waits one store
// round trip, not two. Revocation stays exact: both reads begin after the
// request arrived, so a logout or password change that returned before it
// is seen as a serial read would see it. The answer is the one a serial
// read, account first, would give: a missing or inactive account is
// Unauthorized and an account read that failed is its error, whatever the
// generation read answered; only then does the generation count.
func (s *Sessions) Authenticate(ctx context.Context, value string) (Session, hub.User, error) {
	ss, ok := s.Verify(value)
	if !ok || s.Users == nil {
		return Session{}, hub.User{}, hub.Errorf(hub.Unauthorized, "the session has expired; log in again")
	}
	type generation struct {
		gen uint64
		err error
	}
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gens, read := s.generations(), make(chan generation, 1)
	go func() {
		g, err := gens.SessionGeneration(gctx, ss.User)
		read <- generation{g, err}
	}()
	u, err := s.Users.GetUser(ctx, ss.User)
	if err != nil || !u.Active {
		// The generation no longer matters; the request still waits for
		// its read, so no goroutine outlives it.
		cancel()
	}
	g := <-read
	if hub.Is(err, hub.NotFound) || (err == nil && !u.Active) {
		return Session{}, hub.User{}, hub.Errorf(hub.Unauthorized, "the account is not active")
	}
	if err != nil {
		return Session{}, hub.User{}, err
	}
	if err := checkGeneration(ss, g.gen, g.err); err != nil {
		return Session{}, hub.User{}, err
	}
	return ss, u, nil
}

// Resume checks the cookie value of a session with no account behind it
// (Generations): signature, expiry, and a session generation that is
// still the user's. Unauthorized when any fails.
func (s *Sessions) Resume(ctx context.Context, value string) (Session, error) {
	ss, ok := s.Verify(value)
	if !ok || s.generations() == nil {
		return Session{}, hub.Errorf(hub.Unauthorized, "the session has expired; log in again")
	}
	if err := s.current(ctx, ss); err != nil {
		return Session{}, err
	}
	return ss, nil
}

// current checks that ss was issued at its user's current generation.
func (s *Sessions) current(ctx context.Context, ss Session) error {
	gen, err := s.generations().SessionGeneration(ctx, ss.User)
	return checkGeneration(ss, gen, err)
}

// checkGeneration judges ss by the generation read for its user (gen, or
// the read's error).
func checkGeneration(ss Session, gen uint64, err error) error {
	if err != nil {
		return err
	}
	if gen != ss.Generation {
		return hub.Errorf(hub.Unauthorized, "the session has ended (logged out, or the password or privileges changed); log in again")
	}
	return nil
}

// generations is where session generations are kept: Generations, else
// Users (nil: neither is configured).
func (s *Sessions) generations() Generations {
	if s.Generations != nil {
		return s.Generations
	}
	if s.Users != nil {
		return s.Users
	}
	return nil
}

// Logout ends every session of user, on every instance.
func (s *Sessions) Logout(ctx context.Context, user string) error {
	gens := s.generations()
	if gens == nil {
		return hub.Errorf(hub.Unavailable, "human login is not configured on this hub")
	}
	_, err := gens.BumpSessionGeneration(ctx, user)
	return err
}

// ClientAddr is the address a login from r is throttled by (see
// TrustedProxies.ClientAddr).
func (s *Sessions) ClientAddr(r *http.Request) string { return s.Proxies.ClientAddr(r) }

// TrustedProxies are the reverse proxies (addresses or CIDR prefixes)
// whose X-Forwarded-For header the hub believes. Empty by default: then
// the header is ignored, since any client can send it.
type TrustedProxies []netip.Prefix

// ParseTrustedProxies reads a comma-separated list of addresses and CIDR
// prefixes ("" is none).
func ParseTrustedProxies(list string) (TrustedProxies, error) {
	var out TrustedProxies
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is neither an address nor a CIDR prefix", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func (p TrustedProxies) trusts(a netip.Addr) bool {
	for _, pr := range p {
		if pr.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// ClientAddr is r's peer address; when the peer is a trusted proxy, it is
// the right-most X-Forwarded-For entry that is not itself a trusted proxy
// (entries to its left were written by the client and prove nothing).
func (p TrustedProxies) ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !p.trusts(peer) {
		return host
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0 && p.trusts(client); i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		client = a.Unmap()
	}
	return client.String()
}
