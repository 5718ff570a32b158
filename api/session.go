package api

import (
	"context"
	"net/http"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
)

// Login checks a user's password (argon2id); a missing or inactive user
// costs the same time as a wrong password.
func Login(ctx context.Context, users hub.Users, id, password string) (hub.User, bool) {
	u, err := users.GetUser(ctx, id)
	if err != nil || !u.Active || u.PasswordHash == "" {
		return hub.User{}, rbac.CheckNoUser(password)
	}
	if !rbac.CheckPassword(u.PasswordHash, password) {
		return hub.User{}, false
	}
	return u, true
}

// SetSessionCookie sets (maxAge > 0) or clears the session cookie:
// HttpOnly, SameSite=Lax, Secure when served over TLS.
func SetSessionCookie(w http.ResponseWriter, value string, maxAge time.Duration, secure bool) {
	c := &http.Cookie{Name: rbac.SessionCookie, Value: value, Path: "/", HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode}
	if maxAge < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(maxAge / time.Second)
	}
	http.SetCookie(w, c)
}
