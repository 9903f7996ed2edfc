package database

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgreSQL is reached through pgx's database/sql adapter (stdlib), not
// pgx's native interface: every owner scans *sql.Rows and *sql.Row and
// writes in a *sql.Tx, so one Querier and one Tx serve both dialects and
// no owner changes its code. pgx's own statement cache (per connection,
// keyed by the SQL text) prepares each statement once; the driver below
// only rewrites the text (Rewrite) and turns booleans into 0/1.
//
// Writes keep the shape they have with SQLite: one writer goroutine per
// process batches the functions given to Write into one transaction (group
// commit: one WAL flush for many SMTP sessions), run first without
// savepoints and, if one fails, again each in its own. Every owner was written against SQLite's single writer,
// where whatever a function reads and then writes is serialized with
// every other write. On PostgreSQL the same promise holds across
// processes (further instances, the CLI) through one lock, the writers'
// lock: every write transaction takes it as its first statement
// (pg_advisory_xact_lock, sent with BEGIN in one round trip: see
// pgConn.BeginTx) and holds it until COMMIT or ROLLBACK. So the write
// transactions of the whole fleet run one after the other, as SQLite's
// do, and each runs at READ COMMITTED: every statement after the lock
// sees everything the previous holders committed (PostgreSQL makes a
// transaction visible before it releases its locks), and nobody else
// writes the tables meanwhile — the only writes outside the lock are
// Statement's, on tables written by Statement alone (see direct.go).
// SERIALIZABLE, which the writers ran at before the lock, added nothing
// but its predicate locks and the session lock two round trips of its
// own per batch (taken before BEGIN so that the serializable snapshot
// came after it, released after COMMIT). The retry of a batch that fails
// with a serialization failure (40001) or a deadlock (40P01) stays, for
// whatever else writes the database: the whole batch is then rolled back
// and run again, functions and all, up to maxAttempts times. Write
// functions must therefore be safe to run more than once (they only touch
// the database; effects outside it go into AfterCommit, which runs once,
// after the commit that counted).
//
// A transaction's locks end with it, and a transaction ends with its
// connection: when an instance dies, or its connection breaks, mid-batch,
// the server rolls its transaction back and frees the lock, and the next
// instance's batch goes ahead; the batch of the instance that lost its
// connection fails with a transient error (IsTransient), nothing of it
// committed unless the COMMIT itself had been received — except a batch
// of several functions that lost it before its COMMIT in its run without
// savepoints: that one runs again, each function in its savepoint, on a
// new connection (tryBatch), as after any failure of that run. A writer
// connection left idle inside a transaction for writerIdleTimeout (a
// process frozen mid-batch, which would otherwise hold the lock for as
// long as its socket stays open) is closed by the server.

// writersLockKey is the PostgreSQL advisory lock every write transaction
// holds.
const writersLockKey = 0x5ea1f1ee

// writersLockWait bounds the wait for the writers' lock: longer than
// writerIdleTimeout, after which a frozen holder loses it.
const writersLockWait = 2 * time.Minute

// writerIdleTimeout is idle_in_transaction_session_timeout on the writer
// connections.
const writerIdleTimeout = time.Minute

// beginWriters begins a write transaction holding the writers' lock: one
// simple-protocol message, so one round trip.
func beginWriters() string {
	return "BEGIN; SELECT pg_advisory_xact_lock(" + strconv.FormatInt(writersLockKey, 10) + ")"
}

// discardConn closes conn instead of returning it to its pool.
func discardConn(conn *sql.Conn) {
	conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
}

// maxAttempts bounds how often a PostgreSQL batch is run when it keeps
// failing with a serialization failure or deadlock.
const maxAttempts = 8

