package retrieval

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/posthub/posthub/hub"
)

// FetchStatus is a system-fetch job's state, as NgDP's SystemFetchStatusType.
type FetchStatus string

const (
	FetchRunning  FetchStatus = "RUNNING"
	FetchFinished FetchStatus = "FINISHED"
	FetchStopped  FetchStatus = "STOPPED"
)

// SystemFetch is a system-fetch job in NgDP's shape. MailboxID names an
// organisation's mailbox as "<cvr>:<AUTHORITY_POST|CVR_POST>".
type SystemFetch struct {
	ID             string      `json:"id"`
	Version        int64       `json:"version"`
	Created        time.Time   `json:"createdDateTime"`
	LastUpdated    time.Time   `json:"lastUpdated"`
	Finished       *time.Time  `json:"finishedDateTime,omitempty"`
	Status         FetchStatus `json:"systemFetchStatusType"`
	MailboxID      string      `json:"mailboxId"`
	OrgCVR         string      `json:"organisationId"`
	SystemID       string      `json:"systemId"`
	ContactPointID string      `json:"contactPointId,omitempty"`
	Total          int64       `json:"totalMessages"`
	Fetched        int64       `json:"fetchedMessages"`
	Failed         int64       `json:"failedMessages"`
	PreferOriginal bool        `json:"preferOriginalMessageRecipient"`
	From           *time.Time  `json:"fromDateTime,omitempty"`
	To             *time.Time  `json:"toDateTime,omitempty"`
}

// FetchRequest starts a system-fetch: the messages of the mailbox that
// arrived in [From, To) (open ends when nil) move to the calling system.
type FetchRequest struct {
	SystemID       string     `json:"systemId,omitempty"`
	ContactPointID string     `json:"contactPointId,omitempty"`
	PreferOriginal bool       `json:"preferOriginalMessageRecipient,omitempty"`
	From           *time.Time `json:"fromDateTime,omitempty"`
	To             *time.Time `json:"toDateTime,omitempty"`
}

// jobRecord is the stored form: the job plus what progress is derived from.
type jobRecord struct {
	SystemFetch
	// Moving is true until every matching message has been moved.
	Moving bool `json:"moving"`
	// Moved lists the UUIDs of the messages the job moved.
	Moved []string `json:"moved"`
}

const jobPrefix = "jobs/system-fetch/"

func jobKey(org, id string) string { return jobPrefix + org + "/" + id + ".json" }

// MailboxID names an organisation's mailbox in the system-fetch API.
func MailboxID(org string, kind hub.MailboxKind) string { return org + ":" + string(kind) }

// parseMailbox checks that a mailbox id names a mailbox sys serves: its own
// organisation's (NotFound otherwise: others' mailboxes do not exist for
// it) of its own kind (Forbidden otherwise).
func parseMailbox(sys hub.System, id string) (hub.MailboxKind, error) {
	org, k, ok := strings.Cut(id, ":")
	kind := hub.MailboxKind(k)
	if !ok || org != sys.OrgCVR || (kind != hub.AuthorityPost && kind != hub.CVRPost) {
		return "", hub.Errorf(hub.NotFound, "no mailbox %q for this system (mailbox ids are <cvr>:AUTHORITY_POST or <cvr>:CVR_POST)", id)
	}
	mine := sys.Mailbox
	if mine == "" {
		mine = hub.AuthorityPost
	}
	if kind != mine {
		return "", hub.Errorf(hub.Forbidden, "a %s system fetches the %s mailbox only", mine, mine)
	}
	return kind, nil
}

// background is the context jobs run in: Run's, or Background before Run.
func (s *Service) background() context.Context {
	if p := s.base.Load(); p != nil {
		return *p
	}
	return context.Background()
}

