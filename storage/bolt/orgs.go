package bolt

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posthub/posthub/hub"
)

// systemRec keeps the fields hub.System hides from JSON.
type systemRec struct {
	hub.System
	TokenHash string `json:"tokenHash,omitempty"`
	Seq       uint64 `json:"seq"`
}

func (r systemRec) value() hub.System {
	s := r.System
	s.TokenHash = r.TokenHash
	return s
}

func (s *Store) CreateOrg(ctx context.Context, o hub.Organisation) error {
	if o.CVR == "" {
		return hub.Errorf(hub.Invalid, "organisation without CVR")
	}
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b := bk(tx, bOrgs)
		if b.Get([]byte(o.CVR)) != nil {
			return hub.Errorf(hub.Conflict, "organisation %s exists", o.CVR)
		}
		return putJSON(b, []byte(o.CVR), o)
	})
}

func (s *Store) UpdateOrg(ctx context.Context, o hub.Organisation) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b := bk(tx, bOrgs)
		var old hub.Organisation
		if ok, err := getJSON(b, []byte(o.CVR), &old); err != nil || !ok {
			if err != nil {
				return err
			}
			return notFound("organisation", o.CVR)
		}
		if old.Version != o.Version {
			return hub.Errorf(hub.Conflict, "organisation %s changed (version %d, not %d)", o.CVR, old.Version, o.Version)
		}
		o.Version++
		return putJSON(b, []byte(o.CVR), o)
	})
}

func (s *Store) GetOrg(ctx context.Context, cvr string) (hub.Organisation, error) {
	var o hub.Organisation
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bOrgs), []byte(cvr), &o)
		if err == nil && !ok {
			err = notFound("organisation", cvr)
		}
		return err
	})
	return o, err
}

func (s *Store) ListOrgs(ctx context.Context) ([]hub.Organisation, error) {
	var out []hub.Organisation
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bOrgs).ForEach(func(_, v []byte) error {
			var o hub.Organisation
			if err := jsonDecode(v, &o); err != nil {
				return err
			}
			out = append(out, o)
			return nil
		})
	})
	return out, err
}

func (s *Store) CreateSystem(ctx context.Context, sys hub.System) error {
	if err := hub.CheckPlainCreate(sys); err != nil {
		return err
	}
	defer s.tokens.changed()
	return s.updateDirect(ctx, func(tx *bolt.Tx) error { return createSystem(tx, sys) })
}

// ChangeReceivers decides and writes in one transaction: bbolt runs one
// writer at a time, so the rule sees every change committed before it.
func (s *Store) ChangeReceivers(ctx context.Context, org string, ch hub.ReceiverChange) error {
	if err := hub.CheckReceiverChange(org, ch); err != nil {
		return err
	}
	defer s.tokens.changed()
	var added hub.System
	err := s.updateDirect(ctx, func(tx *bolt.Tx) error {
		if a := ch.Add; a != nil {
			if err := systemFree(tx, *a); err != nil {
				return err
			}
		}
		var recs []systemRec
		var active []hub.Receiver
		err := scanPrefix(tx.Bucket(bSysOrg), prefix(org), func(_, id []byte) (bool, error) {
			r, err := getSystem(tx, string(id))
			if err == nil && r.Role == hub.RecipientSystem && r.Active {
				recs = append(recs, r)
				active = append(active, hub.Receiver{ID: r.ID, Mailbox: r.Mailbox, Default: r.Default})
			}
			return err == nil, err
		})
		if err != nil {
			return err
		}
		next, err := ch.Rule(active)
		if err != nil {
			return err
		}
		plan, err := hub.PlanReceivers(active, next, ch.Add)
		if err != nil {
			return err
		}
		for _, r := range recs {
			c, ok := plan[r.ID]
			if !ok {
				continue
			}
			r.Active, r.Default, r.Updated = c.Active, c.Default, ch.At
			r.Version++
			if err := putJSON(bk(tx, bSystems), []byte(r.ID), r); err != nil {
				return err
			}
		}
		if ch.Add == nil {
			return nil
		}
		added = *ch.Add
		added.Active, added.Default = true, plan[added.ID].Default
		return createSystem(tx, added)
	})
	if err == nil && ch.Add != nil {
		*ch.Add = added
	}
	return err
}

