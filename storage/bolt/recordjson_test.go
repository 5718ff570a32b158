package bolt

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

func randomTime(r *rand.Rand) time.Time {
	zones := []*time.Location{time.UTC, time.FixedZone("CET", 3600), time.FixedZone("", -9000), time.Local}
	if r.IntN(4) == 0 {
		return time.Time{}
	}
	return time.Unix(r.Int64N(1<<34)-1<<33, r.Int64N(1e9)).In(zones[r.IntN(len(zones))])
}

func randomMap(r *rand.Rand) map[string]string {
	switch r.IntN(3) {
	case 0:
		return nil
	case 1:
		return map[string]string{}
	}
	m := map[string]string{}
	for range 1 + r.IntN(4) {
		m[randomText(r)] = randomText(r)
	}
	return m
}

func randomInt(r *rand.Rand) int64 {
	return []int64{0, 1, -1, math.MaxInt64, math.MinInt64, r.Int64()}[r.IntN(6)]
}

// The message, delivery and receipt records on disk do not change: their
// encoders write what json.Marshal writes, byte for byte, for values with
// every field set or empty and every character encoding/json escapes.
func TestRecordJSONIsEncodingJSONs(t *testing.T) {
	if !messageJSONKnown || !deliveryJSONKnown || !receiptJSONKnown || !countersJSONKnown {
		t.Fatalf("hub.Message (%v), hub.Delivery (%v), hub.Receipt (%v) or hub.Counter (%v) no longer has the fields recordjson.go encodes: teach it the change",
			messageJSONKnown, deliveryJSONKnown, receiptJSONKnown, countersJSONKnown)
	}
	same := func(what string, v any, got []byte, err error) {
		t.Helper()
		want, werr := json.Marshal(v)
		if err != nil || werr != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s %#v:\n got %s (%v)\nwant %s (%v)", what, v, got, err, want, werr)
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 10000 {
		m := messageRec{Message: hub.Message{UUID: randomText(r), MessageID: randomText(r), SenderCVR: randomText(r),
			SenderSystemID: randomText(r), RecipientID: randomText(r), RecipientType: randomText(r), MessageType: randomText(r),
			MemoVersion: randomText(r), Label: randomText(r), SHA256: randomText(r), Size: randomInt(r), ContentKey: randomText(r),
			Content: []byte(randomText(r)), Received: randomTime(r), NotBefore: randomTime(r), State: hub.MessageState(randomText(r)),
			Mode: randomText(r), ArchiveUntil: randomTime(r), Attrs: randomMap(r), ReceiptID: randomText(r)},
			ContentKey: randomText(r), ContentSeq: []uint64{0, 1, math.MaxUint64, r.Uint64()}[r.IntN(4)]}
		b, err := marshalMessageRec(&m)
		same("message", m, b, err)

		d := hub.Delivery{ID: randomText(r), MessageUUID: randomText(r), Channel: hub.Channel(randomText(r)), Queue: randomText(r),
			OrgCVR: randomText(r), SystemID: randomText(r), Seq: randomInt(r), Created: randomTime(r), AvailableAt: randomTime(r),
			State: hub.DeliveryState(randomText(r)), Attempts: int(randomInt(r)), Size: randomInt(r), Meta: randomMap(r)}
		b, err = marshalDelivery(&d)
		same("delivery", d, b, err)

		rc := receiptRec{Receipt: hub.Receipt{TransmissionID: randomText(r), SystemID: randomText(r), MessageUUID: randomText(r),
			MessageID: randomText(r), ErrorCode: randomText(r), ErrorMessage: randomText(r), Time: randomTime(r),
			Status: hub.ReceiptStatus(randomText(r)), TransactionID: randomText(r)}, SystemID: randomText(r)}
		b, err = marshalReceiptRec(&rc)
		same("receipt", rc, b, err)
	}
	for i := range 3000 {
		var cs []hub.Counter
		switch {
		case i == 1:
			cs = []hub.Counter{}
		case i > 1:
			for range 1 + r.IntN(3) {
				cs = append(cs, hub.Counter{Key: hub.CounterKey{Org: randomText(r), Day: randomText(r), MessageType: randomText(r),
					Channel: randomText(r), SystemID: randomText(r), Direction: randomText(r), SizeBucket: randomText(r)},
					Count: randomInt(r), Bytes: randomInt(r)})
			}
		}
		b, err := marshalCounters(cs)
		same("counters", cs, b, err)
	}
	// A time json.Marshal refuses is refused.
	bad := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := marshalMessageRec(&messageRec{Message: hub.Message{ArchiveUntil: bad}}); err == nil {
		t.Fatal("message with archiveUntil in year 10000 encoded")
	}
	if _, err := marshalDelivery(&hub.Delivery{AvailableAt: bad}); err == nil {
		t.Fatal("delivery available in year 10000 encoded")
	}
	if _, err := marshalReceiptRec(&receiptRec{Receipt: hub.Receipt{Time: bad}}); err == nil {
		t.Fatal("receipt of year 10000 encoded")
	}
}

// BenchmarkRecordJSON compares encoding/json with this package's encoders
// on the records of a letter as putLetter shapes it.
func BenchmarkRecordJSON(b *testing.B) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)
	id := "5f0c1f9e-8a3b-4d6e-9c1a-2b3c4d5e6f70"
	m := messageRec{Message: hub.Message{UUID: id, MessageID: "mid-" + id, SenderCVR: "12345678", SenderSystemID: "sender-sys",
		RecipientID: "0101011234", RecipientType: "CPR", MessageType: "DIGITALPOST", MemoVersion: "1.1",
		Label: "Brev", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Size: 16384, Received: now, State: hub.MessageActive,
		Attrs: map[string]string{"postType": "MYNDIGHEDSPOST", "KLE": "00.00.00"}, ReceiptID: "0c8a4f7e-1b2c-4d5e-8f90-a1b2c3d4e5f6"}}
	d := hub.Delivery{ID: hub.DeliveryID(id, "mailbox/0101011234/AUTHORITY_POST"), MessageUUID: id, Channel: hub.ChannelMailbox,
		Queue: "mailbox/0101011234/AUTHORITY_POST", OrgCVR: "12345678", Created: now, AvailableAt: now, State: hub.DeliveryReady, Size: 16384, Seq: 123}
	rc := receiptRec{Receipt: hub.Receipt{TransmissionID: "0c8a4f7e-1b2c-4d5e-8f90-a1b2c3d4e5f6", MessageUUID: id, MessageID: m.MessageID,
		Time: now, Status: hub.ReceiptReceived}, SystemID: "sender-sys"}
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(m)
			_, _ = json.Marshal(d)
			_, _ = json.Marshal(rc)
		}
	})
	b.Run("own", func(b *testing.B) {
		for b.Loop() {
			_, _ = marshalMessageRec(&m)
			_, _ = marshalDelivery(&d)
			_, _ = marshalReceiptRec(&rc)
		}
	})
}

