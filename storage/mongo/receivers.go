package mongo

import (
	"context"
	"math/rand/v2"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/posthub/posthub/hub"
)

// An organisation's receiver roster says which of its receiver systems are
// active and which is the default. It is a versioned record (recDoc, key =
// the CVR) in the receivers collection, so every ChangeReceivers is the
// insert of revision head+1 under the unique index (k, rv): the rule is
// decided on the head, and of concurrent changes exactly one inserts the
// next revision; the others decide again on the new head. That makes "at
// most four authority-post systems", "one CVR-post system" and "exactly
// one default" exact on FerretDB too, which has no transactions and no
// atomic conditional update.
//
// The roster, not the system documents, is the truth of Active and Default
// for receiver systems: reads (GetSystem, ListSystems, SystemByToken) take
// them from it. The roster revision is written first and the system
// documents after it, so a crash in between leaves at worst a member
// whose system document was never created; it holds its place for the
// grace period (a create may be in flight) and is dropped by the next
// change after that. An organisation without a roster (receivers written
// before rosters existed) is read from its system documents, and its first
// change writes its first roster revision from them.
type roster struct {
	M []rosterMember `bson:"m"`
}

type rosterMember struct {
	ID      string          `bson:"id"`
	Mailbox hub.MailboxKind `bson:"mb"`
	Default bool            `bson:"def,omitempty"`
	At      time.Time       `bson:"at"` // when it joined (wall clock)
}

func (r roster) member(id string) (rosterMember, bool) {
	for _, m := range r.M {
		if m.ID == id {
			return m, true
		}
	}
	return rosterMember{}, false
}

// rosterOf returns org's roster head; ok is false when org has none.
func (s *Store) rosterOf(ctx context.Context, org string) (r roster, ok bool, err error) {
	h, ok, err := head[roster](ctx, s.receivers, org)
	if err != nil || !ok || h.Dead {
		return roster{}, false, err
	}
	return h.X, true, nil
}

// applyRoster sets a receiver system's Active and Default from its
// organisation's roster (when it has one).
func applyRoster(sys *hub.System, r roster, ok bool) {
	if !ok || sys.Role != hub.RecipientSystem {
		return
	}
	m, in := r.member(sys.ID)
	sys.Active, sys.Default = in, in && m.Default
}

// withRoster runs read and, at the same time, fetches org's roster, so a
// read that needs both costs one round trip more than read alone only
// when read itself is quicker.
func (s *Store) withRoster(ctx context.Context, org string, read func() error) (r roster, ok bool, err error) {
	if err := sideBySide(read, func() (err error) { r, ok, err = s.rosterOf(ctx, org); return err }); err != nil {
		return roster{}, false, err
	}
	return r, ok, nil
}

// ChangeReceivers decides on the roster head and inserts the next
// revision; a concurrent change that took that revision first makes it
// decide again, on the new head.
func (s *Store) ChangeReceivers(ctx context.Context, org string, ch hub.ReceiverChange) error {
	defer s.auth.forget()
	if err := hub.CheckReceiverChange(org, ch); err != nil {
		return err
	}
	var place, nonce string
	if a := ch.Add; a != nil {
		if _, err := live[hub.System](ctx, s.systems, "system", a.ID); err == nil {
			return hub.Errorf(hub.Conflict, "system %s exists", a.ID)
		} else if !hub.Is(err, hub.NotFound) {
			return err
		}
		var err error
		if place, err = s.takePlace(ctx, systemPlaces, org, a.ID); err != nil {
			return err
		}
		// The token is claimed before the system joins, so that a taken
		// token refuses the change before anything of it is written.
		if nonce, err = s.claimToken(ctx, a.TokenHash, a.ID); err != nil {
			s.givePlace(ctx, place)
			return err
		}
	}
	plan, err := s.decideReceivers(ctx, org, ch)
	if err != nil {
		if ch.Add != nil {
			releaseClaim(ctx, s.tokens, ch.Add.TokenHash, nonce)
			s.givePlace(ctx, place)
		}
		return err
	}
	if a := ch.Add; a != nil {
		sys := *a
		sys.Active, sys.Default = true, plan[a.ID].Default
		if err := create(ctx, s.systems, "system", recDoc[hub.System]{K: sys.ID, Org: org, Tok: sys.TokenHash, CS: s.nextSeq(), X: sys}); err != nil {
			// Give its place back (best effort; otherwise the next change
			// after the grace period drops it).
			_, _ = s.decideReceivers(context.WithoutCancel(ctx), org, hub.ReceiverChange{At: ch.At, Rule: func(active []hub.Receiver) ([]hub.Receiver, error) {
				out := active[:0:0]
				for _, r := range active {
					if r.ID != sys.ID {
						out = append(out, r)
					}
				}
				return out, nil
			}})
			s.releaseTokenIfUnused(ctx, sys.TokenHash, sys.ID, nonce)
			s.givePlaceAfter(ctx, place, err)
			return err
		}
		*a = sys
	}
	for id, st := range plan {
		if ch.Add != nil && id == ch.Add.ID {
			continue
		}
		// The roster insert above decided the change and reads take Active
		// and Default from the roster; the systems' own documents only
		// follow it, so a failure here is logged, not the caller's.
		if err := s.setReceiverState(ctx, id, st, ch.At); err != nil {
			s.log().Warn("mongo: a receiver's state lags its roster", "system", id, "error", err)
		}
	}
	return nil
}

