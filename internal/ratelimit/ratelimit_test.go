package ratelimit_test

import (
	"bytes"
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/clock"
	"github.com/sealgate/sealgate/internal/ratelimit"
	"github.com/sealgate/sealgate/internal/testpg"
)

var testKey = fixedKey(bytes.Repeat([]byte{7}, 32))

func fixedKey(k []byte) func() ([]byte, error) { return func() ([]byte, error) { return k, nil } }

// start is a time in the middle of a minute window, so that a test's few
// steps stay in it.
var start = time.Date(2026, 12, 7, 8, 0, 20, 0, time.UTC)

// openShared opens the database of a test twice, as two instances would
// (on SQLite two handles of one file; on PostgreSQL two pools).
func openShared(t *testing.T) (*database.DB, *database.DB) {
	t.Helper()
	target := testpg.Target(t, filepath.Join(t.TempDir(), "db"))
	open := func() *database.DB {
		db, err := database.Open(context.Background(), target, testdb.Options(database.Options{Synchronous: "OFF"}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	return open(), open()
}

func allow(t *testing.T, l ratelimit.Limiter, key string) bool {
	t.Helper()
	ok, err := l.Allow(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func blocked(t *testing.T, l ratelimit.Limiter, key string) bool {
	t.Helper()
	b, err := l.Blocked(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkLimit runs the contract every Limiter keeps: n events per key per
// window, keys and scopes apart, a fresh allowance after the window.
func checkLimit(t *testing.T, mk ratelimit.Maker, clk *clock.Fake) {
	t.Helper()
	l := mk("test.a", 3, time.Minute)
	other := mk("test.b", 3, time.Minute)
	for i := 1; i <= 3; i++ {
		if blocked(t, l, "k") {
			t.Fatalf("blocked before event %d", i)
		}
		if !allow(t, l, "k") {
			t.Fatalf("event %d of 3 refused", i)
		}
	}
	if !blocked(t, l, "k") {
		t.Fatal("not blocked after 3 events")
	}
	if allow(t, l, "k") {
		t.Fatal("event 4 of 3 allowed")
	}
	if blocked(t, l, "k2") || !allow(t, l, "k2") {
		t.Fatal("another key is limited by k's events")
	}
	if blocked(t, other, "k") || !allow(t, other, "k") {
		t.Fatal("another scope is limited by k's events")
	}
	clk.Advance(61 * time.Second)
	if blocked(t, l, "k") || !allow(t, l, "k") {
		t.Fatal("still limited after the window")
	}
	// Undo gives one event back, in k's window only: k has 1 of 3, an
	// event counted and given back leaves room for exactly 2 more.
	u := mk("test.u", 2, time.Minute)
	if !allow(t, u, "k") || !allow(t, u, "k") {
		t.Fatal("events of test.u refused")
	}
	if err := u.Undo(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if blocked(t, u, "k") || !allow(t, u, "k") {
		t.Fatal("the event given back still counts")
	}
	if !blocked(t, u, "k") || allow(t, u, "k") {
		t.Fatal("Undo gave back more than one event")
	}
	if err := u.Undo(context.Background(), "never"); err != nil {
		t.Fatal(err)
	}
	if blocked(t, u, "never") {
		t.Fatal("Undo of a key never counted blocks it")
	}
}

func TestMemory(t *testing.T) {
	clk := clock.NewFake(start)
	checkLimit(t, ratelimit.InMemory(clk.Now), clk)
}

func TestStore(t *testing.T) {
	db, _ := openShared(t)
	clk := clock.NewFake(start)
	s := &ratelimit.Store{DB: db, Key: testKey, Now: clk.Now}
	checkLimit(t, s.Maker(), clk)
}

// TestStoreShared: two instances on one database count as one — events
// sent alternately to each are limited together, and what one counted
// blocks on the other.
func TestStoreShared(t *testing.T) {
	a, b := openShared(t)
	clk := clock.NewFake(start)
	la := (&ratelimit.Store{DB: a, Key: testKey, Now: clk.Now}).Limiter("portal.link", 4, time.Minute)
	lb := (&ratelimit.Store{DB: b, Key: testKey, Now: clk.Now}).Limiter("portal.link", 4, time.Minute)
	for i := 0; i < 4; i++ {
		l := la
		if i%2 == 1 {
			l = lb
		}
		if !allow(t, l, "T1/1") {
			t.Fatalf("event %d of 4 refused", i+1)
		}
	}
	if allow(t, la, "T1/1") || allow(t, lb, "T1/1") {
		t.Fatal("an event past the limit allowed by one of the instances")
	}
	if !blocked(t, la, "T1/1") || !blocked(t, lb, "T1/1") {
		t.Fatal("not blocked on both instances")
	}
}

// TestStoreConcurrent: many requests at once on two instances — exactly
// n are allowed (the upsert is atomic).
func TestStoreConcurrent(t *testing.T) {
	a, b := openShared(t)
	clk := clock.NewFake(start)
	const n, tries = 10, 40
	ls := []ratelimit.Limiter{
		(&ratelimit.Store{DB: a, Key: testKey, Now: clk.Now}).Limiter("x", n, time.Minute),
		(&ratelimit.Store{DB: b, Key: testKey, Now: clk.Now}).Limiter("x", n, time.Minute),
	}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, tries)
	for i := 0; i < tries; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := ls[i%2].Allow(context.Background(), "k")
			if err != nil {
				errs <- err
				return
			}
			if ok {
				allowed.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := allowed.Load(); got != n {
		t.Fatalf("%d of %d concurrent events allowed, want %d", got, tries, n)
	}
}

// TestStoreKeysHashed: the table holds no key in clear, and the hash is
// keyed (another key, another name).
func TestStoreKeysHashed(t *testing.T) {
	db, _ := openShared(t)
	clk := clock.NewFake(start)
	const addr = "203.0.113.77"
	allow(t, (&ratelimit.Store{DB: db, Key: testKey, Now: clk.Now}).Limiter("portal.ip", 5, time.Minute), addr)
	allow(t, (&ratelimit.Store{DB: db, Key: fixedKey(bytes.Repeat([]byte{8}, 32)), Now: clk.Now}).Limiter("portal.ip", 5, time.Minute), addr)
	rows, err := db.Read().Query(`SELECT scope, key_hash, window_start, n, expires_at FROM rate_counters`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var hashes [][]byte
	for rows.Next() {
		var scope string
		var h []byte
		var ws, n, exp int64
		if err := rows.Scan(&scope, &h, &ws, &n, &exp); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(h, []byte(addr)) || bytes.Contains([]byte(scope), []byte(addr)) || len(h) != 16 {
			t.Fatalf("row names the address: %q %x", scope, h)
		}
		if ws%60000 != 0 || exp != ws+60000 || n != 1 {
			t.Fatalf("row window %d..%d n %d", ws, exp, n)
		}
		hashes = append(hashes, h)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(hashes) != 2 || bytes.Equal(hashes[0], hashes[1]) {
		t.Fatalf("two keys gave %d rows (%x): the hash is not keyed", len(hashes), hashes)
	}
}

// TestStoreSweep: counters of ended windows are deleted, the current
// window's are kept.
func TestStoreSweep(t *testing.T) {
	db, _ := openShared(t)
	clk := clock.NewFake(start)
	s := &ratelimit.Store{DB: db, Key: testKey, Now: clk.Now}
	l := s.Limiter("a", 1, time.Minute)
	allow(t, l, "old")
	clk.Advance(time.Minute)
	allow(t, l, "new")
	if err := s.Sweep(context.Background(), clk.Now()); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Read().QueryRow(`SELECT COUNT(*) FROM rate_counters`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d counters after the sweep, want 1 (the current window's)", n)
	}
	if !blocked(t, l, "new") {
		t.Fatal("the sweep lost the current window's count")
	}
}

// TestStoreDown: a database that cannot be reached is an error, never an
// allowance.
func TestStoreDown(t *testing.T) {
	db, _ := openShared(t)
	clk := clock.NewFake(start)
	l := (&ratelimit.Store{DB: db, Key: testKey, Now: clk.Now}).Limiter("a", 100, time.Minute)
	db.Close()
	if ok, err := l.Allow(context.Background(), "k"); err == nil || ok {
		t.Fatalf("Allow on a closed database: %v, %v", ok, err)
	}
	if b, err := l.Blocked(context.Background(), "k"); err == nil {
		t.Fatalf("Blocked on a closed database: %v, %v", b, err)
	}
}

// BenchmarkAllow: the cost of one counted event, in memory and in the
// database of the run (SQLite, or PostgreSQL with SEALGATE_TEST_POSTGRES),
// from parallel goroutines on distinct keys as portal requests would be.
func BenchmarkAllow(b *testing.B) {
	run := func(b *testing.B, l ratelimit.Limiter) {
		var id atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			key := "client-" + time.Duration(id.Add(1)).String()
			for pb.Next() {
				if _, err := l.Allow(context.Background(), key); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("memory", func(b *testing.B) {
		run(b, ratelimit.New(1<<30, time.Minute, time.Now))
	})
	b.Run("store", func(b *testing.B) {
		db, err := database.Open(context.Background(), testpg.Target(b, filepath.Join(b.TempDir(), "db")), database.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		run(b, (&ratelimit.Store{DB: db, Key: testKey, Now: time.Now}).Limiter("bench", 1<<30, time.Minute))
	})
}
