package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/devcert"
	"github.com/sealgate/sealgate/internal/ratelimit"
)

// fakeAuth is an Authenticator over a fixed table (the real one, over
// the accounts, is tested end to end).
type fakeAuth struct {
	mu      sync.Mutex
	calls   []string // usernames, in order
	revoked bool     // Valid fails from now on
}

var errFakeBad = errors.New("fake: wrong password")

func (f *fakeAuth) AuthenticateSMTP(ctx context.Context, username, password, ip string) (SMTPUser, error) {
	f.mu.Lock()
	f.calls = append(f.calls, username)
	f.mu.Unlock()
	switch {
	case username == "locked":
		return SMTPUser{}, fmt.Errorf("%w: locked", ErrAuthDisabled)
	case username == "alice" && password == "right password":
		return SMTPUser{Name: "alice", Email: "alice@corp.example", Valid: func(context.Context) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.revoked {
				return ErrAuthDisabled
			}
			return nil
		}}, nil
	}
	return SMTPUser{}, errFakeBad
}

func (f *fakeAuth) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// startSubmission serves the submission listener on a loopback port.
func startSubmission(t *testing.T, auth Authenticator) string {
	t.Helper()
	return startSubmissionWith(t, auth, nil)
}

// startSubmissionWith is startSubmission with the gateway changed by
// change (when not nil) before the listener is made.
func startSubmissionWith(t *testing.T, auth Authenticator, change func(g *Gateway)) string {
	t.Helper()
	g := newTestGateway(t, nil, nil)
	if change != nil {
		change(g.Gateway)
	}
	cert, err := devcert.New(rand.Reader, "gw.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	g.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv := g.NewSubmissionServer(auth)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// rawConn speaks SMTP line by line, from a chosen loopback address.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialFrom(t *testing.T, addr, local string) *rawConn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	t.Cleanup(func() { c.Close() })
	rc := &rawConn{t: t, conn: c, r: bufio.NewReader(c)}
	rc.reply()
	return rc
}

func (c *rawConn) reply() (int, string) {
	c.t.Helper()
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply: %v (so far %q)", err, lines)
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			var code int
			fmt.Sscanf(line[:3], "%d", &code)
			return code, strings.Join(lines, "\n")
		}
	}
}

func (c *rawConn) cmd(line string) (int, string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
	return c.reply()
}

// startTLS upgrades the connection.
func (c *rawConn) startTLS() {
	c.t.Helper()
	if code, text := c.cmd("STARTTLS"); code != 220 {
		c.t.Fatalf("STARTTLS: %d %s", code, text)
	}
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	if code, text := c.cmd("EHLO client.test"); code != 250 {
		c.t.Fatalf("EHLO after STARTTLS: %d %s", code, text)
	}
}

func enc64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func plain(user, pass string) string { return "AUTH PLAIN " + enc64("\x00"+user+"\x00"+pass) }

func hasJapanese(s string) bool {
	for _, r := range s {
		if r >= 0x3040 && r <= 0x9fff {
			return true
		}
	}
	return false
}

// AUTH before STARTTLS is neither offered nor evaluated, and the refusal
// says what to do in both languages.
func TestSubmissionAuthBeforeSTARTTLS(t *testing.T) {
	auth := &fakeAuth{}
	addr := startSubmission(t, auth)
	c := dialFrom(t, addr, "")
	if code, text := c.cmd("EHLO client.test"); code != 250 || strings.Contains(text, "AUTH") || !strings.Contains(text, "STARTTLS") {
		t.Fatalf("EHLO before TLS: %d\n%s", code, text)
	}
	for _, line := range []string{plain("alice", "right password"), "AUTH LOGIN " + enc64("alice"), "AUTH LOGIN"} {
		code, text := c.cmd(line)
		if code != 530 || !strings.Contains(text, "5.7.0") || !strings.Contains(text, "STARTTLS") || !hasJapanese(text) {
			t.Errorf("%s before STARTTLS: %d %s", strings.Fields(line)[1], code, text)
		}
	}
	if calls := auth.called(); len(calls) != 0 {
		t.Fatalf("credentials sent in clear were checked: %v", calls)
	}
	c.startTLS()
	if code, text := c.cmd(plain("alice", "right password")); code != 235 {
		t.Fatalf("AUTH after STARTTLS: %d %s", code, text)
	}
}

