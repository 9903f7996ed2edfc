package contract

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/database"
)

// The state changes of a contract's end, which package destroy drives
// (see its package doc): active ─StartEnding─▶ ending ─FinishEnding─▶
// ended, the erasure of the KEK in between (EraseKEK), and the destruction
// lease — who runs a destruction and when they last said so — that keeps
// the schedulers of other processes from resuming it while it runs
// (ClaimDestruction, Due).

// Ending is a contract whose destruction is due or under way.
type Ending struct {
	Code string
	// Status is StatusActive for a contract whose end date has come,
	// StatusEnding for one whose destruction was started.
	Status string
	// Owner runs the destruction ("host/pid"; "" for nobody), and renewed
	// the lease last at Heartbeat (zero: never).
	Owner     string
	Heartbeat time.Time
}

// Due returns the ending contracts and the active ones whose end date is
// at or before now, by code.
func Due(ctx context.Context, q database.Querier, now time.Time) ([]Ending, error) {
	rows, err := q.QueryContext(ctx, `SELECT code, status, destroy_owner, destroy_heartbeat FROM contracts
		WHERE status = 'ending' OR (status = 'active' AND ends_at IS NOT NULL AND ends_at <= ?) ORDER BY code`, now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("failed to list contracts: %w", err)
	}
	defer rows.Close()
	var out []Ending
	for rows.Next() {
		var e Ending
		var beat sql.NullInt64
		if err := rows.Scan(&e.Code, &e.Status, &e.Owner, &beat); err != nil {
			return nil, fmt.Errorf("failed to list contracts: %w", err)
		}
		e.Heartbeat = msTime(beat)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list contracts: %w", err)
	}
	return out, nil
}

// StartEnding moves the contract id, which the caller has read active in
// tx, to ending at now, recording who ends it and why, and gives owner the
// destruction lease.
func StartEnding(ctx context.Context, tx *database.Tx, id int64, actor, reason, owner string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE contracts SET status = 'ending', ending_at = ?, end_operator = ?, end_reason = ?,
		destroy_owner = ?, destroy_heartbeat = ? WHERE id = ?`, now.UnixMilli(), actor, reason, owner, now.UnixMilli(), id); err != nil {
		return fmt.Errorf("failed to end contract: %w", err)
	}
	return nil
}

// ClaimDestruction gives owner the destruction lease of the contract id
// at now: it takes a destruction over, or renews its lease.
func ClaimDestruction(ctx context.Context, tx *database.Tx, id int64, owner string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE contracts SET destroy_owner = ?, destroy_heartbeat = ? WHERE id = ?`, owner, now.UnixMilli(), id); err != nil {
		return fmt.Errorf("failed to take the destruction lease: %w", err)
	}
	return nil
}

// EraseKEK erases the contract's KEK at now (crypto-shredding: SQLite's
// secure_delete overwrites the bytes) and reports whether it was still
// there.
func EraseKEK(ctx context.Context, tx *database.Tx, id int64, now time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE contracts SET kek_wrapped = NULL, kek_destroyed_at = ? WHERE id = ? AND kek_destroyed_at IS NULL`,
		now.UnixMilli(), id)
	if err != nil {
		return false, fmt.Errorf("failed to destroy the contract key: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// KEKErased reports whether the contract's KEK is gone from the database.
func KEKErased(ctx context.Context, q database.Querier, id int64) (bool, error) {
	var kek []byte
	if err := q.QueryRowContext(ctx, `SELECT kek_wrapped FROM contracts WHERE id = ?`, id).Scan(&kek); err != nil {
		return false, fmt.Errorf("failed to read the contract key: %w", err)
	}
	return len(kek) == 0, nil
}

// FinishEnding moves the contract id from ending to ended at at, releasing
// the destruction lease, and reports whether it was ending (false: another
// process finished first).
func FinishEnding(ctx context.Context, tx *database.Tx, id int64, at time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE contracts SET status = 'ended', ended_at = ?, destroy_owner = '' WHERE id = ? AND status = 'ending'`,
		at.UnixMilli(), id)
	if err != nil {
		return false, fmt.Errorf("failed to end contract: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}
