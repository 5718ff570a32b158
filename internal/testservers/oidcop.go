package testservers

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// OP is this test binary's OpenID provider: the example OP of
// github.com/zitadel/oidc/v3 (oidc-op in $POSTHUB_TEST_BIN), a real
// provider with discovery, published signing keys (RS256), a login page,
// PKCE, userinfo and RP-initiated logout (end_session_endpoint). It keeps
// no single sign-on session: every login shows its form.
type OP struct {
	// Issuer is the provider's issuer URL ("http://localhost:PORT/").
	Issuer string
	// ClientID is the provider's public client ("native"): PKCE, no
	// secret, and — as RFC 8252 allows for loopback — any port on the
	// loopback redirect URIs OPRedirectPaths, so every test hub can use it.
	ClientID string
}

// OPRedirectPaths are the callback paths registered for OP's client, on
// http://127.0.0.1 with any port.
var OPRedirectPaths = []string{"/admin/oidc/callback", "/mailbox/oidc/callback"}

// OPUser is a person the test provider knows. The example OP asserts only
// standard claims, and those only in userinfo: sub (ID),
// preferred_username (Username), given_name and family_name, email, and
// phone_number (Phone) — tests configure which stands for what.
type OPUser struct {
	ID, Username, Password, FirstName, LastName, Email, Phone string
}

// The test provider's people. Phone holds a CVR number and LastName a
// group, for tests that let phone_number stand in for an organisation
// claim and family_name for a group claim.
var (
	OPAnne    = OPUser{ID: "op-anne", Username: "anne", Password: "anne-op-password", FirstName: "Anne", LastName: "statistics", Email: "anne@kommune.example", Phone: "11111111"}
	OPBent    = OPUser{ID: "op-bent", Username: "bent", Password: "bent-op-password", FirstName: "Bent", LastName: "none", Email: "bent@kommune.example", Phone: "11111111"}
	OPCarl    = OPUser{ID: "op-carl", Username: "carl", Password: "carl-op-password", FirstName: "Carl", LastName: "none", Email: "carl@kommune.example", Phone: "11111111"}
	OPCitizen = OPUser{ID: "op-citizen", Username: "0101701234", Password: "citizen-op-password", FirstName: "Borger", LastName: "Borgersen", Email: "borger@example.org"}
)

// OPUsers are all of them.
var OPUsers = []OPUser{OPAnne, OPBent, OPCarl, OPCitizen}

// OpenIDProvider returns this test binary's OpenID provider, starting it on
// first use.
func OpenIDProvider(tb testing.TB) OP {
	tb.Helper()
	oidcOP.get(tb, "oidc-op", startOP)
	return OP{Issuer: "http://localhost:" + oidcOP.addr[strings.LastIndexByte(oidcOP.addr, ':')+1:] + "/", ClientID: "native"}
}

func startOP(s *server, bin string) error {
	return s.start("oidc-op", func(dir string, ports []int) (*exec.Cmd, string, error) {
		users := map[string]any{}
		for _, u := range OPUsers {
			users[u.ID] = map[string]any{"ID": u.ID, "Username": u.Username, "Password": u.Password, "FirstName": u.FirstName,
				"LastName": u.LastName, "Email": u.Email, "EmailVerified": true, "Phone": u.Phone, "PreferredLanguage": "da"}
		}
		b, _ := json.Marshal(users)
		usersFile := filepath.Join(dir, "users.json")
		_ = os.WriteFile(usersFile, b, 0o600)
		var redirects []string
		for _, p := range OPRedirectPaths {
			redirects = append(redirects, "http://127.0.0.1"+p)
		}
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", ports[0]), "USERS_FILE="+usersFile,
			"REDIRECT_URI="+strings.Join(redirects, ","), "HOME="+dir)
		return cmd, fmt.Sprintf("127.0.0.1:%d", ports[0]), nil
	}, 1, func(addr string) error {
		c := &http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get("http://" + addr + "/.well-known/openid-configuration")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("discovery: %s", resp.Status)
		}
		return nil
	})
}

// SubmitLogin fills in the provider's login form for u: loginPage is the
// URL an authorization request ended on (its authRequestID query). The
// answer is followed with client (which should have a cookie jar) back to
// the relying party's callback and wherever that leads.
func (op OP) SubmitLogin(client *http.Client, loginPage *url.URL, u OPUser) (*http.Response, error) {
	id := loginPage.Query().Get("authRequestID")
	if id == "" || !strings.HasPrefix(loginPage.String(), strings.TrimSuffix(op.Issuer, "/")) {
		return nil, fmt.Errorf("%s is not the test provider's login page", loginPage)
	}
	return client.PostForm(strings.TrimSuffix(op.Issuer, "/")+"/login/username",
		url.Values{"id": {id}, "username": {u.Username}, "password": {u.Password}})
}
