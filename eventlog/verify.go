package eventlog

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/posthub/posthub/hub"
)

// ProblemKind classifies the first inconsistency Verify finds.
type ProblemKind string

const (
	// Changed: the entry's content no longer hashes to its stored Hash, or
	// (Reason says "rehashed") its hash was recomputed so that the next
	// entry's PrevHash no longer matches.
	Changed ProblemKind = "changed"
	// Removed: the entry with this Seq is gone (a gap, or later entries
	// renumbered to close it, or the tail cut off before a checkpoint).
	Removed ProblemKind = "removed"
	// Inserted: an entry that was never sealed sits at this Seq (a second
	// entry claims a taken Seq, or later entries were renumbered).
	Inserted ProblemKind = "inserted"
	// Reordered: the entry sealed with this Seq sits elsewhere.
	Reordered ProblemKind = "reordered"
	// BadCheckpoint: a checkpoint's signature does not verify or it vouches
	// for a hash the chain does not have here.
	BadCheckpoint ProblemKind = "checkpoint"
)

// Problem is the first bad entry.
type Problem struct {
	Seq    uint64      `json:"seq"`
	Kind   ProblemKind `json:"kind"`
	Reason string      `json:"reason"`
}

func (p *Problem) Error() string {
	return fmt.Sprintf("event log: first bad entry seq %d (%s): %s", p.Seq, p.Kind, p.Reason)
}

// Report is the outcome of a verification.
type Report struct {
	// First and Last are the Seqs of the first and last entry checked.
	First, Last uint64
	Entries     int64
	// Anchor is the PrevHash of the first entry checked: Genesis when the
	// log starts at Seq 1, else the hash of an entry deleted by retention
	// (or before From).
	Anchor string
	// Anchored is true when the anchor is Genesis or a signed checkpoint
	// (in the log, checked with the public key, or given from outside)
	// vouches for the chain at or after it.
	Anchored bool
	// Checkpoints counts the seqs that signed checkpoints (in the log or
	// given) vouched for and the chain matched.
	Checkpoints    int
	LastCheckpoint uint64
	// Problem is the first inconsistency, nil when the chain is intact.
	Problem *Problem
}

// OK reports whether the chain verified.
func (r Report) OK() bool { return r.Problem == nil }

// VerifyOptions extend Verify.
type VerifyOptions struct {
	// From is the first Seq to check (0 or 1: the whole stored log). The
	// entry at From is trusted as the anchor.
	From uint64
	// PublicKey verifies the checkpoint entries in the log.
	PublicKey ed25519.PublicKey
	// Checkpoints exported earlier and kept outside; each must match the
	// chain, and one beyond the log's end reveals a cut-off tail.
	Checkpoints []Checkpoint
}

// Verify recomputes the chain of sealed entries from Seq from on (0: from
// the first stored entry) and reports the first bad entry. The error is
// only for a store failure; a broken chain is Report.Problem.
func Verify(ctx context.Context, store Scanner, from uint64) (Report, error) {
	return VerifyWith(ctx, store, VerifyOptions{From: from})
}

// Scanner is what verification reads: the store (hub.EventStore has it),
// or an exported file (ExportFile).
type Scanner interface {
	ScanEvents(ctx context.Context, from uint64, fn func(hub.Event) error) error
}

// ExportFile is a JSON-lines export (GET /apis/v1/events/export, or
// posthub eventlog export) read back for verification by an outside party.
type ExportFile struct{ R io.Reader }

