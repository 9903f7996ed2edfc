package clock

import (
	"testing"
	"time"
)

var start = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)

func fired(t Timer) (time.Time, bool) {
	select {
	case at := <-t.C():
		return at, true
	default:
		return time.Time{}, false
	}
}

func TestFakeFiresDueTimersInOrder(t *testing.T) {
	f := NewFake(start)
	late, early, stopped := f.NewTimer(2*time.Minute), f.NewTimer(time.Minute), f.NewTimer(90*time.Second)
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop: true once, then false")
	}
	f.Advance(59 * time.Second)
	if _, ok := fired(early); ok {
		t.Fatal("fired before its time")
	}
	f.Advance(time.Second)
	if at, ok := fired(early); !ok || !at.Equal(start.Add(time.Minute)) {
		t.Fatalf("at its time: %v, %v", at, ok)
	}
	f.Set(start.Add(time.Hour))
	if at, ok := fired(late); !ok || !at.Equal(start.Add(2*time.Minute)) {
		t.Fatalf("after a jump: %v, %v", at, ok)
	}
	if _, ok := fired(stopped); ok {
		t.Fatal("a stopped timer fired")
	}
	if f.Timers() != 0 || !f.Now().Equal(start.Add(time.Hour)) {
		t.Fatalf("%d timers left, now %v", f.Timers(), f.Now())
	}
	f.Set(start) // never backwards
	if !f.Now().Equal(start.Add(time.Hour)) {
		t.Fatal("Set moved the clock backwards")
	}
	if _, ok := fired(f.NewTimer(0)); !ok {
		t.Fatal("a timer for now did not fire at once")
	}
}

func TestSteppingClock(t *testing.T) {
	f := NewStepping(start, time.Millisecond)
	tm := f.NewTimer(2 * time.Millisecond)
	a, b := f.Now(), f.Now()
	if !b.Equal(a.Add(time.Millisecond)) {
		t.Fatalf("readings %v, %v", a, b)
	}
	if _, ok := fired(tm); !ok {
		t.Fatal("stepping past a timer did not fire it")
	}
}

func TestReal(t *testing.T) {
	c := Real()
	if d := time.Since(c.Now()); d < 0 || d > time.Minute {
		t.Fatalf("real clock off by %v", d)
	}
	tm := c.NewTimer(0)
	<-tm.C()
	if c.NewTimer(time.Hour).Stop() != true {
		t.Fatal("Stop of a pending real timer")
	}
}
