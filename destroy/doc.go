// Package destroy destroys what the gateway holds: a revoked or expired
// transfer, a held message that will never leave, a contract that ends —
// and issues the signed destruction certificate of a contract.
//
// # Transfers
//
// Revoking a whole transfer or one recipient (Revoke), and expiring
// transfers whose links have expired (PurgeExpired), destroy what is no
// longer needed at once:
//
//   - a revoked or expired recipient's transfer identity is crypto-shredded
//     (recipients.key_wrapped erased; the database runs with SQLite
//     secure_delete, so the bytes are overwritten), and their pending link
//     and key notices are cancelled with their secrets erased — a
//     passphrase not yet sent never leaves;
//   - once no active recipient remains, every object of the transfer is
//     deleted (every version), then Stat proves each gone.
//
// Every step is a ledger event in the transaction that makes it
// (transfer.revoked / recipient.revoked / transfer.expired, key.destroyed,
// object.deleted, object.absent), and every step is conditional on the
// state it changes, so an interrupted operation is resumed by running it
// again and nothing is recorded twice.
//
// A copy of file.age taken from storage before revocation stays encrypted
// to transfer identities that no longer exist anywhere: the gateway cannot
// open it, and neither can the recipient's passphrase, which only ever
// opened the erased key file.
//
// # Contracts
//
// Ending a contract (EndContract) destroys everything the gateway holds
// under it, in an order chosen so that an interruption at any point leaves
// nothing readable:
//
//  1. the contract becomes "ending" (contract.ended): from then on the
//     gateway refuses mail for it, every pending link notice, key notice
//     and copy of its messages is cancelled with its secrets erased, and
//     its transfers are marked destroyed;
//  2. crypto-shredding: every transfer identity (key.destroyed per
//     recipient), then the contract key itself, are erased from the
//     database, and its write-ahead log is truncated — from this moment
//     nothing the gateway holds opens any stored ciphertext, object
//     version or replica of the contract;
//  3. every object is deleted, every version the store can list
//     (object.deleted, with what the deletion reached);
//  4. a Stat of each proves it gone (object.absent);
//  5. the master key is rotated (key.rotated, package masterkey): every
//     live secret is re-wrapped to a new key and the old key file erased,
//     so that a backup of the database made before opens nothing without
//     a copy of the old key;
//  6. a checkpoint is signed and a destruction certificate is issued
//     (certificate.issued, table certificates), carrying the inclusion
//     proofs of the events above, and the contract becomes "ended".
//
// A step that cannot be done as designed (the WAL stays busy, the store
// cannot list versions, the master key comes from the environment or its
// rotation is switched off) is recorded (destruction.noted) and named in
// the certificate with what was done instead; the certificate states what
// stays true only if people act (destroying old master key copies or
// backups), and claims nothing more.
//
// Every step records what it did in the same transaction as the state it
// changes, conditional on that state, so EndContract can be run again after
// a crash at any point and resumes where it stopped, recording nothing
// twice; it reports success only once the certificate is issued. The
// scheduler resumes contracts left "ending" by a process that died.
//
// # Orphans
//
// SweepOrphans deletes sealed objects that no transfer refers to (stored
// for a message whose commit never happened).
package destroy
