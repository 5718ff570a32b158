package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/posthub/posthub/memo"
)

// browserLog collects what Chromium reports: console and log entries, and
// every request it started or was refused, by URL.
type browserLog struct {
	mu       sync.Mutex
	messages []string
	requests map[network.RequestID]string
	blocked  map[network.RequestID]network.BlockedReason
	failed   map[network.RequestID]bool
}

func listenBrowser(ctx context.Context) *browserLog {
	bl := &browserLog{requests: map[network.RequestID]string{}, blocked: map[network.RequestID]network.BlockedReason{},
		failed: map[network.RequestID]bool{}}
	chromedp.ListenTarget(ctx, func(ev any) {
		bl.mu.Lock()
		defer bl.mu.Unlock()
		switch e := ev.(type) {
		case *log.EventEntryAdded:
			bl.messages = append(bl.messages, string(e.Entry.Source)+": "+e.Entry.Text)
		case *runtime.EventConsoleAPICalled:
			for _, a := range e.Args {
				bl.messages = append(bl.messages, "console: "+string(a.Value))
			}
		case *network.EventRequestWillBeSent:
			bl.requests[e.RequestID] = e.Request.URL
		case *network.EventLoadingFailed:
			bl.failed[e.RequestID] = true
			if e.BlockedReason != "" {
				bl.blocked[e.RequestID] = e.BlockedReason
			}
		}
	})
	return bl
}

// to returns the requests to URLs with prefix and how each was blocked.
func (bl *browserLog) to(prefix string) map[string]network.BlockedReason {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	out := map[string]network.BlockedReason{}
	for id, u := range bl.requests {
		if strings.HasPrefix(u, prefix) {
			out[u] = bl.blocked[id]
		}
	}
	return out
}

func (bl *browserLog) text() string {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	return strings.Join(bl.messages, "\n")
}

