package eventlog_test

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
)

// rawLog is direct access to a backend's stored sealed entries, bypassing
// the store's API, as someone with access to the database would tamper.
// Entries are addressed by their storage slot (the Seq they were stored
// under); the Seq inside an entry is whatever put wrote.
type rawLog interface {
	get(t *testing.T, slot uint64) hub.Event
	put(t *testing.T, slot uint64, ev hub.Event)
	del(t *testing.T, slot uint64)
}

// tamperCase changes a sealed log of 30 entries (checkpoints every 10) and
// names the first bad seq Verify must report.
type tamperCase struct {
	name   string
	tamper func(t *testing.T, raw rawLog, last uint64)
	seq    uint64
	kind   eventlog.ProblemKind
	// withCheckpoints: detected only with the exported checkpoints and the
	// public key (the attacker recomputed hashes).
	withCheckpoints bool
}

var tamperCases = []tamperCase{
	{name: "a changed field is named at its seq", seq: 7, kind: eventlog.Changed,
		tamper: func(t *testing.T, raw rawLog, _ uint64) {
			ev := raw.get(t, 7)
			ev.Party = "0101019999"
			raw.put(t, 7, ev)
		}},
	{name: "a changed detail value is named at its seq", seq: 12, kind: eventlog.Changed,
		tamper: func(t *testing.T, raw rawLog, _ uint64) {
			ev := raw.get(t, 12)
			ev.Detail["size"] = "1"
			raw.put(t, 12, ev)
		}},
	{name: "a changed time is named at its seq", seq: 3, kind: eventlog.Changed,
		tamper: func(t *testing.T, raw rawLog, _ uint64) {
			ev := raw.get(t, 3)
			ev.Time = ev.Time.Add(-time1s)
			raw.put(t, 3, ev)
		}},
	{name: "a deleted entry is named as a gap", seq: 7, kind: eventlog.Removed,
		tamper: func(t *testing.T, raw rawLog, _ uint64) { raw.del(t, 7) }},
	{name: "two swapped entries are named at the first", seq: 7, kind: eventlog.Reordered,
		tamper: func(t *testing.T, raw rawLog, _ uint64) {
			a, b := raw.get(t, 7), raw.get(t, 8)
			raw.put(t, 7, b)
			raw.put(t, 8, a)
		}},
	{name: "two swapped entries with their seqs rewritten are named at the first", seq: 7, kind: eventlog.Reordered,
		tamper: func(t *testing.T, raw rawLog, _ uint64) {
			a, b := raw.get(t, 7), raw.get(t, 8)
			a.Seq, b.Seq = 8, 7
			raw.put(t, 7, b)
			raw.put(t, 8, a)
		}},
	{name: "an inserted entry with a valid hash and later entries renumbered is named at its seq", seq: 7, kind: eventlog.Inserted,
		tamper: func(t *testing.T, raw rawLog, last uint64) {
			insertAt(t, raw, last, 7, true)
		}},
	{name: "an inserted entry with a made-up hash is named at its seq", seq: 7, kind: eventlog.Inserted,
		tamper: func(t *testing.T, raw rawLog, last uint64) {
			insertAt(t, raw, last, 7, false)
		}},
	{name: "a deleted entry with later entries renumbered is named at its seq", seq: 7, kind: eventlog.Removed,
		tamper: func(t *testing.T, raw rawLog, last uint64) {
			for k := uint64(7); k < last; k++ {
				ev := raw.get(t, k+1)
				ev.Seq = k
				raw.put(t, k, ev)
			}
			raw.del(t, last)
		}},
	{name: "a changed entry with its own hash recomputed is named at its seq", seq: 7, kind: eventlog.Changed,
		tamper: func(t *testing.T, raw rawLog, _ uint64) {
			ev := raw.get(t, 7)
			ev.Actor = "mallory"
			ev.Hash = eventlog.Hash(ev)
			raw.put(t, 7, ev)
		}},
	{name: "a cut-off tail is named by the exported checkpoints", seq: 29, kind: eventlog.Removed, withCheckpoints: true,
		tamper: func(t *testing.T, raw rawLog, last uint64) {
			// 30 entries + 3 checkpoints (seqs 11, 22, 33 vouching for 10,
			// 21, 32): drop everything after seq 28.
			for k := uint64(29); k <= last; k++ {
				raw.del(t, k)
			}
		}},
	{name: "a rewrite that recomputed every later hash is caught by the next checkpoint", seq: 10, kind: eventlog.Changed, withCheckpoints: true,
		tamper: func(t *testing.T, raw rawLog, last uint64) {
			prev := raw.get(t, 4).Hash
			for k := uint64(5); k <= last; k++ {
				ev := raw.get(t, k)
				if k == 5 {
					ev.Actor = "mallory"
				}
				ev.PrevHash = prev
				ev.Hash = eventlog.Hash(ev)
				prev = ev.Hash
				raw.put(t, k, ev)
			}
		}},
}

