package gateway

import (
	"errors"
	"io"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/metrics"
	"github.com/sealgate/sealgate/policy"
)

// What the gateway counts (package metrics; nothing when Deps.Metrics is
// nil): the replies it gives to MAIL, RCPT, the end of DATA or BDAT and
// AUTH on each listener, what became of each message and why, the time
// and sizes of sealing, and the outcome of each delivery attempt. Replies
// go-smtp gives on its own (syntax errors, commands out of sequence) are
// not counted.

// observe wraps a new session so that its replies are counted; without
// metrics it returns the session itself.
func (g *Gateway) observe(listener string, s smtp.Session) smtp.Session {
	if g.Metrics == nil {
		return s
	}
	o := observedSession{Session: s, m: g.Metrics, listener: listener}
	if a, ok := s.(smtp.AuthSession); ok {
		return observedAuthSession{observedSession: o, auth: a}
	}
	return o
}

type observedSession struct {
	smtp.Session
	m        *metrics.Metrics
	listener string
}

// reply counts the reply go-smtp gives for err (see its handlers: any
// error that is not an *smtp.SMTPError is a 451 to MAIL and RCPT, a 554
// to the end of data, a 454 to AUTH).
func (o observedSession) reply(command string, err error, otherCode int) error {
	code := 250
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &se):
		code = se.Code
	case err != nil:
		code = otherCode
	}
	o.m.SMTPReply(o.listener, command, code)
	return err
}

func (o observedSession) Mail(from string, opts *smtp.MailOptions) error {
	return o.reply(metrics.CommandMail, o.Session.Mail(from, opts), 451)
}

func (o observedSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	return o.reply(metrics.CommandRcpt, o.Session.Rcpt(to, opts), 451)
}

func (o observedSession) Data(r io.Reader) error {
	return o.reply(metrics.CommandData, o.Session.Data(r), 554)
}

type observedAuthSession struct {
	observedSession
	auth smtp.AuthSession
}

func (o observedAuthSession) AuthMechanisms() []string { return o.auth.AuthMechanisms() }

func (o observedAuthSession) Auth(mech string) (sasl.Server, error) {
	srv, err := o.auth.Auth(mech)
	if err != nil {
		return nil, o.reply(metrics.CommandAuth, err, 454)
	}
	return observedSASL{srv: srv, o: o.observedSession}, nil
}

// observedSASL counts the outcome of an AUTH exchange: 235, or the reply
// to its error.
type observedSASL struct {
	srv sasl.Server
	o   observedSession
}

func (s observedSASL) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := s.srv.Next(response)
	switch {
	case err != nil:
		s.o.reply(metrics.CommandAuth, err, 454)
	case done:
		s.o.m.SMTPReply(s.o.listener, metrics.CommandAuth, 235)
	}
	return challenge, done, err
}

// countAccepted counts a message that was committed: accepted, or held
// (holdReason), with its size, and what sealing it took.
func (g *Gateway) countAccepted(m *received, started time.Time) {
	if g.Metrics == nil {
		return
	}
	if reason := g.holdReason(m); reason != "" {
		g.Metrics.Message(m.env.listener, metrics.OutcomeHeld, reason)
	} else {
		g.Metrics.Message(m.env.listener, metrics.OutcomeAccepted, metrics.ReasonNone)
	}
	var files []int64
	if m.sealer != nil {
		for _, f := range m.sealer.files {
			files = append(files, f.size)
		}
	}
	g.Metrics.Accepted(m.size, g.Now().Sub(started), files)
}

// countRefused counts a message that was refused (5xx) or deferred (4xx)
// because of err.
func (g *Gateway) countRefused(env *envelope, err error) {
	if g.Metrics == nil {
		return
	}
	outcome := metrics.OutcomeRefused
	if smtpReply(err).Code < 500 {
		outcome = metrics.OutcomeDeferred
	}
	g.Metrics.Message(env.listener, outcome, refusalReason(err))
}

// holdReason says why the external copies of m are held ("" if they are
// not): a scan without a verdict, a policy rule, a contract past its end
// date, a contract that requires approval, or the send delay.
func (g *Gateway) holdReason(m *received) string {
	if len(m.external) == 0 || m.contract == nil {
		return ""
	}
	switch {
	case m.unscanned:
		return metrics.ReasonUnscanned
	case m.decision.Action == policy.Hold:
		return metrics.ReasonPolicy
	case m.expiredHold:
		return metrics.ReasonContractEnded
	case m.contract.ApprovalRequired:
		return metrics.ReasonApproval
	case g.Config.Delivery.SendDelay.D() > 0:
		return metrics.ReasonSendDelay
	}
	return ""
}

// scanVerdict counts one verdict of the malware scanner.
func (g *Gateway) scanVerdict(v mimeseal.Verdict, err error) {
	switch {
	case err != nil || !v.Scanned:
		g.Metrics.ScanVerdict(metrics.VerdictUnavailable)
	case v.Infected:
		g.Metrics.ScanVerdict(metrics.VerdictInfected)
	default:
		g.Metrics.ScanVerdict(metrics.VerdictClean)
	}
}
