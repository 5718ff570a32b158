package bolt

import (
	"context"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/posthub/posthub/hub"
)

// GetContact answers a repeated lookup, found or not, from memory, and
// never with what a write that has returned replaced: readers race a
// writer that replaces and deletes the contact, and each answer is at
// least as new as the last write that had returned when the read began.
func TestContactCacheNeverAnswersWhatAWriteReplaced(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "posthub.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const id = "0101011234"

	// Repeated lookups start no read transaction, found or not.
	for _, put := range []bool{false, true} {
		if put {
			if err := s.PutContacts(ctx, []hub.Contact{{ID: id, Status: hub.Registered, Address: []string{"Vej 1"}}}); err != nil {
				t.Fatal(err)
			}
		}
		_, _ = s.GetContact(ctx, id)
		before := s.db.Stats().TxN
		for range 10 {
			c, err := s.GetContact(ctx, id)
			if put != (err == nil) || put && c.Address[0] != "Vej 1" {
				t.Fatalf("GetContact after put %v: %+v, %v", put, c, err)
			}
			if put {
				c.Address[0] = "changed by the caller"
			}
		}
		if n := s.db.Stats().TxN - before; n != 0 {
			t.Fatalf("10 repeated lookups (found %v) started %d read transactions", put, n)
		}
	}

	// written is the version of the last write that returned, started the
	// version of the last write begun; negative for a delete.
	var written, started atomic.Int64
	version := func(c hub.Contact, err error) int64 {
		if hub.Is(err, hub.NotFound) {
			return -1
		}
		if err != nil {
			t.Fatal(err)
		}
		v, _ := strconv.ParseInt(c.Name, 10, 64)
		return v
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				w := written.Load()
				got := version(s.GetContact(ctx, id))
				stale := w > 0 && got >= 0 && got < w || w < 0 && got >= 0 && got < -w
				if w > 0 && got == -1 {
					// Not found is new enough only if a delete (every
					// tenth version) began meanwhile: started, read once.
					st := started.Load()
					stale = max(st, -st) < (w/10+1)*10
				}
				if stale {
					t.Errorf("read version %d after write %d had returned", got, w)
					return
				}
			}
		}()
	}
	for v := int64(1); v <= 300; v++ {
		if v%10 == 0 {
			started.Store(-v)
			if err := s.DeleteContact(ctx, id); err != nil {
				t.Fatal(err)
			}
			written.Store(-v)
			if got := version(s.GetContact(ctx, id)); got != -1 {
				t.Fatalf("contact deleted after version %d read as version %d", v, got)
			}
			continue
		}
		started.Store(v)
		if err := s.PutContacts(ctx, []hub.Contact{{ID: id, Name: strconv.FormatInt(v, 10)}}); err != nil {
			t.Fatal(err)
		}
		written.Store(v)
		if got := version(s.GetContact(ctx, id)); got != v {
			t.Fatalf("contact written as version %d read as version %d", v, got)
		}
	}
	stop.Store(true)
	wg.Wait()
}
