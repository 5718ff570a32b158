package main

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/rbac"
)

// TestOIDCPortalInBrowser: in headless Chromium, a person logs into the
// portal through the real OpenID provider (zitadel/oidc's example OP),
// typing their password into the provider's page, never posthub's; posthub
// knows them as a user with no privilege of its own, and their group
// (family_name, see oidcProviders) maps to STATISTICS_ADMINISTRATOR in
// Kommune A: they read its statistics and are refused its systems. They
// log out, which sends the browser to the provider's end_session endpoint,
// and the session cookie they had no longer works, on the portal or the
// session API.
func TestOIDCPortalInBrowser(t *testing.T) {
	ctx := browser(t)
	shots := artifacts(t)
	op := testservers.OpenIDProvider(t)
	h := startHub(t, "-oidc-providers", oidcProviders(t, op))
	w := h.setupWorld()
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/"+orgA+"/users/", map[string]any{"id": "anne", "name": "Anne Analytiker"}), 201)
	for i := 0; i < 2; i++ {
		uuid, body := letterXML(t, memo.Letter{To: orgA, PostType: "MYNDIGHEDSPOST"})
		h.mustStatus(h.send(w.sender, uuid, body, ""), 201)
	}
	run := func(step string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(ctx, actions...); err != nil {
			_ = chromedp.Run(ctx, shot(t, shots, "failed-"+strings.ReplaceAll(step, " ", "-")))
			t.Fatalf("%s: %v", step, err)
		}
	}
	var text, location string
	run("the portal offers the provider",
		chromedp.Navigate(h.base+"/admin/orgs/"+orgA+"/statistics"),
		chromedp.WaitVisible(`a[href^="/admin/oidc/test/login"]`),
		shot(t, shots, "01-portal-login"),
		chromedp.Click(`a[href^="/admin/oidc/test/login"]`),
		chromedp.WaitVisible(`#username`),
		chromedp.Location(&location),
	)
	if !strings.HasPrefix(location, strings.TrimSuffix(op.Issuer, "/")) {
		t.Fatalf("the login page is at %s, not the provider's", location)
	}
	run("log in at the provider",
		chromedp.SendKeys(`#username`, testservers.OPAnne.Username),
		chromedp.SendKeys(`#password`, testservers.OPAnne.Password),
		shot(t, shots, "02-provider-login"),
		chromedp.Click(`button[type="submit"]`),
		// Back at the page asked for: the statistics of Kommune A.
		chromedp.WaitVisible(`#chart-period`),
		chromedp.Text(`main`, &text),
		chromedp.Location(&location),
		shot(t, shots, "03-statistics-with-mapped-privilege"),
	)
	if !strings.HasPrefix(location, h.base+"/admin/orgs/"+orgA+"/statistics") || !strings.Contains(text, "Messages per day") {
		t.Fatalf("after login at %s: %q", location, text)
	}
	run("the mapped privilege is all she holds",
		chromedp.Navigate(h.base+"/admin/orgs/"+orgA+"/systems"),
		chromedp.WaitVisible(`.error`),
		chromedp.Text(`.error`, &text),
	)
	if !strings.Contains(text, string(rbac.SystemsRead)) {
		t.Fatalf("the systems page: %q", text)
	}
	var cookies []*network.Cookie
	run("keep the session cookie",
		chromedp.ActionFunc(func(ctx context.Context) error {
			var err error
			cookies, err = network.GetCookies().WithURLs([]string{h.base + "/"}).Do(ctx)
			return err
		}),
	)
	var session *http.Cookie
	for _, c := range cookies {
		if c.Name == rbac.SessionCookie {
			session = &http.Cookie{Name: c.Name, Value: c.Value}
		}
	}
	if session == nil {
		t.Fatalf("no session cookie among %v", cookies)
	}
	stillWorks := func() int {
		jar, _ := cookiejar.New(nil)
		u, _ := url.Parse(h.base + "/")
		jar.SetCookies(u, []*http.Cookie{session})
		resp, err := (&http.Client{Jar: jar}).Get(h.base + "/apis/v1/session")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := stillWorks(); got != 200 {
		t.Fatalf("the session API on the browser's session: %d", got)
	}
	run("log out",
		chromedp.Navigate(h.base+"/admin/"),
		chromedp.WaitVisible(`form[action="/admin/logout"] button`),
		chromedp.Click(`form[action="/admin/logout"] button`),
		// The provider's end-session endpoint ends on its "signed out" page.
		chromedp.WaitVisible(`//body[contains(., "signed out successfully")]`, chromedp.BySearch),
		chromedp.Location(&location),
		shot(t, shots, "04-logged-out-at-provider"),
	)
	if !strings.HasPrefix(location, strings.TrimSuffix(op.Issuer, "/")) {
		t.Fatalf("after logout the browser is at %s, not the provider", location)
	}
	if got := stillWorks(); got != 401 {
		t.Fatalf("the old session cookie after logout: %d, want 401", got)
	}
	run("the old cookie in the browser",
		network.SetCookie(session.Name, session.Value).WithURL(h.base+"/"),
		chromedp.Navigate(h.base+"/admin/orgs/"+orgA+"/statistics"),
		chromedp.WaitVisible(`a[href^="/admin/oidc/test/login"]`),
		shot(t, shots, "05-old-cookie-refused"),
	)
}

// TestOIDCWebMailboxInBrowser: in headless Chromium a citizen logs into
// the web mailbox through the real provider (its CPR claim names them) and
// sees their own letter, not another citizen's.
func TestOIDCWebMailboxInBrowser(t *testing.T) {
	ctx := browser(t)
	shots := artifacts(t)
	op := testservers.OpenIDProvider(t)
	h := startHub(t, "-web-mailbox", "-oidc-providers", oidcProviders(t, op))
	w := h.setupWorld()
	mine, body := letterXML(t, memo.Letter{To: citizen, Label: "Brev til borgeren"})
	h.mustStatus(h.send(w.sender, mine, body, ""), 201)
	theirs, body := letterXML(t, memo.Letter{To: smsPerson, Label: "Brev til en anden"})
	h.mustStatus(h.send(w.sender, theirs, body, ""), 201)
	run := func(step string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(ctx, actions...); err != nil {
			_ = chromedp.Run(ctx, shot(t, shots, "failed-"+strings.ReplaceAll(step, " ", "-")))
			t.Fatalf("%s: %v", step, err)
		}
	}
	var text, location string
	run("log in through the provider",
		chromedp.Navigate(h.base+"/mailbox/"),
		chromedp.WaitVisible(`a[href="/mailbox/oidc/borger/login"]`),
		shot(t, shots, "01-mailbox-login"),
		chromedp.Click(`a[href="/mailbox/oidc/borger/login"]`),
		chromedp.WaitVisible(`#username`),
		chromedp.SendKeys(`#username`, testservers.OPCitizen.Username),
		chromedp.SendKeys(`#password`, testservers.OPCitizen.Password),
		chromedp.Click(`button[type="submit"]`),
		chromedp.WaitVisible(`//main[contains(., "Brev til borgeren")]`, chromedp.BySearch),
		chromedp.Text(`main`, &text),
		chromedp.Location(&location),
		shot(t, shots, "02-own-mailbox"),
	)
	if location != h.base+"/mailbox/box/"+citizen+"/" || strings.Contains(text, "Brev til en anden") {
		t.Fatalf("at %s: %q", location, text)
	}
	run("another citizen's mailbox is refused",
		chromedp.Navigate(h.base+"/mailbox/box/"+smsPerson+"/"),
		chromedp.WaitVisible(`.error`),
		chromedp.Text(`main`, &text),
		shot(t, shots, "03-other-mailbox-refused"),
	)
	if strings.Contains(text, "Brev til en anden") {
		t.Fatalf("another citizen's mailbox shows: %q", text)
	}
}
