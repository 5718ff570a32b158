package oidc

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc/oidctest"

	"github.com/posthub/posthub/hub"
)

// testOP is discovery and published keys (go-oidc's oidctest server) for
// ID tokens the test signs itself: the refusals a real provider never
// produces. The end-to-end flow against a real provider is in cmd/posthub.
type testOP struct {
	issuer string
	key    *rsa.PrivateKey
	rp     *RP
	now    time.Time
}

const testKeyID = "test-key"

func newTestOP(t *testing.T, cfg ProviderConfig) *testOP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv := &oidctest.Server{PublicKeys: []oidctest.PublicKey{{PublicKey: key.Public(), KeyID: testKeyID, Algorithm: "RS256"}}}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	srv.SetIssuer(hs.URL)
	op := &testOP{issuer: hs.URL, key: key, now: time.Unix(1_800_000_000, 0)}
	cfg.Name, cfg.Issuer = "test", hs.URL
	if cfg.ClientID == "" {
		cfg.ClientID = "posthub"
	}
	cfgs, err := ParseProviders(mustJSON(t, []ProviderConfig{cfg}), nil)
	if err != nil {
		t.Fatal(err)
	}
	op.rp, err = New(cfgs, Options{Key: bytes.Repeat([]byte{7}, 32), Now: func() time.Time { return op.now }})
	if err != nil {
		t.Fatal(err)
	}
	return op
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// claims are a valid ID token's for the flow nonce "n-1".
func (op *testOP) claims() map[string]any {
	return map[string]any{"iss": op.issuer, "aud": "posthub", "sub": "subject-1", "nonce": "n-1",
		"iat": op.now.Unix(), "exp": op.now.Add(5 * time.Minute).Unix(), "preferred_username": "Anne@Kommune.Example"}
}

func (op *testOP) sign(t *testing.T, key *rsa.PrivateKey, claims map[string]any) string {
	return oidctest.SignIDToken(key, testKeyID, "RS256", mustJSON(t, claims))
}

func TestVerifyIDTokenRefusals(t *testing.T) {
	op := newTestOP(t, ProviderConfig{})
	ctx := context.Background()
	p, err := op.rp.ready("test", Portal)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		change func(map[string]any)
		key    *rsa.PrivateKey
		want   string
	}{
		{"a valid token is accepted", func(map[string]any) {}, nil, ""},
		{"a token of another issuer is refused", func(m map[string]any) { m["iss"] = "https://evil.example" }, nil, "oidc.token.issuer"},
		{"a token for another client is refused", func(m map[string]any) { m["aud"] = "someone-else" }, nil, "oidc.token.audience"},
		{"a token for several audiences authorised to another client is refused", func(m map[string]any) {
			m["aud"], m["azp"] = []string{"posthub", "someone-else"}, "someone-else"
		}, nil, "oidc.token.audience"},
		{"a token for several audiences without an authorised party is refused", func(m map[string]any) {
			m["aud"] = []string{"posthub", "someone-else"}
		}, nil, "oidc.token.audience"},
		{"a token for several audiences authorised to posthub is accepted", func(m map[string]any) {
			m["aud"], m["azp"] = []string{"posthub", "someone-else"}, "posthub"
		}, nil, ""},
		{"an expired token is refused", func(m map[string]any) { m["exp"] = op.now.Add(-time.Minute).Unix() }, nil, "oidc.token.expired"},
		{"a token not valid before an hour from now is refused", func(m map[string]any) { m["nbf"] = op.now.Add(time.Hour).Unix() }, nil, "oidc.token.not.yet.valid"},
		{"a token issued an hour from now is refused", func(m map[string]any) { m["iat"] = op.now.Add(time.Hour).Unix() }, nil, "oidc.token.not.yet.valid"},
		{"a token signed by a key the provider does not publish is refused", func(map[string]any) {}, other, "oidc.token.signature"},
		{"a token without a nonce is refused", func(m map[string]any) { delete(m, "nonce") }, nil, "oidc.nonce.missing"},
		{"a token of another login's nonce is refused", func(m map[string]any) { m["nonce"] = "n-2" }, nil, "oidc.nonce.mismatch"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := op.claims()
			c.change(m)
			key := c.key
			if key == nil {
				key = op.key
			}
			idt, claims, err := op.rp.verify(ctx, p, op.sign(t, key, m), "n-1")
			if got := Reason(err); got != c.want {
				t.Fatalf("reason %q (%v), want %q", got, err, c.want)
			}
			if c.want == "" {
				if idt.Subject != "subject-1" || claims["preferred_username"] != "Anne@Kommune.Example" {
					t.Fatalf("verified token: %+v %v", idt, claims)
				}
				return
			}
			if hub.ErrorCode(err) != hub.Unauthorized {
				t.Fatalf("code %q, want unauthorized", hub.ErrorCode(err))
			}
		})
	}
	t.Run("a tampered token is refused", func(t *testing.T) {
		raw := []byte(op.sign(t, op.key, op.claims()))
		raw[len(raw)-5] ^= 1
		if _, _, err := op.rp.verify(ctx, p, string(raw), "n-1"); Reason(err) != "oidc.token.signature" && Reason(err) != "oidc.token.malformed" {
			t.Fatalf("reason %q (%v)", Reason(err), err)
		}
	})
}

