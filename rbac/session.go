package rbac

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/atomicfile"
)

// SessionCookie is the session cookie's name over plain HTTP; over TLS it
// is SecureSessionCookie. See CookieName.
const SessionCookie = "posthub_session"

// SecureSessionCookie is the session cookie's name when the hub is served
// over TLS (directly or behind a TLS-terminating proxy): browsers accept a
// __Host- cookie only with Secure, Path=/ and no Domain, so no other host
// of the domain, and no plain-HTTP page, can set or shadow it.
const SecureSessionCookie = "__Host-" + SessionCookie

// CookieName is the session cookie's name, secure meaning served over TLS.
func CookieName(secure bool) string { return HostCookieName(SessionCookie, secure) }

// SetCookie sets the session cookie (HttpOnly, SameSite=Lax, Path=/, no
// Domain; Secure and __Host- named when secure) to value for maxAge, or
// clears it when maxAge < 0.
func SetCookie(w http.ResponseWriter, value string, maxAge time.Duration, secure bool) {
	seconds := -1
	if maxAge >= 0 {
		seconds = int(maxAge / time.Second)
	}
	http.SetCookie(w, HostCookie(SessionCookie, value, "/", secure, http.SameSiteLaxMode, seconds))
}

// HostCookieName is the name a cookie of the hub's browser pages goes by:
// "__Host-"+name when secure (served over TLS), else name. A browser
// accepts a __Host- cookie only with Secure, Path=/ and no Domain, so
// another host of the domain cannot plant one (a sibling's Set-Cookie with
// Domain= would otherwise put the attacker's session or login flow in the
// victim's browser: cookie tossing) and a plain-HTTP page cannot shadow
// it. Read a cookie under this name only: falling back to the plain name
// would let a tossed cookie in again.
func HostCookieName(name string, secure bool) string {
	if secure {
		return "__Host-" + name
	}
	return name
}

// HostCookie is an HttpOnly cookie named by HostCookieName: when secure it
// is Secure with Path=/ (what __Host- requires), else it is scoped to path.
// It never has a Domain. maxAge < 0 clears it.
func HostCookie(name, value, path string, secure bool, sameSite http.SameSite, maxAge int) *http.Cookie {
	if secure {
		path = "/"
	}
	return &http.Cookie{Name: HostCookieName(name, secure), Value: value, Path: path, HttpOnly: true, Secure: secure,
		SameSite: sameSite, MaxAge: maxAge}
}

// SecureRequest reports whether the browser reached the hub over TLS:
// forced (-tls-cert or -secure-cookies), a TLS connection, or a proxy's
// "X-Forwarded-Proto: https". The header only ever makes cookies stricter
// (Secure, __Host-), and a browser cannot add it to a navigation, so it is
// taken from any client. The API, the portal and the web mailbox decide
// alike, so their cookies are named alike.
func SecureRequest(r *http.Request, forced bool) bool {
	return forced || r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// CookieValue is the session cookie of r ("" when absent), read under the
// name SetCookie gives it.
func CookieValue(r *http.Request, secure bool) string {
	c, err := r.Cookie(CookieName(secure))
	if err != nil {
		return ""
	}
	return c.Value
}

// Sessions issues and checks human sessions: a stateless cookie
// "<user>|<generation>|<issued>|<expires>|<nonce>|<mac>" signed with
// HMAC-SHA-256, so any instance holding the same key accepts it, and a
// CSRF token derived from the session (HMAC over its nonce) for the
// double-submit check.
//
// Revocation is server-side and shared by every instance: a session
// carries the user's session generation (hub.Users) from when it was
// issued, and Authenticate refuses it once the stored generation has
// moved on — which Logout, a password change and any privilege change do
// (so logging out ends the user's sessions everywhere). An account that is
// deactivated stops working at once because every request re-reads the
// user. Sessions expire after TTL regardless of use.
type Sessions struct {
	Key []byte
	TTL time.Duration
	Now func() time.Time
	// Users is where Login, Authenticate and Logout find accounts and
	// session generations.
	Users Accounts
	// Generations, when set, is where sessions' generations are kept
	// instead of Users: for sessions of people who have no account in
	// Users (the web mailbox's citizens and company users; see Resume).
	Generations Generations
	// Hasher bounds the password hashing of logins; share it with
	// everything else that hashes in the process. Nil: no bound.
	Hasher *Hasher
	// Throttle limits password guessing on every login path that issues
	// these sessions (API and portal).
	Throttle Throttle
	// Proxies are the reverse proxies whose X-Forwarded-For names the
	// client a login is throttled by (see ClientAddr). None by default.
	Proxies TrustedProxies
}

// Accounts is what logins need of the store.
type Accounts interface {
	GetUser(ctx context.Context, id string) (hub.User, error)
	Generations
}

// Generations are the stored session generations (hub.Users): a session
// carries its user's generation, and moving it on ends every session
// issued before, on every instance.
type Generations interface {
	SessionGeneration(ctx context.Context, id string) (uint64, error)
	BumpSessionGeneration(ctx context.Context, id string) (uint64, error)
}

// Session is a verified session.
type Session struct {
	User       string
	Generation uint64
	Issued     time.Time
	Expires    time.Time
	Nonce      string
}

// LoadOrCreateKey returns the 32-byte session key in path (hex), creating
// it when absent. Instances behind one load balancer share it (same file
// or POSTHUB_SESSION_KEY).
func LoadOrCreateKey(path string) ([]byte, error) {
	return atomicfile.LoadOrCreate(path, 0o600, func() ([]byte, error) {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		return []byte(hex.EncodeToString(k) + "\n"), nil
	}, func(b []byte) ([]byte, error) {
		k, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(k) < 32 {
			return nil, errors.New("rbac: the session key file is not 32+ hex bytes")
		}
		return k, nil
	})
}

func (s *Sessions) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sessions) ttl() time.Duration {
	if s.TTL <= 0 {
		return 8 * time.Hour
	}
	return s.TTL
}

