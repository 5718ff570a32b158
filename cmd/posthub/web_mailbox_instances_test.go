package main

import (
	"testing"

	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/memo"
)

// TestWebMailboxOnEveryInstance: two `posthub serve -web-mailbox`
// processes on one FerretDB database each serve the reference web mailbox.
// Each start used to rotate the token of the one demo viewing client they
// shared, so only the instance started last could act as it: the other's
// mailbox answered 401 to every citizen (found by the three-instance test).
func TestWebMailboxOnEveryInstance(t *testing.T) {
	uri := testservers.FerretDB(t)
	db := testservers.DatabaseName(t)
	const operator = "ph_web-mailbox-operator"
	var bases []string
	for range 2 {
		p := startHubProcess(t, "-data", t.TempDir(), "-metadata", "mongo", "-mongo-uri", uri, "-mongo-db", db,
			"-operator-token", operator, "-web-mailbox", "-mailbox-demo-login")
		bases = append(bases, p.base)
	}
	h := &testHub{t: t, base: bases[1], operator: operator}
	w := h.setupWorld()
	const label = "Brev til begge instanser"
	uuid, body := letterXML(t, memo.Letter{To: citizen, Label: label})
	h.mustStatus(h.send(w.sender, uuid, body, ""), 201)
	for _, b := range bases {
		webMailboxShows(t, b, citizen, uuid, label)
	}
}
