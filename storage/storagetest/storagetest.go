// Package storagetest is the conformance suite for storage.Store. Every
// implementation runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Store { return openMyStore(t) })
//	}
//
// The suite checks real bytes (SHA-256 of every object read back), streams
// large objects from a generator so that they never exist as one []byte, and
// checks the failure half of the contract: a Put whose reader fails or whose
// context is cancelled leaves the store as it was.
//
// Every subtest writes under its own random key prefix and deletes what it
// wrote when it ends, so the suite may run against a shared bucket.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/storage"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// Run runs the conformance suite. newStore is called once per subtest and
// must return a ready store; it registers its own cleanup with t.Cleanup.
// Stores may share their backing storage between calls.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newStore) })
	t.Run("Replace", func(t *testing.T) { testReplace(t, newStore) })
	t.Run("Missing", func(t *testing.T) { testMissing(t, newStore) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newStore) })
	t.Run("FailingReader", func(t *testing.T) { testFailingReader(t, newStore) })
	t.Run("Cancelled", func(t *testing.T) { testCancelled(t, newStore) })
	t.Run("InvalidKeys", func(t *testing.T) { testInvalidKeys(t, newStore) })
	t.Run("EdgeKeys", func(t *testing.T) { testEdgeKeys(t, newStore) })
	t.Run("PartialRead", func(t *testing.T) { testPartialRead(t, newStore) })
	t.Run("List", func(t *testing.T) { testList(t, newStore) })
	t.Run("Range", func(t *testing.T) { testRange(t, newStore) })
	t.Run("ConcurrentPuts", func(t *testing.T) { testConcurrentPuts(t, newStore) })
}

// fixture is one subtest's store and key namespace.
type fixture struct {
	t      *testing.T
	s      storage.Store
	prefix string

	mu   sync.Mutex
	keys map[string]bool
}

func newFixture(t *testing.T, newStore func(t *testing.T) storage.Store) *fixture {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, s: newStore(t), prefix: "conformance-" + hex.EncodeToString(b[:]) + "/", keys: map[string]bool{}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for k := range f.keys {
			if err := f.s.Delete(ctx, k); err != nil {
				t.Logf("cleanup: failed to delete %s: %v", k, err)
			}
		}
	})
	return f
}

// key returns a key under the fixture's prefix and remembers it for cleanup.
func (f *fixture) key(name string) string {
	k := f.prefix + name
	f.mu.Lock()
	f.keys[k] = true
	f.mu.Unlock()
	return k
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// source streams n pseudo-random bytes generated from seed, hashing them as
// they go out. It records whether it was read to EOF and whether anyone
// called Close.
type source struct {
	rng    *mrand.ChaCha8
	remain int64
	n      int64
	eof    bool
	closed bool

	// failAt, when >= 0, makes Read return failErr once failAt bytes have
	// been produced.
	failAt  int64
	failErr error
	// onAfter, when set, is called once after afterN bytes were produced.
	afterN  int64
	onAfter func()
}

func newSource(seed uint64, n int64) *source {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return &source{rng: mrand.NewChaCha8(s), remain: n, failAt: -1}
}

// expected returns the SHA-256 of the n bytes that newSource(seed, n)
// produces, computed in chunks.
func expected(seed uint64, n int64) []byte {
	h := sha256.New()
	if _, err := io.Copy(h, newSource(seed, n)); err != nil {
		panic(err)
	}
	return h.Sum(nil)
}

func (s *source) Read(p []byte) (int, error) {
	if s.failAt >= 0 && s.n >= s.failAt {
		return 0, s.failErr
	}
	if s.remain == 0 {
		s.eof = true
		return 0, io.EOF
	}
	if int64(len(p)) > s.remain {
		p = p[:s.remain]
	}
	if s.failAt >= 0 && int64(len(p)) > s.failAt-s.n {
		p = p[:s.failAt-s.n]
	}
	if s.onAfter != nil && int64(len(p)) > s.afterN-s.n && s.n < s.afterN {
		p = p[:s.afterN-s.n]
	}
	_, _ = s.rng.Read(p)
	s.n += int64(len(p))
	s.remain -= int64(len(p))
	if s.onAfter != nil && s.n >= s.afterN {
		f := s.onAfter
		s.onAfter = nil
		f()
	}
	return len(p), nil
}

func (s *source) Close() error {
	s.closed = true
	return nil
}

// readAll reads rc to EOF, closes it and returns the byte count and SHA-256.
func readAll(t *testing.T, rc io.ReadCloser) (int64, []byte) {
	t.Helper()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("failed to read object: %v", err)
	}
	return n, h.Sum(nil)
}

