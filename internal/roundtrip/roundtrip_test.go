package roundtrip

import (
	"testing"
	"time"
)

// TestCountIsTheCriticalPath: side-by-side commands are one step of the
// critical path, a chain through the longest branch counts every command
// of it, and writes on the path are counted along the chain that has most.
func TestCountIsTheCriticalPath(t *testing.T) {
	t0 := time.Unix(0, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	cmd := func(name string, write bool, from, to int) command {
		return command{name: name, write: write, start: at(from), end: at(to)}
	}
	for _, tc := range []struct {
		name                 string
		cs                   []command
		serial, serialWrites int
	}{
		{"one after another", []command{cmd("a", false, 0, 1), cmd("b", true, 1, 2), cmd("c", true, 2, 3)}, 3, 2},
		{"side by side", []command{cmd("a", true, 0, 5), cmd("b", true, 0, 5), cmd("c", false, 0, 1)}, 1, 1},
		// A and (B then C): B and C are two steps even though A is still
		// running when C starts.
		{"unequal branches", []command{cmd("a", true, 0, 10), cmd("b", false, 0, 3), cmd("c", true, 4, 6)}, 2, 1},
		{"group then group", []command{cmd("a", true, 0, 2), cmd("b", false, 0, 2), cmd("c", true, 3, 5), cmd("d", true, 3, 4)}, 2, 2},
		{"still running", []command{{name: "a", start: at(0)}, cmd("b", false, 1, 2)}, 1, 0},
	} {
		got := count(tc.cs)
		if got.Serial != tc.serial || got.SerialWrites != tc.serialWrites || got.Total != len(tc.cs) {
			t.Errorf("%s: %s, want %d serial (%d writes), %d total", tc.name, got, tc.serial, tc.serialWrites, len(tc.cs))
		}
	}
}
