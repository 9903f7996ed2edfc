// Package atomicfile writes files so that a crash leaves either the old
// content or the new one, never a mix and never a half-written file: the
// data goes to a temporary file in the same directory, which is fsynced,
// renamed over the target (or linked, for Create), and then the directory
// is fsynced so that the rename itself survives a power cut.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write replaces name with data (mode perm), atomically and durably.
func Write(name string, data []byte, perm os.FileMode) error {
	return WriteFunc(name, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc replaces name with what fill writes (mode perm), atomically
// and durably. If fill fails, name is left as it was.
func WriteFunc(name string, perm os.FileMode, fill func(w io.Writer) error) error {
	tmp, err := temp(name, perm, fill)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("failed to write %s: %w", name, err)
	}
	return SyncDir(filepath.Dir(name))
}

// Create writes name with data (mode perm) only if no file of that name
// exists: it returns an error satisfying errors.Is(err, os.ErrExist)
// otherwise, and never replaces anything. It is atomic and durable.
func Create(name string, data []byte, perm os.FileMode) error {
	tmp, err := temp(name, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, name); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("failed to create %s: %w", name, os.ErrExist)
		}
		return fmt.Errorf("failed to create %s: %w", name, err)
	}
	return SyncDir(filepath.Dir(name))
}

// temp writes a synced temporary file next to name and returns its path.
func temp(name string, perm os.FileMode, fill func(w io.Writer) error) (string, error) {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("failed to write %s: %w", name, err)
	}
	err = f.Chmod(perm)
	if err == nil {
		err = fill(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("failed to write %s: %w", name, err)
	}
	return f.Name(), nil
}

// SyncDir fsyncs a directory, making the creation, renaming or removal of
// its entries durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("failed to open directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("failed to sync directory %s: %w", dir, err)
	}
	return nil
}
