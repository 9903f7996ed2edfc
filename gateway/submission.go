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
	"github.com/sealgate/sealgate/metrics"
)

// SMTPUser is an account authenticated on the submission listener.
type SMTPUser struct {
	Name  string // account name: the sender of record
	Email string // the only address the account may send as
	// Valid reports, at each MAIL FROM, whether this login still holds;
	// nil means always.
	Valid func(ctx context.Context) error
}

// Authenticator checks SMTP AUTH credentials against the accounts. Any
// error refuses the login; every refusal gets the same reply.
type Authenticator interface {
	AuthenticateSMTP(ctx context.Context, username, password, remoteIP string) (SMTPUser, error)
}

// ErrAuthDisabled is returned by an Authenticator (or SMTPUser.Valid) for
// an account that may not log in (disabled or locked) or a login that no
// longer holds.
var ErrAuthDisabled = errors.New("gateway: account disabled or locked")

// submission is the state shared by the submission listener's sessions.
type submission struct {
	g       *Gateway
	auth    Authenticator
	perIP   ratelimit.Limiter
	perUser ratelimit.Limiter
}

// NewSubmissionServer returns the SMTP server of the submission listener
// (staff mail clients): STARTTLS is required before AUTH PLAIN or LOGIN, the
// authenticated account is the sender of record, and it may use only its
// own address in MAIL FROM and in the From header. AUTH failures are rate
// limited per client address and per account name. Every failed AUTH gets
// the same reply, so that it tells nobody which names exist, whether a
// password was right, or why a right one was not enough; the reply says
// what a legitimate user can do. Each MAIL FROM re-checks that the login
// still holds (SMTPUser.Valid).
func (g *Gateway) NewSubmissionServer(auth Authenticator) *smtp.Server {
	mk := g.Limits
	if mk == nil {
		mk = ratelimit.InMemory(g.Now)
	}
	sub := &submission{
		g:       g,
		auth:    auth,
		perIP:   mk("smtp.auth.ip", 10, 10*time.Minute),
		perUser: mk("smtp.auth.user", 10, 10*time.Minute),
	}
	s := g.newServer(metrics.ListenerSubmission, func(c *smtp.Conn) smtp.Session {
		sess := g.newSession(c, metrics.ListenerSubmission)
		sess.trusted = false // submission never relays without AUTH
		return &submissionSession{session: sess, sub: sub, conn: c}
	})
	// AUTH is neither offered nor evaluated before STARTTLS. go-smtp's
	// own refusal (523 "TLS is required") is English only, so it is let
	// through to Auth, which refuses it in both languages;
	// AuthMechanisms keeps AUTH out of the EHLO reply until then.
	s.AllowInsecureAuth = true
	s.TLSConfig = g.TLS // no client certificate request
	return s
}

// attempt counts an AUTH from ip for user as a failure of each, before
// it is checked, so that AUTHs sent at once are all counted (reading the
// counts first and counting a failure after the check let any number
// sent together through); one that succeeds is given back (succeeded).
// It returns the reply refusing the AUTH, or nil: over the limit of
// failures of either, or (fail closed) when they cannot be counted.
func (sub *submission) attempt(ctx context.Context, ip, user string) *smtp.SMTPError {
	for _, c := range []struct {
		l   ratelimit.Limiter
		key string
	}{{sub.perIP, ip}, {sub.perUser, user}} {
		ok, err := c.l.Allow(ctx, c.key)
		if err != nil {
			sub.g.Log.Error("submission: AUTH refused, the failures cannot be counted", "error", err)
			return replyAuthUncounted
		}
		if !ok {
			return replyAuthRateLimited
		}
	}
	return nil
}

// succeeded gives back the failure attempt counted for a successful AUTH
// from ip for user; a failure to give it back is logged (it stays
// counted).
func (sub *submission) succeeded(ctx context.Context, ip, user string) {
	err := sub.perIP.Undo(ctx, ip)
	if err2 := sub.perUser.Undo(ctx, user); err == nil {
		err = err2
	}
	if err != nil {
		sub.g.Log.Error("submission: failed to give back a counted AUTH", "error", err)
	}
}

type submissionSession struct {
	*session
	sub  *submission
	conn *smtp.Conn
	user *SMTPUser
}

func (s *submissionSession) tls() bool {
	_, ok := s.conn.TLSConnectionState()
	return ok
}

