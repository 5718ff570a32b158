package mongo

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/posthub/posthub/hub"
)

// recDoc is one revision of a versioned record (organisation, system,
// contact group, contact point, receiver roster). Revisions of key k are
// numbered rv = 1, 2… and every change (create, update, delete) is the
// insert of revision head+1 under the unique index (k, rv): of any number
// of concurrent changes exactly one wins, on FerretDB as on MongoDB. The
// head revision is the record; a head with Dead set is a deleted record.
// Older revisions are never read; after a change their content is dropped
// but the documents stay, holding their numbers: a writer that read an old
// head and inserts late must find its number taken (were the old revision
// removed, its insert would succeed below the head and its change be lost
// while it reported success).
type recDoc[T any] struct {
	ID   string `bson:"_id"`
	K    string `bson:"k"`
	RV   int64  `bson:"rv"`
	Org  string `bson:"org"`
	Tok  string `bson:"tok,omitempty"`
	CS   int64  `bson:"cs"` // creation sequence (systems are listed in creation order)
	Dead bool   `bson:"dead,omitempty"`
	X    T      `bson:"x"`
}

func recID(k string, rv int64) string { return fmt.Sprintf("%s#%016d", k, rv) }

func head[T any](ctx context.Context, c *mongo.Collection, k string) (recDoc[T], bool, error) {
	return findOne[recDoc[T]](ctx, c, bson.M{"k": k}, options.FindOne().SetSort(sortBy("-rv")))
}

// live returns the current record of k, NotFound when absent or deleted.
func live[T any](ctx context.Context, c *mongo.Collection, what, k string) (recDoc[T], error) {
	h, ok, err := head[T](ctx, c, k)
	if err != nil {
		return h, err
	}
	if !ok || h.Dead {
		return h, hub.Errorf(hub.NotFound, "%s %s not found", what, k)
	}
	return h, nil
}

// putRev inserts revision next.RV; Conflict when another change took it.
// Then it empties the older revisions (best effort).
func putRev[T any](ctx context.Context, c *mongo.Collection, what string, next recDoc[T]) error {
	next.ID = recID(next.K, next.RV)
	if _, err := c.InsertOne(ctx, next); err != nil {
		if isDup(err) {
			return hub.Wrap(hub.Conflict, err, "%s %s changed concurrently", what, next.K)
		}
		return translate(err, "write %s %s", what, next.K)
	}
	_, _ = c.UpdateMany(ctx, bson.M{"k": next.K, "rv": bson.M{"$lt": next.RV}, "x": bson.M{"$exists": true}},
		bson.M{"$unset": bson.M{"x": "", "tok": ""}})
	return nil
}

// create makes the record k unless a live one exists.
func create[T any](ctx context.Context, c *mongo.Collection, what string, rec recDoc[T]) error {
	h, ok, err := head[T](ctx, c, rec.K)
	if err != nil {
		return err
	}
	if ok && !h.Dead {
		return hub.Errorf(hub.Conflict, "%s %s exists", what, rec.K)
	}
	rec.RV = h.RV + 1
	if err := putRev(ctx, c, what, rec); hub.Is(err, hub.Conflict) {
		return hub.Wrap(hub.Conflict, err, "%s %s exists", what, rec.K)
	} else if err != nil {
		return err
	}
	return nil
}

// listLive returns the live records matching filter, by key.
// liveRecords is what listLive finds, the records alone.
func liveRecords[T any](ctx context.Context, c *mongo.Collection, filter bson.M) ([]T, error) {
	docs, err := listLive[T](ctx, c, filter)
	out := make([]T, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.X)
	}
	return out, err
}

func listLive[T any](ctx context.Context, c *mongo.Collection, filter bson.M) ([]recDoc[T], error) {
	// Emptied older revisions (no x; putRev keeps their numbers) are left
	// out by the filter, so a listing does not grow with every change.
	f := bson.M{"x": bson.M{"$exists": true}}
	for k, v := range filter {
		f[k] = v
	}
	docs, err := findAll[recDoc[T]](ctx, c, f, options.Find().SetSort(sortBy("k", "-rv")))
	if err != nil {
		return nil, err
	}
	var out []recDoc[T]
	for i, d := range docs {
		if i > 0 && docs[i-1].K == d.K {
			continue // an older revision not yet removed
		}
		if !d.Dead {
			out = append(out, d)
		}
	}
	return out, nil
}

