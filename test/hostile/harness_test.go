// Package hostile sends hostile input over real sockets to the real
// `sealgate serve` binary: SMTP smuggling, pipelining after STARTTLS, relay
// attempts, oversized and malformed MIME, encoding bombs, file-name tricks.
// Every test ends by checking that the process still answers.
package hostile

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
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

	"github.com/sealgate/sealgate/internal/testsink"
)

const (
	sender   = "alice@corp.example"
	external = "carol@client.example"
	internal = "bob@corp.example"
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sealgate-hostile-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "sealgate")
	args := []string{"build", "-o", bin}
	if os.Getenv("SEALGATE_HOSTILE_NORACE") != "1" {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "github.com/sealgate/sealgate/cmd/sealgate")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "failed to build sealgate:", err)
		return 1
	}
	if err := os.Setenv("SEALGATE_HOSTILE_BINARY", bin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func binary(t testing.TB) string {
	t.Helper()
	b := os.Getenv("SEALGATE_HOSTILE_BINARY")
	if b == "" {
		t.Fatal("no sealgate binary (TestMain did not run)")
	}
	return b
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

// gateway is one `sealgate serve` process with a sink as its smarthost.
type gateway struct {
	t        testing.TB
	dir      string
	smtpAddr string
	httpAddr string
	sink     *testsink.Sink
	cmd      *exec.Cmd
	log      *syncBuffer
	done     chan struct{}
}

func startGateway(t testing.TB, extraEnv ...string) *gateway {
	t.Helper()
	sink, err := testsink.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sink.Stop)
	g := &gateway{t: t, dir: t.TempDir(), smtpAddr: freeAddr(t), httpAddr: freeAddr(t), sink: sink, log: &syncBuffer{}, done: make(chan struct{})}
	g.cmd = exec.Command(binary(t), "serve")
	g.cmd.Env = append(os.Environ(),
		"SEALGATE_DATA_DIR="+g.dir,
		"SEALGATE_SMTP_ADDR="+g.smtpAddr,
		"SEALGATE_SUBMISSION_ADDR=off",
		"SEALGATE_HTTP_ADDR="+g.httpAddr,
		"SEALGATE_PUBLIC_URL=http://"+g.httpAddr,
		"SEALGATE_SMARTHOST="+sink.Addr(),
		"SEALGATE_SMARTHOST_TLS=none",
		"SEALGATE_INTERNAL_DOMAINS=corp.example",
		"SEALGATE_KEY_NOTICE_DELAY=0s",
		"SEALGATE_RETRY_MIN=200ms",
		"SEALGATE_HOSTNAME=gw.corp.example",
		"SEALGATE_LOG_FORMAT=text",
		"SEALGATE_LOG_LEVEL=info",
	)
	g.cmd.Env = append(g.cmd.Env, extraEnv...)
	g.cmd.Stdout, g.cmd.Stderr = g.log, g.log
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		g.cmd.Wait()
		close(g.done)
	}()
	t.Cleanup(func() {
		g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.done:
		case <-time.After(30 * time.Second):
			g.cmd.Process.Kill()
			<-g.done
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.log.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-g.done:
			t.Fatalf("sealgate exited at start:\n%s", g.log.String())
		default:
		}
		if resp, err := http.Get("http://" + g.httpAddr + "/healthz"); err == nil {
			resp.Body.Close()
			if c, err := net.Dial("tcp", g.smtpAddr); err == nil {
				c.Close()
				return g
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sealgate did not start:\n%s", g.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// alive checks that the process is still running and answers SMTP and HTTP.
func (g *gateway) alive() {
	g.t.Helper()
	select {
	case <-g.done:
		g.t.Fatalf("sealgate exited:\n%s", g.log.String())
	default:
	}
	c := dial(g.t, g.smtpAddr)
	defer c.close()
	c.cmd("EHLO check.test", 250)
	c.cmd("NOOP", 250)
	c.cmd("QUIT", 221)
	resp, err := http.Get("http://" + g.httpAddr + "/healthz")
	if err != nil {
		g.t.Fatalf("portal does not answer: %v", err)
	}
	resp.Body.Close()
	if strings.Contains(g.log.String(), "panic") {
		g.t.Fatalf("the gateway logged a panic:\n%s", g.log.String())
	}
}

func (g *gateway) db() *sql.DB {
	g.t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(g.dir, "sealgate.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { db.Close() })
	return db
}

func (g *gateway) count(query string, args ...any) int {
	g.t.Helper()
	var n int
	if err := g.db().QueryRow(query, args...).Scan(&n); err != nil {
		g.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// leftovers counts spool files and stored objects (nothing may remain of a
// refused message; a drained queue leaves no spool file).
func (g *gateway) leftovers() (spool, objects int) {
	filepath.Walk(filepath.Join(g.dir, "spool"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			spool++
		}
		return nil
	})
	spool += g.count(`SELECT COUNT(*) FROM spool_files`) // gateway.DBSpool
	filepath.Walk(filepath.Join(g.dir, "objects", "objects"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			objects++
		}
		return nil
	})
	return spool, objects
}

// drained waits until the gateway has no pending deliveries.
func (g *gateway) drained() {
	g.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := g.count(`SELECT COUNT(*) FROM outbound WHERE status IN ('queued', 'waiting', 'held')`)
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%d deliveries still pending", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// post sends a form to the portal with a double-submit CSRF token (the
// cookie and the form field agree, as the portal's own forms do).
func (g *gateway) post(t testing.TB, path string, form url.Values) *http.Response {
	t.Helper()
	token := hex.EncodeToString(randomBytes(t, 24))
	form.Set("csrf", token)
	req, err := http.NewRequest(http.MethodPost, "http://"+g.httpAddr+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "sg_csrf", Value: token})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// conn is a scripted SMTP client.
type conn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, addr string) *conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	cc := &conn{t: t, c: c, br: bufio.NewReader(c)}
	if code, text := cc.reply(); code != 220 {
		t.Fatalf("greeting: %d %s", code, text)
	}
	return cc
}

func (c *conn) close() { c.c.Close() }

// reply reads one (possibly multi-line) reply.
func (c *conn) reply() (int, string) {
	c.t.Helper()
	var text []string
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply: %v (so far %q)", err, text)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 {
			c.t.Fatalf("short reply line %q", line)
		}
		var code int
		fmt.Sscanf(line[:3], "%d", &code)
		text = append(text, line[4:])
		if line[3] == ' ' {
			return code, strings.Join(text, "\n")
		}
	}
}

// tryReply is reply with a deadline; ok is false when nothing came.
func (c *conn) tryReply(wait time.Duration) (code int, text string, ok bool) {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(wait))
	defer c.c.SetReadDeadline(time.Now().Add(5 * time.Minute))
	line, err := c.br.ReadString('\n')
	if err != nil {
		if ne, isNet := err.(net.Error); isNet && ne.Timeout() && line == "" {
			return 0, "", false
		}
		if line == "" {
			return 0, err.Error(), false
		}
	}
	full := strings.TrimRight(line, "\r\n")
	for len(full) >= 4 && full[3] == '-' {
		next, err := c.br.ReadString('\n')
		if err != nil {
			break
		}
		full = strings.TrimRight(next, "\r\n")
	}
	if len(full) < 3 {
		return 0, full, false
	}
	fmt.Sscanf(full[:3], "%d", &code)
	return code, full, true
}

func (c *conn) write(s string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// cmd sends one command and checks the reply code (0: any).
func (c *conn) cmd(line string, want int) (int, string) {
	c.t.Helper()
	c.write(line + "\r\n")
	code, text := c.reply()
	if want != 0 && code != want {
		c.t.Fatalf("%q: got %d %s, want %d", trunc(line), code, text, want)
	}
	return code, text
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// send runs one transaction with body as DATA (dot-stuffed here) and
// returns the final reply.
func send(t testing.TB, addr, from string, rcpts []string, body []byte) (int, string) {
	t.Helper()
	c := dial(t, addr)
	defer c.close()
	c.cmd("EHLO hostile.test", 250)
	c.cmd("MAIL FROM:<"+from+">", 250)
	for _, r := range rcpts {
		c.cmd("RCPT TO:<"+r+">", 250)
	}
	c.cmd("DATA", 354)
	// Write while reading: the server may refuse before the end of data
	// (e.g. a line too long) and close the connection under our feet.
	go c.c.Write(append(dotStuff(body), ".\r\n"...))
	code, text := c.reply()
	c.c.Write([]byte("QUIT\r\n"))
	return code, text
}

// dotStuff doubles a leading dot on every line and ends with CRLF.
func dotStuff(b []byte) []byte {
	var out bytes.Buffer
	atStart := true
	for _, c := range b {
		if atStart && c == '.' {
			out.WriteByte('.')
		}
		out.WriteByte(c)
		atStart = c == '\n'
	}
	if !bytes.HasSuffix(out.Bytes(), []byte("\r\n")) {
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

// startTLS upgrades c (after its 220 to STARTTLS).
func (c *conn) startTLS() {
	c.t.Helper()
	if c.br.Buffered() != 0 {
		c.t.Fatalf("%d bytes arrived in clear after 220 to STARTTLS", c.br.Buffered())
	}
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true, ServerName: "gw.corp.example"})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.c = tc
	c.br = bufio.NewReader(tc)
}

// hasRun reports whether output contains any n-byte run of secret.
func hasRun(output, secret []byte, n int) bool {
	if len(secret) < n {
		return bytes.Contains(output, secret)
	}
	idx := make(map[string]struct{}, len(output))
	for i := 0; i+n <= len(output); i++ {
		idx[string(output[i:i+n])] = struct{}{}
	}
	for i := 0; i+n <= len(secret); i++ {
		if _, ok := idx[string(secret[i:i+n])]; ok {
			return true
		}
	}
	return false
}

// unfold removes CR and LF (a run split across encoded lines is still a run).
func unfold(b []byte) []byte {
	return bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, b)
}

// TestHasRun checks the leak detector the other tests rely on.
func TestHasRun(t *testing.T) {
	secret := randomBytes(t, 500)
	enc := []byte(b64Lines(secret))
	notice := []byte("Content-Type: text/plain\r\n\r\nsealed\r\n")
	if hasRun(notice, secret, 32) || hasRun(unfold(notice), unfold(enc), 32) {
		t.Fatal("false positive")
	}
	if !hasRun(append(notice, secret[100:140]...), secret, 32) {
		t.Fatal("raw run not found")
	}
	leak := append(append([]byte(nil), notice...), enc[150:230]...) // spans a line break
	if !hasRun(unfold(leak), unfold(enc), 32) {
		t.Fatal("base64 run across a line break not found")
	}
}
