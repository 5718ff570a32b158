package hub

import (
	"context"
	"log/slog"
	"time"
)

// ReceiptPurge deletes sender receipts older than Retention. A sender that
// never reads its receipts (with deletion) — every SF1601 client, and any
// that only looks at the answer to its send — would otherwise leave one
// stored per letter for good. A resubmission of a letter whose receipt is
// gone is answered with an equivalent one (Ingest), and an acknowledgement
// issues its COMPLETED receipt anew, so nothing but the old receipts go.
type ReceiptPurge struct {
	Store interface {
		ListOrgs(ctx context.Context) ([]Organisation, error)
		ListSystems(ctx context.Context, org string) ([]System, error)
		ListReceipts(ctx context.Context, systemID, after string, limit int) ([]Receipt, error)
		DeleteReceipt(ctx context.Context, systemID, transmissionID string) error
		Locks
	}
	Retention time.Duration
	// Max bounds the receipts one Purge deletes (default 50,000); the next
	// run goes on.
	Max    int
	Holder string // this instance, for the purge's lock
	Log    *slog.Logger
	Now    func() time.Time
}

// Purge deletes receipts older than the retention, oldest first per
// system, if this instance gets the purge's lock, and returns how many.
func (p *ReceiptPurge) Purge(ctx context.Context) (int, error) {
	if p.Retention <= 0 {
		return 0, nil
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	max := p.Max
	if max <= 0 {
		max = 50_000
	}
	const lock = "posthub-receipt-purge"
	ok, err := p.Store.AcquireLock(ctx, lock, p.Holder, time.Hour, now)
	if err != nil || !ok {
		return 0, err
	}
	defer func() { _ = p.Store.ReleaseLock(context.WithoutCancel(ctx), lock, p.Holder) }()
	cutoff := now.Add(-p.Retention)
	orgs, err := p.Store.ListOrgs(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, o := range orgs {
		systems, err := p.Store.ListSystems(ctx, o.CVR)
		if err != nil {
			return n, err
		}
		for _, sys := range systems {
			if sys.Role != SenderSystem {
				continue
			}
			for n < max {
				// Oldest first: a page that ends in a young receipt is the last.
				rs, err := p.Store.ListReceipts(ctx, sys.ID, "", min(500, max-n))
				if err != nil {
					return n, err
				}
				old := 0
				for _, r := range rs {
					if !r.Time.Before(cutoff) {
						break
					}
					if err := p.Store.DeleteReceipt(ctx, sys.ID, r.TransmissionID); err != nil {
						return n, err
					}
					old++
					n++
				}
				if old < len(rs) || len(rs) == 0 {
					break
				}
			}
		}
	}
	if n > 0 && p.Log != nil {
		p.Log.Info("receipt purge: receipts older than the retention removed", "receipts", n, "before", cutoff)
	}
	return n, nil
}
