// Package database is sealgate's metadata database: by default SQLite (pure Go,
// modernc.org/sqlite) in WAL mode, durable at every commit (see "Pipelined
// durability" below), with secure_delete=ON;
// PostgreSQL (pgx) when opened with a postgres:// URL (postgres.go). Versioned
// migrations, one set per dialect kept in step (migrations/sqlite,
// migrations/postgres), are embedded in the binary; writes go through a
// group-commit writer.
//
// All writes go through DB.Write, which runs the caller's function inside a
// transaction on the single writer connection. Functions submitted while a
// commit is in flight are batched into the next transaction, each inside its
// own SAVEPOINT, so that one fsync is shared by many SMTP sessions while each
// function still succeeds or fails on its own. Because there is exactly one
// writer, everything a function reads and writes is serialized with every
// other writer: the ledger relies on this to append without forking its tree.
// On PostgreSQL the same writer batches the functions of this process, and
// each batch transaction holds an advisory lock shared by every instance on
// the database for its length, so that writes of other processes keep that
// promise too (see postgres.go).
//
// Reads that need no transactional consistency with a write use DB.Read.
//
// # Pipelined durability (SQLite)
//
// With the default Options.Synchronous ("FULL") the writer connection runs
// at synchronous=NORMAL after the migrations: a commit writes its WAL frames
// without an fsync, and a second goroutine (syncer) fsyncs the WAL file
// before any function of that batch is answered. While it waits for the
// disk, the writer already runs the next batch, so the fsync of one batch
// overlaps the work of the next and one fsync covers every batch committed
// before it started. Write still returns only once its transaction is on
// disk: what an answered caller wrote survives a power loss. NORMAL keeps
// the WAL's own ordering safe (SQLite fsyncs the WAL before a checkpoint
// copies it into the database, the database before the WAL is reused, and
// a new WAL header before its first frame), so an unanswered batch lost by
// a power cut leaves a consistent database behind. Two things differ from
// SQLite's synchronous=FULL: a reader may see a committed batch some
// hundred microseconds before it is durable (a power loss in that window
// drops it, and its callers were never answered) — what acts outside the
// process on what it read (the delivery of queued mail) first calls
// WaitDurable, which returns once every batch begun before it is on disk;
// and an fsync that fails
// leaves the batch committed in memory but not known to be on disk, so the
// database refuses every later write (ErrNotDurable) until the process is
// restarted and SQLite recovers from what the disk holds.
package database

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationFiles embed.FS

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("database: database closed")

// ErrNotDurable is returned by Write once an fsync of the write-ahead log
// has failed: what was committed since the last good fsync may not be on
// disk, and no later write is accepted until the process restarts (see
// "Pipelined durability").
var ErrNotDurable = errors.New("database: write-ahead log could not be synced to disk; restart sealgate")

// Options tunes the database. The zero value is the production default.
type Options struct {
	// MaxBatch caps how many Write functions share one transaction (default 128).
	MaxBatch int
	// Synchronous is the SQLite durability (default "FULL"): "FULL" makes
	// every commit durable before Write returns, with the WAL fsyncs
	// pipelined (see "Pipelined durability"); "EXTRA" leaves the fsync to
	// SQLite at each commit, not overlapped (the baseline of the append
	// benchmarks); "NORMAL" and "OFF" are SQLite's pragmas, not durable —
	// tests and benchmarks of CPU cost only, never production.
	Synchronous string
	// Failed, if set, is told of every failure of the database itself, by
	// operation (Op*): a transaction that cannot begin or commit, a
	// statement that fails. Not failures of the database, and not told:
	// no rows, a cancelled context, and errors a Write function returns
	// of its own. A failure that makes a batch run again (see Write) is
	// told once, in the first run: a function that told one there is
	// quiet in the next. (The runs of the test knob RerunEveryBatch that
	// it rolls back tell nothing.)
	Failed func(op string)
	// beforeWALSync, if set, is called by the syncer just before each
	// fsync of the WAL (tests: what the WAL holds then is what that fsync
	// makes durable).
	beforeWALSync func(walPath string)
	// RerunEveryBatch (tests only) runs the functions of every batch once
	// more before the run that counts, in a transaction that is then
	// rolled back: what a batch does when one of its functions fails, or
	// on PostgreSQL after a serialization failure (see Write). A function
	// that is not safe to run twice — it accumulates results across runs,
	// or acts outside the database before AfterCommit — then misbehaves
	// in any test that calls it, not only in the rare batch that reruns.
	// internal/testdb sets it from SEALGATE_TEST_RERUN.
	RerunEveryBatch bool
	// Migrations are the NNNN_name.sql files of another database than
	// sealgate's metadata (default: the embedded migrations/<dialect>
	// folder).
	// `sealgate witness` keeps its state this way, in its own file.
	Migrations fs.FS
}

