package destroy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/outbox"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/transfer"
)

// Deps are what revocation, expiry and destruction need. They are passed
// explicitly so that the CLI, the scheduler and the portal's staff pages
// call the same code. The fields after AfterDelete are needed only to end
// contracts (EndContract, EndDue).
type Deps struct {
	DB     *database.DB
	Store  storage.Store
	Ledger *audit.Ledger
	Now    func() time.Time
	Log    *slog.Logger
	// Workers bounds concurrent object deletions and checks (default 16).
	Workers int
	// Batch bounds the ledger events appended in one transaction (default
	// 512). Results are committed as they come: a transaction takes
	// whatever finished while the previous one was committing.
	Batch int
	// RemoveSpool, if set, removes a spool file once no pending delivery
	// references it (the serve process also collects them at start).
	RemoveSpool func(name string) error
	// Progress, if set, is told how far each phase has got. It is called
	// from one goroutine at a time.
	Progress func(phase Phase, done, total int64)
	// AfterDelete, if set, is called after each object's deletion
	// returned and before it is recorded, with the number deleted so far
	// in this run (a fault-injection hook for crash tests).
	AfterDelete func(n int64)

	// Signer signs the checkpoint and the certificate (the ledger key).
	Signer note.Signer
	// Defaults are the configured contract defaults.
	Defaults contract.Defaults
	// CertDir receives the certificates (<data_dir>/certificates).
	CertDir string
	// Location is the time zone of the printable certificate.
	Location *time.Location
	// Storage and Database describe where the data were, for the
	// certificate's method section (e.g. "s3 bucket sealgate at …").
	Storage  string
	Database string
	// Rotate rotates the master key after the erasure (masterkey.Rotate
	// with the gateway's holders), recording key.rotated under the
	// contract; nil when the configuration switches rotation off, or on
	// PostgreSQL (the key is a fleet's).
	Rotate func(ctx context.Context, contract, reason, actor string) error
	// RotateOff says why Rotate is nil, for the ledger and the
	// certificate: one of the RotateOff* reasons (the certificate gives
	// them in both languages), or another text.
	RotateOff string
	// WALAttempts bounds how often the WAL truncation is tried (default
	// 20, WALPause apart: 250ms) before the destruction records that it
	// could not be done.
	WALAttempts int
	WALPause    time.Duration
	// Owner identifies this process in the destruction lease ("host/pid").
	Owner string
	// OwnerAlive reports whether the process named by an owner string may
	// still be running (nil: trust the heartbeat alone).
	OwnerAlive func(owner string) bool
	// Lease is how long a destruction's heartbeat keeps other processes'
	// schedulers from resuming it (default 2m).
	Lease time.Duration
	// Rand draws the openings of names the ledger does not keep (default
	// crypto/rand.Reader).
	Rand io.Reader
}

// Phase names a step of a destruction, for progress reports.
type Phase string

// Phases, in the order they run.
const (
	PhaseKeys   Phase = "keys"   // crypto-shredding: transfer identities and the contract key
	PhaseDelete Phase = "delete" // every version of every object
	PhaseVerify Phase = "verify" // a Stat proves each object absent
)

func (d Deps) withDefaults() Deps {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Workers <= 0 {
		d.Workers = 16
	}
	if d.Batch <= 0 {
		d.Batch = 512
	}
	if d.Lease <= 0 {
		d.Lease = 2 * time.Minute
	}
	if d.Location == nil {
		d.Location = time.UTC
	}
	if d.Database == "" {
		d.Database = "SQLite (secure_delete=ON)"
	}
	if d.Rand == nil {
		d.Rand = rand.Reader
	}
	if d.WALAttempts <= 0 {
		d.WALAttempts = 20
	}
	if d.WALPause <= 0 {
		d.WALPause = 250 * time.Millisecond
	}
	return d
}

func (d Deps) progress(p Phase, done, total int64) {
	if d.Progress != nil {
		d.Progress(p, done, total)
	}
}

// ErrStillPresent is returned when an object can still be read after it
// was deleted: destruction is not complete and must not be reported so.
var ErrStillPresent = errors.New("destroy: object still present after deletion")

