// Package client is a Go client for posthub's receiver-system API (list,
// fetch, long poll, acknowledge, business receipts) and Drain, a complete
// receiver system that writes each message to a directory before it
// acknowledges it.
//
// Errors from the hub are *hub.Error values with the code the hub answered
// (not_found, conflict, …), so callers test them with hub.Is.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/posthub/posthub/api/paging"
	"github.com/posthub/posthub/api/status"
	"github.com/posthub/posthub/hub"
)

// Client talks to one hub as one receiver system.
type Client struct {
	base  string
	token string
	http  *http.Client
	// Retry, when its Attempts is above 1, repeats requests that failed on
	// the way (see Retry). The zero value tries once.
	Retry Retry
}

// Retry is how often and how patiently a Client repeats a request that
// failed on the way: the connection was refused or broke, or the hub (or
// a proxy before it) answered 502, 503 or 504. Only what is safe to repeat
// is repeated: List and Ack (an acknowledgement is idempotent) on any such
// failure; Next, Fetch and Receipt, which lease a message or record a
// receipt, only when the connection was refused, so nothing reached the
// hub. An answer the hub gave (4xx, 500) is never repeated.
type Retry struct {
	// Attempts is the number of tries in all (0 or 1: no retry).
	Attempts int
	// Backoff is the wait before the second try (default 100 ms), doubled
	// before each further one up to MaxBackoff (default 5 s).
	Backoff    time.Duration
	MaxBackoff time.Duration
	// Notify, when set, is told of each failure before the wait that
	// precedes its repeat (to log that the hub is being waited for).
	Notify func(err error, wait time.Duration)
}

// New returns a client for the hub at baseURL (e.g. "https://hub:8080")
// authenticating with the system's API token. hc may be nil.
func New(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: strings.TrimRight(baseURL, "/") + "/apis/v1", token: token, http: hc}
}

// Memo is a fetched, leased message. Read Body, then Close it.
type Memo struct {
	UUID         string
	Lease        string // the lease token
	LeaseExpires time.Time
	Attempt      int
	Version      string
	Size         int64 // -1 when unknown
	Body         io.ReadCloser
}

// Close closes the body.
func (m *Memo) Close() error { return m.Body.Close() }

func (c *Client) request(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Basic "+c.token)
	return req, nil
}

