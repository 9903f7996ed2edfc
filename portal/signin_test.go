package portal

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/account"
)

var errorRE = regexp.MustCompile(`<p class="error" role="alert" id="error">([^<]*)</p>`)

// signIn posts the login form and returns the status, Location and the
// error shown.
func (b *browser) signIn(name, password, next string) (int, string, string) {
	b.f.t.Helper()
	resp, body := b.post("/login", "/login", url.Values{"name": {name}, "password": {password}, "next": {next}})
	msg := ""
	if m := errorRE.FindStringSubmatch(body); m != nil {
		msg = m[1]
	}
	return resp.StatusCode, resp.Header.Get("Location"), msg
}

// Every failed sign-in looks the same: unknown name, wrong password, a
// locked account (right or wrong password), a disabled account. The text
// still tells a locked-out person what to do.
func TestFailedSignInsLookTheSame(t *testing.T) {
	f := newStaffFixture(t, nil)
	ctx := context.Background()
	x := f.browser()
	for i := 0; i < 10; i++ {
		x.signIn("bob", fmt.Sprintf("wrong password %d", i), "/home")
	}
	if err := f.accts.Disable(ctx, "test", "alice", "left"); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		code int
		msg  string
	}
	got := map[string]answer{}
	for _, c := range []struct{ what, name, password string }{
		{"unknown name", "nobody", testPassword},
		{"wrong password", "aud", "wrong password 1"},
		{"locked, right password", "bob", testPassword},
		{"locked, wrong password", "bob", "wrong password 2"},
		{"disabled, right password", "alice", testPassword},
		{"disabled, wrong password", "alice", "wrong password 3"},
	} {
		code, loc, msg := f.browser().signIn(c.name, c.password, "/home")
		if loc != "" {
			t.Fatalf("%s: signed in (%d %s)", c.what, code, loc)
		}
		got[c.what] = answer{code, msg}
	}
	first := got["unknown name"]
	if first.msg == "" {
		t.Fatal("no error shown")
	}
	for what, a := range got {
		if a != first {
			t.Errorf("%s: %d %q; unknown name: %d %q", what, a.code, a.msg, first.code, first.msg)
		}
	}
	if !regexp.MustCompile(`ロック`).MatchString(first.msg) {
		t.Errorf("the answer does not mention the lock: %q", first.msg)
	}
}

// passwordStep signs name in with the password; the browser then waits
// for the second factor.
func (f *staffFixture) passwordStep(name string) *browser {
	f.t.Helper()
	b := f.browser()
	code, loc, msg := b.signIn(name, testPassword, "/home")
	if code != http.StatusSeeOther || !strings.HasPrefix(loc, "/login/totp") {
		f.t.Fatalf("password step of %s: %d %s %q", name, code, loc, msg)
	}
	return b
}

func (b *browser) code(code string) (int, string) {
	b.f.t.Helper()
	resp, _ := b.post("/login", "/login/totp", url.Values{"code": {code}, "next": {"/home"}}) // the CSRF token from /login: the TOTP page is gone with the session
	return resp.StatusCode, resp.Header.Get("Location")
}

// wrongCode is a code valid in none of the steps around now.
func (f *staffFixture) wrongCode(name string) string {
	valid := map[string]bool{}
	for _, d := range []time.Duration{-30 * time.Second, 0, 30 * time.Second} {
		c, _ := account.TOTPCode(f.secret[name], f.clock.Now().Add(d))
		valid[c] = true
	}
	for i := 0; ; i++ {
		if c := fmt.Sprintf("%06d", (654321+i*7919)%1000000); !valid[c] {
			return c
		}
	}
}

// Wrong codes at the second step lock the account like wrong passwords;
// once locked, the right code is refused and the pending session ends.
func TestWrongCodesLockTheAccount(t *testing.T) {
	f := newStaffFixture(t, nil)
	b := f.passwordStep("mgr")
	for i := 0; i < 10; i++ {
		if code, loc := b.code(f.wrongCode("mgr")); code == http.StatusSeeOther && loc == "/home" {
			t.Fatal("a wrong code signed in")
		}
	}
	a, err := f.accts.ByName(context.Background(), "mgr")
	if err != nil {
		t.Fatal(err)
	}
	if !f.clock.Now().Before(a.LockedUntil) {
		t.Fatalf("not locked after 10 wrong codes: %+v", a)
	}
	good, _ := account.TOTPCode(f.secret["mgr"], f.clock.Now())
	b2 := f.browser()
	if code, loc, _ := b2.signIn("mgr", testPassword, "/home"); loc != "" {
		t.Fatalf("locked manager passed the password step: %d %s", code, loc)
	}
	if code, loc := b.code(good); loc == "/home" {
		t.Fatalf("the right code signed a locked account in: %d", code)
	}
	if code, _ := b.get("/home"); code != http.StatusSeeOther {
		t.Fatalf("/home: %d", code)
	}
}

