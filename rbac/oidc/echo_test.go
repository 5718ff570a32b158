package oidc

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc/oidctest"

	"github.com/posthub/posthub/hub"
)

// readCounter counts, per path, the bytes the RP reads of the provider's
// answers.
type readCounter struct {
	next http.RoundTripper
	mu   sync.Mutex
	read map[string]int64
}

func (c *readCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err == nil {
		resp.Body = &countedBody{ReadCloser: resp.Body, c: c, path: r.URL.Path}
	}
	return resp, err
}

func (c *readCounter) of(path string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.read[path]
}

type countedBody struct {
	io.ReadCloser
	c    *readCounter
	path string
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.mu.Lock()
	b.c.read[b.path] += int64(n)
	b.c.mu.Unlock()
	return n, err
}

// hostileSize is far beyond every bound, oauth2's 1 MiB included.
const hostileSize = 3 << 20

// hostile answers status with an error body that starts with what a
// careless or hostile provider might say — terminal escapes, a forged log
// line, a bidirectional override, a NUL, what the request carried (the
// client's secret, the code, the verifier, the bearer token), a JWT — and
// goes on for hostileSize bytes.
func hostile(w http.ResponseWriter, r *http.Request, status int) {
	_ = r.ParseForm()
	head := "\x1b[31mERROR\x1b[0m\r\ntime=2026-01-01 level=INFO msg=\"forged line\"\u202e\x00 " + r.PostForm.Encode() + " " +
		r.Header.Get("Authorization") + " eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.sig "
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, head)
	chunk := bytes.Repeat([]byte("A"), 64<<10)
	for n := len(head); n < hostileSize; n += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return // the RP stopped reading
		}
	}
}

// checkEcho fails when text is long, spans lines, carries a control or
// formatting character, a JWT, or one of secrets.
func checkEcho(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	if len(text) > 2*maxEcho {
		t.Errorf("%s is %d bytes, want at most %d: %.200q…", what, len(text), 2*maxEcho, text)
	}
	for _, r := range text {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u202e' {
			t.Errorf("%s carries %U: %.300q", what, r, text)
			break
		}
	}
	for _, s := range append(secrets, "eyJ") {
		if strings.Contains(text, s) {
			t.Errorf("%s repeats %q: %.300q", what, s, text)
		}
	}
}

// hostileOP is a provider whose endpoints the test chooses, and an RP of
// it (client secret "s3cret-of-the-client", client_secret_post, userinfo
// read) that reads through a readCounter and logs into log.
type hostileOP struct {
	rp     *RP
	reads  *readCounter
	log    *bytes.Buffer
	key    *rsa.PrivateKey
	issuer string
	mux    *http.ServeMux
}

const clientSecret = "s3cret-of-the-client"

