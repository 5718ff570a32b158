package viewer_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/hubtest"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/storage/bolt"
	"github.com/posthub/posthub/viewer"
)

const (
	authority = "11111111"
	other     = "33333333"
	citizen   = "0101701234"
	neighbour = "0202702345"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

type fixture struct {
	t      *testing.T
	ctx    context.Context
	store  *bolt.Store
	svc    *viewer.Service
	ingest *hub.Ingest
	sender map[string]hub.System
	viewer hub.System
	key    ed25519.PrivateKey
	now    time.Time
	events *[]hub.Event
}

type recorder struct{ evs *[]hub.Event }

func (r recorder) Emit(_ context.Context, evs ...hub.Event) error {
	*r.evs = append(*r.evs, evs...)
	return nil
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fx := hubtest.Open(t)
	s := fx.Store
	f := &fixture{t: t, ctx: context.Background(), store: s, sender: map[string]hub.System{}, now: t0, events: &[]hub.Event{}}
	clock := func() time.Time { return f.now }
	fx.Registry.Now = clock
	for _, o := range []hub.Organisation{{CVR: authority, Name: "Demo Kommune", Kind: hub.Authority, Setup: hub.SetupContactable},
		{CVR: other, Name: "Anden Myndighed", Kind: hub.Authority, Setup: hub.SetupContactable}} {
		fx.Org(o)
		f.sender[o.CVR], _ = fx.System(o.CVR, hub.SystemSpec{Name: "sender", Role: hub.SenderSystem})
	}
	f.viewer, _ = fx.System(authority, hub.SystemSpec{Name: "viewer", Role: hub.ViewerSystem})
	fx.Registered(citizen, neighbour)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	f.key = key
	der, _ := x509.MarshalPKIXPublicKey(pub)
	if err := s.PutAssertionKey(f.ctx, hub.AssertionKey{SystemID: f.viewer.ID, KeyID: "k1", Alg: "EdDSA", PublicKey: der, Created: t0}); err != nil {
		t.Fatal(err)
	}
	f.ingest = fx.Ingest(nil, 1<<20)
	f.ingest.Now = clock
	f.svc = &viewer.Service{Store: s, Mailboxes: s, Events: recorder{f.events}, Now: clock,
		Config: viewer.Config{Retention: 30 * 24 * time.Hour},
		Roles:  viewer.RolesFunc(func(_ context.Context, user, cvr string) (bool, error) { return user == "emp" && cvr == other, nil })}
	return f
}

// send submits a letter from org to citizen through the real ingest.
func (f *fixture) send(from, to, label string, notBefore time.Time) string {
	f.t.Helper()
	m := memo.NewLetter(memo.Letter{From: from, To: to, Label: label, Created: f.now, DoNotDeliverUntil: notBefore,
		Main: memo.PDF("brev.pdf", memo.SamplePDF(label)), Attachments: []memo.Attachment{{Filename: "bilag.txt", Data: []byte("bilag")}}})
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		f.t.Fatal(err)
	}
	sum := sha256.Sum256(b.Bytes())
	l := hub.Letter{UUID: m.MessageHeader.MessageUUID, MessageType: "DIGITALPOST", MemoVersion: "1.2", Label: label,
		SenderID: from, RecipientID: to, RecipientType: "CPR", Size: int64(b.Len()), NotBefore: notBefore}
	if _, _, err := f.ingest.Submit(f.ctx, hub.Submission{System: f.sender[from], Letter: l, Body: b.Bytes(),
		Size: int64(b.Len()), SHA256: hex.EncodeToString(sum[:])}); err != nil {
		f.t.Fatal(err)
	}
	return l.UUID
}