// A code seen once (over a shoulder, in a phishing proxy's log) cannot
// sign anyone in again.
func TestCodeReplayRefused(t *testing.T) {
	f := newStaffFixture(t, nil)
	code, _ := account.TOTPCode(f.secret["boss"], f.clock.Now())
	victim := f.passwordStep("boss")
	if c, loc := victim.code(code); c != http.StatusSeeOther || loc != "/home" {
		t.Fatalf("first use: %d %s", c, loc)
	}
	attacker := f.passwordStep("boss")
	if c, loc := attacker.code(code); loc == "/home" {
		t.Fatalf("replayed code signed in: %d", c)
	}
	if c, _ := attacker.get("/home"); c != http.StatusSeeOther {
		t.Fatalf("replayed code: /home %d", c)
	}
}

// A lock ends sessions still waiting for their second factor: whoever
// holds the password cannot finish a login begun before the lock.
func TestLockEndsPendingSecondFactor(t *testing.T) {
	f := newStaffFixture(t, nil)
	pending := f.passwordStep("root")
	x := f.browser()
	for i := 0; i < 10; i++ {
		x.signIn("root", fmt.Sprintf("wrong password %d", i), "/home")
	}
	good, _ := account.TOTPCode(f.secret["root"], f.clock.Now())
	if c, loc := pending.code(good); loc == "/home" {
		t.Fatalf("a login begun before the lock completed: %d", c)
	}
	if c, _ := pending.get("/home"); c != http.StatusSeeOther {
		t.Fatalf("/home: %d", c)
	}
}

// A session waiting for its second factor lasts minutes, not the 12
// hours of a signed-in one.
func TestPendingSecondFactorExpires(t *testing.T) {
	f := newStaffFixture(t, nil)
	b := f.passwordStep("mgr")
	f.clock.Advance(6 * time.Minute)
	good, _ := account.TOTPCode(f.secret["mgr"], f.clock.Now())
	if c, loc := b.code(good); loc == "/home" {
		t.Fatalf("second factor 6 minutes after the password: %d", c)
	}
	// Within the limit it works.
	b = f.passwordStep("mgr")
	f.clock.Advance(2 * time.Minute)
	good, _ = account.TOTPCode(f.secret["mgr"], f.clock.Now())
	if c, loc := b.code(good); c != http.StatusSeeOther || loc != "/home" {
		t.Fatalf("second factor 2 minutes after the password: %d %s", c, loc)
	}
}

// Failed sign-ins are limited per client address; successful ones are
// not counted (an office behind one address signs in at 9:00).
func TestSignInRateLimitCountsFailuresOnly(t *testing.T) {
	f := newStaffFixture(t, nil)
	for i := 0; i < 25; i++ {
		if code, loc, msg := f.browser().signIn("alice", testPassword, "/home"); loc != "/home" {
			t.Fatalf("sign-in %d from one address: %d %q", i+1, code, msg)
		}
	}
	for i := 0; i < 20; i++ {
		f.browser().signIn(fmt.Sprintf("nobody%d", i), "wrong password here", "/home")
	}
	code, loc, msg := f.browser().signIn("alice", testPassword, "/home")
	if code != http.StatusTooManyRequests || loc != "" || msg == "" {
		t.Fatalf("after 20 failures from one address: %d %s %q", code, loc, msg)
	}
	f.clock.Advance(11 * time.Minute)
	if code, loc, msg := f.browser().signIn("alice", testPassword, "/home"); loc != "/home" {
		t.Fatalf("after the window: %d %q", code, msg)
	}
}

var secretRE = regexp.MustCompile(`<code class="secret">([a-z2-7-]+)</code>`)

