package outbox_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"github.com/sealgate/sealgate/internal/testpg"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/outbox"
	"github.com/sealgate/sealgate/transfer"
)

type fixture struct {
	t   *testing.T
	ctx context.Context
	db  *database.DB
	c   *contract.Contract
	now time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := database.Open(ctx, testpg.Target(t, filepath.Join(t.TempDir(), "db")), testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	mk, _ := crypto.GenerateMasterKey()
	keys, _ := crypto.NewKeyring(mk)
	now := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	led, _ := audit.New(audit.Options{Origin: "test/ledger", Now: func() time.Time { return now }})
	c, err := contract.Create(ctx, db, keys, led, contract.Spec{Code: "C-1", AnyRecipient: true, DownloadLimit: contract.DefaultLimit}, "test", now)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ctx: ctx, db: db, c: c, now: now}
}

func (f *fixture) write(fn func(tx *database.Tx) error) {
	f.t.Helper()
	if err := f.db.Write(f.ctx, fn); err != nil {
		f.t.Fatal(err)
	}
}

// message records a message with a transfer to each of rcpts, and queues
// what the gateway queues for it: a sealed copy and a waiting key notice
// per recipient (held if held), and an internal copy. It returns the
// recipients' ids.
func (f *fixture) message(id string, held bool, rcpts ...string) []int64 {
	f.t.Helper()
	var ids []int64
	f.write(func(tx *database.Tx) error {
		ids = nil // a write function may run twice
		if err := transfer.InsertMessage(f.ctx, tx, transfer.Message{ID: id, ReceivedAt: f.now, Client: "c", MailFrom: "alice@corp.example", ContractID: f.c.ID}); err != nil {
			return err
		}
		if err := transfer.InsertTransfer(f.ctx, tx, transfer.NewTransfer{ID: "t" + id, MessageID: id, ContractID: f.c.ID, Sender: "alice@corp.example",
			CreatedAt: f.now, ExpiresAt: f.now.Add(time.Hour)}); err != nil {
			return err
		}
		for _, r := range rcpts {
			rid, err := transfer.InsertRecipient(f.ctx, tx, "t"+id, transfer.NewRecipient{Address: r, TokenHash: []byte(id + r), KeyWrapped: []byte{1}})
			if err != nil {
				return err
			}
			ids = append(ids, rid)
			copyID, err := outbox.InsertCopy(f.ctx, tx, outbox.Copy{MessageID: id, RecipientID: rid, From: "alice@corp.example", To: r,
				Spool: "skel-" + id, Token: []byte("token"), Held: held, At: f.now})
			if err != nil {
				return err
			}
			if err := outbox.InsertKey(f.ctx, tx, outbox.Key{MessageID: id, RecipientID: rid, From: "alice@corp.example", To: r,
				Passphrase: []byte("pass"), After: copyID, Delay: time.Minute, At: f.now}); err != nil {
				return err
			}
		}
		return outbox.InsertPlain(f.ctx, tx, outbox.Plain{MessageID: id, From: "alice@corp.example", To: []string{"bob@corp.example"},
			Spool: "orig-" + id, At: f.now})
	})
	return ids
}

func (f *fixture) due(at time.Time) []outbox.Row {
	f.t.Helper()
	rows, err := outbox.Due(f.ctx, f.db.Read(), at, 100)
	if err != nil {
		f.t.Fatal(err)
	}
	return rows
}

func (f *fixture) row(id int64) *outbox.Row {
	f.t.Helper()
	r, err := outbox.Get(f.ctx, f.db.Read(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func kinds(rows []outbox.Row) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Kind)
	}
	return out
}

func byKind(rows []outbox.Row, kind string) outbox.Row {
	for _, r := range rows {
		if r.Kind == kind {
			return r
		}
	}
	return outbox.Row{}
}