func (f *fixture) assertion(p viewer.Person) string {
	tok, err := viewer.SignAssertion(f.key, "k1", f.viewer.ID, "posthub", p, f.now, 5*time.Minute)
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

func TestAssertionRules(t *testing.T) {
	f := newFixture(t)
	good := f.assertion(viewer.Person{CPR: citizen})
	p, err := f.svc.VerifyAssertion(f.ctx, f.viewer, good)
	if err != nil || p.CPR != citizen {
		t.Fatalf("valid assertion: %+v, %v", p, err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	if err := f.store.PutAssertionKey(f.ctx, hub.AssertionKey{SystemID: f.viewer.ID, KeyID: "ec", Alg: "ES256", PublicKey: der}); err != nil {
		t.Fatal(err)
	}
	es, _ := viewer.SignAssertion(ecKey, "ec", f.viewer.ID, "posthub", viewer.Person{CPR: citizen}, f.now, time.Minute)
	if _, err := f.svc.VerifyAssertion(f.ctx, f.viewer, es); err != nil {
		t.Fatalf("ES256 assertion: %v", err)
	}
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte(citizen), []byte(neighbour), 1)) + "." + parts[2]
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	foreign, _ := viewer.SignAssertion(otherKey, "k1", f.viewer.ID, "posthub", viewer.Person{CPR: citizen}, f.now, time.Minute)
	expired, _ := viewer.SignAssertion(f.key, "k1", f.viewer.ID, "posthub", viewer.Person{CPR: citizen}, f.now.Add(-time.Hour), 5*time.Minute)
	future := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": f.viewer.ID, "aud": "posthub", "sub": citizen,
		"iat": f.now.Unix(), "nbf": f.now.Add(time.Hour).Unix(), "exp": f.now.Add(time.Hour + time.Minute).Unix()})
	future.Header["kid"] = "k1"
	notYet, _ := future.SignedString(f.key)
	wrongAud, _ := viewer.SignAssertion(f.key, "k1", f.viewer.ID, "someone-else", viewer.Person{CPR: citizen}, f.now, time.Minute)
	wrongIss, _ := viewer.SignAssertion(f.key, "k1", "another-system", "posthub", viewer.Person{CPR: citizen}, f.now, time.Minute)
	unknownKid, _ := viewer.SignAssertion(f.key, "k9", f.viewer.ID, "posthub", viewer.Person{CPR: citizen}, f.now, time.Minute)
	longLived, _ := viewer.SignAssertion(f.key, "k1", f.viewer.ID, "posthub", viewer.Person{CPR: citizen}, f.now, 24*time.Hour)
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": f.viewer.ID, "aud": "posthub", "sub": citizen,
		"iat": f.now.Unix(), "exp": f.now.Add(time.Minute).Unix()})
	hs.Header["kid"] = "k1"
	hmac, _ := hs.SignedString(der)
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"k1"}`)) + "." + parts[1] + "."
	wrongAlg := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": f.viewer.ID, "aud": "posthub", "sub": citizen,
		"iat": f.now.Unix(), "exp": f.now.Add(time.Minute).Unix()})
	wrongAlg.Header["kid"] = "ec"
	edAsEC, _ := wrongAlg.SignedString(f.key)
	noSub, _ := viewer.SignAssertion(f.key, "k1", f.viewer.ID, "posthub", viewer.Person{CPR: "not-a-cpr"}, f.now, time.Minute)
	for name, tok := range map[string]string{
		"tampered payload is refused":                   tampered,
		"signature by an unregistered key is refused":   foreign,
		"expired assertion is refused":                  expired,
		"assertion before nbf is refused":               notYet,
		"wrong audience is refused":                     wrongAud,
		"issuer other than the system is refused":       wrongIss,
		"unknown kid is refused":                        unknownKid,
		"lifetime over the maximum is refused":          longLived,
		"HMAC with the public key as secret is refused": hmac,
		"alg none is refused":                           none,
		"alg other than the key's is refused":           edAsEC,
		"subject that is not a CPR is refused":          noSub,
		"empty assertion is refused":                    "",
		"garbage is refused":                            "a.b.c",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.svc.VerifyAssertion(f.ctx, f.viewer, tok)
			if hub.ErrorCode(err) != hub.Unauthorized {
				t.Fatalf("got %v, want unauthorized", err)
			}
		})
	}
	t.Run("a non-viewer system cannot present assertions", func(t *testing.T) {
		_, err := f.svc.VerifyAssertion(f.ctx, f.sender[authority], good)
		if hub.ErrorCode(err) != hub.Forbidden {
			t.Fatalf("got %v, want forbidden", err)
		}
	})
}

func TestMailboxOwnership(t *testing.T) {
	f := newFixture(t)
	me := viewer.Person{SystemID: f.viewer.ID, CPR: citizen}
	if _, err := f.svc.Open(f.ctx, me, neighbour, ""); hub.ErrorCode(err) != hub.Forbidden {
		t.Fatalf("citizen opening another CPR's mailbox: %v", err)
	}
	if _, err := f.svc.Open(f.ctx, viewer.Person{UserID: "emp", CVR: other}, other, ""); err != nil {
		t.Fatalf("message employee: %v", err)
	}
	if _, err := f.svc.Open(f.ctx, viewer.Person{UserID: "intern", CVR: other}, other, ""); hub.ErrorCode(err) != hub.Forbidden {
		t.Fatalf("user without the role: %v", err)
	}
	if _, err := f.svc.Open(f.ctx, viewer.Person{UserID: "emp", CVR: other}, authority, ""); hub.ErrorCode(err) != hub.Forbidden {
		t.Fatalf("user of another organisation: %v", err)
	}
	uuid := f.send(authority, neighbour, "Naboens brev", time.Time{})
	box, _ := f.svc.Open(f.ctx, me, citizen, "")
	if _, err := f.svc.Get(f.ctx, box, uuid); hub.ErrorCode(err) != hub.NotFound {
		t.Fatalf("reading the neighbour's letter through my mailbox: %v", err)
	}
}

func TestMailboxLifecycleAndRetention(t *testing.T) {
	f := newFixture(t)
	a := f.send(authority, citizen, "Første", time.Time{})
	f.now = f.now.Add(time.Minute)
	b := f.send(other, citizen, "Andet", time.Time{})
	held := f.send(authority, citizen, "Senere", t0.AddDate(0, 0, 3))
	box, err := f.svc.Open(f.ctx, viewer.Person{SystemID: f.viewer.ID, CPR: citizen}, citizen, "")
	if err != nil {
		t.Fatal(err)
	}
	list := func(q viewer.Query) []string {
		t.Helper()
		p, err := f.svc.List(f.ctx, box, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range p.Letters {
			out = append(out, l.Label)
		}
		return out
	}
	if got := strings.Join(list(viewer.Query{}), ","); got != "Første,Andet" {
		t.Fatalf("inbox %q (held letter must not show)", got)
	}
	if got := strings.Join(list(viewer.Query{Sender: other}), ","); got != "Andet" {
		t.Fatalf("by sender %q", got)
	}
	p, _ := f.svc.List(f.ctx, box, viewer.Query{Size: 1})
	if len(p.Letters) != 1 || p.Next == 0 {
		t.Fatalf("paging: %+v", p)
	}
	if got := strings.Join(list(viewer.Query{After: p.Next}), ","); got != "Andet" {
		t.Fatalf("second page %q", got)
	}
	l, msg, err := f.svc.Read(f.ctx, box, a)
	if err != nil || !l.Read || msg.MessageHeader.Label != "Første" {
		t.Fatalf("read: %+v %v", l, err)
	}
	if got := strings.Join(list(viewer.Query{UnreadOnly: true}), ","); got != "Andet" {
		t.Fatalf("unread %q", got)
	}
	if _, err := f.svc.SetRead(f.ctx, box, a, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Move(f.ctx, box, b, hub.FolderArchive); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(list(viewer.Query{Folder: hub.FolderArchive}), ","); got != "Andet" {
		t.Fatalf("archive %q", got)
	}
	del, err := f.svc.Delete(f.ctx, box, a)
	if err != nil || del.Folder != hub.FolderDeleted || !del.PurgeAt.Equal(f.now.Add(30*24*time.Hour)) {
		t.Fatalf("delete: %+v %v", del, err)
	}
	if got := strings.Join(list(viewer.Query{}), ","); got != "" {
		t.Fatalf("inbox after delete %q", got)
	}
	f.now = f.now.Add(29 * 24 * time.Hour)
	if n, err := f.svc.Purge(f.ctx); err != nil || n != 0 {
		t.Fatalf("purge inside retention: %d %v", n, err)
	}
	if _, err := f.svc.Get(f.ctx, box, a); err != nil {
		t.Fatalf("deleted letter gone before its retention ended: %v", err)
	}
	if got := strings.Join(list(viewer.Query{Folder: hub.FolderDeleted}), ","); got != "Første" {
		t.Fatalf("deleted folder %q", got)
	}
	f.now = f.now.Add(2 * 24 * time.Hour)
	if n, err := f.svc.Purge(f.ctx); err != nil || n != 1 {
		t.Fatalf("purge after retention: %d %v", n, err)
	}
	if _, err := f.svc.Get(f.ctx, box, a); hub.ErrorCode(err) != hub.NotFound {
		t.Fatalf("purged letter still there: %v", err)
	}
	if _, err := f.store.GetMessage(f.ctx, a); hub.ErrorCode(err) != hub.NotFound {
		t.Logf("message record after purge: %v (kept while referenced)", err)
	}
	if got := strings.Join(list(viewer.Query{Folder: viewer.FolderAll}), ","); got != "Andet,Senere" {
		t.Fatalf("after purge and release of the held letter: %q", got)
	}
	_ = held
	var tags []string
	for _, e := range *f.events {
		tags = append(tags, e.Tag)
		if e.Tag == "MESSAGE_READ" {
			for _, o := range e.Orgs {
				if o == authority {
					t.Errorf("MESSAGE_READ names the sender in Orgs: %+v", e)
				}
			}
		}
	}
	for _, want := range []string{"MESSAGE_READ", "MESSAGE_MOVED", "MESSAGE_DELETED", viewer.TagMessagePurged} {
		if !strings.Contains(strings.Join(tags, " "), want) {
			t.Errorf("no %s event in %v", want, tags)
		}
	}
}

func TestConsentAccess(t *testing.T) {
	f := newFixture(t)
	mine := f.send(authority, citizen, "Fra kommunen", time.Time{})
	theirs := f.send(other, citizen, "Fra en anden", time.Time{})
	me := viewer.Person{SystemID: f.viewer.ID, CPR: citizen}
	sys := f.sender[authority]
	if _, err := f.svc.ConsentedLetters(f.ctx, sys, citizen, viewer.Query{}); hub.ErrorCode(err) != hub.Forbidden {
		t.Fatalf("without consent: %v", err)
	}
	if _, err := f.svc.Grant(f.ctx, me, authority); err != nil {
		t.Fatal(err)
	}
	p, err := f.svc.ConsentedLetters(f.ctx, sys, citizen, viewer.Query{})
	if err != nil || len(p.Letters) != 1 || p.Letters[0].MessageUUID != mine {
		t.Fatalf("consented list: %+v %v", p, err)
	}
	if _, _, err := f.svc.ConsentedLetter(f.ctx, sys, citizen, theirs, "fetch"); hub.ErrorCode(err) != hub.NotFound {
		t.Fatalf("another sender's letter under consent: %v", err)
	}
	if _, msg, err := f.svc.ConsentedLetter(f.ctx, sys, citizen, mine, "fetch"); err != nil || msg.MessageHeader.Label != "Fra kommunen" {
		t.Fatalf("own letter under consent: %v", err)
	}
	if _, err := f.svc.ConsentedLetters(f.ctx, f.sender[other], citizen, viewer.Query{}); hub.ErrorCode(err) != hub.Forbidden {
		t.Fatalf("authority without consent: %v", err)
	}
	if _, err := f.svc.Revoke(f.ctx, me, authority); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ConsentedLetters(f.ctx, sys, citizen, viewer.Query{}); hub.ErrorCode(err) != hub.Forbidden {
		t.Fatalf("after revoke: %v", err)
	}
	n := 0
	for _, e := range *f.events {
		if e.Tag == viewer.TagConsentAccess {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d CONSENT_ACCESS events, want 3 (list, fetch of other's letter, fetch)", n)
	}
}

// twoReaders holds every PutMailboxItem until two have arrived (or a
// deadline passed), so two first readings of one letter both see it
// unread, as two hub instances serving one citizen at once can.
type twoReaders struct {
	viewer.Mailboxes
	arrived chan struct{}
	both    chan struct{}
	once    sync.Once
}

func (b *twoReaders) PutMailboxItem(ctx context.Context, it hub.MailboxItem) error {
	b.arrived <- struct{}{}
	if len(b.arrived) == 2 {
		b.once.Do(func() { close(b.both) })
	}
	select {
	case <-b.both:
	case <-time.After(10 * time.Second):
	}
	return b.Mailboxes.PutMailboxItem(ctx, it)
}

// storeSink appends events to the store as the event log does (an event
// without an ID gets a fresh one; an ID the store has is skipped).
type storeSink struct{ s *bolt.Store }

func (k storeSink) Emit(ctx context.Context, evs ...hub.Event) error {
	for i := range evs {
		if evs[i].ID == "" {
			evs[i].ID = hub.NewID()
		}
	}
	return k.s.AppendEvents(ctx, evs)
}

// TestConcurrentFirstReadsLogOneRead: two first readings of one letter at
// once (two instances, or two tabs) log one MESSAGE_READ, not two: the
// event's ID is the delivery's, so the event store keeps one.
func TestConcurrentFirstReadsLogOneRead(t *testing.T) {
	f := newFixture(t)
	a := f.send(authority, citizen, "Første", time.Time{})
	gate := &twoReaders{Mailboxes: f.store, arrived: make(chan struct{}, 2), both: make(chan struct{})}
	svc := &viewer.Service{Store: f.store, Mailboxes: gate, Events: storeSink{f.store}, Now: func() time.Time { return f.now }}
	box, err := svc.Open(f.ctx, viewer.Person{SystemID: f.viewer.ID, CPR: citizen}, citizen, "")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); _, _, err := svc.Read(f.ctx, box, a); errs <- err }()
	go func() { defer wg.Done(); _, err := svc.SetRead(f.ctx, box, a, true); errs <- err }()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	evs, err := f.store.PendingEvents(f.ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	reads := 0
	for _, ev := range evs {
		if ev.Tag == "MESSAGE_READ" && ev.MessageUUID == a {
			reads++
		}
	}
	if reads != 1 {
		t.Fatalf("%d MESSAGE_READ events for two concurrent first readings, want 1", reads)
	}
	// Unread and read again: still the one first reading.
	if _, err := f.svc.SetRead(f.ctx, box, a, false); err != nil {
		t.Fatal(err)
	}
	svc.Mailboxes = f.store
	if _, _, err := svc.Read(f.ctx, box, a); err != nil {
		t.Fatal(err)
	}
	evs, _ = f.store.PendingEvents(f.ctx, 100)
	reads = 0
	for _, ev := range evs {
		if ev.Tag == "MESSAGE_READ" && ev.MessageUUID == a {
			reads++
		}
	}
	if reads != 1 {
		t.Fatalf("%d MESSAGE_READ events after unread and a second reading, want 1", reads)
	}
}

// TestHoldBoundsTheLettersParsedAtOnce: Hold reserves a letter's size of
// the parse budget until released; a request that does not fit waits, and
// gives up (Unavailable) when its context ends; a letter larger than the
// budget takes all of it rather than never fitting.
func TestHoldBoundsTheLettersParsedAtOnce(t *testing.T) {
	s := &viewer.Service{ParseBudget: 100}
	ctx := context.Background()
	first, err := s.Hold(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Hold(ended, 60); hub.ErrorCode(err) != hub.Unavailable {
		t.Fatalf("a letter that does not fit: %v, want unavailable", err)
	}
	small, err := s.Hold(ctx, 40)
	if err != nil {
		t.Fatalf("a letter that fits beside it: %v", err)
	}
	got := make(chan func(), 1)
	go func() {
		r, err := s.Hold(ctx, 1<<30) // larger than the budget: takes all of it
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	first()
	select {
	case <-got:
		t.Fatal("the large letter was let in while a small one held room")
	default:
	}
	small()
	(<-got)()
	if r, err := s.Hold(ctx, 100); err != nil {
		t.Fatalf("after every release the whole budget is free: %v", err)
	} else {
		r()
	}
}
