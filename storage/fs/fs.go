// Package fs is the file-system implementation of storage.Store, the
// embedded default: objects are files in a local directory.
//
// # Layout
//
//	<dir>/objects/<key>   one regular file per object (0600), directories 0700
//	<dir>/tmp/put-*       files being written by Put
//
// Keys map to paths segment by segment ("a/b.age" → objects/a/b.age);
// storage.ValidKey guarantees that no key can escape objects/. Because a
// path cannot be both a file and a directory, a key that is the prefix
// directory of another key ("a" and "a/b") cannot be stored; such a Put
// fails with a permanent error.
//
// # Durability
//
// Put writes to a temporary file in <dir>/tmp, fsyncs it, renames it into
// place (an atomic replace on POSIX file systems), and fsyncs the target
// directory; directories it creates are made durable by fsyncing their
// parents. When Put returns nil the object survives a crash or power loss;
// when it returns an error, or the process dies before that, the old state
// is intact and at most a temporary file remains, which the next Open
// removes once it is older than StaleTempAge. Delete removes the file and
// fsyncs its directory, then removes directories it emptied; DeleteMany
// does the same for many keys with one fsync per directory.
//
// Disk full, quota, I/O and read-only file system errors wrap
// storage.ErrUnavailable: for mail they are transient (a 4xx reply), and an
// operator can fix them.
//
// Temporary files are created with mode 0600 in a directory of mode 0700;
// the store holds only age ciphertext, so this is defence in depth, not the
// confidentiality boundary.
package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealgate/sealgate/internal/atomicfile"
	"github.com/sealgate/sealgate/storage"
)

// StaleTempAge is how old (by modification time) a temporary file must be
// for Open to remove it. A live Put rewrites its temporary file as data
// arrives, so only a writer stalled for longer than this (longer than any
// SMTP data timeout) could lose its file to another process opening the same
// directory; that Put then fails and the mail is retried.
const StaleTempAge = 15 * time.Minute

// copyBufSize is the size of the buffer each Put copies through. It is the
// whole of Put's memory use apart from small bookkeeping.
const copyBufSize = 256 << 10

// Store is a storage.Store in a local directory. It implements
// storage.Lister, storage.RangeGetter and storage.BulkDeleter. It is safe
// for concurrent use, also by several processes sharing the directory. It
// holds no open files between calls and needs no Close.
type Store struct {
	objects string    // <dir>/objects, absolute
	tmp     string    // <dir>/tmp, absolute
	bufs    sync.Pool // *[]byte of copyBufSize, recycled between Puts
}

var (
	_ storage.Store            = (*Store)(nil)
	_ storage.Lister           = (*Store)(nil)
	_ storage.RangeGetter      = (*Store)(nil)
	_ storage.CoverageReporter = (*Store)(nil)
	_ storage.BulkDeleter      = (*Store)(nil)
)

// DeleteCoverage implements storage.CoverageReporter: a file system keeps
// no versions; Delete unlinks the one file.
func (s *Store) DeleteCoverage() string { return storage.VersionsNone }

// Open opens (creating if needed) the store in dir and removes temporary
// files older than StaleTempAge left there by an interrupted Put. It
// rebuilds nothing: the directory tree is the state.
func Open(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("failed to open object store %s: %w", dir, err)
	}
	s := &Store{objects: filepath.Join(abs, "objects"), tmp: filepath.Join(abs, "tmp")}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("failed to open object store %s: %w", dir, classify(err))
	}
	for _, d := range []string{abs, s.objects, s.tmp} {
		if err := mkdirDurable(d); err != nil {
			return nil, fmt.Errorf("failed to open object store %s: %w", dir, err)
		}
	}
	if err := s.removeStaleTemps(time.Now().Add(-StaleTempAge)); err != nil {
		return nil, fmt.Errorf("failed to open object store %s: %w", dir, err)
	}
	return s, nil
}