// putSeed stores size pseudo-random bytes from seed under key and checks
// the returned Info and that Put read to EOF without closing the reader.
func (f *fixture) putSeed(ctx context.Context, key string, seed uint64, size int64) storage.Info {
	f.t.Helper()
	src := newSource(seed, size)
	start := time.Now()
	info, err := f.s.Put(ctx, key, src)
	if err != nil {
		f.t.Fatalf("Put(%s, %d bytes): %v", key, size, err)
	}
	f.t.Logf("Put %d bytes in %v", size, time.Since(start).Round(time.Millisecond))
	if !src.eof {
		f.t.Errorf("Put(%s) returned before reading its reader to EOF (read %d of %d bytes)", key, src.n, size)
	}
	if src.closed {
		f.t.Errorf("Put(%s) closed its reader; the caller owns it", key)
	}
	if info.Key != key || info.Size != size {
		f.t.Errorf("Put(%s) returned Info{Key: %q, Size: %d}, want {%q, %d}", key, info.Key, info.Size, key, size)
	}
	return info
}

// checkContent reads key back through Get and Stat and compares it with
// the pseudo-random stream (seed, size).
func (f *fixture) checkContent(ctx context.Context, key string, seed uint64, size int64) {
	f.t.Helper()
	want := expected(seed, size)
	rc, info, err := f.s.Get(ctx, key)
	if err != nil {
		f.t.Fatalf("Get(%s): %v", key, err)
	}
	n, sum := readAll(f.t, rc)
	if n != size || !bytes.Equal(sum, want) {
		f.t.Fatalf("Get(%s) returned %d bytes with sha256 %x, want %d bytes with sha256 %x", key, n, sum, size, want)
	}
	if info.Key != key || info.Size != size {
		f.t.Errorf("Get(%s) Info = {Key: %q, Size: %d}, want {%q, %d}", key, info.Key, info.Size, key, size)
	}
	st, err := f.s.Stat(ctx, key)
	if err != nil {
		f.t.Fatalf("Stat(%s): %v", key, err)
	}
	if st.Key != key || st.Size != size {
		f.t.Errorf("Stat(%s) = {Key: %q, Size: %d}, want {%q, %d}", key, st.Key, st.Size, key, size)
	}
	if st.ModTime.IsZero() || time.Since(st.ModTime) > 24*time.Hour || time.Until(st.ModTime) > time.Hour {
		f.t.Errorf("Stat(%s).ModTime = %v, want about now (%v)", key, st.ModTime, time.Now())
	}
}

// checkAbsent asserts that key does not exist: Stat and Get report
// ErrNotFound, and a Lister lists nothing under the fixture's prefix apart
// from the keys in keep.
func (f *fixture) checkAbsent(ctx context.Context, key string, keep ...string) {
	f.t.Helper()
	if _, err := f.s.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		f.t.Errorf("Stat(%s) after failed or deleted Put = %v, want ErrNotFound", key, err)
	}
	rc, _, err := f.s.Get(ctx, key)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, storage.ErrNotFound) {
		f.t.Errorf("Get(%s) = %v, want ErrNotFound", key, err)
	}
	if l, ok := f.s.(storage.Lister); ok {
		got := list(f.t, ctx, l, f.prefix)
		var stray []string
		for _, k := range got {
			if !contains(keep, k) {
				stray = append(stray, k)
			}
		}
		if len(stray) > 0 {
			f.t.Errorf("List(%s) shows stray keys %v", f.prefix, stray)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func list(t *testing.T, ctx context.Context, l storage.Lister, prefix string) []string {
	t.Helper()
	var keys []string
	err := l.List(ctx, prefix, func(info storage.Info) error {
		keys = append(keys, info.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	sort.Strings(keys)
	return keys
}

func testRoundTrip(t *testing.T, newStore func(t *testing.T) storage.Store) {
	f := newFixture(t, newStore)
	ctx := ctxT(t)
	// The sizes straddle the S3 implementation's part boundaries (8 MiB by
	// default, 5 MiB minimum) and include the empty object.
	sizes := []int64{0, 1, 1000, 64*kib + 3, 5 * mib, 8 * mib, 8*mib + 1, 17*mib + 5}
	for i, size := range sizes {
		t.Run(fmt.Sprintf("size=%d", size), func(t *testing.T) {
			g := &fixture{t: t, s: f.s, prefix: f.prefix, keys: f.keys}
			key := f.key(fmt.Sprintf("roundtrip/%d", size))
			seed := uint64(1000 + i)
			g.putSeed(ctx, key, seed, size)
			g.checkContent(ctx, key, seed, size)
		})
	}
}

func testReplace(t *testing.T, newStore func(t *testing.T) storage.Store) {
	f := newFixture(t, newStore)
	ctx := ctxT(t)
	key := f.key("replace/obj")
	f.putSeed(ctx, key, 1, 3*mib)
	f.putSeed(ctx, key, 2, 1000)
	f.checkContent(ctx, key, 2, 1000)
	f.putSeed(ctx, key, 3, 0)
	f.checkContent(ctx, key, 3, 0)
}

func testMissing(t *testing.T, newStore func(t *testing.T) storage.Store) {
	f := newFixture(t, newStore)
	ctx := ctxT(t)
	missing := f.key("missing/nothing-here")
	if _, err := f.s.Stat(ctx, missing); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat(missing) = %v, want ErrNotFound", err)
	}
	rc, _, err := f.s.Get(ctx, missing)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound at call time", err)
	}
	if err := f.s.Delete(ctx, missing); err != nil {
		t.Errorf("Delete(missing) = %v, want nil", err)
	}
	if rg, ok := f.s.(storage.RangeGetter); ok {
		rc, err := rg.GetRange(ctx, missing, 0, 10)
		if err == nil {
			rc.Close()
		}
		if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetRange(missing) = %v, want ErrNotFound", err)
		}
	}

	// A key that is only a prefix of stored keys (a directory on a file
	// system) is missing too, and deleting it must not touch them.
	child := f.key("missing/dir/child")
	f.putSeed(ctx, child, 7, 10)
	dir := f.prefix + "missing/dir"
	if _, err := f.s.Stat(ctx, dir); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat(prefix of a key) = %v, want ErrNotFound", err)
	}
	rc, _, err = f.s.Get(ctx, dir)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get(prefix of a key) = %v, want ErrNotFound", err)
	}
	if err := f.s.Delete(ctx, dir); err != nil {
		t.Errorf("Delete(prefix of a key) = %v, want nil", err)
	}
	f.checkContent(ctx, child, 7, 10)
}

