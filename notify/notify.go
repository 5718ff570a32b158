// Package notify sends notifications (advisering): when a letter lands in
// a mailbox, its recipient is told by e-mail and/or SMS, to the addresses
// in the contact register.
//
// Guarantees:
//   - Once per letter and channel: a notification is a record with the ID
//     "<deliveryID>/<channel>" created by a unique insert
//     (hub.MailboxStore.CreateNotification), so however many instances,
//     hooks and replays notice a letter, it is queued once.
//   - Nothing is lost to a crash: letters are noticed twice — at once, by
//     Enqueue from the ingest's Delivered hook, and durably, by Reconcile,
//     which follows the sealed event log (MEMO_SEND_READY_FOR_FETCH and
//     DELAYED_MEMO_SEND_VALIDATED_AWAITING_DELAY) from a stored cursor. A
//     letter held by doNotDeliverUntilDate is notified when it is released.
//   - At least once, with retries: Send marks a notification SENT only
//     after the mail server or SMS gateway accepted it; a failure is retried
//     with exponential back-off up to MaxAttempts, then FAILED. Either way
//     a NOTIFICATION_SENT or NOTIFICATION_FAILED event is logged. One
//     instance sends at a time (a lock in the store).
//   - The text: the sender's MeMo notification (additionalNotification
//     appended) when it gave one, else a neutral text naming only the
//     sender; the letter's title and content never leave the hub in a
//     notification unless the sender wrote them into that text.
package notify

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
)

// Event tags (posthub's own).
const (
	TagSent   = "NOTIFICATION_SENT"
	TagFailed = "NOTIFICATION_FAILED"
)

// Mailer sends one e-mail. It returns nil only when the server took it.
type Mailer interface {
	SendMail(ctx context.Context, to, subject, body string) error
}

// SMSGateway sends one SMS. It returns nil only when the gateway took it.
type SMSGateway interface {
	SendSMS(ctx context.Context, phone, text string) error
}

