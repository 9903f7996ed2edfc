package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesAndCreateRefuses(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "f")
	if err := Create(name, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Create(name, []byte("two"), 0o600); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Create over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(name); string(b) != "one" {
		t.Fatalf("content %q after a refused Create", b)
	}
	if err := Write(name, []byte("three"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(name); string(b) != "three" {
		t.Fatalf("content %q", b)
	}
	if fi, _ := os.Stat(name); fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	// A failing fill leaves the file and no temporary behind.
	boom := errors.New("boom")
	if err := WriteFunc(name, 0o600, func(w io.Writer) error { w.Write([]byte("half")); return boom }); !errors.Is(err, boom) {
		t.Fatalf("WriteFunc: %v", err)
	}
	if b, _ := os.ReadFile(name); string(b) != "three" {
		t.Fatalf("content %q after a failed write", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
}
