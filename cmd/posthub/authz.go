package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"

	"github.com/posthub/posthub/admin"
	"github.com/posthub/posthub/admin/portal"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/rbac/oidc"
)

// authz is the authorisation side of serve: the policy enforcer (following
// other instances through the store), human sessions and the admin portal.
type authz struct {
	enforcer *rbac.Enforcer
	sessions *rbac.Sessions
	portal   http.Handler
	// oidc is the relying party of -oidc-providers (nil: none).
	oidc *oidc.RP
}

// newAuthz loads the policies; the enforcer's Run, one of serve's
// background loops, follows their changes (-policy-poll-interval bounds how
// late another instance's change takes effect here). The session key is -session-key (hex, shared by all
// instances behind one load balancer) or DATA/session.key (created on first
// start). One Hasher bounds every password hash of the process: logins on
// the API and the portal, and account creation.
func newAuthz(ctx context.Context, env *Env, cfg serveConfig, store hub.Store, svc *admin.Service, log *slog.Logger) (*authz, error) {
	proxies, err := rbac.ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("-trusted-proxies: %w", err)
	}
	en, err := rbac.New(ctx, store, rbac.Options{PollInterval: cfg.PolicyPollInterval, Log: log})
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	var key []byte
	if cfg.SessionKey != "" {
		key, err = hex.DecodeString(cfg.SessionKey)
		if err != nil || len(key) < 32 {
			return nil, errors.New("-session-key (POSTHUB_SESSION_KEY) must be at least 32 bytes in hex")
		}
	} else if key, err = rbac.LoadOrCreateKey(filepath.Join(cfg.Data, "session.key")); err != nil {
		return nil, err
	}
	hasher := rbac.NewHasher(cfg.MaxPasswordHashes, cfg.PasswordHashWait)
	sessions := &rbac.Sessions{Key: key, Users: store, Hasher: hasher, Proxies: proxies,
		Throttle: rbac.Throttle{PerAddress: cfg.LoginRate, Delay: cfg.LoginDelay}}
	svc.Enforcer, svc.Hasher = en, hasher
	p := portal.New(svc, store, sessions, log)
	p.Secure = cfg.secureCookies()
	rp, err := newRP(cfg, env, key, svc, en, log)
	if err != nil {
		return nil, err
	}
	p.OIDC, p.NoPasswords, p.PublicURL = rp, !cfg.PasswordLogin, cfg.PublicURL
	return &authz{enforcer: en, sessions: sessions, portal: p, oidc: rp}, nil
}

// newRP is the OpenID Connect relying party of -oidc-providers (nil when
// none is configured). With -password-login=false the portal needs one.
func newRP(cfg serveConfig, env *Env, key []byte, svc *admin.Service, en *rbac.Enforcer, log *slog.Logger) (*oidc.RP, error) {
	providers, err := oidc.ParseProviders(cfg.OIDCProviders, env.Getenv)
	if err != nil {
		return nil, fmt.Errorf("-oidc-providers: %w", err)
	}
	if cfg.PublicURL != "" {
		if u, err := url.Parse(cfg.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("-public-url %q is not an http(s) URL", cfg.PublicURL)
		}
	}
	if len(providers) == 0 {
		if !cfg.PasswordLogin {
			return nil, errors.New("-password-login=false leaves no way into the portal: configure -oidc-providers")
		}
		return nil, nil
	}
	rp, err := oidc.New(providers, oidc.Options{Key: key, Users: svc.Store, Privileges: en, Events: svc.Events, Log: log})
	if err != nil {
		return nil, err
	}
	if !cfg.PasswordLogin && len(rp.Providers(oidc.Portal)) == 0 {
		return nil, errors.New("-password-login=false leaves no way into the portal: no provider in -oidc-providers has use \"portal\"")
	}
	return rp, nil
}
