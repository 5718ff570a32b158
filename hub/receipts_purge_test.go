package hub_test

import (
	"context"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/hubtest"
)

// TestReceiptsOlderThanTheRetentionArePurged: receipts were kept until
// their sender read them with deletion, and SF1601 clients never do: one
// receipt per letter for good. The purge deletes those older than the
// retention, of every sender system, and keeps the rest; a resubmission of
// a letter whose receipt went is still answered with what it said.
func TestReceiptsOlderThanTheRetentionArePurged(t *testing.T) {
	h := hubtest.Open(t)
	ctx := context.Background()
	h.Org(hub.Organisation{CVR: "11111111", Name: "A", Kind: hub.Authority, Setup: hub.SetupContactable})
	h.Org(hub.Organisation{CVR: "22222222", Name: "B", Kind: hub.Authority, Setup: hub.SetupContactable})
	a, _ := h.System("11111111", hub.SystemSpec{Name: "a", Role: hub.SenderSystem})
	b, _ := h.System("22222222", hub.SystemSpec{Name: "b", Role: hub.SenderSystem})
	h.Registered("0101701234")
	in := h.Ingest(hub.StoreEvents{Store: h.Store}, 1<<20)
	t0 := time.Now().UTC().Truncate(time.Second)
	now := t0
	in.Now = func() time.Time { return now }
	send := func(sys hub.System, n int) []hub.Receipt {
		var out []hub.Receipt
		for range n {
			uuid := hub.NewID()
			body := []byte("<memo:Message>" + uuid + "</memo:Message>")
			r, _, err := in.Submit(ctx, hub.Submission{System: sys, Body: body, Size: int64(len(body)), SHA256: uuid,
				Letter: hub.Letter{UUID: uuid, MessageType: "DIGITALPOST", SenderID: sys.OrgCVR, RecipientID: "0101701234", RecipientType: "CPR", Size: int64(len(body))}})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	send(a, 3)
	send(b, 2)
	now = t0.Add(80 * 24 * time.Hour)
	young := send(a, 2)
	p := &hub.ReceiptPurge{Store: h.Store, Retention: 90 * 24 * time.Hour, Holder: "test", Max: 4,
		Now: func() time.Time { return t0.Add(91 * 24 * time.Hour) }}
	// Bounded per run; the next run goes on.
	if n, err := p.Purge(ctx); err != nil || n != 4 {
		t.Fatalf("first purge: %d %v, want 4", n, err)
	}
	if n, err := p.Purge(ctx); err != nil || n != 1 {
		t.Fatalf("second purge: %d %v, want 1", n, err)
	}
	for sys, want := range map[hub.System]int{a: 2, b: 0} {
		rs, err := h.Store.ListReceipts(ctx, sys.ID, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != want {
			t.Errorf("%s keeps %d receipts, want %d: %+v", sys.Name, len(rs), want, rs)
		}
		for _, r := range rs {
			if r.TransmissionID != young[0].TransmissionID && r.TransmissionID != young[1].TransmissionID {
				t.Errorf("kept an old receipt %+v", r)
			}
		}
	}
	// Another instance holding the purge's lock: this one leaves it.
	later := t0.Add(200 * 24 * time.Hour)
	if ok, err := h.Store.AcquireLock(ctx, "posthub-receipt-purge", "other", time.Hour, later); err != nil || !ok {
		t.Fatal(ok, err)
	}
	p.Now = func() time.Time { return later }
	if n, err := p.Purge(ctx); err != nil || n != 0 {
		t.Fatalf("a purge while another instance purges: %d %v", n, err)
	}
}
