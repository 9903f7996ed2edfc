package gateway

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/sealgate/sealgate/database"
)

// DefaultSpoolInDB is the largest spool file DBSpool keeps in the
// database: the skeleton of a message whose attachments were sealed, and
// the original of a small one, fit in it.
const DefaultSpoolInDB = 256 << 10

// DBSpool keeps the spool files of up to Max bytes as rows of the
// database (spool_files) and the larger ones in Next. A file is written
// to memory while it is sealed; its Commit inserts it in a write
// transaction of its own (group-committed with the other writes, durable
// when Commit returns, before the accept transaction that references it),
// and its removal after the last delivery is one DELETE. Where the files
// are small — most mail once its attachments are sealed — this takes a
// file's creation, two fsyncs (the file's, its directory's), a rename and
// an unlink per message off the disk (SQLite: measured at 0.3–0.7 ms of
// kernel time per created file on this project's machine), and on
// PostgreSQL an upload, a download and a four-request deletion off the
// bucket; every instance of a fleet reads the rows, as it reads the
// bucket. A file that grows past Max while it is written moves to Next.
type DBSpool struct {
	DB   *database.DB
	Next SpoolStore
	Max  int // 0: DefaultSpoolInDB
	Now  func() time.Time
}

func (s *DBSpool) max() int {
	if s.Max > 0 {
		return s.Max
	}
	return DefaultSpoolInDB
}

