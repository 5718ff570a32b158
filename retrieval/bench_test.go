package retrieval_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/posthub/posthub/eventlog"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/hubtest"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/retrieval"
	"github.com/posthub/posthub/storage/mongo"
	"github.com/posthub/posthub/storage/s3"
	"github.com/posthub/posthub/storage/storagetest"
)

// The benchmarks below need FerretDB and MinIO for their mongo rows.
func TestMain(m *testing.M) { testservers.Main(m) }

// benchSystemCounts are the numbers of receiver systems of one authority
// that drain at once, and the floor's writers.
var benchSystemCounts = []int{1, 5}

// benchPollers are the numbers of concurrent pollers (goroutines) per
// system: one, and the default of retrieval/client's drain loop (8).
var benchPollers = []int{1, 8}

// drainProfile, when set, receives a CPU profile of the drain alone (the
// preload left out, unlike -cpuprofile's): go test -bench Drain
// -drain.cpuprofile=drain.prof ./retrieval/.
var drainProfile = flag.String("drain.cpuprofile", "", "write a CPU profile of BenchmarkDrain's drain (not its preload) to this file")

// processCPU is the CPU time (user + system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchBackend opens a fresh store and blob store for one benchmark run.
type benchBackend struct {
	name string
	open func(b *testing.B) (hub.Store, hub.Blobs)
}