// Operations named to Options.Failed.
const (
	OpBegin  = "begin"
	OpCommit = "commit"
	OpExec   = "exec"
	OpQuery  = "query"
)

// failed reports err to the Failed hook (see Options) and returns it.
func failed(hook func(string), op string, err error) error {
	if hook != nil && isFailure(err) {
		hook(op)
	}
	return err
}

// isFailure tells the failures of the database itself from the errors the
// Failed hook is not told (see Options).
func isFailure(err error) bool {
	return err != nil && !errors.Is(err, sql.ErrNoRows) && !errors.Is(err, context.Canceled)
}

// DB is the metadata database.
type DB struct {
	dialect Dialect
	w       *sql.DB // one connection: every write
	r       *Reader // read pool
	locks   *sql.DB // PostgreSQL: the connections that hold advisory locks (TryLock)
	direct  *sql.DB // PostgreSQL: statements that write outside the writer (Statement)
	reqs    chan *writeReq
	done    chan struct{}
	quit    chan struct{}
	opts    Options
	// walPath is the SQLite write-ahead log the syncer fsyncs ("": the
	// commit itself is as durable as Options.Synchronous says).
	walPath string
	// toSync carries committed batches from the writer to the syncer.
	toSync chan *committed
	// syncErr is set by the syncer when an fsync failed (ErrNotDurable).
	syncErr atomic.Pointer[error]
	// busy is set by the writer from the first function of a batch until
	// just before the batch goes to the syncer.
	busy atomic.Bool
	// begun counts the batches the writer has begun (pipelined only);
	// durable is the count of those answered after a good fsync (or as
	// not committed); durableCh is closed and replaced whenever durable
	// moves or the syncer fails (WaitDurable).
	begun, durable atomic.Int64
	durableMu      sync.Mutex
	durableCh      chan struct{}
	// stmts caches prepared statements of the writer connection; used
	// only on the writer goroutine.
	stmts map[string]*sql.Stmt
	noted map[string]struct{}
}

// Querier is what a read-only query needs: a *Reader (DB.Read), a *Tx
// inside a write, or a *sql.DB. Packages that own a table take it for
// their lookups.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Tx is the transaction handed to Write functions. It embeds *sql.Tx; use
// AfterCommit for side effects that must happen only once the data is durable.
type Tx struct {
	*sql.Tx
	after  []func()
	db     *DB
	shared *txShared // the values of the whole transaction (Value)
	// quiet: the failures of this run of the function are not told to
	// Options.Failed (told already, or a run the test knob discards);
	// told: this run of the function told one.
	quiet, told bool
}

// txShared is what the functions batched in one transaction share.
type txShared struct {
	values  map[any]any
	pending []pendingWrite // registered by Defer, in order
	// flushErr is the first failure of a deferred write: the
	// transaction cannot commit.
	flushErr error
}

// pendingWrite is a write a function deferred (Defer).
type pendingWrite struct {
	key    any
	tables []string
	fn     func(ctx context.Context) error
}

// Value returns what a function of this transaction (this one or an
// earlier one of its batch) stored under key with SetValue; nil if
// nothing. The values are forgotten whenever a function's changes are
// rolled back (its savepoint), and end with the transaction: a value that
// describes rows this transaction read or wrote — a cache — stays true as
// long as it is there.
func (tx *Tx) Value(key any) any {
	if tx.shared == nil {
		return nil
	}
	return tx.shared.values[key]
}

// SetValue stores v under key for the rest of the transaction (see
// Value); a nil v removes it.
func (tx *Tx) SetValue(key, v any) {
	if tx.shared == nil {
		tx.shared = &txShared{}
	}
	if v == nil {
		delete(tx.shared.values, key)
		return
	}
	if tx.shared.values == nil {
		tx.shared.values = map[any]any{}
	}
	tx.shared.values[key] = v
}

// ExecContext runs query with a statement prepared once per process and
// reused (SQLite's parser was a tenth of the CPU of accepting a message).
func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (res sql.Result, err error) {
	if err := tx.flushFor(ctx, query); err != nil {
		return nil, err // told by the deferred write's own statement
	}
	defer func() { tx.failed(OpExec, err) }()
	if st := tx.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.Tx.ExecContext(ctx, query, args...)
}

// QueryContext is the cached-statement version of sql.Tx.QueryContext.
func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (rows *sql.Rows, err error) {
	if err := tx.flushFor(ctx, query); err != nil {
		return nil, err // told by the deferred write's own statement
	}
	defer func() { tx.failed(OpQuery, err) }()
	if st := tx.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return tx.Tx.QueryContext(ctx, query, args...)
}

// QueryRowContext is the cached-statement version of sql.Tx.QueryRowContext.
func (tx *Tx) QueryRowContext(ctx context.Context, query string, args ...any) (row *sql.Row) {
	defer func() { tx.failed(OpQuery, row.Err()) }()
	// A deferred write that fails here leaves the error for the commit
	// (flushErr); on PostgreSQL the query then fails too (the
	// transaction is aborted).
	tx.flushFor(ctx, query)
	if st := tx.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.Tx.QueryRowContext(ctx, query, args...)
}

