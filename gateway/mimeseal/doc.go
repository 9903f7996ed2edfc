// Package mimeseal is sealgate's streaming MIME walker: it decides which parts of an outgoing
// message are sealed, streams their decoded content to a [Sealer], and writes a skeleton of the
// message in which each sealed part is replaced by a placeholder. [Render] later turns the
// skeleton into the message delivered to one recipient, with a download notice in place of
// each placeholder.
//
// # Security stance
//
// Nothing of a sealed part reaches the skeleton: not one byte of its content, encoded or
// decoded. Kept parts (plain text and HTML bodies without a file name) are copied raw and
// byte-identical; the structure around them (multipart delimiters) is regenerated in canonical
// form, and preambles and epilogues are dropped, because data can hide there. Whatever the
// walker cannot parse with certainty is sealed whole or refused, never passed on in clear:
//
//   - an entity whose Content-Type, Content-Transfer-Encoding or header cannot be parsed, or
//     that carries one of those fields twice, is sealed whole, raw;
//   - a line that starts with "--" and an active boundary but is not exactly a delimiter line
//     (RFC 2046 allows only linear white space after it) is refused, because parsers disagree
//     on such lines and that disagreement is how attachments are smuggled;
//   - a bare CR or LF in anything copied to the skeleton is refused (normalise the input with
//     [NewCRLFReader] first: SMTP smuggling, CVE-2023-51764 class);
//   - a broken base64 body in a sealed part, an unterminated multipart, a part header cut by a
//     delimiter or by the end of input are refused ([Malformed]);
//   - nesting depth, part count, header and header line sizes are limited ([LimitExceeded]),
//     and the walk is a single pass with a bounded buffer, linear in the input whatever its
//     shape.
//
// # Streaming
//
// [Rewrite] reads its input once through a fixed buffer (64 KiB by default) and keeps a stack
// of active boundaries; a delimiter of an enclosing multipart closes the inner ones (RFC 2046
// section 5.1.2). Memory use does not depend on the size of the message or of any part; the
// cost is linear in the input, including for deeply nested multiparts (which are refused past
// [Limits.MaxDepth]). Base64 is decoded by a line-aware decoder that strips line breaks in bulk
// and decodes large batches, so that a 1 GiB attachment costs about as much as memmove plus
// [encoding/base64.Encoding.Decode].
//
// # Who closes what
//
// Rewrite neither closes src nor dst. For every [PartWriter] returned by [Sealer.Begin],
// Rewrite calls exactly one of Close (the part is complete) or Abort (the rewrite failed
// before the part was complete). Parts already closed when a later part fails stay committed:
// the caller owns the transaction and must discard them (sealgate answers 4xx/5xx and rolls
// back). On error, whatever was written to dst must be discarded.
package mimeseal
