package oidc

import (
	"errors"
	"net/http"
	"strings"

	"github.com/posthub/posthub/hub"
)

// What the login pages of the portal and the web mailbox share: where a
// provider sends the browser back, how a refused login reads, and the
// refusal of a password login on a hub without local passwords.

// CallbackURL is the redirect URI whose path is path: publicURL's, or the
// request's host with https when secure, else http (the provider checks it
// against the registered redirect URIs either way).
func CallbackURL(publicURL string, r *http.Request, secure bool, path string) string {
	if publicURL != "" {
		return strings.TrimSuffix(publicURL, "/") + path
	}
	scheme := "http"
	if secure {
		scheme = "https"
	}
	return scheme + "://" + r.Host + path
}

// Explain is what a login page shows of a failed login: its code and its
// message, followed by the refusal's reason when that says more than the
// code. ok is false for an internal error (or one that is no *hub.Error),
// whose cause is the operator's, not the visitor's.
func Explain(err error) (code hub.Code, msg string, ok bool) {
	var he *hub.Error
	if !errors.As(err, &he) || he.Code == hub.Internal {
		return hub.Internal, "", false
	}
	msg = he.Message
	if r := Reason(err); r != "" && r != string(he.Code) {
		msg += " (" + r + ")"
	}
	return he.Code, msg, true
}

// PasswordsOff refuses a password login on a hub whose local passwords
// are switched off (-password-login=false): Forbidden, reason
// password.off, on the API and the portal alike. hint tells the caller
// where to log in instead.
func PasswordsOff(hint string) error {
	return Refused(hub.Forbidden, "password.off", "local passwords are switched off on this hub; "+hint)
}