// deleteRec deletes org's record k by a tombstone revision.
func deleteRec[T any](ctx context.Context, c *mongo.Collection, what, org, k string) error {
	for try := 0; ; try++ {
		h, err := live[T](ctx, c, what, k)
		if err != nil {
			return err
		}
		if h.Org != org {
			return hub.Errorf(hub.NotFound, "%s %s not found", what, k)
		}
		err = putRev(ctx, c, what, recDoc[T]{K: k, RV: h.RV + 1, Org: org, Dead: true})
		if !hub.Is(err, hub.Conflict) || try == 5 {
			return err
		}
	}
}

// --- organisations

func (s *Store) CreateOrg(ctx context.Context, o hub.Organisation) error {
	if o.CVR == "" {
		return hub.Errorf(hub.Invalid, "organisation without CVR")
	}
	return create(ctx, s.orgs, "organisation", recDoc[hub.Organisation]{K: o.CVR, Org: o.CVR, X: o})
}

func (s *Store) UpdateOrg(ctx context.Context, o hub.Organisation) error {
	h, err := live[hub.Organisation](ctx, s.orgs, "organisation", o.CVR)
	if err != nil {
		return err
	}
	if h.X.Version != o.Version {
		return hub.Errorf(hub.Conflict, "organisation %s changed (version %d, not %d)", o.CVR, h.X.Version, o.Version)
	}
	o.Version++
	return putRev(ctx, s.orgs, "organisation", recDoc[hub.Organisation]{K: o.CVR, RV: h.RV + 1, Org: o.CVR, X: o})
}

func (s *Store) GetOrg(ctx context.Context, cvr string) (hub.Organisation, error) {
	h, err := live[hub.Organisation](ctx, s.orgs, "organisation", cvr)
	return h.X, err
}

func (s *Store) ListOrgs(ctx context.Context) ([]hub.Organisation, error) {
	return liveRecords[hub.Organisation](ctx, s.orgs, bson.M{})
}

// --- systems

// A system's token hash is claimed in system_tokens (_id = hash) before
// the system revision that carries it is written: the unique _id gives
// "Conflict when the TokenHash is taken" without a transaction. A claim is
// valid only while the claimed system's live revision carries that hash,
// so a claim left by a crash is recognised as stale and taken over once it
// is older than the grace period (younger, it may belong to a create or
// update in flight).
type tokenDoc struct {
	Hash   string    `bson:"_id"`
	System string    `bson:"sys"`
	At     time.Time `bson:"at"` // wall clock of the claim
	N      string    `bson:"n,omitempty"`
}

type touchDoc struct {
	ID string    `bson:"_id"`
	At time.Time `bson:"at"`
}

func (d tokenDoc) claimOwner() string   { return d.System }
func (d tokenDoc) claimedAt() time.Time { return d.At }
func (d tokenDoc) claimNonce() string   { return d.N }

// claimDoc is a claim of a unique key (a token hash, a contact-point
// code): its _id is the key.
type claimDoc interface {
	claimOwner() string
	claimedAt() time.Time
	claimNonce() string
}

// claim inserts doc, owner's claim of key, into c, and returns doc's
// nonce when it did (empty when it uses a claim it found); the unique _id
// makes one claimant win. doc carries a fresh nonce, so that a claim this call
// inserted (the driver may send an insert again) is told from another
// call's. An existing claim stands while holds says its owner's live
// revision carries the key (the caller may then use it too, if it is its
// own: its revision and any other change of the owner are revisions of one
// record, of which one wins) or while it is younger than the grace period
// (taken says what to answer then; a claim of the caller's own owner that
// the live revision does not carry belongs to another change of it still
// under way, or to one that is about to release it, so it is not shared).
// Otherwise it is stale (a crash between claim and revision): exactly that
// claim, by its time, is removed and the insert tried again.
func claim[D claimDoc](ctx context.Context, s *Store, c *mongo.Collection, what, key, owner, ownerField string, doc D,
	holds func(owner string) (bool, error), taken func(owner string, held bool) error) (nonce string, err error) {
	for try := 0; try < 3; try++ {
		_, err := c.InsertOne(ctx, doc)
		if err == nil {
			return doc.claimNonce(), nil
		}
		if !isDup(err) {
			return "", translate(err, "claim %s", what)
		}
		old, ok, err := findOne[D](ctx, c, bson.M{"_id": key})
		if err != nil {
			return "", err
		}
		if !ok {
			continue
		}
		if old.claimNonce() == doc.claimNonce() {
			return doc.claimNonce(), nil
		}
		held, err := holds(old.claimOwner())
		if err != nil {
			return "", err
		}
		switch {
		case held && old.claimOwner() == owner:
			return "", nil
		case old.claimOwner() == owner && time.Since(old.claimedAt()) < s.grace:
			return "", hub.Errorf(hub.Conflict, "%s is being changed by another request; try again", what)
		case held || time.Since(old.claimedAt()) < s.grace:
			return "", taken(old.claimOwner(), held)
		}
		if _, err := c.DeleteOne(ctx, bson.M{"_id": key, ownerField: old.claimOwner(), "at": old.claimedAt()}); err != nil {
			return "", translate(err, "remove stale %s claim", what)
		}
	}
	return "", hub.Errorf(hub.Conflict, "%s is contended", what)
}

