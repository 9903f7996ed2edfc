package audit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// reads the tables in the transaction it is given (appends batched in one
// transaction share what the first read, kept in that transaction: see
// treeState). One Ledger may be shared by all goroutines.
type Ledger struct {
	origin    string
	now       func() time.Time
	store     storage.Store
	retention time.Duration
	cosigner  Cosigner
	names     bool
	known     knownNames // commitments known to be committed (see knownNames)
	rand      io.Reader

	mu    sync.Mutex // serializes appends made through this Ledger
	stmts stmtCache  // guarded by mu
	pubMu sync.Mutex // serializes Publish

	// appended is signalled (without blocking) after transactions that
	// appended through this Ledger have committed, once every wakeStep
	// appends (committed counts them); the Checkpointer listens to it.
	appended  chan struct{}
	committed atomic.Int64
	wakeStep  atomic.Int64 // 0: every append
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
// The index is read from tx (or from the tree state an earlier append of
// the same transaction kept there, which the transaction forgets when a
// savepoint rolls back), so Append is correct under savepoints that roll
// back. Appends through one Ledger are serialized; appends to one database
// must also be serialized by the database (database.DB has a single writer;
// on PostgreSQL one at a time across instances, under the writers' lock),
// and triggers refuse an index that is not the next one, so the tree cannot
// fork.
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
	ts, err := loadTreeState(ctx, tx, st)
	if err != nil {
		return -1, err
	}
	dt, deferred := tx.(*database.Tx)
	deferred = deferred && dt.Dialect() == database.Postgres
	saved := false
	defer func() {
		// A failed append leaves the state out of the transaction (the
		// next reads the tables again), unless it holds records of
		// earlier appends not written yet: those must still be written
		// (or the transaction fail), so it goes back as it was.
		if !saved && len(ts.pending) > 0 {
			ts.save(tx)
		}
		if deferred && len(ts.pending) > 0 {
			// Registered again: a statement naming the ledger's tables
			// made during this append (a write that failed) ran the
			// registered write, which found no state in the transaction.
			dt.Defer(treeStateKey{}, ledgerTables(), func(ctx context.Context) error { return flushPending(ctx, dt) })
		}
	}()
	if len(ts.pending) >= maxPending {
		// Written before this record is added: if the write fails, the
		// append fails with nothing of its own pending.
		if err := ts.writePending(ctx, tx); err != nil {
			return -1, err
		}
	}
	n := ts.size
	hashes, err := tlog.StoredHashes(n, line, tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		return ts.read(ctx, st, indexes)
	}))
	if err != nil {
		return -1, fmt.Errorf("failed to compute ledger hashes: %w", err)
	}
	first := tlog.StoredHashIndex(0, n)
	if deferred {
		// Written with the transaction's other appends (flushPending;
		// registered when this function returns).
		ts.pending = append(ts.pending, pendingRecord{n: n, timeMS: ev.Time.UnixMilli(), typ: ev.Type, contract: ev.Contract,
			line: line, first: first, hashes: hashes})
	} else if err := st.insert(ctx, n, ev, line, first, hashes); err != nil {
		return -1, err
	}
	ts.appended(first, hashes)
	ts.save(tx)
	saved = true
	if ac, ok := tx.(interface{ AfterCommit(func()) }); ok {
		ac.AfterCommit(l.signalAppended)
	}
	return n, nil
}

// treeState is what the appends of one transaction know of the tree: its
// size, and stored hashes this transaction read or wrote. It is kept in
// the transaction (database.Tx.Value), so that the appends batched in one
// transaction — many under load, and on PostgreSQL every round trip
// counts — read ledger_records and ledger_hashes once, not at every
// append: the first append reads the size and the hashes it needs, the
// next ones find them here. The transaction forgets it when a savepoint
// rolls back (a function of the batch failed, its appends undone), and an
// append takes it out of the transaction until it has succeeded, so that
// what is kept is always what the tables hold in this transaction. The
// triggers that refuse any index but the next remain the guard: a state
// that was wrong would make the append fail, not fork the tree.
type treeState struct {
	size   int64
	hashes map[int64]tlog.Hash
	// pending are the records appended but not yet written (PostgreSQL:
	// see flushPending).
	pending []pendingRecord
}

// pendingRecord is an appended record whose rows are not written yet.
type pendingRecord struct {
	n, timeMS     int64
	typ, contract string
	line          []byte
	first         int64
	hashes        []tlog.Hash
}

// ledgerTables are the tables an append writes: a statement of the
// transaction that names one writes the pending records first.
func ledgerTables() []string { return []string{"ledger_records", "ledger_hashes"} }

