package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/rbac"
)

// adminCommands are `posthub admin`'s subcommands: administration from the
// hub's own machine — bootstrap the first hub operator, grant and revoke
// privileges, reset passwords — on the store the hub's configuration names
// (the flags, POSTHUB_* variables and -config file serve reads). An
// embedded (bolt) hub must be stopped first, since bolt admits one process;
// a hub on MongoDB may run, and its instances follow the change within
// -policy-poll-interval.
//
// Whoever can open the hub's store holds the hub, so the command acts with
// a hub operator's power (actor "cli:posthub-admin"): the grantor rules of
// package admin, which bound what one administrator may hand another, do
// not apply to it. Each change is validated before it is made and recorded
// in the event log after.
var adminCommands = []command{
	{"bootstrap", "create a user holding HUB_OPERATOR (the first administrator)", runAdminBootstrap},
	{"grant", "grant a privilege: grant USER PRIVILEGE ORG|*", runAdminGrant},
	{"revoke", "revoke a privilege: revoke USER PRIVILEGE ORG|*", runAdminRevoke},
	{"passwd", "set a user's password: passwd USER", runAdminPasswd},
	{"privileges", "list the privileges and the permissions each holds", runAdminPrivileges},
}

func runAdmin(env *Env, args []string) int {
	return dispatch(env, "posthub admin", "administration from the hub's machine (the store serve's configuration names)", adminCommands, args)
}

// adminActor is the event log's actor of every change the CLI makes.
const adminActor = "cli:posthub-admin"

// adminStore is the store an admin subcommand works on, with the policies.
type adminStore struct {
	env   *Env
	name  string // "posthub admin grant", for messages
	store hub.Store
	en    *rbac.Enforcer
}

// openAdmin opens the store cfg names and loads the policies; on failure
// it has reported and returns the exit code.
func openAdmin(ctx context.Context, env *Env, fs *flag.FlagSet, cfg storeConfig) (*adminStore, int) {
	if err := cfg.check(); err != nil {
		return nil, usageError(env, fs, "%v", err)
	}
	store, err := openMetadata(ctx, cfg, openOptions{boltWait: 2 * time.Second})
	if err != nil {
		if cfg.Metadata == "bolt" {
			fmt.Fprintf(env.Stderr, "%s: open %s: %v (is the hub running? stop it first)\n", fs.Name(), cfg.Data, err)
		} else {
			fmt.Fprintf(env.Stderr, "%s: %v\n", fs.Name(), err)
		}
		return nil, 1
	}
	en, err := rbac.New(ctx, store, rbac.Options{})
	if err != nil {
		store.Close()
		fmt.Fprintf(env.Stderr, "%s: %v\n", fs.Name(), err)
		return nil, 1
	}
	return &adminStore{env: env, name: fs.Name(), store: store, en: en}, -1
}

func (a *adminStore) Close() { a.store.Close() }

// fail reports err and returns exit code 1.
func (a *adminStore) fail(err error) int {
	fmt.Fprintf(a.env.Stderr, "%s: %v\n", a.name, err)
	return 1
}

// record appends the change's event; the change itself is made already.
func (a *adminStore) record(ctx context.Context, tag, org string, detail map[string]string) bool {
	ev := hub.Event{Tag: tag, Actor: adminActor, Detail: detail}
	if org != "" && org != rbac.Global {
		ev.Orgs = []string{org}
	}
	if err := (hub.StoreEvents{Store: a.store}).Emit(ctx, ev); err != nil {
		fmt.Fprintf(a.env.Stderr, "%s: the change is made, but its %s entry could not be recorded in the event log: %v\n", a.name, tag, err)
		return false
	}
	return true
}

// adminFlags is the flag set of an admin subcommand: the store settings
// plus what declare adds, loaded through the one configuration path. rc is
// -1 to go on, else the exit code.
func adminFlags(env *Env, sub, args string, cmdArgs []string, declare func(*flag.FlagSet)) (fs *flag.FlagSet, cfg *storeConfig, rc int) {
	fs = newFlagSet(env, "posthub admin "+sub, "[flags] "+args)
	cfg = &storeConfig{}
	cfg.flags(fs)
	if declare != nil {
		declare(fs)
	}
	return fs, cfg, parseConfig(env, fs, cmdArgs)
}

// passwordFlag is -password, defaulting to POSTHUB_ADMIN_PASSWORD.
func passwordFlag(env *Env, fs *flag.FlagSet) *string {
	return fs.String("password", env.Getenv("POSTHUB_ADMIN_PASSWORD"), "the password (default: POSTHUB_ADMIN_PASSWORD; neither: one is generated and printed)")
}