// releaseClaim removes the claim of key that a claim call inserted with
// nonce (none when it used a claim it found: that one is not the
// caller's to remove).
func releaseClaim(ctx context.Context, c *mongo.Collection, key, nonce string) {
	if nonce != "" {
		_, _ = c.DeleteOne(context.WithoutCancel(ctx), bson.M{"_id": key, "n": nonce})
	}
}

func (s *Store) claimToken(ctx context.Context, hash, system string) (nonce string, err error) {
	if hash == "" {
		return "", nil
	}
	holds := func(other string) (bool, error) {
		h, err := live[hub.System](ctx, s.systems, "system", other)
		if hub.Is(err, hub.NotFound) {
			return false, nil
		}
		return err == nil && h.Tok == hash, err
	}
	taken := func(_ string, held bool) error {
		if held {
			return hub.Errorf(hub.Conflict, "token hash is taken by another system")
		}
		return hub.Errorf(hub.Conflict, "token hash is being claimed by another system")
	}
	return claim(ctx, s, s.tokens, "token hash", hash, system, "sys", tokenDoc{Hash: hash, System: system, At: time.Now(), N: randomID()}, holds, taken)
}

// releaseToken drops system's claim on the hash its live revision no
// longer carries (after the revision that replaced it). No other claim of
// the hash can exist meanwhile: a claim call refuses to share a claim the
// live revision does not carry, and inserts none while one exists.
func (s *Store) releaseToken(ctx context.Context, hash, system string) {
	if hash != "" {
		_, _ = s.tokens.DeleteOne(ctx, bson.M{"_id": hash, "sys": system})
	}
}

func (s *Store) CreateSystem(ctx context.Context, sys hub.System) error {
	defer s.auth.forget()
	if err := hub.CheckPlainCreate(sys); err != nil {
		return err
	}
	if _, err := live[hub.System](ctx, s.systems, "system", sys.ID); err == nil {
		return hub.Errorf(hub.Conflict, "system %s exists", sys.ID)
	} else if !hub.Is(err, hub.NotFound) {
		return err
	}
	place, err := s.takePlace(ctx, systemPlaces, sys.OrgCVR, sys.ID)
	if err != nil {
		return err
	}
	nonce, err := s.claimToken(ctx, sys.TokenHash, sys.ID)
	if err != nil {
		s.givePlace(ctx, place)
		return err
	}
	err = create(ctx, s.systems, "system", recDoc[hub.System]{K: sys.ID, Org: sys.OrgCVR, Tok: sys.TokenHash, CS: s.nextSeq(), X: sys})
	if err != nil {
		s.releaseTokenIfUnused(ctx, sys.TokenHash, sys.ID, nonce)
		s.givePlaceAfter(ctx, place, err)
	}
	return err
}

// releaseTokenIfUnused drops the claim on hash that a claimToken of a
// failed change inserted with nonce, unless system's live revision uses
// the hash (the change's write may have landed after all).
func (s *Store) releaseTokenIfUnused(ctx context.Context, hash, system, nonce string) {
	if nonce == "" {
		return
	}
	if h, err := live[hub.System](ctx, s.systems, "system", system); err == nil && h.Tok == hash {
		return
	}
	releaseClaim(ctx, s.tokens, hash, nonce)
}