func (s *Sessions) mac(parts ...string) string {
	h := hmac.New(sha256.New, s.Key)
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// Issue returns a new session for user at the given session generation
// and its cookie value.
func (s *Sessions) Issue(user string, generation uint64) (Session, string) {
	n := make([]byte, 16)
	_, _ = rand.Read(n)
	now := s.now()
	ss := Session{User: user, Generation: generation, Issued: now, Expires: now.Add(s.ttl()), Nonce: base64.RawURLEncoding.EncodeToString(n)}
	body := strings.Join([]string{user, strconv.FormatUint(generation, 10), strconv.FormatInt(ss.Issued.Unix(), 10),
		strconv.FormatInt(ss.Expires.Unix(), 10), ss.Nonce}, "|")
	return ss, body + "|" + s.mac("session", body)
}

// Verify checks a cookie value: signature and expiry (not the generation:
// Authenticate does, against the store).
func (s *Sessions) Verify(v string) (Session, bool) {
	i := strings.LastIndexByte(v, '|')
	if i < 0 || len(s.Key) == 0 {
		return Session{}, false
	}
	body, mac := v[:i], v[i+1:]
	if subtle.ConstantTimeCompare([]byte(mac), []byte(s.mac("session", body))) != 1 {
		return Session{}, false
	}
	f := strings.Split(body, "|")
	if len(f) != 5 {
		return Session{}, false
	}
	gen, err0 := strconv.ParseUint(f[1], 10, 64)
	iss, err1 := strconv.ParseInt(f[2], 10, 64)
	exp, err2 := strconv.ParseInt(f[3], 10, 64)
	if err0 != nil || err1 != nil || err2 != nil || !s.now().Before(time.Unix(exp, 0)) {
		return Session{}, false
	}
	return Session{User: f[0], Generation: gen, Issued: time.Unix(iss, 0), Expires: time.Unix(exp, 0), Nonce: f[4]}, true
}

// CSRFToken is the token a form or API client must echo for ss.
func (s *Sessions) CSRFToken(ss Session) string { return s.mac("csrf", ss.User, ss.Nonce) }

// Vouch is a token vouching that the hub itself wrote texts for the
// session ss: a page that carries a notice in its URL (after a form's
// redirect) shows it only with this token, so a link made by someone else
// cannot put words on the hub's page, and one made for another session
// shows nothing.
func (s *Sessions) Vouch(ss Session, texts ...string) string {
	return s.mac(append([]string{"vouch", ss.User, ss.Nonce}, texts...)...)
}

// Vouched reports whether token is Vouch(ss, texts...), in constant time.
func (s *Sessions) Vouched(ss Session, token string, texts ...string) bool {
	return token != "" && ss.Nonce != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.Vouch(ss, texts...))) == 1
}

// CheckCSRF compares a presented token with the session's, in constant time.
func (s *Sessions) CheckCSRF(ss Session, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.CSRFToken(ss))) == 1
}
