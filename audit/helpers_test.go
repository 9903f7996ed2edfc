package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"github.com/sealgate/sealgate/internal/testpg"

	"golang.org/x/mod/sumdb/note"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/storage"
)

const testOrigin = "sealgate.test/ledger"

// fakeClock is a settable clock; every read advances it by one millisecond
// so that events get distinct, increasing times.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

type fixture struct {
	t      testing.TB
	ctx    context.Context
	path   string
	db     *database.DB
	l      *Ledger
	clock  *fakeClock
	signer note.Signer
	vkey   string
}

func newFixture(t testing.TB, opts ...func(*Options)) *fixture {
	return newFixtureSync(t, "OFF", opts...)
}

func newFixtureSync(t testing.TB, syncMode string, opts ...func(*Options)) *fixture {
	t.Helper()
	return newFixtureDB(t, testdb.Options(database.Options{Synchronous: syncMode}), rand.Reader, opts...)
}

// newGoldenFixture is the fixture of the golden test vectors: the signing
// key drawn from keyRand (a seeded stream makes every signature, and so
// every file the fixture writes, the same at each run), and every write
// function run once whatever SEALGATE_TEST_RERUN says, since every
// reading of the stepping clock shows in the vectors' times.
func newGoldenFixture(t testing.TB, keyRand io.Reader, opts ...func(*Options)) *fixture {
	t.Helper()
	return newFixtureDB(t, database.Options{Synchronous: "OFF"}, keyRand, opts...)
}

func newFixtureDB(t testing.TB, dbOpts database.Options, keyRand io.Reader, opts ...func(*Options)) *fixture {
	t.Helper()
	ctx := context.Background()
	path := testpg.Target(t, filepath.Join(t.TempDir(), "meta.db"))
	db, err := database.Open(ctx, path, dbOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := newClock()
	o := Options{Origin: testOrigin, Now: clock.Now}
	for _, f := range opts {
		f(&o)
	}
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := GenerateKey(keyRand, "sealgate.test")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ctx: ctx, path: path, db: db, l: l, clock: clock, signer: signer, vkey: vkey}
}

// event returns a varied, valid event number i.
func event(i int) Event {
	types := []string{TypeMessageReceived, TypeFileSealed, TypeNoticeDelivered, TypeKeyNoticeDelivered,
		TypeFileDownloaded, TypeLogin, TypeApprovalGranted, TypeKeyDestroyed}
	ev := Event{
		Type:     types[i%len(types)],
		Actor:    fmt.Sprintf("alice%d@example.co.jp", i%3),
		Contract: []string{"ACME-2026", "BETA-01"}[i%2],
		Transfer: fmt.Sprintf("tr-%06d", i/4),
	}
	switch ev.Type {
	case TypeFileSealed, TypeFileDownloaded:
		ev.File = fmt.Sprintf("見積書_%d.xlsx", i)
		ev.SHA256 = fmt.Sprintf("%064x", i)
		ev.Size = int64(1000 + i)
	case TypeNoticeDelivered, TypeKeyNoticeDelivered:
		ev.Recipient = "bob@partner.example"
	case TypeLogin:
		ev.RemoteIP = "192.0.2.7"
		ev.UserAgent = "Mozilla/5.0"
	case TypeMessageReceived:
		ev.Message = fmt.Sprintf("msg-%d", i)
		ev.Details = map[string]string{"subject": "見積もりの件", "from": "alice@example.co.jp"}
	}
	return ev
}

func (f *fixture) appendN(n int, mk func(i int) Event) {
	f.t.Helper()
	const batch = 500
	for start := 0; start < n; start += batch {
		end := min(start+batch, n)
		err := f.db.Write(f.ctx, func(tx *database.Tx) error {
			for i := start; i < end; i++ {
				if _, err := f.l.Append(f.ctx, tx, mk(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) checkpoint() *SignedCheckpoint {
	f.t.Helper()
	cp, err := f.l.Checkpoint(f.ctx, f.db, f.signer)
	if err != nil {
		f.t.Fatal(err)
	}
	return cp
}

func (f *fixture) export(opts ExportOptions) []byte {
	f.t.Helper()
	if opts.Signer == nil {
		opts.Signer = f.signer
	}
	if opts.Format == "" {
		opts.Format = FormatJSON
	}
	var buf bytes.Buffer
	if err := f.l.Export(f.ctx, f.db, opts, &buf, nil); err != nil {
		f.t.Fatal(err)
	}
	return buf.Bytes()
}

// raw opens a second, unprotected connection to the database file: what a
// DBA with the file could do. dropTriggers removes the append-only
// protection first.
func (f *fixture) raw(dropTriggers bool) *sql.DB {
	f.t.Helper()
	r, err := database.OpenPlain(f.path)
	if err != nil {
		f.t.Fatal(err)
	}
	r.SetMaxOpenConns(1)
	f.t.Cleanup(func() { r.Close() })
	if dropTriggers {
		for _, tr := range []string{
			"ledger_records_append_only", "ledger_records_no_update", "ledger_records_no_delete",
			"ledger_hashes_append_only", "ledger_hashes_no_update", "ledger_hashes_no_delete",
			"ledger_checkpoints_append_only", "ledger_checkpoints_no_update", "ledger_checkpoints_no_delete",
		} {
			drop := "DROP TRIGGER " + tr
			if f.db.Dialect() == database.Postgres {
				drop += " ON " + strings.Join(strings.SplitN(tr, "_", 3)[:2], "_") // ledger_<table>_<what>
			}
			if _, err := r.Exec(drop); err != nil {
				f.t.Fatal(err)
			}
		}
	}
	return r
}

func (f *fixture) verifyDB(opts VerifyOptions) (*VerifyReport, error) {
	return VerifyDB(f.ctx, f.db, f.vkey, opts, nil)
}

// memStore is an in-memory storage.Store.
type memStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	puts    []string
	fail    bool
}

func newMemStore() *memStore { return &memStore{objects: map[string][]byte{}} }

func (s *memStore) Put(ctx context.Context, key string, r io.Reader) (storage.Info, error) {
	if err := storage.CheckKey(key); err != nil {
		return storage.Info{}, err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return storage.Info{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return storage.Info{}, fmt.Errorf("put %s: %w", key, storage.ErrUnavailable)
	}
	s.objects[key] = b
	s.puts = append(s.puts, key)
	return storage.Info{Key: key, Size: int64(len(b))}, nil
}

func (s *memStore) Get(ctx context.Context, key string) (io.ReadCloser, storage.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objects[key]
	if !ok {
		return nil, storage.Info{}, storage.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), storage.Info{Key: key, Size: int64(len(b))}, nil
}

func (s *memStore) Stat(ctx context.Context, key string) (storage.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objects[key]
	if !ok {
		return storage.Info{}, storage.ErrNotFound
	}
	return storage.Info{Key: key, Size: int64(len(b))}, nil
}

func (s *memStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.objects, key)
	return nil
}

func (s *memStore) get(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objects[key]
	return b, ok
}

// lockingStore is a memStore that is also a storage.Retainer.
type lockingStore struct {
	*memStore
	locked map[string]time.Time
}

func (s *lockingStore) PutLocked(ctx context.Context, key string, r io.Reader, until time.Time) (storage.Info, error) {
	info, err := s.Put(ctx, key, r)
	if err == nil {
		s.mu.Lock()
		s.locked[key] = until
		s.mu.Unlock()
	}
	return info, err
}
