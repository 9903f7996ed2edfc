package account

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sealgate/sealgate/database"
)

// The lookups other packages make about accounts, so that none of them
// holds SQL about this package's tables. Each reads through q: the
// caller's transaction, or a read handle.

// HasActiveEmail reports whether key — an address in its comparison form
// (address.Address.Key: local part and domain lower-case) — is the address
// of an active account, however the account's address was typed.
func HasActiveEmail(ctx context.Context, q database.Querier, key string) (bool, error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM accounts WHERE lower(email) = ? AND status = 'active'`, key).Scan(&n); err != nil {
		return false, fmt.Errorf("failed to read accounts: %w", err)
	}
	return n > 0, nil
}

// ActiveEmails returns the addresses of the active accounts that hold
// role — for contract "", any grant of it; otherwise a grant for that
// contract or for every contract — as stored, each once, in order.
func ActiveEmails(ctx context.Context, q database.Querier, role, contract string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT DISTINCT a.email FROM accounts a JOIN account_roles r ON r.account_id = a.id
		WHERE a.status = 'active' AND r.role = ? AND (? = '' OR r.contract = '' OR r.contract = ?)`, role, contract, contract)
	if err != nil {
		return nil, fmt.Errorf("failed to list accounts by role: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			return nil, fmt.Errorf("failed to list accounts by role: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list accounts by role: %w", err)
	}
	// In the order of the column's collation in SQLite, NOCASE (ASCII
	// letters folded, then bytes): sorted here, since PostgreSQL's
	// case-insensitive ICU collation orders punctuation and digits
	// otherwise.
	slices.SortFunc(out, func(a, b string) int { return strings.Compare(foldASCII(a), foldASCII(b)) })
	return out, nil
}

// foldASCII lower-cases the ASCII letters of s, as SQLite's NOCASE does.
func foldASCII(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// ActiveEmailByName returns the address of the active account with the
// login name, or ErrNotFound.
func ActiveEmailByName(ctx context.Context, q database.Querier, name string) (string, error) {
	var email string
	err := q.QueryRowContext(ctx, `SELECT email FROM accounts WHERE name = ? AND status = 'active'`, strings.ToLower(name)).Scan(&email)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("failed to read account: %w", err)
	}
	return email, nil
}
