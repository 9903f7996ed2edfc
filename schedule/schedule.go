// Package schedule is sealgate's one scheduler. Every background loop of a
// running gateway runs here, on one injected clock: delivery of the
// outbound queue, release of held messages and expiry of their approvals,
// expiry of transfers, contract end dates and destructions a crash left
// half-way, ledger checkpoints, the sweep of orphan objects, the master
// key refresh, the retried deletion of a refused message's objects, and
// the sweep of the rate-limit counters of ended windows.
//
// The packages that own the work expose one pass each — do what is due
// at now, and say when the next thing falls due — and, where work can
// arrive early (mail queued, a hold approved, a ledger append), a channel
// that is signalled when it does. The scheduler decides when to run each
// pass: at start, when it is due, when it is woken, and at least every so
// often. Each job runs in its own goroutine, so that a long destruction
// does not hold up delivery; Run returns once every job has stopped.
//
// Tests give the scheduler a clock.Fake and advance it: a timer set for
// the next due time fires when the test moves the clock past it, and
// AfterRun tells the test that a pass has run.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/internal/clock"
)

// Delivery is the outbound queue (gateway.Gateway).
type Delivery interface {
	// DeliverDue starts the deliveries due at now and returns when the
	// next one falls due (zero: none known).
	DeliverDue(ctx context.Context, now time.Time) (time.Time, error)
	// DeliveryWake is signalled when mail was queued or a delivery
	// finished.
	DeliveryWake() <-chan struct{}
	// StopDelivery waits for the deliveries under way (their context is
	// done) and closes the transport.
	StopDelivery()
}

// Spool is the gateway's spool (gateway.Gateway.SweepSpool): the files of
// messages that never committed, and of deliveries whose clean-up a crash
// interrupted, older than grace are removed.
type Spool interface {
	SweepSpool(ctx context.Context, grace time.Duration) error
}

// Discards are the objects of refused messages whose deletion failed
// (gateway.Gateway).
type Discards interface {
	// RetryDiscards retries the deletions due at now and returns when the
	// next falls due (zero: none left).
	RetryDiscards(ctx context.Context, now time.Time) time.Time
	// DiscardWake is signalled when a deletion failed.
	DiscardWake() <-chan struct{}
}

// Holds are the held messages (hold.Service).
type Holds interface {
	// Release queues the held messages that are due and returns when the
	// next one will be.
	Release(ctx context.Context) (int, time.Time, error)
	// Expire destroys the held messages whose approval lapsed.
	Expire(ctx context.Context) (int, error)
	// Woken is signalled when a hold was created or approved.
	Woken() <-chan struct{}
}

// Checkpoints signs ledger checkpoints (audit.Checkpointer).
type Checkpoints interface {
	// RunDue signs a checkpoint if one is due at now and returns when the
	// next is due by time (zero: only by count).
	RunDue(ctx context.Context, now time.Time) time.Time
	// Appended is signalled when events were appended.
	Appended() <-chan struct{}
}

// Counters are rate-limit counters kept in the database
// (ratelimit.Store).
type Counters interface {
	// Sweep deletes the counters whose window ended before now.
	Sweep(ctx context.Context, now time.Time) error
}

// Sessions are the portal's sign-in sessions (portal.Server).
type Sessions interface {
	// SweepSessions deletes the sessions that expired before now.
	SweepSessions(ctx context.Context, now time.Time) error
}

// Deps are the work to schedule; a nil part is not scheduled.
type Deps struct {
	// Clock is the time of every job (default: the system clock).
	Clock clock.Clock
	Log   *slog.Logger

	Delivery Delivery
	Discards Discards
	// Spool, if set, has its orphan spool files swept with the orphan
	// objects (same job, same grace).
	Spool       Spool
	Holds       Holds
	Checkpoints Checkpoints
	// Destroy ends contracts at their end date, resumes destructions left
	// half-way, purges expired transfers and sweeps orphan objects.
	Destroy *destroy.Deps
	// Counters are the shared rate-limit counters (ratelimit.Store):
	// those of ended windows are deleted every Interval.
	Counters Counters
	// Sessions has its expired sessions deleted every SessionSweepEvery.
	Sessions Sessions
	// KeyRefresh reloads the master key when another process rotated it
	// (masterkey.Refresh), so that a retired key does not stay in this
	// process's memory.
	KeyRefresh func(ctx context.Context) error

	// Interval is how often contract end dates, transfer and approval
	// expiry and the master key are looked at (default 1m).
	Interval time.Duration
	// OrphanEvery is how often orphan objects are looked for (default
	// 6h; the first run at start); OrphanGrace how old one must be
	// (default 24h).
	OrphanEvery time.Duration
	OrphanGrace time.Duration
	// AfterRun, if set, is called after every run of every job.
	AfterRun func(job string, now time.Time, err error)
	// Lock, if set, takes a lock shared by the instances on one database
	// (database.DB.TryLock): the jobs whose work is the fleet's — hold
	// release and expiry, checkpoints, contract end, transfer expiry, the
	// orphan sweep, the sweep of rate-limit counters — run only while this instance holds the job's lock,
	// so that one instance at a time does that work. ok false: another
	// instance holds it, and the job tries again at its next run.
	// Delivery claims its rows itself; the discards and the master key
	// are this process's own.
	Lock func(ctx context.Context, name string) (unlock func(), ok bool, err error)
}

