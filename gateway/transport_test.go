package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/internal/testsink"
)

func sendOne(t *testing.T, tr *SMTPTransport, rcpts ...string) []error {
	t.Helper()
	res, err := tr.Send(context.Background(), Envelope{From: "a@corp.example", Rcpts: rcpts}, func(w io.Writer) error {
		_, err := io.WriteString(w, "Subject: t\r\n\r\nhello\r\n")
		return err
	})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return res
}

// The transport reuses one session for consecutive messages, replaces a
// session the smarthost closed without losing the message, and never
// reuses a session left in an unknown state.
func TestSMTPTransportReusesSessions(t *testing.T) {
	sink, err := testsink.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Stop()
	tr := &SMTPTransport{Addr: sink.Addr(), TLSMode: "none", Hostname: "gw.test"}
	defer tr.Close()

	for i := 0; i < 3; i++ {
		sendOne(t, tr, "x@client.example")
	}
	if n, c := sink.Count(), sink.Conns(); n != 3 || c != 1 {
		t.Fatalf("3 sends: %d messages over %d connections, want 3 over 1", n, c)
	}

	// A refused recipient leaves the session usable.
	sink.Reject("no@client.example", 550)
	res := sendOne(t, tr, "no@client.example", "x@client.example")
	var se *smtp.SMTPError
	if !errors.As(res[0], &se) || se.Code != 550 || res[1] != nil {
		t.Fatalf("results %v, want [550, nil]", res)
	}
	if res := sendOne(t, tr, "no@client.example"); res[0] == nil {
		t.Fatal("refused-only recipient accepted")
	}
	if c := sink.Conns(); c != 1 {
		t.Fatalf("%d connections after refusals, want 1", c)
	}

	// The smarthost restarts (closing the cached session): the next
	// message goes through on a new session.
	sink.Stop()
	if err := sink.Restart(); err != nil {
		t.Fatal(err)
	}
	sendOne(t, tr, "x@client.example")
	if n, c := sink.Count(), sink.Conns(); n != 5 || c != 2 {
		t.Fatalf("after restart: %d messages over %d connections, want 5 over 2", n, c)
	}

	// A message whose rendering fails is abandoned without the final dot,
	// and that session is not reused.
	_, err = tr.Send(context.Background(), Envelope{From: "a@corp.example", Rcpts: []string{"x@client.example"}}, func(w io.Writer) error {
		io.WriteString(w, "Subject: partial\r\n\r\n")
		return errors.New("spool unreadable")
	})
	if err == nil {
		t.Fatal("render failure not reported")
	}
	sendOne(t, tr, "x@client.example")
	if n, c := sink.Count(), sink.Conns(); n != 6 || c != 3 {
		t.Fatalf("after a render failure: %d messages over %d connections, want 6 over 3", n, c)
	}
}

func TestSMTPTransportConcurrentAndUncached(t *testing.T) {
	sink, err := testsink.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Stop()
	tr := &SMTPTransport{Addr: sink.Addr(), TLSMode: "none", Hostname: "gw.test", MaxIdle: 2}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if _, err := tr.Send(context.Background(), Envelope{From: "a@corp.example", Rcpts: []string{"x@client.example"}}, func(w io.Writer) error {
					_, err := io.WriteString(w, "Subject: t\r\n\r\nhello\r\n")
					return err
				}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	tr.Close()
	if n := sink.Count(); n != 40 {
		t.Fatalf("%d messages, want 40", n)
	}
	if c := sink.Conns(); c >= 40 {
		t.Fatalf("%d connections for 40 messages: nothing reused", c)
	}

	off := &SMTPTransport{Addr: sink.Addr(), TLSMode: "none", Hostname: "gw.test", MaxIdle: -1}
	before := sink.Conns()
	sendOne(t, off, "x@client.example")
	sendOne(t, off, "x@client.example")
	if c := sink.Conns() - before; c != 2 {
		t.Fatalf("cache disabled: %d connections for 2 messages, want 2", c)
	}
}

// The transport never declares SMTPUTF8, even to a smarthost that offers
// it: sealgate does not offer it to senders, and a
// declared SMTPUTF8 makes every later hop demand it.
func TestSMTPTransportNeverDeclaresSMTPUTF8(t *testing.T) {
	sink, err := testsink.StartSMTPUTF8("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Stop()
	tr := &SMTPTransport{Addr: sink.Addr(), TLSMode: "none", Hostname: "gw.test"}
	defer tr.Close()
	sendOne(t, tr, "x@client.example")
	res, err := tr.Send(context.Background(), Envelope{From: "a@corp.example", Rcpts: []string{"y@client.example"}, HeadersOnlyDSN: true}, func(w io.Writer) error {
		_, err := io.WriteString(w, "Subject: =?UTF-8?B?5Zuz6Z2i?=\r\n\r\n図面\r\n")
		return err
	})
	if err != nil || res[0] != nil {
		t.Fatalf("send: %v %v", err, res)
	}
	msgs := sink.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	for _, m := range msgs {
		if m.UTF8 {
			t.Errorf("MAIL FROM for %v declared SMTPUTF8", m.To)
		}
	}
	if msgs[0].Return != "" || msgs[1].Return != "HDRS" {
		t.Errorf("RET: %q, %q; want \"\", HDRS", msgs[0].Return, msgs[1].Return)
	}
}

// idleClosingHost is a smarthost whose first session accepts one message
// and then answers the next command with closing (an idle timeout, as
// servers word it differently) and hangs up; later sessions behave.
type idleClosingHost struct {
	ln        net.Listener
	closing   string
	mu        sync.Mutex
	sessions  int
	delivered int
}

func startIdleClosingHost(t *testing.T, closing string) *idleClosingHost {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &idleClosingHost{ln: ln, closing: closing}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.sessions++
			first := h.sessions == 1
			h.mu.Unlock()
			go h.serve(c, first)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return h
}

func (h *idleClosingHost) serve(c net.Conn, first bool) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(s string) { io.WriteString(c, s+"\r\n") }
	say("220 host ESMTP")
	done := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		if first && done == 1 {
			say(h.closing)
			return
		}
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			say("250-host")
			say("250 8BITMIME")
		case strings.HasPrefix(cmd, "MAIL"), strings.HasPrefix(cmd, "RCPT"), cmd == "RSET":
			say("250 ok")
		case cmd == "DATA":
			say("354 go on")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			done++
			h.mu.Lock()
			h.delivered++
			h.mu.Unlock()
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("500 unknown command")
		}
	}
}

// TestSMTPTransportRetriesClosedSession: a cached session the smarthost
// has closed since is retried on a new session whatever its last reply
// was — 421, or a 451 or 554 as some servers close idle sessions — so the
// message is neither deferred nor bounced.
func TestSMTPTransportRetriesClosedSession(t *testing.T) {
	for _, closing := range []string{
		"421 4.4.2 host Error: timeout exceeded",
		"451 4.7.0 Timeout waiting for client input",
		"554 5.7.0 Too many errors, closing",
	} {
		h := startIdleClosingHost(t, closing)
		tr := &SMTPTransport{Addr: h.ln.Addr().String(), TLSMode: "none", Hostname: "gw.test"}
		sendOne(t, tr, "x@client.example")
		res := sendOne(t, tr, "x@client.example")
		h.mu.Lock()
		delivered, sessions := h.delivered, h.sessions
		h.mu.Unlock()
		if res[0] != nil || delivered != 2 || sessions != 2 {
			t.Errorf("closing with %q: result %v, %d delivered over %d sessions; want nil, 2 over 2", closing, res[0], delivered, sessions)
		}
		tr.Close()
	}
}
