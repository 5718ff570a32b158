package bolt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/storage/storagetest"
)

func TestFrameClassesHoldTheirFrames(t *testing.T) {
	last := -1
	for n := 1; n <= framePoolMax+1; n += 97 {
		c, size := frameClass(n)
		if n > framePoolMax {
			if c != -1 {
				t.Fatalf("frame of %d bytes pooled in class %d", n, c)
			}
			continue
		}
		if size < n || (n > framePoolMin && size > n+n/4) || c < 0 || c >= frameClasses || c < last {
			t.Fatalf("frame of %d bytes: class %d of %d bytes (last class %d)", n, c, size, last)
		}
		if c2, size2 := frameClass(size); c2 != c || size2 != size {
			t.Fatalf("a buffer of class %d (%d bytes) goes back to class %d (%d bytes)", c, size, c2, size2)
		}
		last = c
	}
}

// letterContent is the content of the test letter uuid: its own bytes, of
// a size between 1 and 40 KiB taken from the UUID, so that the frames
// span several classes and a frame handed to another letter while still
// read shows as content of the wrong letter.
func letterContent(uuid string) []byte {
	h := sha256.Sum256([]byte(uuid))
	n := 1 + (int(h[0])<<8|int(h[1]))%(40<<10)
	return bytes.Repeat([]byte(uuid+";"), n/len(uuid)+1)[:n]
}

// A frame goes back to its pool only when nothing can read it any more:
// writers put letters while readers read those just put (answered from
// the accept log while unapplied, from bbolt after) and the applier
// applies every millisecond, recycling frames under their feet; every
// content read, then and after, is the letter's own. Run with -race: a
// frame read after it was given back is a race with the writer it is
// given to next.
func TestAcceptLogRecyclesFramesOnlyOnceUnreadable(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "posthub.db"), Options{ApplyInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const writers, letters = 8, 150
	before := framesRecycled.Load()
	justPut := make(chan string, 64)
	var wg, readers sync.WaitGroup
	check := func(what, uuid string, got []byte) {
		if want := letterContent(uuid); !bytes.Equal(got, want) {
			t.Errorf("%s %s: %d bytes, not its %d bytes of content", what, uuid, len(got), len(want))
		}
	}
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for uuid := range justPut {
				m, err := s.GetMessage(ctx, uuid)
				if err != nil {
					t.Errorf("GetMessage %s: %v", uuid, err)
					return
				}
				check("GetMessage", uuid, m.Content)
				ms, err := s.GetMessages(ctx, []string{uuid})
				if err != nil || ms[uuid].UUID != uuid || ms[uuid].Content != nil {
					t.Errorf("GetMessages %s: %v %+v", uuid, err, ms[uuid].UUID)
					return
				}
			}
		}()
	}
	var all sync.Map
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range letters {
				uuid := fmt.Sprintf("%08d-0000-4000-8000-%012d", w, i)
				q := "system/" + uuid
				evs := []hub.Event{{ID: "memo:" + uuid + ":1:MEMO_SEND_RECEIVED:0", Tag: "MEMO_SEND_RECEIVED", Time: t0, MessageUUID: uuid, Orgs: []string{"12345678"}}}
				if err := s.PutMessageWith(ctx, storagetest.Message(uuid, letterContent(uuid), t0),
					[]hub.Delivery{storagetest.Delivery(uuid, q, t0)}, storagetest.Receipt(uuid, t0), evs, nil); err != nil {
					t.Errorf("PutMessageWith %s: %v", uuid, err)
					return
				}
				all.Store(uuid, true)
				select {
				case justPut <- uuid:
				default:
				}
			}
		}()
	}
	wg.Wait()
	close(justPut)
	readers.Wait()
	if err := s.alog.wait(ctx, true); err != nil {
		t.Fatal(err)
	}
	if n := framesRecycled.Load() - before; n < writers*letters/2 {
		t.Fatalf("%d frames of %d letters went back to their pools: the test did not reuse them", n, writers*letters)
	}
	n := 0
	all.Range(func(k, _ any) bool {
		uuid := k.(string)
		m, err := s.GetMessage(ctx, uuid)
		if err != nil {
			t.Fatalf("GetMessage %s: %v", uuid, err)
		}
		check("stored message", uuid, m.Content)
		n++
		return true
	})
	if n != writers*letters {
		t.Fatalf("%d letters put, want %d", n, writers*letters)
	}
}
