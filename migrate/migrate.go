// Package migrate moves an embedded installation (SQLite and the fs
// object store) into PostgreSQL and an S3 bucket: `sealgate migrate`.
//
// The steps, in order:
//
//  1. The target database must hold no row (database.CheckEmpty), and
//     the bucket no object other than the source's: refused otherwise,
//     saying which.
//  2. The source's ledger is verified (audit.VerifyDB) and, if entries
//     came after its newest checkpoint (other than that checkpoint's own
//     record, checkpoint.signed), a checkpoint of the whole tree is
//     signed there: the old checkpoint, which the target's tree must
//     reproduce.
//  3. Every object of the source store is copied under the same key (the
//     ledger's objects, ledger/…, into the ledger's bucket when it has its
//     own), its SHA-256 taken on the way.
//  4. Every table is copied (database.CopyTables: one transaction, same
//     ids, identity sequences moved past them).
//  5. Verification: the rows of every table counted on both sides; every
//     object read back from the bucket and its SHA-256 compared with the
//     source's, and every sealed file the database records compared with
//     its ciphertext size and SHA-256; the target's ledger verified by the
//     code of `sealgate audit verify-db`, with the old checkpoint as an
//     earlier one it must extend, and a consistency proof from the old
//     checkpoint to the target's newest one checked.
//
// Restarting: until step 4 commits, the target database stays empty (the
// copy is one transaction) and the objects already copied are the
// source's under their own keys, so running again starts over and
// overwrites them. After step 4, the target is not empty any more and a
// new run is refused; Options.VerifyOnly runs step 5 alone.
//
// The caller makes sure that nothing writes the source meanwhile (server:
// the serve lock of the data directory, internal/servelock).
package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/transfer"
)

// Errors a user reads; test with errors.Is.
var (
	ErrTargetNotEmpty = errors.New("移行先のデータベースが空ではありません。空のデータベースを指定してください / the target database is not empty: migrate copies into an empty database only")
	ErrBucketNotEmpty = errors.New("移行先のバケットにこの環境のものではないオブジェクトがあります。空のバケットを指定してください / the target bucket holds objects that are not this installation's: give an empty bucket")
	ErrMismatch       = errors.New("移行先の内容が移行元と一致しません / the copy differs from the source")
	ErrNotLister      = errors.New("migrate: the object store cannot list its keys")
)

// Source is the embedded installation.
type Source struct {
	DB    *database.DB
	Store storage.Store // must be a storage.Lister
	// Ledger and VerifierKey verify the source's ledger; Signer signs a
	// checkpoint of its whole tree when the newest does not cover it
	// (called only then).
	Ledger      *audit.Ledger
	VerifierKey string
	Signer      func() (note.Signer, error)
}

// Target is the PostgreSQL database and the bucket(s).
type Target struct {
	DB      *database.DB
	Objects storage.Store
	// LedgerStore receives the keys under ledger/ (checkpoints,
	// certificates); nil: Objects. Retention, if positive, writes them
	// locked (storage.Retainer) for that long from Now, as the ledger
	// does.
	LedgerStore storage.Store
	Retention   time.Duration
	Now         func() time.Time
	Ledger      *audit.Ledger
}

// ledgerPrefix is where the ledger keeps its objects (audit.CheckpointPrefix,
// audit.CertificatePrefix).
const ledgerPrefix = "ledger/"

// Options of Run.
type Options struct {
	// VerifyOnly runs the verification of an earlier migration only.
	VerifyOnly bool
	// Progress, if set, is told what has been done, step by step.
	Progress func(Event)
}

// Event kinds.
const (
	EventCheckpoint = "checkpoint" // N: the old checkpoint's size (Signed: made now)
	EventObjects    = "objects"    // Name: a key prefix; N: objects copied under it
	EventCopying    = "copying"    // N of Total objects copied so far (for a progress line)
	EventTable      = "table"      // Name: a table; N: rows copied
	EventVerified   = "verified"   // Name: what was verified; N: how many
)

// Event is one step of the migration.
type Event struct {
	Kind   string
	Name   string
	N      int64
	Total  int64
	Signed bool
}

// Report is what a migration did and checked.
type Report struct {
	Tables  []database.TableCount
	Objects map[string]int64 // objects per key prefix (first segment)
	Bytes   int64            // bytes of objects copied
	Files   int64            // sealed files checked against their records
	// Checkpoint is the source's checkpoint the target's tree extends.
	Checkpoint *audit.SignedCheckpoint
	// Ledger is the verification of the target's ledger.
	Ledger *audit.VerifyReport
}

