// Package notice writes every mail sealgate sends on its own: the download
// notice that stands where a sealed attachment was, the key notice, the
// bounce, the approval request, the held-message receipt with its cancel
// link, the decision on a held message, the download receipt, the
// confirmation of a public-key registration, the alert of a locked
// account and the alerts about the ledger's witnesses.
//
// # The texts
//
// Every text a recipient reads is a template in templates/ (text/template,
// embedded in the binary): one file per kind of notice, Japanese first and
// English after it, with the pieces several notices share in common.tmpl
// and the sentences that say why a text part was sealed in reasons.tmpl. A
// translator or a reviewer reads that folder and nothing else. The tests
// render every kind and compare it byte for byte with testdata/*.eml
// (go test ./notice -update rewrites them), so a change of wording is a
// visible diff.
//
// # Who does what
//
// This package renders; it stores and sends nothing. The gateway owns the
// outbound queue: it renders download, key and bounce notices at delivery
// (they carry a link token or a passphrase that is unwrapped only then),
// and queues every other notice through one function, QueueNotice, in its
// caller's transaction, rendered and wrapped to the master key until
// delivery. The packages that send a notice (hold, pubkey, portal,
// account) declare the one-method interface they need and build a Mail.
//
// # Whom sealgate mails
//
// Policy is the one rule of whom sealgate may mail on its own about a
// message: the message's sender gets receipts and decisions only at an
// internal address or an active account's address, because relayed mail
// may carry any envelope sender and mailing it would be backscatter.
// Every recipient is mailed in canonical form (package address); one with
// routing syntax is never mailed.
package notice

import (
	"time"
)

// Notice is the content of one mail. The set is closed: it is the types of
// this package, each written from its template in templates/.
type Notice interface {
	spec() spec
}

// Kind names n's kind: the name of its template file without ".tmpl"
// (for logs).
func Kind(n Notice) string { return n.spec().kind }

// Mail is a notice with its recipients, as QueueNotice takes it.
type Mail struct {
	To []string
	// About is the gateway message the notice concerns ("" for none).
	About  string
	Notice Notice
}

// style is how a notice's header reads.
type style int

const (
	styleSystem style = iota // From: sealgate <notice_from>; X-Sealgate-Notice: system
	styleKey                 // From: the message's sender; X-Sealgate-Notice: key
	styleBounce              // From: Mail Delivery System <notice_from>; a multipart/report
)

// spec is what the renderer and the policy need to know about a kind.
type spec struct {
	kind  string
	style style
	// toSender: the notice goes to the sender of a message, as its
	// envelope named them; Policy decides whether that address is mailed.
	toSender bool
}

// File is a sealed file as notices name it.
type File struct {
	Index       int
	Name        string
	Size        int64
	SHA256      string
	ContentType string
}

// Link is the text that stands where a sealed attachment was (rendered
// with WriteLink, not a mail of its own). It holds no passphrase.
type Link struct {
	// Token is the recipient's link token: the link is PublicURL/t/Token.
	Token   string
	Expires time.Time
	File    File
	// Registered is the fingerprint of the public key the recipient
	// registered, when their key.age is encrypted to it ("" otherwise).
	Registered string
	// Hidden is why a text part was sealed whole for a file it hid
	// (mimeseal's Attachment.Reason: "uuencode", "binhex", "yenc",
	// "data-uri", "html-object", ...), "" for an attachment. A reason with
	// a sentence in templates/reasons.tmpl makes the notice say that part
	// of the text was sealed, and why; any other reason is ignored.
	Hidden string
	// Message: the file is the whole message (a policy sealed it whole,
	// or its structure could not be parsed): the notice says so, and no
	// more about it.
	Message bool
	// Scanned: the file was scanned for malware when it was received, and
	// nothing was found.
	Scanned bool
}

// Key is the separate mail that carries the passphrase of one recipient's
// files, and no link. Under key delivery "manual" (HandOverTo set) it goes
// to the sender, who hands the passphrase over by another channel; for a
// recipient who registered a public key (Registered set) it says the files
// are encrypted to that key and carries no passphrase.
type Key struct {
	// From is the message's envelope sender, the From of the notice ("":
	// the null sender; the notice then comes from Options.From).
	From string
	// Subject and Sender (its From, decoded, for the text) of the message.
	Subject string
	Sender  string
	Sent    time.Time
	// References is the Message-ID of the message ("<…>"); an invalid one
	// is left out.
	References string
	Passphrase string
	Files      []File
	// Registered is the fingerprint of the recipient's registered public
	// key, RegisteredKind its kind (age, ssh-ed25519, ...).
	Registered     string
	RegisteredKind string
	HandOverTo     string
}

func (Key) spec() spec { return spec{kind: "key", style: styleKey} }

// Bounce is the delivery status notification (RFC 3464) to the sender of a
// message that could not be delivered.
type Bounce struct {
	Arrival    time.Time
	Recipients []string
	Status     string // enhanced status code, e.g. 5.1.1
	Diagnostic string // what the remote server said
	Subject    string
	// References is the Message-ID of the message ("<…>").
	References string
	// KeyNotice: what failed is the key notice, not the message.
	KeyNotice bool
}

