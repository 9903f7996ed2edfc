// Package testsink is an SMTP server that stands for the next hop in tests
// and load runs: it records every message it accepts, and can be told to
// refuse recipients (4xx or 5xx), to be down, or to come back.
package testsink

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one accepted delivery.
type Message struct {
	From string
	To   []string
	Data []byte
	At   time.Time
	// Return is the DSN RET parameter of MAIL FROM ("HDRS", "FULL" or "").
	Return string
	// UTF8 is whether MAIL FROM declared SMTPUTF8 (StartSMTPUTF8).
	UTF8 bool
}

// Sink is a recording SMTP server on loopback.
type Sink struct {
	mu       sync.Mutex
	msgs     []Message
	reject   map[string]*smtp.SMTPError
	addr     string
	srv      *smtp.Server
	ln       net.Listener
	notify   chan struct{}
	discard  bool
	accepted int
	conns    int
	smtputf8 bool
}

// Start listens on addr ("127.0.0.1:0" for any port). The sink does not
// offer SMTPUTF8, like many mailbox servers.
func Start(addr string) (*Sink, error) {
	return start(addr, false)
}

// StartSMTPUTF8 is Start for a sink that offers SMTPUTF8 (Message.UTF8
// says whether a sender declared it).
func StartSMTPUTF8(addr string) (*Sink, error) {
	return start(addr, true)
}

func start(addr string, smtputf8 bool) (*Sink, error) {
	s := &Sink{reject: map[string]*smtp.SMTPError{}, notify: make(chan struct{}, 1), smtputf8: smtputf8}
	if err := s.listen(addr); err != nil {
		return nil, err
	}
	return s, nil
}

// Discard makes the sink count messages without keeping their bodies.
func (s *Sink) Discard(on bool) { s.mu.Lock(); s.discard = on; s.mu.Unlock() }

func (s *Sink) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("failed to listen: %w", err)
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s.mu.Lock()
		s.conns++
		s.mu.Unlock()
		return &session{s: s}, nil
	}))
	srv.Domain = "sink.test"
	srv.MaxMessageBytes = 4 << 30
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = nopLogger{}
	srv.EnableDSN = true
	srv.EnableSMTPUTF8 = s.smtputf8
	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.srv = srv
	s.ln = ln
	s.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// Addr is host:port.
func (s *Sink) Addr() string { s.mu.Lock(); defer s.mu.Unlock(); return s.addr }

// Stop closes the listener and every connection (the next hop is down).
func (s *Sink) Stop() {
	s.mu.Lock()
	srv, ln := s.srv, s.ln
	s.srv, s.ln = nil, nil
	s.mu.Unlock()
	if ln != nil {
		ln.Close() // Close below misses a listener Serve has not registered yet
	}
	if srv != nil {
		srv.Close()
	}
}

// Restart listens again on the same address.
func (s *Sink) Restart() error {
	var err error
	for i := 0; i < 50; i++ {
		if err = s.listen(s.Addr()); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// Reject makes RCPT TO:<addr> fail with code (e.g. 550 or 451); code 0
// removes the rule.
func (s *Sink) Reject(addr string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == 0 {
		delete(s.reject, strings.ToLower(addr))
		return
	}
	s.reject[strings.ToLower(addr)] = &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 1, 1}, Message: "refused by test sink"}
}

// Messages returns a copy of what was accepted so far.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Conns is the number of SMTP connections opened so far.
func (s *Sink) Conns() int { s.mu.Lock(); defer s.mu.Unlock(); return s.conns }

// Count is the number of messages accepted so far.
func (s *Sink) Count() int { s.mu.Lock(); defer s.mu.Unlock(); return s.accepted }

// Wait waits until pred holds for the messages or the timeout passes.
func (s *Sink) Wait(timeout time.Duration, pred func([]Message) bool) ([]Message, error) {
	deadline := time.Now().Add(timeout)
	for {
		msgs := s.Messages()
		if pred(msgs) {
			return msgs, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return msgs, errors.New("testsink: timed out waiting for messages")
		}
		if left > 200*time.Millisecond {
			left = 200 * time.Millisecond
		}
		select {
		case <-s.notify:
		case <-time.After(left):
		}
	}
}

type session struct {
	s    *Sink
	from string
	ret  string
	utf8 bool
	to   []string
}

func (ss *session) Reset()        { ss.from, ss.ret, ss.utf8, ss.to = "", "", false, nil }
func (ss *session) Logout() error { return nil }
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.from, ss.ret, ss.utf8 = from, "", false
	if opts != nil {
		ss.ret, ss.utf8 = string(opts.Return), opts.UTF8
	}
	return nil
}
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	rej := ss.s.reject[strings.ToLower(to)]
	ss.s.mu.Unlock()
	if rej != nil {
		return rej
	}
	ss.to = append(ss.to, to)
	return nil
}
func (ss *session) Data(r io.Reader) error {
	var buf bytes.Buffer
	ss.s.mu.Lock()
	discard := ss.s.discard
	ss.s.mu.Unlock()
	var err error
	if discard {
		_, err = io.Copy(io.Discard, r)
	} else {
		_, err = io.Copy(&buf, r)
	}
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.accepted++
	if !discard {
		ss.s.msgs = append(ss.s.msgs, Message{From: ss.from, To: append([]string(nil), ss.to...), Data: buf.Bytes(), At: time.Now(), Return: ss.ret, UTF8: ss.utf8})
	}
	ss.s.mu.Unlock()
	select {
	case ss.s.notify <- struct{}{}:
	default:
	}
	return nil
}