// failed tells the Failed hook of a statement's failure, unless this run
// of the function is quiet.
func (tx *Tx) failed(op string, err error) {
	if tx.quiet || tx.db == nil || tx.db.opts.Failed == nil || !isFailure(err) {
		return
	}
	tx.told = true
	tx.db.opts.Failed(op)
}

// Exec, Query and QueryRow use the cache too.
func (tx *Tx) Exec(query string, args ...any) (sql.Result, error) {
	return tx.ExecContext(context.Background(), query, args...)
}

// Query is QueryContext with a background context.
func (tx *Tx) Query(query string, args ...any) (*sql.Rows, error) {
	return tx.QueryContext(context.Background(), query, args...)
}

// QueryRow is QueryRowContext with a background context.
func (tx *Tx) QueryRow(query string, args ...any) *sql.Row {
	return tx.QueryRowContext(context.Background(), query, args...)
}

// stmt returns the transaction-bound form of the cached statement for
// query, or nil when it is not cached yet. A statement cannot be prepared
// on the pool while this transaction holds the only writer connection, so
// a new query is noted and prepared by the writer goroutine after the
// batch commits (see prepareNoted); the next transaction reuses it. It runs
// on the writer goroutine only, so the cache needs no lock. A query whose
// preparation failed (several statements in one string) stays uncached.
func (tx *Tx) stmt(ctx context.Context, query string) *sql.Stmt {
	if tx.db == nil || tx.db.stmts == nil {
		return nil
	}
	st, ok := tx.db.stmts[query]
	if !ok {
		if len(tx.db.noted) < maxCachedStmts {
			tx.db.noted[query] = struct{}{}
		}
		return nil
	}
	if st == nil {
		return nil
	}
	return tx.Tx.StmtContext(ctx, st)
}

// prepareNoted prepares the queries noted during the last batch. It runs
// on the writer goroutine between batches, when the connection is free.
func (db *DB) prepareNoted(ctx context.Context) {
	if db.stmts == nil {
		return
	}
	for query := range db.noted {
		delete(db.noted, query)
		if _, ok := db.stmts[query]; ok || len(db.stmts) >= maxCachedStmts {
			continue
		}
		st, err := db.w.PrepareContext(ctx, query)
		if err != nil {
			st = nil
		}
		db.stmts[query] = st
	}
}

const maxCachedStmts = 512

// Defer registers fn, under key, to make writes to tables that the
// functions of this transaction have deferred — rows kept in a Value,
// written by fn in one statement where each function would have made one
// of its own (on PostgreSQL a round trip each, made while every
// instance's writers wait). A key registered again keeps its first fn.
// The registered writes run, in order, before any statement of the
// transaction that names one of the tables (ExecContext, QueryContext,
// QueryRowContext and their short forms look: so the transaction reads
// what it wrote), when Flush is called, and before the transaction
// commits: after the last function of a batch that runs without
// savepoints (a batch's first run; if one fails the batch runs again,
// each function in its savepoint), and otherwise when the function
// returns, inside its savepoint. A failed write fails its functions as
// their own error would, and the transaction does not commit. Like the
// values, what is registered is forgotten when a function's changes are
// rolled back.
func (tx *Tx) Defer(key any, tables []string, fn func(ctx context.Context) error) {
	if tx.shared == nil {
		tx.shared = &txShared{}
	}
	for _, p := range tx.shared.pending {
		if p.key == key {
			return
		}
	}
	tx.shared.pending = append(tx.shared.pending, pendingWrite{key, tables, fn})
}

// Flush runs the writes registered with Defer, now.
func (tx *Tx) Flush(ctx context.Context) error {
	if tx.shared == nil {
		return nil
	}
	return tx.shared.flush(ctx)
}

// flushFor runs the deferred writes before query if it names one of
// their tables.
func (tx *Tx) flushFor(ctx context.Context, query string) error {
	if tx.shared == nil || len(tx.shared.pending) == 0 {
		return nil
	}
	for _, p := range tx.shared.pending {
		for _, t := range p.tables {
			if strings.Contains(query, t) {
				return tx.shared.flush(ctx)
			}
		}
	}
	return nil
}

func (s *txShared) flush(ctx context.Context) error {
	for s.flushErr == nil && len(s.pending) > 0 {
		p := s.pending[0]
		s.pending = s.pending[1:]
		if err := p.fn(ctx); err != nil {
			s.pending, s.flushErr = nil, err
		}
	}
	return s.flushErr
}

// AfterCommit registers f to run after the transaction containing this
// function has committed durably. It is not run if the function fails or
// the commit fails.
func (tx *Tx) AfterCommit(f func()) { tx.after = append(tx.after, f) }

