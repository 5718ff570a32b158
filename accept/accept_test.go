package accept_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/posthub/posthub/accept"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/hubtest"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/storage/bolt"
	"github.com/posthub/posthub/storage/fs"
)

const (
	senderCVR = "11111111"
	citizen   = "0101701234"
)

type world struct {
	svc    *accept.Service
	store  *bolt.Store
	blobs  *fs.Store
	sender hub.System
}

// newWorld is an accept service on a real embedded store, whose spool
// directory is spoolDir.
func newWorld(t *testing.T, spoolDir string) *world {
	t.Helper()
	h, sys, v := senderHub(t)
	events := hub.StoreEvents{Store: h.Store}
	svc := &accept.Service{Validator: v, Receipts: h.Store, Events: events, SpoolDir: spoolDir, MaxSize: 200 << 20,
		Ingest: h.Ingest(events, 0)}
	return &world{svc: svc, store: h.Store, blobs: h.Blobs, sender: sys}
}

// senderHub is the embedded hub with the sending authority, its sender
// system and the registered citizen, and a validator spooling into the
// hub's directory.
func senderHub(tb testing.TB) (*hubtest.Hub, hub.System, *memo.Validator) {
	tb.Helper()
	h := hubtest.Open(tb)
	h.Org(hub.Organisation{CVR: senderCVR, Name: "Afsender", Kind: hub.Authority, Setup: hub.SetupContactable})
	sys, _ := h.System(senderCVR, hub.SystemSpec{Name: "sender", Role: hub.SenderSystem})
	h.Registered(citizen)
	v, err := memo.NewValidator(memo.DefaultConfig(), memo.WithSpoolDir(h.Dir))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(v.Close)
	return h, sys, v
}

func letter(t *testing.T, attachment int) []byte {
	t.Helper()
	l := memo.Letter{Version: memo.Version12, From: senderCVR, To: citizen, Label: "Brev", Main: memo.PDF("brev.pdf", memo.SamplePDF("Brev"))}
	if attachment > 0 {
		l.Attachments = []memo.Attachment{{Filename: "bilag.txt", MIMEType: "text/plain",
			Reader: bytes.NewReader(bytes.Repeat([]byte("bilag "), attachment/6+1)[:attachment]), Size: int64(attachment)}}
	}
	var b bytes.Buffer
	if _, err := memo.NewLetter(l).WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// unknownLength hides a reader's type, so nothing can learn its length.
type unknownLength struct{ io.Reader }

// A body of unknown length (a chunked request, a door's stream) that ends
// within SmallBody bytes is validated in memory like one with a
// Content-Length: it is accepted where no spool file can be made, while a
// longer one still goes through the spool.
func TestBodyOfUnknownLengthWithinSmallBodyIsReadInMemory(t *testing.T) {
	noSpool := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(noSpool, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, noSpool)
	ctx := context.Background()
	for name, size := range map[string]int64{"chunked": -1, "with its length": 0} {
		t.Run(name, func(t *testing.T) {
			b := letter(t, 0)
			if size == 0 {
				size = int64(len(b))
			}
			r, created, err := w.svc.Letter(ctx, accept.Request{System: w.sender}, accept.Body{R: unknownLength{bytes.NewReader(b)}, Size: size})
			if err != nil || !created {
				t.Fatalf("Letter = %v, created %v", err, created)
			}
			m, err := w.store.GetMessage(ctx, r.MessageUUID)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := hub.OpenContent(ctx, w.blobs, m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || m.Size != int64(len(b)) || !bytes.Equal(got, b) {
				t.Fatalf("stored %d bytes (%v), want the %d sent", len(got), err, len(b))
			}
		})
	}
	t.Run("longer than SmallBody", func(t *testing.T) {
		b := letter(t, accept.SmallBody)
		_, _, err := w.svc.Letter(ctx, accept.Request{System: w.sender}, accept.Body{R: unknownLength{bytes.NewReader(b)}, Size: -1})
		if err == nil {
			t.Fatal("a body over SmallBody was accepted without its spool file")
		}
		ok := newWorld(t, t.TempDir())
		if _, created, err := ok.svc.Letter(ctx, accept.Request{System: ok.sender}, accept.Body{R: unknownLength{bytes.NewReader(b)}, Size: -1}); err != nil || !created {
			t.Fatalf("spooled from its start: %v, created %v", err, created)
		}
	})
}

// A body of unknown length that fails to read, or is over MaxSize, is
// refused and nothing is stored.
func TestBodyOfUnknownLengthRefusals(t *testing.T) {
	w := newWorld(t, t.TempDir())
	ctx := context.Background()
	b := letter(t, 0)
	broken := io.MultiReader(bytes.NewReader(b[:len(b)/2]), iotest.ErrReader(errors.New("connection reset")))
	if _, _, err := w.svc.Letter(ctx, accept.Request{System: w.sender}, accept.Body{R: broken, Size: -1}); !hub.Is(err, hub.Invalid) {
		t.Fatalf("a failed read: %v, want Invalid", err)
	}
	w.svc.MaxSize = int64(len(b)) - 1
	if _, _, err := w.svc.Letter(ctx, accept.Request{System: w.sender}, accept.Body{R: bytes.NewReader(b), Size: -1}); !hub.Is(err, hub.TooLarge) {
		t.Fatalf("over MaxSize: %v, want TooLarge", err)
	}
	ms, err := w.store.ListMessagesBySender(ctx, senderCVR, "", 10)
	if err != nil || len(ms) != 0 {
		t.Fatalf("stored %d messages (%v), want none", len(ms), err)
	}
}
