package main

import (
	"context"
	"crypto/ed25519"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/bolt"
	"github.com/posthub/posthub/storage/mongo"
)

// runEventlog is `posthub eventlog`: verification and export of the event
// log, offline (a stopped embedded hub, or MongoDB while the hub runs) or of
// an exported file.
func runEventlog(env *Env, args []string) int {
	subs := [][2]string{
		{"verify", "recompute the hash chain; exit 1 naming the first bad seq"},
		{"export", "write the log as JSON lines or CSV (auditors)"},
		{"export-checkpoints", "write the signed checkpoints as JSON lines, to keep outside the hub"},
		{"verify-checkpoints", "check exported checkpoints with the public key (and against the log)"},
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		usage(env.Stderr, "posthub eventlog", "verify and export the tamper-evident event log", subs)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub := args[0]
	fs := newFlagSet(env, "posthub eventlog "+sub, "[flags]")
	data := fs.String("data", "", "data directory of a stopped embedded hub (bolt)")
	mongoURI := fs.String("mongo-uri", env.Getenv("POSTHUB_MONGO_URI"), "MongoDB connection string (instead of -data)")
	mongoDB := fs.String("mongo-db", "posthub", "MongoDB database name")
	file := fs.String("file", "", "verify: a JSON-lines export instead of a store")
	from := fs.Uint64("from", 0, "first seq")
	pubKey := fs.String("public-key", "", "ed25519 public key (PEM) of the checkpoints (default on -data: DATA/eventlog-ed25519.pem.pub)")
	cpFile := fs.String("checkpoints", "", "exported checkpoints (JSON lines) to verify against")
	format := fs.String("format", "jsonl", "export: jsonl or csv")
	if rc := parseFlags(fs, args[1:]); rc >= 0 {
		return rc
	}
	ctx := context.Background()
	fail := func(err error) int {
		fmt.Fprintf(env.Stderr, "posthub eventlog %s: %v\n", sub, err)
		return 1
	}
	if *data == "" && *mongoURI == "" {
		*data = env.Getenv("POSTHUB_DATA")
	}
	if *pubKey == "" && *data != "" {
		if p := filepath.Join(*data, "eventlog-ed25519.pem.pub"); fileExists(p) {
			*pubKey = p
		}
	}
	var pub ed25519.PublicKey
	if *pubKey != "" {
		k, err := eventlog.LoadPublicKey(*pubKey)
		if err != nil {
			return fail(err)
		}
		pub = k
	}
	var cps []eventlog.Checkpoint
	if *cpFile != "" {
		f, err := os.Open(*cpFile)
		if err != nil {
			return fail(err)
		}
		cps, err = eventlog.ReadCheckpoints(f)
		f.Close()
		if err != nil {
			return fail(err)
		}
	}
	var src eventlog.Scanner
	var store hub.EventStore
	switch {
	case sub == "verify" && *file != "":
		f, err := os.Open(*file)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		src = eventlog.ExportFile{R: f}
	case *mongoURI != "":
		s, err := mongo.Open(ctx, mongo.Config{URI: *mongoURI, Database: *mongoDB})
		if err != nil {
			return fail(err)
		}
		defer s.Close()
		src, store = s, s
	case *data != "":
		s, err := bolt.Open(filepath.Join(*data, "posthub.db"), bolt.Options{Timeout: 2 * time.Second})
		if err != nil {
			return fail(fmt.Errorf("%w (is the hub still running? bolt allows one process; use the API export and -file)", err))
		}
		defer s.Close()
		src, store = s, s
	case sub != "verify-checkpoints":
		fmt.Fprintln(env.Stderr, "posthub eventlog: name the log: -data DIR, -mongo-uri URI or (verify) -file EXPORT")
		return 2
	}

	switch sub {
	case "verify", "verify-checkpoints":
		if sub == "verify-checkpoints" {
			if pub == nil || cps == nil {
				fmt.Fprintln(env.Stderr, "posthub eventlog verify-checkpoints: needs -public-key and -checkpoints")
				return 2
			}
			for _, cp := range cps {
				if err := cp.Verify(pub); err != nil {
					return fail(err)
				}
			}
			fmt.Fprintf(env.Stdout, "%d checkpoints carry good signatures (key %s)\n", len(cps), eventlog.KeyID(pub))
			if src == nil {
				return 0
			}
		}
		r, err := eventlog.VerifyWith(ctx, src, eventlog.VerifyOptions{From: *from, PublicKey: pub, Checkpoints: cps})
		if err != nil {
			return fail(err)
		}
		if r.Problem != nil {
			fmt.Fprintf(env.Stdout, "FAIL: first bad entry seq %d (%s): %s\n", r.Problem.Seq, r.Problem.Kind, r.Problem.Reason)
			return 1
		}
		if r.Entries == 0 {
			fmt.Fprintln(env.Stdout, "OK: the log is empty")
			return 0
		}
		anchor := "genesis"
		if r.First > 1 {
			anchor = "seq " + strconv.FormatUint(r.First-1, 10) + " (deleted by retention or before -from)"
			if !r.Anchored {
				anchor += ", not vouched for by a checkpoint"
			}
		}
		fmt.Fprintf(env.Stdout, "OK: seq %d..%d, %d entries, chained from %s; %d checkpoints verified", r.First, r.Last, r.Entries, anchor, r.Checkpoints)
		if pub == nil {
			fmt.Fprint(env.Stdout, " (no public key given: checkpoint signatures not checked)")
		}
		fmt.Fprintln(env.Stdout)
		return 0
	case "export-checkpoints":
		n, err := eventlog.ExportCheckpoints(ctx, store, *from, env.Stdout)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(env.Stderr, "%d checkpoints\n", n)
		return 0
	case "export":
		return exportEvents(ctx, env, store, *from, *format, fail)
	}
	fmt.Fprintf(env.Stderr, "posthub eventlog: unknown subcommand %q\n", sub)
	return 2
}

func exportEvents(ctx context.Context, env *Env, store hub.EventStore, from uint64, format string, fail func(error) int) int {
	var write func(hub.Event) error
	switch format {
	case "jsonl":
		enc := json.NewEncoder(env.Stdout)
		write = func(ev hub.Event) error { return enc.Encode(ev) }
	case "csv":
		cw := csv.NewWriter(env.Stdout)
		defer cw.Flush()
		_ = cw.Write([]string{"seq", "id", "eventTime", "eventTag", "actor", "organisations", "systemId", "messageUUID", "party", "detail", "prevHash", "hash"})
		write = func(ev hub.Event) error {
			d, _ := json.Marshal(ev.Detail)
			return cw.Write([]string{strconv.FormatUint(ev.Seq, 10), ev.ID, ev.Time.UTC().Format(eventlog.TimeLayout), ev.Tag, ev.Actor,
				strings.Join(ev.Orgs, ";"), ev.SystemID, ev.MessageUUID, ev.Party, string(d), ev.PrevHash, ev.Hash})
		}
	default:
		fmt.Fprintln(env.Stderr, "posthub eventlog export: -format is jsonl or csv")
		return 2
	}
	if err := store.ScanEvents(ctx, from, write); err != nil {
		return fail(err)
	}
	return 0
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