// StartFetch starts a system-fetch of mailboxID to sys and returns the job.
// Conflict "system.fetch.running" while another job of the mailbox moves
// messages.
func (s *Service) StartFetch(ctx context.Context, sys hub.System, mailboxID string, req FetchRequest) (SystemFetch, error) {
	if err := recipientOnly(sys); err != nil {
		return SystemFetch{}, err
	}
	kind, err := parseMailbox(sys, mailboxID)
	if err != nil {
		return SystemFetch{}, err
	}
	if req.SystemID != "" && req.SystemID != sys.ID {
		return SystemFetch{}, &hub.Error{Code: hub.Invalid, Message: "a system starts system-fetches to itself",
			Fields: []hub.FieldError{{Resource: "systemFetch", Field: "systemId", Code: "system.fetch.system.invalid",
				Message: "systemId must be the calling system", RejectedValue: req.SystemID}}}
	}
	if req.From != nil && req.To != nil && !req.To.After(*req.From) {
		return SystemFetch{}, &hub.Error{Code: hub.Invalid, Message: "toDateTime must be after fromDateTime",
			Fields: []hub.FieldError{{Resource: "systemFetch", Field: "toDateTime", Code: "system.fetch.period.invalid",
				Message: "toDateTime must be after fromDateTime"}}}
	}
	if len(req.ContactPointID) > maxContactPointID || strings.ContainsFunc(req.ContactPointID, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return SystemFetch{}, &hub.Error{Code: hub.Invalid, Message: "contactPointId is not a contact point's id",
			Fields: []hub.FieldError{{Resource: "systemFetch", Field: "contactPointId", Code: "system.fetch.contactpoint.invalid",
				Message: fmt.Sprintf("contactPointId is at most %d printable ASCII characters", maxContactPointID)}}}
	}
	// "One job moving per mailbox" is a read of the jobs and then a write:
	// the reads and writes of simultaneous starts of one organisation are
	// taken one at a time, on this instance and across instances.
	release, err := s.startLock(ctx, sys.OrgCVR)
	if err != nil {
		return SystemFetch{}, err
	}
	defer release()
	jobs, err := s.jobs(ctx, sys.OrgCVR)
	if err != nil {
		return SystemFetch{}, err
	}
	for _, j := range jobs {
		if j.MailboxID == mailboxID && j.Status == FetchRunning && j.Moving {
			return SystemFetch{}, conflict("system.fetch.running", "a system-fetch of this mailbox is moving messages; stop it or wait", j.ID)
		}
	}
	if err := s.pruneJobs(ctx, jobs); err != nil {
		return SystemFetch{}, err
	}
	queue := hub.MailboxQueue(sys.OrgCVR, kind)
	total, err := s.countMatching(ctx, queue, req.From, req.To)
	if err != nil {
		return SystemFetch{}, err
	}
	now := s.clock()
	j := jobRecord{SystemFetch: SystemFetch{ID: uuid.NewString(), Version: 1, Created: now, LastUpdated: now, Status: FetchRunning,
		MailboxID: mailboxID, OrgCVR: sys.OrgCVR, SystemID: sys.ID, ContactPointID: req.ContactPointID,
		Total: total, PreferOriginal: req.PreferOriginal, From: req.From, To: req.To}, Moving: true, Moved: []string{}}
	if err := s.putJob(ctx, j); err != nil {
		return SystemFetch{}, err
	}
	s.emit(ctx, hub.Event{ID: "retrieval:systemfetch:started:" + j.ID, Time: now, Tag: TagSystemFetchStart, Actor: holder(sys),
		Orgs: []string{sys.OrgCVR}, SystemID: sys.ID, Detail: map[string]string{"systemFetchId": j.ID, "mailboxId": mailboxID}})
	s.startJob(j.OrgCVR, j.ID)
	return j.SystemFetch, nil
}

// maxContactPointID bounds a system-fetch's contactPointId.
const maxContactPointID = 64

// keptJobs is how many ended (finished or stopped) system-fetches an
// organisation keeps to be listed; older ones that ended at least
// pruneAfter ago are deleted when the next one starts (a move that was
// still writing its last progress when its job was stopped has long
// finished by then, so a deleted job is not written back).
const (
	keptJobs   = 50
	pruneAfter = 10 * time.Minute
)

// startLock takes the organisation's system-fetch start lock: the
// instance's mutex, then the store's lock, waiting for another instance's
// start (which takes a few reads and one write) as long as ctx lets it.
func (s *Service) startLock(ctx context.Context, org string) (release func(), err error) {
	s.startMu.Lock()
	lock := "retrieval/fetchstart/" + org
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		ok, err := s.store.AcquireLock(ctx, lock, s.cfg.Instance, 30*time.Second, s.clock())
		if err != nil {
			s.startMu.Unlock()
			return nil, err
		}
		if ok {
			return func() {
				_ = s.store.ReleaseLock(context.WithoutCancel(ctx), lock, s.cfg.Instance)
				s.startMu.Unlock()
			}, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			s.startMu.Unlock()
			return nil, hub.Wrap(hub.Unavailable, ctx.Err(), "another system-fetch of the organisation is being started; try again")
		case <-t.C:
		}
	}
}

