package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/posthub/posthub/admin"
	"github.com/posthub/posthub/admin/portal"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
	"github.com/posthub/posthub/rbac/oidc"
	"github.com/posthub/posthub/storage/bolt"
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

// newAuthz loads the policies and starts following their changes. The
// session key comes from POSTHUB_SESSION_KEY (hex, shared by all instances
// behind one load balancer) or <data>/session.key (created on first
// start); POSTHUB_POLICY_POLL_INTERVAL bounds how late another instance's
// policy change takes effect here (default 1s). One Hasher bounds every
// password hash of the process: logins on the API and the portal, and
// account creation.
func newAuthz(ctx context.Context, env *Env, cfg serveConfig, svc *admin.Service, log *slog.Logger) (*authz, error) {
	poll := time.Second
	if v := env.Getenv("POSTHUB_POLICY_POLL_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("POSTHUB_POLICY_POLL_INTERVAL: %q is not a positive duration", v)
		}
		poll = d
	}
	proxies, err := rbac.ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("-trusted-proxies: %w", err)
	}
	en, err := rbac.New(ctx, svc.Store, rbac.Options{PollInterval: poll, Log: log})
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	go en.Run(ctx)
	var key []byte
	if v := env.Getenv("POSTHUB_SESSION_KEY"); v != "" {
		key, err = hex.DecodeString(v)
		if err != nil || len(key) < 32 {
			return nil, errors.New("POSTHUB_SESSION_KEY must be at least 32 bytes in hex")
		}
	} else if key, err = rbac.LoadOrCreateKey(filepath.Join(cfg.Data, "session.key")); err != nil {
		return nil, err
	}
	hasher := rbac.NewHasher(cfg.MaxPasswordHashes, cfg.PasswordHashWait)
	sessions := &rbac.Sessions{Key: key, Users: svc.Store, Hasher: hasher, Proxies: proxies,
		Throttle: rbac.Throttle{PerAddress: cfg.LoginRate, Delay: cfg.LoginDelay}}
	svc.Enforcer, svc.Hasher = en, hasher
	p := portal.New(svc, sessions, log)
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

