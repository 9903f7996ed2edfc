package transfer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/database"
)

// A recipient's link: what their token opens on the portal, the
// passphrase attempts it allows (wrong passphrases on the server path,
// and every attempt of the recipient's page decrypting in the browser
// until a complete download gives it back), and the downloads it counts. Downloads
// are counted per recipient and file, reserved before a file is served
// so that concurrent requests cannot pass the contract's limit, and given
// back when nothing usable was delivered.

// Link is one recipient of one transfer, as their link token opens it.
type Link struct {
	RecipientID     int64
	Address         string
	KeyWrapped      []byte // key.age wrapped to the contract KEK; nil once destroyed
	Failed          int    // wrong passphrases so far, and attempts in the browser not given back
	Locked          bool
	Downloads       int
	RecipientStatus string
	PublicKeyID     int64 // the registered key key.age is encrypted to; 0: a passphrase
	TransferID      string
	TransferStatus  string
	ExpiresAt       time.Time
	Sender          string
	Subject         string
	ContractID      int64
	MessageID       string
	Files           []LinkFile
}

// LinkFile is a file of the link's transfer with the recipient's
// downloads of it.
type LinkFile struct {
	File
	Downloads int
}

// LinkByToken returns the link whose token hashes to tokenHash, or
// ErrNotFound.
func LinkByToken(ctx context.Context, q database.Querier, tokenHash []byte) (*Link, error) {
	l := &Link{}
	var locked sql.NullInt64
	var expires int64
	err := q.QueryRowContext(ctx, `SELECT r.id, r.address, r.key_wrapped, r.failed_attempts, r.locked_at, r.downloads, r.status, COALESCE(r.public_key_id, 0),
			t.id, t.status, t.expires_at, t.sender, m.subject, t.contract_id, m.id
		FROM recipients r JOIN transfers t ON t.id = r.transfer_id JOIN messages m ON m.id = t.message_id
		WHERE r.token_hash = ?`, tokenHash).
		Scan(&l.RecipientID, &l.Address, &l.KeyWrapped, &l.Failed, &locked, &l.Downloads, &l.RecipientStatus, &l.PublicKeyID,
			&l.TransferID, &l.TransferStatus, &expires, &l.Sender, &l.Subject, &l.ContractID, &l.MessageID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("failed to look up link: %w", err)
	}
	l.Locked = locked.Valid
	l.ExpiresAt = time.UnixMilli(expires)
	rows, err := q.QueryContext(ctx, `SELECT f.id, f.idx, f.name, f.content_type, f.size, f.sha256, f.object_key, f.cipher_size, f.cipher_sha256, f.status,
			COALESCE(rf.downloads, 0)
		FROM files f LEFT JOIN recipient_files rf ON rf.file_id = f.id AND rf.recipient_id = ? WHERE f.transfer_id = ? ORDER BY f.idx`, l.RecipientID, l.TransferID)
	if err != nil {
		return nil, fmt.Errorf("failed to read files: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var f LinkFile
		if err := rows.Scan(&f.ID, &f.Index, &f.Name, &f.ContentType, &f.Size, &f.SHA256, &f.Object, &f.CipherSize, &f.CipherSHA256, &f.Status,
			&f.Downloads); err != nil {
			return nil, fmt.Errorf("failed to read files: %w", err)
		}
		l.Files = append(l.Files, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to read files: %w", err)
	}
	return l, nil
}

// FailPassphrase counts a wrong passphrase typed for the recipient's link
// and returns the count so far.
func FailPassphrase(ctx context.Context, tx *database.Tx, recipientID int64) (int, error) {
	var failed int
	if err := tx.QueryRowContext(ctx, `UPDATE recipients SET failed_attempts = failed_attempts + 1 WHERE id = ? RETURNING failed_attempts`,
		recipientID).Scan(&failed); err != nil {
		return 0, fmt.Errorf("failed to count a wrong passphrase: %w", err)
	}
	return failed, nil
}

// BrowserAttempt counts one passphrase attempt made in the recipient's
// browser — the page asked for key.age to open it with the passphrase
// there, and the server cannot see whether it was right — if fewer than
// max attempts are counted and the link is not locked. It reports the
// count so far and whether the attempt was counted (false: the limit is
// reached, and the caller locks the link).
func BrowserAttempt(ctx context.Context, tx *database.Tx, recipientID int64, max int) (int, bool, error) {
	var n int
	err := tx.QueryRowContext(ctx, `UPDATE recipients SET failed_attempts = failed_attempts + 1, browser_attempts = browser_attempts + 1
		WHERE id = ? AND failed_attempts < ? AND locked_at IS NULL RETURNING failed_attempts`, recipientID, max).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("failed to count a passphrase attempt: %w", err)
	}
	return n, true, nil
}

// SettleBrowserAttempt gives back one attempt counted by BrowserAttempt,
// once the recipient's page has downloaded a file whole, and reports
// whether there was one to give back. Wrong passphrases typed on the
// server path are never given back.
func SettleBrowserAttempt(ctx context.Context, tx *database.Tx, recipientID int64) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE recipients SET browser_attempts = browser_attempts - 1, failed_attempts = CASE WHEN failed_attempts > 0 THEN failed_attempts - 1 ELSE 0 END
		WHERE id = ? AND browser_attempts > 0`, recipientID)
	if err != nil {
		return false, fmt.Errorf("failed to give back a passphrase attempt: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("failed to give back a passphrase attempt: %w", err)
	}
	return n == 1, nil
}

// LockLink locks the recipient's link (too many wrong passphrases) at at,
// unless it is locked already.
func LockLink(ctx context.Context, tx *database.Tx, recipientID int64, at time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE recipients SET locked_at = ? WHERE id = ? AND locked_at IS NULL`, at.UnixMilli(), recipientID); err != nil {
		return fmt.Errorf("failed to lock link: %w", err)
	}
	return nil
}

