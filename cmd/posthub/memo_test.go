package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthub/posthub/memo"
)

const samples = "../../memo/testdata/samples/"

func TestMemoValidate(t *testing.T) {
	code, out, _ := run(t, "memo", "validate", "--now", "2025-09-01", samples+"v1.2/MeMo_Minimum_Example.xml", samples+"v1.2/MeMo_Full_Example.xml")
	if code != 0 || strings.Count(out, "valid MeMo 1.2") != 2 {
		t.Fatalf("valid samples: %d %q", code, out)
	}
	code, out, _ = run(t, "memo", "validate", "--now", "2025-09-01", samples+"v1.2/MeMo_Minimum_Example.xml", samples+"v1.2/MeMo_NemSMS.xml")
	want := samples + "v1.2/MeMo_NemSMS.xml:13: " + memo.RuleCPRFormat + " /Message/MessageHeader/Recipient/recipientID: "
	if code != 1 || !strings.Contains(out, want) {
		t.Fatalf("NemSMS sample: %d %q, want a line starting %q", code, out, want)
	}
	code, out, _ = run(t, "memo", "validate", samples+"legacy-v1.0/MeMo_Scenarie1_Eksempel_v1.0.xml")
	if code != 1 || !strings.Contains(out, "memo.version.not.supported") {
		t.Fatalf("legacy: %d %q", code, out)
	}
	code, out, _ = run(t, "memo", "validate", filepath.Join(t.TempDir(), "missing.xml"))
	if code != 1 || !strings.Contains(out, "missing.xml:0: ") {
		t.Fatalf("missing file: %d %q", code, out)
	}
}

func TestMemoValidateJSON(t *testing.T) {
	code, out, _ := run(t, "memo", "validate", "--json", "--now", "2025-09-01T10:00:00+02:00",
		samples+"v1.1/MeMo_Minimum_Example.xml", samples+"v1.1/MeMo_Full_Example.xml")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	var res []fileResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(res) != 2 || !res[0].Valid || res[0].MemoVersion != "1.1" || res[1].Valid || res[1].Code != "invalid" ||
		len(res[1].Errors) != 4 || res[1].Errors[0].Code != memo.RuleDeliveryDateEarly || res[1].Errors[0].Line == 0 {
		t.Fatalf("%+v", res)
	}
}

func TestMemoValidateUsage(t *testing.T) {
	for _, args := range [][]string{
		{"memo", "validate"},
		{"memo", "validate", "--now", "yesterday", "x.xml"},
		{"memo", "validate", "--bogus", "x.xml"},
		{"memo"},
		{"memo", "frobnicate"},
		{"memo", "convert", "x.xml"},
		{"memo", "convert", "--to", "1.0", "x.xml"},
		{"memo", "new", "--type", "LETTER"},
		{"memo", "new", "--version", "2"},
		{"memo", "new", "--type", "NEMSMS", "--attachment-size", "10"},
	} {
		if code, _, _ := run(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestMemoNewValidates(t *testing.T) {
	dir := t.TempDir()
	cases := map[string][]string{
		"default":        {},
		"1.1 to CVR":     {"--version", "1.1", "--to", "87654321", "--post-type", "VIRKSOMHEDSPOST"},
		"nemsms":         {"--type", "nemsms"},
		"attachment":     {"--attachment-size", "300000", "--contact-point", "241d39f6-998e-4929-b198-ccacbbf4b330"},
		"delayed 1.1":    {"--version", "1.1", "--do-not-deliver-until", "2025-09-10"},
		"nemsms 1.1 cvr": {"--version", "1.1", "--type", "NEMSMS", "--to", "87654321"},
	}
	for name, extra := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".xml")
			args := append([]string{"memo", "new", "-o", path}, extra...)
			if code, _, errOut := run(t, args...); code != 0 {
				t.Fatalf("new: %d %s", code, errOut)
			}
			code, out, _ := run(t, "memo", "validate", "--now", "2025-09-01", path)
			if code != 0 {
				t.Fatalf("generated sample invalid: %s", out)
			}
		})
	}
	code, out, _ := run(t, "memo", "new", "--from", "87654321")
	if code != 0 || !strings.Contains(out, "<memo:senderID>87654321</memo:senderID>") {
		t.Fatalf("stdout: %d %q", code, out)
	}
}

func TestMemoConvert(t *testing.T) {
	dir := t.TempDir()
	out11 := filepath.Join(dir, "full11.xml")
	code, _, errOut := run(t, "memo", "convert", "--to", "1.1", "-o", out11, samples+"v1.2/MeMo_Full_Example.xml")
	if code != 0 || !strings.Contains(errOut, "lost /Message/MessageHeader/Sender/Representative") ||
		!strings.Contains(errOut, "lost /Message/MessageHeader/ForwardData/originalRepresentative") {
		t.Fatalf("convert: %d %q", code, errOut)
	}
	if code, out, _ := run(t, "memo", "validate", "--now", "2025-09-01", out11); code != 0 {
		t.Fatalf("converted file: %s", out)
	}
	out12 := filepath.Join(dir, "min12.xml")
	code, _, errOut = run(t, "memo", "convert", "--to", "1.2", "-o", out12, samples+"v1.1/MeMo_Minimum_Example.xml")
	if code != 0 || errOut != "" {
		t.Fatalf("convert: %d %q", code, errOut)
	}
	if code, out, _ := run(t, "memo", "validate", "--now", "2025-09-01", out12); code != 0 {
		t.Fatalf("converted file: %s", out)
	}
	if code, _, _ := run(t, "memo", "convert", "--to", "1.2", samples+"legacy-v1.0/MeMo_Scenarie1_Eksempel_v1.0.xml"); code != 1 {
		t.Fatalf("legacy converted: %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "nothing")); err == nil {
		t.Fatal("unexpected file")
	}
}

func TestMemoRules(t *testing.T) {
	code, out, _ := run(t, "memo", "rules", "--json")
	var rules []memo.Rule
	if code != 0 || json.Unmarshal([]byte(out), &rules) != nil || len(rules) != len(memo.Rules) {
		t.Fatalf("%d %q", code, out)
	}
}
