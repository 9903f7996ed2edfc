package contract_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/seed"
)

func TestCreateUpdateAllows(t *testing.T) {
	e := seed.NewEnv(t, nil)
	ctx := context.Background()
	now := e.Clock.Now()
	c, err := contract.Create(ctx, e.DB, e.Keys, e.Ledger, contract.Spec{
		Code: "C-2026-001", Name: "見積支援業務", Counterparty: "株式会社クライアント", Manager: "boss@corp.example",
		Domains: []string{"@Client.Example", "client.example"}, Addresses: []string{"Partner@Freelance.example"},
		StartsAt: now.Add(-time.Hour), EndsAt: now.Add(90 * 24 * time.Hour), LinkExpiry: 7 * 24 * time.Hour,
		DownloadLimit: 3, StripTag: true,
	}, "cli:alice", now)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Domains, ",") != "client.example" || strings.Join(c.Addresses, ",") != "partner@freelance.example" {
		t.Fatalf("allowed lists not normalized: %v %v", c.Domains, c.Addresses)
	}
	if c.KeyDelivery != contract.KeySeparateMail || c.DownloadLimitOr(contract.Defaults{DownloadLimit: 5}) != 3 {
		t.Fatalf("defaults: %+v", c)
	}
	for addr, want := range map[string]bool{
		"carol@client.example": true, "x@mail.client.example": true, "PARTNER@freelance.example": true,
		"other@freelance.example": false, "a@client.example.evil": false, "a@notclient.example": false,
	} {
		if got := c.Allows(addr); got != want {
			t.Errorf("Allows(%s) = %v", addr, got)
		}
	}
	if bad, ok := c.FirstDisallowed([]string{"carol@client.example", "eve@evil.example", "x@y.example"}); !ok || bad != "eve@evil.example" {
		t.Errorf("FirstDisallowed = %q", bad)
	}
	d := contract.Defaults{LinkExpiry: 14 * 24 * time.Hour, MaxExpiry: 30 * 24 * time.Hour}
	if got := c.ExpiresAt(now, d); !got.Equal(now.Add(7 * 24 * time.Hour)) {
		t.Errorf("ExpiresAt = %v", got)
	}
	if got := c.ExpiresAt(now.Add(88*24*time.Hour), d); !got.Equal(c.EndsAt) {
		t.Errorf("ExpiresAt near the end = %v, want the end date %v", got, c.EndsAt)
	}
	if err := c.Usable(now); err != nil {
		t.Fatal(err)
	}
	if err := c.Usable(now.Add(-2 * time.Hour)); !errors.Is(err, contract.ErrNotStarted) {
		t.Errorf("before start: %v", err)
	}
	if err := c.Usable(now.Add(91 * 24 * time.Hour)); !errors.Is(err, contract.ErrExpired) {
		t.Errorf("after end: %v", err)
	}

	if _, err := contract.Create(ctx, e.DB, e.Keys, e.Ledger, contract.Spec{Code: "c-2026-001", DownloadLimit: contract.DefaultLimit}, "cli:alice", now); !errors.Is(err, contract.ErrExists) {
		t.Errorf("duplicate code (case-insensitive): %v", err)
	}
	for _, bad := range []string{"", "-x", "a b", "[C]", strings.Repeat("a", 65)} {
		if _, err := contract.Create(ctx, e.DB, e.Keys, e.Ledger, contract.Spec{Code: bad, DownloadLimit: contract.DefaultLimit}, "cli", now); !errors.Is(err, contract.ErrInvalid) {
			t.Errorf("code %q: %v", bad, err)
		}
	}

	name := "見積支援業務（第2期）"
	c2, err := contract.Update(ctx, e.DB, e.Ledger, "C-2026-001", contract.Changes{Name: &name, AddDomains: []string{"partner.example"},
		RemoveAddresses: []string{"partner@freelance.example"}}, "cli:bob", e.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c2.Name != name || strings.Join(c2.Domains, ",") != "client.example,partner.example" || len(c2.Addresses) != 0 || c2.UpdatedAt.IsZero() {
		t.Fatalf("after update: %+v", c2)
	}
	var changed audit.Event
	e.Ledger.Records(ctx, e.DB.Read(), 0, 100, func(_ int64, data []byte) error {
		ev, _ := audit.ParseRecord(data)
		if ev.Type == audit.TypeContractChanged {
			changed = ev
		}
		return nil
	})
	if changed.Details["domains"] != "client.example,partner.example" || changed.Details["was_domains"] != "client.example" ||
		changed.Details["was_addresses"] != "partner@freelance.example" || changed.Actor != "cli:bob" {
		t.Fatalf("contract.changed details: %v", changed.Details)
	}
	list, err := contract.List(ctx, e.DB.Read())
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
}