func (s *Store) UpdateSystem(ctx context.Context, sys hub.System) error {
	defer s.auth.forget()
	h, err := live[hub.System](ctx, s.systems, "system", sys.ID)
	if err != nil {
		return err
	}
	if h.X.Version != sys.Version {
		return hub.Errorf(hub.Conflict, "system %s changed (version %d, not %d)", sys.ID, h.X.Version, sys.Version)
	}
	if h.X.Role == hub.RecipientSystem {
		r, ok, err := s.rosterOf(ctx, h.Org)
		if err != nil {
			return err
		}
		applyRoster(&h.X, r, ok)
	}
	if err := hub.CheckPlainUpdate(h.X, sys); err != nil {
		return err
	}
	var nonce string
	if sys.TokenHash != h.Tok {
		if nonce, err = s.claimToken(ctx, sys.TokenHash, sys.ID); err != nil {
			return err
		}
	}
	sys.Version++
	err = putRev(ctx, s.systems, "system", recDoc[hub.System]{K: sys.ID, RV: h.RV + 1, Org: sys.OrgCVR, Tok: sys.TokenHash, CS: h.CS, X: sys})
	if err != nil {
		s.releaseTokenIfUnused(ctx, sys.TokenHash, sys.ID, nonce)
		return err
	}
	if sys.TokenHash != h.Tok {
		s.releaseToken(ctx, h.Tok, sys.ID)
	}
	return nil
}

func (s *Store) withTouch(ctx context.Context, docs []recDoc[hub.System]) ([]hub.System, error) {
	out := make([]hub.System, 0, len(docs))
	ids := make([]string, 0, len(docs))
	for _, d := range docs {
		d.X.TokenHash = d.Tok
		out = append(out, d.X)
		ids = append(ids, d.K)
	}
	if len(ids) == 0 {
		return out, nil
	}
	ts, err := findAll[touchDoc](ctx, s.touches, bson.M{"_id": bson.M{"$in": ids}})
	if err != nil {
		return nil, err
	}
	at := map[string]time.Time{}
	for _, t := range ts {
		at[t.ID] = t.At
	}
	for i := range out {
		if t, ok := at[out[i].ID]; ok && t.After(out[i].LastFetch) {
			out[i].LastFetch = t
		}
	}
	return out, nil
}

func (s *Store) GetSystem(ctx context.Context, id string) (hub.System, error) {
	h, err := live[hub.System](ctx, s.systems, "system", id)
	if err != nil {
		return hub.System{}, err
	}
	var out []hub.System
	touched := func() (err error) {
		out, err = s.withTouch(ctx, []recDoc[hub.System]{h})
		return err
	}
	if h.X.Role != hub.RecipientSystem {
		if err := touched(); err != nil {
			return hub.System{}, err
		}
		return out[0], nil
	}
	r, ok, err := s.withRoster(ctx, h.Org, touched)
	if err != nil {
		return hub.System{}, err
	}
	applyRoster(&out[0], r, ok)
	return out[0], nil
}

// SystemByToken answers from the auth cache while its entry is younger than
// Config.AuthCacheTTL (authcache.go says what that bounds).
func (s *Store) SystemByToken(ctx context.Context, hash string) (hub.System, error) {
	if hash == "" {
		return hub.System{}, hub.Errorf(hub.NotFound, "no system has an empty token")
	}
	sys, gen, ok := s.auth.system(hash)
	if ok {
		return sys, nil
	}
	at := time.Now()
	sys, err := s.systemByToken(ctx, hash)
	if err == nil {
		s.auth.putSystem(hash, sys, gen, at)
	}
	return sys, err
}

func (s *Store) systemByToken(ctx context.Context, hash string) (hub.System, error) {
	t, ok, err := findOne[tokenDoc](ctx, s.tokens, bson.M{"_id": hash})
	if err != nil {
		return hub.System{}, err
	}
	if !ok {
		return hub.System{}, hub.Errorf(hub.NotFound, "no system has this token")
	}
	sys, err := s.GetSystem(ctx, t.System)
	if err == nil && sys.TokenHash != hash {
		err = hub.Errorf(hub.NotFound, "no system has this token")
	}
	return sys, err
}

func (s *Store) ListSystems(ctx context.Context, org string) ([]hub.System, error) {
	var docs []recDoc[hub.System]
	r, ok, err := s.withRoster(ctx, org, func() (err error) {
		docs, err = listLive[hub.System](ctx, s.systems, bson.M{"org": org})
		return err
	})
	if err != nil {
		return nil, err
	}
	out, err := s.withTouch(ctx, sortedByCreation(docs))
	for i := range out {
		applyRoster(&out[i], r, ok)
	}
	return out, err
}

// TouchSystem is last-writer-wins in a side document, so it never races
// with UpdateSystem's revisions.
func (s *Store) TouchSystem(ctx context.Context, id string, at time.Time) error {
	if _, err := live[hub.System](ctx, s.systems, "system", id); err != nil {
		return err
	}
	return upsert(ctx, s.touches, bson.M{"_id": id}, touchDoc{ID: id, At: at}, "touch system "+id)
}

