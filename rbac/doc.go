// Package rbac owns who may do what: the FBRS-style roles of the national
// hub modelled in casbin v2 with domains, their policies stored through
// hub.Policies (so every metadata backend holds them), the authorisation
// decision, and the gin-free parts of authentication for humans: argon2id
// password hashes, the one login both the API and the portal call
// (Sessions.Login), and signed session cookies with CSRF tokens.
//
// Model. A request is (subject, domain, permission). The domain is an
// organisation's CVR number, or Global ("*") for the hub-wide roles. Role
// grants are casbin "g" lines (user, role, domain); what a role may do is a
// built-in "p" line per (role, permission) — see Roles — plus any extra "p"
// lines an operator stores. Global roles (HUB_OPERATOR, AUDITOR) apply in
// every domain. A system is bound to its role (SENDER_SYSTEM,
// RECIPIENT_SYSTEM, VIEWER_SYSTEM) in its own organisation by its
// registration; it is never granted anything by a policy line.
//
// Guarantees.
//   - Fail closed: an unknown permission, subject or domain is refused; a
//     route without a permission cannot be registered (see package api).
//   - Tenancy: an organisation role allows nothing in another domain.
//   - Convergence: a change made through Enforcer.Grant/Revoke is in force
//     on the instance that made it when the call returns, and on every
//     other instance sharing the store within PollInterval plus one policy
//     load (each instance polls hub.Policies.PolicyStamp).
//   - Logins are bounded: at most Hasher's concurrency password hashes
//     run at once (each holds 64 MiB), the rest wait briefly, then are
//     refused with a RetryAfter; guessing is slowed per (user, client
//     address) and per address (Throttle), never by locking the user out
//     everywhere; an unknown or inactive user costs the same check as a
//     real one.
//   - Revocation: a session is refused on every instance once the user's
//     session generation in the store has moved on (logout, password
//     change, a grant or revocation that changed something). A grant
//     answered Conflict or a revocation answered NotFound ends no session;
//     a change ends them only once it is durable (see Enforcer.Grant and
//     Enforcer.Revoke for when ending them fails).
//   - Speed: decisions are answered from a per-(subject, domain) bit set
//     computed once per policy version, so a decision is a map lookup.
package rbac
