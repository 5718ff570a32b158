// Package hubtest is the embedded hub that package tests build on: a real
// bolt store and fs blob store in a test's temporary directory, closed when
// the test ends, an Ingest wired over them as serve wires it, and helpers
// that register organisations, systems and contacts through the same
// hub.Registry and store calls the hub uses, failing the test on error.
//
// It exists so that the tests of accept, api, hub, retrieval and viewer do
// not each open and wire the stores their own way. It is for _test.go files
// only: production code never imports it (imports_test.go fails if a
// non-test file does), so nothing here has to be safe for a running hub.
//
// What a test varies stays in the test: the Ingest's InlineMax, Now and
// Delivered, the Registry's clock, which event sink is used. Everything
// else is what serve does on the embedded default (cmd/posthub/build.go).
package hubtest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/bolt"
	"github.com/posthub/posthub/storage/fs"
)

// Hub is an embedded store pair and a registry over it, for one test.
type Hub struct {
	T testing.TB
	// Dir is the temporary directory holding the stores (posthub.db and
	// blobs/, as a serve data directory does); tests may put spool and
	// temporary files beside them.
	Dir   string
	Store *bolt.Store
	Blobs *fs.Store
	// Registry is the hub.Registry over Store; set its Now for a test clock
	// before registering anything.
	Registry *hub.Registry
}

// Open opens a bolt store and an fs blob store in a fresh t.TempDir(),
// with default options, and closes both when t ends.
func Open(t testing.TB) *Hub {
	t.Helper()
	dir := t.TempDir()
	store, err := bolt.Open(filepath.Join(dir, "posthub.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	blobs, err := fs.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blobs.Close() })
	return &Hub{T: t, Dir: dir, Store: store, Blobs: blobs, Registry: &hub.Registry{Store: store}}
}

// Ingest is a hub.Ingest over h's stores with a router over the store, as
// serve wires it, sending its events to events (nil: none) and keeping
// content up to inlineMax bytes inline (0: every content in the blob
// store).
func (h *Hub) Ingest(events hub.EventSink, inlineMax int64) *hub.Ingest {
	return &hub.Ingest{Store: h.Store, Blobs: h.Blobs, Router: &hub.Router{Store: h.Store}, Events: events, InlineMax: inlineMax}
}

// Org creates o through the registry.
func (h *Hub) Org(o hub.Organisation) hub.Organisation {
	h.T.Helper()
	o, err := h.Registry.CreateOrg(context.Background(), o)
	if err != nil {
		h.T.Fatal(err)
	}
	return o
}

// Authorities creates an authority named "Org <cvr>" with setup for each
// of cvrs.
func (h *Hub) Authorities(setup hub.Setup, cvrs ...string) {
	h.T.Helper()
	for _, cvr := range cvrs {
		h.Org(hub.Organisation{CVR: cvr, Name: "Org " + cvr, Kind: hub.Authority, Setup: setup})
	}
}

// System registers a system of org through the registry and returns it
// with its API token.
func (h *Hub) System(org string, sp hub.SystemSpec) (hub.System, string) {
	h.T.Helper()
	s, token, err := h.Registry.RegisterSystem(context.Background(), org, sp)
	if err != nil {
		h.T.Fatal(err)
	}
	return s, token
}

// Contacts writes cs to the contact register.
func (h *Hub) Contacts(cs ...hub.Contact) {
	h.T.Helper()
	if err := h.Store.PutContacts(context.Background(), cs); err != nil {
		h.T.Fatal(err)
	}
}

// Registered writes a contact registered for Digital Post for each of ids.
func (h *Hub) Registered(ids ...string) {
	h.T.Helper()
	cs := make([]hub.Contact, len(ids))
	for i, id := range ids {
		cs[i] = hub.Contact{ID: id, Status: hub.Registered}
	}
	h.Contacts(cs...)
}
