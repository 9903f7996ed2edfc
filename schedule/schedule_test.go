package schedule_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/internal/clock"
	"github.com/sealgate/sealgate/internal/seed"
	"github.com/sealgate/sealgate/schedule"
	"github.com/sealgate/sealgate/storage"
)

type ran struct {
	job string
	now time.Time
	err error
}

// runs collects AfterRun reports per job.
type runs map[string]chan ran

func newRuns(jobs ...string) runs {
	r := runs{}
	for _, j := range jobs {
		r[j] = make(chan ran, 64)
	}
	return r
}

func (r runs) after(job string, now time.Time, err error) {
	if c, ok := r[job]; ok {
		c <- ran{job, now, err}
	}
}

// next waits for the next run of job (which must happen: the deadline only
// keeps a broken scheduler from hanging the test).
func (r runs) next(t *testing.T, job string) ran {
	t.Helper()
	select {
	case x := <-r[job]:
		return x
	case <-time.After(20 * time.Second):
		t.Fatalf("job %s did not run", job)
	}
	return ran{}
}

// until waits for a run of job at or after at.
func (r runs) until(t *testing.T, job string, at time.Time) ran {
	t.Helper()
	for {
		if x := r.next(t, job); !x.now.Before(at) {
			return x
		}
	}
}

