package bolt

import (
	"bytes"
	"context"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/posthub/posthub/hub"
)

var _ hub.MailboxStore = (*Store)(nil)

// Buckets of the mailbox side (hub.MailboxStore). They are created by the
// first write that needs them, so files written before they existed open
// unchanged; readers treat a missing bucket as empty.
var (
	bMbItems    = []byte("mailbox_items")         // deliveryID → MailboxItem
	bMbPurge    = []byte("mailbox_items_purge")   // tkey(PurgeAt)+deliveryID → ""
	bConsents   = []byte("consents")              // citizen\0org → Consent
	bConsentOrg = []byte("consents_by_org")       // org\0citizen → ""
	bNotifs     = []byte("notifications")         // id → Notification
	bNotifDue   = []byte("notifications_due")     // tkey(NextAttempt)+id → "" (pending only)
	bCursors    = []byte("cursors")               // name → u64
	bAssertKeys = []byte("viewer_assertion_keys") // systemID\0kid → AssertionKey
)

func wbk(tx *bolt.Tx, name []byte) (*bolt.Bucket, error) { return tx.CreateBucketIfNotExists(name) }

// PutMailboxItem implements hub.MailboxStore.
func (s *Store) PutMailboxItem(ctx context.Context, it hub.MailboxItem) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		items, err := wbk(tx, bMbItems)
		if err != nil {
			return err
		}
		purge, err := wbk(tx, bMbPurge)
		if err != nil {
			return err
		}
		var old hub.MailboxItem
		if ok, err := getJSON(items, []byte(it.DeliveryID), &old); err != nil {
			return err
		} else if ok && !old.PurgeAt.IsZero() {
			if err := purge.Delete(cat(tkey(old.PurgeAt), []byte(old.DeliveryID))); err != nil {
				return err
			}
		}
		if !it.PurgeAt.IsZero() {
			if err := purge.Put(cat(tkey(it.PurgeAt), []byte(it.DeliveryID)), nil); err != nil {
				return err
			}
		}
		return putJSON(items, []byte(it.DeliveryID), it)
	})
}

// MailboxItems implements hub.MailboxStore.
func (s *Store) MailboxItems(ctx context.Context, ids []string) (map[string]hub.MailboxItem, error) {
	out := make(map[string]hub.MailboxItem, len(ids))
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		items := tx.Bucket(bMbItems)
		if items == nil {
			return nil
		}
		for _, id := range ids {
			var it hub.MailboxItem
			ok, err := getJSON(items, []byte(id), &it)
			if err != nil {
				return err
			}
			if ok {
				out[id] = it
			}
		}
		return nil
	})
	return out, err
}

// DeleteMailboxItem implements hub.MailboxStore.
func (s *Store) DeleteMailboxItem(ctx context.Context, id string) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		items := tx.Bucket(bMbItems)
		if items == nil {
			return nil
		}
		var old hub.MailboxItem
		ok, err := getJSON(items, []byte(id), &old)
		if err != nil || !ok {
			return err
		}
		if !old.PurgeAt.IsZero() {
			if p := tx.Bucket(bMbPurge); p != nil {
				if err := p.Delete(cat(tkey(old.PurgeAt), []byte(id))); err != nil {
					return err
				}
			}
		}
		return items.Delete([]byte(id))
	})
}

// PurgeableItems implements hub.MailboxStore.
func (s *Store) PurgeableItems(ctx context.Context, now time.Time, limit int) ([]hub.MailboxItem, error) {
	var out []hub.MailboxItem
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		purge, items := tx.Bucket(bMbPurge), tx.Bucket(bMbItems)
		if purge == nil || items == nil {
			return nil
		}
		end := tkey(now)
		c := purge.Cursor()
		for k, _ := c.First(); k != nil && (limit <= 0 || len(out) < limit); k, _ = c.Next() {
			if bytes.Compare(k[:12], end) > 0 {
				break
			}
			var it hub.MailboxItem
			if ok, err := getJSON(items, k[12:], &it); err != nil {
				return err
			} else if ok {
				out = append(out, it)
			}
		}
		return nil
	})
	return out, err
}

// PutConsent implements hub.MailboxStore.
func (s *Store) PutConsent(ctx context.Context, c hub.Consent) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b, err := wbk(tx, bConsents)
		if err != nil {
			return err
		}
		byOrg, err := wbk(tx, bConsentOrg)
		if err != nil {
			return err
		}
		if err := byOrg.Put(key(c.OrgCVR, c.Citizen), nil); err != nil {
			return err
		}
		return putJSON(b, key(c.Citizen, c.OrgCVR), c)
	})
}

// GetConsent implements hub.MailboxStore.
func (s *Store) GetConsent(ctx context.Context, citizen, org string) (hub.Consent, error) {
	var c hub.Consent
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bConsents)
		if b == nil {
			return notFound("consent", citizen+"/"+org)
		}
		ok, err := getJSON(b, key(citizen, org), &c)
		if err == nil && !ok {
			return notFound("consent", citizen+"/"+org)
		}
		return err
	})
	return c, err
}

