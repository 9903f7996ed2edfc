package schedule_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/clock"
	"github.com/sealgate/sealgate/schedule"
)

type countingHolds struct {
	released, expired atomic.Int32
	woken             chan struct{}
}

func (h *countingHolds) Release(context.Context) (int, time.Time, error) {
	h.released.Add(1)
	return 0, time.Time{}, nil
}

func (h *countingHolds) Expire(context.Context) (int, error) {
	h.expired.Add(1)
	return 0, nil
}

func (h *countingHolds) Woken() <-chan struct{} { return h.woken }

// fleetLock stands for the lock another instance may hold.
type fleetLock struct {
	mu      sync.Mutex
	taken   bool // by another instance
	held    map[string]bool
	asked   map[string]int
	unlocks int
}

func (l *fleetLock) lock(_ context.Context, name string) (func(), bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked[name]++
	if l.taken || l.held[name] {
		return nil, false, nil
	}
	l.held[name] = true
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.held, name)
		l.unlocks++
	}, true, nil
}

// TestFleetJobsRunUnderTheLock: a job whose work is the fleet's does
// nothing while another instance holds its lock, and runs, releasing the
// lock afterwards, once it is free.
func TestFleetJobsRunUnderTheLock(t *testing.T) {
	start := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	c := clock.NewFake(start)
	r := newRuns(schedule.JobHoldExpiry, schedule.JobHoldRelease)
	h := &countingHolds{woken: make(chan struct{}, 1)}
	l := &fleetLock{taken: true, held: map[string]bool{}, asked: map[string]int{}}
	s := schedule.New(schedule.Deps{Clock: c, AfterRun: r.after, Holds: h, Lock: l.lock, Interval: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	r.next(t, schedule.JobHoldExpiry)
	r.next(t, schedule.JobHoldRelease)
	if n := h.expired.Load() + h.released.Load(); n != 0 {
		t.Fatalf("%d runs while another instance held the lock", n)
	}
	l.mu.Lock()
	if l.asked["schedule/"+schedule.JobHoldExpiry] != 1 || l.asked["schedule/"+schedule.JobHoldRelease] != 1 {
		t.Fatalf("locks asked for: %v", l.asked)
	}
	l.taken = false
	l.mu.Unlock()

	c.Advance(time.Minute)
	r.until(t, schedule.JobHoldExpiry, start.Add(time.Minute))
	r.until(t, schedule.JobHoldRelease, start.Add(time.Minute))
	if h.expired.Load() != 1 || h.released.Load() != 1 {
		t.Fatalf("expired %d, released %d times with the lock free; want 1 each", h.expired.Load(), h.released.Load())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.held) != 0 || l.unlocks != 2 {
		t.Fatalf("locks still held %v, %d released", l.held, l.unlocks)
	}
}

// sweeps records the times the counters were swept at.
type sweeps struct {
	mu  sync.Mutex
	ats []time.Time
}

func (s *sweeps) Sweep(_ context.Context, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ats = append(s.ats, now)
	return nil
}

// TestCounterSweep: the rate-limit counters of ended windows are swept at
// start and every Interval, at the clock's time, under the fleet's lock.
func TestCounterSweep(t *testing.T) {
	start := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	c := clock.NewFake(start)
	r := newRuns(schedule.JobCounterSweep)
	sw := &sweeps{}
	l := &fleetLock{held: map[string]bool{}, asked: map[string]int{}}
	s := schedule.New(schedule.Deps{Clock: c, AfterRun: r.after, Counters: sw, Lock: l.lock, Interval: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	r.next(t, schedule.JobCounterSweep)
	c.Advance(time.Minute)
	r.until(t, schedule.JobCounterSweep, start.Add(time.Minute))
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if len(sw.ats) != 2 || !sw.ats[0].Equal(start) || !sw.ats[1].Equal(start.Add(time.Minute)) {
		t.Fatalf("swept at %v, want %v and a minute later", sw.ats, start)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.asked["schedule/"+schedule.JobCounterSweep] != 2 {
		t.Fatalf("locks asked for: %v", l.asked)
	}
}
