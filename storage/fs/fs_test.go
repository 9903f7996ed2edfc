package fs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/storage/fs"
	"github.com/sealgate/sealgate/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := fs.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestConformanceSharedDir runs the suite with a fresh Store per subtest
// over one directory, as several processes sharing a directory would.
func TestConformanceSharedDir(t *testing.T) {
	dir := t.TempDir()
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := fs.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestPermissionsAndLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := fs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Put(ctx, "objects/t1/file.age", strings.NewReader("ciphertext")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{
		{dir, 0o700 | os.ModeDir},
		{filepath.Join(dir, "objects"), 0o700 | os.ModeDir},
		{filepath.Join(dir, "tmp"), 0o700 | os.ModeDir},
		{filepath.Join(dir, "objects", "objects"), 0o700 | os.ModeDir},
		{filepath.Join(dir, "objects", "objects", "t1"), 0o700 | os.ModeDir},
		{filepath.Join(dir, "objects", "objects", "t1", "file.age"), 0o600},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.mode {
			t.Errorf("%s has mode %v, want %v", c.path, fi.Mode(), c.mode)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("tmp/ holds %d entries after Put, want 0", len(entries))
	}
	// Deleting the only object removes the directories it emptied.
	if err := s.Delete(ctx, "objects/t1/file.age"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "objects", "objects")); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("emptied directory still there after Delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "objects")); err != nil {
		t.Errorf("objects/ removed by Delete: %v", err)
	}
}

func TestOpenRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	if _, err := fs.Open(dir); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "tmp", "put-stale")
	fresh := filepath.Join(dir, "tmp", "put-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-fs.StaleTempAge - time.Minute)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("stale temporary file survived Open: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary file (maybe another process's Put) removed by Open: %v", err)
	}
}

func TestFileDirectoryConflict(t *testing.T) {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Put(ctx, "a/b", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	_, err = s.Put(ctx, "a", strings.NewReader("y"))
	if err == nil || errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Put over a directory of keys = %v, want a permanent error", err)
	}
	if _, err := s.Put(ctx, "a/b/c", strings.NewReader("z")); err == nil || errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Put below an object = %v, want a permanent error", err)
	}
	rc, _, err := s.Get(ctx, "a/b")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "x" {
		t.Fatalf("a/b = %q after refused Puts, want %q", b, "x")
	}
}

// TestDiskFull mounts a 2 MiB tmpfs (needs root on Linux) and checks that
// running out of space is reported as storage.ErrUnavailable, leaves no
// temporary file and that the store works again once space is freed.
func TestDiskFull(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("needs root on Linux to mount a small tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	s, err := fs.Open(mnt)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = s.Put(ctx, "big/obj", bytes.NewReader(make([]byte, 4<<20)))
	if !errors.Is(err, storage.ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put on a full disk = %v, want ErrUnavailable wrapping ENOSPC", err)
	}
	t.Logf("disk full error: %v", err)
	if _, err := s.Stat(ctx, "big/obj"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat after failed Put = %v, want ErrNotFound", err)
	}
	entries, _ := os.ReadDir(filepath.Join(mnt, "tmp"))
	if len(entries) != 0 {
		t.Errorf("tmp/ holds %d entries after a failed Put, want 0", len(entries))
	}
	if _, err := s.Put(ctx, "small/obj", bytes.NewReader(make([]byte, 512<<10))); err != nil {
		t.Fatalf("Put after space was freed: %v", err)
	}
}

func TestRangeReaderIsIndependentOfCtx(t *testing.T) {
	s, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(context.Background(), "k", strings.NewReader("0123456789")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := s.GetRange(ctx, "k", 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "234" {
		t.Fatalf("GetRange = %q, %v; want %q", b, err, "234")
	}
}

// TestDeleteMany: every key given is gone (several per directory, nested
// and missing keys alike), the directories it emptied are removed up to
// objects/, a neighbour and its directory stay, a key that is a directory
// (a prefix of other keys) is left alone as Delete leaves it, and an
// invalid key is reported.
func TestDeleteMany(t *testing.T) {
	dir := t.TempDir()
	s, err := fs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var keys []string
	for i := range 200 {
		keys = append(keys, fmt.Sprintf("sealed/t%03d/%d.age", i/3, i%3))
	}
	keys = append(keys, "sealed/deep/a/b/c.age")
	for _, k := range append(keys, "sealed/t000/keep.age", "sealed/neighbour/0.age") {
		if _, err := s.Put(ctx, k, strings.NewReader(k)); err != nil {
			t.Fatal(err)
		}
	}
	failed := s.DeleteMany(ctx, append(keys, "sealed/missing/0.age", "sealed/deep", "../bad"))
	if len(failed) != 1 || failed["../bad"] == nil {
		t.Fatalf("failed = %v, want only the invalid key", failed)
	}
	for _, k := range keys {
		if _, err := s.Stat(ctx, k); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: Stat after DeleteMany: %v", k, err)
		}
	}
	var left []string
	if err := s.List(ctx, "", func(i storage.Info) error { left = append(left, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"sealed/neighbour/0.age", "sealed/t000/keep.age"}; !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "objects", "sealed"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"neighbour", "t000"}; !slices.Equal(names, want) {
		t.Fatalf("directories under sealed/: %v, want %v (the emptied ones removed)", names, want)
	}
	if failed := s.DeleteMany(ctx, keys); len(failed) != 0 {
		t.Fatalf("deleting again: %v", failed)
	}
}
