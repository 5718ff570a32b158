// Command posthub is the one binary of the hub: the server and the tools
// around it. Each subcommand lives in its own file of this package and is
// listed once in commands.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"go.mongodb.org/mongo-driver/v2/event"
)

// Env is what a subcommand may touch of the outside world, so tests run
// subcommands in-process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string

	// mongoMonitor, when set, observes every command `serve` sends to
	// MongoDB (the in-process command budget test counts them with it).
	mongoMonitor *event.CommandMonitor
}

// command is one subcommand: run gets the arguments after its name and
// returns the exit code (0 success, 1 failure, 2 usage).
type command struct {
	name, summary string
	run           func(env *Env, args []string) int
}

// commands lists the subcommands in the order help shows them. Adding one
// is one line here plus its file.
var commands = []command{
	{"serve", "run the hub (HTTP API) on the embedded default or MongoDB + S3", runServe},
	{"send", "submit MeMos (files, directories, lzma archives) to a hub", runSend},
	{"memo", "validate, create and convert MeMo messages", runMemo},
	{"admin", "bootstrap the first administrator, grant and revoke privileges (embedded hub)", runAdmin},
	{"fetch", "drain a receiver system's post into a directory, durably, then acknowledge", runFetch},
	{"eventlog", "verify and export the tamper-evident event log", runEventlog},
}

func main() {
	os.Exit(Main(os.Args[1:], &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}))
}

// Main runs the posthub command line with args (without the program name)
// and returns the exit code.
func Main(args []string, env *Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.Stderr, "posthub", "a Digital Post hub", commandList())
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(env, args[1:])
		}
	}
	fmt.Fprintf(env.Stderr, "posthub: unknown command %q\n", args[0])
	usage(env.Stderr, "posthub", "a Digital Post hub", commandList())
	return 2
}

func commandList() [][2]string {
	l := make([][2]string, len(commands))
	for i, c := range commands {
		l[i] = [2]string{c.name, c.summary}
	}
	return l
}

func usage(w io.Writer, name, what string, subs [][2]string) {
	fmt.Fprintf(w, "%s — %s\n\nUsage: %s COMMAND [flags] [args]\n\nCommands:\n", name, what, name)
	for _, s := range subs {
		fmt.Fprintf(w, "  %-10s %s\n", s[0], s[1])
	}
	fmt.Fprintf(w, "\nRun '%s COMMAND -h' for a command's flags.\n", name)
}

// newFlagSet returns a flag set that reports to env.Stderr and does not exit.
func newFlagSet(env *Env, name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "Usage: %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and maps errors to exit codes: -1 means go on.
func parseFlags(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	return -1
}
