package audit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/storage"
)

// DBTX is what Append and the read helpers need from a transaction: both
// *sql.Tx and *database.Tx satisfy it (and *sql.DB for reads).
type DBTX interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// DB is the metadata database as the ledger uses it; *database.DB satisfies
// it. Write runs a function in a durable write transaction (see
// database.DB.Write); Read is a read-only pool.
type DB interface {
	Write(ctx context.Context, fn func(tx *database.Tx) error) error
	Read() *database.Reader
}

// ReadDB is the read side of DB, all that verification needs.
type ReadDB interface {
	Read() *database.Reader
}

// Options configures a Ledger.
type Options struct {
	// Origin is the first line of every checkpoint, naming this log (e.g.
	// "sealgate.example.com/ledger"). Required.
	Origin string
	// Now is the clock that stamps events appended without a time
	// (default time.Now).
	Now func() time.Time
	// Store, when set, receives every signed checkpoint under
	// ledger/checkpoints/ (see Ledger.Publish).
	Store storage.Store
	// Retention, when positive and Store implements storage.Retainer, locks
	// each ledger/checkpoints/<size>.note for this long (S3 Object Lock).
	// Otherwise checkpoints are written with Put.
	Retention time.Duration
	// Cosigner, when set, has every checkpoint cosigned by witnesses
	// before it is published (package witness/client).
	Cosigner Cosigner
	// Names makes Append record the events of a contract in format v2,
	// with their names (file names, subjects, addresses) replaced by
	// commitments and the clear values kept in ledger_names, so that
	// contract end can destroy them (see names.go). Off, every event is
	// recorded in format v1, names in clear.
	Names bool
	// Rand draws the openings of names (default crypto/rand.Reader).
	Rand io.Reader
}

// Ledger appends events to the log and signs, proves, exports and
// publishes it. It holds no cached state about the log: every operation
// reads the tables in the transaction it is given. One Ledger may be shared
// by all goroutines.
type Ledger struct {
	origin    string
	now       func() time.Time
	store     storage.Store
	retention time.Duration
	cosigner  Cosigner
	names     bool
	rand      io.Reader

	mu    sync.Mutex // serializes appends made through this Ledger
	stmts stmtCache  // guarded by mu
	pubMu sync.Mutex // serializes Publish

	// appended is signalled (without blocking) after a transaction that
	// appended through this Ledger has committed; the Checkpointer
	// listens to it.
	appended chan struct{}
}

// New returns a Ledger.
func New(opts Options) (*Ledger, error) {
	if opts.Origin == "" || strings.ContainsAny(opts.Origin, "\n") || checkString(opts.Origin) != nil {
		return nil, fmt.Errorf("audit: invalid origin %q: must be one non-empty line", opts.Origin)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	return &Ledger{
		origin:    opts.Origin,
		now:       opts.Now,
		store:     opts.Store,
		retention: opts.Retention,
		cosigner:  opts.Cosigner,
		names:     opts.Names,
		rand:      opts.Rand,
		appended:  make(chan struct{}, 1),
	}, nil
}

// Origin returns the checkpoint origin line of this ledger.
func (l *Ledger) Origin() string { return l.origin }

// Append validates ev, sets V (format v2, names committed, for a
// contract's event when the ledger keeps names apart — Options.Names —
// and v1 otherwise), fills Time (the ledger's clock, if zero; times are
// kept to the millisecond), and appends its canonical
// encoding as the next record of the log, inside tx: the record commits or
// rolls back with the state change the caller records in the same
// transaction. It returns the record's index.
//
// The index is read from tx, so Append is correct under savepoints that roll
// back. Appends through one Ledger are serialized; appends to one database
// must also be serialized by the database (database.DB has a single writer), and
// triggers refuse an index that is not the next one, so the tree cannot fork.
//
// If tx has an AfterCommit(func()) method (database.Tx), the Checkpointer is
// told about the append once it has committed.
func (l *Ledger) Append(ctx context.Context, tx DBTX, ev Event) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.appendLocked(ctx, tx, ev)
}

