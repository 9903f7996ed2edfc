package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	netsmtp "net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/internal/atomicfile"
)

// Transport hands a rendered message to the next hop.
//
// Send calls body to stream the message (once per copy it writes: the
// Maildir writes one file per recipient); it returns one result
// per recipient (nil = accepted by the next hop) and a non-nil error only
// when the whole attempt failed before any recipient's fate was known.
// Errors are *smtp.SMTPError when the next hop replied; anything else is
// treated as transient.
type Transport interface {
	Send(ctx context.Context, env Envelope, body func(io.Writer) error) ([]error, error)
}

// Envelope is one outbound transaction's envelope.
type Envelope struct {
	From  string
	Rcpts []string
	// HeadersOnlyDSN asks the next hops, when they support DSN (RFC
	// 3461), to return only the headers of the message in a bounce
	// (RET=HDRS): a bounce of a rewritten copy or a key notice then never
	// carries its link or passphrase back to the sender.
	HeadersOnlyDSN bool
}

// SMTPTransport delivers to a smarthost. It keeps up to MaxIdle
// connections open between messages (as Postfix's connection cache does):
// a cached connection is reused, which spares the smarthost and the
// gateway a TCP handshake, a greeting, EHLO, STARTTLS and QUIT per
// message (and an RSET: see send). Safe for concurrent use.
type SMTPTransport struct {
	Addr     string
	TLSMode  string // starttls | required | none
	Hostname string
	Username string
	Password string
	// TLSConfig overrides the TLS client configuration (tests).
	TLSConfig *tls.Config
	Timeout   time.Duration
	// MaxIdle is how many connections are kept between messages (default
	// 8; negative disables the cache); IdleTimeout how long one may sit
	// unused (default 30 s, well under the usual server timeouts).
	MaxIdle     int
	IdleTimeout time.Duration
	// Now is the clock for idle times (default time.Now).
	Now func() time.Time

	mu   sync.Mutex
	idle []*smtpConn
}

// smtpConn is one open session with the smarthost.
type smtpConn struct {
	conn     net.Conn
	c        *netsmtp.Client
	lastUsed time.Time
}

func (t *SMTPTransport) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// Send implements Transport. It uses the standard library's SMTP client,
// which (unlike go-smtp's) can start TLS after an EHLO with our own name
// only when the server offers it.
func (t *SMTPTransport) Send(ctx context.Context, env Envelope, body func(io.Writer) error) ([]error, error) {
	if sc := t.take(); sc != nil {
		results, retry, err := t.send(ctx, sc, true, env, body)
		if !retry {
			return results, err
		}
		// The cached connection had gone stale (the smarthost closed it)
		// before anything of this message was sent: try a fresh one.
	}
	sc, err := t.dial(ctx)
	if err != nil {
		return nil, err
	}
	results, _, err := t.send(ctx, sc, false, env, body)
	return results, err
}

// send runs one transaction on sc and caches sc afterwards when the
// session is still in a known state. retry reports that a reused
// connection failed before MAIL FROM was accepted, so nothing was sent.
func (t *SMTPTransport) send(ctx context.Context, sc *smtpConn, reused bool, env Envelope, body func(io.Writer) error) (results []error, retry bool, err error) {
	rcpts := env.Rcpts
	timeout := t.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	sc.conn.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { sc.conn.SetDeadline(time.Now()) })
	keep := false
	defer func() {
		// Only a session whose cancellation hook never fired (and now
		// never will) goes back to the cache.
		if stop() && keep {
			t.put(sc)
		} else {
			sc.c.Close()
		}
	}()
	// A cached session needs no RSET: it was cached only after a
	// completed transaction (the server then resets its state, RFC 5321
	// 4.1.1.4) or after an RSET of its own (every recipient refused).
	// One the smarthost closed meanwhile fails at MAIL FROM, before
	// anything of the message is sent, and Send retries on a new one —
	// whatever the reply: an idle session may be closed with 421, or
	// with 451 or 554 (Exchange), and a refusal of the sender itself
	// comes back again on the new session.
	if err := mailFrom(sc.c, env); err != nil {
		return nil, reused, smtpErr(err)
	}
	results = make([]error, len(rcpts))
	accepted := 0
	for i, r := range rcpts {
		if err := sc.c.Rcpt(r); err != nil {
			results[i] = smtpErr(err)
			var se *smtp.SMTPError
			if !errors.As(results[i], &se) {
				return nil, false, results[i] // the connection broke
			}
			continue
		}
		accepted++
	}
	if accepted == 0 {
		keep = sc.c.Reset() == nil
		return results, false, nil
	}
	w, err := sc.c.Data()
	if err != nil {
		return nil, false, smtpErr(err)
	}
	if err := body(w); err != nil {
		// Close the connection without the final dot: the smarthost
		// discards the partial message.
		return nil, false, fmt.Errorf("failed to render message: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, false, smtpErr(err)
	}
	keep = true
	return results, false, nil
}

