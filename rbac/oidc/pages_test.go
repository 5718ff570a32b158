package oidc

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/posthub/posthub/hub"
)

func TestCallbackURL(t *testing.T) {
	r := httptest.NewRequest("GET", "http://hub.example:8080/admin/login", nil)
	for _, c := range []struct {
		name, public string
		secure       bool
		want         string
	}{
		{"the public URL wins, without a doubled slash", "https://post.example/", false, "https://post.example/cb"},
		{"else the request's host over http", "", false, "http://hub.example:8080/cb"},
		{"and over https when served securely", "", true, "https://hub.example:8080/cb"},
	} {
		if got := CallbackURL(c.public, r, c.secure, "/cb"); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestExplain(t *testing.T) {
	for _, c := range []struct {
		name  string
		err   error
		code  hub.Code
		msg   string
		shown bool
	}{
		{"a refusal shows its reason", Refused(hub.Forbidden, "user.inactive", "not let in"), hub.Forbidden, "not let in (user.inactive)", true},
		{"a reason that is the code is not repeated", hub.Errorf(hub.Unauthorized, "log in again"), hub.Unauthorized, "log in again", true},
		{"a wrapped refusal is found", fmt.Errorf("login: %w", Refused(hub.Unauthorized, "state.unknown", "start again")), hub.Unauthorized, "start again (state.unknown)", true},
		{"an internal error is not shown", hub.Errorf(hub.Internal, "disk on fire"), hub.Internal, "", false},
		{"nor an error without a code", errors.New("boom"), hub.Internal, "", false},
	} {
		code, msg, ok := Explain(c.err)
		if code != c.code || msg != c.msg || ok != c.shown {
			t.Errorf("%s: %q %q %v", c.name, code, msg, ok)
		}
	}
}

func TestPasswordsOff(t *testing.T) {
	err := PasswordsOff("use a provider")
	if hub.ErrorCode(err) != hub.Forbidden || Reason(err) != "password.off" {
		t.Fatalf("%v: code %q reason %q", err, hub.ErrorCode(err), Reason(err))
	}
}
