package api

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/posthub/posthub/api/paging"
	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
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
		return 0, hub.InvalidField("request", name, name+".invalid", fmt.Sprintf("%s must be an integer in %d..%d", name, lo, hi), v)
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
		return 0, 0, hub.InvalidField("request", "page", "page.invalid", fmt.Sprintf("page must be an integer in 0..%d at size %d: "+
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
		return 0, hub.InvalidField("request", name, code, name+" is a seq number (0..9223372036854775807)", v)
	}
	return n, nil
}

// wholeDoc documents paging of a list the store returns whole (an
// organisation's systems, contact points, users…): such a list is small,
// so its default page is the largest, and a client that reads one page
// reads all of a list of up to 1000.
var wholeDoc = map[string]string{
	"page": "zero-based page; (page+1)×size ≤ 10000",
	"size": "page size (default and max 1000)",
}

// The list answers. Every list route answers one paging.Result (NgDP's
// PagingResult), built by one of these three; TestListRoutesAnswerPaging
// holds the route table to it.

// writeWhole answers a list read whole as the page the query's page and
// size (default MaxPageSize) select.
func writeWhole[T any](s *Server, c *gin.Context, all []T, err error) {
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	page, size, err := pageParams(c, MaxPageSize, MaxPageSize)
	if err != nil {
		writeError(c, s.log, err)
		return
	}
	c.JSON(http.StatusOK, paging.Whole(all, page, size))
}

// writeOffset answers page number of a list the service paged, with its
// total.
func writeOffset[T any](c *gin.Context, content []T, number, size int, total int64) {
	c.JSON(http.StatusOK, paging.Offset(content, number, size, total))
}

// writeCursor answers a page of a cursor-paged list; next is the after=
// value of the next page, "" on the last.
func writeCursor[T any](c *gin.Context, content []T, size int, next string) {
	c.JSON(http.StatusOK, paging.Cursor(content, size, next))
}