// The encoders size their buffer for a letter's records: one allocation
// each.
func TestRecordJSONAllocatesOnce(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)
	id := "5f0c1f9e-8a3b-4d6e-9c1a-2b3c4d5e6f70"
	m := messageRec{Message: hub.Message{UUID: id, MessageID: "mid-" + id, SenderCVR: "12345678", SenderSystemID: "sender-sys",
		RecipientID: "0101011234", RecipientType: "CPR", MessageType: "DIGITALPOST", MemoVersion: "1.1", Mode: "AUTOMATIC",
		Label: "Brev", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Size: 16384, Received: now, State: hub.MessageActive,
		NotBefore: now, ArchiveUntil: now, Attrs: map[string]string{"postType": "MYNDIGHEDSPOST", "KLE": "00.00.00"},
		ReceiptID: "0c8a4f7e-1b2c-4d5e-8f90-a1b2c3d4e5f6"}, ContentKey: "k", ContentSeq: math.MaxUint64}
	d := hub.Delivery{ID: hub.DeliveryID(id, "mailbox/0101011234/AUTHORITY_POST"), MessageUUID: id, Channel: hub.ChannelMailbox,
		Queue: "mailbox/0101011234/AUTHORITY_POST", OrgCVR: "12345678", SystemID: "recv", Created: now, AvailableAt: now,
		State: hub.DeliveryReady, Size: math.MinInt64, Seq: math.MinInt64, Attempts: math.MinInt, Meta: map[string]string{"a": "b"}}
	rc := receiptRec{Receipt: hub.Receipt{TransmissionID: "0c8a4f7e-1b2c-4d5e-8f90-a1b2c3d4e5f6", MessageUUID: id, MessageID: m.MessageID,
		ErrorCode: "E1", ErrorMessage: "error", Time: now, Status: hub.ReceiptReceived, TransactionID: "t"}, SystemID: "sender-sys"}
	for name, f := range map[string]func(){
		"message":  func() { _, _ = marshalMessageRec(&m) },
		"delivery": func() { _, _ = marshalDelivery(&d) },
		"receipt":  func() { _, _ = marshalReceiptRec(&rc) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 1 {
			t.Errorf("%s: %v allocations, want 1", name, n)
		}
	}
}