func (l *Ledger) appendLocked(ctx context.Context, tx DBTX, ev Event) (int64, error) {
	ev.V = schemaV1
	if ev.Time.IsZero() {
		ev.Time = l.now()
	}
	ev.Time = eventTime(ev.Time)
	sanitizeEvent(&ev)
	// Validated before the names are committed, so that an invalid event
	// leaves no name behind.
	if _, err := Canonical(&ev); err != nil {
		return -1, err
	}
	st := l.stmts.use(tx)
	if l.names && ev.Contract != "" {
		ev.V = SchemaVersion
		if err := l.commitNames(ctx, st, &ev); err != nil {
			return -1, err
		}
	}
	line, err := Canonical(&ev)
	if err != nil {
		return -1, err
	}
	n, err := st.checkedSize(ctx)
	if err != nil {
		return -1, err
	}
	hashes, err := tlog.StoredHashes(n, line, tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		return st.readHashes(ctx, indexes)
	}))
	if err != nil {
		return -1, fmt.Errorf("failed to compute ledger hashes: %w", err)
	}
	if err := st.exec(ctx, stInsertRecord, n, ev.Time.UnixMilli(), ev.Type, ev.Contract, line); err != nil {
		return -1, fmt.Errorf("failed to append ledger record %d: %w", n, err)
	}
	first := tlog.StoredHashIndex(0, n)
	for i := range hashes {
		if err := st.exec(ctx, stInsertHash, first+int64(i), hashes[i][:]); err != nil {
			return -1, fmt.Errorf("failed to store ledger hashes of record %d: %w", n, err)
		}
	}
	if ac, ok := tx.(interface{ AfterCommit(func()) }); ok {
		ac.AfterCommit(l.signalAppended)
	}
	return n, nil
}

func (l *Ledger) signalAppended() {
	select {
	case l.appended <- struct{}{}:
	default:
	}
}

// checkedSize returns the number of records and checks that the hash table
// has exactly the hashes a tree of that size stores. A mismatch means rows
// were deleted or inserted behind the ledger's back: appending then would
// bury the damage under new entries, so it stops with ErrCorrupt.
func checkedSize(ctx context.Context, q DBTX) (int64, error) {
	return stmtSet{q: q}.checkedSize(ctx)
}

// Size returns the number of records in the log as seen by q.
func (l *Ledger) Size(ctx context.Context, q DBTX) (int64, error) { return size(ctx, q) }

