// Package policy decides what sealgate does with an outgoing message and with each of its
// parts, from a reviewable policy file (TOML).
//
// # Model
//
// A policy has two stages, each a list of named rules in priority order with an explicit
// default: the first rule whose predicates all hold decides (a predicate given as a list holds
// when any of its values does).
//
//   - Message rules are decided from the envelope, the routing (contract) and the top-level
//     header, before the body is read: seal the attachments (go on to the part rules), seal the
//     whole message (body included), hold it for approval, refuse it with a bilingual reason,
//     or pass it as sent. A rule may also notify people; a rule whose action is "notify" only
//     notifies and the evaluation goes on.
//   - Part rules are decided for each MIME entity: keep it, seal it, or refuse the message.
//     Multiparts that no rule seals or refuses are walked into.
//
// # Content facts
//
// Some part predicates need the part's content: the media type sniffed from its first bytes,
// its size, whether it is an encrypted archive or document, the malware verdict. [Policy.Part]
// is called at the start of a part with the header facts only; when a rule that could decide
// needs content, it answers [Pending] with the facts it needs ([Need]), the outcomes still
// possible and, when both keeping and sealing are possible, how many bytes the caller must hold
// to be able to keep the part ([PartDecision.KeepLimit]). The caller then streams the content
// through the inspectors (package inspect, package scan/clamd) and calls [Policy.PartEnd] with
// the facts. A part that the caller could not hold is never kept on a rule that needed its
// content: such a rule does not match and the evaluation goes on (towards sealing).
//
// # Security stance
//
// The built-in default ([Default]) is sealgate's behaviour before policies existed: every
// attachment sealed, plain text and HTML bodies kept. A policy file can lower protection
// (action "pass", or "keep" rules); it is code under review, and its hash goes to the ledger
// with every decision ([Policy.Hash]). Every decision names its rule. Header text is matched
// after RFC 2047 decoding and Unicode NFKC normalisation, so full-width and encoded forms of a
// marker match the same pattern; regular expressions are RE2 (linear time, no backtracking).
// Nothing in this package keeps state between calls: a compiled Policy is immutable and safe
// for concurrent use.
package policy