// --- contact structure

// putVersioned implements the Version rule of PutContactGroup and
// PutContactPoint: 0 creates (Version 1), otherwise the stored Version must
// match and is incremented.
func putVersioned[T any](ctx context.Context, c *mongo.Collection, what, id, org string, version int64, build func(v int64) T) error {
	if id == "" || org == "" {
		return hub.Errorf(hub.Invalid, "%s without ID or organisation", what)
	}
	if version == 0 {
		return create(ctx, c, what, recDoc[T]{K: id, Org: org, X: build(1)})
	}
	h, err := live[T](ctx, c, what, id)
	if err != nil {
		return err
	}
	if h.Org != org {
		return hub.Errorf(hub.NotFound, "%s %s not found", what, id)
	}
	var stored struct {
		Version int64 `bson:"version"`
	}
	raw, err := bson.Marshal(h.X)
	if err == nil {
		err = bson.Unmarshal(raw, &stored)
	}
	if err != nil {
		return hub.Wrap(hub.Internal, err, "read %s version", what)
	}
	if stored.Version != version {
		return hub.Errorf(hub.Conflict, "%s %s changed (version %d, not %d)", what, id, stored.Version, version)
	}
	return putRev(ctx, c, what, recDoc[T]{K: id, RV: h.RV + 1, Org: org, X: build(version + 1)})
}

func (s *Store) PutContactGroup(ctx context.Context, g hub.ContactGroup) error {
	return s.withPlace(ctx, groupPlaces, g.OrgCVR, g.ID, g.Version == 0, func() error {
		return putVersioned(ctx, s.groups, "contact group", g.ID, g.OrgCVR, g.Version, func(v int64) hub.ContactGroup {
			g.Version = v
			return g
		})
	})
}

// withPlace runs write, which adds record item to org when isNew, in a
// place taken first (and given back when write fails).
func (s *Store) withPlace(ctx context.Context, k placeKind, org, item string, isNew bool, write func() error) error {
	if !isNew || org == "" {
		return write()
	}
	place, err := s.takePlace(ctx, k, org, item)
	if err != nil {
		return err
	}
	if err := write(); err != nil {
		s.givePlaceAfter(ctx, place, err)
		return err
	}
	return nil
}

func (s *Store) DeleteContactGroup(ctx context.Context, org, id string) error {
	if err := deleteRec[hub.ContactGroup](ctx, s.groups, "contact group", org, id); err != nil {
		return err
	}
	s.freePlaceOf(ctx, groupPlaces, org, id)
	return nil
}

func (s *Store) ListContactGroups(ctx context.Context, org string) ([]hub.ContactGroup, error) {
	return liveRecords[hub.ContactGroup](ctx, s.groups, bson.M{"org": org})
}

// A contact-point code names one point of an organisation: the point
// claims it in contact_point_codes (_id = organisation, type and value)
// before the revision that carries it is written, as a system claims its
// token. A claim whose owner's live revision does not carry the code is
// stale once older than the grace period (a crash between the claim and
// the revision, or before the release of a dropped code); a put that has
// run for half the grace period gives up rather than write, so a claim is
// never taken over from a put that may still write.
type codeDoc struct {
	ID    string    `bson:"_id"`
	Owner string    `bson:"o"`
	At    time.Time `bson:"at"` // wall clock of the claim
	N     string    `bson:"n,omitempty"`
}

// codeID is org:type:code. Neither a CVR nor a code type contains a colon,
// so the key is unambiguous; it carries no NUL byte, which FerretDB on
// PostgreSQL cannot store (jsonb refuses \u0000).
func codeID(org string, c hub.ContactPointCode) string {
	return org + ":" + string(c.Type) + ":" + c.Code
}

func carries(p hub.ContactPoint, c hub.ContactPointCode) bool {
	for _, x := range p.Codes {
		if x == c {
			return true
		}
	}
	return false
}

// claimCode claims c in org for point id; the nonce is empty when the
// point's live revision carries the code already (see claim).
func (s *Store) claimCode(ctx context.Context, org, id string, c hub.ContactPointCode) (nonce string, err error) {
	k := codeID(org, c)
	holds := func(other string) (bool, error) {
		h, err := live[hub.ContactPoint](ctx, s.points, "contact point", other)
		if hub.Is(err, hub.NotFound) {
			return false, nil
		}
		return err == nil && h.Org == org && carries(h.X, c), err
	}
	taken := func(other string, _ bool) error { return hub.CodeTaken(c, other) }
	return claim(ctx, s, s.codes, fmt.Sprintf("contact-point code %s %s", c.Type, c.Code), k, id, "o",
		codeDoc{ID: k, Owner: id, At: time.Now(), N: randomID()}, holds, taken)
}

