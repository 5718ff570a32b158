package web

import (
	"context"
	"net/http"

	"github.com/posthub/posthub/api/status"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/rbac/oidc"
)

// OpenID Connect logins of the mailbox: citizens (a CPR claim) and company
// users (a CVR claim and a user id) through the RP's mailbox providers —
// NemLog-in with MitID or MitID Erhverv in production.
const (
	// CallbackPath is the redirect URI's path to register at a provider.
	CallbackPath   = Prefix + "/oidc/callback"
	flowCookie     = "posthub_mailbox_oidc_flow"
	providerCookie = "posthub_mailbox_oidc_provider"
)

// Revocations are the hub's session generations (hub.Users): a mailbox
// session carries its person's generation, under the id "mailbox:<person>"
// (':' is in no posthub user id), and logging out moves it on, which ends
// the person's mailbox sessions on every instance.
type Revocations = rbac.Generations

// mailboxGenerations are the mailbox sessions' generations, kept among
// the hub's under "mailbox:<person>"; without Revocations every session is
// at generation 0 and logging out ends only this browser's.
type mailboxGenerations struct{ r Revocations }

func (g mailboxGenerations) SessionGeneration(ctx context.Context, sessionUser string) (uint64, error) {
	if g.r == nil {
		return 0, nil
	}
	return g.r.SessionGeneration(ctx, "mailbox:"+sessionUser)
}

func (g mailboxGenerations) BumpSessionGeneration(ctx context.Context, sessionUser string) (uint64, error) {
	if g.r == nil {
		return 0, nil
	}
	return g.r.BumpSessionGeneration(ctx, "mailbox:"+sessionUser)
}

func (m *Mailbox) callbackURL(r *http.Request) string {
	return oidc.CallbackURL(m.cfg.PublicURL, r, m.secure(r), CallbackPath)
}

func (m *Mailbox) laxCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, rbac.HostCookie(name, value, Prefix+"/", m.secure(r), http.SameSiteLaxMode, maxAge))
}

// oidcStart sends the browser to the provider.
func (m *Mailbox) oidcStart(w http.ResponseWriter, r *http.Request) {
	if m.cfg.OIDC == nil {
		m.fail(w, r, http.StatusNotFound, "No identity provider is configured for this mailbox.")
		return
	}
	authURL, flow, err := m.cfg.OIDC.Start(r.PathValue("provider"), oidc.Mailbox, m.callbackURL(r), "")
	if err != nil {
		m.failErr(w, r, err)
		return
	}
	// Lax, not Strict: the callback is a navigation from the provider's site.
	m.laxCookie(w, r, flowCookie, flow, int(m.cfg.OIDC.FlowTTL().Seconds()))
	http.Redirect(w, r, authURL, http.StatusSeeOther)
}

// oidcCallback completes the login. The session cookie is SameSite=Strict,
// which a browser does not send on the rest of a navigation that began on
// the provider's site, so the way on to the mailbox is a page of this site
// that moves on at once.
func (m *Mailbox) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if m.cfg.OIDC == nil {
		m.fail(w, r, http.StatusNotFound, "No identity provider is configured for this mailbox.")
		return
	}
	var flow string
	if c, err := m.cookie(r, flowCookie); err == nil {
		flow = c.Value
	}
	m.laxCookie(w, r, flowCookie, "", -1)
	p, _, err := m.cfg.OIDC.LoginMailbox(r.Context(), flow, r.URL.Query(), m.callbackURL(r))
	if err != nil {
		m.failErr(w, r, err)
		return
	}
	person := DemoPerson{CPR: p.CPR, CVR: p.CVR, UserID: p.UserID}
	if err := m.startSession(w, r, person); err != nil {
		m.failErr(w, r, err)
		return
	}
	m.laxCookie(w, r, providerCookie, p.Provider, int(sessionTTL.Seconds()))
	vp, _ := parseSessionUser(sessionUser(person))
	m.show(w, http.StatusOK, "continue", page{Title: "You are logged in", Refresh: boxURL(vp), Data: boxURL(vp)})
}

// failErr shows a refusal or failure as a page with its status.
func (m *Mailbox) failErr(w http.ResponseWriter, r *http.Request, err error) {
	code, msg, ok := oidc.Explain(err)
	if !ok {
		m.cfg.Log.Warn("web mailbox: login", "error", err)
		m.fail(w, r, http.StatusInternalServerError, "Something went wrong; please try again.")
		return
	}
	m.fail(w, r, status.Of(code), msg)
}

// endAtProvider forgets the session's provider and returns its end-session
// URL ("" when none).
func (m *Mailbox) endAtProvider(w http.ResponseWriter, r *http.Request) string {
	c, err := m.cookie(r, providerCookie)
	if err != nil || m.cfg.OIDC == nil {
		return ""
	}
	m.laxCookie(w, r, providerCookie, "", -1)
	return m.cfg.OIDC.LogoutURL(c.Value)
}
