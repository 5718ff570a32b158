package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/testservers"
	"github.com/posthub/posthub/memo"
)

// browser starts headless Chromium (Debian's chromium) for t with a fresh
// profile and the extra options. Without chromium the test skips, unless
// POSTHUB_TEST_SERVERS=require (make test, CI), where it fails.
func browser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		// Skipped or failed as every real-server test is (testservers).
		testservers.SkipUnlessRequired(t, "chromium is not installed; `scripts/deps.sh test` installs it")
	}
	// Not t.TempDir: Chromium may still be writing its profile for a moment
	// after it is told to quit, so removal retries (and never fails the test).
	profile, err := os.MkdirTemp("", "posthub-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50 && os.RemoveAll(profile) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile), chromedp.WindowSize(1280, 1400),
	}
	opts = append(opts, extra...)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancel3)
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// artifacts is where screenshots go: $POSTHUB_ARTIFACTS or
// cmd/posthub/testdata/artifacts/<test> (git-ignored).
func artifacts(t *testing.T) string {
	dir := os.Getenv("POSTHUB_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("testdata", "artifacts")
	}
	dir = filepath.Join(dir, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	t.Logf("screenshots in %s", abs)
	return dir
}

func shot(t *testing.T, dir, name string) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		var buf []byte
		if err := chromedp.FullScreenshot(&buf, 100).Do(ctx); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644)
	})
}