// The app-passwords page: creating one asks for the password again and
// shows the secret once; it works for SMTP AUTH until revoked.
func TestAppPasswordsPage(t *testing.T) {
	f := newStaffFixture(t, nil)
	ctx := context.Background()
	b := f.login("mgr")
	code, body := b.get("/account/app-passwords")
	if code != http.StatusOK || !strings.Contains(body, "アプリパスワードしか使えません") {
		t.Fatalf("page: %d\n%s", code, body)
	}
	resp, body := b.post("/account/app-passwords", "/account/app-passwords", url.Values{"action": {"add"}, "label": {"iPhone"}, "password": {"not my password"}})
	if resp.StatusCode != http.StatusUnauthorized || secretRE.MatchString(body) {
		t.Fatalf("add with a wrong password: %d", resp.StatusCode)
	}
	if list, _ := f.accts.AppPasswords(ctx, "mgr"); len(list) != 0 {
		t.Fatalf("created with a wrong password: %+v", list)
	}
	resp, body = b.post("/account/app-passwords", "/account/app-passwords", url.Values{"action": {"add"}, "label": {"iPhone"}, "password": {testPassword}})
	m := secretRE.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("add: %d %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
	if _, err := f.accts.AuthenticateSMTP(ctx, account.Login{Name: "mgr", Password: m[1], RemoteIP: "192.0.2.8"}); err != nil {
		t.Fatalf("the app password shown does not work: %v", err)
	}
	_, body = b.get("/account/app-passwords")
	if strings.Contains(body, m[1]) || !strings.Contains(body, "iPhone") || !strings.Contains(body, "192.0.2.8") {
		t.Fatalf("list after use (secret shown again, or no last use):\n%s", body)
	}
	list, _ := f.accts.AppPasswords(ctx, "mgr")
	resp, _ = b.post("/account/app-passwords", "/account/app-passwords", url.Values{"action": {"revoke"}, "id": {fmt.Sprint(list[0].ID)}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if _, err := f.accts.AuthenticateSMTP(ctx, account.Login{Name: "mgr", Password: m[1]}); err == nil {
		t.Fatal("revoked app password works")
	}
	// Someone else's app password cannot be revoked from here.
	_, _, err := f.accts.AddAppPassword(ctx, "test", "alice", "laptop")
	if err != nil {
		t.Fatal(err)
	}
	alist, _ := f.accts.AppPasswords(ctx, "alice")
	resp, _ = b.post("/account/app-passwords", "/account/app-passwords", url.Values{"action": {"revoke"}, "id": {fmt.Sprint(alist[0].ID)}})
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("revoking another account's app password: %d", resp.StatusCode)
	}
	if alist, _ = f.accts.AppPasswords(ctx, "alice"); !alist[0].Active() {
		t.Fatal("another account's app password was revoked")
	}
	// An account that sends no mail is told so.
	_, body = f.login("aud").get("/account/app-passwords")
	if !strings.Contains(body, "メールを送信する役割を持たない") {
		t.Fatalf("auditor page:\n%s", body)
	}
}

// postWith posts the login form with extra headers.
func (b *browser) postWith(path string, v url.Values, h http.Header) *http.Response {
	b.f.t.Helper()
	_, body := b.get("/login")
	m := csrfFieldRE.FindStringSubmatch(body)
	if m == nil {
		b.f.t.Fatal("no CSRF token")
	}
	v.Set("csrf", m[1])
	req, _ := http.NewRequest(http.MethodPost, b.f.srv.URL+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, vs := range h {
		for _, x := range vs {
			req.Header.Add(k, x)
		}
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.f.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// The per-address limit cannot be dodged with X-Forwarded-For: ignored
// without trust_proxy; with it, the address the proxy appended (the last
// one, whether the proxy appends to the client's header line or adds a
// line of its own) counts.
func TestSignInLimitAddressNotSpoofable(t *testing.T) {
	for _, trust := range []bool{false, true} {
		f := newStaffFixture(t, nil)
		f.cfg.HTTP.TrustProxy = trust
		b := f.browser()
		for i := 0; i < 20; i++ {
			h := http.Header{}
			h.Add("X-Forwarded-For", fmt.Sprintf("10.9.%d.%d", i, i))
			if trust {
				h.Add("X-Forwarded-For", "198.51.100.7") // the proxy's own line
			}
			b.postWith("/login", url.Values{"name": {"nobody"}, "password": {"wrong password"}}, h)
		}
		h := http.Header{}
		h.Add("X-Forwarded-For", "10.200.0.1")
		if trust {
			h.Add("X-Forwarded-For", "198.51.100.7")
		}
		if resp := b.postWith("/login", url.Values{"name": {"alice"}, "password": {testPassword}}, h); resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("trust_proxy=%v: after 20 failures with spoofed X-Forwarded-For: %d", trust, resp.StatusCode)
		}
		if trust {
			if ip := f.one(`SELECT remote_ip FROM logins ORDER BY id DESC LIMIT 1`); ip != "198.51.100.7" {
				t.Errorf("recorded address %q, want the one the proxy appended", ip)
			}
		}
	}
}

// Sign-out is a POST with the CSRF token: a GET (a link, an <img>) does
// not sign anyone out. Sign-in needs the token too (no login CSRF).
func TestSignOutAndSignInNeedAPost(t *testing.T) {
	f := newStaffFixture(t, nil)
	b := f.login("alice")
	if code, _ := b.get("/logout"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /logout: %d", code)
	}
	if code, _ := b.get("/home"); code != http.StatusOK {
		t.Fatalf("signed out by a GET: %d", code)
	}
	resp, err := b.c.PostForm(f.srv.URL+"/login", url.Values{"name": {"bob"}, "password": {testPassword}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("login without a CSRF token: %d", resp.StatusCode)
	}
	if n := f.one(`SELECT COUNT(*) FROM logins WHERE name = 'bob'`); n != "0" {
		t.Fatalf("a login without a CSRF token was tried: %s", n)
	}
}

// A session cookie planted before sign-in (fixation) is not the one the
// sign-in uses, and the CSRF token changes at sign-in too.
func TestSignInIssuesFreshTokens(t *testing.T) {
	f := newStaffFixture(t, nil)
	b := f.browser()
	u, _ := url.Parse(f.srv.URL)
	b.get("/login")
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: "planted-by-the-attacker-0123456789abcdef", Path: "/"}})
	before := map[string]string{}
	for _, c := range b.c.Jar.Cookies(u) {
		before[c.Name] = c.Value
	}
	if code, loc, msg := b.signIn("alice", testPassword, "/home"); loc != "/home" {
		t.Fatalf("sign-in: %d %q", code, msg)
	}
	after := map[string]string{}
	for _, c := range b.c.Jar.Cookies(u) {
		after[c.Name] = c.Value
	}
	if after[sessionCookie] == before[sessionCookie] || after[sessionCookie] == "" {
		t.Fatal("the planted session token is the signed-in one")
	}
	if after[csrfCookie] == before[csrfCookie] {
		t.Fatal("the CSRF token did not change at sign-in")
	}
	attacker := f.browser()
	attacker.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: before[sessionCookie], Path: "/"}})
	if code, _ := attacker.get("/home"); code != http.StatusSeeOther {
		t.Fatalf("the planted token opens a session: %d", code)
	}
}

