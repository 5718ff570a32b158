// Package hub is the domain core of posthub: parties, receiver systems,
// contact structure, routing and ingest, and the interfaces (Store, Blobs)
// that storage backends implement. It imports no backend and no HTTP
// framework; cmd/posthub wires concrete implementations in.
//
// Errors crossing package boundaries are *Error values carrying one Code of a
// small closed set; HTTPStatus maps them at the edge.
package hub
