package storage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/storage/fs"
	"github.com/sealgate/sealgate/storage/storagetest"
)

// The decorator keeps the contract: the conformance suite passes through it.
func TestObserveConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := fs.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return storage.Observe(s, func(string) {})
	})
}

// failures counts what Observe reported, per operation.
type failures struct {
	mu sync.Mutex
	n  map[string]int
}

func (f *failures) report(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n = map[string]int{}
	}
	f.n[op]++
}

func (f *failures) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprint(f.n)
}

// fake is a Store whose calls fail with err (nil: succeed) and whose bodies
// fail with bodyErr after one byte.
type fake struct {
	err, bodyErr error
}

func (f *fake) Put(ctx context.Context, key string, r io.Reader) (storage.Info, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return storage.Info{}, fmt.Errorf("failed to read the object: %w", err)
	}
	return storage.Info{Key: key}, f.err
}

func (f *fake) Get(ctx context.Context, key string) (io.ReadCloser, storage.Info, error) {
	if f.err != nil {
		return nil, storage.Info{}, f.err
	}
	return io.NopCloser(io.MultiReader(strings.NewReader("x"), errReader{f.bodyErr})), storage.Info{Key: key}, nil
}

func (f *fake) Stat(ctx context.Context, key string) (storage.Info, error) {
	return storage.Info{}, f.err
}
func (f *fake) Delete(ctx context.Context, key string) error { return f.err }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err == nil {
		return 0, io.EOF
	}
	return 0, e.err
}

type fakeRetainer struct{ *fake }

func (f fakeRetainer) PutLocked(ctx context.Context, key string, r io.Reader, _ time.Time) (storage.Info, error) {
	return f.Put(ctx, key, r)
}

type fakeBulk struct{ *fake }

func (f fakeBulk) DeleteMany(ctx context.Context, keys []string) map[string]error {
	out := map[string]error{}
	if f.err != nil {
		for _, k := range keys {
			out[k] = f.err
		}
	}
	return out
}

type fakeAll struct {
	*fake
	fakeRetainer
	fakeBulk
}

func (f fakeAll) Put(ctx context.Context, key string, r io.Reader) (storage.Info, error) {
	return f.fake.Put(ctx, key, r)
}

func (f fakeAll) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	if f.fake.err != nil {
		return f.fake.err
	}
	return fn(storage.Info{Key: prefix + "a"})
}

func (f fakeAll) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	rc, _, err := f.fake.Get(ctx, key)
	return rc, err
}

// optional lists the optional interfaces s implements.
func optional(s storage.Store) string {
	var out []string
	if _, ok := s.(storage.Lister); ok {
		out = append(out, "Lister")
	}
	if _, ok := s.(storage.RangeGetter); ok {
		out = append(out, "RangeGetter")
	}
	if _, ok := s.(storage.BulkDeleter); ok {
		out = append(out, "BulkDeleter")
	}
	if _, ok := s.(storage.Retainer); ok {
		out = append(out, "Retainer")
	}
	return strings.Join(out, ",")
}

func TestObserveKeepsOptionalInterfaces(t *testing.T) {
	fsStore, err := fs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &fake{}
	for _, s := range []storage.Store{f, fsStore, fakeRetainer{f}, fakeBulk{f}, fakeAll{f, fakeRetainer{f}, fakeBulk{f}}} {
		o := storage.Observe(s, func(string) {})
		if got, want := optional(o), optional(s); got != want {
			t.Errorf("%T: observed implements %q, the store %q", s, got, want)
		}
		if got, want := storage.DeleteCoverage(o), storage.DeleteCoverage(s); got != want {
			t.Errorf("%T: coverage %q, want %q", s, got, want)
		}
	}
}

func TestObserveReportsStoreFailuresOnly(t *testing.T) {
	ctx := context.Background()
	down := fmt.Errorf("%w: connection refused", storage.ErrUnavailable)
	mine := errors.New("the client went away")

	// The store's own failures are reported, once per call.
	var f failures
	all := fakeAll{&fake{err: down}, fakeRetainer{&fake{err: down}}, fakeBulk{&fake{err: down}}}
	o := storage.Observe(all, f.report)
	o.Put(ctx, "k", strings.NewReader("data"))
	o.Get(ctx, "k")
	o.Stat(ctx, "k")
	o.Delete(ctx, "k")
	o.(storage.Lister).List(ctx, "p/", func(storage.Info) error { return nil })
	o.(storage.RangeGetter).GetRange(ctx, "k", 0, 1)
	o.(storage.BulkDeleter).DeleteMany(ctx, []string{"a", "b"})
	o.(storage.Retainer).PutLocked(ctx, "k", strings.NewReader("data"), time.Now())
	if got, want := f.String(), "map[delete:1 delete_many:2 get:1 get_range:1 list:1 put:1 put_locked:1 stat:1]"; got != want {
		t.Errorf("reported %s, want %s", got, want)
	}

	// A body that breaks off is the store's failure, reported once.
	f = failures{}
	o = storage.Observe(&fake{bodyErr: down}, f.report)
	rc, _, err := o.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rc); !errors.Is(err, down) {
		t.Fatalf("body error %v", err)
	}
	rc.Read(make([]byte, 1))
	if got := f.String(); got != "map[get:1]" {
		t.Errorf("broken body: reported %s", got)
	}

	// Not the store's: absence, the caller's reader or callback, a
	// cancelled context.
	f = failures{}
	o = storage.Observe(&fake{err: storage.ErrNotFound}, f.report)
	o.Stat(ctx, "k")
	o.Get(ctx, "k")
	o = storage.Observe(&fake{}, f.report)
	if _, err := o.Put(ctx, "k", io.MultiReader(strings.NewReader("x"), errReader{mine})); !errors.Is(err, mine) {
		t.Fatalf("put with failing reader: %v", err)
	}
	o = storage.Observe(&fake{err: context.Canceled}, f.report)
	o.Delete(ctx, "k")
	o = storage.Observe(fakeAll{&fake{}, fakeRetainer{&fake{}}, fakeBulk{&fake{}}}, f.report)
	if err := o.(storage.Lister).List(ctx, "p/", func(storage.Info) error { return mine }); !errors.Is(err, mine) {
		t.Fatalf("list with failing callback: %v", err)
	}
	if got := f.String(); got != "map[]" {
		t.Errorf("reported %s for failures that are not the store's", got)
	}
}
