package main

import (
	"bytes"
	"strings"
	"testing"
)

// run executes the command line in-process.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = Main(args, &Env{Stdin: strings.NewReader(""), Stdout: &o, Stderr: &e})
	return code, o.String(), e.String()
}

func TestMainUsage(t *testing.T) {
	if code, _, errOut := run(t); code != 2 || !strings.Contains(errOut, "memo") {
		t.Fatalf("no args: %d %q", code, errOut)
	}
	if code, _, _ := run(t, "--help"); code != 0 {
		t.Fatalf("--help: %d", code)
	}
	if code, _, errOut := run(t, "nonsense"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("unknown: %d %q", code, errOut)
	}
}
