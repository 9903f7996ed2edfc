package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/smtp"
	"net/textproto"
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
