// Package ratelimit counts events per key in fixed windows, in memory: it
// bounds passphrase guessing per client address and per link, and AUTH or
// login failures per address and per account.
package ratelimit

import (
	"sync"
	"time"
)

// Limiter allows n events per key per window (a fixed window counter). It
// is safe for concurrent use.
type Limiter struct {
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

// New returns a limiter of n events per key per window w.
func New(n int, w time.Duration, now func() time.Time) *Limiter {
	return &Limiter{n: n, window: w, now: now, counts: map[string]*window{}}
}

// Allow records one event for key and reports whether it is within limits.
func (l *Limiter) Allow(key string) bool {
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

// Blocked reports whether key is over its limit, without counting an event.
func (l *Limiter) Blocked(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.counts[key]
	return w != nil && l.now().Sub(w.start) <= l.window && w.n >= l.n
}
