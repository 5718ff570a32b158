package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/posthub/posthub/internal/testservers"
)

// Browser-layer attacks from the security review, played in Chromium
// where what matters is what a browser does with a URL or a cookie.

// TestPortalOIDCNextStaysOnHubInBrowser: a lure links to the portal's
// login page with next="/<TAB>/evil.example/phish". The portal used to
// pass that on (it refused only "//", "/\" and CR/LF), and after a real
// login at the provider Chromium dropped the tab, read "//evil.example"
// and left the hub for the attacker's site. Now the browser ends on the
// portal.
func TestPortalOIDCNextStaysOnHubInBrowser(t *testing.T) {
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<p>phish</p>"))
	}))
	defer evil.Close()
	op := testservers.OpenIDProvider(t)
	h := startHub(t, "-oidc-providers", oidcProviders(t, op))
	h.setupWorld()
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/"+orgA+"/users/",
		map[string]any{"id": "anne", "name": "Anne", "privileges": []string{"ORGANISATION_ADMINISTRATOR"}}), 201)
	lure := h.base + "/admin/login?next=" + url.QueryEscape("/\t/"+strings.TrimPrefix(evil.URL, "http://")+"/phish")
	var location string
	if err := chromedp.Run(browser(t), chromedp.Navigate(lure),
		chromedp.Click(`a[href^="/admin/oidc/test/login"]`), chromedp.WaitVisible(`#username`),
		chromedp.SendKeys(`#username`, testservers.OPAnne.Username), chromedp.SendKeys(`#password`, testservers.OPAnne.Password),
		chromedp.Click(`button[type="submit"]`),
		waitForLocation(&location, h.base+"/admin/", evil.URL)); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(location, h.base+"/admin/") {
		t.Fatalf("after a real login the portal sent the browser to %s", location)
	}
}

// waitForLocation waits until the page's URL starts with one of prefixes
// (the redirects of a login are done) and stores it in location.
func waitForLocation(location *string, prefixes ...string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			// An error is a navigation under way: ask again.
			if err := chromedp.Location(location).Do(ctx); err == nil {
				for _, p := range prefixes {
					if strings.HasPrefix(*location, p) {
						return nil
					}
				}
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
	})
}

// Cookie tossing: a host of the hub's domain that the attacker controls
// (here evil.hub.test next to the hub's www.hub.test) sets a cookie with
// Domain=hub.test, and the victim's browser sends it to the hub. Cookies
// named __Host- are refused from such a host (and from any plain-HTTP
// page), so over TLS the hub names its browser cookies so and reads no
// other.

// startTLSHub starts an HTTPS hub whose certificate the browser of
// siblingBrowser does not check.
func startTLSHub(t *testing.T, extra ...string) *testHub {
	t.Helper()
	ca, dir := newTestCA(t), t.TempDir()
	_, crt, key := ca.issue(t, "127.0.0.1", true)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, crt, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHubIn(t, t.TempDir(), "https", append([]string{"-tls-cert", certFile, "-tls-key", keyFile}, extra...)...)
	h.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return h
}

// siblingBrowser is Chromium resolving every *.hub.test to 127.0.0.1, so
// the hub is www.hub.test and the attacker's host evil.hub.test.
func siblingBrowser(t *testing.T) context.Context {
	return browser(t, chromedp.Flag("host-resolver-rules", "MAP *.hub.test 127.0.0.1"),
		chromedp.Flag("ignore-certificate-errors", true))
}

// onHubTest is h's URL for path on www.hub.test.
func onHubTest(t *testing.T, h *testHub, path string) string {
	t.Helper()
	u, err := url.Parse(h.base)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(u.Host)
	return u.Scheme + "://www.hub.test:" + port + path
}

// tossingSibling is the attacker's plain-HTTP host of the hub's domain: a
// visit sets each of cookies ("name=value; Path=...") for all of hub.test.
func tossingSibling(t *testing.T, cookies ...string) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, c := range cookies {
			w.Header().Add("Set-Cookie", c+"; Domain=hub.test; HttpOnly")
		}
		_, _ = w.Write([]byte("<p>nothing to see</p>"))
	}))
	t.Cleanup(s.Close)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "http://"))
	return "http://evil.hub.test:" + port + "/"
}

// insecureClient is a cookie-keeping client that trusts the test hub's
// certificate without checking it (the attacker's own tools).
func insecureClient(b *browserless) {
	b.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
}

// TestMailboxSessionCookieCannotBeTossed: the attacker logs in to the web
// mailbox as themselves and plants that session cookie in the victim's
// browser from a sibling host. The mailbox used to call its session cookie
// posthub_mailbox (Path=/mailbox/) even over TLS, so the victim, opening
// the hub, was in the attacker's mailbox and would read and write post
// there. Now the hub reads only __Host-posthub_mailbox, which the sibling
// cannot set; the victim is asked to log in, and logging in works.
func TestMailboxSessionCookieCannotBeTossed(t *testing.T) {
	h := startTLSHub(t, "-web-mailbox", "-mailbox-demo-login")
	const attacker, victim = "0505705678", "0101701234" // the demo login stands in for MitID
	a := newBrowserless(t)
	insecureClient(a)
	_, page, _ := a.page(a.client.Get(h.base + "/mailbox/"))
	_, _, _ = a.page(a.client.PostForm(h.base+"/mailbox/login",
		url.Values{"csrf": {between(page, `name="csrf" value="`, `"`)}, "cpr": {attacker}}))
	hubURL, _ := url.Parse(h.base + "/mailbox/")
	var session string
	for _, c := range a.jar.Cookies(hubURL) {
		if strings.HasSuffix(c.Name, "posthub_mailbox") {
			session = c.Value
		}
	}
	if session == "" {
		t.Fatal("the attacker got no mailbox session")
	}
	sibling := tossingSibling(t, "posthub_mailbox="+session+"; Path=/mailbox/", "__Host-posthub_mailbox="+session+"; Path=/")
	var text string
	if err := chromedp.Run(siblingBrowser(t),
		chromedp.Navigate(sibling),                      // the victim visits the sibling host…
		chromedp.Navigate(onHubTest(t, h, "/mailbox/")), // …then the hub
		chromedp.Text("body", &text)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text, "Logged in as citizen "+attacker) {
		t.Fatalf("the victim's browser is in the attacker's mailbox: %q", text)
	}
	if !strings.Contains(text, "CPR number") {
		t.Fatalf("the victim is not asked to log in: %q", text)
	}
}

