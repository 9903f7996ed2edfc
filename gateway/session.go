package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/address"
	"github.com/sealgate/sealgate/metrics"
)

// NewRelayServer returns the SMTP server of the relay listener: it accepts
// mail from trusted networks (the company MTA, or clients on loopback) or
// from clients with a trusted TLS certificate (trust.go), for internal
// envelope senders, and refuses everyone else (no open relay).
func (g *Gateway) NewRelayServer() *smtp.Server {
	s := g.newServer(metrics.ListenerRelay, func(c *smtp.Conn) smtp.Session {
		sess := g.newSession(c, metrics.ListenerRelay)
		sess.trustByCertificate(c)
		return sess
	})
	s.TLSConfig = g.relayTLS()
	return s
}

// newServer returns an SMTP server with the gateway's limits, timeouts
// and STARTTLS certificate, whose sessions newSession makes; the replies
// they give are counted for listener (observe.go).
func (g *Gateway) newServer(listener string, newSession func(c *smtp.Conn) smtp.Session) *smtp.Server {
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return g.observe(listener, newSession(c)), nil
	}))
	s.Domain = g.Config.Hostname
	s.MaxMessageBytes = int64(g.Config.SMTP.MaxMessageSize)
	s.MaxRecipients = g.Config.SMTP.MaxRecipients
	s.ReadTimeout = g.Config.SMTP.ReadTimeout.D()
	s.WriteTimeout = g.Config.SMTP.WriteTimeout.D()
	s.TLSConfig = g.TLS
	s.ErrorLog = slogPrinter{g.Log}
	return s
}

type slogPrinter struct {
	log interface{ Error(string, ...any) }
}

func (p slogPrinter) Printf(format string, v ...any) {
	p.log.Error("smtp server", "msg", fmt.Sprintf(format, v...))
}
func (p slogPrinter) Println(v ...any) { p.log.Error("smtp server", "msg", fmt.Sprint(v...)) }

// envelope is one message transaction as the client stated it.
type envelope struct {
	listener string // relay, submission or inbound (package metrics)
	client   string // remote address
	helo     string
	actor    string // authenticated account, "" on the relay listener
	email    string // the authenticated account's own address
	// clientCert is the trusted certificate name of a relay client that
	// is trusted by its certificate, not its network ("" otherwise).
	clientCert string
	from       string
	rcpts      []string
}

// snapshot copies the envelope for one message transfer: go-smtp calls
// Reset (on RSET, or EHLO) while a BDAT transfer still runs, and a new MAIL
// and RCPT may follow before that transfer has failed; the transfer must
// keep reading its own envelope.
func (e *envelope) snapshot() *envelope {
	c := *e
	c.rcpts = slices.Clone(e.rcpts)
	return &c
}

type session struct {
	g       *Gateway
	remote  netip.Addr
	trusted bool
	env     envelope
	// tls and peerCert say, for the log, whether the connection did
	// STARTTLS and which names its client certificate carried (if any).
	tls      bool
	peerCert []string
}

func (g *Gateway) newSession(c *smtp.Conn, listener string) *session {
	s := &session{g: g}
	s.env.listener = listener
	if ta, ok := c.Conn().RemoteAddr().(*net.TCPAddr); ok {
		s.remote = ta.AddrPort().Addr().Unmap()
	}
	for _, p := range g.trusted {
		if p.Contains(s.remote) {
			s.trusted = true
			break
		}
	}
	s.env.client = c.Conn().RemoteAddr().String()
	s.env.helo = c.Hostname()
	return s
}

func (s *session) Reset() {
	s.env.from = ""
	s.env.rcpts = nil
}

func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if !s.trusted {
		s.g.Log.Warn("relay attempt from untrusted client refused", "client", s.env.client, "from", from, "tls", s.tls, "client_certificate", s.peerCert)
		return replyRelayDenied
	}
	canon, err := canonicalSender(from)
	if err != nil {
		s.g.Log.Warn("sender address refused", "client", s.env.client, "from", from, "error", err)
		return addressReply(err, false)
	}
	if err := s.relaySender(canon); err != nil {
		s.g.Log.Warn("relay refused for this sender", "client", s.env.client, "certificate", s.env.clientCert, "from", from)
		return err
	}
	s.env.from = canon
	s.env.rcpts = nil
	return nil
}

// canonicalSender returns the canonical form of an envelope sender; the
// null sender stays "".
func canonicalSender(from string) (string, error) {
	if from == "" {
		return "", nil
	}
	a, err := address.Parse(from)
	if err != nil {
		return "", err
	}
	return a.String(), nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if !s.trusted {
		return replyRelayDenied
	}
	a, err := s.parseRcpt(to)
	if err != nil {
		return err
	}
	s.addRcpt(a)
	return nil
}

// parseRcpt canonicalises a recipient, or returns the reply refusing it.
// Every listener classifies and delivers only the canonical form (package
// address): routing syntax that would make an external address look
// internal is refused here, at RCPT.
func (s *session) parseRcpt(to string) (address.Address, error) {
	a, err := address.Parse(to)
	if err != nil {
		s.g.Log.Warn("recipient address refused", "client", s.env.client, "from", s.env.from, "to", to, "error", err)
		return address.Address{}, addressReply(err, true)
	}
	return a, nil
}

// addRcpt records one canonical recipient; the same mailbox written twice
// (in any case, with a trailing dot, in full-width letters …) gets one copy.
func (s *session) addRcpt(a address.Address) {
	canon := a.String()
	for _, r := range s.env.rcpts {
		// Both canonical: they differ at most in the case of the local
		// part, which EqualFold ignores (Key's comparison).
		if strings.EqualFold(r, canon) {
			return
		}
	}
	s.env.rcpts = append(s.env.rcpts, canon)
}

func (s *session) Data(r io.Reader) error {
	if !s.trusted {
		return replyRelayDenied
	}
	env := s.env.snapshot()
	id, err := s.g.accept(context.Background(), env, r)
	if err != nil {
		reply := smtpReply(err)
		s.g.Log.Warn("message refused", "client", env.client, "from", env.from, "rcpts", len(env.rcpts),
			"code", reply.Code, "error", err)
		return reply
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + id}
}

// validAddress reports whether a is a mailbox in canonical form (package
// address): nothing in it can break a header or a command line, and it
// routes where its domain says.
func validAddress(a string) bool {
	c, err := address.Parse(a)
	return err == nil && c.String() == a
}

var errNoRecipients = errors.New("no recipients")