// TestSchedulerRunsJobsOnTheClock: a job runs at start, then exactly when
// it said it was due, when woken, at its Every bound and after its Retry
// delay — each time at the clock's time, which only the test moves; its
// Stop runs once Run has stopped it.
func TestSchedulerRunsJobsOnTheClock(t *testing.T) {
	start := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	c := clock.NewFake(start)
	r := newRuns("timed", "woken", "failing")
	s := schedule.New(schedule.Deps{Clock: c, AfterRun: r.after})
	s.Add(schedule.Job{Name: "timed", Run: func(_ context.Context, now time.Time) (time.Time, error) {
		return now.Add(10 * time.Second), nil
	}})
	wake := make(chan struct{}, 1)
	stopped := make(chan struct{})
	s.Add(schedule.Job{Name: "woken", Wake: wake, Every: time.Hour, Stop: func() { close(stopped) },
		Run: func(context.Context, time.Time) (time.Time, error) { return time.Time{}, nil }})
	var fails atomic.Int32
	s.Add(schedule.Job{Name: "failing", Retry: 5 * time.Second, Run: func(context.Context, time.Time) (time.Time, error) {
		if fails.Add(1) == 1 {
			return time.Time{}, errors.New("store down")
		}
		return time.Time{}, nil // nothing more to do: wait to be woken
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()

	for _, job := range []string{"timed", "woken", "failing"} {
		if x := r.next(t, job); !x.now.Equal(start) {
			t.Fatalf("%s first ran at %v, want at start", job, x.now)
		}
	}
	// Each run below is at the due time itself: the clock is moved there,
	// and the job runs on the timer it set for that time.
	c.Advance(5 * time.Second)
	if x := r.next(t, "failing"); x.err != nil || !x.now.Equal(start.Add(5*time.Second)) {
		t.Fatalf("retry after a failure: %+v, want at +5s", x)
	}
	c.Advance(5 * time.Second)
	if x := r.next(t, "timed"); !x.now.Equal(start.Add(10 * time.Second)) {
		t.Fatalf("timed ran at %v, want +10s", x.now)
	}
	wake <- struct{}{}
	if x := r.next(t, "woken"); !x.now.Equal(start.Add(10 * time.Second)) {
		t.Fatalf("woken ran at %v, want at once", x.now)
	}
	// A jump past several due times runs the job once, at the clock's
	// time, and it carries on from there.
	c.Set(start.Add(2 * time.Hour))
	if x := r.next(t, "woken"); !x.now.Equal(start.Add(2 * time.Hour)) {
		t.Fatalf("woken ran at %v, want at its Every bound (reached by the jump)", x.now)
	}
	if x := r.until(t, "timed", start.Add(2*time.Hour)); !x.now.Equal(start.Add(2 * time.Hour)) {
		t.Fatalf("timed ran at %v after the jump", x.now)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("Run returned before the job's Stop")
	}
	if n := fails.Load(); n != 2 {
		t.Fatalf("the failing job ran %d times, want 2 (start, retry)", n)
	}
	if n := c.Timers(); n != 0 {
		t.Fatalf("%d timers left behind", n)
	}
}

type fakeDelivery struct{ wake chan struct{} }

func (f fakeDelivery) DeliverDue(context.Context, time.Time) (time.Time, error) {
	return time.Time{}, nil
}
func (f fakeDelivery) DeliveryWake() <-chan struct{}                      { return f.wake }
func (f fakeDelivery) StopDelivery()                                      {}
func (f fakeDelivery) RetryDiscards(context.Context, time.Time) time.Time { return time.Time{} }
func (f fakeDelivery) DiscardWake() <-chan struct{}                       { return f.wake }
func (f fakeDelivery) Release(context.Context) (int, time.Time, error)    { return 0, time.Time{}, nil }
func (f fakeDelivery) Expire(context.Context) (int, error)                { return 0, nil }
func (f fakeDelivery) Woken() <-chan struct{}                             { return f.wake }
func (f fakeDelivery) RunDue(context.Context, time.Time) time.Time        { return time.Time{} }
func (f fakeDelivery) Appended() <-chan struct{}                          { return f.wake }
func (f fakeDelivery) Sweep(context.Context, time.Time) error             { return nil }
func (f fakeDelivery) SweepSessions(context.Context, time.Time) error     { return nil }

// TestSchedulerOwnsEveryLoop: given every part, the scheduler has a job for
// each background loop of the gateway.
func TestSchedulerOwnsEveryLoop(t *testing.T) {
	f := fakeDelivery{wake: make(chan struct{})}
	s := schedule.New(schedule.Deps{Delivery: f, Discards: f, Holds: f, Checkpoints: f, Destroy: &destroy.Deps{},
		KeyRefresh: func(context.Context) error { return nil }, Counters: f, Sessions: f})
	got := s.Jobs()
	slices.Sort(got)
	want := []string{schedule.JobCheckpoint, schedule.JobContractEnd, schedule.JobDelivery, schedule.JobDiscards, schedule.JobHoldExpiry,
		schedule.JobHoldRelease, schedule.JobKeyRefresh, schedule.JobOrphanSweep, schedule.JobTransferExpiry,
		schedule.JobCounterSweep, schedule.JobSessionSweep}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("jobs %v, want %v", got, want)
	}
}

// TestSchedulerEndDateAndExpiry: the transfer expiry and contract end jobs
// purge a transfer whose link expired and end a contract at its end date
// when the clock gets there, and not before.
func TestSchedulerEndDateAndExpiry(t *testing.T) {
	e := seed.NewEnv(t, nil)
	ctx := context.Background()
	start := e.Clock.Now()
	c, err := contract.Create(ctx, e.DB, e.Keys, e.Ledger, contract.Spec{Code: "C-2026-002", Domains: []string{"client.example"},
		DownloadLimit: contract.DefaultLimit, EndsAt: start.Add(30 * 24 * time.Hour)}, "cli:test", e.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	open, err := contract.Create(ctx, e.DB, e.Keys, e.Ledger, contract.Spec{Code: "OPEN", AnyRecipient: true, DownloadLimit: contract.DefaultLimit},
		"cli:test", e.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	ts, err := seed.Transfers(ctx, e.Deps(), c, seed.Options{Transfers: 2, Now: e.Clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	openTs, err := seed.Transfers(ctx, e.Deps(), open, seed.Options{Transfers: 1, Now: e.Clock.Now(), ExpiresAt: start.Add(24 * time.Hour), IDPrefix: "topen"})
	if err != nil {
		t.Fatal(err)
	}
	gone := func(key string) bool {
		_, err := e.Store.Stat(ctx, key)
		return errors.Is(err, storage.ErrNotFound)
	}
	status := func() string {
		c, err := contract.ByID(ctx, e.DB.Read(), c.ID)
		if err != nil {
			t.Fatal(err)
		}
		return c.Status
	}
	d := destroy.Deps{DB: e.DB, Store: e.Store, Ledger: e.Ledger, Now: e.Clock.Now, Log: slog.New(slog.DiscardHandler), Workers: 4,
		Signer: e.Signer, CertDir: filepath.Join(e.Dir, "certificates"), Storage: "fs", Owner: "host/1"}
	r := newRuns(schedule.JobContractEnd, schedule.JobTransferExpiry)
	s := schedule.New(schedule.Deps{Clock: e.Clock, Destroy: &d, AfterRun: r.after})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- s.Run(runCtx) }()

	// At start: nothing is due.
	if x := r.next(t, schedule.JobTransferExpiry); x.err != nil || gone(openTs[0].Files[0].Object) {
		t.Fatalf("first expiry run: %v; purged before its expiry: %v", x.err, gone(openTs[0].Files[0].Object))
	}
	if x := r.next(t, schedule.JobContractEnd); x.err != nil || status() != contract.StatusActive {
		t.Fatalf("first contract run: %v, contract %s", x.err, status())
	}
	// The OPEN transfer's link expires: the next expiry run purges it.
	e.Clock.Advance(2 * 24 * time.Hour)
	if x := r.until(t, schedule.JobTransferExpiry, start.Add(2*24*time.Hour)); x.err != nil || !gone(openTs[0].Files[0].Object) {
		t.Fatalf("expiry run at %v: %v; purged: %v", x.now, x.err, gone(openTs[0].Files[0].Object))
	}
	if x := r.until(t, schedule.JobContractEnd, start.Add(2*24*time.Hour)); x.err != nil || status() != contract.StatusActive {
		t.Fatalf("contract run at %v: %v, contract %s before its end date", x.now, x.err, status())
	}
	// Past the end date: the next contract run ends it.
	e.Clock.Advance(30 * 24 * time.Hour)
	if x := r.until(t, schedule.JobContractEnd, start.Add(32*24*time.Hour)); x.err != nil || status() != contract.StatusEnded {
		t.Fatalf("contract run at %v: %v, contract %s after its end date", x.now, x.err, status())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, tr := range ts {
		for _, fl := range tr.Files {
			if !gone(fl.Object) {
				t.Fatalf("object %s of the ended contract remains", fl.Object)
			}
		}
	}
	certs, _ := os.ReadDir(filepath.Join(e.Dir, "certificates"))
	if len(certs) != 2 {
		t.Fatalf("%d certificate files, want the JSON and the HTML", len(certs))
	}
}

// sweptSpool records the graces the orphan sweep gave the spool.
type sweptSpool chan time.Duration

func (s sweptSpool) SweepSpool(_ context.Context, grace time.Duration) error {
	s <- grace
	return nil
}

// TestOrphanSweepSweepsSpool: the orphan sweep job sweeps the spool too,
// with the orphan objects' grace.
func TestOrphanSweepSweepsSpool(t *testing.T) {
	e := seed.NewEnv(t, nil)
	d := destroy.Deps{DB: e.DB, Store: e.Store, Ledger: e.Ledger, Now: e.Clock.Now, Log: slog.New(slog.DiscardHandler), Workers: 4,
		Signer: e.Signer, CertDir: filepath.Join(e.Dir, "certificates"), Storage: "fs", Owner: "host/1"}
	r := newRuns(schedule.JobOrphanSweep)
	sp := make(sweptSpool, 8)
	s := schedule.New(schedule.Deps{Clock: e.Clock, AfterRun: r.after, Destroy: &d, Spool: sp, OrphanGrace: 3 * time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	if x := r.next(t, schedule.JobOrphanSweep); x.err != nil {
		t.Fatalf("orphan sweep: %v", x.err)
	}
	select {
	case g := <-sp:
		if g != 3*time.Hour {
			t.Fatalf("spool swept with grace %v, want the orphan grace 3h", g)
		}
	default:
		t.Fatal("the orphan sweep did not sweep the spool")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
