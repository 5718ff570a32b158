package oidc

import (
	"fmt"
	"strings"

	"github.com/posthub/posthub/hub"
)

// What a provider asserts about a person is outside input too, and some of
// it — the subject, the user id, the organisation — is written into the
// event log, which auditors read and nobody can correct afterwards. So a
// claim posthub keys on is taken exactly as sent or the login is refused,
// never trimmed, folded or cut into something it was not (a user id cut
// to fit could be another user's); and what an event or a page repeats of
// a claim is clean (echo.go): a valid claim as it is, a refused one
// without control or formatting characters and at most the bounds below.
// The bounds are constants, like echo's: they are what the identifiers
// are, not something an operator tunes. A user claim that is no user id
// (rbac.ValidUserID) refuses the login where a user id is needed
// (oidc.user.invalid), and is shown no longer than a user id can be:
// rbac.MaxUserIDLen, the one bound ValidUserID itself applies.
const (
	// maxSubject is OpenID Connect Core §2's bound on sub ("MUST NOT
	// exceed 255 ASCII characters"). A longer subject, or one with a
	// character that is not printable, refuses the login
	// (oidc.subject.invalid): the subject is who the event log says logged
	// in, and a provider that sends such a one is broken or hostile.
	maxSubject = 255
	// maxOrganisationShown bounds what is shown of an organisation claim
	// that is no CVR number (8 digits, which refuses the login with
	// oidc.organisation.invalid): enough to see what the provider sent
	// instead (a UUID, "DK12345678", nine digits) and no more.
	maxOrganisationShown = 64
)

// Identity is who a provider vouched for, read from the verified claims as
// the provider's configuration says.
type Identity struct {
	Provider string
	// Subject is the ID token's sub: the provider's id of the person.
	Subject string
	// UserID is the posthub user id (the user claim, lower-cased); "" when
	// the claim is absent.
	UserID string
	// Organisation is the CVR number the provider asserts the person acts
	// for ("" when it asserts none).
	Organisation string
	// CPR is a citizen's CPR number ("" when not asserted).
	CPR string
	// Groups are the values of the group claim.
	Groups []string
}

// identity reads the configured claims. A claim of another type than the
// one expected reads as absent. The user claim is lower-cased in ASCII
// only, and neither it nor the organisation is trimmed: a claim that is
// not an identifier as sent is refused where it is used, not mended into
// one.
func (c *ProviderConfig) identity(id Identity, claims map[string]any) Identity {
	id.UserID = lowerASCII(claimString(claims, c.UserClaim))
	if c.OrganisationClaim != "" {
		id.Organisation = claimString(claims, c.OrganisationClaim)
	}
	if c.CPRClaim != "" {
		id.CPR = strings.ReplaceAll(strings.TrimSpace(claimString(claims, c.CPRClaim)), "-", "")
	}
	if c.GroupClaim != "" {
		switch v := claims[c.GroupClaim].(type) {
		case string:
			id.Groups = []string{v}
		case []any:
			for _, g := range v {
				if s, ok := g.(string); ok {
					id.Groups = append(id.Groups, s)
				}
			}
		}
	}
	return id
}

// checkClaims refuses an identity whose subject or organisation cannot be
// what it claims to be, before anything is read or written on its behalf.
// The user claim is checked where a user id is needed (a citizen's
// mailbox login needs none).
func (c *ProviderConfig) checkClaims(id Identity) error {
	if id.Subject == "" || len(id.Subject) > maxSubject || !printable(id.Subject) {
		return refusal(hub.Unauthorized, "oidc.subject.invalid",
			fmt.Sprintf("%s sent a subject (sub) that is empty, longer than %d bytes, or has characters that are not printable; posthub cannot name you with it.",
				c.Label, maxSubject), nil)
	}
	if id.Organisation != "" && !hub.ValidCVR(id.Organisation) {
		return c.badOrganisation(id)
	}
	return nil
}

func (c *ProviderConfig) badOrganisation(id Identity) error {
	return refusal(hub.Forbidden, "oidc.organisation.invalid",
		fmt.Sprintf("%s asserted the organisation %q, which is not a CVR number.", c.Label, clean(id.Organisation, maxOrganisationShown)), nil)
}

// lowerASCII is s with A–Z lower-cased and nothing else changed.
// strings.ToLower would fold the Kelvin sign (U+212A) into 'k', so a user
// claim "\u212Aaren" would log in as karen.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// claimString is a string claim's value; a number (some providers send a
// CVR as one) is written in full.
func claimString(claims map[string]any, name string) string {
	switch v := claims[name].(type) {
	case string:
		return v
	case float64:
		if v == float64(int64(v)) {
			return fmt.Sprintf("%d", int64(v))
		}
	}
	return ""
}

func containsFold(s, substr string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(substr))
}
