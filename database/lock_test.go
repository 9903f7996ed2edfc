package database_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/testpg"
)

func tryLock(t *testing.T, db *database.DB, name string) (func(), bool) {
	t.Helper()
	unlock, ok, err := db.TryLock(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return unlock, ok
}

// Two instances on one PostgreSQL database: one holder of a lock at a
// time, and a holder that dies frees it.
func TestTryLockAcrossInstances(t *testing.T) {
	url := testpg.URL(t)
	ctx := context.Background()
	a, err := database.Open(ctx, url, database.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := database.Open(ctx, url, database.Options{})
	if err != nil {
		t.Fatal(err)
	}

	unlockA, ok := tryLock(t, a, "contract-end")
	if !ok {
		t.Fatal("a could not take a free lock")
	}
	if _, ok := tryLock(t, b, "contract-end"); ok {
		t.Fatal("b took the lock a holds")
	}
	unlockOther, ok := tryLock(t, b, "orphan-sweep")
	if !ok {
		t.Fatal("b could not take another lock")
	}
	unlockOther()
	unlockA()
	if _, ok := tryLock(t, b, "contract-end"); !ok {
		t.Fatal("b could not take the lock a released")
	}
	if _, ok := tryLock(t, a, "contract-end"); ok {
		t.Fatal("a took the lock b holds")
	}
	// b dies holding the lock: its session ends, the server frees it.
	admin, err := database.OpenPlain(url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var ended int
	if err := admin.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted) AS killed`).Scan(&ended); err != nil || ended != 1 {
		t.Fatalf("ended %d sessions holding advisory locks: %v", ended, err)
	}
	defer b.Close()
	// The backend exits after the signal: wait for the server to drop
	// its locks.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var held int
		if err := admin.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory'`).Scan(&held); err != nil {
			t.Fatal(err)
		}
		if held == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the terminated session still holds its lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	unlockA, ok = tryLock(t, a, "contract-end")
	if !ok {
		t.Fatal("a could not take the lock of a closed instance")
	}
	unlockA()
}

// On SQLite one process serves the database: the lock is always taken.
func TestTryLockOnSQLite(t *testing.T) {
	db, err := database.Open(context.Background(), filepath.Join(t.TempDir(), "db"), database.Options{Synchronous: "OFF"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u1, ok1 := tryLock(t, db, "x")
	u2, ok2 := tryLock(t, db, "x")
	if !ok1 || !ok2 {
		t.Fatal("lock refused on SQLite")
	}
	u1()
	u2()
}
