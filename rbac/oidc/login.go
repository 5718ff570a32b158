package oidc

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
)

// Accounts is what a portal login needs of the users.
type Accounts interface {
	// GetUser returns NotFound when absent.
	GetUser(ctx context.Context, id string) (hub.User, error)
}

// Privileges is what a portal login needs of the policies (an
// *rbac.Enforcer): the user's grants, and granting and revoking mapped
// privileges.
type Privileges interface {
	Grants(dom, user string) []rbac.Grant
	Grant(ctx context.Context, g rbac.Grant) error
	Revoke(ctx context.Context, g rbac.Grant) error
}

// Event tags of logins. Password logins use them too (provider
// "password").
const (
	TagLoggedIn     = "USER_LOGGED_IN"
	TagLoginRefused = "USER_LOGIN_REFUSED"
	TagLoggedOut    = "USER_LOGGED_OUT"
)

// LoginEvent is the event log entry of a login or a refusal: who asked
// (provider, subject, user id, organisation), where (via), and for a
// refusal why (the reason code). Never a token, a password or a CPR
// number. The claims are shown clean and bounded (identity.go): a refused
// login's claim may be anything a provider sent.
func LoginEvent(via string, id Identity, err error) hub.Event {
	ev := hub.Event{Tag: TagLoggedIn, Actor: "user:" + id.UserID, Detail: map[string]string{"via": via, "provider": id.Provider}}
	if id.Provider == "" {
		ev.Detail["provider"] = "unknown"
	}
	switch {
	case id.Provider != "password":
		ev.Actor = "oidc:" + ev.Detail["provider"]
	case !rbac.ValidUserID(id.UserID):
		ev.Actor = "login:password"
	}
	if id.Subject != "" {
		ev.Detail["subject"] = clean(id.Subject, maxSubject)
	}
	if id.UserID != "" {
		ev.Detail["userId"] = clean(id.UserID, rbac.MaxUserIDLen)
	}
	if id.Organisation != "" {
		ev.Detail["organisation"] = clean(id.Organisation, maxOrganisationShown)
		if hub.ValidCVR(id.Organisation) {
			ev.Orgs = []string{id.Organisation}
		}
	}
	if err != nil {
		ev.Tag = TagLoginRefused
		ev.Detail["reason"] = Reason(err)
	}
	return ev
}

// PasswordLoginEvent is LoginEvent for a password login of id (the
// provider "password"); the reason of a refusal comes from rbac's error
// code: unauthorized is password.wrong, rate_limited password.throttled,
// unavailable password.busy, unless err carries a reason of its own.
func PasswordLoginEvent(via, id string, err error) hub.Event {
	if !rbac.ValidUserID(id) {
		id = ""
	}
	if err != nil && Reason(err) == string(hub.ErrorCode(err)) {
		reason := map[hub.Code]string{hub.Unauthorized: "password.wrong", hub.RateLimited: "password.throttled",
			hub.Unavailable: "password.busy"}[hub.ErrorCode(err)]
		if reason == "" {
			reason = "password." + string(hub.ErrorCode(err))
		}
		err = refusal(hub.ErrorCode(err), reason, err.Error(), err)
	}
	return LoginEvent(via, Identity{Provider: "password", UserID: id}, err)
}

func (rp *RP) emit(ctx context.Context, ev hub.Event) {
	if rp.opts.Events == nil {
		return
	}
	if err := rp.opts.Events.Emit(ctx, ev); err != nil {
		rp.opts.Log.Warn("oidc: event log", "tag", ev.Tag, "error", err)
	}
}

// Record writes a login event (for the HTTP layer's refusals that happen
// before or after Login, such as a provider that cannot be reached).
func (rp *RP) Record(ctx context.Context, via string, id Identity, err error) {
	rp.emit(ctx, LoginEvent(via, id, err))
}

// LoginPortal completes a portal login (Finish) and maps the identity to a
// posthub user: the user claim names an existing, active user (inside the
// provider's UserIDSuffix); the group mapping is applied; when the
// provider asserts an organisation, every privilege the user holds after
// the mapping must be in that organisation. All of it is decided before
// anything is written, and the login or its refusal is in the event log.
// The caller issues the session.
func (rp *RP) LoginPortal(ctx context.Context, cookie string, q url.Values, redirectURL string) (hub.User, Identity, string, error) {
	id, next, err := rp.Finish(ctx, Portal, cookie, q, redirectURL)
	var u hub.User
	if err == nil {
		u, err = rp.mapUser(ctx, id)
	}
	rp.Record(ctx, "portal", id, err)
	return u, id, next, err
}

