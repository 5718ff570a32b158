package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
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
