package mimeseal

import (
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-message/textproto"

	"github.com/sealgate/sealgate/policy"
)

// Limits bound what a hostile message can make Rewrite do. A zero field means its default.
type Limits struct {
	MaxDepth       int // multipart nesting depth; default 50
	MaxParts       int // total body parts in the message; default 1000
	MaxHeaderBytes int // per part header, blank line included; the top-level header may be 4× this; default 64 KiB
	MaxLineBytes   int // per physical header line, CRLF included; default 16 KiB. Body lines may be longer (handled in chunks).
	MaxTextBytes   int // raw body of a kept text part, held while it is inspected for hidden files; a longer one is sealed whole; default 1 MiB
}

// DefaultLimits returns the limits used for zero fields of [Limits].
func DefaultLimits() Limits {
	return Limits{
		MaxDepth:       50,
		MaxParts:       1000,
		MaxHeaderBytes: 64 << 10,
		MaxLineBytes:   16 << 10,
		MaxTextBytes:   1 << 20,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxParts <= 0 {
		l.MaxParts = d.MaxParts
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MaxLineBytes <= 0 {
		l.MaxLineBytes = d.MaxLineBytes
	}
	if l.MaxTextBytes <= 0 {
		l.MaxTextBytes = d.MaxTextBytes
	}
	if l.MaxLineBytes > maxLineBytesCap {
		l.MaxLineBytes = maxLineBytesCap
	}
	return l
}

// maxLineBytesCap bounds MaxLineBytes because a header line must fit in the input buffer.
const maxLineBytesCap = 1 << 20

// Attachment describes one part that is being sealed.
type Attachment struct {
	Index       int    // 0-based in stream order
	Filename    string // as sent, decoded to valid UTF-8 (RFC 2231, RFC 2047), or "" if none; show it only through SafeName
	ContentType string // media type, lower-case, e.g. "application/pdf"
	Whole       bool   // sealed whole as a .eml (message/rfc822, multipart/signed, multipart/encrypted, unparseable structure, a text part with a hidden file)
	Reason      string // see below
	// Message: the whole message is this one sealed .eml (a policy's seal_message, or a
	// message whose structure could not be parsed, see SealWhole); Whole is true too. The
	// recipient's copy has nothing else: the notice should say so without naming a file.
	Message bool
	// Scanned: the Scanner scanned what was sealed and found nothing (set when the part is
	// committed, so it is known to Render but not to Sealer.Begin).
	Scanned bool
}

// Attachment.Reason is the name of the rule that sealed the part (with Options.Policy), or one
// of: "attachment", "filename", "non-text" (DefaultPolicy);
// "forwarded", "signed", "encrypted"; "unparseable"; a policy's own; and for a text part
// sealed whole for what it carries (Whole is true, ContentType is the text type, Filename is
// the name of the first hidden file if its header gives one): "uuencode", "binhex", "yenc",
// "btoa", "pgp", "data-uri", "html-object", or for one that cannot be inspected with
// certainty "charset", "large-text", "unparseable". See "Files hidden in text" in the package
// documentation.

// Sealer receives the decoded content of each sealed part.
//
// Begin is called at the start of the part. The returned PartWriter gets the decoded bytes in
// large writes (at least 64 KiB each except the last). Exactly one of Close or Abort is then
// called: Close when the part is complete (it commits the part; an error from it aborts the
// rewrite, and Abort is not called after it), Abort when the rewrite fails before that. At most
// one PartWriter is open at a time.
type Sealer interface {
	Begin(a Attachment) (PartWriter, error)
}

// PartWriter receives one sealed part. Write must not retain p.
type PartWriter interface {
	io.Writer
	Close() error
	Abort(err error)
}

// Options configure Rewrite. The zero value is valid: default limits and the default policy.
type Options struct {
	Limits Limits

	// Buffers, if set, recycles Rewrite's buffers between calls.
	Buffers *Buffers

	// EditHeader may change the top-level header before it is written to the skeleton (e.g.
	// delete Bcc, rewrite Subject). Fields it leaves alone are written back byte-identical. It
	// must not add, change or delete Content-* fields: the structure of the message depends on
	// them, and Rewrite fails with Kind Internal if it does.
	EditHeader func(h *textproto.Header)

	// Policy decides what happens to each entity that could be parsed (its part rules), in two
	// phases when a rule needs the content: see "Policies" in the package documentation. It
	// takes precedence over Seal.
	Policy *policy.Policy

	// Seal decides what happens to each entity from its header alone, when Policy is nil; nil
	// means DefaultPolicy. Entities that cannot be parsed are sealed whole without asking. See
	// Decision for how an answer that does not fit the entity is corrected (always towards
	// sealing).
	Seal func(p *Part) Decision

	// Message, if set, decides the whole message once the top-level header is read and
	// EditHeader has run; it gets the header as received. SealAttachments and Hold go on to
	// the part decisions (holding is the caller's business); SealMessage seals the whole
	// message as one .eml; Pass copies it as it is (nothing is sealed, nothing scanned);
	// Refuse fails the rewrite with Kind Refused. Nil means SealAttachments.
	Message func(h *textproto.Header) policy.MessageDecision

	// Scanner, if set, scans for malware what is sealed and every leaf kept that is not a
	// text body: the bytes go to it as they go to the Sealer (decoded). A part found infected
	// fails the rewrite with Kind Infected; a scanner that fails, with Kind ScanFailed.
	Scanner Scanner

	// Observe, if set, is told the decision on every entity, in stream order (dry runs and
	// shadow policies). The report is only valid during the call.
	Observe func(r *Report)

	// Gather makes the walker learn the content facts (sniffed type, size, encryption) of
	// every leaf for Observe, not only of those whose rule needs them.
	Gather bool

	// testSpan, set only by this package's tests, learns the input span of each sealed
	// part's body.
	testSpan func(index int, start, end int64)
}

// Result describes a message that Rewrite accepted.
type Result struct {
	Header      textproto.Header // top-level header as received (a copy), for Subject/From/To/Cc/Message-ID
	Attachments []Attachment     // the sealed parts, in order
	Size        int64            // bytes of input consumed
}

// Kind classifies an *Error so that the gateway can answer 5xx (permanent) or 4xx (temporary).
type Kind int

const (
	// Malformed: the message cannot be parsed with certainty (5xx). It is never passed on.
	Malformed Kind = iota + 1
	// LimitExceeded: a limit in Limits was exceeded (5xx).
	LimitExceeded
	// SealerFailed: the Sealer or one of its PartWriters failed (4xx).
	SealerFailed
	// IO: reading the input or writing the output failed (4xx; the connection may be gone).
	IO
	// Internal: the caller broke a contract, e.g. EditHeader changed a Content-* field (4xx).
	Internal
	// Refused: a policy rule refuses the message (5xx with the rule's reason, see Refusal).
	Refused
	// Infected: the Scanner found malware (5xx with the signature name, see Malware).
	Infected
	// ScanFailed: the Scanner could not give a verdict (4xx, or hold by configuration).
	ScanFailed
)

func (k Kind) String() string {
	switch k {
	case Malformed:
		return "malformed"
	case LimitExceeded:
		return "limit exceeded"
	case SealerFailed:
		return "sealer failed"
	case IO:
		return "io"
	case Internal:
		return "internal"
	case Refused:
		return "refused by policy"
	case Infected:
		return "malware found"
	case ScanFailed:
		return "scan failed"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is the error type of Rewrite and Render. Its message never contains content of the
// message, so it may be logged.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return "mimeseal: " + e.Kind.String() + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the same message may succeed later (SealerFailed, IO, Internal,
// ScanFailed).
func (e *Error) Temporary() bool {
	return e.Kind == SealerFailed || e.Kind == IO || e.Kind == Internal || e.Kind == ScanFailed
}

// Refusal is what an *Error of Kind Refused wraps: the rule that refused and the reason the
// sender reads.
type Refusal struct {
	Rule   string
	Reason policy.Text
}

func (r *Refusal) Error() string { return "refused by policy rule " + r.Rule }

// Malware is what an *Error of Kind Infected wraps.
type Malware struct {
	Signature string // as the scanner names it, e.g. "Eicar-Test-Signature"
	Rule      string // the rule that had decided the part (its Attachment.Reason), if any
}

func (m *Malware) Error() string { return "malware found: " + m.Signature }

// KindOf returns the Kind of err if it is or wraps an *Error, and 0 otherwise.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// Sentinel errors, wrapped in an *Error, for errors.Is: they let the gateway tell the sender
// what happened and what to do.
var (
	ErrTruncated      = errors.New("message ends inside a header or inside a multipart")        // Malformed
	ErrAmbiguous      = errors.New("a line starts with a boundary but is not a delimiter line") // Malformed
	ErrBareLineEnding = errors.New("bare CR or LF (normalise line endings with NewCRLFReader)") // Malformed
	ErrBadHeader      = errors.New("the message header cannot be parsed")                       // Malformed
	ErrBadEncoding    = errors.New("a part to seal has a broken base64 encoding")               // Malformed
	ErrBadSkeleton    = errors.New("invalid skeleton")                                          // Malformed (Render)
	ErrTooDeep        = errors.New("multipart nesting too deep")                                // LimitExceeded
	ErrTooManyParts   = errors.New("too many parts")                                            // LimitExceeded
	ErrHeaderTooLarge = errors.New("header too large")                                          // LimitExceeded
	ErrLineTooLong    = errors.New("header line too long")                                      // LimitExceeded
	ErrContentEdited  = errors.New("EditHeader changed a Content-* field")                      // Internal
)

func errorf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Err: fmt.Errorf(format, args...)}
}
