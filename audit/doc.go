// Package audit is sealgate's tamper-evident ledger: every event the
// gateway, the portal and the CLI record (received, sealed, distributed,
// downloaded, approved, revoked, destroyed, logins …) is one canonical JSON
// line appended to an RFC 6962 Merkle tree log (golang.org/x/mod/sumdb/tlog)
// kept in the metadata database, in the same transaction as the state change
// it records.
//
// # Records
//
// Record N of the log is the canonical encoding of one Event (see
// Canonical): UTF-8 JSON on one line, keys in the order of the Event struct,
// empty optional fields omitted, details keys sorted, times in UTC RFC 3339
// with exactly millisecond precision, no HTML escaping, no insignificant
// whitespace, no trailing newline. Strings must be valid UTF-8 without
// control characters, line/paragraph separators or bidirectional override
// characters (so that a record displays the same in a terminal, a CSV file
// and a web page); Sanitize makes any string acceptable. The record bytes are
// hashed as RFC 6962 leaves: a record's hash does not depend on anything but
// its bytes, and every verifier re-encodes each record and refuses one that
// is not canonical, so one event has exactly one representation.
//
// # Storage and append
//
// Records live in ledger_records, the tree's stored hashes (tlog's dense
// "stored hash index" order: each record adds its leaf hash and the hashes of
// the subtrees it completes) in ledger_hashes, signed checkpoints in
// ledger_checkpoints (migration database/migrations/0002_ledger.sql). Append
// reads the current size from the caller's transaction, never from a Go-side
// counter, so a rolled-back savepoint cannot desynchronise it; the database's
// single writer serializes appends, a mutex serializes concurrent appends
// made through one Ledger, and triggers refuse an insert at any index other
// than the next one, so the tree cannot fork.
//
// Triggers also abort every UPDATE and DELETE of ledger rows: purging files,
// transfers or whole contracts never removes their history. A database
// administrator can still drop those triggers (or edit the file) — the point
// of the Merkle tree is that such an edit is then detectable, see below.
//
// # Checkpoints
//
// A checkpoint is a golang.org/x/mod/sumdb/note signed (Ed25519) statement
// of the tree's size and root hash, with the body of a C2SP tlog checkpoint:
//
//	<origin>
//	<tree size>
//	<base64 root hash>
//
// Checkpoints are made at intervals and on demand (Checkpointer,
// Ledger.Checkpoint), stored in the database and, when an object store is
// configured, written to it under ledger/checkpoints/<size>.note (with S3
// Object Lock when the store supports storage.Retainer) and
// ledger/checkpoints/latest.note. Signing a checkpoint is itself recorded
// (checkpoint.signed) right after the tree it signs: a checkpoint of size N
// covers entries 0..N-1, and its own event is entry N.
//
// # Exports and offline verification
//
// Ledger.Export writes CSV (for Excel: UTF-8 with BOM, CRLF, bilingual
// header, formula injection defused), a printable HTML page laid out by the
// agreement's clauses (see Clause), or a JSON bundle that VerifyBundle checks
// with nothing but the public verifier key. A bundle holds a checkpoint
// signed for the export, the selected records byte for byte, and their
// proofs: one inclusion proof per entry for a filtered selection, or — when
// the selection is a contiguous range of entries — each entry's leaf hash and
// one range proof, so that a million entries are verified in one streaming
// pass that rebuilds the tree instead of a million separate proofs. A
// manifest signed with the same key states the filter, the number of entries
// and a digest of their indexes and hashes: entries cannot be dropped, added
// or swapped for other genuine entries unnoticed. A bundle may also carry a
// consistency proof from an earlier checkpoint (ExportOptions.Previous).
// Verification names the first bad entry (*VerifyError) whenever the
// evidence allows it.
//
// # What the tree proves, and what it does not
//
// Given a checkpoint signed with the gateway's key, an inclusion proof shows
// that a record is entry N of that tree, and a consistency proof shows that
// an older checkpoint's tree is a prefix of a newer one: nothing signed
// earlier was edited, removed, reordered or inserted later. VerifyDB
// recomputes the whole tree from the records and names the first entry that
// no longer matches its stored hash or a signed checkpoint; VerifyBundle
// checks an exported bundle offline with only the public verifier key.
//
// It does not prove more than that:
//
//   - Entries appended after the newest checkpoint an auditor holds are
//     protected only by the stored hashes, which whoever can write to the
//     database can recompute. A complete rewrite of the database (records,
//     hashes and checkpoints, re-signed with the gateway's own key) is
//     detected only against a checkpoint held outside the gateway's
//     control — that is why checkpoints also go to object storage (ideally
//     a separate, Object-Locked bucket) and to auditors, and why
//     VerifyBundle and VerifyDB accept a previous checkpoint to check
//     against.
//   - The signing key lives on the gateway: its holder can sign a different
//     history. Two different checkpoints of the same size, both signed, are
//     proof of that misbehaviour (consistency proofs fail between them).
//   - The ledger records what the gateway did. An event that was never
//     appended (because the code did not record it) cannot be proven absent.
//     A filtered export is signed by the gateway as complete for its filter
//     (the bundle's manifest), which an auditor can hold it to.
//
// Ledger entries carry no plaintext and no key material: files are named and
// described by size and SHA-256 only.
package audit
