package api

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/posthub/posthub/api/status"
	"github.com/posthub/posthub/hub"
)

// ErrorMessage is the national hub's error body.
type ErrorMessage struct {
	Code        string           `json:"code"`
	Message     string           `json:"message"`
	FieldErrors []hub.FieldError `json:"fieldErrors"`
	RequestID   string           `json:"requestId,omitempty"`
}

// writeError maps err to its HTTP status and the NgDP-style body. Internal
// errors are logged with the request id and shown only as "internal error".
func writeError(c *gin.Context, log *slog.Logger, err error) {
	body := errorBody(c, log, err)
	status := status.Of(hub.ErrorCode(err))
	if sec := hub.RetryAfterSeconds(err); sec > 0 {
		c.Header("Retry-After", strconv.Itoa(sec))
	}
	if status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Basic realm="posthub"`)
	}
	if status == http.StatusServiceUnavailable && c.Writer.Header().Get("Retry-After") == "" {
		// Unavailable is passing (a dependency down, the disk full): the
		// client should come back, not give up.
		c.Header("Retry-After", retryAfter)
	}
	c.AbortWithStatusJSON(status, body)
}

// retryAfter is the Retry-After of a 503, in seconds.
const retryAfter = "10"

// errorBody is the NgDP-style body of err; internal and unavailable
// errors are logged with the request id.
func errorBody(c *gin.Context, log *slog.Logger, err error) ErrorMessage {
	code := hub.ErrorCode(err)
	body := ErrorMessage{Code: string(code), FieldErrors: []hub.FieldError{}, RequestID: requestID(c)}
	var he *hub.Error
	if errors.As(err, &he) && code != hub.Internal {
		body.Message = he.Message
		if he.Fields != nil {
			body.FieldErrors = he.Fields
		}
	}
	if status.Of(code) >= 500 {
		log.LogAttrs(c.Request.Context(), slog.LevelError, "request failed",
			slog.String("requestId", requestID(c)), slog.String("path", c.FullPath()), slog.Any("error", err))
		if code == hub.Internal {
			body.Message = "internal error"
		}
	}
	return body
}