func newHostileOP(t *testing.T) *hostileOP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	op := &hostileOP{key: key, log: &bytes.Buffer{}, mux: http.NewServeMux(),
		reads: &readCounter{next: http.DefaultTransport, read: map[string]int64{}}}
	keys := &oidctest.Server{PublicKeys: []oidctest.PublicKey{{PublicKey: key.Public(), KeyID: testKeyID, Algorithm: "RS256"}}}
	op.mux.Handle("GET /keys", keys)
	op.mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": op.issuer, "authorization_endpoint": op.issuer + "/auth",
			"token_endpoint": op.issuer + "/token", "userinfo_endpoint": op.issuer + "/userinfo", "jwks_uri": op.issuer + "/keys",
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	hs := httptest.NewServer(op.mux)
	t.Cleanup(hs.Close)
	op.issuer = hs.URL
	keys.SetIssuer(hs.URL)
	cfgs, err := ParseProviders(mustJSON(t, []ProviderConfig{{Name: "idp", Issuer: hs.URL, ClientID: "posthub", ClientSecret: clientSecret,
		TokenAuth: "client_secret_post", UserInfo: true}}), nil)
	if err != nil {
		t.Fatal(err)
	}
	op.rp, err = New(cfgs, Options{Key: bytes.Repeat([]byte{3}, 32), HTTPClient: &http.Client{Transport: op.reads},
		Log: slog.New(slog.NewTextHandler(op.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// login starts a login and answers the callback with code; the token
// endpoint, when the test installed a good one, learns the nonce from
// nonce.
func (op *hostileOP) login(t *testing.T, code string, nonce *string) (url.Values, error) {
	t.Helper()
	authURL, cookie, err := op.rp.Start("idp", Portal, "https://posthub.example/cb", "")
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(authURL)
	if nonce != nil {
		*nonce = u.Query().Get("nonce")
	}
	f, _ := op.rp.open(cookie, Portal)
	q := url.Values{"state": {u.Query().Get("state")}, "code": {code}}
	_, _, err = op.rp.Finish(context.Background(), Portal, cookie, q, "https://posthub.example/cb")
	return url.Values{"verifier": {f.Verifier}}, err
}

// TestProviderErrorAnswersAreBoundedAndClean: an error answer of a
// provider — at discovery, at the token endpoint, at userinfo — is read
// no further than maxErrorBody, and what the error and the log repeat of
// it is short, on one line, without control characters, and without the
// login's secrets.
func TestProviderErrorAnswersAreBoundedAndClean(t *testing.T) {
	t.Run("discovery", func(t *testing.T) {
		op := newHostileOP(t)
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hostile(w, r, http.StatusInternalServerError) }))
		defer hs.Close()
		cfgs, _ := ParseProviders(mustJSON(t, []ProviderConfig{{Name: "idp", Issuer: hs.URL, ClientID: "posthub", ClientSecret: clientSecret,
			TokenAuth: "client_secret_post"}}), nil)
		rp, err := New(cfgs, Options{Key: bytes.Repeat([]byte{3}, 32), HTTPClient: &http.Client{Transport: op.reads},
			Log: slog.New(slog.NewTextHandler(op.log, nil))})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = rp.Start("idp", Portal, "https://posthub.example/cb", "")
		if hub.ErrorCode(err) != hub.Unavailable {
			t.Fatalf("discovery against an error answer: %v", err)
		}
		if n := op.reads.of("/.well-known/openid-configuration"); n > maxErrorBody {
			t.Errorf("read %d bytes of the error answer, bound %d", n, maxErrorBody)
		}
		checkEcho(t, "the error", err.Error(), clientSecret)
		checkEcho(t, "the log", strings.TrimSuffix(op.log.String(), "\n"), clientSecret)
	})
	t.Run("token endpoint", func(t *testing.T) {
		op := newHostileOP(t)
		op.mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) { hostile(w, r, http.StatusBadRequest) })
		v, err := op.login(t, "the-code-1", nil)
		if Reason(err) != "oidc.code.refused" {
			t.Fatalf("token endpoint answering an error: %v", err)
		}
		if n := op.reads.of("/token"); n > maxErrorBody {
			t.Errorf("read %d bytes of the error answer, bound %d", n, maxErrorBody)
		}
		checkEcho(t, "the error", err.Error(), clientSecret, "the-code-1", v.Get("verifier"))
		if !strings.Contains(err.Error(), "forged line") {
			t.Errorf("the error does not repeat the start of the provider's answer: %q", err)
		}
	})
	t.Run("userinfo", func(t *testing.T) {
		op := newHostileOP(t)
		var nonce string
		const accessToken = "the-access-token-1"
		op.mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
			now := time.Now()
			at := sha256.Sum256([]byte(accessToken))
			idt := oidctest.SignIDToken(op.key, testKeyID, "RS256", mustJSON(t, map[string]any{"iss": op.issuer, "aud": "posthub",
				"sub": "s-1", "nonce": nonce, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
				"at_hash": base64.RawURLEncoding.EncodeToString(at[:16])}))
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"access_token": accessToken, "token_type": "Bearer", "id_token": idt})
		})
		op.mux.HandleFunc("GET /userinfo", func(w http.ResponseWriter, r *http.Request) { hostile(w, r, http.StatusUnauthorized) })
		_, err := op.login(t, "the-code-2", &nonce)
		if hub.ErrorCode(err) != hub.Unavailable || !strings.Contains(err.Error(), "userinfo") {
			t.Fatalf("userinfo answering an error: %v", err)
		}
		if n := op.reads.of("/userinfo"); n > maxErrorBody {
			t.Errorf("read %d bytes of the error answer, bound %d", n, maxErrorBody)
		}
		checkEcho(t, "the error", err.Error(), clientSecret, accessToken)
	})
	t.Run("the callback's error parameter", func(t *testing.T) {
		op := newHostileOP(t)
		_, cookie, err := op.rp.Start("idp", Portal, "https://posthub.example/cb", "")
		if err != nil {
			t.Fatal(err)
		}
		f, _ := op.rp.open(cookie, Portal)
		e := "access_denied\r\n\x1b[2J\u202e" + strings.Repeat("x", 10_000)
		_, _, err = op.rp.Finish(context.Background(), Portal, cookie, url.Values{"state": {f.State}, "error": {e}}, "https://posthub.example/cb")
		_, msg, _ := Explain(err)
		if Reason(err) != "oidc.provider.refused" || !strings.Contains(msg, "access_denied") {
			t.Fatalf("the provider's refusal: %v", err)
		}
		checkEcho(t, "the page's message", msg)
		checkEcho(t, "the error", err.Error())
	})
}

