package memo

import (
	"bytes"
	"strings"
	"time"
)

// ReservationICS returns an iCalendar (RFC 5545) file with one event for a
// Reservation action, for the reader's calendar. Times are UTC; text is
// escaped and lines folded at 75 octets as the RFC requires.
func ReservationICS(m *Message, a Action) []byte {
	r := a.Reservation
	if r == nil {
		return nil
	}
	var b bytes.Buffer
	line := func(name, value string) {
		foldLine(&b, name+":"+value)
	}
	line("BEGIN", "VCALENDAR")
	line("VERSION", "2.0")
	line("PRODID", "-//posthub//MeMo reservation//EN")
	line("METHOD", "PUBLISH")
	line("BEGIN", "VEVENT")
	line("UID", strings.ToLower(r.ReservationUUID)+"@posthub")
	stamp := time.Now().UTC()
	if m != nil && m.MessageBody != nil {
		if t, err := time.Parse(time.RFC3339, m.MessageBody.CreatedDateTime); err == nil {
			stamp = t.UTC()
		}
	}
	line("DTSTAMP", stamp.Format("20060102T150405Z"))
	if t, ok := icsTime(r.StartDateTime); ok {
		line("DTSTART", t)
	}
	if t, ok := icsTime(r.EndDateTime); ok {
		line("DTEND", t)
	}
	summary := r.Abstract
	if summary == "" {
		summary = a.Label
	}
	line("SUMMARY", icsText(summary))
	line("DESCRIPTION", icsText(r.Description))
	line("LOCATION", icsText(r.Location))
	if r.OrganizerMail != "" && !strings.ContainsAny(r.OrganizerMail, "\r\n:;\"") {
		org := "ORGANIZER"
		if r.OrganizerName != "" {
			org += `;CN="` + strings.Map(func(c rune) rune {
				if c == '"' || c < 0x20 {
					return -1
				}
				return c
			}, r.OrganizerName) + `"`
		}
		foldLine(&b, org+":mailto:"+r.OrganizerMail)
	}
	line("END", "VEVENT")
	line("END", "VCALENDAR")
	return b.Bytes()
}

func icsTime(s string) (string, bool) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return "", false
	}
	return t.UTC().Format("20060102T150405Z"), true
}

func icsText(s string) string {
	r := strings.NewReplacer(`\`, `\\`, ";", `\;`, ",", `\,`, "\r\n", `\n`, "\n", `\n`, "\r", `\n`)
	return r.Replace(s)
}

// foldLine writes one content line, folded so that no line exceeds 75
// octets and no UTF-8 sequence is split, ending in CRLF.
func foldLine(b *bytes.Buffer, s string) {
	n := 0
	for _, c := range s {
		w := len(string(c))
		if n+w > 75 {
			b.WriteString("\r\n ")
			n = 1
		}
		b.WriteRune(c)
		n += w
	}
	b.WriteString("\r\n")
}

// icsFilename is a download name for a reservation.
func icsFilename(label string) string {
	name := strings.Map(func(c rune) rune {
		if c < 0x20 || strings.ContainsRune(`/\:*?"<>|`, c) {
			return '_'
		}
		return c
	}, strings.TrimSpace(label))
	if name == "" {
		name = "appointment"
	}
	return name + ".ics"
}
