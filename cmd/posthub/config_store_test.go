package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
)

// TestAdminAndEventlogReachServesStore: `posthub admin` and `posthub
// eventlog`, given the configuration `serve` was given — a MongoDB
// (FerretDB) hub, once by POSTHUB_* variables and once by a -config file —
// work on serve's store while it runs: a user bootstrapped by admin logs in
// at the hub, and eventlog exports both the hub's entries and admin's, and
// verifies the chain. Without that configuration admin reaches another
// store (the embedded default) and finds no such user.
func TestAdminAndEventlogReachServesStore(t *testing.T) {
	uri := testservers.FerretDB(t)
	for _, way := range []string{"environment", "config file"} {
		t.Run(way, func(t *testing.T) {
			data := t.TempDir()
			settings := map[string]string{"metadata": "mongo", "mongo-uri": uri, "mongo-db": testservers.DatabaseName(t), "data": data}
			vars := map[string]string{}
			var args []string // the configuration as each subcommand is given it
			switch way {
			case "environment":
				for k, v := range settings {
					vars[envName(k)] = v
				}
			case "config file":
				file := filepath.Join(t.TempDir(), "posthub.json")
				b, _ := json.Marshal(settings)
				if err := os.WriteFile(file, b, 0o600); err != nil {
					t.Fatal(err)
				}
				args = []string{"-config", file}
			}
			env := func() (*Env, *bytes.Buffer, *bytes.Buffer) {
				var o, e bytes.Buffer
				return &Env{Stdin: strings.NewReader(""), Stdout: &o, Stderr: &e, Getenv: func(k string) string { return vars[k] }}, &o, &e
			}
			sub := func(cmd []string, rest ...string) []string {
				return append(append(append([]string{}, cmd...), args...), rest...)
			}
			// cli runs `posthub CMD… [-config FILE] REST…` with the variables.
			cli := func(cmd []string, rest ...string) (int, string, string) {
				e, o, errOut := env()
				code := Main(sub(cmd, rest...), e)
				return code, o.String(), errOut.String()
			}

			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			ready := make(chan string, 1)
			serveEnv, _, _ := env()
			serveEnv.Stdout, serveEnv.Stderr = io.Discard, io.Discard
			go func() {
				done <- serve(ctx, serveEnv, sub(nil, "-addr", "127.0.0.1:0", "-operator-token", testOperatorToken, "-log-level", "error"),
					func(a string) { ready <- a })
			}()
			var base string
			select {
			case a := <-ready:
				base = "http://" + a
			case err := <-done:
				t.Fatalf("serve: %v", err)
			case <-time.After(60 * time.Second):
				t.Fatal("serve did not start")
			}
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve: %v", err)
				}
			}()
			h := &testHub{t: t, base: base, operator: testOperatorToken}
			h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/", map[string]any{"cvr": orgA, "name": "Kommune A", "kind": "AUTHORITY", "setup": "CONTACTABLE"}), 201)

			if code, _, errOut := cli([]string{"admin", "bootstrap"}, "-password", "olga-password-1", "olga"); code != 0 {
				t.Fatalf("admin bootstrap: exit %d: %s", code, errOut)
			}
			if got := postLogin(t, &http.Client{}, base, "olga", "olga-password-1"); got.status != 200 {
				t.Fatalf("the user admin bootstrapped logs in at serve: %d, want 200", got.status)
			}

			// The hub's sealer chains admin's entries too (it looks for
			// other processes' appends within its idle interval).
			var export string
			deadline := time.Now().Add(60 * time.Second)
			for {
				code, out, errOut := cli([]string{"eventlog", "export"})
				if code != 0 {
					t.Fatalf("eventlog export: exit %d: %s", code, errOut)
				}
				export = out
				if exportHas(t, export, "IDENTITY_CREATED", adminActor) && exportHas(t, export, "ORGANISATION_CREATED", "") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("eventlog export lacks admin's IDENTITY_CREATED or the hub's ORGANISATION_CREATED:\n%s", export)
				}
				time.Sleep(200 * time.Millisecond)
			}
			if code, out, errOut := cli([]string{"eventlog", "verify"}); code != 0 || !strings.HasPrefix(out, "OK: seq 1..") {
				t.Fatalf("eventlog verify: exit %d: %q %q", code, out, errOut)
			}

			// The same command without the configuration opens the
			// embedded default, where olga does not exist.
			other := t.TempDir()
			if code, _, errOut := run(t, "admin", "passwd", "-data", other, "-password", "olga-password-2", "olga"); code != 1 || !strings.Contains(errOut, "not_found") {
				t.Fatalf("admin passwd on another store: exit %d: %s", code, errOut)
			}
		})
	}
}

