// Package s3 stores blobs in an S3 bucket (MinIO, AWS S3, Ceph…) through
// minio-go: the production content store.
//
// What it guarantees:
//   - Put streams; memory does not grow with an object's size. A known size
//     up to 5 GiB goes up as one streamed PUT, with no buffering at all; an
//     unknown size (-1) or a larger one as a multipart upload that buffers
//     one part of PartSize (16 MiB) at a time, one part in flight.
//   - Put is atomic: S3 makes an object visible only when its PUT or
//     multipart upload completes, so a Put that fails part-way (reader error,
//     cancelled context, wrong size) leaves no object, and an overwrite that
//     fails leaves the previous one. When Put returns nil the server has
//     acknowledged the object. A multipart upload abandoned by a crash stays
//     invisible; a bucket lifecycle rule should abort incomplete uploads.
//   - Errors are translated here: NoSuchKey is hub.NotFound, a server that
//     cannot be reached or answers 5xx is hub.Unavailable.
//   - Open creates the bucket if it is absent.
//
// Keys follow the same rule as storage/fs, so both backends accept the same
// keys: 1–1024 bytes of [A-Za-z0-9._-] segments joined by single "/", with no
// "." or ".." segment and no segment over 200 bytes. MinIO, unlike AWS S3,
// refuses an object whose key is a "directory" of another ("a" and "a/b");
// the hub's keys never are.
package s3

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/posthub/posthub/hub"
)

const (
	// PartSize is the part size of multipart uploads, and so the memory one
	// streaming Put holds.
	PartSize = 16 << 20
	// maxSinglePut is the largest object S3 takes in one PUT.
	maxSinglePut = 5 << 30
)

var _ hub.Blobs = (*Store)(nil)

// Config says where the bucket is.
type Config struct {
	Endpoint  string // host:port, no scheme
	AccessKey string
	SecretKey string
	Bucket    string
	UseTLS    bool
	Region    string // optional; also the region a new bucket is made in
	Prefix    string // optional; prepended to every key, e.g. "posthub/"
}

// Store is a hub.Blobs on one S3 bucket. It is safe for concurrent use.
type Store struct {
	core   minio.Core
	bucket string
	prefix string
}

// Open connects to the bucket, creating it when absent. Returns Invalid for
// a bad configuration and Unavailable when the server cannot be reached.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, hub.Errorf(hub.Invalid, "s3: endpoint and bucket are required")
	}
	if err := s3utils.CheckValidBucketName(cfg.Bucket); err != nil {
		return nil, hub.Wrap(hub.Invalid, err, "s3: bucket %q", cfg.Bucket)
	}
	if cfg.Prefix != "" && (!strings.HasSuffix(cfg.Prefix, "/") || checkKey(strings.TrimSuffix(cfg.Prefix, "/")) != nil) {
		return nil, hub.Errorf(hub.Invalid, "s3: prefix %q must be key segments ending in \"/\"", cfg.Prefix)
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.UseTLS,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, hub.Wrap(hub.Invalid, err, "s3: endpoint %q", cfg.Endpoint)
	}
	s := &Store{core: minio.Core{Client: client}, bucket: cfg.Bucket, prefix: cfg.Prefix}
	exists, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, s.translate(ctx, err, "s3: check bucket %q", cfg.Bucket)
	}
	if !exists {
		err := client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region})
		if code := minio.ToErrorResponse(err).Code; err != nil && code != "BucketAlreadyOwnedByYou" && code != "BucketAlreadyExists" {
			return nil, s.translate(ctx, err, "s3: create bucket %q", cfg.Bucket)
		}
	}
	return s, nil
}

// Put streams r to the bucket. When size >= 0, r must hold exactly size
// bytes. Returns Invalid for a bad key or a size mismatch, Unavailable when
// the server cannot be reached.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) (hub.BlobInfo, error) {
	if err := checkKey(key); err != nil {
		return hub.BlobInfo{}, err
	}
	src := &exactReader{r: r, left: size}
	if size == 0 {
		// The client sends nothing for an empty object, so look for
		// surplus bytes before.
		if err := src.probe(); err != nil {
			return hub.BlobInfo{}, err
		}
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: PartSize}
	if size >= 0 && size <= maxSinglePut {
		opts.DisableMultipart = true
	}
	info, err := s.core.Client.PutObject(ctx, s.bucket, s.prefix+key, src, size, opts)
	if src.err != nil {
		// What went wrong was the input, whatever the client made of it.
		return hub.BlobInfo{}, src.err
	}
	if err != nil {
		return hub.BlobInfo{}, s.translate(ctx, err, "put %q", key)
	}
	if size >= 0 && info.Size != size {
		return hub.BlobInfo{}, hub.Errorf(hub.Internal, "put %q: server stored %d bytes, want %d", key, info.Size, size)
	}
	return hub.BlobInfo{Key: key, Size: info.Size}, nil
}

