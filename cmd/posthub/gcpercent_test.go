package main

import (
	"flag"
	"runtime/debug"
	"strings"
	"testing"
)

// TestGCPercent: -gc-percent sets Go's collection target; GOGC from the
// environment wins over the default but not over the flag; a target out
// of range is refused before anything starts.
func TestGCPercent(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	current := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }

	for _, tc := range []struct {
		name string
		args []string
		gogc string
		want int
	}{
		{"default", nil, "", 400},
		{"flag", []string{"-gc-percent", "250"}, "", 250},
		{"GOGC wins over the default", nil, "150", 100},
		{"the flag wins over GOGC", []string{"-gc-percent", "300"}, "150", 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			var cfg serveConfig
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			getenv := func(k string) string {
				if k == "GOGC" {
					return tc.gogc
				}
				return ""
			}
			if err := cfg.load(fs, tc.args, getenv); err != nil {
				t.Fatal(err)
			}
			setGCPercent(fs, cfg.GCPercent, getenv)
			if got := current(); got != tc.want {
				t.Fatalf("GC percent %d, want %d", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"0", "-1", "24", "10001"} {
		var cfg serveConfig
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		err := cfg.load(fs, []string{"-gc-percent", bad}, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), "-gc-percent") {
			t.Errorf("-gc-percent %s: %v, want a refusal naming the flag", bad, err)
		}
	}
}
