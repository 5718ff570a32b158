package bolt_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/bolt"
	"github.com/posthub/posthub/storage/crashtest"
	"github.com/posthub/posthub/storage/fs"
)

// TestCrash kills a writer with SIGKILL 25 times and checks that every
// acknowledged message survived whole and nothing half-written is visible.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test kills 25 child processes; skipped with -short")
	}
	crashtest.Run(t, crashtest.Config{
		Open: func(dir string) (hub.Store, hub.Blobs, func() error, error) {
			s, err := bolt.Open(filepath.Join(dir, "posthub.db"), bolt.Options{})
			if err != nil {
				return nil, nil, nil, err
			}
			b, err := fs.Open(filepath.Join(dir, "blobs"))
			if err != nil {
				s.Close()
				return nil, nil, nil, err
			}
			return s, b, func() error { return errors.Join(b.Close(), s.Close()) }, nil
		},
	})
}