// PutFile uploads the file at path as Put does and removes it once the
// object is stored.
func (s *Store) PutFile(ctx context.Context, key, path string) (hub.BlobInfo, error) {
	if err := checkKey(key); err != nil {
		return hub.BlobInfo{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return hub.BlobInfo{}, hub.Wrap(hub.Internal, err, "put %q: open %s", key, path)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return hub.BlobInfo{}, hub.Wrap(hub.Internal, err, "put %q: stat %s", key, path)
	}
	info, err := s.Put(ctx, key, f, st.Size())
	if err != nil {
		return hub.BlobInfo{}, err
	}
	os.Remove(path)
	return info, nil
}

// Open returns the object's bytes, fetched by one GET. Returns NotFound when
// absent.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	body, _, _, err := s.core.GetObject(ctx, s.bucket, s.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.translate(ctx, err, "open %q", key)
	}
	return body, nil
}

// Stat returns the object's size. Returns NotFound when absent.
func (s *Store) Stat(ctx context.Context, key string) (hub.BlobInfo, error) {
	if err := checkKey(key); err != nil {
		return hub.BlobInfo{}, err
	}
	info, err := s.core.Client.StatObject(ctx, s.bucket, s.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return hub.BlobInfo{}, s.translate(ctx, err, "stat %q", key)
	}
	return hub.BlobInfo{Key: key, Size: info.Size}, nil
}

// Delete removes the object. Deleting an absent key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	err := s.core.Client.RemoveObject(ctx, s.bucket, s.prefix+key, minio.RemoveObjectOptions{})
	if err != nil && !isNotFound(err) {
		return s.translate(ctx, err, "delete %q", key)
	}
	return nil
}

// List calls fn for each object whose key starts with prefix, in key order
// (S3 lists keys in byte order). Returns Invalid when prefix holds a
// character no key can.
func (s *Store) List(ctx context.Context, prefix string, fn func(hub.BlobInfo) error) error {
	for i := 0; i < len(prefix); i++ {
		if !hub.BlobKeyByte(prefix[i]) {
			return hub.Errorf(hub.Invalid, "prefix %q: character %q is not allowed in keys", prefix, prefix[i])
		}
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the client's listing goroutine when fn stops early
	for obj := range s.core.Client.ListObjects(lctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if obj.Err != nil {
			return s.translate(ctx, obj.Err, "list %q", prefix)
		}
		key, ok := strings.CutPrefix(obj.Key, s.prefix)
		if !ok || checkKey(key) != nil {
			continue // not one of ours
		}
		if err := fn(hub.BlobInfo{Key: key, Size: obj.Size, Modified: obj.LastModified}); err != nil {
			return err
		}
	}
	return nil
}

// translate turns a client error into a hub.Error.
func (s *Store) translate(ctx context.Context, err error, format string, args ...any) error {
	var he *hub.Error
	switch {
	case errors.As(err, &he):
		return err
	case isNotFound(err):
		return hub.Wrap(hub.NotFound, err, format, args...)
	case ctx.Err() != nil:
		return hub.Wrap(hub.Unavailable, err, format, args...)
	case isUnreachable(err):
		return hub.Wrap(hub.Unavailable, err, format, args...)
	}
	return hub.Wrap(hub.Internal, err, format, args...)
}

func isNotFound(err error) bool {
	code := minio.ToErrorResponse(err).Code
	return code == "NoSuchKey" || code == "NotFound"
}

// isUnreachable reports errors that say the server is down, overloaded or
// not reachable, rather than that the request was wrong.
func isUnreachable(err error) bool {
	if resp := minio.ToErrorResponse(err); resp.Code != "" || resp.StatusCode != 0 {
		switch resp.Code {
		case "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
			"XMinioServerNotInitialized", "XMinioStorageFull":
			return true
		}
		return resp.StatusCode >= 500
	}
	var nerr net.Error
	var uerr *url.Error
	return errors.As(err, &nerr) || errors.As(err, &uerr) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded)
}

// exactReader passes r through and, when left >= 0, fails unless r holds
// exactly left bytes. It keeps the first error of the input so Put can
// report it rather than the client's version of it.
type exactReader struct {
	r    io.Reader
	left int64 // bytes still expected; -1 for any number
	err  error
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	if e.left == 0 {
		return 0, io.EOF // probe already saw the end
	}
	if e.left > 0 && int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	if e.left > 0 {
		e.left -= int64(n)
	}
	switch {
	case err == io.EOF && e.left > 0:
		e.err = hub.Errorf(hub.Invalid, "body ended %d bytes short of the size announced", e.left)
		return n, e.err
	case err == io.EOF:
		return n, io.EOF
	case err != nil:
		e.err = readErr(err)
		return n, e.err
	case e.left == 0:
		if perr := e.probe(); perr != nil {
			return n, perr
		}
		return n, io.EOF
	}
	return n, nil
}

// probe checks that r has nothing left once the announced size is read.
func (e *exactReader) probe() error {
	var one [1]byte
	n, err := io.ReadFull(e.r, one[:])
	switch {
	case n > 0:
		e.err = hub.Errorf(hub.Invalid, "body has more than the bytes announced")
	case err != nil && err != io.EOF:
		e.err = readErr(err)
	}
	return e.err
}

// readErr keeps the code of an input error that has one (e.g. a reader
// enforcing a size limit); a cancelled context is Unavailable; anything else
// Internal.
func readErr(err error) error {
	var he *hub.Error
	if errors.As(err, &he) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return hub.Wrap(hub.Unavailable, err, "put cancelled")
	}
	return hub.Wrap(hub.Internal, err, "read blob body")
}

func checkKey(key string) error { return hub.CheckBlobKey(key) }
