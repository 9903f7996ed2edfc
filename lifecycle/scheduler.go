package lifecycle

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/destroy"
)

// SchedulerOptions configure a Scheduler.
type SchedulerOptions struct {
	// Interval between passes (default 1m).
	Interval time.Duration
	// NewTicker makes the ticker (default time.NewTicker); tests pass a
	// channel they drive.
	NewTicker func(d time.Duration) (c <-chan time.Time, stop func())
	// AfterPass, if set, is called after every pass with its outcome.
	AfterPass func(Pass)
	// Holds, if set, destroys held messages whose approval was not
	// decided in time (hold.Service).
	Holds HeldExpirer
	// OrphanEvery is how often sealed objects no transfer refers to are
	// looked for and deleted (default 6h; the first pass always looks);
	// OrphanGrace how old such an object must be (default 24h).
	OrphanEvery time.Duration
	OrphanGrace time.Duration
	// KeyRefresh, if set, is called every pass: it reloads the master key
	// when another process rotated it (masterkey.Refresh), so that a
	// retired key does not stay in this process's memory.
	KeyRefresh func(ctx context.Context) error
}

// HeldExpirer expires held messages (hold.Service.Expire).
type HeldExpirer interface {
	Expire(ctx context.Context) (int, error)
}

// Pass is what one scheduler pass did.
type Pass struct {
	Resumed []string // contracts whose interrupted destruction was finished
	Ended   []string // contracts ended because their end date came
	Expired int      // transfers purged after expiry
	// HeldExpired counts held messages destroyed because their approval
	// was not decided in time.
	HeldExpired int
	// Orphans counts sealed objects deleted because no transfer refers
	// to them (transfer.SweepOrphans).
	Orphans int
	Err     error
}

// Scheduler runs in `sealgate serve`: at start and at every tick it
// resumes destructions left half-way by a process that died, ends
// contracts whose end date has come, destroys held messages whose approval
// has lapsed, and purges expired transfers.
type Scheduler struct {
	d    destroy.Deps
	opts SchedulerOptions
	// lastSweep is when orphans were last looked for; only the Run
	// goroutine (or RunOnce's caller) touches it.
	lastSweep time.Time
}

// NewScheduler returns a Scheduler; start it with Run.
func NewScheduler(d destroy.Deps, opts SchedulerOptions) *Scheduler {
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.OrphanEvery <= 0 {
		opts.OrphanEvery = 6 * time.Hour
	}
	if opts.OrphanGrace <= 0 {
		opts.OrphanGrace = 24 * time.Hour
	}
	if opts.NewTicker == nil {
		opts.NewTicker = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Lease <= 0 {
		d.Lease = 2 * time.Minute
	}
	return &Scheduler{d: d, opts: opts}
}

// Run makes a pass now and at every tick until ctx is done, then returns
// nil. Failures are logged and retried at the next tick.
func (s *Scheduler) Run(ctx context.Context) error {
	tick, stop := s.opts.NewTicker(s.opts.Interval)
	defer stop()
	for {
		s.pass(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		}
	}
}

// RunOnce makes one pass (the CLI and tests).
func (s *Scheduler) RunOnce(ctx context.Context) Pass { return s.pass(ctx) }

func (s *Scheduler) pass(ctx context.Context) Pass {
	var p Pass
	defer func() {
		if p.Err != nil && ctx.Err() == nil && s.d.Log != nil {
			s.d.Log.Error("lifecycle pass failed (retried at the next tick)", "error", p.Err)
		}
		if s.opts.AfterPass != nil {
			s.opts.AfterPass(p)
		}
	}()
	if s.opts.KeyRefresh != nil {
		if err := s.opts.KeyRefresh(ctx); err != nil {
			p.Err = fmt.Errorf("failed to refresh the master key: %w", err)
			return p
		}
	}
	resume, due, err := s.contracts(ctx)
	if err != nil {
		p.Err = err
		return p
	}
	// One contract failing (its store down, say) does not hold up the
	// others or the expiry purge; everything is retried next tick.
	var errs []error
	for _, code := range resume {
		if _, err := destroy.EndContract(ctx, s.d, code, "system", ""); err != nil {
			errs = append(errs, fmt.Errorf("failed to resume the destruction of contract %s: %w", code, err))
			continue
		}
		s.log("destruction of contract resumed and finished", code)
		p.Resumed = append(p.Resumed, code)
	}
	for _, code := range due {
		if _, err := destroy.EndContract(ctx, s.d, code, "system", "end date reached"); err != nil {
			errs = append(errs, fmt.Errorf("failed to end contract %s: %w", code, err))
			continue
		}
		s.log("contract ended at its end date; certificate issued", code)
		p.Ended = append(p.Ended, code)
	}
	if s.opts.Holds != nil {
		n, err := s.opts.Holds.Expire(ctx)
		p.HeldExpired = n
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to expire held messages: %w", err))
		}
	}
	n, err := destroy.PurgeExpired(ctx, s.d, 1000)
	p.Expired = n
	if err != nil {
		errs = append(errs, fmt.Errorf("failed to purge expired transfers: %w", err))
	}
	if now := s.d.Now(); s.lastSweep.IsZero() || now.Sub(s.lastSweep) >= s.opts.OrphanEvery {
		n, err := destroy.SweepOrphans(ctx, s.d, s.opts.OrphanGrace)
		p.Orphans = n
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to sweep orphan objects: %w", err))
		} else {
			s.lastSweep = now
		}
	}
	p.Err = errors.Join(errs...)
	return p
}

func (s *Scheduler) log(msg, code string) {
	if s.d.Log != nil {
		s.d.Log.Info(msg, "contract", code)
	}
}

// contracts returns the ending contracts whose destruction nobody is
// running any more, and the active ones whose end date has come.
func (s *Scheduler) contracts(ctx context.Context) (resume, due []string, err error) {
	now := s.d.Now()
	rows, err := s.d.DB.Read().QueryContext(ctx, `SELECT code, status, destroy_owner, destroy_heartbeat FROM contracts
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
		if s.stale(owner, beat, now) {
			resume = append(resume, code)
		}
	}
	return resume, due, rows.Err()
}

// stale reports whether nobody is destroying a contract any more: no
// owner, an owner that is gone, or a heartbeat older than the lease.
func (s *Scheduler) stale(owner string, beat sql.NullInt64, now time.Time) bool {
	switch {
	case owner == "" || owner == s.d.Owner:
		return true // nobody, or a pass of this process that failed
	case !beat.Valid || now.Sub(time.UnixMilli(beat.Int64)) > s.d.Lease:
		return true
	case s.d.OwnerAlive != nil && !s.d.OwnerAlive(owner):
		return true
	}
	return false
}
