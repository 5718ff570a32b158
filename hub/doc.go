// Package hub is the domain core of posthub: parties, receiver systems,
// contact structure, routing and ingest, and the interfaces (Store, Blobs)
// that storage backends implement. It imports no backend and no HTTP
// framework; cmd/posthub wires concrete implementations in.
//
// Routing (Router) designates every letter to exactly one destination.
// Post to a citizen goes to their mailbox, or to print when they are
// exempt (or the sender chose print), or as NemSMS. Post to an
// organisation on the hub, when its setup is not MAILBOX_ONLY, is decided
// in this order; the first step that designates an active receiver system
// wins:
//
//  1. CVR post (virksomhedspost) goes to the CVR-post system, or waits in
//     the CVR mailbox; the steps below are for authority post.
//  2. An explicit contact point (Recipient/ContactPoint/contactPointID)
//     goes to its system; an unknown or inactive one, or a letter beyond
//     its size or attachment limit, is refused (Invalid).
//  3. Contact-point codes (CONTACTABLE organisations): the letter's KLE,
//     FORM, GLN and SOR codes from its MeMo (ContentData, AttentionData)
//     are compared with the codes of the organisation's active contact
//     points; KLE and FORM match exactly or a level above ("02.00" covers
//     "02.00.05"). The most specific match (longest code; the oldest point
//     on a tie) among points whose limits the letter is within designates
//     that point's system.
//  4. Routing rules, in ascending priority.
//  5. The default authority-post system.
//
// When no step designates a system, the letter waits in the organisation's
// mailbox, where the first receiver system that connects gets it.
// Organisations not on the hub get post in their CVR mailbox.
//
// Administrative input is bounded (bounds.go) so that every change fits
// the event log that records it; CheckEvent is the event log's own bound.
//
// Errors crossing package boundaries are *Error values carrying one Code of a
// small closed set; the HTTP edge (api/status) maps them to statuses.
package hub
