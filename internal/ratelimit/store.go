package ratelimit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/database"
)

// Store keeps counters in the database (table rate_counters), shared by
// every process on it. A counter is one row per scope, key and window,
// the windows aligned on multiples of their length since the Unix epoch
// (so every instance agrees on them whatever its start time); one
// statement counts an event and returns the count (INSERT … ON CONFLICT DO
// UPDATE … RETURNING n), atomic by itself. It runs through
// database.DB.Statement: on PostgreSQL straight on a pool of its own, not
// through the writer's queue and its fleet-wide lock, so a counted portal
// request costs one round trip and waits for no batch of other writes. On
// SQLite it goes through the writer and its commit (slower than Memory,
// which serve uses there).
//
// Rows of ended windows are deleted by Sweep (the scheduler).
type Store struct {
	DB *database.DB
	// Key returns the key of the hash that names what is counted: the
	// current master key epoch's crypto.Epoch.CounterKey, the same on
	// every instance. It is asked at every event, so that instances
	// follow a rotation of the master key together (the counts of the
	// windows running at the rotation start again from zero).
	Key func() ([]byte, error)
	Now func() time.Time
}

// hashSize is how much of the HMAC-SHA-256 names a key: 128 bits.
const hashSize = 16

// Maker makes limiters that count in s.
func (s *Store) Maker() Maker { return s.Limiter }

// Limiter returns the limit scope of n events per key per window,
// counted in s.
func (s *Store) Limiter(scope string, n int, window time.Duration) Limiter {
	return &shared{s: s, scope: scope, n: int64(n), window: window.Milliseconds()}
}

// Sweep deletes the counters whose window ended before now.
func (s *Store) Sweep(ctx context.Context, now time.Time) error {
	if err := s.DB.Statement(ctx, nil, `DELETE FROM rate_counters WHERE expires_at <= ?`, now.UnixMilli()); err != nil {
		return fmt.Errorf("failed to sweep rate-limit counters: %w", err)
	}
	return nil
}

type shared struct {
	s      *Store
	scope  string
	n      int64
	window int64 // milliseconds
}

// at returns the key's hash and the start of the window holding now.
func (l *shared) at(key string) ([]byte, int64, error) {
	k, err := l.s.Key()
	if err != nil {
		return nil, 0, err
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(l.scope))
	m.Write([]byte{0})
	m.Write([]byte(key))
	now := l.s.Now().UnixMilli()
	return m.Sum(nil)[:hashSize], now - now%l.window, nil
}

func (l *shared) Allow(ctx context.Context, key string) (bool, error) {
	h, start, err := l.at(key)
	if err != nil {
		return false, err
	}
	var n int64
	err = l.s.DB.Statement(ctx, []any{&n}, `INSERT INTO rate_counters(scope, key_hash, window_start, n, expires_at) VALUES (?, ?, ?, 1, ?)
		ON CONFLICT (scope, key_hash, window_start) DO UPDATE SET n = rate_counters.n + 1 RETURNING n`,
		l.scope, h, start, start+l.window)
	if err != nil {
		return false, fmt.Errorf("failed to count an attempt: %w", err)
	}
	return n <= l.n, nil
}

func (l *shared) Blocked(ctx context.Context, key string) (bool, error) {
	h, start, err := l.at(key)
	if err != nil {
		return false, err
	}
	var n int64
	err = l.s.DB.Read().QueryRowContext(ctx, `SELECT n FROM rate_counters WHERE scope = ? AND key_hash = ? AND window_start = ?`,
		l.scope, h, start).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to read a rate-limit counter: %w", err)
	}
	return n >= l.n, nil
}

func (l *shared) Undo(ctx context.Context, key string) error {
	h, start, err := l.at(key)
	if err != nil {
		return err
	}
	if err := l.s.DB.Statement(ctx, nil, `UPDATE rate_counters SET n = n - 1 WHERE scope = ? AND key_hash = ? AND window_start = ? AND n > 0`,
		l.scope, h, start); err != nil {
		return fmt.Errorf("failed to give back a counted attempt: %w", err)
	}
	return nil
}
