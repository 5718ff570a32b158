package rbac_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/posthub/posthub/rbac"
)

// TestHostCookie: over TLS a browser cookie of the hub is one a browser
// takes from this host alone (__Host-: Secure, Path=/, no Domain), so a
// sibling host cannot plant it; over plain HTTP it keeps its name and path.
func TestHostCookie(t *testing.T) {
	c := rbac.HostCookie("posthub_mailbox", "v", "/mailbox/", true, http.SameSiteStrictMode, 60)
	if c.Name != "__Host-posthub_mailbox" || c.Path != "/" || !c.Secure || c.Domain != "" || !c.HttpOnly ||
		c.SameSite != http.SameSiteStrictMode || c.MaxAge != 60 || c.Value != "v" {
		t.Fatalf("secure: %+v", c)
	}
	c = rbac.HostCookie("posthub_mailbox", "", "/mailbox/", false, http.SameSiteLaxMode, -1)
	if c.Name != "posthub_mailbox" || c.Path != "/mailbox/" || c.Secure || c.MaxAge != -1 {
		t.Fatalf("plain: %+v", c)
	}
	if rbac.CookieName(true) != rbac.SecureSessionCookie || rbac.CookieName(false) != rbac.SessionCookie {
		t.Fatal("the session cookie's names changed")
	}
}

// TestSecureRequest: the API, the portal and the mailbox name their
// cookies alike, by one rule.
func TestSecureRequest(t *testing.T) {
	plain := httptest.NewRequest("GET", "/", nil)
	overTLS := httptest.NewRequest("GET", "/", nil)
	overTLS.TLS = &tls.ConnectionState{}
	proxied := httptest.NewRequest("GET", "/", nil)
	proxied.Header.Set("X-Forwarded-Proto", "HTTPS")
	for _, tc := range []struct {
		name   string
		r      *http.Request
		forced bool
		want   bool
	}{
		{"plain HTTP", plain, false, false},
		{"forced by configuration", plain, true, true},
		{"a TLS connection", overTLS, false, true},
		{"a TLS-terminating proxy", proxied, false, true},
	} {
		if got := rbac.SecureRequest(tc.r, tc.forced); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
