package status

import (
	"testing"

	"github.com/posthub/posthub/hub"
)

func TestEveryCodeRoundTrips(t *testing.T) {
	seen := map[int]hub.Code{}
	for _, c := range Codes() {
		st := Of(c)
		if prev, dup := seen[st]; dup {
			t.Fatalf("codes %s and %s share status %d", prev, c, st)
		}
		seen[st] = c
		if back := Code(st); back != c {
			t.Errorf("%s -> %d -> %s", c, st, back)
		}
	}
	if Of("") != 200 || Of("no_such_code") != 500 {
		t.Fatalf("none %d, unknown %d", Of(""), Of("no_such_code"))
	}
	for st, want := range map[int]hub.Code{502: hub.Unavailable, 504: hub.Unavailable, 418: hub.Invalid, 507: hub.Internal} {
		if got := Code(st); got != want {
			t.Errorf("Code(%d) = %s, want %s", st, got, want)
		}
	}
}
