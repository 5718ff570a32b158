package hub

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestANameAtTheBoundFitsTheEventLog: a name of MaxNameLen of the widest
// characters is one event detail value, so a stored name can always be
// recorded.
func TestANameAtTheBoundFitsTheEventLog(t *testing.T) {
	name := strings.Repeat("\U0001D538", MaxNameLen) // 4 bytes each
	if len(name) != MaxNameLen*utf8.UTFMax {
		t.Fatalf("test name is %d bytes", len(name))
	}
	if err := CheckText("system", "name", "system.name", name, MaxNameLen, true); err != nil {
		t.Fatal(err)
	}
	if err := CheckEvent(Event{Tag: "SYSTEM_CREATED", Detail: map[string]string{"name": name}}); err != nil {
		t.Fatalf("the event log refuses a name the registry accepts: %v", err)
	}
}

func TestCheckTextNamesTheRule(t *testing.T) {
	cases := []struct {
		name, value, code string
		required          bool
	}{
		{"a required value is present", " ", "x.name.missing", true},
		{"an optional value may be empty", "", "", false},
		{"no control characters", "a\nb", "x.name.invalid", true},
		{"valid UTF-8 only", "a\xffb", "x.name.invalid", true},
		{"at most the bound in characters", strings.Repeat("æ", 11), "x.name.too.long", true},
		{"the bound itself is fine", strings.Repeat("æ", 10), "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckText("x", "name", "x.name", c.value, 10, c.required)
			got := ""
			if he, ok := err.(*Error); ok && len(he.Fields) == 1 {
				got = he.Fields[0].Code
				if !utf8.ValidString(he.Fields[0].RejectedValue) || len(he.Fields[0].RejectedValue) > 64 {
					t.Fatalf("rejected value %q", he.Fields[0].RejectedValue)
				}
			} else if err != nil {
				t.Fatalf("err %v", err)
			}
			if got != c.code {
				t.Fatalf("code %q, want %q", got, c.code)
			}
		})
	}
}

func TestCheckEventBoundsEveryField(t *testing.T) {
	long := strings.Repeat("x", MaxEventDetailValue+1)
	for name, ev := range map[string]Event{
		"no tag":         {},
		"a long actor":   {Tag: "T", Actor: long},
		"a long system":  {Tag: "T", SystemID: long},
		"a long party":   {Tag: "T", Party: long},
		"a long detail":  {Tag: "T", Detail: map[string]string{"k": long}},
		"too many orgs":  {Tag: "T", Orgs: make([]string, MaxEventOrgs+1)},
		"a long org":     {Tag: "T", Orgs: []string{long}},
		"a long message": {Tag: "T", MessageUUID: long},
	} {
		if ErrorCode(CheckEvent(ev)) != Invalid {
			t.Errorf("%s: accepted", name)
		}
	}
}
