package servelock

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSharedExcludesExclusive: while serve's shared lock is held, migrate's
// exclusive lock is refused and another serve's shared lock granted; once
// released, the exclusive lock is granted and then refuses serve.
func TestSharedExcludesExclusive(t *testing.T) {
	dir := t.TempDir()
	a, err := Shared(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Shared(dir)
	if err != nil {
		t.Fatalf("second serve: %v", err)
	}
	if _, err := Exclusive(dir); !errors.Is(err, ErrBusy) {
		t.Fatalf("exclusive while serving: %v, want ErrBusy", err)
	}
	a.Release()
	if _, err := Exclusive(dir); !errors.Is(err, ErrBusy) {
		t.Fatalf("exclusive while one serve is left: %v, want ErrBusy", err)
	}
	b.Release()
	x, err := Exclusive(dir)
	if err != nil {
		t.Fatalf("exclusive once serve is gone: %v", err)
	}
	if _, err := Shared(dir); !errors.Is(err, ErrBusy) {
		t.Fatalf("serve during a migration: %v, want ErrBusy", err)
	}
	x.Release()
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Fatal(err)
	}
}

// TestHeldByAnotherProcess: the lock of another process counts (flock
// is per open file, so this is what serve and migrate see), and its end
// frees the lock.
func TestHeldByAnotherProcess(t *testing.T) {
	flockBin, err := exec.LookPath("flock")
	if err != nil {
		if os.Getenv("SEALGATE_REQUIRE_TOOLS") != "" {
			t.Fatal("flock(1) not installed (util-linux)")
		}
		t.Skip("flock(1) not installed")
	}
	dir := t.TempDir()
	cmd := exec.Command(flockBin, "--shared", filepath.Join(dir, FileName), "sh", "-c", "echo held; read x || true")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil || !strings.HasPrefix(string(buf), "held") {
		t.Fatalf("flock(1) did not start: %q %v", buf, err)
	}
	if _, err := Exclusive(dir); !errors.Is(err, ErrBusy) {
		t.Fatalf("exclusive while another process holds it shared: %v", err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	l, err := Exclusive(dir)
	if err != nil {
		t.Fatalf("exclusive after the other process ended: %v", err)
	}
	l.Release()
}
