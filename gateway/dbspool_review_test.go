package gateway

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"testing"
)

// failingRemove is a SpoolStore whose Remove fails while fail is set.
// With after set, the removal takes effect before the error.
type failingRemove struct {
	SpoolStore
	fail, after bool
}

func (f *failingRemove) Remove(ctx context.Context, name string) error {
	if f.fail {
		if f.after {
			f.SpoolStore.Remove(ctx, name)
		}
		return errors.New("remove refused (test)")
	}
	return f.SpoolStore.Remove(ctx, name)
}

// TestDBSpoolReplaceFailureLeavesOnePlace: a Replace that moves a file
// from Next into the database (large to small) and fails to remove the
// old file from Next returns its error; the name must then be in one
// place only, so that the Remove after the last delivery removes it. It
// was left in both (the new row, the old file): Remove deleted the row,
// and the old file stayed behind, still readable under the removed name.
func TestDBSpoolReplaceFailureLeavesOnePlace(t *testing.T) {
	ctx := context.Background()
	next := &failingRemove{SpoolStore: NewDirSpool(filepath.Join(t.TempDir(), "spool"))}
	if err := next.SpoolStore.(*DirSpool).prepare(); err != nil {
		t.Fatal(err)
	}
	s := &DBSpool{DB: newSpoolDB(t), Next: next, Max: 1000}
	const name = "m1.skel.age"
	f, err := s.Create(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 5000)) // over Max: a file in Next
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	next.fail = true
	if err := s.Replace(ctx, name, func(w io.Writer) error { _, err := w.Write(make([]byte, 10)); return err }); err == nil {
		t.Fatal("Replace succeeded although the old file could not be removed")
	}
	next.fail = false
	if err := s.Remove(ctx, name); err != nil {
		t.Fatal(err)
	}
	if rc, err := s.Open(ctx, name); !errors.Is(err, fs.ErrNotExist) {
		n := -1
		if err == nil {
			b, _ := io.ReadAll(rc)
			rc.Close()
			n = len(b)
		}
		t.Fatalf("after Remove the name still opens (%d bytes, error %v)", n, err)
	}
	if names := spoolNames(t, s); len(names) != 0 {
		t.Fatalf("spool files left after Remove: %v", names)
	}
}

// TestDBSpoolReplaceKeepsTheOnlyCopy: when the removal of the old file
// from Next fails after it took effect, the new row is the only copy and
// stays.
func TestDBSpoolReplaceKeepsTheOnlyCopy(t *testing.T) {
	ctx := context.Background()
	next := &failingRemove{SpoolStore: NewDirSpool(filepath.Join(t.TempDir(), "spool"))}
	if err := next.SpoolStore.(*DirSpool).prepare(); err != nil {
		t.Fatal(err)
	}
	s := &DBSpool{DB: newSpoolDB(t), Next: next, Max: 1000}
	const name = "m2.skel.age"
	f, err := s.Create(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 5000))
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	next.fail, next.after = true, true
	s.Replace(ctx, name, func(w io.Writer) error { _, err := w.Write(make([]byte, 10)); return err })
	rc, err := s.Open(ctx, name)
	if err != nil {
		t.Fatalf("the file is gone: %v", err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if len(b) != 10 {
		t.Fatalf("%d bytes, want the new 10", len(b))
	}
}
