package admin_test

import (
	"context"
	"testing"
	"time"

	"github.com/posthub/posthub/admin"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/hubtest"
)

// TestStatisticsCountDanishDays: counters were keyed by the UTC day, so a
// letter accepted between midnight and 01:00 Danish time (02:00 in summer)
// counted on the day before, and on New Year's night in the year before;
// and the default period ended on the UTC day. Both are Danish days now.
func TestStatisticsCountDanishDays(t *testing.T) {
	h := hubtest.Open(t)
	ctx := context.Background()
	h.Registered("0101701234")
	dk, err := time.LoadLocation("Europe/Copenhagen")
	if err != nil {
		t.Fatal(err)
	}
	for i, at := range []time.Time{
		time.Date(2027, 1, 1, 0, 30, 0, 0, dk), // 2026-12-31T23:30Z
		time.Date(2027, 7, 1, 1, 30, 0, 0, dk), // summer time: 2027-06-30T23:30Z
	} {
		in := h.Ingest(hub.StoreEvents{Store: h.Store}, 1<<20)
		in.Now = func() time.Time { return at }
		uuid := []string{"a0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-000000000002"}[i]
		body := []byte("<memo:Message>" + uuid + "</memo:Message>")
		if _, _, err := in.Submit(ctx, hub.Submission{System: hub.System{ID: "sender", OrgCVR: "11111111", Role: hub.SenderSystem, Active: true},
			Body: body, Size: int64(len(body)), SHA256: uuid, Letter: hub.Letter{UUID: uuid, MessageType: "DIGITALPOST",
				SenderID: "11111111", RecipientID: "0101701234", RecipientType: "CPR", Size: int64(len(body))}}); err != nil {
			t.Fatal(err)
		}
		day := at.In(dk).Format(time.DateOnly)
		// The default period ends on the Danish day too (an hour after).
		svc := &admin.Service{Store: h.Store, Now: func() time.Time { return at.Add(time.Hour) }}
		st, err := svc.Statistics(ctx, admin.StatsQuery{Org: "11111111", From: day, Period: "day"})
		if err != nil {
			t.Fatal(err)
		}
		if st.TotalCount != 1 || st.To != day {
			t.Errorf("accepted %s Danish time: %d counted on %s…%s, want 1 on %s (%+v)", at.In(dk).Format(time.DateTime), st.TotalCount, st.From, st.To, day, st.Rows)
		}
	}
}