func (d codeDoc) claimOwner() string   { return d.Owner }
func (d codeDoc) claimedAt() time.Time { return d.At }
func (d codeDoc) claimNonce() string   { return d.N }

// releaseCodes drops point id's claims on codes its live revision does not
// carry (after the revision that dropped them, or the point's deletion; as
// for releaseToken, no other claim of such a code can exist meanwhile).
func (s *Store) releaseCodes(ctx context.Context, org, id string, codes []hub.ContactPointCode) {
	h, err := live[hub.ContactPoint](ctx, s.points, "contact point", id)
	if err != nil && !hub.Is(err, hub.NotFound) {
		return // left for the grace period
	}
	for _, c := range codes {
		if err == nil && carries(h.X, c) {
			continue
		}
		_, _ = s.codes.DeleteOne(ctx, bson.M{"_id": codeID(org, c), "o": id})
	}
}

// releaseCodesClaimed drops the claims on codes[i] that a failed put
// inserted with nonces[i], unless point id's live revision carries the
// code (the put's write may have landed after all).
func (s *Store) releaseCodesClaimed(ctx context.Context, org, id string, codes []hub.ContactPointCode, nonces []string) {
	h, err := live[hub.ContactPoint](ctx, s.points, "contact point", id)
	if err != nil && !hub.Is(err, hub.NotFound) {
		return // left for the grace period
	}
	for i, c := range codes {
		if err == nil && carries(h.X, c) {
			continue
		}
		releaseClaim(ctx, s.codes, codeID(org, c), nonces[i])
	}
}

func (s *Store) PutContactPoint(ctx context.Context, p hub.ContactPoint) error {
	return s.withPlace(ctx, pointPlaces, p.OrgCVR, p.ID, p.Version == 0 && p.ID != "", func() error { return s.putContactPoint(ctx, p) })
}

func (s *Store) putContactPoint(ctx context.Context, p hub.ContactPoint) error {
	start := time.Now()
	var old []hub.ContactPointCode
	if p.Version != 0 {
		// An update of an absent point is NotFound before any claim.
		h, err := live[hub.ContactPoint](ctx, s.points, "contact point", p.ID)
		if err == nil && h.Org != p.OrgCVR {
			err = hub.Errorf(hub.NotFound, "contact point %s not found", p.ID)
		}
		if err != nil {
			return err
		}
		old = h.X.Codes
	}
	// A code listed twice is claimed once (the second claim would find the
	// first, which no live revision carries yet, and refuse).
	var uniq []hub.ContactPointCode
	for _, c := range p.Codes {
		if !slices.Contains(uniq, c) {
			uniq = append(uniq, c)
		}
	}
	p.Codes = uniq
	nonces := make([]string, len(p.Codes))
	for i, c := range p.Codes {
		n, err := s.claimCode(ctx, p.OrgCVR, p.ID, c)
		if err != nil {
			s.releaseCodesClaimed(ctx, p.OrgCVR, p.ID, p.Codes[:i], nonces)
			return err
		}
		nonces[i] = n
	}
	if time.Since(start) > s.grace/2 {
		s.releaseCodesClaimed(ctx, p.OrgCVR, p.ID, p.Codes, nonces)
		return hub.Errorf(hub.Unavailable, "contact point %s: claiming its codes took too long; try again", p.ID)
	}
	codes := p.Codes
	err := putVersioned(ctx, s.points, "contact point", p.ID, p.OrgCVR, p.Version, func(v int64) hub.ContactPoint {
		p.Version = v
		return p
	})
	// On success the codes the point dropped go; on failure the claims
	// this put inserted (each only if the live revision does not carry it).
	if err == nil {
		s.releaseCodes(ctx, p.OrgCVR, p.ID, old)
	} else {
		s.releaseCodesClaimed(ctx, p.OrgCVR, p.ID, codes, nonces)
	}
	return err
}

func (s *Store) GetContactPoint(ctx context.Context, id string) (hub.ContactPoint, error) {
	h, err := live[hub.ContactPoint](ctx, s.points, "contact point", id)
	return h.X, err
}

