package rbac_test

import (
	"bytes"
	"testing"

	"github.com/posthub/posthub/rbac"
)

// TestVouch: a vouch holds for the texts and the session it was made for,
// and for nothing else.
func TestVouch(t *testing.T) {
	s := &rbac.Sessions{Key: bytes.Repeat([]byte{7}, 32)}
	anne, _ := s.Issue("anne", 1)
	bent, _ := s.Issue("bent", 1)
	token := s.Vouch(anne, "User carl created.", "")
	for _, tc := range []struct {
		name  string
		ss    rbac.Session
		token string
		texts []string
		want  bool
	}{
		{"the texts, in the session", anne, token, []string{"User carl created.", ""}, true},
		{"other texts", anne, token, []string{"The hub has moved.", ""}, false},
		{"the texts moved to the other field", anne, token, []string{"", "User carl created."}, false},
		{"another session", bent, token, []string{"User carl created.", ""}, false},
		{"no session", rbac.Session{}, s.Vouch(rbac.Session{}, "x"), []string{"x"}, false},
		{"no token", anne, "", []string{"User carl created.", ""}, false},
	} {
		if got := s.Vouched(tc.ss, tc.token, tc.texts...); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
