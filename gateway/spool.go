package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/atomicfile"
	"github.com/sealgate/sealgate/outbox"
	"github.com/sealgate/sealgate/storage"
)

// The spool keeps the bodies of queued mail: for each accepted message,
// the original (for internal recipients) and the skeleton (for external
// ones). Every spool file is sealed with the queue key of a master key
// epoch as it is written (crypto.Epoch.SpoolWriter), so no plaintext
// attachment ever reaches a disk or a bucket, and it is durable before
// the database commit that references it (the commit point, accept.go).
//
// Where the sealed bytes are kept is a SpoolStore, which server/ chooses:
// a directory on this machine's disk (DirSpool, with SQLite: one
// instance), or a prefix of the shared object store (BucketSpool, with
// PostgreSQL: a message accepted by an instance that then dies is
// delivered by another, which finds its spool files there).

// SpoolStore keeps the spool's files. It sees ciphertext only.
type SpoolStore interface {
	// Create starts the file name. Nothing is under name until the
	// returned file's Commit returns nil, and the file is durable then
	// (fsynced with its directory, or acknowledged by the S3 service);
	// Abort discards it. ctx bounds the writing.
	Create(ctx context.Context, name string) (SpoolWriter, error)
	// Open returns the bytes of the committed file name; the caller
	// closes it. A missing file's error wraps fs.ErrNotExist.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// Replace makes name what write writes, atomically and durably: the
	// file is the old one until Replace returns nil. If write fails the
	// old file is kept.
	Replace(ctx context.Context, name string, write func(io.Writer) error) error
	// Remove removes name; a missing file is not an error.
	Remove(ctx context.Context, name string) error
	// List calls fn for every committed file with when it was written.
	List(ctx context.Context, fn func(name string, written time.Time) error) error
	// Shared reports whether other instances use the same files: then
	// a file too young to have been committed may be another instance's
	// message on its way to its commit.
	Shared() bool
}

// SpoolWriter is a spool file being written: Write takes sealed bytes,
// Commit makes them durable under the file's name, Abort discards them.
type SpoolWriter interface {
	io.Writer
	Commit() error
	Abort()
}

// spool seals and opens spool files, kept in a SpoolStore.
type spool struct {
	st   SpoolStore
	keys *crypto.Keyring
}

// spoolFile is a spool file being written. Write encrypts; Commit makes it
// durable under its final name; Abort removes it.
type spoolFile struct {
	name string
	f    SpoolWriter
	w    io.WriteCloser
	done bool
	// staged holds the sealed bytes of a file committed by commitTx, in
	// the transaction that references it (commitLater).
	staged []byte
	// committing: the store was asked to commit the file (it may be
	// there even if that failed); a file never committing left nothing.
	committing bool
}

// create starts a spool file sealed with the queue key of epoch ep.
func (s *spool) create(ctx context.Context, name string, ep *crypto.Epoch) (*spoolFile, error) {
	f, err := s.st.Create(ctx, name)
	if err != nil {
		return nil, classifyIO(fmt.Errorf("failed to create spool file: %w", err))
	}
	w, err := ep.SpoolWriter(f)
	if err != nil {
		f.Abort()
		return nil, err
	}
	return &spoolFile{name: name, f: f, w: w}, nil
}

func (sf *spoolFile) Write(p []byte) (int, error) {
	n, err := sf.w.Write(p)
	if err != nil {
		err = classifyIO(fmt.Errorf("failed to write spool file: %w", err))
	}
	return n, err
}

func (sf *spoolFile) Commit() error {
	if err := sf.w.Close(); err != nil {
		sf.Abort()
		return classifyIO(fmt.Errorf("failed to finish spool file: %w", err))
	}
	sf.done, sf.committing = true, true
	if err := sf.f.Commit(); err != nil {
		return classifyIO(fmt.Errorf("failed to commit spool file: %w", err))
	}
	return nil
}

