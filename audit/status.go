package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/database"
)

// Status is the state of the ledger as one read sees it: how many entries
// it has, its newest checkpoint, and the entries no checkpoint covers yet.
type Status struct {
	Size int64
	// Checkpoint is the size of the newest checkpoint (-1: none yet) and
	// CheckpointAt when it was signed (zero: none).
	Checkpoint   int64
	CheckpointAt time.Time
	// Unsigned counts the entries after the newest checkpoint's own
	// checkpoint.signed event (all entries when there is none): what the
	// next checkpoint will cover. UnsignedSince is the time of the oldest
	// of them (zero when there is none).
	Unsigned      int64
	UnsignedSince time.Time
}

// Status reads the ledger's status through q.
func (l *Ledger) Status(ctx context.Context, q database.Querier) (Status, error) {
	st := Status{Checkpoint: -1}
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(idx)+1, 0) FROM ledger_records`).Scan(&st.Size); err != nil {
		return st, fmt.Errorf("failed to read ledger size: %w", err)
	}
	var at int64
	err := q.QueryRowContext(ctx, `SELECT size, created_at FROM ledger_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&st.Checkpoint, &at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return st, fmt.Errorf("failed to read the newest checkpoint: %w", err)
	default:
		st.CheckpointAt = time.UnixMilli(at)
	}
	first := st.Checkpoint + 1 // the checkpoint's own event is at index Checkpoint
	if st.Size <= first {
		return st, nil
	}
	st.Unsigned = st.Size - first
	if err := q.QueryRowContext(ctx, `SELECT time_ms FROM ledger_records WHERE idx = ?`, first).Scan(&at); err != nil {
		return st, fmt.Errorf("failed to read ledger entry %d: %w", first, err)
	}
	st.UnsignedSince = time.UnixMilli(at)
	return st, nil
}