// pruneJobs deletes the organisation's ended jobs beyond the newest
// keptJobs (jobs is every job of one organisation).
func (s *Service) pruneJobs(ctx context.Context, jobs []jobRecord) error {
	var ended []jobRecord
	now := s.clock()
	for _, j := range jobs {
		if j.Status != FetchRunning {
			ended = append(ended, j)
		}
	}
	if len(ended) <= keptJobs {
		return nil
	}
	sort.Slice(ended, func(a, b int) bool { return ended[a].LastUpdated.After(ended[b].LastUpdated) })
	s.jobMu.Lock()
	defer s.jobMu.Unlock()
	for _, j := range ended[keptJobs:] {
		if now.Sub(j.LastUpdated) < pruneAfter {
			continue
		}
		if err := s.blobs.Delete(ctx, jobKey(j.OrgCVR, j.ID)); err != nil && !hub.Is(err, hub.NotFound) {
			return err
		}
	}
	return nil
}

// startJob moves a new job's messages in the background, in Run's context
// (without Run, to the end of the move). After Wait it starts nothing: the
// job is recorded as moving, and the next start's resumeJobs moves it.
func (s *Service) startJob(org, id string) {
	s.jobsMu.Lock()
	defer s.jobsMu.Unlock()
	if s.jobsStopped {
		return
	}
	s.moving.Add(1)
	go func() {
		defer s.moving.Done()
		s.runJob(s.background(), org, id)
	}()
}

// Wait stops StartFetch from starting moves and returns once those it
// started have ended (they end with Run's context, or with their move).
// Run waits for them before it returns, so that serve closes the stores
// only after them; a caller without Run calls Wait before closing them.
func (s *Service) Wait() {
	s.jobsMu.Lock()
	s.jobsStopped = true
	s.jobsMu.Unlock()
	s.moving.Wait()
}

// countMatching counts a mailbox queue's deliveries created in [from, to).
func (s *Service) countMatching(ctx context.Context, queue string, from, to *time.Time) (int64, error) {
	var n, after int64
	for {
		ds, err := s.store.ListQueue(ctx, queue, after, 1000, false, s.clock())
		if err != nil {
			return 0, err
		}
		for _, d := range ds {
			after = d.Seq
			if d.State != hub.DeliveryParked && inPeriod(d.Created, from, to) {
				n++
			}
		}
		if len(ds) < 1000 {
			return n, nil
		}
	}
}

func inPeriod(t time.Time, from, to *time.Time) bool {
	return (from == nil || !t.Before(*from)) && (to == nil || t.Before(*to))
}

// runJob moves a job's messages under the organisation's mailbox lock,
// recording progress after each batch; it returns quietly when another
// instance holds the lock (that instance, or a later resume, carries on).
func (s *Service) runJob(ctx context.Context, org, id string) {
	j, err := s.getJob(ctx, org, id)
	if err != nil || j.Status != FetchRunning || !j.Moving {
		return
	}
	sys, err := s.store.GetSystem(ctx, j.SystemID)
	if err != nil {
		s.log.Warn("retrieval: system-fetch without its system", "job", id, "error", err)
		return
	}
	if !sys.Active {
		s.stopForInactive(ctx, org, id, sys)
		return
	}
	kind := hub.MailboxKind(strings.TrimPrefix(j.MailboxID, org+":"))
	lock := "retrieval/mailbox/" + org
	renew := func() bool {
		ok, err := s.store.AcquireLock(ctx, lock, s.cfg.Instance, 2*time.Minute, s.clock())
		if err != nil || !ok {
			return false
		}
		cur, err := s.getJob(ctx, org, id)
		if err != nil || cur.Status != FetchRunning {
			return false
		}
		now, err := s.store.GetSystem(ctx, j.SystemID)
		return err == nil && now.Active
	}
	if !renew() {
		return
	}
	defer func() { _ = s.store.ReleaseLock(context.WithoutCancel(ctx), lock, s.cfg.Instance) }()
	var batch []string
	keep := func(d hub.Delivery) (bool, error) {
		if !inPeriod(d.Created, j.From, j.To) {
			return false, nil
		}
		batch = append(batch, d.MessageUUID)
		return true, nil
	}
	// Progress is saved once per batch: move's renew runs before each batch,
	// so the batch collected so far is recorded there.
	save := func() bool {
		if len(batch) > 0 {
			s.jobMu.Lock()
			cur, err := s.getJob(ctx, org, id)
			if err == nil {
				cur.Moved = append(cur.Moved, batch...)
				cur.LastUpdated = s.clock()
				cur.Version++
				err = s.putJob(ctx, cur)
			}
			s.jobMu.Unlock()
			if err != nil {
				return false
			}
			batch = batch[:0]
		}
		return renew()
	}
	_, err = s.move(ctx, hub.MailboxQueue(org, kind), sys, keep, "systemFetch", save)
	if err != nil {
		s.log.Warn("retrieval: system-fetch move", "job", id, "error", err)
		return
	}
	s.jobMu.Lock()
	defer s.jobMu.Unlock()
	cur, err := s.getJob(ctx, org, id)
	if err != nil {
		return
	}
	cur.Moved = append(cur.Moved, batch...)
	if cur.Status == FetchRunning {
		cur.Moving = false
		cur.Total = int64(len(cur.Moved))
	}
	cur.LastUpdated = s.clock()
	cur.Version++
	if err := s.putJob(ctx, cur); err != nil {
		s.log.Warn("retrieval: system-fetch record", "job", id, "error", err)
	}
}