// runAdmin is `posthub admin`: offline administration of an embedded
// (bolt) hub — bootstrap the first hub operator, grant and revoke
// privileges, reset passwords. For a hub on MongoDB use the API or portal.
// Whoever can open the stopped hub's data directory holds the hub, so the
// command acts with a hub operator's power (actor "cli:posthub-admin"):
// the grantor rules of package admin, which bound what one administrator
// may hand another, do not apply to it. Each change is validated before it
// is made and recorded in the event log after.
func runAdmin(env *Env, args []string) int {
	subs := [][2]string{
		{"bootstrap", "create a user holding HUB_OPERATOR (the first administrator)"},
		{"grant", "grant a privilege: grant USER PRIVILEGE ORG|*"},
		{"revoke", "revoke a privilege: revoke USER PRIVILEGE ORG|*"},
		{"passwd", "set a user's password: passwd USER"},
		{"privileges", "list the privileges and the permissions each holds"},
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		usage(env.Stderr, "posthub admin", "offline administration of an embedded hub", subs)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub := args[0]
	fs := newFlagSet(env, "posthub admin "+sub, "[flags] args")
	data := fs.String("data", "./data", "data directory of the (stopped) embedded hub")
	name := fs.String("name", "", "bootstrap: the user's display name")
	password := fs.String("password", "", "bootstrap, passwd: the password (default: POSTHUB_ADMIN_PASSWORD, else one is generated and printed)")
	if rc := parseFlags(fs, args[1:]); rc >= 0 {
		return rc
	}
	if v := env.Getenv("POSTHUB_DATA"); v != "" && !flagSet(fs.Args(), "data") {
		*data = v
	}
	if sub == "privileges" {
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PRIVILEGE\tSCOPE\tPERMISSIONS")
		for _, r := range rbac.Roles {
			scope := "organisation"
			if r.Global {
				scope = "global"
			} else if r.System {
				scope = "system"
			}
			ps := make([]string, len(r.Perms))
			for i, p := range r.Perms {
				ps[i] = string(p)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, scope, strings.Join(ps, " "))
		}
		tw.Flush()
		return 0
	}
	ctx := context.Background()
	store, err := bolt.Open(filepath.Join(*data, "posthub.db"), bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		fmt.Fprintf(env.Stderr, "posthub admin: open %s: %v (is the hub running? stop it first)\n", *data, err)
		return 1
	}
	defer store.Close()
	en, err := rbac.New(ctx, store, rbac.Options{})
	if err != nil {
		fmt.Fprintln(env.Stderr, "posthub admin:", err)
		return 1
	}
	pw := *password
	if pw == "" {
		pw = env.Getenv("POSTHUB_ADMIN_PASSWORD")
	}
	rest := fs.Args()
	record := func(tag, org string, detail map[string]string) bool {
		ev := hub.Event{Tag: tag, Actor: "cli:posthub-admin", Detail: detail}
		if org != "" && org != rbac.Global {
			ev.Orgs = []string{org}
		}
		if err := (hub.StoreEvents{Store: store}).Emit(ctx, ev); err != nil {
			fmt.Fprintf(env.Stderr, "posthub admin %s: the change is made, but its %s entry could not be recorded in the event log: %v\n", sub, tag, err)
			return false
		}
		return true
	}
	switch sub {
	case "bootstrap":
		if len(rest) != 1 {
			fmt.Fprintln(env.Stderr, "usage: posthub admin bootstrap [-name NAME] [-password PW] USER")
			return 2
		}
		generated := pw == ""
		if generated {
			pw = randomPassword()
		}
		if err := createUser(ctx, store, rest[0], *name, pw); err != nil {
			fmt.Fprintln(env.Stderr, "posthub admin bootstrap:", err)
			return 1
		}
		if err := en.Grant(ctx, rbac.Grant{User: rest[0], Role: rbac.HubOperator, Domain: rbac.Global}); err != nil && hub.ErrorCode(err) != hub.Conflict {
			fmt.Fprintln(env.Stderr, "posthub admin bootstrap:", err)
			return 1
		}
		if !record("IDENTITY_CREATED", "", map[string]string{"userId": rest[0]}) ||
			!record("PRIVILEGES_GRANTED", "", map[string]string{"userId": rest[0], "privilege": rbac.HubOperator, "scope": rbac.Global}) {
			return 1
		}
		fmt.Fprintf(env.Stdout, "user %s holds %s\n", rest[0], rbac.HubOperator)
		if generated {
			fmt.Fprintf(env.Stdout, "password: %s\n", pw)
		}
		return 0
	case "grant", "revoke":
		if len(rest) != 3 {
			fmt.Fprintf(env.Stderr, "usage: posthub admin %s USER PRIVILEGE ORG|*\n", sub)
			return 2
		}
		g := rbac.Grant{User: rest[0], Role: strings.ToUpper(rest[1]), Domain: rest[2]}
		if err := rbac.ValidateGrant(g); err != nil {
			fmt.Fprintf(env.Stderr, "posthub admin %s: %v\n", sub, err)
			return 1
		}
		if sub == "grant" {
			if _, err := store.GetUser(ctx, g.User); err != nil {
				fmt.Fprintf(env.Stderr, "posthub admin grant: user %s: %v\n", g.User, err)
				return 1
			}
			err = en.Grant(ctx, g)
		} else {
			err = en.Revoke(ctx, g)
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "posthub admin %s: %v\n", sub, err)
			return 1
		}
		if !record(map[string]string{"grant": "PRIVILEGES_GRANTED", "revoke": "PRIVILEGES_REVOKED"}[sub], g.Domain,
			map[string]string{"userId": g.User, "privilege": g.Role, "scope": g.Domain}) {
			return 1
		}
		fmt.Fprintf(env.Stdout, "%s %s %s in %s\n", sub, g.User, g.Role, g.Domain)
		return 0
	case "passwd":
		if len(rest) != 1 {
			fmt.Fprintln(env.Stderr, "usage: posthub admin passwd [-password PW] USER")
			return 2
		}
		u, err := store.GetUser(ctx, rest[0])
		if err != nil {
			fmt.Fprintln(env.Stderr, "posthub admin passwd:", err)
			return 1
		}
		generated := pw == ""
		if generated {
			pw = randomPassword()
		}
		if u.PasswordHash, err = rbac.HashPassword(pw); err != nil {
			fmt.Fprintln(env.Stderr, "posthub admin passwd:", err)
			return 1
		}
		if err := store.PutUser(ctx, u); err != nil {
			fmt.Fprintln(env.Stderr, "posthub admin passwd:", err)
			return 1
		}
		if _, err := store.BumpSessionGeneration(ctx, u.ID); err != nil {
			fmt.Fprintln(env.Stderr, "posthub admin passwd: ending the user's sessions:", err)
			return 1
		}
		if !record("IDENTITY_PASSWORD_CHANGED", "", map[string]string{"userId": u.ID}) {
			return 1
		}
		if generated {
			fmt.Fprintf(env.Stdout, "password: %s\n", pw)
		}
		return 0
	}
	fmt.Fprintf(env.Stderr, "posthub admin: unknown command %q\n", sub)
	return 2
}

