package memo

import "strings"

// Lines writes a as postal lines under the name: c/o, the street with
// floor and door, extra (lines a foreign format has beside the street, ""
// skipped), the post code with the city, and a country other than Denmark.
// Nil when nothing but the name would be written.
func (a *Address) Lines(name string, extra ...string) []string {
	var lines []string
	if name != "" {
		lines = append(lines, name)
	}
	if a.Co != "" {
		lines = append(lines, "c/o "+a.Co)
	}
	street := strings.TrimSpace(strings.Join(nonEmpty(a.AddressLabel, a.HouseNumber), " "))
	if fd := strings.Join(nonEmpty(a.Floor, a.Door), ". "); fd != "" {
		street += ", " + fd
	}
	lines = append(lines, nonEmpty(append([]string{street}, extra...)...)...)
	if zc := strings.TrimSpace(a.ZipCode + " " + a.City); zc != "" {
		lines = append(lines, zc)
	}
	if a.Country != "" && !strings.EqualFold(a.Country, "DK") && !strings.EqualFold(a.Country, "Danmark") {
		lines = append(lines, a.Country)
	}
	if len(lines) <= 1 {
		return nil
	}
	return lines
}

// UnstructuredLines writes free address text (one line per line of s) as
// postal lines under the name.
func UnstructuredLines(name, s string) []string {
	var lines []string
	if name != "" {
		lines = append(lines, name)
	}
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
