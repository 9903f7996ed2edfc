// Package transfer owns what was sent: the tables transfers, files and
// recipients. It lists and shows transfers, extends their expiry, and
// offers the typed queries and conditional state changes that package
// destroy builds revocation, expiry and contract destruction from; no other
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
	"github.com/sealgate/sealgate/store"
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
	Subject    string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	EndedAt    time.Time // zero while active
	Status     string
	Files      []File
	Recipients []Recipient
}

// File is one sealed file of a transfer.
type File struct {
	ID           int64
	Index        int
	Name         string
	ContentType  string
	Size         int64
	SHA256       string
	Object       string
	CipherSHA256 string
	Status       string // stored | deleted
	DeletedAt    time.Time
	AbsentAt     time.Time
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
}

// Object is a stored file to destroy.
type Object struct {
	FileID   int64
	Transfer string
	Contract string // code
	Name     string
	SHA256   string
	Size     int64
	Key      string // storage key
	Deleted  bool   // deletion already recorded
	Absent   bool   // absence already proven
}

// Key is one recipient's transfer identity (their wrapped key.age).
type Key struct {
	RecipientID int64
	Transfer    string
	Contract    string // code
	Message     string
	Address     string
}

// Querier reads: *sql.DB or a transaction.
type Querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Filter selects transfers for List.
type Filter struct {
	Contract string // code; "" = all
	Sender   string // envelope sender; "" = all
	Status   string // "" = all
	Limit    int    // default 100
}

func msTime(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

const transferColumns = `t.id, t.message_id, c.code, c.id, t.sender, m.subject, t.created_at, t.expires_at, t.ended_at, t.status`

func scanTransfer(s interface{ Scan(...any) error }) (Transfer, error) {
	var t Transfer
	var created, expires int64
	var ended sql.NullInt64
	err := s.Scan(&t.ID, &t.MessageID, &t.Contract, &t.ContractID, &t.Sender, &t.Subject, &created, &expires, &ended, &t.Status)
	t.CreatedAt, t.ExpiresAt, t.EndedAt = time.UnixMilli(created).UTC(), time.UnixMilli(expires).UTC(), msTime(ended)
	return t, err
}

// List returns transfers, newest first, without files and recipients.
func List(ctx context.Context, q Querier, f Filter) ([]Transfer, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	where := []string{"1 = 1"}
	var args []any
	if f.Contract != "" {
		where, args = append(where, "c.code = ? COLLATE NOCASE"), append(args, f.Contract)
	}
	if f.Sender != "" {
		where, args = append(where, "t.sender = ? COLLATE NOCASE"), append(args, f.Sender)
	}
	if f.Status != "" {
		where, args = append(where, "t.status = ?"), append(args, f.Status)
	}
	rows, err := q.QueryContext(ctx, `SELECT `+transferColumns+` FROM transfers t JOIN messages m ON m.id = t.message_id
		JOIN contracts c ON c.id = t.contract_id WHERE `+strings.Join(where, " AND ")+` ORDER BY t.created_at DESC, t.id LIMIT ?`,
		append(args, f.Limit)...)
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
	return out, rows.Err()
}

// Get returns one transfer with its files and recipients.
func Get(ctx context.Context, q Querier, id string) (*Transfer, error) {
	t, err := scanTransfer(q.QueryRowContext(ctx, `SELECT `+transferColumns+` FROM transfers t JOIN messages m ON m.id = t.message_id
		JOIN contracts c ON c.id = t.contract_id WHERE t.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read transfer %s: %w", id, err)
	}
	rows, err := q.QueryContext(ctx, `SELECT id, idx, name, content_type, size, sha256, object_key, cipher_sha256, status, deleted_at, absent_at
		FROM files WHERE transfer_id = ? ORDER BY idx`, id)
	if err != nil {
		return nil, fmt.Errorf("failed to read files: %w", err)
	}
	for rows.Next() {
		var f File
		var del, abs sql.NullInt64
		if err := rows.Scan(&f.ID, &f.Index, &f.Name, &f.ContentType, &f.Size, &f.SHA256, &f.Object, &f.CipherSHA256, &f.Status, &del, &abs); err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to read files: %w", err)
		}
		f.DeletedAt, f.AbsentAt = msTime(del), msTime(abs)
		t.Files = append(t.Files, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to read files: %w", err)
	}
	rows, err = q.QueryContext(ctx, `SELECT id, address, status, downloads, first_download_at, locked_at IS NOT NULL, key_destroyed_at
		FROM recipients WHERE transfer_id = ? ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("failed to read recipients: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r Recipient
		var first, gone sql.NullInt64
		if err := rows.Scan(&r.ID, &r.Address, &r.Status, &r.Downloads, &first, &r.Locked, &gone); err != nil {
			return nil, fmt.Errorf("failed to read recipients: %w", err)
		}
		r.FirstDownloadAt, r.KeyDestroyedAt = msTime(first), msTime(gone)
		t.Recipients = append(t.Recipients, r)
	}
	return &t, rows.Err()
}

// Objects returns the files matching where (over files f JOIN transfers t
// JOIN contracts c) as objects to destroy.
func Objects(ctx context.Context, q Querier, where string, args ...any) ([]Object, error) {
	rows, err := q.QueryContext(ctx, `SELECT f.id, f.transfer_id, c.code, f.name, f.sha256, f.size, f.object_key, f.deleted_at IS NOT NULL, f.absent_at IS NOT NULL
		FROM files f JOIN transfers t ON t.id = f.transfer_id JOIN contracts c ON c.id = t.contract_id WHERE `+where+` ORDER BY f.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("failed to list objects: %w", err)
	}
	defer rows.Close()
	var out []Object
	for rows.Next() {
		var o Object
		if err := rows.Scan(&o.FileID, &o.Transfer, &o.Contract, &o.Name, &o.SHA256, &o.Size, &o.Key, &o.Deleted, &o.Absent); err != nil {
			return nil, fmt.Errorf("failed to list objects: %w", err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// Keys returns the transfer identities not yet destroyed of the recipients
// matching where (over recipients r JOIN transfers t JOIN contracts c).
func Keys(ctx context.Context, q Querier, where string, args ...any) ([]Key, error) {
	rows, err := q.QueryContext(ctx, `SELECT r.id, r.transfer_id, c.code, t.message_id, r.address
		FROM recipients r JOIN transfers t ON t.id = r.transfer_id JOIN contracts c ON c.id = t.contract_id
		WHERE r.key_destroyed_at IS NULL AND `+where+` ORDER BY r.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("failed to list keys: %w", err)
	}
	defer rows.Close()
	var out []Key
	for rows.Next() {
		var k Key
		if err := rows.Scan(&k.RecipientID, &k.Transfer, &k.Contract, &k.Message, &k.Address); err != nil {
			return nil, fmt.Errorf("failed to list keys: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// Extend moves a transfer's expiry to until, which must be later than the
// current expiry and no later than the contract allows (its maximum link
// lifetime from sending, and its end date). It records expiry.extended.
func Extend(ctx context.Context, db *store.DB, ledger *audit.Ledger, defaults contract.Defaults, id string, until time.Time, actor string, now time.Time) (time.Time, error) {
	until = until.UTC().Truncate(time.Millisecond)
	err := db.Write(ctx, func(tx *store.Tx) error {
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