// TestPortalInBrowser walks the admin portal in headless Chromium as the
// bootstrapped hub operator: log in, create an authority, register four
// authority-post systems and the CVR system, see the sixth refused, make
// another default, create a contact point mapped to a system, create a user
// and grant a privilege, view statistics with a chart, search the event log.
func TestPortalInBrowser(t *testing.T) {
	ctx := browser(t)
	shots := artifacts(t)
	data := t.TempDir()
	env := &Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: os.Stderr, Getenv: func(string) string { return "" }}
	if rc := Main([]string{"admin", "bootstrap", "-data", data, "-name", "Olga Operatør", "-password", "browser-test-password", "olga"}, env); rc != 0 {
		t.Fatalf("admin bootstrap: %d", rc)
	}
	h := startHub(t, "-data", data)
	w := h.setupWorld()
	const org = "55555555"
	base := h.base + "/admin"
	var text string
	run := func(step string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(ctx, actions...); err != nil {
			_ = chromedp.Run(ctx, shot(t, shots, "failed-"+strings.ReplaceAll(step, " ", "-")))
			t.Fatalf("%s: %v", step, err)
		}
	}
	run("log in",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(`#userId`),
		chromedp.SendKeys(`#userId`, "olga"),
		chromedp.SendKeys(`#password`, "browser-test-password"),
		shot(t, shots, "01-login"),
		chromedp.Click(`form[action="/admin/login"] button`),
		chromedp.WaitVisible(`#cvr`),
	)
	run("create an authority",
		chromedp.SendKeys(`#cvr`, org),
		chromedp.SendKeys(`#name`, "Browser Kommune"),
		chromedp.SetValue(`#kind`, "AUTHORITY"),
		chromedp.SetValue(`#setup`, "CONTACTABLE"),
		chromedp.Click(`form[action="/admin/orgs"] button`),
		chromedp.WaitVisible(`.notice`),
		chromedp.Navigate(base+"/orgs/"+org+"/systems"),
		chromedp.WaitVisible(`#sys-name`),
	)
	register := func(name, role, mailbox string) chromedp.Tasks {
		return chromedp.Tasks{
			chromedp.Navigate(base + "/orgs/" + org + "/systems"),
			chromedp.WaitVisible(`#sys-name`),
			chromedp.SendKeys(`#sys-name`, name),
			chromedp.SetValue(`#sys-role`, role),
			chromedp.SetValue(`#sys-mailbox`, mailbox),
			chromedp.Click(`form[action$="/systems"] button`),
		}
	}
	for i := 1; i <= 4; i++ {
		run(fmt.Sprintf("register authority-post system %d", i), register(fmt.Sprintf("ESDH %d", i), "RECIPIENT", "AUTHORITY_POST"),
			chromedp.WaitVisible(`#api-token`))
	}
	run("register the CVR system", register("CVR-post system", "RECIPIENT", "CVR_POST"), chromedp.WaitVisible(`#api-token`),
		chromedp.Text(`#api-token`, &text))
	if !strings.HasPrefix(text, "ph_") {
		t.Fatalf("token shown: %q", text)
	}
	run("the sixth is refused", register("ESDH 5", "RECIPIENT", "AUTHORITY_POST"), chromedp.WaitVisible(`.error`),
		chromedp.Text(`.error`, &text), shot(t, shots, "02-sixth-system-refused"))
	if !strings.Contains(text, "system.limit.authority.post") {
		t.Fatalf("sixth system: %q", text)
	}
	var senderToken string
	run("register a sender system", register("Sagssystem", "SENDER", "AUTHORITY_POST"), chromedp.WaitVisible(`#api-token`),
		chromedp.Text(`#api-token`, &senderToken))

	systems := func() []hub.System {
		var ss []hub.System
		h.mustStatus(h.do("GET", "/apis/v1/organisations/"+org+"/systems/", h.operator, "", nil), 200).list(t, &ss)
		return ss
	}
	before := systems()
	var oldDefault string
	for _, s := range before {
		if s.Default {
			oldDefault = s.ID
		}
	}
	run("make another default",
		chromedp.Navigate(base+"/orgs/"+org+"/systems"),
		chromedp.Click(`button[aria-label^="Make "]`),
		chromedp.WaitVisible(`.notice`),
		shot(t, shots, "03-systems-new-default"),
	)
	var newDefault, esdh2 string
	for _, s := range systems() {
		if s.Default {
			newDefault = s.ID
		}
		if s.Name == "ESDH 2" {
			esdh2 = s.ID
		}
	}
	if newDefault == "" || newDefault == oldDefault {
		t.Fatalf("default did not move: was %s, is %s", oldDefault, newDefault)
	}
	run("create a contact point",
		chromedp.Navigate(base+"/orgs/"+org+"/contacts"),
		chromedp.WaitVisible(`#cp-name`),
		chromedp.SendKeys(`#cp-name`, "Byggesager"),
		chromedp.SetValue(`#cp-system`, esdh2),
		chromedp.SetValue(`#cp-codetype`, "KLE"),
		chromedp.SendKeys(`#cp-code`, "02.00"),
		chromedp.Click(`form[action$="/contact-points"] button`),
		chromedp.WaitVisible(`.notice`),
		chromedp.Text(`main table`, &text),
		shot(t, shots, "04-contact-point"),
	)
	if !strings.Contains(text, "Byggesager") || !strings.Contains(text, "ESDH 2") {
		t.Fatalf("contact point table: %q", text)
	}
	run("create a user and grant a privilege",
		chromedp.Navigate(base+"/orgs/"+org+"/users"),
		chromedp.WaitVisible(`#u-id`),
		chromedp.SendKeys(`#u-id`, "stine"),
		chromedp.SendKeys(`#u-name`, "Stine Statistik"),
		chromedp.SendKeys(`#u-pw`, "stine-password-123"),
		chromedp.Click(`form[action$="/users"] button`),
		chromedp.WaitVisible(`.notice`),
		chromedp.SendKeys(`#g-user`, "stine"),
		chromedp.SetValue(`#g-role`, "STATISTICS_ADMINISTRATOR"),
		chromedp.Click(`form[action$="/grants"] button[value="grant"]`),
		// Not `.notice`: the page the grant form is on shows one already
		// (the user was created), so that wait could end before the grant's
		// answer replaced the page.
		chromedp.WaitVisible(`//main//table[contains(., "STATISTICS_ADMINISTRATOR")]`, chromedp.BySearch),
		chromedp.Text(`main table`, &text),
		shot(t, shots, "05-privilege-granted"),
	)
	if !strings.Contains(text, "stine") || !strings.Contains(text, "STATISTICS_ADMINISTRATOR") {
		t.Fatalf("users table: %q", text)
	}
	// Post to the new authority, so its statistics have something to show.
	for i := 0; i < 3; i++ {
		uuid, body := letterXML(t, memo.Letter{To: org, PostType: "MYNDIGHEDSPOST"})
		h.mustStatus(h.send(w.sender, uuid, body, ""), 201)
	}
	var bars int
	run("view statistics with a chart",
		chromedp.Navigate(base+"/orgs/"+org+"/statistics"),
		chromedp.WaitVisible(`#chart-period rect`),
		chromedp.Evaluate(`document.querySelectorAll('#chart-period rect').length`, &bars),
		chromedp.Text(`main`, &text),
		shot(t, shots, "06-statistics"),
	)
	if bars == 0 || !strings.Contains(text, "3 messages") {
		t.Fatalf("statistics: %d bars, %q", bars, text)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		run("search the event log",
			chromedp.Navigate(base+"/orgs/"+org+"/events?eventTag=SYSTEM_CHANGED"),
			chromedp.WaitVisible(`#ev-count`),
			chromedp.Text(`main table`, &text),
		)
		if strings.Contains(text, "user:olga") && strings.Contains(text, "makedefaultrecipient") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("event log: no SYSTEM_CHANGED by user:olga: %q", text)
		}
		time.Sleep(200 * time.Millisecond)
	}
	run("screenshot the event log", shot(t, shots, "07-event-log"))
	_ = senderToken
}
