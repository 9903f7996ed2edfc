package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/outbox"
)

// Queue holds the outbound queue's secrets for a master key rotation
// (masterkey.Holder): waiting link tokens and passphrases, rendered system
// notices, and the spool files of pending deliveries, all sealed with the
// queue key of a master key epoch. It works on the database and the spool
// store alone (the directory or the bucket), so a rotation run by the CLI
// covers the queue of a running gateway too.
type Queue struct {
	DB    *database.DB
	Spool SpoolStore
}

// Name implements masterkey.Holder.
func (Queue) Name() string { return "outbound queue" }

// Rewrap implements masterkey.Holder.
func (q Queue) Rewrap(ctx context.Context, from *crypto.Keyring, to *crypto.Epoch) (held, moved int, err error) {
	held, moved, err = outbox.Rewrap(ctx, q.DB, from, to)
	if err != nil {
		return held, moved, err
	}
	names, err := outbox.PendingSpools(ctx, q.DB.Read())
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
	f, err := openSeeker(ctx, q.Spool, name)
	if errors.Is(err, fs.ErrNotExist) {
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
	err = q.Spool.Replace(ctx, name, func(w io.Writer) error { return from.RewrapSpool(w, f, to) })
	if err != nil {
		return false, fmt.Errorf("failed to re-encrypt spool file %s: %w", name, err)
	}
	// Delivered while it was re-encrypted: do not leave it behind.
	if live, err := outbox.PendingSpools(ctx, q.DB.Read()); err == nil && !live[name] {
		q.Spool.Remove(ctx, name)
	}
	return true, nil
}
