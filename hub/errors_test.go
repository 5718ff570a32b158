package hub

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
)

func TestWrapCallsAFullDiskUnavailable(t *testing.T) {
	full := &os.PathError{Op: "write", Path: "/data/spool/memo-1.xml", Err: syscall.ENOSPC}
	for _, c := range []struct {
		name string
		err  *Error
		want Code
	}{
		{"a full disk is passing, not a bug", Wrap(Internal, full, "cannot write the spool file"), Unavailable},
		{"an exhausted quota too", Wrap(Internal, fmt.Errorf("put: %w", syscall.EDQUOT), "put"), Unavailable},
		{"any other I/O failure stays internal", Wrap(Internal, syscall.EIO, "cannot write the spool file"), Internal},
		{"a chosen code other than internal is kept", Wrap(Invalid, full, "reading the MeMo failed"), Invalid},
	} {
		if got := ErrorCode(c.err); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
		if !errors.Is(c.err, c.err.Err) {
			t.Errorf("%s: the cause is not kept", c.name)
		}
	}
	if e := Wrap(Internal, full, "cannot write the spool file"); e.Message != "cannot write the spool file (storage full)" || !DiskFull(e) {
		t.Errorf("message %q, DiskFull %v", e.Message, DiskFull(e))
	}
}
