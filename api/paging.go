package api

import (
	"fmt"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/posthub/posthub/eventlog"
)

// Paging. Every list route reads its paging parameters here, and every
// parameter has a bound, so no value a client sends makes the hub compute
// out of range (page×size overflowing int once panicked with "slice bounds
// out of range") or read a list without end:
//
//   - size is 1..MaxPageSize (smaller maxima where a route says so);
//   - offset paging (page) reaches at most MaxPagingWindow entries deep:
//     (page+1)×size ≤ MaxPagingWindow. Deeper entries are reached with a
//     cursor (after=) where the route has one, or from the front of lists
//     that are consumed as they are read (receipts, memos to fetch);
//   - a cursor (after=) is a non-negative 64-bit integer: a seq.
//
// The limits are the event log's (eventlog.MaxPageSize, MaxWindow), the
// first routes that had them. An out-of-range value is answered 400 with a
// field error "<name>.invalid" naming the parameter and the allowed range.
const (
	MaxPageSize     = eventlog.MaxPageSize
	MaxPagingWindow = eventlog.MaxWindow
)

// pagingDoc documents offset paging on a route with the default size 100.
var pagingDoc = map[string]string{
	"page": "zero-based page; offset paging reaches 10,000 entries deep: (page+1)×size ≤ 10000",
	"size": "page size (default 100, max 1000)",
}

// intParam reads an optional integer query parameter in lo..hi.
func intParam(c *gin.Context, name string, def, lo, hi int) (int, error) {
	v := c.Query(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badRequest(name, name+".invalid", fmt.Sprintf("%s must be an integer in %d..%d", name, lo, hi), v)
	}
	return n, nil
}

// pageParams reads offset paging: size in 1..maxSize (default defSize),
// then page in 0..the last page within MaxPagingWindow at that size.
func pageParams(c *gin.Context, defSize, maxSize int) (page, size int, err error) {
	if size, err = intParam(c, "size", defSize, 1, maxSize); err != nil {
		return 0, 0, err
	}
	last := MaxPagingWindow/size - 1
	v := c.Query("page")
	if v == "" {
		return 0, size, nil
	}
	if page, err = strconv.Atoi(v); err != nil || page < 0 || page > last {
		return 0, 0, badRequest("page", "page.invalid", fmt.Sprintf("page must be an integer in 0..%d at size %d: "+
			"offset paging reaches %d entries deep", last, size, MaxPagingWindow), v)
	}
	return page, size, nil
}

// seqCursor reads an optional cursor: a seq in 0..2^63-1 (0 when absent).
func seqCursor(v, name, code string) (uint64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 63)
	if err != nil {
		return 0, badRequest(name, code, name+" is a seq number (0..9223372036854775807)", v)
	}
	return n, nil
}