// stopForInactive stops a running job whose system was deactivated since
// it started: nothing more goes to it, and the job ends (STOPPED) rather
// than be resumed in vain for ever.
func (s *Service) stopForInactive(ctx context.Context, org, id string, sys hub.System) {
	j, stopped, err := s.stopJob(ctx, org, id)
	if err != nil {
		s.log.Warn("retrieval: system-fetch record", "job", id, "error", err)
	}
	if stopped {
		s.emit(ctx, hub.Event{ID: "retrieval:systemfetch:stopped:" + j.ID, Time: *j.Finished, Tag: TagSystemFetchStop, Actor: "retrieval",
			Orgs: []string{org}, SystemID: sys.ID, Detail: map[string]string{"systemFetchId": j.ID, "mailboxId": j.MailboxID, "reason": "systemDeactivated"}})
	}
}

// stopJob marks a running job STOPPED (under jobMu) and reports whether it
// did; a job not running is returned as it is.
func (s *Service) stopJob(ctx context.Context, org, id string) (jobRecord, bool, error) {
	s.jobMu.Lock()
	defer s.jobMu.Unlock()
	j, err := s.getJob(ctx, org, id)
	if err != nil || j.Status != FetchRunning {
		return j, false, err
	}
	now := s.clock()
	j.Status, j.Moving, j.LastUpdated, j.Finished = FetchStopped, false, now, &now
	j.Version++
	if err := s.putJob(ctx, j); err != nil {
		return j, false, err
	}
	return j, true, nil
}

// GetFetch returns a job with its progress. NotFound for another
// organisation's job or mailbox.
func (s *Service) GetFetch(ctx context.Context, sys hub.System, mailboxID, id string) (SystemFetch, error) {
	if err := recipientOnly(sys); err != nil {
		return SystemFetch{}, err
	}
	if _, err := parseMailbox(sys, mailboxID); err != nil {
		return SystemFetch{}, err
	}
	j, err := s.getJob(ctx, sys.OrgCVR, id)
	if err != nil {
		return SystemFetch{}, err
	}
	if j.MailboxID != mailboxID {
		return SystemFetch{}, hub.Errorf(hub.NotFound, "no system-fetch %s of mailbox %s", id, mailboxID)
	}
	return s.progress(ctx, j)
}

// ListFetches returns a mailbox's jobs, newest first, with progress; from,
// when set, leaves out jobs created before it.
func (s *Service) ListFetches(ctx context.Context, sys hub.System, mailboxID string, from time.Time) ([]SystemFetch, error) {
	if err := recipientOnly(sys); err != nil {
		return nil, err
	}
	if _, err := parseMailbox(sys, mailboxID); err != nil {
		return nil, err
	}
	jobs, err := s.jobs(ctx, sys.OrgCVR)
	if err != nil {
		return nil, err
	}
	out := []SystemFetch{}
	for _, j := range jobs {
		if j.MailboxID != mailboxID || j.Created.Before(from) {
			continue
		}
		f, err := s.progress(ctx, j)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Created.After(out[b].Created) })
	return out, nil
}

// UpdateFetch changes a job's status; only STOPPED is accepted (a running
// job stops moving; messages already moved stay with the system).
func (s *Service) UpdateFetch(ctx context.Context, sys hub.System, mailboxID, id string, status FetchStatus) (SystemFetch, error) {
	if status != FetchStopped {
		return SystemFetch{}, &hub.Error{Code: hub.Invalid, Message: "a system-fetch can only be stopped",
			Fields: []hub.FieldError{{Resource: "systemFetch", Field: "systemFetchStatusType", Code: "system.fetch.status.invalid",
				Message: "systemFetchStatusType must be STOPPED", RejectedValue: string(status)}}}
	}
	if _, err := s.GetFetch(ctx, sys, mailboxID, id); err != nil {
		return SystemFetch{}, err
	}
	j, stopped, err := s.stopJob(ctx, sys.OrgCVR, id)
	if err != nil {
		return SystemFetch{}, err
	}
	if !stopped {
		return s.progress(ctx, j)
	}
	s.emit(ctx, hub.Event{ID: "retrieval:systemfetch:stopped:" + j.ID, Time: *j.Finished, Tag: TagSystemFetchStop, Actor: holder(sys),
		Orgs: []string{sys.OrgCVR}, SystemID: sys.ID, Detail: map[string]string{"systemFetchId": j.ID, "mailboxId": mailboxID}})
	return s.progress(ctx, j)
}

