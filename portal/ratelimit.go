package portal

import (
	"sync"
	"time"
)

// limiter allows n events per key per window (a fixed window counter), in
// memory. It bounds passphrase guessing per client address and per link on
// top of the link lock kept in the database.
type limiter struct {
	n      int
	window time.Duration
	now    func() time.Time
	mu     sync.Mutex
	counts map[string]*window
	sweep  time.Time
}

type window struct {
	start time.Time
	n     int
}

func newLimiter(n int, w time.Duration, now func() time.Time) *limiter {
	return &limiter{n: n, window: w, now: now, counts: map[string]*window{}}
}

// allow records one event for key and reports whether it is within limits.
func (l *limiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.sweep) > l.window {
		for k, w := range l.counts {
			if now.Sub(w.start) > l.window {
				delete(l.counts, k)
			}
		}
		l.sweep = now
	}
	w := l.counts[key]
	if w == nil || now.Sub(w.start) > l.window {
		w = &window{start: now}
		l.counts[key] = w
	}
	w.n++
	return w.n <= l.n
}
