package destroy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// EndDue ends the contracts whose end date has come and finishes the
// destructions that no live process is running any more (left "ending" by
// a process that died, or by a run of this one that failed). It returns
// the codes it resumed and ended. One contract failing (its store down,
// say) does not hold up the others; the error names each failure.
func EndDue(ctx context.Context, d Deps) (resumed, ended []string, err error) {
	d = d.withDefaults()
	resume, due, err := d.dueContracts(ctx)
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	for _, code := range resume {
		if _, err := EndContract(ctx, d, code, "system", ""); err != nil {
			errs = append(errs, fmt.Errorf("failed to resume the destruction of contract %s: %w", code, err))
			continue
		}
		d.Log.Info("destruction of contract resumed and finished", "contract", code)
		resumed = append(resumed, code)
	}
	for _, code := range due {
		if _, err := EndContract(ctx, d, code, "system", "end date reached"); err != nil {
			errs = append(errs, fmt.Errorf("failed to end contract %s: %w", code, err))
			continue
		}
		d.Log.Info("contract ended at its end date; certificate issued", "contract", code)
		ended = append(ended, code)
	}
	return resumed, ended, errors.Join(errs...)
}

// dueContracts returns the ending contracts whose destruction nobody is
// running any more, and the active ones whose end date has come.
func (d Deps) dueContracts(ctx context.Context) (resume, due []string, err error) {
	now := d.Now()
	rows, err := d.DB.Read().QueryContext(ctx, `SELECT code, status, destroy_owner, destroy_heartbeat FROM contracts
		WHERE status = 'ending' OR (status = 'active' AND ends_at IS NOT NULL AND ends_at <= ?) ORDER BY code`, now.UnixMilli())
	if err != nil {
		return nil, nil, fmt.Errorf("failed to list contracts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var code, status, owner string
		var beat sql.NullInt64
		if err := rows.Scan(&code, &status, &owner, &beat); err != nil {
			return nil, nil, fmt.Errorf("failed to list contracts: %w", err)
		}
		if status == "active" {
			due = append(due, code)
			continue
		}
		if d.stale(owner, beat, now) {
			resume = append(resume, code)
		}
	}
	return resume, due, rows.Err()
}

// stale reports whether nobody is destroying a contract any more: no
// owner, an owner that is gone, or a heartbeat older than the lease.
func (d Deps) stale(owner string, beat sql.NullInt64, now time.Time) bool {
	switch {
	case owner == "" || owner == d.Owner:
		return true // nobody, or a run of this process that failed
	case !beat.Valid || now.Sub(time.UnixMilli(beat.Int64)) > d.Lease:
		return true
	case d.OwnerAlive != nil && !d.OwnerAlive(owner):
		return true
	}
	return false
}
