package oidc

import (
	"fmt"
	"strings"
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
// one expected reads as absent.
func (c *ProviderConfig) identity(id Identity, claims map[string]any) Identity {
	id.UserID = strings.ToLower(strings.TrimSpace(claimString(claims, c.UserClaim)))
	if c.OrganisationClaim != "" {
		id.Organisation = strings.TrimSpace(claimString(claims, c.OrganisationClaim))
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