type writeReq struct {
	ctx  context.Context
	fn   func(tx *Tx) error
	errc chan error
}

func dsn(path string, extra ...string) string {
	v := url.Values{}
	v.Add("_pragma", "busy_timeout(10000)")
	v.Add("_pragma", "foreign_keys(ON)")
	v.Add("_pragma", "secure_delete(ON)")
	v.Add("_pragma", "temp_store(MEMORY)")
	for _, e := range extra {
		v.Add("_pragma", e)
	}
	return "file:" + path + "?" + v.Encode()
}

// Open opens the database at target and applies pending migrations: a
// postgres:// (or postgresql://) URL opens PostgreSQL, anything else is the
// path of a SQLite file, created if needed.
func Open(ctx context.Context, target string, opts Options) (*DB, error) {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 128
	}
	if IsURL(target) {
		if opts.Migrations != nil {
			return nil, errors.New("database: other migrations than sealgate's are for SQLite only")
		}
		return openPostgres(ctx, target, opts)
	}
	return openSQLite(ctx, target, opts)
}

// openSQLite opens (creating if needed) the SQLite database at path.
func openSQLite(ctx context.Context, path string, opts Options) (*DB, error) {
	if opts.Synchronous == "" {
		opts.Synchronous = "FULL"
	}
	switch opts.Synchronous {
	case "FULL", "NORMAL", "OFF", "EXTRA":
	default:
		return nil, fmt.Errorf("database: invalid synchronous mode %q", opts.Synchronous)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("failed to create database directory: %w", err)
	}
	mode := opts.Synchronous
	if mode == "EXTRA" {
		mode = "FULL" // in WAL mode EXTRA syncs exactly as FULL does
	}
	w, err := sql.Open("sqlite", dsn(path, "journal_mode(WAL)", "synchronous("+mode+")")+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("failed to open database: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("failed to open database %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		w.Close()
		return nil, fmt.Errorf("failed to restrict database permissions: %w", err)
	}
	if err := migrate(ctx, w, SQLite, opts.Migrations); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", dsn(path, "query_only(ON)"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("failed to open database for reading: %w", err)
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8) // keep connections (and their prepared statements)
	walPath := ""
	if opts.Synchronous == "FULL" {
		// The migrations ran at FULL. From here on the syncer makes each
		// commit durable (see "Pipelined durability"). Should database/sql
		// ever reopen the writer connection, it opens at FULL again: only
		// slower.
		if _, err := w.ExecContext(ctx, "PRAGMA synchronous=NORMAL"); err != nil {
			w.Close()
			r.Close()
			return nil, fmt.Errorf("failed to set synchronous mode: %w", err)
		}
		walPath = path + "-wal"
	}
	return newDB(SQLite, w, r, opts, walPath), nil
}

// newDB starts the writer of a database whose writer pool w and read pool
// r are open and migrated; with walPath, the syncer that fsyncs that WAL
// file before answering a committed batch.
func newDB(d Dialect, w, r *sql.DB, opts Options, walPath string) *DB {
	db := &DB{
		walPath: walPath,
		dialect: d,
		w:       w,
		r:       &Reader{DB: r, failed: opts.Failed},
		reqs:    make(chan *writeReq),
		done:    make(chan struct{}),
		quit:    make(chan struct{}),
		opts:    opts,
	}
	if d == SQLite {
		// pgx keeps a statement cache of its own on each connection.
		db.r.stmts = map[string]*sql.Stmt{}
		db.stmts = map[string]*sql.Stmt{}
		db.noted = map[string]struct{}{}
	}
	if walPath != "" {
		db.toSync = make(chan *committed, 64)
		db.durableCh = make(chan struct{})
	}
	go db.writer()
	return db
}

// Dialect reports which engine the database runs on.
func (db *DB) Dialect() Dialect { return db.dialect }

// Dialect reports which engine the transaction runs on.
func (tx *Tx) Dialect() Dialect { return tx.db.dialect }

// Read returns the read-only connection pool.
func (db *DB) Read() *Reader { return db.r }

// Reader is the read-only connection pool: a *sql.DB whose QueryContext and
// QueryRowContext (and their context-less forms) reuse prepared statements
// — on the pool, so each connection prepares a query once. Safe for
// concurrent use.
type Reader struct {
	*sql.DB
	mu     sync.Mutex
	stmts  map[string]*sql.Stmt
	failed func(op string) // Options.Failed
}

// QueryContext is sql.DB.QueryContext with a cached statement.
func (r *Reader) QueryContext(ctx context.Context, query string, args ...any) (rows *sql.Rows, err error) {
	defer func() { failed(r.failed, OpQuery, err) }()
	if st := r.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return r.DB.QueryContext(ctx, query, args...)
}

