package viewer

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/posthub/posthub/hub"
)

// User assertions.
//
// A viewing client authenticates as a system (its API token); the person
// it acts for is named in a user assertion: a JWT (JWS compact
// serialisation) in the request header X-User-Assertion, signed with a key
// the hub operator registered for that system (hub.AssertionKey).
//
//	header  {"alg":"EdDSA"|"ES256","typ":"JWT","kid":"<registered key id>"}
//	claims  iss  the viewing system's ID (must be the system that authenticated)
//	        aud  the hub's audience (Config.Audience, default "posthub")
//	        sub  a citizen's CPR number, or a company user's user ID
//	        cvr  for a company user: the organisation the user acts in
//	        iat  issued at; exp  expiry (both required, exp-iat ≤ MaxAssertionLifetime)
//	        nbf  optional not-before
//	        jti  optional, logged
//
// Nothing else is accepted: no "none", no HMAC (a shared secret would let
// the hub forge assertions), no algorithm the key was not registered for,
// no key from the token itself (jwk/jku/x5u are ignored), 30 s of clock
// leeway.

// MaxAssertionLifetime bounds exp-iat: assertions are short-lived.
const MaxAssertionLifetime = 15 * time.Minute

const assertionLeeway = 30 * time.Second

// Person is who a viewing client acts for, from a verified assertion.
type Person struct {
	SystemID string `json:"systemId"`
	// CPR is set for a citizen.
	CPR string `json:"cpr,omitempty"`
	// UserID and CVR are set for a company user.
	UserID string `json:"userId,omitempty"`
	CVR    string `json:"cvr,omitempty"`
	// JTI is the assertion's id, for the log.
	JTI string `json:"jti,omitempty"`
}

// Actor names the person for the event log without their CPR in clear:
// citizens appear as a hash of the CPR.
func (p Person) Actor() string {
	if p.CPR != "" {
		sum := sha256.Sum256([]byte("posthub-cpr:" + p.CPR))
		return "citizen:" + base64.RawURLEncoding.EncodeToString(sum[:9]) + "@" + p.SystemID
	}
	return "user:" + p.UserID + "@" + p.CVR + "@" + p.SystemID
}

type assertionClaims struct {
	CVR string `json:"cvr,omitempty"`
	jwt.RegisteredClaims
}

// VerifyAssertion checks a user assertion presented by system sys and
// returns the person. Unauthorized for anything wrong with it (bad
// signature, unknown key, expired, wrong audience or issuer, too long-lived).
func (s *Service) VerifyAssertion(ctx context.Context, sys hub.System, token string) (Person, error) {
	if sys.Role != hub.ViewerSystem {
		return Person{}, hub.Errorf(hub.Forbidden, "only viewing-client systems act for users")
	}
	if token == "" {
		return Person{}, hub.Errorf(hub.Unauthorized, "missing user assertion: send X-User-Assertion: <JWT>")
	}
	keys, err := s.Mailboxes.AssertionKeys(ctx, sys.ID)
	if err != nil {
		return Person{}, err
	}
	var claims assertionClaims
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"EdDSA", "ES256"}),
		jwt.WithAudience(s.audience()),
		jwt.WithIssuer(sys.ID),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(assertionLeeway),
		jwt.WithTimeFunc(s.now),
	)
	_, err = parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		for _, k := range keys {
			if k.KeyID != kid {
				continue
			}
			if k.Alg != t.Method.Alg() {
				return nil, errors.New("algorithm does not match the registered key")
			}
			return x509.ParsePKIXPublicKey(k.PublicKey)
		}
		return nil, errors.New("unknown key id")
	})
	if err != nil {
		return Person{}, hub.Wrap(hub.Unauthorized, err, "user assertion refused: %v", err)
	}
	if claims.IssuedAt == nil || claims.ExpiresAt.Sub(claims.IssuedAt.Time) > MaxAssertionLifetime {
		return Person{}, hub.Errorf(hub.Unauthorized, "user assertion refused: lifetime over %s", MaxAssertionLifetime)
	}
	p := Person{SystemID: sys.ID, JTI: claims.ID}
	switch {
	case claims.CVR != "":
		if !digits(claims.CVR, 8) || claims.Subject == "" {
			return Person{}, hub.Errorf(hub.Unauthorized, "user assertion refused: a company user needs sub and an 8-digit cvr")
		}
		p.UserID, p.CVR = claims.Subject, claims.CVR
	case digits(claims.Subject, 10):
		p.CPR = claims.Subject
	default:
		return Person{}, hub.Errorf(hub.Unauthorized, "user assertion refused: sub must be a CPR number (or a user id with cvr)")
	}
	return p, nil
}

func digits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ParseAssertionKey reads a public key (PEM "PUBLIC KEY" or base64 PKIX
// DER) and returns its DER and the JWS algorithm it is for. Invalid for
// anything but Ed25519 and P-256 keys.
func ParseAssertionKey(s string) ([]byte, string, error) {
	der := []byte(nil)
	if b, _ := pem.Decode([]byte(s)); b != nil {
		der = b.Bytes
	} else if d, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s)); err == nil {
		der = d
	}
	bad := func(msg string) ([]byte, string, error) {
		return nil, "", &hub.Error{Code: hub.Invalid, Message: msg, Fields: []hub.FieldError{{Resource: "assertionKey",
			Field: "publicKey", Code: "assertion.key.invalid", Message: msg}}}
	}
	if der == nil {
		return bad("publicKey must be a PEM or base64 PKIX public key")
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return bad("publicKey is not a PKIX public key")
	}
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return der, "EdDSA", nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return der, "ES256", nil
		}
	}
	return bad("publicKey must be Ed25519 (EdDSA) or P-256 (ES256)")
}

// SignAssertion makes a user assertion; the reference web mailbox and the
// tests sign with it, a real viewing client with its own JWT library.
func SignAssertion(key any, kid, systemID, audience string, p Person, now time.Time, ttl time.Duration) (string, error) {
	var m jwt.SigningMethod
	switch key.(type) {
	case ed25519.PrivateKey:
		m = jwt.SigningMethodEdDSA
	case *ecdsa.PrivateKey:
		m = jwt.SigningMethodES256
	default:
		return "", errors.New("viewer: unsupported signing key")
	}
	sub := p.CPR
	if p.CVR != "" {
		sub = p.UserID
	}
	c := assertionClaims{CVR: p.CVR, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: systemID, Subject: sub, Audience: jwt.ClaimStrings{audience},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)), ID: uuid.NewString(),
	}}
	t := jwt.NewWithClaims(m, c)
	t.Header["kid"] = kid
	return t.SignedString(key)
}
