package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/emersion/go-smtp"
)

// NewRelayServer returns the SMTP server of the relay listener: it accepts
// mail from trusted networks (the company MTA, or clients on loopback) and
// refuses everyone else (no open relay).
func (g *Gateway) NewRelayServer() *smtp.Server {
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return g.newSession(c), nil
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
	client string // remote address
	helo   string
	actor  string // authenticated account, "" on the relay listener
	email  string // the authenticated account's own address
	from   string
	rcpts  []string
}

type session struct {
	g       *Gateway
	remote  netip.Addr
	trusted bool
	env     envelope
}

func (g *Gateway) newSession(c *smtp.Conn) *session {
	s := &session{g: g}
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
		s.g.Log.Warn("relay attempt from untrusted client refused", "client", s.env.client, "from", from)
		return replyRelayDenied
	}
	if from != "" && !validAddress(from) {
		return reject(553, smtp.EnhancedCode{5, 1, 7}, "送信者アドレスの形式が正しくありません。", "Sender address is not valid")
	}
	s.env.from = from
	s.env.rcpts = nil
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if !s.trusted {
		return replyRelayDenied
	}
	return s.addRcpt(to)
}

// addRcpt validates and records one recipient.
func (s *session) addRcpt(to string) error {
	if !validAddress(to) {
		return reject(553, smtp.EnhancedCode{5, 1, 3}, "宛先アドレスの形式が正しくありません。", "Recipient address is not valid")
	}
	for _, r := range s.env.rcpts {
		if strings.EqualFold(r, to) {
			return nil // a duplicate RCPT gets one copy
		}
	}
	s.env.rcpts = append(s.env.rcpts, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	if !s.trusted {
		return replyRelayDenied
	}
	id, err := s.g.accept(context.Background(), &s.env, r)
	if err != nil {
		reply := smtpReply(err)
		s.g.Log.Warn("message refused", "client", s.env.client, "from", s.env.from, "rcpts", len(s.env.rcpts),
			"code", reply.Code, "error", err)
		return reply
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + id}
}

// validAddress accepts local@domain with no characters that could break a
// header or a command line. Quoted local parts are refused rather than
// handled half-way.
func validAddress(a string) bool {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > 254 {
		return false
	}
	for _, c := range a {
		if c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' || c == ',' || c == ';' || c == '\\' || c == '(' || c == ')' {
			return false
		}
	}
	return !strings.Contains(a[at+1:], "..") && !strings.HasPrefix(a[at+1:], ".")
}

var errNoRecipients = errors.New("no recipients")
