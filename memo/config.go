package memo

import "time"

// DefaultMaxSize is the largest MeMo the hub accepts: 99.5 MiB.
const DefaultMaxSize int64 = 104_333_312

// Config holds the configurable limits of validation and business rules.
type Config struct {
	// MaxSize is the largest accepted document in bytes.
	MaxSize int64
	// MaxDelay is how far ahead of now doNotDeliverUntilDate may lie.
	MaxDelay time.Duration
	// AllowedMIMETypes lists the accepted File encodingFormat values
	// (compared case-insensitively, parameters such as ";charset=" ignored).
	AllowedMIMETypes []string
}

// DefaultConfig returns the limits a mailbox-facing hub uses by default.
func DefaultConfig() Config {
	return Config{
		MaxSize:  DefaultMaxSize,
		MaxDelay: 365 * 24 * time.Hour,
		AllowedMIMETypes: []string{
			"application/pdf",
			"text/plain", "text/html", "text/xml", "application/xml",
			"image/png", "image/jpeg", "image/gif", "image/tiff", "image/bmp", "image/svg+xml",
			"application/msword",
			"application/vnd.openxmlformats-officedocument.wordprocessingml.document",
			"application/vnd.ms-excel",
			"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
			"application/vnd.ms-powerpoint",
			"application/vnd.openxmlformats-officedocument.presentationml.presentation",
			"application/vnd.oasis.opendocument.text",
			"application/vnd.oasis.opendocument.spreadsheet",
			"application/rtf",
		},
	}
}