// The key notice waits for its sealed copy, then follows it after its
// delay; a delivered row keeps no secret and is no longer due.
func TestKeyNoticeFollowsDeliveredCopy(t *testing.T) {
	f := newFixture(t)
	f.message("m1", false, "carol@client.example")
	rows := f.due(f.now)
	if got := kinds(rows); !slices.Equal(got, []string{"sealed", "plain"}) {
		t.Fatalf("due: %v, want the sealed and the internal copy (the key notice waits)", got)
	}
	sealed := byKind(rows, outbox.KindSealed)
	if sealed.RecipientID == 0 || string(sealed.Secret) != "token" || sealed.Spool != "skel-m1" || !slices.Equal(sealed.Rcpts, []string{"carol@client.example"}) {
		t.Fatalf("sealed copy read as %+v", sealed)
	}
	at := f.now.Add(time.Second)
	f.write(func(tx *database.Tx) error { return outbox.Delivered(f.ctx, tx, sealed, at) })
	if ok, err := outbox.StillDue(f.ctx, f.db.Read(), sealed, at); err != nil || ok {
		t.Fatalf("StillDue of a delivered row: %v, %v", ok, err)
	}
	if r := f.row(sealed.ID); r.Secret != nil {
		t.Fatalf("delivered row kept its secret")
	}
	if got := kinds(f.due(at)); !slices.Equal(got, []string{"plain"}) {
		t.Fatalf("due right after the copy: %v, want the key notice to wait its delay", got)
	}
	next, err := outbox.NextDue(f.ctx, f.db.Read(), at)
	if err != nil || !next.Equal(at.Add(time.Minute)) {
		t.Fatalf("NextDue = %v, %v; want %v", next, err, at.Add(time.Minute))
	}
	key := byKind(f.due(at.Add(time.Minute)), outbox.KindKey)
	if string(key.Secret) != "pass" {
		t.Fatalf("key notice due after its delay: %+v", key)
	}
}

// A failed copy cancels its waiting key notice and erases the secrets; a
// failure of some recipients moves them to a failed row of their own, which
// the bounce names.
func TestFailCancelsKeyNotice(t *testing.T) {
	f := newFixture(t)
	f.message("m1", false, "carol@client.example")
	sealed := byKind(f.due(f.now), outbox.KindSealed)
	var failed int64
	f.write(func(tx *database.Tx) error {
		var err error
		failed, err = outbox.Fail(f.ctx, tx, sealed, sealed.Rcpts, f.now, "550 5.1.1 no such user")
		if err != nil {
			return err
		}
		return outbox.InsertBounce(f.ctx, tx, outbox.Bounce{MessageID: "m1", To: "alice@corp.example", Failed: failed, At: f.now})
	})
	if failed != sealed.ID {
		t.Fatalf("failed row %d, want the row itself (%d)", failed, sealed.ID)
	}
	r := f.row(sealed.ID)
	if r.Secret != nil || r.LastError != "550 5.1.1 no such user" {
		t.Fatalf("failed row: %+v", r)
	}
	bounce := byKind(f.due(f.now), outbox.KindBounce)
	if bounce.RefID != sealed.ID || bounce.MailFrom != "" || !slices.Equal(bounce.Rcpts, []string{"alice@corp.example"}) {
		t.Fatalf("bounce: %+v", bounce)
	}
	if got := kinds(f.due(f.now.Add(time.Hour))); slices.Contains(got, outbox.KindKey) {
		t.Fatalf("the key notice of a failed copy became due: %v", got)
	}
	if spools, err := outbox.PendingSpools(f.ctx, f.db.Read()); err != nil || spools["skel-m1"] {
		t.Fatalf("the failed copy's skeleton is still needed: %v, %v", spools, err)
	}

	// Some recipients of a plain copy fail: they get their own row.
	plain := byKind(f.due(f.now), outbox.KindPlain)
	plain.Rcpts = append(plain.Rcpts, "dave@corp.example")
	f.write(func(tx *database.Tx) error {
		failed, err := outbox.Fail(f.ctx, tx, plain, []string{"dave@corp.example"}, f.now, "550 no")
		if err == nil && failed == plain.ID {
			t.Errorf("a partial failure changed the row itself")
		}
		return err
	})
	if r := f.row(plain.ID); r.LastError != "" {
		t.Fatalf("the row of the other recipients was changed: %+v", r)
	}
}

// Deferring some recipients continues them in a new row with the secret;
// deferring all reschedules the row.
func TestDefer(t *testing.T) {
	f := newFixture(t)
	f.message("m1", false, "carol@client.example")
	sealed := byKind(f.due(f.now), outbox.KindSealed)
	later := f.now.Add(time.Minute)
	f.write(func(tx *database.Tx) error { return outbox.Defer(f.ctx, tx, sealed, sealed.Rcpts, later, "451 later") })
	if got := kinds(f.due(f.now)); slices.Contains(got, outbox.KindSealed) {
		t.Fatalf("a deferred row is due before its time: %v", got)
	}
	r := byKind(f.due(later), outbox.KindSealed)
	if r.ID != sealed.ID || r.Attempts != 1 || r.LastError != "451 later" {
		t.Fatalf("deferred row: %+v", r)
	}
	if ok, _ := outbox.StillDue(f.ctx, f.db.Read(), sealed, later); ok {
		t.Fatalf("a row read before its deferral is still due")
	}
	r.Rcpts = append(r.Rcpts, "erin@client.example")
	f.write(func(tx *database.Tx) error {
		return outbox.Defer(f.ctx, tx, r, []string{"erin@client.example"}, later.Add(time.Minute), "451 again")
	})
	var split outbox.Row
	for _, x := range f.due(later.Add(time.Minute)) {
		if x.Kind == outbox.KindSealed && x.ID != sealed.ID {
			split = x
		}
	}
	if !slices.Equal(split.Rcpts, []string{"erin@client.example"}) || string(split.Secret) != "token" || split.Attempts != 2 || split.RecipientID != sealed.RecipientID {
		t.Fatalf("split row: %+v", split)
	}
}