// commitLater finishes the file. One the store keeps in memory until its
// commit (DBSpool, a small file) is then committed by commitTx, in the
// transaction that references it: sealed bytes, as durable as that
// transaction. Any other is committed now.
func (sf *spoolFile) commitLater() error {
	st, ok := sf.f.(stagedWriter)
	if !ok {
		return sf.Commit()
	}
	if err := sf.w.Close(); err != nil {
		sf.Abort()
		return classifyIO(fmt.Errorf("failed to finish spool file: %w", err))
	}
	sf.done = true
	if data, ok := st.stage(); ok {
		sf.staged = data
		return nil
	}
	sf.committing = true
	if err := sf.f.Commit(); err != nil {
		return classifyIO(fmt.Errorf("failed to commit spool file: %w", err))
	}
	return nil
}

// commitTx writes a file staged by commitLater in tx (nothing for any
// other, or a nil sf).
func (sf *spoolFile) commitTx(ctx context.Context, tx *database.Tx) error {
	if sf == nil || sf.staged == nil {
		return nil
	}
	return sf.f.(stagedWriter).insert(ctx, tx, sf.staged)
}

// rekeyStaged re-encrypts a staged file from the queue key of epoch from
// to that of epoch to, in memory.
func (sf *spoolFile) rekeyStaged(from, to *crypto.Epoch) error {
	var buf bytes.Buffer
	old := crypto.NewKeyringOf([]*crypto.Epoch{from}, nil)
	if err := old.RewrapSpool(&buf, bytes.NewReader(sf.staged), to); err != nil {
		return err
	}
	sf.staged = buf.Bytes()
	return nil
}

func (sf *spoolFile) Abort() {
	if sf.done {
		return
	}
	sf.done = true
	sf.f.Abort()
}

