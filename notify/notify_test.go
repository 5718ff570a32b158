package notify_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/notify"
	"github.com/posthub/posthub/storage/bolt"
)

// mailServer is a real SMTP server (github.com/emersion/go-smtp, with
// STARTTLS) on loopback that files every accepted message in the
// recipient's mailbox: the test's stand-in for exim or postfix.
type mailServer struct {
	addr string
	mu   sync.Mutex
	box  map[string][]string // recipient → raw messages
	// refuse makes the next n RCPTs fail with 451 (a temporary failure).
	refuse int
}

func startMailServer(t *testing.T) *mailServer {
	t.Helper()
	ms := &mailServer{box: map[string][]string{}}
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{ms: ms}, nil }))
	s.Domain = "localhost"
	s.TLSConfig = selfSigned(t)
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms.addr = ln.Addr().String()
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Close() })
	return ms
}

func (ms *mailServer) mailbox(rcpt string) []string {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]string(nil), ms.box[rcpt]...)
}

type session struct {
	ms   *mailServer
	rcpt []string
}

func (s *session) Reset()                                      { s.rcpt = nil }
func (s *session) Logout() error                               { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error { return nil }
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.ms.mu.Lock()
	defer s.ms.mu.Unlock()
	if s.ms.refuse > 0 {
		s.ms.refuse--
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	s.rcpt = append(s.rcpt, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.ms.mu.Lock()
	defer s.ms.mu.Unlock()
	for _, to := range s.rcpt {
		s.ms.box[to] = append(s.ms.box[to], string(b))
	}
	return nil
}

func selfSigned(t *testing.T) *tls.Config {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

type recorder struct {
	mu  sync.Mutex
	evs []hub.Event
}

func (r *recorder) Emit(_ context.Context, evs ...hub.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, evs...)
	return nil
}

func (r *recorder) tags() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, e := range r.evs {
		s = append(s, e.Tag)
	}
	return strings.Join(s, " ")
}

const (
	authority = "11111111"
	citizen   = "0101701234"
)

type world struct {
	store  *bolt.Store
	ingest *hub.Ingest
	sender hub.System
	n      *notify.Notifier
	ev     *recorder
	now    time.Time
	smsDir string
}

func newWorld(t *testing.T, ms *mailServer) *world {
	s, err := bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	w := &world{store: s, ev: &recorder{}, now: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC), smsDir: t.TempDir()}
	clock := func() time.Time { return w.now }
	reg := &hub.Registry{Store: s, Now: clock}
	if _, err := reg.CreateOrg(ctx, hub.Organisation{CVR: authority, Name: "Demo Kommune", Kind: hub.Authority, Setup: hub.SetupContactable}); err != nil {
		t.Fatal(err)
	}
	w.sender, _, err = reg.RegisterSystem(ctx, authority, hub.SystemSpec{Name: "s", Role: hub.SenderSystem})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutContacts(ctx, []hub.Contact{{ID: citizen, Status: hub.Registered, Email: "borger@example.org", Phone: "+4512345678"}}); err != nil {
		t.Fatal(err)
	}
	w.n = &notify.Notifier{Store: s, Mailboxes: s, Events: w.ev, Holder: "test", Now: clock, Backoff: time.Minute, MaxAttempts: 3,
		Mail: notify.SMTP{Addr: ms.addr, From: "posthub@example.org", InsecureSkipVerify: true}, SMS: notify.SpoolSMS{Dir: w.smsDir},
		MailboxURL: "https://post.example.org/mailbox/"}
	w.ingest = &hub.Ingest{Store: s, Router: &hub.Router{Store: s}, InlineMax: 1 << 20, Now: clock, Delivered: w.n.Hook}
	return w
}

func (w *world) send(t *testing.T, notification string, notBefore time.Time) string {
	m := memo.NewLetter(memo.Letter{From: authority, To: citizen, Label: "Hemmelig titel", Notification: notification,
		Created: w.now, DoNotDeliverUntil: notBefore, Main: memo.PDF("brev.pdf", memo.SamplePDF("x"))})
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b.Bytes())
	l := hub.Letter{UUID: m.MessageHeader.MessageUUID, MessageType: "DIGITALPOST", MemoVersion: "1.2", Label: "Hemmelig titel",
		SenderID: authority, RecipientID: citizen, RecipientType: "CPR", Size: int64(b.Len()), NotBefore: notBefore}
	if _, _, err := w.ingest.Submit(context.Background(), hub.Submission{System: w.sender, Letter: l, Body: b.Bytes(),
		Size: int64(b.Len()), SHA256: hex.EncodeToString(sum[:])}); err != nil {
		t.Fatal(err)
	}
	return l.UUID
}