func testDelete(t *testing.T, newStore func(t *testing.T) storage.Store) {
	f := newFixture(t, newStore)
	ctx := ctxT(t)
	key := f.key("delete/a/obj")
	other := f.key("delete/a/other")
	f.putSeed(ctx, key, 11, 2*mib+1)
	f.putSeed(ctx, other, 12, 100)
	if err := f.s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	f.checkAbsent(ctx, key, other)
	if err := f.s.Delete(ctx, key); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
	f.checkContent(ctx, other, 12, 100)
	// Deleting the last key under a prefix and writing there again works
	// (file systems may remove emptied directories).
	if err := f.s.Delete(ctx, other); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	f.checkAbsent(ctx, other)
	f.putSeed(ctx, key, 13, 5)
	f.checkContent(ctx, key, 13, 5)
}

var errReader = errors.New("storagetest: reader failed on purpose")

func testFailingReader(t *testing.T, newStore func(t *testing.T) storage.Store) {
	f := newFixture(t, newStore)
	ctx := ctxT(t)
	for _, failAt := range []int64{0, 100 * kib, 8 * mib, 12 * mib} {
		t.Run(fmt.Sprintf("failAt=%d", failAt), func(t *testing.T) {
			g := &fixture{t: t, s: f.s, prefix: f.prefix + fmt.Sprintf("fail%d/", failAt), keys: f.keys}
			key := f.key(fmt.Sprintf("fail%d/obj", failAt))
			src := newSource(99, 32*mib)
			src.failAt, src.failErr = failAt, errReader
			_, err := g.s.Put(ctx, key, src)
			if !errors.Is(err, errReader) {
				t.Fatalf("Put with a failing reader = %v, want an error wrapping the reader's error", err)
			}
			g.checkAbsent(ctx, key)

			// Over an existing object, a failed Put leaves it unchanged.
			g.putSeed(ctx, key, 5, 1234)
			src = newSource(98, 32*mib)
			src.failAt, src.failErr = failAt, errReader
			if _, err := g.s.Put(ctx, key, src); !errors.Is(err, errReader) {
				t.Fatalf("Put with a failing reader = %v, want an error wrapping the reader's error", err)
			}
			g.checkContent(ctx, key, 5, 1234)
			g.checkAbsent(ctx, g.prefix+"never-written", key)
		})
	}
}

