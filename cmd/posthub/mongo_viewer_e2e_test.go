package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/storage/mongo"
	"github.com/posthub/posthub/storage/s3"
	"github.com/posthub/posthub/viewer"
)

// TestMongoViewerEndToEnd: on the scale-out set-up (a `posthub serve`
// process with -metadata mongo on FerretDB and -blobs s3 on MinIO, all
// content in S3) the whole viewer side works as on the embedded default:
// a letter sent to a citizen is listed and read through the viewing-client
// API (which marks it read and logs MESSAGE_READ), marked unread and read
// again, shown to an authority under the citizen's consent and refused
// once it is revoked, listed and opened in the reference web mailbox,
// deleted into DELETED with a purge time and purged after the retention;
// and the citizen is notified by SMS exactly once.
func TestMongoViewerEndToEnd(t *testing.T) {
	uri := testservers.FerretDB(t)
	endpoint, access, secret := testservers.MinIO(t)
	db, bucket := testservers.DatabaseName(t), testservers.BucketName(t)
	const operator = "ph_mongo-viewer-operator"
	data := t.TempDir()
	p := startHubProcess(t, "-data", data, "-metadata", "mongo", "-mongo-uri", uri, "-mongo-db", db,
		"-blobs", "s3", "-s3-endpoint", endpoint, "-s3-access-key", access, "-s3-secret-key", secret, "-s3-bucket", bucket,
		"-inline-max", "0", "-operator-token", operator, "-web-mailbox", "-mailbox-demo-login")
	h := &testHub{t: t, base: p.base, operator: operator}
	w := h.setupWorld()

	// A viewing client with an Ed25519 assertion key.
	viewerID, viewerToken := h.system(orgA, map[string]any{"name": "Visningsklient", "role": "VIEWER"})
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	h.mustStatus(h.operatorJSON("POST", "/apis/v1/organisations/"+orgA+"/systems/"+viewerID+"/assertion-keys",
		map[string]string{"kid": "k1", "publicKey": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}), 201)
	as := func(cpr string) string {
		tok, err := viewer.SignAssertion(key, "k1", viewerID, "posthub", viewer.Person{CPR: cpr}, time.Now(), 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	call := func(method, path, token, assertion string) response {
		t.Helper()
		req, _ := http.NewRequest(method, h.base+path, nil)
		req.Header.Set("Authorization", "Basic "+token)
		if assertion != "" {
			req.Header.Set("X-User-Assertion", assertion)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return response{status: resp.StatusCode, body: b, header: resp.Header}
	}

	// smsPerson is registered for Digital Post and has a phone number: the
	// letter lands in the mailbox and an SMS notification is due.
	const label = "Afgørelse om boligstøtte"
	uuid, body := letterXML(t, memo.Letter{To: smsPerson, Label: label, SenderLabel: "Kommune A"})
	h.mustStatus(h.send(w.sender, uuid, body, ""), 201)

	box := "/apis/v1/mailboxes/" + smsPerson + "/messages/"
	letter := func(r response) viewer.Letter {
		t.Helper()
		var l viewer.Letter
		h.mustStatus(r, 200).json(t, &l)
		return l
	}
	list := func(folder string) []viewer.Letter {
		t.Helper()
		var ls []viewer.Letter
		h.mustStatus(call("GET", box+"?folder="+folder, viewerToken, as(smsPerson)), 200).list(t, &ls)
		return ls
	}
	if ls := list("INBOX"); len(ls) != 1 || ls[0].MessageUUID != uuid || ls[0].Read || ls[0].Label != label || ls[0].SenderName != "Kommune A" {
		t.Fatalf("inbox: %+v", ls)
	}
	if r := call("GET", box, viewerToken, as(citizen)); r.status != 403 {
		t.Fatalf("another citizen's assertion: %d, want 403", r.status)
	}

	// Rendering reads the content from S3 and marks the letter read.
	r := h.mustStatus(call("GET", box+uuid+"/render", viewerToken, as(smsPerson)), 200)
	if !strings.Contains(string(r.body), label) {
		t.Fatalf("rendered letter lacks its label:\n%.500s", r.body)
	}
	if l := letter(call("GET", box+uuid, viewerToken, as(smsPerson))); !l.Read {
		t.Fatal("rendering did not mark the letter read")
	}
	if l := letter(call("POST", box+uuid+"/unread", viewerToken, as(smsPerson))); l.Read {
		t.Fatal("still read after /unread")
	}
	if ls := list("INBOX"); len(ls) != 1 || ls[0].Read {
		t.Fatalf("inbox after /unread: %+v", ls)
	}
	if l := letter(call("POST", box+uuid+"/read", viewerToken, as(smsPerson))); !l.Read {
		t.Fatal("not read after /read")
	}

	// Consent: the sending authority sees its letter while the consent stands.
	consent := "/apis/v1/mailboxes/" + smsPerson + "/consents/" + orgA
	h.mustStatus(call("PUT", consent, viewerToken, as(smsPerson)), 200)
	var consented []viewer.Letter
	h.mustStatus(call("GET", "/apis/v1/consented/"+smsPerson+"/messages/", w.sender, ""), 200).list(t, &consented)
	if len(consented) != 1 || consented[0].MessageUUID != uuid {
		t.Fatalf("consented letters: %+v", consented)
	}
	h.mustStatus(call("GET", "/apis/v1/consented/"+smsPerson+"/messages/"+uuid, w.sender, ""), 200)
	if r := call("GET", "/apis/v1/consented/"+smsPerson+"/messages/", w.senderB, ""); r.status != 403 {
		t.Fatalf("an authority without consent: %d, want 403", r.status)
	}
	h.mustStatus(call("DELETE", consent, viewerToken, as(smsPerson)), 204)
	if r := call("GET", "/apis/v1/consented/"+smsPerson+"/messages/", w.sender, ""); r.status != 403 {
		t.Fatalf("after revocation: %d, want 403", r.status)
	}
	var cs []hub.Consent
	h.mustStatus(call("GET", "/apis/v1/mailboxes/"+smsPerson+"/consents/", viewerToken, as(smsPerson)), 200).list(t, &cs)
	if len(cs) != 1 || cs[0].Active() {
		t.Fatalf("consents after revocation: %+v", cs)
	}

	// The reference web mailbox (served by the same process) lists and
	// opens the letter.
	webMailboxShows(t, h.base, smsPerson, uuid, label)

	// Delete: into DELETED with a purge time, out of the inbox.
	h.mustStatus(call("DELETE", box+uuid, viewerToken, as(smsPerson)), 204)
	if l := letter(call("GET", box+uuid, viewerToken, as(smsPerson))); l.Folder != hub.FolderDeleted || l.PurgeAt == nil ||
		l.PurgeAt.Before(time.Now().Add(29*24*time.Hour)) {
		t.Fatalf("deleted letter: %+v", l)
	}
	if ls := list("INBOX"); len(ls) != 0 {
		t.Fatalf("inbox after delete: %+v", ls)
	}
	if ls := list("DELETED"); len(ls) != 1 || ls[0].MessageUUID != uuid {
		t.Fatalf("deleted folder: %+v", ls)
	}

	// What the process wrote, read back from FerretDB: the notification
	// was sent (spooled SMS) once, and the event log has the reads.
	store, err := mongo.Open(context.Background(), mongo.Config{URI: uri, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	deliveryID := hub.DeliveryID(uuid, hub.MailboxQueue(smsPerson, ""))
	nid := hub.NotificationID(deliveryID, hub.NotifySMS)
	spool := filepath.Join(data, "outbox", "sms-notify")
	deadline := time.Now().Add(90 * time.Second)
	var n hub.Notification
	for {
		n, err = store.GetNotification(ctx, nid)
		if err == nil && n.State == hub.NotificationSent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notification %s: %+v, %v (want SENT)\n%s", nid, n, err, p.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n.Attempts != 1 || n.Address != "+4512345678" || n.Party != smsPerson {
		t.Fatalf("notification: %+v", n)
	}
	files, _ := filepath.Glob(filepath.Join(spool, "*.json"))
	if len(files) != 1 {
		t.Fatalf("%d spooled SMS, want 1", len(files))
	}
	sms, _ := os.ReadFile(files[0])
	var m map[string]string
	if err := json.Unmarshal(sms, &m); err != nil || m["phone"] != "+4512345678" || !strings.Contains(m["text"], "Kommune A") ||
		strings.Contains(m["text"], label) {
		t.Fatalf("spooled SMS: %s (%v)", sms, err)
	}
	want := map[string]int{"MESSAGE_READ": 0, "MESSAGE_DELETED": 0, "NOTIFICATION_SENT": 0,
		viewer.TagConsentGranted: 0, viewer.TagConsentRevoked: 0, viewer.TagConsentAccess: 0}
	for {
		for k := range want {
			want[k] = 0
		}
		err := store.ScanEvents(ctx, 1, func(ev hub.Event) error {
			if _, ok := want[ev.Tag]; ok && (ev.MessageUUID == uuid || ev.Party == smsPerson) {
				want[ev.Tag]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		all := true
		for _, c := range want {
			all = all && c > 0
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sealed events of the letter: %v", want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Read twice (render, /read after /unread) is one first reading; the
	// notification is sent once.
	if want["MESSAGE_READ"] != 1 || want["NOTIFICATION_SENT"] != 1 {
		t.Fatalf("events: %v", want)
	}

	// Purge after the retention period, on the Mongo store and S3: the
	// delivery is acknowledged and the letter leaves the mailbox.
	blobs, err := s3.Open(ctx, s3.Config{Endpoint: endpoint, AccessKey: access, SecretKey: secret, Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	svc := &viewer.Service{Store: store, Mailboxes: store, Blobs: blobs,
		Now: func() time.Time { return time.Now().Add(31 * 24 * time.Hour) }}
	if purged, err := svc.Purge(ctx); err != nil || purged != 1 {
		t.Fatalf("purge: %d, %v; want 1", purged, err)
	}
	if ls := list("DELETED"); len(ls) != 0 {
		t.Fatalf("deleted folder after purge: %+v", ls)
	}
	if r := call("GET", box+uuid, viewerToken, as(smsPerson)); r.status != 404 {
		t.Fatalf("purged letter: %d, want 404", r.status)
	}
	if items, _ := store.MailboxItems(ctx, []string{deliveryID}); len(items) != 0 {
		t.Fatalf("state of the purged letter left: %+v", items)
	}
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// webMailboxShows logs in to the web mailbox at base as cpr and checks
// that the inbox lists the letter and its page shows it.
func webMailboxShows(t *testing.T, base, cpr, uuid, label string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	get := func(u string) string {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d\n%s", u, resp.StatusCode, b)
		}
		return string(b)
	}
	m := csrfRe.FindStringSubmatch(get(base + "/mailbox/"))
	if m == nil {
		t.Fatal("no CSRF token on the login page")
	}
	resp, err := c.PostForm(base+"/mailbox/login", url.Values{"csrf": {m[1]}, "cpr": {cpr}})
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/mailbox/box/"+cpr+"/" {
		t.Fatalf("login: %d at %s\n%s", resp.StatusCode, resp.Request.URL, inbox)
	}
	if !bytes.Contains(inbox, []byte(label)) || !bytes.Contains(inbox, []byte("messages/"+uuid)) {
		t.Fatalf("the web inbox does not list the letter:\n%s", inbox)
	}
	if page := get(base + "/mailbox/box/" + cpr + "/messages/" + uuid); !strings.Contains(page, label) {
		t.Fatalf("the letter page does not show the letter:\n%s", page)
	}
}
