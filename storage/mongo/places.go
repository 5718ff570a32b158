package mongo

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/posthub/posthub/hub"
)

// Places: how an organisation's bound on records of one kind
// (hub.OrgLimit) is kept without transactions. An organisation has
// Limit.Max places per kind, documents with _id kind/org/i for i below
// Max; a new record first takes a free place (the insert of its _id, of
// which concurrent takers of one place have exactly one winner) and is
// written only then, and a deleted record gives its place back after its
// deletion. So the records never outnumber the places. A failed write
// gives the place back at once; one cut off by a crash leaves a place
// whose record never came, which Repair frees after the grace period
// (repairPlaces), as it frees the second place of a record two
// concurrent writes of one new ID both took a place for.
type placeDoc struct {
	ID   string    `bson:"_id"`
	Kind string    `bson:"kind"`
	Org  string    `bson:"org"`
	Item string    `bson:"item"`
	T    time.Time `bson:"t"`
}

// placeKind is a kind of record with places: its bound and how to list
// the live records of an organisation (or of all, org empty) by ID.
type placeKind struct {
	name  string
	limit *hub.OrgLimit
	live  func(s *Store, ctx context.Context, org string) (map[string]string, error) // ID → organisation
}

var (
	systemPlaces = placeKind{"system", &hub.SystemsLimit, func(s *Store, ctx context.Context, org string) (map[string]string, error) {
		return liveIDs[hub.System](ctx, s, s.systems, org)
	}}
	rulePlaces = placeKind{"rule", &hub.RulesLimit, func(s *Store, ctx context.Context, org string) (map[string]string, error) {
		f := bson.M{}
		if org != "" {
			f["org"] = org
		}
		docs, err := findAll[ruleDoc](ctx, s.rules, f, options.Find().SetProjection(bson.M{"org": 1}))
		out := make(map[string]string, len(docs))
		for _, d := range docs {
			out[d.ID] = d.Org
		}
		return out, err
	}}
	groupPlaces = placeKind{"group", &hub.ContactGroupsLimit, func(s *Store, ctx context.Context, org string) (map[string]string, error) {
		return liveIDs[hub.ContactGroup](ctx, s, s.groups, org)
	}}
	pointPlaces = placeKind{"point", &hub.ContactPointsLimit, func(s *Store, ctx context.Context, org string) (map[string]string, error) {
		return liveIDs[hub.ContactPoint](ctx, s, s.points, org)
	}}
	placeKinds = []placeKind{systemPlaces, rulePlaces, groupPlaces, pointPlaces}
)

// liveIDs lists the live versioned records of org (of all, org empty).
func liveIDs[T any](ctx context.Context, s *Store, c *mongo.Collection, org string) (map[string]string, error) {
	f := bson.M{}
	if org != "" {
		f["org"] = org
	}
	docs, err := listLive[T](ctx, c, f)
	out := make(map[string]string, len(docs))
	for _, d := range docs {
		out[d.K] = d.Org
	}
	return out, err
}

func placeID(kind, org string, i int) string { return fmt.Sprintf("%s/%s/%d", kind, org, i) }

// takePlace takes a free place of org for a new record item, or answers
// the kind's Limited when every place is taken. It returns the place's
// _id, for givePlace should the record's write fail.
func (s *Store) takePlace(ctx context.Context, k placeKind, org, item string) (string, error) {
	docs, err := findAll[placeDoc](ctx, s.places, bson.M{"kind": k.name, "org": org}, options.Find().SetProjection(bson.M{"_id": 1}))
	if err != nil {
		return "", err
	}
	taken := make(map[string]bool, len(docs))
	for _, d := range docs {
		taken[d.ID] = true
	}
	for i := 0; i < k.limit.Max; i++ {
		id := placeID(k.name, org, i)
		if taken[id] {
			continue
		}
		_, err := s.places.InsertOne(ctx, placeDoc{ID: id, Kind: k.name, Org: org, Item: item, T: time.Now()})
		if err == nil {
			return id, nil
		}
		if !isDup(err) {
			return "", translate(err, "take a place for %s %s", k.name, item)
		}
	}
	return "", k.limit.Limited(org)
}

// givePlace frees the place id, its record not written (best effort:
// Repair frees it otherwise).
func (s *Store) givePlace(ctx context.Context, id string) {
	_, _ = s.places.DeleteOne(context.WithoutCancel(ctx), bson.M{"_id": id})
}

// givePlaceAfter frees the place id after its record's write failed with
// err, unless the write may have landed all the same (hub.StoredNothing
// false): then the place stays, and Repair frees it after the grace period
// if no record came.
func (s *Store) givePlaceAfter(ctx context.Context, id string, err error) {
	if hub.StoredNothing(err) {
		s.givePlace(ctx, id)
	}
}

// freePlaceOf frees the place of a deleted record (best effort).
func (s *Store) freePlaceOf(ctx context.Context, k placeKind, org, item string) {
	_, _ = s.places.DeleteOne(context.WithoutCancel(ctx), bson.M{"kind": k.name, "org": org, "item": item})
}

// placesID is the meta document that says every record written before
// places existed has been given one.
const placesID = "places"

// repairPlaces frees the places older than cutoff whose record is not
// live (a write cut off by a crash, a deletion whose freeing was lost) or
// that a record holds twice. The first time, it gives the records that
// have none (written before places existed) a place, as far as places
// are free.
func (s *Store) repairPlaces(ctx context.Context, cutoff time.Time) error {
	_, filled, err := findOne[bson.M](ctx, s.meta, bson.M{"_id": placesID})
	if err != nil {
		return err
	}
	for _, k := range placeKinds {
		places, err := findAll[placeDoc](ctx, s.places, bson.M{"kind": k.name})
		if err != nil {
			return err
		}
		live, err := k.live(s, ctx, "")
		if err != nil {
			return err
		}
		held := map[string]bool{}
		for _, p := range places {
			org, ok := live[p.Item]
			keep := ok && org == p.Org && !held[p.Item]
			if keep {
				held[p.Item] = true
				continue
			}
			if p.T.Before(cutoff) {
				if _, err := s.places.DeleteOne(ctx, bson.M{"_id": p.ID, "t": bson.M{"$lt": cutoff}}); err != nil {
					return translate(err, "free a place of %s", p.Org)
				}
			}
		}
		for id, org := range live {
			if filled || held[id] {
				continue
			}
			if _, err := s.takePlace(ctx, k, org, id); err != nil && !hub.Is(err, hub.Conflict) {
				return err
			}
		}
	}
	if !filled {
		if _, err := s.meta.InsertOne(ctx, bson.M{"_id": placesID, "at": time.Now()}); err != nil && !isDup(err) {
			return translate(err, "note the places filled")
		}
	}
	return nil
}
