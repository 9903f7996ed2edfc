package transfer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/seed"
	"github.com/sealgate/sealgate/transfer"
)

type fixture struct {
	*seed.Env
	c   *contract.Contract
	ctx context.Context
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	e := seed.NewEnv(t, nil)
	ctx := context.Background()
	c, err := contract.Create(ctx, e.DB, e.Keys, e.Ledger, contract.Spec{Code: "C-2026-001", Name: "テスト契約",
		Domains: []string{"client.example"}, DownloadLimit: contract.DefaultLimit}, "cli:test", e.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{Env: e, c: c, ctx: ctx}
}

func (f *fixture) seed(t *testing.T, o seed.Options) []seed.Transfer {
	t.Helper()
	ts, err := seed.Transfers(f.ctx, f.Deps(), f.c, o)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// count returns how many ledger events of type typ were recorded.
func (f *fixture) count(t *testing.T, typ string) int {
	t.Helper()
	n := 0
	err := f.Ledger.Records(f.ctx, f.DB.Read(), 0, 1<<40, func(_ int64, data []byte) error {
		ev, err := audit.ParseRecord(data)
		if ev.Type == typ {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func extend(f *fixture, d contract.Defaults, id string, until time.Time) (time.Time, error) {
	return transfer.Extend(f.ctx, f.DB, f.Ledger, d, id, until, "cli:test", f.Clock.Now())
}

func TestExtend(t *testing.T) {
	f := newFixture(t)
	created := f.Clock.Now()
	ts := f.seed(t, seed.Options{Transfers: 1, Now: created, ExpiresAt: created.Add(14 * 24 * time.Hour)})
	d := contract.Defaults{LinkExpiry: 14 * 24 * time.Hour, MaxExpiry: 30 * 24 * time.Hour, DownloadLimit: 5}
	id := ts[0].ID
	if _, err := extend(f, d, id, created.Add(20*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := extend(f, d, id, created.Add(31*24*time.Hour)); !errors.Is(err, transfer.ErrTooLate) {
		t.Fatalf("beyond the maximum: %v", err)
	}
	if _, err := extend(f, d, id, created.Add(19*24*time.Hour)); !errors.Is(err, transfer.ErrInvalid) {
		t.Fatalf("earlier than now: %v", err)
	}
	// The contract's end date caps it.
	end := created.Add(25 * 24 * time.Hour)
	if _, err := contract.Update(f.ctx, f.DB, f.Ledger, f.c.Code, contract.Changes{EndsAt: &end}, "cli:test", f.Clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := extend(f, d, id, created.Add(26*24*time.Hour)); !errors.Is(err, transfer.ErrTooLate) {
		t.Fatalf("beyond the end date: %v", err)
	}
	got, _ := transfer.Get(f.ctx, f.DB.Read(), id)
	if !got.ExpiresAt.Equal(created.Add(20 * 24 * time.Hour).Truncate(time.Millisecond)) {
		t.Fatalf("expiry %v", got.ExpiresAt)
	}
	if n := f.count(t, audit.TypeExpiryExtended); n != 1 {
		t.Fatalf("%d expiry.extended events", n)
	}
}

// TestRows: the typed queries select what their names say, and the state
// changes are conditional (a second call changes nothing).
func TestRows(t *testing.T) {
	f := newFixture(t)
	now := f.Clock.Now()
	other, err := contract.Create(f.ctx, f.DB, f.Keys, f.Ledger, contract.Spec{Code: "OTHER", AnyRecipient: true, DownloadLimit: contract.DefaultLimit}, "cli:test", now)
	if err != nil {
		t.Fatal(err)
	}
	ts := f.seed(t, seed.Options{Transfers: 2, FilesPerTransfer: 2, Now: now, ExpiresAt: now.Add(time.Hour),
		Recipients: []string{"carol@client.example", "dave@client.example"}})
	if _, err := seed.Transfers(f.ctx, f.Deps(), other, seed.Options{Transfers: 1, Now: now, IDPrefix: "tother"}); err != nil {
		t.Fatal(err)
	}
	objs, err := transfer.ObjectsOfContract(f.ctx, f.DB.Read(), f.c.ID)
	if err != nil || len(objs) != 4 {
		t.Fatalf("objects of the contract: %d, %v", len(objs), err)
	}
	keys, err := transfer.KeysOfContract(f.ctx, f.DB.Read(), f.c.ID)
	if err != nil || len(keys) != 4 {
		t.Fatalf("keys of the contract: %d, %v", len(keys), err)
	}
	all, err := transfer.OfContract(f.ctx, f.DB.Read(), f.c.ID)
	if err != nil || len(all) != 2 || len(all[0].Files) != 2 || len(all[1].Recipients) != 2 || all[0].ID != ts[0].ID {
		t.Fatalf("transfers of the contract: %+v, %v", all, err)
	}
	if ok, err := transfer.Exists(f.ctx, f.DB.Read(), ts[0].ID); !ok || err != nil {
		t.Fatalf("exists: %v, %v", ok, err)
	}
	if ok, err := transfer.Exists(f.ctx, f.DB.Read(), "tnone"); ok || err != nil {
		t.Fatalf("a transfer that does not exist: %v, %v", ok, err)
	}
	if due, err := transfer.Expired(f.ctx, f.DB.Read(), now.Add(time.Hour), 10); err != nil || len(due) != 2 {
		t.Fatalf("expired: %d, %v", len(due), err)
	}

	// The first transfer's objects deleted, then proven absent: each
	// change once.
	ids := []int64{objs[0].FileID, objs[1].FileID}
	write := func(fn func(tx *database.Tx) (map[int64]bool, error)) int {
		t.Helper()
		var n int
		if err := f.DB.Write(f.ctx, func(tx *database.Tx) error {
			changed, err := fn(tx)
			n = len(changed)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	absent := func(tx *database.Tx) (map[int64]bool, error) { return transfer.MarkAbsent(f.ctx, tx, ids, now) }
	deleted := func(tx *database.Tx) (map[int64]bool, error) { return transfer.MarkDeleted(f.ctx, tx, ids, now) }
	if n := write(absent); n != 0 {
		t.Fatalf("%d files proven absent before they were deleted", n)
	}
	if n, again := write(deleted), write(deleted); n != 2 || again != 0 {
		t.Fatalf("deleted %d, then %d", n, again)
	}
	if n, again := write(absent), write(absent); n != 2 || again != 0 {
		t.Fatalf("absent %d, then %d", n, again)
	}
	if left, _ := transfer.ObjectsOfTransfer(f.ctx, f.DB.Read(), ts[0].ID); len(left) != 0 {
		t.Fatalf("%d objects left of a transfer proven absent", len(left))
	}
	recipients := []int64{keys[0].RecipientID}
	erase := func(tx *database.Tx) (map[int64]bool, error) {
		return transfer.EraseKeys(f.ctx, tx, recipients, transfer.StatusRevoked, now)
	}
	if n, again := write(erase), write(erase); n != 1 || again != 0 {
		t.Fatalf("erased %d, then %d", n, again)
	}
	if left, _ := transfer.KeysOfTransfer(f.ctx, f.DB.Read(), keys[0].Transfer); len(left) != 1 {
		t.Fatalf("%d keys left of the transfer, want 1", len(left))
	}
	if keys, objs, err := transfer.Unfinished(f.ctx, f.DB.Read(), f.c.ID); keys != 3 || objs != 2 || err != nil {
		t.Fatalf("remaining: %d keys, %d objects, %v", keys, objs, err)
	}
}