func (s *Store) DeleteContactPoint(ctx context.Context, org, id string) error {
	h, err := live[hub.ContactPoint](ctx, s.points, "contact point", id)
	if err != nil {
		return err
	}
	if err := deleteRec[hub.ContactPoint](ctx, s.points, "contact point", org, id); err != nil {
		return err
	}
	s.releaseCodes(ctx, org, id, h.X.Codes)
	s.freePlaceOf(ctx, pointPlaces, org, id)
	return nil
}

func (s *Store) ListContactPoints(ctx context.Context, org string) ([]hub.ContactPoint, error) {
	return liveRecords[hub.ContactPoint](ctx, s.points, bson.M{"org": org})
}

type ruleDoc struct {
	ID   string          `bson:"_id"`
	Org  string          `bson:"org"`
	Prio int             `bson:"prio"`
	X    hub.RoutingRule `bson:"x"`
}

func (s *Store) PutRoutingRule(ctx context.Context, r hub.RoutingRule) error {
	if r.ID == "" || r.OrgCVR == "" {
		return hub.Errorf(hub.Invalid, "routing rule without ID or organisation")
	}
	old, exists, err := findOne[ruleDoc](ctx, s.rules, bson.M{"_id": r.ID}, options.FindOne().SetProjection(bson.M{"org": 1}))
	if err != nil {
		return err
	}
	if exists && old.Org != r.OrgCVR {
		return hub.Errorf(hub.Conflict, "routing rule %s belongs to another organisation", r.ID)
	}
	return s.withPlace(ctx, rulePlaces, r.OrgCVR, r.ID, !exists, func() error {
		return upsert(ctx, s.rules, bson.M{"_id": r.ID}, ruleDoc{ID: r.ID, Org: r.OrgCVR, Prio: r.Priority, X: r}, "put routing rule "+r.ID)
	})
}

func (s *Store) DeleteRoutingRule(ctx context.Context, org, id string) error {
	res, err := s.rules.DeleteOne(ctx, bson.M{"_id": id, "org": org})
	if err != nil {
		return translate(err, "delete routing rule %s", id)
	}
	if res.DeletedCount == 0 {
		return hub.Errorf(hub.NotFound, "routing rule %s not found", id)
	}
	s.freePlaceOf(ctx, rulePlaces, org, id)
	return nil
}

func (s *Store) ListRoutingRules(ctx context.Context, org string) ([]hub.RoutingRule, error) {
	docs, err := findAll[ruleDoc](ctx, s.rules, bson.M{"org": org}, options.Find().SetSort(sortBy("prio", "_id")))
	out := make([]hub.RoutingRule, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.X)
	}
	return out, err
}

// --- contact register

type contactDoc struct {
	ID string      `bson:"_id"`
	X  hub.Contact `bson:"x"`
}

// PutContacts inserts the batch in one unordered insert and replaces, one
// upsert each, the contacts whose insert met an existing document (stored
// before, or by a concurrent caller just now: of concurrent first writes
// of an ID exactly one insert wins, and the others replace it, last
// writer wins, as upsert does for any concurrent first upsert). Not one
// bulk of upserts: on MongoDB two concurrent upserts of a new ID can both
// miss and one fail on the unique _id, and FerretDB v1.24 holds a
// PostgreSQL connection for every statement of an update command that
// matches a document until the command ends, so a bulk replacing more
// than its pool (50) of existing contacts, or a few concurrent smaller
// ones, wait on each other for ever (measured: a re-import of 120
// contacts never returned). A fresh import costs one command per batch;
// a re-import one more per existing contact, replaceWidth side by side.
func (s *Store) PutContacts(ctx context.Context, cs []hub.Contact) error {
	if len(cs) == 0 {
		return nil
	}
	// The last entry of an ID wins, as it would put by put.
	last := make(map[string]int, len(cs))
	for i, c := range cs {
		if c.ID == "" {
			return hub.Errorf(hub.Invalid, "contact without ID")
		}
		last[c.ID] = i
	}
	docs := make([]contactDoc, 0, len(last))
	for i, c := range cs {
		if last[c.ID] == i {
			docs = append(docs, contactDoc{ID: c.ID, X: c})
		}
	}
	_, err := s.contacts.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return nil
	}
	existing, ok := dupIndexes(err)
	if !ok {
		return translate(err, "put contacts")
	}
	return replaceEach(len(existing), func(i int) error {
		d := docs[existing[i]]
		return upsert(ctx, s.contacts, bson.M{"_id": d.ID}, d, "put contact "+d.ID)
	})
}

