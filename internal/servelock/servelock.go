// Package servelock marks a data directory as in use by `sealgate serve`,
// so that `sealgate migrate` can refuse to copy an installation that is
// still serving (and serve refuses to start while a migration runs).
//
// The mark is an flock(2) on <data_dir>/serve.lock: serve holds it shared
// for as long as it runs (several serve processes may share a data
// directory), migrate takes it exclusive, without waiting. The kernel
// releases it when the holder exits, however it exits: a crashed serve
// leaves no stale mark. The file's content means nothing.
package servelock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// FileName is the lock file in the data directory.
const FileName = "serve.lock"

// ErrBusy is returned (wrapped) when the other side holds the lock.
var ErrBusy = errors.New("servelock: the data directory is in use")

// Lock is a held lock; Release gives it back.
type Lock struct{ f *os.File }

// Shared takes the lock of serve on dir: it fails with ErrBusy while a
// migration holds it exclusive.
func Shared(dir string) (*Lock, error) { return take(dir, false) }

// Exclusive takes the lock of migrate on dir: it fails with ErrBusy while
// a serve process holds it.
func Exclusive(dir string) (*Lock, error) { return take(dir, true) }

func take(dir string, exclusive bool) (*Lock, error) {
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to open the serve lock: %w", err)
	}
	if err := flock(f, exclusive); err != nil {
		f.Close()
		return nil, err
	}
	return &Lock{f: f}, nil
}

// Release gives the lock back. A nil Lock is released at once.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}