// TestFinishRefusals: the callback's checks before any token is asked for.
func TestFinishRefusals(t *testing.T) {
	op := newTestOP(t, ProviderConfig{Use: []Purpose{Portal}})
	ctx := context.Background()
	_, cookie, err := op.rp.Start("test", Portal, "http://127.0.0.1/admin/oidc/callback", "/admin/")
	if err != nil {
		t.Fatal(err)
	}
	f, ok := op.rp.open(cookie, Portal)
	if !ok || f.State == "" || f.Nonce == "" || f.Verifier == "" || f.Next != "/admin/" {
		t.Fatalf("flow %+v", f)
	}
	q := url.Values{"state": {f.State}, "code": {"some-code"}}
	for _, c := range []struct {
		name    string
		purpose Purpose
		cookie  string
		q       url.Values
		want    string
	}{
		{"no flow cookie", Portal, "", q, "oidc.state.missing"},
		{"a flow cookie changed by the browser", Portal, cookie[:len(cookie)-2] + "AA", q, "oidc.state.missing"},
		{"a portal flow at the mailbox's callback", Mailbox, cookie, q, "oidc.state.missing"},
		{"another state", Portal, cookie, url.Values{"state": {"forged"}, "code": {"c"}}, "oidc.state.mismatch"},
		{"no state", Portal, cookie, url.Values{"code": {"c"}}, "oidc.state.mismatch"},
		{"the provider's refusal", Portal, cookie, url.Values{"state": {f.State}, "error": {"access_denied"}}, "oidc.provider.refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := op.rp.Finish(ctx, c.purpose, c.cookie, c.q, "http://127.0.0.1/admin/oidc/callback")
			if Reason(err) != c.want || hub.ErrorCode(err) != hub.Unauthorized {
				t.Fatalf("reason %q code %q (%v), want %q", Reason(err), hub.ErrorCode(err), err, c.want)
			}
		})
	}
	t.Run("a state is redeemed once", func(t *testing.T) {
		// The test provider has no token endpoint: the first answer gets
		// as far as the exchange and fails there; the second is refused
		// before it.
		_, _, err := op.rp.Finish(ctx, Portal, cookie, q, "http://127.0.0.1/admin/oidc/callback")
		if r := Reason(err); r == "oidc.state.replayed" || r == "oidc.state.mismatch" {
			t.Fatalf("first answer: %v", err)
		}
		_, _, err = op.rp.Finish(ctx, Portal, cookie, q, "http://127.0.0.1/admin/oidc/callback")
		if Reason(err) != "oidc.state.replayed" {
			t.Fatalf("replayed answer: %v", err)
		}
	})
	t.Run("an expired flow", func(t *testing.T) {
		_, cookie, err := op.rp.Start("test", Portal, "http://127.0.0.1/admin/oidc/callback", "/admin/")
		if err != nil {
			t.Fatal(err)
		}
		f, _ := op.rp.open(cookie, Portal)
		op.now = op.now.Add(11 * time.Minute)
		defer func() { op.now = op.now.Add(-11 * time.Minute) }()
		_, _, err = op.rp.Finish(ctx, Portal, cookie, url.Values{"state": {f.State}, "code": {"c"}}, "http://127.0.0.1/admin/oidc/callback")
		if Reason(err) != "oidc.state.expired" {
			t.Fatalf("reason %q (%v)", Reason(err), err)
		}
	})
}

