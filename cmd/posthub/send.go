package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posthub/posthub/api"
	"github.com/posthub/posthub/memo"
)

// cmdSend runs `posthub send`: submit MeMos (files, directories of .xml
// files, or lzma-compressed tar archives for mass send) and summarise the
// receipts.
func runSend(env *Env, args []string) int {
	stdout, stderr := env.Stdout, env.Stderr
	fset := newFlagSet(env, "posthub send", "[flags] FILE|DIR|ARCHIVE.tar.lzma ...")
	base := fset.String("url", envOr(env, "POSTHUB_URL", "http://localhost:8080"), "hub base URL (POSTHUB_URL)")
	token := fset.String("token", env.Getenv("POSTHUB_TOKEN"), "sender system API token (POSTHUB_TOKEN)")
	mode := fset.String("mode", "", "delivery mode: AUTOMATIC, DIGITAL, PRINT, NEMSMS")
	archive := fset.String("archive", "", "sent-archive copy: FORWARD_ONLY, FORWARD_ELSE_KEEP, FORWARD_AND_KEEP")
	workers := fset.Int("c", 4, "concurrent uploads")
	asJSON := fset.Bool("json", false, "print every receipt as JSON lines")
	quiet := fset.Bool("q", false, "no progress bar")
	retries := fset.Int("retries", 3, "resubmit a MeMo file whose answer was lost (no answer, or 502/503/504) up to this many times, with backoff; the hub answers an identical resubmission with the first receipt")
	if rc := parseFlags(fset, args); rc >= 0 {
		return rc
	}
	if *token == "" {
		return usageError(env, fset, "a sender token is needed (-token or POSTHUB_TOKEN)")
	}
	if fset.NArg() == 0 {
		return usageError(env, fset, "missing argument FILE|DIR|ARCHIVE")
	}
	var files, archives []string
	var total int64
	for _, a := range fset.Args() {
		st, err := os.Stat(a)
		if err != nil {
			fmt.Fprintln(stderr, "posthub send:", err)
			return 2
		}
		switch {
		case st.IsDir():
			ents, err := os.ReadDir(a)
			if err != nil {
				fmt.Fprintln(stderr, "posthub send:", err)
				return 2
			}
			for _, e := range ents {
				if !e.IsDir() && strings.HasSuffix(strings.ToLower(e.Name()), ".xml") {
					p := filepath.Join(a, e.Name())
					if fi, err := e.Info(); err == nil {
						total += fi.Size()
					}
					files = append(files, p)
				}
			}
		case isArchive(a):
			archives = append(archives, a)
			total += st.Size()
		default:
			files = append(files, a)
			total += st.Size()
		}
	}
	s := &sender{base: strings.TrimRight(*base, "/"), token: *token, mode: *mode, archive: *archive, retries: max(0, *retries),
		client: &http.Client{Timeout: 30 * time.Minute}, counts: map[string]int{}}
	prog := newProgress(stderr, len(files)+len(archives), total, !*quiet && (len(files) > 20 || total > 10<<20))
	s.prog = prog
	ctx := context.Background()
	jobs := make(chan string)
	var wg sync.WaitGroup
	for i := 0; i < max(1, *workers); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range jobs {
				s.sendFile(ctx, f)
			}
		}()
	}
	for _, f := range files {
		jobs <- f
	}
	close(jobs)
	wg.Wait()
	for _, a := range archives {
		s.sendArchive(ctx, a)
	}
	prog.done()
	return s.summary(stdout, *asJSON)
}

func envOr(env *Env, k, def string) string {
	if v := env.Getenv(k); v != "" {
		return v
	}
	return def
}

func isArchive(p string) bool {
	p = strings.ToLower(p)
	return strings.HasSuffix(p, ".lzma") || strings.HasSuffix(p, ".xz") || strings.HasSuffix(p, ".tlz")
}

type sendResult struct {
	File    string          `json:"file"`
	Status  int             `json:"httpStatus"`
	Receipt json.RawMessage `json:"receipt,omitempty"`
	Error   string          `json:"error,omitempty"`
}

type sender struct {
	base, token, mode, archive string
	retries                    int           // resubmissions of a file whose answer was lost
	backoff                    time.Duration // wait before the first resubmission (default 500 ms), doubled up to 5 s
	client                     *http.Client
	prog                       *progress
	mu                         sync.Mutex
	results                    []sendResult
	counts                     map[string]int
}

func (s *sender) query(extra url.Values) string {
	q := url.Values{}
	if s.mode != "" {
		q.Set("mode", s.mode)
	}
	if s.archive != "" {
		q.Set("archive", s.archive)
	}
	for k, v := range extra {
		q[k] = v
	}
	return s.base + "/apis/v1/memos/?" + q.Encode()
}

func (s *sender) record(r sendResult, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.results = append(s.results, r)
	s.counts[status]++
}

func (s *sender) post(ctx context.Context, u, ctype string, f *os.File, size int64) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, s.prog.reader(f))
	if err != nil {
		return 0, nil, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Basic "+s.token)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, body, err
}