// Run migrates src into dst (see the package doc).
func Run(ctx context.Context, src Source, dst Target, opts Options) (*Report, error) {
	m := &run{src: src, dst: dst, opts: opts, rep: &Report{Objects: map[string]int64{}}, sums: map[string]string{}}
	if m.dst.LedgerStore == nil {
		m.dst.LedgerStore = m.dst.Objects
	}
	if m.dst.Now == nil {
		m.dst.Now = time.Now
	}
	if err := m.run(ctx); err != nil {
		return m.rep, err
	}
	return m.rep, nil
}

type run struct {
	src  Source
	dst  Target
	opts Options
	rep  *Report
	keys []string          // the source's objects, sorted
	sums map[string]string // key -> SHA-256 (hex) of the source's object
}

func (m *run) tell(ev Event) {
	if m.opts.Progress != nil {
		m.opts.Progress(ev)
	}
}

func (m *run) run(ctx context.Context) error {
	if !m.opts.VerifyOnly {
		if err := m.dst.DB.CheckEmpty(ctx); err != nil {
			if errors.Is(err, database.ErrNotEmpty) {
				return fmt.Errorf("%w (%w)", ErrTargetNotEmpty, err)
			}
			return err
		}
	}
	// Before the listing: a checkpoint signed now is published to the
	// source's store, and copied with the rest.
	if err := m.oldCheckpoint(ctx); err != nil {
		return err
	}
	if err := m.listSource(ctx); err != nil {
		return err
	}
	if !m.opts.VerifyOnly {
		if err := m.checkBucket(ctx); err != nil {
			return err
		}
		if err := m.copyObjects(ctx); err != nil {
			return err
		}
		tables, err := database.CopyTables(ctx, m.src.DB, m.dst.DB, func(table string, rows int64) {
			m.tell(Event{Kind: EventTable, Name: table, N: rows})
		})
		if errors.Is(err, database.ErrNotEmpty) {
			return fmt.Errorf("%w (%w)", ErrTargetNotEmpty, err)
		}
		if err != nil {
			return fmt.Errorf("failed to copy the tables: %w", err)
		}
		m.rep.Tables = tables
	}
	return m.verify(ctx)
}