// Cancelling touches pending rows only, erases their secrets and returns
// their spool files; each form selects what it names.
func TestCancel(t *testing.T) {
	f := newFixture(t)
	ids := f.message("m1", false, "carol@client.example", "dave@client.example")
	f.message("m2", true, "erin@client.example")
	f.message("m3", false, "frank@client.example")
	due := f.due(f.now)
	var delivered outbox.Row
	for _, r := range due {
		if r.Kind == outbox.KindSealed && r.RecipientID == ids[1] {
			delivered = r
		}
	}
	f.write(func(tx *database.Tx) error { return outbox.Delivered(f.ctx, tx, delivered, f.now) })

	var spools []string
	f.write(func(tx *database.Tx) error {
		var err error
		spools, err = outbox.CancelRecipients(f.ctx, tx, ids, "revoked")
		return err
	})
	// carol's copy and key notice, dave's key notice (his copy was delivered).
	if !slices.Equal(spools, []string{"skel-m1"}) {
		t.Fatalf("spools of cancelled rows: %v", spools)
	}
	if r := f.row(delivered.ID); r.LastError != "" {
		t.Fatalf("a delivered row was cancelled: %+v", r)
	}
	statuses := func(msg string) []string {
		rows, err := f.db.Read().Query(`SELECT kind || ':' || status FROM outbound WHERE message_id = ? ORDER BY id`, msg)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			rows.Scan(&s)
			out = append(out, s)
		}
		return out
	}
	// dave's key notice was queued by his delivered copy: cancelled too.
	if got, want := statuses("m1"), []string{"sealed:cancelled", "key:cancelled", "sealed:delivered", "key:cancelled", "plain:queued"}; !slices.Equal(got, want) {
		t.Fatalf("m1 after CancelRecipients: %v, want %v", got, want)
	}
	if got, want := statuses("m3"), []string{"sealed:queued", "key:waiting", "plain:queued"}; !slices.Equal(got, want) {
		t.Fatalf("m3 after CancelRecipients of m1: %v, want %v", got, want)
	}

	f.write(func(tx *database.Tx) error {
		var err error
		spools, err = outbox.CancelExternal(f.ctx, tx, "m2", "refused")
		return err
	})
	if !slices.Equal(spools, []string{"skel-m2"}) {
		t.Fatalf("CancelExternal spools: %v", spools)
	}
	if need, _ := outbox.SpoolNeeded(f.ctx, f.db.Read(), "orig-m2"); !need {
		t.Fatalf("CancelExternal cancelled the internal copy")
	}

	f.write(func(tx *database.Tx) error {
		var err error
		spools, err = outbox.CancelMessages(f.ctx, tx, []string{"m1", "m3"}, "contract ended")
		return err
	})
	slices.Sort(spools)
	if !slices.Equal(spools, []string{"orig-m1", "orig-m3", "skel-m3"}) {
		t.Fatalf("CancelMessages spools: %v", spools)
	}
	live, err := outbox.PendingSpools(f.ctx, f.db.Read())
	if err != nil || len(live) != 1 || !live["orig-m2"] {
		t.Fatalf("pending spools: %v, %v", live, err)
	}
	var left int
	f.db.Read().QueryRow(`SELECT COUNT(*) FROM outbound WHERE secret IS NOT NULL`).Scan(&left)
	if left != 0 {
		t.Fatalf("%d rows kept a secret", left)
	}
	var reason string
	f.db.Read().QueryRow(`SELECT last_error FROM outbound WHERE message_id = 'm3' AND kind = 'key'`).Scan(&reason)
	if reason != "cancelled: contract ended" {
		t.Fatalf("reason %q", reason)
	}
}