func TestEmailNotificationArrivesInRealSMTPServer(t *testing.T) {
	ms := startMailServer(t)
	w := newWorld(t, ms)
	ctx := context.Background()
	w.send(t, "Du har fået et brev om din børnehaveplads", time.Time{})
	n, err := w.n.Send(ctx)
	if err != nil || n != 2 {
		t.Fatalf("sent %d, %v; want 2 (e-mail and SMS)", n, err)
	}
	box := ms.mailbox("borger@example.org")
	if len(box) != 1 {
		t.Fatalf("mailbox has %d messages, want 1", len(box))
	}
	for _, want := range []string{"From: posthub@example.org", "To: borger@example.org", "Subject: New Digital Post from Demo Kommune",
		"Du har fået et brev om din børnehaveplads", "https://post.example.org/mailbox/"} {
		if !strings.Contains(box[0], want) {
			t.Errorf("mail lacks %q:\n%s", want, box[0])
		}
	}
	if strings.Contains(box[0], "Hemmelig titel") {
		t.Error("the letter's title leaked into the notification")
	}
	files, _ := filepath.Glob(filepath.Join(w.smsDir, "*.json"))
	if len(files) != 1 {
		t.Fatalf("%d SMS spool files, want 1", len(files))
	}
	raw, _ := os.ReadFile(files[0])
	var sms map[string]string
	_ = json.Unmarshal(raw, &sms)
	if sms["phone"] != "+4512345678" || sms["text"] != "Du har fået et brev om din børnehaveplads" {
		t.Fatalf("SMS %v", sms)
	}
	if n, _ := w.n.Send(ctx); n != 0 || len(ms.mailbox("borger@example.org")) != 1 {
		t.Fatal("a notification was sent twice")
	}
	if got := w.ev.tags(); got != "NOTIFICATION_SENT NOTIFICATION_SENT" {
		t.Fatalf("events %q", got)
	}
}

func TestNotificationRetriesThenFails(t *testing.T) {
	ms := startMailServer(t)
	w := newWorld(t, ms)
	w.n.SMS = nil
	ctx := context.Background()
	ms.refuse = 1
	w.send(t, "", time.Time{})
	if n, _ := w.n.Send(ctx); n != 0 {
		t.Fatal("sent despite 451")
	}
	if n, _ := w.n.Send(ctx); n != 0 {
		t.Fatal("retried before the back-off")
	}
	w.now = w.now.Add(time.Minute)
	if n, err := w.n.Send(ctx); n != 1 || err != nil {
		t.Fatalf("retry: %d %v", n, err)
	}
	if box := ms.mailbox("borger@example.org"); len(box) != 1 || !strings.Contains(box[0], "You have received new Digital Post from Demo Kommune.") {
		t.Fatalf("mailbox %v", box)
	}
	ms.refuse = 100
	w.send(t, "", time.Time{})
	for i := 0; i < 5; i++ {
		_, _ = w.n.Send(ctx)
		w.now = w.now.Add(time.Hour)
	}
	if !strings.HasSuffix(w.ev.tags(), "NOTIFICATION_FAILED") {
		t.Fatalf("events %q, want a final NOTIFICATION_FAILED", w.ev.tags())
	}
}

func TestHeldLetterIsNotifiedOnRelease(t *testing.T) {
	ms := startMailServer(t)
	w := newWorld(t, ms)
	w.n.SMS = nil
	ctx := context.Background()
	release := time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)
	uuid := w.send(t, "", release)
	// Held letters do not fire the Delivered hook; the event log carries them.
	lease, err := w.store.LeaseSealer(ctx, hub.SealerLease{Holder: "test"}, time.Hour, w.now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.SealEvents(ctx, lease, []hub.Event{{ID: "e1", Seq: 1, Time: w.now, Tag: "DELAYED_MEMO_SEND_VALIDATED_AWAITING_DELAY",
		MessageUUID: uuid, Hash: "h1"}}); err != nil {
		t.Fatal(err)
	}
	if n, err := w.n.Reconcile(ctx); err != nil || n != 1 {
		t.Fatalf("reconcile: %d %v", n, err)
	}
	if n, _ := w.n.Reconcile(ctx); n != 0 {
		t.Fatal("cursor not kept")
	}
	if n, _ := w.n.Send(ctx); n != 0 {
		t.Fatal("notified before release")
	}
	w.now = release.Add(time.Minute)
	if n, err := w.n.Send(ctx); n != 1 || err != nil {
		t.Fatalf("after release: %d %v", n, err)
	}
}
