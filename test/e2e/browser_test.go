package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/internal/testsink"
)

// The portal in a real browser: headless Chromium driven over the DevTools
// protocol (chromedp). The pages' one script, the download page's
// decryption in the browser, is driven in browserdecrypt_test.go; here the
// recipient uses the form (the server decrypts). Screenshots
// of every step go to $SEALGATE_ARTIFACTS/<test name>, or to the test's
// artifact directory (go test -artifacts keeps it under -outputdir); the
// path is logged.

// chromiumPath finds Chromium, or skips (fails when SEALGATE_REQUIRE_TOOLS=1).
func chromiumPath(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("SEALGATE_CHROMIUM"), "chromium", "chromium-browser", "/usr/bin/chromium"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := "headless Chromium is not installed (apt-get install chromium; or set SEALGATE_CHROMIUM): browser tests skipped"
	if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

type chrome struct {
	t     *testing.T
	ctx   context.Context
	shots string
	n     int
	dl    string
}

func newChrome(t *testing.T) *chrome {
	path := chromiumPath(t)
	shots := t.ArtifactDir()
	if dir := os.Getenv("SEALGATE_ARTIFACTS"); dir != "" {
		shots = filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots: %s", shots)
	parent, cancelParent := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancelParent)
	var out syncBuffer
	actx, cancelAlloc := chromedp.NewExecAllocator(parent,
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(&out))
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	c := &chrome{t: t, ctx: ctx, shots: shots, dl: t.TempDir()}
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("failed to start Chromium: %v\n%s", err, out.String())
	}
	if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: c.dl}); err != nil {
		t.Fatalf("failed to allow downloads: %v", err)
	}
	return c
}

// do runs steps, failing the test on error.
func (c *chrome) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		c.shot("failed-" + what)
		c.t.Fatalf("%s: %v", what, err)
	}
}

// submit runs steps that load a new page (a click on a submit button or a
// link) and waits for it.
func (c *chrome) submit(what string, steps ...chromedp.Action[chromedp.Void]) int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		c.shot("failed-" + what)
		c.t.Fatalf("%s: %v", what, err)
	}
	return resp.Status
}

func (c *chrome) open(u string) int64 {
	c.t.Helper()
	return c.submit("open "+u, chromedp.Navigate(u))
}

// text returns the visible text of the page's main element.
func (c *chrome) text() string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		c.t.Fatalf("reading the page: %v", err)
	}
	return s
}

func (c *chrome) url() string {
	s, _ := chromedp.Run(c.ctx, chromedp.Location())
	return s
}

// shot saves a full-page screenshot, numbered in order.
func (c *chrome) shot(name string) {
	c.t.Helper()
	c.n++
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		c.t.Logf("screenshot %s: %v", name, err)
		return
	}
	file := filepath.Join(c.shots, fmt.Sprintf("%02d-%s.png", c.n, name))
	if err := os.WriteFile(file, b, 0o644); err != nil {
		c.t.Logf("screenshot %s: %v", name, err)
	}
}