// TestWebMailboxInBrowser: a citizen logs in to the reference web mailbox
// in headless Chromium and opens a letter with a PDF main document, an
// attachment and an EntryPoint action. The mailbox page and the letter
// have no script; the EntryPoint opens outside the letter (target=_blank,
// rel=noopener noreferrer); the attachment downloads with the session.
// Remote loads are blocked: an HTML letter's remote image, stylesheet,
// script and frame never reach the (real, counting) remote server, and
// when remote loads are put into the rendered letter behind the
// sanitiser's back, Chromium refuses them by the Content-Security-Policy —
// seen in its network log (blocked: csp) and its console — and still no
// request reaches the remote host. Logged in as that citizen, another
// CPR's mailbox and letter are refused by the hub.
func TestWebMailboxInBrowser(t *testing.T) {
	ctx := browser(t)
	shots := artifacts(t)
	var remoteHits atomic.Int64
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remoteHits.Add(1)
		t.Errorf("the remote host got a request: %s %s", r.Method, r.URL)
	}))
	defer remote.Close()
	// Another origin than the hub's (the port differs), named differently
	// too, so its requests are told apart in the browser's log.
	remoteBase := strings.Replace(remote.URL, "127.0.0.1", "localhost", 1)

	h := startHub(t, "-web-mailbox", "-mailbox-demo-login")
	w := h.setupWorld()
	send := func(l memo.Letter, actions []memo.Action) string {
		l.From, l.To = orgA, citizen
		m := memo.NewLetter(l)
		m.MessageBody.MainDocument.Actions = actions
		var buf bytes.Buffer
		if _, err := m.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		h.mustStatus(h.send(w.sender, m.MessageHeader.MessageUUID, buf.Bytes(), ""), 201)
		return m.MessageHeader.MessageUUID
	}
	attachment := []byte("Klagevejledning: du kan klage inden 4 uger.\n")
	pdfLetter := send(memo.Letter{Label: "Afgørelse om byggetilladelse", SenderLabel: "Kommune A",
		Main:        memo.PDF("afgoerelse.pdf", memo.SamplePDF("Afgørelse")),
		Attachments: []memo.Attachment{{Filename: "klagevejledning.txt", MIMEType: "text/plain", Data: attachment}}},
		[]memo.Action{{Label: "Klag over afgørelsen", ActionCode: "SELVBETJENING", EntryPoint: &memo.EntryPoint{URL: "https://klage.example.org/sag/17"}}})
	htmlLetter := send(memo.Letter{Label: "Nyhedsbrev med fjernindhold", SenderLabel: "Kommune A",
		Main: memo.Attachment{Filename: "nyhedsbrev.html", MIMEType: "text/html", Data: []byte(`<!DOCTYPE html><html><head>
<link rel="stylesheet" href="` + remoteBase + `/letter.css"><script src="` + remoteBase + `/letter.js"></script></head>
<body><h1>Nyt fra kommunen</h1><img src="` + remoteBase + `/pixel.gif" alt="sporingspixel">
<iframe src="` + remoteBase + `/frame"></iframe><p style="background:url(` + remoteBase + `/bg.png)">Tekst.</p></body></html>`)}}, nil)

	bl := listenBrowser(ctx)
	base := h.base + "/mailbox"
	var text, html string
	var n int
	run := func(step string, actions ...chromedp.Action) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Run(sctx, actions...); err != nil {
			_ = chromedp.Run(ctx, shot(t, shots, "failed-"+strings.ReplaceAll(step, " ", "-")))
			t.Fatalf("%s: %v", step, err)
		}
	}
	run("log in as the citizen",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(`#cpr`),
		shot(t, shots, "01-login"),
		chromedp.SendKeys(`#cpr`, citizen),
		chromedp.Click(`#cpr ~ button`),
		chromedp.WaitVisible(`main table`),
		chromedp.Text(`main table`, &text),
		shot(t, shots, "02-inbox"),
	)
	if !strings.Contains(text, "Afgørelse om byggetilladelse") || !strings.Contains(text, "Nyhedsbrev med fjernindhold") ||
		strings.Count(text, "Unread") != 2 {
		t.Fatalf("inbox: %q", text)
	}
	run("open the PDF letter",
		chromedp.Click(`a[href^="messages/`+pdfLetter+`"]`),
		chromedp.WaitVisible(`iframe.letter`),
		chromedp.Sleep(time.Second), // the frame's PDF and fonts
		shot(t, shots, "03-letter"),
		chromedp.OuterHTML(`html`, &html),
		chromedp.Evaluate(`document.querySelectorAll('script').length`, &n),
	)
	if n != 0 || strings.Contains(strings.ToLower(html), "<script") {
		t.Fatalf("the mailbox's letter page has a script: %d elements", n)
	}
	if !strings.Contains(html, `sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox allow-downloads"`) {
		t.Fatalf("the letter frame is not sandboxed without scripts: %s", html)
	}
	run("open the letter on its own page",
		chromedp.Click(`#open-letter`),
		chromedp.WaitReady(`object.pdf`),
		chromedp.Sleep(time.Second),
		shot(t, shots, "04-rendered-letter"),
		chromedp.OuterHTML(`html`, &html),
		chromedp.Evaluate(`document.querySelectorAll('script').length`, &n),
	)
	if n != 0 || strings.Contains(strings.ToLower(html), "<script") {
		t.Fatalf("the rendered letter has a script: %d elements", n)
	}
	var entry map[string]string
	run("the EntryPoint opens outside the letter", chromedp.Evaluate(`(() => {
		const a = document.querySelector('a[href^="https://klage.example.org/"]');
		return a ? {href: a.href, target: a.target, rel: a.rel, text: a.textContent} : {};
	})()`, &entry))
	if entry["target"] != "_blank" || entry["rel"] != "noopener noreferrer" || !strings.Contains(entry["text"], "Klag over afgørelsen") {
		t.Fatalf("EntryPoint link: %v", entry)
	}
	var fileURL, pageURL string
	run("find the attachment", chromedp.Evaluate(`(() => {
		const a = [...document.querySelectorAll('a')].find(a => a.textContent.includes('klagevejledning.txt'));
		return a ? a.href : '';
	})()`, &fileURL), chromedp.Location(&pageURL))
	if !strings.HasPrefix(fileURL, base+"/box/"+citizen+"/messages/"+pdfLetter+"/documents/") {
		t.Fatalf("attachment link %q (page %s)", fileURL, pageURL)
	}
	// Download it with the browser's session cookie.
	var cookies []*network.Cookie
	run("read the session cookie", chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		cookies, err = network.GetCookies().WithURLs([]string{base + "/"}).Do(ctx)
		return err
	}))
	req, _ := http.NewRequest("GET", fileURL, nil)
	for _, c := range cookies {
		if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
			t.Errorf("cookie %s: HttpOnly %v, SameSite %s", c.Name, c.HTTPOnly, c.SameSite)
		}
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, attachment) ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), `attachment; filename="klagevejledning.txt"`) {
		t.Fatalf("attachment download: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Disposition"), got)
	}

	// Remote loads smuggled into the rendered letter (as if the sanitiser
	// had missed them) are refused by the page's policy.
	run("inject remote loads into the rendered letter", chromedp.Evaluate(`(() => {
		const img = document.createElement('img'); img.src = '`+remoteBase+`/injected.gif'; document.body.appendChild(img);
		const css = document.createElement('link'); css.rel = 'stylesheet'; css.href = '`+remoteBase+`/injected.css'; document.head.appendChild(css);
		return true;
	})()`, nil), chromedp.Sleep(1500*time.Millisecond))
	reqs := bl.to(remoteBase)
	for _, path := range []string{"/injected.gif", "/injected.css"} {
		if r, ok := reqs[remoteBase+path]; ok && r != network.BlockedReasonCsp {
			t.Errorf("%s: in the network log, blocked %q, want csp", path, r)
		}
		if !strings.Contains(bl.text(), "Content Security Policy") || !strings.Contains(bl.text(), remoteBase+path) {
			t.Errorf("no CSP refusal of %s in the console:\n%s", path, bl.text())
		}
	}

	run("open the HTML letter with remote content",
		// Without waiting for the load event, which a page left with
		// refused loads (the step above) may keep Navigate waiting for.
		chromedp.ActionFunc(func(ctx context.Context) error {
			_, _, _, _, err := page.Navigate(base + "/box/" + citizen + "/messages/" + htmlLetter + "/render").Do(ctx)
			return err
		}),
		chromedp.WaitReady(`body`),
		chromedp.Sleep(time.Second),
		shot(t, shots, "05-html-letter"),
		chromedp.OuterHTML(`html`, &html),
	)
	if strings.Contains(strings.ToLower(html), "<script") || strings.Contains(html, remoteBase) || !strings.Contains(html, "Nyt fra kommunen") {
		t.Fatalf("HTML letter not inert:\n%s", html)
	}
	for u, r := range bl.to(remoteBase) {
		if r != network.BlockedReasonCsp {
			t.Errorf("a request for %s left the browser (blocked %q)", u, r)
		}
	}
	if n := remoteHits.Load(); n != 0 {
		t.Fatalf("the remote host got %d requests", n)
	}

	// The hub, not the mailbox, decides: the citizen's session signs an
	// assertion for their own CPR, which opens no other mailbox.
	run("another CPR's mailbox is refused",
		chromedp.Navigate(base+"/box/"+exempt+"/"),
		chromedp.WaitVisible(`.error`),
		chromedp.Text(`.error`, &text),
		shot(t, shots, "06-other-cpr-refused"),
	)
	if !strings.Contains(text, "You may not open this mailbox") || !strings.Contains(text, "does not own this mailbox") {
		t.Fatalf("other CPR: %q", text)
	}
	run("another CPR's letter URL is refused",
		chromedp.Navigate(base+"/box/"+exempt+"/messages/"+pdfLetter+"/render"),
		chromedp.WaitVisible(`.error`),
		chromedp.Text(`.error`, &text),
	)
	if !strings.Contains(text, "does not own this mailbox") {
		t.Fatalf("other CPR's letter: %q", text)
	}
	run("archive the letter and find it there",
		chromedp.Navigate(base+"/box/"+citizen+"/messages/"+pdfLetter),
		chromedp.WaitVisible(`form[action$="/archive"] button`),
		chromedp.Click(`form[action$="/archive"] button`),
		chromedp.WaitVisible(`.notice`),
		chromedp.Navigate(base+"/box/"+citizen+"/?folder=ARCHIVE"),
		chromedp.WaitVisible(`main table`),
		chromedp.Text(`main table`, &text),
		shot(t, shots, "07-archive"),
	)
	if !strings.Contains(text, "Afgørelse om byggetilladelse") || strings.Contains(text, "Nyhedsbrev") {
		t.Fatalf("archive: %q", text)
	}
}
