// Package ratelimit counts events per key in fixed windows: it bounds
// passphrase guessing per client address and per link, the requests on a
// link that are recorded at no cost, and sign-in or SMTP AUTH failures per
// address and per account.
//
// A Limiter is one limit (n events per key per window). Two kinds:
// Memory counts in this process — enough for one process on SQLite, and
// the fastest; Store counts in the database (table rate_counters, owned
// here), so that instances sharing one PostgreSQL count as one: a client
// sent to another instance by a load balancer finds its counts there.
// Store names what it counts by a keyed hash (HMAC-SHA-256 under a key
// derived from the master key), never by the address, account name or
// link itself.
//
// A Limiter that cannot count (the database is down) returns an error, and
// its callers refuse the request (fail closed): an attempt that cannot be
// counted is not allowed.
package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Limiter allows n events per key per window.
type Limiter interface {
	// Allow records one event for key and reports whether it is within
	// the limit. An error means the event could not be counted.
	Allow(ctx context.Context, key string) (bool, error)
	// Blocked reports whether key has used up its limit in the current
	// window, without counting an event.
	Blocked(ctx context.Context, key string) (bool, error)
	// Undo gives back one event that Allow counted for key in the current
	// window: an attempt counted before it was checked (so that attempts
	// running at once are all counted) that turned out not to be a
	// failure.
	Undo(ctx context.Context, key string) error
}

// Maker makes the Limiter of one limit: scope names it (counts of
// different scopes never mix), n events per key per window.
type Maker func(scope string, n int, window time.Duration) Limiter

// InMemory makes limiters that count in this process (Memory).
func InMemory(now func() time.Time) Maker {
	return func(_ string, n int, window time.Duration) Limiter { return New(n, window, now) }
}

// Memory allows n events per key per window, counted in this process (a
// fixed window that starts at a key's first event). It is safe for
// concurrent use and never fails.
type Memory struct {
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

// New returns an in-memory limiter of n events per key per window w.
func New(n int, w time.Duration, now func() time.Time) *Memory {
	return &Memory{n: n, window: w, now: now, counts: map[string]*window{}}
}

// Allow records one event for key and reports whether it is within limits.
func (l *Memory) Allow(_ context.Context, key string) (bool, error) {
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
	return w.n <= l.n, nil
}

// Blocked reports whether key is over its limit, without counting an event.
func (l *Memory) Blocked(_ context.Context, key string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.counts[key]
	return w != nil && l.now().Sub(w.start) <= l.window && w.n >= l.n, nil
}

// Undo gives back one event counted for key in its current window.
func (l *Memory) Undo(_ context.Context, key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w := l.counts[key]; w != nil && l.now().Sub(w.start) <= l.window && w.n > 0 {
		w.n--
	}
	return nil
}
