package main

import (
	"context"
	"crypto/ed25519"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
)

// eventlogCommands are `posthub eventlog`'s subcommands: verification and
// export of the event log in the store the hub's configuration names (the
// flags, POSTHUB_* variables and -config file serve reads) — a stopped
// embedded hub, or MongoDB while the hub runs — or of an exported file.
// None of them writes to the store, nor creates one where there is none.
var eventlogCommands = []command{
	{"verify", "recompute the hash chain; exit 1 naming the first bad seq", runEventlogVerify},
	{"export", "write the log as JSON lines or CSV (auditors)", runEventlogExport},
	{"export-checkpoints", "write the signed checkpoints as JSON lines, to keep outside the hub", runEventlogExportCheckpoints},
	{"verify-checkpoints", "check exported checkpoints with the public key (and against the log)", runEventlogVerifyCheckpoints},
}

func runEventlog(env *Env, args []string) int {
	return dispatch(env, "posthub eventlog", "verify and export the tamper-evident event log", eventlogCommands, args)
}

// eventlogCmd is one eventlog subcommand's settings and arguments.
type eventlogCmd struct {
	env *Env
	fs  *flag.FlagSet
	cfg storeConfig
	// key is the -eventlog-key setting; its .pub file is the default
	// public key (verify, verify-checkpoints).
	key  string
	from uint64
}

// newEventlogCmd declares the store settings and -from; the subcommand
// adds its own flags to c.fs.
func newEventlogCmd(env *Env, sub, args string) *eventlogCmd {
	c := &eventlogCmd{env: env, fs: newFlagSet(env, "posthub eventlog "+sub, args)}
	c.cfg.flags(c.fs)
	c.fs.Uint64Var(&c.from, "from", 0, "first seq")
	return c
}

// keyFlags declares -eventlog-key (the setting, as serve reads it) and
// -public-key, -checkpoints.
func (c *eventlogCmd) keyFlags(pubKey, cpFile *string) {
	c.fs.StringVar(&c.key, "eventlog-key", "", "the hub's checkpoint signing key (PEM), as serve has it; its KEY.pub is the default -public-key")
	c.fs.StringVar(pubKey, "public-key", "", "ed25519 public key (PEM) of the checkpoints (default: EVENTLOG-KEY.pub, else on bolt DATA/eventlog-ed25519.pem.pub, when there)")
	c.fs.StringVar(cpFile, "checkpoints", "", "exported checkpoints (JSON lines) to verify against")
}

func (c *eventlogCmd) fail(err error) int {
	fmt.Fprintf(c.env.Stderr, "%s: %v\n", c.fs.Name(), err)
	return 1
}

// open opens the store the settings name, read-only in effect. With
// optional, no embedded store at -data is no error (store nil).
func (c *eventlogCmd) open(ctx context.Context, optional bool) (hub.Store, int) {
	if err := c.cfg.check(); err != nil {
		return nil, usageError(c.env, c.fs, "%v", err)
	}
	s, err := openMetadata(ctx, c.cfg, openOptions{boltWait: 2 * time.Second, existing: true})
	switch {
	case errors.Is(err, errNoStore) && optional:
		return nil, -1
	case errors.Is(err, errNoStore):
		return nil, usageError(c.env, c.fs, "%v; name the log with -data DIR, -metadata mongo -mongo-uri URI, or (verify) -file EXPORT", err)
	case err != nil && c.cfg.Metadata == "bolt":
		return nil, c.fail(fmt.Errorf("%w (is the hub still running? bolt allows one process; use the API export and -file)", err))
	case err != nil:
		return nil, c.fail(err)
	}
	return s, -1
}

// keys loads the public key (given, or beside the configured private key)
// and the exported checkpoints.
func (c *eventlogCmd) keys(pubKey, cpFile string) (ed25519.PublicKey, []eventlog.Checkpoint, error) {
	if pubKey == "" {
		// Where serve keeps it: beside -eventlog-key, else (bolt) in DATA.
		var beside []string
		if c.key != "" {
			beside = append(beside, c.key+".pub")
		}
		if c.cfg.Metadata == "bolt" {
			beside = append(beside, filepath.Join(c.cfg.Data, "eventlog-ed25519.pem.pub"))
		}
		for _, p := range beside {
			if fileExists(p) {
				pubKey = p
				break
			}
		}
	}
	var pub ed25519.PublicKey
	if pubKey != "" {
		k, err := eventlog.LoadPublicKey(pubKey)
		if err != nil {
			return nil, nil, err
		}
		pub = k
	}
	var cps []eventlog.Checkpoint
	if cpFile != "" {
		f, err := os.Open(cpFile)
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		if cps, err = eventlog.ReadCheckpoints(f); err != nil {
			return nil, nil, err
		}
	}
	return pub, cps, nil
}

