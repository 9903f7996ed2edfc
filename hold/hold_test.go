package hold

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"github.com/sealgate/sealgate/internal/testpg"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/notice/noticetest"
	"github.com/sealgate/sealgate/storage/fs"
	"github.com/sealgate/sealgate/transfer"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	t     *testing.T
	s     *Service
	db    *database.DB
	clock *clock
	c     *contract.Contract
	mu    sync.Mutex
	mails *noticetest.Queue
	kicks int
	keys  *crypto.Keyring
	led   *audit.Ledger
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := database.Open(ctx, testpg.Target(t, filepath.Join(dir, "db")), testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := fs.Open(filepath.Join(dir, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	mk, _ := crypto.GenerateMasterKey()
	keys, _ := crypto.NewKeyring(mk)
	cl := &clock{t: time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)}
	led, _ := audit.New(audit.Options{Origin: "test/ledger", Now: cl.Now})
	c, err := contract.Create(ctx, db, keys, led, contract.Spec{Code: "C-1", Manager: "boss@corp.example", ApprovalRequired: true,
		AnyRecipient: true, DownloadLimit: contract.DefaultLimit}, "test", cl.Now())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, db: db, clock: cl, c: c, mails: noticetest.New(t, "https://portal.test"), keys: keys, led: led}
	f.s = New(Deps{DB: db, Ledger: led, Now: cl.Now, Notices: f.mails,
		Transfer: destroy.Deps{DB: db, Store: st, Ledger: led, Now: cl.Now},
		Kick:     func() { f.mu.Lock(); f.kicks++; f.mu.Unlock() },
	})
	return f
}

// commit records a message like the gateway's commit does: the message,
// a transfer with one recipient (a wrapped key), its held copy and the
// key notice waiting behind it, and the hold.
func (f *fixture) commit(id string, approval bool, delay time.Duration) {
	f.t.Helper()
	f.commitUnder(f.c, id, approval, delay)
}

