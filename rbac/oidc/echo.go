package oidc

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// What a provider answers is outside input. go-oidc reads every answer
// (discovery, keys, userinfo) whole, and puts an error answer's body into
// its error; oauth2 reads up to 1 MiB of a token answer and does the same.
// An error then reaches our logs and, through hub.Error, whoever prints
// it. So the RP's HTTP client reads at most maxErrorBody of an error
// answer and maxAnswerBody of any other, and what posthub repeats of a
// provider's error (echo) is at most maxEcho bytes, on one line, without
// control or formatting characters, and without the secrets of the login
// it belongs to: the client secret, the code, the PKCE verifier, the
// tokens, or anything shaped like a JWT.
const (
	// maxErrorBody holds any real OAuth or OpenID error answer (a JSON
	// object of a code, a description and a URI) with room to spare.
	maxErrorBody = 4 << 10
	// maxAnswerBody is far above a discovery document, a key set or a
	// userinfo answer (a few KiB), and oauth2's own bound on a token
	// answer.
	maxAnswerBody = 1 << 20
	// maxEcho is what a log line or an error repeats of a provider's
	// words: enough to tell invalid_client from a proxy's HTML page.
	maxEcho = 512
)

// boundedBodies cuts every answer's body at its bound. A cut body reads as
// one that ended: the caller's JSON decoding fails, or its error message
// ends early.
type boundedBodies struct{ next http.RoundTripper }

func (b boundedBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := b.next.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	n := int64(maxAnswerBody)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		n = maxErrorBody
	}
	if resp.ContentLength > n {
		resp.ContentLength = -1
	}
	resp.Body = limitedBody{Reader: io.LimitReader(resp.Body, n), Closer: resp.Body}
	return resp, nil
}

type limitedBody struct {
	io.Reader
	io.Closer
}

// boundedClient is c (nil: a 10 s timeout) reading bounded bodies; c
// itself is not changed.
func boundedClient(c *http.Client) *http.Client {
	out := &http.Client{Timeout: 10 * time.Second}
	if c != nil {
		cc := *c
		out = &cc
	}
	t := out.Transport
	if t == nil {
		t = http.DefaultTransport
	}
	out.Transport = boundedBodies{next: t}
	return out
}

// providerError is a provider's error as posthub repeats it (echo); the
// original stays reachable for errors.Is and errors.As (a timeout, say),
// never through Error.
type providerError struct {
	msg string
	err error
}

func (e *providerError) Error() string { return e.msg }
func (e *providerError) Unwrap() error { return e.err }

// fromProvider is err, which may carry a provider's words, made safe to
// repeat: secrets are the login's (the provider's client secret is always
// among them).
func (p *provider) fromProvider(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	return &providerError{msg: echo(err.Error(), append([]string{p.cfg.ClientSecret}, secrets...)...), err: err}
}

// jwtShaped is a JWS compact serialisation (an ID or access token): a
// base64url JSON header, which always starts with "eyJ" ({").
var jwtShaped = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*`)

// echo is s as posthub repeats a provider's words: each secret replaced,
// JWTs replaced, and then clean to at most maxEcho bytes.
func echo(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return clean(jwtShaped.ReplaceAllString(s, "[token]"), maxEcho)
}

// cutMarker ends a value clean cut short. It is not ASCII, so a cut value
// can never read as a whole identifier (a user id, a CVR number).
const cutMarker = "… (cut)"

// clean is s as posthub writes a provider's words where people read them
// (an error, a log line, an event): every rune that is not printable — a
// control or formatting character (a newline, an escape, a bidirectional
// override), a line or paragraph separator, a space other than ' ' — a
// space, invalid UTF-8 a replacement character, and at most max bytes,
// cut at a rune boundary and marked with cutMarker. A printable s of at
// most max bytes is returned as it is.
func clean(s string, max int) string {
	if len(s) <= max && printable(s) {
		return s
	}
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + cutMarker
	}
	return s
}

// printable reports whether s is valid UTF-8 of printable runes only
// (unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the
// ASCII space): what clean leaves as it is.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// errorCode is the callback's error parameter as a page repeats it: an
// OAuth error code is printable ASCII without '"' and '\' (RFC 6749
// §4.1.2.1), and short; anything else is dropped.
func errorCode(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return s
}
