// Package inspect learns facts about a MIME part's content while it streams past: the media
// type sniffed from the content (not the declared type, not the file name), and whether it is
// an encrypted archive or document (the "PPAP" password-protected ZIP and its kin).
//
// An [Inspector] is an io.Writer fed with the part's decoded bytes, in writes of any size; its
// memory use is bounded whatever the part's size, and each byte is looked at a constant number
// of times. What it holds: the first KiB (sniffing); for a ZIP, one header's name and extra
// field (at most 128 KiB) and, while searching for the end of an entry with a data descriptor,
// a window of at most 64 KiB; for RAR 5, one header (at most 2 MiB, the format's limit); for a
// 7z, the header and what precedes it (at most 2 × [MaxHeader7z]), and at Close, when the
// header is compressed, its decompressed form (at most 8 MiB); for PDF and OLE, a few hundred
// bytes and at most 256 remembered stream starts. [Inspector.Close] ends the part and
// [Inspector.Result] reports.
//
// # What is recognised
//
// Media types: whatever net/http.DetectContentType knows, plus the signatures it misses:
// OOXML (docx, xlsx, pptx) and ODF inside ZIP, 7z, RAR 4 and 5, OLE/CFB (legacy Office and
// Outlook .msg), calendar and vCard text, bzip2, xz, zstd, LZH, TIFF, PE and ELF executables.
//
// Encryption, from each format's own structure:
//
//   - ZIP: the encryption flag (general purpose bit 0), strong encryption (bit 6, extra field
//     0x0017), WinZip AES (method 99, extra field 0x9901), in any local or central header;
//     entries with a data descriptor are followed by checking the descriptor's size against
//     the distance travelled, so that a signature inside compressed data is not mistaken for a
//     header;
//   - 7z: an AES-256 coder (06 F1 07 01) for the header (7z a -mhe=on) or for the data; a
//     header that is itself LZMA-compressed is decompressed (bounded) to read the coders;
//   - RAR 4: MHD_PASSWORD on the main header or LHD_PASSWORD on a file header; RAR 5: an
//     archive encryption header, or a file encryption record in a file header's extra area;
//   - PDF: an /Encrypt entry (trailer or cross-reference stream dictionary);
//   - OLE/CFB: EncryptionInfo and EncryptedPackage streams (encrypted OOXML), Word's
//     fEncrypted flag in the FIB, Excel's FILEPASS record after the workbook BOF, PowerPoint's
//     encrypted CurrentUserAtom token. The directory and the streams are matched by position
//     (directory entries on 128-byte boundaries, stream starts on sector or mini-sector
//     boundaries), not by a full FAT walk.
//
// When a structure cannot be followed to its end (a truncated archive, a 7z header over the
// bound, an unknown header compression), [Result.Undetermined] says so: the caller decides
// (sealgate seals what it cannot inspect, never passes it in clear).
package inspect
