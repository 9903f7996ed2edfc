package masterkey

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/atomicfile"
)

// Holder is something that holds secrets wrapped to the master key (or
// sealed with its queue key): the contract keys, the TOTP secrets, the
// outbound queue and its spool files, the ledger key file. Each owner
// implements it for what it owns.
type Holder interface {
	// Name says what the holder holds, for the ledger and the report.
	Name() string
	// Rewrap moves every secret it holds that to alone cannot open to to,
	// opening it with from, and returns how many secrets it holds and how
	// many it moved. It is idempotent and safe to run while the gateway
	// runs; with from holding only to, it fails if any secret does not
	// open (that is how a rotation verifies itself before erasing the old
	// key).
	Rewrap(ctx context.Context, from *crypto.Keyring, to *crypto.Epoch) (held, moved int, err error)
}

// RotateDeps are what a rotation needs.
type RotateDeps struct {
	DB      *database.DB
	Ledger  *audit.Ledger
	Keys    *crypto.Keyring // the keyring of this process; reloaded at the end
	Source  Source
	Holders []Holder
	Now     func() time.Time
	Log     *slog.Logger
	// Owner names this process in the rotation's lease ("host/pid").
	Owner string
	// Lease is how long another process waits for a silent rotation
	// before taking it over (default 2 minutes).
	Lease time.Duration
	// Progress, if set, is told each holder as it is done.
	Progress func(holder string, held, moved int)
}

// Rotation reports a finished rotation.
type Rotation struct {
	From, To     int // epochs
	ToRecipient  string
	Held, Moved  map[string]int // per holder
	FinishedAt   time.Time
	Event        int64 // ledger index of key.rotated
	Resumed      bool  // a rotation left unfinished by a process that died was completed
	KeyFile      string
	OldKeyErased bool // the old key file was overwritten before it was unlinked
}

// Rotate replaces the master key with a new one (a new epoch), re-wraps
// every secret of every holder to it, checks that each opens with the new
// key alone, erases the old key file, and records key.rotated. It resumes
// a rotation a dead process left unfinished instead of starting another.
// Every step is safe to interrupt: until the old key is erased, both keys
// open everything; the old key is erased only after the check passed.
//
// Cause says who rotates and why, for the ledger's key.rotated event.
type Cause struct {
	Actor    string // "cli:alice", "system"
	Reason   string // "contract C-1 ended", "operator request"
	Contract string // the contract whose end rotates the key, or ""
}

