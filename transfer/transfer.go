// Package transfer manages what was sent: it lists transfers, extends their
// expiry, revokes a whole transfer or one recipient, and purges expired
// transfers. Each of those destroys what is no longer needed at once:
//
//   - a revoked or expired recipient's transfer identity is crypto-shredded
//     (recipients.key_wrapped erased; the database runs with SQLite
//     secure_delete, so the bytes are overwritten), and their pending link
//     and key notices are cancelled with their secrets erased — a
//     passphrase not yet sent never leaves;
//   - once no active recipient remains, every object of the transfer is
//     deleted (every version), then Stat proves each gone.
//
// Every step is a ledger event in the transaction that makes it
// (transfer.revoked / recipient.revoked / transfer.expired, key.destroyed,
// object.deleted, object.absent, expiry.extended), and every step is
// conditional on the state it changes, so an interrupted operation is
// resumed by running it again and nothing is recorded twice.
//
// A copy of file.age taken from storage before revocation stays encrypted
// to transfer identities that no longer exist anywhere: the gateway cannot
// open it, and neither can the recipient's passphrase, which only ever
// opened the erased key file.
package transfer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/store"
)

// Transfer states.
const (
	StatusActive    = "active"
	StatusRevoked   = "revoked"
	StatusExpired   = "expired"
	StatusDestroyed = "destroyed" // its contract ended
)

// Errors; test with errors.Is.
var (
	ErrNotFound  = errors.New("transfer: not found")
	ErrNotActive = errors.New("transfer: no longer active")
	ErrInvalid   = errors.New("transfer: invalid request")
	ErrTooLate   = errors.New("transfer: beyond the contract's maximum expiry")
)

// Transfer is one sending of sealed files.
type Transfer struct {
	ID         string
	MessageID  string
	Contract   string // code
	ContractID int64
	Sender     string
	Actor      string // the account that sent it ("" for relayed mail)
	Subject    string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	EndedAt    time.Time // zero while active
	Status     string
	Files      []File
	Recipients []Recipient
}

// File is one sealed file of a transfer and what became of it.
type File struct {
	ID int64
	SealedFile
	Status    string // stored | deleted
	DeletedAt time.Time
	AbsentAt  time.Time
}

// Recipient is one external recipient of a transfer.
type Recipient struct {
	ID              int64
	Address         string
	Status          string // active | revoked | expired | destroyed
	Downloads       int
	FirstDownloadAt time.Time
	Locked          bool
	KeyDestroyedAt  time.Time
	PublicKeyID     int64 // the registered key key.age is encrypted to (package pubkey); 0: a passphrase
}

// Querier is store.Querier.
//
// Deprecated: use store.Querier (kept until package hold, which names it,
// switches).
type Querier = store.Querier

// Filter selects transfers for List.
type Filter struct {
	Contract  string // code; "" = all
	Sender    string // envelope sender; "" = all
	Recipient string // one of its recipients; "" = all
	Status    string // "" = all
	Limit     int    // default 100
}