var benchBackends = []benchBackend{
	{"bolt", func(b *testing.B) (hub.Store, hub.Blobs) {
		fx := hubtest.Open(b)
		return fx.Store, fx.Blobs
	}},
	{"mongo", func(b *testing.B) (hub.Store, hub.Blobs) {
		uri := testservers.FerretDB(b) // skips when FerretDB is not installed
		endpoint, access, secret := testservers.MinIO(b)
		st, err := mongo.Open(ctx, mongo.Config{URI: uri, Database: testservers.DatabaseName(b)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		bl, err := s3.Open(ctx, s3.Config{Endpoint: endpoint, AccessKey: access, SecretKey: secret, Bucket: testservers.BucketName(b)})
		if err != nil {
			b.Fatal(err)
		}
		return st, bl
	}},
}

// BenchmarkDrain measures system retrieval: b.N messages of 18 KB
// (storagetest.BenchSize, content inline as with the default -inline-max)
// are put directly into the queues of systems receiver systems of one
// authority before the timer starts; then each system drains its queue
// with pollers goroutines of its own, each the way a poller of
// GET /memos/next and DELETE /memos/{id} does —
// Service.Next (lease), read the content to the end, Close, Service.Ack
// (sender's receipt COMPLETED, fetch event in the event log, delivery and
// message removed). Reports messages drained per second. Use a fixed count
// (-benchtime 5000x) so the preload is bounded; scripts/bench-retrieval.sh
// prints the table. Also reports the hub's CPU time per drained message
// (cpu-µs/msg: the whole process's, pollers included, during the drain
// only), which unlike msgs/s holds on a loaded machine.
func BenchmarkDrain(b *testing.B) {
	for _, be := range benchBackends {
		b.Run("backend="+be.name, func(b *testing.B) {
			for _, n := range benchSystemCounts {
				for _, p := range benchPollers {
					b.Run(fmt.Sprintf("systems=%d/pollers=%d", n, p), func(b *testing.B) { benchDrain(b, be, n, p) })
				}
			}
		})
	}
}

// BenchmarkFsyncFloor is the floor of the retrieval rows: writing 18 KB
// and fsyncing, at the same concurrency, on the disk of the embedded
// store's temp dir.
func BenchmarkFsyncFloor(b *testing.B) {
	for _, w := range benchSystemCounts {
		b.Run(fmt.Sprint("writers=", w), func(b *testing.B) { storagetest.BenchFsyncFloor(b, b.TempDir(), w) })
	}
}

func benchDrain(b *testing.B, be benchBackend, systems, pollers int) {
	st, bl := be.open(b)
	evlog := eventlog.New(st, eventlog.Options{})
	defer evlog.Close()
	svc := retrieval.New(retrieval.Config{TempDir: b.TempDir()}, retrieval.Deps{Store: st, Blobs: bl, Events: evlog})

	reg := &hub.Registry{Store: st}
	for _, o := range []hub.Organisation{
		{CVR: authority, Name: "Kommune", Kind: hub.Authority, Setup: hub.SetupSystemRetrieval},
		{CVR: senderOrg, Name: "Afsender", Kind: hub.Authority, Setup: hub.SetupMailboxOnly},
	} {
		if _, err := reg.CreateOrg(ctx, o); err != nil {
			b.Fatal(err)
		}
	}
	register := func(org string, sp hub.SystemSpec) hub.System {
		s, _, err := reg.RegisterSystem(ctx, org, sp)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	sender := register(senderOrg, hub.SystemSpec{Name: "sender", Role: hub.SenderSystem})
	receivers := make([]hub.System, systems)
	for i := range receivers {
		// An authority has at most four authority-post systems and one
		// CVR-post system: the fifth is the CVR-post one.
		kind := hub.AuthorityPost
		if i == 4 {
			kind = hub.CVRPost
		}
		receivers[i] = register(authority, hub.SystemSpec{Name: fmt.Sprint("receiver-", i), Role: hub.RecipientSystem, Mailbox: kind, MemoVersion: "1.2"})
	}

	benchPreload(b, st, sender, receivers)

	var drained atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.SetBytes(storagetest.BenchSize)
	if *drainProfile != "" {
		f, err := os.Create(*drainProfile)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	cpu0 := processCPU(b)
	start := time.Now()
	for _, sys := range receivers {
		for range pollers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := benchDrainSystem(ctx, svc, sys, &drained); err != nil {
					failed.Store(&err)
				}
			}()
		}
	}
	wg.Wait()
	el := time.Since(start)
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	if *drainProfile != "" {
		pprof.StopCPUProfile()
	}
	if p := failed.Load(); p != nil {
		b.Fatal(*p)
	}
	if got := drained.Load(); got != int64(b.N) {
		b.Fatalf("drained %d messages, put %d", got, b.N)
	}
	for _, sys := range receivers {
		if n, err := st.CountQueue(ctx, hub.SystemQueue(sys.ID)); err != nil || n != 0 {
			b.Fatalf("queue of %s holds %d after the drain (%v)", sys.ID, n, err)
		}
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
}

// benchDrainSystem is one poller of sys: it fetches and acknowledges until
// the queue has nothing left for it.
func benchDrainSystem(ctx context.Context, svc *retrieval.Service, sys hub.System, drained *atomic.Int64) error {
	for {
		f, err := svc.Next(ctx, sys, 0)
		if hub.Is(err, hub.NotFound) {
			return nil // every message was preloaded: an empty queue is the end
		}
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, f.Content)
		f.Close()
		if err != nil {
			return err
		}
		if n != storagetest.BenchSize {
			return fmt.Errorf("message %s: read %d bytes, want %d", f.Message.UUID, n, storagetest.BenchSize)
		}
		if _, err := svc.Ack(ctx, sys, f.Message.UUID); err != nil {
			return err
		}
		drained.Add(1)
	}
}

// benchPreload puts b.N messages, message i delivered to receivers[i %
// len(receivers)], directly through the store (16 concurrent writers).
func benchPreload(b *testing.B, st hub.Store, sender hub.System, receivers []hub.System) {
	b.Helper()
	content := bytes.Repeat([]byte("<memo>x</memo>"), storagetest.BenchSize/14+1)[:storagetest.BenchSize]
	sum := sha256.Sum256(content)
	sha := hex.EncodeToString(sum[:])
	now := time.Now().UTC().Add(-time.Second)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for failed.Load() == nil {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				sys := receivers[i%int64(len(receivers))]
				id := uuid.NewString()
				q := hub.SystemQueue(sys.ID)
				m := hub.Message{UUID: id, SenderCVR: senderOrg, SenderSystemID: sender.ID, RecipientID: authority, RecipientType: "CVR",
					MessageType: "DIGITALPOST", MemoVersion: "1.2", SHA256: sha, Size: int64(len(content)), Content: content,
					Received: now, State: hub.MessageActive}
				d := hub.Delivery{ID: hub.DeliveryID(id, q), MessageUUID: id, Channel: hub.ChannelSystem, Queue: q, OrgCVR: authority,
					SystemID: sys.ID, Created: now, AvailableAt: now, State: hub.DeliveryReady, Size: m.Size}
				// Transmission ids as ingest makes them (time-ordered).
				r := hub.Receipt{TransmissionID: hub.NewID(), SystemID: sender.ID, MessageUUID: id, Time: now, Status: hub.ReceiptReceived}
				if err := st.PutMessage(ctx, m, []hub.Delivery{d}, r); err != nil {
					failed.Store(&err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := failed.Load(); p != nil {
		b.Fatal(*p)
	}
}
