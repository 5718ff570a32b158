package bolt

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/posthub/posthub/hub"
)

// BenchmarkApplyBytesPerLetter measures what applying accepted letters,
// then sealing their events, then fetching and acknowledging their
// deliveries costs bbolt in pages: the bytes of the pages its commits
// allocate (every dirty page is written) per letter, on a store already
// holding a number of letters. Letters are shaped as the hub makes them
// (a random UUID, a 12.7 KB MeMo inline, one mailbox delivery, the
// sender's receipt, three events, two counters) and put by 16 writers, so
// the accept log groups them as under load. Keys derived from random
// UUIDs land on pages of their own, so the bytes per letter grow with the
// store until every letter dirties a page in each bucket they key: the
// messages bucket (which also holds the letter's deliveries, receipt and
// event IDs) and, at accept only, the receipts (whose entry, written once,
// names the message the receipt is beside). The acknowledgements are made by
// 8 pollers (ClaimNext, then AckWith with the sender's receipt COMPLETED
// and a fetch event, as retrieval does) on the letters' queue; the stored
// letters wait in another. Reported by scripts/bench-storage.sh
// (ackKiB/letter is not in its table yet).
func BenchmarkApplyBytesPerLetter(b *testing.B) {
	for _, stored := range []int{1000, 30000} {
		b.Run(fmt.Sprint("stored=", stored), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "posthub.db"), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			small := bytes.Repeat([]byte("x"), 1000) // the fill's content: its bucket only appends
			content := bytes.Repeat([]byte("<memo>x</memo>"), 12770/14+1)[:12770]
			const queue, fillQueue = "mailbox/0101011234/AUTHORITY_POST", "mailbox/0202021234/AUTHORITY_POST"
			put := func(n int, content []byte, queue string) {
				var next atomic.Int64
				var wg sync.WaitGroup
				for range 16 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(n) {
							if err := putLetter(ctx, s, content, queue); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				if err := s.alog.wait(ctx, true); err != nil {
					b.Fatal(err)
				}
			}
			lease, err := s.LeaseSealer(ctx, hub.SealerLease{Holder: "bench"}, time.Hour, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			// seal seals every pending event in batches, as the sealer does.
			seal := func() {
				for {
					evs, err := s.PendingEvents(ctx, 1000)
					if err != nil {
						b.Fatal(err)
					}
					if len(evs) == 0 {
						return
					}
					for i := range evs {
						evs[i].Seq, evs[i].Hash = lease.Seq+1+uint64(i), "h"
					}
					if lease, err = s.SealEvents(ctx, lease, evs); err != nil {
						b.Fatal(err)
					}
				}
			}
			// ack fetches and acknowledges every delivery of the queue.
			ack := func() {
				var wg sync.WaitGroup
				for range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							now := time.Now()
							c, err := s.ClaimNext(ctx, queue, "bench", time.Hour, now)
							if hub.Is(err, hub.NotFound) {
								return
							}
							if err == nil {
								_, err = s.AckWith(ctx, c.Delivery.ID, c.Delivery.MessageUUID, now, ackRecord(now))
							}
							if err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
			}
			put(stored, small, fillQueue)
			seal()
			before := s.db.Stats().TxStats
			b.ResetTimer()
			put(b.N, content, queue)
			b.StopTimer()
			applied := s.db.Stats().TxStats
			seal()
			sealed := s.db.Stats().TxStats
			ack()
			acked := s.db.Stats().TxStats
			if n, err := s.CountQueue(ctx, queue); err != nil || n != 0 {
				b.Fatalf("%d deliveries left after the acks (%v)", n, err)
			}
			b.ReportMetric(float64(applied.GetPageAlloc()-before.GetPageAlloc())/1024/float64(b.N), "KiB/letter")
			b.ReportMetric(float64(applied.GetWrite()-before.GetWrite())/float64(b.N), "writes/letter")
			b.ReportMetric(float64(sealed.GetPageAlloc()-applied.GetPageAlloc())/1024/float64(b.N), "sealKiB/letter")
			b.ReportMetric(float64(acked.GetPageAlloc()-sealed.GetPageAlloc())/1024/float64(b.N), "ackKiB/letter")
		})
	}
}

