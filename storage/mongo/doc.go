// Package mongo is the hub.Store on MongoDB (mongo-driver v2), for several
// stateless hub instances sharing one replica set or sharded cluster. It
// is tested against FerretDB v1.24 (PostgreSQL handler), the MongoDB-wire
// server the project can install.
//
// # What it relies on
//
// Every write uses write concern majority with journal (j:true), so a nil
// return means the change survives a crash of any node. There are no
// multi-document transactions. Of MongoDB's concurrency tools only two
// behave atomically on FerretDB v1.24 as well (measured with 8 clients):
//
//   - an insert against a unique index (on _id or a compound key) has
//     exactly one winner;
//   - a deleteOne of a given document has exactly one winner.
//
// findAndModify, a conditional updateOne and $inc are NOT atomic there
// (read-modify-write in the server; concurrent updates of one document can
// both "win" or lose each other's changes), and $group $sum returns 0. So
// every step whose correctness depends on concurrency is built from those
// two primitives, documents that matter are written once and never updated
// concurrently, and sums are computed in Go. The same design is correct on
// MongoDB and shards well (no hot counter documents).
//
// # Versioned records (organisations, systems, contact groups and points)
//
// A record is a chain of revision documents under the unique index
// (k, rv). Create, update and delete each insert revision head+1 (delete
// inserts a tombstone), so of concurrent changes exactly one wins and the
// others get Conflict; optimistic Version checks are therefore exact even on
// FerretDB. Older revisions are emptied afterwards but keep their numbers,
// so a writer that read an old head cannot re-insert a freed number below
// the head and report a lost change as done. A system's token hash is
// claimed by inserting system_tokens{_id: hash} before the revision that
// carries it; a claim not backed by its system's live revision is stale
// once older than the grace period (a crash between the two inserts).
//
// # Receiver rules (receivers.go)
//
// Which of an organisation's receiver systems are active and which is the
// default is a versioned record of its own, the receiver roster: every
// ChangeReceivers decides the hub's rule (at most four authority-post
// systems, one CVR-post, one for a company, exactly one default) on the
// roster head and inserts the next revision, retrying on a newer head when
// another change won. Reads take Active and Default of receiver systems
// from the roster (fetched alongside the system documents, so no extra
// serial round trip); the system documents follow it. A crash between the
// roster revision and a new system's document leaves a member without a
// document, which counts for the grace period and is dropped by the next
// change after it.
//
// # Contact register
//
// PutContacts inserts a batch unordered and replaces, one upsert each, the
// contacts whose insert met an existing document; a concurrent first
// write of the same contact is such a document, so concurrent imports all
// succeed, last writer wins. No bulk of upserts: on MongoDB concurrent
// upserts of a new _id can fail on the unique index, and on FerretDB v1.24
// an update command holds a PostgreSQL connection per matched statement
// until it ends, so one replacing more than its pool of 50 never returns.
//
// # PutMessage: all or none visible
//
//  1. Insert the deliveries (ordered by ID) and the receipt, side by side,
//     with p: true and a fresh random tx. Readers (GetDelivery, ListQueue,
//     ClaimNext, Lease, Ack, CountQueue, DeliveriesOf, receipts) show a
//     p:true document only if its message is committed with the same tx: a
//     batched $in lookup, or the message read ClaimNext and Ack make
//     anyway, and only for the rare p:true documents.
//  2. Commit: insert the message document {_id: UUID, c: true, tx}. The
//     unique _id gives exactly one winner among concurrent submissions of
//     one UUID; the others get Conflict and remove what they wrote in 1.
//     The tx is unique too (an index), which is what a fence uses (below).
//     Delivery IDs derive from the UUID, so concurrent submissions usually
//     meet at 1 already, on the first delivery in ID order: the loser has
//     written only its receipt (invisible, and removed) and can never
//     disturb the winner's documents. This is the instant all becomes
//     visible.
//  3. Clear p on the deliveries and the receipt, side by side with the
//     events and counters of PutMessageWith (best effort; Repair does it
//     too). Until then the join of step 1 keeps them visible.
//
// A crash before 2 leaves invisible documents. Repair removes them once
// older than the grace period (default 10 min). A later PutMessage of the
// same UUID whose deliveries collide with them (the sender resubmitting
// the letter whose answer the crash lost) removes them at once: it fences
// their tx first, inserting a c:false document {_id: "fence/" + tx, tx},
// so the cut-off PutMessage's commit, which repeats the tx, can never land
// after the removal (fenceUnfinished); a PutMessage fenced off while still
// running gets Conflict with no message committed, which hub.Ingest
// answers with Unavailable (resubmit). The fence does not hold the UUID,
// so the resubmission commits as any PutMessage does, and it stays for the
// grace period (Repair removes it). (An earlier version's fence held the
// message's _id and went with the fenced documents; a fenced commit that
// arrived after that stored the message without them. Such a fence left
// by a crash is undone as a claim of the first version is.) A
// PutMessage that has been running for more than half the grace period
// undoes itself rather than commit, so Repair never removes the documents
// of a PutMessage that might still commit. A delivery ID that collides with
// a leftover of an earlier message of the same UUID (deleted by
// DeleteMessage while its deliveries stayed) makes PutMessage undo itself
// and return Conflict. (The first version of this store claimed the UUID
// with a c:false message document before step 1; such claims left by a
// crash are undone by Repair and by a later PutMessage of the UUID.)
//
// # Sequence numbers
//
// A delivery's Seq is the wall clock in microseconds, forced above the
// last value this Store issued: strictly increasing per queue within an
// instance, ordered by arrival across instances up to clock skew, no hot
// counter document and no retry storm under load, and small enough (< 2^53)
// for JavaScript clients. Readers page by (Seq, ID), so equal values from
// two instances are harmless. As with any multi-writer store, a delivery
// committed after a consumer's cursor passed its Seq is seen on the next
// pass from the start of the queue, not on this one.
//
// # Leases, release, park, ack
//
// A delivery document is never updated. Its lease state is a chain of
// lease documents {d, e} under the unique index (d, e): Lease inserts
// epoch head+1 (kind "lease", holder, expiry, attempt = head's + 1) if the
// head is not a live lease, so exactly one of any number of concurrent
// pollers on any number of instances wins; Release appends a "release"
// link if the lease is still the head; Unpark appends a "reset" link
// (attempts start again, any lease ends). Parking is a marker document.
// Links carry the delivery's queue and Seq, so ClaimNext and ListQueue
// read a queue's chains and park markers beside the page of deliveries
// (one round trip), and ClaimNext reads the message beside its insert.
//
// The acknowledgement is a link too: Ack inserts an "acked" link at
// head+1, carrying the receipt and events AckWith records. Of concurrent
// acks exactly one wins the epoch (the others report AlreadyAcked), and a
// lease can never follow an ack unnoticed: a lease that read the chain
// before the ack collides with the acked link, one that reads after it
// sees it. So no lease re-checks anything after its insert. The winner then
// applies the link side by side: the receipt and events (by ID, so doing it
// twice changes nothing), the delivery document's delete, the park marker,
// and a read of the message's remaining deliveries; then it marks the link
// applied and takes the chain off the queue (its links lose their queue
// field but stay for the grace period, for the collision). A delivery whose
// chain ends with its acked link is gone for every reader — the link
// carries the queue until the delivery document is gone, so a listing
// reads it beside the page — and the application is invisible but for the
// receipt and events; a crash during it leaves the link pending, and a
// retried ack or Repair applies it again. The remaining deliveries are read after the link: when two acks
// remove a message's last two deliveries, the one whose link came second
// sees the other's link, so at least one reports Unreferenced (possibly
// both; deleting a blob twice is harmless). If the caller dies before
// deleting the blob, the hub's blob sweeper finds it unreferenced.
//
// # Event log
//
// AppendEvents inserts pending documents (_id = event ID; duplicates are
// skipped) and then drops any of them that is already sealed — the sealer
// inserts the sealed entry before deleting the pending one, so checking
// after the insert catches every interleaving. PutMessageWith skips that
// re-read (the IDs were minted for the message just committed, they
// cannot be sealed), and so does AckWith (its events are appended once,
// for the link it has just inserted; a retried application of a pending
// link, which may come after the sealer, checks first); either way
// PendingEvents never returns an event whose ID is sealed, so a pending
// copy of one is clutter, never a second entry.
//
// PutMessageWith's commit (the message document) carries the message's
// first events and counters, so that an instance dying between the commit
// and their inserts loses them only until the next Repair: its event step
// (eventrepair.go) walks the messages committed over the last
// EventRepairWindow (6 h by default; at most EventRepairMax, 100,000, a
// run) with a cursor, once each message's PutMessage started more than the
// pending grace ago, and appends the events of those whose events are
// neither pending nor sealed — by ID, so it adds nothing twice however
// many instances repair, and the sender's resubmission (hub.Ingest
// appends them again) meets the same IDs — and the counters of those
// whose delta is absent (see Counters).
//
// One sealer at a time holds the sealer lease: a chain of links {n, e}
// under the locks collection's unique index. Taking the lease inserts
// epoch head+1; renewing updates the expiry of the holder's own head link.
// SealEvents commits a batch by inserting the lease's next epoch before it
// writes any entry, so a sealer whose lease another has taken (it paused
// past its expiry) loses that insert and writes nothing: the lease's epoch
// fences every sealed write, on the one step FerretDB makes atomic. The
// entries then go in Seq order with _id = Seq and a unique event ID, in
// inserts of at most 100 that each stop at their first failure: a seal cut
// short leaves a sealed prefix and the rest pending, and a seal the
// previous holder committed just before losing the lease can only extend
// the chain (its first Seq is free, or it stops there). Pending copies of
// sealed events are removed right after, or by PendingEvents after a
// crash. Every 64 epochs a seal deletes the links below its own. Queries
// use indexes on (orgs, t), t, sys and msg; retention deletes a Seq prefix
// so the chain stays verifiable from its first remaining entry.
//
// # Counters
//
// See counters.go: one inserted delta document per AddCounters call,
// folded per (organisation, day) by a compactor holding the counter lock
// into fold documents whose _id carries a per-group epoch (exactly one
// compactor can fold a group at a time), listing what they consumed so
// that readers never count a delta twice; readers take a consistent
// snapshot by reading the fold documents before and after the deltas.
// Repair runs the compactor. A letter's delta (PutMessageWith's) has an
// _id derived from its commit, which Repair's event step inserts too when
// a crash cut the accept path short, so of the two exactly one counts;
// the compactor turns a folded letter delta into a tombstone that keeps
// the _id taken for twice EventRepairWindow (the same on every
// instance), so a delta folded away is never added again.
//
// # The mailbox side (mailbox.go)
//
// hub.MailboxStore on the same two primitives: a notification is created
// by an insert under its unique _id (one creator however many instances
// notice a letter), an assertion key by an insert under the unique index
// (sys, kid), and deleted by a deleteOne. A letter's state, a consent and
// a cursor are whole-document upserts, last writer wins (their owner is
// their only writer; a cursor that a concurrent replay sets back only
// makes idempotent work run again). The purge list and the due list are
// the documents that carry a purge time (pa), resp. a due time (due): the
// field is present only while the letter is deleted, resp. the
// notification pending, so an indexed range query is the list.
//
// # Locks and the policy stamp
//
// A lock is a chain {n, e} under a unique index; the holder is the writer
// of the highest epoch while unexpired; take, renew and release each insert
// head+1. The policy stamp, which instances poll to know when to reload
// their policies, is a random value with the hash of the policy set it
// stands for (last writer wins). A change writes the stamp before its line
// and again after it if the set is not the one stamped; a loader that
// finds the set differing from the stamp's hash (a change in flight, or
// one a crash cut short) restamps it, so every instance loads again, and
// Repair does the same. So a crash between the two writes leaves no
// instance on a stale set past its next poll or two (see stampDoc).
//
// # Command budgets
//
// On a replica set a request waits for its MongoDB commands one round trip
// at a time, so each hot path has a budget of serial commands (the
// critical path; commands issued side by side count once), asserted by
// TestStoreCommandBudget here and end to end, through a real posthub
// serve, by cmd/posthub's TestMongoCommandBudget (`make bench` prints the
// table, before and after). Measured, in the steady state (caches warm):
//
//	path                               serial  total  writes (on the path)
//	accept, letter to a citizen          4      10     8 (3)   budget 5 (3)
//	accept, letter to a receiver system  5      13     7 (3)   budget 5 (3)
//	drain: fetch (GET /memos/next)       2       5     1 (1)
//	drain: ack (DELETE /memos/{id})      4      12     6 (3)
//	drain cycle                          6      17     7 (4)   budget 6
//	viewer mailbox page                  2       5     0       budget 2
//
// (today's main before this design: 15, 16, 28 and 15 serial commands).
// What gets there: the system behind an API token and a viewing client's
// assertion keys are answered from memory for -auth-cache-ttl (authcache.go:
// a token revoked through another instance works here for at most that
// long, 2 s by default); a resubmission is recognised by PutMessage's
// Conflict, not looked up first; routing reads what it may need side by
// side; PutMessage is two serial writes (deliveries and receipt, then the
// message) and the events, counters and clearing of pending flags a third,
// side by side; the notification hook runs after the answer; ClaimNext
// reads page and state together and returns the message it reads beside
// the lease; an ack is read, link, apply, mark; a mailbox page reads its
// messages with one $in and the senders' names from a one-minute cache.
//
// What that implies for one instance on a 3-node replica set in one
// region, assuming ≈ 1 ms for an indexed read from the primary and ≈ 5 ms
// for a write with w:majority and j:true (a round trip to the primary, its
// journal commit and one secondary's; the usual figures for SSD-backed
// nodes in one region, not measured here: FerretDB, the only
// MongoDB-wire server the project can run, uses no index and measures
// itself), and commands issued side by side costing the slowest of them:
//
//   - an accepted letter waits 1 read + 3 writes ≈ 16 ms (17 ms to a
//     receiver system: 2 reads); 32 concurrent senders therefore keep
//     ≈ 32 / 16 ms ≈ 2,000 letters/s in flight, above the 1,000/s target,
//     before CPU (XSD validation) bounds it (before: 7 reads + 8 writes ≈
//     47 ms, ≈ 680/s);
//   - a drained message waits for the fetch, 1 read and 1 write (6 ms), and
//     the ack, 1 read and 3 writes (16 ms): ≈ 22 ms, so 32 concurrent
//     pollers drain ≈ 1,450/s
//     (before: 22 reads + 6 writes ≈ 52 ms, ≈ 615/s). Pollers of one
//     instance start at different deliveries of a page, so they rarely
//     race for one; pollers of different instances can, and a lost race
//     costs one more lease attempt (≈ 5 ms);
//   - what the primary must absorb is the total: ≈ 8 writes and 2 reads
//     per accepted letter and 7 writes and 10 reads per drained one, i.e.
//     ≈ 15,000 writes/s for 1,000 accepted and 1,000 drained letters/s.
//     That, not latency, is what several instances share; a sharded
//     cluster (every collection is keyed so that it shards) spreads it.
//
// # Known limits
//
//   - A crash between PutMessageWith's commit and its events and counters
//     delays them (never the message) until Repair's event step writes
//     them (events under the IDs they were minted with, counters exactly
//     once; see Event log and Counters); a message committed more than
//     EventRepairWindow before the step gets to it (every instance down
//     that long, or a run bound that traffic outruns for that long) stays
//     without them, but for the events a resubmission restores. Messages
//     committed before the commit carried them are not repaired.
//   - A letter's counter delta leaves a tombstone (an _id, no items) for
//     twice EventRepairWindow: by default the last 12 h of letters (a
//     national peak day's 5 million letters: 2.5 million small documents).
//   - The event step assumes the instances' clocks agree within half the
//     pending grace, as PutMessage's own deadline does: a message whose
//     PutMessage started, by its own clock, before the step's cursor and
//     committed after the step passed it would not be looked at.
//   - SetMessageState and TouchSystem are plain updates (last writer
//     wins); on FerretDB a concurrent pair may lose one. Both are rare,
//     idempotent and not concurrency-critical.
//   - The viewer pages a mailbox by Seq alone (ListQueue takes no ID), so
//     two letters of one mailbox accepted by two instances in the same
//     microsecond may straddle a page boundary, and the later one is then
//     missed on that pass.
//   - Clearing a pending flag (step 3 above) is an update of a fresh
//     receipt; a PutReceipt of the same receipt in the same milliseconds
//     could be overwritten on FerretDB.
//   - A CountQueue concurrent with an acknowledgement may still count its
//     delivery for that moment; every other reader, and every later count,
//     sees it gone from its acked link on.
//   - Each query is a round trip; on FerretDB they cost milliseconds, so
//     contended ClaimNext is slower there than on MongoDB.
package mongo
