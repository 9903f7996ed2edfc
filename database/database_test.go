package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sealgate/sealgate/internal/testpg"
)

func open(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), testpg.Target(t, filepath.Join(t.TempDir(), "t.db")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestMigrationsAndPragmas(t *testing.T) {
	db := open(t)
	var v int
	db.Read().QueryRow(`SELECT MAX(version) FROM schema_migrations`).Scan(&v)
	ms, _ := loadMigrations(db.Dialect(), nil)
	if v != ms[len(ms)-1].version {
		t.Fatalf("schema version %d", v)
	}
	if _, err := db.Read().Exec(`INSERT INTO contracts(code, kek_recipient, created_at) VALUES ('x', 'y', 0)`); err == nil {
		t.Fatal("read pool accepted a write")
	}
	if db.Dialect() != SQLite {
		return
	}
	var sd int
	if err := db.w.QueryRow(`PRAGMA secure_delete`).Scan(&sd); err != nil || sd != 1 {
		t.Fatalf("secure_delete = %d, %v", sd, err)
	}
	var mode string
	db.w.QueryRow(`PRAGMA journal_mode`).Scan(&mode)
	if mode != "wal" {
		t.Fatalf("journal_mode = %s", mode)
	}
}

// TestGroupCommit: concurrent writers share transactions, and one failing
// function does not take the others with it.
func TestGroupCommit(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 200)
	var committed sync.Map
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = db.Write(ctx, func(tx *Tx) error {
				if _, err := tx.Exec(`INSERT INTO contracts(code, kek_recipient, created_at) VALUES (?, 'r', 0)`, fmt.Sprint(i)); err != nil {
					return err
				}
				tx.AfterCommit(func() { committed.Store(i, true) })
				if i%7 == 0 {
					return boom
				}
				if i%11 == 0 {
					panic("bad function")
				}
				return nil
			})
		}(i)
	}
	wg.Wait()
	want := 0
	for i, err := range errs {
		switch {
		case i%7 == 0:
			if !errors.Is(err, boom) {
				t.Fatalf("%d: %v", i, err)
			}
		case i%11 == 0:
			if err == nil {
				t.Fatalf("%d: panic not reported", i)
			}
		default:
			if err != nil {
				t.Fatalf("%d: %v", i, err)
			}
			want++
		}
		_, ran := committed.Load(i)
		if ran != (err == nil) {
			t.Fatalf("%d: AfterCommit ran=%v with err=%v", i, ran, err)
		}
	}
	var n int
	db.Read().QueryRow(`SELECT COUNT(*) FROM contracts`).Scan(&n)
	if n != want {
		t.Fatalf("%d rows, want %d", n, want)
	}
}

// TestRerunEveryBatch: with the test knob set, every function runs twice,
// the first run leaving nothing (rows, values, AfterCommit), alone in its
// batch and in shared batches, failing functions included.
func TestRerunEveryBatch(t *testing.T) {
	db, err := Open(context.Background(), testpg.Target(t, filepath.Join(t.TempDir(), "t.db")), Options{RerunEveryBatch: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	boom := errors.New("boom")
	const n = 40
	var runs, afters [n]atomic.Int32
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = db.Write(ctx, func(tx *Tx) error {
				runs[i].Add(1)
				if tx.Value("seen") != nil && tx.Value("seen").(int) == i {
					return fmt.Errorf("%d: a value of the discarded run survived", i)
				}
				tx.SetValue("seen", i)
				var rows int
				if err := tx.QueryRow(`SELECT COUNT(*) FROM contracts WHERE code = ?`, fmt.Sprint(i)).Scan(&rows); err != nil {
					return err
				}
				if rows != 0 {
					return fmt.Errorf("%d: the discarded run's row is there", i)
				}
				if _, err := tx.Exec(`INSERT INTO contracts(code, kek_recipient, created_at) VALUES (?, 'r', 0)`, fmt.Sprint(i)); err != nil {
					return err
				}
				tx.AfterCommit(func() { afters[i].Add(1) })
				if i%5 == 0 {
					return boom
				}
				return nil
			})
		}(i)
	}
	wg.Wait()
	want := 0
	for i := 0; i < n; i++ {
		if i%5 == 0 {
			if !errors.Is(errs[i], boom) {
				t.Fatalf("%d: %v", i, errs[i])
			}
			if afters[i].Load() != 0 {
				t.Fatalf("%d: AfterCommit of a failed function ran", i)
			}
			continue
		}
		want++
		if errs[i] != nil {
			t.Fatalf("%d: %v", i, errs[i])
		}
		if r := runs[i].Load(); r < 2 {
			t.Fatalf("%d ran %d times, want at least 2", i, r)
		}
		if a := afters[i].Load(); a != 1 {
			t.Fatalf("%d: AfterCommit ran %d times", i, a)
		}
	}
	var rows int
	db.Read().QueryRow(`SELECT COUNT(*) FROM contracts`).Scan(&rows)
	if rows != want {
		t.Fatalf("%d rows, want %d", rows, want)
	}
}

