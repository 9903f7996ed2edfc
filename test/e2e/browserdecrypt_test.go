package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sealgate/sealgate/crypto"
)

// Decryption in the recipient's browser (portal/browser.go), in headless
// Chromium with the page's own script, against the real binary.

// inject runs js in every document the tab opens from now on, before the
// page's own scripts (a DevTools script: the page's CSP does not apply).
func (c *chrome) inject(js string) {
	c.t.Helper()
	if _, err := chromedp.Call(c.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: js}); err != nil {
		c.t.Fatalf("failed to inject a script: %v", err)
	}
}

// eval evaluates a JavaScript expression in the page (awaiting a promise).
func eval[T any](c *chrome, expr string) T {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		c.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// settled waits until the decryption section's status says done or
// error, and returns "done: …" or "error: …". The test clears the status
// before each click (clearStatus), so an earlier answer is not taken for
// the next one.
func (c *chrome) settled(what string, timeout time.Duration) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Poll[string](`(() => {
		const s = document.getElementById("bd-status");
		return (s.className === "done" || s.className === "error") && s.className + ": " + s.textContent;
	})()`, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		c.shot("failed-" + what)
		c.t.Fatalf("%s: %v", what, err)
	}
	return s
}

func (c *chrome) clearStatus() {
	eval[bool](c, `(() => { const s = document.getElementById("bd-status"); s.className = ""; s.textContent = ""; return true; })()`)
}

// tap is a reverse proxy in front of the gateway's portal that keeps
// every request it passes on — line, headers and body: what the server
// received from the browser.
type tap struct {
	mu  sync.Mutex
	all []string
	url string
}

func startTap(t *testing.T, target string) *tap {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s\n", r.Method, r.URL.RequestURI())
		r.Header.Write(&b)
		b.Write(body)
		tp.mu.Lock()
		tp.all = append(tp.all, b.String())
		tp.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tp.url = srv.URL
	return tp
}

// requests returns the requests passed on so far.
func (tp *tap) requests() []string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]string(nil), tp.all...)
}

// passphraseForms are the forms of a passphrase that must never leave the
// browser: as mailed, as typed, canonical, without hyphens.
func passphraseForms(mailed, typed string) []string {
	norm, _ := crypto.NormalizePassphrase(mailed)
	return []string{mailed, typed, norm, strings.ReplaceAll(norm, "-", ""), strings.ReplaceAll(typed, " ", "+"), strings.ReplaceAll(typed, " ", "%20")}
}

const bigConfig = `[transfer]
per_link_attempts_per_minute = 1000
per_ip_attempts_per_minute = 1000
`

