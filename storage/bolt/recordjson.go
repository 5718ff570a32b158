package bolt

import (
	"encoding/json"
	"reflect"
	"strconv"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/jsonenc"
)

// A letter's message record, its deliveries, its sender's receipt and
// (for the accept log) its counters are encoded once each when it is
// accepted (encodeMessageWrite, setSeqs), as its events are; the encoders here write the very bytes json.Marshal
// writes for them, without its reflection (see eventjson.go, whose guard
// they share: each is used only while its struct has exactly the fields
// it knows, and TestRecordJSONIsEncodingJSONs compares the bytes).

var (
	stringType = reflect.TypeFor[string]()
	timeType   = reflect.TypeFor[time.Time]()
	int64Type  = reflect.TypeFor[int64]()

	messageJSONKnown = jsonFieldsAre(reflect.TypeFor[hub.Message](), []jsonField{
		{"UUID", "messageUUID", stringType},
		{"MessageID", "messageId,omitempty", stringType},
		{"SenderCVR", "senderCvr", stringType},
		{"SenderSystemID", "senderSystemId", stringType},
		{"RecipientID", "recipientId", stringType},
		{"RecipientType", "recipientType", stringType},
		{"MessageType", "messageType", stringType},
		{"MemoVersion", "memoVersion", stringType},
		{"Label", "label,omitempty", stringType},
		{"SHA256", "sha256", stringType},
		{"Size", "size", int64Type},
		{"ContentKey", "-", stringType},
		{"Content", "-", reflect.TypeFor[[]byte]()},
		{"Received", "received", timeType},
		{"NotBefore", "notBefore,omitempty", timeType},
		{"State", "state", reflect.TypeFor[hub.MessageState]()},
		{"Mode", "mode", stringType},
		{"ArchiveUntil", "archiveUntil,omitempty", timeType},
		{"Attrs", "attrs,omitempty", reflect.TypeFor[map[string]string]()},
		{"ReceiptID", "receiptId,omitempty", stringType},
		{"TransactionID", "transactionId,omitempty", stringType},
		{"ReasonCode", "reasonCode,omitempty", stringType},
		{"Reason", "reason,omitempty", stringType},
	}) && jsonFieldsAre(reflect.TypeFor[messageRec](), []jsonField{
		{"Message", "", reflect.TypeFor[hub.Message]()},
		{"ContentKey", "contentKey,omitempty", stringType},
		{"ContentSeq", "contentSeq,omitempty", reflect.TypeFor[uint64]()},
	})

	deliveryJSONKnown = jsonFieldsAre(reflect.TypeFor[hub.Delivery](), []jsonField{
		{"ID", "id", stringType},
		{"MessageUUID", "messageUUID", stringType},
		{"Channel", "channel", reflect.TypeFor[hub.Channel]()},
		{"Queue", "queue", stringType},
		{"OrgCVR", "organisation,omitempty", stringType},
		{"SystemID", "systemId,omitempty", stringType},
		{"Seq", "seq", int64Type},
		{"Created", "created", timeType},
		{"AvailableAt", "availableAt", timeType},
		{"State", "state", reflect.TypeFor[hub.DeliveryState]()},
		{"Attempts", "attempts", reflect.TypeFor[int]()},
		{"Size", "size", int64Type},
		{"Meta", "meta,omitempty", reflect.TypeFor[map[string]string]()},
	})

	receiptJSONKnown = jsonFieldsAre(reflect.TypeFor[hub.Receipt](), []jsonField{
		{"TransmissionID", "transmissionId", stringType},
		{"SystemID", "-", stringType},
		{"MessageUUID", "messageUUID", stringType},
		{"MessageID", "messageId,omitempty", stringType},
		{"ErrorCode", "errorCode,omitempty", stringType},
		{"ErrorMessage", "errorMessage,omitempty", stringType},
		{"Time", "timeStamp", timeType},
		{"Status", "receiptStatus", reflect.TypeFor[hub.ReceiptStatus]()},
		{"TransactionID", "transactionId,omitempty", stringType},
	}) && jsonFieldsAre(reflect.TypeFor[receiptRec](), []jsonField{
		{"Receipt", "", reflect.TypeFor[hub.Receipt]()},
		{"SystemID", "systemId", stringType},
	})

	countersJSONKnown = jsonFieldsAre(reflect.TypeFor[hub.Counter](), []jsonField{
		{"Key", "key", reflect.TypeFor[hub.CounterKey]()},
		{"Count", "count", int64Type},
		{"Bytes", "bytes", int64Type},
	}) && jsonFieldsAre(reflect.TypeFor[hub.CounterKey](), []jsonField{
		{"Org", "organisation", stringType},
		{"Day", "day", stringType},
		{"MessageType", "messageType", stringType},
		{"Channel", "channel", stringType},
		{"SystemID", "systemId,omitempty", stringType},
		{"Direction", "direction", stringType},
		{"SizeBucket", "sizeBucket,omitempty", stringType},
	})
)