// Rotate runs or resumes a rotation; see the package doc.
func Rotate(ctx context.Context, d RotateDeps, cause Cause) (*Rotation, error) {
	if d.Source.Env != "" {
		return nil, ErrFromEnv
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Lease <= 0 {
		d.Lease = 2 * time.Minute
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	resumed, err := d.begin(ctx)
	if err != nil {
		return nil, err
	}
	if err := d.Keys.Reload(); err != nil {
		return nil, err
	}
	eps := d.Keys.Epochs()
	if len(eps) == 0 {
		return nil, errors.New("masterkey: no key loaded")
	}
	to := eps[0]
	var from int
	if err := d.DB.Read().QueryRowContext(ctx, `SELECT COALESCE(MAX(epoch), 0) FROM master_epochs WHERE state = ?`, StateRetiring).Scan(&from); err != nil {
		return nil, fmt.Errorf("failed to read master key epochs: %w", err)
	}
	rot := &Rotation{From: from, To: to.Number, ToRecipient: to.Recipient(), Held: map[string]int{}, Moved: map[string]int{}, Resumed: resumed, KeyFile: d.Source.Path}
	// Re-wrap everything to the new key, then check that the new key
	// alone opens all of it.
	for _, h := range d.Holders {
		if err := d.heartbeat(ctx, to.Number); err != nil {
			return nil, err
		}
		held, moved, err := h.Rewrap(ctx, d.Keys, to)
		if err != nil {
			return nil, fmt.Errorf("failed to re-wrap the %s: %w", h.Name(), err)
		}
		rot.Held[h.Name()], rot.Moved[h.Name()] = held, moved
		if d.Progress != nil {
			d.Progress(h.Name(), held, moved)
		}
	}
	only := crypto.NewKeyringOf([]*crypto.Epoch{to}, nil)
	for _, h := range d.Holders {
		if _, moved, err := h.Rewrap(ctx, only, to); err != nil || moved != 0 {
			return nil, fmt.Errorf("the new master key does not open every %s (moved %d): %v; the old key was kept", h.Name(), moved, err)
		}
	}
	// Erase the old key: the next key becomes the key file.
	if rot.OldKeyErased, err = d.replaceKeyFile(to); err != nil {
		return nil, err
	}
	if err := d.finish(ctx, rot, cause); err != nil {
		return nil, err
	}
	if err := d.Keys.Reload(); err != nil {
		return nil, err
	}
	return rot, nil
}

// begin starts a rotation (a new key in the .next file, made current in
// the database) or takes over one left unfinished. It reports whether it
// took one over.
func (d RotateDeps) begin(ctx context.Context) (resumed bool, err error) {
	var epoch int
	var rcpt, owner string
	var beat sql.NullInt64
	err = d.DB.Read().QueryRowContext(ctx, `SELECT epoch, recipient, rotation_owner, rotation_heartbeat FROM master_epochs
		WHERE state = ? OR (state = ? AND EXISTS (SELECT 1 FROM master_epochs WHERE state = ?))`,
		statePending, StateCurrent, StateRetiring).Scan(&epoch, &rcpt, &owner, &beat)
	switch {
	case err == nil:
		// A rotation is under way, or was left unfinished by a process
		// that died: take it over once its lease has run out.
		if beat.Valid && owner != d.Owner && d.Now().Sub(time.UnixMilli(beat.Int64)) < d.Lease {
			return false, fmt.Errorf("%w (by %s since %s)", ErrBusy, owner, time.UnixMilli(beat.Int64).UTC().Format(time.RFC3339))
		}
		if err := d.heartbeat(ctx, epoch); err != nil {
			return false, err
		}
		if next, err := os.ReadFile(d.Source.next()); err == nil && recipientOf(next) == rcpt {
			return true, d.makeCurrent(ctx, epoch) // the new key is on disk: go on
		}
		if cur, err := readKey(d.Source); err == nil && cur.Recipient() == rcpt {
			return true, nil // the key file already holds the new key: only the end is left
		}
		// The new key never reached the disk (nothing can be wrapped to a
		// pending epoch): forget it and start afresh.
		if err := d.DB.Write(ctx, func(tx *database.Tx) error {
			_, err := tx.ExecContext(ctx, `DELETE FROM master_epochs WHERE epoch = ? AND state = ?`, epoch, statePending)
			return err
		}); err != nil {
			return false, fmt.Errorf("failed to forget an unfinished rotation: %w", err)
		}
	case !errors.Is(err, sql.ErrNoRows):
		return false, fmt.Errorf("failed to read master key epochs: %w", err)
	}
	if err := os.Remove(d.Source.next()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("failed to remove a stale %s: %w", d.Source.next(), err)
	}
	key, err := crypto.GenerateMasterKey()
	if err != nil {
		return false, err
	}
	e, err := crypto.ParseMasterKey(key)
	if err != nil {
		return false, err
	}
	err = d.DB.Write(ctx, func(tx *database.Tx) error {
		var busy int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM master_epochs WHERE state IN (?, ?)`, statePending, StateRetiring).Scan(&busy); err != nil {
			return err
		}
		if busy > 0 {
			return ErrBusy
		}
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(epoch), 0) + 1 FROM master_epochs`).Scan(&epoch); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO master_epochs(epoch, recipient, state, created_at, rotation_owner, rotation_heartbeat) VALUES (?, ?, ?, ?, ?, ?)`,
			epoch, e.Recipient(), statePending, d.Now().UnixMilli(), d.Owner, d.Now().UnixMilli())
		return err
	})
	if err != nil {
		return false, fmt.Errorf("failed to start the rotation: %w", err)
	}
	if err := atomicfile.Create(d.Source.next(), []byte(keyFileText(key, epoch)), 0o600); err != nil {
		return false, err
	}
	return false, d.makeCurrent(ctx, epoch)
}

// makeCurrent makes the pending epoch current and the current one
// retiring. From this commit on, the fence refuses data wrapped to the old
// key.
func (d RotateDeps) makeCurrent(ctx context.Context, epoch int) error {
	return d.DB.Write(ctx, func(tx *database.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE master_epochs SET state = ? WHERE epoch = ? AND state = ?`, StateCurrent, epoch, statePending)
		if err != nil {
			return fmt.Errorf("failed to make the new master key current: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // already current
		}
		_, err = tx.ExecContext(ctx, `UPDATE master_epochs SET state = ? WHERE epoch < ? AND state = ?`, StateRetiring, epoch, StateCurrent)
		return err
	})
}

func (d RotateDeps) heartbeat(ctx context.Context, epoch int) error {
	return d.DB.Write(ctx, func(tx *database.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE master_epochs SET rotation_owner = ?, rotation_heartbeat = ? WHERE epoch = ?`, d.Owner, d.Now().UnixMilli(), epoch)
		return err
	})
}

// replaceKeyFile makes the next key the key file and erases the old one:
// the old file is held open, the next one renamed over it, and the old
// content overwritten with zeros and synced through the open handle. On
// copy-on-write file systems and flash storage the overwrite may not reach
// the old blocks; the rename alone is what is guaranteed. It reports
// whether the overwrite was done.
func (d RotateDeps) replaceKeyFile(to *crypto.Epoch) (overwritten bool, err error) {
	next, err := os.ReadFile(d.Source.next())
	if errors.Is(err, os.ErrNotExist) {
		// Already renamed by an interrupted run: the key file must hold
		// the new key.
		cur, err := readKey(d.Source)
		if err != nil || cur.Recipient() != to.Recipient() {
			return false, fmt.Errorf("masterkey: neither %s nor %s holds the new key", d.Source.next(), d.Source.Path)
		}
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to read %s: %w", d.Source.next(), err)
	}
	if recipientOf(next) != to.Recipient() {
		return false, fmt.Errorf("masterkey: %s does not hold the new key", d.Source.next())
	}
	old, oerr := os.OpenFile(d.Source.Path, os.O_WRONLY, 0)
	if err := os.Rename(d.Source.next(), d.Source.Path); err != nil {
		if old != nil {
			old.Close()
		}
		return false, fmt.Errorf("failed to replace the master key file: %w", err)
	}
	if err := atomicfile.SyncDir(dirOf(d.Source.Path)); err != nil {
		return false, err
	}
	if oerr != nil {
		return false, nil
	}
	defer old.Close()
	fi, err := old.Stat()
	if err != nil {
		return false, nil
	}
	if _, err := old.WriteAt(make([]byte, fi.Size()), 0); err != nil {
		return false, nil
	}
	return old.Sync() == nil, nil
}

// finish retires the old epochs and records key.rotated.
func (d RotateDeps) finish(ctx context.Context, rot *Rotation, cause Cause) error {
	now := d.Now()
	return d.DB.Write(ctx, func(tx *database.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE master_epochs SET state = ?, destroyed_at = ? WHERE state = ?`, StateDestroyed, now.UnixMilli(), StateRetiring); err != nil {
			return fmt.Errorf("failed to retire the old master key: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE master_epochs SET rotation_owner = '', rotation_heartbeat = NULL WHERE epoch = ?`, rot.To); err != nil {
			return fmt.Errorf("failed to end the rotation: %w", err)
		}
		details := map[string]string{
			"from_epoch": strconv.Itoa(rot.From), "to_epoch": strconv.Itoa(rot.To), "to_recipient": rot.ToRecipient,
			"old_key_overwritten": strconv.FormatBool(rot.OldKeyErased),
		}
		for name, n := range rot.Held {
			details["rewrapped_"+detailKey(name)] = fmt.Sprintf("%d of %d", rot.Moved[name], n)
		}
		idx, err := d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeKeyRotated, Actor: cause.Actor, Contract: cause.Contract,
			Reason: cause.Reason, Details: details})
		if err != nil {
			return err
		}
		rot.Event, rot.FinishedAt = idx, now
		return nil
	})
}