// replaceWidth is how many single-document writes replaceEach has in
// flight: enough to overlap round trips, few enough that FerretDB (two
// PostgreSQL connections per update at most, a pool of 50) never runs
// short when several callers replace at once.
const replaceWidth = 8

// replaceEach runs fn(0..n-1), replaceWidth at a time, and returns the
// first error (the others still run: each is a whole write of its own).
func replaceEach(n int, fn func(i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, replaceWidth)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) GetContact(ctx context.Context, id string) (hub.Contact, error) {
	d, ok, err := findOne[contactDoc](ctx, s.contacts, bson.M{"_id": id})
	if err == nil && !ok {
		err = hub.Errorf(hub.NotFound, "contact %s not found", id)
	}
	return d.X, err
}

func (s *Store) DeleteContact(ctx context.Context, id string) error {
	_, err := s.contacts.DeleteOne(ctx, bson.M{"_id": id})
	return translate(err, "delete contact %s", id)
}

// --- users

type userDoc struct {
	ID string   `bson:"_id"`
	X  hub.User `bson:"x"`
}

func (s *Store) CreateUser(ctx context.Context, u hub.User) error {
	if u.ID == "" {
		return hub.Errorf(hub.Invalid, "user without ID")
	}
	_, err := s.users.InsertOne(ctx, userDoc{ID: u.ID, X: u})
	if isDup(err) {
		return hub.Wrap(hub.Conflict, err, "user %s exists", u.ID)
	}
	return translate(err, "create user %s", u.ID)
}

// PutUser replaces a user; a plain replace is enough (last writer wins),
// accounts have no Version.
func (s *Store) PutUser(ctx context.Context, u hub.User) error {
	res, err := s.users.ReplaceOne(ctx, bson.M{"_id": u.ID}, userDoc{ID: u.ID, X: u})
	if err != nil {
		return translate(err, "put user %s", u.ID)
	}
	if res.MatchedCount == 0 {
		return hub.Errorf(hub.NotFound, "user %s not found", u.ID)
	}
	return nil
}

func (s *Store) GetUser(ctx context.Context, id string) (hub.User, error) {
	d, ok, err := findOne[userDoc](ctx, s.users, bson.M{"_id": id})
	if err == nil && !ok {
		err = hub.Errorf(hub.NotFound, "user %s not found", id)
	}
	return d.X, err
}

func (s *Store) ListUsers(ctx context.Context) ([]hub.User, error) {
	docs, err := findAll[userDoc](ctx, s.users, bson.M{}, options.Find().SetSort(sortBy("_id")))
	out := make([]hub.User, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.X)
	}
	return out, err
}

// --- session generations
//
// A user's generation is the highest g of its session_generations
// documents. A bump inserts g+1 under the unique index (u, g): $inc is not
// atomic on FerretDB and a lost or reordered increment could lower the
// generation and bring ended sessions back; an insert cannot. A bump that
// loses the insert to another bump is done too (that one ended the same
// sessions). Older documents are removed afterwards (best effort: the
// highest one stays, so the generation cannot go down).

type sessionGenDoc struct {
	ID   string `bson:"_id"`
	User string `bson:"u"`
	Gen  int64  `bson:"g"`
}

func (s *Store) SessionGeneration(ctx context.Context, id string) (uint64, error) {
	d, _, err := findOne[sessionGenDoc](ctx, s.sessionGens, bson.M{"u": id}, options.FindOne().SetSort(bson.D{{Key: "g", Value: -1}}))
	return uint64(d.Gen), err
}

func (s *Store) BumpSessionGeneration(ctx context.Context, id string) (uint64, error) {
	if id == "" {
		return 0, hub.Errorf(hub.Invalid, "session generation of no user")
	}
	g, err := s.SessionGeneration(ctx, id)
	if err != nil {
		return 0, err
	}
	next := int64(g) + 1
	// _id is user#generation (the generation, after the last '#', is a
	// number, so the key is unambiguous); no NUL byte, which FerretDB on
	// PostgreSQL cannot store.
	_, err = s.sessionGens.InsertOne(ctx, sessionGenDoc{ID: id + "#" + strconv.FormatInt(next, 10), User: id, Gen: next})
	if err != nil && !isDup(err) {
		return 0, translate(err, "bump session generation of %s", id)
	}
	_, _ = s.sessionGens.DeleteMany(ctx, bson.M{"u": id, "g": bson.M{"$lt": next}})
	return uint64(next), nil
}