// exportHas reports whether a JSON-lines export holds an entry with tag
// (and actor, when given).
func exportHas(t *testing.T, export, tag, actor string) bool {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(export), "\n") {
		if line == "" {
			continue
		}
		var ev hub.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		if ev.Tag == tag && (actor == "" || ev.Actor == actor) {
			return true
		}
	}
	return false
}

// TestAdminAndEventlogUsageErrors: a bad command line is exit 2 with a
// message naming the bad argument, and opens (so creates) no store.
func TestAdminAndEventlogUsageErrors(t *testing.T) {
	data := t.TempDir()
	config := filepath.Join(t.TempDir(), "posthub.json")
	if err := os.WriteFile(config, []byte(`{"addr": ":1", "bogus": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"a missing argument is named", []string{"admin", "grant", "-data", data, "alice"}, "missing argument PRIVILEGE"},
		{"an extra argument is named", []string{"admin", "passwd", "-data", data, "alice", "bob"}, `unexpected argument "bob"`},
		{"a flag after the arguments is named", []string{"admin", "grant", "alice", "AUDITOR", "*", "-data", data}, `unexpected argument "-data"`},
		{"an unknown privilege is named", []string{"admin", "grant", "-data", data, "alice", "FOO", "*"}, `PRIVILEGE "FOO"`},
		{"a global privilege in an organisation", []string{"admin", "revoke", "-data", data, "alice", "AUDITOR", "11111111"}, `ORG|* "11111111"`},
		{"a user id out of shape", []string{"admin", "bootstrap", "-data", data, "Bad User"}, `USER "Bad User"`},
		{"an unknown subcommand is named", []string{"admin", "nope"}, `unknown command "nope"`},
		{"an unknown backend is named", []string{"admin", "passwd", "-data", data, "-metadata", "mango", "alice"}, `-metadata "mango"`},
		{"mongo without its URI", []string{"eventlog", "export", "-metadata", "mongo"}, "-mongo-uri"},
		{"an unknown export format is named", []string{"eventlog", "export", "-data", data, "-format", "xml"}, `-format "xml"`},
		{"no log where -data points", []string{"eventlog", "verify", "-data", data}, "-data " + data},
		{"checkpoints to verify are named", []string{"eventlog", "verify-checkpoints", "-data", data}, "missing -checkpoints"},
		{"an unknown setting in the config file is named", []string{"eventlog", "verify", "-config", config}, `unknown setting "bogus"`},
		{"an undefined flag", []string{"eventlog", "export", "-bogus"}, "-bogus"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := run(t, c.args...)
			if code != 2 || !strings.Contains(errOut, c.want) {
				t.Fatalf("exit %d, stderr %q; want 2 naming %s", code, errOut, c.want)
			}
		})
	}
	if ls, _ := os.ReadDir(data); len(ls) != 0 {
		t.Fatalf("a refused command line left %v in the data directory", ls)
	}
}

// TestLoadConfigPrecedence: for a subcommand's settings the command line
// wins over POSTHUB_<FLAG>, which wins over the -config file; a file may
// hold settings the subcommand lacks (serve's), but its own arguments come
// from the command line only.
func TestLoadConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "posthub.json")
	if err := os.WriteFile(file, []byte(`{"data": "/file", "mongo-db": "filedb", "mongo-uri": "mongodb://file", "addr": ":1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"POSTHUB_MONGO_DB": "envdb", "POSTHUB_METADATA": "mongo", "POSTHUB_FROM": "7", "POSTHUB_CONFIG": file}
	var cfg storeConfig
	fs := flag.NewFlagSet("posthub eventlog export", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.flags(fs)
	from := fs.Uint64("from", 0, "")
	if err := loadConfig(fs, []string{"-data", "/flag"}, func(k string) string { return vars[k] }); err != nil {
		t.Fatal(err)
	}
	want := storeConfig{Data: "/flag", Metadata: "mongo", Blobs: "fs", MongoURI: "mongodb://file", MongoDB: "envdb", S3Bucket: "posthub",
		MongoPendingGrace: 10 * time.Minute, MongoEventRepairWindow: 6 * time.Hour, MongoEventRepairMax: 100000}
	if cfg != want || *from != 0 {
		t.Fatalf("loaded %+v, -from %d; want %+v and -from 0", cfg, *from, want)
	}
}
