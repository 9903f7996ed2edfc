package gateway

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/notice"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/scan/clamd"
)

// The policy file (package policy) decides what is sealed: the message rules once the header
// is read (after routing, so that they see the contract), the part rules during the walk
// (mimeseal). The policy applies to the copies for external recipients; internal recipients
// get the message as sent. Every decision names its rule; the ledger records the rule and the
// policy's hash with each message and each sealed file, and each change of policy
// (policy.changed) when serve starts with a policy whose hash differs from the last recorded.
//
// Malware scanning (scan.clamd): what is sealed and what is kept on a content rule streams to
// clamd as it is walked (mimeseal.Scanner); infected → 554 with the signature name; no verdict
// → 451, or, with scan.on_unavailable = "hold", the message is accepted unscanned and held for
// the manager's approval (hold.Spec, held.go).
//
// A shadow policy (policy.shadow) is evaluated on the facts the live walk gathered; what it
// would have done goes to the ledger (policy.shadow), never acted on (shadow.go).

// ruleSet is what the gateway decides with, loaded once at start.
type ruleSet struct {
	live       *policy.Policy
	liveFile   string // "" for the built-in default
	shadow     *policy.Policy
	shadowFile string

	clamd         *clamd.Client // nil: no scanning
	holdUnscanned bool          // scan.on_unavailable = "hold"

	mu        sync.Mutex
	version   clamd.Version // clamd's engine and database, as last asked
	versionAt time.Time

	retainBufs sync.Pool // *[retainChunk]byte: the retainers' memory (retain.go)
}

// loadRules loads the policy, the shadow policy and the scanner from the configuration, and
// records a change of policy. A policy that does not compile is an error: serve does not start.
func (g *Gateway) loadRules(ctx context.Context) error {
	r := &ruleSet{live: policy.Default()}
	if f := g.Config.Policy.File; f != "" {
		p, err := policy.Load(f)
		if err != nil {
			return fmt.Errorf("failed to load policy.file: %w", err)
		}
		r.live, r.liveFile = p, f
	}
	if f := g.Config.Policy.Shadow; f != "" {
		p, err := policy.Load(f)
		if err != nil {
			return fmt.Errorf("failed to load policy.shadow: %w", err)
		}
		r.shadow, r.shadowFile = p, f
	}
	if a := g.Config.Scan.Clamd; a != "" {
		c, err := clamd.New(clamd.Config{Address: a, Timeout: g.Config.Scan.Timeout.D()})
		if err != nil {
			return fmt.Errorf("failed to configure scan.clamd: %w", err)
		}
		r.clamd, r.holdUnscanned = c, g.Config.Scan.OnUnavailable == "hold"
		if err := c.Ping(ctx); err != nil {
			g.Log.Warn("clamd does not answer: messages with something to scan are deferred (451) or held until it does", "clamd", a, "error", err)
		}
	}
	g.rules = r
	return g.recordPolicy(ctx)
}

// recordPolicy appends policy.changed when the policy in force differs from the last one the
// ledger recorded (or none was). Who: this host and the policy file.
func (g *Gateway) recordPolicy(ctx context.Context) error {
	r := g.rules
	file := r.liveFile
	if file == "" {
		file = "(built-in default)"
	}
	return g.DB.Write(ctx, func(tx *database.Tx) error {
		last, err := audit.Search(ctx, tx, audit.Query{Types: []string{audit.TypePolicyChanged}, Limit: 1})
		if err != nil {
			return err
		}
		prev := ""
		if len(last) == 1 {
			prev = last[0].Event.Details["policy_hash"]
		}
		if prev == r.live.Hash() {
			return nil
		}
		details := map[string]string{"policy_hash": r.live.Hash(), "file": file}
		if prev != "" {
			details["previous_hash"] = prev
		}
		if r.shadow != nil {
			details["shadow_hash"], details["shadow_file"] = r.shadow.Hash(), r.shadowFile
		}
		_, err = g.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypePolicyChanged, Actor: "config:" + g.Config.Hostname + ":" + file,
			Details: details})
		return err
	})
}

// decideMessage applies the message rules to m (after routing: the contract is known) and,
// when a shadow policy is set, the shadow's.
func (g *Gateway) decideMessage(m *received, h *textproto.Header) policy.MessageDecision {
	msg := &policy.Message{Sender: m.env.from, Recipients: m.env.rcpts, Header: h}
	if c := m.contract; c != nil {
		msg.Contract = c.Code
		msg.DefaultContract = strings.EqualFold(c.Code, g.Config.Transfer.DefaultContract)
	}
	m.decision, m.decided = g.rules.live.Message(msg), true
	m.header = h.Copy() // for the records, also if the message is refused before the walk ends
	if g.rules.shadow != nil {
		m.shadowDecision = g.rules.shadow.Message(msg)
	}
	return m.decision
}

