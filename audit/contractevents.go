package audit

import (
	"context"
	"fmt"
	"strings"
)

// Indexed is a ledger event with its index.
type Indexed struct {
	Idx   int64
	Event Event
}

// ContractEvents returns the events of contract code of the given types
// with an index in [from, to) (to < 0: up to the end), in ledger order.
func ContractEvents(ctx context.Context, q DBTX, code string, from, to int64, types ...string) ([]Indexed, error) {
	if len(types) == 0 {
		return nil, nil
	}
	if to < 0 {
		to = 1 << 62
	}
	args := []any{code, from, to}
	for _, t := range types {
		args = append(args, t)
	}
	rows, err := q.QueryContext(ctx, `SELECT idx, data FROM ledger_records WHERE contract = ? AND idx >= ? AND idx < ? AND type IN (?`+
		strings.Repeat(", ?", len(types)-1)+`) ORDER BY idx`, args...)
	if err != nil {
		return nil, fmt.Errorf("failed to read the contract's ledger events: %w", err)
	}
	defer rows.Close()
	var out []Indexed
	for rows.Next() {
		var idx int64
		var data []byte
		if err := rows.Scan(&idx, &data); err != nil {
			return nil, fmt.Errorf("failed to read ledger record: %w", err)
		}
		ev, err := ParseRecord(data)
		if err != nil {
			return nil, fmt.Errorf("ledger entry #%d: %w", idx, err)
		}
		out = append(out, Indexed{Idx: idx, Event: ev})
	}
	return out, rows.Err()
}

// LastContractEvent returns the index of the contract's last event of type
// typ, or -1.
func LastContractEvent(ctx context.Context, q DBTX, code, typ string) (int64, error) {
	var idx int64
	err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(idx), -1) FROM ledger_records WHERE contract = ? AND type = ?`, code, typ).Scan(&idx)
	if err != nil {
		return 0, fmt.Errorf("failed to read the ledger: %w", err)
	}
	return idx, nil
}
