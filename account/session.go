package account

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/database"
)

// ErrNoSession is returned by Sessions.Get for a token hash that names no
// session.
var ErrNoSession = errors.New("account: no such session")

// Session is one signed-in browser. Only the SHA-256 of its token is
// kept, so a copy of the database opens no session. The portal decides
// when a session is too old; the account ends every session of an
// account that is disabled or whose password, roles or TOTP secret change
// (and, when it gets locked, the sessions still waiting for their second
// factor).
type Session struct {
	TokenHash []byte
	AccountID int64
	MFADone   bool // the second factor was given (or is not required)
	CreatedAt time.Time
	LastSeen  time.Time
	RemoteIP  string
	UserAgent string
}

// Sessions keeps the sessions table.
type Sessions struct{ DB *database.DB }

// Sessions returns the session store of the accounts' database.
func (s *Service) Sessions() Sessions { return Sessions{DB: s.DB} }

// Start records sess; when replaces is not nil, the session with that
// token hash (the browser's previous one) ends in the same transaction.
func (ss Sessions) Start(ctx context.Context, sess Session, replaces []byte) error {
	err := ss.DB.Write(ctx, func(tx *database.Tx) error {
		if replaces != nil {
			if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = ?`, replaces); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO sessions(token_hash, account_id, mfa_done, created_at, last_seen_at, remote_ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			sess.TokenHash, sess.AccountID, sess.MFADone, sess.CreatedAt.UnixMilli(), sess.LastSeen.UnixMilli(), sess.RemoteIP, sess.UserAgent)
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to start session: %w", err)
	}
	return nil
}

// SweepExpired deletes the sessions that can no longer be used: started
// before started, not seen since seen, or still waiting for their second
// factor since pending. It returns how many it deleted. (A session is
// otherwise deleted only when its browser comes back to find it expired,
// or at sign-out.)
func (ss Sessions) SweepExpired(ctx context.Context, started, seen, pending time.Time) (int64, error) {
	var n int64
	err := ss.DB.Write(ctx, func(tx *database.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE created_at < ? OR last_seen_at < ? OR (mfa_done = 0 AND created_at < ?)`,
			started.UnixMilli(), seen.UnixMilli(), pending.UnixMilli())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("failed to delete expired sessions: %w", err)
	}
	return n, nil
}

// Get returns the session whose token hashes to tokenHash, or
// ErrNoSession.
func (ss Sessions) Get(ctx context.Context, tokenHash []byte) (*Session, error) {
	sess := &Session{TokenHash: tokenHash}
	var created, lastSeen int64
	err := ss.DB.Read().QueryRowContext(ctx, `SELECT account_id, mfa_done, created_at, last_seen_at FROM sessions WHERE token_hash = ?`, tokenHash).
		Scan(&sess.AccountID, &sess.MFADone, &created, &lastSeen)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read session: %w", err)
	}
	sess.CreatedAt, sess.LastSeen = time.UnixMilli(created), time.UnixMilli(lastSeen)
	return sess, nil
}

// Touch records that the session was used at.
func (ss Sessions) Touch(ctx context.Context, tokenHash []byte, at time.Time) error {
	err := ss.DB.Write(ctx, func(tx *database.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE sessions SET last_seen_at = ? WHERE token_hash = ?`, at.UnixMilli(), tokenHash)
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to refresh session: %w", err)
	}
	return nil
}

// End ends the session (logout, expiry). Ending one that does not exist
// is not an error.
func (ss Sessions) End(ctx context.Context, tokenHash []byte) error {
	err := ss.DB.Write(ctx, func(tx *database.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = ?`, tokenHash)
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to end session: %w", err)
	}
	return nil
}
