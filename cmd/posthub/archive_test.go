package main

import (
	"bytes"
	"testing"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
)

func TestSentArchiveKeepsWhatTheSenderAskedFor(t *testing.T) {
	h := startHub(t)
	w := h.setupWorld()
	keepU, keepB := letterXML(t, memo.Letter{To: citizen})
	h.mustStatus(h.send(w.sender, keepU, keepB, "&archive=FORWARD_AND_KEEP"), 201)
	onlyU, onlyB := letterXML(t, memo.Letter{To: citizen})
	h.mustStatus(h.send(w.sender, onlyU, onlyB, ""), 201)
	// Forward, else keep: kept because digital-only to an exempt citizen is undeliverable.
	elseU, elseB := letterXML(t, memo.Letter{To: exempt})
	h.mustStatus(h.send(w.sender, elseU, elseB, "&archive=FORWARD_ELSE_KEEP&mode=DIGITAL"), 201)
	deliveredU, deliveredB := letterXML(t, memo.Letter{To: citizen})
	h.mustStatus(h.send(w.sender, deliveredU, deliveredB, "&archive=FORWARD_ELSE_KEEP"), 201)

	var list []hub.Message
	h.mustStatus(h.do("GET", "/apis/v1/sent/", w.sender, "", nil), 200).list(t, &list)
	got := map[string]bool{}
	for _, m := range list {
		got[m.UUID] = true
	}
	if len(list) != 2 || !got[keepU] || !got[elseU] {
		t.Fatalf("archive lists %v, want %s and %s", got, keepU, elseU)
	}
	r := h.mustStatus(h.do("GET", "/apis/v1/sent/"+keepU, w.sender, "", nil), 200)
	if !bytes.Equal(r.body, keepB) || r.header.Get("Content-Type") != "application/xml" {
		t.Fatalf("archived letter differs from what was sent (%d bytes, %s)", len(r.body), r.header.Get("Content-Type"))
	}
	h.mustStatus(h.do("GET", "/apis/v1/sent/"+onlyU, w.sender, "", nil), 404)
	// Another organisation sees neither the list entries nor the letter.
	var other []hub.Message
	h.mustStatus(h.do("GET", "/apis/v1/sent/", w.senderB, "", nil), 200).list(t, &other)
	if len(other) != 0 {
		t.Fatalf("another organisation sees %d archived letters", len(other))
	}
	h.mustStatus(h.do("GET", "/apis/v1/sent/"+keepU, w.senderB, "", nil), 404)
	r = h.do("POST", "/apis/v1/memos/?memo-message-uuid="+keepU+"&archive=SOMETIMES", w.sender, "application/xml", bytes.NewReader(keepB))
	if _, f := r.errorCode(t); r.status != 400 || len(f) == 0 || f[0] != "archive.unknown" {
		t.Fatalf("unknown archive choice: %d %s", r.status, r.body)
	}
}
