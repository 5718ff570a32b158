// Command bench-eventlog measures the event log on the embedded store for
// `make bench` and prints a markdown table: appends per second through
// eventlog.Log (group commit) beside one AppendEvents per event (no
// batching, the floor it improves on), sealing throughput, query latency
// p50/p99 for an organisation and a day over a large sealed log, and
// verification throughput.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/bolt"
)

var ctx = context.Background()

func main() {
	tmp := flag.String("tmp", os.TempDir(), "directory for the bolt files")
	events := flag.Int("events", 1_000_000, "size of the sealed log queried and verified")
	dur := flag.Duration("dur", 3*time.Second, "how long each append measurement runs")
	writers := flag.Int("writers", 256, "concurrent emitters (an HTTP front end has this many requests in flight)")
	queries := flag.Int("queries", 2000, "queries for the latency percentiles")
	flag.Parse()
	if err := run(*tmp, *events, *dur, *writers, *queries); err != nil {
		fmt.Fprintln(os.Stderr, "bench-eventlog:", err)
		os.Exit(1)
	}
}

func open(dir, name string) (*bolt.Store, error) {
	return bolt.Open(filepath.Join(dir, name), bolt.Options{InitialMmapSize: 1 << 30})
}

const (
	orgs = 50
	days = 10
)

// event i: sender org i%orgs to recipient org (i/orgs)%orgs, spread evenly
// over days days.
func event(i, total int) hub.Event {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	at := t0.Add(time.Duration(float64(i) / float64(total) * float64(days*24*time.Hour)))
	s, r := fmt.Sprintf("1%07d", i%orgs), fmt.Sprintf("2%07d", (i/orgs)%orgs)
	return hub.Event{ID: fmt.Sprintf("ev-%09d", i), Time: at, Tag: "MEMO_SEND_READY_FOR_FETCH", Actor: "sys-" + s, Orgs: []string{s, r},
		SystemID: "sys-" + s, MessageUUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Party: r,
		Detail: map[string]string{"queue": "sys-" + r, "size": "18000"}}
}

func run(tmp string, total int, dur time.Duration, writers, queries int) error {
	tmp, err := os.MkdirTemp(tmp, "bench-eventlog-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Println("## Event log (embedded bolt store)")
	fmt.Println()
	fmt.Println("| measurement | value | compared with | ratio |")
	fmt.Println("|---|---|---|---|")

	// Floor: one AppendEvents per call from the same writers (bolt's own
	// group commit still applies, eventlog's batching does not).
	for _, perCall := range []int{1, 4} {
		floor, err := appendRate(tmp, fmt.Sprintf("floor%d.db", perCall), dur, writers, perCall, func(s *bolt.Store) func([]hub.Event) error {
			return func(evs []hub.Event) error { return s.AppendEvents(ctx, evs) }
		})
		if err != nil {
			return err
		}
		var logged *eventlog.Log
		rate, err := appendRate(tmp, fmt.Sprintf("emit%d.db", perCall), dur, writers, perCall, func(s *bolt.Store) func([]hub.Event) error {
			logged = eventlog.New(s, eventlog.Options{})
			return func(evs []hub.Event) error { return logged.Emit(ctx, evs...) }
		})
		if err != nil {
			return err
		}
		logged.Close()
		fmt.Printf("| durable appends/s, Log.Emit, %d writers × %d event(s) per call (target ≥ 20,000) | %.0f | AppendEvents per call: %.0f | %.2f |\n",
			writers, perCall, rate, floor, rate/floor)
	}

	// Build the large log: append and seal in big batches.
	s, err := open(tmp, "log.db")
	if err != nil {
		return err
	}
	defer s.Close()
	sl := eventlog.NewSealer(s, eventlog.SealerOptions{Batch: 10_000})
	start := time.Now()
	var sealTime time.Duration
	for i := 0; i < total; i += 10_000 {
		batch := make([]hub.Event, 0, 10_000)
		for k := i; k < min(i+10_000, total); k++ {
			batch = append(batch, event(k, total))
		}
		if err := s.AppendEvents(ctx, batch); err != nil {
			return err
		}
		t := time.Now()
		if _, err := sl.Step(ctx); err != nil {
			return err
		}
		sealTime += time.Since(t)
	}
	fmt.Printf("| sealing throughput (hash chain + indexes, batches of 10,000) | %.0f events/s | build of %d events took %s | |\n",
		float64(total)/sealTime.Seconds(), total, time.Since(start).Round(time.Second))

	// Query latency: one organisation, one day.
	l := eventlog.New(s, eventlog.Options{})
	defer l.Close()
	day0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var storeLat, searchLat []time.Duration
	var matched int64
	for i := 0; i < queries; i++ {
		org := fmt.Sprintf("1%07d", i%orgs)
		from := day0.AddDate(0, 0, i%days)
		q := hub.EventQuery{Org: org, From: from, To: from.AddDate(0, 0, 1), Limit: 100}
		t := time.Now()
		evs, err := s.QueryEvents(ctx, q)
		if err != nil {
			return err
		}
		storeLat = append(storeLat, time.Since(t))
		if len(evs) == 0 {
			return fmt.Errorf("query %d found nothing", i)
		}
		if i%4 == 0 { // the full API search: page of 20, totals, and its own log entry
			t = time.Now()
			res, err := l.Search(ctx, eventlog.Reader{Org: org, Actor: "bench"}, eventlog.Search{Query: hub.EventQuery{From: q.From, To: q.To}, Size: 20})
			if err != nil {
				return err
			}
			searchLat = append(searchLat, time.Since(t))
			matched = res.TotalElements
		}
	}
	p := func(ds []time.Duration, q float64) string {
		slices.Sort(ds)
		return ds[int(float64(len(ds)-1)*q)].Round(10 * time.Microsecond).String()
	}
	fmt.Printf("| QueryEvents org + day over %d events, page of 100: p50 / p99 (target p99 ≤ 50 ms) | %s / %s | %d queries | |\n",
		total, p(storeLat, 0.5), p(storeLat, 0.99), len(storeLat))
	fmt.Printf("| Log.Search org + day, page of 20 with totalElements (~%d matches) and its EVENT_LOG_SEARCHES entry: p50 / p99 | %s / %s | %d searches | |\n",
		matched, p(searchLat, 0.5), p(searchLat, 0.99), len(searchLat))

	t := time.Now()
	r, err := eventlog.Verify(ctx, s, 0)
	if err != nil {
		return err
	}
	if r.Problem != nil {
		return r.Problem
	}
	vd := time.Since(t)
	fmt.Printf("| verify throughput (scan + decode + SHA-256) | %.0f events/s | %d entries in %s | |\n", float64(r.Entries)/vd.Seconds(), r.Entries, vd.Round(time.Millisecond))
	return nil
}

// appendRate runs writers goroutines appending through the function mk
// returns for dur and reports events per second.
func appendRate(dir, name string, dur time.Duration, writers, perCall int, mk func(*bolt.Store) func([]hub.Event) error) (float64, error) {
	s, err := open(dir, name)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	emit := mk(s)
	var n atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(dur)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				evs := make([]hub.Event, perCall)
				for k := range evs {
					evs[k] = event(w*10_000_000+i, 1)
					evs[k].ID = fmt.Sprintf("w%d-%d-%d", w, i, k)
				}
				if err := emit(evs); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(int64(perCall))
			}
		}(w)
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}