// ListConsents implements hub.MailboxStore.
func (s *Store) ListConsents(ctx context.Context, citizen, org string) ([]hub.Consent, error) {
	var out []hub.Consent
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		b := tx.Bucket(bConsents)
		if b == nil {
			return nil
		}
		collect := func(k []byte) error {
			var c hub.Consent
			ok, err := getJSON(b, k, &c)
			if ok {
				out = append(out, c)
			}
			return err
		}
		if citizen != "" {
			return scanPrefix(b, prefix(citizen), func(k, _ []byte) (bool, error) {
				c := hub.Consent{}
				if err := jsonDecode(b.Get(k), &c); err != nil {
					return false, err
				}
				if org == "" || c.OrgCVR == org {
					out = append(out, c)
				}
				return true, nil
			})
		}
		byOrg := tx.Bucket(bConsentOrg)
		if byOrg == nil {
			return nil
		}
		return scanPrefix(byOrg, prefix(org), func(k, _ []byte) (bool, error) {
			return true, collect(key(string(k[len(org)+1:]), org))
		})
	})
	sortConsents(out)
	return out, err
}

func sortConsents(cs []hub.Consent) {
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && cs[j].Granted.Before(cs[j-1].Granted); j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}

func putNotification(tx *bolt.Tx, n hub.Notification, old *hub.Notification) error {
	b, err := wbk(tx, bNotifs)
	if err != nil {
		return err
	}
	due, err := wbk(tx, bNotifDue)
	if err != nil {
		return err
	}
	if old != nil && old.State == hub.NotificationPending {
		if err := due.Delete(cat(tkey(old.NextAttempt), []byte(old.ID))); err != nil {
			return err
		}
	}
	if n.State == hub.NotificationPending {
		if err := due.Put(cat(tkey(n.NextAttempt), []byte(n.ID)), nil); err != nil {
			return err
		}
	}
	return putJSON(b, []byte(n.ID), n)
}

// CreateNotification implements hub.MailboxStore.
func (s *Store) CreateNotification(ctx context.Context, n hub.Notification) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		if b := tx.Bucket(bNotifs); b != nil && b.Get([]byte(n.ID)) != nil {
			return hub.Errorf(hub.Conflict, "notification %q exists", n.ID)
		}
		return putNotification(tx, n, nil)
	})
}

// UpdateNotification implements hub.MailboxStore.
func (s *Store) UpdateNotification(ctx context.Context, n hub.Notification) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bNotifs)
		var old hub.Notification
		if b == nil {
			return notFound("notification", n.ID)
		}
		ok, err := getJSON(b, []byte(n.ID), &old)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("notification", n.ID)
		}
		return putNotification(tx, n, &old)
	})
}

// GetNotification implements hub.MailboxStore.
func (s *Store) GetNotification(ctx context.Context, id string) (hub.Notification, error) {
	var n hub.Notification
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bNotifs)
		if b == nil {
			return notFound("notification", id)
		}
		ok, err := getJSON(b, []byte(id), &n)
		if err == nil && !ok {
			return notFound("notification", id)
		}
		return err
	})
	return n, err
}

// DueNotifications implements hub.MailboxStore.
func (s *Store) DueNotifications(ctx context.Context, now time.Time, limit int) ([]hub.Notification, error) {
	var out []hub.Notification
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		due, b := tx.Bucket(bNotifDue), tx.Bucket(bNotifs)
		if due == nil || b == nil {
			return nil
		}
		end := tkey(now)
		c := due.Cursor()
		for k, _ := c.First(); k != nil && (limit <= 0 || len(out) < limit); k, _ = c.Next() {
			if bytes.Compare(k[:12], end) > 0 {
				break
			}
			var n hub.Notification
			if ok, err := getJSON(b, k[12:], &n); err != nil {
				return err
			} else if ok {
				out = append(out, n)
			}
		}
		return nil
	})
	return out, err
}

// GetCursor implements hub.MailboxStore.
func (s *Store) GetCursor(ctx context.Context, name string) (uint64, error) {
	var v uint64
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		if b := tx.Bucket(bCursors); b != nil {
			if raw := b.Get([]byte(name)); len(raw) == 8 {
				v = readU64(raw)
			}
		}
		return nil
	})
	return v, err
}

// SetCursor implements hub.MailboxStore.
func (s *Store) SetCursor(ctx context.Context, name string, v uint64) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b, err := wbk(tx, bCursors)
		if err != nil {
			return err
		}
		return b.Put([]byte(name), u64(v))
	})
}

// PutAssertionKey implements hub.MailboxStore.
func (s *Store) PutAssertionKey(ctx context.Context, k hub.AssertionKey) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b, err := wbk(tx, bAssertKeys)
		if err != nil {
			return err
		}
		if b.Get(key(k.SystemID, k.KeyID)) != nil {
			return hub.Errorf(hub.Conflict, "system %s already has key %q", k.SystemID, k.KeyID)
		}
		return putJSON(b, key(k.SystemID, k.KeyID), k)
	})
}

// AssertionKeys implements hub.MailboxStore.
func (s *Store) AssertionKeys(ctx context.Context, systemID string) ([]hub.AssertionKey, error) {
	var out []hub.AssertionKey
	err := s.viewDirect(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		b := tx.Bucket(bAssertKeys)
		if b == nil {
			return nil
		}
		return scanPrefix(b, prefix(systemID), func(_, v []byte) (bool, error) {
			var k hub.AssertionKey
			if err := jsonDecode(v, &k); err != nil {
				return false, err
			}
			out = append(out, k)
			return true, nil
		})
	})
	return out, err
}

// DeleteAssertionKey implements hub.MailboxStore.
func (s *Store) DeleteAssertionKey(ctx context.Context, systemID, keyID string) error {
	return s.updateDirect(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bAssertKeys)
		if b == nil || b.Get(key(systemID, keyID)) == nil {
			return notFound("assertion key", keyID)
		}
		return b.Delete(key(systemID, keyID))
	})
}