// do sends req, repeating it as c.Retry allows; idempotent says whether
// the request may be repeated after it may have reached the hub.
func (c *Client) do(req *http.Request, idempotent bool) (*http.Response, error) {
	wait := c.Retry.Backoff
	if wait <= 0 {
		wait = 100 * time.Millisecond
	}
	maxWait := c.Retry.MaxBackoff
	if maxWait <= 0 {
		maxWait = 5 * time.Second
	}
	for try := 1; ; try++ {
		resp, status, err := c.try(req)
		if try >= c.Retry.Attempts || req.Context().Err() != nil || !repeatable(err, status, idempotent) {
			return resp, err
		}
		if c.Retry.Notify != nil {
			c.Retry.Notify(err, wait)
		}
		if !sleep(req.Context(), wait) {
			return resp, err
		}
		wait = min(2*wait, maxWait)
		if req.GetBody != nil {
			body, berr := req.GetBody()
			if berr != nil {
				return resp, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// repeatable reports whether a request that failed with err (status: the
// hub's answer, 0 when none came) may be sent again: after a refused
// connection always; after a broken connection or a 502, 503 or 504 only
// when it is idempotent.
func repeatable(err error, status int, idempotent bool) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, syscall.ECONNREFUSED):
		return true
	case !idempotent:
		return false
	case status == 0:
		return true
	}
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

// try sends req once; status is the answer's (0 when none came).
func (c *Client) try(req *http.Request) (*http.Response, int, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		if req.Context().Err() != nil {
			return nil, 0, hub.Wrap(hub.Unavailable, req.Context().Err(), "request cancelled")
		}
		return nil, 0, hub.Wrap(hub.Unavailable, err, "%s %s", req.Method, req.URL.Path)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, resp.StatusCode, decodeError(resp)
	}
	return resp, resp.StatusCode, nil
}

// decodeError turns an NgDP-style error body into a *hub.Error.
func decodeError(resp *http.Response) error {
	var em struct {
		Code        string           `json:"code"`
		Message     string           `json:"message"`
		FieldErrors []hub.FieldError `json:"fieldErrors"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &em) != nil || em.Code == "" {
		em.Code = string(status.Code(resp.StatusCode))
		em.Message = strings.TrimSpace(string(b))
	}
	return &hub.Error{Code: hub.Code(em.Code), Message: fmt.Sprintf("%s (HTTP %d)", em.Message, resp.StatusCode), Fields: em.FieldErrors}
}

// Page is one page of available message UUIDs: the API's one list shape
// (NgDP's PagingResultUUID); Total() is the whole queue.
type Page = paging.Result[string]

// List returns a page of the messages available to the system.
func (c *Client) List(ctx context.Context, page, size int) (Page, error) {
	var p Page
	req, err := c.request(ctx, "GET", "/memos/?page="+strconv.Itoa(page)+"&size="+strconv.Itoa(size), nil)
	if err != nil {
		return p, err
	}
	resp, err := c.do(req, true)
	if err != nil {
		return p, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return p, hub.Wrap(hub.Unavailable, err, "decode page")
	}
	return p, nil
}

// Fetch leases and opens one message.
func (c *Client) Fetch(ctx context.Context, messageUUID string) (*Memo, error) {
	req, err := c.request(ctx, "GET", "/memos/"+url.PathEscape(messageUUID), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req, false)
	if err != nil {
		return nil, err
	}
	return memoOf(resp), nil
}

// Next leases the next available message, waiting up to wait for one;
// (nil, nil) when none arrived.
func (c *Client) Next(ctx context.Context, wait time.Duration) (*Memo, error) {
	return c.next(ctx, wait, false)
}

// next is Next; loseLease says whether a request whose answer was lost
// (broken connection, 502, 503, 504) may be sent again. The lost answer
// may have leased a message to nobody: it is fetchable again once that
// lease expires (at once when a bolt hub restarts). A Drainer, which
// stores idempotently, loses nothing by that; a caller of Next is not
// assumed to accept it.
func (c *Client) next(ctx context.Context, wait time.Duration, loseLease bool) (*Memo, error) {
	req, err := c.request(ctx, "GET", "/memos/next?wait="+url.QueryEscape(wait.String()), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req, loseLease)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNoContent {
		resp.Body.Close()
		return nil, nil
	}
	return memoOf(resp), nil
}

func memoOf(resp *http.Response) *Memo {
	h := resp.Header
	m := &Memo{UUID: h.Get("X-Posthub-Message-Uuid"), Lease: h.Get("X-Posthub-Lease"), Version: h.Get("X-Posthub-Memo-Version"),
		Size: resp.ContentLength, Body: resp.Body}
	m.LeaseExpires, _ = time.Parse(time.RFC3339Nano, h.Get("X-Posthub-Lease-Expires"))
	m.Attempt, _ = strconv.Atoi(h.Get("X-Posthub-Attempt"))
	return m
}

// Ack acknowledges a message; acknowledging it again is not an error.
func (c *Client) Ack(ctx context.Context, messageUUID string) error {
	req, err := c.request(ctx, "DELETE", "/memos/"+url.PathEscape(messageUUID), nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req, true)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Receipt sends a business receipt (COMPLETED or INVALID) for a message;
// lease is the token of the fetch (needed when the hub gives leases back
// on INVALID).
func (c *Client) Receipt(ctx context.Context, messageUUID string, status hub.ReceiptStatus, errorCode, errorMessage, lease string) error {
	b, _ := json.Marshal(map[string]string{"messageUUID": messageUUID, "receiptStatus": string(status),
		"errorCode": errorCode, "errorMessage": errorMessage})
	req, err := c.request(ctx, "POST", "/memos/"+url.PathEscape(messageUUID)+"/receipt", strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if lease != "" {
		req.Header.Set("X-Posthub-Lease", lease)
	}
	resp, err := c.do(req, false)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
