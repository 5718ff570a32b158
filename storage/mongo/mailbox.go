package mongo

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/posthub/posthub/hub"
)

var _ hub.MailboxStore = (*Store)(nil)

// The mailbox side (hub.MailboxStore): viewer state of letters, consents,
// notifications, named cursors and viewing clients' assertion keys.
//
// Which writes need a single winner, and how they get one on FerretDB as
// on MongoDB:
//   - CreateNotification and PutAssertionKey are inserts under a unique
//     index (_id, resp. (sys, kid)): exactly one concurrent caller wins,
//     the others get Conflict.
//   - DeleteAssertionKey is a deleteOne: exactly one caller finds the key.
//   - PutMailboxItem, PutConsent and SetCursor replace a whole document
//     (last writer wins, as the contract says: a letter's state and a
//     consent have one writer, their owner, and a cursor only moves
//     forward through replays that are idempotent). They are upserts; two
//     upserts that both try the insert make one fail with a duplicate key,
//     which then retries as the replacement it is.
//   - UpdateNotification replaces the document; only the holder of the
//     notifier lock sends and updates notifications.
//
// The fields the queries select on (purge time, due time, citizen,
// organisation, system) are top-level fields of the document beside the
// record itself, so the indexes cover them. A purge or due time is present
// only while the record is on that list (deleted, resp. pending), so a
// range query on it is the list.

type mbItemDoc struct {
	ID string          `bson:"_id"` // DeliveryID
	PA *time.Time      `bson:"pa,omitempty"`
	X  hub.MailboxItem `bson:"x"`
}

// consentDoc is keyed by the unique index (c, o); its _id is the server's.
type consentDoc struct {
	C string      `bson:"c"`
	O string      `bson:"o"`
	G time.Time   `bson:"g"`
	X hub.Consent `bson:"x"`
}

type notifDoc struct {
	ID  string           `bson:"_id"`
	Due *time.Time       `bson:"due,omitempty"` // NextAttempt while PENDING
	X   hub.Notification `bson:"x"`
}

type cursorDoc struct {
	ID string `bson:"_id"`
	V  int64  `bson:"v"`
}

// assertKeyDoc is keyed by the unique index (sys, kid); its _id is the
// driver's.
type assertKeyDoc struct {
	Sys string           `bson:"sys"`
	Kid string           `bson:"kid"`
	X   hub.AssertionKey `bson:"x"`
}

