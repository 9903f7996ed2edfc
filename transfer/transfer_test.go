package transfer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
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
