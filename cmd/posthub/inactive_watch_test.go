package main

import (
	"slices"
	"testing"
	"time"

	"github.com/posthub/posthub/memo"
)

// TestInactiveWatchInterval: a receiver system with post waiting that has
// not fetched for -inactive-after is flagged (SYSTEM_INACTIVE_WARNING)
// within -inactive-watch-interval. At the default interval (1h) the first
// look after the start would come long after this test's deadline, so the
// warning shows the flag reached the watch.
func TestInactiveWatchInterval(t *testing.T) {
	h := startHub(t, "-inactive-after", "1s", "-inactive-watch-interval", "200ms")
	w := h.setupWorld()
	uuid, body := letterXML(t, memo.Letter{To: company})
	h.mustStatus(h.send(w.sender, uuid, body, ""), 201)

	deadline := time.Now().Add(30 * time.Second)
	for {
		var res struct {
			Events []struct {
				EventTag      string   `json:"eventTag"`
				Organisations []string `json:"organisations"`
			} `json:"events"`
		}
		r := h.mustStatus(h.do("GET", "/apis/v1/events/?size=100&eventTag=SYSTEM_INACTIVE_WARNING", h.operator, "", nil), 200)
		r.json(t, &res)
		for _, e := range res.Events {
			if e.EventTag == "SYSTEM_INACTIVE_WARNING" && slices.Contains(e.Organisations, company) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SYSTEM_INACTIVE_WARNING for %s's receiver system within 30 s: %s", company, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