// Released held rows are due; rows in other states are not touched.
func TestReleaseHeld(t *testing.T) {
	f := newFixture(t)
	f.message("m1", true, "carol@client.example", "dave@client.example")
	if got := kinds(f.due(f.now)); !slices.Equal(got, []string{"plain"}) {
		t.Fatalf("due while held: %v", got)
	}
	at := f.now.Add(time.Minute)
	var n int64
	f.write(func(tx *database.Tx) error {
		var err error
		n, err = outbox.ReleaseHeld(f.ctx, tx, "m1", at)
		return err
	})
	if n != 2 {
		t.Fatalf("released %d rows, want the 2 copies", n)
	}
	if got := kinds(f.due(at)); !slices.Equal(got, []string{"plain", "sealed", "sealed"}) {
		t.Fatalf("due after release: %v", got)
	}
	got, err := outbox.ExternalRecipients(f.ctx, f.db.Read(), "m1")
	if err != nil || !slices.Equal(got, []string{"carol@client.example", "dave@client.example"}) {
		t.Fatalf("ExternalRecipients: %v, %v", got, err)
	}
	plain, err := outbox.PlainRecipients(f.ctx, f.db.Read(), []string{"m1", "m9"})
	if err != nil || len(plain) != 1 || !slices.Equal(plain["m1"], []string{"bob@corp.example"}) {
		t.Fatalf("PlainRecipients: %v, %v", plain, err)
	}
}

// A notice keeps its wrapped body until it is delivered; one about no
// message has none.
func TestNotice(t *testing.T) {
	f := newFixture(t)
	f.write(func(tx *database.Tx) error {
		return outbox.InsertNotice(f.ctx, tx, outbox.Notice{To: []string{"boss@corp.example"}, Body: []byte("wrapped"), At: f.now})
	})
	n := byKind(f.due(f.now), outbox.KindNotice)
	if n.MessageID != "" || n.MailFrom != "" || !slices.Equal(n.Rcpts, []string{"boss@corp.example"}) {
		t.Fatalf("notice: %+v", n)
	}
	body, err := outbox.Body(f.ctx, f.db.Read(), n.ID)
	if err != nil || string(body) != "wrapped" {
		t.Fatalf("Body: %q, %v", body, err)
	}
	f.write(func(tx *database.Tx) error { return outbox.Delivered(f.ctx, tx, n, f.now) })
	if body, _ := outbox.Body(f.ctx, f.db.Read(), n.ID); body != nil {
		t.Fatalf("a delivered notice kept its body")
	}
	if _, err := outbox.Get(f.ctx, f.db.Read(), 999); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("Get of no row: %v", err)
	}
}

// A row whose recipient list cannot be read is reported, not delivered.
func TestDueCorruptRow(t *testing.T) {
	f := newFixture(t)
	f.write(func(tx *database.Tx) error {
		_, err := tx.ExecContext(f.ctx, `INSERT INTO outbound(kind, mail_from, rcpts, status, next_attempt_at, created_at) VALUES ('notice', '', 'not json', 'queued', 0, 0)`)
		return err
	})
	rows := f.due(f.now)
	if len(rows) != 1 || rows[0].Err == nil || rows[0].Rcpts != nil {
		t.Fatalf("corrupt row: %+v", rows)
	}
}

// PendingStats counts held, waiting and queued rows by kind, with the
// oldest of each, and leaves out rows that are done.
func TestPendingStats(t *testing.T) {
	f := newFixture(t)
	f.message("m1", true, "carol@client.example", "dave@client.example")
	f.now = f.now.Add(time.Hour)
	f.message("m2", false, "erin@client.example")
	plain := byKind(f.due(f.now), "plain")
	f.write(func(tx *database.Tx) error { return outbox.Delivered(f.ctx, tx, plain, f.now) })
	stats, err := outbox.PendingStats(f.ctx, f.db.Read())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]outbox.Pending{}
	for _, p := range stats {
		got[p.Kind+"/"+p.Status] = p
	}
	t0 := f.now.Add(-time.Hour)
	want := map[string]outbox.Pending{
		"sealed/held":   {Kind: "sealed", Status: "held", Rows: 2, Oldest: t0},
		"sealed/queued": {Kind: "sealed", Status: "queued", Rows: 1, Oldest: f.now},
		"key/waiting":   {Kind: "key", Status: "waiting", Rows: 3, Oldest: t0},
		"plain/queued":  {Kind: "plain", Status: "queued", Rows: 1, Oldest: f.now}, // m1's was delivered
	}
	if len(got) != len(want) {
		t.Fatalf("pending %+v, want %+v", got, want)
	}
	for k, w := range want {
		if g := got[k]; g.Rows != w.Rows || !g.Oldest.Equal(w.Oldest) {
			t.Errorf("%s: %+v, want %+v", k, g, w)
		}
	}
}
