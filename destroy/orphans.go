package destroy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/transfer"
)

// SweepOrphans deletes sealed objects whose transfer the database does not
// know: ciphertext stored for a message that was never committed (the
// process died between storing its objects and the commit, or a commit
// failed and the clean-up could not reach the store). Nothing could ever
// open them — their transfer identities died with the attempt — but they
// take space, and no destruction certificate would cover them. Only
// objects older than grace are touched: a message being received has
// stored objects its commit has not recorded yet. Each deletion and its
// proof of absence are ledger events. Stores that cannot list are skipped.
func SweepOrphans(ctx context.Context, d Deps, grace time.Duration) (int, error) {
	d = d.withDefaults()
	l, ok := d.Store.(storage.Lister)
	if !ok {
		return 0, nil
	}
	cutoff := d.Now().Add(-grace)
	var (
		orphans    []storage.Info
		lastID     string
		lastExists bool
	)
	err := l.List(ctx, transfer.SealedPrefix, func(info storage.Info) error {
		if !info.ModTime.Before(cutoff) {
			return nil
		}
		id, _, ok := strings.Cut(strings.TrimPrefix(info.Key, transfer.SealedPrefix), "/")
		if !ok || id == "" {
			return nil // not a sealed file's key: leave it alone
		}
		if id != lastID { // keys come in order: one lookup per transfer
			ok, err := transfer.Exists(ctx, d.DB.Read(), id)
			if err != nil {
				return fmt.Errorf("failed to look up transfer %s: %w", id, err)
			}
			lastID, lastExists = id, ok
		}
		if !lastExists {
			orphans = append(orphans, info)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("failed to list sealed objects: %w", err)
	}
	done := 0
	for _, o := range orphans {
		if err := d.Store.Delete(ctx, o.Key); err != nil {
			return done, fmt.Errorf("failed to delete orphan object %s: %w", o.Key, err)
		}
		if _, err := d.Store.Stat(ctx, o.Key); !errors.Is(err, storage.ErrNotFound) {
			return done, fmt.Errorf("orphan object %s still present after deletion: %v", o.Key, err)
		}
		tid, _, _ := strings.Cut(strings.TrimPrefix(o.Key, transfer.SealedPrefix), "/")
		now := d.Now()
		if err := d.DB.Write(ctx, func(tx *database.Tx) error {
			for _, ev := range []audit.Event{
				{Time: now, Type: audit.TypeObjectDeleted, Actor: "system", Transfer: tid, Object: o.Key, Size: o.Size,
					Reason: "orphan: stored for a message that was never committed", Details: map[string]string{"versions": storage.DeleteCoverage(d.Store)}},
				{Time: now, Type: audit.TypeObjectAbsent, Actor: "system", Transfer: tid, Object: o.Key, Result: "absent"},
			} {
				if _, err := d.Ledger.Append(ctx, tx, ev); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return done, fmt.Errorf("failed to record the deletion of orphan object %s: %w", o.Key, err)
		}
		done++
		if d.Log != nil {
			d.Log.Info("orphan object deleted", "object", o.Key, "size", o.Size)
		}
	}
	return done, nil
}
