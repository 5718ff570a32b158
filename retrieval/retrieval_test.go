package retrieval_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/hubtest"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/retrieval"
)

var ctx = context.Background()

const (
	authority = "11111111"
	other     = "33333333"
	senderOrg = "44444444"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is an embedded store and blob store with organisations and systems.
type env struct {
	t      *testing.T
	fx     *hubtest.Hub
	store  hub.Store
	blobs  hub.Blobs
	clock  *clock
	svc    *retrieval.Service
	reg    *hub.Registry
	sender hub.System
}

func newEnv(t *testing.T, cfg retrieval.Config) *env {
	t.Helper()
	fx := hubtest.Open(t)
	st, bl := fx.Store, fx.Blobs
	c := &clock{t: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)}
	fx.Registry.Now = c.Now
	cfg.TempDir = fx.Dir
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	e := &env{t: t, fx: fx, store: st, blobs: bl, clock: c, reg: fx.Registry}
	e.svc = retrieval.New(cfg, retrieval.Deps{Store: st, Blobs: bl, Events: hub.StoreEvents{Store: st, Now: c.Now}, Now: c.Now})
	// Before the stores close and the temp dir goes (cleanups run last
	// first): a system-fetch StartFetch began may still be moving.
	t.Cleanup(e.svc.Wait)
	for _, o := range []hub.Organisation{
		{CVR: authority, Name: "Kommune", Kind: hub.Authority, Setup: hub.SetupSystemRetrieval},
		{CVR: other, Name: "Styrelse", Kind: hub.Authority, Setup: hub.SetupSystemRetrieval},
		{CVR: senderOrg, Name: "Afsender", Kind: hub.Authority, Setup: hub.SetupMailboxOnly},
	} {
		fx.Org(o)
	}
	e.sender = e.system(senderOrg, hub.SystemSpec{Name: "sender", Role: hub.SenderSystem})
	return e
}

func (e *env) system(org string, sp hub.SystemSpec) hub.System {
	e.t.Helper()
	if sp.Name == "" {
		sp.Name = "system"
	}
	if sp.Role == "" {
		sp.Role = hub.RecipientSystem
	}
	s, _ := e.fx.System(org, sp)
	return s
}

// letter returns a valid MeMo of the given version.
func letter(t *testing.T, version, to string) (string, []byte) {
	t.Helper()
	m := memo.NewLetter(memo.Letter{Version: version, From: senderOrg, To: to, Main: memo.PDF("brev.pdf", memo.SamplePDF("Hej"))})
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return m.MessageHeader.MessageUUID, b.Bytes()
}

// put stores a message with one delivery to queue; big content goes to
// the blob store.
func (e *env) put(queue, org, systemID, version string, blob bool) (string, []byte) {
	e.t.Helper()
	id, body := letter(e.t, version, org)
	sum := sha256.Sum256(body)
	m := hub.Message{UUID: id, SenderCVR: senderOrg, SenderSystemID: e.sender.ID, RecipientID: org, RecipientType: "CVR",
		MessageType: "DIGITALPOST", MemoVersion: version, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(body)),
		Received: e.clock.Now(), State: hub.MessageActive}
	if blob {
		m.ContentKey = hub.ContentKey(id, m.SHA256, "t-"+id)
		if _, err := e.blobs.Put(ctx, m.ContentKey, bytes.NewReader(body), int64(len(body))); err != nil {
			e.t.Fatal(err)
		}
	} else {
		m.Content = body
	}
	ch := hub.ChannelSystem
	if systemID == "" {
		ch = hub.ChannelMailbox
	}
	d := hub.Delivery{ID: hub.DeliveryID(id, queue), MessageUUID: id, Channel: ch, Queue: queue, OrgCVR: org, SystemID: systemID,
		Created: e.clock.Now(), AvailableAt: e.clock.Now(), State: hub.DeliveryReady, Size: m.Size}
	r := hub.Receipt{TransmissionID: "t-" + id, SystemID: e.sender.ID, MessageUUID: id, Time: e.clock.Now(), Status: hub.ReceiptReceived}
	if err := e.store.PutMessage(ctx, m, []hub.Delivery{d}, r); err != nil {
		e.t.Fatal(err)
	}
	return id, body
}

