package oidc

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/posthub/posthub/hub"
)

// Options tune an RP.
type Options struct {
	// Key is the secret the flow cookies are sealed with (a key of its own
	// is derived from it); serve passes the session key, so every instance
	// behind one load balancer opens the others' cookies.
	Key []byte
	// HTTPClient talks to the providers (default: 10 s timeout). The RP
	// uses a copy that bounds what it reads of an answer (echo.go).
	HTTPClient *http.Client
	// FlowTTL is how long a started login may take at the provider
	// (default 10 min).
	FlowTTL time.Duration
	// MaxFlows bounds the per-instance memory of used states (default
	// 100,000; expired ones are dropped first).
	MaxFlows int
	// Users and Privileges are what a portal login maps an identity onto.
	Users      Accounts
	Privileges Privileges
	// Events receives every login and refusal (never a token).
	Events hub.EventSink
	Now    func() time.Time
	Log    *slog.Logger
}

// RP is posthub as an OpenID Connect relying party of several providers.
type RP struct {
	opts      Options
	providers map[string]*provider
	order     []string
	aead      cipher.AEAD

	mu   sync.Mutex
	used map[string]time.Time // state → when it stops mattering
}

// provider is one configured provider, discovered on first use.
type provider struct {
	cfg ProviderConfig

	mu         sync.Mutex
	op         *gooidc.Provider
	verifier   *gooidc.IDTokenVerifier
	endSession string
	failedAt   time.Time
}

// discoveryRetry is how soon a failed discovery is tried again: a provider
// that is down costs one outbound request per interval, not one per login.
const discoveryRetry = 5 * time.Second

// New builds an RP over the configured providers. Nothing is fetched yet:
// each provider's discovery document and keys are read on its first login,
// so the hub starts while a provider is down.
func New(cfgs []ProviderConfig, opts Options) (*RP, error) {
	if len(opts.Key) < 32 {
		return nil, errors.New("oidc: the flow key must be at least 32 bytes")
	}
	opts.HTTPClient = boundedClient(opts.HTTPClient)
	if opts.FlowTTL <= 0 {
		opts.FlowTTL = 10 * time.Minute
	}
	if opts.MaxFlows <= 0 {
		opts.MaxFlows = 100_000
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	mac := hmac.New(sha256.New, opts.Key)
	mac.Write([]byte("posthub oidc flow cookies"))
	block, err := aes.NewCipher(mac.Sum(nil))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	rp := &RP{opts: opts, providers: map[string]*provider{}, aead: aead, used: map[string]time.Time{}}
	for _, c := range cfgs {
		rp.providers[c.Name] = &provider{cfg: c}
		rp.order = append(rp.order, c.Name)
	}
	return rp, nil
}

func (rp *RP) now() time.Time {
	if rp.opts.Now != nil {
		return rp.opts.Now()
	}
	return time.Now()
}

// Info is what a login page shows of a provider.
type Info struct {
	Name  string `json:"name"`
	Label string `json:"label"`
}

// Providers lists, in configuration order, the providers whose logins
// land at purpose. A nil RP has none.
func (rp *RP) Providers(purpose Purpose) []Info {
	if rp == nil {
		return nil
	}
	var out []Info
	for _, n := range rp.order {
		if c := rp.providers[n].cfg; c.Uses(purpose) {
			out = append(out, Info{Name: c.Name, Label: c.Label})
		}
	}
	return out
}

// ctx gives go-oidc and oauth2 the RP's HTTP client.
func (rp *RP) ctx(ctx context.Context) context.Context {
	return gooidc.ClientContext(ctx, rp.opts.HTTPClient)
}

// ready returns the provider, discovered. NotFound for a name not
// configured for purpose; Unavailable when discovery fails.
func (rp *RP) ready(name string, purpose Purpose) (*provider, error) {
	p := rp.providers[name]
	if p == nil || !p.cfg.Uses(purpose) {
		return nil, hub.Errorf(hub.NotFound, "no OpenID provider %q for the %s", name, purpose)
	}
	return p, rp.discover(p)
}

// discover reads the provider's discovery document once it succeeds.
func (rp *RP) discover(p *provider) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.op != nil {
		return nil
	}
	if !p.failedAt.IsZero() && rp.now().Sub(p.failedAt) < discoveryRetry {
		return hub.Errorf(hub.Unavailable, "the identity provider %s cannot be reached; try again shortly", p.cfg.Label)
	}
	// Not the request's context: the provider keeps it for fetching keys
	// long after this request has ended.
	op, err := gooidc.NewProvider(rp.ctx(context.Background()), p.cfg.Issuer)
	if err != nil {
		err = p.fromProvider(err)
		p.failedAt = rp.now()
		rp.opts.Log.Warn("oidc: discovery", "provider", p.cfg.Name, "issuer", p.cfg.Issuer, "error", err)
		return &hub.Error{Code: hub.Unavailable, Message: fmt.Sprintf("the identity provider %s cannot be reached; try again shortly", p.cfg.Label), Err: err}
	}
	var extra struct {
		EndSession string `json:"end_session_endpoint"`
	}
	_ = op.Claims(&extra)
	p.op, p.endSession = op, extra.EndSession
	p.verifier = op.Verifier(&gooidc.Config{ClientID: p.cfg.ClientID, Now: rp.opts.Now})
	return nil
}