// progress fills the counts from the queues and finishes a job whose
// messages are all fetched or failed.
func (s *Service) progress(ctx context.Context, j jobRecord) (SystemFetch, error) {
	var fetched, failed int64
	for _, u := range j.Moved {
		d, err := s.store.GetDelivery(ctx, hub.DeliveryID(u, hub.SystemQueue(j.SystemID)))
		switch {
		case hub.Is(err, hub.NotFound):
			fetched++
		case err != nil:
			return SystemFetch{}, err
		case d.State == hub.DeliveryParked:
			failed++
		}
	}
	f := j.SystemFetch
	f.Fetched, f.Failed = fetched, failed
	if j.Moving {
		f.Total = max(f.Total, int64(len(j.Moved)))
	} else {
		f.Total = int64(len(j.Moved))
	}
	if j.Status == FetchRunning && !j.Moving && fetched+failed >= f.Total {
		now := s.clock()
		j.Status, j.Finished, j.LastUpdated = FetchFinished, &now, now
		j.Version++
		if err := s.putJob(ctx, j); err != nil {
			return SystemFetch{}, err
		}
		s.emit(ctx, hub.Event{ID: "retrieval:systemfetch:finished:" + j.ID, Time: now, Tag: TagSystemFetchFinish, Actor: "retrieval",
			Orgs: []string{j.OrgCVR}, SystemID: j.SystemID, Detail: map[string]string{"systemFetchId": j.ID, "mailboxId": j.MailboxID}})
		f.Status, f.Finished, f.LastUpdated, f.Version = j.Status, j.Finished, j.LastUpdated, j.Version
	}
	return f, nil
}

// resumeJobs carries on with jobs a stopped instance left moving and
// finishes jobs whose messages have all been fetched.
func (s *Service) resumeJobs(ctx context.Context) error {
	return s.blobs.List(ctx, jobPrefix, func(bi hub.BlobInfo) error {
		rest := strings.TrimSuffix(strings.TrimPrefix(bi.Key, jobPrefix), ".json")
		org, id, ok := strings.Cut(rest, "/")
		if !ok {
			return nil
		}
		j, err := s.getJob(ctx, org, id)
		if err != nil || j.Status != FetchRunning {
			return nil
		}
		if j.Moving {
			s.runJob(ctx, org, id)
			return nil
		}
		_, err = s.progress(ctx, j)
		return err
	})
}

func (s *Service) putJob(ctx context.Context, j jobRecord) error {
	b, err := json.Marshal(j)
	if err != nil {
		return hub.Wrap(hub.Internal, err, "encode system-fetch")
	}
	_, err = s.blobs.Put(ctx, jobKey(j.OrgCVR, j.ID), bytes.NewReader(b), int64(len(b)))
	return err
}

func (s *Service) getJob(ctx context.Context, org, id string) (jobRecord, error) {
	var j jobRecord
	if _, err := uuid.Parse(id); err != nil {
		return j, hub.Errorf(hub.NotFound, "no system-fetch %q", id)
	}
	rc, err := s.blobs.Open(ctx, jobKey(org, id))
	if hub.Is(err, hub.NotFound) {
		return j, hub.Errorf(hub.NotFound, "no system-fetch %s", id)
	}
	if err != nil {
		return j, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return j, hub.Wrap(hub.Unavailable, err, "read system-fetch")
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return j, hub.Wrap(hub.Internal, err, "decode system-fetch %s", id)
	}
	return j, nil
}

func (s *Service) jobs(ctx context.Context, org string) ([]jobRecord, error) {
	var out []jobRecord
	err := s.blobs.List(ctx, jobPrefix+org+"/", func(bi hub.BlobInfo) error {
		id := strings.TrimSuffix(strings.TrimPrefix(bi.Key, jobPrefix+org+"/"), ".json")
		j, err := s.getJob(ctx, org, id)
		if err != nil {
			return err
		}
		out = append(out, j)
		return nil
	})
	return out, err
}
