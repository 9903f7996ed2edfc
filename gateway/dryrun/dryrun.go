// Package dryrun runs a policy file over mail without sending anything: what the gateway
// would do with each message and each of its parts, the rule that decided and why, for
// `sealgate policy test` (one policy) and `sealgate policy test --diff` (what changing the
// policy would change).
//
// A dry run walks each message as the gateway does (package mimeseal: the same rules, the
// same content inspection, the same whole-message sealing of what cannot be parsed), with a
// Sealer that stores nothing. It does not scan for malware (no clamd is asked): a malware
// predicate sees no malware. The message rules see the envelope the options give, or, by
// default, the header's From as the sender and its To and Cc as the recipients; the contract
// is the one the options name (routing needs the register, which a dry run does not read).
package dryrun

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/emersion/go-message/textproto"

	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/policy"
)

// Options say what the messages are taken to be.
type Options struct {
	Policy *policy.Policy
	// Sender and Recipients are the envelope; empty: the header's From, and To and Cc.
	Sender     string
	Recipients []string
	// Contract is the code of the contract the messages go under ("": none);
	// DefaultContract says it is the default contract (no contract covers the recipients).
	Contract        string
	DefaultContract bool
	Limits          mimeseal.Limits
}

// Part is what happens to one entity of a message.
type Part struct {
	Number    int    // 1-based among the message's leaf parts; 0 for a multipart
	Depth     int    // 0 for the top-level entity
	MediaType string // declared
	Filename  string
	Sniffed   string // the type sniffed from the content, when it was looked at
	Size      int64  // decoded bytes, when counted (-1: not counted)
	Action    string // keep, seal, walk or refuse
	Rule      string
	// Hidden: a text part the rules keep is sealed all the same, for the file it hides.
	Hidden string
}

// Result is what happens to one message.
type Result struct {
	Name string // the file it was read from
	// Message is the message rules' decision; Outcome what happens to the message:
	// seal_attachments, seal_message, hold, pass, refuse, or "sealed_whole" (its structure
	// cannot be parsed), or "limit" (a limit of the walker refuses it).
	Message policy.MessageDecision
	Outcome string
	// Rule is the rule that decided the outcome: the message rule, or the part rule that
	// refuses; "unparseable" for a message sealed whole.
	Rule   string
	Reason policy.Text // a refusal's reason
	Parts  []Part
	Sealed int   // files the recipients would download
	Err    error // a limit, or a file that could not be read
}

// Run decides one message read from r.
func Run(name string, r io.Reader, o Options) *Result {
	res := &Result{Name: name}
	raw, err := io.ReadAll(mimeseal.NewCRLFReader(mimeseal.SkipMboxFrom(r)))
	if err != nil {
		res.Outcome, res.Err = "error", err
		return res
	}
	decided := false
	opt := mimeseal.Options{
		Limits: o.Limits,
		Policy: o.Policy,
		Message: func(h *textproto.Header) policy.MessageDecision {
			decided = true
			res.Message = o.Policy.Message(o.message(h))
			return res.Message
		},
		Observe: func(rep *mimeseal.Report) { res.Parts = append(res.Parts, partOf(rep)) },
	}
	var sealed counter
	out, err := mimeseal.Rewrite(io.Discard, bytes.NewReader(raw), &sealed, opt)
	res.Outcome, res.Rule = res.Message.Action.String(), res.Message.Rule
	switch mimeseal.KindOf(err) {
	case 0:
		res.Sealed = len(out.Attachments)
	case mimeseal.Malformed:
		// As the gateway does: the whole message is sealed as one .eml.
		res.Parts = nil
		w, werr := mimeseal.SealWhole(io.Discard, bytes.NewReader(raw), &counter{}, opt)
		if werr != nil {
			res.Outcome, res.Err = "error", werr
			return res
		}
		if !decided {
			res.Message = o.Policy.Message(o.message(&w.Header))
		}
		res.Outcome, res.Rule, res.Sealed = "sealed_whole", "unparseable", 1
		if res.Message.Action == policy.Refuse {
			res.Outcome, res.Rule, res.Reason = "refuse", res.Message.Rule, res.Message.Reason
		}
	case mimeseal.Refused:
		var ref *mimeseal.Refusal
		if errors.As(err, &ref) {
			res.Outcome, res.Rule, res.Reason = "refuse", ref.Rule, ref.Reason
		}
	case mimeseal.LimitExceeded:
		res.Outcome, res.Rule, res.Err = "limit", "", err
	default:
		res.Outcome, res.Err = "error", err
	}
	return res
}

// message is what the message rules see of a message with header h.
func (o Options) message(h *textproto.Header) *policy.Message {
	m := &policy.Message{Sender: o.Sender, Recipients: o.Recipients, Contract: o.Contract, DefaultContract: o.DefaultContract, Header: h}
	if m.Sender == "" {
		if a, err := mail.ParseAddress(h.Get("From")); err == nil {
			m.Sender = a.Address
		}
	}
	if len(m.Recipients) == 0 {
		for _, f := range []string{"To", "Cc"} {
			if l, err := mail.ParseAddressList(h.Get(f)); err == nil {
				for _, a := range l {
					m.Recipients = append(m.Recipients, a.Address)
				}
			}
		}
	}
	return m
}

