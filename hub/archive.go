package hub

import (
	"context"
	"io"
	"time"
)

// SentArchive is a sender organisation's archive of the letters it asked
// the hub to keep (ForwardAndKeep, or ForwardElseKeep when undelivered), so
// its self-service portal can show what it sent. A copy lives until the
// message's ArchiveUntil; Purge then removes it.
type SentArchive struct {
	Store Store
	Blobs Blobs
	Now   func() time.Time
}

func (a *SentArchive) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

// List pages an organisation's archived letters, newest first. after is
// the UUID of the previous page's last letter, or "".
func (a *SentArchive) List(ctx context.Context, org, after string, limit int) ([]Message, error) {
	now := a.now()
	var out []Message
	for len(out) < limit {
		ms, err := a.Store.ListMessagesBySender(ctx, org, after, limit)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if m.ArchiveUntil.After(now) && len(out) < limit {
				out = append(out, m)
			}
		}
		if len(ms) < limit {
			break
		}
		after = ms[len(ms)-1].UUID
	}
	return out, nil
}

// Open returns an archived letter's MeMo. NotFound when org did not send
// it, did not archive it, or its archive period has ended.
func (a *SentArchive) Open(ctx context.Context, org, uuid string) (Message, io.ReadCloser, error) {
	m, err := a.Store.GetMessage(ctx, uuid)
	if err != nil {
		return Message{}, nil, err
	}
	if m.SenderCVR != org || !m.ArchiveUntil.After(a.now()) {
		return Message{}, nil, Errorf(NotFound, "no archived letter %s of %s", uuid, org)
	}
	rc, err := OpenContent(ctx, a.Blobs, m)
	if err != nil {
		return Message{}, nil, err
	}
	return m, rc, nil
}

// Purge removes archive copies whose period has ended and that no delivery
// still needs: the content blob and the message record (after which the
// UUID may be used again). It returns how many it removed.
func (a *SentArchive) Purge(ctx context.Context) (int, error) {
	now := a.now()
	orgs, err := a.Store.ListOrgs(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, o := range orgs {
		after := ""
		for {
			ms, err := a.Store.ListMessagesBySender(ctx, o.CVR, after, 500)
			if err != nil {
				return n, err
			}
			for _, m := range ms {
				if m.ArchiveUntil.IsZero() || m.ArchiveUntil.After(now) {
					continue
				}
				ds, err := a.Store.DeliveriesOf(ctx, m.UUID)
				if err != nil {
					return n, err
				}
				if len(ds) > 0 {
					continue
				}
				if m.ContentKey != "" {
					if err := a.Blobs.Delete(ctx, m.ContentKey); err != nil {
						return n, err
					}
				}
				if err := a.Store.DeleteMessage(ctx, m.UUID); err != nil {
					return n, err
				}
				n++
			}
			if len(ms) < 500 {
				break
			}
			after = ms[len(ms)-1].UUID
		}
	}
	return n, nil
}