// mailFrom sends MAIL FROM: BODY=8BITMIME when the server offers it, and
// RET=HDRS when the envelope asks for it and the server offers DSN. It
// never declares SMTPUTF8 (net/smtp's Client.Mail does whenever the server
// offers it): sealgate's listeners do not offer SMTPUTF8, so no message it
// relays was submitted with it, and declaring it would make the next hop
// demand SMTPUTF8 of every later hop — Postfix then bounces a message with
// raw UTF-8 in its header (5.6.7) that it would otherwise deliver.
func mailFrom(c *netsmtp.Client, env Envelope) error {
	if strings.ContainsAny(env.From, "\r\n<>") {
		return errors.New("smtp: invalid sender address")
	}
	cmd := "MAIL FROM:<%s>"
	if ok, _ := c.Extension("8BITMIME"); ok {
		cmd += " BODY=8BITMIME"
	}
	if ok, _ := c.Extension("DSN"); ok && env.HeadersOnlyDSN {
		cmd += " RET=HDRS"
	}
	id, err := c.Text.Cmd(cmd, env.From)
	if err != nil {
		return err
	}
	c.Text.StartResponse(id)
	defer c.Text.EndResponse(id)
	_, _, err = c.Text.ReadResponse(250)
	return err
}

// take returns a cached connection, closing those idle too long.
func (t *SMTPTransport) take() *smtpConn {
	idleTimeout := t.IdleTimeout
	if idleTimeout == 0 {
		idleTimeout = 30 * time.Second
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.idle) > 0 {
		sc := t.idle[len(t.idle)-1]
		t.idle = t.idle[:len(t.idle)-1]
		if now.Sub(sc.lastUsed) < idleTimeout {
			return sc
		}
		go sc.quit()
	}
	return nil
}

// put caches sc, or says goodbye when the cache is full or disabled.
func (t *SMTPTransport) put(sc *smtpConn) {
	maxIdle := t.MaxIdle
	if maxIdle == 0 {
		maxIdle = 8
	}
	sc.lastUsed = t.now()
	t.mu.Lock()
	if len(t.idle) < maxIdle {
		t.idle = append(t.idle, sc)
		sc = nil
	}
	t.mu.Unlock()
	if sc != nil {
		sc.quit()
	}
}

// Close ends the cached sessions politely (QUIT).
func (t *SMTPTransport) Close() error {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, sc := range idle {
		sc.quit()
	}
	return nil
}

func (sc *smtpConn) quit() {
	sc.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if err := sc.c.Quit(); err != nil {
		sc.c.Close()
	}
}

// dial opens a session: greeting, EHLO, STARTTLS as configured, AUTH.
func (t *SMTPTransport) dial(ctx context.Context) (*smtpConn, error) {
	d := net.Dialer{Timeout: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, fmt.Errorf("failed to connect to smarthost %s: %w", t.Addr, err)
	}
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	host, _, _ := net.SplitHostPort(t.Addr)
	c, err := netsmtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("failed to greet smarthost: %w", smtpErr(err))
	}
	fail := func(err error) (*smtpConn, error) {
		c.Close()
		return nil, err
	}
	if err := c.Hello(t.Hostname); err != nil {
		return fail(fmt.Errorf("failed to greet smarthost: %w", smtpErr(err)))
	}
	if ok, _ := c.Extension("STARTTLS"); ok && t.TLSMode != "none" {
		cfg := t.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		if err := c.StartTLS(cfg); err != nil {
			return fail(fmt.Errorf("failed to start TLS with smarthost: %w", smtpErr(err)))
		}
	} else if t.TLSMode == "required" {
		return fail(errors.New("smarthost does not offer STARTTLS and smarthost_tls is required"))
	}
	if t.Username != "" {
		if _, isTLS := c.TLSConnectionState(); !isTLS {
			return fail(errors.New("refusing to send smarthost credentials without TLS"))
		}
		if err := c.Auth(netsmtp.PlainAuth("", t.Username, t.Password, host)); err != nil {
			return fail(fmt.Errorf("failed to authenticate to smarthost: %w", smtpErr(err)))
		}
	}
	return &smtpConn{conn: conn, c: c}, nil
}

// smtpErr turns the standard library's protocol errors into go-smtp's
// SMTPError so that one check decides permanent versus transient.
func smtpErr(err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		return &smtp.SMTPError{Code: te.Code, Message: te.Msg}
	}
	return err
}

// Maildir writes outbound mail to a local Maildir instead of sending it,
// one file per recipient, so that a newcomer can read what would have been
// sent. The files are in clear: this is the delivery target, like a mailbox.
type Maildir struct {
	dir      string
	hostname string
	now      func() time.Time
	seq      atomic.Uint64
}

// NewMaildir creates (if needed) the Maildir at dir.
func NewMaildir(dir, hostname string, now func() time.Time) (*Maildir, error) {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("failed to create outbox: %w", err)
		}
	}
	return &Maildir{dir: dir, hostname: strings.ReplaceAll(hostname, "/", "_"), now: now}, nil
}

// Send implements Transport.
func (m *Maildir) Send(ctx context.Context, env Envelope, body func(io.Writer) error) ([]error, error) {
	results := make([]error, len(env.Rcpts))
	for i, rcpt := range env.Rcpts {
		if err := m.deliver(env.From, rcpt, body); err != nil {
			return nil, err
		}
		results[i] = nil
	}
	return results, nil
}

func (m *Maildir) deliver(from, rcpt string, body func(io.Writer) error) error {
	now := m.now()
	name := fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), m.seq.Add(1), m.hostname)
	tmp := filepath.Join(m.dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return classifyIO(fmt.Errorf("failed to create outbox file: %w", err))
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return classifyIO(err)
	}
	if _, err := fmt.Fprintf(f, "Return-Path: <%s>\r\nDelivered-To: %s\r\n", from, rcpt); err != nil {
		return fail(err)
	}
	if err := body(f); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, filepath.Join(m.dir, "new", name)); err != nil {
		os.Remove(tmp)
		return classifyIO(err)
	}
	return atomicfile.SyncDir(filepath.Join(m.dir, "new"))
}
