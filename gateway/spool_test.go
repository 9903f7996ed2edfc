package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/testpg"
	"github.com/sealgate/sealgate/outbox"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/storage/s3"
	"github.com/sealgate/sealgate/storage/s3/s3test"
)

// memStore is an in-memory storage.Store (fuzzing should not wait for
// fsync) whose objects' times a test may set (the spool sweep's grace).
type memStore struct {
	mu      sync.Mutex
	objs    map[string][]byte
	times   map[string]time.Time
	failPut func(key string) error
}

func newMemStore() *memStore {
	return &memStore{objs: map[string][]byte{}, times: map[string]time.Time{}}
}

func (m *memStore) Put(ctx context.Context, key string, r io.Reader) (storage.Info, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return storage.Info{}, fmt.Errorf("failed to read: %w", err)
	}
	if m.failPut != nil {
		if err := m.failPut(key); err != nil {
			return storage.Info{}, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[key], m.times[key] = b, time.Now()
	return storage.Info{Key: key, Size: int64(len(b)), ModTime: m.times[key]}, nil
}

func (m *memStore) Get(ctx context.Context, key string) (io.ReadCloser, storage.Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[key]
	if !ok {
		return nil, storage.Info{}, fmt.Errorf("%s: %w", key, storage.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b)), storage.Info{Key: key, Size: int64(len(b)), ModTime: m.times[key]}, nil
}

func (m *memStore) Stat(ctx context.Context, key string) (storage.Info, error) {
	_, info, err := m.Get(ctx, key)
	return info, err
}

func (m *memStore) Delete(ctx context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
	delete(m.times, key)
	return nil
}

func (m *memStore) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	m.mu.Lock()
	var infos []storage.Info
	for k, b := range m.objs {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, storage.Info{Key: k, Size: int64(len(b)), ModTime: m.times[k]})
		}
	}
	m.mu.Unlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	for _, i := range infos {
		if err := fn(i); err != nil {
			return err
		}
	}
	return nil
}

// keys returns the object keys under prefix.
func (m *memStore) keys(prefix string) []string {
	var out []string
	m.List(context.Background(), prefix, func(i storage.Info) error { out = append(out, i.Key); return nil })
	return out
}

// age sets the time of every object under prefix to d ago.
func (m *memStore) age(prefix string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.times {
		if strings.HasPrefix(k, prefix) {
			m.times[k] = time.Now().Add(-d)
		}
	}
}

