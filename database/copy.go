package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// The copy of an embedded installation's database into PostgreSQL
// (`sealgate migrate`, package migrate). It knows no table: it reads the
// tables, their columns and their foreign keys from the catalogs of both
// engines and copies every table, same columns, row by row in primary-key
// order, parents before children. No owner's SQL is repeated here, so the
// one-owner rule holds (database/owners_test.go: this package owns no
// table, and no literal here names one).

// ErrNotEmpty is returned (wrapped) by CopyTables when the target already
// holds rows: a copy goes into an empty database only.
var ErrNotEmpty = errors.New("database: the target database is not empty")

// TableCount is the number of rows of one table.
type TableCount struct {
	Table string
	Rows  int64
}

// copyBatchParams bounds the parameters of one multi-row INSERT
// (PostgreSQL allows 65535).
const copyBatchParams = 30000

// copyBatchRows bounds the rows of one multi-row INSERT.
const copyBatchRows = 500

// column is a column of a table as both catalogs describe it.
type copyColumn struct {
	name     string
	pk       int  // SQLite: position in the primary key, 0 if not part of it
	text     bool // PostgreSQL: text (a SQLite BLOB value is converted)
	bytea    bool // PostgreSQL: bytea (a SQLite TEXT value is converted)
	identity bool // PostgreSQL: an identity column, moved past the copied maximum
}

// Tables returns the tables of the schema in copy order: a table after
// every table its foreign keys name (apart from itself), otherwise in the
// order the migrations created them. The migrations' own bookkeeping
// (schema_migrations) and the engine's internal tables are left out.
func (db *DB) Tables(ctx context.Context) ([]string, error) {
	if db.dialect == Postgres {
		return db.pgTables(ctx)
	}
	q := db.Read()
	var names []string
	rows, err := q.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name <> 'schema_migrations' ORDER BY rowid`)
	if err != nil {
		return nil, fmt.Errorf("failed to list tables: %w", err)
	}
	if names, err = scanStrings(rows); err != nil {
		return nil, fmt.Errorf("failed to list tables: %w", err)
	}
	parents := map[string][]string{}
	for _, t := range names {
		rows, err := q.QueryContext(ctx, `SELECT "table" FROM pragma_foreign_key_list(?)`, t)
		if err != nil {
			return nil, fmt.Errorf("failed to read the foreign keys of %s: %w", t, err)
		}
		if parents[t], err = scanStrings(rows); err != nil {
			return nil, fmt.Errorf("failed to read the foreign keys of %s: %w", t, err)
		}
	}
	return parentsFirst(names, parents)
}

// pgTables lists the tables of the current schema, by name (the order
// does not matter for comparing and counting).
func (db *DB) pgTables(ctx context.Context) ([]string, error) {
	rows, err := db.Read().QueryContext(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations' ORDER BY table_name`)
	if err != nil {
		return nil, fmt.Errorf("failed to list tables: %w", err)
	}
	names, err := scanStrings(rows)
	if err != nil {
		return nil, fmt.Errorf("failed to list tables: %w", err)
	}
	return names, nil
}

// parentsFirst orders names so that each comes after its parents (a
// stable topological sort: ties keep the given order). A cycle through
// other tables is an error; a table that names itself is fine (its rows
// are copied in key order, a row after the rows it refers to).
func parentsFirst(names []string, parents map[string][]string) ([]string, error) {
	done := map[string]bool{}
	var out []string
	for len(out) < len(names) {
		progress := false
		for _, t := range names {
			if done[t] {
				continue
			}
			ready := true
			for _, p := range parents[t] {
				if p != t && !done[p] {
					ready = false
					break
				}
			}
			if ready {
				done[t], progress = true, true
				out = append(out, t)
			}
		}
		if !progress {
			return nil, errors.New("database: the foreign keys of the schema form a cycle; no table order copies it")
		}
	}
	return out, nil
}

func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// quoteIdent quotes a table or column name for both engines.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// RowCounts returns the number of rows of every table (Tables' order on
// SQLite, by name on PostgreSQL).
func (db *DB) RowCounts(ctx context.Context) ([]TableCount, error) {
	tables, err := db.Tables(ctx)
	if err != nil {
		return nil, err
	}
	return rowCounts(ctx, db.Read(), tables)
}

