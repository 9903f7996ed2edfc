package transfer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
)

// The rows package destroy works on, and the conditional state changes it
// records them with. Each change is conditional on the state it moves from,
// so that a destruction run twice (resumed, or concurrent) changes each
// row once; the changes that act on many rows return the ids they changed.

// Object is a stored file to destroy.
type Object struct {
	FileID   int64
	Transfer string
	Contract string // code
	Name     string
	SHA256   string
	Size     int64
	Key      string // storage key
	Deleted  bool   // deletion already recorded
	Absent   bool   // absence already proven
}

// Key is one recipient's transfer identity (their wrapped key.age).
type Key struct {
	RecipientID int64
	Transfer    string
	Contract    string // code
	Message     string
	Address     string
}

// ObjectsOfContract returns the files of a contract's transfers whose
// absence is not proven yet: what its destruction still has to delete or
// check.
func ObjectsOfContract(ctx context.Context, q database.Querier, contractID int64) ([]Object, error) {
	return objects(ctx, q, `t.contract_id = ? AND f.absent_at IS NULL`, contractID)
}

// ObjectsOfTransfer returns the files of a transfer whose absence is not
// proven yet.
func ObjectsOfTransfer(ctx context.Context, q database.Querier, id string) ([]Object, error) {
	return objects(ctx, q, `f.transfer_id = ? AND f.absent_at IS NULL`, id)
}

// ObjectsOfEnded returns the files of revoked and expired transfers whose
// absence is not proven yet (a deletion that was interrupted).
func ObjectsOfEnded(ctx context.Context, q database.Querier) ([]Object, error) {
	return objects(ctx, q, `t.status IN ('revoked', 'expired') AND f.absent_at IS NULL`)
}

func objects(ctx context.Context, q database.Querier, where string, args ...any) ([]Object, error) {
	rows, err := q.QueryContext(ctx, `SELECT f.id, f.transfer_id, t.contract_id, f.name, f.sha256, f.size, f.object_key, f.deleted_at IS NOT NULL, f.absent_at IS NOT NULL
		FROM files f JOIN transfers t ON t.id = f.transfer_id WHERE `+where+` ORDER BY f.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("failed to list objects: %w", err)
	}
	var out []Object
	var cids []int64
	for rows.Next() {
		var o Object
		var cid int64
		if err := rows.Scan(&o.FileID, &o.Transfer, &cid, &o.Name, &o.SHA256, &o.Size, &o.Key, &o.Deleted, &o.Absent); err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to list objects: %w", err)
		}
		out, cids = append(out, o), append(cids, cid)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list objects: %w", err)
	}
	return out, codesOf(ctx, q, cids, func(i int, code string) { out[i].Contract = code })
}

// KeysOfContract returns the transfer identities of a contract's
// recipients that are not destroyed yet.
func KeysOfContract(ctx context.Context, q database.Querier, contractID int64) ([]Key, error) {
	return keys(ctx, q, `t.contract_id = ?`, contractID)
}

// KeysOfTransfer returns the transfer identities of a transfer's
// recipients that are not destroyed yet.
func KeysOfTransfer(ctx context.Context, q database.Querier, id string) ([]Key, error) {
	return keys(ctx, q, `r.transfer_id = ?`, id)
}

func keys(ctx context.Context, q database.Querier, where string, arg any) ([]Key, error) {
	rows, err := q.QueryContext(ctx, `SELECT r.id, r.transfer_id, t.contract_id, t.message_id, r.address
		FROM recipients r JOIN transfers t ON t.id = r.transfer_id
		WHERE r.key_destroyed_at IS NULL AND `+where+` ORDER BY r.id`, arg)
	if err != nil {
		return nil, fmt.Errorf("failed to list keys: %w", err)
	}
	var out []Key
	var cids []int64
	for rows.Next() {
		var k Key
		var cid int64
		if err := rows.Scan(&k.RecipientID, &k.Transfer, &cid, &k.Message, &k.Address); err != nil {
			rows.Close()
			return nil, fmt.Errorf("failed to list keys: %w", err)
		}
		out, cids = append(out, k), append(cids, cid)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list keys: %w", err)
	}
	return out, codesOf(ctx, q, cids, func(i int, code string) { out[i].Contract = code })
}

// Counts are how much a contract holds.
type Counts struct {
	Transfers, Files, Recipients int64
}

// CountOfContract counts a contract's transfers, files and recipients.
func CountOfContract(ctx context.Context, q database.Querier, contractID int64) (Counts, error) {
	var n Counts
	err := q.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM transfers WHERE contract_id = ?),
		(SELECT COUNT(*) FROM files f JOIN transfers t ON t.id = f.transfer_id WHERE t.contract_id = ?),
		(SELECT COUNT(*) FROM recipients r JOIN transfers t ON t.id = r.transfer_id WHERE t.contract_id = ?)`,
		contractID, contractID, contractID).Scan(&n.Transfers, &n.Files, &n.Recipients)
	if err != nil {
		return n, fmt.Errorf("failed to count the contract's transfers: %w", err)
	}
	return n, nil
}

