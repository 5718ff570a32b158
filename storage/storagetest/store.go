// Package storagetest holds the contract suites every storage backend must
// pass (TestStore here, the Blobs suite in blobs.go) and benchmarks generic
// over a backend opener (store_bench.go), so that each backend's numbers are
// measured the same way.
//
// A backend runs the suite from its own test:
//
//	func TestContract(t *testing.T) {
//		storagetest.TestStore(t, func(t *testing.T) hub.Store {
//			s := openFresh(t) // an empty store
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Every subtest gets a fresh, empty store from open and is named after the
// rule it checks. Times are whole milliseconds in UTC (MongoDB keeps
// milliseconds) and are always passed in, so nothing sleeps.
package storagetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
)

// T0 is the suite's reference time.
var T0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

type storeTest struct {
	name string
	fn   func(t *testing.T, s hub.Store)
}

// TestStore runs the hub.Store contract against fresh stores from open.
func TestStore(t *testing.T, open func(t *testing.T) hub.Store) {
	var tests []storeTest
	tests = append(tests, orgTests...)
	tests = append(tests, ruleTests...)
	tests = append(tests, messageTests...)
	tests = append(tests, receiptTests...)
	tests = append(tests, raceTests...)
	tests = append(tests, queueTests...)
	tests = append(tests, eventTests...)
	tests = append(tests, miscTests...)
	tests = append(tests, committerTests...)
	tests = append(tests, deliveryIDTests...)
	tests = append(tests, limitTests...)
	tests = append(tests, keyTests...)
	tests = append(tests, codeTwiceTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

var ctx = context.Background()

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantCode(t *testing.T, err error, code hub.Code, what string) {
	t.Helper()
	if got := hub.ErrorCode(err); got != code {
		t.Fatalf("%s: code %q (err %v), want %q", what, got, err, code)
	}
}

// sameJSON compares two values by their JSON form, which ignores nil versus
// empty and the fields each backend may keep in its own way.
func sameJSON(t *testing.T, got, want any, what string) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Fatalf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func ids[T any](xs []T, id func(T) string) []string {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		out = append(out, id(x))
	}
	return out
}

func sameStrings(t *testing.T, got, want []string, what string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Message builds a test message of sender "12345678" to citizen recipient.
func Message(uuid string, content []byte, received time.Time) hub.Message {
	return hub.Message{
		UUID: uuid, MessageID: "mid-" + uuid, SenderCVR: "12345678", SenderSystemID: "sender-sys",
		RecipientID: "0101011234", RecipientType: "CPR", MessageType: "DIGITALPOST", MemoVersion: "1.1",
		Label: "Brev " + uuid, SHA256: sha(content), Size: int64(len(content)), Content: content,
		Received: received, State: hub.MessageActive, Mode: "AUTOMATIC",
		Attrs: map[string]string{"KLE": "00.01.00"},
	}
}

// Delivery builds a ready delivery of message uuid to queue.
func Delivery(uuid, queue string, created time.Time) hub.Delivery {
	return hub.Delivery{
		ID: uuid + "/" + queue, MessageUUID: uuid, Channel: hub.ChannelSystem, Queue: queue,
		OrgCVR: "87654321", SystemID: "recv", Created: created, AvailableAt: created,
		State: hub.DeliveryReady, Size: 100,
	}
}

// Receipt builds the sender receipt of message uuid.
func Receipt(uuid string, at time.Time) hub.Receipt {
	return hub.Receipt{TransmissionID: "tx-" + uuid, SystemID: "sender-sys", MessageUUID: uuid,
		MessageID: "mid-" + uuid, Time: at, Status: hub.ReceiptReceived}
}

// putMsg stores a message with one delivery per queue and its receipt.
func putMsg(t *testing.T, s hub.Store, uuid string, at time.Time, queues ...string) []hub.Delivery {
	t.Helper()
	var ds []hub.Delivery
	for _, q := range queues {
		ds = append(ds, Delivery(uuid, q, at))
	}
	must(t, s.PutMessage(ctx, Message(uuid, []byte("content of "+uuid), at), ds, Receipt(uuid, at)), "PutMessage "+uuid)
	return ds
}

// parallel runs fn(i) on n goroutines at once and waits.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			fn(i)
		}(i)
	}
	close(start)
	wg.Wait()
}

func sorted(ss []string) []string {
	out := append([]string(nil), ss...)
	sort.Strings(out)
	return out
}

func n(i int) string { return fmt.Sprintf("%04d", i) }
