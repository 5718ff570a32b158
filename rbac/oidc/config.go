package oidc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
)

// Purpose is where a login lands: the admin portal (and with it the session
// API, which accepts the same session) or the reference web mailbox.
type Purpose string

const (
	Portal  Purpose = "portal"
	Mailbox Purpose = "mailbox"
)

// ProviderConfig is one OpenID provider as the operator configures it (one
// element of the -oidc-providers JSON list).
type ProviderConfig struct {
	// Name identifies the provider in URLs, cookies and the event log:
	// 1–32 of a–z, 0–9, '-'.
	Name string `json:"name"`
	// Label is the login button's text (default: Name).
	Label string `json:"label,omitempty"`
	// Issuer is the provider's issuer URL exactly as its discovery document
	// states it (https; http only on a loopback host, for tests).
	Issuer   string `json:"issuer"`
	ClientID string `json:"clientId"`
	// ClientSecret, or the environment variable ClientSecretEnv naming it.
	// Empty both: a public client (PKCE only, client_id in the token
	// request).
	ClientSecret    string `json:"clientSecret,omitempty"`
	ClientSecretEnv string `json:"clientSecretEnv,omitempty"`
	// TokenAuth is how the client authenticates at the token endpoint:
	// client_secret_basic (default with a secret), client_secret_post, or
	// none (default without one).
	TokenAuth string `json:"tokenAuth,omitempty"`
	// Scopes requested; "openid" is always added (default openid, profile,
	// email).
	Scopes []string `json:"scopes,omitempty"`
	// Use lists where the provider's logins land: "portal", "mailbox" or
	// both (default portal).
	Use []Purpose `json:"use,omitempty"`
	// UserInfo: also read the claims of the userinfo endpoint (their sub
	// must be the ID token's; the ID token's claims win).
	UserInfo bool `json:"userInfo,omitempty"`
	// UserClaim carries the posthub user id (default "sub"); its value is
	// lower-cased and must be a valid user id.
	UserClaim string `json:"userClaim,omitempty"`
	// UserIDSuffix, when set, is a suffix every user id this provider
	// asserts must end with (e.g. "@kommune.dk"), so it cannot log in
	// accounts outside its namespace, such as the break-glass operator.
	UserIDSuffix string `json:"userIdSuffix,omitempty"`
	// OrganisationClaim carries the CVR number of the organisation the
	// person acts for, when the provider asserts one (MitID Erhverv). Then
	// every privilege the person holds must be in that organisation, and in
	// the mailbox they are that organisation's user.
	OrganisationClaim string `json:"organisationClaim,omitempty"`
	// CPRClaim carries a citizen's CPR number (mailbox logins).
	CPRClaim string `json:"cprClaim,omitempty"`
	// GroupClaim carries the person's groups or roles (a string or a list
	// of strings); GroupPrivileges maps them to privileges.
	GroupClaim      string           `json:"groupClaim,omitempty"`
	GroupPrivileges []GroupPrivilege `json:"groupPrivileges,omitempty"`
	// PostLogoutRedirectURL, when set, is sent with RP-initiated logout
	// (it must be registered at the provider).
	PostLogoutRedirectURL string `json:"postLogoutRedirectUrl,omitempty"`
}

// GroupPrivilege maps a group (a value of the group claim) to a privilege
// in one organisation. The mapping owns that (privilege, organisation) for
// the provider's users: at each login it is granted when the person is in
// the group and revoked when they are not.
type GroupPrivilege struct {
	Group        string `json:"group"`
	Privilege    string `json:"privilege"`
	Organisation string `json:"organisation"`
}

