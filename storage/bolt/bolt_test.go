package bolt_test

import (
	"path/filepath"
	"testing"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/bolt"
	"github.com/posthub/posthub/storage/storagetest"
)

func open(t testing.TB) *bolt.Store {
	s, err := bolt.Open(filepath.Join(t.TempDir(), "posthub.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) {
	storagetest.TestStore(t, func(t *testing.T) hub.Store { return open(t) })
}

// The contract holds without the accept log too (Options.NoAcceptLog).
func TestStoreWithoutAcceptLog(t *testing.T) {
	storagetest.TestStore(t, func(t *testing.T) hub.Store {
		s, err := bolt.Open(filepath.Join(t.TempDir(), "posthub.db"), bolt.Options{NoAcceptLog: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
