package hub

import (
	"sync"
	"time"
	_ "time/tzdata" // Danish time without relying on the host's zoneinfo
)

// Danish is Danish time (Europe/Copenhagen), in which MeMo dates are meant
// and statistics days are counted.
var Danish = sync.OnceValue(func() *time.Location {
	loc, err := time.LoadLocation("Europe/Copenhagen")
	if err != nil {
		return time.FixedZone("CET", 3600)
	}
	return loc
})

// DanishDay is the calendar day (YYYY-MM-DD) of t in Danish time: the day
// a statistics counter counts t on.
func DanishDay(t time.Time) string { return t.In(Danish()).Format(time.DateOnly) }