func putLetter(ctx context.Context, s *Store, content []byte, q string) error {
	id := uuid.NewString()
	now := time.Now().UTC()
	m := hub.Message{UUID: id, MessageID: "mid-" + id, SenderCVR: "12345678", SenderSystemID: "sender-sys",
		RecipientID: "0101011234", RecipientType: "CPR", MessageType: "DIGITALPOST", MemoVersion: "1.1",
		Label: "Brev", SHA256: "0", Size: int64(len(content)), Content: content, Received: now, State: hub.MessageActive}
	d := hub.Delivery{ID: hub.DeliveryID(id, q), MessageUUID: id, Channel: hub.ChannelMailbox, Queue: q, OrgCVR: "12345678",
		Created: now, AvailableAt: now, State: hub.DeliveryReady, Size: m.Size}
	r := hub.Receipt{TransmissionID: uuid.NewString(), SystemID: "sender-sys", MessageUUID: id, MessageID: m.MessageID,
		Time: now, Status: hub.ReceiptReceived}
	var evs []hub.Event
	for i, tag := range []string{"MEMO_SEND_RECEIVED", "MEMO_VALIDATED", "READY_FOR_FETCH"} {
		evs = append(evs, hub.Event{ID: fmt.Sprintf("memo:%s:%d:%s:%d", id, now.UnixMilli(), tag, i), Time: now, Tag: tag,
			Orgs: []string{"12345678"}, SystemID: "sender-sys", MessageUUID: id, Party: "0101011234"})
	}
	day := now.Format(time.DateOnly)
	k := hub.CounterKey{Org: "12345678", Day: day, MessageType: "DIGITALPOST", Channel: "MAILBOX", SystemID: "sender-sys", Direction: "SENT"}
	cs := []hub.Counter{{Key: k, Count: 1, Bytes: m.Size}}
	k.Org, k.SystemID, k.Direction = "0101011234", "", "RECEIVED"
	cs = append(cs, hub.Counter{Key: k, Count: 1, Bytes: m.Size})
	return s.PutMessageWith(ctx, m, []hub.Delivery{d}, r, evs, cs)
}

// ackRecord is what retrieval records with an acknowledgement: the
// sender's receipt COMPLETED and the fetch event.
func ackRecord(now time.Time) hub.AckRecord {
	return func(v hub.AckView) (*hub.Receipt, []hub.Event, error) {
		if v.Message == nil || v.SenderReceipt == nil {
			return nil, nil, fmt.Errorf("delivery %s: message or receipt missing", v.Delivery.ID)
		}
		r := *v.SenderReceipt
		r.Status, r.Time = hub.ReceiptCompleted, now
		ev := hub.Event{ID: "retrieval:fetched:" + v.Delivery.ID, Time: now, Tag: "MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM", Actor: "system:recv",
			Orgs: []string{"12345678"}, SystemID: "recv", MessageUUID: v.Message.UUID, Party: v.Message.RecipientID}
		return &r, []hub.Event{ev}, nil
	}
}

// BenchmarkLetterAllocs measures what a letter costs the process, with
// -benchmem: "accept" is PutMessageWith of a letter shaped as the hub
// makes it (putLetter, with MeMo_Full_Example's 16 KiB inline) by 16
// writers, up to its apply to bbolt (the accept log, the apply's commit);
// "seal" is the sealer's PendingEvents and SealEvents of those letters'
// three events each, in batches of 1000. The allocations are counted for
// the whole process, so the background writer and applier are in them.
func BenchmarkLetterAllocs(b *testing.B) {
	content := bytes.Repeat([]byte("<memo>x</memo>"), 16384/14+1)[:16384]
	const queue = "mailbox/0101011234/AUTHORITY_POST"
	ctx := context.Background()
	open := func(b *testing.B) *Store {
		s, err := Open(filepath.Join(b.TempDir(), "posthub.db"), Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	put := func(b *testing.B, s *Store, n int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(n) {
					if err := putLetter(ctx, s, content, queue); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err := s.alog.wait(ctx, true); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("accept", func(b *testing.B) {
		s := open(b)
		put(b, s, 200) // the buckets' first pages
		b.ResetTimer()
		put(b, s, b.N)
	})
	b.Run("seal", func(b *testing.B) {
		s := open(b)
		put(b, s, b.N)
		lease, err := s.LeaseSealer(ctx, hub.SealerLease{Holder: "bench"}, time.Hour, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		sealed := 0
		for {
			evs, err := s.PendingEvents(ctx, 1000)
			if err != nil {
				b.Fatal(err)
			}
			if len(evs) == 0 {
				break
			}
			for i := range evs {
				evs[i].Seq, evs[i].Hash = lease.Seq+1+uint64(i), "h"
			}
			if lease, err = s.SealEvents(ctx, lease, evs); err != nil {
				b.Fatal(err)
			}
			sealed += len(evs)
		}
		b.StopTimer()
		if sealed != 3*b.N {
			b.Fatalf("sealed %d events of %d letters", sealed, b.N)
		}
	})
}
