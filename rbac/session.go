package rbac

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/posthub/posthub/internal/atomicfile"
)

// SessionCookie is the session cookie's name. The __Host- prefix (which
// browsers only accept with Secure, Path=/ and no Domain) is used when the
// hub is served over TLS; see Sessions.CookieName.
const SessionCookie = "posthub_session"

// Sessions issues and checks human sessions: a stateless cookie
// "<user>|<issued>|<expires>|<nonce>|<mac>" signed with HMAC-SHA-256, so
// any instance holding the same key accepts it, and a CSRF token derived
// from the session (HMAC over its nonce) for the double-submit check.
//
// Logging out clears the cookie; an account that is deactivated stops
// working at once because every request re-reads the user (the middleware
// does). Sessions expire after TTL regardless of use.
type Sessions struct {
	Key []byte
	TTL time.Duration
	Now func() time.Time
	// Throttle limits password guessing on every login path that issues
	// these sessions (API and portal).
	Throttle Throttle
}

// Session is a verified session.
type Session struct {
	User    string
	Issued  time.Time
	Expires time.Time
	Nonce   string
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

// Issue returns a new session for user and its cookie value.
func (s *Sessions) Issue(user string) (Session, string) {
	n := make([]byte, 16)
	_, _ = rand.Read(n)
	now := s.now()
	ss := Session{User: user, Issued: now, Expires: now.Add(s.ttl()), Nonce: base64.RawURLEncoding.EncodeToString(n)}
	body := strings.Join([]string{user, strconv.FormatInt(ss.Issued.Unix(), 10), strconv.FormatInt(ss.Expires.Unix(), 10), ss.Nonce}, "|")
	return ss, body + "|" + s.mac("session", body)
}

// Verify checks a cookie value: signature and expiry.
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
	if len(f) != 4 {
		return Session{}, false
	}
	iss, err1 := strconv.ParseInt(f[1], 10, 64)
	exp, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || !s.now().Before(time.Unix(exp, 0)) {
		return Session{}, false
	}
	return Session{User: f[0], Issued: time.Unix(iss, 0), Expires: time.Unix(exp, 0), Nonce: f[3]}, true
}

// CSRFToken is the token a form or API client must echo for ss.
func (s *Sessions) CSRFToken(ss Session) string { return s.mac("csrf", ss.User, ss.Nonce) }

// CheckCSRF compares a presented token with the session's, in constant time.
func (s *Sessions) CheckCSRF(ss Session, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.CSRFToken(ss))) == 1
}
