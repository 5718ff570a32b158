package hub

import (
	"context"
	"time"
)

// The mailbox side of the hub: what viewing clients and notifications need
// beyond the delivery queues. A letter in a mailbox is its delivery in the
// queue MailboxQueue(party, kind); the viewer's state of that letter
// (folder, read, deleted) is a MailboxItem keyed by the delivery ID. A
// delivery without a MailboxItem is an unread letter in the inbox, so
// nothing has to be written when a letter arrives.

// Folder is a mailbox folder.
type Folder string

const (
	FolderInbox   Folder = "INBOX"
	FolderArchive Folder = "ARCHIVE"
	// FolderDeleted holds letters the owner deleted; the hub keeps them for
	// the legal retention period and then purges them.
	FolderDeleted Folder = "DELETED"
)

// MailboxItem is the viewer-side state of one letter in a mailbox.
type MailboxItem struct {
	DeliveryID  string    `json:"deliveryId"`
	MessageUUID string    `json:"messageUUID"`
	Queue       string    `json:"queue"`
	Folder      Folder    `json:"folder"`
	Read        bool      `json:"read"`
	ReadAt      time.Time `json:"readAt,omitempty"`
	DeletedAt   time.Time `json:"deletedAt,omitempty"`
	// PurgeAt is when a deleted letter leaves the hub for good (DeletedAt
	// plus the retention period); zero while not deleted.
	PurgeAt time.Time `json:"purgeAt,omitempty"`
	Updated time.Time `json:"updated"`
}

// ConsentScope is what a consent lets the authority see.
type ConsentScope string

// ConsentOwnLetters lets an authority read the letters it sent the
// citizen itself (the Norwegian "Min side" model), nothing else.
const ConsentOwnLetters ConsentScope = "OWN_LETTERS"

// Consent is a citizen's grant of read access to an authority.
type Consent struct {
	Citizen string       `json:"citizen"`      // CPR
	OrgCVR  string       `json:"organisation"` // the authority
	Scope   ConsentScope `json:"scope"`
	Granted time.Time    `json:"granted"`
	// Revoked is zero while the consent is in force.
	Revoked time.Time `json:"revoked,omitempty"`
}

// Active reports whether the consent is in force.
func (c Consent) Active() bool { return c.Revoked.IsZero() }

// NotificationChannel is how a notification (advisering) is sent.
type NotificationChannel string

const (
	NotifyEmail NotificationChannel = "EMAIL"
	NotifySMS   NotificationChannel = "SMS"
)

// NotificationState is the life of one notification.
type NotificationState string

const (
	NotificationPending NotificationState = "PENDING"
	NotificationSent    NotificationState = "SENT"
	// NotificationFailed: gave up after the last attempt.
	NotificationFailed NotificationState = "FAILED"
)

// Notification is one e-mail or SMS telling a recipient a letter arrived.
type Notification struct {
	// ID is "<deliveryID>/<channel>", so a letter is notified once per
	// channel however many instances notice it.
	ID          string              `json:"id"`
	DeliveryID  string              `json:"deliveryId"`
	MessageUUID string              `json:"messageUUID"`
	Party       string              `json:"party"`
	Channel     NotificationChannel `json:"channel"`
	Address     string              `json:"address"` // e-mail address or phone number
	State       NotificationState   `json:"state"`
	Attempts    int                 `json:"attempts"`
	NextAttempt time.Time           `json:"nextAttempt"`
	LastError   string              `json:"lastError,omitempty"`
	Created     time.Time           `json:"created"`
	Updated     time.Time           `json:"updated"`
}

// NotificationID is the conventional ID of a delivery's notification.
func NotificationID(deliveryID string, ch NotificationChannel) string {
	return deliveryID + "/" + string(ch)
}

// AssertionKey is a public key a viewing-client system signs its user
// assertions with.
type AssertionKey struct {
	SystemID string `json:"systemId"`
	KeyID    string `json:"kid"`
	// Alg is the JWS algorithm: "EdDSA" (Ed25519) or "ES256" (P-256).
	Alg string `json:"alg"`
	// PublicKey is the PKIX (SubjectPublicKeyInfo) DER encoding.
	PublicKey []byte    `json:"publicKey"`
	Created   time.Time `json:"created"`
}

// MailboxStore holds the viewer-side state of mailboxes, consents,
// notifications and viewing clients' assertion keys. Every Store has it
// (Store embeds it); it is named on its own so that the viewer and the
// notifier can take just this part. Every method that returns nil has made
// its change durable.
type MailboxStore interface {
	// PutMailboxItem creates or replaces the state of a letter (last
	// writer wins: the owner is the only writer).
	PutMailboxItem(ctx context.Context, it MailboxItem) error
	// MailboxItems returns the states of the given deliveries that have
	// one, keyed by delivery ID (absent ones are simply missing).
	MailboxItems(ctx context.Context, deliveryIDs []string) (map[string]MailboxItem, error)
	// DeleteMailboxItem removes a state record; absent is not an error.
	DeleteMailboxItem(ctx context.Context, deliveryID string) error
	// PurgeableItems returns up to limit deleted items with PurgeAt <= now,
	// earliest first.
	PurgeableItems(ctx context.Context, now time.Time, limit int) ([]MailboxItem, error)

	// PutConsent creates or replaces the consent of (Citizen, OrgCVR).
	PutConsent(ctx context.Context, c Consent) error
	// GetConsent returns NotFound when the pair has none (revoked ones are
	// returned, with Revoked set).
	GetConsent(ctx context.Context, citizen, org string) (Consent, error)
	// ListConsents returns a citizen's consents (org "") or an
	// organisation's (citizen ""), revoked ones included, oldest first.
	ListConsents(ctx context.Context, citizen, org string) ([]Consent, error)

	// CreateNotification records a new notification. Conflict when the ID
	// exists: exactly one of any number of concurrent callers creates it.
	CreateNotification(ctx context.Context, n Notification) error
	// UpdateNotification replaces an existing notification. NotFound.
	UpdateNotification(ctx context.Context, n Notification) error
	// GetNotification returns NotFound when absent.
	GetNotification(ctx context.Context, id string) (Notification, error)
	// DueNotifications returns up to limit PENDING notifications with
	// NextAttempt <= now, earliest first.
	DueNotifications(ctx context.Context, now time.Time, limit int) ([]Notification, error)

	// GetCursor returns a named position (e.g. the notifier's last event
	// Seq); 0 when never set.
	GetCursor(ctx context.Context, name string) (uint64, error)
	// SetCursor stores a named position.
	SetCursor(ctx context.Context, name string, v uint64) error

	// PutAssertionKey registers a key. Conflict when the system already
	// has a key with that KeyID.
	PutAssertionKey(ctx context.Context, k AssertionKey) error
	// AssertionKeys lists a system's keys.
	AssertionKeys(ctx context.Context, systemID string) ([]AssertionKey, error)
	// DeleteAssertionKey removes a key; NotFound when absent.
	DeleteAssertionKey(ctx context.Context, systemID, keyID string) error
}
