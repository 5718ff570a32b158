//go:build !unix

package limit

func openFileLimit() (int, bool) { return 0, false }