// systemFree returns Conflict when sys's ID or token hash is taken.
func systemFree(tx *bolt.Tx, sys hub.System) error {
	if tx.Bucket(bSystems).Get([]byte(sys.ID)) != nil {
		return hub.Errorf(hub.Conflict, "system %s exists", sys.ID)
	}
	if sys.TokenHash != "" && tx.Bucket(bSysToken).Get([]byte(sys.TokenHash)) != nil {
		return hub.Errorf(hub.Conflict, "token of system %s is taken", sys.ID)
	}
	return nil
}

func createSystem(tx *bolt.Tx, sys hub.System) error {
	if err := systemFree(tx, sys); err != nil {
		return err
	}
	if err := underLimit(tx, bSysOrg, sys.OrgCVR, hub.SystemsLimit); err != nil {
		return err
	}
	b, tb := bk(tx, bSystems), bk(tx, bSysToken)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	if sys.TokenHash != "" {
		if err := tb.Put([]byte(sys.TokenHash), []byte(sys.ID)); err != nil {
			return err
		}
	}
	if err := bk(tx, bSysOrg).Put(cat(prefix(sys.OrgCVR), u64(seq)), []byte(sys.ID)); err != nil {
		return err
	}
	return putJSON(b, []byte(sys.ID), systemRec{System: sys, TokenHash: sys.TokenHash, Seq: seq})
}

func getSystem(tx *bolt.Tx, id string) (systemRec, error) {
	var r systemRec
	ok, err := getJSON(tx.Bucket(bSystems), []byte(id), &r)
	if err == nil && !ok {
		err = notFound("system", id)
	}
	return r, err
}

func (s *Store) UpdateSystem(ctx context.Context, sys hub.System) error {
	defer s.tokens.changed()
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		old, err := getSystem(tx, sys.ID)
		if err != nil {
			return err
		}
		if old.Version != sys.Version {
			return hub.Errorf(hub.Conflict, "system %s changed (version %d, not %d)", sys.ID, old.Version, sys.Version)
		}
		if err := hub.CheckPlainUpdate(old.value(), sys); err != nil {
			return err
		}
		tb := bk(tx, bSysToken)
		if sys.TokenHash != old.TokenHash {
			if sys.TokenHash != "" {
				if owner := tb.Get([]byte(sys.TokenHash)); owner != nil && string(owner) != sys.ID {
					return hub.Errorf(hub.Conflict, "token of system %s is taken", sys.ID)
				}
				if err := tb.Put([]byte(sys.TokenHash), []byte(sys.ID)); err != nil {
					return err
				}
			}
			if old.TokenHash != "" {
				if err := tb.Delete([]byte(old.TokenHash)); err != nil {
					return err
				}
			}
		}
		if sys.OrgCVR != old.OrgCVR {
			ob := bk(tx, bSysOrg)
			if err := ob.Delete(cat(prefix(old.OrgCVR), u64(old.Seq))); err != nil {
				return err
			}
			if err := ob.Put(cat(prefix(sys.OrgCVR), u64(old.Seq)), []byte(sys.ID)); err != nil {
				return err
			}
		}
		sys.Version++
		return putJSON(bk(tx, bSystems), []byte(sys.ID), systemRec{System: sys, TokenHash: sys.TokenHash, Seq: old.Seq})
	})
}

func (s *Store) GetSystem(ctx context.Context, id string) (hub.System, error) {
	var r systemRec
	err := s.viewDirect(ctx, func(tx *bolt.Tx) (err error) {
		r, err = getSystem(tx, id)
		return err
	})
	return r.value(), err
}