// walkOptions are the walker's options for m.
func (g *Gateway) walkOptions(ctx context.Context, m *received) mimeseal.Options {
	o := mimeseal.Options{
		Buffers: g.bufs,
		Limits:  g.walkLimits(),
		Policy:  g.rules.live,
		EditHeader: func(h *textproto.Header) {
			// Bcc recipients are never revealed to anyone.
			h.Del("Bcc")
			h.Del("Resent-Bcc")
			// The contract is chosen before anything is sealed (route.go).
			g.routeHeader(ctx, m, h)
		},
		Message: func(h *textproto.Header) policy.MessageDecision { return g.decideMessage(m, h) },
	}
	if g.rules.clamd != nil {
		o.Scanner = &msgScanner{ctx: ctx, r: g.rules, m: m}
	}
	if g.rules.shadow != nil {
		o.Gather = true
		o.Observe = func(r *mimeseal.Report) {
			if len(m.reports) < g.Config.Limits.MaxMIMEParts+1 {
				m.reports = append(m.reports, *r)
			}
		}
	}
	return o
}

// scanVersion returns clamd's engine and database versions for the ledger, asked at most
// once a minute.
func (g *Gateway) scanVersion(ctx context.Context) clamd.Version {
	r := g.rules
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := g.Now(); r.version.Raw == "" || now.Sub(r.versionAt) > time.Minute {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if v, err := r.clamd.Version(ctx); err == nil {
			r.version, r.versionAt = v, now
		}
	}
	return r.version
}

// policyDetails are the ledger details of a message's decision.
func (g *Gateway) policyDetails(m *received, details map[string]string) {
	details["policy_hash"] = g.rules.live.Hash()
	if m.decided {
		details["policy_rule"], details["policy_action"] = m.decision.Rule, m.decision.Action.String()
	}
	if m.whole {
		details["sealed_whole"] = "unparseable"
	}
	if m.unscanned {
		details["scan"] = "unavailable"
	}
}

// fileDetails are the ledger details of one sealed file: the rule, the policy, the scan.
func (g *Gateway) fileDetails(ctx context.Context, m *received, f *sealedFile) map[string]string {
	d := map[string]string{"reason": f.reason, "content_type": f.contentType, "policy_hash": g.rules.live.Hash()}
	if g.rules.clamd == nil {
		return d
	}
	if !f.scanned {
		d["scan"] = "unavailable"
		return d
	}
	d["scan"] = "clean"
	v := g.scanVersion(ctx)
	d["scan_engine"] = v.Engine
	if v.Database != "" {
		d["scan_database"] = v.Database + " " + v.DatabaseDate
	}
	return d
}

// queuePolicyAlerts queues the notices a rule asked for (notify) in the commit's transaction.
// action is what became of the message (the message rules' action, or "refuse" when a part
// rule or the scanner refused it: then no record of the message exists for the notice to refer
// to, and its text names the message id alone).
func (g *Gateway) queuePolicyAlerts(ctx context.Context, tx *database.Tx, m *received, action string) error {
	if !m.decided || len(m.decision.Notify) == 0 {
		return nil
	}
	code := ""
	if m.contract != nil {
		code = m.contract.Code
	}
	rule := m.decision.Rule
	if len(m.decision.NotifyRules) > 0 {
		rule = strings.Join(m.decision.NotifyRules, ", ")
	}
	about := m.id
	if action == policy.Refuse.String() {
		about = ""
	}
	return g.QueueNotice(ctx, tx, notice.Mail{To: m.decision.Notify, About: about, Notice: notice.PolicyAlert{
		Rule: rule, Action: action, MessageID: m.id, Sender: m.env.from, Recipients: m.env.rcpts,
		Subject: oneLine(decodeHeader(m.header.Get("Subject"))), Contract: code, Received: m.receivedAt, PolicyHash: g.rules.live.Hash(),
	}})
}

// msgScanner is mimeseal's Scanner for one message: clamd, and with on_unavailable = "hold",
// a part without a verdict passes unscanned and the message is held (m.unscanned).
type msgScanner struct {
	ctx context.Context
	r   *ruleSet
	m   *received
}

func (s *msgScanner) Scan() (mimeseal.ScanStream, error) {
	st, err := s.r.clamd.Scan(s.ctx)
	if err != nil {
		if s.r.holdUnscanned {
			s.m.unscanned = true
			return &clamdStream{s: s, failed: err}, nil
		}
		return nil, err
	}
	return &clamdStream{s: s, st: st}, nil
}

type clamdStream struct {
	s      *msgScanner
	st     *clamd.Stream
	failed error // hold mode: no verdict will come; the part passes unscanned
}

func (c *clamdStream) Write(p []byte) (int, error) {
	if c.failed != nil {
		return len(p), nil
	}
	n, err := c.st.Write(p)
	if err != nil && c.s.r.holdUnscanned {
		c.failed = err
		c.st.Abort()
		return len(p), nil
	}
	return n, err
}

func (c *clamdStream) Close() (mimeseal.Verdict, error) {
	if c.failed == nil {
		err := c.st.Close()
		if err == nil {
			v := c.st.Verdict()
			return mimeseal.Verdict{Scanned: true, Infected: v.Infected, Signature: v.Signature}, nil
		}
		if !c.s.r.holdUnscanned {
			return mimeseal.Verdict{}, err
		}
		c.failed = err
	}
	c.s.m.unscanned = true
	return mimeseal.Verdict{}, nil
}

func (c *clamdStream) Abort() {
	if c.st != nil {
		c.st.Abort()
	}
}