// Every failed AUTH gets the same reply: a wrong password, an unknown
// name and a disabled or locked account (whatever the password).
func TestSubmissionAuthFailuresLookTheSame(t *testing.T) {
	addr := startSubmission(t, &fakeAuth{})
	var replies []string
	for i, cred := range [][2]string{{"alice", "wrong password"}, {"nobody", "right password"}, {"locked", "right password"}, {"locked", "wrong password"}} {
		c := dialFrom(t, addr, fmt.Sprintf("127.0.0.%d", 10+i))
		c.cmd("EHLO client.test")
		c.startTLS()
		code, text := c.cmd(plain(cred[0], cred[1]))
		if code != 535 {
			t.Fatalf("%v: %d %s", cred, code, text)
		}
		replies = append(replies, text)
	}
	for i, r := range replies {
		if r != replies[0] {
			t.Errorf("reply %d differs:\n%s\n---\n%s", i, r, replies[0])
		}
	}
	for _, want := range []string{"locked", "app password", "アプリパスワード", "/account/app-passwords", "Manager, admin and auditor"} {
		if !strings.Contains(replies[0], want) {
			t.Errorf("the reply does not say %q: %s", want, replies[0])
		}
	}
	for _, line := range strings.Split(replies[0], "\n") {
		if len(line) > 510 {
			t.Errorf("reply line of %d bytes (RFC 5321: 512 with CRLF)", len(line))
		}
	}
}

// The LOGIN mechanism: with and without an initial response, an empty
// initial response ("="), cancellation.
func TestSubmissionLOGIN(t *testing.T) {
	addr := startSubmission(t, &fakeAuth{})
	for i, steps := range [][]string{
		{"AUTH LOGIN", enc64("alice"), enc64("right password")},
		{"AUTH LOGIN " + enc64("alice"), enc64("right password")},
		{"AUTH LOGIN =", enc64("alice"), enc64("right password")},
	} {
		c := dialFrom(t, addr, "")
		c.cmd("EHLO client.test")
		c.startTLS()
		var code int
		var text string
		for j, s := range steps {
			code, text = c.cmd(s)
			if j < len(steps)-1 && code != 334 {
				t.Fatalf("case %d step %d: %d %s", i, j, code, text)
			}
		}
		if code != 235 {
			t.Fatalf("case %d: %d %s", i, code, text)
		}
		if code, _ := c.cmd("MAIL FROM:<alice@corp.example>"); code != 250 {
			t.Fatalf("case %d: MAIL after LOGIN: %d", i, code)
		}
	}
	c := dialFrom(t, addr, "")
	c.cmd("EHLO client.test")
	c.startTLS()
	c.cmd("AUTH LOGIN")
	if code, _ := c.cmd("*"); code != 501 {
		t.Fatalf("cancelled LOGIN: %d", code)
	}
	if code, _ := c.cmd("MAIL FROM:<alice@corp.example>"); code != 530 {
		t.Fatalf("MAIL after a cancelled LOGIN: %d", code)
	}
}

// The per-account limit is keyed on the name as the accounts read it
// (trimmed, any case): spelling it differently gives no fresh attempts.
func TestSubmissionRateLimitPerAccountName(t *testing.T) {
	auth := &fakeAuth{}
	addr := startSubmission(t, auth)
	names := []string{"alice", "Alice", " alice", "alice ", "ALICE", "\talice", "alice", "aLice", " ALICE ", "alice"}
	for i, n := range names {
		c := dialFrom(t, addr, fmt.Sprintf("127.0.0.%d", 20+i)) // a fresh address each time: only the name limit applies
		c.cmd("EHLO client.test")
		c.startTLS()
		if code, text := c.cmd("AUTH LOGIN " + enc64(n)); code != 334 {
			t.Fatalf("%q: %d %s", n, code, text)
		}
		if code, text := c.cmd(enc64("wrong password")); code != 535 {
			t.Fatalf("%q: %d %s", n, code, text)
		}
	}
	c := dialFrom(t, addr, "127.0.0.40")
	c.cmd("EHLO client.test")
	c.startTLS()
	before := len(auth.called())
	if code, text := c.cmd(plain("alice", "right password")); code != 454 {
		t.Fatalf("11th attempt on one account: %d %s", code, text)
	}
	if len(auth.called()) != before {
		t.Fatal("a rate-limited attempt was checked")
	}
}

