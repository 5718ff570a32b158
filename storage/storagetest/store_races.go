package storagetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

// raceTests are the races of the writes that need one winner: PutMessage
// of a UUID by several callers at once (and again after its deliveries
// were acknowledged), AckWith of a delivery by several callers, and the
// acks of a message's last two deliveries at once; and the upserts that
// need no winner at all, PutContacts of the same new contacts by several
// callers, every one of which must succeed.
var raceTests = []storeTest{
	{"PutContacts of the same new contacts by 8 callers at once: all succeed, one record each", func(t *testing.T, s hub.Store) {
		// Several rounds of contacts no one has stored yet: only the
		// first write of an ID can collide with another caller's.
		const callers, contacts, rounds = 8, 40, 3
		for r := 0; r < rounds; r++ {
			id := func(i int) string { return fmt.Sprintf("01010%d%04d", r, i) }
			errs := make([]error, callers)
			parallel(callers, func(c int) {
				cs := make([]hub.Contact, contacts)
				for i := range cs {
					cs[i] = hub.Contact{ID: id(i), Status: hub.Registered, Name: fmt.Sprint("caller ", c), Phone: fmt.Sprint("+45", c), Updated: T0}
				}
				errs[c] = s.PutContacts(ctx, cs)
			})
			for c, err := range errs {
				must(t, err, fmt.Sprint("round ", r, " caller ", c))
			}
			for i := 0; i < contacts; i++ {
				got, err := s.GetContact(ctx, id(i))
				must(t, err, "GetContact "+id(i))
				var c int
				if _, err := fmt.Sscanf(got.Name, "caller %d", &c); err != nil || got.Phone != fmt.Sprint("+45", c) || got.ID != id(i) {
					t.Fatalf("contact %s = %+v, not one caller's whole record", id(i), got)
				}
				// One record: once deleted, none is left behind.
				must(t, s.DeleteContact(ctx, id(i)), "DeleteContact "+id(i))
				_, err = s.GetContact(ctx, id(i))
				wantCode(t, err, hub.NotFound, "GetContact after delete "+id(i))
			}
		}
	}},
	{"PutMessage of one UUID by 8 callers at once: one wins, the others are Conflict and leave nothing", func(t *testing.T, s hub.Store) {
		const callers = 8
		errs := make([]error, callers)
		parallel(callers, func(i int) {
			m := Message("m1", []byte(fmt.Sprint("content ", i)), T0)
			ds := []hub.Delivery{Delivery("m1", "system/a", T0), Delivery("m1", "print", T0)}
			r := Receipt("m1", T0)
			r.TransmissionID = fmt.Sprint("tx-", i)
			errs[i] = s.PutMessage(ctx, m, ds, r)
		})
		winner := -1
		for i, err := range errs {
			switch hub.ErrorCode(err) {
			case "":
				if winner >= 0 {
					t.Fatalf("callers %d and %d both stored m1", winner, i)
				}
				winner = i
			case hub.Conflict:
			default:
				t.Fatalf("caller %d: %v, want success or Conflict", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no caller stored m1")
		}
		got, err := s.GetMessage(ctx, "m1")
		must(t, err, "GetMessage")
		if string(got.Content) != fmt.Sprint("content ", winner) {
			t.Fatalf("stored content %q, want the winner's (%d)", got.Content, winner)
		}
		for i := 0; i < callers; i++ {
			_, err := s.GetReceipt(ctx, "sender-sys", fmt.Sprint("tx-", i))
			if i == winner {
				must(t, err, "the winner's receipt")
			} else {
				wantCode(t, err, hub.NotFound, fmt.Sprint("receipt of loser ", i))
			}
		}
		ds, err := s.DeliveriesOf(ctx, "m1")
		must(t, err, "DeliveriesOf")
		if len(ds) != 2 {
			t.Fatalf("%d deliveries, want 2", len(ds))
		}
		for _, q := range []string{"system/a", "print"} {
			if n, err := s.CountQueue(ctx, q); err != nil || n != 1 {
				t.Fatalf("CountQueue(%s) = %d, %v; want 1", q, n, err)
			}
		}
	}},
	{"PutMessage of a UUID whose deliveries were all acknowledged is Conflict and leaves nothing", func(t *testing.T, s hub.Store) {
		ds := putMsg(t, s, "m1", T0, "system/a")
		_, err := s.Ack(ctx, ds[0].ID, T0)
		must(t, err, "Ack")
		r := Receipt("m1", T0)
		r.TransmissionID = "tx-again"
		err = s.PutMessage(ctx, Message("m1", []byte("content of m1"), T0), []hub.Delivery{Delivery("m1", "system/a", T0)}, r)
		wantCode(t, err, hub.Conflict, "PutMessage again")
		if n, err := s.CountQueue(ctx, "system/a"); err != nil || n != 0 {
			t.Fatalf("CountQueue = %d, %v; want 0", n, err)
		}
		got, err := s.ListQueue(ctx, "system/a", 0, 10, false, T0)
		must(t, err, "ListQueue")
		if len(got) != 0 {
			t.Fatalf("the refused PutMessage left %d deliveries listed", len(got))
		}
		_, err = s.GetReceipt(ctx, "sender-sys", "tx-again")
		wantCode(t, err, hub.NotFound, "receipt of the refused PutMessage")
	}},
	{"AckWith of one delivery by 8 callers at once: one acknowledges and records, the others are AlreadyAcked", func(t *testing.T, s hub.Store) {
		for round := 0; round < 5; round++ {
			uuid := "m" + n(round)
			ds := putMsg(t, s, uuid, T0, "system/a")
			var mu sync.Mutex
			acks, recorded := 0, 0
			parallel(8, func(i int) {
				res, err := s.AckWith(ctx, ds[0].ID, uuid, T0, func(v hub.AckView) (*hub.Receipt, []hub.Event, error) {
					r := *v.SenderReceipt
					r.Status = hub.ReceiptCompleted
					mu.Lock()
					recorded++
					mu.Unlock()
					return &r, []hub.Event{event("fetched:"+uuid+":"+n(i), T0, "MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM", "12345678")}, nil
				})
				if err != nil {
					t.Errorf("AckWith: %v", err)
					return
				}
				if !res.AlreadyAcked {
					mu.Lock()
					acks++
					mu.Unlock()
				}
			})
			if acks != 1 || recorded < 1 {
				t.Fatalf("%s: %d acknowledgements (%d records), want exactly 1", uuid, acks, recorded)
			}
			if _, err := s.GetDelivery(ctx, ds[0].ID); !hub.Is(err, hub.NotFound) {
				t.Fatalf("GetDelivery after the acks: %v", err)
			}
			if r, err := s.ReceiptFor(ctx, "sender-sys", uuid); err != nil || r.Status != hub.ReceiptCompleted {
				t.Fatalf("receipt after the acks: %+v, %v", r, err)
			}
		}
		p, err := s.PendingEvents(ctx, 100)
		must(t, err, "PendingEvents")
		if len(p) != 5 {
			t.Fatalf("%d fetch events pending for 5 acknowledged deliveries, want 5: %v", len(p), evIDs(p))
		}
	}},
	{"Acks of a message's last two deliveries at once: at least one unreferences the content, and a lease after them fails", func(t *testing.T, s hub.Store) {
		for round := 0; round < 5; round++ {
			uuid := "m" + n(round)
			m := Message(uuid, nil, T0)
			m.Content, m.ContentKey = nil, "msg/"+uuid+"/abc"
			ds := []hub.Delivery{Delivery(uuid, "system/a", T0), Delivery(uuid, "print", T0)}
			must(t, s.PutMessage(ctx, m, ds, Receipt(uuid, T0)), "PutMessage")
			res := make([]hub.AckResult, 2)
			parallel(2, func(i int) {
				var err error
				res[i], err = s.Ack(ctx, ds[i].ID, T0)
				if err != nil {
					t.Errorf("Ack: %v", err)
				}
			})
			if !res[0].Unreferenced && !res[1].Unreferenced {
				t.Fatalf("%s: neither ack of the last two deliveries unreferenced the content: %+v", uuid, res)
			}
			for _, d := range ds {
				_, err := s.Lease(ctx, d.ID, "late", ttl, T0)
				wantCode(t, err, hub.NotFound, "Lease after the ack")
			}
		}
	}},
	{"PutReceipt of a new receipt by 16 callers at once: every call succeeds and one receipt is stored", func(t *testing.T, s hub.Store) {
		// An upsert of an absent document is an insert; of concurrent ones
		// all but one meet the unique _id, which is a replacement's race
		// lost, not a conflict.
		for round := 0; round < 4; round++ {
			r := Receipt(fmt.Sprint("m", round), T0)
			if n := concurrently(t, 16, "", func(i int) error {
				r := r
				r.Status = hub.ReceiptStatus(fmt.Sprint("STATUS-", i))
				return s.PutReceipt(ctx, r)
			}); n != 16 {
				t.Fatalf("round %d: %d of 16 PutReceipt calls succeeded", round, n)
			}
			rs, err := s.ListReceipts(ctx, r.SystemID, "", 100)
			must(t, err, "ListReceipts")
			if len(rs) != round+1 {
				t.Fatalf("round %d: %d receipts stored, want %d", round, len(rs), round+1)
			}
		}
	}},
	{"The first writes of a routing rule, a system's last fetch and the policy stamp by 16 callers at once all succeed", func(t *testing.T, s hub.Store) {
		// Each is an upsert of a document that does not exist yet: all but
		// one of the inserts meet the unique _id, and must then replace.
		must(t, s.CreateOrg(ctx, org("12345678")), "CreateOrg")
		must(t, s.CreateSystem(ctx, system("a", "12345678", "h-a")), "CreateSystem")
		if n := concurrently(t, 16, "", func(i int) error {
			return s.PutRoutingRule(ctx, hub.RoutingRule{ID: "r1", OrgCVR: "12345678", Priority: i, Field: "KLE", Value: "00.*", SystemID: "a", Created: T0})
		}); n != 16 {
			t.Fatalf("%d of 16 PutRoutingRule calls succeeded", n)
		}
		if rs, err := s.ListRoutingRules(ctx, "12345678"); err != nil || len(rs) != 1 {
			t.Fatalf("ListRoutingRules: %v, %v, want one rule", rs, err)
		}
		if n := concurrently(t, 16, "", func(i int) error { return s.TouchSystem(ctx, "a", T0.Add(time.Duration(i)*time.Second)) }); n != 16 {
			t.Fatalf("%d of 16 TouchSystem calls succeeded", n)
		}
		if n := concurrently(t, 16, "", func(i int) error {
			return s.AddPolicy(ctx, hub.PolicyLine{Ptype: "p", V: []string{fmt.Sprint("role", i), "12345678", "messages", "read"}})
		}); n != 16 {
			t.Fatalf("%d of 16 AddPolicy calls (of different lines) succeeded", n)
		}
	}},
	{"RemovePolicy of one line by 16 callers at once: one removes it, the others are NotFound", func(t *testing.T, s hub.Store) {
		p := hub.PolicyLine{Ptype: "g", V: []string{"user:anne", "ORGANISATION_ADMINISTRATOR", "12345678"}}
		keep := hub.PolicyLine{Ptype: "g", V: []string{"user:bo", "ORGANISATION_ADMINISTRATOR", "12345678"}}
		must(t, s.AddPolicy(ctx, p), "AddPolicy")
		must(t, s.AddPolicy(ctx, keep), "AddPolicy of another line")
		before, err := s.PolicyStamp(ctx)
		must(t, err, "PolicyStamp")
		if n := concurrently(t, 16, hub.NotFound, func(int) error { return s.RemovePolicy(ctx, p) }); n != 1 {
			t.Fatalf("%d of 16 removals of one line succeeded, want 1", n)
		}
		lines, err := s.LoadPolicies(ctx)
		must(t, err, "LoadPolicies")
		sameStrings(t, ids(lines, hub.PolicyLine.Key), []string{keep.Key()}, "policies after the removals")
		if after, _ := s.PolicyStamp(ctx); after == before {
			t.Fatalf("stamp %q unchanged by the removal", after)
		}
	}},
}