// detailKey turns a holder's name into a ledger details key ("contract
// keys" → "contract_keys").
func detailKey(name string) string {
	b := []byte(strings.ToLower(name))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

func recipientOf(keyFile []byte) string {
	e, err := crypto.ParseMasterKey(string(keyFile))
	if err != nil {
		return ""
	}
	return e.Recipient()
}

// Column names one column of secrets for RewrapColumn: the owner of the
// table says which.
type Column struct {
	Table string // e.g. "contracts"
	Key   string // its primary key column
	Name  string // the column of wrapped secrets (NULL or empty: nothing held)
	Where string // extra condition on the rows to consider ("" for all)
}

// RewrapColumn is the Holder work for one column of a table: every
// non-empty value that to alone cannot open is re-wrapped (Keyring.Rewrap)
// and written back only if it has not changed meanwhile — a secret erased
// or replaced while the rotation ran (a key notice delivered, a transfer
// revoked) stays as the gateway left it. It returns how many values the
// column holds and how many were moved.
func RewrapColumn(ctx context.Context, db *database.DB, c Column, from *crypto.Keyring, to *crypto.Epoch) (held, moved int, err error) {
	where := c.Name + " IS NOT NULL AND length(" + c.Name + ") > 0"
	if c.Where != "" {
		where += " AND (" + c.Where + ")"
	}
	const batch = 500
	var last int64 = -1 << 62
	for {
		rows, err := db.Read().QueryContext(ctx, `SELECT `+c.Key+`, `+c.Name+` FROM `+c.Table+` WHERE `+where+` AND `+c.Key+` > ? ORDER BY `+c.Key+` LIMIT ?`, last, batch)
		if err != nil {
			return held, moved, fmt.Errorf("failed to read %s.%s: %w", c.Table, c.Name, err)
		}
		type row struct {
			id   int64
			blob []byte
		}
		var todo []row
		n := 0
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.blob); err != nil {
				rows.Close()
				return held, moved, fmt.Errorf("failed to read %s.%s: %w", c.Table, c.Name, err)
			}
			n++
			last = r.id
			if !to.Opens(r.blob) {
				todo = append(todo, r)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return held, moved, fmt.Errorf("failed to read %s.%s: %w", c.Table, c.Name, err)
		}
		held += n
		if len(todo) > 0 {
			news := make([][]byte, len(todo))
			for i, r := range todo {
				if news[i], err = from.Rewrap(r.blob, to); err != nil {
					return held, moved, fmt.Errorf("failed to re-wrap %s.%s of %d: %w", c.Table, c.Name, r.id, err)
				}
			}
			// Counted after the commit: the function may run more than
			// once (database.DB.Write).
			var k int
			err := db.Write(ctx, func(tx *database.Tx) error {
				k = 0
				if err := Fence(ctx, tx, to); err != nil {
					return err
				}
				for i, r := range todo {
					res, err := tx.ExecContext(ctx, `UPDATE `+c.Table+` SET `+c.Name+` = ? WHERE `+c.Key+` = ? AND `+c.Name+` = ?`, news[i], r.id, r.blob)
					if err != nil {
						return err
					}
					if n, _ := res.RowsAffected(); n == 1 {
						k++
					}
				}
				return nil
			})
			if err != nil {
				return held, moved, fmt.Errorf("failed to store re-wrapped %s.%s: %w", c.Table, c.Name, err)
			}
			moved += k
		}
		if n < batch {
			return held, moved, nil
		}
	}
}