// open returns the plaintext of a committed spool file.
func (s *spool) open(ctx context.Context, name string) (io.ReadCloser, error) {
	src, err := openSeeker(ctx, s.st, name)
	if err != nil {
		return nil, fmt.Errorf("failed to open spool file: %w", err)
	}
	r, err := s.keys.SpoolReader(src)
	if err != nil {
		src.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{r, src}, nil
}

// rekey re-encrypts a committed spool file from the queue key of epoch
// from to that of epoch to, durably, under the same name.
func (s *spool) rekey(ctx context.Context, name string, from, to *crypto.Epoch) error {
	src, err := openSeeker(ctx, s.st, name)
	if err != nil {
		return fmt.Errorf("failed to open spool file: %w", err)
	}
	defer src.Close()
	old := crypto.NewKeyringOf([]*crypto.Epoch{from}, nil)
	return classifyIO(s.st.Replace(ctx, name, func(w io.Writer) error {
		return old.RewrapSpool(w, src, to)
	}))
}

func (s *spool) remove(name string) error {
	return s.st.Remove(context.Background(), name)
}

// txDeleter is a SpoolStore that keeps files in the database (DBSpool)
// and can delete one in a caller's transaction.
type txDeleter interface {
	// deleteTx deletes the file name in tx, reporting whether it was
	// there; a file the store keeps elsewhere is not touched.
	deleteTx(ctx context.Context, tx *database.Tx, name string) (bool, error)
}

// deleteRowTx deletes the spool file name in tx when the store keeps it in
// the database, reporting whether it did; a file kept elsewhere is left
// for remove after the commit.
func (s *spool) deleteRowTx(ctx context.Context, tx *database.Tx, name string) (bool, error) {
	st, ok := s.st.(txDeleter)
	if !ok {
		return false, nil
	}
	return st.deleteTx(ctx, tx, name)
}

// SpoolRemover returns a function that removes one spool file of st by
// name — what destruction calls once no pending delivery needs a file. It
// refuses a name that is not a spool file's (a path, or another suffix).
func SpoolRemover(st SpoolStore) func(name string) error {
	return func(name string) error { return st.Remove(context.Background(), name) }
}

// checkSpoolName refuses a name that is not a spool file's.
func checkSpoolName(name string) error {
	if name == "" || strings.ContainsAny(name, `/\`) || !strings.HasSuffix(name, ".age") || !storage.ValidKey(name) {
		return fmt.Errorf("refusing spool file name %q", name)
	}
	return nil
}

// spoolGraceLocal is how old a spool file of a directory only this
// instance writes must be before the collection at start may remove it
// unreferenced (the one instance is starting: nothing is on its way to a
// commit, but the clock may be a little off).
const spoolGraceLocal = time.Minute

// collectGarbage removes the spool files that no pending delivery
// references and that are older than grace: left over from a crash
// between the last delivery and the removal, or by a message that never
// committed (its sender was never told 250). A younger file may belong to
// a message being committed right now — by another instance, when the
// store is shared.
func (s *spool) collectGarbage(ctx context.Context, db *database.DB, grace time.Duration, now time.Time) (int, error) {
	type file struct {
		name    string
		written time.Time
	}
	var old []file
	cutoff := now.Add(-grace)
	if err := s.st.List(ctx, func(name string, written time.Time) error {
		if written.Before(cutoff) {
			old = append(old, file{name, written})
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("failed to read spool: %w", err)
	}
	if len(old) == 0 {
		return 0, nil
	}
	// Read after listing: a file listed as old whose message committed
	// meanwhile is referenced here.
	live, err := outbox.PendingSpools(ctx, db.Read())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range old {
		if live[f.name] {
			continue
		}
		if err := s.st.Remove(ctx, f.name); err != nil {
			return n, fmt.Errorf("failed to remove spool file: %w", err)
		}
		n++
	}
	return n, nil
}

// SweepSpool removes the spool files of messages that never committed
// and of deliveries whose clean-up a crash interrupted, once they are
// older than grace (the orphan sweep of the scheduler; on a shared store
// grace must exceed the longest time between a spool file's upload and
// its message's commit).
func (g *Gateway) SweepSpool(ctx context.Context, grace time.Duration) error {
	n, err := g.spool.collectGarbage(ctx, g.DB, grace, g.Now())
	if n > 0 {
		g.Log.Info("orphan spool files removed", "count", n)
	}
	return err
}

// seekCloser is what crypto.Keyring.SpoolReader reads: it may have to
// read a spool file again from its start.
type seekCloser interface {
	io.ReadSeeker
	io.Closer
}

// openSeeker opens name so that it can be read again from its start: a
// file as it is, an object by fetching it anew.
func openSeeker(ctx context.Context, st SpoolStore, name string) (seekCloser, error) {
	rc, err := st.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	if sc, ok := rc.(seekCloser); ok {
		return sc, nil
	}
	return &reopener{ctx: ctx, st: st, name: name, rc: rc}, nil
}

// reopener reads a spool file whose reader cannot seek; a seek to its
// start opens it again.
type reopener struct {
	ctx  context.Context
	st   SpoolStore
	name string
	rc   io.ReadCloser
}

func (r *reopener) Read(p []byte) (int, error) { return r.rc.Read(p) }

func (r *reopener) Seek(offset int64, whence int) (int64, error) {
	if offset != 0 || whence != io.SeekStart {
		return 0, errors.New("spool: a spool object can only be read again from its start")
	}
	rc, err := r.st.Open(r.ctx, r.name)
	if err != nil {
		return 0, err
	}
	r.rc.Close()
	r.rc = rc
	return 0, nil
}

func (r *reopener) Close() error { return r.rc.Close() }

// DirSpool keeps spool files in dir (<data_dir>/spool) on this machine's
// disk: each is written under dir/tmp, fsynced, renamed into dir and the
// directory fsynced. Only this instance reads them: the spool of SQLite.
type DirSpool struct {
	dir string
}

// NewDirSpool returns the spool directory dir; the gateway makes it at
// start.
func NewDirSpool(dir string) *DirSpool { return &DirSpool{dir: dir} }

// Shared implements SpoolStore: no other instance reads this directory.
func (d *DirSpool) Shared() bool { return false }

// Create implements SpoolStore.
func (d *DirSpool) Create(_ context.Context, name string) (SpoolWriter, error) {
	if err := checkSpoolName(name); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(d.dir, "tmp", name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &dirFile{f: f, final: filepath.Join(d.dir, name), dir: d.dir}, nil
}

type dirFile struct {
	f     *os.File
	final string
	dir   string
	done  bool
}

func (f *dirFile) Write(p []byte) (int, error) { return f.f.Write(p) }

func (f *dirFile) Commit() error {
	if err := f.f.Sync(); err != nil {
		f.Abort()
		return fmt.Errorf("failed to sync spool file: %w", err)
	}
	if err := f.f.Close(); err != nil {
		f.Abort()
		return fmt.Errorf("failed to close spool file: %w", err)
	}
	f.done = true
	if err := os.Rename(f.f.Name(), f.final); err != nil {
		os.Remove(f.f.Name())
		return fmt.Errorf("failed to rename spool file: %w", err)
	}
	return atomicfile.SyncDir(f.dir)
}

func (f *dirFile) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.f.Close()
	os.Remove(f.f.Name())
}

// Open implements SpoolStore.
func (d *DirSpool) Open(_ context.Context, name string) (io.ReadCloser, error) {
	if err := checkSpoolName(name); err != nil {
		return nil, err
	}
	return os.Open(filepath.Join(d.dir, name))
}

// Replace implements SpoolStore.
func (d *DirSpool) Replace(_ context.Context, name string, write func(io.Writer) error) error {
	if err := checkSpoolName(name); err != nil {
		return err
	}
	return atomicfile.WriteFunc(filepath.Join(d.dir, name), 0o600, write)
}

// Remove implements SpoolStore.
func (d *DirSpool) Remove(_ context.Context, name string) error {
	if err := checkSpoolName(name); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(d.dir, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("failed to remove spool file: %w", err)
	}
	return nil
}

// List implements SpoolStore.
func (d *DirSpool) List(_ context.Context, fn func(name string, written time.Time) error) error {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || checkSpoolName(e.Name()) != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if err := fn(e.Name(), info.ModTime()); err != nil {
			return err
		}
	}
	return nil
}

// prepare makes the directory and removes its temporary files: at the
// gateway's start they belong to sessions that died before their commit
// (their senders were never told 250).
func (d *DirSpool) prepare() error {
	tmp := filepath.Join(d.dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fmt.Errorf("failed to create spool directory: %w", err)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("failed to read spool: %w", err)
	}
	for _, e := range entries {
		os.Remove(filepath.Join(tmp, e.Name()))
	}
	return nil
}

// SpoolPrefix is the prefix of the spool's objects in a shared object
// store (BucketSpool).
const SpoolPrefix = "spool/"

// BucketSpool keeps spool files as objects of a store shared by the
// instances of a fleet (S3, with PostgreSQL), under SpoolPrefix: a file is
// uploaded while it is written and committed when the store acknowledges
// the upload (storage.Store.Put), so any instance can deliver a message
// that another accepted.
type BucketSpool struct {
	Store storage.Store
}

// Shared implements SpoolStore: every instance of the fleet uses the
// bucket.
func (b BucketSpool) Shared() bool { return true }

// Create implements SpoolStore: the object is uploaded as it is written;
// Commit waits for the store's acknowledgement; Abort makes the upload
// fail, which leaves no object (the storage.Store contract).
func (b BucketSpool) Create(ctx context.Context, name string) (SpoolWriter, error) {
	if err := checkSpoolName(name); err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	f := &bucketFile{pw: pw, result: make(chan error, 1)}
	go func() {
		_, err := b.Store.Put(ctx, SpoolPrefix+name, pr)
		if err != nil {
			pr.CloseWithError(err) // a writer still writing learns why
		} else {
			pr.Close()
		}
		f.result <- err
	}()
	return f, nil
}

// errSpoolAborted fails the upload of an aborted spool file.
var errSpoolAborted = errors.New("spool file aborted")

type bucketFile struct {
	pw     *io.PipeWriter
	result chan error
	done   bool
}

func (f *bucketFile) Write(p []byte) (int, error) { return f.pw.Write(p) }

func (f *bucketFile) Commit() error {
	f.done = true
	f.pw.Close()
	if err := <-f.result; err != nil {
		return fmt.Errorf("failed to store spool file: %w", err)
	}
	return nil
}

func (f *bucketFile) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.pw.CloseWithError(errSpoolAborted)
	<-f.result
}

// Open implements SpoolStore.
func (b BucketSpool) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkSpoolName(name); err != nil {
		return nil, err
	}
	rc, _, err := b.Store.Get(ctx, SpoolPrefix+name)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("spool file %s: %w (%w)", name, fs.ErrNotExist, err)
	}
	return rc, err
}

// Replace implements SpoolStore: the new object replaces the old when the
// store acknowledges it.
func (b BucketSpool) Replace(ctx context.Context, name string, write func(io.Writer) error) error {
	f, err := b.Create(ctx, name)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// Remove implements SpoolStore.
func (b BucketSpool) Remove(ctx context.Context, name string) error {
	if err := checkSpoolName(name); err != nil {
		return err
	}
	if err := b.Store.Delete(ctx, SpoolPrefix+name); err != nil {
		return fmt.Errorf("failed to remove spool file: %w", err)
	}
	return nil
}

// List implements SpoolStore. A store that cannot list lists nothing.
func (b BucketSpool) List(ctx context.Context, fn func(name string, written time.Time) error) error {
	l, ok := b.Store.(storage.Lister)
	if !ok {
		return nil
	}
	return l.List(ctx, SpoolPrefix, func(info storage.Info) error {
		name := strings.TrimPrefix(info.Key, SpoolPrefix)
		if checkSpoolName(name) != nil {
			return nil
		}
		return fn(name, info.ModTime)
	})
}

// classifyIO marks disk-full and I/O errors as transient (a store's
// outage is: storage.ErrUnavailable, errors.go).
func classifyIO(err error) error {
	if err == nil {
		return nil
	}
	for _, e := range []error{syscall.ENOSPC, syscall.EDQUOT, syscall.EIO, syscall.EROFS, syscall.EMFILE, syscall.ENFILE} {
		if errors.Is(err, e) {
			return temporary(err)
		}
	}
	return err
}

// CopySpool copies the spool files that pending deliveries recorded in db
// need from one store to another, as they are (sealed with the queue key,
// which the same master key opens on the other side), and reads each copy
// back to compare it: `sealgate migrate` moves <data_dir>/spool into the
// bucket this way, so that mail queued before the migration is delivered
// after it. A file already in to with the same bytes is left as it is,
// so running it again copies only what a stopped run had not. A needed
// file missing from from is an error. It returns how many files are in
// to and how many of them it copied.
func CopySpool(ctx context.Context, db *database.DB, from, to SpoolStore) (present, copied int, err error) {
	live, err := outbox.PendingSpools(ctx, db.Read())
	if err != nil {
		return 0, 0, err
	}
	names := make([]string, 0, len(live))
	for name := range live {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		want, err := spoolSum(ctx, from, name)
		if err != nil {
			return present, copied, err
		}
		if got, err := spoolSum(ctx, to, name); err == nil && got == want {
			present++
			continue
		}
		if err := copySpoolFile(ctx, from, to, name); err != nil {
			return present, copied, err
		}
		if got, err := spoolSum(ctx, to, name); err != nil || got != want {
			return present, copied, fmt.Errorf("the copy of spool file %s differs from the original (%v)", name, err)
		}
		present++
		copied++
	}
	return present, copied, nil
}

// copySpoolFile copies name from one store to another.
func copySpoolFile(ctx context.Context, from, to SpoolStore, name string) error {
	rc, err := from.Open(ctx, name)
	if err != nil {
		return fmt.Errorf("failed to open spool file %s: %w", name, err)
	}
	defer rc.Close()
	if err := to.Replace(ctx, name, func(w io.Writer) error {
		_, err := io.Copy(w, rc)
		return err
	}); err != nil {
		return fmt.Errorf("failed to copy spool file %s: %w", name, err)
	}
	return nil
}

// spoolSum returns the SHA-256 of the spool file name of st.
func spoolSum(ctx context.Context, st SpoolStore, name string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	rc, err := st.Open(ctx, name)
	if err != nil {
		return sum, fmt.Errorf("failed to read spool file %s: %w", name, err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return sum, fmt.Errorf("failed to read spool file %s: %w", name, err)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