func (s *DBSpool) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Shared implements SpoolStore: as Next (a database is shared when a
// bucket is).
func (s *DBSpool) Shared() bool { return s.Next.Shared() }

// prepare prepares Next (DirSpool: its directory).
func (s *DBSpool) prepare() error {
	if p, ok := s.Next.(interface{ prepare() error }); ok {
		return p.prepare()
	}
	return nil
}

// stagedWriter is a SpoolWriter whose file, while it is in memory, can be
// committed in a transaction of the caller's (DBSpool's): the accept
// transaction inserts a message's spool files with its own rows, so that
// they commit together, in one transaction, where a transaction of their
// own would come first.
type stagedWriter interface {
	// stage ends the writing and returns the file's bytes, or false if
	// the file is not in memory (then Commit it).
	stage() ([]byte, bool)
	// insert writes data as the file in tx.
	insert(ctx context.Context, tx *database.Tx, data []byte) error
}

// Create implements SpoolStore.
func (s *DBSpool) Create(ctx context.Context, name string) (SpoolWriter, error) {
	if err := checkSpoolName(name); err != nil {
		return nil, err
	}
	return &dbSpoolFile{s: s, ctx: ctx, name: name}, nil
}

// dbSpoolFile is a spool file being written: in buf until it outgrows
// the database, then in next.
type dbSpoolFile struct {
	s    *DBSpool
	ctx  context.Context
	name string
	buf  bytes.Buffer
	next SpoolWriter
	done bool
}

func (f *dbSpoolFile) Write(p []byte) (int, error) {
	if f.done {
		return 0, errors.New("spool: write after commit or abort")
	}
	if f.next != nil {
		return f.next.Write(p)
	}
	if f.buf.Len()+len(p) <= f.s.max() {
		return f.buf.Write(p)
	}
	next, err := f.s.Next.Create(f.ctx, f.name)
	if err != nil {
		return 0, err
	}
	f.next = next
	if _, err := next.Write(f.buf.Bytes()); err != nil {
		return 0, err
	}
	f.buf = bytes.Buffer{}
	return next.Write(p)
}

// Commit implements SpoolWriter: the row (an old one replaced in place),
// or the file in Next (Replace deletes an old row).
func (f *dbSpoolFile) Commit() error {
	if f.done {
		return errors.New("spool: commit after commit or abort")
	}
	f.done = true
	if f.next != nil {
		return f.next.Commit()
	}
	data := f.buf.Bytes()
	return f.s.DB.Write(f.ctx, func(tx *database.Tx) error { return f.s.insert(f.ctx, tx, f.name, data) })
}

// stage implements stagedWriter.
func (f *dbSpoolFile) stage() ([]byte, bool) {
	if f.done || f.next != nil {
		return nil, false
	}
	f.done = true
	return f.buf.Bytes(), true
}

// insert implements stagedWriter.
func (f *dbSpoolFile) insert(ctx context.Context, tx *database.Tx, data []byte) error {
	return f.s.insert(ctx, tx, f.name, data)
}

// insert writes the file name in tx.
func (s *DBSpool) insert(ctx context.Context, tx *database.Tx, name string, data []byte) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO spool_files(name, data, written_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET data = excluded.data, written_at = excluded.written_at`, name, data, s.now().UnixMilli())
	if err != nil {
		return fmt.Errorf("failed to store spool file %s: %w", name, err)
	}
	return nil
}

// Abort implements SpoolWriter.
func (f *dbSpoolFile) Abort() {
	if f.done {
		return
	}
	f.done = true
	if f.next != nil {
		f.next.Abort()
	}
	f.buf = bytes.Buffer{}
}

// Open implements SpoolStore: the row, or else the file in Next.
func (s *DBSpool) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkSpoolName(name); err != nil {
		return nil, err
	}
	var data []byte
	err := s.DB.Read().QueryRowContext(ctx, `SELECT data FROM spool_files WHERE name = ?`, name).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		rc, err := s.Next.Open(ctx, name)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return rc, err
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read spool file %s: %w", name, err)
	}
	return nopSeekCloser{bytes.NewReader(data)}, nil
}

// nopSeekCloser is a spool file read from the database.
type nopSeekCloser struct{ *bytes.Reader }

func (nopSeekCloser) Close() error { return nil }

// Replace implements SpoolStore: the new file is written as by Create and
// replaces the old one when it commits (a row in one statement; a file in
// Next by its own Commit, the row then deleted). A move between the
// database and Next that cannot finish is undone, so that the name stays
// in one place, the old file, as Replace promises when it fails: in both,
// the Remove after the last delivery would delete the row and leave the
// file in Next behind (readable, under a name removed).
func (s *DBSpool) Replace(ctx context.Context, name string, write func(io.Writer) error) error {
	if err := checkSpoolName(name); err != nil {
		return err
	}
	var one int
	err := s.DB.Read().QueryRowContext(ctx, `SELECT 1 FROM spool_files WHERE name = ?`, name).Scan(&one)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("failed to read spool file %s: %w", name, err)
	}
	hadRow := err == nil
	w := &dbSpoolFile{s: s, ctx: ctx, name: name}
	if err := write(w); err != nil {
		w.Abort()
		return err
	}
	if err := w.Commit(); err != nil {
		return err
	}
	if w.next != nil {
		// The new file is in Next; the old row, if any, goes.
		if !hadRow {
			return nil
		}
		if _, err := s.delete(ctx, name); err != nil {
			s.Next.Remove(ctx, name) // the old row stays the file
			return err
		}
		return nil
	}
	// The old file, if it was in Next, is replaced by the row.
	if err := s.Next.Remove(ctx, name); err != nil {
		// The new row goes only if the old file is still there to be the
		// file (a removal may fail after it took effect).
		if !hadRow && s.inNext(ctx, name) {
			s.delete(ctx, name)
		}
		return err
	}
	return nil
}

// inNext reports whether name can be read from Next.
func (s *DBSpool) inNext(ctx context.Context, name string) bool {
	rc, err := s.Next.Open(ctx, name)
	if err != nil {
		return false
	}
	rc.Close()
	return true
}

// Remove implements SpoolStore: the row, or else the file in Next.
func (s *DBSpool) Remove(ctx context.Context, name string) error {
	if err := checkSpoolName(name); err != nil {
		return err
	}
	deleted, err := s.delete(ctx, name)
	if err != nil || deleted {
		return err
	}
	return s.Next.Remove(ctx, name)
}

// delete deletes the row of name, reporting whether there was one.
func (s *DBSpool) delete(ctx context.Context, name string) (bool, error) {
	var deleted bool
	err := s.DB.Write(ctx, func(tx *database.Tx) (err error) {
		deleted, err = s.deleteTx(ctx, tx, name)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("failed to remove spool file %s: %w", name, err)
	}
	return deleted, nil
}

var _ txDeleter = (*DBSpool)(nil)

// deleteTx implements txDeleter: it deletes the row of name in tx,
// reporting whether there was one. A file of that name in Next is not
// touched.
func (s *DBSpool) deleteTx(ctx context.Context, tx *database.Tx, name string) (bool, error) {
	if err := checkSpoolName(name); err != nil {
		return false, err
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM spool_files WHERE name = ?`, name)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// List implements SpoolStore: the rows, then the files of Next.
func (s *DBSpool) List(ctx context.Context, fn func(name string, written time.Time) error) error {
	rows, err := s.DB.Read().QueryContext(ctx, `SELECT name, written_at FROM spool_files ORDER BY name`)
	if err != nil {
		return fmt.Errorf("failed to list spool files: %w", err)
	}
	type entry struct {
		name string
		at   int64
	}
	var all []entry
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.name, &e.at); err != nil {
			rows.Close()
			return fmt.Errorf("failed to list spool files: %w", err)
		}
		all = append(all, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("failed to list spool files: %w", err)
	}
	for _, e := range all {
		if err := fn(e.name, time.UnixMilli(e.at)); err != nil {
			return err
		}
	}
	return s.Next.List(ctx, fn)
}
