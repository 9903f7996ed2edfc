package destroy

import (
	"context"
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/store"
	"github.com/sealgate/sealgate/transfer"
)

// Outcome says what Revoke did.
type Outcome struct {
	Revoked        []string // addresses whose access was revoked now
	KeysDestroyed  int
	TransferEnded  bool // no active recipient remains: the transfer is revoked and its objects deleted
	ObjectsRemoved int  // objects proven absent by this call
}

// Revoke revokes one recipient of a transfer (recipient != "") or the
// whole transfer, destroying the revoked recipients' transfer identities at
// once. When no active recipient remains, every object of the transfer is
// deleted and proven absent. Running it again on a revoked transfer
// finishes an interrupted deletion.
func Revoke(ctx context.Context, d Deps, id, recipient, actor, reason string) (*Outcome, error) {
	d = d.withDefaults()
	t, err := transfer.Get(ctx, d.DB.Read(), id)
	if err != nil {
		return nil, err
	}
	out := &Outcome{}
	var spools []string
	now := d.Now()
	err = d.DB.Write(ctx, func(tx *store.Tx) error {
		var status string
		if err := tx.QueryRowContext(ctx, `SELECT status FROM transfers WHERE id = ?`, id).Scan(&status); err != nil {
			return fmt.Errorf("failed to read transfer: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `SELECT id, address, status FROM recipients WHERE transfer_id = ? ORDER BY id`, id)
		if err != nil {
			return fmt.Errorf("failed to read recipients: %w", err)
		}
		type rc struct {
			id     int64
			addr   string
			status string
		}
		var all []rc
		for rows.Next() {
			var r rc
			if err := rows.Scan(&r.id, &r.addr, &r.status); err != nil {
				rows.Close()
				return fmt.Errorf("failed to read recipients: %w", err)
			}
			all = append(all, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("failed to read recipients: %w", err)
		}
		if status != transfer.StatusActive {
			if status == transfer.StatusRevoked && recipient == "" {
				return nil // resume the deletion below
			}
			return fmt.Errorf("%w: %s is %s", transfer.ErrNotActive, id, status)
		}
		var keys []transfer.Key
		active := 0
		for _, r := range all {
			if r.status != "active" {
				continue
			}
			if recipient == "" || strings.EqualFold(r.addr, recipient) {
				keys = append(keys, transfer.Key{RecipientID: r.id, Transfer: id, Contract: t.Contract, Message: t.MessageID, Address: r.addr})
			} else {
				active++
			}
		}
		if recipient != "" && len(keys) == 0 {
			for _, r := range all {
				if strings.EqualFold(r.addr, recipient) {
					return fmt.Errorf("%w: %s is already %s", transfer.ErrNotActive, r.addr, r.status)
				}
			}
			return fmt.Errorf("%w: %s is not a recipient of %s", transfer.ErrNotFound, recipient, id)
		}
		if recipient != "" {
			for _, k := range keys {
				if _, err := d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeRecipientRevoked, Actor: actor,
					Contract: t.Contract, Message: t.MessageID, Transfer: id, Recipient: k.Address, Reason: reason}); err != nil {
					return err
				}
			}
		}
		if active == 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE transfers SET status = 'revoked', ended_at = ? WHERE id = ? AND status = 'active'`, now.UnixMilli(), id); err != nil {
				return fmt.Errorf("failed to revoke transfer: %w", err)
			}
			why := reason
			if recipient != "" {
				why = "no active recipient remains"
			}
			if _, err := d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeTransferRevoked, Actor: actor,
				Contract: t.Contract, Message: t.MessageID, Transfer: id, Reason: why,
				Details: map[string]string{"recipients": fmt.Sprint(len(keys))}}); err != nil {
				return err
			}
		}
		s, n, err := shredTx(ctx, d, tx, keys, transfer.StatusRevoked, actor, reason, now)
		if err != nil {
			return err
		}
		spools, out.KeysDestroyed = s, n
		for _, k := range keys {
			out.Revoked = append(out.Revoked, k.Address)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out.KeysDestroyed > 0 {
		scrub(ctx, d)
	}
	ReleaseSpools(ctx, d, spools)
	n, ended, err := destroyIfEnded(ctx, d, id, actor)
	out.TransferEnded, out.ObjectsRemoved = ended, n
	return out, err
}

// destroyIfEnded deletes the objects of a transfer that is no longer
// active (revoked, expired or destroyed).
func destroyIfEnded(ctx context.Context, d Deps, id, actor string) (int, bool, error) {
	var status string
	if err := d.DB.Read().QueryRowContext(ctx, `SELECT status FROM transfers WHERE id = ?`, id).Scan(&status); err != nil {
		return 0, false, fmt.Errorf("failed to read transfer: %w", err)
	}
	if status == transfer.StatusActive {
		return 0, false, nil
	}
	objs, err := transfer.Objects(ctx, d.DB.Read(), `f.transfer_id = ? AND f.absent_at IS NULL`, id)
	if err != nil {
		return 0, true, err
	}
	return len(objs), true, DestroyObjects(ctx, d, objs, actor)
}

// PurgeExpired ends up to limit active transfers whose links have expired
// (of active contracts; an ending contract destroys its own): each becomes
// expired (transfer.expired), its recipients' keys are destroyed and its
// objects deleted and proven absent. Transfers revoked or expired earlier
// whose deletion was interrupted are finished too. It returns the number
// of transfers expired now.
func PurgeExpired(ctx context.Context, d Deps, limit int) (int, error) {
	d = d.withDefaults()
	if limit <= 0 {
		limit = 1000
	}
	now := d.Now()
	rows, err := d.DB.Read().QueryContext(ctx, `SELECT t.id, t.message_id, c.code FROM transfers t JOIN contracts c ON c.id = t.contract_id
		WHERE t.status = 'active' AND t.expires_at <= ? AND c.status = 'active' ORDER BY t.expires_at LIMIT ?`, now.UnixMilli(), limit)
	if err != nil {
		return 0, fmt.Errorf("failed to list expired transfers: %w", err)
	}
	type exp struct{ id, msg, contract string }
	var due []exp
	for rows.Next() {
		var e exp
		if err := rows.Scan(&e.id, &e.msg, &e.contract); err != nil {
			rows.Close()
			return 0, fmt.Errorf("failed to list expired transfers: %w", err)
		}
		due = append(due, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("failed to list expired transfers: %w", err)
	}
	expired := 0
	var spools []string
	for start := 0; start < len(due); start += 64 {
		batch := due[start:min(start+64, len(due))]
		err := d.DB.Write(ctx, func(tx *store.Tx) error {
			n := 0
			var sp []string
			for _, e := range batch {
				res, err := tx.ExecContext(ctx, `UPDATE transfers SET status = 'expired', ended_at = ? WHERE id = ? AND status = 'active' AND expires_at <= ?`,
					now.UnixMilli(), e.id, now.UnixMilli())
				if err != nil {
					return fmt.Errorf("failed to expire transfer: %w", err)
				}
				if c, _ := res.RowsAffected(); c == 0 {
					continue // extended or revoked meanwhile
				}
				n++
				if _, err := d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeTransferExpired, Actor: "system",
					Contract: e.contract, Message: e.msg, Transfer: e.id, Reason: "link expired"}); err != nil {
					return err
				}
				keys, err := transfer.Keys(ctx, tx, `r.transfer_id = ?`, e.id)
				if err != nil {
					return err
				}
				s, _, err := shredTx(ctx, d, tx, keys, transfer.StatusExpired, "system", "link expired", now)
				if err != nil {
					return err
				}
				sp = append(sp, s...)
			}
			expired += n
			spools = append(spools, sp...)
			return nil
		})
		if err != nil {
			return expired, err
		}
	}
	if expired > 0 {
		scrub(ctx, d)
	}
	ReleaseSpools(ctx, d, spools)
	objs, err := transfer.Objects(ctx, d.DB.Read(), `t.status IN ('revoked', 'expired') AND f.absent_at IS NULL`)
	if err != nil {
		return expired, err
	}
	return expired, DestroyObjects(ctx, d, objs, "system")
}