func testCancelled(t *testing.T, newStore func(t *testing.T) storage.Store) {
	f := newFixture(t, newStore)
	t.Run("before", func(t *testing.T) {
		g := &fixture{t: t, s: f.s, prefix: f.prefix + "before/", keys: f.keys}
		key := f.key("before/obj")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := g.s.Put(ctx, key, newSource(1, 1000))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Put with a cancelled context = %v, want context.Canceled", err)
		}
		g.checkAbsent(ctxT(t), key)
	})
	for _, at := range []int64{64 * kib, 3 * mib, 10 * mib} {
		t.Run(fmt.Sprintf("at=%d", at), func(t *testing.T) {
			g := &fixture{t: t, s: f.s, prefix: f.prefix + fmt.Sprintf("at%d/", at), keys: f.keys}
			key := f.key(fmt.Sprintf("at%d/obj", at))
			bg := ctxT(t)
			g.putSeed(bg, key, 21, 4321)

			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			src := newSource(22, 40*mib)
			src.afterN, src.onAfter = at, cancel
			_, err := g.s.Put(ctx, key, src)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Put cancelled after %d bytes = %v, want context.Canceled", at, err)
			}
			g.checkContent(bg, key, 21, 4321)
			g.checkAbsent(bg, g.prefix+"never-written", key)
		})
	}
}

// InvalidKeyExamples are keys that every Store must refuse.
var InvalidKeyExamples = []string{
	"", "/", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "../a",
	"a b", "a\x00b", "a\nb", "ä", "a\\b", "a:b", "a?b", "a*b", "%2e%2e",
	strings.Repeat("a", storage.MaxSegmentLen+1),
	strings.Repeat("a/", storage.MaxKeyLen/2) + "a",
}

func testInvalidKeys(t *testing.T, newStore func(t *testing.T) storage.Store) {
	f := newFixture(t, newStore)
	ctx := ctxT(t)
	for _, key := range InvalidKeyExamples {
		if storage.ValidKey(key) {
			t.Fatalf("ValidKey(%q) = true; the suite's list is wrong", key)
		}
		if _, err := f.s.Put(ctx, key, strings.NewReader("x")); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", key, err)
		}
		rc, _, err := f.s.Get(ctx, key)
		if err == nil {
			rc.Close()
		}
		if !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Get(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, err := f.s.Stat(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := f.s.Delete(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", key, err)
		}
		if rg, ok := f.s.(storage.RangeGetter); ok {
			rc, err := rg.GetRange(ctx, key, 0, 1)
			if err == nil {
				rc.Close()
			}
			if !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("GetRange(%q) = %v, want ErrInvalidKey", key, err)
			}
		}
	}
}

func testEdgeKeys(t *testing.T, newStore func(t *testing.T) storage.Store) {
	f := newFixture(t, newStore)
	ctx := ctxT(t)
	long := strings.Repeat("s", storage.MaxSegmentLen)
	names := []string{
		".hidden",
		"dots/.x/..y/...",
		"-_.AZaz09",
		"UPPER/lower",
		long,
	}
	// The longest key allowed, in segments of at most MaxSegmentLen bytes.
	rest := storage.MaxKeyLen - len(f.prefix)
	var segs []string
	for rest > 0 {
		n := min(rest, storage.MaxSegmentLen)
		if rest-n == 1 { // avoid leaving a lone slash
			n--
		}
		segs = append(segs, strings.Repeat("m", n))
		rest -= n + 1
	}
	names = append(names, strings.Join(segs, "/"))
	for i, name := range names {
		key := f.key(name)
		if !storage.ValidKey(key) {
			t.Fatalf("ValidKey(%q) = false, want true (len %d)", key, len(key))
		}
		f.putSeed(ctx, key, uint64(300+i), int64(10+i))
		f.checkContent(ctx, key, uint64(300+i), int64(10+i))
	}
	if len(names[len(names)-1])+len(f.prefix) != storage.MaxKeyLen {
		t.Fatalf("longest key is %d bytes, want %d", len(names[len(names)-1])+len(f.prefix), storage.MaxKeyLen)
	}
}

func testPartialRead(t *testing.T, newStore func(t *testing.T) storage.Store) {
	f := newFixture(t, newStore)
	ctx := ctxT(t)
	key := f.key("partial/obj")
	f.putSeed(ctx, key, 31, 9*mib)
	rc, _, err := f.s.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatalf("Read: %v", err)
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("Close after a partial read: %v", err)
	}
	first := make([]byte, 10)
	_, _ = io.ReadFull(newSource(31, 10), first)
	if !bytes.Equal(buf, first) {
		t.Fatalf("first bytes = %x, want %x", buf, first)
	}
	// The store still works after an abandoned read.
	f.checkContent(ctx, key, 31, 9*mib)
}

