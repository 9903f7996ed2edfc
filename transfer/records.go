package transfer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
)

// The records of what was received and sealed. The gateway writes them in
// the transaction that accepts a message (its 250), and package seed
// writes the same rows through the same functions, so that the two cannot
// drift apart against one schema. Each function writes one row inside
// the caller's transaction; the caller appends the ledger events that go
// with it in the same transaction.

// Message is the record of a received message.
type Message struct {
	ID         string // the gateway's message id
	ReceivedAt time.Time
	Client     string // the SMTP client's address (host:port)
	HELO       string
	MailFrom   string
	HeaderFrom string // decoded From header
	Subject    string // decoded Subject header
	MessageID  string // the Message-Id header
	Size       int64
	ContractID int64  // 0: none (internal or inbound mail outside any contract)
	Actor      string // the authenticated account, "" for relayed mail
}

// InsertMessage records a received message.
func InsertMessage(ctx context.Context, tx *database.Tx, m Message) error {
	var contractID any
	if m.ContractID != 0 {
		contractID = m.ContractID
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO messages(id, received_at, client_addr, helo, mail_from, header_from, subject, message_id, size, contract_id, actor)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		m.ID, m.ReceivedAt.UnixMilli(), m.Client, m.HELO, m.MailFrom, m.HeaderFrom, m.Subject, m.MessageID, m.Size, contractID, m.Actor); err != nil {
		return fmt.Errorf("failed to record message: %w", err)
	}
	return nil
}

// NewTransfer is a transfer as sealed: active, files and recipients to
// follow (InsertFile, InsertRecipient).
type NewTransfer struct {
	ID         string
	MessageID  string
	ContractID int64
	Sender     string
	CreatedAt  time.Time
	ExpiresAt  time.Time
}

// InsertTransfer records a new, active transfer of the message.
func InsertTransfer(ctx context.Context, tx *database.Tx, t NewTransfer) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO transfers(id, message_id, contract_id, sender, created_at, expires_at, status) VALUES (?, ?, ?, ?, ?, ?, 'active')`,
		t.ID, t.MessageID, t.ContractID, t.Sender, t.CreatedAt.UnixMilli(), t.ExpiresAt.UnixMilli()); err != nil {
		return fmt.Errorf("failed to record transfer: %w", err)
	}
	return nil
}

// SealedFile is one sealed file: its plaintext's name, type, size and
// SHA-256, and the stored ciphertext's key, size and SHA-256 (checked
// when serving).
type SealedFile struct {
	Index        int
	Name         string
	ContentType  string
	Size         int64
	SHA256       string
	Object       string
	CipherSize   int64
	CipherSHA256 string
}

// InsertFile records a sealed file of the transfer.
func InsertFile(ctx context.Context, tx *database.Tx, transferID string, f SealedFile) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO files(transfer_id, idx, name, content_type, size, sha256, object_key, cipher_size, cipher_sha256)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		transferID, f.Index, f.Name, f.ContentType, f.Size, f.SHA256, f.Object, f.CipherSize, f.CipherSHA256); err != nil {
		return fmt.Errorf("failed to record file: %w", err)
	}
	return nil
}

// NewRecipient is an external recipient of a transfer: the SHA-256 of
// their link token and their key.age wrapped to the contract KEK.
type NewRecipient struct {
	Address     string
	TokenHash   []byte
	KeyWrapped  []byte
	PublicKeyID int64 // the registered key key.age is encrypted to; 0: a passphrase
}

// InsertRecipient records a recipient of the transfer and returns its id.
func InsertRecipient(ctx context.Context, tx *database.Tx, transferID string, r NewRecipient) (int64, error) {
	var keyID any
	if r.PublicKeyID != 0 {
		keyID = r.PublicKeyID
	}
	var id int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO recipients(transfer_id, address, token_hash, key_wrapped, public_key_id) VALUES (?, ?, ?, ?, ?) RETURNING id`,
		transferID, r.Address, r.TokenHash, r.KeyWrapped, keyID).Scan(&id); err != nil {
		return 0, fmt.Errorf("failed to record recipient: %w", err)
	}
	return id, nil
}

// CapExpiry moves the transfer's expiry back to at if it is later (a
// held message approved after its contract's end date moved).
func CapExpiry(ctx context.Context, tx *database.Tx, transferID string, at time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE transfers SET expires_at = ? WHERE id = ? AND expires_at > ?`,
		at.UnixMilli(), transferID, at.UnixMilli()); err != nil {
		return fmt.Errorf("failed to cap the expiry of transfer %s: %w", transferID, err)
	}
	return nil
}

// TransferCount is how many transfers a contract has, and how many are
// active.
type TransferCount struct{ Total, Active int }

// CountTransfers counts the contract's transfers.
func CountTransfers(ctx context.Context, q database.Querier, contractID int64) (TransferCount, error) {
	var n TransferCount
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'active' THEN 1 ELSE 0 END), 0) FROM transfers WHERE contract_id = ?`, contractID).
		Scan(&n.Total, &n.Active); err != nil {
		return n, fmt.Errorf("failed to count transfers: %w", err)
	}
	return n, nil
}

// FileCount is how many files were sealed under a contract, and how many
// are still stored (not proven absent).
type FileCount struct{ Total, Stored int }