// SweepSessions (run by the scheduler) deletes the sessions the portal
// would refuse — here one idle past http.session_idle — and keeps the
// others, which still work.
func TestSweepSessions(t *testing.T) {
	f := newStaffFixture(t, nil)
	idle, active := f.login("alice"), f.login("bob")
	sessions := func() int {
		n, _ := strconv.Atoi(f.one(`SELECT COUNT(*) FROM sessions`))
		return n
	}
	if n := sessions(); n != 2 {
		t.Fatalf("%d sessions after two sign-ins", n)
	}
	f.clock.Advance(20 * time.Minute)
	if code, _ := active.get("/home"); code != http.StatusOK {
		t.Fatalf("bob's page: %d", code)
	}
	f.clock.Advance(15 * time.Minute) // alice idle 35 minutes, bob 15
	if err := f.web.SweepSessions(context.Background(), f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if n := sessions(); n != 1 {
		t.Fatalf("%d sessions after the sweep, want 1", n)
	}
	if code, _ := active.get("/home"); code != http.StatusOK {
		t.Fatalf("bob's page after the sweep: %d", code)
	}
	if code, body := idle.get("/home"); code == http.StatusOK && !strings.Contains(body, `action="/login"`) {
		t.Fatalf("alice's swept session still shows her page: %d", code)
	}
}
