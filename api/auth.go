package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/posthub/posthub/hub"
)

// Access is what a route requires of its caller.
type Access string

const (
	// Public routes need no credentials (health, metrics, OpenAPI).
	Public Access = "public"
	// Sender routes need a sender system's token.
	Sender Access = "sender"
	// Recipient routes need a receiver system's token.
	Recipient Access = "recipient"
	// Operator routes need the hub operator's token.
	Operator Access = "operator"
	// Authenticated routes take any active system or the operator; the
	// handler scopes what each sees (the event log).
	Authenticated Access = "authenticated"
)

// Principal is the authenticated caller.
type Principal struct {
	Operator bool
	System   hub.System
}

func (p Principal) String() string {
	if p.Operator {
		return "operator"
	}
	return "system:" + p.System.ID
}

func principal(c *gin.Context) Principal {
	p, _ := c.Get("principal")
	pr, _ := p.(Principal)
	return pr
}

// bearer extracts the API token. Like the national hub, systems send
// "Authorization: Basic <token>"; "Bearer <token>" and standard Basic
// (base64 of "token:" or ":token") are accepted too.
func bearer(h string) (raw, decoded string) {
	scheme, val, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok {
		return "", ""
	}
	val = strings.TrimSpace(val)
	switch strings.ToLower(scheme) {
	case "bearer":
		return val, ""
	case "basic":
		if b, err := base64.StdEncoding.DecodeString(val); err == nil {
			u, p, _ := strings.Cut(string(b), ":")
			if p == "" {
				p = u
			}
			return val, p
		}
		return val, ""
	}
	return "", ""
}

// authenticate resolves the caller of a request: the hub operator or a
// system. Unauthorized when no or unknown credentials are given.
func (s *Server) authenticate(c *gin.Context) (Principal, error) {
	raw, decoded := bearer(c.GetHeader("Authorization"))
	if raw == "" {
		return Principal{}, hub.Errorf(hub.Unauthorized, "missing credentials: send Authorization: Basic <api token>")
	}
	if s.cfg.OperatorTokenHash != "" {
		for _, t := range []string{raw, decoded} {
			if t != "" && subtle.ConstantTimeCompare([]byte(hub.HashToken(t)), []byte(s.cfg.OperatorTokenHash)) == 1 {
				return Principal{Operator: true}, nil
			}
		}
	}
	sys, err := s.registry.Authenticate(c.Request.Context(), raw)
	if hub.ErrorCode(err) == hub.Unauthorized && decoded != "" {
		sys, err = s.registry.Authenticate(c.Request.Context(), decoded)
	}
	if err != nil {
		return Principal{}, err
	}
	if sys.CertFingerprint != "" {
		// A system with a registered client certificate must present it.
		if c.Request.TLS == nil || len(c.Request.TLS.PeerCertificates) == 0 {
			return Principal{}, hub.Errorf(hub.Unauthorized, "this system must authenticate with its client certificate")
		}
		sum := sha256.Sum256(c.Request.TLS.PeerCertificates[0].Raw)
		if !strings.EqualFold(hex.EncodeToString(sum[:]), sys.CertFingerprint) {
			return Principal{}, hub.Errorf(hub.Unauthorized, "the client certificate is not the one registered for this system")
		}
	}
	return Principal{System: sys}, nil
}

// authorize authenticates the caller and checks the route's access level;
// it fails closed on an unknown level.
func (s *Server) authorize(r Route) gin.HandlerFunc {
	return func(c *gin.Context) {
		if r.Access == Public {
			c.Next()
			return
		}
		p, err := s.authenticate(c)
		if err != nil {
			writeError(c, s.log, err)
			return
		}
		c.Set("principal", p)
		ok := false
		switch r.Access {
		case Operator:
			ok = p.Operator
		case Authenticated:
			ok = p.Operator || p.System.ID != ""
		case Sender:
			ok = !p.Operator && p.System.Role == hub.SenderSystem
		case Recipient:
			ok = !p.Operator && p.System.Role == hub.RecipientSystem
		}
		if !ok {
			writeError(c, s.log, hub.Errorf(hub.Forbidden, "this route needs a %s credential", r.Access))
			return
		}
		c.Next()
	}
}
