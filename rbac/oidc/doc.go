// Package oidc is posthub as an OpenID Connect relying party: people log
// into the admin portal (and with it the session API) and the reference
// web mailbox through their organisation's identity provider — Microsoft
// Entra ID, AD FS, Keycloak, NemLog-in with MitID or MitID Erhverv — instead
// of a password posthub stores. It owns the login flow and the mapping of a
// verified identity onto posthub's users; it issues no session (the
// caller does, with rbac.Sessions) and grants nothing but the configured
// group mapping.
//
// The flow is the authorization code flow with PKCE (S256), a fresh state
// and nonce per login, all three sealed (AES-GCM, a key derived from the
// session key) in a short-lived cookie that only this browser carries back.
// Token handling is github.com/coreos/go-oidc/v3 with golang.org/x/oauth2;
// this package adds only what they leave to the caller.
//
// Guarantees.
//   - An ID token is accepted only when go-oidc has verified its signature
//     against the keys the provider publishes, its issuer, its audience
//     (the client id), its expiry and not-before; and this package its
//     issued-at (not in the future, 5 min skew), its nonce (present, the
//     flow's), and, when present, its access-token hash. Userinfo claims
//     are used only when their sub is the ID token's.
//   - A callback is accepted once: its state must be the one sealed in the
//     browser's flow cookie, unexpired, and not used before on this
//     instance; on another instance a replay fails at the provider, whose
//     authorization codes are single-use.
//   - A portal login maps to an existing, active posthub user named by the
//     configured claim; an identity without one gets no session and a page
//     that says so. Privileges stay posthub's (granted as today); the only
//     ones a provider decides are those of its group mapping, applied at
//     each login, logged, and never global.
//   - When a provider asserts an organisation (a CVR claim, as MitID
//     Erhverv does), the person acts for that organisation only: a login
//     whose user would hold a privilege anywhere else is refused, with
//     nothing changed.
//   - Every login and every refusal is an event (USER_LOGGED_IN,
//     USER_LOGIN_REFUSED) naming the provider, the subject and the reason;
//     never a token, and for a citizen never the CPR number.
//   - The claims posthub keys on are taken as sent or the login is
//     refused, never trimmed, case-folded beyond ASCII or cut: a subject
//     must be 1–255 bytes of printable characters (oidc.subject.invalid),
//     an asserted organisation a CVR number (oidc.organisation.invalid),
//     a user claim, where a user is needed, a posthub user id
//     (oidc.user.invalid). An event, a log line or a page shows a claim
//     clean and bounded — a refused one without control or formatting
//     characters and cut with a marker past its field's bound
//     (identity.go) — so a provider cannot write long or forged text into
//     the event log.
//   - A provider's answers are outside input: the RP reads at most 4 KiB
//     of an error answer and 1 MiB of any other, and repeats of a
//     provider's words (in an error, a log line, a page) at most 512
//     bytes, on one line, without control, formatting or other
//     unprintable characters and without the
//     login's secrets — client secret, code, PKCE verifier, tokens
//     (echo.go).
//   - Nothing is fetched at start: a provider is discovered at its first
//     login (then again at most every 5 s while it fails), so the hub
//     starts and its password break-glass login works while a provider is
//     down.
package oidc