// MessagesOfContract returns the ids of every message received under a
// contract, sealed or not (their queued mail is cancelled when it ends).
func MessagesOfContract(ctx context.Context, q database.Querier, contractID int64) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT id FROM messages WHERE contract_id = ?`, contractID)
	if err != nil {
		return nil, fmt.Errorf("failed to list the contract's messages: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("failed to list the contract's messages: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("failed to list the contract's messages: %w", err)
	}
	return out, nil
}

// Unfinished counts what a contract's destruction has not finished: keys
// not erased, and files whose absence is not proven.
func Unfinished(ctx context.Context, q database.Querier, contractID int64) (keys, objects int, err error) {
	err = q.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM recipients r JOIN transfers t ON t.id = r.transfer_id WHERE t.contract_id = ? AND (r.key_destroyed_at IS NULL OR r.key_wrapped IS NOT NULL)),
		(SELECT COUNT(*) FROM files f JOIN transfers t ON t.id = f.transfer_id WHERE t.contract_id = ? AND f.absent_at IS NULL)`,
		contractID, contractID).Scan(&keys, &objects)
	if err != nil {
		return 0, 0, fmt.Errorf("failed to check the destruction: %w", err)
	}
	return keys, objects, nil
}

// Status returns a transfer's status.
func Status(ctx context.Context, q database.Querier, id string) (string, error) {
	var status string
	err := q.QueryRowContext(ctx, `SELECT status FROM transfers WHERE id = ?`, id).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return "", fmt.Errorf("failed to read transfer: %w", err)
	}
	return status, nil
}