// browserGateway starts a gateway that takes 50 MiB attachments (and,
// for the lockout test, more than ten key requests a minute).
func browserGateway(t *testing.T, sinkAddr string) *gw {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "sealgate.toml")
	if err := os.WriteFile(cfg, []byte(bigConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	return startGateway(t, gwOptions{smarthost: sinkAddr, extraEnv: []string{"SEALGATE_MAX_MESSAGE_SIZE=100MiB", "SEALGATE_CONFIG=" + cfg}})
}

// TestBrowserDecrypt: a 50 MiB file decrypted by the recipient's browser
// with the page's script (age-encryption), compared byte for byte (by
// SHA-256) with what was sent — once where the browser cannot write to a
// picked file (the plaintext is assembled in memory and downloaded, as in
// Firefox and Safari), once through the File System Access API (the
// writable of a real file handle; headless Chromium cancels every file
// picker, so the test answers showSaveFilePicker with a file of the
// origin's private file system). Chromium reaches the gateway through a
// recording proxy: no request the server received carries the passphrase
// in any form; the gateway's log and the ledger do not hold it; the ledger
// shows key.age and file.age fetched in mode browser, the attempts given
// back, the page's SHA-256 reports, and no download decrypted by the
// server. Then the same file through "the server decrypts" with
// JavaScript switched off: that path still works, and is the one the
// ledger and the log show as decrypted on the server, and the proxy sees
// the passphrase go to the server there.
func TestBrowserDecrypt(t *testing.T) {
	chromiumPath(t)
	sink := startSink(t)
	g := browserGateway(t, sink.Addr())
	data := randomBytes(50 << 20)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	st := sendAndCollect(t, g, sink, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "図面 / drawings"},
		"添付をご確認ください。", attachment{name: "drawings.bin", contentType: "application/octet-stream", data: data}))
	token, pass := st.tokens[extA], st.pass[extA]
	// Chromium talks to the gateway through the tap, which keeps what
	// the server received.
	tp := startTap(t, g.url(""))
	link := tp.url + "/t/" + token
	typed := strings.ToLower(strings.ReplaceAll(pass, "-", " ")) // as a person might type it
	forms := passphraseForms(pass, typed)

	// decrypt opens the link, types the passphrase, clicks the page's
	// button, and waits for the page to say it is done.
	decrypt := func(c *chrome) {
		t.Helper()
		if st := c.open(link + "?lang=en"); st != 200 {
			t.Fatalf("link page: %d", st)
		}
		if hidden := eval[bool](c, `document.getElementById("browser-decrypt").hidden`); hidden {
			c.shot("script-did-not-run")
			t.Fatal("the decryption section is hidden: the page's script did not run (CSP, integrity?)")
		}
		page := c.text()
		for _, s := range []string{"Your browser decrypts", "The server decrypts", "drawings.bin"} {
			if !strings.Contains(page, s) {
				t.Fatalf("the link page lacks %q:\n%s", s, page)
			}
		}
		c.shot("link-page")
		c.do("type the passphrase", chromedp.SendKeys(chromedp.ID("bd-passphrase"), typed))
		c.shot("passphrase-typed")
		t0 := time.Now()
		c.clearStatus()
		c.do("click decrypt", chromedp.Click(chromedp.CSS(`#browser-decrypt button[data-file="0"]`)))
		// The progress bar while it runs, unless it is over first.
		running, err := chromedp.Run(c.ctx, chromedp.Poll[string](`!document.getElementById("bd-progress").hidden && "running" ||
			["done", "error"].includes(document.getElementById("bd-status").className) && "over"`,
			chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(time.Minute)))
		if err != nil {
			t.Fatalf("waiting for the decryption to start: %v", err)
		}
		if running == "running" {
			c.shot("decrypting")
		}
		if s := c.settled("decryption", 3*time.Minute); !strings.HasPrefix(s, "done: ") || !strings.Contains(s, "SHA-256 matches") {
			c.shot("failed")
			t.Fatalf("the page says %q", s)
		}
		c.shot("decrypted")
		t.Logf("50 MiB decrypted in the browser in %.1fs", time.Since(t0).Seconds())
	}

	t.Run("memory", func(t *testing.T) {
		c := newChrome(t)
		c.inject(`delete window.showSaveFilePicker; delete Window.prototype.showSaveFilePicker;`)
		decrypt(c)
		if eval[bool](c, `typeof window.showSaveFilePicker !== "undefined" || document.getElementById("bd-save-memory").hidden`) {
			t.Fatal("the page did not take the in-memory path")
		}
		got := c.download("drawings.bin", len(data))
		if h := sha256.Sum256(got); hex.EncodeToString(h[:]) != want || !bytes.Equal(got, data) {
			t.Fatal("the file decrypted in the browser differs from the one sent")
		}
	})

	t.Run("file", func(t *testing.T) {
		c := newChrome(t)
		c.inject(`window.showSaveFilePicker = async (opts) => {
			const dir = await navigator.storage.getDirectory();
			return dir.getFileHandle("picked-" + opts.suggestedName, { create: true });
		};`)
		decrypt(c)
		if eval[bool](c, `document.getElementById("bd-save-file").hidden`) {
			t.Fatal("the page did not take the file path")
		}
		res := eval[[]any](c, `(async () => {
			const dir = await navigator.storage.getDirectory();
			const f = await (await dir.getFileHandle("picked-drawings.bin")).getFile();
			const d = new Uint8Array(await crypto.subtle.digest("SHA-256", await f.arrayBuffer()));
			return [f.size, Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("")];
		})()`)
		if len(res) != 2 || res[0] != float64(len(data)) || res[1] != want {
			t.Fatalf("the file written by the page: %v, want %d bytes with SHA-256 %s", res, len(data), want)
		}
	})
	if t.Failed() {
		return
	}

	// No request the server received holds the passphrase (line, headers
	// or body); the pages did send their forms (so the look is not at
	// nothing).
	pageRequests := tp.requests()
	var posts []string
	for _, r := range pageRequests {
		for _, p := range forms {
			if strings.Contains(r, p) {
				t.Fatalf("the server received the passphrase (%q):\n%s", p, r)
			}
		}
		if strings.HasPrefix(r, "POST ") && strings.Contains(r, "\ncsrf=") {
			line, _, _ := strings.Cut(r, "\n")
			posts = append(posts, line[strings.LastIndex(line, "/"):])
		}
	}
	if got := strings.Join(posts, " "); got != "/key /age /decrypted /key /age /decrypted" {
		t.Fatalf("the server received the POSTs %q, want key, file.age and the report, twice:\n%s", got, strings.Join(pageRequests, "\n"))
	}
	ledger := dbString(t, g, `SELECT group_concat(data, x'0a') FROM ledger_records`)
	for _, p := range forms {
		if strings.Contains(ledger, p) {
			t.Fatalf("the ledger holds the passphrase (%q)", p)
		}
	}
	log := g.log.String()
	for _, p := range forms {
		if strings.Contains(log, p) {
			t.Fatalf("the gateway log holds the passphrase (%q)", p)
		}
	}
	if strings.Contains(log, "file decrypted on the server") || strings.Count(log, "file.age sent for decryption in the browser") != 2 ||
		strings.Count(log, "key.age sent for decryption in the browser") != 2 {
		t.Fatalf("the log does not show two downloads decrypted in the browser and none on the server:\n%s", log)
	}
	var keys, ages, reports int
	for _, ev := range g.ledger() {
		if ev.Recipient != extA {
			continue
		}
		switch {
		case ev.Type == "file.downloaded" && ev.Details["format"] == "plain":
			t.Fatalf("the ledger records a download decrypted by the server: %+v", ev)
		case ev.Type == "file.downloaded" && ev.Details["format"] == "key":
			if ev.Details["mode"] != "browser" || ev.Details["attempt"] != "1/10" {
				t.Fatalf("key.age fetch recorded as %+v", ev)
			}
			keys++
		case ev.Type == "file.downloaded" && ev.Details["format"] == "age":
			if ev.Details["mode"] != "browser" || ev.Result != "ok" || ev.Details["attempt"] != "given back" {
				t.Fatalf("file.age download recorded as %+v", ev)
			}
			ages++
		case ev.Type == "file.decrypted":
			if ev.Result != "ok" || ev.Details["mode"] != "browser" || ev.File != "drawings.bin" {
				t.Fatalf("the page's report recorded as %+v", ev)
			}
			reports++
		case ev.Type == "passphrase.failed" || ev.Type == "link.locked":
			t.Fatalf("unexpected %s", ev.Type)
		}
	}
	if keys != 2 || ages != 2 || reports != 2 {
		t.Fatalf("ledger: %d key.age fetches, %d file.age downloads, %d reports; want 2 each", keys, ages, reports)
	}
	if s := dbString(t, g, `SELECT failed_attempts || '/' || browser_attempts || '/' || downloads FROM recipients`); s != "0/0/2" {
		t.Fatalf("attempts/browser attempts/downloads: %s, want 0/0/2", s)
	}

	// The server decrypts: JavaScript off.
	t.Run("nojs", func(t *testing.T) {
		c := newChrome(t)
		if _, err := chromedp.Call(c.ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
			t.Fatal(err)
		}
		c.open(link + "?lang=ja")
		page := c.text()
		if !strings.Contains(page, "JavaScript が無効なため") || !strings.Contains(page, "サーバーで復号する") || strings.Contains(page, "ブラウザで復号して保存") {
			t.Fatalf("the page without JavaScript:\n%s", page)
		}
		c.shot("link-page-no-javascript")
		c.do("type the passphrase", chromedp.SendKeys(chromedp.ID("passphrase"), pass))
		c.do("click download", chromedp.Click(chromedp.CSS(`button[name="file"][value="0"]`)))
		if got := c.download("drawings.bin", len(data)); !bytes.Equal(got, data) {
			t.Fatal("the file the server decrypted differs")
		}
		c.shot("downloaded-server-decrypted")
	})
	waitFor(t, 30*time.Second, "the server-side download recorded", func() bool {
		n := 0
		for _, ev := range g.ledger() {
			if ev.Type == "file.downloaded" && ev.Details["format"] == "plain" && ev.Result == "ok" {
				n++
			}
		}
		return n == 1
	})
	if !strings.Contains(g.log.String(), "file decrypted on the server") {
		t.Fatal("the log does not show the server-side decryption")
	}
	// On that path the passphrase does reach the server, and the tap
	// sees it: its silence above is not blindness.
	seen := false
	for _, r := range tp.requests()[len(pageRequests):] {
		seen = seen || strings.HasPrefix(r, "POST /t/"+token+"/download") && strings.Contains(r, "passphrase="+pass)
	}
	if !seen {
		t.Fatal("the tap did not see the passphrase sent on the server path")
	}
}

