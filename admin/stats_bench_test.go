package admin_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/posthub/posthub/admin"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/bolt"
)

// yearOfCounters fills store with a year of counters for orgs
// organisations: per day 2 message types × 3 channels × 2 systems received
// and 2 sent, i.e. 14 cells per organisation and day.
func yearOfCounters(tb testing.TB, store hub.Store, orgs int, last time.Time) int {
	ctx := context.Background()
	n := 0
	batch := make([]hub.Counter, 0, 20000)
	flush := func() {
		if err := store.AddCounters(ctx, batch); err != nil {
			tb.Fatal(err)
		}
		n += len(batch)
		batch = batch[:0]
	}
	for o := range orgs {
		org := fmt.Sprintf("%08d", 20000000+o)
		for d := range 365 {
			day := last.AddDate(0, 0, -d).Format("2006-01-02")
			for _, mt := range []string{"DIGITALPOST", "NEMSMS"} {
				for _, ch := range []string{"SYSTEM", "MAILBOX", "PRINT"} {
					for _, sys := range []string{"sys-a", "sys-b"} {
						batch = append(batch, hub.Counter{Key: hub.CounterKey{Org: org, Day: day, MessageType: mt, Channel: ch, SystemID: sys,
							Direction: "RECEIVED", SizeBucket: "<100K"}, Count: int64(d%7 + 1), Bytes: int64(d%7+1) * 20000})
					}
				}
				batch = append(batch, hub.Counter{Key: hub.CounterKey{Org: org, Day: day, MessageType: mt, Channel: "MAILBOX", SystemID: "sender",
					Direction: "SENT", SizeBucket: "<100K"}, Count: 3, Bytes: 60000})
			}
			if len(batch) >= 19000 {
				flush()
			}
		}
	}
	flush()
	return n
}

// BenchmarkStatisticsYear is one organisation's statistics over a year of
// counters, in a store holding a year for 100 organisations (make bench:
// statistics query latency). It reads counters only, never messages.
func BenchmarkStatisticsYear(b *testing.B) {
	store, err := bolt.Open(filepath.Join(b.TempDir(), "s.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	last := time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)
	cells := yearOfCounters(b, store, 100, last)
	svc := &admin.Service{Store: store, Now: func() time.Time { return last }}
	for _, tc := range []struct {
		name string
		q    admin.StatsQuery
	}{
		{"per-day", admin.StatsQuery{Period: "day"}},
		{"per-month-by-type-channel-system", admin.StatsQuery{Period: "month", GroupBy: []string{admin.ByMessageType, admin.ByChannel, admin.BySystem}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			q := tc.q
			q.Org, q.From, q.To = "20000042", last.AddDate(0, 0, -364).Format("2006-01-02"), last.Format("2006-01-02")
			var rows int
			for b.Loop() {
				st, err := svc.Statistics(context.Background(), q)
				if err != nil {
					b.Fatal(err)
				}
				rows = len(st.Rows)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/query")
			b.ReportMetric(float64(rows), "rows")
			b.ReportMetric(float64(cells), "cells-in-store")
		})
	}
}