var nameRe = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// ParseProviders reads the -oidc-providers setting: a JSON list of
// providers, inline (starting with '[') or in the file it names. "" is no
// providers. getenv resolves ClientSecretEnv.
func ParseProviders(setting string, getenv func(string) string) ([]ProviderConfig, error) {
	setting = strings.TrimSpace(setting)
	if setting == "" {
		return nil, nil
	}
	b := []byte(setting)
	if !strings.HasPrefix(setting, "[") {
		var err error
		if b, err = os.ReadFile(setting); err != nil {
			return nil, fmt.Errorf("oidc providers: %w", err)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var ps []ProviderConfig
	if err := dec.Decode(&ps); err != nil {
		return nil, fmt.Errorf("oidc providers: %w", err)
	}
	seen := map[string]bool{}
	for i := range ps {
		p := &ps[i]
		if err := p.normalise(getenv); err != nil {
			return nil, fmt.Errorf("oidc provider %d (%q): %w", i+1, p.Name, err)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("oidc provider %q is configured twice", p.Name)
		}
		seen[p.Name] = true
	}
	return ps, nil
}

// normalise fills defaults and checks the configuration whole.
func (p *ProviderConfig) normalise(getenv func(string) string) error {
	if !nameRe.MatchString(p.Name) {
		return fmt.Errorf("name must be 1–32 of a–z, 0–9, '-'")
	}
	if p.Label == "" {
		p.Label = p.Name
	}
	u, err := url.Parse(p.Issuer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && loopback(u.Hostname()))) {
		return fmt.Errorf("issuer %q must be an https URL (http only on a loopback host)", p.Issuer)
	}
	if p.ClientID == "" {
		return fmt.Errorf("clientId is required")
	}
	if p.ClientSecretEnv != "" {
		if p.ClientSecret != "" {
			return fmt.Errorf("set clientSecret or clientSecretEnv, not both")
		}
		if getenv != nil {
			p.ClientSecret = getenv(p.ClientSecretEnv)
		}
		if p.ClientSecret == "" {
			return fmt.Errorf("clientSecretEnv %s is empty", p.ClientSecretEnv)
		}
	}
	switch p.TokenAuth {
	case "":
		p.TokenAuth = "client_secret_basic"
		if p.ClientSecret == "" {
			p.TokenAuth = "none"
		}
	case "client_secret_basic", "client_secret_post":
		if p.ClientSecret == "" {
			return fmt.Errorf("tokenAuth %s needs a client secret", p.TokenAuth)
		}
	case "none":
	default:
		return fmt.Errorf("tokenAuth %q is not client_secret_basic, client_secret_post or none", p.TokenAuth)
	}
	if len(p.Scopes) == 0 {
		p.Scopes = []string{"openid", "profile", "email"}
	} else if !slices.Contains(p.Scopes, "openid") {
		p.Scopes = append([]string{"openid"}, p.Scopes...)
	}
	if len(p.Use) == 0 {
		p.Use = []Purpose{Portal}
	}
	for _, use := range p.Use {
		if use != Portal && use != Mailbox {
			return fmt.Errorf("use %q is not portal or mailbox", use)
		}
	}
	if p.UserClaim == "" {
		p.UserClaim = "sub"
	}
	p.UserIDSuffix = strings.ToLower(p.UserIDSuffix)
	if p.Uses(Mailbox) && p.CPRClaim == "" && p.OrganisationClaim == "" {
		return fmt.Errorf("a mailbox provider needs cprClaim (citizens) or organisationClaim (company users)")
	}
	if len(p.GroupPrivileges) > 0 && p.GroupClaim == "" {
		return fmt.Errorf("groupPrivileges need a groupClaim")
	}
	for _, gp := range p.GroupPrivileges {
		if gp.Group == "" {
			return fmt.Errorf("a group privilege needs a group")
		}
		r, ok := rbac.RoleByName(gp.Privilege)
		if !ok || r.System || r.Global {
			return fmt.Errorf("group %q: %q is not an organisation privilege (global privileges are never mapped)", gp.Group, gp.Privilege)
		}
		if !hub.ValidCVR(gp.Organisation) {
			return fmt.Errorf("group %q: organisation %q is not a CVR number", gp.Group, gp.Organisation)
		}
	}
	if p.PostLogoutRedirectURL != "" {
		if u, err := url.Parse(p.PostLogoutRedirectURL); err != nil || !u.IsAbs() {
			return fmt.Errorf("postLogoutRedirectUrl %q is not an absolute URL", p.PostLogoutRedirectURL)
		}
	}
	return nil
}

// Uses reports whether the provider's logins may land at purpose.
func (p *ProviderConfig) Uses(purpose Purpose) bool { return slices.Contains(p.Use, purpose) }

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
