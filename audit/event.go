package audit

import "time"

// SchemaVersion is the newest record format (the "v" field): 2, a
// contract's event whose names are commitments (see names.go). Format 1,
// names in clear, is written for events without a contract and by ledgers
// that keep no names apart; records of both formats verify alike.
const SchemaVersion = 2

// schemaV1 is the first record format: every field in clear.
const schemaV1 = 1

// Event is one ledger entry. It records who did what to which transfer, file
// or account, never plaintext content or key material: files appear by name,
// size and SHA-256 only — and in format v2 the name is a commitment.
//
// Empty fields are omitted from the canonical encoding.
type Event struct {
	V            int       `json:"v"`
	Time         time.Time `json:"time"`  // UTC, encoded RFC 3339 with milliseconds
	Type         string    `json:"type"`  // one of the Type* constants
	Actor        string    `json:"actor"` // account name, "smtp:<client address>", or "system"
	Contract     string    `json:"contract,omitempty"`
	Message      string    `json:"message,omitempty"` // gateway message id
	Transfer     string    `json:"transfer,omitempty"`
	Recipient    string    `json:"recipient,omitempty"` // e-mail address
	File         string    `json:"file,omitempty"`      // file name as shown to users
	SHA256       string    `json:"sha256,omitempty"`    // of the plaintext, hex
	Size         int64     `json:"size,omitempty"`
	CipherSHA256 string    `json:"cipher_sha256,omitempty"`
	CipherSize   int64     `json:"cipher_size,omitempty"`
	Object       string    `json:"object,omitempty"` // storage key
	RemoteIP     string    `json:"remote_ip,omitempty"`
	UserAgent    string    `json:"user_agent,omitempty"`
	Account      string    `json:"account,omitempty"` // account acted upon (account events)
	Reason       string    `json:"reason,omitempty"`
	Result       string    `json:"result,omitempty"`
	// Details carries type-specific extras (e.g. "from", "subject", "to",
	// "format", "expires_at"). Keys are sorted in the canonical encoding.
	Details map[string]string `json:"details,omitempty"`
}

// Event types. The names are part of the export format: do not rename.
const (
	TypeMessageReceived    = "message.received"    // a message was accepted (250) or an inbound receipt recorded
	TypeMessageRefused     = "message.refused"     // a message was refused (4xx/5xx) after DATA
	TypeFileSealed         = "file.sealed"         // an attachment was encrypted and stored
	TypeFileReceived       = "file.received"       // an attachment of an inbound message was recorded (name, size, SHA-256), passed through unchanged
	TypeNoticeQueued       = "notice.queued"       // a rewritten copy / notice was queued for a recipient
	TypeNoticeDelivered    = "notice.delivered"    // the link notice (rewritten copy) was accepted by the next hop
	TypeKeyNoticeDelivered = "keynotice.delivered" // the key notice was accepted by the next hop
	TypePlainDelivered     = "plain.delivered"     // an unchanged copy was delivered to an internal recipient
	TypeDeliveryDeferred   = "delivery.deferred"   // a transient delivery failure (will retry)
	TypeDeliveryFailed     = "delivery.failed"     // a permanent delivery failure
	TypeBounceSent         = "bounce.sent"         // a DSN was queued to the sender
	TypePageViewed         = "page.viewed"         // a download page was opened (GET)
	TypePassphraseFailed   = "passphrase.failed"   // a wrong passphrase was submitted
	TypeLinkLocked         = "link.locked"         // too many wrong passphrases
	TypeFileDownloaded     = "file.downloaded"     // details["format"] = "plain" | "age" | "key"; details["mode"] = "browser": for the recipient's page decrypting in the browser
	TypeFileDecrypted      = "file.decrypted"      // the recipient's page reported the SHA-256 of a file it decrypted in the browser: result "ok" (the one recorded at sealing) or "mismatch"
	TypeTransferRevoked    = "transfer.revoked"    // whole transfer revoked
	TypeRecipientRevoked   = "recipient.revoked"   // one recipient's access revoked
	TypeExpiryExtended     = "expiry.extended"     // details["expires_at"]
	TypeTransferExpired    = "transfer.expired"    // purged after expiry
	TypeApprovalRequested  = "approval.requested"  // a held message awaits the manager
	TypeApprovalGranted    = "approval.granted"    // ... approved
	TypeApprovalRefused    = "approval.refused"    // ... refused (reason)
	TypeApprovalExpired    = "approval.expired"    // ... not decided in time: the held message was destroyed
	TypeMessageHeld        = "message.held"        // external copies held back (approval and/or send delay; details["release_at"])
	TypeMessageReleased    = "message.released"    // held external copies queued for delivery (taken out)
	TypeMessageCancelled   = "message.cancelled"   // the sender cancelled a held message before it left
	TypePubKeyRequested    = "pubkey.requested"    // a recipient asked to register a public key (verification mailed)
	TypePubKeyRegistered   = "pubkey.registered"   // ... and confirmed it from the mailed link; later transfers are encrypted to it
	TypeLogin              = "login"               // portal or SMTP AUTH login
	TypeLogout             = "logout"
	TypeLoginFailed        = "login.failed"
	TypeAccountCreated     = "account.created"
	TypeAccountChanged     = "account.changed"
	TypeAccountDisabled    = "account.disabled"
	TypeAccountEnabled     = "account.enabled"
	TypeContractCreated    = "contract.created"
	TypeContractChanged    = "contract.changed"
	TypeContractEnded      = "contract.ended"
	TypeKeyDestroyed       = "key.destroyed"  // a KEK or transfer identity was erased (crypto-shredding)
	TypeObjectDeleted      = "object.deleted" // a stored object (all versions) was deleted
	TypeObjectAbsent       = "object.absent"  // a Stat after deletion proved the object gone
	TypeCheckpointSigned   = "checkpoint.signed"
	TypeExportMade         = "export.made"
	TypeReviewDone         = "review.done"        // a manager marked an access review done
	TypeCertificateIssued  = "certificate.issued" // a destruction certificate was issued
	TypeKeyRotated         = "key.rotated"        // the master key was replaced: every live secret re-wrapped to the new epoch, the old key erased
	TypeDestructionNoted   = "destruction.noted"  // a destruction step could not be done as designed; details say what was done instead
	TypePolicyChanged      = "policy.changed"     // serve started with a policy file whose hash differs from the last recorded (details: policy_hash, previous_hash, file)
	TypePolicyShadow       = "policy.shadow"      // what a candidate policy (policy.shadow) would have done with a message; nothing was done
)