func partOf(r *mimeseal.Report) Part {
	p := Part{Depth: r.Depth, MediaType: r.Part.MediaType, Filename: r.Part.Filename, Rule: r.Rule, Hidden: r.Hidden, Size: -1}
	if !r.Multipart {
		p.Number = r.Part.Index + 1
	}
	switch r.Action {
	case policy.Descend:
		p.Action = "walk"
	default:
		p.Action = r.Action.String()
	}
	if r.Hidden != "" {
		p.Action = "seal"
	}
	if c := r.Content; c != nil {
		p.Sniffed, p.Size = c.Sniffed, c.Size
	}
	return p
}

// counter is a Sealer that stores nothing.
type counter struct{}

func (*counter) Begin(mimeseal.Attachment) (mimeseal.PartWriter, error) { return discardPart{}, nil }

type discardPart struct{}

func (discardPart) Write(p []byte) (int, error) { return len(p), nil }
func (discardPart) Close() error                { return nil }
func (discardPart) Abort(error)                 {}

// Input is one mail file to decide.
type Input struct {
	Path string
	Name string // as shown: the path as given, or a directory's file by its base name
}

// Files returns the mail files named by args: files as given, and the *.eml files of
// directories (not recursively, sorted by name).
func Files(args []string) ([]Input, error) {
	var out []Input
	for _, a := range args {
		fi, err := os.Stat(a)
		if err != nil {
			return nil, fmt.Errorf("failed to read %s: %w", a, err)
		}
		if !fi.IsDir() {
			out = append(out, Input{Path: a, Name: a})
			continue
		}
		m, err := filepath.Glob(filepath.Join(a, "*.eml"))
		if err != nil {
			return nil, err
		}
		sort.Strings(m)
		for _, f := range m {
			out = append(out, Input{Path: f, Name: filepath.Base(f)})
		}
	}
	return out, nil
}

// RunFiles decides every message of files.
func RunFiles(files []Input, o Options) []*Result {
	out := make([]*Result, 0, len(files))
	for _, f := range files {
		fh, err := os.Open(f.Path)
		if err != nil {
			out = append(out, &Result{Name: f.Name, Outcome: "error", Err: err})
			continue
		}
		out = append(out, Run(f.Name, fh, o))
		fh.Close()
	}
	return out
}

// Summary counts outcomes and the rules that decided parts.
type Summary struct {
	Messages int
	Outcomes map[string]int // by outcome
	Parts    map[string]int // by "action rule" of leaf parts
}

// Summarize counts rs.
func Summarize(rs []*Result) Summary {
	s := Summary{Messages: len(rs), Outcomes: map[string]int{}, Parts: map[string]int{}}
	for _, r := range rs {
		s.Outcomes[r.Outcome]++
		for _, p := range r.Parts {
			if p.Number > 0 {
				s.Parts[p.Action+" "+p.Rule]++
			}
		}
	}
	return s
}

// Change is how one message fares under two policies.
type Change struct {
	Name     string
	Old, New *Result
	// Parts are the leaf parts whose action differs: "number media-type: old-action [old-rule]
	// → new-action [new-rule]".
	Parts []string
}

// Diff runs both policies over files and returns the messages whose outcome or part actions
// differ; renamed counts the messages decided alike under rules of other names.
func Diff(files []Input, oldP, newP *policy.Policy, o Options) (changes []Change, renamed, total int) {
	oo, no := o, o
	oo.Policy, no.Policy = oldP, newP
	a, b := RunFiles(files, oo), RunFiles(files, no)
	for i := range a {
		c := Change{Name: a[i].Name, Old: a[i], New: b[i]}
		oldParts, newParts := leafMap(a[i]), leafMap(b[i])
		var nums []int
		for n := range oldParts {
			nums = append(nums, n)
		}
		for n := range newParts {
			if _, ok := oldParts[n]; !ok {
				nums = append(nums, n)
			}
		}
		slices.Sort(nums)
		sameRules := a[i].Rule == b[i].Rule
		for _, n := range nums {
			op, oOK := oldParts[n]
			np, nOK := newParts[n]
			if oOK && nOK && op.Action == np.Action {
				sameRules = sameRules && op.Rule == np.Rule
				continue
			}
			mt := op.MediaType
			if !oOK {
				mt = np.MediaType
			}
			c.Parts = append(c.Parts, fmt.Sprintf("%d %s: %s → %s", n, mt, actionRule(op, oOK, a[i]), actionRule(np, nOK, b[i])))
		}
		switch {
		case a[i].Outcome != b[i].Outcome || len(c.Parts) > 0:
			changes = append(changes, c)
		case !sameRules:
			renamed++
		}
	}
	return changes, renamed, len(a)
}

func leafMap(r *Result) map[int]Part {
	m := map[int]Part{}
	for _, p := range r.Parts {
		if p.Number > 0 {
			m[p.Number] = p
		}
	}
	return m
}

func actionRule(p Part, ok bool, r *Result) string {
	if !ok {
		switch r.Outcome {
		case "seal_message", "sealed_whole":
			return "(sealed with the whole message)"
		case "pass":
			return "(sent as it is)"
		}
		return "(not decided)"
	}
	s := p.Action + " [" + p.Rule + "]"
	if p.Hidden != "" {
		s += " (" + p.Hidden + ")"
	}
	return s
}