func testList(t *testing.T, newStore func(t *testing.T) storage.Store) {
	f := newFixture(t, newStore)
	l, ok := f.s.(storage.Lister)
	if !ok {
		t.Skip("store does not implement storage.Lister")
	}
	ctx := ctxT(t)
	sizes := map[string]int64{"a/1": 1, "a/2": 22, "b/1": 333, "ab": 0, "a-c": 4444, "a/deep/er/x": 5}
	i := 0
	for name, size := range sizes {
		f.putSeed(ctx, f.key(name), uint64(400+i), size)
		i++
	}
	p := f.prefix
	cases := []struct {
		prefix string
		want   []string
	}{
		{p + "a/", []string{"a/1", "a/2", "a/deep/er/x"}},
		{p + "a", []string{"a-c", "a/1", "a/2", "a/deep/er/x", "ab"}},
		{p, []string{"a-c", "a/1", "a/2", "a/deep/er/x", "ab", "b/1"}},
		{p + "a/deep/", []string{"a/deep/er/x"}},
		{p + "b/1", []string{"b/1"}},
		{p + "zz", nil},
		{p + "zz/", nil},
	}
	for _, c := range cases {
		var want []string
		for _, n := range c.want {
			want = append(want, p+n)
		}
		var got []string
		err := l.List(ctx, c.prefix, func(info storage.Info) error {
			got = append(got, info.Key)
			name := strings.TrimPrefix(info.Key, p)
			if size, ok := sizes[name]; !ok || info.Size != size {
				t.Errorf("List(%q) gave %s with size %d, want size %d", c.prefix, info.Key, info.Size, size)
			}
			if info.ModTime.IsZero() {
				t.Errorf("List(%q) gave %s with a zero ModTime", c.prefix, info.Key)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("List(%q): %v", c.prefix, err)
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("List(%q) = %v, want %v", c.prefix, got, want)
		}
	}
	// An error from fn stops the listing and is returned.
	stop := errors.New("stop")
	calls := 0
	err := l.List(ctx, p, func(storage.Info) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List with fn failing: err = %v after %d calls, want %v after 1 call", err, calls, stop)
	}
}

func testRange(t *testing.T, newStore func(t *testing.T) storage.Store) {
	f := newFixture(t, newStore)
	rg, ok := f.s.(storage.RangeGetter)
	if !ok {
		t.Skip("store does not implement storage.RangeGetter")
	}
	ctx := ctxT(t)
	const size = mib + 17
	key := f.key("range/obj")
	f.putSeed(ctx, key, 51, size)
	whole := make([]byte, size)
	if _, err := io.ReadFull(newSource(51, size), whole); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		off, length int64
		want        []byte
	}{
		{0, 10, whole[:10]},
		{5, -1, whole[5:]},
		{size - 1, 1, whole[size-1:]},
		{size - 1, -1, whole[size-1:]},
		{0, size, whole},
		{0, -1, whole},
		{100, 2 * size, whole[100:]},
		{12345, 54321, whole[12345 : 12345+54321]},
		{size, -1, nil},
		{size, 5, nil},
		{3, 0, nil},
	}
	for _, c := range cases {
		rc, err := rg.GetRange(ctx, key, c.off, c.length)
		if err != nil {
			t.Errorf("GetRange(%d, %d): %v", c.off, c.length, err)
			continue
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Errorf("GetRange(%d, %d): read: %v", c.off, c.length, err)
			continue
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("GetRange(%d, %d) returned %d bytes (sha256 %x), want %d bytes (sha256 %x)",
				c.off, c.length, len(got), sha256.Sum256(got), len(c.want), sha256.Sum256(c.want))
		}
	}
	for _, off := range []int64{size + 1, -1} {
		rc, err := rg.GetRange(ctx, key, off, 1)
		if err == nil {
			rc.Close()
			t.Errorf("GetRange(offset %d) on a %d-byte object succeeded, want an error", off, size)
		}
	}
}

func testConcurrentPuts(t *testing.T, newStore func(t *testing.T) storage.Store) {
	f := newFixture(t, newStore)
	ctx := ctxT(t)
	const n = 8
	keys := make([]string, n)
	sizes := make([]int64, n)
	for i := range keys {
		keys[i] = f.key(fmt.Sprintf("concurrent/%d/obj", i))
		sizes[i] = int64(i)*(3*mib/2) + int64(i)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			info, err := f.s.Put(ctx, keys[i], newSource(uint64(600+i), sizes[i]))
			if err == nil && info.Size != sizes[i] {
				err = fmt.Errorf("Put returned size %d, want %d", info.Size, sizes[i])
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Put(%s): %v", keys[i], err)
		}
	}
	for i := range keys {
		f.checkContent(ctx, keys[i], uint64(600+i), sizes[i])
	}
}
