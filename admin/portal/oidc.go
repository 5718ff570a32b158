package portal

import (
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/posthub/posthub/api/status"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/rbac/oidc"
)

// OpenID Connect logins of the portal. The session they end in is the
// same as a password login's, so the session API (GET /apis/v1/session)
// accepts it too.
const (
	// oidcFlowCookie carries a started login's sealed state, nonce and PKCE
	// verifier to the callback. SameSite=Lax: the callback is a top-level
	// navigation from the provider's site. __Host- over TLS
	// (rbac.HostCookie): a flow cookie planted by another host of the
	// domain would complete the attacker's login in the victim's browser
	// (login CSRF).
	oidcFlowCookie = "posthub_oidc_flow"
	// oidcProviderCookie names the provider a session came from, for
	// RP-initiated logout. It grants nothing.
	oidcProviderCookie = "posthub_oidc_provider"
	// CallbackPath is the redirect URI's path to register at a provider.
	CallbackPath = "/admin/oidc/callback"
)

// localPaths are the prefixes a login may end under: the portal's pages
// (its login links carry the page that asked for the login) and the API
// (the session API's provider links, for a client on this hub).
var localPaths = []string{"/admin/", "/apis/"}

// localPath returns next when it is a path on this hub under localPaths,
// else "". It is where the browser goes after a login, so it is checked as
// a browser would read it, not as a string: a browser drops tabs and
// newlines inside a URL and reads '\' as '/', so "/\t/evil.example" or
// "/\\evil.example" would leave the hub. Hence no control bytes, spaces or
// backslashes at all, no scheme or host, and a path that stays under one
// of localPaths once its dot segments are resolved.
func localPath(next string) string {
	for i := 0; i < len(next); i++ {
		if c := next[i]; c < 0x21 || c == 0x7f || c == '\\' {
			return ""
		}
	}
	if strings.HasPrefix(next, "//") {
		return ""
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return ""
	}
	clean := path.Clean(u.Path)
	if strings.HasSuffix(u.Path, "/") {
		clean += "/"
	}
	for _, prefix := range localPaths {
		if strings.HasPrefix(u.Path, prefix) && strings.HasPrefix(clean, prefix) {
			return next
		}
	}
	return ""
}

// callbackURL is where providers send the browser back: PublicURL's, or
// this request's scheme and host.
func (p *Portal) callbackURL(r *http.Request) string {
	return oidc.CallbackURL(p.PublicURL, r, p.secure(r), CallbackPath)
}

// oidcStart sends the browser to the provider.
func (p *Portal) oidcStart(q *req) error {
	if p.OIDC == nil {
		return hub.Errorf(hub.NotFound, "no OpenID provider is configured")
	}
	next := localPath(q.r.URL.Query().Get("next"))
	authURL, flow, err := p.OIDC.Start(q.r.PathValue("provider"), oidc.Portal, p.callbackURL(q.r), next)
	if err != nil {
		return err
	}
	http.SetCookie(q.w, rbac.HostCookie(oidcFlowCookie, flow, "/admin/oidc/", p.secure(q.r), http.SameSiteLaxMode,
		int(p.OIDC.FlowTTL().Seconds())))
	http.Redirect(q.w, q.r, authURL, http.StatusSeeOther)
	return nil
}

// oidcCallback completes the login and issues the session, or shows why
// not.
func (p *Portal) oidcCallback(q *req) error {
	if p.OIDC == nil {
		return hub.Errorf(hub.NotFound, "no OpenID provider is configured")
	}
	var flow string
	if c, err := q.r.Cookie(rbac.HostCookieName(oidcFlowCookie, p.secure(q.r))); err == nil {
		flow = c.Value
	}
	http.SetCookie(q.w, rbac.HostCookie(oidcFlowCookie, "", "/admin/oidc/", p.secure(q.r), http.SameSiteLaxMode, -1))
	u, id, next, err := p.OIDC.LoginPortal(q.r.Context(), flow, q.r.URL.Query(), p.callbackURL(q.r))
	if err != nil {
		code, msg, ok := oidc.Explain(err)
		if !ok {
			return err
		}
		p.render(q, status.Of(code), "error", view{Title: "You are not logged in", Error: msg})
		return nil
	}
	if err := p.issueSession(q, u); err != nil {
		return err
	}
	http.SetCookie(q.w, rbac.HostCookie(oidcProviderCookie, id.Provider, "/", p.secure(q.r), http.SameSiteLaxMode, 0))
	if next == "" {
		next = "/admin/"
	}
	http.Redirect(q.w, q.r, next, http.StatusSeeOther)
	return nil
}

// endAtProvider is the provider's end-session URL when the session came
// from a provider that has one (RP-initiated logout), else "".
func (p *Portal) endAtProvider(w http.ResponseWriter, r *http.Request) string {
	return ProviderLogout(p.OIDC, w, r, p.secure(r))
}

// ProviderLogout forgets which provider the session came from and returns
// that provider's end-session URL (RP-initiated logout), or "" when it
// came from none or the provider has no end_session_endpoint. The portal's
// logout and the session API's DELETE share it.
func ProviderLogout(rp *oidc.RP, w http.ResponseWriter, r *http.Request, secure bool) string {
	c, err := r.Cookie(rbac.HostCookieName(oidcProviderCookie, secure))
	if err != nil {
		return ""
	}
	http.SetCookie(w, rbac.HostCookie(oidcProviderCookie, "", "/", secure, http.SameSiteLaxMode, -1))
	return rp.LogoutURL(c.Value)
}

// loginData is what the login page shows: the providers, and the password
// form unless local passwords are off.
func (p *Portal) loginData(r *http.Request) map[string]any {
	return map[string]any{"Providers": p.OIDC.Providers(oidc.Portal), "Passwords": !p.NoPasswords,
		"Next": localPath(r.URL.Query().Get("next"))}
}

// ProviderLinks lists the portal's providers with the path that starts a
// login at each (for the session API).
func ProviderLinks(rp *oidc.RP, next string) []map[string]string {
	out := []map[string]string{}
	for _, i := range rp.Providers(oidc.Portal) {
		u := "/admin/oidc/" + i.Name + "/login"
		if next = localPath(next); next != "" {
			u += "?next=" + url.QueryEscape(next)
		}
		out = append(out, map[string]string{"name": i.Name, "label": i.Label, "loginUrl": u})
	}
	return out
}
