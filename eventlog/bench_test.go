package eventlog_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
)

// BenchmarkEmit: durable appends through the Log from many goroutines
// (group commit); reports events/s. scripts/bench-eventlog.sh measures the
// same beside its floor.
func BenchmarkEmit(b *testing.B) {
	s := openBolt(b, "")
	l := eventlog.New(s, eventlog.Options{})
	defer l.Close()
	var n atomic.Int64
	b.SetParallelism(64)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := l.Emit(ctx, letterEvent(int(i), eventlog.MemoSendReadyForFetch, senderOrg, recipientOrg)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "events/s")
}

// sealedLog builds a sealed log of n events over 10 days and 50 orgs.
func sealedLog(b *testing.B, n int) eventStore {
	s := openBolt(b, "")
	sl := eventlog.NewSealer(s, eventlog.SealerOptions{Batch: 10_000})
	for i := 0; i < n; i += 10_000 {
		evs := make([]hub.Event, 0, 10_000)
		for k := i; k < min(i+10_000, n); k++ {
			ev := letterEvent(k, eventlog.MemoSendReadyForFetch, fmt.Sprintf("1%07d", k%50), fmt.Sprintf("2%07d", (k/50)%50))
			ev.ID = fmt.Sprint("ev-", k)
			ev.Time = t0.Add(time.Duration(float64(k) / float64(n) * float64(240*time.Hour)))
			evs = append(evs, ev)
		}
		if err := s.AppendEvents(ctx, evs); err != nil {
			b.Fatal(err)
		}
		if _, err := sl.Step(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkQueryOrgDay: one organisation, one day, page of 100, over
// 200,000 sealed events (the bench script uses 1,000,000).
func BenchmarkQueryOrgDay(b *testing.B) {
	s := sealedLog(b, 200_000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		from := t0.AddDate(0, 0, i%10)
		evs, err := s.QueryEvents(ctx, hub.EventQuery{Org: fmt.Sprintf("1%07d", i%50), From: from, To: from.AddDate(0, 0, 1), Limit: 100})
		if err != nil || len(evs) == 0 {
			b.Fatal(err, len(evs))
		}
	}
}

// BenchmarkVerify reports verified events/s over 200,000 entries.
func BenchmarkVerify(b *testing.B) {
	s := sealedLog(b, 200_000)
	b.ResetTimer()
	var total int64
	start := time.Now()
	for i := 0; i < b.N; i++ {
		r, err := eventlog.Verify(ctx, s, 0)
		if err != nil || r.Problem != nil {
			b.Fatal(err, r.Problem)
		}
		total += r.Entries
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "events/s")
}