func rowCounts(ctx context.Context, q Querier, tables []string) ([]TableCount, error) {
	out := make([]TableCount, 0, len(tables))
	for _, t := range tables {
		var n int64
		if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+quoteIdent(t)).Scan(&n); err != nil {
			return nil, fmt.Errorf("failed to count the rows of %s: %w", t, err)
		}
		out = append(out, TableCount{Table: t, Rows: n})
	}
	return out, nil
}

// nonEmpty returns the tables of counts that hold rows, as "table (n)".
func nonEmpty(counts []TableCount) []string {
	var out []string
	for _, c := range counts {
		if c.Rows > 0 {
			out = append(out, fmt.Sprintf("%s (%d)", c.Table, c.Rows))
		}
	}
	return out
}

// CheckEmpty returns an error wrapping ErrNotEmpty, naming the tables that
// hold rows, unless every table of db is empty.
func (db *DB) CheckEmpty(ctx context.Context) error {
	counts, err := db.RowCounts(ctx)
	if err != nil {
		return err
	}
	if full := nonEmpty(counts); len(full) > 0 {
		return fmt.Errorf("%w: %s", ErrNotEmpty, strings.Join(full, ", "))
	}
	return nil
}

// CopyTables copies every table of src (SQLite) into dst (PostgreSQL),
// whose schema is the same (both are migrated by this binary when
// opened): in one transaction of dst, which is first checked to be empty
// (ErrNotEmpty otherwise), from one read snapshot of src. Rows are copied
// with their ids; afterwards every identity column's sequence is moved
// past the largest id copied, so that the next row inserted gets a new
// id. The append-only triggers of the ledger stay in force: its rows
// arrive at the next index each, as they were appended. An interruption
// or an error leaves dst as empty as it was. progress, if set, is told
// after each table how many rows it copied. It returns the rows copied
// per table, in copy order.
func CopyTables(ctx context.Context, src, dst *DB, progress func(table string, rows int64)) ([]TableCount, error) {
	if src.dialect != SQLite || dst.dialect != Postgres {
		return nil, fmt.Errorf("database: a copy goes from SQLite to PostgreSQL (here from %s to %s)", src.dialect, dst.dialect)
	}
	tables, err := src.Tables(ctx)
	if err != nil {
		return nil, err
	}
	dstTables, err := dst.Tables(ctx)
	if err != nil {
		return nil, err
	}
	if a, b := sortedCopy(tables), sortedCopy(dstTables); strings.Join(a, ",") != strings.Join(b, ",") {
		return nil, fmt.Errorf("database: the two databases have different tables (SQLite: %s; PostgreSQL: %s)", strings.Join(a, ", "), strings.Join(b, ", "))
	}
	cols := map[string][]copyColumn{}
	for _, t := range tables {
		if cols[t], err = tableColumns(ctx, src.Read(), dst.Read(), t); err != nil {
			return nil, err
		}
	}
	// The snapshot of src every table is read from.
	rtx, err := src.Read().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("failed to begin reading the source: %w", err)
	}
	defer rtx.Rollback()
	var copied []TableCount
	err = dst.Write(ctx, func(tx *Tx) error {
		copied = copied[:0]
		counts, err := rowCounts(ctx, tx, tables)
		if err != nil {
			return err
		}
		if full := nonEmpty(counts); len(full) > 0 {
			return fmt.Errorf("%w: %s", ErrNotEmpty, strings.Join(full, ", "))
		}
		for _, t := range tables {
			n, err := copyTable(ctx, rtx, tx, t, cols[t])
			if err != nil {
				return err
			}
			if err := moveIdentities(ctx, tx, t, cols[t]); err != nil {
				return err
			}
			copied = append(copied, TableCount{Table: t, Rows: n})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if progress != nil {
		for _, c := range copied {
			progress(c.Table, c.Rows)
		}
	}
	return copied, nil
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// tableColumns returns the columns of table t in SQLite's order, with
// what PostgreSQL's catalog says of each; the two must name the same
// columns.
func tableColumns(ctx context.Context, src, dst Querier, t string) ([]copyColumn, error) {
	rows, err := src.QueryContext(ctx, `SELECT name, pk FROM pragma_table_info(?) ORDER BY cid`, t)
	if err != nil {
		return nil, fmt.Errorf("failed to read the columns of %s: %w", t, err)
	}
	var cols []copyColumn
	for rows.Next() {
		var c copyColumn
		if err := rows.Scan(&c.name, &c.pk); err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to read the columns of %s: %w", t, err)
		}
		cols = append(cols, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to read the columns of %s: %w", t, err)
	}
	rows, err = dst.QueryContext(ctx, `SELECT column_name, data_type, is_identity FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = ?`, t)
	if err != nil {
		return nil, fmt.Errorf("failed to read the columns of %s in PostgreSQL: %w", t, err)
	}
	type pgCol struct{ typ, identity string }
	pg := map[string]pgCol{}
	for rows.Next() {
		var name string
		var c pgCol
		if err := rows.Scan(&name, &c.typ, &c.identity); err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to read the columns of %s in PostgreSQL: %w", t, err)
		}
		pg[name] = c
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to read the columns of %s in PostgreSQL: %w", t, err)
	}
	if len(pg) != len(cols) {
		return nil, fmt.Errorf("database: table %s has %d columns in SQLite and %d in PostgreSQL", t, len(cols), len(pg))
	}
	for i, c := range cols {
		p, ok := pg[c.name]
		if !ok {
			return nil, fmt.Errorf("database: column %s.%s is missing in PostgreSQL", t, c.name)
		}
		cols[i].text = p.typ == "text"
		cols[i].bytea = p.typ == "bytea"
		cols[i].identity = p.identity == "YES"
	}
	return cols, nil
}

// copyTable copies the rows of table t from the snapshot src into tx, in
// primary-key order (rowid order for a table without one), a batch of
// rows per INSERT. It returns the number of rows copied.
func copyTable(ctx context.Context, src *sql.Tx, tx *Tx, t string, cols []copyColumn) (int64, error) {
	names := make([]string, len(cols))
	var pk []copyColumn
	for i, c := range cols {
		names[i] = quoteIdent(c.name)
		if c.pk > 0 {
			pk = append(pk, c)
		}
	}
	sort.Slice(pk, func(i, j int) bool { return pk[i].pk < pk[j].pk })
	order := "rowid"
	if len(pk) > 0 {
		keys := make([]string, len(pk))
		for i, c := range pk {
			keys[i] = quoteIdent(c.name)
		}
		order = strings.Join(keys, ", ")
	}
	rows, err := src.QueryContext(ctx, `SELECT `+strings.Join(names, ", ")+` FROM `+quoteIdent(t)+` ORDER BY `+order)
	if err != nil {
		return 0, fmt.Errorf("failed to read %s: %w", t, err)
	}
	defer rows.Close()
	perBatch := min(copyBatchRows, copyBatchParams/len(cols))
	head := `INSERT INTO ` + quoteIdent(t) + ` (` + strings.Join(names, ", ") + `) VALUES `
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	var (
		args  []any
		n     int64
		batch int
	)
	flush := func() error {
		if batch == 0 {
			return nil
		}
		stmt := head + strings.TrimSuffix(strings.Repeat(one+", ", batch), ", ")
		if _, err := tx.ExecContext(ctx, stmt, args...); err != nil {
			return fmt.Errorf("failed to copy rows of %s: %w", t, err)
		}
		args, batch = args[:0], 0
		return nil
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return 0, fmt.Errorf("failed to read %s: %w", t, err)
		}
		for i, c := range cols {
			args = append(args, convert(vals[i], c))
		}
		batch++
		n++
		if batch == perBatch {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("failed to read %s: %w", t, err)
	}
	return n, flush()
}

// convert gives a SQLite value the type of its PostgreSQL column: the
// ledger's records are a BLOB in SQLite and text in PostgreSQL.
func convert(v any, c copyColumn) any {
	switch x := v.(type) {
	case []byte:
		if c.text {
			return string(x)
		}
		return append([]byte(nil), x...)
	case string:
		if c.bytea {
			return []byte(x)
		}
	}
	return v
}

// moveIdentities sets the sequence of each identity column of t past the
// largest value copied (to 1 when the table is empty).
func moveIdentities(ctx context.Context, tx *Tx, t string, cols []copyColumn) error {
	for _, c := range cols {
		if !c.identity {
			continue
		}
		q := `SELECT setval(pg_get_serial_sequence(?, ?), COALESCE((SELECT MAX(` + quoteIdent(c.name) + `) FROM ` + quoteIdent(t) + `), 0) + 1, false)`
		if _, err := tx.ExecContext(ctx, q, t, c.name); err != nil {
			return fmt.Errorf("failed to set the sequence of %s.%s: %w", t, c.name, err)
		}
	}
	return nil
}