func msTime(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

const transferColumns = `t.id, t.message_id, t.contract_id, t.sender, m.actor, m.subject, t.created_at, t.expires_at, t.ended_at, t.status`

const transferFrom = ` FROM transfers t JOIN messages m ON m.id = t.message_id`

func scanTransfer(s interface{ Scan(...any) error }) (Transfer, error) {
	var t Transfer
	var created, expires int64
	var ended sql.NullInt64
	err := s.Scan(&t.ID, &t.MessageID, &t.ContractID, &t.Sender, &t.Actor, &t.Subject, &created, &expires, &ended, &t.Status)
	t.CreatedAt, t.ExpiresAt, t.EndedAt = time.UnixMilli(created).UTC(), time.UnixMilli(expires).UTC(), msTime(ended)
	return t, err
}

// nameContracts fills in each transfer's contract code (package contract
// owns them).
func nameContracts(ctx context.Context, q store.Querier, ts []Transfer) error {
	var ids []int64
	seen := map[int64]bool{}
	for _, t := range ts {
		if !seen[t.ContractID] {
			seen[t.ContractID] = true
			ids = append(ids, t.ContractID)
		}
	}
	codes, err := contract.CodesByID(ctx, q, ids...)
	if err != nil {
		return err
	}
	for i := range ts {
		ts[i].Contract = codes[ts[i].ContractID]
	}
	return nil
}

// List returns transfers, newest first, without files and recipients.
func List(ctx context.Context, q store.Querier, f Filter) ([]Transfer, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	where := []string{"1 = 1"}
	var args []any
	if f.Contract != "" {
		c, err := contract.ByCode(ctx, q, f.Contract)
		if errors.Is(err, contract.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		where, args = append(where, "t.contract_id = ?"), append(args, c.ID)
	}
	if f.Sender != "" {
		where, args = append(where, "t.sender = ? COLLATE NOCASE"), append(args, f.Sender)
	}
	if f.Recipient != "" {
		where, args = append(where, "t.id IN (SELECT transfer_id FROM recipients WHERE address = ? COLLATE NOCASE)"), append(args, f.Recipient)
	}
	if f.Status != "" {
		where, args = append(where, "t.status = ?"), append(args, f.Status)
	}
	rows, err := q.QueryContext(ctx, `SELECT `+transferColumns+transferFrom+` WHERE `+strings.Join(where, " AND ")+` ORDER BY t.created_at DESC, t.id LIMIT ?`,
		append(args, f.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("failed to list transfers: %w", err)
	}
	defer rows.Close()
	var out []Transfer
	for rows.Next() {
		t, err := scanTransfer(rows)
		if err != nil {
			return nil, fmt.Errorf("failed to read transfer: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list transfers: %w", err)
	}
	return out, nameContracts(ctx, q, out)
}

// Get returns one transfer with its files and recipients.
func Get(ctx context.Context, q store.Querier, id string) (*Transfer, error) {
	t, err := scanTransfer(q.QueryRowContext(ctx, `SELECT `+transferColumns+transferFrom+` WHERE t.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read transfer %s: %w", id, err)
	}
	ts := []Transfer{t}
	if err := nameContracts(ctx, q, ts); err != nil {
		return nil, err
	}
	t = ts[0]
	if t.Files, err = Files(ctx, q, id); err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT r.transfer_id, `+recipientColumns+` FROM recipients r WHERE r.transfer_id = ? ORDER BY r.id`, id)
	if err != nil {
		return nil, fmt.Errorf("failed to read recipients: %w", err)
	}
	err = scanRecipients(rows, func(_ string, r Recipient) { t.Recipients = append(t.Recipients, r) })
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// Files returns the files of a transfer, in their order in the message.
func Files(ctx context.Context, q store.Querier, transferID string) ([]File, error) {
	rows, err := q.QueryContext(ctx, `SELECT f.transfer_id, `+fileColumns+` FROM files f WHERE f.transfer_id = ? ORDER BY f.idx`, transferID)
	if err != nil {
		return nil, fmt.Errorf("failed to read files: %w", err)
	}
	var out []File
	if err := scanFiles(rows, func(_ string, f File) { out = append(out, f) }); err != nil {
		return nil, err
	}
	return out, nil
}

const fileColumns = `f.id, f.idx, f.name, f.content_type, f.size, f.sha256, f.object_key, f.cipher_size, f.cipher_sha256, f.status, f.deleted_at, f.absent_at`

// scanFiles reads rows of transfer_id, fileColumns, passes each to add
// and closes rows.
func scanFiles(rows *sql.Rows, add func(transferID string, f File)) error {
	defer rows.Close()
	for rows.Next() {
		var tid string
		var f File
		var del, abs sql.NullInt64
		if err := rows.Scan(&tid, &f.ID, &f.Index, &f.Name, &f.ContentType, &f.Size, &f.SHA256, &f.Object, &f.CipherSize, &f.CipherSHA256,
			&f.Status, &del, &abs); err != nil {
			return fmt.Errorf("failed to read files: %w", err)
		}
		f.DeletedAt, f.AbsentAt = msTime(del), msTime(abs)
		add(tid, f)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("failed to read files: %w", err)
	}
	return nil
}

const recipientColumns = `r.id, r.address, r.status, r.downloads, r.first_download_at, r.locked_at IS NOT NULL, r.key_destroyed_at, COALESCE(r.public_key_id, 0)`

// scanRecipients reads rows of transfer_id, recipientColumns, passes each
// to add and closes rows.
func scanRecipients(rows *sql.Rows, add func(transferID string, r Recipient)) error {
	defer rows.Close()
	for rows.Next() {
		var tid string
		var r Recipient
		var first, gone sql.NullInt64
		if err := rows.Scan(&tid, &r.ID, &r.Address, &r.Status, &r.Downloads, &first, &r.Locked, &gone, &r.PublicKeyID); err != nil {
			return fmt.Errorf("failed to read recipients: %w", err)
		}
		r.FirstDownloadAt, r.KeyDestroyedAt = msTime(first), msTime(gone)
		add(tid, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("failed to read recipients: %w", err)
	}
	return nil
}

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
	t, err := Get(ctx, d.DB.Read(), id)
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
		if status != StatusActive {
			if status == StatusRevoked && recipient == "" {
				return nil // resume the deletion below
			}
			return fmt.Errorf("%w: %s is %s", ErrNotActive, id, status)
		}
		var keys []Key
		active := 0
		for _, r := range all {
			if r.status != "active" {
				continue
			}
			if recipient == "" || strings.EqualFold(r.addr, recipient) {
				keys = append(keys, Key{RecipientID: r.id, Transfer: id, Contract: t.Contract, Message: t.MessageID, Address: r.addr})
			} else {
				active++
			}
		}
		if recipient != "" && len(keys) == 0 {
			for _, r := range all {
				if strings.EqualFold(r.addr, recipient) {
					return fmt.Errorf("%w: %s is already %s", ErrNotActive, r.addr, r.status)
				}
			}
			return fmt.Errorf("%w: %s is not a recipient of %s", ErrNotFound, recipient, id)
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
		s, n, err := shredTx(ctx, d, tx, keys, StatusRevoked, actor, reason, now)
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
	if status == StatusActive {
		return 0, false, nil
	}
	objs, err := Objects(ctx, d.DB.Read(), `f.transfer_id = ? AND f.absent_at IS NULL`, id)
	if err != nil {
		return 0, true, err
	}
	return len(objs), true, DestroyObjects(ctx, d, objs, actor)
}

// Objects returns the files matching where (over files f JOIN transfers t
// JOIN contracts c) as objects to destroy.
func Objects(ctx context.Context, q store.Querier, where string, args ...any) ([]Object, error) {
	rows, err := q.QueryContext(ctx, `SELECT f.id, f.transfer_id, c.code, f.name, f.sha256, f.size, f.object_key, f.deleted_at IS NOT NULL, f.absent_at IS NOT NULL
		FROM files f JOIN transfers t ON t.id = f.transfer_id JOIN contracts c ON c.id = t.contract_id WHERE `+where+` ORDER BY f.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("failed to list objects: %w", err)
	}
	defer rows.Close()
	var out []Object
	for rows.Next() {
		var o Object
		if err := rows.Scan(&o.FileID, &o.Transfer, &o.Contract, &o.Name, &o.SHA256, &o.Size, &o.Key, &o.Deleted, &o.Absent); err != nil {
			return nil, fmt.Errorf("failed to list objects: %w", err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// Keys returns the transfer identities not yet destroyed of the recipients
// matching where (over recipients r JOIN transfers t JOIN contracts c).
//
// Deprecated: use KeysOfTransfer or KeysOfContract (kept until contract
// destruction, which calls it, switches).
func Keys(ctx context.Context, q store.Querier, where string, args ...any) ([]Key, error) {
	rows, err := q.QueryContext(ctx, `SELECT r.id, r.transfer_id, c.code, t.message_id, r.address
		FROM recipients r JOIN transfers t ON t.id = r.transfer_id JOIN contracts c ON c.id = t.contract_id
		WHERE r.key_destroyed_at IS NULL AND `+where+` ORDER BY r.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("failed to list keys: %w", err)
	}
	defer rows.Close()
	var out []Key
	for rows.Next() {
		var k Key
		if err := rows.Scan(&k.RecipientID, &k.Transfer, &k.Contract, &k.Message, &k.Address); err != nil {
			return nil, fmt.Errorf("failed to list keys: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// KeysOfTransfer returns the transfer identities of the transfer's
// recipients that are not destroyed yet.
func KeysOfTransfer(ctx context.Context, q store.Querier, transferID string) ([]Key, error) {
	return keys(ctx, q, `SELECT r.id, r.transfer_id, t.contract_id, t.message_id, r.address
		FROM recipients r JOIN transfers t ON t.id = r.transfer_id
		WHERE r.key_destroyed_at IS NULL AND r.transfer_id = ? ORDER BY r.id`, transferID)
}

// KeysOfContract returns the transfer identities not destroyed yet of
// every recipient of every transfer under the contract.
func KeysOfContract(ctx context.Context, q store.Querier, contractID int64) ([]Key, error) {
	return keys(ctx, q, `SELECT r.id, r.transfer_id, t.contract_id, t.message_id, r.address
		FROM recipients r JOIN transfers t ON t.id = r.transfer_id
		WHERE r.key_destroyed_at IS NULL AND t.contract_id = ? ORDER BY r.id`, contractID)
}

func keys(ctx context.Context, q store.Querier, query string, arg any) ([]Key, error) {
	rows, err := q.QueryContext(ctx, query, arg)
	if err != nil {
		return nil, fmt.Errorf("failed to list keys: %w", err)
	}
	defer rows.Close()
	var out []Key
	var contracts []int64
	for rows.Next() {
		var k Key
		var cid int64
		if err := rows.Scan(&k.RecipientID, &k.Transfer, &cid, &k.Message, &k.Address); err != nil {
			return nil, fmt.Errorf("failed to list keys: %w", err)
		}
		out = append(out, k)
		contracts = append(contracts, cid)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list keys: %w", err)
	}
	if len(out) == 0 {
		return out, nil
	}
	codes, err := contract.CodesByID(ctx, q, uniq(contracts)...)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Contract = codes[contracts[i]]
	}
	return out, nil
}

// uniq returns the distinct values of ids, in order of first appearance.
func uniq(ids []int64) []int64 {
	seen := make(map[int64]bool, 4)
	var out []int64
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// Extend moves a transfer's expiry to until, which must be later than the
// current expiry and no later than the contract allows (its maximum link
// lifetime from sending, and its end date). It records expiry.extended.
func Extend(ctx context.Context, d Deps, defaults contract.Defaults, id string, until time.Time, actor string) (time.Time, error) {
	d = d.withDefaults()
	until = until.UTC().Truncate(time.Millisecond)
	err := d.DB.Write(ctx, func(tx *store.Tx) error {
		t, err := Get(ctx, tx, id)
		if err != nil {
			return err
		}
		if t.Status != StatusActive {
			return fmt.Errorf("%w: %s is %s", ErrNotActive, id, t.Status)
		}
		c, err := contract.ByID(ctx, tx, t.ContractID)
		if err != nil {
			return err
		}
		now := d.Now()
		if err := c.Usable(now); err != nil {
			return err
		}
		if !t.ExpiresAt.After(now) {
			return fmt.Errorf("%w: %s has already expired", ErrNotActive, id)
		}
		if !until.After(t.ExpiresAt) {
			return fmt.Errorf("%w: %s is not later than the current expiry %s", ErrInvalid, until.Format(time.RFC3339), t.ExpiresAt.Format(time.RFC3339))
		}
		if latest := c.LatestExpiry(t.CreatedAt, defaults); until.After(latest) {
			return fmt.Errorf("%w: contract %s allows links until %s at the latest", ErrTooLate, c.Code, latest.Format(time.RFC3339))
		}
		if _, err := tx.ExecContext(ctx, `UPDATE transfers SET expires_at = ? WHERE id = ? AND status = 'active'`, until.UnixMilli(), id); err != nil {
			return fmt.Errorf("failed to extend transfer: %w", err)
		}
		_, err = d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeExpiryExtended, Actor: actor, Contract: t.Contract,
			Message: t.MessageID, Transfer: id, Details: map[string]string{
				"expires_at": until.Format(time.RFC3339), "was_expires_at": t.ExpiresAt.Format(time.RFC3339)}})
		return err
	})
	return until, err
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
	active, err := contract.ActiveCodes(ctx, d.DB.Read())
	if err != nil {
		return 0, err
	}
	// Of active contracts only (the list is short: one placeholder each).
	args := []any{now.UnixMilli()}
	marks := make([]string, 0, len(active))
	for id := range active {
		args, marks = append(args, id), append(marks, "?")
	}
	if len(marks) == 0 {
		marks = append(marks, "NULL")
	}
	rows, err := d.DB.Read().QueryContext(ctx, `SELECT t.id, t.message_id, t.contract_id FROM transfers t
		WHERE t.status = 'active' AND t.expires_at <= ? AND t.contract_id IN (`+strings.Join(marks, ",")+`) ORDER BY t.expires_at LIMIT ?`,
		append(args, limit)...)
	if err != nil {
		return 0, fmt.Errorf("failed to list expired transfers: %w", err)
	}
	type exp struct{ id, msg, contract string }
	var due []exp
	for rows.Next() {
		var e exp
		var cid int64
		if err := rows.Scan(&e.id, &e.msg, &cid); err != nil {
			rows.Close()
			return 0, fmt.Errorf("failed to list expired transfers: %w", err)
		}
		e.contract = active[cid]
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
				keys, err := KeysOfTransfer(ctx, tx, e.id)
				if err != nil {
					return err
				}
				s, _, err := shredTx(ctx, d, tx, keys, StatusExpired, "system", "link expired", now)
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
	objs, err := Objects(ctx, d.DB.Read(), `t.status IN ('revoked', 'expired') AND f.absent_at IS NULL`)
	if err != nil {
		return expired, err
	}
	return expired, DestroyObjects(ctx, d, objs, "system")
}