// SystemByToken runs on every authenticated request; its answers are kept
// in memory until a write to the systems changes them (readCache).
func (s *Store) SystemByToken(ctx context.Context, hash string) (hub.System, error) {
	sys, ok, gen := s.tokens.get(hash)
	if ok {
		return sys, nil
	}
	var r systemRec
	err := s.viewDirect(ctx, func(tx *bolt.Tx) (err error) {
		id := tx.Bucket(bSysToken).Get([]byte(hash))
		if hash == "" || id == nil {
			return hub.Errorf(hub.NotFound, "no system has that token")
		}
		r, err = getSystem(tx, string(id))
		return err
	})
	if err == nil {
		s.tokens.put(hash, r.value(), gen)
	}
	return r.value(), err
}

// readCache holds answers of reads by key (systems by token hash,
// contacts by ID). Every write to the buckets they were read from calls
// changed after its commit: the generation moves on and the entries go,
// and an answer read before the write cannot be kept, since it is stored
// with the generation read before it was looked up. At most max entries
// are kept (the map starts afresh when full).
type readCache[V any] struct {
	mu  sync.Mutex
	gen uint64
	m   map[string]V
	max int
}

// get returns the cached answer, or the generation to put a fresh
// answer under.
func (c *readCache[V]) get(k string) (V, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok, c.gen
}

func (c *readCache[V]) put(k string, v V, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= c.max {
		c.m = map[string]V{}
	}
	c.m[k] = v
}

func (c *readCache[V]) changed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.m = nil
}

func (s *Store) ListSystems(ctx context.Context, org string) ([]hub.System, error) {
	var out []hub.System
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		return scanPrefix(tx.Bucket(bSysOrg), prefix(org), func(_, id []byte) (bool, error) {
			r, err := getSystem(tx, string(id))
			if err != nil {
				return false, err
			}
			out = append(out, r.value())
			return true, nil
		})
	})
	return out, err
}

func (s *Store) TouchSystem(ctx context.Context, id string, at time.Time) error {
	defer s.tokens.changed()
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		r, err := getSystem(tx, id)
		if err != nil {
			return err
		}
		r.LastFetch = at
		return putJSON(bk(tx, bSystems), []byte(id), r)
	})
}

// versioned puts a record with optimistic concurrency: Version 0 creates
// (Conflict if the id exists), otherwise the stored Version must match
// (NotFound if absent or of another organisation). It returns the stored
// record's Version.
func versioned(tx *bolt.Tx, b, byOrg []byte, limit hub.OrgLimit, what, id, org string, version int64, build func(newVersion int64) any) error {
	if id == "" || org == "" {
		return hub.Errorf(hub.Invalid, "%s without ID or organisation", what)
	}
	bb := bk(tx, b)
	var old struct {
		OrgCVR  string `json:"organisation"`
		Version int64  `json:"version"`
	}
	ok, err := getJSON(bb, []byte(id), &old)
	if err != nil {
		return err
	}
	switch {
	case version == 0 && ok:
		return hub.Errorf(hub.Conflict, "%s %s exists", what, id)
	case version != 0 && (!ok || old.OrgCVR != org):
		return notFound(what, id)
	case version != 0 && old.Version != version:
		return hub.Errorf(hub.Conflict, "%s %s changed (version %d, not %d)", what, id, old.Version, version)
	case version == 0:
		if err := underLimit(tx, byOrg, org, limit); err != nil {
			return err
		}
	}
	if err := bk(tx, byOrg).Put(key(org, id), nil); err != nil {
		return err
	}
	return putJSON(bb, []byte(id), build(version+1))
}

// underLimit refuses a new record of org when the organisation's index
// byOrg holds l.Max records already (in the transaction that adds it).
func underLimit(tx *bolt.Tx, byOrg []byte, org string, l hub.OrgLimit) error {
	n := 0
	err := scanPrefix(bk(tx, byOrg), prefix(org), func(_, _ []byte) (bool, error) {
		n++
		return n < l.Max, nil
	})
	if err == nil && n >= l.Max {
		err = l.Limited(org)
	}
	return err
}

func deleteOrgScoped(tx *bolt.Tx, b, byOrg []byte, what, org, id string) error {
	ob := bk(tx, byOrg)
	if ob.Get(key(org, id)) == nil {
		return notFound(what, id)
	}
	if err := ob.Delete(key(org, id)); err != nil {
		return err
	}
	return bk(tx, b).Delete([]byte(id))
}