func TestEnsureDefaultAllowsAnyone(t *testing.T) {
	e := seed.NewEnv(t, nil)
	ctx := context.Background()
	c, err := contract.Ensure(ctx, e.DB, e.Keys, e.Ledger, "DEFAULT", "Default", e.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !c.AnyRecipient || !c.Allows("anyone@anywhere.example") || c.Restricts() {
		t.Fatalf("default contract: %+v", c)
	}
	again, err := contract.Ensure(ctx, e.DB, e.Keys, e.Ledger, "DEFAULT", "Default", e.Clock.Now())
	if err != nil || again.ID != c.ID {
		t.Fatal("Ensure created a second default contract")
	}
	d := contract.Defaults{LinkExpiry: time.Hour, DownloadLimit: 7}
	if c.LinkExpiryOr(d) != time.Hour || c.DownloadLimitOr(d) != 7 {
		t.Fatal("the default contract does not follow the configuration")
	}
}

func TestCandidates(t *testing.T) {
	e := seed.NewEnv(t, nil)
	ctx := context.Background()
	now := e.Clock.Now()
	mk := func(code string, domains ...string) {
		if _, err := contract.Create(ctx, e.DB, e.Keys, e.Ledger, contract.Spec{Code: code, Domains: domains, DownloadLimit: contract.DefaultLimit}, "cli", now); err != nil {
			t.Fatal(err)
		}
	}
	mk("A", "a.example")
	mk("AB", "a.example", "b.example")
	mk("C", "c.example")
	contract.Ensure(ctx, e.DB, e.Keys, e.Ledger, "DEFAULT", "", now)
	codes := func(addrs ...string) string {
		cs, err := contract.Candidates(ctx, e.DB.Read(), addrs, now)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range cs {
			out = append(out, c.Code)
		}
		return strings.Join(out, ",")
	}
	if got := codes("x@b.example"); got != "AB" {
		t.Errorf("b only: %s", got)
	}
	if got := codes("x@a.example"); got != "A,AB" {
		t.Errorf("a: %s (ambiguous, routing takes the default)", got)
	}
	if got := codes("x@a.example", "y@c.example"); got != "" {
		t.Errorf("a and c: %s", got)
	}
}

func TestParseTag(t *testing.T) {
	known := func(c string) bool { return strings.EqualFold(c, "C-2026-001") }
	for _, tc := range []struct{ in, code, out string }{
		{"[C-2026-001] 見積書", "C-2026-001", "見積書"},
		{"Re: [External] [c-2026-001] quote", "c-2026-001", "Re: [External] quote"},
		{"【C-2026-001】　見積書の送付", "C-2026-001", "見積書の送付"},
		{"Fwd: quote [C-2026-001]", "C-2026-001", "Fwd: quote "},
		{"[External] quote", "", "[External] quote"},
		{"[C-2026-002] unknown", "", "[C-2026-002] unknown"},
		{"[C-2026-001", "", "[C-2026-001"},
	} {
		code, out, ok := contract.ParseTag(tc.in, known)
		if code != tc.code || ok != (tc.code != "") || (ok && out != tc.out) {
			t.Errorf("ParseTag(%q) = %q, %q, %v", tc.in, code, out, ok)
		}
	}
}

// TestAllowsCanonical: a contract allows an address on its canonical form
// only — routing syntax that names an allowed domain last is allowed by
// nobody, and the register stores canonical domains and addresses.
func TestAllowsCanonical(t *testing.T) {
	e := seed.NewEnv(t, nil)
	ctx := context.Background()
	c, err := contract.Create(ctx, e.DB, e.Keys, e.Ledger, contract.Spec{
		Code: "C-IDN", Domains: []string{"Client.Example.", "日本語.JP"}, Addresses: []string{"Solo@Freelance.Example."},
		DownloadLimit: contract.DefaultLimit,
	}, "cli:test", e.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Domains, ",") != "client.example,xn--wgv71a119e.jp" || strings.Join(c.Addresses, ",") != "solo@freelance.example" {
		t.Fatalf("register not canonical: %v %v", c.Domains, c.Addresses)
	}
	for addr, want := range map[string]bool{
		"carol@CLIENT.EXAMPLE.":               true,
		"carol@client。example":                true,
		"taro@日本語.jp":                         true,
		"taro@xn--wgv71a119e.jp":              true,
		"solo@freelance.example.":             true,
		"eve%evil.example@client.example":     false,
		"eve!evil.example@client.example":     false,
		"eve@evil.example@client.example":     false,
		"carol@client.example.evil.example":   false,
		"carol@client.exаmple":                false, // Cyrillic а
		"solo%evil.example@freelance.example": false,
	} {
		if got := c.Allows(addr); got != want {
			t.Errorf("Allows(%q) = %v, want %v", addr, got, want)
		}
	}
	for _, bad := range []string{"corp..example", "[192.0.2.1]", "localhost", "a_b.example"} {
		if _, err := contract.NormalizeDomain(bad); !errors.Is(err, contract.ErrInvalid) {
			t.Errorf("NormalizeDomain(%q) = %v", bad, err)
		}
	}
	for _, bad := range []string{"eve%evil.example@client.example", "a!b@client.example", `"a@b"@client.example`} {
		if _, err := contract.NormalizeAddress(bad); !errors.Is(err, contract.ErrInvalid) {
			t.Errorf("NormalizeAddress(%q) = %v", bad, err)
		}
	}
}

// TestUpdateDropsStaleValues: a value stored before addresses were
// canonical that no longer parses does not block updates; it is dropped,
// and the change records it.
func TestUpdateDropsStaleValues(t *testing.T) {
	e := seed.NewEnv(t, nil)
	ctx := context.Background()
	c, err := contract.Create(ctx, e.DB, e.Keys, e.Ledger, contract.Spec{Code: "C-OLDVAL", Domains: []string{"client.example"},
		DownloadLimit: contract.DefaultLimit}, "cli:test", e.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.DB.Write(ctx, func(tx *database.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO contract_allowed(contract_id, kind, value) VALUES (?, 'address', 'eve%evil.example@client.example')`, c.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	name := "renamed"
	got, err := contract.Update(ctx, e.DB, e.Ledger, "C-OLDVAL", contract.Changes{Name: &name}, "cli:test", e.Clock.Now())
	if err != nil {
		t.Fatalf("update blocked by a stale value: %v", err)
	}
	if len(got.Addresses) != 0 || got.Name != "renamed" {
		t.Fatalf("after update: %+v", got)
	}
}

// TestStatusAndCodes: the reads other packages make of the register
// (the commit's re-check of a contract's state, codes by id).
func TestStatusAndCodes(t *testing.T) {
	e := seed.NewEnv(t, nil)
	ctx := context.Background()
	var ids []int64
	for _, code := range []string{"C-2026-001", "C-2026-002"} {
		c, err := contract.Create(ctx, e.DB, e.Keys, e.Ledger, contract.Spec{Code: code, Domains: []string{"client.example"},
			DownloadLimit: contract.DefaultLimit}, "cli:alice", e.Clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	if err := e.DB.Write(ctx, func(tx *database.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE contracts SET status = 'ending' WHERE id = ?`, ids[1])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if st, err := contract.Status(ctx, e.DB.Read(), ids[1]); err != nil || st != contract.StatusEnding {
		t.Fatalf("status %q %v", st, err)
	}
	if _, err := contract.Status(ctx, e.DB.Read(), 999); !errors.Is(err, contract.ErrNotFound) {
		t.Fatalf("unknown contract: %v", err)
	}
	codes, err := contract.CodesByID(ctx, e.DB.Read(), ids[0], ids[1], 999)
	if err != nil || len(codes) != 2 || codes[ids[0]] != "C-2026-001" || codes[ids[1]] != "C-2026-002" {
		t.Fatalf("codes %v %v", codes, err)
	}
	active, err := contract.ActiveCodes(ctx, e.DB.Read())
	if err != nil || len(active) != 1 || active[ids[0]] != "C-2026-001" {
		t.Fatalf("active %v %v", active, err)
	}
}