// Job is one background task.
type Job struct {
	Name string
	// Run does what is due at now and returns when it wants to run next
	// (zero: when woken or after Every). A failure is logged and the job
	// runs again after Retry.
	Run func(ctx context.Context, now time.Time) (next time.Time, err error)
	// Every bounds the time between runs (0: no bound).
	Every time.Duration
	// Retry is the time to the next run after a failure (default Every,
	// else a minute).
	Retry time.Duration
	// Wake, if set, runs the job early when signalled.
	Wake <-chan struct{}
	// Stop, if set, is called once the job has run for the last time.
	Stop func()
}

// Job names.
const (
	JobDelivery       = "delivery"
	JobDiscards       = "discards"
	JobHoldRelease    = "hold-release"
	JobHoldExpiry     = "hold-expiry"
	JobContractEnd    = "contract-end"
	JobTransferExpiry = "transfer-expiry"
	JobOrphanSweep    = "orphan-sweep"
	JobKeyRefresh     = "key-refresh"
	JobCounterSweep   = "counter-sweep"
	JobCheckpoint     = "checkpoint"
	JobSessionSweep   = "session-sweep"
)

// SessionSweepEvery is how often expired sessions are deleted.
const SessionSweepEvery = time.Hour

// Scheduler runs jobs; make it with New and start it with Run.
type Scheduler struct {
	clock clock.Clock
	log   *slog.Logger
	after func(job string, now time.Time, err error)
	lock  func(ctx context.Context, name string) (unlock func(), ok bool, err error)
	jobs  []Job
}

