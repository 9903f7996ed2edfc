package destroy

import (
	"context"
	"fmt"
	"strings"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
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
	out := &Outcome{}
	var spools []string
	now := d.Now()
	err := d.DB.Write(ctx, func(tx *database.Tx) error {
		// The function may run more than once (database.DB.Write): what
		// it hands out is set afresh by each run.
		*out, spools = Outcome{}, nil
		t, err := transfer.Get(ctx, tx, id)
		if err != nil {
			return err
		}
		if t.Status != transfer.StatusActive {
			if t.Status == transfer.StatusRevoked && recipient == "" {
				return nil // resume the deletion below
			}
			return fmt.Errorf("%w: %s is %s", transfer.ErrNotActive, id, t.Status)
		}
		var keys []transfer.Key
		active := 0
		for _, r := range t.Recipients {
			if r.Status != transfer.StatusActive {
				continue
			}
			if recipient == "" || strings.EqualFold(r.Address, recipient) {
				keys = append(keys, transfer.Key{RecipientID: r.ID, Transfer: id, Contract: t.Contract, Message: t.MessageID, Address: r.Address})
			} else {
				active++
			}
		}
		if recipient != "" && len(keys) == 0 {
			for _, r := range t.Recipients {
				if strings.EqualFold(r.Address, recipient) {
					return fmt.Errorf("%w: %s is already %s", transfer.ErrNotActive, r.Address, r.Status)
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
			if _, err := transfer.Revoke(ctx, tx, id, now); err != nil {
				return err
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
	status, err := transfer.Status(ctx, d.DB.Read(), id)
	if err != nil {
		return 0, false, err
	}
	if status == transfer.StatusActive {
		return 0, false, nil
	}
	objs, err := transfer.ObjectsOfTransfer(ctx, d.DB.Read(), id)
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
	due, err := transfer.Expired(ctx, d.DB.Read(), now, limit)
	if err != nil {
		return 0, err
	}
	expired := 0
	var spools []string
	for start := 0; start < len(due); start += 64 {
		batch := due[start:min(start+64, len(due))]
		// Counted after the commit: the function may run more than
		// once (database.DB.Write).
		var n int
		var sp []string
		err := d.DB.Write(ctx, func(tx *database.Tx) error {
			n, sp = 0, nil
			for _, e := range batch {
				ok, err := transfer.Expire(ctx, tx, e.ID, now)
				if err != nil {
					return err
				}
				if !ok {
					continue // extended or revoked meanwhile
				}
				n++
				if _, err := d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeTransferExpired, Actor: "system",
					Contract: e.Contract, Message: e.MessageID, Transfer: e.ID, Reason: "link expired"}); err != nil {
					return err
				}
				keys, err := transfer.KeysOfTransfer(ctx, tx, e.ID)
				if err != nil {
					return err
				}
				s, _, err := shredTx(ctx, d, tx, keys, transfer.StatusExpired, "system", "link expired", now)
				if err != nil {
					return err
				}
				sp = append(sp, s...)
			}
			return nil
		})
		if err != nil {
			return expired, err
		}
		expired += n
		spools = append(spools, sp...)
	}
	if expired > 0 {
		scrub(ctx, d)
	}
	ReleaseSpools(ctx, d, spools)
	objs, err := transfer.ObjectsOfEnded(ctx, d.DB.Read())
	if err != nil {
		return expired, err
	}
	return expired, DestroyObjects(ctx, d, objs, "system")
}