// TestFailedToldOncePerFunction: a statement failure is told to
// Options.Failed once per function whose outcome it decided, however many
// times the function ran — alone or batched, with and without the test
// knob that runs every batch twice — whether the failing statement is the
// function's own or a write it deferred (Tx.Defer, as the ledger does),
// run at the end of the batch or before another function's statement
// that names its table.
func TestFailedToldOncePerFunction(t *testing.T) {
	failing := map[string]func(tx *Tx) error{
		"own statement": func(tx *Tx) error {
			_, err := tx.Exec(`INSERT INTO no_such_table VALUES (1)`)
			return err
		},
		"deferred write": func(tx *Tx) error {
			tx.Defer("k", []string{"no_such_table"}, func(ctx context.Context) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO no_such_table VALUES (1)`)
				return err
			})
			return nil
		},
		"deferred write flushed by a statement": func(tx *Tx) error {
			tx.Defer("k", []string{"contracts"}, func(ctx context.Context) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO no_such_table VALUES (1)`)
				return err
			})
			return nil
		},
	}
	for name, fail := range failing {
		for _, rerun := range []bool{false, true} {
			var told atomic.Int32
			db, err := Open(context.Background(), testpg.Target(t, filepath.Join(t.TempDir(), "t.db")),
				Options{RerunEveryBatch: rerun, Failed: func(string) { told.Add(1) }})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			const n = 60
			var wg sync.WaitGroup
			var failed atomic.Int32
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					err := db.Write(ctx, func(tx *Tx) error {
						if i%4 == 0 {
							if err := fail(tx); err != nil {
								return err
							}
						}
						_, err := tx.Exec(`INSERT INTO contracts(code, kek_recipient, created_at) VALUES (?, 'r', 0)`, fmt.Sprint(i))
						return err
					})
					if err != nil {
						failed.Add(1)
					}
				}(i)
			}
			wg.Wait()
			db.Close()
			if failed.Load() != n/4 || told.Load() != n/4 {
				t.Fatalf("%s, rerun %v: %d functions failed, %d failures told, want %d and %d", name, rerun, failed.Load(), told.Load(), n/4, n/4)
			}
		}
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := testpg.Target(t, filepath.Join(t.TempDir(), "t.db"))
	ctx := context.Background()
	db, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Write(ctx, func(tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO contracts(code, kek_recipient, created_at) VALUES ('C-1', 'r', 0)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := db.Write(ctx, func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	db, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var code string
	db.Read().QueryRow(`SELECT code FROM contracts`).Scan(&code)
	if code != "C-1" {
		t.Fatalf("lost data: %q", code)
	}
}

// A write alone in its transaction (no savepoint) that fails or panics
// leaves nothing behind, runs no AfterCommit, and the next write works.
func TestLoneWriteRollsBack(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	boom := errors.New("boom")
	for i, fail := range []func() error{func() error { return boom }, func() error { panic("bad function") }} {
		ran := false
		err := db.Write(ctx, func(tx *Tx) error {
			if _, err := tx.Exec(`INSERT INTO contracts(code, kek_recipient, created_at) VALUES (?, 'r', 0)`, fmt.Sprint("bad", i)); err != nil {
				return err
			}
			tx.AfterCommit(func() { ran = true })
			return fail()
		})
		if err == nil || ran {
			t.Fatalf("case %d: err %v, AfterCommit ran %v", i, err, ran)
		}
	}
	if err := db.Write(ctx, func(tx *Tx) error {
		_, err := tx.Exec(`INSERT INTO contracts(code, kek_recipient, created_at) VALUES ('good', 'r', 0)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var n int
	var code string
	db.Read().QueryRow(`SELECT COUNT(*), MIN(code) FROM contracts`).Scan(&n, &code)
	if n != 1 || code != "good" {
		t.Fatalf("rows: %d, first %q, want only good", n, code)
	}
}

// Options.Failed hears of failing statements, by operation, and not of
// empty results, cancelled contexts or a Write function's own errors.
func TestFailedHook(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	got := map[string]int{}
	db, err := Open(ctx, filepath.Join(t.TempDir(), "t.db"), Options{Failed: func(op string) {
		mu.Lock()
		got[op]++
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	report := func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(got)
	}
	// Not failures of the database.
	var n int
	if err := db.Read().QueryRowContext(ctx, `SELECT 1 WHERE 0`).Scan(&n); !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("no rows: %v", err)
	}
	mine := errors.New("refused by the caller")
	if err := db.Write(ctx, func(tx *Tx) error { return mine }); !errors.Is(err, mine) {
		t.Fatalf("write: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	db.Read().QueryContext(cancelled, `SELECT 1`)
	if r := report(); r != "map[]" {
		t.Fatalf("reported %s for failures that are not the database's", r)
	}
	// Failures of statements, in a write and on the read pool.
	err = db.Write(ctx, func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO no_such_table VALUES (1)`); err == nil {
			t.Error("insert into a missing table succeeded")
		}
		tx.QueryRowContext(ctx, `SELECT x FROM no_such_table`)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Read().QueryContext(ctx, `SELECT x FROM no_such_table`)
	db.Read().QueryRowContext(ctx, `SELECT x FROM no_such_table`)
	if r := report(); r != "map[exec:1 query:3]" {
		t.Fatalf("reported %s", r)
	}
}

// TestTxValue: a value set by a function of a batch is seen by the next
// ones, and forgotten when a function's savepoint rolls back (it may
// describe the rows rolled back).
func TestTxValue(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	sqlTx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlTx.Rollback()
	shared := &txShared{}
	type key struct{}
	boom := errors.New("boom")
	steps := []struct {
		fn   func(tx *Tx) error
		want error
	}{
		{func(tx *Tx) error { tx.SetValue(key{}, 1); return nil }, nil},
		{func(tx *Tx) error {
			if v := tx.Value(key{}); v != 1 {
				return fmt.Errorf("the next function sees %v", v)
			}
			tx.SetValue(key{}, 2)
			return boom
		}, boom},
		{func(tx *Tx) error {
			if v := tx.Value(key{}); v != nil {
				return fmt.Errorf("after a rollback the next function sees %v", v)
			}
			return nil
		}, nil},
	}
	for i, s := range steps {
		if err := runSavepoint(ctx, &Tx{Tx: sqlTx, db: db, shared: shared}, s.fn); !errors.Is(err, s.want) {
			t.Fatalf("function %d: %v", i, err)
		}
	}
}