// QueryRowContext is sql.DB.QueryRowContext with a cached statement.
func (r *Reader) QueryRowContext(ctx context.Context, query string, args ...any) (row *sql.Row) {
	defer func() { failed(r.failed, OpQuery, row.Err()) }()
	if st := r.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return r.DB.QueryRowContext(ctx, query, args...)
}

// Query is QueryContext with a background context.
func (r *Reader) Query(query string, args ...any) (*sql.Rows, error) {
	return r.QueryContext(context.Background(), query, args...)
}

// QueryRow is QueryRowContext with a background context.
func (r *Reader) QueryRow(query string, args ...any) *sql.Row {
	return r.QueryRowContext(context.Background(), query, args...)
}

// stmt returns the cached statement for query, preparing it the first
// time; nil (use the uncached path) when preparation fails or the cache is
// full. Failures are not cached: they may be transient.
func (r *Reader) stmt(ctx context.Context, query string) *sql.Stmt {
	if r.stmts == nil {
		return nil
	}
	r.mu.Lock()
	st, ok := r.stmts[query]
	full := len(r.stmts) >= maxCachedStmts
	r.mu.Unlock()
	if ok || full {
		return st
	}
	st, err := r.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.stmts[query]; ok {
		st.Close()
		return old
	}
	r.stmts[query] = st
	return st
}

// Close closes the cached statements and the pool.
func (r *Reader) Close() error {
	r.mu.Lock()
	for q, st := range r.stmts {
		st.Close()
		delete(r.stmts, q)
	}
	r.mu.Unlock()
	return r.DB.Close()
}

// Write runs fn in a write transaction and returns once the transaction has
// committed durably (or failed). fn runs on the writer goroutine, serialized
// with every other write; it must not block on anything but the database and
// must not call Write itself. If fn returns an error (or panics), its
// changes are rolled back and the error is returned; other functions
// batched in the same transaction are not affected. fn may run more than
// once: a batch runs its functions first without savepoints, and again,
// each in its own, when one fails (see tryBatch; on PostgreSQL also after
// a serialization failure). Effects outside the database belong in
// AfterCommit, which runs once, after the commit that counted, and
// results fn hands out are assigned, not accumulated.
func (db *DB) Write(ctx context.Context, fn func(tx *Tx) error) error {
	req := &writeReq{ctx: ctx, fn: fn, errc: make(chan error, 1)}
	select {
	case db.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-db.quit:
		return ErrClosed
	}
	return <-req.errc
}

// Close stops the writer after pending writes and closes the connections.
func (db *DB) Close() error {
	select {
	case <-db.quit:
		return nil
	default:
	}
	close(db.quit)
	<-db.done
	for _, st := range db.stmts {
		if st != nil {
			st.Close()
		}
	}
	var lerr, derr error
	if db.locks != nil {
		lerr = db.locks.Close()
	}
	if db.direct != nil {
		derr = db.direct.Close()
	}
	return errors.Join(db.r.Close(), db.w.Close(), lerr, derr)
}

func (db *DB) writer() {
	defer close(db.done)
	if db.toSync != nil {
		synced := make(chan struct{})
		go db.syncer(synced)
		defer func() {
			close(db.toSync)
			<-synced
		}()
	}
	for {
		var batch []*writeReq
		select {
		case req := <-db.reqs:
			batch = append(batch, req)
		case <-db.quit:
			return
		}
		db.busy.Store(true)
		// Let the writers just released by the previous commit submit
		// their next functions (they are runnable, not yet running),
		// then take whatever is waiting: all of it shares one fsync.
		// (Waiting on a timer instead was measured to lose: 2.5k vs 5.5k
		// appends/s with 8 writers.)
		for round := 0; round < 4 && len(batch) < db.opts.MaxBatch; round++ {
			runtime.Gosched()
			n := len(batch)
		fill:
			for len(batch) < db.opts.MaxBatch {
				select {
				case req := <-db.reqs:
					batch = append(batch, req)
				default:
					break fill
				}
			}
			if len(batch) == n {
				break // nobody else is coming
			}
		}
		db.runBatch(batch)
	}
}

func (db *DB) runBatch(batch []*writeReq) {
	ctx := context.Background()
	defer db.prepareNoted(ctx)
	if db.toSync != nil {
		// Pipelined: every batch, committed or not, goes to the syncer,
		// which answers them in order (see syncer).
		c := &committed{batch: batch, seq: db.begun.Add(1)}
		if p := db.syncErr.Load(); p != nil {
			c.err = *p
		} else {
			c.errs, c.txs, c.err = db.tryBatch(ctx, batch)
		}
		db.busy.Store(false)
		db.toSync <- c
		return
	}
	for attempt := 1; ; attempt++ {
		errs, txs, err := db.tryBatch(ctx, batch)
		if err != nil && db.dialect == Postgres && retryable(err) && attempt < maxAttempts {
			continue // another process's transaction got there first: run the batch again
		}
		(&committed{batch: batch, errs: errs, txs: txs, err: err}).answer(nil)
		return
	}
}

