// Package clock is the time source of sealgate's background work: the
// system clock in production, and a fake one in tests that moves only when
// the test says so, firing the timers that come due. A test advances time
// instead of sleeping through it.
package clock

import (
	"slices"
	"sync"
	"time"
)

// Clock tells the time and makes timers on it.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once, when d has passed on this
	// clock (at once if d <= 0).
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer of a Clock.
type Timer interface {
	// C receives the time when the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
}

// Real returns the system clock.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// Fake is a Clock that stands still until Advance or Set moves it; moving
// it fires, in order, every timer that comes due. It is safe for
// concurrent use.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	step   time.Duration
	timers []*fakeTimer
}

// NewFake returns a Fake clock at t.
func NewFake(t time.Time) *Fake { return &Fake{now: t} }

// NewStepping returns a Fake clock at t that also moves forward by step on
// every reading, so that events stamped one after the other get distinct
// times.
func NewStepping(t time.Time, step time.Duration) *Fake { return &Fake{now: t, step: step} }

// Now returns the clock's time (and moves it by its step, if any).
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.step > 0 {
		f.moveLocked(f.now.Add(f.step))
	}
	return f.now
}

// Advance moves the clock forward by d, firing the timers that come due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.moveLocked(f.now.Add(d))
}

// Set moves the clock to t (never backwards), firing the timers that come
// due.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.After(f.now) {
		f.moveLocked(t)
	}
}

// Timers returns how many timers are waiting to fire.
func (f *Fake) Timers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// NewTimer implements Clock.
func (f *Fake) NewTimer(d time.Duration) Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{f: f, at: f.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- f.now
		return t
	}
	f.timers = append(f.timers, t)
	return t
}

func (f *Fake) moveLocked(to time.Time) {
	slices.SortStableFunc(f.timers, func(a, b *fakeTimer) int { return a.at.Compare(b.at) })
	n := 0
	for _, t := range f.timers {
		if t.at.After(to) {
			break
		}
		t.c <- t.at // buffered: each timer fires once
		n++
	}
	f.timers = append(f.timers[:0], f.timers[n:]...)
	f.now = to
}

type fakeTimer struct {
	f  *Fake
	at time.Time
	c  chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	for i, x := range t.f.timers {
		if x == t {
			t.f.timers = append(t.f.timers[:i], t.f.timers[i+1:]...)
			return true
		}
	}
	return false
}