// TestProviderAnswersAreBounded: an answer that is no error is read no
// further than maxAnswerBody either (go-oidc reads discovery, keys and
// userinfo whole).
func TestProviderAnswersAreBounded(t *testing.T) {
	op := newHostileOP(t)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"issuer":"`)
		chunk := bytes.Repeat([]byte("A"), 64<<10)
		for n := 0; n < 3*maxAnswerBody; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer hs.Close()
	cfgs, _ := ParseProviders(mustJSON(t, []ProviderConfig{{Name: "idp", Issuer: hs.URL, ClientID: "posthub"}}), nil)
	rp, err := New(cfgs, Options{Key: bytes.Repeat([]byte{3}, 32), HTTPClient: &http.Client{Transport: op.reads},
		Log: slog.New(slog.NewTextHandler(op.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := rp.Start("idp", Portal, "https://posthub.example/cb", ""); hub.ErrorCode(err) != hub.Unavailable {
		t.Fatalf("discovery of an endless document: %v", err)
	}
	if n := op.reads.of("/.well-known/openid-configuration"); n > maxAnswerBody {
		t.Errorf("read %d bytes of the answer, bound %d", n, maxAnswerBody)
	}
}

// TestRefusalsRepeatClaimsBounded: a refusal that names a claim the
// provider sent (a user id or an organisation that cannot be one) repeats
// it bounded.
func TestRefusalsRepeatClaimsBounded(t *testing.T) {
	long := "\x1b[2J" + strings.Repeat("x", 100_000)
	for _, c := range []struct {
		name string
		cfg  ProviderConfig
		id   Identity
	}{
		{"a user id", ProviderConfig{}, Identity{UserID: long}},
		{"an organisation", ProviderConfig{OrganisationClaim: "cvr"}, Identity{UserID: "anne", Organisation: long}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Name, c.cfg.Label = "idp", "The IdP"
			rp := &RP{providers: map[string]*provider{"idp": {cfg: c.cfg}}, opts: Options{Privileges: &fakePolicies{},
				Users: fakeUsers{"anne": {ID: "anne", Active: true}}}}
			c.id.Provider = "idp"
			_, err := rp.mapUser(context.Background(), c.id)
			_, msg, ok := Explain(err)
			if !ok {
				t.Fatalf("refusal: %v", err)
			}
			checkEcho(t, "the page's message", msg)
		})
	}
}