// listSource lists the source's objects.
func (m *run) listSource(ctx context.Context) error {
	l, ok := m.src.Store.(storage.Lister)
	if !ok {
		return ErrNotLister
	}
	err := l.List(ctx, "", func(info storage.Info) error {
		m.keys = append(m.keys, info.Key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("failed to list the source's objects: %w", err)
	}
	sort.Strings(m.keys)
	return nil
}

// storeOf is the target store of key.
func (m *run) storeOf(key string) storage.Store {
	if strings.HasPrefix(key, ledgerPrefix) {
		return m.dst.LedgerStore
	}
	return m.dst.Objects
}

// checkBucket refuses a bucket with an object the source does not have
// under the same key (objects of an interrupted run are the source's, and
// are overwritten). Keys whose first segment begins with a dot are the
// stores' own (the S3 store's probe).
func (m *run) checkBucket(ctx context.Context) error {
	have := map[string]bool{}
	for _, k := range m.keys {
		have[k] = true
	}
	stores := []storage.Store{m.dst.Objects}
	if m.dst.LedgerStore != m.dst.Objects {
		stores = append(stores, m.dst.LedgerStore)
	}
	for _, st := range stores {
		l, ok := st.(storage.Lister)
		if !ok {
			return ErrNotLister
		}
		var foreign []string
		err := l.List(ctx, "", func(info storage.Info) error {
			if !have[info.Key] && !strings.HasPrefix(info.Key, ".") {
				foreign = append(foreign, info.Key)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("failed to list the target bucket: %w", err)
		}
		if len(foreign) > 0 {
			more := ""
			if len(foreign) > 5 {
				foreign, more = foreign[:5], fmt.Sprintf(" … (%d)", len(foreign))
			}
			return fmt.Errorf("%w: %s%s", ErrBucketNotEmpty, strings.Join(foreign, ", "), more)
		}
	}
	return nil
}

// oldCheckpoint verifies the source's ledger and finds (or signs) the
// checkpoint of its whole tree.
func (m *run) oldCheckpoint(ctx context.Context) error {
	q := m.src.DB.Read()
	vrep, err := audit.VerifyDB(ctx, m.src.DB, m.src.VerifierKey, audit.VerifyOptions{}, nil)
	if err != nil {
		return fmt.Errorf("移行元の台帳を検証できません / the source's ledger does not verify: %w", err)
	}
	if vrep.Size == 0 {
		return nil // nothing was ever recorded: no checkpoint to carry over
	}
	cp, err := m.src.Ledger.LatestCheckpoint(ctx, q)
	if err != nil && !errors.Is(err, audit.ErrNoCheckpoint) {
		return fmt.Errorf("failed to read the source's checkpoint: %w", err)
	}
	// Signing a checkpoint appends its own record (checkpoint.signed), so
	// the newest checkpoint covers at best every entry but the last: a
	// checkpoint is signed now when other entries came after it.
	signed := false
	if (cp == nil || cp.Size+1 < vrep.Size) && !m.opts.VerifyOnly {
		if m.src.Signer == nil {
			return errors.New("migrate: the source's newest checkpoint does not cover its ledger and no signer was given")
		}
		signer, err := m.src.Signer()
		if err != nil {
			return err
		}
		cp, err = m.src.Ledger.Checkpoint(ctx, m.src.DB, signer)
		if err != nil {
			return fmt.Errorf("移行元の台帳のチェックポイントを署名できません / failed to sign the source's checkpoint: %w", err)
		}
		signed = true
	}
	if cp == nil {
		return fmt.Errorf("%w: the source's ledger has no checkpoint", ErrMismatch)
	}
	// Signed by the ledger's key: the checkpoint an auditor may hold.
	if cp, err = audit.OpenCheckpoint(cp.Note, m.src.VerifierKey); err != nil {
		return fmt.Errorf("the source's checkpoint: %w", err)
	}
	m.rep.Checkpoint = cp
	m.tell(Event{Kind: EventCheckpoint, N: cp.Size, Signed: signed})
	return nil
}

// copyObjects copies every object of the source under its key.
func (m *run) copyObjects(ctx context.Context) error {
	prefix := ""
	var n int64
	flush := func() {
		if prefix != "" {
			m.tell(Event{Kind: EventObjects, Name: prefix, N: n})
		}
	}
	for _, key := range m.keys {
		p := firstSegment(key)
		if p != prefix {
			flush()
			prefix, n = p, 0
		}
		size, sum, err := m.copyObject(ctx, key)
		if err != nil {
			return err
		}
		m.sums[key] = sum
		m.rep.Objects[p]++
		m.rep.Bytes += size
		n++
		m.tell(Event{Kind: EventCopying, N: int64(len(m.sums)), Total: int64(len(m.keys))})
	}
	flush()
	return nil
}

func firstSegment(key string) string {
	if i := strings.IndexByte(key, '/'); i >= 0 {
		return key[:i+1]
	}
	return key
}

func (m *run) copyObject(ctx context.Context, key string) (int64, string, error) {
	rc, _, err := m.src.Store.Get(ctx, key)
	if err != nil {
		return 0, "", fmt.Errorf("failed to read object %s: %w", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	r := io.TeeReader(rc, h)
	st := m.storeOf(key)
	var info storage.Info
	if rt, ok := st.(storage.Retainer); ok && m.dst.Retention > 0 && strings.HasPrefix(key, ledgerPrefix) {
		info, err = rt.PutLocked(ctx, key, r, m.dst.Now().Add(m.dst.Retention))
	} else {
		info, err = st.Put(ctx, key, r)
	}
	if err != nil {
		return 0, "", fmt.Errorf("failed to copy object %s: %w", key, err)
	}
	return info.Size, hex.EncodeToString(h.Sum(nil)), nil
}

// sumOf reads key from st and returns its size and SHA-256.
func sumOf(ctx context.Context, st storage.Store, key string) (int64, string, error) {
	rc, _, err := st.Get(ctx, key)
	if err != nil {
		return 0, "", err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// verify checks the copy (see the package doc, step 5).
func (m *run) verify(ctx context.Context) error {
	// Rows of every table.
	srcCounts, err := m.src.DB.RowCounts(ctx)
	if err != nil {
		return err
	}
	dstCounts, err := m.dst.DB.RowCounts(ctx)
	if err != nil {
		return err
	}
	if len(srcCounts) != len(dstCounts) {
		return fmt.Errorf("%w: %d tables in the source, %d in the target", ErrMismatch, len(srcCounts), len(dstCounts))
	}
	got := map[string]int64{}
	for _, c := range dstCounts {
		got[c.Table] = c.Rows
	}
	var rows int64
	for _, c := range srcCounts {
		if n, ok := got[c.Table]; !ok || n != c.Rows {
			return fmt.Errorf("%w: table %s has %d rows in the source and %d in the target", ErrMismatch, c.Table, c.Rows, n)
		}
		rows += c.Rows
	}
	if m.rep.Tables == nil {
		m.rep.Tables = srcCounts
	}
	m.tell(Event{Kind: EventVerified, Name: "rows", N: rows})

	// Every object, read back from the bucket.
	for _, key := range m.keys {
		want, ok := m.sums[key]
		if !ok { // VerifyOnly: hash the source's
			if _, want, err = sumOf(ctx, m.src.Store, key); err != nil {
				return fmt.Errorf("failed to read object %s: %w", key, err)
			}
			m.rep.Objects[firstSegment(key)]++
		}
		_, sum, err := sumOf(ctx, m.storeOf(key), key)
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("%w: object %s is missing from the bucket", ErrMismatch, key)
		}
		if err != nil {
			return fmt.Errorf("failed to read object %s from the bucket: %w", key, err)
		}
		if sum != want {
			return fmt.Errorf("%w: object %s differs from the source's (SHA-256 %s, source %s)", ErrMismatch, key, sum, want)
		}
		m.sums[key] = sum
	}
	m.tell(Event{Kind: EventVerified, Name: "objects", N: int64(len(m.keys))})

	// Every sealed file the target's database records.
	var files int64
	err = transfer.StoredObjects(ctx, m.dst.DB.Read(), func(o transfer.StoredObject) error {
		sum, ok := m.sums[o.Key]
		if !ok {
			return fmt.Errorf("%w: file %d's object %s is not in the source's store", ErrMismatch, o.FileID, o.Key)
		}
		size, err := m.dst.Objects.Stat(ctx, o.Key)
		if err != nil {
			return fmt.Errorf("failed to read object %s from the bucket: %w", o.Key, err)
		}
		if sum != o.CipherSHA256 || size.Size != o.CipherSize {
			return fmt.Errorf("%w: object %s (%d bytes, SHA-256 %s) is not the ciphertext file %d records (%d bytes, SHA-256 %s)",
				ErrMismatch, o.Key, size.Size, sum, o.FileID, o.CipherSize, o.CipherSHA256)
		}
		files++
		return nil
	})
	if err != nil {
		return err
	}
	m.rep.Files = files
	m.tell(Event{Kind: EventVerified, Name: "files", N: files})

	// The ledger: audit verify-db's code, the old checkpoint as an earlier
	// one the target's tree must extend.
	old := m.rep.Checkpoint
	var vopts audit.VerifyOptions
	if old != nil {
		vopts.Previous = old.Note
	}
	vrep, err := audit.VerifyDB(ctx, m.dst.DB, m.src.VerifierKey, vopts, nil)
	if err != nil {
		return fmt.Errorf("移行先の台帳を検証できません / the target's ledger does not verify: %w", err)
	}
	m.rep.Ledger = vrep
	if old == nil {
		if vrep.Size != 0 {
			return fmt.Errorf("%w: the source's ledger is empty, the target's holds %d entries", ErrMismatch, vrep.Size)
		}
		return nil
	}
	q := m.dst.DB.Read()
	newest, err := m.dst.Ledger.LatestCheckpoint(ctx, q)
	if err != nil {
		return fmt.Errorf("failed to read the target's checkpoint: %w", err)
	}
	proof, err := m.dst.Ledger.ProveConsistency(ctx, q, old, newest)
	if err != nil {
		return fmt.Errorf("移行先の台帳が移行前のチェックポイントと一致しません / the target's ledger does not extend the old checkpoint: %w", err)
	}
	if err := audit.CheckConsistency(m.src.VerifierKey, old.Note, newest.Note, proof); err != nil {
		return fmt.Errorf("移行先の台帳が移行前のチェックポイントと一致しません / the target's ledger does not extend the old checkpoint: %w", err)
	}
	m.tell(Event{Kind: EventVerified, Name: "ledger", N: vrep.Size})
	return nil
}
