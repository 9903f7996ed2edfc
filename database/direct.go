package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// maxDirect bounds the connections of Statement on PostgreSQL.
const maxDirect = 8

// Statement runs one statement that writes, as a transaction of its own,
// and scans the one row it returns into dest (with no dest it expects no
// row and ignores any). It is for writes that are atomic by themselves —
// a counter's INSERT … ON CONFLICT DO UPDATE … RETURNING — and that must
// not wait in the writer's queue: on PostgreSQL it runs in autocommit at
// the server's default isolation (READ COMMITTED, under which such an
// upsert is still atomic) on a pool of its own, outside the writer, its
// batches and its locks, so every instance and every request runs it at
// once; its tables must therefore be written by Statement only, never
// inside Write. On SQLite, where one connection writes, it goes through
// Write, so it must not be called from inside a Write function.
func (db *DB) Statement(ctx context.Context, dest []any, query string, args ...any) error {
	if db.dialect != Postgres {
		return db.Write(ctx, func(tx *Tx) error {
			if len(dest) == 0 {
				_, err := tx.ExecContext(ctx, query, args...)
				return err
			}
			return tx.QueryRowContext(ctx, query, args...).Scan(dest...)
		})
	}
	var err error
	if len(dest) == 0 {
		_, err = db.direct.ExecContext(ctx, query, args...)
		err = failed(db.opts.Failed, OpExec, err)
	} else {
		err = failed(db.opts.Failed, OpQuery, db.direct.QueryRowContext(ctx, query, args...).Scan(dest...))
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("failed to run a statement: %w", err)
	}
	return err
}
