package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/testpg"
	"github.com/sealgate/sealgate/internal/testsink"
)

// binary is the sealgate binary built once for all tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sealgate-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "sealgate")
	cmd := exec.Command("go", "build", "-race", "-tags", os.Getenv("SEALGATE_E2E_TAGS"), "-o", binary, "github.com/sealgate/sealgate/cmd/sealgate")
	if os.Getenv("SEALGATE_E2E_NORACE") == "1" {
		cmd = exec.Command("go", "build", "-o", binary, "github.com/sealgate/sealgate/cmd/sealgate")
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "failed to build sealgate:", err)
		os.Exit(1)
	}
	code := testpg.Run(m) // a PostgreSQL cluster, if a test started one, is stopped
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// gw is one `sealgate serve` process.
type gw struct {
	t        testing.TB
	dir      string
	smtpAddr string
	subAddr  string
	httpAddr string
	env      []string
	dbURL    string // SEALGATE_DATABASE_URL, when the gateway runs on PostgreSQL
	cmd      *exec.Cmd
	log      *syncBuffer
	done     chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type gwOptions struct {
	smarthost string
	extraEnv  []string
	// config, when set, is a TOML configuration file's text (given with
	// SEALGATE_CONFIG) that sets the relay address, the smarthost and the
	// internal domains itself: the harness then sets none of those in the
	// environment (which would override the file), and relayAddr must be
	// the file's smtp.relay_addr.
	config    string
	relayAddr string
	// dir, when set, is the data directory (prepared by the test: another
	// instance's keys/ copied in, as an operator does for a fleet);
	// otherwise a new one.
	dir string
}

func startGateway(t testing.TB, o gwOptions) *gw {
	t.Helper()
	g := &gw{t: t, dir: o.dir, smtpAddr: freeAddr(t), subAddr: freeAddr(t), httpAddr: freeAddr(t)}
	if g.dir == "" {
		g.dir = t.TempDir()
	}
	g.env = append(os.Environ(),
		"SEALGATE_DATA_DIR="+g.dir,
		"SEALGATE_SUBMISSION_ADDR="+g.subAddr,
		"SEALGATE_HTTP_ADDR="+g.httpAddr,
		"SEALGATE_PUBLIC_URL=http://"+g.httpAddr,
	)
	if o.config != "" {
		file := filepath.Join(t.TempDir(), "sealgate.toml")
		if err := os.WriteFile(file, []byte(o.config), 0o600); err != nil {
			t.Fatal(err)
		}
		g.smtpAddr = o.relayAddr
		g.env = append(g.env, "SEALGATE_CONFIG="+file)
	} else {
		g.env = append(g.env,
			"SEALGATE_SMTP_ADDR="+g.smtpAddr,
			"SEALGATE_SMARTHOST="+o.smarthost,
			"SEALGATE_SMARTHOST_TLS=starttls",
			"SEALGATE_INTERNAL_DOMAINS=corp.example",
		)
	}
	g.env = append(g.env,
		"SEALGATE_KEY_NOTICE_DELAY=1s",
		"SEALGATE_RETRY_MIN=500ms",
		"SEALGATE_HOSTNAME=gw.corp.example",
		"SEALGATE_LOG_FORMAT=text",
		"SEALGATE_LOG_LEVEL=debug",
	)
	g.env = append(g.env, o.extraEnv...)
	for _, e := range o.extraEnv {
		if v, ok := strings.CutPrefix(e, "SEALGATE_DATABASE_URL="); ok {
			g.dbURL = v
		}
	}
	g.start()
	t.Cleanup(func() {
		g.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.log.String())
		}
	})
	return g
}

