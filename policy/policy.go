package policy

import (
	"fmt"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// Action is what a decision does. Message decisions use SealAttachments, SealMessage, Hold,
// Refuse and Pass; part decisions use Keep, Seal, Descend, Refuse and Pending.
type Action int

const (
	// SealAttachments goes on to the part rules (sealgate's usual behaviour).
	SealAttachments Action = iota + 1
	// SealMessage seals the whole message, body included, as one .eml: the recipient's copy
	// carries only a neutral notice with the link.
	SealMessage
	// Hold keeps the message for a manager's approval.
	Hold
	// Refuse refuses the message with Reason (5xx). At the part stage it refuses the whole
	// message.
	Refuse
	// Pass delivers the message as sent: nothing is sealed.
	Pass
	// notify is a message rule that only adds notifications; it never decides.
	notify
	// Keep copies the part as it is.
	Keep
	// Seal replaces the part by a download notice and seals its content.
	Seal
	// Descend walks into a multipart (no rule sealed or refused it).
	Descend
	// Pending: the decision needs content facts; see PartDecision.Needs.
	Pending
)

var actionNames = map[Action]string{
	SealAttachments: "seal_attachments",
	SealMessage:     "seal_message",
	Hold:            "hold",
	Refuse:          "refuse",
	Pass:            "pass",
	notify:          "notify",
	Keep:            "keep",
	Seal:            "seal",
	Descend:         "descend",
	Pending:         "pending",
}

// String returns the action's name as written in a policy file.
func (a Action) String() string {
	if s, ok := actionNames[a]; ok {
		return s
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Text is a text a person reads, in Japanese and in English.
type Text struct {
	JA string
	EN string
}

// In returns the text in lang ("ja" or "en"; anything else gives both, Japanese first).
func (t Text) In(lang string) string {
	switch lang {
	case "ja":
		return t.JA
	case "en":
		return t.EN
	}
	if t.JA == "" {
		return t.EN
	}
	if t.EN == "" {
		return t.JA
	}
	return t.JA + " / " + t.EN
}

// WalkRule names the decision to walk into a multipart that no rule sealed or refused.
// Rule names in a policy file cannot start with "(".
const WalkRule = "(walk)"

// Policy is a compiled policy file. It is immutable and safe for concurrent use.
type Policy struct {
	hash       string
	keepBuffer int64
	usesInline bool // a part rule has an inline predicate
	message    []*messageRule
	messageDef *messageRule
	part       []*partRule
	partDef    *partRule
}

// UsesInline reports whether a part rule has an inline predicate: only then must the caller
// collect the cid: references of HTML bodies (Part.Inline).
func (p *Policy) UsesInline() bool { return p.usesInline }

// KeepBuffer is the most a caller holds of a part whose keeping depends on its content, when
// no size_below bounds the rule (policy key keep_buffer; default 256 KiB).
func (p *Policy) KeepBuffer() int64 { return p.keepBuffer }

// Message is what the message rules see: the envelope, the routing and the top-level header.
type Message struct {
	Sender          string   // envelope sender (MAIL FROM), canonical form
	Recipients      []string // envelope recipients (RCPT TO), canonical form
	Contract        string   // code of the contract the message goes under ("" if none)
	DefaultContract bool     // the message goes under the default contract (no contract covers its recipients)
	// Header is the top-level header as received; the policy reads it and does not change it.
	// Nil means an empty header.
	Header *textproto.Header
}

// MessageDecision is the outcome of the message rules.
type MessageDecision struct {
	Action Action // SealAttachments, SealMessage, Hold, Refuse or Pass
	Rule   string // the rule that decided (the default's name when none matched)
	Reason Text   // Refuse only: what the sender reads
	// Notify lists the addresses to notify (deduplicated, in rule order), from the deciding rule
	// and from the "notify" rules matched before it; NotifyRules names those rules.
	Notify      []string
	NotifyRules []string
}

// Message decides a message from its envelope and header.
func (p *Policy) Message(m *Message) MessageDecision {
	c := newMsgCtx(m)
	var d MessageDecision
	seen := map[string]bool{}
	addNotify := func(r *messageRule) {
		if len(r.notify) == 0 {
			return
		}
		d.NotifyRules = append(d.NotifyRules, r.name)
		for _, a := range r.notify {
			if !seen[a] {
				seen[a] = true
				d.Notify = append(d.Notify, a)
			}
		}
	}
	for _, r := range p.message {
		if !r.matches(c) {
			continue
		}
		addNotify(r)
		if r.action == notify {
			continue
		}
		d.Action, d.Rule, d.Reason = r.action, r.name, r.reason
		return d
	}
	addNotify(p.messageDef)
	d.Action, d.Rule, d.Reason = p.messageDef.action, p.messageDef.name, p.messageDef.reason
	return d
}

// Need is a set of content facts a part decision needs.
type Need uint8

const (
	NeedSniff     Need = 1 << iota // the media type sniffed from the first bytes (inspect)
	NeedSize                       // the decoded size
	NeedEncrypted                  // whether it is an encrypted archive or document (inspect)
	NeedMalware                    // the malware verdict (scan/clamd)
)

// Has reports whether n contains all of x.
func (n Need) Has(x Need) bool { return n&x == x }

func (n Need) String() string {
	var s []string
	for _, x := range []struct {
		n    Need
		name string
	}{{NeedSniff, "sniffed_type"}, {NeedSize, "size"}, {NeedEncrypted, "encrypted"}, {NeedMalware, "malware"}} {
		if n.Has(x.n) {
			s = append(s, x.name)
		}
	}
	return strings.Join(s, "+")
}

// Part is what the part rules know at the start of a part, from its header and its place.
type Part struct {
	MediaType   string // declared, lower-case ("text/plain" when absent)
	Disposition string // Content-Disposition type, lower-case; "" when absent
	Filename    string // decoded file name, "" if none
	HasFilename bool   // a file name parameter is present, even if empty
	// Inline: the part's Content-ID is referenced by a cid: URL of an HTML body of the message
	// seen before it (package inspect's CIDRefs finds them).
	Inline bool
	Index  int // 0-based position among the message's leaf parts, in stream order
}

// Content is what the inspectors learnt from a part's decoded content, at its end.
type Content struct {
	Sniffed   string // media type sniffed from the content (inspect.Result.MediaType)
	Size      int64  // decoded size in bytes
	Encrypted bool   // an encrypted archive or document (inspect.Result.Encrypted)
	Malware   bool   // the scanner found malware
	// Held: the caller can still keep the part (it copied it raw as it came, or holds all of it
	// in a buffer). When false, no keep rule matches.
	Held bool
}

// PartDecision is the outcome of the part rules for one entity.
type PartDecision struct {
	Action Action // Keep, Seal, Descend, Refuse, or Pending (Part only)
	Rule   string // the deciding rule (the default's name when none matched; WalkRule for Descend without a rule)
	Reason Text   // Refuse only

	// Pending only: the content facts to gather, the outcomes still possible, and when both
	// keeping and sealing are possible, how many decoded bytes the caller must be able to hold
	// to keep the part (a larger part cannot be kept: pass Held=false to PartEnd).
	Needs                       Need
	MayKeep, MaySeal, MayRefuse bool
	KeepLimit                   int64
}

// Part decides a part at its start from its header facts. A multipart is walked into unless a
// rule seals or refuses it; rules that need content never match a multipart.
func (p *Policy) Part(f *Part) PartDecision {
	multipart := strings.HasPrefix(f.MediaType, "multipart/")
	var d PartDecision
	pending := false
	addOutcome := func(r *partRule) {
		switch r.action {
		case Keep:
			d.MayKeep = true
			lim := p.keepBuffer
			if r.sizeBelow > 0 {
				lim = r.sizeBelow
			}
			d.KeepLimit = max(d.KeepLimit, lim)
		case Seal:
			d.MaySeal = true
		case Refuse:
			d.MayRefuse = true
		}
	}
	terminal := p.partDef
	for _, r := range p.part {
		if !r.matchHeader(f) {
			continue
		}
		if r.needs != 0 {
			if multipart {
				continue
			}
			pending = true
			d.Needs |= r.needs
			addOutcome(r)
			continue
		}
		terminal = r
		break
	}
	if !pending {
		return p.final(terminal, multipart)
	}
	addOutcome(terminal)
	if !(d.MayKeep && d.MaySeal) {
		d.KeepLimit = 0
	}
	d.Action = Pending
	return d
}

// PartEnd decides a part at its end, with the content facts the inspectors gathered. It must
// be called (instead of acting on Part's answer) when Part answered Pending; it may be called
// for any part.
func (p *Policy) PartEnd(f *Part, c *Content) PartDecision {
	multipart := strings.HasPrefix(f.MediaType, "multipart/")
	for _, r := range p.part {
		if !r.matchHeader(f) {
			continue
		}
		if r.needs != 0 && (multipart || !r.matchContent(c)) {
			continue
		}
		if r.action == Keep && !c.Held && !multipart {
			continue
		}
		return p.final(r, multipart)
	}
	if p.partDef.action == Keep && !c.Held && !multipart {
		return PartDecision{Action: Seal, Rule: p.partDef.name}
	}
	return p.final(p.partDef, multipart)
}

func (p *Policy) final(r *partRule, multipart bool) PartDecision {
	if multipart && (r == p.partDef || r.action == Keep) {
		if r == p.partDef {
			return PartDecision{Action: Descend, Rule: WalkRule}
		}
		return PartDecision{Action: Descend, Rule: r.name}
	}
	return PartDecision{Action: r.action, Rule: r.name, Reason: r.reason}
}
