package hub

import (
	"context"
	"io"
	"strings"
	"time"
)

// BlobInfo describes a stored blob.
type BlobInfo struct {
	Key  string
	Size int64
	// Modified is when the object was stored (List sets it).
	Modified time.Time
}

// Blobs stores message content: one immutable object per key. Keys are
// chosen by the hub (e.g. "msg/<uuid>/<sha256>") and use only [A-Za-z0-9._/-].
//
// Put is atomic and durable: when it returns nil the whole object is on
// stable storage (fsynced file and directory, or an acknowledged S3 PUT) and
// readable; a failure or crash part-way leaves no object visible under key.
// Implementations stream: memory use does not grow with the object's size.
type Blobs interface {
	// Put stores r's bytes under key, replacing any object there. size is
	// the exact length when known, or -1. Returns Invalid for a bad key,
	// Unavailable when the backend cannot be reached.
	Put(ctx context.Context, key string, r io.Reader, size int64) (BlobInfo, error)
	// PutFile stores the local file at path under key with Put's
	// guarantees and removes the file on success. A store on the same
	// filesystem (the embedded file store) moves it without a copy; others
	// upload it. Returns Invalid for a bad key.
	PutFile(ctx context.Context, key, path string) (BlobInfo, error)
	// Open returns the object's bytes. Returns NotFound when absent.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat returns the object's size. Returns NotFound when absent.
	Stat(ctx context.Context, key string) (BlobInfo, error)
	// Delete removes the object. Deleting an absent key is not an error.
	Delete(ctx context.Context, key string) error
	// List calls fn for every key with the given prefix, in key order,
	// stopping at fn's first error, which List returns.
	List(ctx context.Context, prefix string, fn func(BlobInfo) error) error
}

// Limits of blob keys, shared by every Blobs backend so they accept the
// same keys.
const (
	MaxBlobKeyLen     = 1024
	MaxBlobSegmentLen = 200 // leaves room for a file store's suffixes within NAME_MAX
)

// CheckBlobKey returns Invalid unless key is 1–MaxBlobKeyLen bytes of
// [A-Za-z0-9._-] segments separated by single "/", none "." or "..", none
// longer than MaxBlobSegmentLen.
func CheckBlobKey(key string) error {
	if key == "" || len(key) > MaxBlobKeyLen {
		return Errorf(Invalid, "blob key must be 1 to %d bytes, got %d", MaxBlobKeyLen, len(key))
	}
	for i := 0; i < len(key); i++ {
		if !BlobKeyByte(key[i]) {
			return Errorf(Invalid, "blob key %q: character %q is not allowed", key, key[i])
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch {
		case seg == "":
			return Errorf(Invalid, "blob key %q: empty segment", key)
		case seg == "." || seg == "..":
			return Errorf(Invalid, "blob key %q: %q segment", key, seg)
		case len(seg) > MaxBlobSegmentLen:
			return Errorf(Invalid, "blob key %q: segment over %d bytes", key, MaxBlobSegmentLen)
		}
	}
	return nil
}

// BlobKeyByte reports whether c may appear in a blob key.
func BlobKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-' || c == '/'
}
