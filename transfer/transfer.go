// Package transfer owns what was sent: the tables messages, transfers,
// files, recipients and recipient_files. It records them (for the
// gateway), lists and shows transfers, gathers the facts of a transfer
// (for the portal and `transfer show`), extends their expiry, and offers
// the typed queries and conditional state changes that package destroy
// builds revocation, expiry and contract destruction from; no other
// package reads or writes these tables with SQL of its own.
package transfer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
)

// Transfer states.
const (
	StatusActive    = "active"
	StatusRevoked   = "revoked"
	StatusExpired   = "expired"
	StatusDestroyed = "destroyed" // its contract ended
)

// SealedPrefix is where the gateway stores sealed files:
// sealed/<transfer>/<n>.age.
const SealedPrefix = "sealed/"

// Errors; test with errors.Is.
var (
	ErrNotFound  = errors.New("transfer: not found")
	ErrNotActive = errors.New("transfer: no longer active")
	ErrInvalid   = errors.New("transfer: invalid request")
	ErrTooLate   = errors.New("transfer: beyond the contract's maximum expiry")
)

// Transfer is one sending of sealed files.
type Transfer struct {
	ID         string
	MessageID  string
	Contract   string // code
	ContractID int64
	Sender     string
	Actor      string // the account that sent it ("" for relayed mail)
	Subject    string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	EndedAt    time.Time // zero while active
	Status     string
	Files      []File
	Recipients []Recipient
}

// File is one sealed file of a transfer and what became of it.
type File struct {
	ID int64
	SealedFile
	Status    string // stored | deleted
	DeletedAt time.Time
	AbsentAt  time.Time
}

// Recipient is one external recipient of a transfer.
type Recipient struct {
	ID              int64
	Address         string
	Status          string // active | revoked | expired | destroyed
	Downloads       int
	FirstDownloadAt time.Time
	Locked          bool
	KeyDestroyedAt  time.Time
	PublicKeyID     int64 // the registered key key.age is encrypted to (package pubkey); 0: a passphrase
}

// Filter selects transfers for List.
type Filter struct {
	Contract  string // code; "" = all
	Sender    string // envelope sender; "" = all
	Recipient string // one of its recipients; "" = all
	Status    string // "" = all
	Limit     int    // default 100
}