// Store is what the notifier reads of the hub's metadata (hub.Store has it).
type Store interface {
	GetMessage(ctx context.Context, uuid string) (hub.Message, error)
	GetDelivery(ctx context.Context, id string) (hub.Delivery, error)
	DeliveriesOf(ctx context.Context, messageUUID string) ([]hub.Delivery, error)
	GetOrg(ctx context.Context, cvr string) (hub.Organisation, error)
	GetContact(ctx context.Context, id string) (hub.Contact, error)
	ScanEvents(ctx context.Context, from uint64, fn func(hub.Event) error) error
	AcquireLock(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (bool, error)
}

// Mailboxes is the notifications' state (hub.MailboxStore has it).
type Mailboxes interface {
	CreateNotification(ctx context.Context, n hub.Notification) error
	UpdateNotification(ctx context.Context, n hub.Notification) error
	GetNotification(ctx context.Context, id string) (hub.Notification, error)
	DueNotifications(ctx context.Context, now time.Time, limit int) ([]hub.Notification, error)
	GetCursor(ctx context.Context, name string) (uint64, error)
	SetCursor(ctx context.Context, name string, v uint64) error
}

// Notifier queues and sends notifications.
type Notifier struct {
	Store     Store
	Mailboxes Mailboxes
	Blobs     hub.Blobs
	Events    hub.EventSink
	Mail      Mailer     // nil: no e-mail notifications
	SMS       SMSGateway // nil: no SMS notifications
	// MaxAttempts before a notification is FAILED (default 8).
	MaxAttempts int
	// Backoff is the wait after the first failure, doubled after each
	// further one and capped at 6 hours (default 1 minute).
	Backoff time.Duration
	// MailboxURL is shown in the notification ("read it at …"), optional.
	MailboxURL string
	Holder     string // this instance, for the send lock
	Log        *slog.Logger
	Now        func() time.Time

	hooks atomic.Int32 // Hook calls in flight
}

const (
	lockName   = "notifier"
	cursorName = "notifier/events"
)

func (n *Notifier) now() time.Time {
	if n.Now != nil {
		return n.Now().UTC()
	}
	return time.Now().UTC()
}

func (n *Notifier) logger() *slog.Logger {
	if n.Log != nil {
		return n.Log
	}
	return slog.Default()
}

// Enqueue queues notifications for the mailbox deliveries among ds. It is
// idempotent. Deliveries to parties without an e-mail address or phone
// number in the contact register are skipped.
func (n *Notifier) Enqueue(ctx context.Context, ds []hub.Delivery) error {
	for _, d := range ds {
		if d.Channel != hub.ChannelMailbox {
			continue
		}
		party := strings.Split(strings.TrimPrefix(d.Queue, "mailbox/"), "/")[0]
		c, err := n.Store.GetContact(ctx, party)
		if hub.ErrorCode(err) == hub.NotFound {
			continue
		}
		if err != nil {
			return err
		}
		now := n.now()
		next := d.AvailableAt
		if next.Before(now) {
			next = now
		}
		for _, ch := range []struct {
			channel hub.NotificationChannel
			address string
			on      bool
		}{{hub.NotifyEmail, c.Email, n.Mail != nil}, {hub.NotifySMS, c.Phone, n.SMS != nil}} {
			if ch.address == "" || !ch.on {
				continue
			}
			err := n.Mailboxes.CreateNotification(ctx, hub.Notification{ID: hub.NotificationID(d.ID, ch.channel),
				DeliveryID: d.ID, MessageUUID: d.MessageUUID, Party: party, Channel: ch.channel, Address: ch.address,
				State: hub.NotificationPending, NextAttempt: next, Created: now, Updated: now})
			if err != nil && hub.ErrorCode(err) != hub.Conflict {
				return err
			}
		}
	}
	return nil
}

// maxHooks bounds the hooks in flight.
const maxHooks = 64

// Hook adapts Enqueue to hub.Ingest.Delivered (errors are logged; Reconcile
// catches what a failed hook missed).
// At most maxHooks run at once (a mass send calls it per letter); over
// that it returns at once and leaves the letters to Reconcile.
func (n *Notifier) Hook(ctx context.Context, ds []hub.Delivery) {
	if n.hooks.Add(1) > maxHooks {
		n.hooks.Add(-1)
		return
	}
	defer n.hooks.Add(-1)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := n.Enqueue(ctx, ds); err != nil {
		n.logger().Warn("notify: enqueue", "error", err)
	}
}

// Reconcile follows the sealed event log from the stored cursor and
// enqueues notifications for letters that reached a mailbox. It returns
// how many events it read.
func (n *Notifier) Reconcile(ctx context.Context) (int, error) {
	from, err := n.Mailboxes.GetCursor(ctx, cursorName)
	if err != nil {
		return 0, err
	}
	var last uint64
	read := 0
	var uuids []string
	err = n.Store.ScanEvents(ctx, from+1, func(ev hub.Event) error {
		last = ev.Seq
		read++
		switch ev.Tag {
		case "MEMO_SEND_READY_FOR_FETCH", "DELAYED_MEMO_SEND_VALIDATED_AWAITING_DELAY":
			if strings.HasPrefix(ev.Detail["queue"], "mailbox/") || ev.Tag != "MEMO_SEND_READY_FOR_FETCH" {
				uuids = append(uuids, ev.MessageUUID)
			}
		}
		if read >= 1000 {
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return read, err
	}
	for _, u := range uuids {
		ds, err := n.Store.DeliveriesOf(ctx, u)
		if err != nil {
			return read, err
		}
		if err := n.Enqueue(ctx, ds); err != nil {
			return read, err
		}
	}
	if read > 0 {
		return read, n.Mailboxes.SetCursor(ctx, cursorName, last)
	}
	return 0, nil
}

var errStop = fmt.Errorf("stop")

// Send sends the notifications that are due and returns how many were
// sent. Only the instance holding the notifier lock sends.
func (n *Notifier) Send(ctx context.Context) (int, error) {
	const ttl = 2 * time.Minute
	ok, err := n.Store.AcquireLock(ctx, lockName, n.Holder, ttl, n.now())
	if err != nil || !ok {
		return 0, err
	}
	renewed := n.now()
	sent := 0
	for {
		due, err := n.Mailboxes.DueNotifications(ctx, n.now(), 50)
		if err != nil || len(due) == 0 {
			return sent, err
		}
		for _, x := range due {
			// The lock is renewed once a third of it has passed, before
			// the next attempt, and the batch ends as soon as it is
			// another's (a slow mail server can outlast it): that instance
			// sends what is due, and this one must not send it again. What
			// another instance already settled is skipped. (A lock lost
			// during one send can still cost that one notification a
			// second copy: notifications go out at least once.)
			if now := n.now(); now.Sub(renewed) >= ttl/3 {
				ok, err := n.Store.AcquireLock(ctx, lockName, n.Holder, ttl, now)
				if err != nil || !ok {
					return sent, err
				}
				renewed = now
			}
			cur, err := n.Mailboxes.GetNotification(ctx, x.ID)
			if err != nil {
				return sent, err
			}
			if cur.State != hub.NotificationPending || cur.Attempts != x.Attempts || cur.NextAttempt.After(n.now()) {
				continue
			}
			if err := n.attempt(ctx, cur); err != nil {
				return sent, err
			}
			if x2, _ := n.Mailboxes.GetNotification(ctx, x.ID); x2.State == hub.NotificationSent {
				sent++
			}
		}
	}
}

// attempt makes one try at a notification and records the outcome; it
// returns an error only when the outcome could not be recorded.
func (n *Notifier) attempt(ctx context.Context, x hub.Notification) error {
	now := n.now()
	d, err := n.Store.GetDelivery(ctx, x.DeliveryID)
	var m hub.Message
	if err == nil {
		m, err = n.Store.GetMessage(ctx, x.MessageUUID)
	}
	if hub.ErrorCode(err) == hub.NotFound || (err == nil && m.State == hub.MessageRecalled) {
		// The letter left the mailbox (recalled, purged) before we told anyone.
		x.State, x.LastError, x.Updated = hub.NotificationFailed, "letter no longer in the mailbox", now
		return n.Mailboxes.UpdateNotification(ctx, x)
	}
	if err != nil {
		return err
	}
	if d.AvailableAt.After(now) {
		x.NextAttempt, x.Updated = d.AvailableAt, now
		return n.Mailboxes.UpdateNotification(ctx, x)
	}
	subject, body := n.text(ctx, m, x.Channel)
	switch x.Channel {
	case hub.NotifyEmail:
		if n.Mail == nil {
			err = fmt.Errorf("no mailer configured")
		} else {
			err = n.Mail.SendMail(ctx, x.Address, subject, body)
		}
	case hub.NotifySMS:
		if n.SMS == nil {
			err = fmt.Errorf("no SMS gateway configured")
		} else {
			err = n.SMS.SendSMS(ctx, x.Address, body)
		}
	default:
		err = fmt.Errorf("unknown channel %q", x.Channel)
	}
	x.Attempts++
	x.Updated = now
	ev := hub.Event{Actor: "notifier", MessageUUID: x.MessageUUID, Party: x.Party,
		Detail: map[string]string{"channel": string(x.Channel), "attempts": fmt.Sprint(x.Attempts)}}
	if len(x.Party) == 8 {
		ev.Orgs = []string{x.Party}
	}
	if err == nil {
		x.State, x.LastError = hub.NotificationSent, ""
		ev.Tag = TagSent
	} else {
		x.LastError = truncate(err.Error(), 300)
		max := n.MaxAttempts
		if max <= 0 {
			max = 8
		}
		if x.Attempts >= max {
			x.State = hub.NotificationFailed
			ev.Tag = TagFailed
			ev.Detail["error"] = truncate(err.Error(), 200)
		} else {
			x.NextAttempt = now.Add(n.backoff(x.Attempts))
		}
		n.logger().Warn("notify: attempt failed", "notification", x.ID, "attempt", x.Attempts, "error", err)
	}
	if err := n.Mailboxes.UpdateNotification(ctx, x); err != nil {
		return err
	}
	if ev.Tag != "" && n.Events != nil {
		_ = n.Events.Emit(ctx, ev)
	}
	return nil
}

func (n *Notifier) backoff(attempts int) time.Duration {
	b := n.Backoff
	if b <= 0 {
		b = time.Minute
	}
	for i := 1; i < attempts && b < 6*time.Hour; i++ {
		b *= 2
	}
	return min(b, 6*time.Hour)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// text builds the subject and body of a notification.
func (n *Notifier) text(ctx context.Context, m hub.Message, ch hub.NotificationChannel) (subject, body string) {
	sender := m.SenderCVR
	if o, err := n.Store.GetOrg(ctx, m.SenderCVR); err == nil && o.Name != "" {
		sender = o.Name
	}
	subject = "New Digital Post from " + sender
	var custom string
	if rc, err := hub.OpenContent(ctx, n.Blobs, m); err == nil {
		// The header alone: a letter's files (up to its size limit) are
		// not read for a notification's text.
		if h, err := memo.ParseHeader(rc); err == nil {
			custom = strings.TrimSpace(h.Notification)
			if add := strings.TrimSpace(h.AdditionalNotification); add != "" && ch == hub.NotifyEmail {
				custom = strings.TrimSpace(custom + "\n\n" + add)
			}
		}
		rc.Close()
	}
	body = custom
	if body == "" {
		body = "You have received new Digital Post from " + sender + "."
	}
	if n.MailboxURL != "" {
		if ch == hub.NotifyEmail {
			body += "\n\nRead it in your mailbox: " + n.MailboxURL
		}
	}
	if ch == hub.NotifySMS && len([]rune(body)) > 160 {
		body = string([]rune(body)[:157]) + "..."
	}
	return subject, body
}

// Run reconciles and sends every interval until ctx ends.
func (n *Notifier) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := n.Reconcile(ctx); err != nil && ctx.Err() == nil {
			n.logger().Warn("notify: reconcile", "error", err)
		}
		if _, err := n.Send(ctx); err != nil && ctx.Err() == nil {
			n.logger().Warn("notify: send", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