func listOrgScoped[T any](tx *bolt.Tx, b, byOrg []byte, org string) ([]T, error) {
	var out []T
	bb := tx.Bucket(b)
	err := scanPrefix(tx.Bucket(byOrg), prefix(org), func(k, _ []byte) (bool, error) {
		var v T
		ok, err := getJSON(bb, k[len(org)+1:], &v)
		if ok {
			out = append(out, v)
		}
		return true, err
	})
	return out, err
}

func (s *Store) PutContactGroup(ctx context.Context, g hub.ContactGroup) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		return versioned(tx, bGroups, bGroupOrg, hub.ContactGroupsLimit, "contact group", g.ID, g.OrgCVR, g.Version, func(v int64) any {
			g := g
			g.Version = v
			return g
		})
	})
}

func (s *Store) DeleteContactGroup(ctx context.Context, org, id string) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error { return deleteOrgScoped(tx, bGroups, bGroupOrg, "contact group", org, id) })
}

func (s *Store) ListContactGroups(ctx context.Context, org string) ([]hub.ContactGroup, error) {
	var out []hub.ContactGroup
	err := s.viewDirect(ctx, func(tx *bolt.Tx) (err error) {
		out, err = listOrgScoped[hub.ContactGroup](tx, bGroups, bGroupOrg, org)
		return err
	})
	return out, err
}

// PutContactPoint checks the point's codes against the code index
// (organisation, type, value → point) and writes the point and its index
// entries in one transaction.
func (s *Store) PutContactPoint(ctx context.Context, p hub.ContactPoint) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		var old hub.ContactPoint
		if _, err := getJSON(tx.Bucket(bPoints), []byte(p.ID), &old); err != nil {
			return err
		}
		if err := versioned(tx, bPoints, bPointOrg, hub.ContactPointsLimit, "contact point", p.ID, p.OrgCVR, p.Version, func(v int64) any {
			p := p
			p.Version = v
			return p
		}); err != nil {
			return err
		}
		// A refusal here rolls the write above back with the transaction.
		cb := bk(tx, bPointCode)
		for _, c := range p.Codes {
			if owner := cb.Get(codeKey(p.OrgCVR, c)); owner != nil && string(owner) != p.ID {
				return hub.CodeTaken(c, string(owner))
			}
		}
		if err := unindexCodes(cb, old); err != nil {
			return err
		}
		return indexCodes(cb, p)
	})
}

func codeKey(org string, c hub.ContactPointCode) []byte { return key(org, string(c.Type), c.Code) }

func indexCodes(cb *bolt.Bucket, p hub.ContactPoint) error {
	for _, c := range p.Codes {
		if err := cb.Put(codeKey(p.OrgCVR, c), []byte(p.ID)); err != nil {
			return err
		}
	}
	return nil
}

// unindexCodes removes the index entries that name p.
func unindexCodes(cb *bolt.Bucket, p hub.ContactPoint) error {
	for _, c := range p.Codes {
		if k := codeKey(p.OrgCVR, c); string(cb.Get(k)) == p.ID {
			if err := cb.Delete(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// indexPointCodes fills the code index of a file written before it
// existed; where two points share a code, the index names one of them.
func indexPointCodes(tx *bolt.Tx) error {
	cb := tx.Bucket(bPointCode)
	return tx.Bucket(bPoints).ForEach(func(_, v []byte) error {
		var p hub.ContactPoint
		if err := jsonDecode(v, &p); err != nil {
			return err
		}
		return indexCodes(cb, p)
	})
}

func (s *Store) GetContactPoint(ctx context.Context, id string) (hub.ContactPoint, error) {
	var p hub.ContactPoint
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bPoints), []byte(id), &p)
		if err == nil && !ok {
			err = notFound("contact point", id)
		}
		return err
	})
	return p, err
}

