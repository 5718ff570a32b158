package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	mongodrv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/memo"
	"github.com/posthub/posthub/retrieval"
	"github.com/posthub/posthub/retrieval/client"
	"github.com/posthub/posthub/storage/mongo"
	"github.com/posthub/posthub/viewer"
)

// The scale-out set-up end to end (issue 15, item 5): three `posthub serve`
// processes share one FerretDB database and one MinIO bucket and nothing
// else. Everything in this file waits on conditions with deadlines; no
// assertion is about how long anything took (the figures are logged).

// threeInstances are the three processes, addressed by fixed base URLs: an
// instance restarted after a kill listens on the port it had.
type threeInstances struct {
	t     *testing.T
	args  func(data string) []string
	host  string
	mu    sync.Mutex
	procs [3]*hubProcess
	runs  []string // "instance i" of every process started, in order
	all   []*hubProcess
	data  [3]string
	addr  [3]string
}

func (ti *threeInstances) base(i int) string { return "http://" + ti.addr[i] }

// start starts instance i (on its old port when it had one).
func (ti *threeInstances) start(i int) {
	ti.t.Helper()
	addr := ti.addr[i]
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	p := startHubProcess(ti.t, append(ti.args(ti.data[i]), "-addr", addr)...)
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.procs[i] = p
	ti.all = append(ti.all, p)
	ti.runs = append(ti.runs, fmt.Sprintf("instance %d (pid %d)", i, p.cmd.Process.Pid))
	ti.addr[i] = strings.TrimPrefix(p.base, "http://")
}

// holder is instance i's name in locks and leases (serve's hostname/pid).
func (ti *threeInstances) holder(i int) string {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return fmt.Sprintf("%s/%d", ti.host, ti.procs[i].cmd.Process.Pid)
}

