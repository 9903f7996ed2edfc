package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testsink"
)

// rawSMTP speaks SMTP line by line for tests that need exact control.
type rawSMTP struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawSMTP {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	s := &rawSMTP{t: t, conn: c, r: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	s.reply()
	return s
}

// reply reads one (possibly multi-line) reply and returns its code and text.
func (s *rawSMTP) reply() (int, string) {
	s.t.Helper()
	var text []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading reply: %v (so far %q)", err, text)
		}
		line = strings.TrimRight(line, "\r\n")
		text = append(text, line)
		if len(line) < 4 || line[3] != '-' {
			code := 0
			for _, c := range line[:3] {
				code = code*10 + int(c-'0')
			}
			return code, strings.Join(text, "\n")
		}
	}
}

func (s *rawSMTP) cmd(line string) (int, string) {
	s.t.Helper()
	if _, err := s.conn.Write([]byte(line + "\r\n")); err != nil {
		s.t.Fatal(err)
	}
	return s.reply()
}

func addUser(t testing.TB, g *gw, name, email, password string, roles ...string) {
	t.Helper()
	args := []string{"user", "add", name, "--email", email, "--password-stdin"}
	for _, r := range roles {
		args = append(args, "--role", r)
	}
	if out, err := g.cli(password+"\n", args...); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
}

// submitClient connects to the submission port, starts TLS and logs in.
func submitClient(t testing.TB, g *gw, user, pass string) (*smtp.Client, error) {
	t.Helper()
	c, err := smtp.Dial(g.subAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		return nil, err
	}
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil { // development certificate
		return nil, err
	}
	if err := c.Auth(smtp.PlainAuth("", user, pass, "127.0.0.1")); err != nil {
		return c, err
	}
	return c, nil
}

func sendVia(c *smtp.Client, from string, to []string, msg []byte) error {
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	w.Write(msg)
	return w.Close()
}

func code(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func TestSubmission(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	const pw = "correct horse battery staple"
	addUser(t, g, "alice", sender, pw)
	addUser(t, g, "eve", "eve@corp.example", pw)

	// AUTH is neither offered nor accepted before STARTTLS.
	raw := dialRaw(t, g.subAddr)
	if c, text := raw.cmd("EHLO client.test"); c != 250 || strings.Contains(text, "AUTH") {
		t.Fatalf("EHLO before TLS offers AUTH:\n%s", text)
	}
	if c, text := raw.cmd("AUTH PLAIN AGFsaWNlAGNvcnJlY3QgaG9yc2UgYmF0dGVyeSBzdGFwbGU="); c/100 != 5 {
		t.Fatalf("AUTH without STARTTLS: %d %s", c, text)
	}
	if c, _ := raw.cmd("MAIL FROM:<" + sender + ">"); c/100 != 5 {
		t.Fatalf("MAIL without AUTH: %d", c)
	}

	// Wrong password.
	if _, err := submitClient(t, g, "alice", "wrong password here"); code(err) != 535 {
		t.Fatalf("wrong password: %v", err)
	}

	msg := func(from string) []byte {
		return buildMessage(map[string]string{"From": from, "To": extA, "Subject": "submitted"}, "body",
			attachment{name: "s.bin", contentType: "application/octet-stream", data: randomBytes(2000)})
	}
	// MAIL FROM spoofing refused.
	c, err := submitClient(t, g, "alice", pw)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("ceo@corp.example"); code(err) != 553 {
		t.Fatalf("MAIL FROM someone else: %v", err)
	}
	c.Reset()
	// From header spoofing refused.
	if err := sendVia(c, sender, []string{extA}, msg("CEO <ceo@corp.example>")); code(err) != 550 {
		t.Fatalf("From header of someone else: %v", err)
	}
	// The real thing.
	if err := sendVia(c, sender, []string{extA}, msg("Alice <"+sender+">")); err != nil {
		t.Fatalf("own address: %v", err)
	}
	if _, err := sink.Wait(30*time.Second, func(m []testsink.Message) bool { d := classify(m); return len(d.copies) == 1 }); err != nil {
		t.Fatal(err)
	}
	var actor string
	for _, ev := range g.ledger() {
		if ev.Type == "message.received" {
			actor = ev.Actor
		}
	}
	if actor != "alice" {
		t.Fatalf("sender of record %q, want alice", actor)
	}

	// A disabled account can no longer log in or send.
	if out, err := g.cli("", "user", "disable", "eve", "--reason", "test"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if _, err := submitClient(t, g, "eve", pw); code(err) != 535 {
		t.Fatalf("disabled account: %v", err)
	}
}

// submitFrom connects to the submission port from the loopback address
// local (each address has its own AUTH failure budget), starts TLS and
// authenticates with PLAIN.
func submitFrom(t testing.TB, g *gw, local, user, pass string) (*smtp.Client, error) {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	conn, err := d.Dial("tcp", g.subAddr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		return nil, err
	}
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
		return nil, err
	}
	return c, c.Auth(smtp.PlainAuth("", user, pass, "127.0.0.1"))
}

func replyText(err error) string {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Msg
	}
	return ""
}

var appPasswordOut = regexp.MustCompile(`(?m)^\s+([a-z2-7]{4}(?:-[a-z2-7]{4}){7})\s*$`)

// addAppPassword creates an app password with the CLI and returns it.
func addAppPassword(t testing.TB, g *gw, name, label string) string {
	t.Helper()
	out, err := g.cli("", "user", "app-password", "add", name, "--label", label)
	if err != nil {
		t.Fatalf("app-password add: %v\n%s", err, out)
	}
	m := appPasswordOut.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("app-password add printed no password:\n%s", out)
	}
	return m[1]
}

