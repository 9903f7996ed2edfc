package gateway

import (
	"context"
	"slices"
	"sync"
	"time"
)

// discards are the objects of refused messages whose deletion failed — the
// store is down, which is often why the message was refused. They are
// retried with backoff (a second, doubling up to a minute) for up to
// discardPatience, so that a refused message leaves nothing behind once
// the store is back (the chaos harness found such objects after every
// store outage). The scheduler (package schedule) runs the retries
// (RetryDiscards); what remains after that, or after a restart, is
// encrypted to transfer identities that were never stored — unreadable,
// and removed by the orphan sweep (destroy.SweepOrphans).
type discards struct {
	mu      sync.Mutex
	pending []discardRetry
	wake    chan struct{}
}

type discardRetry struct {
	key   string
	since time.Time // first failure
	next  time.Time
	delay time.Duration
}

// discardPatience bounds how long the objects of a refused message are
// retried for deletion.
const discardPatience = 30 * time.Minute

func newDiscards() *discards { return &discards{wake: make(chan struct{}, 1)} }

// add schedules keys for deletion a second after now.
func (d *discards) add(keys []string, now time.Time) {
	d.mu.Lock()
	for _, k := range keys {
		d.pending = append(d.pending, discardRetry{key: k, since: now, next: now.Add(time.Second), delay: time.Second})
	}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// DiscardWake is signalled when the deletion of a refused message's object
// failed and is to be retried.
func (g *Gateway) DiscardWake() <-chan struct{} { return g.discards.wake }

// RetryDiscards retries the deletions of refused messages' objects that
// are due at now, and returns when the next is due (zero: none left).
func (g *Gateway) RetryDiscards(ctx context.Context, now time.Time) time.Time {
	d := g.discards
	d.mu.Lock()
	var due []discardRetry
	d.pending = slices.DeleteFunc(d.pending, func(r discardRetry) bool {
		if r.next.After(now) {
			return false
		}
		due = append(due, r)
		return true
	})
	d.mu.Unlock()
	var left, gaveUp []discardRetry
	for _, r := range due {
		if err := g.deleteObject(ctx, r.key); err == nil {
			continue
		}
		if now.Sub(r.since) >= discardPatience {
			gaveUp = append(gaveUp, r)
			continue
		}
		r.delay = min(2*r.delay, time.Minute)
		r.next = now.Add(r.delay)
		left = append(left, r)
	}
	for _, r := range gaveUp {
		g.Log.Error("gave up deleting the object of a refused message (it is encrypted to keys that were never stored; the orphan sweep removes it)", "object", r.key)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending = append(d.pending, left...)
	var next time.Time
	for _, r := range d.pending {
		if next.IsZero() || r.next.Before(next) {
			next = r.next
		}
	}
	return next
}

// deleteObject deletes a stored object, giving the store 30 seconds.
func (g *Gateway) deleteObject(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return g.Store.Delete(ctx, key)
}