// TestMailboxLoginOverTLSInBrowser: over TLS the mailbox's cookies are
// __Host- with Path=/, and a real browser keeps and sends them: the
// login form's cookie, then the session.
func TestMailboxLoginOverTLSInBrowser(t *testing.T) {
	h := startTLSHub(t, "-web-mailbox", "-mailbox-demo-login")
	const citizen = "0101701234"
	var text string
	if err := chromedp.Run(siblingBrowser(t),
		chromedp.Navigate(onHubTest(t, h, "/mailbox/")),
		chromedp.WaitVisible(`#cpr`),
		chromedp.SendKeys(`#cpr`, citizen),
		chromedp.Click(`#cpr ~ button`),
		chromedp.WaitVisible(`.who`),
		chromedp.Text("body", &text)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "Logged in as citizen "+citizen) {
		t.Fatalf("after logging in: %q", text)
	}
}

// TestPortalOIDCFlowCookieCannotBeTossed: login CSRF. The attacker starts
// an OpenID login to the portal, logs in at the provider as themselves and
// keeps the callback URL unvisited; then a sibling host plants the
// attacker's flow cookie in the victim's browser and sends it to that
// callback. The portal used to call the flow cookie posthub_oidc_flow even
// over TLS, so the callback matched it and gave the victim a session of
// the attacker's account (whatever the victim then typed in, the attacker
// would read). Now it reads only __Host-posthub_oidc_flow and refuses.
func TestPortalOIDCFlowCookieCannotBeTossed(t *testing.T) {
	op := testservers.OpenIDProvider(t)
	// The test provider accepts only http://127.0.0.1 redirect URIs (any
	// port); the attacker never follows this one.
	h := startTLSHub(t, "-oidc-providers", oidcProviders(t, op), "-public-url", "http://127.0.0.1:9")
	h.setupWorld()
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/"+orgA+"/users/",
		map[string]any{"id": "anne", "name": "Anne Attacker", "privileges": []string{"ORGANISATION_ADMINISTRATOR"}}), 201)
	a := newBrowserless(t)
	insecureClient(a)
	var callback *url.URL
	a.client.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if r.URL.Path == "/admin/oidc/callback" {
			callback = r.URL
			return http.ErrUseLastResponse
		}
		return nil
	}
	_, _, at := a.page(a.client.Get(h.base + "/admin/oidc/test/login"))
	var flow string
	hubOIDC, _ := url.Parse(h.base + "/admin/oidc/")
	for _, c := range a.jar.Cookies(hubOIDC) {
		if strings.HasSuffix(c.Name, "posthub_oidc_flow") {
			flow = c.Value
		}
	}
	resp, err := op.SubmitLogin(a.client, at, testservers.OPAnne)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if flow == "" || callback == nil {
		t.Fatalf("the attacker's login: flow cookie %q, callback %v", flow, callback)
	}
	sibling := tossingSibling(t, "posthub_oidc_flow="+flow+"; Path=/admin/oidc/", "__Host-posthub_oidc_flow="+flow+"; Path=/")
	var text string
	if err := chromedp.Run(siblingBrowser(t),
		chromedp.Navigate(sibling),
		chromedp.Navigate(onHubTest(t, h, callback.Path+"?"+callback.RawQuery)),
		chromedp.Navigate(onHubTest(t, h, "/admin/")),
		chromedp.Text("body", &text)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text, "Anne Attacker") {
		t.Fatalf("the victim's browser holds a portal session of the attacker's account: %q", text)
	}
}

// TestHSTSWhenServedOverTLS: a hub served over TLS (-tls-cert, or
// -secure-cookies behind a TLS-terminating proxy) tells browsers to come
// back over HTTPS only, on the portal, the mailbox and the API alike; a
// plain-HTTP hub does not (there it would pin a name to a scheme the hub
// does not serve). It used to send no HSTS at all.
func TestHSTSWhenServedOverTLS(t *testing.T) {
	for _, tc := range []struct {
		name string
		hub  func(t *testing.T) *testHub
		want string
	}{
		{"tls-cert", func(t *testing.T) *testHub { return startTLSHub(t, "-web-mailbox", "-mailbox-demo-login") }, "max-age=31536000"},
		{"secure-cookies behind a proxy", func(t *testing.T) *testHub {
			return startHub(t, "-secure-cookies", "-web-mailbox", "-mailbox-demo-login")
		}, "max-age=31536000"},
		{"plain HTTP", func(t *testing.T) *testHub { return startHub(t, "-web-mailbox", "-mailbox-demo-login") }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.hub(t)
			for _, path := range []string{"/admin/login", "/mailbox/", "/apis/v1/session"} {
				if got := h.do("GET", path, "", "", nil).header.Get("Strict-Transport-Security"); got != tc.want {
					t.Errorf("GET %s: Strict-Transport-Security %q, want %q", path, got, tc.want)
				}
			}
		})
	}
}
