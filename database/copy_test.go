package database

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

// fillLite writes rows into tables of several kinds: an identity id
// (contracts, outbound with its self-references), the ledger's
// append-only tables whose records are a BLOB in SQLite and text in
// PostgreSQL, a bytea column (recipients.token_hash).
func fillLite(t *testing.T, db *DB) {
	t.Helper()
	ctx := context.Background()
	err := db.Write(ctx, func(tx *Tx) error {
		stmts := []struct {
			q    string
			args []any
		}{
			{`INSERT INTO contracts(id, code, kek_recipient, created_at) VALUES (7, 'C-1', 'age1x', 1)`, nil},
			{`INSERT INTO contracts(id, code, kek_recipient, created_at) VALUES (9, 'C-2', 'age1y', 2)`, nil},
			{`INSERT INTO messages(id, received_at, client_addr, mail_from, size, contract_id) VALUES ('m1', 1, '127.0.0.1', 'a@corp.example', 10, 7)`, nil},
			{`INSERT INTO transfers(id, message_id, contract_id, sender, created_at, expires_at) VALUES ('t1', 'm1', 7, 'a@corp.example', 1, 2)`, nil},
			{`INSERT INTO recipients(id, transfer_id, address, token_hash) VALUES (3, 't1', 'x@client.example', ?)`, []any{[]byte{0, 1, 2, 255}}},
			{`INSERT INTO outbound(id, message_id, kind, mail_from, rcpts, status, next_attempt_at, created_at) VALUES (4, 'm1', 'sealed', 'a@corp.example', '[]', 'delivered', 0, 0)`, nil},
			{`INSERT INTO outbound(id, message_id, kind, mail_from, rcpts, status, next_attempt_at, created_at, after_id) VALUES (5, 'm1', 'key', 'a@corp.example', '[]', 'queued', 0, 0, 4)`, nil},
			{`INSERT INTO ledger_records(idx, time_ms, type, data) VALUES (0, 1, 'x', ?)`, []any{[]byte(`{"a":1}`)}},
			{`INSERT INTO ledger_records(idx, time_ms, type, data) VALUES (1, 2, 'y', ?)`, []any{[]byte(`{"b":"日本"}`)}},
		}
		for _, s := range stmts {
			if _, err := tx.ExecContext(ctx, s.q, s.args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCopyTables: every table reaches PostgreSQL with the same rows; the
// identity sequences continue after the copied ids; a second copy into
// the now full database is refused and changes nothing.
func TestCopyTables(t *testing.T) {
	ctx := context.Background()
	lite, pg := openBoth(t)
	fillLite(t, lite)
	var told []string
	copied, err := CopyTables(ctx, lite, pg, func(table string, rows int64) { told = append(told, table) })
	if err != nil {
		t.Fatal(err)
	}
	tables, err := lite.Tables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(copied) != len(tables) || len(told) != len(tables) {
		t.Fatalf("copied %d tables, told %d, the schema has %d", len(copied), len(told), len(tables))
	}
	pos := map[string]int{}
	for i, c := range copied {
		pos[c.Table] = i
	}
	for _, pair := range [][2]string{{"contracts", "messages"}, {"messages", "transfers"}, {"transfers", "recipients"}, {"recipients", "outbound"}} {
		if pos[pair[0]] > pos[pair[1]] {
			t.Errorf("%s copied after %s, which refers to it", pair[0], pair[1])
		}
	}
	want := map[string]int64{"contracts": 2, "messages": 1, "transfers": 1, "recipients": 1, "outbound": 2, "ledger_records": 2}
	for _, c := range copied {
		if c.Rows != want[c.Table] {
			t.Errorf("%s: %d rows copied, want %d", c.Table, c.Rows, want[c.Table])
		}
	}
	var data string
	if err := pg.Read().QueryRowContext(ctx, `SELECT data FROM ledger_records WHERE idx = 1`).Scan(&data); err != nil || data != `{"b":"日本"}` {
		t.Errorf("ledger record 1 in PostgreSQL: %q, %v", data, err)
	}
	var hash []byte
	if err := pg.Read().QueryRowContext(ctx, `SELECT token_hash FROM recipients WHERE id = 3`).Scan(&hash); err != nil || !reflect.DeepEqual(hash, []byte{0, 1, 2, 255}) {
		t.Errorf("token_hash in PostgreSQL: %x, %v", hash, err)
	}
	// The next contract gets an id after the copied ones.
	var id int64
	err = pg.Write(ctx, func(tx *Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO contracts(code, kek_recipient, created_at) VALUES ('C-3', 'age1z', 3) RETURNING id`).Scan(&id)
	})
	if err != nil || id != 10 {
		t.Fatalf("new contract on PostgreSQL: id %d, %v (want 10)", id, err)
	}
	_, err = CopyTables(ctx, lite, pg, nil)
	if !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("second copy: %v, want ErrNotEmpty", err)
	}
	if err := pg.CheckEmpty(ctx); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("CheckEmpty of a full database: %v", err)
	}
	var n int64
	if err := pg.Read().QueryRowContext(ctx, `SELECT COUNT(*) FROM contracts`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("contracts after the refused copy: %d, %v", n, err)
	}
}

// TestCopyTablesRollsBack: a copy that fails half-way leaves the target
// empty, so that it can be run again.
func TestCopyTablesRollsBack(t *testing.T) {
	ctx := context.Background()
	lite, pg := openBoth(t)
	fillLite(t, lite)
	if err := pg.CheckEmpty(ctx); err != nil {
		t.Fatalf("fresh database: %v", err)
	}
	// A row PostgreSQL refuses (NUL in text) makes the copy fail after
	// contracts were copied in the same transaction.
	err := lite.Write(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO messages(id, received_at, client_addr, helo, mail_from, size) VALUES ('m2', 1, '127.0.0.1', ?, 'a@corp.example', 10)`, "a\x00b")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CopyTables(ctx, lite, pg, nil); err == nil {
		t.Fatal("the copy of a record PostgreSQL refuses succeeded")
	}
	if err := pg.CheckEmpty(ctx); err != nil {
		t.Fatalf("after a failed copy: %v", err)
	}
}

// TestParentsFirst: parents before children, ties in the given order, a
// self-reference allowed, a cycle refused.
func TestParentsFirst(t *testing.T) {
	got, err := parentsFirst([]string{"c", "a", "b"}, map[string][]string{"c": {"b", "c"}, "b": {"a"}})
	if err != nil || !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatalf("order %v, %v", got, err)
	}
	if _, err := parentsFirst([]string{"a", "b"}, map[string][]string{"a": {"b"}, "b": {"a"}}); err == nil {
		t.Fatal("a cycle was ordered")
	}
}