func (s *sender) sendFile(ctx context.Context, path string) {
	defer s.prog.fileDone()
	m, err := memo.ParseFile(path)
	if err != nil {
		s.record(sendResult{File: path, Error: "not a MeMo: " + err.Error()}, "LOCAL_ERROR")
		return
	}
	f, err := os.Open(path)
	if err != nil {
		s.record(sendResult{File: path, Error: err.Error()}, "LOCAL_ERROR")
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	// A MeMo is idempotent by its UUID: when the answer is lost (the
	// connection refused or broken, or a proxy or the hub saying 502, 503
	// or 504) the same bytes are sent again, and a hub that accepted them
	// the first time answers with that receipt.
	u := s.query(url.Values{"memo-message-uuid": {m.MessageHeader.MessageUUID}})
	wait := s.backoff
	if wait <= 0 {
		wait = 500 * time.Millisecond
	}
	status, body, err := s.post(ctx, u, "application/xml", f, st.Size())
	for try := 0; try < s.retries && (err != nil || status == http.StatusBadGateway ||
		status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout); try++ {
		if _, serr := f.Seek(0, io.SeekStart); serr != nil {
			break
		}
		time.Sleep(wait)
		wait = min(2*wait, 5*time.Second)
		status, body, err = s.post(ctx, u, "application/xml", f, st.Size())
	}
	if err != nil {
		s.record(sendResult{File: path, Error: err.Error()}, "TRANSPORT_ERROR")
		return
	}
	var rc struct {
		Status string `json:"receiptStatus"`
		Code   string `json:"code"`
	}
	_ = json.Unmarshal(body, &rc)
	label := rc.Status
	if status >= 300 {
		label = fmt.Sprintf("HTTP %d %s", status, rc.Code)
	}
	s.record(sendResult{File: path, Status: status, Receipt: json.RawMessage(bytes.TrimSpace(body))}, label)
}

func (s *sender) sendArchive(ctx context.Context, path string) {
	defer s.prog.fileDone()
	f, err := os.Open(path)
	if err != nil {
		s.record(sendResult{File: path, Error: err.Error()}, "LOCAL_ERROR")
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	status, body, err := s.post(ctx, s.query(nil), "application/x-lzma", f, st.Size())
	if err != nil {
		s.record(sendResult{File: path, Error: err.Error()}, "TRANSPORT_ERROR")
		return
	}
	if status >= 300 {
		s.record(sendResult{File: path, Status: status, Receipt: json.RawMessage(bytes.TrimSpace(body))}, fmt.Sprintf("HTTP %d", status))
		return
	}
	var bulk api.BulkReceipts
	if err := json.Unmarshal(body, &bulk); err != nil {
		s.record(sendResult{File: path, Status: status, Error: "unreadable answer: " + err.Error()}, "TRANSPORT_ERROR")
		return
	}
	for _, rc := range bulk.Receipts {
		b, _ := json.Marshal(rc)
		s.record(sendResult{File: path, Status: status, Receipt: b}, string(rc.Status))
	}
	// The hub stopped reading the archive part-way (a bound, or a broken
	// archive): the entries from StoppedAt on were not sent.
	if e, at := bulk.ArchiveError, bulk.StoppedAt; e != nil && at != nil {
		code := e.Code
		if len(e.FieldErrors) > 0 {
			code = e.FieldErrors[0].Code
		}
		s.record(sendResult{File: path, Status: status, Error: fmt.Sprintf("the hub stopped reading at entry %d (%s); "+
			"it and the entries after it were not sent: %s: %s", at.Entry, at.Name, code, e.Message)}, "ARCHIVE_STOPPED")
	}
}

func (s *sender) summary(w io.Writer, asJSON bool) int {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, r := range s.results {
			_ = enc.Encode(r)
		}
	} else {
		for _, r := range s.results {
			if r.Error != "" {
				fmt.Fprintf(w, "%s: %s\n", r.File, r.Error)
			} else if r.Status >= 300 {
				fmt.Fprintf(w, "%s: HTTP %d %s\n", r.File, r.Status, r.Receipt)
			}
		}
	}
	keys := make([]string, 0, len(s.counts))
	for k := range s.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	bad := false
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, s.counts[k]))
		if k != "RECEIVED" && k != "COMPLETED" {
			bad = true
		}
	}
	fmt.Fprintf(w, "sent %d: %s\n", len(s.results), strings.Join(parts, ", "))
	if bad {
		return 1
	}
	return 0
}

// progress draws a one-line progress bar on a terminal-ish writer.
type progress struct {
	w               io.Writer
	files, total    int64
	doneFiles, sent atomic.Int64
	on              bool
	stop            chan struct{}
	wg              sync.WaitGroup
	start           time.Time
}

func newProgress(w io.Writer, files int, total int64, on bool) *progress {
	p := &progress{w: w, files: int64(files), total: total, on: on, stop: make(chan struct{}), start: time.Now()}
	if on {
		p.wg.Add(1)
		go p.loop()
	}
	return p
}

func (p *progress) loop() {
	defer p.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.draw()
			fmt.Fprintln(p.w)
			return
		case <-t.C:
			p.draw()
		}
	}
}

func (p *progress) draw() {
	sent, total := p.sent.Load(), max(p.total, 1)
	frac := float64(sent) / float64(total)
	frac = min(frac, 1)
	const width = 30
	bar := strings.Repeat("#", int(frac*width)) + strings.Repeat(".", width-int(frac*width))
	rate := float64(sent) / max(time.Since(p.start).Seconds(), 0.001) / (1 << 20)
	fmt.Fprintf(p.w, "\r[%s] %3.0f%%  %d/%d files  %.1f MiB/s ", bar, frac*100, p.doneFiles.Load(), p.files, rate)
}

func (p *progress) fileDone() { p.doneFiles.Add(1) }

func (p *progress) done() {
	if p.on {
		close(p.stop)
		p.wg.Wait()
	}
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (p *progress) reader(r io.Reader) io.Reader { return countingReader{r: r, n: &p.sent} }
