package portal

import "testing"

// TestLocalPath checks where a login may send the browser afterwards. It
// used to refuse only "//host", "/\host" and CR/LF, so "/\t/evil.example"
// passed: Chromium drops the tab, reads "//evil.example" and leaves the hub
// (an open redirect after a real login).
func TestLocalPath(t *testing.T) {
	refused := map[string]string{
		"empty":                         "",
		"relative path":                 "admin/",
		"absolute URL":                  "https://evil.example/admin/",
		"scheme-relative URL":           "//evil.example/admin/",
		"tab after the first slash":     "/\t/evil.example/x",
		"newline after the first slash": "/\n/evil.example/x",
		"carriage return":               "/admin/\r\nLocation: x",
		"space":                         "/ /evil.example",
		"NUL":                           "/admin/\x00",
		"DEL":                           "/\x7f/evil.example",
		"backslash after the slash":     "/\\evil.example",
		"backslash later":               "/admin/\\..\\\\evil.example",
		"javascript scheme":             "javascript:alert(1)",
		"user info":                     "//user@evil.example/admin/",
		"not a portal or API path":      "/mailbox/",
		"bare prefix without slash":     "/admin",
		"dot segments leave the prefix": "/admin/../mailbox/",
		"encoded dot segments":          "/admin/%2e%2e/mailbox/",
		"bad escape":                    "/admin/%zz",
	}
	for name, next := range refused {
		t.Run("refuses "+name, func(t *testing.T) {
			if got := localPath(next); got != "" {
				t.Fatalf("localPath(%q) = %q, want refused", next, got)
			}
		})
	}
	allowed := map[string]string{
		"portal home":                       "/admin/",
		"an organisation's page with query": "/admin/orgs/11111111/users?x=1",
		"the session API":                   "/apis/v1/session",
		"dot segments that stay inside":     "/admin/orgs/../",
	}
	for name, next := range allowed {
		t.Run("keeps "+name, func(t *testing.T) {
			if got := localPath(next); got != next {
				t.Fatalf("localPath(%q) = %q, want it kept", next, got)
			}
		})
	}
}