// commitUnder is commit under the contract c.
func (f *fixture) commitUnder(c *contract.Contract, id string, approval bool, delay time.Duration) {
	f.t.Helper()
	ctx := context.Background()
	now := f.clock.Now()
	sp := Spec{MessageID: id, Contract: c.Code, ContractID: c.ID, ContractManager: c.Manager, Transfer: "t" + id,
		Sender: "alice@corp.example", Actor: "alice", Subject: "subject " + id, Recipients: []string{"carol@client.example"},
		ReceivedAt: now, Approval: approval, ApprovalExpiresAt: now.Add(72 * time.Hour), ReleaseAt: now.Add(delay), CancelToken: "token" + id}
	err := f.db.Write(ctx, func(tx *database.Tx) error {
		ms := now.UnixMilli()
		if _, err := tx.ExecContext(ctx, `INSERT INTO messages(id, received_at, client_addr, mail_from, subject, size, contract_id, actor) VALUES (?, ?, '127.0.0.1:1', ?, ?, 1, ?, 'alice')`,
			id, ms, sp.Sender, sp.Subject, c.ID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO transfers(id, message_id, contract_id, sender, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
			sp.Transfer, id, c.ID, sp.Sender, ms, ms+1e9); err != nil {
			return err
		}
		var rid, cid int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO recipients(transfer_id, address, token_hash, key_wrapped) VALUES (?, 'carol@client.example', ?, ?) RETURNING id`,
			sp.Transfer, []byte("hash"+id), []byte{1}).Scan(&rid); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `INSERT INTO outbound(message_id, kind, recipient_id, mail_from, rcpts, secret, status, next_attempt_at, created_at)
			VALUES (?, 'sealed', ?, ?, '["carol@client.example"]', ?, 'held', ?, ?) RETURNING id`, id, rid, sp.Sender, []byte{2}, ms, ms).Scan(&cid); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbound(message_id, kind, recipient_id, mail_from, rcpts, secret, after_id, status, next_attempt_at, created_at)
			VALUES (?, 'key', ?, ?, '["carol@client.example"]', ?, ?, 'waiting', ?, ?)`, id, rid, sp.Sender, []byte{3}, cid, ms, ms); err != nil {
			return err
		}
		return f.s.Create(ctx, tx, sp)
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) str(q string, args ...any) string {
	f.t.Helper()
	var s string
	if err := f.db.Read().QueryRow(q, args...).Scan(&s); err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
	return s
}

func (f *fixture) events(typ string) []audit.Event {
	res, err := audit.Search(context.Background(), f.db.Read(), audit.Query{Types: []string{typ}, Oldest: true})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []audit.Event
	for _, r := range res {
		out = append(out, r.Event)
	}
	return out
}

func (f *fixture) mailTo(addr, contains string) bool {
	return len(f.mails.To(addr, contains)) > 0
}

func TestCreateAsksManagersAndTellsSender(t *testing.T) {
	f := newFixture(t)
	f.commit("m1", true, 0)
	if !f.mailTo("boss@corp.example", "https://portal.test/manage/approvals/m1") {
		t.Fatal("the contract's manager was not asked")
	}
	if !f.mailTo("alice@corp.example", "https://portal.test/c/tokenm1") {
		t.Fatal("the sender's receipt has no cancel link")
	}
	if len(f.events(audit.TypeMessageHeld)) != 1 || len(f.events(audit.TypeApprovalRequested)) != 1 {
		t.Fatal("ledger events missing")
	}
	// Awaiting approval: Release leaves it alone.
	if n, _, err := f.s.Release(context.Background()); err != nil || n != 0 {
		t.Fatalf("released %d before approval (%v)", n, err)
	}
	if got := f.str(`SELECT status FROM outbound WHERE kind = 'sealed'`); got != "held" {
		t.Fatalf("copy is %s", got)
	}
}

// List reads each held message from the owners of its message, contract,
// transfer and copies, and selects by contract code (exactly, as given).
func TestListByContract(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c2, err := contract.Create(ctx, f.db, f.keys, f.led, contract.Spec{Code: "C-2", Manager: "other@corp.example", ApprovalRequired: true,
		AnyRecipient: true, DownloadLimit: contract.DefaultLimit}, "test", f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	f.commit("m1", true, 0)
	f.clock.Advance(time.Minute)
	f.commitUnder(c2, "m2", true, 0)
	ids := func(hs []*Held) []string {
		var out []string
		for _, h := range hs {
			out = append(out, h.MessageID)
		}
		return out
	}
	for _, c := range []struct {
		f    Filter
		want []string
	}{
		{Filter{}, []string{"m2", "m1"}},
		{Filter{AwaitingOnly: true}, []string{"m1", "m2"}},
		{Filter{Contracts: []string{"C-2"}}, []string{"m2"}},
		{Filter{Contracts: []string{"C-1", "C-2"}, AwaitingOnly: true}, []string{"m1", "m2"}},
		{Filter{Contracts: []string{"c-2"}}, nil},
		{Filter{Contracts: []string{}}, nil},
	} {
		hs, err := List(ctx, f.db.Read(), c.f)
		if err != nil || !slices.Equal(ids(hs), c.want) {
			t.Errorf("List(%+v) = %v, %v; want %v", c.f, ids(hs), err, c.want)
		}
	}
	hs, err := List(ctx, f.db.Read(), Filter{Contracts: []string{"C-2"}})
	if err != nil || len(hs) != 1 {
		t.Fatalf("List: %v, %v", hs, err)
	}
	h := hs[0]
	if h.Contract != "C-2" || h.ContractID != c2.ID || h.ContractManager != "other@corp.example" || h.Subject != "subject m2" ||
		h.Transfer != "tm2" || !h.ReceivedAt.Equal(f.clock.Now()) || !slices.Equal(h.Recipients, []string{"carol@client.example"}) {
		t.Fatalf("held message read as %+v", h)
	}
}

func TestApproveWaitsForTheDelay(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.commit("m1", true, 10*time.Minute)
	if err := f.s.Approve(ctx, "m1", Decider{Name: "alice", Email: "alice@corp.example"}, ""); !errors.Is(err, ErrSelfApproval) {
		t.Fatalf("self-approval: %v", err)
	}
	f.clock.Advance(time.Minute)
	if err := f.s.Approve(ctx, "m1", Decider{Name: "boss", Email: "boss@corp.example"}, "ok"); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Approve(ctx, "m1", Decider{Name: "boss"}, "ok"); !errors.Is(err, ErrNotPending) {
		t.Fatalf("second approval: %v", err)
	}
	n, next, err := f.s.Release(ctx)
	if err != nil || n != 0 || !next.Equal(f.clock.Now().Add(9*time.Minute)) {
		t.Fatalf("release during the delay: %d next %v (%v)", n, next, err)
	}
	f.clock.Advance(9 * time.Minute)
	if n, _, err := f.s.Release(ctx); err != nil || n != 1 {
		t.Fatalf("release after the delay: %d (%v)", n, err)
	}
	if got := f.str(`SELECT status FROM outbound WHERE kind = 'sealed'`); got != "queued" {
		t.Fatalf("copy is %s", got)
	}
	if got := f.str(`SELECT status FROM outbound WHERE kind = 'key'`); got != "waiting" {
		t.Fatalf("key notice is %s (it follows its copy)", got)
	}
	if f.kicks == 0 {
		t.Fatal("the queue was not woken")
	}
	// Once released, the sender can no longer cancel here.
	if err := f.s.Cancel(ctx, "m1", Decider{Name: "alice"}); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("cancel after release: %v", err)
	}
	if !f.mailTo("alice@corp.example", "boss") {
		t.Fatal("the sender was not told of the approval")
	}
	rel := f.events(audit.TypeMessageReleased)
	if len(rel) != 1 || rel[0].Details["approved_by"] != "boss" {
		t.Fatalf("message.released: %+v", rel)
	}
}

func TestCancelDuringDelay(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.commit("m1", false, 5*time.Minute)
	h, err := ByCancelToken(ctx, f.db.Read(), "tokenm1")
	if err != nil || h.MessageID != "m1" {
		t.Fatalf("by token: %v", err)
	}
	f.clock.Advance(time.Minute)
	if err := f.s.Cancel(ctx, "m1", Decider{Name: "alice", Email: "alice@corp.example"}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(10 * time.Minute)
	if n, _, err := f.s.Release(ctx); err != nil || n != 0 {
		t.Fatalf("released a cancelled message: %d (%v)", n, err)
	}
	for _, q := range []string{`SELECT status FROM outbound WHERE kind = 'sealed'`, `SELECT status FROM outbound WHERE kind = 'key'`} {
		if got := f.str(q); got != "cancelled" {
			t.Fatalf("%s: %s", q, got)
		}
	}
	if got := f.str(`SELECT status FROM transfers`); got != transfer.StatusRevoked {
		t.Fatalf("transfer %s", got)
	}
	if got := f.str(`SELECT COUNT(*) FROM recipients WHERE key_wrapped IS NULL AND key_destroyed_at IS NOT NULL`); got != "1" {
		t.Fatal("the recipient's key was not destroyed")
	}
	if got := f.str(`SELECT CASE WHEN COALESCE(finished_at, 0) > 0 THEN 1 ELSE 0 END FROM holds`); got != "1" {
		t.Fatal("destruction not recorded as finished")
	}
	if len(f.events(audit.TypeMessageCancelled)) != 1 {
		t.Fatal("no message.cancelled")
	}
}

func TestRefuseNeedsReason(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.commit("m1", true, 0)
	if err := f.s.Refuse(ctx, "m1", Decider{Name: "boss"}, "  "); !errors.Is(err, ErrReasonRequired) {
		t.Fatalf("refusal without a reason: %v", err)
	}
	if err := f.s.Refuse(ctx, "m1", Decider{Name: "boss"}, "wrong client"); err != nil {
		t.Fatal(err)
	}
	if got := f.str(`SELECT status || '/' || approval || '/' || decided_by || '/' || reason FROM holds`); got != "refused/refused/boss/wrong client" {
		t.Fatal(got)
	}
	if got := f.str(`SELECT status FROM transfers`); got != transfer.StatusRevoked {
		t.Fatalf("transfer %s", got)
	}
	if !f.mailTo("alice@corp.example", "wrong client") {
		t.Fatal("the sender was not told the reason")
	}
}

// TestExpire: an undecided message is destroyed when its approval lapses,
// and a destruction a crash interrupted is finished by the next pass.
func TestExpire(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.commit("m1", true, 0)
	f.clock.Advance(71 * time.Hour)
	if n, err := f.s.Expire(ctx); err != nil || n != 0 {
		t.Fatalf("expired early: %d (%v)", n, err)
	}
	f.clock.Advance(time.Hour)
	if n, err := f.s.Expire(ctx); err != nil || n != 1 {
		t.Fatalf("expire: %d (%v)", n, err)
	}
	if got := f.str(`SELECT status || '/' || approval FROM holds`); got != "expired/expired" {
		t.Fatal(got)
	}
	if got := f.str(`SELECT status FROM transfers`); got != transfer.StatusRevoked {
		t.Fatalf("transfer %s", got)
	}
	if len(f.events(audit.TypeApprovalExpired)) != 1 || !f.mailTo("alice@corp.example", "Expired") {
		t.Fatal("expiry not recorded or not told")
	}
	// A refusal whose destruction was cut short (simulated) is finished.
	f.commit("m2", true, 0)
	err := f.db.Write(ctx, func(tx *database.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE holds SET status = 'refused', approval = 'refused' WHERE message_id = 'm2'`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Expire(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.str(`SELECT status FROM transfers WHERE message_id = 'm2'`); got != transfer.StatusRevoked {
		t.Fatalf("interrupted destruction not finished: %s", got)
	}
}

func TestApprovers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	err := f.db.Write(ctx, func(tx *database.Tx) error {
		for i, a := range []struct{ name, email, role, contract, status string }{
			{"m1", "m1@corp.example", "manager", "C-1", "active"},
			{"m2", "m2@corp.example", "manager", "", "active"},
			{"m3", "m3@corp.example", "manager", "C-2", "active"},
			{"m4", "m4@corp.example", "manager", "C-1", "disabled"},
			{"s1", "s1@corp.example", "sender", "", "active"},
		} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO accounts(id, name, email, password_hash, status, created_at, password_changed_at) VALUES (?, ?, ?, 'x', ?, 0, 0)`,
				i+1, a.name, a.email, a.status); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO account_roles(account_id, role, contract) VALUES (?, ?, ?)`, i+1, a.role, a.contract); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Approvers(ctx, f.db.Read(), "C-1", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "m1@corp.example,m2@corp.example,s1@corp.example" {
		t.Fatalf("approvers %v", got)
	}
	// The register's field is free text: a display name is dropped, junk
	// is ignored (it must not make the commit fail).
	for manager, want := range map[string]string{"Boss <b@corp.example>": "m2@corp.example,b@corp.example", "b@@": "m2@corp.example", "nobody": "m2@corp.example"} {
		got, err := Approvers(ctx, f.db.Read(), "C-9", manager)
		if err != nil || strings.Join(got, ",") != want {
			t.Fatalf("manager %q: %v %v", manager, got, err)
		}
	}
}

// TestApproversCanonical: approval requests go to canonical addresses
// only; an address with routing syntax (which the next hop could deliver
// outside) is left out rather than mailed or failing the commit.
func TestApproversCanonical(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	err := f.db.Write(ctx, func(tx *database.Tx) error {
		for i, email := range []string{"m1%evil.example@corp.example", "M2@Corp.Example.", "m2@corp.example"} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO accounts(id, name, email, password_hash, status, created_at, password_changed_at) VALUES (?, ?, ?, 'x', 'active', 0, 0)`,
				i+1, fmt.Sprintf("m%d", i+1), email); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO account_roles(account_id, role, contract) VALUES (?, 'manager', 'C-1')`, i+1); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for manager, want := range map[string]string{
		"boss!evil.example@corp.example": "m2@corp.example",
		"boss@corp.example":              "m2@corp.example,boss@corp.example",
	} {
		got, err := Approvers(ctx, f.db.Read(), "C-1", manager)
		if err != nil || strings.ToLower(strings.Join(got, ",")) != want {
			t.Errorf("manager %q: approvers %v (%v), want %s", manager, got, err, want)
		}
	}
}

// TestSelfApprovalCanonical: the sender's address in another spelling is
// still the sender's.
func TestSelfApprovalCanonical(t *testing.T) {
	f := newFixture(t)
	f.commit("m1", true, 0)
	err := f.s.Approve(context.Background(), "m1", Decider{Name: "alice2", Email: "Alice@CORP.EXAMPLE."}, "")
	if !errors.Is(err, ErrSelfApproval) {
		t.Fatalf("the sender approved their own message under another spelling: %v", err)
	}
}