const time1s = 1_000_000_000

// insertAt shifts entries at and after slot up by one and stores a forged
// entry at slot, hashed correctly onto its predecessor when valid.
func insertAt(t *testing.T, raw rawLog, last, slot uint64, valid bool) {
	for k := last; k >= slot; k-- {
		ev := raw.get(t, k)
		ev.Seq = k + 1
		raw.put(t, k+1, ev)
	}
	prev := raw.get(t, slot-1)
	forged := hub.Event{ID: "forged", Time: prev.Time, Tag: string(eventlog.MessageRead), Actor: "mallory",
		Orgs: []string{"11111111"}, Seq: slot, PrevHash: prev.Hash, Hash: "00"}
	if valid {
		forged.Hash = eventlog.Hash(forged)
	}
	raw.put(t, slot, forged)
}

// runTamperCases builds the log in a fresh store for each case, tampers
// with it through raw and checks the verdict. open returns the store, a
// function giving raw access (it may close the store first) and a function
// reopening the store after tampering.
func runTamperCases(t *testing.T, open func(t *testing.T) (s eventStore, tamper func(func(rawLog)) eventStore)) {
	for _, tc := range tamperCases {
		t.Run(tc.name, func(t *testing.T) {
			s, tamper := open(t)
			log := buildChain(t, s, 30, 10)
			if len(log) != 33 {
				t.Fatalf("sealed %d entries, want 30 and 3 checkpoints", len(log))
			}
			verifyOK(t, s)
			var cps bytes.Buffer
			if _, err := eventlog.ExportCheckpoints(ctx, s, 0, &cps); err != nil {
				t.Fatal(err)
			}
			exported, err := eventlog.ReadCheckpoints(&cps)
			if err != nil || len(exported) != 3 {
				t.Fatalf("exported checkpoints %v, %v", exported, err)
			}
			last := log[len(log)-1].Seq
			s = tamper(func(raw rawLog) { tc.tamper(t, raw, last) })
			opts := eventlog.VerifyOptions{}
			if tc.withCheckpoints {
				r, err := eventlog.Verify(ctx, s, 0)
				if err != nil {
					t.Fatal(err)
				}
				if r.Problem != nil && !(r.Problem.Seq == tc.seq && r.Problem.Kind == tc.kind) {
					t.Logf("without checkpoints: %v", r.Problem)
				}
				opts = eventlog.VerifyOptions{PublicKey: testKey.Public().(ed25519.PublicKey), Checkpoints: exported}
			}
			r, err := eventlog.VerifyWith(ctx, s, opts)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if r.Problem == nil {
				t.Fatalf("Verify found nothing (checked %d..%d)", r.First, r.Last)
			}
			if r.Problem.Seq != tc.seq || r.Problem.Kind != tc.kind {
				t.Fatalf("Verify: %v; want seq %d (%s)", r.Problem, tc.seq, tc.kind)
			}
			t.Logf("%v", r.Problem)
		})
	}
}