// kill SIGKILLs instance i and waits until it is gone.
func (ti *threeInstances) kill(i int) {
	ti.mu.Lock()
	p := ti.procs[i]
	ti.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (ti *threeInstances) logs() string {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	var b strings.Builder
	for n, p := range ti.all {
		fmt.Fprintf(&b, "--- %s: all but its successful requests\n", ti.runs[n])
		for _, l := range strings.Split(p.log(), "\n") {
			if !strings.Contains(l, "msg=request") || !strings.Contains(l, " status=2") {
				b.WriteString(l + "\n")
			}
		}
	}
	return b.String()
}

// lockHead is the head link of a lock chain in storage/mongo's locks
// collection (n: name, e: epoch, h: holder, "" once released; exp).
type lockHead struct {
	N   string    `bson:"n"`
	E   int64     `bson:"e"`
	H   string    `bson:"h"`
	Exp time.Time `bson:"exp"`
}

// lockHeads reads the head of every lock chain.
func lockHeads(ctx context.Context, locks *mongodrv.Collection) (map[string]lockHead, error) {
	cur, err := locks.Find(ctx, bson.M{})
	if err != nil {
		return nil, err
	}
	var all []lockHead
	if err := cur.All(ctx, &all); err != nil {
		return nil, err
	}
	heads := map[string]lockHead{}
	for _, l := range all {
		if h, ok := heads[l.N]; !ok || l.E > h.E {
			heads[l.N] = l
		}
	}
	return heads, nil
}

// lockTTL is the TTL each lock of a posthub serve process is taken with
// (see where each is acquired), so a dead holder's link must expire no
// later than its last renewal plus this.
func lockTTL(name string, sealer time.Duration) (time.Duration, bool) {
	switch {
	case name == "eventlog-seal":
		return sealer, true
	case name == "notifier", strings.HasPrefix(name, "retrieval/"):
		return 2 * time.Minute, true
	case name == "posthub-counter-compactor":
		return 5 * time.Minute, true
	}
	return 0, false
}

// letterJob is one letter a sender submits until it has a receipt (or,
// for giveUp letters, until an attempt's answer is lost).
type letterJob struct {
	uuid    string
	body    []byte
	target  int    // receiver system index; -1 for a letter to a citizen
	citizen string // the recipient when target is -1
	label   string
	giveUp  bool // a sender that does not resubmit when an answer is lost
}

type letterOutcome struct {
	receipted  bool
	answeredBy int
	tried      map[int]bool // instances the letter was sent to
}

// delivery is what one receiver system got of one message.
type delivery struct {
	system   string
	at       time.Time // the fetch's answer arrived
	complete time.Time // zero: the body was cut off
	expires  time.Time
	lease    string
	ackedAt  time.Time // zero: not acknowledged after this fetch
}

// TestThreeInstancesOneStore: three `posthub serve` processes on one
// FerretDB (PostgreSQL) database and one MinIO bucket, no shared memory.
// Senders send a few hundred letters concurrently through all three; the
// five receiver systems of an authority drain through all three; a
// citizen reads each letter to them through instances other than the one
// that accepted it, twice at once (and a few again in the web mailbox); an administrator grants a privilege on
// one instance that the grantee then holds on the others, and a revocation
// on another is in force on the rest within the policy poll interval.
// Mid-load the instance that holds the event log's sealer lease is
// SIGKILLed and, a while later, restarted on its port. Senders whose
// answer was lost resubmit the same message (the hub deduplicates), except
// one in three, which gives up; receivers retry on connection errors.
//
// Then: every letter that got a receipt is delivered to its designated
// system and acknowledged once (never fetched while a lease on it lived,
// never after its acknowledgement; the store has one fetched event for it
// and nothing left in any queue), letters without a receipt at most once;
// every letter read has exactly one MESSAGE_READ; `posthub eventlog verify`
// says the one chain verifies; and no lock of the killed instance was held
// past its TTL, its sealer lease being taken over by a live instance.
func TestThreeInstancesOneStore(t *testing.T) {
	uri := testservers.FerretDB(t)
	endpoint, access, secret := testservers.MinIO(t)
	db, bucket := testservers.DatabaseName(t), testservers.BucketName(t)
	const (
		operator  = "ph_three-instances-operator"
		leaseTTL  = 8 * time.Second
		sealerTTL = 10 * time.Second
		nLetters  = 120 // a quarter to citizens, the rest to receiver systems
		victim    = 1   // the instance killed is called B
	)
	// All instances sign sessions with one key, so a login is valid on each.
	t.Setenv("POSTHUB_SESSION_KEY", strings.Repeat("3c", 32))
	host, _ := os.Hostname()
	ti := &threeInstances{t: t, host: host, args: func(data string) []string {
		return []string{"-data", data, "-metadata", "mongo", "-mongo-uri", uri, "-mongo-db", db,
			"-blobs", "s3", "-s3-endpoint", endpoint, "-s3-access-key", access, "-s3-secret-key", secret, "-s3-bucket", bucket,
			"-inline-max", "0", "-operator-token", operator, "-lease-ttl", leaseTTL.String(), "-max-attempts", "100",
			"-eventlog-sealer-ttl", sealerTTL.String(), "-web-mailbox", "-mailbox-demo-login"}
	}}
	for i := range ti.data {
		ti.data[i] = t.TempDir()
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("instance logs:\n%s", ti.logs())
		}
	})
	bg := context.Background()
	mc, err := mongodrv.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Disconnect(bg)
	locks := mc.Database(db).Collection("locks")
	waitFor := func(what string, d time.Duration, cond func() (bool, error)) {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			ok, err := cond()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("waited %s for %s (last error: %v)", d, what, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// B starts first and so takes the sealer lease (and the notifier's
	// lock), which it keeps renewing: the kill then leaves leases behind.
	runStart := time.Now()
	ti.start(victim)
	waitFor("instance B to hold the sealer lease", time.Minute, func() (bool, error) {
		hs, err := lockHeads(bg, locks)
		return err == nil && hs["eventlog-seal"].H == ti.holder(victim), err
	})
	ti.start(0)
	ti.start(2)
	bases := []string{ti.base(0), ti.base(1), ti.base(2)}
	t.Logf("three instances up in %s: %v", time.Since(runStart).Round(time.Millisecond), bases)

	// The world, set up through A: an authority with five receiver systems
	// and a sender organisation (setupReceivers), citizens registered for
	// Digital Post, a viewing client, an administrator and a user.
	w := setupReceivers(t, bases[0], operator)
	op := &testHub{t: t, base: bases[0], operator: operator}
	citizens := []string{"0101801111", "0202802222", "0303803333", "0404804444"}
	csv := "id,digitalPost,nemSms,phone,address\n"
	for _, c := range citizens {
		csv += c + ",REGISTERED,false,,\n"
	}
	op.mustStatus(op.do("POST", "/apis/v1/contacts/import", operator, "text/csv", strings.NewReader(csv)), 200)
	viewerID, viewerToken := op.system(rwAuthority, map[string]any{"name": "Visningsklient", "role": "VIEWER"})
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	op.mustStatus(op.operatorJSON("POST", "/apis/v1/organisations/"+rwAuthority+"/systems/"+viewerID+"/assertion-keys",
		map[string]string{"kid": "k1", "publicKey": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}), 201)
	op.mustStatus(op.operatorJSON("POST", "/apis/v1/organisations/"+rwAuthority+"/users/",
		map[string]any{"id": "anne", "name": "Anne", "password": "anne-password-1", "privileges": []string{"ORGANISATION_ADMINISTRATOR"}}), 201)
	op.mustStatus(op.operatorJSON("POST", "/apis/v1/organisations/"+rwAuthority+"/users/",
		map[string]any{"id": "stine", "name": "Stine", "password": "stine-password-1"}), 201)
	t.Logf("set up after %s", time.Since(runStart).Round(time.Millisecond))

	privilegesAcrossInstances(t, bases)
	t.Logf("privileges checked after %s", time.Since(runStart).Round(time.Millisecond))

	// The letters: to the five receiver systems and to the citizens.
	var jobs []letterJob
	for i := 0; i < nLetters; i++ {
		j := letterJob{giveUp: i%3 == 0, target: -1}
		if i%4 == 1 {
			j.citizen, j.label = citizens[i%len(citizens)], fmt.Sprintf("Brev %d", i)
			m := memo.NewLetter(memo.Letter{From: rwSender, To: j.citizen, Label: j.label,
				Main: memo.PDF("a.pdf", []byte("%PDF-1.4 tiny"))})
			var b bytes.Buffer
			if _, err := m.WriteTo(&b); err != nil {
				t.Fatal(err)
			}
			j.uuid, j.body = m.MessageHeader.MessageUUID, b.Bytes()
		} else {
			j.target = i % 5
			j.uuid, j.body = w.designatedLetter(j.target)
		}
		jobs = append(jobs, j)
	}

	ctx, cancel := context.WithTimeout(bg, 4*time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}

	// Receivers: two pollers per system, each starting at its own
	// instance and moving on to the next one when a request fails.
	var (
		dmu        sync.Mutex
		deliveries = map[string][]*delivery{}
		acked      atomic.Int64
		ackedSet   = map[string]bool{}
	)
	stopPolling := make(chan struct{})
	var pollers sync.WaitGroup
	for si, sys := range w.systems {
		for p := 0; p < 2; p++ {
			pollers.Add(1)
			go func() {
				defer pollers.Done()
				at := (si + p) % 3
				backoff := func() {
					at = (at + 1) % 3
					time.Sleep(50 * time.Millisecond)
				}
				for ctx.Err() == nil {
					select {
					case <-stopPolling:
						return
					default:
					}
					c := client.New(bases[at], w.tokens[sys], hc)
					m, err := c.Next(ctx, 2*time.Second)
					if err != nil {
						if hub.ErrorCode(err) != hub.Unavailable && hub.ErrorCode(err) != hub.Internal {
							t.Errorf("system %d: next through %d: %v", si, at, err)
							return
						}
						backoff()
						continue
					}
					if m == nil {
						continue
					}
					d := &delivery{system: sys, at: time.Now(), expires: m.LeaseExpires, lease: m.Lease}
					body, err := io.ReadAll(m.Body)
					m.Close()
					dmu.Lock()
					deliveries[m.UUID] = append(deliveries[m.UUID], d)
					if err == nil {
						d.complete = time.Now()
					}
					dmu.Unlock()
					if err != nil { // cut off by the kill: the lease runs out
						backoff()
						continue
					}
					if m.Version != w.versions[sys] || !bytes.Contains(body, []byte(m.UUID)) {
						t.Errorf("message %s to system %d: version %s (want %s), %d bytes", m.UUID, si, m.Version, w.versions[sys], len(body))
					}
					for {
						err := client.New(bases[at], w.tokens[sys], hc).Ack(ctx, m.UUID)
						if err == nil {
							break
						}
						if ctx.Err() != nil {
							return
						}
						if c := hub.ErrorCode(err); c != hub.Unavailable && c != hub.Internal {
							t.Errorf("ack %s through %d: %v", m.UUID, at, err)
							return
						}
						backoff()
					}
					dmu.Lock()
					d.ackedAt = time.Now()
					if !ackedSet[m.UUID] {
						ackedSet[m.UUID] = true
						acked.Add(1)
					}
					dmu.Unlock()
				}
			}()
		}
	}

	// Citizen reads: each letter to a citizen, once accepted, is read twice
	// at once (rendered, and marked read) through instances other than
	// those it was sent to.
	assertion := func(cpr string) string {
		tok, err := viewer.SignAssertion(key, "k1", viewerID, "posthub", viewer.Person{CPR: cpr}, time.Now(), 5*time.Minute)
		if err != nil {
			t.Error(err)
		}
		return tok
	}
	type readJob struct {
		uuid, cpr string
		via       []int
	}
	reads := make(chan readJob, len(jobs))
	var (
		readMu   sync.Mutex
		readDone = map[string]int{} // uuid → readings answered 200
		readers  sync.WaitGroup
	)
	// read reads a letter through r.via[first] (moving on when that fails):
	// by rendering it, or by marking it read (POST .../read).
	read := func(r readJob, first int, render bool) {
		defer readers.Done()
		method, path := "POST", "/read"
		if render {
			method, path = "GET", "/render"
		}
		for n := 0; ctx.Err() == nil; n++ {
			at := r.via[(first+n)%len(r.via)]
			req, _ := http.NewRequestWithContext(ctx, method, bases[at]+"/apis/v1/mailboxes/"+r.cpr+"/messages/"+r.uuid+path, nil)
			req.Header.Set("Authorization", "Basic "+viewerToken)
			req.Header.Set(api.AssertionHeader, assertion(r.cpr))
			resp, err := hc.Do(req)
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if resp.StatusCode != 200 {
				t.Errorf("%s %s%s through %d: %d %s", method, r.uuid, path, at, resp.StatusCode, b)
				return
			}
			readMu.Lock()
			readDone[r.uuid]++
			readMu.Unlock()
			return
		}
	}
	readersDone := make(chan struct{})
	go func() {
		for r := range reads {
			readers.Add(2)
			go read(r, 0, true)
			go read(r, 1, false)
		}
		readers.Wait()
		close(readersDone)
	}()

	// Senders: six, spread over the three instances.
	var (
		omu       sync.Mutex
		outcomes  = map[string]*letterOutcome{}
		accepted  atomic.Int64
		resubmits atomic.Int64
		senders   sync.WaitGroup
		next      atomic.Int64
		inFlight  [3]atomic.Int64 // submissions under way, per instance
	)
	send := func(s int, j letterJob) {
		o := &letterOutcome{tried: map[int]bool{}, answeredBy: -1}
		defer func() {
			omu.Lock()
			outcomes[j.uuid] = o
			omu.Unlock()
		}()
		for attempt := 0; ctx.Err() == nil; attempt++ {
			at := (s + attempt) % 3
			o.tried[at] = true
			req, _ := http.NewRequestWithContext(ctx, "POST", bases[at]+"/apis/v1/memos/?memo-message-uuid="+j.uuid, bytes.NewReader(j.body))
			req.Header.Set("Authorization", "Basic "+w.sender)
			req.Header.Set("Content-Type", "application/xml")
			inFlight[at].Add(1)
			resp, err := hc.Do(req)
			status := 0
			var b []byte
			if err == nil {
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				status = resp.StatusCode
			}
			inFlight[at].Add(-1)
			if err == nil && (status == 200 || status == 201) {
				o.receipted, o.answeredBy = true, at
				if attempt > 0 {
					resubmits.Add(1)
				}
				accepted.Add(1)
				if j.target < 0 {
					var via []int
					for i := range 3 {
						if !o.tried[i] {
							via = append(via, i)
						}
					}
					if len(via) == 0 {
						via = []int{(at + 1) % 3}
					}
					reads <- readJob{uuid: j.uuid, cpr: j.citizen, via: via}
				}
				return
			}
			if err == nil && status < 500 {
				t.Errorf("send %s through %d: %d %s", j.uuid, at, status, b)
				return
			}
			// The answer was lost (the connection broke or was refused,
			// or the instance answered unavailable): resubmit the same
			// bytes elsewhere, unless this sender gives up.
			if j.giveUp && !isRefused(err) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for s := 0; s < 6; s++ {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) || ctx.Err() != nil {
					return
				}
				send(s, jobs[i])
			}
		}()
	}

	// Mid-load: kill B once 40% of the letters are accepted, while
	// submissions to it are under way (or after 30 s of waiting for that),
	// and restart it on its port once another 10% are accepted (by A and
	// C alone).
	waitFor("40% of the letters accepted", 2*time.Minute, func() (bool, error) {
		return accepted.Load() >= int64(len(jobs))*4/10 || t.Failed(), nil
	})
	for until := time.Now().Add(30 * time.Second); inFlight[victim].Load() < 2 && time.Now().Before(until); {
		time.Sleep(time.Millisecond)
	}
	cutOff := inFlight[victim].Load()
	oldHolder := ti.holder(victim)
	ti.kill(victim)
	killedAt := time.Now()
	atKill, err := lockHeads(bg, locks)
	if err != nil {
		t.Fatal(err)
	}
	var heldAtKill []string
	for name, h := range atKill {
		if h.H == oldHolder && h.Exp.After(killedAt) {
			heldAtKill = append(heldAtKill, fmt.Sprintf("%s until kill+%s", name, h.Exp.Sub(killedAt).Round(time.Millisecond)))
		}
	}
	sort.Strings(heldAtKill)
	t.Logf("B (%s) killed after %s with %d letters accepted and %d submissions to it under way; it held: %v", oldHolder,
		time.Since(runStart).Round(time.Millisecond), accepted.Load(), cutOff, heldAtKill)

	// Leases of the dead instance: every link it holds must end within its
	// TTL of the kill (it can renew nothing), and the sealer lease must be
	// taken over by a live instance within its TTL (plus a margin for a
	// loaded machine's sealer loop), so the chain goes on.
	leaseWatch := make(chan leaseReport, 1)
	go func() { leaseWatch <- watchDeadLeases(locks, oldHolder, killedAt, sealerTTL) }()

	atKillAccepted := accepted.Load()
	waitFor("another 10% of the letters accepted by A and C", 2*time.Minute, func() (bool, error) {
		return accepted.Load() >= atKillAccepted+int64(len(jobs))/10 || int(next.Load()) >= len(jobs) || t.Failed(), nil
	})
	ti.start(victim)
	t.Logf("B restarted on %s after %s (down %s)", bases[victim], time.Since(runStart).Round(time.Millisecond),
		time.Since(killedAt).Round(time.Millisecond))

	senders.Wait()
	close(reads)
	omu.Lock()
	var receipted, unknown []string
	for _, j := range jobs {
		if o := outcomes[j.uuid]; o != nil && o.receipted {
			receipted = append(receipted, j.uuid)
		} else {
			unknown = append(unknown, j.uuid)
		}
	}
	omu.Unlock()
	t.Logf("sent %d letters after %s: %d with a receipt (%d after a resubmission), %d given up without one",
		len(jobs), time.Since(runStart).Round(time.Millisecond), len(receipted), resubmits.Load(), len(unknown))
	if ctx.Err() != nil {
		t.Fatalf("the senders ran out of time")
	}

	// Drained: every receipted letter to a system acknowledged, then every
	// queue empty (letters given up that the hub accepted are drained too).
	store, err := mongo.Open(bg, mongo.Config{URI: uri, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	byUUID := map[string]letterJob{}
	for _, j := range jobs {
		byUUID[j.uuid] = j
	}
	waitFor("every receipted letter acknowledged and every queue empty", 2*time.Minute, func() (bool, error) {
		if t.Failed() {
			return true, nil
		}
		dmu.Lock()
		missing := 0
		for _, id := range receipted {
			if byUUID[id].target >= 0 && !ackedSet[id] {
				missing++
			}
		}
		dmu.Unlock()
		if missing > 0 {
			return false, fmt.Errorf("%d receipted letters not acknowledged", missing)
		}
		for _, sys := range w.systems {
			if n, err := store.CountQueue(bg, hub.SystemQueue(sys)); err != nil || n != 0 {
				return false, fmt.Errorf("system %s: %d queued (%v)", sys, n, err)
			}
		}
		return true, nil
	})
	close(stopPolling)
	pollers.Wait()
	<-readersDone
	// The citizen also opens letters in the reference web mailbox, on an
	// instance that did not accept them (already read: no second event).
	webRead := 0
	for _, j := range jobs {
		if o := outcomes[j.uuid]; j.target < 0 && o.receipted && webRead < 3 {
			for k := range 3 {
				if !o.tried[k] {
					webMailboxShows(t, bases[k], j.citizen, j.uuid, j.label)
					webRead++
					break
				}
			}
		}
	}
	t.Logf("drained after %s: %d messages acknowledged", time.Since(runStart).Round(time.Millisecond), acked.Load())

	// The receivers' side: each message delivered (fetched whole and
	// acknowledged) once; a second whole fetch only after the lease of the
	// first ran out unacknowledged, never while a lease lived and never
	// after an acknowledgement; only by its designated system.
	refetched := 0
	dmu.Lock()
	for id, ds := range deliveries {
		j, ok := byUUID[id]
		if !ok || j.target < 0 {
			t.Errorf("a receiver system fetched %s, which was not sent to a system", id)
			continue
		}
		var ackedAt time.Time
		leases := map[string]bool{}
		for i, d := range ds {
			if d.system != w.systems[j.target] {
				t.Errorf("message %s fetched by system %s, designated %s", id, d.system, w.systems[j.target])
			}
			if leases[d.lease] {
				t.Errorf("message %s: lease %s handed out twice", id, d.lease)
			}
			leases[d.lease] = true
			if !ackedAt.IsZero() && d.at.After(ackedAt) {
				t.Errorf("message %s fetched again at %s after its acknowledgement at %s", id, d.at, ackedAt)
			}
			if !d.ackedAt.IsZero() && ackedAt.IsZero() {
				ackedAt = d.ackedAt
			}
			if i > 0 {
				refetched++
			}
		}
		if ackedAt.IsZero() {
			t.Errorf("message %s fetched %d times, never acknowledged", id, len(ds))
		}
		// No two leases overlapped, judged by the hub's own expiries (each
		// the grant plus leaseTTL) in grant order, not by when the pollers
		// logged their fetches.
		byGrant := slices.Clone(ds)
		slices.SortFunc(byGrant, func(a, b *delivery) int { return a.expires.Compare(b.expires) })
		for i := 1; i < len(byGrant); i++ {
			if granted := byGrant[i].expires.Add(-leaseTTL); granted.Before(byGrant[i-1].expires.Add(-50 * time.Millisecond)) {
				t.Errorf("message %s: lease %s granted at %s while lease %s lived until %s", id, byGrant[i].lease, granted, byGrant[i-1].lease, byGrant[i-1].expires)
			}
		}
	}
	for _, id := range receipted {
		if j := byUUID[id]; j.target >= 0 && !ackedSet[id] {
			t.Errorf("receipted letter %s was not delivered", id)
		}
	}
	delivered := len(ackedSet)
	dmu.Unlock()

	// The store's side, once the sealer has sealed everything.
	waitFor("every event sealed", 90*time.Second, func() (bool, error) {
		p, err := store.PendingEvents(bg, 10)
		return err == nil && len(p) == 0, err
	})
	type count struct{ received, fetched, read int }
	ev := map[string]*count{}
	sealed := 0
	if err := store.ScanEvents(bg, 1, func(e hub.Event) error {
		sealed++
		c := ev[e.MessageUUID]
		if c == nil {
			c = &count{}
			ev[e.MessageUUID] = c
		}
		switch e.Tag {
		case "MEMO_SEND_RECEIVED":
			c.received++
		case retrieval.TagFetched:
			c.fetched++
		case "MESSAGE_READ":
			c.read++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A letter is accepted when the store committed it: for a letter to a
	// system, when it was delivered (its queue is empty now); for a letter
	// to a citizen, when its message is there. Its MEMO_SEND_RECEIVED is
	// written after the commit (storage/mongo's PutMessageWith: a crash can
	// lose a commit's events, never its message), so an accepted letter
	// whose sender got no answer may lack it; one with a receipt may not.
	acceptedGivenUp, receivedLost := 0, 0
	for _, j := range jobs {
		c := ev[j.uuid]
		if c == nil {
			c = &count{}
		}
		receiptedLetter := outcomes[j.uuid].receipted
		dmu.Lock()
		delivered := ackedSet[j.uuid]
		dmu.Unlock()
		accepted := delivered
		if j.target < 0 {
			_, err := store.GetMessage(bg, j.uuid)
			accepted = err == nil
		}
		if c.received > 1 || c.fetched > 1 || c.read > 1 {
			t.Errorf("letter %s: %d MEMO_SEND_RECEIVED, %d fetched, %d MESSAGE_READ events, want at most 1 each", j.uuid, c.received, c.fetched, c.read)
		}
		switch {
		case receiptedLetter && (!accepted || c.received != 1):
			t.Errorf("receipted letter %s: stored %v, %d MEMO_SEND_RECEIVED events (want stored, 1)", j.uuid, accepted, c.received)
		case !receiptedLetter && !accepted && c.received > 0:
			t.Errorf("letter %s has a MEMO_SEND_RECEIVED event but is not stored (nor delivered)", j.uuid)
		case !receiptedLetter && accepted:
			acceptedGivenUp++
			if c.received == 0 {
				receivedLost++
			}
		}
		if j.target >= 0 && delivered != (c.fetched == 1) {
			t.Errorf("letter %s to a system: delivered %v, %d fetched events", j.uuid, delivered, c.fetched)
		}
		if j.target < 0 && receiptedLetter {
			readMu.Lock()
			n := readDone[j.uuid]
			readMu.Unlock()
			if n != 2 {
				t.Errorf("letter %s to a citizen read %d times, want 2", j.uuid, n)
			}
			if c.read != 1 {
				t.Errorf("letter %s read %d times (through two instances at once): %d MESSAGE_READ events, want 1", j.uuid, n, c.read)
			}
		}
	}

	// The one chain verifies, said by the command an auditor runs.
	out, err := exec.Command(posthubBinary(t), "eventlog", "verify", "-metadata", "mongo", "-mongo-uri", uri, "-mongo-db", db).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "OK") {
		t.Errorf("posthub eventlog verify: %v\n%s", err, out)
	}

	lr := <-leaseWatch
	for _, p := range lr.problems {
		t.Error(p)
	}
	t.Logf("leases of the killed instance: %s", lr.summary)
	t.Logf("figures: %d letters sent, %d with a receipt, %d given up (%d of those accepted all the same, "+
		"%d of these without MEMO_SEND_RECEIVED), "+
		"%d delivered to receiver systems (%d fetched again after a lease ran out), %d citizen letters read twice each (%d of them "+
		"a third time in the web mailbox), "+
		"%d sealed events, verify: %s, run %s",
		len(jobs), len(receipted), len(unknown), acceptedGivenUp, receivedLost, delivered, refetched, len(readDone), webRead, sealed,
		strings.TrimSpace(string(out)), time.Since(runStart).Round(time.Millisecond))
}

// leaseReport is what watchDeadLeases saw.
type leaseReport struct {
	summary  string
	problems []string
}

// watchDeadLeases reads the lock heads until a live instance holds the
// sealer lease, at most sealerTTL plus a minute (for a loaded machine's
// sealer loop) after the kill. Every lock the dead holder still heads must
// expire within its TTL of the kill: it can renew nothing.
func watchDeadLeases(locks *mongodrv.Collection, dead string, killedAt time.Time, sealerTTL time.Duration) leaseReport {
	var r leaseReport
	seen := map[string]bool{}
	deadline := killedAt.Add(sealerTTL + time.Minute)
	for {
		hs, err := lockHeads(context.Background(), locks)
		if err == nil {
			for name, h := range hs {
				if h.H != dead || seen[name] {
					continue
				}
				seen[name] = true
				ttl, ok := lockTTL(name, sealerTTL)
				switch {
				case !ok:
					r.problems = append(r.problems, fmt.Sprintf("lock %q is held by the killed instance; its TTL is unknown to this test", name))
				case h.Exp.After(killedAt.Add(ttl + time.Second)):
					r.problems = append(r.problems, fmt.Sprintf("lock %q of the killed instance lasts until kill+%s, its TTL is %s",
						name, h.Exp.Sub(killedAt), ttl))
				}
			}
			if seal := hs["eventlog-seal"]; seal.H != dead && seal.H != "" && seal.Exp.After(time.Now()) {
				var held []string
				for name := range seen {
					held = append(held, name)
				}
				sort.Strings(held)
				r.summary = fmt.Sprintf("it headed %v; the sealer lease was taken over by %s %s after the kill (TTL %s)",
					held, seal.H, time.Since(killedAt).Round(time.Millisecond), sealerTTL)
				return r
			}
		}
		if time.Now().After(deadline) {
			r.problems = append(r.problems, fmt.Sprintf("the sealer lease was not taken over within %s of the kill (last error %v)",
				deadline.Sub(killedAt), err))
			return r
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// isRefused reports whether err is a refused connection: the request never
// reached a hub, so even a sender that gives up on lost answers sends it on.
func isRefused(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection refused")
}

// privilegesAcrossInstances: Anne (organisation administrator) grants
// Stine STATISTICS_ADMINISTRATOR through instance A; Stine then reads the
// statistics through B and C. Anne revokes it through B; within the policy
// poll interval Stine is refused through A and C. A grant or revocation
// ends the grantee's sessions on every instance, so Stine logs in again
// after each; what is polled for is the policy itself.
func privilegesAcrossInstances(t *testing.T, bases []string) {
	t.Helper()
	c := loginClient("", nil)
	stats := "/apis/v1/organisations/" + rwAuthority + "/statistics/?period=month"
	login := func(base, user, pw string) apiLogin {
		t.Helper()
		r := postLogin(t, c, base, user, pw)
		if r.status != 200 || r.cookie == nil {
			t.Fatalf("login %s at %s: %d", user, base, r.status)
		}
		return r
	}
	// pollStatus waits until GET stats through base answers want.
	pollStatus := func(base string, s apiLogin, want int, what string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			got := withCookie(t, c, "GET", base+stats, s.cookie, s.csrf)
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: statistics through %s answer %d, want %d", what, base, got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	stine := login(bases[1], "stine", "stine-password-1")
	for _, b := range bases {
		if got := withCookie(t, c, "GET", b+stats, stine.cookie, stine.csrf); got != 403 {
			t.Fatalf("statistics before the grant, through %s: %d, want 403", b, got)
		}
	}
	anne := login(bases[0], "anne", "anne-password-1")
	body, _ := json.Marshal(map[string]string{"userId": "stine", "privilege": "STATISTICS_ADMINISTRATOR"})
	req, _ := http.NewRequest("POST", bases[0]+"/apis/v1/organisations/"+rwAuthority+"/privileges/", bytes.NewReader(body))
	req.AddCookie(anne.cookie)
	req.Header.Set("X-CSRF-Token", anne.csrf)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("grant through A: %d %s", resp.StatusCode, b)
	}
	pollStatus(bases[2], stine, 401, "Stine's session from before the grant")
	granted := login(bases[1], "stine", "stine-password-1")
	pollStatus(bases[1], granted, 200, "granted through A")
	pollStatus(bases[2], granted, 200, "granted through A")

	if got := withCookie(t, c, "DELETE", bases[1]+"/apis/v1/organisations/"+rwAuthority+"/privileges/stine/STATISTICS_ADMINISTRATOR",
		anne.cookie, anne.csrf); got != 200 && got != 204 {
		t.Fatalf("revoke through B: %d", got)
	}
	revoked := login(bases[2], "stine", "stine-password-1")
	pollStatus(bases[0], revoked, 403, "revoked through B")
	pollStatus(bases[2], revoked, 403, "revoked through B")
	pollStatus(bases[0], granted, 401, "Stine's session from before the revocation")
}