// marshalCounters is json.Marshal(cs): null for nil, as the accept log
// has always written a letter's counters.
func marshalCounters(cs []hub.Counter) ([]byte, error) {
	if !countersJSONKnown {
		return json.Marshal(cs)
	}
	if cs == nil {
		return []byte("null"), nil
	}
	n := 2
	for _, c := range cs {
		k := c.Key
		n += 160 + len(k.Org) + len(k.Day) + len(k.MessageType) + len(k.Channel) + len(k.SystemID) + len(k.Direction) + len(k.SizeBucket)
	}
	b := append(make([]byte, 0, n), '[')
	for i, c := range cs {
		if i > 0 {
			b = append(b, ',')
		}
		k := &c.Key
		b = jsonenc.AppendString(append(b, `{"key":{"organisation":`...), k.Org)
		b = jsonenc.AppendString(append(b, `,"day":`...), k.Day)
		b = jsonenc.AppendString(append(b, `,"messageType":`...), k.MessageType)
		b = jsonenc.AppendString(append(b, `,"channel":`...), k.Channel)
		b = appendOmitEmpty(b, `,"systemId":`, k.SystemID)
		b = jsonenc.AppendString(append(b, `,"direction":`...), k.Direction)
		b = appendOmitEmpty(b, `,"sizeBucket":`, k.SizeBucket)
		b = strconv.AppendInt(append(b, `},"count":`...), c.Count, 10)
		b = strconv.AppendInt(append(b, `,"bytes":`...), c.Bytes, 10)
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

// marshalMessageRec is json.Marshal(r).
func marshalMessageRec(r *messageRec) ([]byte, error) {
	if messageJSONKnown {
		m := &r.Message
		// Room for the keys, numbers and times, and the strings unescaped.
		n := 464 + len(m.UUID) + len(m.MessageID) + len(m.SenderCVR) + len(m.SenderSystemID) + len(m.RecipientID) +
			len(m.RecipientType) + len(m.MessageType) + len(m.MemoVersion) + len(m.Label) + len(m.SHA256) + len(m.State) +
			len(m.Mode) + len(m.ReceiptID) + len(m.TransactionID) + len(m.ReasonCode) + len(m.Reason) + len(r.ContentKey) + mapLen(m.Attrs)
		if b, ok := appendMessageRec(make([]byte, 0, n), r); ok {
			return b, nil
		}
	}
	return json.Marshal(r)
}

// appendMessageRec writes r as json.Marshal does (a time.Time is never
// empty to omitempty, so notBefore and archiveUntil are always there).
func appendMessageRec(b []byte, r *messageRec) ([]byte, bool) {
	m := &r.Message
	b = jsonenc.AppendString(append(b, `{"messageUUID":`...), m.UUID)
	b = appendOmitEmpty(b, `,"messageId":`, m.MessageID)
	b = jsonenc.AppendString(append(b, `,"senderCvr":`...), m.SenderCVR)
	b = jsonenc.AppendString(append(b, `,"senderSystemId":`...), m.SenderSystemID)
	b = jsonenc.AppendString(append(b, `,"recipientId":`...), m.RecipientID)
	b = jsonenc.AppendString(append(b, `,"recipientType":`...), m.RecipientType)
	b = jsonenc.AppendString(append(b, `,"messageType":`...), m.MessageType)
	b = jsonenc.AppendString(append(b, `,"memoVersion":`...), m.MemoVersion)
	b = appendOmitEmpty(b, `,"label":`, m.Label)
	b = jsonenc.AppendString(append(b, `,"sha256":`...), m.SHA256)
	b = strconv.AppendInt(append(b, `,"size":`...), m.Size, 10)
	var ok bool
	if b, ok = jsonenc.AppendTime(append(b, `,"received":`...), m.Received); !ok {
		return nil, false
	}
	if b, ok = jsonenc.AppendTime(append(b, `,"notBefore":`...), m.NotBefore); !ok {
		return nil, false
	}
	b = jsonenc.AppendString(append(b, `,"state":`...), string(m.State))
	b = jsonenc.AppendString(append(b, `,"mode":`...), m.Mode)
	if b, ok = jsonenc.AppendTime(append(b, `,"archiveUntil":`...), m.ArchiveUntil); !ok {
		return nil, false
	}
	if len(m.Attrs) > 0 {
		b = appendStringMap(append(b, `,"attrs":`...), m.Attrs)
	}
	b = appendOmitEmpty(b, `,"receiptId":`, m.ReceiptID)
	b = appendOmitEmpty(b, `,"transactionId":`, m.TransactionID)
	b = appendOmitEmpty(b, `,"reasonCode":`, m.ReasonCode)
	b = appendOmitEmpty(b, `,"reason":`, m.Reason)
	b = appendOmitEmpty(b, `,"contentKey":`, r.ContentKey)
	if r.ContentSeq != 0 {
		b = strconv.AppendUint(append(b, `,"contentSeq":`...), r.ContentSeq, 10)
	}
	return append(b, '}'), true
}

// marshalDelivery is json.Marshal(d).
func marshalDelivery(d *hub.Delivery) ([]byte, error) {
	if deliveryJSONKnown {
		n := 288 + len(d.ID) + len(d.MessageUUID) + len(d.Channel) + len(d.Queue) + len(d.OrgCVR) + len(d.SystemID) +
			len(d.State) + mapLen(d.Meta)
		if b, ok := appendDelivery(make([]byte, 0, n), d); ok {
			return b, nil
		}
	}
	return json.Marshal(d)
}

func appendDelivery(b []byte, d *hub.Delivery) ([]byte, bool) {
	b = jsonenc.AppendString(append(b, `{"id":`...), d.ID)
	b = jsonenc.AppendString(append(b, `,"messageUUID":`...), d.MessageUUID)
	b = jsonenc.AppendString(append(b, `,"channel":`...), string(d.Channel))
	b = jsonenc.AppendString(append(b, `,"queue":`...), d.Queue)
	b = appendOmitEmpty(b, `,"organisation":`, d.OrgCVR)
	b = appendOmitEmpty(b, `,"systemId":`, d.SystemID)
	b = strconv.AppendInt(append(b, `,"seq":`...), d.Seq, 10)
	var ok bool
	if b, ok = jsonenc.AppendTime(append(b, `,"created":`...), d.Created); !ok {
		return nil, false
	}
	if b, ok = jsonenc.AppendTime(append(b, `,"availableAt":`...), d.AvailableAt); !ok {
		return nil, false
	}
	b = jsonenc.AppendString(append(b, `,"state":`...), string(d.State))
	b = strconv.AppendInt(append(b, `,"attempts":`...), int64(d.Attempts), 10)
	b = strconv.AppendInt(append(b, `,"size":`...), d.Size, 10)
	if len(d.Meta) > 0 {
		b = appendStringMap(append(b, `,"meta":`...), d.Meta)
	}
	return append(b, '}'), true
}

// marshalReceiptRec is json.Marshal(r).
func marshalReceiptRec(r *receiptRec) ([]byte, error) {
	if receiptJSONKnown {
		n := 224 + len(r.TransmissionID) + len(r.MessageUUID) + len(r.MessageID) + len(r.ErrorCode) + len(r.ErrorMessage) +
			len(r.Status) + len(r.TransactionID) + len(r.SystemID)
		if b, ok := appendReceiptRec(make([]byte, 0, n), r); ok {
			return b, nil
		}
	}
	return json.Marshal(r)
}

func appendReceiptRec(b []byte, r *receiptRec) ([]byte, bool) {
	b = jsonenc.AppendString(append(b, `{"transmissionId":`...), r.TransmissionID)
	b = jsonenc.AppendString(append(b, `,"messageUUID":`...), r.MessageUUID)
	b = appendOmitEmpty(b, `,"messageId":`, r.MessageID)
	b = appendOmitEmpty(b, `,"errorCode":`, r.ErrorCode)
	b = appendOmitEmpty(b, `,"errorMessage":`, r.ErrorMessage)
	var ok bool
	if b, ok = jsonenc.AppendTime(append(b, `,"timeStamp":`...), r.Time); !ok {
		return nil, false
	}
	b = jsonenc.AppendString(append(b, `,"receiptStatus":`...), string(r.Status))
	b = appendOmitEmpty(b, `,"transactionId":`, r.TransactionID)
	b = jsonenc.AppendString(append(b, `,"systemId":`...), r.SystemID)
	return append(b, '}'), true
}

// mapLen is the length of m's keys and values, with room for their quotes
// and separators.
func mapLen(m map[string]string) int {
	n := 2
	for k, v := range m {
		n += len(k) + len(v) + 6
	}
	return n
}