// limitKey is the per-account rate limit key: the name as the accounts
// read it (trimmed, lower case), so that spelling it differently gives no
// fresh attempts.
func limitKey(username string) string { return strings.ToLower(strings.TrimSpace(username)) }

var (
	replyAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "STARTTLS の後にログイン(AUTH)してください。\nAuthentication required: use STARTTLS, then AUTH"}
	replyTLSFirst = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "先に STARTTLS で暗号化してからログイン(AUTH)してください。メールソフトの暗号化の設定を STARTTLS にしてください。\nMust issue a STARTTLS command first: set the mail client's encryption to STARTTLS"}
	// replyAuthFailed is the one answer to every failed AUTH: a wrong
	// name or password, a locked or disabled account, and a right sign-in
	// password where only an app password is accepted. It cannot say which
	// (that would confirm the password to whoever guessed it, or tell that
	// the name is a manager's), so it names every cause and what to do.
	replyAuthFailed = authFailedReply(
		"管理者・情報管理責任者・監査担当のアカウントは、ここではログイン用のパスワードではなくアプリパスワードを使ってください。",
		"Manager, admin and auditor accounts must use an app password here, not their sign-in password.")
	// replyAuthFailedAppOnly is the same where every account needs an app
	// password (smtp.submission_app_passwords_only).
	replyAuthFailedAppOnly = authFailedReply(
		"このサーバーでは、ログイン用のパスワードではなくアプリパスワードを使ってください。",
		"This server accepts app passwords only here, not sign-in passwords.")
	replyLoginGone = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "このログインはもう有効ではありません(アカウントの無効化やパスワードの変更など)。接続し直してログインしてください。\n" +
			"This login is no longer valid (e.g. the account was disabled or its password changed); reconnect and authenticate again"}
	replyAuthRateLimited = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "ログインの失敗が多すぎます。しばらく待ってから再試行してください。\nToo many failed authentications; try again later"}
	replyNotYourAddress = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "送信者アドレスはご自身のアドレスのみ使用できます。\nSender address rejected: you may only send as your own address"}
)

// AuthMechanisms lists nothing before STARTTLS: the EHLO reply then
// offers no AUTH.
func authFailedReply(ja, en string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: strings.Join([]string{
		"ログインできませんでした。ユーザー名またはパスワードが正しくないか、アカウントがロック中(失敗が続いたため一時的)または無効です。",
		ja,
		"アプリパスワードはポータルの「アプリパスワード」(/account/app-passwords)で作成できます。解決しない場合は管理者に連絡してください。",
		"Authentication failed: wrong user name or password, or the account is locked for a while after repeated failures, or disabled.",
		en,
		"Create an app password on the portal's App passwords page (/account/app-passwords); if that does not help, contact your administrator.",
	}, "\n")}
}

func (s *submissionSession) AuthMechanisms() []string {
	if !s.tls() {
		return nil
	}
	return []string{sasl.Plain, "LOGIN"}
}

func (s *submissionSession) Auth(mech string) (sasl.Server, error) {
	if !s.tls() {
		return nil, replyTLSFirst
	}
	check := func(username, password string) error {
		ip := s.remote.String()
		ctx := context.Background()
		if reply := s.sub.attempt(ctx, ip, limitKey(username)); reply != nil {
			s.g.Log.Info("submission: AUTH refused before checking", "client", s.env.client, "reply", reply.Code)
			return reply
		}
		u, err := s.sub.auth.AuthenticateSMTP(ctx, username, password, ip)
		if err != nil {
			s.g.Log.Info("submission: AUTH refused", "client", s.env.client, "error", err)
			if s.g.Config.SMTP.SubmissionAppPasswordsOnly {
				return replyAuthFailedAppOnly
			}
			return replyAuthFailed
		}
		s.sub.succeeded(ctx, ip, limitKey(username))
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
	if s.user.Valid != nil {
		if err := s.user.Valid(context.Background()); err != nil {
			if !errors.Is(err, ErrAuthDisabled) {
				s.g.Log.Error("submission: failed to re-check the login", "account", s.user.Name, "error", err)
				return replyTemporary
			}
			s.g.Log.Warn("submission: login no longer valid", "account", s.user.Name, "error", err)
			return replyLoginGone
		}
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
		return rejectSender(550, smtp.EnhancedCode{5, 7, 1}, "From ヘッダにはご自身のアドレスのみ使用できます。",
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