func (p *provider) oauth(redirectURL string) *oauth2.Config {
	ep := p.op.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	if p.cfg.TokenAuth != "client_secret_basic" {
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret, Endpoint: ep, RedirectURL: redirectURL, Scopes: p.cfg.Scopes}
}

// flow is what the browser carries between Start and Finish, sealed
// (AES-GCM) in a cookie: readable and changeable by no one, not even the
// browser holding it.
type flow struct {
	Provider string `json:"p"`
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"r,omitempty"`
	Expires  int64  `json:"e"`
}

func random() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (rp *RP) seal(f flow, purpose Purpose) string {
	b, _ := json.Marshal(f)
	nonce := make([]byte, rp.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(rp.aead.Seal(nonce, nonce, b, []byte(purpose)))
}

func (rp *RP) open(v string, purpose Purpose) (flow, bool) {
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(b) < rp.aead.NonceSize() {
		return flow{}, false
	}
	plain, err := rp.aead.Open(nil, b[:rp.aead.NonceSize()], b[rp.aead.NonceSize():], []byte(purpose))
	if err != nil {
		return flow{}, false
	}
	var f flow
	return f, json.Unmarshal(plain, &f) == nil
}

// Start begins a login at the named provider: the URL to send the browser
// to (authorization code flow with PKCE S256, a fresh state and nonce) and
// the sealed flow to keep in a cookie until the callback. next is where
// the login ends (kept in the flow, never taken from the callback).
func (rp *RP) Start(name string, purpose Purpose, redirectURL, next string) (authURL, cookie string, err error) {
	p, err := rp.ready(name, purpose)
	if err != nil {
		return "", "", err
	}
	f := flow{Provider: name, State: random(), Nonce: random(), Verifier: oauth2.GenerateVerifier(), Next: next,
		Expires: rp.now().Add(rp.opts.FlowTTL).Unix()}
	authURL = p.oauth(redirectURL).AuthCodeURL(f.State, gooidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier))
	return authURL, rp.seal(f, purpose), nil
}

// FlowTTL is how long a started login's cookie lives.
func (rp *RP) FlowTTL() time.Duration { return rp.opts.FlowTTL }

// refusal is the error of a refused login: Unauthorized (Forbidden for an
// identity posthub knows but will not let in) with the reason as the field
// code, which the event log records.
func refusal(code hub.Code, reason, msg string, cause error) error {
	return &hub.Error{Code: code, Message: msg, Err: cause,
		Fields: []hub.FieldError{{Resource: "login", Field: "oidc", Code: reason, Message: msg}}}
}

// Refused is a login refusal with a reason code, for the login paths
// outside this package (passwords) that record their refusals with
// LoginEvent.
func Refused(code hub.Code, reason, msg string) error { return refusal(code, reason, msg, nil) }

// Reason is a refusal's reason code ("" for nil, "internal" when err is not
// a refusal).
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var he *hub.Error
	if errors.As(err, &he) && len(he.Fields) > 0 {
		return he.Fields[0].Code
	}
	return string(hub.ErrorCode(err))
}

// consume marks state used; false when it was used before. Per instance
// and bounded: the authorization code behind a state is single-use at the
// provider (RFC 6749 §4.1.2), so a callback replayed at another instance
// fails at the token exchange instead.
func (rp *RP) consume(state string, until time.Time) bool {
	now := rp.now()
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if _, ok := rp.used[state]; ok {
		return false
	}
	if len(rp.used) >= rp.opts.MaxFlows {
		for s, t := range rp.used {
			if now.After(t) {
				delete(rp.used, s)
			}
		}
		if len(rp.used) >= rp.opts.MaxFlows {
			// Every remembered state is still live: forget them all rather
			// than grow. The provider's single-use codes still stand.
			rp.used = map[string]time.Time{}
		}
	}
	rp.used[state] = until
	return true
}

// Finish completes a login at the callback: the flow cookie must open, be
// unexpired and hold the callback's state, which is used once; the code is
// exchanged with the PKCE verifier; the ID token is verified (signature by
// the provider's published keys, issuer, audience, expiry, not-before,
// issued-at, the flow's nonce, the access-token hash when present); then
// the claims make the Identity, whose subject and organisation must be
// what they claim to be (checkClaims). Identity.Provider is set whenever
// the flow opened, Subject once the ID token verified, and the other
// claims once they were read, so refusals can be logged with them
// (LoginEvent shows them clean and bounded).
func (rp *RP) Finish(ctx context.Context, purpose Purpose, cookie string, q url.Values, redirectURL string) (Identity, string, error) {
	f, ok := rp.open(cookie, purpose)
	if !ok {
		return Identity{}, "", refusal(hub.Unauthorized, "oidc.state.missing", "The login was not started here, or its cookie is gone; start it again.", nil)
	}
	id := Identity{Provider: f.Provider}
	if rp.now().Unix() > f.Expires {
		return id, f.Next, refusal(hub.Unauthorized, "oidc.state.expired", "The login took too long; start it again.", nil)
	}
	if e := q.Get("error"); e != "" {
		return id, f.Next, refusal(hub.Unauthorized, "oidc.provider.refused", "The identity provider did not log you in ("+errorCode(e)+").", nil)
	}
	if s := q.Get("state"); s == "" || subtle.ConstantTimeCompare([]byte(s), []byte(f.State)) != 1 {
		return id, f.Next, refusal(hub.Unauthorized, "oidc.state.mismatch", "The answer from the identity provider does not belong to the login started in this browser; start it again.", nil)
	}
	if !rp.consume(f.State, time.Unix(f.Expires, 0)) {
		return id, f.Next, refusal(hub.Unauthorized, "oidc.state.replayed", "This login answer has been used already; start a new login.", nil)
	}
	p, err := rp.ready(f.Provider, purpose)
	if err != nil {
		return id, f.Next, err
	}
	ctx = rp.ctx(ctx)
	tok, err := p.oauth(redirectURL).Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		isRefusal := errors.As(err, &re)
		err = p.fromProvider(err, q.Get("code"), f.Verifier)
		if isRefusal {
			return id, f.Next, refusal(hub.Unauthorized, "oidc.code.refused", "The identity provider refused to redeem the login; start it again.", err)
		}
		return id, f.Next, &hub.Error{Code: hub.Unavailable, Message: "the identity provider cannot be reached; try again shortly", Err: err}
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return id, f.Next, refusal(hub.Unauthorized, "oidc.idtoken.missing", "The identity provider sent no ID token.", nil)
	}
	secrets := []string{q.Get("code"), f.Verifier, tok.AccessToken, tok.RefreshToken, raw}
	idt, claims, err := rp.verify(ctx, p, raw, f.Nonce, secrets...)
	if err != nil {
		return id, f.Next, err
	}
	id.Subject = idt.Subject
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return id, f.Next, refusal(hub.Unauthorized, "oidc.token.at_hash", "The ID token does not belong to the access token.", p.fromProvider(err, secrets...))
		}
	}
	if p.cfg.UserInfo {
		ui, err := p.op.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			return id, f.Next, &hub.Error{Code: hub.Unavailable, Message: "the identity provider's userinfo cannot be read; try again shortly", Err: p.fromProvider(err, secrets...)}
		}
		// OpenID Connect Core §5.3.2: a userinfo answer about anyone else
		// must not be used.
		if ui.Subject != idt.Subject {
			return id, f.Next, refusal(hub.Unauthorized, "oidc.userinfo.subject", "The identity provider's userinfo is about someone else.", nil)
		}
		var more map[string]any
		if err := ui.Claims(&more); err == nil {
			for k, v := range more {
				if _, ok := claims[k]; !ok {
					claims[k] = v
				}
			}
		}
	}
	id = p.cfg.identity(id, claims)
	return id, f.Next, p.cfg.checkClaims(id)
}

// skew is the clock difference tolerated on iat (go-oidc allows the same
// on nbf).
const skew = 5 * time.Minute

// verify checks an ID token with go-oidc (signature by the provider's
// keys, issuer, audience, expiry, not-before), then what go-oidc leaves to
// the caller: issued-at not in the future, the flow's nonce, and the
// authorized party of a token for several audiences.
func (rp *RP) verify(ctx context.Context, p *provider, raw, nonce string, secrets ...string) (*gooidc.IDToken, map[string]any, error) {
	idt, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		// The keys' endpoint answers through here, and go-oidc's messages
		// may quote the token.
		return nil, nil, refusal(hub.Unauthorized, verifyReason(err), "The identity provider's ID token is not valid here; start the login again.",
			p.fromProvider(err, append(secrets, raw)...))
	}
	if idt.IssuedAt.After(rp.now().Add(skew)) {
		return nil, nil, refusal(hub.Unauthorized, "oidc.token.not.yet.valid", "The identity provider's ID token is not valid yet.", nil)
	}
	switch {
	case idt.Nonce == "":
		return nil, nil, refusal(hub.Unauthorized, "oidc.nonce.missing", "The identity provider's ID token carries no nonce.", nil)
	case subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1:
		return nil, nil, refusal(hub.Unauthorized, "oidc.nonce.mismatch", "The ID token belongs to another login.", nil)
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, nil, refusal(hub.Unauthorized, "oidc.token.claims", "The ID token's claims cannot be read.", p.fromProvider(err, append(secrets, raw)...))
	}
	// OpenID Connect Core §3.1.3.7: a token for several audiences must
	// name this client as its authorized party (go-oidc checks only that
	// the client is among the audiences).
	if azp, _ := claims["azp"].(string); (len(idt.Audience) > 1 || azp != "") && azp != p.cfg.ClientID {
		return nil, nil, refusal(hub.Unauthorized, "oidc.token.audience", "The ID token was issued to another client.", nil)
	}
	return idt, claims, nil
}

// verifyReason names what go-oidc refused. go-oidc types only the expiry;
// the rest is told by its messages (a change there shows as
// oidc.token.invalid, and the tests say so).
func verifyReason(err error) string {
	var exp *gooidc.TokenExpiredError
	if errors.As(err, &exp) {
		return "oidc.token.expired"
	}
	for _, c := range []struct{ substr, reason string }{
		{"issued by a different provider", "oidc.token.issuer"},
		{"expected audience", "oidc.token.audience"},
		{"before the nbf", "oidc.token.not.yet.valid"},
		{"verify signature", "oidc.token.signature"},
		{"malformed jwt", "oidc.token.malformed"},
		{"not signed", "oidc.token.malformed"},
	} {
		if containsFold(err.Error(), c.substr) {
			return c.reason
		}
	}
	return "oidc.token.invalid"
}

// LogoutURL is the provider's RP-initiated logout URL for a session that
// came from it (OpenID Connect RP-Initiated Logout 1.0, with client_id; no
// id_token_hint, since posthub keeps no token), or "" when the provider
// publishes no end_session_endpoint or is not configured.
func (rp *RP) LogoutURL(name string) string {
	if rp == nil {
		return ""
	}
	p := rp.providers[name]
	if p == nil || rp.discover(p) != nil {
		return ""
	}
	p.mu.Lock()
	end := p.endSession
	p.mu.Unlock()
	if end == "" {
		return ""
	}
	u, err := url.Parse(end)
	if err != nil {
		return ""
	}
	v := u.Query()
	v.Set("client_id", p.cfg.ClientID)
	if p.cfg.PostLogoutRedirectURL != "" {
		v.Set("post_logout_redirect_uri", p.cfg.PostLogoutRedirectURL)
	}
	u.RawQuery = v.Encode()
	return u.String()
}
