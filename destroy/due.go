package destroy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/contract"
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
	cs, err := contract.Due(ctx, d.DB.Read(), now)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range cs {
		if c.Status == contract.StatusActive {
			due = append(due, c.Code)
			continue
		}
		if d.stale(c.Owner, c.Heartbeat, now) {
			resume = append(resume, c.Code)
		}
	}
	return resume, due, nil
}

// stale reports whether nobody is destroying a contract any more: no
// owner, an owner that is gone, or a heartbeat older than the lease.
func (d Deps) stale(owner string, beat time.Time, now time.Time) bool {
	switch {
	case owner == "" || owner == d.Owner:
		return true // nobody, or a run of this process that failed
	case beat.IsZero() || now.Sub(beat) > d.Lease:
		return true
	case d.OwnerAlive != nil && !d.OwnerAlive(owner):
		return true
	}
	return false
}