// maxPending bounds the records one flush writes.
const maxPending = 256

// flushPending writes the records appended in tx and not yet written, in
// one statement. On PostgreSQL the appends of a transaction — a group
// commit of many SMTP sessions' functions, each appending a few events —
// are written together (database.Tx.Defer): before the commit, before
// any statement of the transaction that reads the ledger's tables, and
// at the end of a function that runs in its own savepoint, so that a
// function rolled back takes its records with it (the pending records
// live in the tree state, which the rollback forgets). Until then the
// tree state holds everything the next append needs. The rows are
// inserted in index order, and the triggers check each as before: one
// whose index is not the next fails the statement and the transaction.
func flushPending(ctx context.Context, tx *database.Tx) error {
	ts, ok := tx.Value(treeStateKey{}).(*treeState)
	if !ok {
		return nil // taken by an append under way, which writes it if it must (read)
	}
	return ts.writePending(ctx, tx)
}

// writePending writes ts's pending records (see flushPending).
func (ts *treeState) writePending(ctx context.Context, q DBTX) error {
	if len(ts.pending) == 0 {
		return nil
	}
	recs := ts.pending
	ts.pending = nil
	var idx, times, hidx []int64
	var types, contracts []string
	var data, hashes [][]byte
	for _, r := range recs {
		idx = append(idx, r.n)
		times = append(times, r.timeMS)
		types = append(types, r.typ)
		contracts = append(contracts, r.contract)
		data = append(data, r.line)
		for i, h := range r.hashes {
			hidx = append(hidx, r.first+int64(i))
			hashes = append(hashes, h[:])
		}
	}
	// data is TEXT (canonical JSON): sent as text, as the single
	// append's parameter is.
	lines := make([]string, len(data))
	for i, d := range data {
		lines[i] = string(d)
	}
	_, err := q.ExecContext(ctx, `WITH r AS (INSERT INTO ledger_records(idx, time_ms, type, contract, data)
		SELECT idx, time_ms, type, contract, data FROM unnest(CAST(? AS BIGINT[]), CAST(? AS BIGINT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[])) WITH ORDINALITY AS u(idx, time_ms, type, contract, data, o) ORDER BY o)
		INSERT INTO ledger_hashes(idx, hash) SELECT h, v FROM unnest(CAST(? AS BIGINT[]), CAST(? AS BYTEA[])) WITH ORDINALITY AS u(h, v, o) ORDER BY o`,
		idx, times, types, contracts, lines, hidx, hashes)
	if err != nil {
		// They stay pending: a statement that failed on the server left
		// the transaction unable to commit (the next write of them fails
		// too), and one that never reached it (a context done) has
		// written nothing, so they are written by the next flush, not
		// lost while the indexes they were given are committed.
		ts.pending = recs
		return fmt.Errorf("failed to append ledger records %d–%d: %w", recs[0].n, recs[len(recs)-1].n, err)
	}
	return nil
}

// treeStateKey is the key of the treeState in a transaction.
type treeStateKey struct{}

// txValues is the part of database.Tx that keeps values for the rest of
// a transaction.
type txValues interface {
	Value(key any) any
	SetValue(key, v any)
}

// maxTreeStateHashes bounds the hashes a treeState keeps; past it the map
// is emptied (a long transaction of appends reads the frontier again).
const maxTreeStateHashes = 4096

// loadTreeState returns the tree state kept in tx, taking it out of tx
// (save puts it back), or reads it from the tables (checkedSize).
func loadTreeState(ctx context.Context, tx DBTX, st stmtSet) (*treeState, error) {
	if v, ok := tx.(txValues); ok {
		if ts, ok := v.Value(treeStateKey{}).(*treeState); ok {
			v.SetValue(treeStateKey{}, nil)
			return ts, nil
		}
	}
	n, err := st.checkedSize(ctx)
	if err != nil {
		return nil, err
	}
	return &treeState{size: n, hashes: map[int64]tlog.Hash{}}, nil
}

// save keeps ts in tx for the next append of the transaction.
func (ts *treeState) save(tx DBTX) {
	if v, ok := tx.(txValues); ok {
		v.SetValue(treeStateKey{}, ts)
	}
}

// read returns the stored hashes at indexes, reading from the table those
// it does not hold.
func (ts *treeState) read(ctx context.Context, st stmtSet, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var missing []int64
	for i, x := range indexes {
		h, ok := ts.hashes[x]
		if !ok {
			missing = append(missing, x)
			continue
		}
		out[i] = h
	}
	if len(missing) == 0 {
		return out, nil
	}
	// Hashes not kept here may be those of records not written yet
	// (the map was emptied): write them first.
	if err := ts.writePending(ctx, st.q); err != nil {
		return nil, err
	}
	got, err := st.readHashes(ctx, missing)
	if err != nil {
		return nil, err
	}
	for i, x := range missing {
		ts.hashes[x] = got[i]
	}
	for i, x := range indexes {
		out[i] = ts.hashes[x]
	}
	return out, nil
}