func (rp *RP) mapUser(ctx context.Context, id Identity) (hub.User, error) {
	if rp.opts.Users == nil || rp.opts.Privileges == nil {
		return hub.User{}, hub.Errorf(hub.Unavailable, "portal logins are not configured on this hub")
	}
	c := rp.providers[id.Provider].cfg
	noUser := func(reason, why string) error {
		return refusal(hub.Forbidden, reason, fmt.Sprintf("You are signed in at %s, but %s. You hold no privileges here; ask your organisation's user administrator.", c.Label, why), nil)
	}
	switch {
	case id.UserID == "":
		return hub.User{}, noUser("oidc.user.claim.missing", fmt.Sprintf("it did not say who you are (no %s claim)", c.UserClaim))
	case !rbac.ValidUserID(id.UserID):
		return hub.User{}, noUser("oidc.user.invalid", fmt.Sprintf("%q (its %s claim) cannot be a posthub user id", clean(id.UserID, rbac.MaxUserIDLen), c.UserClaim))
	case c.UserIDSuffix != "" && !strings.HasSuffix(id.UserID, c.UserIDSuffix):
		return hub.User{}, noUser("oidc.user.outside", fmt.Sprintf("%s may only log in users whose id ends in %s", c.Label, c.UserIDSuffix))
	}
	u, err := rp.opts.Users.GetUser(ctx, id.UserID)
	if hub.Is(err, hub.NotFound) || (err == nil && !u.Active) {
		return hub.User{}, noUser("oidc.user.unknown", fmt.Sprintf("posthub has no active user %s", id.UserID))
	}
	if err != nil {
		return hub.User{}, err
	}
	grant, revoke, err := c.plan(id, rp.opts.Privileges.Grants("", u.ID))
	if err != nil {
		return hub.User{}, err
	}
	if u.Org != "" && u.PasswordHash != "" {
		// An account with a password was made by its organisation, which
		// may know the password: no provider maps it privileges in
		// another (as no other organisation's administrator grants them).
		for _, g := range grant {
			if g.Domain != rbac.Global && g.Domain != u.Org {
				return hub.User{}, noUser("oidc.user.other.organisation",
					fmt.Sprintf("posthub's user %s, which has a password, belongs to organisation %s, and %s may not give it privileges in %s; ask the hub operator",
						id.UserID, u.Org, c.Label, g.Domain))
			}
		}
	}
	// A grant that answers Conflict was held already, a revocation that
	// answers NotFound was not held: another login of the same user (on
	// another instance, say) made the change between plan and write. The
	// login goes on, and the event log records only the change that was
	// made, once, by whoever made it.
	actor := "oidc:" + c.Name
	for _, g := range grant {
		if err := rp.opts.Privileges.Grant(ctx, g); hub.Is(err, hub.Conflict) {
			continue
		} else if err != nil {
			return hub.User{}, err
		}
		rp.emit(ctx, hub.Event{Tag: "PRIVILEGES_GRANTED", Actor: actor, Orgs: []string{g.Domain},
			Detail: map[string]string{"userId": g.User, "privilege": g.Role, "scope": g.Domain, "via": "group mapping", "subject": clean(id.Subject, maxSubject)}})
	}
	for _, g := range revoke {
		if err := rp.opts.Privileges.Revoke(ctx, g); hub.Is(err, hub.NotFound) {
			continue
		} else if err != nil {
			return hub.User{}, err
		}
		rp.emit(ctx, hub.Event{Tag: "PRIVILEGES_REVOKED", Actor: actor, Orgs: []string{g.Domain},
			Detail: map[string]string{"userId": g.User, "privilege": g.Role, "scope": g.Domain, "via": "group mapping", "subject": clean(id.Subject, maxSubject)}})
	}
	return u, nil
}