// ReserveDownload counts one download of the file by the recipient if
// limit (downloads per recipient and file; 0 or less: unlimited) allows
// it, and reports whether it did. The writer is single, so two
// reservations cannot both take the last download.
func ReserveDownload(ctx context.Context, tx *database.Tx, recipientID, fileID int64, limit int) (bool, error) {
	if _, err := tx.ExecContext(ctx, `INSERT INTO recipient_files(recipient_id, file_id) VALUES (?, ?) ON CONFLICT DO NOTHING`, recipientID, fileID); err != nil {
		return false, fmt.Errorf("failed to reserve a download: %w", err)
	}
	res, err := tx.ExecContext(ctx, `UPDATE recipient_files SET downloads = downloads + 1 WHERE recipient_id = ? AND file_id = ? AND (? <= 0 OR downloads < ?)`,
		recipientID, fileID, limit, limit)
	if err != nil {
		return false, fmt.Errorf("failed to reserve a download: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("failed to reserve a download: %w", err)
	}
	return n == 1, nil
}

// ReleaseDownload gives back a download reserved for a file that
// delivered nothing usable.
func ReleaseDownload(ctx context.Context, tx *database.Tx, recipientID, fileID int64) error {
	if _, err := tx.ExecContext(ctx, `UPDATE recipient_files SET downloads = downloads - 1 WHERE recipient_id = ? AND file_id = ? AND downloads > 0`,
		recipientID, fileID); err != nil {
		return fmt.Errorf("failed to give back a download: %w", err)
	}
	return nil
}

// CountDownload records a download served at at (reserved before with
// ReserveDownload): the recipient's count and first download time, and
// the file's first and last download times by them. It returns the
// recipient's downloads so far (1: their first).
func CountDownload(ctx context.Context, tx *database.Tx, recipientID, fileID int64, at time.Time) (int, error) {
	var downloads int
	if err := tx.QueryRowContext(ctx, `UPDATE recipients SET downloads = downloads + 1, first_download_at = COALESCE(first_download_at, ?) WHERE id = ? RETURNING downloads`,
		at.UnixMilli(), recipientID).Scan(&downloads); err != nil {
		return 0, fmt.Errorf("failed to count a download: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE recipient_files SET first_at = COALESCE(first_at, ?), last_at = ? WHERE recipient_id = ? AND file_id = ?`,
		at.UnixMilli(), at.UnixMilli(), recipientID, fileID); err != nil {
		return 0, fmt.Errorf("failed to count a download: %w", err)
	}
	return downloads, nil
}