// download waits for a finished download named name.
func (c *chrome) download(name string, size int) []byte {
	c.t.Helper()
	p := filepath.Join(c.dl, name)
	deadline := time.Now().Add(time.Minute)
	for {
		if b, err := os.ReadFile(p); err == nil && len(b) == size {
			return b
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(c.dl)
			c.t.Fatalf("no download %s in %s (%v)", name, c.dl, entries)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBrowser drives the three people of the portal in Chromium:
//  1. a recipient opens the link, types the passphrase and downloads;
//  2. the sender signs in, sees that download (when, from where) on her
//     transfer and revokes it, after the confirmation page;
//  3. a manager signs in with password and TOTP code, approves a message
//     held for approval, and it is delivered.
func TestBrowser(t *testing.T) {
	c := newChrome(t)
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	addUser(t, g, "alice", sender, staffPW)
	addUser(t, g, "mgr", "mgr@corp.example", staffPW, "manager:C-APP")
	secret := enrolTOTP(t, g, "mgr")
	cliOK(t, g, "contract", "add", "C-APP", "--domains", "partner.example", "--manager", "mgr", "--approval")

	// 1. The recipient downloads with the passphrase.
	pdf := append([]byte("%PDF-1.7\n"), randomBytes(200<<10)...)
	raw := buildMessage(map[string]string{"From": "Alice <" + sender + ">", "To": extA, "Subject": "見積書の送付 / Quote"},
		"添付をご確認ください。", attachment{name: "quote-2026.pdf", contentType: "application/pdf", data: pdf})
	if err := send(t, g.smtpAddr, sender, []string{extA}, raw); err != nil {
		t.Fatal(err)
	}
	msgs, err := sink.Wait(60*time.Second, func(m []testsink.Message) bool { d := classify(m); return len(d.copies) == 1 && len(d.keys) == 1 })
	if err != nil {
		t.Fatal(err)
	}
	d := classify(msgs)
	link, _ := linkOf(t, d.copies[extA])
	pass := passphraseOf(t, d.keys[extA])
	t0 := time.Now()
	if st := c.open(link + "?lang=en"); st != 200 {
		t.Fatalf("link page: %d", st)
	}
	if !strings.Contains(c.text(), "quote-2026.pdf") {
		t.Fatalf("link page:\n%s", c.text())
	}
	c.shot("recipient-link-page")
	c.do("type the passphrase", chromedp.SendKeys(chromedp.ID("passphrase"), strings.ToLower(pass)))
	c.shot("recipient-passphrase-typed")
	c.do("click download", chromedp.Click(chromedp.CSS(`button[name="file"][value="0"]`)))
	if got := c.download("quote-2026.pdf", len(pdf)); !bytes.Equal(got, pdf) {
		t.Fatal("the downloaded file differs")
	}
	t.Logf("recipient: link opened → file downloaded and checked in %.2fs", time.Since(t0).Seconds())
	c.shot("recipient-downloaded")
	tid := dbString(t, g, `SELECT id FROM transfers`)

	// 2. The sender sees the download and revokes.
	t1 := time.Now()
	c.open(g.url("/login?lang=en"))
	c.shot("sender-login")
	c.do("type credentials", chromedp.SendKeys(chromedp.ID("name"), "alice"), chromedp.SendKeys(chromedp.ID("password"), staffPW))
	c.submit("sign in", chromedp.Click(chromedp.CSS(`form.login button[type="submit"]`)))
	c.open(g.url("/transfers"))
	if !strings.Contains(c.text(), "1 / 1") {
		t.Fatalf("my transfers does not show the download:\n%s", c.text())
	}
	c.shot("sender-my-transfers")
	c.submit("open the transfer", chromedp.Click(chromedp.CSS(`a[href="/transfers/`+tid+`"]`)))
	page := c.text()
	if !strings.Contains(page, extA) || !strings.Contains(page, "quote-2026.pdf · 127.0.0.1") {
		t.Fatalf("the transfer page does not show who downloaded what from where:\n%s", page)
	}
	c.shot("sender-transfer-downloaded")
	c.submit("open revoke", chromedp.Click(chromedp.CSS(`a[href="/transfers/`+tid+`/revoke"]`)))
	c.shot("sender-revoke-confirm")
	c.do("type a reason", chromedp.SendKeys(chromedp.ID("reason"), "sent too early"))
	c.submit("confirm revocation", chromedp.Click(chromedp.CSS(`button.danger`)))
	if !strings.Contains(c.text(), "Revoked.") || !strings.Contains(c.url(), "/transfers/"+tid) {
		t.Fatalf("after revoking:\n%s", c.text())
	}
	c.shot("sender-revoked")
	if st := dbString(t, g, `SELECT status FROM transfers`); st != "revoked" {
		t.Fatalf("transfer %s after revoking in the browser", st)
	}
	waitFor(t, 30*time.Second, "objects deleted", func() bool { return dbInt(t, g, `SELECT COUNT(*) FROM files WHERE absent_at IS NULL`) == 0 })
	t.Logf("sender: sign-in → revocation confirmed, objects proven absent in %.2fs", time.Since(t1).Seconds())
	c.submit("sign out", chromedp.Click(chromedp.CSS(`form.logout button`)))

	// 3. A manager approves a held message; it is delivered.
	raw = buildMessage(map[string]string{"From": "Alice <" + sender + ">", "To": extB, "Subject": "[C-APP] 設計書 / design"},
		"承認をお願いします。", attachment{name: "design.pdf", contentType: "application/pdf", data: randomBytes(50 << 10)})
	if err := send(t, g.smtpAddr, sender, []string{extB}, raw); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the hold", func() bool { return dbInt(t, g, `SELECT COUNT(*) FROM holds WHERE approval = 'pending'`) == 1 })
	msgID := dbString(t, g, `SELECT message_id FROM holds`)
	t2 := time.Now()
	c.open(g.url("/login?lang=en"))
	c.do("type credentials", chromedp.SendKeys(chromedp.ID("name"), "mgr"), chromedp.SendKeys(chromedp.ID("password"), staffPW))
	c.submit("sign in", chromedp.Click(chromedp.CSS(`form.login button[type="submit"]`)))
	if !strings.Contains(c.url(), "/login/totp") {
		t.Fatalf("no second factor asked: %s", c.url())
	}
	c.shot("manager-totp")
	code, _ := account.TOTPCode(secret, time.Now())
	c.do("type the code", chromedp.SendKeys(chromedp.ID("code"), code))
	c.submit("verify", chromedp.Click(chromedp.CSS(`form.login button[type="submit"]`)))
	c.open(g.url("/manage/approvals"))
	if !strings.Contains(c.text(), "設計書 / design") {
		t.Fatalf("approvals queue:\n%s", c.text())
	}
	c.shot("manager-approvals")
	c.submit("open the held message", chromedp.Click(chromedp.CSS(`a[href="/manage/approvals/`+msgID+`"]`)))
	if !strings.Contains(c.text(), "design.pdf") || !strings.Contains(c.text(), extB) {
		t.Fatalf("held message page:\n%s", c.text())
	}
	if n := externalCopies(sink, extB); n != 0 {
		t.Fatal("the held message left before approval")
	}
	c.shot("manager-held-message")
	c.do("type a note", chromedp.SendKeys(chromedp.ID("reason"), "OK / 確認済み"))
	c.submit("approve", chromedp.Click(chromedp.CSS(`button[value="approve"]`)))
	if !strings.Contains(c.text(), "Approved") {
		t.Fatalf("after approving:\n%s", c.text())
	}
	c.shot("manager-approved")
	if _, err := sink.Wait(60*time.Second, func(m []testsink.Message) bool {
		d := classify(m)
		return d.copies[extB].Data != nil && d.keys[extB].Data != nil
	}); err != nil {
		t.Fatal("the approved message was not delivered: ", err)
	}
	t.Logf("manager: sign-in with TOTP → approved → link and key notices delivered in %.2fs", time.Since(t2).Seconds())
	c.open(g.url("/manage/approvals?lang=ja"))
	c.shot("manager-approvals-ja")
}
