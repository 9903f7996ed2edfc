// Package masterkey keeps sealgate's master key through its life: the key
// files in the data directory, the epochs recorded in the database, the
// fence that keeps data wrapped to a retired key out of the database, and
// rotation, which replaces the key, re-wraps every live secret and erases
// the old key.
//
//	<master_key_file>        the master key of the current epoch (age identity, mode 0600)
//	<master_key_file>.next   the next epoch's key while a rotation runs
//	keys/ledger.key.age      the ledger signing key, age-encrypted to the master key
//	keys/ledger.pub          the ledger verifier key, public: give it to auditors
//
// Only the master key is stored in clear (that is what a KMS would
// replace); every other secret is wrapped by it (package crypto).
//
// # Why epochs
//
// Crypto-shredding erases a contract's keys from the live database, but a
// backup of the database made before holds them, wrapped to the master
// key. Rotation bounds that: after it, only the master keys of earlier
// epochs open such a backup, and the old key file is erased. A
// destruction certificate states the epoch and what people must still
// destroy (copies of the master keys of earlier epochs, or the backups).
//
// # The fence
//
// Every process wraps new secrets with the current epoch of its keyring
// and, in the transaction that stores them, calls Fence: if a rotation
// made a newer epoch current meanwhile, the write fails with
// crypto.ErrStaleEpoch (a 4xx for mail; the caller retries) and the
// keyring reloads. A rotation therefore never misses a secret: everything
// committed before it became current is re-wrapped by its pass, and
// nothing wrapped to the old key is committed after.
package masterkey

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/atomicfile"
)

// Epoch states (master_epochs.state).
const (
	StateCurrent   = "current"
	StateRetiring  = "retiring"
	StateDestroyed = "destroyed"
	statePending   = "pending" // a rotation chose this key but has not made it current
)

// Errors; test with errors.Is.
var (
	// ErrForeignKey: the master key is not one this database knows.
	ErrForeignKey = errors.New("masterkey: the master key does not belong to this database")
	// ErrRetiredKey: the master key is of a destroyed epoch.
	ErrRetiredKey = errors.New("masterkey: the master key was retired")
	// ErrFromEnv: the master key was given in $SEALGATE_MASTER_KEY, so it
	// cannot be rotated in place.
	ErrFromEnv = errors.New("masterkey: the master key comes from SEALGATE_MASTER_KEY and cannot be rotated here")
	// ErrBusy: another process is rotating the master key.
	ErrBusy = errors.New("masterkey: a rotation is already under way")
)

// Source says where the master key is.
type Source struct {
	// Path is the master key file (config master_key_file).
	Path string
	// Env is the master key itself from $SEALGATE_MASTER_KEY, or "".
	Env string
}

func (s Source) next() string { return s.Path + ".next" }

// Info describes one epoch as the database records it.
type Info struct {
	Epoch       int
	Recipient   string
	State       string
	CreatedAt   time.Time
	DestroyedAt time.Time // zero unless destroyed
}

