package rbac

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/casbin/casbin/v2"
	cmodel "github.com/casbin/casbin/v2/model"

	"github.com/posthub/posthub/hub"
)

// Subject is who asks. A user is decided by its grants; a system or the
// operator token by the one role its credential implies.
type Subject struct {
	// User is a human account's id ("" for systems and the operator token).
	User string
	// Role is the implied role of a system or the operator token; it holds
	// in Home only, or everywhere when the role is global.
	Role string
	Home string
}

// UserSubject is the casbin subject of a user id.
func UserSubject(id string) string { return "user:" + id }

// Grant is one role held by a user in a domain.
type Grant struct {
	User   string `json:"userId"`
	Role   string `json:"privilege"`
	Domain string `json:"organisation"`
}

// Options tune an Enforcer.
type Options struct {
	// PollInterval bounds how late another instance's change takes effect
	// here (default 1s): no decision is made on policies whose stamp was
	// last compared with the store's longer ago. While decisions are asked
	// for, Run compares every half of it; an instance nobody asks reads
	// nothing, and its next decision compares first (one read).
	PollInterval time.Duration
	// CacheEntries bounds the decision cache (default 65536 (subject,
	// domain) pairs; it is emptied when full).
	CacheEntries int
	Log          *slog.Logger
}

// PolicyStore is what an Enforcer needs of the store: the policy lines,
// and the session generations a grant or revocation moves on.
type PolicyStore interface {
	hub.Policies
	BumpSessionGeneration(ctx context.Context, id string) (uint64, error)
}

// Enforcer decides (subject, domain, permission) on the policies in a
// hub.Policies store and keeps up with changes made by other instances.
type Enforcer struct {
	store PolicyStore
	opts  Options

	mu        sync.RWMutex
	ce        *casbin.Enforcer
	stamp     string
	rolePerms map[string]uint64 // role → permission bits
	grants    []Grant
	cache     map[string]uint64 // user subject + "\x00" + domain → permission bits
	reloads   int

	checked   atomic.Int64 // unix nanoseconds when the stamp was last read (before the read)
	used      atomic.Bool  // a decision was asked for since Run last looked
	refreshMu sync.Mutex   // one synchronous refresh at a time
}

var permBit = func() map[Perm]uint64 {
	m := make(map[Perm]uint64, len(Perms))
	for i, p := range Perms {
		m[p] = 1 << uint(i)
	}
	return m
}()

var globalMask = func() uint64 {
	var m uint64
	for _, p := range GlobalPerms {
		m |= permBit[p]
	}
	return m
}()