func (s *Store) removeStaleTemps(before time.Time) error {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return fmt.Errorf("failed to list temporary files: %w", classify(err))
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("failed to inspect temporary file: %w", classify(err))
		}
		if info.ModTime().After(before) || info.IsDir() {
			continue
		}
		if err := os.Remove(filepath.Join(s.tmp, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("failed to remove stale temporary file: %w", classify(err))
		}
	}
	return nil
}

func (s *Store) path(key string) string {
	return filepath.Join(s.objects, filepath.FromSlash(key))
}

// Put implements storage.Store. It copies r through one 256 KiB buffer.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (storage.Info, error) {
	if err := storage.CheckKey(key); err != nil {
		return storage.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.Info{}, fmt.Errorf("failed to put %s: %w", key, err)
	}
	f, err := os.CreateTemp(s.tmp, "put-*") // mode 0600
	if err != nil {
		return storage.Info{}, fmt.Errorf("failed to create temporary file for %s: %w", key, classify(err))
	}
	tmpName := f.Name()
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.Remove(tmpName)
		}
	}()

	buf, _ := s.bufs.Get().(*[]byte)
	if buf == nil {
		b := make([]byte, copyBufSize)
		buf = &b
	}
	n, err := copyCtx(ctx, newWriteback(f), r, *buf)
	s.bufs.Put(buf)
	if err != nil {
		return storage.Info{}, fmt.Errorf("failed to put %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return storage.Info{}, fmt.Errorf("failed to sync %s: %w", key, classify(err))
	}
	fi, err := f.Stat()
	if err != nil {
		return storage.Info{}, fmt.Errorf("failed to stat %s: %w", key, classify(err))
	}
	if err := f.Close(); err != nil {
		return storage.Info{}, fmt.Errorf("failed to close %s: %w", key, classify(err))
	}
	if err := ctx.Err(); err != nil {
		return storage.Info{}, fmt.Errorf("failed to put %s: %w", key, err)
	}

	target := s.path(key)
	dir := filepath.Dir(target)
	// A concurrent Delete may remove a directory it emptied between our
	// MkdirAll and Rename; then the rename fails with ENOENT and we retry.
	for attempt := 0; ; attempt++ {
		if err := s.mkdirAllDurable(dir); err != nil {
			if attempt < 5 && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return storage.Info{}, fmt.Errorf("failed to create directory for %s: %w", key, err)
		}
		err := os.Rename(tmpName, target)
		if err == nil {
			break
		}
		if attempt < 5 && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if st, serr := os.Lstat(target); serr == nil && st.IsDir() {
			return storage.Info{}, fmt.Errorf("failed to store %s: a directory of that name holds other keys", key)
		}
		return storage.Info{}, fmt.Errorf("failed to rename %s into place: %w", key, classify(err))
	}
	committed = true
	// The rename is atomic but not yet durable: fsync the directory that
	// now holds the entry. Only then is the object committed.
	if err := syncDir(dir); err != nil {
		return storage.Info{}, fmt.Errorf("failed to sync directory of %s: %w", key, err)
	}
	return storage.Info{Key: key, Size: n, ModTime: fi.ModTime()}, nil
}

// copyCtx copies r to w, checking ctx before every read. Read errors are
// wrapped as they are; write errors are classified.
func copyCtx(ctx context.Context, w io.Writer, r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		nr, rerr := r.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, fmt.Errorf("failed to write: %w", classify(werr))
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, fmt.Errorf("failed to read object data: %w", rerr)
		}
	}
}

// Get implements storage.Store. The returned reader is an open file; it
// does not depend on ctx.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, storage.Info, error) {
	f, info, err := s.open(ctx, key)
	if err != nil {
		return nil, storage.Info{}, err
	}
	return f, info, nil
}

