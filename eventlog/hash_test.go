package eventlog_test

import (
	"testing"
	"time"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
)

// The encoding is a published format (outside verifiers reimplement it):
// this pins it.
func TestHashEncodingV1IsStable(t *testing.T) {
	ev := hub.Event{Seq: 42, PrevHash: eventlog.Genesis, ID: "e-1", Time: time.Date(2026, 3, 2, 9, 0, 0, 123456789, time.FixedZone("CET", 3600)),
		Tag: "MEMO_SEND_RECEIVED", Actor: "sys-a", Orgs: []string{"11111111", "22222222"}, SystemID: "sys-a",
		MessageUUID: "m-1", Party: "0101011234", Detail: map[string]string{"size": "1000", "mode": "AUTOMATIC"}}
	const want = "c0c2a085022d28659263774e501d9d2164b7a26d7151ad3f9cc8b25c54f4daae"
	if got := eventlog.Hash(ev); got != want {
		t.Fatalf("hash %s, want %s", got, want)
	}
	// The time is hashed in UTC at millisecond precision.
	ev2 := ev
	ev2.Time = time.Date(2026, 3, 2, 8, 0, 0, 123999999, time.UTC)
	if eventlog.Hash(ev2) != want {
		t.Fatal("the same millisecond in another zone hashes differently")
	}
}

func TestEncodingIsInjective(t *testing.T) {
	base := hub.Event{Seq: 1, ID: "x", Tag: "T"}
	pairs := []struct {
		name string
		a, b hub.Event
	}{
		{"orgs split differently", withOrgs(base, "ab"), withOrgs(base, "a", "b")},
		{"actor vs system", hub.Event{Seq: 1, Actor: "s"}, hub.Event{Seq: 1, SystemID: "s"}},
		{"detail key vs value", withDetail(base, "ab", ""), withDetail(base, "a", "b")},
		{"seq", hub.Event{Seq: 1}, hub.Event{Seq: 2}},
	}
	for _, p := range pairs {
		if eventlog.Hash(p.a) == eventlog.Hash(p.b) {
			t.Errorf("%s: same hash", p.name)
		}
	}
	if eventlog.Hash(withOrgs(base)) != eventlog.Hash(hub.Event{Seq: 1, ID: "x", Tag: "T", Orgs: []string{}}) {
		t.Error("nil and empty Orgs hash differently (backends do not keep the difference)")
	}
}

func withOrgs(ev hub.Event, orgs ...string) hub.Event { ev.Orgs = orgs; return ev }
func withDetail(ev hub.Event, k, v string) hub.Event {
	ev.Detail = map[string]string{k: v}
	return ev
}