// appended records that the hashes of the record at ts.size were stored
// from index first.
func (ts *treeState) appended(first int64, hashes []tlog.Hash) {
	if len(ts.hashes)+len(hashes) > maxTreeStateHashes {
		clear(ts.hashes)
	}
	for i, h := range hashes {
		ts.hashes[first+int64(i)] = h
	}
	ts.size++
}

func (l *Ledger) signalAppended() {
	n := l.committed.Add(1)
	if step := l.wakeStep.Load(); step > 1 && n%step != 0 {
		return
	}
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
	return scanHashes(rows, indexes)
}

// scanHashes reads the (idx, hash) rows of the stored hashes at indexes,
// closes rows, and returns the hashes in the order of indexes.
func scanHashes(rows *sql.Rows, indexes []int64) ([]tlog.Hash, error) {
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
	stSizes = iota
	stReadHash
	stReadHashes
	stInsertRecord
	stInsertHash
	stNamesDestroyed
	stNameLookup
	stNameInsert
	numStmts
)

func stmtSQL(which int) string {
	switch which {
	case stSizes:
		return `SELECT (SELECT MAX(idx) FROM ledger_records), (SELECT MAX(idx) FROM ledger_hashes)`
	case stReadHash:
		return `SELECT hash FROM ledger_hashes WHERE idx = ?`
	case stReadHashes:
		return `SELECT idx, hash FROM ledger_hashes WHERE idx IN (SELECT CAST(value AS BIGINT) FROM json_each(?))`
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
	if err := s.scan(ctx, stSizes, nil, &n, &h); err != nil {
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

// insert stores record n (event ev, canonical line) and its hashes from
// index first. On PostgreSQL it is one statement (one round trip: the
// record's INSERT in a WITH clause), on SQLite the record's prepared
// INSERT, then the hashes' in one statement.
func (s stmtSet) insert(ctx context.Context, n int64, ev Event, line []byte, first int64, hashes []tlog.Hash) error {
	args := make([]any, 0, 5+2*len(hashes))
	args = append(args, n, ev.Time.UnixMilli(), ev.Type, ev.Contract, line)
	for i := range hashes {
		args = append(args, first+int64(i), hashes[i][:])
	}
	if d, ok := s.q.(interface{ Dialect() database.Dialect }); ok && d.Dialect() == database.Postgres {
		if _, err := s.q.ExecContext(ctx, `WITH r AS (`+stmtSQL(stInsertRecord)+`) `+insertHashesSQL(len(hashes)), args...); err != nil {
			return fmt.Errorf("failed to append ledger record %d: %w", n, err)
		}
		return nil
	}
	if err := s.exec(ctx, stInsertRecord, args[:5]...); err != nil {
		return fmt.Errorf("failed to append ledger record %d: %w", n, err)
	}
	var err error
	if len(hashes) == 1 {
		err = s.exec(ctx, stInsertHash, args[5:]...)
	} else {
		_, err = s.q.ExecContext(ctx, insertHashesSQL(len(hashes)), args[5:]...)
	}
	if err != nil {
		return fmt.Errorf("failed to store ledger hashes of record %d: %w", n, err)
	}
	return nil
}

// insertHashesSQL is the INSERT of n hashes (a record stores at most one
// per level of the tree, so there are few of these texts).
func insertHashesSQL(n int) string {
	return `INSERT INTO ledger_hashes(idx, hash) VALUES (?, ?)` + strings.Repeat(`, (?, ?)`, n-1)
}

func (s stmtSet) readHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) > 1 {
		return s.readHashesOnce(ctx, indexes)
	}
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

// readHashesOnce reads the stored hashes at indexes in one statement (on
// PostgreSQL, one round trip).
func (s stmtSet) readHashesOnce(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	list, err := json.Marshal(indexes)
	if err != nil {
		return nil, fmt.Errorf("failed to read ledger hashes: %w", err)
	}
	var rows *sql.Rows
	if s.c == nil {
		rows, err = s.q.QueryContext(ctx, stmtSQL(stReadHashes), string(list))
	} else {
		var st *sql.Stmt
		if st, err = s.stmt(ctx, stReadHashes); err == nil {
			rows, err = st.QueryContext(ctx, string(list))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read ledger hashes: %w", err)
	}
	return scanHashes(rows, indexes)
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
