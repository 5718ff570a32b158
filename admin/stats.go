package admin

import (
	"context"
	"encoding/csv"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/posthub/posthub/hub"
)

// Statistics dimensions a query may group by.
const (
	ByMessageType = "messageType"
	ByChannel     = "channel"
	BySystem      = "system"
	ByDirection   = "direction"
)

// StatsQuery selects one organisation's counters. Period is "day",
// "month", "year" or "total"; GroupBy lists further dimensions.
type StatsQuery struct {
	Org      string
	From, To string // YYYY-MM-DD inclusive; default the last 30 days
	Period   string
	GroupBy  []string
}

// StatsRow is one aggregated cell. Dimensions not grouped by are "".
type StatsRow struct {
	Period      string `json:"period"`
	MessageType string `json:"messageType,omitempty"`
	Channel     string `json:"channel,omitempty"`
	SystemID    string `json:"systemId,omitempty"`
	Direction   string `json:"direction,omitempty"`
	Count       int64  `json:"count"`
	Bytes       int64  `json:"bytes"`
}

// Stats is a statistics answer.
type Stats struct {
	Organisation string     `json:"organisation"`
	From         string     `json:"from"`
	To           string     `json:"to"`
	Period       string     `json:"period"`
	GroupBy      []string   `json:"groupBy"`
	Rows         []StatsRow `json:"rows"`
	TotalCount   int64      `json:"totalCount"`
	TotalBytes   int64      `json:"totalBytes"`
}

const day = "2006-01-02"

// Statistics aggregates org's counters (hub.Counters; no message is read).
// Invalid for bad dates, period or dimension, or a range over 3 years.
func (s *Service) Statistics(ctx context.Context, q StatsQuery) (Stats, error) {
	now := s.now()
	if q.To == "" {
		q.To = hub.DanishDay(now) // counters count Danish days
	}
	to, err := time.Parse(day, q.To)
	if err != nil {
		return Stats{}, invalid("statistics", "to", "statistics.date.invalid", "dates are YYYY-MM-DD", q.To)
	}
	if q.From == "" {
		q.From = to.AddDate(0, 0, -29).Format(day)
	}
	from, err := time.Parse(day, q.From)
	if err != nil {
		return Stats{}, invalid("statistics", "from", "statistics.date.invalid", "dates are YYYY-MM-DD", q.From)
	}
	if from.After(to) || to.Sub(from) > 3*366*24*time.Hour {
		return Stats{}, invalid("statistics", "from", "statistics.range.invalid", "from is on or before to, at most three years apart", q.From)
	}
	if q.Period == "" {
		q.Period = "day"
	}
	var cut int
	switch q.Period {
	case "day":
		cut = 10
	case "month":
		cut = 7
	case "year":
		cut = 4
	case "total":
		cut = 0
	default:
		return Stats{}, invalid("statistics", "period", "statistics.period.invalid", "period is day, month, year or total", q.Period)
	}
	var by [4]bool
	for _, g := range q.GroupBy {
		switch g {
		case ByMessageType:
			by[0] = true
		case ByChannel:
			by[1] = true
		case BySystem:
			by[2] = true
		case ByDirection:
			by[3] = true
		case "":
		default:
			return Stats{}, invalid("statistics", "groupBy", "statistics.groupby.invalid", "groupBy is messageType, channel, system and/or direction", g)
		}
	}
	cells, err := s.Store.ReadCounters(ctx, hub.CounterQuery{Org: q.Org, FromDay: q.From, ToDay: q.To})
	if err != nil {
		return Stats{}, err
	}
	type key struct{ p, mt, ch, sys, dir string }
	agg := make(map[key]*StatsRow)
	res := Stats{Organisation: q.Org, From: q.From, To: q.To, Period: q.Period, GroupBy: q.GroupBy}
	if res.GroupBy == nil {
		res.GroupBy = []string{}
	}
	for _, c := range cells {
		if c.Key.Org != q.Org {
			continue
		}
		var k key
		if cut > 0 && len(c.Key.Day) >= cut {
			k.p = c.Key.Day[:cut]
		} else {
			k.p = q.From + ".." + q.To
		}
		if by[0] {
			k.mt = c.Key.MessageType
		}
		if by[1] {
			k.ch = c.Key.Channel
		}
		if by[2] {
			k.sys = c.Key.SystemID
		}
		if by[3] {
			k.dir = c.Key.Direction
		}
		r := agg[k]
		if r == nil {
			r = &StatsRow{Period: k.p, MessageType: k.mt, Channel: k.ch, SystemID: k.sys, Direction: k.dir}
			agg[k] = r
		}
		r.Count += c.Count
		r.Bytes += c.Bytes
		res.TotalCount += c.Count
		res.TotalBytes += c.Bytes
	}
	res.Rows = make([]StatsRow, 0, len(agg))
	for _, r := range agg {
		res.Rows = append(res.Rows, *r)
	}
	sort.Slice(res.Rows, func(i, j int) bool {
		a, b := res.Rows[i], res.Rows[j]
		return strings.Join([]string{a.Period, a.MessageType, a.Channel, a.SystemID, a.Direction}, "\x00") <
			strings.Join([]string{b.Period, b.MessageType, b.Channel, b.SystemID, b.Direction}, "\x00")
	})
	return res, nil
}

// WriteCSV writes the rows as CSV with a header line.
func (st Stats) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"organisation", "period", "messageType", "channel", "systemId", "direction", "count", "bytes"})
	for _, r := range st.Rows {
		_ = cw.Write([]string{st.Organisation, r.Period, r.MessageType, r.Channel, r.SystemID, r.Direction,
			strconv.FormatInt(r.Count, 10), strconv.FormatInt(r.Bytes, 10)})
	}
	cw.Flush()
	return cw.Error()
}