// decideReceivers runs the rule on the roster head and inserts the next
// revision, again on a newer head as long as other changes win the race.
func (s *Store) decideReceivers(ctx context.Context, org string, ch hub.ReceiverChange) (map[string]hub.ReceiverState, error) {
	for try := 0; ; try++ {
		h, ok, err := head[roster](ctx, s.receivers, org)
		if err != nil {
			return nil, err
		}
		docs, err := listLive[hub.System](ctx, s.systems, bson.M{"org": org})
		if err != nil {
			return nil, err
		}
		active, members := s.activeReceivers(h, ok && !h.Dead, docs)
		next, err := ch.Rule(active)
		if err != nil {
			return nil, err
		}
		plan, err := hub.PlanReceivers(active, next, ch.Add)
		if err != nil {
			return nil, err
		}
		var rv roster
		for _, r := range next {
			m, ok := members[r.ID]
			if !ok {
				m = rosterMember{ID: r.ID, Mailbox: r.Mailbox, At: time.Now()}
			}
			m.Default = r.Default
			rv.M = append(rv.M, m)
		}
		err = putRev(ctx, s.receivers, "receiver roster", recDoc[roster]{K: org, RV: h.RV + 1, Org: org, X: rv})
		if !hub.Is(err, hub.Conflict) {
			return plan, err
		}
		if try == 50 {
			return nil, hub.Wrap(hub.Unavailable, err, "the receiver systems of %s are changing too often; try again", org)
		}
		if err := ctx.Err(); err != nil {
			return nil, hub.Wrap(hub.Unavailable, err, "change of receivers abandoned")
		}
		// Back off a little so that not all losers meet again at once.
		time.Sleep(time.Duration(rand.Int64N(int64(time.Millisecond) * int64(1+min(try, 8)))))
	}
}

// activeReceivers lists the active receivers of an organisation, in
// creation order, from its roster head h (when has) and its system
// documents, with the members to carry into the next revision. A member
// without a system document counts while it may still be in creation
// (younger than the grace period) and is dropped after.
func (s *Store) activeReceivers(h recDoc[roster], has bool, docs []recDoc[hub.System]) ([]hub.Receiver, map[string]rosterMember) {
	members := map[string]rosterMember{}
	var active []hub.Receiver
	if !has {
		for _, d := range sortedByCreation(docs) {
			if d.X.Role == hub.RecipientSystem && d.X.Active {
				active = append(active, hub.Receiver{ID: d.K, Mailbox: d.X.Mailbox, Default: d.X.Default})
				members[d.K] = rosterMember{ID: d.K, Mailbox: d.X.Mailbox, At: time.Now()}
			}
		}
		return active, members
	}
	exists := map[string]bool{}
	for _, d := range docs {
		exists[d.K] = true
	}
	for _, m := range h.X.M {
		if !exists[m.ID] && time.Since(m.At) > s.grace {
			continue
		}
		active = append(active, hub.Receiver{ID: m.ID, Mailbox: m.Mailbox, Default: m.Default})
		members[m.ID] = m
	}
	return active, members
}

// setReceiverState brings a system document in line with the roster (the
// roster is what reads go by; the document follows for its Version and
// Updated), again on a newer revision when another write won.
func (s *Store) setReceiverState(ctx context.Context, id string, st hub.ReceiverState, at time.Time) error {
	for try := 0; ; try++ {
		h, err := live[hub.System](ctx, s.systems, "system", id)
		if hub.Is(err, hub.NotFound) {
			return nil // a member still in creation
		}
		if err != nil {
			return err
		}
		x := h.X
		x.Active, x.Default, x.Updated = st.Active, st.Default, at
		x.Version++
		err = putRev(ctx, s.systems, "system", recDoc[hub.System]{K: id, RV: h.RV + 1, Org: h.Org, Tok: h.Tok, CS: h.CS, X: x})
		if !hub.Is(err, hub.Conflict) || try == 10 {
			return err
		}
	}
}

func sortedByCreation(docs []recDoc[hub.System]) []recDoc[hub.System] {
	out := append([]recDoc[hub.System](nil), docs...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].CS < out[j].CS })
	return out
}