// ScanEvents implements Scanner over the file, in file order (a reordered
// file is a reordered log).
func (f ExportFile) ScanEvents(ctx context.Context, from uint64, fn func(hub.Event) error) error {
	dec := json.NewDecoder(f.R)
	for dec.More() {
		var ev hub.Event
		if err := dec.Decode(&ev); err != nil {
			return fmt.Errorf("export file: %w", err)
		}
		if ev.Seq < from {
			continue
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// diagWindow is how many entries are collected after a mismatch to tell a
// removal from a reordering.
const diagWindow = 64

// VerifyWith is Verify with checkpoints.
func VerifyWith(ctx context.Context, store Scanner, o VerifyOptions) (Report, error) {
	var (
		r            Report
		started      bool
		expect       uint64 // Seq the next entry must have
		prevHash     string // verified hash of entry expect-1
		prevPrevHash string
		window       []hub.Event
		retained     bool   // a signed retention record was seen
		firstKept    uint64 // the highest first entry such a record keeps
	)
	external := map[uint64]Checkpoint{}
	var maxExternal uint64
	for _, cp := range o.Checkpoints {
		if o.PublicKey != nil {
			if err := cp.Verify(o.PublicKey); err != nil {
				r.Problem = &Problem{Seq: cp.Seq, Kind: BadCheckpoint, Reason: "an exported checkpoint's signature does not verify"}
				return r, nil
			}
		}
		external[cp.Seq] = cp
		maxExternal = max(maxExternal, cp.Seq)
	}
	vouched := map[uint64]bool{}
	vouch := func(seq uint64) {
		if !vouched[seq] {
			vouched[seq] = true
			r.Checkpoints++
		}
		r.LastCheckpoint = max(r.LastCheckpoint, seq)
		if seq+1 >= r.First {
			r.Anchored = true
		}
	}
	err := store.ScanEvents(ctx, o.From, func(ev hub.Event) error {
		if window != nil {
			window = append(window, ev)
			if len(window) >= diagWindow {
				return errStop
			}
			return nil
		}
		if !started {
			started = true
			r.First, r.Anchor, expect, prevHash = ev.Seq, ev.PrevHash, ev.Seq, ev.PrevHash
			r.Anchored = ev.Seq == 1 && ev.PrevHash == Genesis
			if ev.Seq == 1 && ev.PrevHash != Genesis {
				r.Problem = &Problem{Seq: 1, Kind: Changed, Reason: "the first entry does not start from the genesis hash"}
				return errStop
			}
			if cp, ok := external[ev.Seq-1]; ok && ev.Seq > 1 {
				if cp.Hash != ev.PrevHash {
					r.Problem = &Problem{Seq: ev.Seq, Kind: BadCheckpoint, Reason: fmt.Sprintf("the anchor is not the hash checkpoint %d vouches for", cp.Seq)}
					return errStop
				}
				vouch(cp.Seq)
			}
		}
		if ev.Seq != expect || ev.PrevHash != prevHash || Hash(ev) != ev.Hash {
			window = append(window, ev)
			return nil
		}
		if ev.Tag == string(EventLogCheckpoint) && o.PublicKey != nil {
			cp, err := CheckpointOf(ev)
			switch {
			case err != nil:
				r.Problem = &Problem{Seq: ev.Seq, Kind: BadCheckpoint, Reason: err.Error()}
			case cp.Verify(o.PublicKey) != nil:
				r.Problem = &Problem{Seq: ev.Seq, Kind: BadCheckpoint, Reason: "the checkpoint's signature does not verify with the given public key"}
			case cp.Seq+1 != ev.Seq:
				// The sealer seals a checkpoint right after the entry it
				// vouches for; one elsewhere was moved by a renumbering
				// (entries removed, the rest rehashed).
				r.Problem = &Problem{Seq: ev.Seq, Kind: Changed, Reason: fmt.Sprintf("the signed checkpoint at seq %d vouches for seq %d, not for the entry before it: the log was renumbered (entries removed or inserted, hashes recomputed) at or before seq %d", ev.Seq, cp.Seq, max(cp.Seq, ev.Seq-1))}
			case cp.Hash != prevHash:
				r.Problem = &Problem{Seq: cp.Seq, Kind: Changed, Reason: fmt.Sprintf("the signed checkpoint at seq %d vouches for another hash: the log was rewritten (hashes recomputed) after seq %d and at or before seq %d", ev.Seq, r.LastCheckpoint, cp.Seq)}
			}
			if r.Problem != nil {
				return errStop
			}
			vouch(cp.Seq)
		}
		if ev.Tag == string(EventLogRetention) && o.PublicKey != nil {
			rec, err := RetentionRecordOf(ev)
			if err == nil {
				err = rec.Verify(o.PublicKey)
			}
			if err != nil {
				r.Problem = &Problem{Seq: ev.Seq, Kind: BadCheckpoint, Reason: err.Error()}
				return errStop
			}
			retained, firstKept = true, max(firstKept, rec.FirstKept)
		}
		if cp, ok := external[ev.Seq]; ok {
			if cp.Hash != ev.Hash {
				r.Problem = &Problem{Seq: ev.Seq, Kind: Changed, Reason: fmt.Sprintf("the entry's hash is not the one an exported checkpoint vouches for: the log was rewritten (hashes recomputed) after seq %d and at or before this seq", r.LastCheckpoint)}
				return errStop
			}
			vouch(cp.Seq)
		}
		r.Last, r.Entries = ev.Seq, r.Entries+1
		prevPrevHash, prevHash, expect = prevHash, ev.Hash, ev.Seq+1
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return r, err
	}
	if r.Problem != nil {
		return r, nil
	}
	if window != nil {
		r.Problem = diagnose(expect, prevHash, prevPrevHash, r.First, window)
		return r, nil
	}
	if retained && o.From <= 1 && r.First > firstKept {
		r.Problem = &Problem{Seq: firstKept, Kind: Removed,
			Reason: fmt.Sprintf("seqs %d to %d are missing, yet the last signed retention record lets retention remove the entries before seq %d only", firstKept, r.First-1, firstKept)}
		return r, nil
	}
	if maxExternal > 0 && (!started || r.Last < maxExternal) {
		r.Problem = &Problem{Seq: r.Last + 1, Kind: Removed,
			Reason: fmt.Sprintf("the log ends at seq %d but a signed checkpoint vouches for seq %d: the tail was removed", r.Last, maxExternal)}
	}
	return r, nil
}

// withSeq returns whether ev's stored hash is what it would be at seq.
func hashesAt(ev hub.Event, seq uint64) bool {
	ev.Seq = seq
	return Hash(ev) == ev.Hash
}

// diagnose names the first bad entry, given that the entry expected at Seq
// s (after entries up to s-1 verified, the last with hash prevHash) is not
// as it should be; w holds it and what followed.
func diagnose(s uint64, prevHash, prevPrevHash string, first uint64, w []hub.Event) *Problem {
	e := w[0]
	switch {
	case e.Seq < s:
		return &Problem{Seq: e.Seq, Kind: Inserted, Reason: fmt.Sprintf("a second entry claims seq %d", e.Seq)}
	case e.Seq > s:
		for _, x := range w[1:] {
			if x.Seq == s {
				return &Problem{Seq: s, Kind: Reordered, Reason: fmt.Sprintf("the entry sealed as seq %d is stored after seq %d", s, e.Seq)}
			}
		}
		if e.Seq == s+1 {
			return &Problem{Seq: s, Kind: Removed, Reason: fmt.Sprintf("seq %d is missing", s)}
		}
		return &Problem{Seq: s, Kind: Removed, Reason: fmt.Sprintf("seqs %d to %d are missing", s, e.Seq-1)}
	}
	next := func() (hub.Event, bool) {
		if len(w) > 1 && w[1].Seq == s+1 {
			return w[1], true
		}
		return hub.Event{}, false
	}
	if Hash(e) != e.Hash {
		if hashesAt(e, s+1) {
			if n, ok := next(); ok && hashesAt(n, s) {
				return &Problem{Seq: s, Kind: Reordered, Reason: fmt.Sprintf("the entries sealed as seq %d and %d were swapped", s, s+1)}
			}
			if e.PrevHash != prevHash {
				return &Problem{Seq: s, Kind: Removed, Reason: fmt.Sprintf("the entry sealed as seq %d is gone and later entries were renumbered", s)}
			}
		}
		if s > first && hashesAt(e, s-1) && e.PrevHash == prevPrevHash {
			return &Problem{Seq: s - 1, Kind: Inserted, Reason: fmt.Sprintf("seq %d was inserted: the entry now at seq %d was sealed as seq %d, right after seq %d", s-1, s, s-1, s-2)}
		}
		if n, ok := next(); ok && hashesAt(n, s) && n.PrevHash == prevHash {
			return &Problem{Seq: s, Kind: Inserted, Reason: fmt.Sprintf("seq %d was inserted: the entry now at seq %d was sealed as seq %d", s, s+1, s)}
		}
		return &Problem{Seq: s, Kind: Changed, Reason: "the entry's content does not hash to its stored hash"}
	}
	if e.PrevHash != prevHash {
		return &Problem{Seq: s - 1, Kind: Changed, Reason: fmt.Sprintf("rehashed: seq %d was chained to another hash than seq %d has now (seq %d rewritten with a recomputed hash, or seq %d relinked)", s, s-1, s-1, s)}
	}
	return &Problem{Seq: s, Kind: Changed, Reason: "inconsistent entry"}
}