func runAdminBootstrap(env *Env, args []string) int {
	var name, password *string
	fs, cfg, rc := adminFlags(env, "bootstrap", "USER", args, func(fs *flag.FlagSet) {
		name = fs.String("name", "", "the user's display name (default: USER)")
		password = passwordFlag(env, fs)
	})
	if rc >= 0 {
		return rc
	}
	rest, ok := positional(env, fs, "USER")
	if !ok {
		return 2
	}
	user := rest[0]
	if !rbac.ValidUserID(user) {
		return usageError(env, fs, "USER %q: %s", user, rbac.UserIDRule)
	}
	ctx := context.Background()
	a, rc := openAdmin(ctx, env, fs, *cfg)
	if rc >= 0 {
		return rc
	}
	defer a.Close()
	pw, generated := *password, *password == ""
	if generated {
		pw = randomPassword()
	}
	if err := createUser(ctx, a.store, user, *name, pw); err != nil {
		return a.fail(err)
	}
	if err := a.en.Grant(ctx, rbac.Grant{User: user, Role: rbac.HubOperator, Domain: rbac.Global}); err != nil && hub.ErrorCode(err) != hub.Conflict {
		return a.fail(err)
	}
	if !a.record(ctx, "IDENTITY_CREATED", "", map[string]string{"userId": user}) ||
		!a.record(ctx, "PRIVILEGES_GRANTED", "", map[string]string{"userId": user, "privilege": rbac.HubOperator, "scope": rbac.Global}) {
		return 1
	}
	fmt.Fprintf(env.Stdout, "user %s holds %s\n", user, rbac.HubOperator)
	if generated {
		fmt.Fprintf(env.Stdout, "password: %s\n", pw)
	}
	return 0
}

func runAdminGrant(env *Env, args []string) int  { return adminGrantOrRevoke(env, "grant", args) }
func runAdminRevoke(env *Env, args []string) int { return adminGrantOrRevoke(env, "revoke", args) }

// adminGrantOrRevoke is grant and revoke: the same arguments, checked the
// same way, and one store call apart.
func adminGrantOrRevoke(env *Env, sub string, args []string) int {
	fs, cfg, rc := adminFlags(env, sub, "USER PRIVILEGE ORG|*", args, nil)
	if rc >= 0 {
		return rc
	}
	rest, ok := positional(env, fs, "USER", "PRIVILEGE", "ORG|*")
	if !ok {
		return 2
	}
	g := rbac.Grant{User: rest[0], Role: strings.ToUpper(rest[1]), Domain: rest[2]}
	if err := rbac.ValidateGrant(g); err != nil {
		// Name the argument the field error is about.
		arg := map[string]string{"userId": "USER", "privilege": "PRIVILEGE", "organisation": "ORG|*"}
		var he *hub.Error
		if errors.As(err, &he) && len(he.Fields) > 0 && arg[he.Fields[0].Field] != "" {
			f := he.Fields[0]
			return usageError(env, fs, "%s %q: %s (%s)", arg[f.Field], f.RejectedValue, f.Message, f.Code)
		}
		return usageError(env, fs, "%v", err)
	}
	ctx := context.Background()
	a, rc := openAdmin(ctx, env, fs, *cfg)
	if rc >= 0 {
		return rc
	}
	defer a.Close()
	var err error
	if sub == "grant" {
		if _, err := a.store.GetUser(ctx, g.User); err != nil {
			return a.fail(fmt.Errorf("user %s: %w", g.User, err))
		}
		err = a.en.Grant(ctx, g)
	} else {
		err = a.en.Revoke(ctx, g)
	}
	if err != nil {
		return a.fail(err)
	}
	tag := map[string]string{"grant": "PRIVILEGES_GRANTED", "revoke": "PRIVILEGES_REVOKED"}[sub]
	if !a.record(ctx, tag, g.Domain, map[string]string{"userId": g.User, "privilege": g.Role, "scope": g.Domain}) {
		return 1
	}
	fmt.Fprintf(env.Stdout, "%s %s %s in %s\n", sub, g.User, g.Role, g.Domain)
	return 0
}

func runAdminPasswd(env *Env, args []string) int {
	var password *string
	fs, cfg, rc := adminFlags(env, "passwd", "USER", args, func(fs *flag.FlagSet) { password = passwordFlag(env, fs) })
	if rc >= 0 {
		return rc
	}
	rest, ok := positional(env, fs, "USER")
	if !ok {
		return 2
	}
	ctx := context.Background()
	a, rc := openAdmin(ctx, env, fs, *cfg)
	if rc >= 0 {
		return rc
	}
	defer a.Close()
	u, err := a.store.GetUser(ctx, rest[0])
	if err != nil {
		return a.fail(err)
	}
	pw, generated := *password, *password == ""
	if generated {
		pw = randomPassword()
	}
	if u.PasswordHash, err = rbac.HashPassword(pw); err != nil {
		return a.fail(err)
	}
	if err := a.store.PutUser(ctx, u); err != nil {
		return a.fail(err)
	}
	if _, err := a.store.BumpSessionGeneration(ctx, u.ID); err != nil {
		return a.fail(fmt.Errorf("ending the user's sessions: %w", err))
	}
	if !a.record(ctx, "IDENTITY_PASSWORD_CHANGED", "", map[string]string{"userId": u.ID}) {
		return 1
	}
	if generated {
		fmt.Fprintf(env.Stdout, "password: %s\n", pw)
	}
	return 0
}

// runAdminPrivileges prints the built-in privileges; it needs no store.
func runAdminPrivileges(env *Env, args []string) int {
	fs := newFlagSet(env, "posthub admin privileges", "")
	if rc := parseFlags(fs, args); rc >= 0 {
		return rc
	}
	if _, ok := positional(env, fs); !ok {
		return 2
	}
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

// createUser creates a local user; an existing one gets the password.
func createUser(ctx context.Context, store hub.Users, id, name, pw string) error {
	if !rbac.ValidUserID(id) {
		return fmt.Errorf("user id %q: %s", id, rbac.UserIDRule)
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
