//go:build unix

package limit

import "syscall"

// openFileLimit is the process's (soft) open-file limit, which Go raises
// to the hard limit at start-up.
func openFileLimit() (int, bool) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 0, false
	}
	return int(r.Cur), true
}