func (g *gw) start() {
	g.t.Helper()
	g.log = &syncBuffer{}
	g.cmd = exec.Command(binary, "serve")
	g.cmd.Env = g.env
	g.cmd.Stdout = g.log
	g.cmd.Stderr = g.log
	if err := g.cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	g.done = make(chan error, 1)
	go func() { g.done <- g.cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-g.done:
			g.t.Fatalf("sealgate exited at start: %v\n%s", err, g.log.String())
		default:
		}
		resp, err := http.Get("http://" + g.httpAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if c, err := net.Dial("tcp", g.smtpAddr); err == nil {
				c.Close()
				return
			}
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("sealgate did not start:\n%s", g.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the process with sig (SIGKILL simulates a crash).
func (g *gw) stop(sig syscall.Signal) {
	if g.cmd == nil || g.cmd.Process == nil {
		return
	}
	g.cmd.Process.Signal(sig)
	select {
	case <-g.done:
	case <-time.After(40 * time.Second):
		g.cmd.Process.Kill()
		<-g.done
	}
	g.cmd = nil
}

func (g *gw) restart() {
	g.stop(syscall.SIGTERM)
	g.start()
}

// db opens the gateway's database read-only (WAL allows it while running);
// on PostgreSQL, a plain connection pool.
func (g *gw) db() *sql.DB {
	g.t.Helper()
	if g.dbURL != "" {
		db, err := database.OpenPlain(g.dbURL)
		if err != nil {
			g.t.Fatal(err)
		}
		g.t.Cleanup(func() { db.Close() })
		return db
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(g.dir, "sealgate.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { db.Close() })
	return db
}

// ledgerTypes returns the event types in ledger order.
func (g *gw) ledger() []ledgerEvent {
	g.t.Helper()
	rows, err := g.db().Query(`SELECT data FROM ledger_records ORDER BY idx`)
	if err != nil {
		g.t.Fatal(err)
	}
	defer rows.Close()
	names := g.ledgerNames()
	var out []ledgerEvent
	for rows.Next() {
		var data []byte
		rows.Scan(&data)
		out = append(out, revealNames(parseLedgerEvent(g.t, data), names))
	}
	return out
}

// ledgerNames maps each commitment of ledger_names (names a contract's
// records hold as commitments) to its clear value, as the auditor's views
// reveal them; every opening must reproduce its commitment.
func (g *gw) ledgerNames() map[string]string {
	g.t.Helper()
	rows, err := g.db().Query(`SELECT commitment, value, opening FROM ledger_names`)
	if err != nil {
		g.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var n audit.Name
		if err := rows.Scan(&n.Commitment, &n.Value, &n.Opening); err != nil {
			g.t.Fatal(err)
		}
		if !n.Check() {
			g.t.Fatalf("ledger_names: the opening of %q does not reproduce its commitment %s", n.Value, n.Commitment)
		}
		out[n.Commitment] = n.Value
	}
	return out
}

// revealNames replaces the commitments in ev's fields by their values.
func revealNames(ev ledgerEvent, names map[string]string) ledgerEvent {
	reveal := func(s *string) {
		if v, ok := names[*s]; ok {
			*s = v
		}
	}
	for _, p := range []*string{&ev.Actor, &ev.Recipient, &ev.File, &ev.Message} {
		reveal(p)
	}
	if rest, ok := strings.CutPrefix(ev.Actor, "recipient:"); ok {
		reveal(&rest)
		ev.Actor = "recipient:" + rest
	}
	for k, v := range ev.Details {
		reveal(&v)
		ev.Details[k] = v
	}
	return ev
}

// countEvents returns how many ledger events are of type typ.
func (g *gw) countEvents(typ string) int {
	g.t.Helper()
	n := 0
	for _, ev := range g.ledger() {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

func (g *gw) url(path string) string { return "http://" + g.httpAddr + path }

// pending counts the outbound rows that may still be delivered: queued,
// waiting behind another row, or held. A row in any other state (sent,
// failed, cancelled) is never attempted again.
func (g *gw) pending() int {
	g.t.Helper()
	return dbInt(g.t, g, `SELECT COUNT(*) FROM outbound WHERE status IN ('queued', 'waiting', 'held')`)
}

// waitIdle waits until nothing is left to deliver (pending is 0): what
// has not reached the sink by then never will.
func (g *gw) waitIdle(timeout time.Duration) {
	g.t.Helper()
	waitFor(g.t, timeout, "the outbound queue to empty", func() bool { return g.pending() == 0 })
}

// waitEvent waits until the ledger holds an event of type typ.
func (g *gw) waitEvent(timeout time.Duration, typ string) {
	g.t.Helper()
	waitFor(g.t, timeout, "a "+typ+" event", func() bool {
		return dbInt(g.t, g, `SELECT COUNT(*) FROM ledger_records WHERE type = ?`, typ) > 0
	})
}

// cli runs a sealgate subcommand against the gateway's data directory.
func (g *gw) cli(stdin string, args ...string) (string, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = g.env
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects; one per test process is enough (cookies are per host:port).
var browser = func() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 2 * time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}()

func httpClient() *http.Client { return browser }

// csrfToken returns the double-submit CSRF token the portal expects in
// forms: the value of its csrf cookie (fetched from the home page, which
// changes nothing).
func csrfToken(t testing.TB, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	base := &url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/"}
	for _, c := range browser.Jar.Cookies(base) {
		if c.Name == "sg_csrf" {
			return c.Value
		}
	}
	resp, err := browser.Get(base.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range browser.Jar.Cookies(base) {
		if c.Name == "sg_csrf" {
			return c.Value
		}
	}
	t.Fatal("the portal set no csrf cookie")
	return ""
}

// postForm posts a form the way the portal's own pages do (with the CSRF
// token).
func postForm(t testing.TB, u string, v url.Values) (*http.Response, []byte) {
	t.Helper()
	if v.Get("csrf") == "" {
		v.Set("csrf", csrfToken(t, u))
	}
	resp, err := httpClient().PostForm(u, v)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func get(t testing.TB, u string) (*http.Response, []byte) {
	t.Helper()
	resp, err := httpClient().Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func startSink(t testing.TB) *testsink.Sink {
	t.Helper()
	s, err := testsink.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func contains(haystack []byte, s string) bool { return bytes.Contains(haystack, []byte(s)) }

func lower(s string) string { return strings.ToLower(s) }