// Managers, admins and auditors cannot use SMTP AUTH with their sign-in
// password (they need TOTP on the portal): only with an app password,
// created, listed and revoked with the CLI, each step in the ledger. The
// refusal is the same as for a wrong password, and says what to do.
func TestSubmissionAppPasswords(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	addUser(t, g, "mgr", "mgr@corp.example", staffPW, "manager:DEFAULT")
	addUser(t, g, "root", "root@corp.example", staffPW, "admin")
	addUser(t, g, "aud", "aud@corp.example", staffPW, "auditor", "sender")
	addUser(t, g, "alice", sender, staffPW)

	_, wrong := submitFrom(t, g, "127.0.0.2", "mgr", "not the password")
	if code(wrong) != 535 {
		t.Fatalf("wrong password: %v", wrong)
	}
	for i, n := range []string{"mgr", "root", "aud"} {
		_, err := submitFrom(t, g, fmt.Sprintf("127.0.0.%d", 3+i), n, staffPW)
		if code(err) != 535 {
			t.Fatalf("%s signed in over SMTP with the sign-in password: %v", n, err)
		}
		if replyText(err) != replyText(wrong) {
			t.Fatalf("%s: the refusal differs from a wrong password's:\n%s\n---\n%s", n, replyText(err), replyText(wrong))
		}
	}
	for _, want := range []string{"app password", "アプリパスワード", "/account/app-passwords", "locked"} {
		if !strings.Contains(replyText(wrong), want) {
			t.Errorf("the refusal does not say %q:\n%s", want, replyText(wrong))
		}
	}
	// Senders keep their password.
	if _, err := submitFrom(t, g, "127.0.0.6", "alice", staffPW); err != nil {
		t.Fatalf("sender with the password: %v", err)
	}

	secret := addAppPassword(t, g, "mgr", "phone")
	c, err := submitFrom(t, g, "127.0.0.7", "mgr", secret)
	if err != nil {
		t.Fatalf("manager with an app password: %v", err)
	}
	msg := buildMessage(map[string]string{"From": "mgr@corp.example", "To": extA, "Subject": "from the manager"}, "body",
		attachment{name: "m.bin", contentType: "application/octet-stream", data: randomBytes(1000)})
	if err := sendVia(c, "mgr@corp.example", []string{extA}, msg); err != nil {
		t.Fatalf("manager sends: %v", err)
	}
	if _, err := sink.Wait(30*time.Second, func(m []testsink.Message) bool { return len(classify(m).copies) == 1 }); err != nil {
		t.Fatal(err)
	}
	out := cliOK(t, g, "user", "app-password", "list", "mgr")
	if !strings.Contains(out, "phone") || !strings.Contains(out, "127.0.0.7") || strings.Contains(out, secret) {
		t.Fatalf("list:\n%s", out)
	}
	// Revoked: the open connection cannot start another message, and the
	// app password no longer authenticates.
	cliOK(t, g, "user", "app-password", "revoke", "mgr", "phone")
	if err := c.Mail("mgr@corp.example"); code(err) != 530 {
		t.Fatalf("MAIL on a connection whose app password was revoked: %v", err)
	}
	if _, err := submitFrom(t, g, "127.0.0.8", "mgr", secret); code(err) != 535 {
		t.Fatalf("revoked app password: %v", err)
	}

	var added, revoked, used, refused int
	for _, ev := range g.ledger() {
		switch {
		case ev.Type == "account.changed" && ev.Details["change"] == "app password added":
			added++
		case ev.Type == "account.changed" && ev.Details["change"] == "app password revoked":
			revoked++
		case ev.Type == "login" && ev.Details["factor"] == "app password" && ev.Details["label"] == "phone":
			used++
		}
	}
	refused, _ = strconv.Atoi(dbString(t, g, `SELECT COUNT(*) FROM ledger_records WHERE type = 'login.failed' AND json_extract(CAST(data AS TEXT), '$.reason') = 'app password required'`))
	if added != 1 || revoked != 1 || used != 1 || refused != 3 {
		t.Fatalf("ledger: %d added, %d revoked, %d uses, %d refusals", added, revoked, used, refused)
	}
}

// A locked account gets the reply of a wrong password, whether the
// password is right or wrong.
func TestSubmissionLockedAccountNoOracle(t *testing.T) {
	g := startGateway(t, gwOptions{smarthost: startSink(t).Addr()})
	addUser(t, g, "alice", sender, staffPW)
	x := staffClient()
	for i := 0; i < 10; i++ {
		staffPost(t, x, g.url("/login"), g.url("/login"), url.Values{"name": {"alice"}, "password": {fmt.Sprintf("wrong guess %d", i)}})
	}
	var replies []string
	for i, pass := range []string{staffPW, "wrong password!"} {
		_, err := submitFrom(t, g, fmt.Sprintf("127.0.0.%d", 10+i), "alice", pass)
		if code(err) != 535 {
			t.Fatalf("locked account, password %d: %v", i, err)
		}
		replies = append(replies, replyText(err))
	}
	if replies[0] != replies[1] {
		t.Fatalf("a locked account answers differently for the right password:\n%s\n---\n%s", replies[0], replies[1])
	}
}

// An SMTP login ends with the password: after a reset, the open
// connection cannot start another message.
func TestSubmissionLoginEndsOnPasswordReset(t *testing.T) {
	g := startGateway(t, gwOptions{smarthost: startSink(t).Addr()})
	addUser(t, g, "alice", sender, staffPW)
	c, err := submitFrom(t, g, "127.0.0.1", "alice", staffPW)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(sender); err != nil {
		t.Fatal(err)
	}
	c.Reset()
	if out, err := g.cli("another password here\n", "user", "reset-password", "alice", "--password-stdin"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := c.Mail(sender); code(err) != 530 {
		t.Fatalf("MAIL after the password was reset: %v", err)
	}
}