func flagSet(args []string, name string) bool {
	for _, a := range args {
		if strings.TrimLeft(a, "-") == name || strings.HasPrefix(strings.TrimLeft(a, "-"), name+"=") {
			return true
		}
	}
	return false
}

// createUser creates a local user; an existing one gets the password.
func createUser(ctx context.Context, store hub.Users, id, name, pw string) error {
	if !rbac.ValidUserID(id) {
		return fmt.Errorf("user id %q: 1–64 of a–z, 0–9, '.', '_', '-', '@'", id)
	}
	if err := hub.CheckText("user", "name", "user.name", name, hub.MaxNameLen, false); err != nil {
		return err
	}
	hash, err := rbac.HashPassword(pw)
	if err != nil {
		return err
	}
	if name == "" {
		name = id
	}
	u := hub.User{ID: id, Name: name, PasswordHash: hash, Created: time.Now().UTC(), Active: true}
	err = store.CreateUser(ctx, u)
	if hub.ErrorCode(err) == hub.Conflict {
		old, gerr := store.GetUser(ctx, id)
		if gerr != nil {
			return gerr
		}
		old.PasswordHash, old.Active = hash, true
		if err := store.PutUser(ctx, old); err != nil {
			return err
		}
		// A new password ends the sessions made with the old one.
		_, err = store.BumpSessionGeneration(ctx, id)
	}
	return err
}

func randomPassword() string {
	tok, _ := hub.NewToken()
	return strings.TrimPrefix(tok, "ph_")[:20]
}

// demoUsers are the demo hub's people: one per privilege of Demo Kommune,
// a hub operator, and Demo ApS's administrator and message employee (who
// reads the company's post in the web mailbox).
var demoUsers = []struct{ id, name, role, org string }{
	{"operator", "Hub Operatør", rbac.HubOperator, rbac.Global},
	{"admin", "Anne Admin", rbac.OrgAdmin, demoAuthority},
	{"systems", "Søren Systemansvarlig", rbac.SystemManager, demoAuthority},
	{"stats", "Stine Statistik", rbac.StatisticsAdm, demoAuthority},
	{"recall", "Rasmus Tilbagekald", rbac.RecallAdmin, demoAuthority},
	{"company-admin", "Camilla ApS", rbac.OrgAdmin, demoCompany},
	{"employee", "Erik Medarbejder", rbac.MessageEmploye, demoCompany},
}

// seedDemoUsers (re)creates the demo users with fresh passwords, grants
// their privileges and prints the logins.
func seedDemoUsers(ctx context.Context, store hub.Store, en *rbac.Enforcer, w io.Writer, base string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nAdmin portal: %s/admin/\nUSER\tPRIVILEGE\tSCOPE\tPASSWORD\n", base)
	for _, d := range demoUsers {
		pw := randomPassword()
		if err := createUser(ctx, store, d.id, d.name, pw); err != nil {
			return err
		}
		if err := en.Grant(ctx, rbac.Grant{User: d.id, Role: d.role, Domain: d.org}); err != nil && hub.ErrorCode(err) != hub.Conflict {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.id, d.role, d.org, pw)
	}
	return tw.Flush()
}