// upsert replaces the document matching filter, or inserts it; a duplicate
// key from a concurrent upsert's insert is retried as the replacement.
func upsert(ctx context.Context, c *mongo.Collection, filter bson.M, doc any, what string) error {
	var err error
	for try := 0; try < 3; try++ {
		_, err = c.ReplaceOne(ctx, filter, doc, options.Replace().SetUpsert(true))
		if !isDup(err) {
			break
		}
	}
	return translate(err, "%s", what)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// PutMailboxItem implements hub.MailboxStore.
func (s *Store) PutMailboxItem(ctx context.Context, it hub.MailboxItem) error {
	if it.DeliveryID == "" {
		return hub.Errorf(hub.Invalid, "mailbox item without delivery ID")
	}
	return upsert(ctx, s.mbItems, bson.M{"_id": it.DeliveryID}, mbItemDoc{ID: it.DeliveryID, PA: timePtr(it.PurgeAt), X: it},
		"write mailbox item "+it.DeliveryID)
}

// MailboxItems implements hub.MailboxStore.
func (s *Store) MailboxItems(ctx context.Context, ids []string) (map[string]hub.MailboxItem, error) {
	return findByIDs(ctx, s.mbItems, ids, nil, func(d mbItemDoc) (string, hub.MailboxItem) { return d.ID, d.X })
}

// DeleteMailboxItem implements hub.MailboxStore.
func (s *Store) DeleteMailboxItem(ctx context.Context, id string) error {
	_, err := s.mbItems.DeleteOne(ctx, bson.M{"_id": id})
	return translate(err, "delete mailbox item %s", id)
}

// dueList returns, in (field, _id) order, up to limit (0: all) of the
// documents of c whose field is at or before now — a time the documents
// carry only while they are due, so the indexed range is the list.
func dueList[D, V any](ctx context.Context, c *mongo.Collection, field string, now time.Time, limit int, pick func(D) V) ([]V, error) {
	o := options.Find().SetSort(sortBy(field, "_id"))
	if limit > 0 {
		o.SetLimit(int64(limit))
	}
	docs, err := findAll[D](ctx, c, bson.M{field: bson.M{"$lte": now}}, o)
	if err != nil {
		return nil, err
	}
	out := make([]V, len(docs))
	for i, d := range docs {
		out[i] = pick(d)
	}
	return out, nil
}

// PurgeableItems implements hub.MailboxStore.
func (s *Store) PurgeableItems(ctx context.Context, now time.Time, limit int) ([]hub.MailboxItem, error) {
	return dueList(ctx, s.mbItems, "pa", now, limit, func(d mbItemDoc) hub.MailboxItem { return d.X })
}

// PutConsent implements hub.MailboxStore.
func (s *Store) PutConsent(ctx context.Context, c hub.Consent) error {
	if c.Citizen == "" || c.OrgCVR == "" {
		return hub.Errorf(hub.Invalid, "consent without citizen or organisation")
	}
	// The replacement carries no _id: an insert gets a new one, a
	// replacement keeps the stored one.
	return upsert(ctx, s.consents, bson.M{"c": c.Citizen, "o": c.OrgCVR},
		consentDoc{C: c.Citizen, O: c.OrgCVR, G: c.Granted, X: c}, "write consent "+c.Citizen+"/"+c.OrgCVR)
}

// GetConsent implements hub.MailboxStore.
func (s *Store) GetConsent(ctx context.Context, citizen, org string) (hub.Consent, error) {
	d, ok, err := findOne[consentDoc](ctx, s.consents, bson.M{"c": citizen, "o": org})
	if err == nil && !ok {
		err = hub.Errorf(hub.NotFound, "consent %s/%s not found", citizen, org)
	}
	return d.X, err
}

// ListConsents implements hub.MailboxStore. Ties in Granted are ordered
// by the other party, as bolt's key order does.
func (s *Store) ListConsents(ctx context.Context, citizen, org string) ([]hub.Consent, error) {
	filter, order := bson.M{}, sortBy("g", "o")
	switch {
	case citizen != "":
		filter["c"] = citizen
		if org != "" {
			filter["o"] = org
		}
	case org != "":
		filter["o"], order = org, sortBy("g", "c")
	default:
		return nil, nil
	}
	docs, err := findAll[consentDoc](ctx, s.consents, filter, options.Find().SetSort(order))
	if err != nil {
		return nil, err
	}
	out := make([]hub.Consent, len(docs))
	for i, d := range docs {
		out[i] = d.X
	}
	return out, nil
}

func newNotifDoc(n hub.Notification) notifDoc {
	d := notifDoc{ID: n.ID, X: n}
	if n.State == hub.NotificationPending {
		t := n.NextAttempt
		d.Due = &t
	}
	return d
}

// CreateNotification implements hub.MailboxStore: the insert under the
// unique _id has exactly one winner.
func (s *Store) CreateNotification(ctx context.Context, n hub.Notification) error {
	if n.ID == "" {
		return hub.Errorf(hub.Invalid, "notification without ID")
	}
	_, err := s.notifs.InsertOne(ctx, newNotifDoc(n))
	if isDup(err) {
		return hub.Wrap(hub.Conflict, err, "notification %q exists", n.ID)
	}
	return translate(err, "create notification %s", n.ID)
}

// UpdateNotification implements hub.MailboxStore.
func (s *Store) UpdateNotification(ctx context.Context, n hub.Notification) error {
	res, err := s.notifs.ReplaceOne(ctx, bson.M{"_id": n.ID}, newNotifDoc(n))
	if err != nil {
		return translate(err, "update notification %s", n.ID)
	}
	if res.MatchedCount == 0 {
		return hub.Errorf(hub.NotFound, "notification %s not found", n.ID)
	}
	return nil
}

// GetNotification implements hub.MailboxStore.
func (s *Store) GetNotification(ctx context.Context, id string) (hub.Notification, error) {
	d, ok, err := findOne[notifDoc](ctx, s.notifs, bson.M{"_id": id})
	if err == nil && !ok {
		err = hub.Errorf(hub.NotFound, "notification %s not found", id)
	}
	return d.X, err
}

// DueNotifications implements hub.MailboxStore.
func (s *Store) DueNotifications(ctx context.Context, now time.Time, limit int) ([]hub.Notification, error) {
	return dueList(ctx, s.notifs, "due", now, limit, func(d notifDoc) hub.Notification { return d.X })
}

// GetCursor implements hub.MailboxStore.
func (s *Store) GetCursor(ctx context.Context, name string) (uint64, error) {
	d, _, err := findOne[cursorDoc](ctx, s.cursors, bson.M{"_id": name})
	return uint64(d.V), err
}

// SetCursor implements hub.MailboxStore.
func (s *Store) SetCursor(ctx context.Context, name string, v uint64) error {
	if v > 1<<63-1 {
		return hub.Errorf(hub.Invalid, "cursor %s: %d out of range", name, v)
	}
	return upsert(ctx, s.cursors, bson.M{"_id": name}, cursorDoc{ID: name, V: int64(v)}, "write cursor "+name)
}

// PutAssertionKey implements hub.MailboxStore: the insert under the
// unique (sys, kid) index has exactly one winner.
func (s *Store) PutAssertionKey(ctx context.Context, k hub.AssertionKey) error {
	defer s.auth.forget()
	_, err := s.assertKeys.InsertOne(ctx, assertKeyDoc{Sys: k.SystemID, Kid: k.KeyID, X: k})
	if isDup(err) {
		return hub.Wrap(hub.Conflict, err, "system %s already has key %q", k.SystemID, k.KeyID)
	}
	return translate(err, "write assertion key %s/%s", k.SystemID, k.KeyID)
}

// AssertionKeys implements hub.MailboxStore. It answers from the auth
// cache while its entry is younger than Config.AuthCacheTTL (authcache.go
// says what that bounds).
func (s *Store) AssertionKeys(ctx context.Context, systemID string) ([]hub.AssertionKey, error) {
	ks, gen, ok := s.auth.assertionKeys(systemID)
	if ok {
		return append([]hub.AssertionKey(nil), ks...), nil
	}
	at := time.Now()
	docs, err := findAll[assertKeyDoc](ctx, s.assertKeys, bson.M{"sys": systemID}, options.Find().SetSort(sortBy("kid")))
	if err != nil {
		return nil, err
	}
	out := make([]hub.AssertionKey, len(docs))
	for i, d := range docs {
		out[i] = d.X
	}
	s.auth.putAssertionKeys(systemID, append([]hub.AssertionKey(nil), out...), gen, at)
	return out, nil
}

// DeleteAssertionKey implements hub.MailboxStore.
func (s *Store) DeleteAssertionKey(ctx context.Context, systemID, keyID string) error {
	defer s.auth.forget()
	res, err := s.assertKeys.DeleteOne(ctx, bson.M{"sys": systemID, "kid": keyID})
	if err != nil {
		return translate(err, "delete assertion key %s/%s", systemID, keyID)
	}
	if res.DeletedCount == 0 {
		return hub.Errorf(hub.NotFound, "assertion key %q not found", keyID)
	}
	return nil
}