func msTime(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

const transferColumns = `t.id, t.message_id, t.contract_id, t.sender, m.actor, m.subject, t.created_at, t.expires_at, t.ended_at, t.status`

const transferFrom = ` FROM transfers t JOIN messages m ON m.id = t.message_id`

func scanTransfer(s interface{ Scan(...any) error }) (Transfer, error) {
	var t Transfer
	var created, expires int64
	var ended sql.NullInt64
	err := s.Scan(&t.ID, &t.MessageID, &t.ContractID, &t.Sender, &t.Actor, &t.Subject, &created, &expires, &ended, &t.Status)
	t.CreatedAt, t.ExpiresAt, t.EndedAt = time.UnixMilli(created).UTC(), time.UnixMilli(expires).UTC(), msTime(ended)
	return t, err
}

// nameContracts fills in each transfer's contract code (package contract
// owns them).
func nameContracts(ctx context.Context, q database.Querier, ts []Transfer) error {
	ids := make([]int64, len(ts))
	for i, t := range ts {
		ids[i] = t.ContractID
	}
	return codesOf(ctx, q, ids, func(i int, code string) { ts[i].Contract = code })
}

// List returns transfers, newest first, without files and recipients.
func List(ctx context.Context, q database.Querier, f Filter) ([]Transfer, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	where := []string{"1 = 1"}
	var args []any
	if f.Contract != "" {
		c, err := contract.ByCode(ctx, q, f.Contract)
		if errors.Is(err, contract.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		where, args = append(where, "t.contract_id = ?"), append(args, c.ID)
	}
	if f.Sender != "" {
		where, args = append(where, "t.sender = ? COLLATE NOCASE"), append(args, f.Sender)
	}
	if f.Recipient != "" {
		where, args = append(where, "t.id IN (SELECT transfer_id FROM recipients WHERE address = ? COLLATE NOCASE)"), append(args, f.Recipient)
	}
	if f.Status != "" {
		where, args = append(where, "t.status = ?"), append(args, f.Status)
	}
	out, err := queryTransfers(ctx, q, ` WHERE `+strings.Join(where, " AND ")+` ORDER BY t.created_at DESC, t.id LIMIT ?`, append(args, f.Limit)...)
	if err != nil {
		return nil, err
	}
	return out, nameContracts(ctx, q, out)
}

// queryTransfers selects transfers (without files, recipients and
// contract codes) by the clauses that follow "FROM transfers t JOIN
// messages m".
func queryTransfers(ctx context.Context, q database.Querier, clauses string, args ...any) ([]Transfer, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+transferColumns+transferFrom+clauses, args...)
	if err != nil {
		return nil, fmt.Errorf("failed to list transfers: %w", err)
	}
	defer rows.Close()
	var out []Transfer
	for rows.Next() {
		t, err := scanTransfer(rows)
		if err != nil {
			return nil, fmt.Errorf("failed to read transfer: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list transfers: %w", err)
	}
	return out, nil
}

// Get returns one transfer with its files and recipients.
func Get(ctx context.Context, q database.Querier, id string) (*Transfer, error) {
	t, err := scanTransfer(q.QueryRowContext(ctx, `SELECT `+transferColumns+transferFrom+` WHERE t.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read transfer %s: %w", id, err)
	}
	ts := []Transfer{t}
	if err := nameContracts(ctx, q, ts); err != nil {
		return nil, err
	}
	t = ts[0]
	if t.Files, err = Files(ctx, q, id); err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT r.transfer_id, `+recipientColumns+` FROM recipients r WHERE r.transfer_id = ? ORDER BY r.id`, id)
	if err != nil {
		return nil, fmt.Errorf("failed to read recipients: %w", err)
	}
	err = scanRecipients(rows, func(_ string, r Recipient) { t.Recipients = append(t.Recipients, r) })
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// Files returns the files of a transfer, in their order in the message.
func Files(ctx context.Context, q database.Querier, transferID string) ([]File, error) {
	rows, err := q.QueryContext(ctx, `SELECT f.transfer_id, `+fileColumns+` FROM files f WHERE f.transfer_id = ? ORDER BY f.idx`, transferID)
	if err != nil {
		return nil, fmt.Errorf("failed to read files: %w", err)
	}
	var out []File
	if err := scanFiles(rows, func(_ string, f File) { out = append(out, f) }); err != nil {
		return nil, err
	}
	return out, nil
}

const fileColumns = `f.id, f.idx, f.name, f.content_type, f.size, f.sha256, f.object_key, f.cipher_size, f.cipher_sha256, f.status, f.deleted_at, f.absent_at`

// scanFiles reads rows of transfer_id, fileColumns, passes each to add
// and closes rows.
func scanFiles(rows *sql.Rows, add func(transferID string, f File)) error {
	return scanEach(rows, "files", func(tid *string, f *File) error {
		var del, abs sql.NullInt64
		err := rows.Scan(tid, &f.ID, &f.Index, &f.Name, &f.ContentType, &f.Size, &f.SHA256, &f.Object, &f.CipherSize, &f.CipherSHA256,
			&f.Status, &del, &abs)
		f.DeletedAt, f.AbsentAt = msTime(del), msTime(abs)
		return err
	}, add)
}

// scanEach reads each row of rows with scan, passes it with its transfer ID
// to add and closes rows; what names the rows in errors.
func scanEach[T any](rows *sql.Rows, what string, scan func(tid *string, v *T) error, add func(transferID string, v T)) error {
	defer rows.Close()
	for rows.Next() {
		var tid string
		var v T
		if err := scan(&tid, &v); err != nil {
			return fmt.Errorf("failed to read %s: %w", what, err)
		}
		add(tid, v)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("failed to read %s: %w", what, err)
	}
	return nil
}

const recipientColumns = `r.id, r.address, r.status, r.downloads, r.first_download_at, r.locked_at IS NOT NULL, r.key_destroyed_at, COALESCE(r.public_key_id, 0)`

// scanRecipients reads rows of transfer_id, recipientColumns, passes each
// to add and closes rows.
func scanRecipients(rows *sql.Rows, add func(transferID string, r Recipient)) error {
	return scanEach(rows, "recipients", func(tid *string, r *Recipient) error {
		var first, gone sql.NullInt64
		err := rows.Scan(tid, &r.ID, &r.Address, &r.Status, &r.Downloads, &first, &r.Locked, &gone, &r.PublicKeyID)
		r.FirstDownloadAt, r.KeyDestroyedAt = msTime(first), msTime(gone)
		return err
	}, add)
}

// Extend moves a transfer's expiry to until, which must be later than the
// current expiry and no later than the contract allows (its maximum link
// lifetime from sending, and its end date). It records expiry.extended.
func Extend(ctx context.Context, db *database.DB, ledger *audit.Ledger, defaults contract.Defaults, id string, until time.Time, actor string, now time.Time) (time.Time, error) {
	until = until.UTC().Truncate(time.Millisecond)
	err := db.Write(ctx, func(tx *database.Tx) error {
		t, err := Get(ctx, tx, id)
		if err != nil {
			return err
		}
		if t.Status != StatusActive {
			return fmt.Errorf("%w: %s is %s", ErrNotActive, id, t.Status)
		}
		c, err := contract.ByID(ctx, tx, t.ContractID)
		if err != nil {
			return err
		}
		if err := c.Usable(now); err != nil {
			return err
		}
		if !t.ExpiresAt.After(now) {
			return fmt.Errorf("%w: %s has already expired", ErrNotActive, id)
		}
		if !until.After(t.ExpiresAt) {
			return fmt.Errorf("%w: %s is not later than the current expiry %s", ErrInvalid, until.Format(time.RFC3339), t.ExpiresAt.Format(time.RFC3339))
		}
		if latest := c.LatestExpiry(t.CreatedAt, defaults); until.After(latest) {
			return fmt.Errorf("%w: contract %s allows links until %s at the latest", ErrTooLate, c.Code, latest.Format(time.RFC3339))
		}
		if _, err := tx.ExecContext(ctx, `UPDATE transfers SET expires_at = ? WHERE id = ? AND status = 'active'`, until.UnixMilli(), id); err != nil {
			return fmt.Errorf("failed to extend transfer: %w", err)
		}
		_, err = ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeExpiryExtended, Actor: actor, Contract: t.Contract,
			Message: t.MessageID, Transfer: id, Details: map[string]string{
				"expires_at": until.Format(time.RFC3339), "was_expires_at": t.ExpiresAt.Format(time.RFC3339)}})
		return err
	})
	return until, err
}
