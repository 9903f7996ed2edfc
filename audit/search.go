package audit

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sealgate/sealgate/database"
)

// Query selects ledger records for a search (the portal's ledger and
// incident views). It reads the records as stored; a search result is not
// a verified export — Export makes one.
type Query struct {
	// Contracts, when not nil, restricts the search to these contract
	// codes (a manager's scope); an empty non-nil slice matches nothing.
	Contracts []string
	Contract  string   // one contract code ("" = any)
	Types     []string // event types (none = any)
	Recipient string   // e-mail address, as recorded or lower-cased
	Transfer  string
	Message   string
	// From (inclusive) and To (exclusive) bound the event time.
	From, To time.Time
	// Before, when positive, returns only records with a smaller index
	// (paging backwards).
	Before int64
	// Oldest returns the oldest records first (default newest first).
	Oldest bool
	Limit  int // default 200, at most 5000
}

// Found is one record a search matched.
type Found struct {
	Index int64
	// Event is the record with its names revealed (format v2): the clear
	// value the ledger still keeps, or DestroyedName.
	Event Event
	// Raw is the record when it does not parse (a tampered ledger); Event
	// is then zero but for what the indexed columns tell.
	Raw []byte
}

// the expressions match the indexes of migration 0005.
const (
	exprTransfer  = `json_extract(CAST(data AS TEXT), '$.transfer')`
	exprRecipient = `json_extract(CAST(data AS TEXT), '$.recipient')`
	exprMessage   = `json_extract(CAST(data AS TEXT), '$.message')`
)

// Search returns the records matching q, newest first unless q.Oldest.
func Search(ctx context.Context, db database.Querier, q Query) ([]Found, error) {
	if q.Limit <= 0 {
		q.Limit = 200
	}
	q.Limit = min(q.Limit, 5000)
	where := []string{"1 = 1"}
	var args []any
	in := func(col string, vals []string) {
		marks := make([]string, len(vals))
		for i, v := range vals {
			marks[i] = "?"
			args = append(args, v)
		}
		where = append(where, col+" IN ("+strings.Join(marks, ",")+")")
	}
	if q.Contracts != nil {
		if len(q.Contracts) == 0 {
			return nil, nil
		}
		in("contract", q.Contracts)
	}
	if q.Contract != "" {
		where, args = append(where, "contract = ?"), append(args, q.Contract)
	}
	if len(q.Types) > 0 {
		in("type", q.Types)
	}
	if q.Recipient != "" {
		vals := []string{q.Recipient, strings.ToLower(q.Recipient)}
		cs, err := commitmentsOf(ctx, db, vals)
		if err != nil {
			return nil, err
		}
		in(exprRecipient, append(vals, cs...))
	}
	if q.Transfer != "" {
		where, args = append(where, exprTransfer+" = ?"), append(args, q.Transfer)
	}
	if q.Message != "" {
		where, args = append(where, exprMessage+" = ?"), append(args, q.Message)
	}
	if !q.From.IsZero() {
		where, args = append(where, "time_ms >= ?"), append(args, q.From.UnixMilli())
	}
	if !q.To.IsZero() {
		where, args = append(where, "time_ms < ?"), append(args, q.To.UnixMilli())
	}
	if q.Before > 0 {
		where, args = append(where, "idx < ?"), append(args, q.Before)
	}
	order := "idx DESC"
	if q.Oldest {
		order = "idx"
	}
	rows, err := db.QueryContext(ctx, `SELECT idx, time_ms, type, contract, data FROM ledger_records WHERE `+strings.Join(where, " AND ")+
		` ORDER BY `+order+` LIMIT ?`, append(args, q.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("failed to search the ledger: %w", err)
	}
	defer rows.Close()
	var out []Found
	for rows.Next() {
		f, err := scanFound(rows)
		if err != nil {
			return nil, fmt.Errorf("failed to search the ledger: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to search the ledger: %w", err)
	}
	rows.Close()
	b := newNameBook(ctx, db)
	for i := range out {
		if err := b.reveal(&out[i].Event, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// EachOfType calls fn with every record of event type typ at or after
// since, oldest first, as Search returns them (Raw set for a record that
// does not parse, names revealed); it reads the whole range, without
// Search's limit. The access review reads the downloads of its window
// with it.
func EachOfType(ctx context.Context, db database.Querier, typ string, since time.Time, fn func(Found) error) error {
	rows, err := db.QueryContext(ctx, `SELECT idx, time_ms, type, contract, data FROM ledger_records WHERE type = ? AND time_ms >= ? ORDER BY idx`,
		typ, since.UnixMilli())
	if err != nil {
		return fmt.Errorf("failed to read the ledger: %w", err)
	}
	defer rows.Close()
	var found []Found
	for rows.Next() {
		f, err := scanFound(rows)
		if err != nil {
			return fmt.Errorf("failed to read the ledger: %w", err)
		}
		found = append(found, f)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("failed to read the ledger: %w", err)
	}
	// Names are revealed once the rows are read: the reader pool may
	// hold a single connection.
	rows.Close()
	b := newNameBook(ctx, db)
	for _, f := range found {
		if err := b.reveal(&f.Event, nil); err != nil {
			return err
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// scanFound reads one row of idx, time_ms, type, contract, data.
func scanFound(rows interface{ Scan(...any) error }) (Found, error) {
	var f Found
	var ms int64
	var typ, contract string
	var data []byte
	if err := rows.Scan(&f.Index, &ms, &typ, &contract, &data); err != nil {
		return f, err
	}
	ev, err := ParseRecord(data)
	if err != nil {
		f.Raw = data
		ev = Event{Time: time.UnixMilli(ms).UTC(), Type: typ, Contract: contract}
	}
	f.Event = ev
	return f, nil
}