// New loads the policies and returns a ready Enforcer. Call Run to follow
// changes made elsewhere.
func New(ctx context.Context, store PolicyStore, opts Options) (*Enforcer, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.CacheEntries <= 0 {
		opts.CacheEntries = 1 << 16
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	e := &Enforcer{store: store, opts: opts}
	if err := e.Reload(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// Reload reads the stamp, then every line, builds a fresh casbin enforcer
// with the built-in role definitions and swaps it in. Reading the stamp
// first means a change racing with the load is picked up by the next poll.
func (e *Enforcer) Reload(ctx context.Context) error {
	at := time.Now()
	stamp, err := e.store.PolicyStamp(ctx)
	if err != nil {
		return err
	}
	lines, err := e.store.LoadPolicies(ctx)
	if err != nil {
		return err
	}
	m, err := cmodel.NewModelFromString(modelText)
	if err != nil {
		return err
	}
	for _, r := range Roles {
		for _, p := range r.Perms {
			lines = append(lines, hub.PolicyLine{Ptype: "p", V: []string{r.Name, string(p)}})
		}
	}
	if err := loadLines(lines, m); err != nil {
		return err
	}
	ce, err := casbin.NewEnforcer(m)
	if err != nil {
		return err
	}
	ce.EnableAutoSave(false)
	if err := ce.BuildRoleLinks(); err != nil {
		return err
	}
	rolePerms := map[string]uint64{}
	var grants []Grant
	for _, l := range lines {
		switch {
		case l.Ptype == "p" && len(l.V) >= 2:
			rolePerms[l.V[0]] |= permBit[Perm(l.V[1])]
		case l.Ptype == "g" && len(l.V) >= 3 && strings.HasPrefix(l.V[0], "user:"):
			grants = append(grants, Grant{User: strings.TrimPrefix(l.V[0], "user:"), Role: l.V[1], Domain: l.V[2]})
		}
	}
	sort.Slice(grants, func(i, j int) bool {
		a, b := grants[i], grants[j]
		if a.Domain != b.Domain {
			return a.Domain < b.Domain
		}
		if a.User != b.User {
			return a.User < b.User
		}
		return a.Role < b.Role
	})
	e.mu.Lock()
	e.ce, e.stamp, e.rolePerms, e.grants = ce, stamp, rolePerms, grants
	e.cache = make(map[string]uint64)
	e.reloads++
	e.mu.Unlock()
	e.checked.Store(at.UnixNano())
	return nil
}

// Run keeps the policies fresh until ctx ends: every half PollInterval, if
// any decision was asked for since it last looked, it compares the stamp
// and reloads when it changed. An idle instance reads nothing.
func (e *Enforcer) Run(ctx context.Context) {
	t := time.NewTicker(max(e.opts.PollInterval/2, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !e.used.Swap(false) {
			continue
		}
		if err := e.Refresh(ctx); err != nil && ctx.Err() == nil {
			e.opts.Log.Warn("rbac: policy poll", "error", err)
		}
	}
}

// Refresh reloads if the stored stamp differs from the loaded one.
func (e *Enforcer) Refresh(ctx context.Context) error {
	at := time.Now()
	stamp, err := e.store.PolicyStamp(ctx)
	if err != nil {
		return err
	}
	e.mu.RLock()
	same := stamp == e.stamp
	e.mu.RUnlock()
	if same {
		e.checked.Store(at.UnixNano())
		return nil
	}
	return e.Reload(ctx)
}

// fresh is called before every decision: it marks the enforcer in use and,
// when the stamp was last compared more than PollInterval ago (the
// instance was idle), compares it now.
func (e *Enforcer) fresh() {
	if !e.used.Load() { // a shared write only when it changes
		e.used.Store(true)
	}
	stale := func() bool { return time.Since(time.Unix(0, e.checked.Load())) > e.opts.PollInterval }
	if !stale() {
		return
	}
	e.refreshMu.Lock()
	defer e.refreshMu.Unlock()
	if !stale() {
		return // refreshed while we waited
	}
	// One attempt per PollInterval, failed or not: while the store is down
	// the requests queued here must not each wait out a timeout in turn
	// (the loaded policies stay in force meanwhile).
	e.checked.Store(time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Refresh(ctx); err != nil {
		e.opts.Log.Warn("rbac: policy check", "error", err)
	}
}

// maxDomain bounds a domain's length. Domains are CVRs or Global; the
// one asked about often comes from a request (a header, a query, a path),
// and decisions are cached by it, so a longer one is refused before it
// can fill the cache with client-chosen bytes.
const maxDomain = 64

// Allowed is the authorisation decision. Unknown permissions, empty
// subjects and empty or overlong domains are refused.
func (e *Enforcer) Allowed(s Subject, dom string, p Perm) bool {
	e.fresh()
	bit := permBit[p]
	if bit == 0 || dom == "" || len(dom) > maxDomain {
		return false
	}
	if s.User == "" {
		if s.Role == "" {
			return false
		}
		r, ok := RoleByName(s.Role)
		if !ok || (!r.Global && dom != s.Home) || r.System && IsGlobal(p) {
			return false
		}
		e.mu.RLock()
		bits := e.rolePerms[s.Role]
		e.mu.RUnlock()
		return bits&bit != 0
	}
	key := s.User + "\x00" + dom
	e.mu.RLock()
	bits, ok := e.cache[key]
	e.mu.RUnlock()
	if !ok {
		bits = e.compute(key, UserSubject(s.User), dom)
	}
	return bits&bit != 0
}

func (e *Enforcer) compute(key, sub, dom string) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if bits, ok := e.cache[key]; ok {
		return bits
	}
	// The matcher is g(sub, role, dom or "*") && perm == p.perm: the bits
	// are the union of the permissions of every role the subject holds,
	// directly or through role inheritance, in dom or globally.
	var bits uint64
	for _, d := range []string{dom, Global} {
		roles, err := e.ce.GetImplicitRolesForUser(sub, d)
		if err != nil {
			continue
		}
		for _, r := range roles {
			bits |= e.rolePerms[r]
		}
	}
	if dom != Global {
		bits &^= globalMask
	}
	if len(e.cache) >= e.opts.CacheEntries {
		e.cache = make(map[string]uint64)
	}
	e.cache[key] = bits
	return bits
}

// Perms returns the permissions s holds in dom (for the portal's menus).
func (e *Enforcer) PermsOf(s Subject, dom string) []Perm {
	e.fresh()
	var out []Perm
	for _, p := range Perms {
		if e.Allowed(s, dom, p) {
			out = append(out, p)
		}
	}
	return out
}

// Lacks returns the permissions role carries (the built-in ones and any
// stored "p" lines) that s does not hold in dom; none means s holds the
// whole role there, which is what granting or revoking it takes.
func (e *Enforcer) Lacks(s Subject, dom, role string) []Perm {
	e.fresh()
	e.mu.RLock()
	need := e.rolePerms[role]
	e.mu.RUnlock()
	var out []Perm
	for _, p := range Perms {
		if need&permBit[p] != 0 && !e.Allowed(s, dom, p) {
			out = append(out, p)
		}
	}
	return out
}

// Grants returns the stored grants, filtered by domain and/or user ("" for all).
func (e *Enforcer) Grants(dom, user string) []Grant {
	e.fresh()
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []Grant
	for _, g := range e.grants {
		if (dom == "" || g.Domain == dom) && (user == "" || g.User == user) {
			out = append(out, g)
		}
	}
	return out
}

// Domains lists the domains in which user holds any role, sorted.
func (e *Enforcer) Domains(user string) []string {
	e.fresh()
	var out []string
	for _, g := range e.Grants("", user) {
		if !slices.Contains(out, g.Domain) {
			out = append(out, g.Domain)
		}
	}
	return out
}

// Stamp is the policy stamp the loaded policies correspond to.
func (e *Enforcer) Stamp() string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.stamp
}

// ValidateGrant checks a grant's shape: a built-in user role, organisation
// roles in an organisation's domain, global roles in Global.
func ValidateGrant(g Grant) error {
	if !ValidUserID(g.User) {
		return field("userId", "user.id.invalid", UserIDRule, g.User)
	}
	r, ok := RoleByName(g.Role)
	if !ok || r.System {
		return field("privilege", "privilege.unknown", "not a privilege that can be granted to a user", g.Role)
	}
	if r.Global && g.Domain != Global {
		return field("organisation", "privilege.global", "a global privilege is granted in the global scope \"*\"", g.Domain)
	}
	if !r.Global && !hub.ValidCVR(g.Domain) {
		return field("organisation", "privilege.scope.invalid", "an organisation privilege is granted in an organisation (CVR)", g.Domain)
	}
	return nil
}

// MaxUserIDLen is the longest a user id may be, in bytes (ValidUserID).
// Everything that bounds or shows a user id uses it rather than a copy.
const MaxUserIDLen = 64

// UserIDRule says what ValidUserID accepts.
var UserIDRule = fmt.Sprintf("a user id is 1–%d of a–z, 0–9, '.', '_', '-', '@'", MaxUserIDLen)

// ValidUserID checks a user id's shape: 1 to MaxUserIDLen bytes of a–z,
// 0–9, '.', '_', '-', '@'.
func ValidUserID(id string) bool {
	if id == "" || len(id) > MaxUserIDLen {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@') {
			return false
		}
	}
	return true
}

func field(f, code, msg, v string) error {
	return &hub.Error{Code: hub.Invalid, Message: msg, Fields: []hub.FieldError{{Resource: "privilege", Field: f, Code: code, Message: msg, RejectedValue: v}}}
}

// Grant stores a grant, ends the user's sessions and reloads, so the
// grant is in force here on return. Invalid for a bad grant; Conflict when
// it is held already (another login or administrator granted it first),
// and then nothing else is done: the user's sessions live on.
//
// A privilege change ends the user's sessions (BumpSessionGeneration), so
// the user logs in afresh under the new privileges — but only once the
// change is durable and only when this call made it: of concurrent
// identical grants exactly one is stored (AddPolicy is a unique write on
// every backend) and only that one ends sessions.
//
// When the grant is stored but ending the sessions fails, Grant still
// succeeds and logs the failure. The grant is made and lasting: an error
// would tell the caller a change that happened did not (so it would be
// left out of the event log, and a retry would answer Conflict), and the
// sessions left alive lose nothing by it — decisions are made per
// request, so they hold the new privilege anyway.
func (e *Enforcer) Grant(ctx context.Context, g Grant) error {
	if err := ValidateGrant(g); err != nil {
		return err
	}
	if err := e.store.AddPolicy(ctx, policyLine(g)); err != nil {
		return err
	}
	if _, err := e.store.BumpSessionGeneration(ctx, g.User); err != nil {
		e.opts.Log.Warn("rbac: a grant is made, but the user's sessions could not be ended", "user", g.User,
			"privilege", g.Role, "organisation", g.Domain, "error", err)
	}
	return changeStored(e.Reload(ctx))
}

// storedChange is the error of a Grant or Revoke whose change is stored
// (durable, and in force everywhere within PollInterval) though something
// after it failed: ending the sessions, or reloading here.
type storedChange struct{ err error }

func (c *storedChange) Error() string { return c.err.Error() }
func (c *storedChange) Unwrap() error { return c.err }

// changeStored marks err (nil stays nil) as coming after a stored change.
func changeStored(err error) error {
	if err == nil {
		return nil
	}
	return &storedChange{err}
}

// ChangeStored says whether err, from Grant or Revoke, came after the
// change was stored: the grant or revocation happened (and must be
// recorded as such, e.g. in the event log) though the call reports what
// failed after it.
func ChangeStored(err error) bool {
	var c *storedChange
	return errors.As(err, &c)
}

// Revoke removes a grant, ends the user's sessions and reloads. NotFound
// when the grant is not held, and then nothing else is done: no session
// ends. The store decides (RemovePolicy's NotFound), not the policies
// loaded here, which may lag another instance's change: of concurrent
// revocations of one grant, on any number of instances, exactly one
// succeeds, and only it ends sessions (and is logged by its caller).
//
// The sessions end after the removal is durable, as for Grant. When
// ending them fails, Revoke answers Unavailable although the privilege is
// gone (in force here once reloaded, elsewhere within PollInterval): an
// ended session is the safe outcome of a revocation, so a caller must not
// be told it is whole while the user's sessions may still be live. The
// error's message says the privilege was revoked (a retry answers
// NotFound); the sessions end when the user logs out, or is given a new
// password or deactivated.
func (e *Enforcer) Revoke(ctx context.Context, g Grant) error {
	if err := e.store.RemovePolicy(ctx, policyLine(g)); hub.Is(err, hub.NotFound) {
		return hub.Wrap(hub.NotFound, err, "%s does not hold %s in %s", g.User, g.Role, g.Domain)
	} else if err != nil {
		return err
	}
	_, bumpErr := e.store.BumpSessionGeneration(ctx, g.User)
	reloadErr := e.Reload(ctx)
	if bumpErr != nil {
		return changeStored(hub.Wrap(hub.Unavailable, bumpErr, "%s no longer holds %s in %s, but their sessions could not be ended; "+
			"they end when the user logs out, is given a new password or is deactivated", g.User, g.Role, g.Domain))
	}
	return changeStored(reloadErr)
}

func policyLine(g Grant) hub.PolicyLine {
	return hub.PolicyLine{Ptype: "g", V: []string{UserSubject(g.User), g.Role, g.Domain}}
}