// committed is a batch whose transaction has run, waiting to be answered.
type committed struct {
	seq   int64 // pipelined: the batch's number (DB.begun)
	batch []*writeReq
	errs  []error // each function's own result
	txs   []*Tx
	err   error // the whole batch failed (not committed)
}

// answer tells each caller of the batch its result, or an error for all
// of them: the batch's own (not committed) or err (not known to be
// durable); the AfterCommit functions of those that succeeded run first.
func (c *committed) answer(err error) {
	if c.err != nil {
		err = c.err
	}
	for i, req := range c.batch {
		if err != nil {
			req.errc <- err
			continue
		}
		if c.errs[i] == nil {
			for _, f := range c.txs[i].after {
				f()
			}
		}
		req.errc <- c.errs[i]
	}
}

// syncer answers the batches the writer ran, each committed one after an
// fsync of the WAL that began after its commit: it takes every batch run
// so far, fsyncs once, answers them all, and meanwhile the writer runs the
// next batch. Before it fsyncs it lets the callers it just answered submit
// again (as the writer does) and, if the writer has a batch under way,
// waits for that batch to be included: an fsync then covers as many
// callers as one of a writer that waits for its own fsync would, and
// never runs alone while a commit it could have covered is a moment away.
// After a failed fsync it fsyncs no more (a second fsync may report
// success for pages the kernel already dropped): every batch is answered
// ErrNotDurable.
func (db *DB) syncer(done chan<- struct{}) {
	defer close(done)
	var wal *os.File
	defer func() {
		if wal != nil {
			wal.Close()
		}
	}()
	for c := range db.toSync {
		group := []*committed{c}
	more:
		for {
			select {
			case c, ok := <-db.toSync:
				if !ok {
					break more
				}
				group = append(group, c)
				continue
			default:
			}
			for range 4 {
				runtime.Gosched()
			}
			if !db.busy.Load() {
				break
			}
			// The writer's batch is under way: it is sent here when done
			// (busy is cleared before the send).
			c, ok := <-db.toSync
			if !ok {
				break
			}
			group = append(group, c)
		}
		var err error
		if p := db.syncErr.Load(); p != nil {
			err = *p
		} else if wal, err = db.syncWAL(wal); err != nil {
			failed(db.opts.Failed, OpCommit, err)
			err = fmt.Errorf("%w: %w", ErrNotDurable, err)
			db.syncErr.Store(&err)
		}
		for _, c := range group {
			c.answer(err)
		}
		if err == nil {
			db.durable.Store(group[len(group)-1].seq)
		}
		db.durableMu.Lock()
		close(db.durableCh)
		db.durableCh = make(chan struct{})
		db.durableMu.Unlock()
	}
}

// WaitDurable returns once every write transaction begun before the call
// is on disk (committed and its WAL fsynced) or known not committed. Rows
// a reader sees after it are durable: with the pipelined commit a reader
// can see a committed batch a moment before its fsync (see "Pipelined
// durability"), so whatever acts on what it read outside this process —
// the delivery of a queued message — calls WaitDurable first. It returns
// at once on PostgreSQL and without the pipeline; ErrNotDurable if an
// fsync failed. It must not be called from a Write function (it would
// wait for its own batch).
func (db *DB) WaitDurable(ctx context.Context) error {
	if db.toSync == nil {
		return nil
	}
	target := db.begun.Load()
	for {
		db.durableMu.Lock()
		ch := db.durableCh
		db.durableMu.Unlock()
		if p := db.syncErr.Load(); p != nil {
			return *p
		}
		if db.durable.Load() >= target {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-db.done:
			return ErrClosed
		}
	}
}

// syncWAL fsyncs the WAL through wal (see syncFile).
func (db *DB) syncWAL(wal *os.File) (*os.File, error) {
	if db.opts.beforeWALSync != nil {
		db.opts.beforeWALSync(db.walPath)
	}
	return syncFile(wal, db.walPath)
}

// syncFile fsyncs the file at path through f, an open descriptor of it
// kept between calls (SQLite holds no lock on its WAL file, so opening
// and closing one releases none of SQLite's locks); f is reopened when
// path no longer names the file f has open.
func syncFile(f *os.File, path string) (*os.File, error) {
	if f != nil {
		cur, err1 := os.Stat(path)
		open, err2 := f.Stat()
		if err1 != nil || err2 != nil || !os.SameFile(cur, open) {
			f.Close()
			f = nil
		}
	}
	if f == nil {
		var err error
		if f, err = os.Open(path); err != nil {
			return nil, fmt.Errorf("failed to open the write-ahead log: %w", err)
		}
	}
	if err := fdatasync(f); err != nil {
		return f, fmt.Errorf("failed to sync the write-ahead log: %w", err)
	}
	return f, nil
}

