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
// # PutMessage: all or none visible
//
//  1. Claim: insert the message document {_id: UUID, c: false, tx}. The
//     unique _id gives exactly one winner among concurrent submissions of
//     one UUID; the others return Conflict having written nothing, so a
//     duplicate can never disturb the first one's deliveries or receipt.
//  2. Insert the deliveries and the receipt with p: true and the claim's
//     random tx. Readers (GetDelivery, ListQueue, ClaimNext, Lease, Ack,
//     CountQueue, DeliveriesOf, receipts) show a p:true document only if
//     its message is committed with the same tx: a batched $in lookup, and
//     only for the rare p:true documents.
//  3. Commit: set c: true on the message document (one document, written
//     only by its claimant). This is the instant all becomes visible.
//  4. Clear p on the deliveries and the receipt (best effort; Repair does
//     it too). Until then the join of step 2 keeps them visible.
//
// A crash before 3 leaves an invisible claim. Repair, and a later
// PutMessage of the same UUID, undo a claim older than the grace period
// (default 10 min): its tx's deliveries and receipt first, the claim last,
// so no document of a tx outlives its claim unnoticed. A PutMessage that
// has been running for more than half the grace period undoes itself rather
// than commit, so Repair never removes the documents of a PutMessage that
// might still commit. A delivery ID that collides with a leftover of an
// earlier message of the same UUID (deleted by DeleteMessage while its
// deliveries stayed) makes PutMessage undo itself and return Conflict.
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
// Lease re-checks after its insert that the delivery still exists (an Ack
// may have raced it) and withdraws its link if not.
//
// Ack is deleteOne of the delivery: exactly one concurrent ack wins, the
// others report AlreadyAcked. The winner then removes the lease chain and
// park marker and counts the message's remaining deliveries. Every ack
// counts after its own delete, so when two acks remove a message's last two
// deliveries, the one that counts last sees both deletes: at least one
// reports Unreferenced (possibly both; deleting a blob twice is harmless).
// If the caller dies before deleting the blob, the hub's blob sweeper
// finds it unreferenced.
//
// # Event log
//
// AppendEvents inserts pending documents (_id = event ID; duplicates are
// skipped) and then drops any of them that is already sealed — the sealer
// inserts the sealed entry before deleting the pending one, so checking
// after the insert catches every interleaving.
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
// Repair runs the compactor.
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
// head+1. The policy stamp is a random value written after every change
// (last writer wins) together with a hash of the policy set; Repair
// rewrites it when the hash no longer matches (a stamp write lost to a
// crash).
//
// # Known limits
//
//   - SetMessageState and TouchSystem are plain updates (last writer
//     wins); on FerretDB a concurrent pair may lose one. Both are rare,
//     idempotent and not concurrency-critical.
//   - The viewer pages a mailbox by Seq alone (ListQueue takes no ID), so
//     two letters of one mailbox accepted by two instances in the same
//     microsecond may straddle a page boundary, and the later one is then
//     missed on that pass.
//   - Clearing a pending flag (step 4 above) is an update of a fresh
//     receipt; a PutReceipt of the same receipt in the same milliseconds
//     could be overwritten on FerretDB.
//   - Each query is a round trip; on FerretDB they cost milliseconds, so
//     contended ClaimNext is slower there than on MongoDB.
package mongo
