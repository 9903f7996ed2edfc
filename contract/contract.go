// Package contract keeps the contract register: each contract has its own key
// encryption key (KEK), wrapped to the master key, under which every transfer
// identity of the contract is wrapped. Ending a contract erases that KEK
// (crypto-shredding) before deleting the objects.
package contract

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/store"
)

// ErrNotFound is returned when no contract has the code.
var ErrNotFound = errors.New("contract: not found")

// Contract is the part of a contract that sealing needs.
type Contract struct {
	ID           int64
	Code         string
	Name         string
	KEKRecipient string
	Status       string
}

// Querier is what lookups need: *sql.DB, *sql.Tx or *store.Tx.
type Querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ByCode looks a contract up.
func ByCode(ctx context.Context, q Querier, code string) (*Contract, error) {
	c := &Contract{}
	err := q.QueryRowContext(ctx, `SELECT id, code, name, kek_recipient, status FROM contracts WHERE code = ?`, code).
		Scan(&c.ID, &c.Code, &c.Name, &c.KEKRecipient, &c.Status)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, code)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to look up contract %s: %w", code, err)
	}
	return c, nil
}

// Ensure returns the contract with the code, creating it (with a fresh KEK
// and a contract.created ledger event) when missing. It is how the default
// contract comes to exist on a fresh installation.
func Ensure(ctx context.Context, db *store.DB, keys *crypto.Keyring, ledger *audit.Ledger, code, name string, now time.Time) (*Contract, error) {
	if c, err := ByCode(ctx, db.Read(), code); err == nil {
		return c, nil
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	recipient, wrapped, err := keys.NewContractKey()
	if err != nil {
		return nil, err
	}
	var out *Contract
	err = db.Write(ctx, func(tx *store.Tx) error {
		if c, err := ByCode(ctx, tx, code); err == nil { // created meanwhile
			out = c
			return nil
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO contracts(code, name, kek_recipient, kek_wrapped, status, created_at) VALUES (?, ?, ?, ?, 'active', ?)`,
			code, name, recipient, wrapped, now.UnixMilli())
		if err != nil {
			return fmt.Errorf("failed to create contract %s: %w", code, err)
		}
		id, _ := res.LastInsertId()
		out = &Contract{ID: id, Code: code, Name: name, KEKRecipient: recipient, Status: "active"}
		_, err = ledger.Append(ctx, tx, audit.Event{Type: audit.TypeContractCreated, Actor: "system", Contract: code,
			Details: map[string]string{"name": name}})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// OpenKEK unwraps the contract's KEK. After destruction it returns
// crypto.ErrKeyDestroyed.
func OpenKEK(ctx context.Context, q Querier, keys *crypto.Keyring, id int64) (*crypto.ContractKey, error) {
	var wrapped []byte
	if err := q.QueryRowContext(ctx, `SELECT kek_wrapped FROM contracts WHERE id = ?`, id).Scan(&wrapped); err != nil {
		return nil, fmt.Errorf("failed to read contract key: %w", err)
	}
	if len(wrapped) == 0 {
		return nil, crypto.ErrKeyDestroyed
	}
	return keys.OpenContractKey(wrapped)
}
