package e2e

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/internal/testpg"
	"github.com/sealgate/sealgate/storage/s3/s3test"
)

// startFleet starts two `sealgate serve` instances on one PostgreSQL and
// one S3 bucket, as an operator runs them behind a load balancer: the same
// master key (SEALGATE_MASTER_KEY) and the same keys/ directory (copied
// from the first), each with its own ports and data directory. conf is a
// configuration file's text for both.
func startFleet(t *testing.T, smarthost, conf string) (a, b *gw) {
	t.Helper()
	url := testpg.URL(t)
	cfg := s3test.Start(t).Bucket(t, "fleet")
	master, err := crypto.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "sealgate.toml")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(s3Env(cfg), "SEALGATE_DATABASE_URL="+url, "SEALGATE_MASTER_KEY="+master, "SEALGATE_CONFIG="+file)
	a = startGateway(t, gwOptions{smarthost: smarthost, extraEnv: env})
	b = startGateway(t, gwOptions{smarthost: smarthost, extraEnv: env, dir: fleetDir(t, a)})
	return a, b
}

// fleetDir returns a data directory for another instance of a's fleet:
// a's keys/ (ledger.key.age, ledger.pub) copied in, as an operator does.
func fleetDir(t *testing.T, a *gw) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ledger.key.age", "ledger.pub"} {
		data, err := os.ReadFile(filepath.Join(a.dir, "keys", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "keys", name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// untilWindow waits, if needed, until the current minute has at least
// need seconds left: the shared limits count in windows aligned on the
// minute, and a step of the test must not straddle two.
func untilWindow(need time.Duration) {
	now := time.Now()
	next := now.Truncate(time.Minute).Add(time.Minute)
	if next.Sub(now) < need {
		time.Sleep(next.Sub(now) + 500*time.Millisecond)
	}
}

// TestFleetLimits: two instances on one PostgreSQL count as one. Wrong
// passphrases for one link sent alternately to the two portals meet the
// per-link limit (4 a minute here) together, and the lock after 6
// failures holds on both; a sign-in session made on one is valid on the
// other, and a logout on the other ends it; failed SMTP AUTH from one
// address meets its limit (10) across the two submission listeners. The
// counters are rows of rate_counters, with no address in clear.
func TestFleetLimits(t *testing.T) {
	sink := startSink(t)
	a, b := startFleet(t, sink.Addr(), "[transfer]\nmax_passphrase_failures = 6\nper_link_attempts_per_minute = 4\nper_ip_attempts_per_minute = 100\n")
	gws := []*gw{a, b}
	cliOK(t, a, "contract", "add", "C-FLEET", "--domains", "client.example")
	st := sendAndCollect(t, a, sink, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "[C-FLEET] two instances"},
		"body", attachment{name: "f.bin", contentType: "application/octet-stream", data: randomBytes(3000)}))
	token, pass := st.tokens[extA], st.pass[extA]
	wrong := "AAAAA-AAAAA-AAAAA-AAAAA-AAAAA"
	failed := func() int { return dbInt(t, a, `SELECT failed_attempts FROM recipients`) }
	try := func(g *gw, passphrase string) (int, string) {
		t.Helper()
		resp, body := postForm(t, g.url("/t/"+token+"/download"), form("passphrase", passphrase, "file", "0"))
		return resp.StatusCode, string(body)
	}

	// The per-link limit, across the two: A, B, A, B are wrong
	// passphrases; the 5th and 6th (A, B) are over the link's 4 a minute.
	untilWindow(30 * time.Second)
	for i := 1; i <= 4; i++ {
		if code, body := try(gws[(i-1)%2], wrong); code != http.StatusUnauthorized {
			t.Fatalf("wrong passphrase %d: %d\n%s", i, code, body)
		}
	}
	for i := 5; i <= 6; i++ {
		if code, body := try(gws[(i-1)%2], wrong); code != http.StatusTooManyRequests || !strings.Contains(body, "試行回数が多すぎます") {
			t.Fatalf("attempt %d on instance %c, over the link's limit counted on both: %d (want 429)\n%s", i, 'A'+rune((i-1)%2), code, body)
		}
	}
	if n := failed(); n != 4 {
		t.Fatalf("%d failed attempts recorded, want 4 (the refused ones try no passphrase)", n)
	}
	var rows int
	a.db().QueryRow(`SELECT COUNT(*) FROM rate_counters WHERE scope = 'portal.link'`).Scan(&rows)
	if rows != 1 {
		t.Fatalf("%d portal.link counters in PostgreSQL, want 1", rows)
	}
	var clear int
	a.db().QueryRow(`SELECT COUNT(*) FROM rate_counters WHERE position(convert_to('127.0.0.1', 'UTF8') in key_hash) > 0`).Scan(&clear)
	if clear != 0 {
		t.Fatalf("%d counters hold the client address in clear", clear)
	}

	// The lock after 6 failures, across the two, in the next window: B
	// fails (5), A fails and locks (6); then B refuses even the right
	// passphrase.
	untilWindow(time.Minute)
	if code, body := try(b, wrong); code != http.StatusUnauthorized {
		t.Fatalf("wrong passphrase 5 (on B, next window): %d\n%s", code, body)
	}
	if code, body := try(a, wrong); code != http.StatusForbidden || !strings.Contains(body, "ロック") {
		t.Fatalf("wrong passphrase 6 (on A) did not lock the link: %d\n%s", code, body)
	}
	if code, _ := try(b, pass); code != http.StatusForbidden {
		t.Fatalf("the link locked on A served the right passphrase on B: %d", code)
	}
	if locks := a.countEvents("link.locked"); locks != 1 {
		t.Fatalf("%d link.locked events, want 1", locks)
	}

	// A session made on A is valid on B; a logout on B ends it on A.
	addUser(t, a, "alice", sender, staffPW)
	c := signIn(t, a, "alice", "")
	var session *http.Cookie
	for _, ck := range c.Jar.Cookies(&url.URL{Scheme: "http", Host: a.httpAddr, Path: "/"}) {
		if ck.Name == "sg_session" {
			session = ck
		}
	}
	if session == nil {
		t.Fatal("no session cookie from A")
	}
	onB := staffClient()
	onB.Jar.SetCookies(&url.URL{Scheme: "http", Host: b.httpAddr, Path: "/"}, []*http.Cookie{session})
	if code, body := pageOf(t, onB, b.url("/home")); code != http.StatusOK || !strings.Contains(body, "alice") {
		t.Fatalf("A's session on B: %d", code)
	}
	if resp := staffPost(t, onB, b.url("/home"), b.url("/logout"), url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout on B: %d", resp.StatusCode)
	}
	if code, _ := pageOf(t, c, a.url("/home")); code != http.StatusSeeOther {
		t.Fatalf("the session ended on B still serves on A: %d", code)
	}

	// Failed SMTP AUTH from one address, alternately on A and B: ten are
	// answered 535, the 11th (over the address's 10) 454 on either.
	for i := 1; i <= 12; i++ {
		_, err := submitClient(t, gws[(i-1)%2], "nobody", "wrong password")
		want := 535
		if i > 10 {
			want = 454
		}
		if got := code(err); got != want {
			t.Fatalf("AUTH failure %d on instance %c: %d (want %d): %v", i, 'A'+rune((i-1)%2), got, want, err)
		}
	}
}