// Exists reports whether the database knows the transfer id.
func Exists(ctx context.Context, q database.Querier, id string) (bool, error) {
	_, err := Status(ctx, q, id)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Expired returns up to limit active transfers of active contracts whose
// links have expired at now, the longest expired first (without files and
// recipients).
func Expired(ctx context.Context, q database.Querier, now time.Time, limit int) ([]Transfer, error) {
	active, err := contract.ActiveCodes(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(active) == 0 {
		return nil, nil
	}
	// Of active contracts only (the list is short: one placeholder each).
	args := []any{now.UnixMilli()}
	marks := make([]string, 0, len(active))
	for id := range active {
		args, marks = append(args, id), append(marks, "?")
	}
	out, err := queryTransfers(ctx, q, ` WHERE t.status = 'active' AND t.expires_at <= ?
		AND t.contract_id IN (`+strings.Join(marks, ",")+`) ORDER BY t.expires_at LIMIT ?`, append(args, limit)...)
	for i := range out {
		out[i].Contract = active[out[i].ContractID]
	}
	return out, err
}

// codesOf names the contract of each of n rows scanned with their
// contract ids (package contract owns the codes): set(i, code).
func codesOf(ctx context.Context, q database.Querier, ids []int64, set func(i int, code string)) error {
	codes, err := contract.CodesByID(ctx, q, uniqIDs(ids)...)
	if err != nil {
		return err
	}
	for i, id := range ids {
		set(i, codes[id])
	}
	return nil
}

// uniqIDs returns ids without repetitions, in first-seen order.
func uniqIDs(ids []int64) []int64 {
	seen := make(map[int64]bool, len(ids))
	var out []int64
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// Revoke marks an active transfer revoked at now; it reports whether it
// was active.
func Revoke(ctx context.Context, tx *database.Tx, id string, now time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE transfers SET status = 'revoked', ended_at = ? WHERE id = ? AND status = 'active'`, now.UnixMilli(), id)
	if err != nil {
		return false, fmt.Errorf("failed to revoke transfer: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// Expire marks an active transfer expired at now if its link has expired
// by then; it reports whether it did (not if it was extended or revoked
// meanwhile).
func Expire(ctx context.Context, tx *database.Tx, id string, now time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE transfers SET status = 'expired', ended_at = ? WHERE id = ? AND status = 'active' AND expires_at <= ?`,
		now.UnixMilli(), id, now.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("failed to expire transfer: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// DestroyOfContract marks every active transfer of a contract destroyed
// (its contract is ending).
func DestroyOfContract(ctx context.Context, tx *database.Tx, contractID int64, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE transfers SET status = 'destroyed', ended_at = ? WHERE contract_id = ? AND status = 'active'`,
		now.UnixMilli(), contractID); err != nil {
		return fmt.Errorf("failed to mark transfers destroyed: %w", err)
	}
	return nil
}

// EraseKeys erases the wrapped key files of the recipients ids (SQLite
// secure_delete overwrites the freed bytes), records when, and moves those
// still active to status. It returns the ids whose key it erased now.
func EraseKeys(ctx context.Context, tx *database.Tx, ids []int64, status string, now time.Time) (map[int64]bool, error) {
	changed, err := updateIDs(ctx, tx, `UPDATE recipients SET key_wrapped = NULL, key_destroyed_at = ? WHERE key_destroyed_at IS NULL AND id IN `, now.UnixMilli(), ids)
	if err != nil {
		return nil, fmt.Errorf("failed to destroy keys: %w", err)
	}
	if _, err := updateIDs(ctx, tx, `UPDATE recipients SET status = ? WHERE status = 'active' AND id IN `, status, ids); err != nil {
		return nil, fmt.Errorf("failed to update recipients: %w", err)
	}
	return changed, nil
}

// MarkDeleted records the files ids deleted at now (status 'deleted') and
// returns the ids it changed (those not recorded deleted before).
func MarkDeleted(ctx context.Context, tx *database.Tx, ids []int64, now time.Time) (map[int64]bool, error) {
	changed, err := updateIDs(ctx, tx, `UPDATE files SET status = 'deleted', deleted_at = ? WHERE deleted_at IS NULL AND id IN `, now.UnixMilli(), ids)
	if err != nil {
		return nil, fmt.Errorf("failed to record deletion: %w", err)
	}
	return changed, nil
}

// MarkAbsent records the deleted files ids proven absent at now and
// returns the ids it changed.
func MarkAbsent(ctx context.Context, tx *database.Tx, ids []int64, now time.Time) (map[int64]bool, error) {
	changed, err := updateIDs(ctx, tx, `UPDATE files SET absent_at = ? WHERE absent_at IS NULL AND deleted_at IS NOT NULL AND id IN `, now.UnixMilli(), ids)
	if err != nil {
		return nil, fmt.Errorf("failed to record absence: %w", err)
	}
	return changed, nil
}

// maxIDs bounds the ids in one IN list.
const maxIDs = 500

// idList renders ids as an SQL list "(1,2,3)": integers only, so nothing
// can be injected.
func idList(ids []int64) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(id, 10))
	}
	b.WriteByte(')')
	return b.String()
}

// updateIDs runs query (which ends in "id IN ") with arg for ids, maxIDs
// at a time, and returns the ids it changed.
func updateIDs(ctx context.Context, tx *database.Tx, query string, arg any, ids []int64) (map[int64]bool, error) {
	changed := make(map[int64]bool, len(ids))
	for start := 0; start < len(ids); start += maxIDs {
		chunk := ids[start:min(start+maxIDs, len(ids))]
		rows, err := tx.QueryContext(ctx, query+idList(chunk)+` RETURNING id`, arg)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var x int64
			if err := rows.Scan(&x); err != nil {
				rows.Close()
				return nil, err
			}
			changed[x] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return changed, nil
}

// ReplaceNamesOfContract replaces, in tx, the names the contract's rows
// hold — each message's Subject and Message-ID, each file's name, each
// recipient's address — by what commit returns for them (at contract end:
// the commitments the ledger's records hold, package audit). SQLite
// secure_delete overwrites the old values in the database file.
func ReplaceNamesOfContract(ctx context.Context, tx *database.Tx, contractID int64, commit func(string) (string, error)) error {
	targets := []struct{ sel, upd string }{
		{`SELECT id, subject FROM messages WHERE contract_id = ?`, `UPDATE messages SET subject = ? WHERE id = ?`},
		{`SELECT id, message_id FROM messages WHERE contract_id = ?`, `UPDATE messages SET message_id = ? WHERE id = ?`},
		{`SELECT f.id, f.name FROM files f JOIN transfers t ON t.id = f.transfer_id WHERE t.contract_id = ?`, `UPDATE files SET name = ? WHERE id = ?`},
		{`SELECT r.id, r.address FROM recipients r JOIN transfers t ON t.id = r.transfer_id WHERE t.contract_id = ?`, `UPDATE recipients SET address = ? WHERE id = ?`},
	}
	for _, tg := range targets {
		type row struct{ id, value any }
		var todo []row
		rows, err := tx.QueryContext(ctx, tg.sel, contractID)
		if err != nil {
			return fmt.Errorf("failed to read the contract's names: %w", err)
		}
		for rows.Next() {
			var id any
			var v string
			if err := rows.Scan(&id, &v); err != nil {
				rows.Close()
				return fmt.Errorf("failed to read the contract's names: %w", err)
			}
			todo = append(todo, row{id, v})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("failed to read the contract's names: %w", err)
		}
		for _, r := range todo {
			c, err := commit(r.value.(string))
			if err != nil {
				return err
			}
			if c == r.value {
				continue
			}
			if _, err := tx.ExecContext(ctx, tg.upd, c, r.id); err != nil {
				return fmt.Errorf("failed to replace the contract's names: %w", err)
			}
		}
	}
	return nil
}

// StoredObject is a sealed file the database says the object store holds:
// its key and the size and SHA-256 of its ciphertext.
type StoredObject struct {
	FileID       int64
	Key          string
	CipherSize   int64
	CipherSHA256 string // hex
}

// StoredObjects calls fn with every file not recorded deleted, in id
// order: what a copy of the object store must hold (sealgate migrate
// checks each against the copy).
func StoredObjects(ctx context.Context, q database.Querier, fn func(StoredObject) error) error {
	rows, err := q.QueryContext(ctx, `SELECT id, object_key, cipher_size, cipher_sha256 FROM files WHERE deleted_at IS NULL ORDER BY id`)
	if err != nil {
		return fmt.Errorf("failed to list stored files: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var o StoredObject
		if err := rows.Scan(&o.FileID, &o.Key, &o.CipherSize, &o.CipherSHA256); err != nil {
			return fmt.Errorf("failed to list stored files: %w", err)
		}
		if err := fn(o); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("failed to list stored files: %w", err)
	}
	return nil
}
