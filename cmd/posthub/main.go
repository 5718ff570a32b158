// Command posthub is the one binary of the hub: the server and the tools
// around it. Each subcommand lives in its own file of this package and is
// listed once in commands.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

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
	if len(args) > 0 && args[0] == "help" {
		// help COMMAND… is COMMAND… -h.
		args = append(args[1:len(args):len(args)], "-h")
	}
	return dispatch(env, "posthub", "a Digital Post hub", commands, args)
}

// dispatch runs the command of cmds that args[0] names with the rest of
// args. No name is a usage error (exit 2), -h asks for the list (exit 0),
// and an unknown name is a usage error naming it.
func dispatch(env *Env, name, what string, cmds []command, args []string) int {
	list := make([][2]string, len(cmds))
	for i, c := range cmds {
		list[i] = [2]string{c.name, c.summary}
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		usage(env.Stderr, name, what, list)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range cmds {
		if c.name == args[0] {
			return c.run(env, args[1:])
		}
	}
	fmt.Fprintf(env.Stderr, "%s: unknown command %q\n", name, args[0])
	usage(env.Stderr, name, what, list)
	return 2
}

func usage(w io.Writer, name, what string, subs [][2]string) {
	fmt.Fprintf(w, "%s — %s\n\nUsage: %s COMMAND [flags] [args]\n\nCommands:\n", name, what, name)
	width := 10
	for _, s := range subs {
		width = max(width, len(s[0]))
	}
	for _, s := range subs {
		fmt.Fprintf(w, "  %-*s  %s\n", width, s[0], s[1])
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

// usageError reports a bad command line naming the bad argument, prints
// fs's usage and returns exit code 2.
func usageError(env *Env, fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(env.Stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	fs.Usage()
	return 2
}

// positional checks fs's arguments after the flags against the names of
// the ones wanted (USER, PRIVILEGE…): one missing or one too many is a
// usage error naming it. ok is false when it has reported one (exit 2).
func positional(env *Env, fs *flag.FlagSet, names ...string) (args []string, ok bool) {
	args = fs.Args()
	switch {
	case len(args) < len(names):
		usageError(env, fs, "missing argument %s", names[len(args)])
		return nil, false
	case len(args) > len(names):
		extra := args[len(names)]
		if strings.HasPrefix(extra, "-") {
			usageError(env, fs, "unexpected argument %q (flags go before the arguments)", extra)
		} else {
			usageError(env, fs, "unexpected argument %q", extra)
		}
		return nil, false
	}
	return args, true
}