func (s *Store) open(ctx context.Context, key string) (*os.File, storage.Info, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, storage.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, storage.Info{}, fmt.Errorf("failed to get %s: %w", key, err)
	}
	f, err := os.Open(s.path(key))
	if err != nil {
		return nil, storage.Info{}, fmt.Errorf("failed to get %s: %w", key, notFound(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, storage.Info{}, fmt.Errorf("failed to stat %s: %w", key, classify(err))
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, storage.Info{}, fmt.Errorf("failed to get %s: %w", key, storage.ErrNotFound)
	}
	return f, storage.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// GetRange implements storage.RangeGetter.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	f, info, err := s.open(ctx, key)
	if err != nil {
		return nil, err
	}
	if offset < 0 || offset > info.Size {
		f.Close()
		return nil, fmt.Errorf("failed to get %s: range offset %d outside object of %d bytes", key, offset, info.Size)
	}
	if length < 0 || length > info.Size-offset {
		length = info.Size - offset
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, offset, length), f}, nil
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	if err := storage.CheckKey(key); err != nil {
		return storage.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.Info{}, fmt.Errorf("failed to stat %s: %w", key, err)
	}
	fi, err := os.Lstat(s.path(key))
	if err != nil {
		return storage.Info{}, fmt.Errorf("failed to stat %s: %w", key, notFound(err))
	}
	if !fi.Mode().IsRegular() {
		return storage.Info{}, fmt.Errorf("failed to stat %s: %w", key, storage.ErrNotFound)
	}
	return storage.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete implements storage.Store. It removes the file, fsyncs its
// directory, and then removes the directories it left empty (up to, not
// including, objects/).
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := storage.CheckKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("failed to delete %s: %w", key, err)
	}
	p := s.path(key)
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
			return nil
		}
		return fmt.Errorf("failed to delete %s: %w", key, classify(err))
	}
	if fi.IsDir() {
		return nil // a prefix of other keys, not an object
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to delete %s: %w", key, classify(err))
	}
	dir := filepath.Dir(p)
	if err := syncDir(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a concurrent Delete already removed the directory
		}
		return fmt.Errorf("failed to sync directory of %s: %w", key, err)
	}
	// Best effort: a directory that is not empty, or that a concurrent
	// Put is filling, stays.
	for dir != s.objects && strings.HasPrefix(dir, s.objects+string(filepath.Separator)) {
		if os.Remove(dir) != nil {
			break
		}
		dir = filepath.Dir(dir)
		_ = syncDir(dir)
	}
	return nil
}

// DeleteMany implements storage.BulkDeleter with Delete's durability, in
// fewer fsyncs and with the work spread over deleteWorkers goroutines, one
// directory at a time: its files are unlinked, the directory fsynced once
// (not once per file) and removed if that left it empty; then the parents
// of the removed directories are fsynced once each (not once per removed
// child: ending a contract removed 10,000 transfer directories under
// sealed/ and fsynced sealed/ 10,000 times), and removed in turn when
// empty, level by level.
func (s *Store) DeleteMany(ctx context.Context, keys []string) map[string]error {
	failed := map[string]error{}
	byDir := map[string][]string{}
	for _, k := range keys {
		if err := storage.CheckKey(k); err != nil {
			failed[k] = err
			continue
		}
		d := filepath.Dir(s.path(k))
		byDir[d] = append(byDir[d], k)
	}
	dirs := make([]string, 0, len(byDir))
	for d := range byDir {
		dirs = append(dirs, d)
	}
	var mu sync.Mutex
	fail := func(k string, err error) {
		mu.Lock()
		failed[k] = err
		mu.Unlock()
	}
	parents := map[string]bool{}
	parallel(len(dirs), func(i int) {
		d := dirs[i]
		removed := false
		for _, k := range byDir[d] {
			if err := ctx.Err(); err != nil {
				fail(k, fmt.Errorf("failed to delete %s: %w", k, err))
				continue
			}
			p := s.path(k)
			fi, err := os.Lstat(p)
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errNotDir) {
					fail(k, fmt.Errorf("failed to delete %s: %w", k, classify(err)))
				}
				continue
			}
			if fi.IsDir() {
				continue // a prefix of other keys, not an object
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				fail(k, fmt.Errorf("failed to delete %s: %w", k, classify(err)))
				continue
			}
			removed = true
		}
		if !removed {
			return
		}
		if err := syncDir(d); err != nil {
			if !errors.Is(err, fs.ErrNotExist) { // else a concurrent Delete removed it
				for _, k := range byDir[d] {
					fail(k, fmt.Errorf("failed to sync directory of %s: %w", k, err))
				}
			}
			return
		}
		if s.removeEmpty(d) {
			mu.Lock()
			parents[filepath.Dir(d)] = true
			mu.Unlock()
		}
	})
	// Best effort, as Delete: the parents of removed directories, once
	// each, and upwards while they are left empty.
	for len(parents) > 0 {
		level := make([]string, 0, len(parents))
		for p := range parents {
			level = append(level, p)
		}
		parents = map[string]bool{}
		parallel(len(level), func(i int) {
			_ = syncDir(level[i])
			if s.removeEmpty(level[i]) {
				mu.Lock()
				parents[filepath.Dir(level[i])] = true
				mu.Unlock()
			}
		})
	}
	return failed
}