// DestroyObjects deletes every object that is not yet recorded deleted
// (every version: storage.Store.Delete, or storage.BulkDeleter's
// DeleteMany), d.Workers at a time, recording object.deleted for each;
// then it Stats every object not yet proven absent (or lists them all:
// storage.AbsenceProver) and records object.absent. Each file's row moves
// to status 'deleted' with deleted_at, then absent_at. Records are
// conditional on the row's state, so running it twice (a resumed or concurrent destruction)
// records each step once. It returns an error, after recording what
// succeeded, if any object could not be deleted or is still present.
func DestroyObjects(ctx context.Context, d Deps, objs []transfer.Object, actor string) error {
	d = d.withDefaults()
	var del, check []transfer.Object
	for _, o := range objs {
		if !o.Deleted {
			del = append(del, o)
		}
		if !o.Absent {
			check = append(check, o)
		}
	}
	var deleted atomic.Int64
	done := func(n int) {
		if d.AfterDelete != nil {
			for range n {
				d.AfterDelete(deleted.Add(1))
			}
		}
	}
	deleteOne := single(func(ctx context.Context, o transfer.Object) error {
		if err := d.Store.Delete(ctx, o.Key); err != nil {
			return fmt.Errorf("failed to delete object %s: %w", o.Key, err)
		}
		done(1)
		return nil
	})
	group, workers, op := 1, d.Workers, deleteOne
	if bd, ok := d.Store.(storage.BulkDeleter); ok && len(del) >= bulkMin {
		// Many objects: a few multi-object deletes instead of a request
		// (or four) per object, one at a time (each lists the versions
		// under the keys' prefix, which a concurrent delete could
		// disturb).
		group, workers = bulkGroup, 1
		op = func(ctx context.Context, os []transfer.Object) []error {
			keys := make([]string, len(os))
			for i, o := range os {
				keys[i] = o.Key
			}
			failed := bd.DeleteMany(ctx, keys)
			errs := make([]error, len(os))
			for i, o := range os {
				if err := failed[o.Key]; err != nil {
					errs[i] = fmt.Errorf("failed to delete object %s: %w", o.Key, err)
				}
			}
			done(len(os) - len(failed))
			return errs
		}
	}
	err := d.run(ctx, PhaseDelete, del, group, workers, op, func(ctx context.Context, tx *database.Tx, batch []transfer.Object, now time.Time) error {
		// What the deletions reached (every version, or the current one
		// when the server cannot list versions), as the store says.
		versions := storage.DeleteCoverage(d.Store)
		changed, err := transfer.MarkDeleted(ctx, tx, fileIDs(batch), now)
		if err != nil {
			return err
		}
		for _, o := range batch {
			if !changed[o.FileID] {
				continue
			}
			if _, err := d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeObjectDeleted, Actor: actor, Contract: o.Contract,
				Transfer: o.Transfer, File: o.Name, SHA256: o.SHA256, Size: o.Size, Object: o.Key,
				Details: map[string]string{"versions": versions}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Absence: a Stat per object, or, from a store that can (S3), one
	// listing of every version under the objects' common prefix; an object
	// the listing still shows is deleted once more and Stat-ed.
	again := func(ctx context.Context, o transfer.Object) error {
		if derr := d.Store.Delete(ctx, o.Key); derr != nil {
			return fmt.Errorf("%w: %s (deleting it again failed: %v)", ErrStillPresent, o.Key, derr)
		}
		_, err := d.Store.Stat(ctx, o.Key)
		if err == nil {
			return fmt.Errorf("%w: %s", ErrStillPresent, o.Key)
		}
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("failed to verify the deletion of %s: %w", o.Key, err)
	}
	statOne := func(ctx context.Context, o transfer.Object) error {
		_, err := d.Store.Stat(ctx, o.Key)
		if err == nil {
			// Still (or again) there: delete it once more before giving up.
			return again(ctx, o)
		}
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("failed to verify the deletion of %s: %w", o.Key, err)
	}
	group, workers, verify := 1, d.Workers, single(statOne)
	if ap, ok := d.Store.(storage.AbsenceProver); ok && len(check) >= bulkMin {
		group, workers = bulkGroup, 1
		verify = func(ctx context.Context, os []transfer.Object) []error {
			keys := make([]string, len(os))
			for i, o := range os {
				keys[i] = o.Key
			}
			present, err := ap.ProveAbsent(ctx, keys)
			if err != nil {
				if d.Log != nil {
					d.Log.Info("could not prove absence by listing; checking each object", "objects", len(os), "error", err)
				}
				return each(ctx, os, d.Workers, statOne)
			}
			errs := make([]error, len(os))
			for i, o := range os {
				if present[o.Key] {
					errs[i] = again(ctx, o)
				}
			}
			return errs
		}
	}
	return d.run(ctx, PhaseVerify, check, group, workers, verify, func(ctx context.Context, tx *database.Tx, batch []transfer.Object, now time.Time) error {
		changed, err := transfer.MarkAbsent(ctx, tx, fileIDs(batch), now)
		if err != nil {
			return err
		}
		for _, o := range batch {
			if !changed[o.FileID] {
				continue
			}
			if _, err := d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeObjectAbsent, Actor: actor, Contract: o.Contract,
				Transfer: o.Transfer, File: o.Name, Object: o.Key, Result: "absent"}); err != nil {
				return err
			}
		}
		return nil
	})
}

func fileIDs(objs []transfer.Object) []int64 {
	ids := make([]int64, len(objs))
	for i, o := range objs {
		ids[i] = o.FileID
	}
	return ids
}

type opResult struct {
	o   transfer.Object
	err error
}

// Bulk deletion: stores with storage.BulkDeleter get groups of this many
// objects, when at least bulkMin are to be deleted.
const (
	bulkGroup = 20000
	bulkMin   = 64
)

// each applies op to every object, workers at a time, and returns one
// error per object.
func each(ctx context.Context, objs []transfer.Object, workers int, op func(context.Context, transfer.Object) error) []error {
	errs := make([]error, len(objs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, len(objs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(objs); i = int(next.Add(1) - 1) {
				errs[i] = op(ctx, objs[i])
			}
		}()
	}
	wg.Wait()
	return errs
}

// single adapts a per-object operation to run's group operations.
func single(op func(context.Context, transfer.Object) error) func(context.Context, []transfer.Object) []error {
	return func(ctx context.Context, os []transfer.Object) []error {
		errs := make([]error, len(os))
		for i, o := range os {
			errs[i] = op(ctx, o)
		}
		return errs
	}
}

// run applies op to every object, in groups of group objects with workers
// concurrent calls, and records the successes with record, in
// transactions that each take what finished while the previous one
// committed (at most d.Batch). op returns one error per object.
func (d Deps) run(ctx context.Context, phase Phase, objs []transfer.Object, group, workers int, op func(context.Context, []transfer.Object) []error,
	record func(ctx context.Context, tx *database.Tx, batch []transfer.Object, now time.Time) error) error {
	total := int64(len(objs))
	if total == 0 {
		return nil
	}
	d.progress(phase, 0, total)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	jobs := make(chan []transfer.Object)
	resCh := make(chan opResult, max(workers, group))
	var wg sync.WaitGroup
	for range min(workers, (len(objs)+group-1)/group) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for os := range jobs {
				for i, err := range op(ctx, os) {
					resCh <- opResult{os[i], err}
				}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for start := 0; start < len(objs); start += group {
			select {
			case jobs <- objs[start:min(start+group, len(objs))]:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(resCh)
	}()

	// The writer commits batches while the workers go on.
	writes := make(chan []transfer.Object)
	writeErr := make(chan error, 1)
	go func() {
		var firstErr error
		var done int64
		for b := range writes {
			if firstErr != nil {
				continue
			}
			err := d.DB.Write(ctx, func(tx *database.Tx) error { return record(ctx, tx, b, d.Now()) })
			if err != nil {
				firstErr = err
				cancel()
				continue
			}
			done += int64(len(b))
			d.progress(phase, done, total)
		}
		writeErr <- firstErr
	}()

	var errs []error
	var batch []transfer.Object
	results := (<-chan opResult)(resCh)
	for results != nil || len(batch) > 0 {
		var in <-chan opResult
		if results != nil && len(batch) < d.Batch {
			in = results
		}
		var out chan<- []transfer.Object
		if len(batch) > 0 {
			out = writes
		}
		select {
		case r, ok := <-in:
			if !ok {
				results = nil
				continue
			}
			if r.err != nil {
				errs = append(errs, r.err)
				if len(errs) >= 16 {
					cancel() // the store is failing: stop, resume later
				}
				continue
			}
			batch = append(batch, r.o)
		case out <- batch:
			batch = nil
		}
	}
	close(writes)
	if err := <-writeErr; err != nil {
		errs = append([]error{fmt.Errorf("failed to record %s: %w", phase, err)}, errs...)
	}
	if len(errs) == 0 && ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	if len(errs) > 0 {
		if len(errs) > 4 {
			errs = append(errs[:4], fmt.Errorf("... and %d more", len(errs)-4))
		}
		return errors.Join(errs...)
	}
	return nil
}

// shredTx destroys keys inside tx: each recipient's wrapped key.age is
// erased (SQLite secure_delete overwrites the freed bytes), its status set
// to status (if still active), key.destroyed recorded, and its pending link
// and key notices cancelled with their secrets erased. It returns the
// spool files of the cancelled notices.
func shredTx(ctx context.Context, d Deps, tx *database.Tx, keys []transfer.Key, status, actor, reason string, now time.Time) ([]string, int, error) {
	ids := make([]int64, len(keys))
	for i, k := range keys {
		ids[i] = k.RecipientID
	}
	changed, err := transfer.EraseKeys(ctx, tx, ids, status, now)
	if err != nil {
		return nil, 0, err
	}
	n := 0
	for _, k := range keys {
		if !changed[k.RecipientID] {
			continue
		}
		n++
		if _, err := d.Ledger.Append(ctx, tx, audit.Event{Time: now, Type: audit.TypeKeyDestroyed, Actor: actor, Contract: k.Contract,
			Message: k.Message, Transfer: k.Transfer, Recipient: k.Address, Reason: reason,
			Details: map[string]string{"key": "transfer"}}); err != nil {
			return nil, 0, err
		}
	}
	spools, err := outbox.CancelRecipients(ctx, tx, ids, reason)
	if err != nil {
		return nil, 0, err
	}
	return spools, n, nil
}

// ReleaseSpools removes the spool files that no pending delivery needs any
// more (best effort: serve collects leftovers at start).
func ReleaseSpools(ctx context.Context, d Deps, names []string) {
	if d.RemoveSpool == nil {
		return
	}
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		if needed, err := outbox.SpoolNeeded(ctx, d.DB.Read(), name); err != nil || needed {
			continue
		}
		if err := d.RemoveSpool(name); err != nil && d.Log != nil {
			d.Log.Warn("failed to remove spool file", "spool", name, "error", err)
		}
	}
}

// ShredKeys destroys keys in transactions of at most d.Batch keys (see
// shredTx) and returns how many were destroyed now.
func ShredKeys(ctx context.Context, d Deps, keys []transfer.Key, status, actor, reason string) (int, error) {
	d = d.withDefaults()
	total := int64(len(keys))
	d.progress(PhaseKeys, 0, total)
	destroyed := 0
	var spools []string
	for start := 0; start < len(keys); start += d.Batch {
		batch := keys[start:min(start+d.Batch, len(keys))]
		var s []string
		var n int
		err := d.DB.Write(ctx, func(tx *database.Tx) error {
			var err error
			s, n, err = shredTx(ctx, d, tx, batch, status, actor, reason, d.Now())
			return err
		})
		if err != nil {
			return destroyed, err
		}
		destroyed += n
		spools = append(spools, s...)
		d.progress(PhaseKeys, int64(start+len(batch)), total)
	}
	ReleaseSpools(ctx, d, spools)
	return destroyed, nil
}

// ScrubWAL makes the erased keys physically gone from the database files.
// SQLite's secure_delete overwrites freed content in the database file,
// but in WAL mode the page images written before the erasure stay in the
// -wal file until it is checkpointed and reset. A TRUNCATE checkpoint
// copies the WAL into the database and truncates it to nothing. It
// reports false (and the caller logs) if readers kept it from completing;
// the WAL is then reused from its start by later writes. On PostgreSQL it
// reports false and ErrNoWALScrub.
func ScrubWAL(ctx context.Context, d Deps) (bool, error) {
	if d.DB.Dialect() == database.Postgres {
		return false, ErrNoWALScrub
	}
	var busy, logFrames, checkpointed int
	for range 3 {
		err := d.DB.Read().QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &checkpointed)
		if err != nil {
			return false, fmt.Errorf("failed to checkpoint the database: %w", err)
		}
		if busy == 0 {
			return true, nil
		}
	}
	return false, nil
}

// ErrNoWALScrub: PostgreSQL has no operation that removes erased values
// from its files on demand — old row versions stay until VACUUM reuses
// their space, WAL segments until they are recycled (and in any archive).
// Destruction records the step as not done (destruction.noted).
var ErrNoWALScrub = errors.New("PostgreSQL keeps erased values in old row versions until VACUUM and in its WAL until recycled; they cannot be scrubbed on demand")

// scrub runs ScrubWAL and logs when it could not complete.
func scrub(ctx context.Context, d Deps) {
	ok, err := ScrubWAL(ctx, d)
	if err != nil || !ok {
		d.Log.Warn("could not truncate the database WAL after erasing keys; it is overwritten by later writes", "error", err)
	}
}
