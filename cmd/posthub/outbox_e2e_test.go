package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/memo"
)

// TestPrintOutboxCountsItsItemsOnMetrics: the print and SMS outboxes had
// no metric, so an operator could not see letters handed over or refused
// (a refusal was a WARN log line and nothing else). A letter to an exempt
// citizen is now counted on /metrics as posthub_outbox_items_total
// {queue="print", outcome="sent"} once the spool has taken it.
func TestPrintOutboxCountsItsItemsOnMetrics(t *testing.T) {
	h := startHub(t)
	w := h.setupWorld()
	m := memo.NewLetter(withDefaults(memo.Letter{To: exempt}))
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	h.mustStatus(h.send(w.sender, m.MessageHeader.MessageUUID, buf.Bytes(), "&mode=Fysisk%20Post"), 201)
	const want = `posthub_outbox_items_total{outcome="sent",queue="print"} 1`
	// The outbox is woken by the delivery; the count follows the ack.
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := h.mustStatus(h.callWith("GET", "/metrics", map[string]string{"Authorization": "Bearer " + h.operator}, nil), 200)
		if strings.Contains(string(r.body), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s on /metrics:\n%s", want, r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
