package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/internal/atomicfile"
	"github.com/sealgate/sealgate/masterkey"
	"github.com/sealgate/sealgate/store"
)

// Queue holds the outbound queue's secrets for a master key rotation
// (masterkey.Holder): waiting link tokens and passphrases, rendered system
// notices, and the spool files of pending deliveries, all sealed with the
// queue key of a master key epoch. It works on the database and the spool
// directory alone, so a rotation run by the CLI covers the queue of a
// running gateway too.
type Queue struct {
	DB       *store.DB
	SpoolDir string // <data_dir>/spool
}

// Name implements masterkey.Holder.
func (Queue) Name() string { return "outbound queue" }

// Rewrap implements masterkey.Holder.
func (q Queue) Rewrap(ctx context.Context, from *crypto.Keyring, to *crypto.Epoch) (held, moved int, err error) {
	for _, col := range []string{"secret", "body"} {
		h, m, err := masterkey.RewrapColumn(ctx, q.DB, masterkey.Column{Table: "outbound", Key: "id", Name: col}, from, to)
		held, moved = held+h, moved+m
		if err != nil {
			return held, moved, err
		}
	}
	names, err := pendingSpools(ctx, q.DB.Read())
	if err != nil {
		return held, moved, err
	}
	for name := range names {
		ok, err := q.rewrapSpool(ctx, name, from, to)
		if err != nil {
			return held, moved, err
		}
		held++
		if ok {
			moved++
		}
	}
	return held, moved, nil
}

// rewrapSpool re-encrypts one spool file to to's queue key, unless it is
// already. A file whose delivery finished meanwhile is left gone.
func (q Queue) rewrapSpool(ctx context.Context, name string, from *crypto.Keyring, to *crypto.Epoch) (bool, error) {
	path := filepath.Join(q.SpoolDir, name)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // delivered and removed meanwhile
	}
	if err != nil {
		return false, fmt.Errorf("failed to open spool file: %w", err)
	}
	defer f.Close()
	if to.OpensSpool(f) {
		return false, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false, fmt.Errorf("failed to read spool file: %w", err)
	}
	err = atomicfile.WriteFunc(path, 0o600, func(w io.Writer) error { return from.RewrapSpool(w, f, to) })
	if err != nil {
		return false, fmt.Errorf("failed to re-encrypt spool file %s: %w", name, err)
	}
	// Delivered while it was re-encrypted: do not leave it behind.
	if live, err := pendingSpools(ctx, q.DB.Read()); err == nil && !live[name] {
		os.Remove(path)
	}
	return true, nil
}

// pendingSpools returns the spool files that pending deliveries need.
func pendingSpools(ctx context.Context, q store.Querier) (map[string]bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT DISTINCT spool FROM outbound WHERE spool IS NOT NULL AND status IN ('waiting', 'queued', 'held')`)
	if err != nil {
		return nil, fmt.Errorf("failed to list spool references: %w", err)
	}
	defer rows.Close()
	live := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("failed to list spool references: %w", err)
		}
		live[n] = true
	}
	return live, rows.Err()
}
