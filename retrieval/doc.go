// Package retrieval is how receiver systems (modtagersystemer) empty their
// organisation's post: they list the messages designated to them, fetch
// each one (which leases it), and acknowledge it. It also owns the
// first-connection backfill, NgDP-style system-fetch jobs, the inactivity
// watch and a Go client (retrieval/client) with a crash-safe drain loop.
//
// # Guarantees
//
//   - At-least-once. A message leaves a system's queue only when the system
//     acknowledges it (DELETE /memos/{id}, or a COMPLETED business receipt).
//     A fetch that is never acknowledged — the system crashed, the network
//     broke mid-stream — leaves the message leased until the lease expires
//     (LeaseTTL, default 5 minutes); then it is fetchable again. A crash of
//     the hub at any instant loses nothing: the ack is the one durable step
//     that removes anything. On the embedded store leases live in the hub
//     process's memory (storage/bolt), so a restart of the hub ends every
//     lease at once, as if all had expired.
//   - Exclusive leases. A fetch leases the delivery through Store.Lease or
//     Store.ClaimNext, which have exactly one winner among any number of
//     callers on any number of hub instances sharing the store. While a lease
//     lives, GET /memos/{id} by another poller answers 409 and
//     GET /memos/next skips the message. Leases are held in the name of the
//     system ("system:<id>"), and the lease token (X-Posthub-Lease) names the
//     lease's epoch, so a business receipt can give a lease back early.
//   - Empty-on-fetch. The ack removes the delivery; when the message has no
//     other delivery and no sent-archive copy its content is deleted from the
//     blob store (a blob left behind by a crash in between is an orphan for
//     the sweeper, never a visible message). The sender's receipt becomes
//     COMPLETED and the event MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM is
//     logged: Store.AckWith reads the delivery, its message and the
//     sender's receipt and records both with the ack, in one transaction
//     (bolt) or in the ack's one durable write, applied after it (MongoDB),
//     with ids derived from the delivery. Either way a retried ack neither
//     loses nor duplicates them.
//   - Idempotent ack. Acknowledging a message that is already gone answers
//     success as long as the message was addressed to the caller's
//     organisation and no other queue holds it.
//   - Tenancy. A system sees only deliveries in its own queue
//     ("system/<id>"). Any other message — another system's, another
//     organisation's, a held one, one that does not exist — is NotFound, so
//     nothing about it is revealed.
//   - Poison messages. Every lease counts an attempt; the lease that would be
//     attempt MaxAttempts+1 (default 10) parks the delivery instead
//     (Store.Park, event MEMO_SEND_PARKED). A message that cannot be
//     converted to the system's MeMo version is parked at once (event
//     MEMO_TRANSFORMATION_FAILED). An INVALID business receipt parks it
//     (policy InvalidPark, the default) or gives the lease back
//     (InvalidRelease). Parked deliveries are listed per organisation and can
//     be unparked by an administrator.
//   - Version. A system gets the MeMo version it registered for. When the
//     stored message has that version its stored bytes are streamed
//     unchanged; otherwise the memo package converts it (via temporary
//     files, so memory stays bounded).
//
// # First connection
//
// Post that reaches an organisation before it has a receiver system waits in
// its mailbox queues (hub.MailboxQueue(org, kind)). Backfill moves it to the
// system that now serves the mailbox — the default authority-post system for
// AUTHORITY_POST, the CVR-post system (a company's only system) for
// CVR_POST — in arrival order: for each batch it adds the system deliveries
// (AddDeliveries, idempotent) and only then acknowledges the mailbox
// deliveries, so a crash in between leaves the message in both queues and a
// rerun finishes the move; nothing is lost. Backfill runs when a receiver
// system is registered (api's handleCreateSystem), and a reconcile loop
// (Run) repeats it for every organisation with system retrieval, which also
// covers reactivation, a new default system, a change of setup and a letter
// routed to the mailbox while a system was being registered. A per-
// organisation lock (Store.AcquireLock) keeps instances from moving the same
// mailbox at once. Organisations with setup MAILBOX_ONLY keep their post in
// the mailbox for viewing clients.
//
// # System-fetch jobs
//
// A system-fetch (NgDP's "systemafhentning") is an explicit, optionally
// date-bounded move of a mailbox's messages to the calling system, with
// progress. The job record is a small JSON document stored in the blob store
// under "jobs/system-fetch/" — shared by every hub instance, durable, and
// without widening hub.Store. It holds the job's parameters, status and the
// UUIDs of the messages it moved; progress is derived from the queues, not
// counted: a moved message whose system delivery is gone is fetched, one
// whose delivery is parked has failed. A job left RUNNING by a crashed
// instance is resumed by any instance's Run loop (under a lock); the move is
// the same crash-safe move as Backfill. Events SYSTEM_FETCH_STARTED,
// SYSTEM_FETCH_STOPPED and SYSTEM_FETCH_FINISHED form its trail.
//
// # Inactivity
//
// A receiver system that has not fetched for InactiveAfter (default 7 days)
// while post waits in its queue is inactive: Inactive lists such systems
// (computed from Store state, so every instance agrees), and Run logs a
// warning and emits SYSTEM_INACTIVE_WARNING at most once a day per system.
package retrieval
