package seed

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"github.com/sealgate/sealgate/internal/testpg"

	"golang.org/x/mod/sumdb/note"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/clock"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/storage/fs"
)

// Clock is a fake clock for tests (package clock) whose every reading
// advances it by a millisecond, so that events get distinct times.
type Clock = clock.Fake

// NewClock starts at t.
func NewClock(t time.Time) *Clock { return clock.NewStepping(t, time.Millisecond) }

// Env is a database, object store, master key and ledger for one test.
type Env struct {
	Dir    string
	DB     *database.DB
	Store  storage.Store
	Keys   *crypto.Keyring
	Master string // the master key, "AGE-SECRET-KEY-1…"
	Ledger *audit.Ledger
	Signer note.Signer
	VKey   string
	Clock  *Clock
}

// NewEnv makes an Env in a temporary directory; st nil means an fs store
// there. Everything is closed when tb ends.
func NewEnv(tb testing.TB, st storage.Store) *Env {
	tb.Helper()
	dir := tb.TempDir()
	return newEnv(tb, dir, testpg.Target(tb, filepath.Join(dir, "sealgate.db")), st)
}

// NewSQLiteEnv is NewEnv on SQLite whatever SEALGATE_TEST_POSTGRES says
// (an embedded installation, as `sealgate migrate` moves).
func NewSQLiteEnv(tb testing.TB, st storage.Store) *Env {
	tb.Helper()
	dir := tb.TempDir()
	return newEnv(tb, dir, filepath.Join(dir, "sealgate.db"), st)
}

func newEnv(tb testing.TB, dir, target string, st storage.Store) *Env {
	tb.Helper()
	ctx := context.Background()
	db, err := database.Open(ctx, target, testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if st == nil {
		fst, err := fs.Open(filepath.Join(dir, "objects"))
		if err != nil {
			tb.Fatal(err)
		}
		st = fst
	}
	mk, err := crypto.GenerateMasterKey()
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := crypto.NewKeyring(mk)
	if err != nil {
		tb.Fatal(err)
	}
	clock := NewClock(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC))
	led, err := audit.New(audit.Options{Origin: "sealgate.test/ledger", Now: clock.Now, Store: st, Names: true})
	if err != nil {
		tb.Fatal(err)
	}
	skey, vkey, err := audit.GenerateKey(rand.Reader, "sealgate.test")
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := audit.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	return &Env{Dir: dir, DB: db, Store: st, Keys: keys, Master: mk, Ledger: led, Signer: signer, VKey: vkey, Clock: clock}
}

// Deps returns the seeding dependencies of the Env.
func (e *Env) Deps() Deps { return Deps{DB: e.DB, Store: e.Store, Ledger: e.Ledger, Rand: rand.Reader} }