func (s *Store) DeleteContactPoint(ctx context.Context, org, id string) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		var old hub.ContactPoint
		if _, err := getJSON(tx.Bucket(bPoints), []byte(id), &old); err != nil {
			return err
		}
		if err := deleteOrgScoped(tx, bPoints, bPointOrg, "contact point", org, id); err != nil {
			return err
		}
		return unindexCodes(bk(tx, bPointCode), old)
	})
}

func (s *Store) ListContactPoints(ctx context.Context, org string) ([]hub.ContactPoint, error) {
	var out []hub.ContactPoint
	err := s.viewDirect(ctx, func(tx *bolt.Tx) (err error) {
		out, err = listOrgScoped[hub.ContactPoint](tx, bPoints, bPointOrg, org)
		return err
	})
	return out, err
}

func (s *Store) PutRoutingRule(ctx context.Context, r hub.RoutingRule) error {
	if r.ID == "" || r.OrgCVR == "" {
		return hub.Errorf(hub.Invalid, "routing rule without ID or organisation")
	}
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b := bk(tx, bRules)
		var old hub.RoutingRule
		ok, err := getJSON(b, []byte(r.ID), &old)
		if err != nil {
			return err
		}
		if ok && old.OrgCVR != r.OrgCVR {
			return hub.Errorf(hub.Conflict, "routing rule %s belongs to another organisation", r.ID)
		}
		if !ok {
			if err := underLimit(tx, bRuleOrg, r.OrgCVR, hub.RulesLimit); err != nil {
				return err
			}
		}
		if err := bk(tx, bRuleOrg).Put(key(r.OrgCVR, r.ID), nil); err != nil {
			return err
		}
		return putJSON(b, []byte(r.ID), r)
	})
}

func (s *Store) DeleteRoutingRule(ctx context.Context, org, id string) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error { return deleteOrgScoped(tx, bRules, bRuleOrg, "routing rule", org, id) })
}

func (s *Store) ListRoutingRules(ctx context.Context, org string) ([]hub.RoutingRule, error) {
	var out []hub.RoutingRule
	err := s.viewDirect(ctx, func(tx *bolt.Tx) (err error) {
		out, err = listOrgScoped[hub.RoutingRule](tx, bRules, bRuleOrg, org)
		return err
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Priority < out[j].Priority })
	return out, err
}

func (s *Store) PutContacts(ctx context.Context, cs []hub.Contact) error {
	for _, c := range cs {
		if c.ID == "" {
			return hub.Errorf(hub.Invalid, "contact without ID")
		}
	}
	defer s.contacts.changed()
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b := bk(tx, bContacts)
		for _, c := range cs {
			if err := putJSON(b, []byte(c.ID), c); err != nil {
				return err
			}
		}
		return nil
	})
}

// contactCacheMax bounds the contacts GetContact keeps in memory (some
// 200 bytes each).
const contactCacheMax = 1 << 16

// cachedContact is GetContact's answer as the contacts cache keeps it.
type cachedContact struct {
	c     hub.Contact
	found bool
}

// GetContact answers from memory what it read before, found or not, until
// a contact is written (readCache): the router and the notifier look up
// every letter's recipient, which cost two read transactions per letter.
func (s *Store) GetContact(ctx context.Context, id string) (hub.Contact, error) {
	if err := ctx.Err(); err != nil {
		return hub.Contact{}, hub.Wrap(hub.Unavailable, err, "bolt: read abandoned")
	}
	cc, ok, gen := s.contacts.get(id)
	if !ok {
		err := s.viewDirect(ctx, func(tx *bolt.Tx) (err error) {
			cc.found, err = getJSON(tx.Bucket(bContacts), []byte(id), &cc.c)
			return err
		})
		if err != nil {
			return hub.Contact{}, err
		}
		s.contacts.put(id, cc, gen)
	}
	if !cc.found {
		return hub.Contact{}, notFound("contact", id)
	}
	c := cc.c
	c.Address = slices.Clone(c.Address) // the caller's to change
	return c, nil
}

func (s *Store) DeleteContact(ctx context.Context, id string) error {
	defer s.contacts.changed()
	return s.updateDirect(ctx, func(tx *bolt.Tx) error { return bk(tx, bContacts).Delete([]byte(id)) })
}
