package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The README's configuration section is the one place an operator looks:
// every setting (a flag of `posthub serve`, which admin and eventlog read
// too) has a row in its settings table, and every other flag of every
// subcommand a row in its table of subcommand flags, naming the
// subcommand; and every row a flag. The flags are read from each command's
// own -h, so a flag added anywhere without its row fails here.
func TestREADMEConfigurationTableListsEveryFlag(t *testing.T) {
	settings, own := readmeConfigTables(t)
	flags := commandFlags(t, nil)
	if len(flags["serve"]) == 0 || len(flags["admin grant"]) == 0 || len(flags["eventlog verify"]) == 0 || len(flags["memo new"]) == 0 {
		t.Fatalf("the walk over the commands' -h found too little: %v", flags)
	}
	var missing, unknown []string
	have := map[string]bool{} // "cmd -flag" and "-setting"
	for cmd, fs := range flags {
		for _, f := range fs {
			if settingNames()[f] || f == "config" {
				have["-"+f] = true
				if !settings[f] {
					missing = append(missing, cmd+" -"+f+" (settings table)")
				}
				continue
			}
			have[cmd+" -"+f] = true
			if !own[cmd+" -"+f] {
				missing = append(missing, cmd+" -"+f)
			}
		}
	}
	for f := range settings {
		if !have["-"+f] {
			unknown = append(unknown, "-"+f)
		}
	}
	for cf := range own {
		if !have[cf] {
			unknown = append(unknown, cf)
		}
	}
	slices.Sort(missing)
	slices.Sort(unknown)
	if len(missing) > 0 {
		t.Errorf("flags without a row in the README's configuration section: %v", missing)
	}
	if len(unknown) > 0 {
		t.Errorf("README configuration rows for flags no command has: %v", unknown)
	}
}

// readmeConfigTables reads the configuration section's two tables: the
// settings (rows "| `-flag` |") and the subcommands' own flags (rows
// "| `cmd sub`, … | `-flag` |"), the latter as "cmd sub -flag".
func readmeConfigTables(t *testing.T) (settings, own map[string]bool) {
	t.Helper()
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
	settings, own = map[string]bool{}, map[string]bool{}
	flagName := regexp.MustCompile("`-([a-z0-9-]+)`")
	cmdName := regexp.MustCompile("`([a-z][a-z0-9 -]*)`")
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		switch {
		case strings.HasPrefix(line, "| `-"):
			for _, m := range flagName.FindAllStringSubmatch(cells[1], -1) {
				settings[m[1]] = true
			}
		case strings.HasPrefix(line, "| `") && len(cells) > 3:
			for _, c := range cmdName.FindAllStringSubmatch(cells[1], -1) {
				for _, f := range flagName.FindAllStringSubmatch(cells[2], -1) {
					own[c[1]+" -"+f[1]] = true
				}
			}
		}
	}
	return settings, own
}

var (
	helpFlagRe = regexp.MustCompile(`(?m)^  -([a-zA-Z0-9-]+)`)
	helpCmdRe  = regexp.MustCompile(`(?m)^  ([a-z][a-z0-9-]*)  +\S`)
)

// commandFlags runs `posthub PATH… -h` for every command and subcommand
// and returns the flags each prints, keyed by its path ("admin grant").
func commandFlags(t *testing.T, path []string) map[string][]string {
	t.Helper()
	code, _, help := run(t, append(slices.Clone(path), "-h")...)
	if code != 0 {
		t.Fatalf("posthub %s -h: exit %d: %s", strings.Join(path, " "), code, help)
	}
	out := map[string][]string{}
	if i := strings.Index(help, "\nCommands:\n"); i >= 0 {
		list := help[i:]
		if j := strings.Index(list[1:], "\n\n"); j >= 0 {
			list = list[:j+1]
		}
		for _, m := range helpCmdRe.FindAllStringSubmatch(list, -1) {
			for k, v := range commandFlags(t, append(slices.Clone(path), m[1])) {
				out[k] = v
			}
		}
		return out
	}
	var fs []string
	for _, m := range helpFlagRe.FindAllStringSubmatch(help, -1) {
		fs = append(fs, m[1])
	}
	out[strings.Join(path, " ")] = fs
	return out
}
