package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestEventlogRetentionIsAtLeastADay: a resubmission restores a letter's
// first events for an hour after its acceptance, and MongoDB's repair for
// its event repair window, so a shorter retention would let them bring
// back entries retention removed; serve refuses it before it starts.
func TestEventlogRetentionIsAtLeastADay(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-eventlog-retention", "1h"}, "-eventlog-retention 1h0m0s: 0 (keep for ever) or at least 24h"},
		{[]string{"-eventlog-retention", "-1s"}, "-eventlog-retention -1s: 0 (keep for ever) or at least 24h"},
		// A sender polls its receipts for COMPLETED, and a mailbox move
		// rerun after a crash reads it: not gone within a week.
		{[]string{"-receipt-retention", "24h"}, "-receipt-retention 24h0m0s: 0 (keep until read) or at least 168h"},
		{[]string{"-eventlog-retention", "48h", "-metadata", "mongo", "-mongo-uri", "mongodb://127.0.0.1:1", "-mongo-event-repair-window", "72h"},
			"-mongo-event-repair-window 72h0m0s: must be shorter than -eventlog-retention 48h0m0s"},
	} {
		env := &Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
		err := serve(context.Background(), env, append([]string{"-data", t.TempDir(), "-addr", "127.0.0.1:0"}, c.args...), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