func runEventlogVerify(env *Env, args []string) int {
	var file, pubKey, cpFile string
	c := newEventlogCmd(env, "verify", "[flags]")
	c.fs.StringVar(&file, "file", "", "a JSON-lines export to verify instead of the store")
	c.keyFlags(&pubKey, &cpFile)
	if rc := parseConfig(env, c.fs, args); rc >= 0 {
		return rc
	}
	if _, ok := positional(env, c.fs); !ok {
		return 2
	}
	pub, cps, err := c.keys(pubKey, cpFile)
	if err != nil {
		return c.fail(err)
	}
	ctx := context.Background()
	var src eventlog.Scanner
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return c.fail(err)
		}
		defer f.Close()
		src = eventlog.ExportFile{R: f}
	} else {
		s, rc := c.open(ctx, false)
		if rc >= 0 {
			return rc
		}
		defer s.Close()
		src = s
	}
	return c.verify(ctx, src, pub, cps)
}

// verify checks the chain of src and prints the verdict.
func (c *eventlogCmd) verify(ctx context.Context, src eventlog.Scanner, pub ed25519.PublicKey, cps []eventlog.Checkpoint) int {
	out := c.env.Stdout
	r, err := eventlog.VerifyWith(ctx, src, eventlog.VerifyOptions{From: c.from, PublicKey: pub, Checkpoints: cps})
	if err != nil {
		return c.fail(err)
	}
	if r.Problem != nil {
		fmt.Fprintf(out, "FAIL: first bad entry seq %d (%s): %s\n", r.Problem.Seq, r.Problem.Kind, r.Problem.Reason)
		return 1
	}
	if r.Entries == 0 {
		fmt.Fprintln(out, "OK: the log is empty")
		return 0
	}
	anchor := "genesis"
	if r.First > 1 {
		anchor = "seq " + strconv.FormatUint(r.First-1, 10) + " (deleted by retention or before -from)"
		if !r.Anchored {
			anchor += ", not vouched for by a checkpoint"
		}
	}
	fmt.Fprintf(out, "OK: seq %d..%d, %d entries, chained from %s; %d checkpoints verified", r.First, r.Last, r.Entries, anchor, r.Checkpoints)
	if pub == nil {
		fmt.Fprint(out, " (no public key given: checkpoint signatures not checked)")
	}
	fmt.Fprintln(out)
	return 0
}

// runEventlogVerifyCheckpoints checks the signatures of exported
// checkpoints and then, when the configuration names a log that is there,
// the log against them.
func runEventlogVerifyCheckpoints(env *Env, args []string) int {
	var pubKey, cpFile string
	c := newEventlogCmd(env, "verify-checkpoints", "-checkpoints FILE [-public-key PEM] [flags]")
	c.keyFlags(&pubKey, &cpFile)
	if rc := parseConfig(env, c.fs, args); rc >= 0 {
		return rc
	}
	if _, ok := positional(env, c.fs); !ok {
		return 2
	}
	if cpFile == "" {
		return usageError(env, c.fs, "missing -checkpoints FILE")
	}
	pub, cps, err := c.keys(pubKey, cpFile)
	if err != nil {
		return c.fail(err)
	}
	if pub == nil {
		return usageError(env, c.fs, "missing -public-key PEM (and no -eventlog-key or DATA/eventlog-ed25519.pem.pub beside the log)")
	}
	for _, cp := range cps {
		if err := cp.Verify(pub); err != nil {
			return c.fail(err)
		}
	}
	fmt.Fprintf(env.Stdout, "%d checkpoints carry good signatures (key %s)\n", len(cps), eventlog.KeyID(pub))
	ctx := context.Background()
	s, rc := c.open(ctx, true)
	if rc >= 0 {
		return rc
	}
	if s == nil {
		return 0
	}
	defer s.Close()
	return c.verify(ctx, s, pub, cps)
}

func runEventlogExportCheckpoints(env *Env, args []string) int {
	c := newEventlogCmd(env, "export-checkpoints", "[flags]")
	if rc := parseConfig(env, c.fs, args); rc >= 0 {
		return rc
	}
	if _, ok := positional(env, c.fs); !ok {
		return 2
	}
	ctx := context.Background()
	s, rc := c.open(ctx, false)
	if rc >= 0 {
		return rc
	}
	defer s.Close()
	n, err := eventlog.ExportCheckpoints(ctx, s, c.from, env.Stdout)
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(env.Stderr, "%d checkpoints\n", n)
	return 0
}

func runEventlogExport(env *Env, args []string) int {
	var format string
	c := newEventlogCmd(env, "export", "[flags]")
	c.fs.StringVar(&format, "format", "jsonl", "jsonl or csv")
	if rc := parseConfig(env, c.fs, args); rc >= 0 {
		return rc
	}
	if _, ok := positional(env, c.fs); !ok {
		return 2
	}
	if format != "jsonl" && format != "csv" {
		return usageError(env, c.fs, "-format %q: jsonl or csv", format)
	}
	ctx := context.Background()
	s, rc := c.open(ctx, false)
	if rc >= 0 {
		return rc
	}
	defer s.Close()
	if err := exportEvents(ctx, env, s, c.from, format); err != nil {
		return c.fail(err)
	}
	return 0
}

// exportEvents writes the log from seq from on as JSON lines or CSV.
func exportEvents(ctx context.Context, env *Env, store hub.EventStore, from uint64, format string) error {
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
		return fmt.Errorf("-format %q: jsonl or csv", format)
	}
	return store.ScanEvents(ctx, from, write)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