func TestStartAsksForPKCEAndNonce(t *testing.T) {
	op := newTestOP(t, ProviderConfig{})
	u, cookie, err := op.rp.Start("test", Portal, "https://posthub.example/admin/oidc/callback", "/admin/")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := op.rp.open(cookie, Portal)
	au, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := au.Query()
	for k, want := range map[string]string{"response_type": "code", "client_id": "posthub", "state": f.State, "nonce": f.Nonce,
		"code_challenge_method": "S256", "redirect_uri": "https://posthub.example/admin/oidc/callback"} {
		if q.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, q.Get(k), want)
		}
	}
	if q.Get("code_challenge") == "" || q.Get("code_challenge") == f.Verifier {
		t.Errorf("code_challenge %q (verifier %q)", q.Get("code_challenge"), f.Verifier)
	}
	if _, _, err := op.rp.Start("nosuch", Portal, "https://posthub.example/cb", ""); hub.ErrorCode(err) != hub.NotFound {
		t.Errorf("unknown provider: %v", err)
	}
	if _, _, err := op.rp.Start("test", Mailbox, "https://posthub.example/cb", ""); hub.ErrorCode(err) != hub.NotFound {
		t.Errorf("a portal provider at the mailbox: %v", err)
	}
}

func TestReplayMemoryIsBounded(t *testing.T) {
	op := newTestOP(t, ProviderConfig{})
	op.rp.opts.MaxFlows = 10
	for i := range 100 {
		if !op.rp.consume(string(rune('a'+i%26))+string(rune('A'+i/26)), op.now.Add(time.Minute)) {
			t.Fatalf("state %d refused", i)
		}
	}
	if n := len(op.rp.used); n > 10 {
		t.Fatalf("%d states remembered, bound 10", n)
	}
}

// TestFinishWithSecret completes a login against a token endpoint of the
// test's own, for the client authentications the real provider of the
// end-to-end tests (a public client) does not exercise: the endpoint
// checks the client's credentials where tokenAuth puts them and the PKCE
// verifier against the challenge the login started with, and answers with
// an ID token carrying the flow's nonce and the access token's hash.
func TestFinishWithSecret(t *testing.T) {
	for _, auth := range []string{"client_secret_basic", "client_secret_post"} {
		t.Run(auth, func(t *testing.T) {
			key, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				t.Fatal(err)
			}
			srv := &oidctest.Server{PublicKeys: []oidctest.PublicKey{{PublicKey: key.Public(), KeyID: testKeyID, Algorithm: "RS256"}}}
			var challenge, nonce string
			now := time.Now()
			mux := http.NewServeMux()
			mux.Handle("/", srv)
			var issuer string
			mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
				_ = r.ParseForm()
				id, secret, basic := r.BasicAuth()
				if !basic {
					id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
				}
				sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
				switch {
				case basic != (auth == "client_secret_basic") || id != "posthub" || secret != "s3cret":
					http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
					return
				case r.PostForm.Get("code") != "code-1" || base64.RawURLEncoding.EncodeToString(sum[:]) != challenge:
					http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
					return
				}
				at := sha256.Sum256([]byte("access-1"))
				idt := oidctest.SignIDToken(key, testKeyID, "RS256", mustJSON(t, map[string]any{"iss": issuer, "aud": "posthub", "azp": "posthub",
					"sub": "s-1", "nonce": nonce, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "preferred_username": "Anne",
					"at_hash": base64.RawURLEncoding.EncodeToString(at[:16])}))
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "access-1", "token_type": "Bearer", "id_token": idt})
			})
			hs := httptest.NewServer(mux)
			defer hs.Close()
			issuer = hs.URL
			srv.SetIssuer(hs.URL)
			cfgs, err := ParseProviders(mustJSON(t, []ProviderConfig{{Name: "idp", Issuer: hs.URL, ClientID: "posthub", ClientSecret: "s3cret",
				TokenAuth: auth, UserClaim: "preferred_username"}}), nil)
			if err != nil {
				t.Fatal(err)
			}
			rp, err := New(cfgs, Options{Key: bytes.Repeat([]byte{1}, 32)})
			if err != nil {
				t.Fatal(err)
			}
			authURL, cookie, err := rp.Start("idp", Portal, "https://posthub.example/admin/oidc/callback", "/admin/x")
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(authURL)
			challenge, nonce = u.Query().Get("code_challenge"), u.Query().Get("nonce")
			id, next, err := rp.Finish(context.Background(), Portal, cookie, url.Values{"state": {u.Query().Get("state")}, "code": {"code-1"}},
				"https://posthub.example/admin/oidc/callback")
			if err != nil {
				t.Fatal(err)
			}
			if id.Provider != "idp" || id.Subject != "s-1" || id.UserID != "anne" || next != "/admin/x" {
				t.Fatalf("identity %+v next %q", id, next)
			}
		})
	}
}
