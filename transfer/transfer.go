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
func List(ctx context.Context, q store.Querier, f Filter) ([]Transfer, error) {
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
	out, err := queryTransfers(ctx, q, `WHERE `+strings.Join(where, " AND ")+` ORDER BY t.created_at DESC, t.id LIMIT ?`, append(args, f.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("failed to list transfers: %w", err)
	}
	return out, nil
}

// queryTransfers selects transfers (without files and recipients) by the
// clauses that follow the joins of transfers t, messages m, contracts c.
func queryTransfers(ctx context.Context, q store.Querier, clauses string, args ...any) ([]Transfer, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+transferColumns+` FROM transfers t JOIN messages m ON m.id = t.message_id
		JOIN contracts c ON c.id = t.contract_id `+clauses, args...)
	if err != nil {
		return nil, err
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
func Get(ctx context.Context, q store.Querier, id string) (*Transfer, error) {
	t, err := scanTransfer(q.QueryRowContext(ctx, `SELECT `+transferColumns+` FROM transfers t JOIN messages m ON m.id = t.message_id
		JOIN contracts c ON c.id = t.contract_id WHERE t.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read transfer %s: %w", id, err)
	}
	err = fillRows(ctx, q, `WHERE f.transfer_id = ?`, `WHERE r.transfer_id = ?`, id, func(string) *Transfer { return &t })
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// fillRows reads the files and the recipients selected by the given
// WHERE clauses (over files f and recipients r, each with one argument)
// into the transfers that of returns (nil: skipped).
func fillRows(ctx context.Context, q store.Querier, files, recipients string, arg any, of func(transfer string) *Transfer) error {
	rows, err := q.QueryContext(ctx, `SELECT f.transfer_id, f.id, f.idx, f.name, f.content_type, f.size, f.sha256, f.object_key, f.cipher_sha256, f.status, f.deleted_at, f.absent_at
		FROM files f `+files+` ORDER BY f.transfer_id, f.idx`, arg)
	if err != nil {
		return fmt.Errorf("failed to read files: %w", err)
	}
	for rows.Next() {
		var tid string
		var f File
		var del, abs sql.NullInt64
		if err := rows.Scan(&tid, &f.ID, &f.Index, &f.Name, &f.ContentType, &f.Size, &f.SHA256, &f.Object, &f.CipherSHA256, &f.Status, &del, &abs); err != nil {
			rows.Close()
			return fmt.Errorf("failed to read files: %w", err)
		}
		f.DeletedAt, f.AbsentAt = msTime(del), msTime(abs)
		if t := of(tid); t != nil {
			t.Files = append(t.Files, f)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("failed to read files: %w", err)
	}
	rows, err = q.QueryContext(ctx, `SELECT r.transfer_id, r.id, r.address, r.status, r.downloads, r.first_download_at, r.locked_at IS NOT NULL, r.key_destroyed_at
		FROM recipients r `+recipients+` ORDER BY r.id`, arg)
	if err != nil {
		return fmt.Errorf("failed to read recipients: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var tid string
		var r Recipient
		var first, gone sql.NullInt64
		if err := rows.Scan(&tid, &r.ID, &r.Address, &r.Status, &r.Downloads, &first, &r.Locked, &gone); err != nil {
			return fmt.Errorf("failed to read recipients: %w", err)
		}
		r.FirstDownloadAt, r.KeyDestroyedAt = msTime(first), msTime(gone)
		if t := of(tid); t != nil {
			t.Recipients = append(t.Recipients, r)
		}
	}
	return rows.Err()
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
