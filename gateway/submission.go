package gateway

import (
	"context"
	"errors"
	"io"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/address"
	"github.com/sealgate/sealgate/internal/ratelimit"
)

// SMTPUser is an account authenticated on the submission listener.
type SMTPUser struct {
	Name  string // account name: the sender of record
	Email string // the only address the account may send as
}

// Authenticator checks SMTP AUTH credentials against the accounts. It
// returns ErrAuthDisabled for a disabled or locked account.
type Authenticator interface {
	AuthenticateSMTP(ctx context.Context, username, password, remoteIP string) (SMTPUser, error)
}

// ErrAuthDisabled is returned by an Authenticator for an account that may
// not log in (disabled or locked).
var ErrAuthDisabled = errors.New("gateway: account disabled or locked")

// submission is the state shared by the submission listener's sessions.
type submission struct {
	g       *Gateway
	auth    Authenticator
	perIP   *ratelimit.Limiter
	perUser *ratelimit.Limiter
}

// NewSubmissionServer returns the SMTP server of the submission listener
// (staff mail clients): STARTTLS is required before AUTH PLAIN or LOGIN, the
// authenticated account is the sender of record, and it may use only its
// own address in MAIL FROM and in the From header. AUTH failures are rate
// limited per client address and per account name.
func (g *Gateway) NewSubmissionServer(auth Authenticator) *smtp.Server {
	sub := &submission{
		g:       g,
		auth:    auth,
		perIP:   ratelimit.New(10, 10*time.Minute, g.Now),
		perUser: ratelimit.New(10, 10*time.Minute, g.Now),
	}
	s := g.NewRelayServer()
	s.Backend = smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		sess := g.newSession(c)
		sess.trusted = false // submission never relays without AUTH
		return &submissionSession{session: sess, sub: sub}, nil
	})
	s.AllowInsecureAuth = false // AUTH is not even offered before STARTTLS
	s.TLSConfig = g.TLS         // no client certificate request
	return s
}

type submissionSession struct {
	*session
	sub  *submission
	user *SMTPUser
}

var (
	replyAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "STARTTLS の後にログイン(AUTH)してください。\nAuthentication required: use STARTTLS, then AUTH"}
	replyAuthFailed = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
		Message: "ユーザー名またはパスワードが正しくありません。\nAuthentication failed: wrong user name or password"}
	replyAuthDisabled = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
		Message: "このアカウントは無効化またはロックされています。管理者に連絡してください。\nAuthentication failed: the account is disabled or locked; contact your administrator"}
	replyAuthRateLimited = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "ログインの失敗が多すぎます。しばらく待ってから再試行してください。\nToo many failed authentications; try again later"}
	replyNotYourAddress = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "送信者アドレスはご自身のアドレスのみ使用できます。\nSender address rejected: you may only send as your own address"}
)

func (s *submissionSession) AuthMechanisms() []string { return []string{sasl.Plain, "LOGIN"} }

func (s *submissionSession) Auth(mech string) (sasl.Server, error) {
	check := func(username, password string) error {
		ip := s.remote.String()
		if s.sub.perIP.Blocked(ip) || s.sub.perUser.Blocked(strings.ToLower(username)) {
			return replyAuthRateLimited
		}
		u, err := s.sub.auth.AuthenticateSMTP(context.Background(), username, password, ip)
		if err != nil {
			s.sub.perIP.Allow(ip)
			s.sub.perUser.Allow(strings.ToLower(username))
			if errors.Is(err, ErrAuthDisabled) {
				return replyAuthDisabled
			}
			return replyAuthFailed
		}
		s.user = &u
		s.env.actor = u.Name
		s.env.email = u.Email
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return replyAuthFailed
			}
			return check(username, password)
		}), nil
	case "LOGIN":
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *submissionSession) Mail(from string, opts *smtp.MailOptions) error {
	if s.user == nil {
		return replyAuthRequired
	}
	canon, err := canonicalSender(from)
	if err != nil {
		s.g.Log.Warn("submission: sender address refused", "account", s.user.Name, "from", from, "error", err)
		return addressReply(err, false)
	}
	if !address.Same(canon, s.user.Email) {
		s.g.Log.Warn("submission: MAIL FROM not the account's address", "account", s.user.Name, "from", from)
		return replyNotYourAddress
	}
	s.env.from = canon
	s.env.rcpts = nil
	return nil
}

func (s *submissionSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.user == nil {
		return replyAuthRequired
	}
	a, err := s.parseRcpt(to)
	if err != nil {
		return err
	}
	s.addRcpt(a)
	return nil
}

func (s *submissionSession) Data(r io.Reader) error {
	if s.user == nil {
		return replyAuthRequired
	}
	id, err := s.g.accept(context.Background(), s.env.snapshot(), r)
	if err != nil {
		reply := smtpReply(err)
		s.g.Log.Warn("message refused", "account", s.user.Name, "client", s.env.client, "code", reply.Code, "error", err)
		return reply
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + id}
}

// checkHeaderFrom enforces, for authenticated senders, that the From header
// names the account's own address and nobody else.
func checkHeaderFrom(headerFrom, email string) error {
	addrs, err := mail.ParseAddressList(headerFrom)
	if err != nil || len(addrs) != 1 || !address.Same(addrs[0].Address, email) {
		return reject(550, smtp.EnhancedCode{5, 7, 1}, "From ヘッダにはご自身のアドレスのみ使用できます。",
			"From header rejected: it must be your own address only")
	}
	return nil
}

// loginServer is the server side of the LOGIN SASL mechanism (not in
// go-sasl): it asks for the user name, then the password.
type loginServer struct {
	check    func(username, password string) error
	username string
	step     int
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step++
		if len(response) > 0 { // initial response carries the user name
			l.username = string(response)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.username = string(response)
		l.step++
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		return nil, true, l.check(l.username, string(response))
	}
	return nil, true, errors.New("unexpected LOGIN response")
}