func read(t *testing.T, f *retrieval.Fetched) []byte {
	t.Helper()
	defer f.Close()
	b, err := io.ReadAll(f.Content)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantCode(t *testing.T, err error, code hub.Code, what string) {
	t.Helper()
	if hub.ErrorCode(err) != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
}

func TestFetchLeasesAckEmptiesAndIsIdempotent(t *testing.T) {
	e := newEnv(t, retrieval.Config{LeaseTTL: time.Minute})
	sys := e.system(authority, hub.SystemSpec{MemoVersion: "1.2"})
	second := e.system(authority, hub.SystemSpec{MemoVersion: "1.2"})
	stranger := e.system(other, hub.SystemSpec{MemoVersion: "1.2"})
	id, body := e.put(hub.SystemQueue(sys.ID), authority, sys.ID, "1.2", true)

	ids, total, err := e.svc.List(ctx, sys, 0, 10)
	if err != nil || len(ids) != 1 || ids[0] != id || total != 1 {
		t.Fatalf("List = %v, %d, %v", ids, total, err)
	}
	f, err := e.svc.Fetch(ctx, sys, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, f); !bytes.Equal(got, body) {
		t.Fatalf("same-version fetch changed the bytes")
	}
	if f.Lease.Attempt != 1 || f.Size != int64(len(body)) {
		t.Fatalf("lease %+v size %d", f.Lease, f.Size)
	}
	_, err = e.svc.Fetch(ctx, sys, id)
	wantCode(t, err, hub.Conflict, "second poller during a live lease")
	if ids, _, _ := e.svc.List(ctx, sys, 0, 10); len(ids) != 0 {
		t.Fatalf("a leased message is listed as available: %v", ids)
	}
	_, err = e.svc.Fetch(ctx, second, id)
	wantCode(t, err, hub.NotFound, "fetch by another system of the organisation")
	_, err = e.svc.Fetch(ctx, stranger, id)
	wantCode(t, err, hub.NotFound, "fetch by another organisation's system")
	_, err = e.svc.Ack(ctx, stranger, id)
	wantCode(t, err, hub.NotFound, "ack by another organisation's system")
	_, err = e.svc.Ack(ctx, second, id)
	wantCode(t, err, hub.NotFound, "ack by another system of the organisation")

	e.clock.Add(time.Minute + time.Second) // the lease expires unacknowledged
	f, err = e.svc.Fetch(ctx, sys, id)
	if err != nil {
		t.Fatalf("fetch after lease expiry: %v", err)
	}
	read(t, f)
	if f.Lease.Attempt != 2 {
		t.Fatalf("attempt %d after expiry, want 2", f.Lease.Attempt)
	}
	res, err := e.svc.Ack(ctx, sys, id)
	if err != nil || res.AlreadyAcked {
		t.Fatalf("Ack = %+v, %v", res, err)
	}
	if _, err := e.store.GetDelivery(ctx, hub.DeliveryID(id, hub.SystemQueue(sys.ID))); !hub.Is(err, hub.NotFound) {
		t.Fatalf("delivery after ack: %v", err)
	}
	m, _ := e.store.GetMessage(ctx, id)
	if _, err := e.blobs.Stat(ctx, m.ContentKey); !hub.Is(err, hub.NotFound) {
		t.Fatalf("content after the last ack: %v", err)
	}
	r, err := e.store.ReceiptFor(ctx, e.sender.ID, id)
	if err != nil || r.Status != hub.ReceiptCompleted {
		t.Fatalf("sender receipt %+v, %v", r, err)
	}
	res, err = e.svc.Ack(ctx, sys, id)
	if err != nil || !res.AlreadyAcked {
		t.Fatalf("second Ack = %+v, %v", res, err)
	}
	_, err = e.svc.Ack(ctx, stranger, id)
	wantCode(t, err, hub.NotFound, "ack of an acknowledged message by another organisation")
	_, err = e.svc.Fetch(ctx, sys, id)
	wantCode(t, err, hub.NotFound, "fetch after ack")
	pending, _ := e.store.PendingEvents(ctx, 1000)
	fetched := 0
	for _, ev := range pending {
		if ev.Tag == retrieval.TagFetched && ev.MessageUUID == id {
			fetched++
		}
	}
	if fetched != 1 {
		t.Fatalf("%d %s events, want 1", fetched, retrieval.TagFetched)
	}
	if sys2, _ := e.store.GetSystem(ctx, sys.ID); sys2.LastFetch.IsZero() {
		t.Fatalf("LastFetch not recorded")
	}
}

func TestMessageIsParkedAfterMaxAttemptsAndUnparked(t *testing.T) {
	e := newEnv(t, retrieval.Config{LeaseTTL: time.Minute, MaxAttempts: 2})
	sys := e.system(authority, hub.SystemSpec{})
	id, _ := e.put(hub.SystemQueue(sys.ID), authority, sys.ID, "1.1", false)
	for i := 0; i < 2; i++ {
		f, err := e.svc.Fetch(ctx, sys, id)
		if err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
		read(t, f)
		e.clock.Add(2 * time.Minute)
	}
	_, err := e.svc.Fetch(ctx, sys, id)
	wantCode(t, err, hub.Conflict, "third attempt with MaxAttempts 2")
	parked, err := e.svc.Parked(ctx, authority)
	if err != nil || len(parked) != 1 || parked[0].MessageUUID != id {
		t.Fatalf("Parked = %+v, %v", parked, err)
	}
	if other, _ := e.svc.Parked(ctx, other); len(other) != 0 {
		t.Fatalf("another organisation sees parked deliveries: %v", other)
	}
	_, err = e.svc.Unpark(ctx, other, "op", id)
	wantCode(t, err, hub.NotFound, "unpark by another organisation")
	if _, err := e.svc.Unpark(ctx, authority, "op", id); err != nil {
		t.Fatal(err)
	}
	f, err := e.svc.Next(ctx, sys, 0)
	if err != nil || f.Message.UUID != id || f.Lease.Attempt != 1 {
		t.Fatalf("Next after unpark: %v (%+v)", err, f)
	}
	read(t, f)
}

func TestFetchConvertsToTheSystemsVersion(t *testing.T) {
	e := newEnv(t, retrieval.Config{})
	v11 := e.system(authority, hub.SystemSpec{MemoVersion: "1.1"})
	id, _ := e.put(hub.SystemQueue(v11.ID), authority, v11.ID, "1.2", true)
	f, err := e.svc.Fetch(ctx, v11, id)
	if err != nil {
		t.Fatal(err)
	}
	got := read(t, f)
	if f.Version != "1.1" || f.Size != int64(len(got)) {
		t.Fatalf("version %s size %d (read %d)", f.Version, f.Size, len(got))
	}
	m, err := memo.ParseBytes(got)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "1.1" || m.SchVersion == "" || m.MessageHeader.MessageUUID != id {
		t.Fatalf("converted message: version %q schVersion %q uuid %s", m.Version, m.SchVersion, m.MessageHeader.MessageUUID)
	}
	if _, err := e.svc.Ack(ctx, v11, id); err != nil {
		t.Fatal(err)
	}
}

func TestUnconvertibleMessageIsParkedAtOnce(t *testing.T) {
	e := newEnv(t, retrieval.Config{})
	sys := e.system(authority, hub.SystemSpec{MemoVersion: "1.2"})
	id, _ := e.put(hub.SystemQueue(sys.ID), authority, sys.ID, "1.1", false)
	// A second message whose stored content does not parse, so it cannot be converted.
	bad, _ := letter(t, "1.1", authority)
	badM := hub.Message{UUID: bad, SenderCVR: senderOrg, SenderSystemID: e.sender.ID, RecipientID: authority, MemoVersion: "1.1",
		Content: []byte("<Message>not a MeMo"), Size: 19, Received: e.clock.Now(), State: hub.MessageActive}
	q := hub.SystemQueue(sys.ID)
	d := hub.Delivery{ID: hub.DeliveryID(bad, q), MessageUUID: bad, Channel: hub.ChannelSystem, Queue: q, OrgCVR: authority, SystemID: sys.ID,
		Created: e.clock.Now(), AvailableAt: e.clock.Now(), State: hub.DeliveryReady}
	if err := e.store.PutMessage(ctx, badM, []hub.Delivery{d}, hub.Receipt{TransmissionID: "t-bad", SystemID: e.sender.ID, MessageUUID: bad}); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.Fetch(ctx, sys, bad)
	wantCode(t, err, hub.Conflict, "fetch of an unconvertible message")
	// Next skips the parked one and returns the good one.
	f, err := e.svc.Next(ctx, sys, 0)
	if err != nil || f.Message.UUID != id {
		t.Fatalf("Next = %v, %v", f, err)
	}
	read(t, f)
	parked, _ := e.svc.Parked(ctx, authority)
	if len(parked) != 1 || parked[0].MessageUUID != bad {
		t.Fatalf("parked %+v", parked)
	}
}

func TestInvalidBusinessReceiptParksAndTellsTheSender(t *testing.T) {
	e := newEnv(t, retrieval.Config{})
	sys := e.system(authority, hub.SystemSpec{})
	id, _ := e.put(hub.SystemQueue(sys.ID), authority, sys.ID, "1.1", false)
	f, err := e.svc.Fetch(ctx, sys, id)
	if err != nil {
		t.Fatal(err)
	}
	read(t, f)
	_, err = e.svc.Receipt(ctx, sys, id, retrieval.BusinessReceipt{Status: hub.ReceiptReceived}, "")
	wantCode(t, err, hub.Invalid, "receipt with status RECEIVED")
	if _, err := e.svc.Receipt(ctx, sys, id, retrieval.BusinessReceipt{Status: hub.ReceiptInvalid, ErrorCode: "bad.case"}, f.Lease.Token()); err != nil {
		t.Fatal(err)
	}
	d, err := e.store.GetDelivery(ctx, hub.DeliveryID(id, hub.SystemQueue(sys.ID)))
	if err != nil || d.State != hub.DeliveryParked {
		t.Fatalf("delivery after INVALID: %+v, %v", d, err)
	}
	r, _ := e.store.ReceiptFor(ctx, e.sender.ID, id)
	if r.Status != hub.ReceiptInvalid || r.ErrorCode != "bad.case" {
		t.Fatalf("sender receipt %+v", r)
	}
	// A COMPLETED receipt for the parked message still acknowledges it.
	if _, err := e.svc.Receipt(ctx, sys, id, retrieval.BusinessReceipt{Status: hub.ReceiptCompleted}, ""); err != nil {
		t.Fatal(err)
	}
	if r, _ := e.store.ReceiptFor(ctx, e.sender.ID, id); r.Status != hub.ReceiptCompleted {
		t.Fatalf("sender receipt after COMPLETED: %+v", r)
	}
}

func TestInvalidReceiptReleasesUnderReleasePolicy(t *testing.T) {
	e := newEnv(t, retrieval.Config{Invalid: retrieval.InvalidRelease, LeaseTTL: time.Hour})
	sys := e.system(authority, hub.SystemSpec{})
	id, _ := e.put(hub.SystemQueue(sys.ID), authority, sys.ID, "1.1", false)
	f, _ := e.svc.Fetch(ctx, sys, id)
	read(t, f)
	_, err := e.svc.Receipt(ctx, sys, id, retrieval.BusinessReceipt{Status: hub.ReceiptInvalid}, "garbage")
	wantCode(t, err, hub.Invalid, "INVALID without the lease token")
	if _, err := e.svc.Receipt(ctx, sys, id, retrieval.BusinessReceipt{Status: hub.ReceiptInvalid}, f.Lease.Token()); err != nil {
		t.Fatal(err)
	}
	f, err = e.svc.Fetch(ctx, sys, id) // at once, not after the hour
	if err != nil || f.Lease.Attempt != 2 {
		t.Fatalf("fetch after release: %v %+v", err, f)
	}
	read(t, f)
}

func TestFirstConnectionQueuesWaitingPostInArrivalOrder(t *testing.T) {
	e := newEnv(t, retrieval.Config{})
	authQ, cvrQ := hub.MailboxQueue(authority, hub.AuthorityPost), hub.MailboxQueue(authority, hub.CVRPost)
	var authIDs, cvrIDs []string
	for i := 0; i < 7; i++ {
		id, _ := e.put(authQ, authority, "", "1.1", i%2 == 0)
		authIDs = append(authIDs, id)
		e.clock.Add(time.Second)
	}
	for i := 0; i < 3; i++ {
		id, _ := e.put(cvrQ, authority, "", "1.1", false)
		cvrIDs = append(cvrIDs, id)
	}
	// A system of another organisation takes nothing.
	otherSys := e.system(other, hub.SystemSpec{})
	if n, err := e.svc.Connect(ctx, otherSys); err != nil || n != 0 {
		t.Fatalf("Connect of another org's system moved %d: %v", n, err)
	}
	def := e.system(authority, hub.SystemSpec{Default: true})
	n, err := e.svc.Connect(ctx, def)
	if err != nil || n != 7 {
		t.Fatalf("Connect(default) moved %d, %v; want 7", n, err)
	}
	cvr := e.system(authority, hub.SystemSpec{Mailbox: hub.CVRPost})
	if n, err := e.svc.Connect(ctx, cvr); err != nil || n != 3 {
		t.Fatalf("Connect(cvr) moved %d, %v; want 3", n, err)
	}
	for q, want := range map[string][]string{hub.SystemQueue(def.ID): authIDs, hub.SystemQueue(cvr.ID): cvrIDs} {
		ds, _ := e.store.ListQueue(ctx, q, 0, 100, true, e.clock.Now())
		if len(ds) != len(want) {
			t.Fatalf("%s holds %d, want %d", q, len(ds), len(want))
		}
		for i := range ds {
			if ds[i].MessageUUID != want[i] {
				t.Fatalf("%s[%d] = %s, want %s (arrival order)", q, i, ds[i].MessageUUID, want[i])
			}
		}
	}
	for _, q := range []string{authQ, cvrQ} {
		if n, _ := e.store.CountQueue(ctx, q); n != 0 {
			t.Fatalf("%s still holds %d", q, n)
		}
	}
	// Rerunning is harmless; a crash between add and ack is finished by it.
	id, _ := e.put(authQ, authority, "", "1.1", false)
	half := hub.Delivery{ID: hub.DeliveryID(id, hub.SystemQueue(def.ID)), MessageUUID: id, Channel: hub.ChannelSystem,
		Queue: hub.SystemQueue(def.ID), OrgCVR: authority, SystemID: def.ID, Created: e.clock.Now(), AvailableAt: e.clock.Now(), State: hub.DeliveryReady}
	if err := e.store.AddDeliveries(ctx, []hub.Delivery{half}); err != nil {
		t.Fatal(err)
	}
	if n, err := e.svc.Backfill(ctx, authority); err != nil || n != 1 {
		t.Fatalf("Backfill after a half move: %d, %v", n, err)
	}
	if c, _ := e.store.CountQueue(ctx, hub.SystemQueue(def.ID)); c != 8 {
		t.Fatalf("default queue holds %d, want 8", c)
	}
	// Every message is fetched and acknowledged exactly once from its system.
	for _, sys := range []hub.System{def, cvr} {
		for {
			f, err := e.svc.Next(ctx, sys, 0)
			if hub.Is(err, hub.NotFound) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			read(t, f)
			if _, err := e.svc.Ack(ctx, sys, f.Message.UUID); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, q := range []string{hub.SystemQueue(def.ID), hub.SystemQueue(cvr.ID)} {
		if n, _ := e.store.CountQueue(ctx, q); n != 0 {
			t.Fatalf("%s not empty: %d", q, n)
		}
	}
}

// setup changes an organisation's setup in the store.
func (e *env) setup(org string, setup hub.Setup) {
	e.t.Helper()
	o, err := e.store.GetOrg(ctx, org)
	if err == nil {
		o.Setup = setup
		err = e.store.UpdateOrg(ctx, o)
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

// mailboxOnlyReceiver registers a receiver system of a MAILBOX_ONLY
// organisation, which takes registering it while the organisation has
// system retrieval (a MAILBOX_ONLY organisation refuses new receivers).
func (e *env) mailboxOnlyReceiver(org string, sp hub.SystemSpec) hub.System {
	e.t.Helper()
	e.setup(org, hub.SetupSystemRetrieval)
	defer e.setup(org, hub.SetupMailboxOnly)
	return e.system(org, sp)
}

func TestMailboxOnlyOrganisationKeepsItsPost(t *testing.T) {
	e := newEnv(t, retrieval.Config{})
	q := hub.MailboxQueue(senderOrg, hub.AuthorityPost)
	e.put(q, senderOrg, "", "1.1", false)
	_, _, err := e.reg.RegisterSystem(ctx, senderOrg, hub.SystemSpec{Name: "receiver", Role: hub.RecipientSystem})
	wantCode(t, err, hub.Conflict, "registering a receiver system of a MAILBOX_ONLY organisation")
	sys := e.mailboxOnlyReceiver(senderOrg, hub.SystemSpec{})
	if n, err := e.svc.Connect(ctx, sys); err != nil || n != 0 {
		t.Fatalf("Connect moved %d, %v", n, err)
	}
	if n, _ := e.store.CountQueue(ctx, q); n != 1 {
		t.Fatalf("mailbox holds %d", n)
	}
}

func TestNextWaitsAndWakesOnDelivery(t *testing.T) {
	e := newEnv(t, retrieval.Config{PollInterval: time.Hour})
	sys := e.system(authority, hub.SystemSpec{})
	start := time.Now()
	if _, err := e.svc.Next(ctx, sys, 50*time.Millisecond); !hub.Is(err, hub.NotFound) {
		t.Fatalf("Next on an empty queue: %v", err)
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Fatalf("Next returned before its wait")
	}
	got := make(chan *retrieval.Fetched, 1)
	go func() {
		f, err := e.svc.Next(ctx, sys, 30*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- f
	}()
	// Delivered only once Next waits, so that the wake-up is what finds
	// it (the poll interval is an hour).
	waitFor(t, "Next to wait", func() bool { return e.svc.LongPolls() == 1 })
	id, _ := e.put(hub.SystemQueue(sys.ID), authority, sys.ID, "1.1", false)
	ds, _ := e.store.DeliveriesOf(ctx, id)
	e.svc.Delivered(ds)
	select {
	case f := <-got:
		if f == nil || f.Message.UUID != id {
			t.Fatalf("Next returned %+v", f)
		}
		read(t, f)
	case <-time.After(10 * time.Second):
		t.Fatal("Next was not woken by the delivery (poll interval is an hour)")
	}
}

func TestSystemFetchMovesMailboxAndReportsProgress(t *testing.T) {
	e := newEnv(t, retrieval.Config{})
	q := hub.MailboxQueue(senderOrg, hub.AuthorityPost) // MAILBOX_ONLY: nothing moves by itself
	var ids []string
	for i := 0; i < 5; i++ {
		id, _ := e.put(q, senderOrg, "", "1.1", false)
		ids = append(ids, id)
		e.clock.Add(time.Hour)
	}
	sys := e.mailboxOnlyReceiver(senderOrg, hub.SystemSpec{})
	cvrSys := e.mailboxOnlyReceiver(senderOrg, hub.SystemSpec{Mailbox: hub.CVRPost})
	mb := retrieval.MailboxID(senderOrg, hub.AuthorityPost)
	_, err := e.svc.StartFetch(ctx, cvrSys, mb, retrieval.FetchRequest{})
	wantCode(t, err, hub.Forbidden, "a CVR-post system fetching the authority mailbox")
	_, err = e.svc.StartFetch(ctx, sys, retrieval.MailboxID(authority, hub.AuthorityPost), retrieval.FetchRequest{})
	wantCode(t, err, hub.NotFound, "another organisation's mailbox")
	from := time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC) // leaves out the first message
	j, err := e.svc.StartFetch(ctx, sys, mb, retrieval.FetchRequest{From: &from})
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != retrieval.FetchRunning || j.Total != 4 {
		t.Fatalf("started job %+v", j)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err = e.svc.GetFetch(ctx, sys, mb, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		// Moved means queued to the system and gone from the mailbox: the
		// job's progress counts only messages whose move has finished.
		n, _ := e.store.CountQueue(ctx, hub.SystemQueue(sys.ID))
		left, _ := e.store.CountQueue(ctx, hub.MailboxQueue(senderOrg, hub.AuthorityPost))
		if n == 4 && left == 1 && j.Total == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job did not move the messages: %+v", j)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f, err := e.svc.Next(ctx, sys, 0)
	if err != nil || f.Message.UUID != ids[1] {
		t.Fatalf("first fetched %v, %v; want %s", f, err, ids[1])
	}
	read(t, f)
	if _, err := e.svc.Ack(ctx, sys, f.Message.UUID); err != nil {
		t.Fatal(err)
	}
	// The queues show the move before the job's record lists the moved
	// messages (it is saved once the move is done), and progress counts
	// only the listed ones: wait for the record.
	deadline = time.Now().Add(10 * time.Second)
	for {
		j, err = e.svc.GetFetch(ctx, sys, mb, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.Fetched != 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if j.Fetched != 1 || j.Total != 4 || j.Status != retrieval.FetchRunning {
		t.Fatalf("progress after one ack: %+v", j)
	}
	for {
		f, err := e.svc.Next(ctx, sys, 0)
		if hub.Is(err, hub.NotFound) {
			break
		}
		read(t, f)
		if _, err := e.svc.Ack(ctx, sys, f.Message.UUID); err != nil {
			t.Fatal(err)
		}
	}
	j, _ = e.svc.GetFetch(ctx, sys, mb, j.ID)
	if j.Status != retrieval.FetchFinished || j.Fetched != 4 || j.Finished == nil {
		t.Fatalf("job after draining: %+v", j)
	}
	list, err := e.svc.ListFetches(ctx, sys, mb, time.Time{})
	if err != nil || len(list) != 1 {
		t.Fatalf("ListFetches = %v, %v", list, err)
	}
	if n, _ := e.store.CountQueue(ctx, q); n != 1 {
		t.Fatalf("mailbox holds %d, want the one message before fromDateTime", n)
	}
	// A stopped job stays stopped.
	j2, err := e.svc.StartFetch(ctx, sys, mb, retrieval.FetchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	j2, err = e.svc.UpdateFetch(ctx, sys, mb, j2.ID, retrieval.FetchStopped)
	if err != nil || j2.Status != retrieval.FetchStopped {
		t.Fatalf("stop: %+v, %v", j2, err)
	}
	_, err = e.svc.UpdateFetch(ctx, sys, mb, j2.ID, retrieval.FetchRunning)
	wantCode(t, err, hub.Invalid, "restart a job")
}

func TestInactiveSystemIsFlagged(t *testing.T) {
	e := newEnv(t, retrieval.Config{InactiveAfter: 24 * time.Hour})
	busy := e.system(authority, hub.SystemSpec{})
	idle := e.system(authority, hub.SystemSpec{})
	e.put(hub.SystemQueue(idle.ID), authority, idle.ID, "1.1", false)
	if in, _ := e.svc.Inactive(ctx, authority); len(in) != 0 {
		t.Fatalf("inactive at once: %+v", in)
	}
	e.clock.Add(25 * time.Hour)
	in, err := e.svc.Inactive(ctx, authority)
	if err != nil || len(in) != 1 || in[0].System.ID != idle.ID || in[0].Waiting != 1 {
		t.Fatalf("Inactive = %+v, %v (busy system %s has no post)", in, err, busy.ID)
	}
	// Fetching makes it active again.
	f, _ := e.svc.Next(ctx, idle, 0)
	read(t, f)
	idle, _ = e.store.GetSystem(ctx, idle.ID)
	if in, _ := e.svc.Inactive(ctx, authority); len(in) != 0 {
		t.Fatalf("inactive after a fetch: %+v", in)
	}
}

// Wait returns only once the move a StartFetch began has ended (the stores
// may close then), and a StartFetch after it moves nothing: the job stays
// recorded as moving, and the next service's Run moves it.
func TestWaitOutlastsSystemFetchMoves(t *testing.T) {
	e := newEnv(t, retrieval.Config{})
	q := hub.MailboxQueue(senderOrg, hub.AuthorityPost)
	for i := 0; i < 3; i++ {
		e.put(q, senderOrg, "", "1.1", false)
	}
	sys := e.mailboxOnlyReceiver(senderOrg, hub.SystemSpec{})
	mb := retrieval.MailboxID(senderOrg, hub.AuthorityPost)
	j, err := e.svc.StartFetch(ctx, sys, mb, retrieval.FetchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	// No polling: once Wait has returned the move is over and recorded.
	if n, _ := e.store.CountQueue(ctx, hub.SystemQueue(sys.ID)); n != 3 {
		t.Fatalf("after Wait the system's queue holds %d, want 3", n)
	}
	if got, err := e.svc.GetFetch(ctx, sys, mb, j.ID); err != nil || got.Total != 3 {
		t.Fatalf("after Wait the job reads %+v, %v", got, err)
	}

	// After Wait: recorded, not moved.
	if _, err := e.svc.UpdateFetch(ctx, sys, mb, j.ID, retrieval.FetchStopped); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		e.put(q, senderOrg, "", "1.1", false)
	}
	j2, err := e.svc.StartFetch(ctx, sys, mb, retrieval.FetchRequest{})
	if err != nil || j2.Status != retrieval.FetchRunning || j2.Total != 2 {
		t.Fatalf("StartFetch after Wait: %+v, %v", j2, err)
	}
	e.svc.Wait()
	if n, _ := e.store.CountQueue(ctx, q); n != 2 {
		t.Fatalf("a StartFetch after Wait moved messages: the mailbox holds %d, want 2", n)
	}
	next := retrieval.New(retrieval.Config{TempDir: e.fx.Dir, PollInterval: 20 * time.Millisecond, ReconcileInterval: time.Hour},
		retrieval.Deps{Store: e.store, Blobs: e.blobs, Events: hub.StoreEvents{Store: e.store, Now: e.clock.Now}, Now: e.clock.Now})
	rctx, cancel := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { next.Run(rctx); close(ran) }()
	defer func() { cancel(); <-ran }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if n, _ := e.store.CountQueue(ctx, hub.SystemQueue(sys.ID)); n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the next service's Run did not move the job recorded after Wait")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFor polls cond until it holds, failing t after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
	}
}