// TestBrowserDecryptLockout: in the browser, each passphrase tried costs
// one attempt, right or wrong (the page fetches key.age for each, and the
// server cannot see the outcome); a completed download gives its attempt
// back; what is not a passphrase at all costs nothing. With ten attempts
// outstanding the page says none are left, and the next try locks the
// link — which then refuses the right passphrase on both paths.
func TestBrowserDecryptLockout(t *testing.T) {
	chromiumPath(t)
	sink := startSink(t)
	g := browserGateway(t, sink.Addr())
	data := randomBytes(100 << 10)
	st := sendAndCollect(t, g, sink, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "lockout"},
		"body", attachment{name: "l.bin", contentType: "application/octet-stream", data: data}))
	token, pass := st.tokens[extA], st.pass[extA]
	link := g.url("/t/" + token + "?lang=en")
	wrong := "ZZZZZ" + pass[5:]
	failed := func() string {
		return dbString(t, g, `SELECT failed_attempts || '/' || browser_attempts || '/' || COALESCE(locked_at, 'open') FROM recipients`)
	}
	c := newChrome(t)
	c.inject(`delete window.showSaveFilePicker; delete Window.prototype.showSaveFilePicker;`)
	try := func(typed string) string {
		t.Helper()
		eval[bool](c, `(() => { document.getElementById("bd-passphrase").value = ""; return true; })()`)
		c.do("type", chromedp.SendKeys(chromedp.ID("bd-passphrase"), typed))
		c.clearStatus()
		c.do("click", chromedp.Click(chromedp.CSS(`#browser-decrypt button[data-file="0"]`)))
		return c.settled("answer", time.Minute)
	}
	attemptsShown := func() string { return eval[string](c, `document.getElementById("bd-attempts").textContent`) }

	c.open(link)
	c.shot("link-page")
	if s := try("hello"); !strings.Contains(s, "not a passphrase") || failed() != "0/0/open" {
		t.Fatalf("not a passphrase: %q, %s", s, failed())
	}
	c.shot("not-a-passphrase")
	for i := 1; i <= 2; i++ {
		s := try(wrong)
		if !strings.Contains(s, "not correct") || !strings.HasSuffix(s, "Attempts left: "+strconv.Itoa(10-i)) || attemptsShown() != strconv.Itoa(10-i) {
			t.Fatalf("wrong passphrase %d: %q (shown %s)", i, s, attemptsShown())
		}
		if f := failed(); f != strconv.Itoa(i)+"/"+strconv.Itoa(i)+"/open" {
			t.Fatalf("after wrong passphrase %d: %s", i, f)
		}
	}
	c.shot("wrong-passphrase")
	if s := try(pass); !strings.HasPrefix(s, "done: ") {
		t.Fatalf("right passphrase: %q", s)
	}
	if got := c.download("l.bin", len(data)); !bytes.Equal(got, data) {
		t.Fatal("the file differs")
	}
	// The right passphrase's attempt came back; the two wrong ones stay.
	waitFor(t, 10*time.Second, "the attempt given back", func() bool { return failed() == "2/2/open" })
	if attemptsShown() != "8" {
		t.Fatalf("after the download the page shows %s attempts left, want 8", attemptsShown())
	}
	c.shot("right-passphrase-downloaded")

	// A new visit: the page no longer holds the identity.
	c.open(link)
	if attemptsShown() != "8" {
		t.Fatalf("a new visit shows %s attempts left, want 8", attemptsShown())
	}
	for i := 3; i <= 10; i++ {
		s := try(wrong)
		if i < 10 && !strings.HasSuffix(s, "Attempts left: "+strconv.Itoa(10-i)) {
			t.Fatalf("wrong passphrase %d: %q", i, s)
		}
		if i == 10 && !strings.Contains(s, "no attempts are left: the next try locks this link") {
			t.Fatalf("tenth attempt: %q", s)
		}
	}
	if f := failed(); f != "10/10/open" {
		t.Fatalf("after ten attempts: %s", f)
	}
	c.shot("no-attempts-left")
	if s := try(pass); !strings.HasPrefix(s, "error: ") || !strings.Contains(s, "locked") {
		t.Fatalf("eleventh attempt: %q", s)
	}
	c.shot("locked")
	if f := failed(); !strings.HasPrefix(f, "10/10/") || strings.HasSuffix(f, "/open") {
		t.Fatalf("after the eleventh attempt: %s", f)
	}
	var keys, locks int
	for _, ev := range g.ledger() {
		switch {
		case ev.Type == "file.downloaded" && ev.Details["format"] == "key":
			keys++
		case ev.Type == "link.locked":
			if ev.Details["mode"] != "browser" {
				t.Fatalf("link.locked recorded as %+v", ev)
			}
			locks++
		case ev.Type == "passphrase.failed", ev.Type == "file.downloaded" && ev.Details["format"] == "plain":
			t.Fatalf("unexpected %+v", ev)
		}
	}
	if keys != 11 || locks != 1 {
		t.Fatalf("%d key.age fetches (want 11: 10 wrong, 1 right), %d link.locked (want 1)", keys, locks)
	}
	// Locked for the server path too.
	if resp, _ := postForm(t, g.url("/t/"+token+"/download"), form("passphrase", pass, "file", "0")); resp.StatusCode != 403 {
		t.Fatalf("the server path on a locked link: %d", resp.StatusCode)
	}
	c.open(link)
	if !strings.Contains(c.text(), "locked") {
		t.Fatalf("the link page after the lock:\n%s", c.text())
	}
	c.shot("link-page-locked")
}