// openPostgres opens the database at the postgres:// URL target.
func openPostgres(ctx context.Context, target string, opts Options) (*DB, error) {
	cfg, err := pgx.ParseConfig(target)
	if err != nil {
		return nil, fmt.Errorf("failed to parse the database URL: %w", err)
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "sealgate"
	}
	// Options.Synchronous "OFF" is for tests and CPU benchmarks only, as
	// with SQLite: commits return before the WAL reaches the disk.
	if opts.Synchronous == "OFF" {
		cfg.RuntimeParams["synchronous_commit"] = "off"
	}
	wcfg := cfg.Copy()
	wcfg.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(writerIdleTimeout.Milliseconds(), 10)
	w := sql.OpenDB(pgConnector{inner: stdlib.GetConnector(*wcfg), writer: true})
	w.SetMaxOpenConns(2) // the writer goroutine's transaction, and migrations
	w.SetMaxIdleConns(2)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("failed to connect to the database %s: %w", Redact(target), err)
	}
	if err := migrate(ctx, w, Postgres, nil); err != nil {
		w.Close()
		return nil, err
	}
	rcfg := cfg.Copy()
	rcfg.RuntimeParams["default_transaction_read_only"] = "on"
	r := sql.OpenDB(pgConnector{inner: stdlib.GetConnector(*rcfg)})
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	r.SetConnMaxIdleTime(5 * time.Minute)
	l := sql.OpenDB(pgConnector{inner: stdlib.GetConnector(*cfg.Copy())})
	l.SetMaxOpenConns(maxLocks)
	l.SetMaxIdleConns(2)
	d := sql.OpenDB(pgConnector{inner: stdlib.GetConnector(*cfg.Copy())})
	d.SetMaxOpenConns(maxDirect)
	d.SetMaxIdleConns(maxDirect)
	d.SetConnMaxIdleTime(5 * time.Minute)
	db := newDB(Postgres, w, r, opts, "")
	db.locks = l
	db.direct = d
	return db, nil
}

