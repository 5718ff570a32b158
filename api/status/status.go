// Package status is the hub's HTTP vocabulary: the one table between the
// closed set of error codes (hub.Code) and HTTP statuses. The API answers
// with it; the Go client (retrieval/client) and the portal read the same
// table, so a code means one status everywhere and back. It imports no
// HTTP framework, so any of them can use it.
package status

import "github.com/posthub/posthub/hub"

// table is the closed set of codes with their statuses.
var table = []struct {
	code   hub.Code
	status int
}{
	{hub.Invalid, 400},
	{hub.Unauthorized, 401},
	{hub.Forbidden, 403},
	{hub.NotFound, 404},
	{hub.Conflict, 409},
	{hub.TooLarge, 413},
	{hub.RateLimited, 429},
	{hub.Internal, 500},
	{hub.Unavailable, 503},
}

// Of is the HTTP status the API answers a code with: 200 for none, 500
// for a code outside the closed set.
func Of(code hub.Code) int {
	if code == "" {
		return 200
	}
	for _, e := range table {
		if e.code == code {
			return e.status
		}
	}
	return 500
}

// Code is the code a client reads from a status when the answer carries
// no error body (a proxy's page, say): the table backwards, gateway errors
// as Unavailable, other 4xx as Invalid and other 5xx as Internal.
func Code(status int) hub.Code {
	for _, e := range table {
		if e.status == status {
			return e.code
		}
	}
	switch {
	case status == 502 || status == 504:
		return hub.Unavailable
	case status >= 400 && status < 500:
		return hub.Invalid
	}
	return hub.Internal
}

// Codes is the closed set, in the table's order.
func Codes() []hub.Code {
	out := make([]hub.Code, len(table))
	for i, e := range table {
		out[i] = e.code
	}
	return out
}