// plan decides the group mapping's grants and revocations for a user who
// holds held, and checks the result against the asserted organisation.
func (c *ProviderConfig) plan(id Identity, held []rbac.Grant) (grant, revoke []rbac.Grant, err error) {
	after := slices.Clone(held)
	for _, gp := range c.GroupPrivileges {
		g := rbac.Grant{User: id.UserID, Role: gp.Privilege, Domain: gp.Organisation}
		want := slices.ContainsFunc(c.GroupPrivileges, func(o GroupPrivilege) bool {
			return o.Privilege == gp.Privilege && o.Organisation == gp.Organisation && slices.Contains(id.Groups, o.Group)
		})
		has := slices.Contains(after, g)
		switch {
		case want && !has:
			grant = append(grant, g)
			after = append(after, g)
		case !want && has:
			revoke = append(revoke, g)
			after = slices.DeleteFunc(after, func(x rbac.Grant) bool { return x == g })
		}
	}
	if c.OrganisationClaim == "" {
		return grant, revoke, nil
	}
	switch {
	case id.Organisation == "":
		return nil, nil, refusal(hub.Forbidden, "oidc.organisation.missing",
			fmt.Sprintf("%s did not say which organisation you act for (no %s claim).", c.Label, c.OrganisationClaim), nil)
	case !hub.ValidCVR(id.Organisation):
		return nil, nil, c.badOrganisation(id)
	}
	for _, g := range after {
		if g.Domain != id.Organisation {
			return nil, nil, refusal(hub.Forbidden, "oidc.organisation.mismatch",
				fmt.Sprintf("%s says you act for organisation %s, but your privilege %s is in %s. Log in with an identity of that organisation, or ask for the privilege to be moved.",
					c.Label, id.Organisation, g.Role, scopeName(g.Domain)), nil)
		}
	}
	return grant, revoke, nil
}

func scopeName(dom string) string {
	if dom == rbac.Global {
		return "the global scope"
	}
	return "organisation " + dom
}

// Person is who a mailbox login is: a citizen (CPR) or a company user (CVR
// and user id).
type Person struct {
	CPR, CVR, UserID string
	// Provider is the provider that vouched for them.
	Provider string
}

// LoginMailbox completes a web-mailbox login (Finish) and names the person:
// a citizen when the provider asserts a valid CPR number, else a company
// user when it asserts a CVR number and a user id. Whose post they may read
// is the hub's decision at each request, not this login's.
func (rp *RP) LoginMailbox(ctx context.Context, cookie string, q url.Values, redirectURL string) (Person, string, error) {
	id, next, err := rp.Finish(ctx, Mailbox, cookie, q, redirectURL)
	p := Person{Provider: id.Provider}
	if err == nil {
		p, err = rp.providers[id.Provider].cfg.person(id)
	}
	if p.CPR != "" || id.CPR != "" {
		// The event log names citizens by subject, never by CPR (nor by
		// a user claim that might be one), refused or not.
		id.UserID = ""
	}
	id.CPR = ""
	rp.Record(ctx, "mailbox", id, err)
	return p, next, err
}

// person names who a mailbox login is.
func (c *ProviderConfig) person(id Identity) (Person, error) {
	p := Person{Provider: id.Provider}
	switch {
	case c.CPRClaim != "" && hub.ValidCPR(id.CPR):
		p.CPR = id.CPR
	case c.OrganisationClaim != "" && hub.ValidCVR(id.Organisation) && rbac.ValidUserID(id.UserID) &&
		c.UserIDSuffix != "" && !strings.HasSuffix(id.UserID, c.UserIDSuffix):
		// As for the portal: a provider speaks only for its own users.
		return p, refusal(hub.Forbidden, "oidc.user.outside",
			fmt.Sprintf("You are signed in at %s, but %s may only log in users whose id ends in %s.", c.Label, c.Label, c.UserIDSuffix), nil)
	case c.OrganisationClaim != "" && hub.ValidCVR(id.Organisation) && rbac.ValidUserID(id.UserID):
		p.CVR, p.UserID = id.Organisation, id.UserID
	case c.OrganisationClaim != "" && hub.ValidCVR(id.Organisation) && id.UserID != "":
		return p, refusal(hub.Forbidden, "oidc.user.invalid",
			fmt.Sprintf("You are signed in at %s for organisation %s, but %q (its %s claim) cannot be a user id.",
				c.Label, id.Organisation, clean(id.UserID, rbac.MaxUserIDLen), c.UserClaim), nil)
	default:
		return p, refusal(hub.Forbidden, "oidc.person.unknown",
			fmt.Sprintf("You are signed in at %s, but it did not assert a CPR number, or a CVR number and a user id, so there is no mailbox to open.", c.Label), nil)
	}
	return p, nil
}