// Redact returns a database URL without its password, for messages.
func Redact(target string) string {
	u, err := url.Parse(target)
	if err != nil || u.User == nil {
		if err != nil {
			return "postgres://(unparsable URL)"
		}
		return target
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// pgConnector makes connections whose statements are rewritten from the
// shared SQL texts (Rewrite) and whose boolean arguments are 0/1; a
// writer's connections begin every transaction holding the writers' lock.
type pgConnector struct {
	inner  driver.Connector
	writer bool
}

func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &pgConn{c: conn.(*stdlib.Conn), writer: c.writer}, nil
}

func (c pgConnector) Driver() driver.Driver { return c.inner.Driver() }

// pgConn is a pgx stdlib connection that rewrites every statement.
//
// SQLite lets a connection step through several result sets at once, and
// owners rely on it: a query inside the loop over another's rows (audit's
// verification walks the records and the hashes side by side). A
// PostgreSQL connection streams one result at a time. So when a statement
// is run while a result set of the same connection is still open, the rest
// of that result set is first read into memory (drain), and the new
// statement runs: the common case, one result at a time, streams; an
// interleaving costs the memory of the rows the first one had left.
type pgConn struct {
	c      *stdlib.Conn
	writer bool    // transactions take the writers' lock
	open   *pgRows // the result set streaming on the connection, if any
}

// drain reads the rest of the open result set into memory, freeing the
// connection for the next statement.
func (p *pgConn) drain() {
	if r := p.open; r != nil {
		p.open = nil
		r.buffer()
	}
}

// pgRows is a result set that streams from the connection until drained.
type pgRows struct {
	conn     *pgConn
	inner    *stdlib.Rows
	buffered [][]driver.Value // rows read ahead by drain
	drained  bool
	err      error // the error that ended the reading ahead
}

var (
	_ driver.Rows                           = (*pgRows)(nil)
	_ driver.RowsColumnTypeDatabaseTypeName = (*pgRows)(nil)
	_ driver.RowsColumnTypeScanType         = (*pgRows)(nil)
)

func (p *pgConn) wrapRows(rows driver.Rows, err error) (driver.Rows, error) {
	if err != nil {
		return nil, err
	}
	r := &pgRows{conn: p, inner: rows.(*stdlib.Rows)}
	p.open = r
	return r, nil
}

// buffer reads the remaining rows and closes the stream; an error is kept
// for Next to return after the rows read before it.
func (r *pgRows) buffer() {
	n := len(r.inner.Columns())
	for {
		row := make([]driver.Value, n)
		err := r.inner.Next(row)
		if err == io.EOF {
			break
		}
		if err != nil {
			r.err = err
			break
		}
		for i, v := range row {
			if b, ok := v.([]byte); ok {
				row[i] = bytes.Clone(b)
			}
		}
		r.buffered = append(r.buffered, row)
	}
	r.drained = true
	if err := r.inner.Close(); err != nil && r.err == nil {
		r.err = err
	}
}

func (r *pgRows) Columns() []string { return r.inner.Columns() }

func (r *pgRows) ColumnTypeDatabaseTypeName(i int) string {
	return r.inner.ColumnTypeDatabaseTypeName(i)
}

func (r *pgRows) ColumnTypeScanType(i int) reflect.Type { return r.inner.ColumnTypeScanType(i) }

func (r *pgRows) Next(dest []driver.Value) error {
	if !r.drained {
		return r.inner.Next(dest)
	}
	if len(r.buffered) == 0 {
		if r.err != nil {
			return r.err
		}
		return io.EOF
	}
	copy(dest, r.buffered[0])
	r.buffered = r.buffered[1:]
	return nil
}

func (r *pgRows) Close() error {
	if r.conn.open == r {
		r.conn.open = nil
	}
	if r.drained {
		r.buffered = nil
		return nil
	}
	r.drained = true
	return r.inner.Close()
}

// pgTx frees the connection before it ends the transaction.
type pgTx struct {
	conn  *pgConn
	inner pgx.Tx
}

func (t pgTx) Commit() error {
	t.conn.drain()
	return t.inner.Commit(context.Background())
}

func (t pgTx) Rollback() error {
	t.conn.drain()
	return t.inner.Rollback(context.Background())
}

var (
	_ driver.Conn               = (*pgConn)(nil)
	_ driver.ConnPrepareContext = (*pgConn)(nil)
	_ driver.ConnBeginTx        = (*pgConn)(nil)
	_ driver.ExecerContext      = (*pgConn)(nil)
	_ driver.QueryerContext     = (*pgConn)(nil)
	_ driver.Pinger             = (*pgConn)(nil)
	_ driver.SessionResetter    = (*pgConn)(nil)
	_ driver.NamedValueChecker  = (*pgConn)(nil)
)

func (p *pgConn) Prepare(query string) (driver.Stmt, error) {
	return p.PrepareContext(context.Background(), query)
}

// PrepareContext returns a statement that runs through the connection's
// statement cache: pgx prepares it on first use and keeps it, so a
// database/sql Stmt (prepared per transaction by some owners) costs no
// round trip to prepare nor to close.
func (p *pgConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return &pgStmt{conn: p, query: Rewrite(query)}, nil
}

func (p *pgConn) Close() error {
	p.drain()
	return p.c.Close()
}

func (p *pgConn) Begin() (driver.Tx, error) {
	return p.BeginTx(context.Background(), driver.TxOptions{})
}

// BeginTx begins a transaction. On a writer's connection it holds the
// writers' lock, waited for at most writersLockWait, and runs at the
// server's default isolation (READ COMMITTED; other options are refused
// there).
func (p *pgConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	p.drain()
	var txOpts pgx.TxOptions
	switch sql.IsolationLevel(opts.Isolation) {
	case sql.LevelDefault:
	case sql.LevelReadCommitted:
		txOpts.IsoLevel = pgx.ReadCommitted
	case sql.LevelRepeatableRead, sql.LevelSnapshot:
		txOpts.IsoLevel = pgx.RepeatableRead
	case sql.LevelSerializable:
		txOpts.IsoLevel = pgx.Serializable
	default:
		return nil, fmt.Errorf("database: isolation level %v is not supported", sql.IsolationLevel(opts.Isolation))
	}
	if opts.ReadOnly {
		txOpts.AccessMode = pgx.ReadOnly
	}
	if p.writer {
		if txOpts != (pgx.TxOptions{}) {
			return nil, fmt.Errorf("database: a write transaction takes no options (%+v)", opts)
		}
		txOpts.BeginQuery = beginWriters()
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, writersLockWait)
		defer cancel()
	}
	// pgx closes the connection when BEGIN fails with a connection
	// error. An ERROR of the lock's SELECT (lock_timeout or
	// statement_timeout set on the role, a cancelled wait) leaves it open
	// inside the aborted transaction its BEGIN opened: database/sql then
	// resets the connection before its next use (ResetSession), and
	// pgx's stdlib refuses one that is not idle, so it is closed there
	// (TestWritersLockRefused).
	tx, err := p.c.Conn().BeginTx(ctx, txOpts)
	if err != nil {
		if p.writer {
			return nil, fmt.Errorf("failed to take the writers' lock: %w", err)
		}
		return nil, err
	}
	return pgTx{conn: p, inner: tx}, nil
}