// Epochs lists the epochs the database knows, oldest first.
func Epochs(ctx context.Context, q database.Querier) ([]Info, error) {
	rows, err := q.QueryContext(ctx, `SELECT epoch, recipient, state, created_at, destroyed_at FROM master_epochs WHERE state != ? ORDER BY epoch`, statePending)
	if err != nil {
		return nil, fmt.Errorf("failed to read master key epochs: %w", err)
	}
	defer rows.Close()
	var out []Info
	for rows.Next() {
		var i Info
		var created int64
		var destroyed sql.NullInt64
		if err := rows.Scan(&i.Epoch, &i.Recipient, &i.State, &created, &destroyed); err != nil {
			return nil, fmt.Errorf("failed to read master key epochs: %w", err)
		}
		i.CreatedAt = time.UnixMilli(created).UTC()
		if destroyed.Valid {
			i.DestroyedAt = time.UnixMilli(destroyed.Int64).UTC()
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

// Open loads the master key of src into a keyring whose epochs are
// numbered from the database. With create, a missing key file is
// generated (created reports it) and a database that knows no epoch
// records the key as epoch 1. It refuses a key the database does not know
// (a wrong key file) and a key of a destroyed epoch. The keyring reloads
// itself from the same source when something does not open (a rotation in
// another process).
func Open(ctx context.Context, db *database.DB, src Source, create bool, now func() time.Time) (keys *crypto.Keyring, created bool, err error) {
	if src.Env == "" {
		if _, err := os.Stat(src.Path); errors.Is(err, os.ErrNotExist) && create {
			key, err := crypto.GenerateMasterKey()
			if err != nil {
				return nil, false, err
			}
			if err := os.MkdirAll(dirOf(src.Path), 0o700); err != nil {
				return nil, false, fmt.Errorf("failed to create key directory: %w", err)
			}
			err = atomicfile.Create(src.Path, []byte(keyFileText(key, 1)), 0o600)
			if err != nil && !errors.Is(err, os.ErrExist) { // ErrExist: another process made it first
				return nil, false, err
			}
			created = err == nil
		}
	}
	cur, err := readKey(src)
	if err != nil {
		return nil, false, err
	}
	// A database that has never seen a master key adopts this one as
	// epoch 1 (a fresh installation, or one from before epochs).
	if err := db.Write(ctx, func(tx *database.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM master_epochs`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO master_epochs(epoch, recipient, state, created_at) VALUES (1, ?, ?, ?)`,
			cur.Recipient(), StateCurrent, now().UnixMilli())
		return err
	}); err != nil {
		return nil, false, fmt.Errorf("failed to record the master key epoch: %w", err)
	}
	load := func() ([]*crypto.Epoch, error) { return load(context.Background(), db.Read(), src) }
	eps, err := load()
	if err != nil {
		return nil, false, err
	}
	return crypto.NewKeyringOf(eps, load), created, nil
}

// load reads the key files of src and numbers their epochs from the
// database, newest first: during a rotation the next key (current) and
// the key being retired; otherwise the current key alone.
func load(ctx context.Context, q database.Querier, src Source) ([]*crypto.Epoch, error) {
	cur, err := readKey(src)
	if err != nil {
		return nil, err
	}
	byRecipient := map[string]Info{}
	infos, err := Epochs(ctx, q)
	if err != nil {
		return nil, err
	}
	for _, i := range infos {
		byRecipient[i.Recipient] = i
	}
	ci, ok := byRecipient[cur.Recipient()]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %s (マスター鍵がこのデータベースのものではありません。鍵ファイルを確認してください / check the key file)", ErrForeignKey, keyWhere(src))
	case ci.State == StateDestroyed:
		return nil, fmt.Errorf("%w: %s holds the key of epoch %d, destroyed %s (このマスター鍵は廃棄済みです / use the current key)",
			ErrRetiredKey, keyWhere(src), ci.Epoch, ci.DestroyedAt.Format(time.RFC3339))
	}
	eps := []*crypto.Epoch{cur.WithNumber(ci.Epoch)}
	if src.Env != "" {
		return eps, nil
	}
	// During a rotation the next key is current; the key file still holds
	// the one being retired.
	if b, err := os.ReadFile(src.next()); err == nil {
		next, err := crypto.ParseMasterKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("failed to read %s: %w", src.next(), err)
		}
		if ni, ok := byRecipient[next.Recipient()]; ok && ni.Epoch > ci.Epoch {
			eps = []*crypto.Epoch{next.WithNumber(ni.Epoch), eps[0]}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("failed to read %s: %w", src.next(), err)
	}
	return eps, nil
}

func readKey(src Source) (*crypto.Epoch, error) {
	if src.Env != "" {
		e, err := crypto.ParseMasterKey(src.Env)
		if err != nil {
			return nil, fmt.Errorf("SEALGATE_MASTER_KEY: %w", err)
		}
		return e, nil
	}
	b, err := os.ReadFile(src.Path)
	if err != nil {
		return nil, fmt.Errorf("failed to read master key %s (run `sealgate init`): %w", src.Path, err)
	}
	if info, err := os.Stat(src.Path); err == nil && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("master key %s is readable by others (mode %v); chmod 600 it", src.Path, info.Mode().Perm())
	}
	return crypto.ParseMasterKey(string(b))
}

func keyWhere(src Source) string {
	if src.Env != "" {
		return "SEALGATE_MASTER_KEY"
	}
	return src.Path
}

func keyFileText(key string, epoch int) string {
	return fmt.Sprintf("# sealgate master key, epoch %d: wraps every other key. Keep it secret.\n"+
		"# Losing it makes every stored file unreadable; a copy of it, with a backup of\n"+
		"# the database made in this epoch, opens what that backup holds.\n%s\n", epoch, key)
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i]
	}
	return "."
}

// Fence fails with crypto.ErrStaleEpoch if an epoch newer than e is
// current: data wrapped with e must not be committed then (a rotation has
// already re-wrapped, or is re-wrapping, everything committed before).
// Call it inside the transaction that stores data wrapped with e. On
// failure the keyring e came from is reloaded.
func Fence(ctx context.Context, tx *database.Tx, e *crypto.Epoch) error {
	var newer int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM master_epochs WHERE epoch > ? AND state != ?`, e.Number, statePending).Scan(&newer); err != nil {
		return fmt.Errorf("failed to check the master key epoch: %w", err)
	}
	if newer > 0 {
		e.Outdated() // the next attempt wraps with the new key
		return fmt.Errorf("%w (epoch %d)", crypto.ErrStaleEpoch, e.Number)
	}
	return nil
}

// Refresh reloads keys when the database's epochs no longer match what it
// holds (a rotation by another process started or finished), so that a
// retired key does not stay in this process's memory. The scheduler calls
// it every pass.
func Refresh(ctx context.Context, q database.Querier, keys *crypto.Keyring) error {
	infos, err := Epochs(ctx, q)
	if err != nil {
		return err
	}
	live := map[int]bool{}
	newest := 0
	for _, i := range infos {
		if i.State != StateDestroyed {
			live[i.Epoch] = true
		}
		newest = max(newest, i.Epoch)
	}
	held := keys.Epochs()
	stale := held[0].Number != newest
	for _, e := range held {
		stale = stale || !live[e.Number]
	}
	if !stale {
		return nil
	}
	return keys.Reload()
}