// tryBatch runs the functions of batch in one transaction and commits it.
// It returns each function's error, or an error of the whole batch: the
// transaction could not begin or commit, or (PostgreSQL) a function met a
// serialization failure, which only a new run of the whole batch cures.
func (db *DB) tryBatch(ctx context.Context, batch []*writeReq) ([]error, []*Tx, error) {
	if db.opts.RerunEveryBatch {
		if err := db.discardedRun(ctx, batch); err != nil {
			return nil, nil, err
		}
	}
	// On PostgreSQL the transaction holds the writers' lock (see
	// postgres.go).
	sqlTx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to begin transaction: %w", failed(db.opts.Failed, OpBegin, err))
	}
	errs := make([]error, len(batch))
	txs := make([]*Tx, len(batch))
	shared := &txShared{}
	if len(batch) == 1 {
		// Alone in its transaction: no savepoint needed (they cost a
		// copy of every page touched); a failure rolls the whole
		// transaction back.
		req := batch[0]
		txs[0] = &Tx{Tx: sqlTx, db: db, shared: shared}
		err := req.ctx.Err()
		if err == nil {
			err = runFn(txs[0], req.fn)
		}
		if err == nil {
			err = shared.flush(req.ctx)
		}
		if err != nil {
			if rerr := sqlTx.Rollback(); rerr != nil {
				err = errors.Join(err, fmt.Errorf("failed to roll back: %w", rerr))
			}
			if db.dialect == Postgres && retryable(err) {
				return nil, nil, err
			}
			errs[0] = err
			return errs, txs, nil
		}
	} else {
		// The functions run first without savepoints (on
		// PostgreSQL each costs a round trip; on SQLite its
		// statements and a copy of every page the function
		// touches: a batch of 8 ledger appends took 323–427 µs
		// with them, 277–300 µs without); if one fails, the batch
		// runs again from a new transaction, each function in its
		// own savepoint. Functions are run more than once here as
		// for a serialization failure (see postgres.go and Write).
		err := runAll(sqlTx, db, batch, txs, shared)
		if err == nil {
			err = shared.flush(ctx)
		}
		if err == nil {
			return db.commit(sqlTx, txs, batch)
		}
		sqlTx.Rollback()
		if retryable(err) {
			return nil, nil, err
		}
		if sqlTx, err = db.w.BeginTx(ctx, nil); err != nil {
			return nil, nil, fmt.Errorf("failed to begin transaction: %w", failed(db.opts.Failed, OpBegin, err))
		}
		shared = &txShared{}
		first := slices.Clone(txs)
		for i, req := range batch {
			if err := req.ctx.Err(); err != nil {
				errs[i] = err
				continue
			}
			// A function that told a failure in the first run (its
			// statements', or its deferred writes') runs quiet: it
			// meets the same one again (Options.Failed).
			quiet := first[i] != nil && first[i].told
			txs[i] = &Tx{Tx: sqlTx, db: db, shared: shared, quiet: quiet}
			errs[i] = runSavepoint(req.ctx, txs[i], req.fn)
			if db.dialect == Postgres && retryable(errs[i]) {
				sqlTx.Rollback()
				return nil, nil, errs[i]
			}
		}
	}
	if err := sqlTx.Commit(); err != nil {
		return nil, nil, fmt.Errorf("failed to commit: %w", failed(db.opts.Failed, OpCommit, err))
	}
	return errs, txs, nil
}

// discardedRun runs every function of batch in a transaction that it
// then rolls back (Options.RerunEveryBatch), each in its savepoint so
// that one that fails does not keep the next from running, deferred
// writes flushed. Their Tx values, and the AfterCommit functions they
// registered, are dropped with it. It returns an error only when the
// transaction cannot begin or, on PostgreSQL, on a serialization failure
// (the batch then runs again, as after any).
func (db *DB) discardedRun(ctx context.Context, batch []*writeReq) error {
	sqlTx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("failed to begin transaction: %w", failed(db.opts.Failed, OpBegin, err))
	}
	defer sqlTx.Rollback()
	shared := &txShared{}
	for _, req := range batch {
		if req.ctx.Err() != nil {
			continue
		}
		err := runSavepoint(req.ctx, &Tx{Tx: sqlTx, db: db, shared: shared, quiet: true}, req.fn)
		if db.dialect == Postgres && retryable(err) {
			return err
		}
	}
	return nil
}

// runAll runs the functions of batch in sqlTx one after the other, no
// savepoints, and stops at the first that fails. Functions whose context
// is done are skipped (their error is set at commit: see commit).
func runAll(sqlTx *sql.Tx, db *DB, batch []*writeReq, txs []*Tx, shared *txShared) error {
	for i, req := range batch {
		if req.ctx.Err() != nil {
			continue
		}
		txs[i] = &Tx{Tx: sqlTx, db: db, shared: shared}
		if err := runFn(txs[i], req.fn); err != nil {
			return err
		}
	}
	return nil
}