// A login that no longer holds (account disabled, password changed, app
// password revoked since) cannot start another message.
func TestSubmissionLoginRecheckedAtMAIL(t *testing.T) {
	auth := &fakeAuth{}
	addr := startSubmission(t, auth)
	c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "alice", "right password")); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@corp.example", nil); err != nil {
		t.Fatal(err)
	}
	c.Reset()
	auth.mu.Lock()
	auth.revoked = true
	auth.mu.Unlock()
	err = c.Mail("alice@corp.example", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 530 || !hasJapanese(se.Message) {
		t.Fatalf("MAIL after the login was revoked: %v", err)
	}
}

// When the shared counters of AUTH failures cannot be read (their
// database is down), AUTH is refused with a temporary reply in both
// languages before the password is checked: guessing is never let through
// uncounted.
func TestSubmissionRefusedWhenUncounted(t *testing.T) {
	down, err := database.Open(context.Background(), filepath.Join(t.TempDir(), "counters"), testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		t.Fatal(err)
	}
	down.Close()
	auth := &fakeAuth{}
	addr := startSubmissionWith(t, auth, func(g *Gateway) {
		g.Limits = (&ratelimit.Store{DB: down, Now: time.Now, Key: func() ([]byte, error) { return make([]byte, 32), nil }}).Maker()
	})
	c := dialFrom(t, addr, "")
	c.cmd("EHLO client.test")
	c.startTLS()
	if code, text := c.cmd(plain("alice", "right password")); code != 454 || !strings.Contains(text, "try again later") || !strings.Contains(text, "ログインを受け付けられません") {
		t.Fatalf("AUTH with the counters down: %d %s", code, text)
	}
	if n := len(auth.called()); n != 0 {
		t.Fatalf("the password was checked %d times with the counters down", n)
	}
}

// slowAuth is fakeAuth taking a while to check a password, as the
// accounts' password hash does: AUTHs sent at once are all under way
// together.
type slowAuth struct{ fakeAuth }

func (s *slowAuth) AuthenticateSMTP(ctx context.Context, username, password, ip string) (SMTPUser, error) {
	time.Sleep(50 * time.Millisecond) // widens the window the race needs; the fixed code is exact whatever the timing
	return s.fakeAuth.AuthenticateSMTP(ctx, username, password, ip)
}

// TestSubmissionAuthBurstCounted: wrong AUTHs sent from one address all at
// once, each for another name, are each counted before the password is
// checked: only the limit (10 per address) are checked, the rest refused
// with 454. (The counts were read first and a failure counted after the
// check, so all of them were checked.)
func TestSubmissionAuthBurstCounted(t *testing.T) {
	auth := &slowAuth{}
	addr := startSubmission(t, auth)
	const n = 30
	codes := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		c := dialFrom(t, addr, "127.0.0.9")
		c.cmd("EHLO client.test")
		c.startTLS()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			codes[i], _ = c.cmd(plain(fmt.Sprintf("user%d", i), "wrong password"))
		}()
	}
	close(start)
	wg.Wait()
	refused := 0
	for _, c := range codes {
		if c == 454 {
			refused++
		}
	}
	if checked := len(auth.called()); checked != 10 || refused != n-10 {
		t.Fatalf("%d wrong AUTHs sent at once from one address: %d checked, %d refused with 454; want 10 checked (the limit), %d refused (replies %v)", n, checked, refused, n-10, codes)
	}
}
