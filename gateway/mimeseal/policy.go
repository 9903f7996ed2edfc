package mimeseal

import (
	"strings"

	"github.com/emersion/go-message/textproto"
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