// TestPassphrasesRefusedWhileDatabaseDown: with its PostgreSQL stopped,
// an instance tries no passphrase — wrong or right, on the server path or
// the page's key.age — and answers each with 503 and a retry-later text
// in both languages: never an uncounted guess. (The link's state is read
// from the database first, so this holds before the counters are reached;
// the counters' own failure is tested in portal.TestLimitsFailClosed.)
func TestPassphrasesRefusedWhileDatabaseDown(t *testing.T) {
	pg, err := testpg.Start(context.Background())
	if errors.Is(err, testpg.ErrNotInstalled) && !testpg.Enabled() && os.Getenv("SEALGATE_REQUIRE_TOOLS") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			pg.Stop()
		}
	})
	dbURL, err := pg.CreateDatabase(context.Background(), "down")
	if err != nil {
		t.Fatal(err)
	}
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: append(s3Env(s3test.Start(t).Bucket(t, "down")), "SEALGATE_DATABASE_URL="+dbURL)})
	cliOK(t, g, "contract", "add", "C-DOWN", "--domains", "client.example")
	st := sendAndCollect(t, g, sink, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "[C-DOWN] database down"},
		"body", attachment{name: "d.bin", contentType: "application/octet-stream", data: randomBytes(2000)}))
	token, pass := st.tokens[extA], st.pass[extA]
	csrf := csrfToken(t, g.url("/"))
	stopped = true
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 15; i++ {
		p := "AAAAA-AAAAA-AAAAA-AAAAA-AAAAA"
		action := "/download"
		switch {
		case i == 14:
			p = pass
		case i%3 == 2:
			action = "/key"
		}
		resp, body := postForm(t, g.url("/t/"+token+action), form("passphrase", p, "file", "0", "csrf", csrf))
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "もう一度お試しください") {
			t.Fatalf("POST %s %d with PostgreSQL down: %d\n%s", action, i+1, resp.StatusCode, body)
		}
	}
}