// New returns a Scheduler with a job for every part of d that is set.
func New(d Deps) *Scheduler {
	if d.Clock == nil {
		d.Clock = clock.Real()
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Interval <= 0 {
		d.Interval = time.Minute
	}
	if d.OrphanEvery <= 0 {
		d.OrphanEvery = 6 * time.Hour
	}
	if d.OrphanGrace <= 0 {
		d.OrphanGrace = 24 * time.Hour
	}
	s := &Scheduler{clock: d.Clock, log: d.Log, after: d.AfterRun, lock: d.Lock}
	if q := d.Delivery; q != nil {
		// The queue says when its next row is due; the minute is a bound
		// for rows queued by other processes (the CLI), which do not wake
		// it.
		s.Add(Job{Name: JobDelivery, Run: q.DeliverDue, Every: time.Minute, Retry: 5 * time.Second,
			Wake: q.DeliveryWake(), Stop: q.StopDelivery})
	}
	if x := d.Discards; x != nil {
		s.Add(Job{Name: JobDiscards, Wake: x.DiscardWake(), Run: func(ctx context.Context, now time.Time) (time.Time, error) {
			return x.RetryDiscards(ctx, now), nil
		}})
	}
	if h := d.Holds; h != nil {
		s.Add(Job{Name: JobHoldRelease, Every: time.Minute, Retry: 5 * time.Second, Wake: h.Woken(),
			Run: s.once(JobHoldRelease, func(ctx context.Context, _ time.Time) (time.Time, error) {
				_, next, err := h.Release(ctx)
				return next, err
			})})
		s.Add(Job{Name: JobHoldExpiry, Every: d.Interval, Run: s.once(JobHoldExpiry, func(ctx context.Context, _ time.Time) (time.Time, error) {
			_, err := h.Expire(ctx)
			return time.Time{}, err
		})})
	}
	if c := d.Checkpoints; c != nil {
		s.Add(Job{Name: JobCheckpoint, Wake: c.Appended(), Run: s.once(JobCheckpoint, func(ctx context.Context, now time.Time) (time.Time, error) {
			return c.RunDue(ctx, now), nil
		})})
	}
	if dd := d.Destroy; dd != nil {
		s.Add(Job{Name: JobContractEnd, Every: d.Interval, Run: s.once(JobContractEnd, func(ctx context.Context, _ time.Time) (time.Time, error) {
			_, _, err := destroy.EndDue(ctx, *dd)
			return time.Time{}, err
		})})
		s.Add(Job{Name: JobTransferExpiry, Every: d.Interval, Run: s.once(JobTransferExpiry, func(ctx context.Context, _ time.Time) (time.Time, error) {
			_, err := destroy.PurgeExpired(ctx, *dd, 1000)
			return time.Time{}, err
		})})
		grace, sp := d.OrphanGrace, d.Spool
		s.Add(Job{Name: JobOrphanSweep, Every: d.OrphanEvery, Retry: d.Interval, Run: s.once(JobOrphanSweep, func(ctx context.Context, _ time.Time) (time.Time, error) {
			_, err := destroy.SweepOrphans(ctx, *dd, grace)
			if sp != nil {
				err = errors.Join(err, sp.SweepSpool(ctx, grace))
			}
			return time.Time{}, err
		})})
	}
	if c := d.Counters; c != nil {
		s.Add(Job{Name: JobCounterSweep, Every: d.Interval, Run: s.once(JobCounterSweep, func(ctx context.Context, now time.Time) (time.Time, error) {
			return time.Time{}, c.Sweep(ctx, now)
		})})
	}
	if ss := d.Sessions; ss != nil {
		s.Add(Job{Name: JobSessionSweep, Every: SessionSweepEvery, Retry: d.Interval, Run: s.once(JobSessionSweep, func(ctx context.Context, now time.Time) (time.Time, error) {
			return time.Time{}, ss.SweepSessions(ctx, now)
		})})
	}
	if f := d.KeyRefresh; f != nil {
		s.Add(Job{Name: JobKeyRefresh, Every: d.Interval, Run: func(ctx context.Context, _ time.Time) (time.Time, error) {
			return time.Time{}, f(ctx)
		}})
	}
	return s
}

// once wraps the run of a job whose work is the fleet's: it runs only
// while this instance holds the job's lock (Deps.Lock).
func (s *Scheduler) once(name string, run func(ctx context.Context, now time.Time) (time.Time, error)) func(ctx context.Context, now time.Time) (time.Time, error) {
	if s.lock == nil {
		return run
	}
	return func(ctx context.Context, now time.Time) (time.Time, error) {
		unlock, ok, err := s.lock(ctx, "schedule/"+name)
		if err != nil {
			return time.Time{}, fmt.Errorf("failed to take the lock of job %s: %w", name, err)
		}
		if !ok {
			return time.Time{}, nil // another instance runs it
		}
		defer unlock()
		return run(ctx, now)
	}
}

// Add adds a job; call it before Run.
func (s *Scheduler) Add(j Job) { s.jobs = append(s.jobs, j) }

// Jobs returns the names of the jobs, in the order they were added.
func (s *Scheduler) Jobs() []string {
	names := make([]string, len(s.jobs))
	for i, j := range s.jobs {
		names[i] = j.Name
	}
	return names
}

// Run runs every job — at once, then when it is due, woken, or its Every
// has passed — until ctx is done; then it waits for the jobs to stop and
// returns nil.
func (s *Scheduler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, j := range s.jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.loop(ctx, j)
		}()
	}
	wg.Wait()
	return nil
}

func (s *Scheduler) loop(ctx context.Context, j Job) {
	if j.Stop != nil {
		defer j.Stop()
	}
	retry := j.Retry
	if retry <= 0 {
		retry = j.Every
	}
	if retry <= 0 {
		retry = time.Minute
	}
	for ctx.Err() == nil {
		now := s.clock.Now()
		next, err := j.Run(ctx, now)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.Error("background job failed (retried)", "job", j.Name, "retry_in", retry, "error", err)
			next = earliest(next, now.Add(retry))
		}
		if j.Every > 0 {
			next = earliest(next, now.Add(j.Every))
		}
		if s.after != nil {
			s.after(j.Name, now, err)
		}
		var timer clock.Timer
		var due <-chan time.Time
		if !next.IsZero() {
			// From the clock's time now, not the run's: if the clock
			// moved while the job ran, what was due meanwhile is due now.
			timer = s.clock.NewTimer(next.Sub(s.clock.Now()))
			due = timer.C()
		}
		select {
		case <-ctx.Done():
		case <-j.Wake:
		case <-due:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// earliest returns the earlier of a and b, where zero means never.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
