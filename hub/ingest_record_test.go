package hub

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// The events of an accepted letter carry IDs that derive from the message
// alone, memo:<uuid>:<received, Unix ms>:<tag>:<how many of the tag
// before>, so that restoreEvents and storage/mongo's repair append the
// same IDs again; and the details the event log has always had.
func TestRecordEventIDsDeriveFromTheMessage(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 123e6, time.UTC)
	sys := System{ID: "sys-1", OrgCVR: "11111111"}
	m := Message{UUID: "8c2ea15d-61fb-4ba9-9366-42f8b194c114", SenderCVR: "11111111", RecipientID: "22222222",
		MessageType: "DIGITALPOST", Size: 12345, Mode: string(ModeAutomatic), Received: now}
	rt := Route{State: MessageActive, Deliveries: []Delivery{
		{Channel: ChannelSystem, Queue: SystemQueue("a"), OrgCVR: "22222222", SystemID: "a"},
		{Channel: ChannelSystem, Queue: SystemQueue("b"), OrgCVR: "33333333", SystemID: "b"},
	}}
	evs, cs := (&Ingest{}).record(Submission{System: sys}, m, rt, Envelope{TransactionID: "tx-1"}, now)
	id := func(tag string, n int) string {
		return fmt.Sprintf("memo:%s:%d:%s:%d", m.UUID, now.UnixMilli(), tag, n)
	}
	orgs := []string{"11111111", "22222222", "33333333"}
	base := Event{Actor: sys.ID, SystemID: sys.ID, MessageUUID: m.UUID, Party: m.RecipientID, Time: now, Orgs: orgs}
	with := func(id, tag string, detail map[string]string) Event {
		e := base
		e.ID, e.Tag, e.Detail = id, tag, detail
		return e
	}
	want := []Event{
		with(id("MEMO_SEND_RECEIVED", 0), "MEMO_SEND_RECEIVED", map[string]string{"size": "12345", "mode": "AUTOMATIC", "transactionId": "tx-1"}),
		with(id("MEMO_SEND_VALIDATED", 0), "MEMO_SEND_VALIDATED", nil),
		with(id("MEMO_SEND_READY_FOR_FETCH", 0), "MEMO_SEND_READY_FOR_FETCH", map[string]string{"queue": "system/a"}),
		with(id("MEMO_SEND_READY_FOR_FETCH", 1), "MEMO_SEND_READY_FOR_FETCH", map[string]string{"queue": "system/b"}),
	}
	if !reflect.DeepEqual(evs, want) {
		t.Fatalf("events\n%+v\nwant\n%+v", evs, want)
	}
	if len(cs) != 3 || cs[2].Key.Direction != "SENT" || cs[2].Key.Channel != string(ChannelSystem) || cs[2].Key.Day != "2026-03-02" ||
		cs[0].Key.Org != "22222222" || cs[1].Key.Org != "33333333" || cs[0].Key.SizeBucket != "<100K" {
		t.Fatalf("counters %+v", cs)
	}
}
