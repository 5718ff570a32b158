package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestPortalLoginPageShowsNoTextFromTheLink: the portal used to show the
// "error" and "notice" query parameters as its own alert on any page, the
// unauthenticated login page too, so a link could make the hub's login
// page say "The hub has moved; log in at https://phish.example". The login
// page now shows only its own words.
func TestPortalLoginPageShowsNoTextFromTheLink(t *testing.T) {
	h := startHub(t)
	const lie = "The hub has moved. Log in at https://posthub-login.example instead"
	for _, param := range []string{"error", "notice"} {
		status, page := newBrowserless(t).get(h, "/admin/login?"+param+"="+url.QueryEscape(lie))
		if status != 200 || strings.Contains(page, "posthub-login.example") {
			t.Fatalf("?%s=: the login page (%d) shows the link's text", param, status)
		}
	}
	// A failed login still says why, on the page itself.
	resp, err := tryPortalLogin(http.DefaultClient, h.base, "nobody", "a wrong password")
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong password: %v %v", resp, err)
	}
}

// TestPortalNoticeOnlyFromTheHubForThisSession: after a form, the page it
// goes back to shows the hub's notice; the same page with a notice of a
// link's making shows none, and the hub's own redirect, replayed in
// someone else's session, shows none either (it is vouched for the
// session it was made for).
func TestPortalNoticeOnlyFromTheHubForThisSession(t *testing.T) {
	h := startHub(t)
	h.setupWorld()
	anne := h.userWith("anne", orgA, "ORGANISATION_ADMINISTRATOR")
	bent := h.userWith("bent", orgA, "ORGANISATION_ADMINISTRATOR")
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	form := url.Values{"csrf": {anne.csrf}, "id": {"carl"}, "name": {"Carl"}}
	req, _ := http.NewRequest("POST", h.base+"/admin/orgs/"+orgA+"/users", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(anne.cookie)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || back == "" {
		t.Fatalf("creating a user: %d, Location %q", resp.StatusCode, back)
	}
	const notice = "User carl created"
	if page := getPage(t, http.DefaultClient, h.base+back, anne.cookie); !strings.Contains(page, notice) {
		t.Fatalf("the page after the form shows no notice: %s", page)
	}
	if page := getPage(t, http.DefaultClient, h.base+back, bent.cookie); strings.Contains(page, notice) {
		t.Fatal("another session shows the notice made for anne's")
	}
	lie := url.Values{"notice": {"Your account is suspended; call +45 12 34 56 78"}, "error": {"Log in again at https://phish.example"}}
	for _, u := range []string{"/admin/?" + lie.Encode(), "/admin/orgs/" + orgA + "/?" + lie.Encode() + "&vouch=forged"} {
		if page := getPage(t, http.DefaultClient, h.base+u, anne.cookie); strings.Contains(page, "suspended") || strings.Contains(page, "phish.example") {
			t.Fatalf("%s shows the link's text as the hub's", u)
		}
	}
}
