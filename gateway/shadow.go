package gateway

import (
	"context"
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/policy"
)

// A shadow policy (policy.shadow) is a candidate evaluated on live traffic without acting: for
// each message the gateway accepts, the ledger gets a policy.shadow event with what the
// candidate would have done and whether that differs from what the policy in force did.
//
// The ledger rather than a table of its own: what a candidate would have done is evidence for
// the review of a policy change (who may change what is sealed, on which facts), so it belongs
// with the policy.changed events, tamper-evident and exported with them; it needs no schema,
// and it holds no content (rule names, actions, part positions and media types; no file name,
// no subject). Its cost is one event per message while a shadow policy is set: a trial, not a
// permanent setting.
//
// The candidate judges the facts the live walk gathered (with the shadow set, the walker
// learns every leaf's sniffed type, size and encryption, and scans what it scans anyway). It
// cannot see inside what the policy in force sealed whole without walking into it (a signed
// multipart, a forwarded message, an unparseable entity): such an entity is reported as the
// candidate decides it, and its parts as unknown. A part the candidate would keep that the
// policy in force sealed was not inspected for files hidden in text: "keep" there means "keep
// unless it hides a file".

// shadowResult is what the candidate would have done with one message.
type shadowResult struct {
	action  string // seal_attachments, seal_message, hold, refuse or pass
	rule    string // the deciding message rule, or the part rule that refuses
	parts   []string
	differs bool
}

// judgeShadow evaluates p with the message decision md over the reports of the live walk.
// live is the policy in force's message decision.
func judgeShadow(p *policy.Policy, md, live policy.MessageDecision, reports []mimeseal.Report) shadowResult {
	r := shadowResult{action: md.Action.String(), rule: md.Rule}
	r.differs = md.Action != live.Action || md.Rule != live.Rule
	if md.Action != policy.SealAttachments && md.Action != policy.Hold {
		return r // the whole message is decided: no part rule applies
	}
	skipBelow := -1 // the candidate sealed or refused the entity at this depth: skip inside it
	for i := range reports {
		rep := &reports[i]
		if skipBelow >= 0 && rep.Depth > skipBelow {
			continue
		}
		skipBelow = -1
		act, rule := shadowPart(p, rep)
		if act != rep.Action || rule != rep.Rule {
			r.differs = true
		}
		where := "top"
		if rep.Part.Index >= 0 {
			where = fmt.Sprint(rep.Part.Index + 1)
		} else if rep.Depth > 0 {
			where = "multipart"
		}
		r.parts = append(r.parts, fmt.Sprintf("%s:%s:%s:%s", where, rep.Part.MediaType, act, rule))
		if rep.Multipart && act != policy.Descend {
			skipBelow = rep.Depth
		}
		if act == policy.Refuse && r.action != policy.Refuse.String() {
			r.action, r.rule = policy.Refuse.String(), rule
		}
	}
	return r
}

// shadowPart is what p decides for one reported entity.
func shadowPart(p *policy.Policy, rep *mimeseal.Report) (policy.Action, string) {
	if rep.Rule == "unparseable" {
		return policy.Seal, "unparseable"
	}
	d := p.Part(&rep.Part)
	if d.Action == policy.Pending {
		c := policy.Content{}
		if rep.Content != nil {
			c = *rep.Content
		}
		c.Malware = rep.Verdict.Infected
		switch {
		case !d.MayKeep:
			c.Held = false
		case d.MaySeal:
			c.Held = c.Size <= d.KeepLimit
		default:
			c.Held = true
		}
		d = p.PartEnd(&rep.Part, &c)
	}
	if d.Action == policy.Keep && rep.Hidden != "" {
		return policy.Seal, rep.Hidden // the walker seals a kept text part that hides a file
	}
	if rep.Multipart && d.Action == policy.Keep {
		d.Action = policy.Descend
	}
	return d.Action, d.Rule
}

// recordShadow appends the policy.shadow event of m, in the commit's transaction.
func (g *Gateway) recordShadow(ctx context.Context, tx *database.Tx, m *received, code string) error {
	if g.rules.shadow == nil || len(m.external) == 0 || !m.decided {
		return nil
	}
	r := judgeShadow(g.rules.shadow, m.shadowDecision, m.decision, m.reports)
	if m.whole {
		// Unparseable: sealed whole whatever the candidate says, unless it refuses or holds.
		r.parts = []string{"top:message/rfc822:seal:unparseable"}
	}
	details := map[string]string{
		"policy_hash": g.rules.shadow.Hash(), "would": r.action, "rule": r.rule,
		"live": m.decision.Action.String() + ":" + m.decision.Rule, "differs": fmt.Sprint(r.differs),
		"parts": strings.Join(r.parts, ", "),
	}
	_, err := g.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypePolicyShadow, Actor: "system", Contract: code, Message: m.id, Details: details})
	return err
}