func (Bounce) spec() spec { return spec{kind: "bounce", style: styleBounce} }

// Message is a held message as the hold notices summarise it.
type Message struct {
	ID         string // the gateway's message id
	Contract   string // code
	Sender     string
	Subject    string
	Received   time.Time
	Recipients []string // external
	Files      []File
}

// ApprovalRequest asks a contract's managers to approve or refuse a held
// message before Expires.
type ApprovalRequest struct {
	Message
	Expires time.Time
	// Expired: the contract is past its end date; it must be extended
	// before the message can be approved.
	Expired bool
}

func (ApprovalRequest) spec() spec { return spec{kind: "approval-request"} }

// HoldReceipt tells the sender that the external copies of a message are
// held (awaiting approval, or the send delay), and how to cancel.
type HoldReceipt struct {
	Message
	Approval bool // awaits the information manager's approval
	Expired  bool // ... because the contract is past its end date
	// ApprovalExpires is when an undecided message is destroyed.
	ApprovalExpires time.Time
	// ReleaseAt is the end of the send delay (Received when none).
	ReleaseAt time.Time
	// CancelToken makes the cancel link PublicURL/c/CancelToken ("": none).
	CancelToken string
}

func (HoldReceipt) spec() spec { return spec{kind: "hold-receipt", toSender: true} }

// Decision is what became of a held message.
type Decision string

// Decisions.
const (
	Approved  Decision = "approved"
	Refused   Decision = "refused"
	Expired   Decision = "expired"
	Cancelled Decision = "cancelled"
)

// HoldDecision tells the sender what became of a held message.
type HoldDecision struct {
	Message
	Decision Decision
	By       string // who decided (an account name)
	Reason   string // the decider's comment (approved, refused)
	At       time.Time
	// ReleaseAt is when an approved message leaves; ApprovalExpires is the
	// deadline an expired one missed.
	ReleaseAt       time.Time
	ApprovalExpires time.Time
}

func (HoldDecision) spec() spec { return spec{kind: "hold-decision", toSender: true} }

// DownloadReceipt tells the sender of a transfer that a recipient
// downloaded a file for the first time.
type DownloadReceipt struct {
	Recipient string
	Subject   string
	File      string
	Size      int64
	At        time.Time
	IP        string
	// Transfer is the transfer's id: the sender's page is
	// PublicURL/transfers/Transfer.
	Transfer string
	// Partial is set when the connection ended part-way.
	Partial *Partial
}

// Partial is what a partial download sent.
type Partial struct {
	// Age: the download was of file.age (Sent bytes of ciphertext, of
	// which Plaintext bytes of the file can be decrypted).
	Age       bool
	Sent      int64
	Plaintext int64
}

func (DownloadReceipt) spec() spec { return spec{kind: "download-receipt", toSender: true} }

// KeyRegistration asks the owner of Address to confirm the registration
// of a public key for the files sent to them.
type KeyRegistration struct {
	Address     string
	Kind        string
	Fingerprint string
	PublicKey   string
	RequestedBy string // the IP address the request came from
	Expires     time.Time
	// Token makes the link PublicURL/keys/verify/Token.
	Token string
}

func (KeyRegistration) spec() spec { return spec{kind: "key-registration"} }

// AccountLocked alerts the administrators that an account was locked after
// repeated failed sign-ins.
type AccountLocked struct {
	Name   string
	Email  string
	Until  time.Time
	LastIP string
}

func (AccountLocked) spec() spec { return spec{kind: "account-locked"} }

// WitnessAlert tells the administrators about a witness of the ledger
// (package witness/client): it stopped cosigning checkpoints (Problem
// "down" or "rejected"), refused a checkpoint as inconsistent with what it
// cosigned before ("refused"), or cosigns again ("recovered"). Mail is
// never held up by a witness.
type WitnessAlert struct {
	Problem  string // down | rejected | refused | recovered
	Witness  string // its name
	URL      string
	Key      string    // "<name>+<key ID>"
	Size     int64     // the checkpoint concerned
	Since    time.Time // first failure (down, rejected)
	Failures int       // consecutive failures so far
	Detail   string    // what happened (English, as the witness or the network said it)
}

func (WitnessAlert) spec() spec { return spec{kind: "witness-alert"} }

// PolicyAlert tells the people a policy rule names (notify) that a message
// matched it, and what was done. It carries no content of the message but
// its subject.
type PolicyAlert struct {
	Rule       string // the rule that matched
	Action     string // what the message rules decided: seal_attachments, seal_message, hold, refuse or pass
	MessageID  string // the gateway's message id
	Sender     string
	Recipients []string
	Subject    string
	Contract   string
	Received   time.Time
	PolicyHash string // SHA-256 of the policy file, hex
}

func (PolicyAlert) spec() spec { return spec{kind: "policy-alert"} }
