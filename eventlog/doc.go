// Package eventlog is posthub's event log (hændelseslog): append, seal,
// query, feed, export, verify, checkpoints and retention, over any store
// with the few methods each part needs (Store, SealerStore, Querier,
// Scanner; hub.EventStore has them all).
//
// Guarantees:
//   - Durable appends: Log.Emit returns nil once the entries are stored as
//     pending (the store's durability); concurrent Emits share one
//     AppendEvents (group commit). An entry's ID makes re-appending it a
//     no-op.
//   - One gap-free chain: a Sealer seals pending entries in batches into
//     Seq 1, 2, 3, … with Hash = SHA-256(Encode(entry)) covering PrevHash,
//     the previous entry's Hash (Genesis for Seq 1). Any number of hub
//     instances run a Sealer; a lock lease in the store (SealerLock,
//     renewed before every batch) makes one of them seal at a time, and a
//     sealer that lost its lease unknowingly gets Conflict from SealEvents
//     (Seq taken), reloads the head and retries, so the chain never forks.
//   - Tamper evidence: Verify recomputes the chain and names the first bad
//     Seq and why: changed, removed (gap or renumbered), inserted or
//     reordered. Signed checkpoints (ed25519 over seq, hash and time) are
//     sealed into the chain every CheckpointEvery entries or
//     CheckpointInterval; exported, they let an outside party holding the
//     public key detect even a rewrite that recomputed every hash, and a
//     cut-off tail.
//   - Retention: Retain deletes a prefix of the chain (never the newest
//     entry); verification then starts from the first remaining entry,
//     whose PrevHash is the anchor, vouched for by any later checkpoint.
//   - Visibility: an organisation sees the entries whose Orgs contain it;
//     a sender never sees MESSAGE_READ (or MAILBOX_READ) of its letters:
//     read events carry the recipient side in Orgs and the sender only in
//     Detail["senderOrg"], Emit strips a sender from Orgs, and Visible
//     hides them from the sender again. Auditors see everything, including
//     the log's own bookkeeping (checkpoints, searches, exports).
//   - Reading is logged: every search, feed subscription and export is
//     itself an entry (EVENT_LOG_SEARCHES, EVENT_LOG_EXPORTED) naming the
//     reader, written before the answer; if it cannot be written the read
//     is refused.
//   - No content: entries carry identifiers and small metadata only (at
//     most MaxDetailEntries detail values of MaxDetailValue bytes); message
//     bodies, titles and attachments never enter the log.
//
// The hash encoding (version "posthub.eventlog.v1") is specified on Encode;
// times are UTC with millisecond precision, the precision every backend
// keeps.
package eventlog
