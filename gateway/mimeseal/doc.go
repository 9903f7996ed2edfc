// Package mimeseal is sealgate's streaming MIME walker: it decides which parts of an outgoing
// message are sealed, streams their decoded content to a [Sealer], and writes a skeleton of the
// message in which each sealed part is replaced by a placeholder. [Render] later turns the
// skeleton into the message delivered to one recipient, with a download notice in place of
// each placeholder.
//
// # Security stance
//
// Nothing of a sealed part reaches the skeleton: not one byte of its content, encoded or
// decoded. Kept parts (plain text and HTML bodies without a file name and without a file
// hidden inside, see below) are copied raw and byte-identical; the structure around them (multipart delimiters) is regenerated in canonical
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
//     delimiter or by the end of input make Rewrite fail with [Malformed]; the caller then
//     seals the whole message as one .eml with [SealWhole] (sealgate does: broken mail still
//     flows, and nothing of it in clear);
//   - nesting depth, part count, header and header line sizes are limited ([LimitExceeded]),
//     and the walk is a single pass with a bounded buffer, linear in the input whatever its
//     shape.
//
// # Files hidden in text
//
// A text part can carry a file that mail programs show as an attachment or let the reader
// save: a uuencoded file in plain text (Outlook's and Becky!'s "UUENCODE" option; Outlook and
// Thunderbird list it as an attachment), BinHex 4.0, yEnc, btoa, a PGP-armoured message, and
// in HTML a data: URI (an image, a link, a frame, CSS) or an <object>, <embed>, <applet> or
// srcdoc payload. Such a part is not kept: it is sealed whole, as a .eml of its own (its
// Content-* fields and its raw body, so that a mail program opens it as the sender wrote it),
// and the recipient's copy gets the notice in its place. [Attachment.Reason] says why:
// "uuencode", "binhex", "yenc", "btoa", "pgp", "data-uri" or "html-object"; the file name is
// that of the first file found (a uuencode or yEnc header), if any.
//
// Sealing the whole part, rather than cutting each file out of the text and keeping the rest,
// is a choice: the text would have to be rewritten and re-encoded (quoted-printable, base64,
// its charset, HTML around a data: URI), which is where parsers disagree and files slip
// through; and the skeleton keeps its rule that a part is either copied byte-identical or not
// at all. The cost is that the recipient downloads the text with the file. A mail whose HTML
// signature holds a data: image is sealed the same way: that image is a file too.
//
// How it works, single pass and bounded: the raw body of a kept text part (text/* and XHTML)
// is held in memory, up to [Limits.MaxTextBytes] (1 MiB by default), while its decoded content
// — quoted-printable or base64 undone, ISO 2022 escape sequences removed — goes through an
// inspector. At the end of the part the held bytes are copied to the skeleton, or, as soon as
// something is found, the part is sealed and the rest of its body streams to the Sealer. The
// held buffer is recycled through [Buffers]. Every rule errs towards sealing:
//
//   - markers are found at the start of a line after white space, in any case, with any line
//     break (CRLF, LF, CR); in format=flowed text, on the joined lines too. A lower-case
//     "begin", an octal mode and white space is uuencode (Thunderbird takes it so, even
//     without a name); another case of "begin" counts when a line of uuencoded data follows;
//     "begin-base64", "=ybegin", "xbtoa Begin", "-----BEGIN PGP MESSAGE", a line of BinHex
//     data (with or without the BinHex banner) and the banner count at once;
//   - HTML is tokenized into tags and attributes: every attribute value and every style
//     element is read with character references decoded ("d&#97;ta:", "data&colon;",
//     "&#0000100;") and CSS escapes decoded, and "data:" counts where a URL scheme can start,
//     white space inside it ignored. Where the tokenizer reads differently from a browser, it
//     scans more (comments are read as markup, so Outlook's conditional comments are);
//   - a text part that cannot be read with certainty is sealed whole: a charset in which
//     ASCII is not ASCII bytes (UTF-16, UTF-32, UTF-7, HZ, EBCDIC; or a UTF-16 byte order
//     mark; or such a charset declared in the HTML) ("charset"), base64 with data after the
//     padding or bytes outside its alphabet, quoted-printable with an "=" not followed by two
//     hex digits ("unparseable"), and a part larger than MaxTextBytes ("large-text");
//   - a bare CR or LF in a kept part is still refused.
//
// Not covered, because no mail program turns them into a file: encoded text a reader would
// have to decode by hand (base64 pasted into a message), data: URIs written as plain text,
// uuencode in HTML source not followed by data. Other leaves that a custom policy keeps are
// copied raw, uninspected: that is the policy's choice.
//
// # Policies
//
// With [Options.Policy] (package policy) the part rules decide each entity, and
// [Options.Message] the whole message (seal the attachments, seal the whole message as one
// .eml, pass it as sent, refuse it). A part rule may need the content (the sniffed type, the
// size, whether it is an encrypted archive, the malware verdict): policy.Policy.Part then
// answers Pending with the outcomes still possible, and the walker streams the decoded content
// through the inspectors (package inspect) and the [Scanner] before policy.Policy.PartEnd
// decides, in one pass:
//
//   - sealing or refusing: the content goes to the Sealer as it comes; a refusal aborts it;
//   - keeping or refusing (not a text body): the raw body goes to the skeleton as it comes (a
//     refusal discards the skeleton with the whole message);
//   - keeping or sealing: the raw body and the decoded content are held, each bounded
//     (policy.PartDecision.KeepLimit decoded bytes, three times that raw); past the bound the
//     part cannot be kept and is sealed from there on. A text part held so is inspected for
//     hidden files like any kept text; a body that cannot be decoded with certainty is sealed
//     whole, raw ("unparseable"), whatever the rules say.
//
// policy.Part.Index counts leaves in stream order; policy.Part.Inline is set when a kept HTML
// body before the part refers to its Content-ID by a cid: URL (collected only when a rule has
// an inline predicate). [Options.Observe] is told every decision, for dry runs and shadow
// policies.
//
// # Malware scanning
//
// With [Options.Scanner], whatever is sealed (decoded, or the .eml of a part sealed whole) and
// every leaf kept that is not a text body decided from its header alone is streamed to the
// scanner as it goes to the Sealer or the skeleton; the verdict is taken before the part is
// committed. An infected part fails the rewrite ([Infected], whatever the rules say), a scanner
// without a verdict too ([ScanFailed], temporary); [Attachment.Scanned] tells Render's notice
// that the file was scanned. Text bodies kept on their header are inspected for hidden files,
// not scanned; a message a policy passes is neither.
//
// # Streaming
//
// [Rewrite] reads its input once through a fixed buffer (64 KiB by default) and keeps a stack
// of active boundaries; a delimiter of an enclosing multipart closes the inner ones (RFC 2046
// section 5.1.2). Memory use does not depend on the size of the message or of any part (a kept
// text part is held up to [Limits.MaxTextBytes], a larger one is sealed; a part whose keeping
// depends on its content, up to its rule's bound); the cost is linear in
// the input, including for deeply nested multiparts (which are refused past
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