// removeEmpty removes d, a directory under objects/, if it is empty, and
// reports whether it did.
func (s *Store) removeEmpty(d string) bool {
	if d == s.objects || !strings.HasPrefix(d, s.objects+string(filepath.Separator)) {
		return false
	}
	return os.Remove(d) == nil // else not empty, or a concurrent Put is filling it
}

// deleteWorkers is how many goroutines DeleteMany runs: its calls mostly
// wait for the disk (fsync), which serves several at once.
const deleteWorkers = 16

// parallel calls f(0) … f(n-1) on up to deleteWorkers goroutines.
func parallel(n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, deleteWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// List implements storage.Lister. Keys are listed in lexical order of
// their path segments (which differs from S3's byte order when keys share
// a prefix such as "a/b" and "a-c"). Objects created or deleted during the
// listing may or may not be seen.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	base := s.objects
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		if !storage.ValidKey(prefix[:i]) {
			return nil // no stored key can start with this prefix
		}
		base = s.path(prefix[:i])
	}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
				return nil
			}
			return classify(err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(s.objects, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			if p == base || p == s.objects {
				return nil
			}
			// Descend only where keys may start with prefix.
			dirKey := key + "/"
			if !strings.HasPrefix(dirKey, prefix) && !strings.HasPrefix(prefix, dirKey) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return classify(err)
		}
		return fn(storage.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
	})
	if err != nil {
		return fmt.Errorf("failed to list %q: %w", prefix, err)
	}
	return nil
}

// mkdirAllDurable creates dir and its missing parents below s.objects, each
// with mode 0700, fsyncing the parent of every directory it creates so that
// the new entry survives a crash.
func (s *Store) mkdirAllDurable(dir string) error {
	if dir == s.objects {
		return nil
	}
	rel, err := filepath.Rel(s.objects, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("directory %s is outside the store", dir)
	}
	cur := s.objects
	for _, seg := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, seg)
		if err := mkdirDurable(cur); err != nil {
			return err
		}
	}
	return nil
}

// mkdirDurable creates dir (mode 0700) if it does not exist and, when it
// created it, fsyncs its parent.
func mkdirDurable(dir string) error {
	err := os.Mkdir(dir, 0o700)
	if err == nil {
		return syncDir(filepath.Dir(dir))
	}
	if errors.Is(err, fs.ErrExist) {
		fi, serr := os.Stat(dir)
		if serr == nil && fi.IsDir() {
			return nil
		}
		return fmt.Errorf("failed to create directory %s: %w", dir, err)
	}
	return fmt.Errorf("failed to create directory %s: %w", dir, classify(err))
}

// syncDir fsyncs a directory so that entries created, renamed or removed
// in it are durable.
func syncDir(dir string) error {
	return classify(atomicfile.SyncDir(dir))
}

// notFound maps "no such file" (also ENOTDIR: a path segment is a file) to
// storage.ErrNotFound and classifies anything else.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
		return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
	}
	return classify(err)
}

// classify wraps err with storage.ErrUnavailable when it is a condition an
// operator can fix and a retry may overcome (disk full, quota, I/O error,
// read-only file system, out of file descriptors).
func classify(err error) error {
	if err == nil || errors.Is(err, storage.ErrUnavailable) {
		return err
	}
	if isTransient(err) {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return err
}