// newFleet returns what the gateways of a fleet share: one database, one
// object store with the spool in it, one master key, one ledger.
func newFleet(t *testing.T) (instance, *memStore) {
	t.Helper()
	db, err := database.Open(context.Background(), testpg.Target(t, filepath.Join(t.TempDir(), "db")), testdb.Options(database.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := newMemStore()
	mk, _ := crypto.GenerateMasterKey()
	keys, _ := crypto.NewKeyring(mk)
	led, err := audit.New(audit.Options{Origin: "test/ledger"})
	if err != nil {
		t.Fatal(err)
	}
	return instance{db: db, st: st, keys: keys, led: led, spool: BucketSpool{Store: st}}, st
}

// waitDelivered runs g's background jobs until no outbound row is left
// undelivered (or 20 s passed).
func waitDelivered(t testing.TB, g *testGW) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.runJobs(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var pending int
		g.DB.Read().QueryRow(`SELECT COUNT(*) FROM outbound WHERE status != 'delivered'`).Scan(&pending)
		if pending == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
}

// TestBucketSpoolAnotherInstanceDelivers: with the spool in the shared
// store, a message instance A accepted (and never delivered: it died) is
// delivered by instance B, which has its own data directory; nothing of
// it touched A's disk, and the spool objects are removed once delivered.
func TestBucketSpoolAnotherInstanceDelivers(t *testing.T) {
	fleet, st := newFleet(t)
	a := newInstance(t, fleet, nil)
	msg, _ := bigMessage(1<<20, "x@client.example")
	env := &envelope{client: "127.0.0.1:1", from: "a@corp.example", rcpts: []string{"x@client.example", "y@corp.example"}}
	id, err := a.accept(context.Background(), env, msg)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.keys(SpoolPrefix); len(got) != 2 {
		t.Fatalf("spool objects after the 250: %v, want the original and the skeleton", got)
	}
	if n := len(mustGlob(t, filepath.Join(a.dir, "spool", "*"))); n != 0 {
		t.Fatalf("%d files in A's spool directory", n)
	}
	b := newInstance(t, fleet, nil)
	waitDelivered(t, b)
	if len(b.tr.sent) != 3 || len(a.tr.sent) != 0 {
		t.Fatalf("message %s: B delivered %d, A %d; want 3 by B (plain, copy, key)", id, len(b.tr.sent), len(a.tr.sent))
	}
	if got := st.keys(SpoolPrefix); len(got) != 0 {
		t.Fatalf("spool objects left after delivery: %v", got)
	}
}

// TestBucketSpoolUploadFailure: a spool upload the store refuses is a
// 4xx, and nothing of the message is queued or left in the spool.
func TestBucketSpoolUploadFailure(t *testing.T) {
	fleet, st := newFleet(t)
	st.failPut = func(key string) error {
		if strings.HasPrefix(key, SpoolPrefix) {
			return fmt.Errorf("simulated outage: %w", storage.ErrUnavailable)
		}
		return nil
	}
	g := newInstance(t, fleet, nil)
	msg, _ := bigMessage(100<<10, "x@client.example")
	_, err := g.accept(context.Background(), &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example", "y@corp.example"}}, msg)
	if r := smtpReply(err); err == nil || r.Code != 451 {
		t.Fatalf("spool upload refused: %v, want 451", err)
	}
	var n int
	g.DB.Read().QueryRow(`SELECT COUNT(*) FROM outbound`).Scan(&n)
	if n != 0 || len(st.keys(SpoolPrefix)) != 0 {
		t.Fatalf("%d rows queued, spool objects %v, for a refused message", n, st.keys(SpoolPrefix))
	}
}

// TestBucketSpoolSweep: on the shared spool an unreferenced object is
// removed only once older than the grace (another instance may be about to
// commit a younger one); an object a pending delivery needs is kept
// however old.
func TestBucketSpoolSweep(t *testing.T) {
	fleet, st := newFleet(t)
	g := newInstance(t, fleet, nil)
	msg, _ := bigMessage(10<<10, "x@client.example")
	if _, err := g.accept(context.Background(), &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example"}}, msg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"mdead1.skel.age", "mdead2.orig.age"} {
		f, err := g.Spool.Create(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("sealed bytes of a message that never committed"))
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	st.age(SpoolPrefix, time.Hour)
	// A start (collectSpool) and a sweep within the grace remove nothing.
	if err := g.collectSpool(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.SweepSpool(ctx, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := st.keys(SpoolPrefix); len(got) != 3 {
		t.Fatalf("spool objects after sweeps within the grace: %v, want all 3", got)
	}
	st.age(SpoolPrefix, SharedSpoolGrace+time.Minute)
	if err := g.collectSpool(ctx); err != nil {
		t.Fatal(err)
	}
	got := st.keys(SpoolPrefix)
	if len(got) != 1 || !strings.HasSuffix(got[0], ".skel.age") || strings.Contains(got[0], "mdead") {
		t.Fatalf("spool objects after the sweep: %v, want only the pending message's skeleton", got)
	}
}

// TestBucketSpoolRekey: a master key rotation re-encrypts the spool
// objects of pending deliveries to the new key (Queue.Rewrap), and a
// message read under a retired epoch is moved to the new one before its
// commit (spool.rekey) — in the bucket.
func TestBucketSpoolRekey(t *testing.T) {
	fleet, st := newFleet(t)
	mk1, _ := crypto.GenerateMasterKey()
	mk2, _ := crypto.GenerateMasterKey()
	e1, err := crypto.ParseMasterKey(mk1)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := crypto.ParseMasterKey(mk2)
	if err != nil {
		t.Fatal(err)
	}
	e1, e2 = e1.WithNumber(1), e2.WithNumber(2)
	fleet.keys = crypto.NewKeyringOf([]*crypto.Epoch{e1}, nil)
	g := newInstance(t, fleet, nil)
	msg, _ := bigMessage(10<<10, "x@client.example")
	if _, err := g.accept(context.Background(), &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example"}}, msg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	opensWith := func(key string, e *crypto.Epoch) bool {
		rc, _, err := st.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		return e.OpensSpool(rc)
	}
	skel := st.keys(SpoolPrefix)
	if len(skel) != 1 || !opensWith(skel[0], e1) || opensWith(skel[0], e2) {
		t.Fatalf("spool objects %v: want one skeleton sealed with epoch 1", skel)
	}
	held, moved, err := Queue{DB: fleet.db, Spool: fleet.spool}.Rewrap(ctx, fleet.keys, e2)
	if err != nil || moved < 1 || held < moved {
		t.Fatalf("rewrap: held %d moved %d: %v", held, moved, err)
	}
	if !opensWith(skel[0], e2) || opensWith(skel[0], e1) {
		t.Fatal("the spool object was not re-encrypted to epoch 2")
	}
	// With epoch 2 alone, nothing is left to move (how a rotation checks
	// itself before erasing the old key).
	only2 := crypto.NewKeyringOf([]*crypto.Epoch{e2}, nil)
	if _, moved, err := (Queue{DB: fleet.db, Spool: fleet.spool}).Rewrap(ctx, only2, e2); err != nil || moved != 0 {
		t.Fatalf("check with the new key alone: moved %d: %v", moved, err)
	}

	// spool.rekey: a file written under epoch 1 opens, after it, with
	// epoch 2 alone, and reads the same.
	sp := &spool{st: fleet.spool, keys: fleet.keys}
	f, err := sp.create(ctx, "mrekey.skel.age", e1)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, "Subject: rekeyed\r\n\r\nbody\r\n")
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := sp.rekey(ctx, "mrekey.skel.age", e1, e2); err != nil {
		t.Fatal(err)
	}
	sp2 := &spool{st: fleet.spool, keys: only2}
	r, err := sp2.open(ctx, "mrekey.skel.age")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if b, _ := io.ReadAll(r); string(b) != "Subject: rekeyed\r\n\r\nbody\r\n" {
		t.Fatalf("after rekey: %q", b)
	}
}

// TestBucketSpoolAbortLeavesNothing: an aborted spool file leaves no
// object, a missing one opens with fs.ErrNotExist semantics.
func TestBucketSpoolAbortLeavesNothing(t *testing.T) {
	st := newMemStore()
	b := BucketSpool{Store: st}
	ctx := context.Background()
	f, err := b.Create(ctx, "mx.skel.age")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("partial"))
	f.Abort()
	if got := st.keys(""); len(got) != 0 {
		t.Fatalf("objects after Abort: %v", got)
	}
	if _, err := openSeeker(ctx, b, "mx.skel.age"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open of a missing spool object: %v", err)
	}
	if _, err := b.Create(ctx, "../x.age"); err == nil {
		t.Fatal("a path was accepted as a spool name")
	}
}

// TestSpoolStores runs the SpoolStore contract against each store: the
// directory, the bucket in memory, and the bucket on a real S3 server
// (versitygw; skipped without one unless SEALGATE_REQUIRE_S3=1).
func TestSpoolStores(t *testing.T) {
	t.Run("dir", func(t *testing.T) {
		d := NewDirSpool(filepath.Join(t.TempDir(), "spool"))
		if err := d.prepare(); err != nil {
			t.Fatal(err)
		}
		testSpoolStore(t, d)
	})
	t.Run("bucket", func(t *testing.T) { testSpoolStore(t, BucketSpool{Store: newMemStore()}) })
	// In the database up to Max, the larger files (the contract's first
	// is 14 MiB) in the directory or the bucket.
	t.Run("db+dir", func(t *testing.T) {
		d := NewDirSpool(filepath.Join(t.TempDir(), "spool"))
		s := &DBSpool{DB: newSpoolDB(t), Next: d, Max: 64 << 10}
		if err := s.prepare(); err != nil {
			t.Fatal(err)
		}
		testSpoolStore(t, s)
	})
	t.Run("db+bucket", func(t *testing.T) {
		testSpoolStore(t, &DBSpool{DB: newSpoolDB(t), Next: BucketSpool{Store: newMemStore()}, Max: 64 << 10})
	})
	t.Run("s3", func(t *testing.T) {
		st, err := s3.Open(context.Background(), s3test.Start(t).Bucket(t, "spool"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		testSpoolStore(t, BucketSpool{Store: st})
	})
}

// newSpoolDB opens a database for a DBSpool (PostgreSQL with
// SEALGATE_TEST_POSTGRES).
func newSpoolDB(t *testing.T) *database.DB {
	t.Helper()
	db, err := database.Open(context.Background(), testpg.Target(t, filepath.Join(t.TempDir(), "db")), testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestDBSpoolKeepsSmallFilesInTheDatabase: a file up to Max is a row and
// never touches the directory; one that outgrows Max while it is written
// is a file in the directory and no row; replacing moves a file from one
// to the other without leaving the old copy; Remove removes either.
func TestDBSpoolKeepsSmallFilesInTheDatabase(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "spool")
	db := newSpoolDB(t)
	s := &DBSpool{DB: db, Next: NewDirSpool(dir), Max: 1000}
	if err := s.prepare(); err != nil {
		t.Fatal(err)
	}
	rows := func() int {
		var n int
		if err := db.Read().QueryRow(`SELECT COUNT(*) FROM spool_files`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	files := func() int { return len(mustGlob(t, filepath.Join(dir, "*.age"))) }
	write := func(name string, size int) {
		t.Helper()
		f, err := s.Create(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < size; i += 100 { // in pieces, across Max
			f.Write(bytes.Repeat([]byte{'x'}, min(100, size-i)))
		}
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	write("a.skel.age", 1000)
	write("b.orig.age", 1001)
	if rows() != 1 || files() != 1 {
		t.Fatalf("%d rows, %d files; want the file of 1,000 bytes as a row, the other as a file", rows(), files())
	}
	size := func(name string) int {
		rc, err := s.Open(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return len(b)
	}
	if size("a.skel.age") != 1000 || size("b.orig.age") != 1001 {
		t.Fatal("read back differs")
	}
	// a grows to a file, b shrinks to a row: each in one place only.
	if err := s.Replace(ctx, "a.skel.age", func(w io.Writer) error { _, err := w.Write(make([]byte, 5000)); return err }); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(ctx, "b.orig.age", func(w io.Writer) error { _, err := w.Write(make([]byte, 10)); return err }); err != nil {
		t.Fatal(err)
	}
	if rows() != 1 || files() != 1 || size("a.skel.age") != 5000 || size("b.orig.age") != 10 {
		t.Fatalf("after Replace: %d rows, %d files", rows(), files())
	}
	for _, name := range []string{"a.skel.age", "b.orig.age"} {
		if err := s.Remove(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if rows() != 0 || files() != 0 {
		t.Fatalf("after Remove: %d rows, %d files", rows(), files())
	}
}

func testSpoolStore(t *testing.T, st SpoolStore) {
	ctx := context.Background()
	read := func(name string) string {
		t.Helper()
		rc, err := st.Open(ctx, name)
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	list := func() []string {
		t.Helper()
		var names []string
		if err := st.List(ctx, func(name string, written time.Time) error {
			if written.IsZero() || time.Since(written) > time.Hour || time.Until(written) > time.Hour {
				t.Errorf("%s written at %v", name, written)
			}
			names = append(names, name)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		sort.Strings(names)
		return names
	}
	// Nothing is visible before Commit; an aborted file leaves nothing.
	f, err := st.Create(ctx, "ma.skel.age")
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("sealed ", 2<<20) // over one S3 part: a multipart upload
	io.WriteString(f, big)
	if got := list(); len(got) != 0 {
		t.Fatalf("listed before Commit: %v", got)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if read("ma.skel.age") != big {
		t.Fatal("read back differs")
	}
	g, err := st.Create(ctx, "mb.orig.age")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(g, "half")
	g.Abort()
	if got := list(); len(got) != 1 || got[0] != "ma.skel.age" {
		t.Fatalf("after an abort: %v", got)
	}
	if _, err := st.Open(ctx, "mb.orig.age"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open of an aborted file: %v", err)
	}
	// Replace: the old file stays when the writer fails, the new one
	// replaces it when it succeeds.
	if err := st.Replace(ctx, "ma.skel.age", func(w io.Writer) error {
		io.WriteString(w, "partial")
		return errors.New("writer failed")
	}); err == nil {
		t.Fatal("a failed Replace returned nil")
	}
	if read("ma.skel.age") != big {
		t.Fatal("a failed Replace changed the file")
	}
	if err := st.Replace(ctx, "ma.skel.age", func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err }); err != nil {
		t.Fatal(err)
	}
	if read("ma.skel.age") != "new" {
		t.Fatal("Replace did not replace")
	}
	// Remove is idempotent; names that are not spool files' are refused.
	for range 2 {
		if err := st.Remove(ctx, "ma.skel.age"); err != nil {
			t.Fatal(err)
		}
	}
	if got := list(); len(got) != 0 {
		t.Fatalf("after Remove: %v", got)
	}
	for _, bad := range []string{"", "../x.age", "a/b.age", "x.txt"} {
		if err := st.Remove(ctx, bad); err == nil {
			t.Errorf("Remove(%q) accepted", bad)
		}
		if _, err := st.Create(ctx, bad); err == nil {
			t.Errorf("Create(%q) accepted", bad)
		}
	}
}

// TestCopySpoolMigrates: the spool files of mail queued in the directory
// (an embedded installation) are copied into the bucket (sealgate
// migrate), where an instance using the bucket delivers the mail; a
// needed file that is missing is an error.
func TestCopySpoolMigrates(t *testing.T) {
	old := newTestGateway(t, nil, nil)
	msg, _ := bigMessage(20<<10, "x@client.example")
	env := &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example", "y@corp.example"}}
	if _, err := old.accept(context.Background(), env, msg); err != nil {
		t.Fatal(err)
	}
	st := newMemStore()
	bucket := BucketSpool{Store: st}
	ctx := context.Background()
	present, copied, err := CopySpool(ctx, old.DB, old.Spool, bucket)
	if err != nil || present != 2 || copied != 2 {
		t.Fatalf("copied %d of %d: %v, want the original and the skeleton", copied, present, err)
	}
	// Run again, nothing is copied; a copy that differs is copied again.
	if present, copied, err := CopySpool(ctx, old.DB, old.Spool, bucket); err != nil || present != 2 || copied != 0 {
		t.Fatalf("second run: copied %d of %d: %v", copied, present, err)
	}
	keys := st.keys(SpoolPrefix)
	st.Put(ctx, keys[0], strings.NewReader("damaged"))
	if present, copied, err := CopySpool(ctx, old.DB, old.Spool, bucket); err != nil || present != 2 || copied != 1 {
		t.Fatalf("run over a damaged copy: copied %d of %d: %v", copied, present, err)
	}
	if got := st.keys(SpoolPrefix); len(got) != 2 {
		t.Fatalf("spool objects %v", got)
	}
	moved := newInstance(t, instance{db: old.DB, st: old.Store, keys: old.Keys, led: old.Ledger, spool: bucket}, nil)
	waitDelivered(t, moved)
	if len(moved.tr.sent) != 3 {
		t.Fatalf("delivered %d after the copy, want 3", len(moved.tr.sent))
	}

	// A queued message whose spool file is gone cannot be copied.
	again := newTestGateway(t, nil, nil)
	if _, err := again.accept(ctx, env, bytes.NewReader([]byte("From: a@corp.example\r\nTo: x@client.example\r\nSubject: s\r\n\r\nbody\r\n"))); err != nil {
		t.Fatal(err)
	}
	var name string
	again.DB.Read().QueryRow(`SELECT spool FROM outbound WHERE kind IN ('copy', 'sealed')`).Scan(&name)
	if err := again.Spool.Remove(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, _, err := CopySpool(ctx, again.DB, again.Spool, BucketSpool{Store: newMemStore()}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("copy with a spool file missing: %v", err)
	}
}

// TestAcceptKeepsSpoolInItsTransaction: with the default spool (DBSpool
// over the directory) a small message's original and skeleton are rows
// written by its accept transaction — none in the directory, none before
// the commit. (Their removal after delivery: TestAcceptAndDeliver.)
func TestAcceptKeepsSpoolInItsTransaction(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	if _, ok := g.Spool.(*DBSpool); !ok {
		t.Fatalf("default spool %T, want *DBSpool", g.Spool)
	}
	var before int
	g.DB.Read().QueryRow(`SELECT COUNT(*) FROM spool_files`).Scan(&before)
	msg, _ := bigMessage(20<<10, "x@client.example")
	env := &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example", "y@corp.example"}}
	id, err := g.accept(context.Background(), env, msg)
	if err != nil {
		t.Fatal(err)
	}
	var rows, referenced int
	g.DB.Read().QueryRow(`SELECT COUNT(*) FROM spool_files`).Scan(&rows)
	g.DB.Read().QueryRow(`SELECT COUNT(*) FROM spool_files s JOIN outbound o ON o.spool = s.name WHERE o.message_id = ?`, id).Scan(&referenced)
	if before != 0 || rows != 2 || referenced < 2 {
		t.Fatalf("spool rows: %d before, %d after, %d referenced by the message's deliveries; want 0, 2, 2", before, rows, referenced)
	}
	if files := mustGlob(t, filepath.Join(g.dir, "spool", "*.age")); len(files) != 0 {
		t.Fatalf("spool files in the directory: %v", files)
	}
}

// TestOutcomeReleasesSpoolRowInItsTransaction: the spool row of a message
// is deleted by the transaction that records the outcome of the last
// delivery needing it — not while another still needs it, and not when
// that transaction rolls back.
func TestOutcomeReleasesSpoolRowInItsTransaction(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	ctx := context.Background()
	msg, _ := bigMessage(20<<10, "x@client.example")
	env := &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example", "y@other.example", "z@corp.example"}}
	id, err := g.accept(ctx, env, msg)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := outbox.Due(ctx, g.DB.Read(), time.Now().Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	byspool := map[string][]outbox.Row{}
	for _, r := range rows {
		if r.MessageID == id && r.Spool != "" {
			byspool[r.Spool] = append(byspool[r.Spool], r)
		}
	}
	if len(byspool) == 0 {
		t.Fatalf("no delivery of message %s names a spool file (%d rows)", id, len(rows))
	}
	exists := func(name string) bool {
		var n int
		if err := g.DB.Read().QueryRow(`SELECT COUNT(*) FROM spool_files WHERE name = ?`, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	rollback := errors.New("the outcome's transaction fails after the release")
	for name, rs := range byspool {
		if !exists(name) {
			t.Fatalf("spool file %s is not a row", name)
		}
		for i, r := range rs {
			last := i == len(rs)-1
			var left bool
			// Rolled back: the row stays.
			err := g.DB.Write(ctx, func(tx *database.Tx) (err error) {
				if err := outbox.CancelOne(ctx, tx, r.ID, ""); err != nil {
					return err
				}
				if left, err = g.queue.releaseSpoolTx(ctx, tx, r); err != nil {
					return err
				}
				return rollback
			})
			if !errors.Is(err, rollback) || !exists(name) {
				t.Fatalf("%s: after a rolled-back outcome: err %v, row kept %v", name, err, exists(name))
			}
			err = g.DB.Write(ctx, func(tx *database.Tx) (err error) {
				if err := outbox.CancelOne(ctx, tx, r.ID, ""); err != nil {
					return err
				}
				left, err = g.queue.releaseSpoolTx(ctx, tx, r)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if left || exists(name) == last {
				t.Fatalf("%s: after outcome %d of %d: left %v, row kept %v", name, i+1, len(rs), left, exists(name))
			}
		}
	}
}
