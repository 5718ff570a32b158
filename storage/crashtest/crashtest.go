// Package crashtest checks the hub's first guarantee — accepted means
// durable, and a crash leaves nothing half-visible — against a real storage
// backend by killing a writing process with SIGKILL at random moments.
//
// The test binary re-executes itself as the child (selected by an
// environment variable). The child opens the store and blob store, and on
// several goroutines writes messages the way ingest does (blob Put of the
// content unless it is small enough to be inline, then PutMessage with two
// deliveries and a receipt), printing "acked <uuid>" to stdout only after
// PutMessage returned nil. The parent kills it after a random 20–300 ms,
// reopens the stores and checks that
//   - every acknowledged message is present with intact content (SHA-256 of
//     the inline bytes or of the blob matches), both its deliveries and its
//     receipt;
//   - every visible message (listed by sender) is whole in the same way, so
//     nothing half-written is visible;
//   - every delivery in the test queues belongs to an existing message.
//
// Orphan blobs (content written, message not) are allowed: a sweeper
// removes them.
//
// Any backend pair runs the same harness from a test of its own:
//
//	func TestCrash(t *testing.T) {
//		crashtest.Run(t, crashtest.Config{
//			Open: func(dir string) (hub.Store, hub.Blobs, func() error, error) {
//				// open the backend under dir (or a database/bucket named
//				// after filepath.Base(dir) for a server backend)
//			},
//		})
//	}
//
// Open runs in the parent and in the child with the same dir; for MongoDB and
// S3 derive a database and bucket name from it so that rounds share state.
// Set Config.Repair for backends that finish interrupted writes in Repair
// (it is then called before checking).
package crashtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/posthub/posthub/hub"
)

// Config describes one backend pair under test.
type Config struct {
	// Open opens the metadata and blob stores kept under dir and returns a
	// function closing them.
	Open func(dir string) (hub.Store, hub.Blobs, func() error, error)
	// Rounds is the number of kills (default 25).
	Rounds int
	// Writers is the number of concurrent writers in the child (default 4).
	Writers int
	// InlineMax is the largest content kept inline (default 8 KiB); bigger
	// content goes to the blob store.
	InlineMax int
	// Repair makes the parent call Store.Repair before checking.
	Repair bool
}

const (
	envChild = "POSTHUB_CRASHTEST_CHILD"
	envDir   = "POSTHUB_CRASHTEST_DIR"
	sender   = "11223344"
	sysID    = "crash-sender"
)

var queues = []string{"system/crash-recv", "print"}

// Run is the whole harness: in the child process it writes until killed; in
// the parent it kills and checks Rounds times.
func Run(t *testing.T, c Config) {
	if c.Rounds <= 0 {
		c.Rounds = 25
	}
	if c.Writers <= 0 {
		c.Writers = 4
	}
	if c.InlineMax <= 0 {
		c.InlineMax = 8 << 10
	}
	if os.Getenv(envChild) == t.Name() {
		err := child(c, os.Getenv(envDir), os.Stdout)
		fmt.Fprintln(os.Stderr, "crashtest child:", err)
		os.Exit(3)
	}
	dir := t.TempDir()
	acked := map[string]bool{}
	for round := 0; round < c.Rounds; round++ {
		// Odd rounds kill at a random moment after the child's first
		// acknowledgement (however long a busy machine takes to reach it),
		// even rounds at a random moment after its start (during open and
		// the first writes as well): both kinds of moment are covered on
		// any machine.
		out := runAndKill(t, dir, round%2 == 1, time.Duration(20+mrand.IntN(281))*time.Millisecond)
		for _, line := range strings.Split(out, "\n") {
			if u, ok := strings.CutPrefix(line, "acked "); ok && len(u) == 36 {
				acked[u] = true
			}
		}
		if err := check(c, dir, acked); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	t.Logf("%d rounds, %d acknowledged messages all intact", c.Rounds, len(acked))
	if len(acked) == 0 {
		t.Fatalf("the child never acknowledged a message: the harness tested nothing")
	}
}

// runAndKill starts the child and SIGKILLs it after the given delay,
// counted from its first acknowledged message when afterAck, else from its
// start. It returns the child's stdout.
func runAndKill(t *testing.T, dir string, afterAck bool, after time.Duration) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), envChild+"="+t.Name(), envDir+"="+dir)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("child stdout: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	var out strings.Builder
	firstAck, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		acked := false
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if !acked && strings.HasPrefix(sc.Text(), "acked ") {
				acked = true
				close(firstAck)
			}
		}
	}()
	if afterAck {
		select {
		case <-firstAck:
		case <-done:
			// the child ended on its own: reported below
		case <-time.After(2 * time.Minute):
			_ = cmd.Process.Kill()
			t.Fatalf("the child acknowledged no message within 2 minutes: %s", errb.String())
		}
	}
	time.Sleep(after)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("child ended before the kill (%v): %s", err, errb.String())
	}
	return out.String()
}