// commit commits the batch run by runAll.
func (db *DB) commit(sqlTx *sql.Tx, txs []*Tx, batch []*writeReq) ([]error, []*Tx, error) {
	errs := make([]error, len(batch))
	for i := range batch {
		if txs[i] == nil {
			errs[i] = batch[i].ctx.Err()
		}
	}
	if err := sqlTx.Commit(); err != nil {
		return nil, nil, fmt.Errorf("failed to commit: %w", failed(db.opts.Failed, OpCommit, err))
	}
	return errs, txs, nil
}

// control runs a savepoint statement for the batch; its failure is told
// to Options.Failed even when the function's own are not (quiet).
func (tx *Tx) control(ctx context.Context, query string) error {
	quiet := tx.quiet
	tx.quiet = false
	defer func() { tx.quiet = quiet }()
	_, err := tx.ExecContext(ctx, query)
	return err
}

func runSavepoint(ctx context.Context, tx *Tx, fn func(*Tx) error) (err error) {
	if err := tx.control(ctx, "SAVEPOINT w"); err != nil {
		return fmt.Errorf("failed to open savepoint: %w", err)
	}
	defer func() {
		if err != nil {
			if rerr := tx.control(context.Background(), "ROLLBACK TO w"); rerr != nil {
				err = errors.Join(err, fmt.Errorf("failed to roll back savepoint: %w", rerr))
			}
			tx.after = nil
			if tx.shared != nil {
				// They may describe rows just rolled back, or rows
				// whose writes were deferred.
				tx.shared.values, tx.shared.pending, tx.shared.flushErr = nil, nil, nil
			}
		}
		if tx.db != nil && tx.db.dialect == Postgres {
			// The savepoint stays open and the batch's next function
			// opens its own inside it: one round trip less per
			// function. ROLLBACK TO w undoes the innermost, that
			// function's; COMMIT commits them all.
			return
		}
		if rerr := tx.control(context.Background(), "RELEASE w"); rerr != nil && err == nil {
			err = fmt.Errorf("failed to release savepoint: %w", rerr)
		}
	}()
	if err := runFn(tx, fn); err != nil {
		return err
	}
	if tx.shared != nil {
		return tx.shared.flush(ctx)
	}
	return nil
}

// runFn runs fn, turning a panic into an error.
func runFn(tx *Tx, fn func(*Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("database: write function panicked: %v", p)
		}
	}()
	return fn(tx)
}

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the NNNN_name.sql files of dir (nil: the embedded
// migrations/<dialect> folder).
func loadMigrations(d Dialect, dir fs.FS) ([]migration, error) {
	if dir == nil {
		sub, err := fs.Sub(migrationFiles, "migrations/"+d.String())
		if err != nil {
			return nil, fmt.Errorf("failed to read migrations: %w", err)
		}
		dir = sub
	}
	entries, err := fs.ReadDir(dir, ".")
	if err != nil {
		return nil, fmt.Errorf("failed to read migrations: %w", err)
	}
	var ms []migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("database: migration %q is not named NNNN_name.sql", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("database: migrations %q and %q share version %d", prev, name, v)
		}
		seen[v] = name
		b, err := fs.ReadFile(dir, name)
		if err != nil {
			return nil, fmt.Errorf("failed to read migration %s: %w", name, err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// migrationLockKey is the PostgreSQL advisory lock that instances starting
// at the same time take to migrate one after the other.
const migrationLockKey = 0x5ea19a7e

// migrator is what migrations need of a *sql.DB or *sql.Conn.
type migrator interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// migrate applies the pending migrations of dialect d (dir: see
// loadMigrations).
func migrate(ctx context.Context, db *sql.DB, d Dialect, dir fs.FS) error {
	ms, err := loadMigrations(d, dir)
	if err != nil {
		return err
	}
	if d == Postgres {
		return withAdvisoryLock(ctx, db, migrationLockKey, func(conn *sql.Conn) error {
			return applyMigrations(ctx, conn, ms)
		})
	}
	return applyMigrations(ctx, db, ms)
}

func applyMigrations(ctx context.Context, db migrator, ms []migration) error {

	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("failed to create schema_migrations: %w", err)
	}
	var current int
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("failed to read schema version: %w", err)
	}
	latest := 0
	if len(ms) > 0 {
		latest = ms[len(ms)-1].version
	}
	if current > latest {
		return fmt.Errorf("database: database schema version %d is newer than this binary (%d); upgrade sealgate", current, latest)
	}
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("failed to begin migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			tx.Rollback()
			return fmt.Errorf("failed to apply migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().UTC().Format(time.RFC3339)); err != nil {
			tx.Rollback()
			return fmt.Errorf("failed to record migration %s: %w", m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("failed to commit migration %s: %w", m.name, err)
		}
	}
	return nil
}
