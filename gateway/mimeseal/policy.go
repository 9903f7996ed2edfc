package mimeseal

import (
	"strings"

	"github.com/emersion/go-message/textproto"

	"github.com/sealgate/sealgate/policy"
)

// Part describes one parsed entity (the top-level message or a body part) to a policy.
type Part struct {
	Header      *textproto.Header // the entity's header; read it, do not change it
	Depth       int               // 0 for the top-level entity, 1 for a part of the top-level multipart, ...
	Parent      string            // media type of the enclosing multipart, "" at the top
	MediaType   string            // lower-case; "text/plain" when absent ("message/rfc822" inside multipart/digest)
	Params      map[string]string // Content-Type parameters (keys lower-case); may be nil
	Encoding    string            // Content-Transfer-Encoding, lower-case; "7bit" when absent
	Disposition string            // Content-Disposition type, lower-case; "" when absent
	Filename    string            // decoded file name (Content-Disposition filename, else Content-Type name)
	HasFilename bool              // a file name parameter is present, even if empty
}

// Action is what happens to an entity.
type Action int

const (
	// Keep copies the entity raw into the skeleton. Only valid for a leaf; a multipart is
	// descended into instead.
	Keep Action = iota + 1
	// Seal replaces the entity with a placeholder and sends it to the Sealer: a leaf decoded, a
	// message/rfc822 or message/global decoded as a .eml, a multipart whole (its Content-*
	// fields, a blank line and its raw body: a valid .eml).
	Seal
	// Descend walks into a multipart. On anything else it means Seal.
	Descend
)

// Decision is a policy's answer for one entity. Reason ends up in Attachment.Reason ("policy"
// when empty). An answer that does not fit the entity is corrected, never towards passing
// content in clear: Keep on a multipart means Descend; Keep on a leaf whose Content-Type
// parameters are broken means sealing it whole; Descend on a leaf, or an unknown Action, means
// Seal; Descend past Limits.MaxDepth fails the rewrite (LimitExceeded).
type Decision struct {
	Action Action
	Reason string
}

// DefaultPolicy is Policy v1:
//
//   - multipart/signed and multipart/encrypted are sealed whole (cutting inside would break
//     the signature); other multiparts are descended into;
//   - message/rfc822 and message/global are sealed whole ("forwarded");
//   - a leaf with Content-Disposition: attachment, or any disposition other than inline
//     ("attachment": RFC 2183 section 2.8 has an unknown disposition treated as attachment,
//     and clients show such a part as a file), with a file name ("filename"), or that is not
//     text/plain or text/html ("non-text") is sealed;
//   - text/plain and text/html without a file name and not attachments are kept.
func DefaultPolicy(p *Part) Decision {
	switch {
	case p.MediaType == "multipart/signed":
		return Decision{Action: Seal, Reason: "signed"}
	case p.MediaType == "multipart/encrypted":
		return Decision{Action: Seal, Reason: "encrypted"}
	case strings.HasPrefix(p.MediaType, "multipart/"):
		return Decision{Action: Descend}
	case p.MediaType == "message/rfc822" || p.MediaType == "message/global":
		return Decision{Action: Seal, Reason: "forwarded"}
	case p.Disposition != "" && p.Disposition != "inline":
		return Decision{Action: Seal, Reason: "attachment"}
	case p.HasFilename:
		return Decision{Action: Seal, Reason: "filename"}
	case p.MediaType != "text/plain" && p.MediaType != "text/html":
		return Decision{Action: Seal, Reason: "non-text"}
	}
	return Decision{Action: Keep}
}

// Scanner scans parts for malware while they stream (sealgate uses clamd: package
// scan/clamd). It is safe for concurrent use if Rewrite runs concurrently.
type Scanner interface {
	// Scan starts scanning one part.
	Scan() (ScanStream, error)
}

// ScanStream receives one part's bytes, in writes of any size; Write must not retain p.
// Exactly one of Close or Abort is called.
type ScanStream interface {
	Write(p []byte) (int, error)
	// Close ends the part and returns the verdict; an error means there is none.
	Close() (Verdict, error)
	// Abort drops the scan (the rewrite failed).
	Abort()
}

// Verdict is a scanner's answer for one part.
type Verdict struct {
	// Scanned: the part was scanned. A Scanner that lets parts through unscanned when its
	// engine is down (sealgate holds such a message for approval) answers false, nil.
	Scanned   bool
	Infected  bool
	Signature string // the malware's name when Infected
}

// Report is what Observe learns about one entity.
type Report struct {
	Depth     int
	Multipart bool
	// Part is what the part rules saw (header facts; Index counts leaves only).
	Part policy.Part
	// Action is what happened: Keep, Seal, Descend or Refuse (policy actions).
	Action policy.Action
	// Rule is the rule that decided: "unparseable" for an entity that could not be parsed
	// (sealed whole without asking the policy).
	Rule string
	// Hidden: a text part the rules kept was sealed whole all the same, for what it carries
	// (Attachment.Reason: "uuencode", "data-uri", "large-text", ...).
	Hidden string
	// Content: the content facts learnt (nil when none were gathered; Malware is set from
	// Verdict).
	Content *policy.Content
	Verdict Verdict
	// Attachment is the index of the sealed file that holds the entity (-1: none).
	Attachment int
}

// legacyDecision turns a header-only Decision into a policy decision.
func legacyDecision(d Decision) policy.PartDecision {
	switch d.Action {
	case Keep:
		return policy.PartDecision{Action: policy.Keep, Rule: d.Reason}
	case Descend:
		return policy.PartDecision{Action: policy.Descend, Rule: d.Reason}
	}
	r := d.Reason
	if r == "" {
		r = "policy"
	}
	return policy.PartDecision{Action: policy.Seal, Rule: r}
}
