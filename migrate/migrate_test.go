package migrate_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testdb"

	"golang.org/x/mod/sumdb/note"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/seed"
	"github.com/sealgate/sealgate/internal/testpg"
	"github.com/sealgate/sealgate/migrate"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/storage/fs"
)

func TestMain(m *testing.M) { testpg.Main(m) }

const origin = "sealgate.test/ledger"

// newSource makes an embedded installation (SQLite, fs store) with a
// contract and transfers (files in the store, ledger events), the last
// events not covered by a checkpoint.
func newSource(t *testing.T) *seed.Env {
	t.Helper()
	ctx := context.Background()
	e := seed.NewSQLiteEnv(t, nil)
	c, err := contract.Create(ctx, e.DB, e.Keys, e.Ledger, contract.Spec{Code: "C-M-1", Name: "移行", Domains: []string{"client.example"},
		DownloadLimit: contract.DefaultLimit}, "cli:test", e.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seed.Transfers(ctx, e.Deps(), c, seed.Options{Transfers: 3, FilesPerTransfer: 2, Now: e.Clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Ledger.Checkpoint(ctx, e.DB, e.Signer); err != nil {
		t.Fatal(err)
	}
	if _, err := seed.Transfers(ctx, e.Deps(), c, seed.Options{Transfers: 1, Now: e.Clock.Now(), IDPrefix: "late"}); err != nil {
		t.Fatal(err)
	}
	return e
}

func source(e *seed.Env) migrate.Source {
	return migrate.Source{DB: e.DB, Store: e.Store, Ledger: e.Ledger, VerifierKey: e.VKey,
		Signer: func() (note.Signer, error) { return e.Signer, nil }}
}

// newTarget makes a PostgreSQL database and a store for the bucket (an fs
// store here: the copy to a real S3 server is tested end to end).
func newTarget(t *testing.T) migrate.Target {
	t.Helper()
	ctx := context.Background()
	db, err := database.Open(ctx, testpg.URL(t), testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := fs.Open(filepath.Join(t.TempDir(), "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	led, err := audit.New(audit.Options{Origin: origin, Store: st, Names: true})
	if err != nil {
		t.Fatal(err)
	}
	return migrate.Target{DB: db, Objects: st, Ledger: led}
}

func listKeys(t *testing.T, st storage.Store) []string {
	t.Helper()
	var keys []string
	if err := st.(storage.Lister).List(context.Background(), "", func(i storage.Info) error {
		keys = append(keys, i.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestRun: every table, every object, the ledger: copied and verified.
// The source's newest checkpoint did not cover its last events, so one
// was signed there first, and the target's tree extends it.
func TestRun(t *testing.T) {
	ctx := context.Background()
	src := newSource(t)
	dst := newTarget(t)
	var events []migrate.Event
	rep, err := migrate.Run(ctx, source(src), dst, migrate.Options{Progress: func(ev migrate.Event) { events = append(events, ev) }})
	if err != nil {
		t.Fatal(err)
	}
	srcCounts, err := src.DB.RowCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	for _, c := range srcCounts {
		want[c.Table] = c.Rows
	}
	if want["files"] != 7 || want["ledger_records"] == 0 {
		t.Fatalf("the source is not what the test made: %v", want)
	}
	if len(rep.Tables) != len(srcCounts) {
		t.Fatalf("%d tables copied, %d in the source", len(rep.Tables), len(srcCounts))
	}
	for _, c := range rep.Tables {
		if c.Rows != want[c.Table] {
			t.Errorf("%s: %d rows copied, %d in the source", c.Table, c.Rows, want[c.Table])
		}
	}
	if rep.Files != 7 || rep.Objects["sealed/"] != 7 {
		t.Errorf("files checked %d, sealed objects %d (want 7 each)", rep.Files, rep.Objects["sealed/"])
	}
	srcKeys, dstKeys := listKeys(t, src.Store), listKeys(t, dst.Objects)
	if strings.Join(srcKeys, "\n") != strings.Join(dstKeys, "\n") {
		t.Errorf("keys differ:\nsource %v\ntarget %v", srcKeys, dstKeys)
	}
	size, err := src.Ledger.Size(ctx, src.DB.Read())
	if err != nil {
		t.Fatal(err)
	}
	// The old checkpoint covers every entry but its own record.
	if rep.Checkpoint == nil || rep.Checkpoint.Size != size-1 {
		t.Fatalf("old checkpoint %+v, the source's ledger has %d entries", rep.Checkpoint, size)
	}
	if rep.Ledger == nil || rep.Ledger.Size != size {
		t.Fatalf("target ledger report %+v", rep.Ledger)
	}
	if events[0].Kind != migrate.EventCheckpoint || !events[0].Signed {
		t.Errorf("first event %+v: want a checkpoint signed now", events[0])
	}
	// The target's ledger goes on: an event appended and a checkpoint
	// signed there extend the old checkpoint.
	err = dst.DB.Write(ctx, func(tx *database.Tx) error {
		_, err := dst.Ledger.Append(ctx, tx, audit.Event{Type: audit.TypeMessageRefused, Actor: "system"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	newer, err := dst.Ledger.Checkpoint(ctx, dst.DB, src.Signer)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := dst.Ledger.ProveConsistency(ctx, dst.DB.Read(), rep.Checkpoint, newer)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.CheckConsistency(src.VKey, rep.Checkpoint.Note, newer.Note, proof); err != nil {
		t.Fatalf("the old checkpoint is not consistent with the target's newer tree: %v", err)
	}
}

// TestRefusesNonEmptyTarget: a second migration into the database the
// first filled is refused, saying so in both languages, and changes
// nothing.
func TestRefusesNonEmptyTarget(t *testing.T) {
	ctx := context.Background()
	src := newSource(t)
	dst := newTarget(t)
	if _, err := migrate.Run(ctx, source(src), dst, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	before, err := dst.DB.RowCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := newTarget(t)
	dst.Objects = other.Objects // an empty bucket: the database alone refuses
	dst.LedgerStore = nil
	_, err = migrate.Run(ctx, source(src), dst, migrate.Options{})
	if !errors.Is(err, migrate.ErrTargetNotEmpty) || !strings.Contains(err.Error(), "空ではありません") || !strings.Contains(err.Error(), "contracts (1)") {
		t.Fatalf("migration into a full database: %v", err)
	}
	if keys := listKeys(t, other.Objects); len(keys) != 0 {
		t.Errorf("the refused migration copied objects: %v", keys)
	}
	after, err := dst.DB.RowCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("%s: %d rows before, %d after the refused migration", before[i].Table, before[i].Rows, after[i].Rows)
		}
	}
}

// TestRefusesForeignObjects: a bucket holding an object that is not the
// source's is refused before anything is copied.
func TestRefusesForeignObjects(t *testing.T) {
	ctx := context.Background()
	src := newSource(t)
	dst := newTarget(t)
	if _, err := dst.Objects.Put(ctx, "sealed/other/1.age", strings.NewReader("someone else's")); err != nil {
		t.Fatal(err)
	}
	_, err := migrate.Run(ctx, source(src), dst, migrate.Options{})
	if !errors.Is(err, migrate.ErrBucketNotEmpty) || !strings.Contains(err.Error(), "sealed/other/1.age") {
		t.Fatalf("migration into a used bucket: %v", err)
	}
	if err := dst.DB.CheckEmpty(ctx); err != nil {
		t.Fatalf("the refused migration wrote the database: %v", err)
	}
}

// failingStore fails every Put after the first n.
type failingStore struct {
	storage.Store
	n int
}

func (f *failingStore) Put(ctx context.Context, key string, r io.Reader) (storage.Info, error) {
	if f.n <= 0 {
		return storage.Info{}, errors.New("injected failure")
	}
	f.n--
	return f.Store.Put(ctx, key, r)
}

func (f *failingStore) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	return f.Store.(storage.Lister).List(ctx, prefix, fn)
}

// TestRestartAfterInterruption: a migration interrupted while copying
// objects leaves the database empty, and running it again completes.
func TestRestartAfterInterruption(t *testing.T) {
	ctx := context.Background()
	src := newSource(t)
	dst := newTarget(t)
	bucket := dst.Objects
	dst.Objects = &failingStore{Store: bucket, n: 3}
	if _, err := migrate.Run(ctx, source(src), dst, migrate.Options{}); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("interrupted migration: %v", err)
	}
	if n := len(listKeys(t, bucket)); n != 3 {
		t.Fatalf("%d objects copied before the failure, want 3", n)
	}
	if err := dst.DB.CheckEmpty(ctx); err != nil {
		t.Fatalf("after the interruption: %v", err)
	}
	dst.Objects = bucket
	if _, err := migrate.Run(ctx, source(src), dst, migrate.Options{}); err != nil {
		t.Fatalf("second run: %v", err)
	}
}

// TestVerifyFindsChangedObject: --verify of a migration whose bucket
// copy was changed afterwards fails, naming the object.
func TestVerifyFindsChangedObject(t *testing.T) {
	ctx := context.Background()
	src := newSource(t)
	dst := newTarget(t)
	if _, err := migrate.Run(ctx, source(src), dst, migrate.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Run(ctx, source(src), dst, migrate.Options{VerifyOnly: true}); err != nil {
		t.Fatalf("verify of an intact migration: %v", err)
	}
	var key string
	for _, k := range listKeys(t, dst.Objects) {
		if strings.HasPrefix(k, "sealed/") {
			key = k
			break
		}
	}
	rc, _, err := dst.Objects.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	b[len(b)-1] ^= 1
	if _, err := dst.Objects.Put(ctx, key, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	_, err = migrate.Run(ctx, source(src), dst, migrate.Options{VerifyOnly: true})
	if !errors.Is(err, migrate.ErrMismatch) || !strings.Contains(err.Error(), key) {
		t.Fatalf("verify of a changed object: %v", err)
	}
}
