package main

import (
	"flag"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The README's configuration table is the one place an operator looks:
// every flag of `posthub serve` has a row there, and every row a flag.
func TestREADMEConfigurationTableListsEveryFlag(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "\n## Configuration")
	if start < 0 {
		t.Fatal("README has no \"## Configuration\" section")
	}
	section := text[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	documented := map[string]bool{}
	flagName := regexp.MustCompile("`-([a-z0-9-]+)`")
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `-") {
			continue
		}
		first := strings.SplitN(line[1:], "|", 2)[0]
		for _, m := range flagName.FindAllStringSubmatch(first, -1) {
			documented[m[1]] = true
		}
	}

	var cfg serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	if err := cfg.load(fs, nil, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	var missing, unknown []string
	fs.VisitAll(func(f *flag.Flag) {
		if !documented[f.Name] {
			missing = append(missing, "-"+f.Name)
		}
	})
	for name := range documented {
		if fs.Lookup(name) == nil {
			unknown = append(unknown, "-"+name)
		}
	}
	slices.Sort(missing)
	slices.Sort(unknown)
	if len(missing) > 0 {
		t.Errorf("flags of posthub serve without a row in the README's configuration table: %v", missing)
	}
	if len(unknown) > 0 {
		t.Errorf("README configuration rows for flags posthub serve does not have: %v", unknown)
	}
}
