package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/internal/atomicfile"
	"github.com/sealgate/sealgate/store"
)

// spool keeps the bodies of queued mail: for each accepted message, the
// original (for internal recipients) and the skeleton (for external ones).
// Every spool file is age-encrypted to the master key as it is written, so
// no plaintext attachment ever reaches the disk. Files are written under a
// temporary name, fsynced, renamed and the directory fsynced before the
// database commit that references them.
type spool struct {
	dir  string
	keys *crypto.Keyring
}

func openSpool(dir string, keys *crypto.Keyring) (*spool, error) {
	for _, d := range []string{dir, filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("failed to create spool directory: %w", err)
		}
	}
	return &spool{dir: dir, keys: keys}, nil
}

// spoolFile is a spool file being written. Write encrypts; Commit makes it
// durable under its final name; Abort removes it.
type spoolFile struct {
	name string
	f    *os.File
	w    io.WriteCloser
	done bool
	s    *spool
}

// create starts a spool file sealed with the queue key of epoch ep.
func (s *spool) create(name string, ep *crypto.Epoch) (*spoolFile, error) {
	f, err := os.OpenFile(filepath.Join(s.dir, "tmp", name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, classifyIO(fmt.Errorf("failed to create spool file: %w", err))
	}
	w, err := ep.SpoolWriter(f)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &spoolFile{name: name, f: f, w: w, s: s}, nil
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
	if err := sf.f.Sync(); err != nil {
		sf.Abort()
		return classifyIO(fmt.Errorf("failed to sync spool file: %w", err))
	}
	if err := sf.f.Close(); err != nil {
		sf.Abort()
		return classifyIO(fmt.Errorf("failed to close spool file: %w", err))
	}
	if err := os.Rename(sf.f.Name(), filepath.Join(sf.s.dir, sf.name)); err != nil {
		os.Remove(sf.f.Name())
		return classifyIO(fmt.Errorf("failed to commit spool file: %w", err))
	}
	sf.done = true
	if err := syncDir(sf.s.dir); err != nil {
		return classifyIO(err)
	}
	return nil
}

func (sf *spoolFile) Abort() {
	if sf.done {
		return
	}
	sf.done = true
	sf.f.Close()
	os.Remove(sf.f.Name())
}

func (s *spool) open(name string) (io.ReadCloser, error) {
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		return nil, fmt.Errorf("failed to open spool file: %w", err)
	}
	r, err := s.keys.SpoolReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{r, f}, nil
}

// rekey re-encrypts a committed spool file from the queue key of epoch
// from to that of epoch to, durably, under the same name.
func (s *spool) rekey(name string, from, to *crypto.Epoch) error {
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		return fmt.Errorf("failed to open spool file: %w", err)
	}
	defer f.Close()
	old := crypto.NewKeyringOf([]*crypto.Epoch{from}, nil)
	return classifyIO(atomicfile.WriteFunc(filepath.Join(s.dir, name), 0o600, func(w io.Writer) error {
		return old.RewrapSpool(w, f, to)
	}))
}

func (s *spool) remove(name string) error {
	err := os.Remove(filepath.Join(s.dir, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("failed to remove spool file: %w", err)
	}
	return nil
}

// collectGarbage runs at start: temporary files belong to sessions that
// died before their commit (their senders were never told 250), and spool
// files that no pending delivery references are left over from a crash
// between the last delivery and the removal.
func (s *spool) collectGarbage(ctx context.Context, db *store.DB) error {
	tmp := filepath.Join(s.dir, "tmp")
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("failed to read spool: %w", err)
	}
	for _, e := range entries {
		os.Remove(filepath.Join(tmp, e.Name()))
	}
	entries, err = os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("failed to read spool: %w", err)
	}
	live, err := pendingSpools(ctx, db.Read())
	if err != nil {
		return err
	}
	cutoff := time.Now().Add(-time.Minute)
	for _, e := range entries {
		if e.IsDir() || live[e.Name()] || !strings.HasSuffix(e.Name(), ".age") {
			continue
		}
		if info, err := e.Info(); err == nil && info.ModTime().After(cutoff) {
			continue // may belong to a message being committed right now
		}
		os.Remove(filepath.Join(s.dir, e.Name()))
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("failed to open directory for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("failed to sync directory: %w", err)
	}
	return nil
}

// classifyIO marks disk-full and I/O errors as transient.
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