func (p *pgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	p.drain()
	return p.c.ExecContext(ctx, Rewrite(query), args)
}

func (p *pgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	p.drain()
	return p.wrapRows(p.c.QueryContext(ctx, Rewrite(query), args))
}

func (p *pgConn) Ping(ctx context.Context) error {
	p.drain()
	return p.c.Ping(ctx)
}

func (p *pgConn) ResetSession(ctx context.Context) error {
	p.drain()
	return p.c.ResetSession(ctx)
}

// CheckNamedValue stores a boolean as 0/1 (the schema's flags are
// integers, as in SQLite); everything else goes to pgx as it is.
func (p *pgConn) CheckNamedValue(nv *driver.NamedValue) error {
	if b, ok := nv.Value.(bool); ok {
		if b {
			nv.Value = int64(1)
		} else {
			nv.Value = int64(0)
		}
	}
	return p.c.CheckNamedValue(nv)
}

// pgStmt is a statement run through the connection's statement cache.
type pgStmt struct {
	conn  *pgConn
	query string // rewritten
}

func (s *pgStmt) Close() error  { return nil }
func (s *pgStmt) NumInput() int { return -1 }

func (s *pgStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), named(args))
}

func (s *pgStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), named(args))
}

func (s *pgStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.conn.drain()
	return s.conn.c.ExecContext(ctx, s.query, args)
}

func (s *pgStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.conn.drain()
	return s.conn.wrapRows(s.conn.c.QueryContext(ctx, s.query, args))
}

func named(args []driver.Value) []driver.NamedValue {
	out := make([]driver.NamedValue, len(args))
	for i, a := range args {
		out[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	return out
}

// withAdvisoryLock runs fn holding PostgreSQL's session advisory lock key
// on one connection of db, so that processes starting at the same time
// migrate one after the other.
func withAdvisoryLock(ctx context.Context, db *sql.DB, key int64, fn func(conn *sql.Conn) error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("failed to connect to the database: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(?)`, key); err != nil {
		return fmt.Errorf("failed to take the migration lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(?)`, key)
	return fn(conn)
}

// OpenPlain opens a plain connection pool on the database at target — no
// migrations, no writer, the append-only triggers as they are — with the
// SQL rewriting of its dialect, so that the owners' spelling works: for
// tests and tools that look at (or tamper with) the database from outside.
func OpenPlain(target string) (*sql.DB, error) {
	if !IsURL(target) {
		db, err := sql.Open("sqlite", dsn(target))
		if err != nil {
			return nil, fmt.Errorf("failed to open database: %w", err)
		}
		return db, nil
	}
	cfg, err := pgx.ParseConfig(target)
	if err != nil {
		return nil, fmt.Errorf("failed to parse the database URL: %w", err)
	}
	return sql.OpenDB(pgConnector{inner: stdlib.GetConnector(*cfg)}), nil
}
