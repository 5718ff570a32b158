package rbac

import (
	"context"
	"time"

	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"

	"github.com/posthub/posthub/hub"
)

// Adapter is a casbin persist.Adapter over hub.Policies, so policies live
// in whatever metadata store the hub runs on (bolt, MongoDB).
type Adapter struct {
	Store hub.Policies
	// Timeout bounds each store call (casbin's interface has no context).
	Timeout time.Duration
}

var _ persist.Adapter = (*Adapter)(nil)

func (a *Adapter) ctx() (context.Context, context.CancelFunc) {
	t := a.Timeout
	if t == 0 {
		t = 10 * time.Second
	}
	return context.WithTimeout(context.Background(), t)
}

// LoadPolicy loads every stored line into m.
func (a *Adapter) LoadPolicy(m model.Model) error {
	ctx, cancel := a.ctx()
	defer cancel()
	lines, err := a.Store.LoadPolicies(ctx)
	if err != nil {
		return err
	}
	return loadLines(lines, m)
}

func loadLines(lines []hub.PolicyLine, m model.Model) error {
	for _, l := range lines {
		if l.Ptype == "" || len(l.V) == 0 {
			continue
		}
		sec := l.Ptype[:1]
		if _, ok := m[sec][l.Ptype]; !ok {
			continue // a line of a ptype this model does not know
		}
		if err := persist.LoadPolicyArray(append([]string{l.Ptype}, l.V...), m); err != nil {
			return err
		}
	}
	return nil
}

// SavePolicy is not supported: lines are added and removed one by one so
// that concurrent instances never overwrite each other's changes.
func (a *Adapter) SavePolicy(model.Model) error {
	return hub.Errorf(hub.Invalid, "rbac: SavePolicy is not supported; add and remove lines")
}

// AddPolicy stores one line; an existing line is not an error.
func (a *Adapter) AddPolicy(_ string, ptype string, rule []string) error {
	ctx, cancel := a.ctx()
	defer cancel()
	err := a.Store.AddPolicy(ctx, hub.PolicyLine{Ptype: ptype, V: rule})
	if hub.ErrorCode(err) == hub.Conflict {
		return nil
	}
	return err
}

// RemovePolicy removes one line; an absent line is not an error.
func (a *Adapter) RemovePolicy(_ string, ptype string, rule []string) error {
	ctx, cancel := a.ctx()
	defer cancel()
	err := a.Store.RemovePolicy(ctx, hub.PolicyLine{Ptype: ptype, V: rule})
	if hub.ErrorCode(err) == hub.NotFound {
		return nil
	}
	return err
}

// RemoveFilteredPolicy removes the lines of ptype whose values from
// fieldIndex on equal fieldValues ("" matches anything).
func (a *Adapter) RemoveFilteredPolicy(_ string, ptype string, fieldIndex int, fieldValues ...string) error {
	ctx, cancel := a.ctx()
	defer cancel()
	lines, err := a.Store.LoadPolicies(ctx)
	if err != nil {
		return err
	}
	for _, l := range lines {
		if l.Ptype != ptype || !matches(l.V, fieldIndex, fieldValues) {
			continue
		}
		if err := a.Store.RemovePolicy(ctx, l); err != nil && hub.ErrorCode(err) != hub.NotFound {
			return err
		}
	}
	return nil
}

func matches(v []string, idx int, want []string) bool {
	for i, w := range want {
		if w == "" {
			continue
		}
		if idx+i >= len(v) || v[idx+i] != w {
			return false
		}
	}
	return true
}
