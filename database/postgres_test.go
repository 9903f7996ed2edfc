package database

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sealgate/sealgate/internal/testpg"
)

// The tests of this package run on PostgreSQL too when
// SEALGATE_TEST_POSTGRES is set (testpg.Target); the ones below start it
// whatever the variable says, since they compare the two dialects.
func TestMain(m *testing.M) { testpg.Main(m) }

// TestMigrationSetsInStep: both dialects have a migration of every number.
func TestMigrationSetsInStep(t *testing.T) {
	numbers := func(d Dialect) []string {
		ms, err := loadMigrations(d, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, fmt.Sprintf("%04d", m.version))
		}
		return out
	}
	lite, pg := numbers(SQLite), numbers(Postgres)
	if len(lite) == 0 || !reflect.DeepEqual(lite, pg) {
		t.Fatalf("migrations: sqlite %v, postgres %v", lite, pg)
	}
}

// openBoth opens a new SQLite database and a new PostgreSQL database,
// closed when the test ends.
func openBoth(t *testing.T) (lite, pg *DB) {
	t.Helper()
	ctx := context.Background()
	for i, target := range []string{filepath.Join(t.TempDir(), "t.db"), testpg.URL(t)} {
		db, err := Open(ctx, target, Options{Synchronous: "OFF"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if i == 0 {
			lite = db
		} else {
			pg = db
		}
	}
	return lite, pg
}

// TestSchemasMatch: both sets of migrations make the same tables with the
// same columns, in the same order, with the same nullability.
func TestSchemasMatch(t *testing.T) {
	lite, pg := openBoth(t)

	liteCols := columns(t, lite, `SELECT m.name, c.name, c."notnull" OR c.pk > 0
		FROM sqlite_master m, pragma_table_info(m.name) c
		WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, c.cid`)
	pgCols := columns(t, pg, `SELECT table_name, column_name, is_nullable = 'NO'
		FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`)
	if len(liteCols) < 20 {
		t.Fatalf("only %d tables in SQLite: %v", len(liteCols), keys(liteCols))
	}
	if !reflect.DeepEqual(keys(liteCols), keys(pgCols)) {
		t.Fatalf("tables differ:\nsqlite   %v\npostgres %v", keys(liteCols), keys(pgCols))
	}
	for table, cols := range liteCols {
		if !reflect.DeepEqual(cols, pgCols[table]) {
			t.Errorf("%s:\nsqlite   %v\npostgres %v", table, cols, pgCols[table])
		}
	}
}

// columns runs query, whose rows are (table, column, not null), and
// returns each table's columns in order.
func columns(t *testing.T, db *DB, query string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	rows, err := db.Read().Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var table, col string
		var notNull bool
		if err := rows.Scan(&table, &col, &notNull); err != nil {
			t.Fatal(err)
		}
		out[table] = append(out[table], column(col, notNull))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func column(name string, notNull bool) string {
	if notNull {
		return name + " NOT NULL"
	}
	return name
}

func keys(m map[string][]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestSerializableAcrossProcesses: two DBs on one PostgreSQL database (two
// instances) each read the number of contracts and insert the next code.
// With SQLite's single writer that read-then-write cannot interleave; on
// PostgreSQL the writers' lock, taken by each transaction before its first
// read, keeps it so (without it both would read the same count and the
// second insert would fail on the UNIQUE code).
func TestSerializableAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	url := testpg.URL(t)
	var dbs [2]*DB
	for i := range dbs {
		db, err := Open(ctx, url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
	}
	const per = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*per)
	for _, db := range dbs {
		for range per {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- db.Write(ctx, func(tx *Tx) error {
					var n int
					if err := tx.QueryRow(`SELECT COUNT(*) FROM contracts`).Scan(&n); err != nil {
						return err
					}
					_, err := tx.Exec(`INSERT INTO contracts(code, kek_recipient, created_at) VALUES (?, 'r', 0)`, fmt.Sprintf("C-%03d", n))
					return err
				})
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n, distinct int
	var last string
	dbs[0].Read().QueryRow(`SELECT COUNT(*), COUNT(DISTINCT code), MAX(code) FROM contracts`).Scan(&n, &distinct, &last)
	if n != 2*per || distinct != n || last != fmt.Sprintf("C-%03d", 2*per-1) {
		t.Fatalf("%d contracts, %d codes, last %s", n, distinct, last)
	}
}

func TestRewrite(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`SELECT a FROM t WHERE b = ? AND c = ?`, `SELECT a FROM t WHERE b = $1 AND c = $2`},
		{`SELECT ?2, ?1, ?`, `SELECT $2, $1, $3`},
		{`SELECT '?', "a?" FROM t WHERE x = ? -- why?
			AND y = ? /* ? */`, `SELECT '?', "a?" FROM t WHERE x = $1 -- why?
			AND y = $2 /* ? */`},
		{`SELECT 'it''s ?', ?`, `SELECT 'it''s ?', $1`},
		{`DO $$ SELECT '?' $$; SELECT ?`, `DO $$ SELECT '?' $$; SELECT $1`},
		{`id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))`, `id IN (SELECT CAST(value AS BIGINT) FROM json_array_elements_text($1))`},
		{`SELECT my_json_each(x)`, `SELECT my_json_each(x)`},
		{`SELECT 1`, `SELECT 1`},
	} {
		if got := Rewrite(c.in); got != c.want {
			t.Errorf("Rewrite(%q)\n = %q\nwant %q", c.in, got, c.want)
		}
	}
	if !strings.HasPrefix(Redact("postgres://u:secret@h/db"), "postgres://u:xxxxx@h/db") {
		t.Errorf("Redact kept the password: %s", Redact("postgres://u:secret@h/db"))
	}
}

// sqliteCatalogRE matches a statement that reads SQLite's own catalog.
var sqliteCatalogRE = regexp.MustCompile(`\b(sqlite_master|pragma_[a-z_]+)\b`)

// TestEveryStatementPrepares is the conformance check of the one SQL
// spelling: every string literal of the module's code (outside tests,
// test/, bench/, internal/seed — test helpers — and witness/, whose
// database is SQLite only) that SQLite
// prepares as a statement — which leaves out fragments of statements put
// together at run time — must prepare on PostgreSQL too, after Rewrite.
// PostgreSQL resolves every name and the type of every parameter when it
// prepares, so what prepares here does not fail on syntax, names or types
// when it runs.
func TestEveryStatementPrepares(t *testing.T) {
	ctx := context.Background()
	stmts := moduleSQL(t)
	lite, pg := openBoth(t)
	conn, err := pg.w.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	checked := 0
	for _, s := range stmts {
		st, err := lite.w.PrepareContext(ctx, s.sql)
		if err != nil {
			t.Logf("not a statement: %s: %.60q", s.where, s.sql)
			continue // a fragment, or SQLite's own (PRAGMA)
		}
		st.Close()
		if strings.HasPrefix(s.where, "database/") && sqliteCatalogRE.MatchString(s.sql) {
			// SQLite's catalog, read by this package on SQLite only
			// (copy.go); its PostgreSQL side reads information_schema.
			t.Logf("SQLite's catalog: %s: %.60q", s.where, s.sql)
			continue
		}
		checked++
		err = conn.Raw(func(dc any) error {
			_, err := dc.(*pgConn).c.Conn().Prepare(ctx, "", Rewrite(s.sql))
			return err
		})
		if err != nil {
			t.Errorf("%s: %v\n%s", s.where, err, s.sql)
		}
	}
	if checked < 150 {
		t.Fatalf("only %d statements checked of %d literals", checked, len(stmts))
	}
	t.Logf("%d statements prepared on both dialects", checked)
}

type sqlText struct{ sql, where string }

// moduleSQL returns the string literals of the module's code that start
// like an SQL statement.
func moduleSQL(t *testing.T) []sqlText {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	start := regexp.MustCompile(`(?is)^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\s`)
	var out []sqlText
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "test" || rel == "bench" || rel == "witness" || rel == "internal/seed" || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err == nil && start.MatchString(s) {
				out = append(out, sqlText{sql: s, where: fmt.Sprintf("%s:%d", rel, fset.Position(lit.Pos()).Line)})
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestErrorClasses: the two dialects' failures sort the same way, from the
// real engines (a UNIQUE violation of each) and from their codes.
func TestErrorClasses(t *testing.T) {
	ctx := context.Background()
	for _, target := range []string{filepath.Join(t.TempDir(), "t.db"), testpg.URL(t)} {
		db, err := Open(ctx, target, Options{Synchronous: "OFF"})
		if err != nil {
			t.Fatal(err)
		}
		insert := func() error {
			return db.Write(ctx, func(tx *Tx) error {
				_, err := tx.Exec(`INSERT INTO contracts(code, kek_recipient, created_at) VALUES ('dup', 'r', 0)`)
				return err
			})
		}
		if err := insert(); err != nil {
			t.Fatal(err)
		}
		if err := insert(); !IsUniqueViolation(err) || IsTransient(err) {
			t.Errorf("%s: duplicate code: %v (unique %v, transient %v)", db.Dialect(), err, IsUniqueViolation(err), IsTransient(err))
		}
		db.Close()
		if err := db.Write(ctx, func(*Tx) error { return nil }); !IsTransient(err) {
			t.Errorf("%s: write after close: %v", db.Dialect(), err)
		}
	}
	for _, c := range []struct {
		err       error
		transient bool
	}{
		{&pgconn.PgError{Code: "40001"}, true},
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "42P01"}, false},
		{fmt.Errorf("failed to take the writers' lock: %w", io.ErrUnexpectedEOF), true},
		{&net.OpError{Op: "read", Net: "unix", Err: syscall.ECONNRESET}, true},
		{errors.New("database is locked (5) (SQLITE_BUSY)"), true},
		{errors.New("no such table: x"), false},
	} {
		if IsTransient(c.err) != c.transient {
			t.Errorf("IsTransient(%v) = %v", c.err, !c.transient)
		}
	}
}

// TestWritersLock: on PostgreSQL a Write function runs on the connection
// that holds the writers' lock (taken with BEGIN, in the transaction),
// with the idle-in-transaction timeout set; the lock is free again once
// the Write has returned.
func TestWritersLock(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, testpg.URL(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const held = `SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
		AND ((classid::bigint << 32) | objid::bigint) = ?`
	var mine int
	var timeout string
	err = db.Write(ctx, func(tx *Tx) error {
		if err := tx.QueryRow(held+` AND pid = pg_backend_pid()`, int64(writersLockKey)).Scan(&mine); err != nil {
			return err
		}
		return tx.QueryRow(`SHOW idle_in_transaction_session_timeout`).Scan(&timeout)
	})
	if err != nil {
		t.Fatal(err)
	}
	if mine != 1 {
		t.Fatalf("the transaction's session holds the writers' lock %d times", mine)
	}
	if timeout != "1min" {
		t.Fatalf("idle_in_transaction_session_timeout = %s", timeout)
	}
	var any int
	if err := db.Read().QueryRow(held, int64(writersLockKey)).Scan(&any); err != nil || any != 0 {
		t.Fatalf("the writers' lock is held %d times after the Write (%v)", any, err)
	}
}

// TestWritersLockRefused: when the writers' lock cannot be taken with an
// ERROR that leaves the connection open (here lock_timeout, as an
// operator may set on the role; a statement_timeout or a cancelled wait
// is the same), the Write fails, and the connection — left inside the
// transaction its BEGIN opened, now aborted, since pgx closes a
// connection only on a connection error — is not used again: the next
// Write, once the lock is free, succeeds.
func TestWritersLockRefused(t *testing.T) {
	ctx := context.Background()
	url := testpg.URL(t)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	db, err := Open(ctx, url+sep+"lock_timeout=100", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	holder, err := OpenPlain(url)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	conn, err := holder.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(?)`, int64(writersLockKey)); err != nil {
		t.Fatal(err)
	}
	write := func() error {
		return db.Write(ctx, func(tx *Tx) error {
			_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS lock_refused (x INTEGER)`)
			return err
		})
	}
	var pe *pgconn.PgError
	if err := write(); !errors.As(err, &pe) || pe.Code != "55P03" {
		t.Fatalf("a Write while another session held the writers' lock: %v, want lock_not_available", err)
	}
	var unlocked bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_advisory_unlock(?)`, int64(writersLockKey)).Scan(&unlocked); err != nil || !unlocked {
		t.Fatalf("unlock: %v, %v", unlocked, err)
	}
	for i := range 3 {
		if err := write(); err != nil {
			t.Fatalf("write %d after the lock was freed: %v", i, err)
		}
	}
}