func size(ctx context.Context, q DBTX) (int64, error) {
	var n int64
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(idx)+1, 0) FROM ledger_records`).Scan(&n); err != nil {
		return -1, fmt.Errorf("failed to read ledger size: %w", err)
	}
	return n, nil
}

// Record returns record idx (the canonical line). ErrNotFound if absent.
func (l *Ledger) Record(ctx context.Context, q DBTX, idx int64) ([]byte, error) {
	var data []byte
	err := q.QueryRowContext(ctx, `SELECT data FROM ledger_records WHERE idx = ?`, idx).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: ledger record %d", ErrNotFound, idx)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read ledger record %d: %w", idx, err)
	}
	return data, nil
}

// Records calls fn for every record with from <= idx < to, in index order.
// data is valid only during the call. An error from fn stops the iteration
// and is returned.
func (l *Ledger) Records(ctx context.Context, q DBTX, from, to int64, fn func(idx int64, data []byte) error) error {
	rows, err := q.QueryContext(ctx, `SELECT idx, data FROM ledger_records WHERE idx >= ? AND idx < ? ORDER BY idx`, from, to)
	if err != nil {
		return fmt.Errorf("failed to read ledger records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var idx int64
		var data sql.RawBytes
		if err := rows.Scan(&idx, &data); err != nil {
			return fmt.Errorf("failed to read ledger record: %w", err)
		}
		if err := fn(idx, data); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("failed to read ledger records: %w", err)
	}
	return nil
}

// txHashReader reads stored hashes through q (the same transaction that
// appends, proves or checkpoints).
type txHashReader struct {
	ctx context.Context
	q   DBTX
}

func (r txHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return nil, nil
	}
	return readHashes(r.ctx, r.q, indexes)
}

func readHashes(ctx context.Context, q DBTX, indexes []int64) ([]tlog.Hash, error) {
	var sb strings.Builder
	sb.WriteString(`SELECT idx, hash FROM ledger_hashes WHERE idx IN (`)
	for i, x := range indexes {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatInt(x, 10)) // integers: no injection possible
	}
	sb.WriteByte(')')
	rows, err := q.QueryContext(ctx, sb.String())
	if err != nil {
		return nil, fmt.Errorf("failed to read ledger hashes: %w", err)
	}
	defer rows.Close()
	got := make(map[int64]tlog.Hash, len(indexes))
	for rows.Next() {
		var idx int64
		var h sql.RawBytes
		if err := rows.Scan(&idx, &h); err != nil {
			return nil, fmt.Errorf("failed to read ledger hash: %w", err)
		}
		if len(h) != tlog.HashSize {
			return nil, fmt.Errorf("%w: stored hash %d has %d bytes", ErrCorrupt, idx, len(h))
		}
		got[idx] = tlog.Hash(h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to read ledger hashes: %w", err)
	}
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := got[x]
		if !ok {
			return nil, fmt.Errorf("%w: stored hash %d is missing", ErrCorrupt, x)
		}
		out[i] = h
	}
	return out, nil
}

// cachingHashReader serves repeated proofs (exports): hashes near the root
// are shared by every proof. The cache is bounded and simply reset when full.
type cachingHashReader struct {
	ctx   context.Context
	q     DBTX
	cache map[int64]tlog.Hash
	max   int
}

func (r *cachingHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	if r.cache == nil || len(r.cache) > r.max {
		r.cache = make(map[int64]tlog.Hash, 1024)
	}
	var missing []int64
	for _, x := range indexes {
		if _, ok := r.cache[x]; !ok {
			missing = append(missing, x)
		}
	}
	if len(missing) > 0 {
		hs, err := readHashes(r.ctx, r.q, missing)
		if err != nil {
			return nil, err
		}
		for i, x := range missing {
			r.cache[x] = hs[i]
		}
	}
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		out[i] = r.cache[x]
	}
	return out, nil
}

// treeHash returns the root of the first n records as stored.
func treeHash(ctx context.Context, q DBTX, n int64) (tlog.Hash, error) {
	h, err := tlog.TreeHash(n, txHashReader{ctx, q})
	if err != nil {
		return tlog.Hash{}, fmt.Errorf("failed to compute tree hash: %w", err)
	}
	return h, nil
}

// progressEvery is how often (in entries) long operations report progress.
const progressEvery = 4096

func reportProgress(progress func(done, total int64), done, total int64) {
	if progress != nil {
		progress(done, total)
	}
}

// Statements of the append path. Preparing them costs more than running
// them (mostly the append-only triggers compiled into each INSERT), so they
// are prepared once per transaction: the store's group commit runs many
// appends in one transaction under load.
const (
	stRecordsMax = iota
	stHashesMax
	stReadHash
	stInsertRecord
	stInsertHash
	stNamesDestroyed
	stNameLookup
	stNameInsert
	numStmts
)

func stmtSQL(which int) string {
	switch which {
	case stRecordsMax:
		return `SELECT MAX(idx) FROM ledger_records`
	case stHashesMax:
		return `SELECT MAX(idx) FROM ledger_hashes`
	case stReadHash:
		return `SELECT hash FROM ledger_hashes WHERE idx = ?`
	case stInsertRecord:
		return `INSERT INTO ledger_records(idx, time_ms, type, contract, data) VALUES (?, ?, ?, ?, ?)`
	case stInsertHash:
		return `INSERT INTO ledger_hashes(idx, hash) VALUES (?, ?)`
	case stNamesDestroyed:
		return `SELECT COUNT(*) FROM ledger_names_destroyed WHERE contract = ?`
	case stNameLookup:
		return `SELECT commitment FROM ledger_names WHERE value = ? AND contract = ?`
	case stNameInsert:
		return `INSERT INTO ledger_names(contract, commitment, value, opening, created_at) VALUES (?, ?, ?, ?, ?)`
	}
	panic("audit: unknown statement")
}

// stmtCache holds the statements prepared in the most recent transaction.
// database/sql closes them when that transaction ends; the cache is
// replaced as soon as another transaction appends. Holding the *sql.Tx
// keeps its address from being reused.
type stmtCache struct {
	tx    *sql.Tx
	stmts [numStmts]*sql.Stmt
}

// use returns the statements for q, preparing lazily if q is a
// transaction whose statements can be cached. A *database.Tx caches them
// itself, prepared once per process (database.Tx.ExecContext): preparing
// them again in every transaction was an eighth of the database writer's
// CPU under load, each group-committed batch being a new transaction.
func (c *stmtCache) use(q DBTX) stmtSet {
	var tx *sql.Tx
	switch t := q.(type) {
	case *database.Tx:
		return stmtSet{q: q}
	case *sql.Tx:
		tx = t
	}
	if tx == nil {
		return stmtSet{q: q}
	}
	if c.tx != tx {
		*c = stmtCache{tx: tx}
	}
	return stmtSet{q: q, c: c}
}

// stmtSet runs the append path's statements, prepared (c != nil) or not.
type stmtSet struct {
	q DBTX
	c *stmtCache
}

func (s stmtSet) stmt(ctx context.Context, which int) (*sql.Stmt, error) {
	if st := s.c.stmts[which]; st != nil {
		return st, nil
	}
	st, err := s.c.tx.PrepareContext(ctx, stmtSQL(which))
	if err != nil {
		return nil, fmt.Errorf("failed to prepare ledger statement: %w", err)
	}
	s.c.stmts[which] = st
	return st, nil
}

func (s stmtSet) exec(ctx context.Context, which int, args ...any) error {
	if s.c == nil {
		_, err := s.q.ExecContext(ctx, stmtSQL(which), args...)
		return err
	}
	st, err := s.stmt(ctx, which)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(ctx, args...)
	return err
}

func (s stmtSet) scan(ctx context.Context, which int, args []any, dest ...any) error {
	if s.c == nil {
		return s.q.QueryRowContext(ctx, stmtSQL(which), args...).Scan(dest...)
	}
	st, err := s.stmt(ctx, which)
	if err != nil {
		return err
	}
	return st.QueryRowContext(ctx, args...).Scan(dest...)
}

func (s stmtSet) checkedSize(ctx context.Context) (int64, error) {
	var n, h sql.NullInt64
	if err := s.scan(ctx, stRecordsMax, nil, &n); err != nil {
		return -1, fmt.Errorf("failed to read ledger size: %w", err)
	}
	if err := s.scan(ctx, stHashesMax, nil, &h); err != nil {
		return -1, fmt.Errorf("failed to read ledger size: %w", err)
	}
	size, hashes := int64(0), int64(0)
	if n.Valid {
		size = n.Int64 + 1
	}
	if h.Valid {
		hashes = h.Int64 + 1
	}
	if hashes != tlog.StoredHashCount(size) {
		return -1, fmt.Errorf("%w: %d records but %d stored hashes (expected %d); run sealgate audit verify-db",
			ErrCorrupt, size, hashes, tlog.StoredHashCount(size))
	}
	return size, nil
}

func (s stmtSet) readHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		var h []byte
		err := s.scan(ctx, stReadHash, []any{x}, &h)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("%w: stored hash %d is missing", ErrCorrupt, x)
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read ledger hash %d: %w", x, err)
		}
		if len(h) != tlog.HashSize {
			return nil, fmt.Errorf("%w: stored hash %d has %d bytes", ErrCorrupt, x, len(h))
		}
		out[i] = tlog.Hash(h)
	}
	return out, nil
}

// sanitizeEvent replaces characters the canonical form forbids (controls,
// bidi overrides, invalid UTF-8) in the fields that carry outside text —
// subjects, file names, addresses, user agents, remote replies — so that a
// hostile file name can never make a state change fail to be recorded.
func sanitizeEvent(ev *Event) {
	for _, p := range []*string{&ev.Contract, &ev.Message, &ev.Transfer, &ev.Recipient, &ev.File,
		&ev.SHA256, &ev.CipherSHA256, &ev.Object, &ev.RemoteIP, &ev.UserAgent, &ev.Account, &ev.Reason, &ev.Result} {
		*p = Sanitize(*p)
	}
	if len(ev.Details) > 0 {
		d := make(map[string]string, len(ev.Details))
		for k, v := range ev.Details {
			d[k] = Sanitize(v)
		}
		ev.Details = d
	}
}
