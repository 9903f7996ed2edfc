package audit

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/database"
)

func TestAppendVerifyRoundTrip(t *testing.T) {
	f := newFixture(t)
	f.appendN(100, event)
	cp := f.checkpoint()
	if cp.Size != 100 || cp.Origin != testOrigin {
		t.Fatalf("checkpoint %+v", cp)
	}
	f.appendN(10, event)

	rep, err := f.verifyDB(VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// 100 + the checkpoint's own event + 10.
	if rep.Size != 111 || rep.Entries != 111 || rep.Checkpoints != 1 || rep.Unanchored != 11 {
		t.Fatalf("report %+v", rep)
	}
	// Records read back byte for byte, and decode to what was appended.
	err = f.l.Records(f.ctx, f.db.Read(), 0, 5, func(idx int64, data []byte) error {
		ev, err := ParseRecord(data)
		if err != nil {
			return err
		}
		want := event(int(idx))
		if ev.Type != want.Type || ev.Actor != want.Actor || ev.File != want.File || ev.Time.IsZero() {
			t.Errorf("record %d = %+v", idx, ev)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r100, err := f.l.Record(f.ctx, f.db.Read(), 100)
	if err != nil || !bytes.Contains(r100, []byte(`"type":"checkpoint.signed"`)) || !bytes.Contains(r100, []byte(`"size":"100"`)) {
		t.Fatalf("entry 100 = %s, %v", r100, err)
	}
	if _, err := f.l.Record(f.ctx, f.db.Read(), 111); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing record: %v", err)
	}

	// The proof of an entry checks out offline.
	p, err := f.l.Prove(f.ctx, f.db.Read(), 42, cp)
	if err != nil {
		t.Fatal(err)
	}
	gotCP, ev, err := CheckInclusion(f.vkey, p)
	if err != nil || gotCP.Size != 100 || ev.Type != event(42).Type {
		t.Fatalf("CheckInclusion: %v %+v", err, ev)
	}
	p.Line = strings.Replace(p.Line, "alice", "alicf", 1)
	if _, _, err := CheckInclusion(f.vkey, p); !isVerifyErrorAt(err, 42) {
		t.Fatalf("altered proof line: %v", err)
	}
	if _, err := f.l.Prove(f.ctx, f.db.Read(), 100, cp); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("uncovered entry: %v", err)
	}
}

func isVerifyErrorAt(err error, idx int64) bool {
	var ve *VerifyError
	return errors.As(err, &ve) && ve.Index == idx && errors.Is(err, ErrTampered)
}

func TestAppendFillsTimeAndVersion(t *testing.T) {
	// A clock that does not advance: the time is truncated to
	// milliseconds (rounding would give 12:00:01.000).
	f := newFixture(t, func(o *Options) {
		o.Now = func() time.Time { return time.Date(2026, 5, 1, 12, 0, 0, 999_999_999, time.UTC) }
	})
	var idx int64
	err := f.db.Write(f.ctx, func(tx *database.Tx) error {
		var err error
		idx, err = f.l.Append(f.ctx, tx, Event{Type: TypeLogin, Actor: "carol"})
		return err
	})
	if err != nil || idx != 0 {
		t.Fatal(idx, err)
	}
	data, _ := f.l.Record(f.ctx, f.db.Read(), 0)
	if want := `{"v":1,"time":"2026-05-01T12:00:00.999Z","type":"login","actor":"carol"}`; string(data) != want {
		t.Fatalf("got %s want %s", data, want)
	}
	err = f.db.Write(f.ctx, func(tx *database.Tx) error {
		_, err := f.l.Append(f.ctx, tx, Event{Type: TypeLogin, Actor: "bad\nactor"})
		return err
	})
	if !errors.Is(err, ErrInvalidEvent) {
		t.Fatalf("invalid event appended: %v", err)
	}
}

// A savepoint rolled back with its append must not leave a hole or fork:
// the index is read from the transaction.
func TestAppendRolledBackSavepoint(t *testing.T) {
	f := newFixture(t)
	f.appendN(3, event)
	boom := errors.New("boom")
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f.db.Write(f.ctx, func(tx *database.Tx) error {
				if _, err := f.l.Append(f.ctx, tx, event(i)); err != nil {
					return err
				}
				if i%3 == 0 {
					return boom // rolled back together with its record
				}
				return nil
			})
			if err != nil && !errors.Is(err, boom) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	n, err := f.l.Size(f.ctx, f.db.Read())
	if err != nil || n != 3+13 {
		t.Fatalf("size %d, %v", n, err)
	}
	if _, err := f.verifyDB(VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Concurrent appends, each its own db.Write from 8 goroutines (group
// commit batches them), never fork the tree: indices are dense and the
// whole tree verifies.
func TestConcurrentAppends(t *testing.T) {
	f := newFixture(t)
	const writers, per = 8, 150
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[int64]bool{}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				err := f.db.Write(f.ctx, func(tx *database.Tx) error {
					idx, err := f.l.Append(f.ctx, tx, event(w*per+i))
					if err != nil {
						return err
					}
					tx.AfterCommit(func() {
						mu.Lock()
						defer mu.Unlock()
						if seen[idx] {
							t.Errorf("index %d handed out twice", idx)
						}
						seen[idx] = true
					})
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
		if w == 3 { // a checkpoint in the middle of it all
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := f.l.Checkpoint(f.ctx, f.db, f.signer); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	// The appends and the checkpoint's own event fill 0..n-1 exactly.
	missing := 0
	for i := range int64(writers*per + 1) {
		if !seen[i] {
			missing++
			data, err := f.l.Record(f.ctx, f.db.Read(), i)
			if err != nil || !bytes.Contains(data, []byte(TypeCheckpointSigned)) {
				t.Fatalf("index %d never handed out (%s, %v)", i, data, err)
			}
		}
	}
	if missing != 1 || len(seen) != writers*per {
		t.Fatalf("%d indices handed out, %d gaps", len(seen), missing)
	}
	f.checkpoint()
	rep, err := f.verifyDB(VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Size != writers*per+2 || rep.Checkpoints != 2 {
		t.Fatalf("report %+v", rep)
	}
}

// Several goroutines appending through one *sql.Tx (not how sealgate does
// it, but it must not fork the tree either).
func TestConcurrentAppendsOneTx(t *testing.T) {
	f := newFixture(t)
	err := f.db.Write(f.ctx, func(tx *database.Tx) error {
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := f.l.Append(f.ctx, tx.Tx, event(i)); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
	if err != nil {
		t.Fatal(err)
	}
	f.checkpoint()
	if rep, err := f.verifyDB(VerifyOptions{}); err != nil || rep.Size != 41 {
		t.Fatal(rep, err)
	}
}

func TestTriggersProtectLedger(t *testing.T) {
	f := newFixture(t)
	f.appendN(5, event)
	f.checkpoint()
	// Bytes are bound (x'00' is a bit string to PostgreSQL); every
	// statement must be refused by a trigger, not by a parser.
	zero, rec := []byte{0}, []byte("x")
	stmts := []struct {
		sql  string
		args []any
	}{
		{`UPDATE ledger_records SET data = ? WHERE idx = 1`, []any{rec}},
		{`DELETE FROM ledger_records WHERE idx = 4`, nil},
		{`DELETE FROM ledger_records`, nil},
		{`INSERT INTO ledger_records(idx, time_ms, type, contract, data) VALUES (9, 0, 'login', '', ?)`, []any{rec}},
		{`INSERT INTO ledger_records(idx, time_ms, type, contract, data) VALUES (3, 0, 'login', '', ?) ON CONFLICT(idx) DO UPDATE SET data = excluded.data`, []any{rec}},
		{`UPDATE ledger_hashes SET hash = ? WHERE idx = 0`, []any{zero}},
		{`DELETE FROM ledger_hashes WHERE idx = 0`, nil},
		{`INSERT INTO ledger_hashes(idx, hash) VALUES (1, ?) ON CONFLICT(idx) DO UPDATE SET hash = excluded.hash`, []any{zero}},
		{`UPDATE ledger_checkpoints SET note = '' WHERE size = 5`, nil},
		{`DELETE FROM ledger_checkpoints`, nil},
		{`INSERT INTO ledger_checkpoints(size, root, note, created_at) VALUES (5, ?, 'x', 0) ON CONFLICT(size) DO UPDATE SET note = excluded.note`, []any{zero}},
	}
	if f.db.Dialect() == database.SQLite {
		// SQLite's REPLACE deletes the old row without DELETE triggers.
		for _, q := range []string{
			`INSERT OR REPLACE INTO ledger_records(idx, time_ms, type, contract, data) VALUES (2, 0, 'login', '', ?)`,
			`INSERT OR REPLACE INTO ledger_hashes(idx, hash) VALUES (1, ?)`,
			`INSERT OR REPLACE INTO ledger_checkpoints(size, root, note, created_at) VALUES (5, ?, 'x', 0)`,
		} {
			stmts = append(stmts, struct {
				sql  string
				args []any
			}{q, []any{zero}})
		}
	} else {
		for _, q := range []string{`TRUNCATE ledger_records`, `TRUNCATE ledger_hashes`} {
			stmts = append(stmts, struct {
				sql  string
				args []any
			}{q, nil})
		}
	}
	refused := regexp.MustCompile(`append-only|appended at the next index only|a checkpoint of this size exists`)
	for _, s := range stmts {
		err := f.db.Write(f.ctx, func(tx *database.Tx) error {
			_, err := tx.ExecContext(f.ctx, s.sql, s.args...)
			return err
		})
		if err == nil || !refused.MatchString(err.Error()) {
			t.Errorf("not refused by a trigger: %s: %v", s.sql, err)
		}
	}
	// A purge of everything else leaves the ledger whole.
	if rep, err := f.verifyDB(VerifyOptions{}); err != nil || rep.Size != 6 {
		t.Fatal(rep, err)
	}
}

// Rows deleted behind the ledger's back stop further appends.
func TestAppendRefusesCorruptTables(t *testing.T) {
	f := newFixture(t)
	f.appendN(8, event)
	raw := f.raw(true)
	if _, err := raw.Exec(`DELETE FROM ledger_records WHERE idx = 7`); err != nil {
		t.Fatal(err)
	}
	err := f.db.Write(f.ctx, func(tx *database.Tx) error {
		_, err := f.l.Append(f.ctx, tx, event(1))
		return err
	})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("append on corrupt tables: %v", err)
	}
}

func TestNewValidatesOrigin(t *testing.T) {
	for _, o := range []string{"", "a\nb", "a\x00"} {
		if _, err := New(Options{Origin: o}); err == nil {
			t.Errorf("origin %q accepted", o)
		}
	}
}

func TestContextCancelled(t *testing.T) {
	f := newFixture(t)
	f.appendN(10, event)
	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	if _, err := VerifyDB(ctx, f.db, f.vkey, VerifyOptions{}, nil); err == nil {
		t.Fatal("verify with a cancelled context succeeded")
	}
}

// Appends whose rows are written later (PostgreSQL: database.Tx.Defer)
// are seen by the rest of their transaction: its size and records, read
// in the transaction, include them.
func TestAppendsReadInTheirTransaction(t *testing.T) {
	f := newFixture(t)
	f.appendN(2, event)
	err := f.db.Write(f.ctx, func(tx *database.Tx) error {
		var idx []int64
		for i := range 3 {
			n, err := f.l.Append(f.ctx, tx, event(10+i))
			if err != nil {
				return err
			}
			idx = append(idx, n)
		}
		size, err := f.l.Size(f.ctx, tx)
		if err != nil {
			return err
		}
		if size != 5 || idx[2] != 4 {
			t.Errorf("in the transaction: size %d, indexes %v", size, idx)
		}
		data, err := f.l.Record(f.ctx, tx, idx[1])
		if err != nil {
			return err
		}
		if want := event(11); !bytes.Contains(data, []byte(`"`+want.Actor+`"`)) || !bytes.Contains(data, []byte(want.Type)) {
			t.Errorf("record %d read in its transaction: %s", idx[1], data)
		}
		// An append after the reads continues the same tree.
		n, err := f.l.Append(f.ctx, tx, event(13))
		if err == nil && n != 5 {
			t.Errorf("append after the reads: index %d", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := f.verifyDB(VerifyOptions{}); err != nil || rep.Size != 6 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

// TestAppendsNotLostWhenAWriteFails: an append that writes the
// transaction's pending records (PostgreSQL) does so with its own
// context; when that write fails without reaching the server (the context
// is done), the records appended before — by this function or by an
// earlier function of the batch, whose indexes were returned — are still
// written before the commit, or the transaction does not commit. A
// function that goes on after the failed append (here: ignores it) must
// not commit with the ledger missing records it was told were appended.
// The failing append writes them because its record makes them
// maxPending, because they are maxPending already, or because it must
// read a stored hash (record 511 needs the root of the first 256, which
// no append of its transaction read).
func TestAppendsNotLostWhenAWriteFails(t *testing.T) {
	for _, c := range []struct{ committed, before int }{{0, maxPending - 1}, {0, maxPending}, {256, 255}} {
		f := newFixture(t)
		f.appendN(c.committed, event)
		var indexes []int64
		err := f.db.Write(f.ctx, func(tx *database.Tx) error {
			indexes = nil
			for i := range c.before {
				n, err := f.l.Append(f.ctx, tx, event(i))
				if err != nil {
					return err
				}
				indexes = append(indexes, n)
			}
			done, cancel := context.WithCancel(f.ctx)
			cancel()
			if n, err := f.l.Append(done, tx, event(c.before)); err == nil {
				indexes = append(indexes, n)
			}
			return nil
		})
		if err != nil {
			continue // not committed: nothing was promised
		}
		size, err := f.l.Size(f.ctx, f.db.Read())
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(c.committed + len(indexes)); size != want {
			t.Fatalf("%d records, then %d appends before the failing one: the ledger holds %d records; want %d (%d appends returned an index)",
				c.committed, c.before, size, want, len(indexes))
		}
		if _, err := f.verifyDB(VerifyOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}