// child writes messages until killed.
func child(c Config, dir string, stdout io.Writer) error {
	st, blobs, closeFn, err := c.Open(dir)
	if err != nil {
		return err
	}
	defer closeFn()
	ctx := context.Background()
	w := bufio.NewWriter(stdout)
	var mu sync.Mutex
	errs := make(chan error, c.Writers)
	for i := 0; i < c.Writers; i++ {
		go func() {
			for {
				id, err := writeOne(ctx, c, st, blobs)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				fmt.Fprintf(w, "acked %s\n", id)
				err = w.Flush()
				mu.Unlock()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	return <-errs
}

func writeOne(ctx context.Context, c Config, st hub.Store, blobs hub.Blobs) (string, error) {
	id := uuid.NewString()
	content := make([]byte, 1+mrand.IntN(3*c.InlineMax))
	_, _ = rand.Read(content)
	sum := sha256.Sum256(content)
	now := time.Now().UTC().Truncate(time.Millisecond)
	m := hub.Message{UUID: id, SenderCVR: sender, SenderSystemID: sysID, RecipientID: "0101011234",
		RecipientType: "CPR", MessageType: "DIGITALPOST", MemoVersion: "1.2", SHA256: hex.EncodeToString(sum[:]),
		Size: int64(len(content)), Received: now, State: hub.MessageActive, Mode: "AUTOMATIC"}
	if len(content) <= c.InlineMax {
		m.Content = content
	} else {
		m.ContentKey = "msg/" + id + "/" + m.SHA256
		if _, err := blobs.Put(ctx, m.ContentKey, bytes.NewReader(content), int64(len(content))); err != nil {
			return "", fmt.Errorf("blob put: %w", err)
		}
	}
	var ds []hub.Delivery
	for _, q := range queues {
		ds = append(ds, hub.Delivery{ID: id + "/" + q, MessageUUID: id, Channel: hub.ChannelSystem, Queue: q,
			Created: now, AvailableAt: now, State: hub.DeliveryReady, Size: m.Size})
	}
	r := hub.Receipt{TransmissionID: uuid.NewString(), SystemID: sysID, MessageUUID: id, Time: now, Status: hub.ReceiptReceived}
	if err := st.PutMessage(ctx, m, ds, r); err != nil {
		return "", fmt.Errorf("put message: %w", err)
	}
	return id, nil
}

func check(c Config, dir string, acked map[string]bool) (err error) {
	st, blobs, closeFn, err := c.Open(dir)
	if err != nil {
		return fmt.Errorf("reopen: %w", err)
	}
	defer func() {
		if cerr := closeFn(); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}()
	ctx := context.Background()
	if c.Repair {
		if err := st.Repair(ctx, time.Now()); err != nil {
			return fmt.Errorf("repair: %w", err)
		}
	}
	for id := range acked {
		if err := whole(ctx, st, blobs, id); err != nil {
			return fmt.Errorf("acknowledged message: %w", err)
		}
	}
	// The queues are read before the messages: a request the killed child
	// sent may still land on a server while this runs, and a commit landing
	// between the two reads must not make a delivery look orphaned (read in
	// this order, a listed delivery's message was committed before the
	// messages are read).
	var listed []hub.Delivery
	for _, q := range queues {
		var seq int64
		for {
			ds, err := st.ListQueue(ctx, q, seq, 500, false, time.Now())
			if err != nil {
				return fmt.Errorf("list queue: %w", err)
			}
			if len(ds) == 0 {
				break
			}
			listed = append(listed, ds...)
			seq = ds[len(ds)-1].Seq
		}
	}
	visible := map[string]bool{}
	after := ""
	for {
		page, err := st.ListMessagesBySender(ctx, sender, after, 500)
		if err != nil {
			return fmt.Errorf("list messages: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			if visible[m.UUID] {
				return fmt.Errorf("message %s listed twice", m.UUID)
			}
			visible[m.UUID] = true
			if err := whole(ctx, st, blobs, m.UUID); err != nil {
				return fmt.Errorf("visible message: %w", err)
			}
		}
		after = page[len(page)-1].UUID
	}
	for id := range acked {
		if !visible[id] {
			return fmt.Errorf("acknowledged message %s is not listed", id)
		}
	}
	for _, d := range listed {
		if !visible[d.MessageUUID] {
			return fmt.Errorf("delivery %s of an invisible message", d.ID)
		}
	}
	return nil
}

// whole checks one message: content intact, both deliveries, the receipt.
func whole(ctx context.Context, st hub.Store, blobs hub.Blobs, id string) error {
	m, err := st.GetMessage(ctx, id)
	if err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	content := m.Content
	if m.ContentKey != "" {
		rc, err := blobs.Open(ctx, m.ContentKey)
		if err != nil {
			return fmt.Errorf("%s: blob: %w", id, err)
		}
		content, err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("%s: read blob: %w", id, err)
		}
	}
	sum := sha256.Sum256(content)
	if hex.EncodeToString(sum[:]) != m.SHA256 || int64(len(content)) != m.Size {
		return fmt.Errorf("%s: content damaged (%d bytes, want %d)", id, len(content), m.Size)
	}
	ds, err := st.DeliveriesOf(ctx, id)
	if err != nil || len(ds) != len(queues) {
		return fmt.Errorf("%s: %d deliveries (%v), want %d", id, len(ds), err, len(queues))
	}
	if _, err := st.ReceiptFor(ctx, sysID, id); err != nil {
		return fmt.Errorf("%s: receipt: %w", id, err)
	}
	return nil
}