// CountFiles counts the files of the contract's transfers.
func CountFiles(ctx context.Context, q database.Querier, contractID int64) (FileCount, error) {
	var n FileCount
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(CASE WHEN f.absent_at IS NULL THEN 1 ELSE 0 END), 0) FROM files f JOIN transfers t ON t.id = f.transfer_id WHERE t.contract_id = ?`, contractID).
		Scan(&n.Total, &n.Stored); err != nil {
		return n, fmt.Errorf("failed to count files: %w", err)
	}
	return n, nil
}

// Reach is how many recipients a transfer has, and how many downloaded.
type Reach struct{ Recipients, Downloaded int }

// ReachBySender returns the reach of every transfer sent by sender, by
// transfer id.
func ReachBySender(ctx context.Context, q database.Querier, sender string) (map[string]Reach, error) {
	rows, err := q.QueryContext(ctx, `SELECT r.transfer_id, COUNT(*), SUM(CASE WHEN r.downloads > 0 THEN 1 ELSE 0 END) FROM recipients r
		JOIN transfers t ON t.id = r.transfer_id WHERE t.sender = ? COLLATE NOCASE GROUP BY r.transfer_id`, sender)
	if err != nil {
		return nil, fmt.Errorf("failed to count recipients: %w", err)
	}
	defer rows.Close()
	out := map[string]Reach{}
	for rows.Next() {
		var id string
		var n Reach
		if err := rows.Scan(&id, &n.Recipients, &n.Downloaded); err != nil {
			return nil, fmt.Errorf("failed to count recipients: %w", err)
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to count recipients: %w", err)
	}
	return out, nil
}

// MessageRecord is a received message as recorded, with the code of its
// contract and its transfer, if any.
type MessageRecord struct {
	Message
	Contract   string // code; "" without a contract
	TransferID string // "" when nothing was sealed
}

// MessageByID returns the record of a received message, or ErrNotFound.
func MessageByID(ctx context.Context, q database.Querier, id string) (*MessageRecord, error) {
	m := &MessageRecord{}
	var received int64
	var contractID sql.NullInt64
	var transferID sql.NullString
	err := q.QueryRowContext(ctx, `SELECT m.id, m.received_at, m.client_addr, m.helo, m.mail_from, m.header_from, m.subject, m.message_id, m.size,
			m.contract_id, m.actor, t.id
		FROM messages m LEFT JOIN transfers t ON t.message_id = m.id WHERE m.id = ?`, id).
		Scan(&m.ID, &received, &m.Client, &m.HELO, &m.MailFrom, &m.HeaderFrom, &m.Subject, &m.MessageID, &m.Size, &contractID, &m.Actor, &transferID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: message %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read message %s: %w", id, err)
	}
	m.ReceivedAt, m.ContractID, m.TransferID = time.UnixMilli(received).UTC(), contractID.Int64, transferID.String
	if m.ContractID != 0 {
		codes, err := contract.CodesByID(ctx, q, m.ContractID)
		if err != nil {
			return nil, err
		}
		m.Contract = codes[m.ContractID]
	}
	return m, nil
}

// RecipientRecord is one recipient of a transfer, with the transfer's
// expiry (what a link or key notice says).
type RecipientRecord struct {
	ID          int64
	TransferID  string
	Address     string
	Status      string
	PublicKeyID int64 // the registered key key.age is encrypted to (package pubkey); 0: a passphrase
	ExpiresAt   time.Time
}

// RecipientByID returns one recipient, or ErrNotFound.
func RecipientByID(ctx context.Context, q database.Querier, id int64) (*RecipientRecord, error) {
	r := &RecipientRecord{ID: id}
	var expires int64
	err := q.QueryRowContext(ctx, `SELECT r.transfer_id, r.address, r.status, COALESCE(r.public_key_id, 0), t.expires_at
		FROM recipients r JOIN transfers t ON t.id = r.transfer_id WHERE r.id = ?`, id).
		Scan(&r.TransferID, &r.Address, &r.Status, &r.PublicKeyID, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: recipient %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read recipient %d: %w", id, err)
	}
	r.ExpiresAt = time.UnixMilli(expires).UTC()
	return r, nil
}

// OfContract returns every transfer under the contract with its files and
// recipients, oldest first (what a destruction certificate lists).
func OfContract(ctx context.Context, q database.Querier, contractID int64) ([]Transfer, error) {
	out, err := queryTransfers(ctx, q, ` WHERE t.contract_id = ? ORDER BY t.created_at, t.id`, contractID)
	if err != nil {
		return nil, err
	}
	pos := make(map[string]int, len(out))
	for i, t := range out {
		pos[t.ID] = i
	}
	if err := nameContracts(ctx, q, out); err != nil {
		return nil, err
	}
	add := func(tid string) *Transfer {
		if i, ok := pos[tid]; ok {
			return &out[i]
		}
		return &Transfer{}
	}
	rows, err := q.QueryContext(ctx, `SELECT f.transfer_id, `+fileColumns+`
		FROM files f JOIN transfers t ON t.id = f.transfer_id WHERE t.contract_id = ? ORDER BY f.transfer_id, f.idx`, contractID)
	if err != nil {
		return nil, fmt.Errorf("failed to list files: %w", err)
	}
	if err := scanFiles(rows, func(tid string, f File) { t := add(tid); t.Files = append(t.Files, f) }); err != nil {
		return nil, err
	}
	rows, err = q.QueryContext(ctx, `SELECT r.transfer_id, `+recipientColumns+`
		FROM recipients r JOIN transfers t ON t.id = r.transfer_id WHERE t.contract_id = ? ORDER BY r.id`, contractID)
	if err != nil {
		return nil, fmt.Errorf("failed to list recipients: %w", err)
	}
	if err := scanRecipients(rows, func(tid string, r Recipient) { t := add(tid); t.Recipients = append(t.Recipients, r) }); err != nil {
		return nil, err
	}
	return out, nil
}
