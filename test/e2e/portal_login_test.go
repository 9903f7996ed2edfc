package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sealgate/sealgate/account"
	"github.com/sealgate/sealgate/internal/testsink"
)

// staffClient is a browser of its own (separate cookies).
func staffClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// staffPost fetches page (for its CSRF token) and posts the form to action.
func staffPost(t testing.TB, c *http.Client, page, action string, v url.Values) *http.Response {
	t.Helper()
	resp, err := c.Get(page)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1<<16)
	n, _ := resp.Body.Read(b)
	resp.Body.Close()
	m := csrfRE.FindSubmatch(b[:n])
	if m == nil {
		t.Fatalf("no CSRF token on %s (%d)", page, resp.StatusCode)
	}
	v.Set("csrf", string(m[1]))
	resp, err = c.PostForm(action, v)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestPortalLogin(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: []string{"SEALGATE_SESSION_IDLE=3s"}})
	const pw = "correct horse battery staple"
	addUser(t, g, "alice", sender, pw)
	addUser(t, g, "root", "root@corp.example", pw, "admin")
	addUser(t, g, "mgr", "mgr@corp.example", pw, "manager:DEFAULT")

	c := staffClient()
	if resp, _ := c.Get(g.url("/home")); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("/home without a session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp := staffPost(t, c, g.url("/login"), g.url("/login"), url.Values{"name": {"alice"}, "password": {pw}, "next": {"/home"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/home" {
		t.Fatalf("login: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, ck := range c.Jar.Cookies(&url.URL{Scheme: "http", Host: g.httpAddr, Path: "/"}) {
		if ck.Name == "sg_session" && len(ck.Value) < 40 {
			t.Fatal("weak session token")
		}
	}
	if resp, _ := c.Get(g.url("/home")); resp.StatusCode != http.StatusOK {
		t.Fatalf("/home with a session: %d", resp.StatusCode)
	}
	// The session expires after the idle timeout.
	time.Sleep(4 * time.Second)
	if resp, _ := c.Get(g.url("/home")); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("/home after the idle timeout: %d", resp.StatusCode)
	}

	// A manager needs the second factor: without TOTP enrolled, refused.
	m := staffClient()
	if resp := staffPost(t, m, g.url("/login"), g.url("/login"), url.Values{"name": {"mgr"}, "password": {pw}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("manager without TOTP: %d", resp.StatusCode)
	}
	out, err := g.cli("", "user", "totp", "mgr")
	if err != nil {
		t.Fatal(err, out)
	}
	u, _ := url.Parse(strings.TrimSpace(out[strings.Index(out, "otpauth://"):]))
	secret := u.Query().Get("secret")
	if resp := staffPost(t, m, g.url("/login"), g.url("/login"), url.Values{"name": {"mgr"}, "password": {pw}}); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login/totp") {
		t.Fatalf("manager login step 1: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := m.Get(g.url("/home")); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("/home before the second factor: %d", resp.StatusCode)
	}
	code, _ := account.TOTPCode(secret, time.Now())
	if resp := staffPost(t, m, g.url("/login/totp"), g.url("/login/totp"), url.Values{"code": {code}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("TOTP step: %d", resp.StatusCode)
	}
	if resp, _ := m.Get(g.url("/home")); resp.StatusCode != http.StatusOK {
		t.Fatalf("/home after TOTP: %d", resp.StatusCode)
	}

	// Ten failed logins lock the account and alert the administrators.
	x := staffClient()
	for i := 0; i < 10; i++ {
		staffPost(t, x, g.url("/login"), g.url("/login"), url.Values{"name": {"alice"}, "password": {"wrong password " + string(rune('a'+i))}})
	}
	if resp := staffPost(t, x, g.url("/login"), g.url("/login"), url.Values{"name": {"alice"}, "password": {pw}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("locked account signed in: %d", resp.StatusCode)
	}
	if _, err := sink.Wait(30*time.Second, func(ms []testsink.Message) bool {
		for _, m := range ms {
			if len(m.To) == 1 && m.To[0] == "root@corp.example" && contains(m.Data, "X-Sealgate-Notice: system") {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal("no lock alert reached the administrator: ", err)
	}
	var failed, logins int
	for _, ev := range g.ledger() {
		switch ev.Type {
		case "login.failed":
			failed++
		case "login":
			logins++
		}
	}
	if failed < 11 || logins < 2 {
		t.Fatalf("ledger: %d login.failed, %d login", failed, logins)
	}
}

// In a real browser, next= payloads that browsers read as another host
// (a tab inside "//", a backslash, a full-width solidus) land the browser
// on a page of the portal after sign-in. The "other host" is a server of
// this test on another port, which must see no request.
func TestBrowserLoginNextStaysLocal(t *testing.T) {
	c := newChrome(t)
	g := startGateway(t, gwOptions{smarthost: startSink(t).Addr()})
	addUser(t, g, "alice", sender, staffPW)
	var mu sync.Mutex
	var hits []string
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, r.URL.String())
		mu.Unlock()
		io.WriteString(w, "<html><body><main>evil</main></body></html>")
	}))
	defer evil.Close()
	host := strings.TrimPrefix(evil.URL, "http://")
	for i, next := range []string{"/\t/" + host + "/", "/\\" + host + "/", "/\\/" + host + "/", "/\t\\" + host + "/", "/／" + host + "/", "/%09/" + host + "/"} {
		c.open(g.url("/login?lang=en&next=" + url.QueryEscape(next)))
		c.do("type credentials", chromedp.SendKeys(chromedp.ID("name"), "alice"), chromedp.SendKeys(chromedp.ID("password"), staffPW))
		c.do("sign in", chromedp.Click(chromedp.CSS(`form.login button[type="submit"]`)))
		// Wait until the browser has left the sign-in page, wherever to.
		// (This Chromium aborts a redirect to "/<TAB>/host" and stays on
		// the sign-in page; other browsers follow it to //host. Either
		// way it is not the local page a sign-in must land on.)
		deadline := time.Now().Add(15 * time.Second)
		for strings.Contains(c.url(), "/login") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		u, err := url.Parse(c.url())
		if err != nil || u.Host != g.httpAddr || strings.HasPrefix(u.Path, "/login") {
			c.shot(fmt.Sprintf("not-on-a-portal-page-%d", i))
			t.Errorf("next=%q: after sign-in the browser is at %s", next, c.url())
		}
		// Sign out for the next round.
		c.submit("sign out", chromedp.Navigate(g.url("/home")))
		c.submit("sign out", chromedp.Click(chromedp.CSS(`form.logout button`)))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hits) > 0 {
		t.Fatalf("the browser went to the other host: %v", hits)
	}
}
