package destroy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/internal/seed"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/transfer"
)

type tfixture struct {
	*seed.Env
	c   *contract.Contract
	ctx context.Context
}

func newTransferFixture(t *testing.T, st storage.Store) *tfixture {
	t.Helper()
	e := seed.NewEnv(t, st)
	ctx := context.Background()
	c, err := contract.Create(ctx, e.DB, e.Keys, e.Ledger, contract.Spec{Code: "C-2026-001", Name: "テスト契約",
		Domains: []string{"client.example"}, DownloadLimit: contract.DefaultLimit}, "cli:test", e.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &tfixture{Env: e, c: c, ctx: ctx}
}

func (f *tfixture) deps() destroy.Deps {
	return destroy.Deps{DB: f.DB, Store: f.Store, Ledger: f.Ledger, Now: f.Clock.Now, Log: slog.New(slog.DiscardHandler), Workers: 4}
}

func (f *tfixture) seed(t *testing.T, o seed.Options) []seed.Transfer {
	t.Helper()
	if o.Now.IsZero() {
		o.Now = f.Clock.Now()
	}
	ts, err := seed.Transfers(f.ctx, f.Deps(), f.c, o)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// types returns the ledger event types (of the contract) in order.
func (f *tfixture) types(t *testing.T, filter func(audit.Event) bool) []string {
	t.Helper()
	var out []string
	err := f.Ledger.Records(f.ctx, f.DB.Read(), 0, 1<<40, func(_ int64, data []byte) error {
		ev, err := audit.ParseRecord(data)
		if err != nil {
			return err
		}
		if filter == nil || filter(ev) {
			out = append(out, ev.Type)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *tfixture) object(t *testing.T, key string) []byte {
	t.Helper()
	rc, _, err := f.Store.Get(f.ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// canOpen reports whether anything the gateway holds — every value in its
// database and its master key — together with the given passphrases opens
// ciphertext, and returns the plaintext.
func (f *tfixture) canOpen(t *testing.T, ciphertext []byte, passphrases ...string) ([]byte, bool) {
	t.Helper()
	h, err := seed.Gather(f.ctx, f.DB.Read(), [][]byte{[]byte(f.Master)}, passphrases)
	if err != nil {
		t.Fatal(err)
	}
	h.Expand()
	return h.Open(ciphertext)
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// TestRevokeShreds: revoking one recipient destroys their transfer
// identity at once: a copy of file.age taken before cannot be opened with
// anything the gateway still holds, even with the recipient's passphrase;
// the other recipient still can. Revoking the last one deletes the objects.
func TestRevokeShreds(t *testing.T) {
	f := newTransferFixture(t, nil)
	ts := f.seed(t, seed.Options{Transfers: 1, FilesPerTransfer: 2, RealKeys: true,
		Recipients: []string{"carol@client.example", "dave@client.example"}})
	tr := ts[0]
	carol, dave := tr.Recipients[0], tr.Recipients[1]
	// A pending key notice for carol, with its wrapped passphrase.
	secret, _ := f.Keys.Current().WrapTransient([]byte(carol.Passphrase))
	if err := f.DB.Write(f.ctx, func(tx *database.Tx) error {
		_, err := tx.ExecContext(f.ctx, `INSERT INTO outbound(message_id, kind, recipient_id, mail_from, rcpts, secret, status, next_attempt_at, created_at)
			VALUES (?, 'key', ?, 'alice@corp.example', '["carol@client.example"]', ?, 'waiting', 0, 0)`, tr.MessageID, carol.ID, secret)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	stolen := f.object(t, tr.Files[0].Object) // taken from storage before revocation

	// Control: before revocation, the gateway's holdings plus carol's
	// passphrase open the file (so the check below can fail).
	if pt, ok := f.canOpen(t, stolen, carol.Passphrase); !ok || !bytes.Equal(pt, tr.Files[0].Plain) {
		t.Fatal("control: the file cannot be opened before revocation")
	}

	out, err := destroy.Revoke(f.ctx, f.deps(), tr.ID, "Carol@Client.example", "cli:test", "sent by mistake")
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Revoked) != 1 || out.KeysDestroyed != 1 || out.TransferEnded {
		t.Fatalf("outcome %+v", out)
	}
	if _, ok := f.canOpen(t, stolen, carol.Passphrase); ok {
		// Dave's key still exists but dave's passphrase was not given.
		t.Fatal("after revocation the gateway's holdings and carol's passphrase still open the file")
	}
	if _, ok := f.canOpen(t, stolen, dave.Passphrase); !ok {
		t.Fatal("dave lost access by carol's revocation")
	}
	var status string
	var secretLeft []byte
	f.DB.Read().QueryRow(`SELECT status, secret FROM outbound WHERE recipient_id = ?`, carol.ID).Scan(&status, &secretLeft)
	if status != "cancelled" || secretLeft != nil {
		t.Fatalf("carol's key notice: %s, secret kept %v", status, secretLeft != nil)
	}
	for _, fl := range tr.Files {
		if _, err := f.Store.Stat(f.ctx, fl.Object); err != nil {
			t.Fatalf("object deleted while dave is active: %v", err)
		}
	}

	// Revoking dave too ends the transfer: objects deleted and proven gone.
	out, err = destroy.Revoke(f.ctx, f.deps(), tr.ID, dave.Address, "cli:test", "")
	if err != nil {
		t.Fatal(err)
	}
	if !out.TransferEnded || out.ObjectsRemoved != 2 {
		t.Fatalf("outcome %+v", out)
	}
	for _, fl := range tr.Files {
		if _, err := f.Store.Stat(f.ctx, fl.Object); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("object %s still there: %v", fl.Object, err)
		}
	}
	if _, ok := f.canOpen(t, stolen, carol.Passphrase, dave.Passphrase); ok {
		t.Fatal("after revoking everyone the file can still be opened")
	}
	got, _ := transfer.Get(f.ctx, f.DB.Read(), tr.ID)
	if got.Status != "revoked" || got.Files[0].Status != "deleted" || got.Files[0].AbsentAt.IsZero() {
		t.Fatalf("transfer after revocation: %+v", got)
	}
	types := f.types(t, func(ev audit.Event) bool {
		return ev.Transfer == tr.ID && ev.Type != audit.TypeFileSealed && ev.Type != audit.TypeMessageReceived
	})
	want := "recipient.revoked key.destroyed recipient.revoked transfer.revoked key.destroyed object.deleted object.deleted object.absent object.absent"
	if strings.Join(types, " ") != want {
		t.Fatalf("ledger:\n got %v\nwant %s", types, want)
	}
	// Again: nothing more happens, nothing is recorded twice.
	if _, err := destroy.Revoke(f.ctx, f.deps(), tr.ID, dave.Address, "cli:test", ""); !errors.Is(err, transfer.ErrNotActive) {
		t.Fatalf("revoking twice: %v", err)
	}
	if _, err := destroy.Revoke(f.ctx, f.deps(), tr.ID, "", "cli:test", ""); err != nil {
		t.Fatal(err)
	}
	if n := len(f.types(t, func(ev audit.Event) bool { return ev.Transfer == tr.ID })); n != len(types)+3 {
		t.Fatalf("a repeated revocation recorded events: %d", n)
	}
}

func TestPurgeExpired(t *testing.T) {
	f := newTransferFixture(t, nil)
	now := f.Clock.Now()
	soon := f.seed(t, seed.Options{Transfers: 2, Now: now, ExpiresAt: now.Add(time.Hour), IDPrefix: "tsoon"})
	later := f.seed(t, seed.Options{Transfers: 1, Now: now, ExpiresAt: now.Add(48 * time.Hour), IDPrefix: "tlate"})
	if n, err := destroy.PurgeExpired(f.ctx, f.deps(), 0); err != nil || n != 0 {
		t.Fatalf("before expiry: %d, %v", n, err)
	}
	f.Clock.Advance(2 * time.Hour)
	n, err := destroy.PurgeExpired(f.ctx, f.deps(), 0)
	if err != nil || n != 2 {
		t.Fatalf("purged %d, %v", n, err)
	}
	for _, tr := range soon {
		if _, err := f.Store.Stat(f.ctx, tr.Files[0].Object); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("expired object still there: %v", err)
		}
		got, _ := transfer.Get(f.ctx, f.DB.Read(), tr.ID)
		if got.Status != "expired" || got.Recipients[0].KeyDestroyedAt.IsZero() || got.Recipients[0].Status != "expired" {
			t.Fatalf("expired transfer: %+v", got)
		}
	}
	if _, err := f.Store.Stat(f.ctx, later[0].Files[0].Object); err != nil {
		t.Fatalf("a transfer not yet expired was purged: %v", err)
	}
	types := f.types(t, nil)
	if count(types, audit.TypeTransferExpired) != 2 || count(types, audit.TypeObjectAbsent) != 2 || count(types, audit.TypeKeyDestroyed) != 2 {
		t.Fatalf("ledger: %v", types)
	}
	if n, err := destroy.PurgeExpired(f.ctx, f.deps(), 0); err != nil || n != 0 {
		t.Fatalf("second purge: %d, %v", n, err)
	}
}

// TestDestroyObjectsResumes: an interruption half-way leaves a state from
// which a second run finishes, recording each step exactly once.
func TestDestroyObjectsResumes(t *testing.T) {
	f := newTransferFixture(t, nil)
	ts := f.seed(t, seed.Options{Transfers: 10, FilesPerTransfer: 2})
	objs, err := transfer.ObjectsOfContract(f.ctx, f.DB.Read(), f.c.ID)
	if err != nil || len(objs) != 20 {
		t.Fatalf("%d objects, %v", len(objs), err)
	}
	ctx, cancel := context.WithCancel(f.ctx)
	d := f.deps()
	d.Batch = 3
	d.AfterDelete = func(n int64) {
		if n == 7 {
			cancel()
		}
	}
	if err := destroy.DestroyObjects(ctx, d, objs, "cli:test"); err == nil {
		t.Fatal("an interrupted destruction reported success")
	}
	objs, _ = transfer.ObjectsOfContract(f.ctx, f.DB.Read(), f.c.ID)
	if err := destroy.DestroyObjects(f.ctx, f.deps(), objs, "cli:test"); err != nil {
		t.Fatal(err)
	}
	types := f.types(t, nil)
	if count(types, audit.TypeObjectDeleted) != 20 || count(types, audit.TypeObjectAbsent) != 20 {
		t.Fatalf("deleted %d, absent %d events", count(types, audit.TypeObjectDeleted), count(types, audit.TypeObjectAbsent))
	}
	for _, tr := range ts {
		for _, fl := range tr.Files {
			if _, err := f.Store.Stat(f.ctx, fl.Object); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("%s: %v", fl.Object, err)
			}
		}
	}
}

// stubbornStore pretends to delete but keeps the objects.
type stubbornStore struct {
	storage.Store
	deletes atomic.Int64
}

func (s *stubbornStore) Delete(ctx context.Context, key string) error {
	s.deletes.Add(1)
	return nil
}

func TestDestroyObjectsVerifies(t *testing.T) {
	f := newTransferFixture(t, nil)
	f.seed(t, seed.Options{Transfers: 3})
	objs, _ := transfer.ObjectsOfContract(f.ctx, f.DB.Read(), f.c.ID)
	d := f.deps()
	st := &stubbornStore{Store: f.Store}
	d.Store = st
	err := destroy.DestroyObjects(f.ctx, d, objs, "cli:test")
	if !errors.Is(err, destroy.ErrStillPresent) {
		t.Fatalf("got %v, want ErrStillPresent", err)
	}
	// Each object is deleted, found still there, deleted again, still there.
	if n := count(f.types(t, nil), audit.TypeObjectAbsent); n != 0 || st.deletes.Load() != 6 {
		t.Fatalf("%d absence events for objects that are still there", n)
	}
}

// bulkStore gives an fs store a DeleteMany, failing the keys in fail.
type bulkStore struct {
	storage.Store
	calls atomic.Int64
	fail  map[string]bool
}

func (b *bulkStore) DeleteMany(ctx context.Context, keys []string) map[string]error {
	b.calls.Add(1)
	failed := map[string]error{}
	for _, k := range keys {
		if b.fail[k] {
			failed[k] = errors.New("simulated failure")
			continue
		}
		if err := b.Store.Delete(ctx, k); err != nil {
			failed[k] = err
		}
	}
	return failed
}

// TestDestroyObjectsBulk: a store with multi-object delete gets a few
// calls instead of one per object; a key it fails to delete is neither
// recorded deleted nor proven absent, and a second run finishes.
func TestDestroyObjectsBulk(t *testing.T) {
	f := newTransferFixture(t, nil)
	f.seed(t, seed.Options{Transfers: 150})
	objs, _ := transfer.ObjectsOfContract(f.ctx, f.DB.Read(), f.c.ID)
	st := &bulkStore{Store: f.Store, fail: map[string]bool{objs[7].Key: true}}
	d := f.deps()
	d.Store = st
	var deleted atomic.Int64
	d.AfterDelete = func(n int64) { deleted.Store(n) }
	if err := destroy.DestroyObjects(f.ctx, d, objs, "cli:test"); err == nil || !strings.Contains(err.Error(), objs[7].Key) {
		t.Fatalf("a failed key was not reported: %v", err)
	}
	if st.calls.Load() != 1 || deleted.Load() != 149 {
		t.Fatalf("%d DeleteMany calls, %d deletions counted", st.calls.Load(), deleted.Load())
	}
	types := f.types(t, nil)
	if count(types, audit.TypeObjectDeleted) != 149 || count(types, audit.TypeObjectAbsent) != 0 {
		t.Fatalf("deleted %d, absent %d", count(types, audit.TypeObjectDeleted), count(types, audit.TypeObjectAbsent))
	}
	st.fail = nil
	objs, _ = transfer.ObjectsOfContract(f.ctx, f.DB.Read(), f.c.ID)
	if err := destroy.DestroyObjects(f.ctx, d, objs, "cli:test"); err != nil {
		t.Fatal(err)
	}
	types = f.types(t, nil)
	if count(types, audit.TypeObjectDeleted) != 150 || count(types, audit.TypeObjectAbsent) != 150 {
		t.Fatalf("deleted %d, absent %d", count(types, audit.TypeObjectDeleted), count(types, audit.TypeObjectAbsent))
	}
}

// TestSweepOrphans: a sealed object no transfer refers to (a message that
// was never committed) is deleted once old enough, with its deletion and
// absence in the ledger; objects of known transfers stay.
func TestSweepOrphans(t *testing.T) {
	f := newTransferFixture(t, nil)
	known := f.seed(t, seed.Options{Transfers: 1})
	ghost := transfer.SealedPrefix + "tghost/0.age"
	if _, err := f.Store.Put(f.ctx, ghost, strings.NewReader("age-encryption.org/v1\nnever committed")); err != nil {
		t.Fatal(err)
	}
	if n, err := destroy.SweepOrphans(f.ctx, f.deps(), 24*time.Hour); err != nil || n != 0 {
		t.Fatalf("a recent object was swept: %d, %v", n, err)
	}
	f.Clock.Advance(365 * 24 * time.Hour)
	if n, err := destroy.SweepOrphans(f.ctx, f.deps(), 24*time.Hour); err != nil || n != 1 {
		t.Fatalf("swept %d, %v; want 1", n, err)
	}
	if _, err := f.Store.Stat(f.ctx, ghost); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("orphan still there: %v", err)
	}
	if _, err := f.Store.Stat(f.ctx, known[0].Files[0].Object); err != nil {
		t.Fatalf("a known transfer's object was swept: %v", err)
	}
	types := f.types(t, func(ev audit.Event) bool { return ev.Transfer == "tghost" })
	if len(types) != 2 || types[0] != audit.TypeObjectDeleted || types[1] != audit.TypeObjectAbsent {
		t.Fatalf("ledger: %v", types)
	}
	if n, err := destroy.SweepOrphans(f.ctx, f.deps(), 24*time.Hour); err != nil || n != 0 {
		t.Fatalf("second sweep: %d, %v", n, err)
	}
}

// TestPendingPassphrasesErased: a passphrase that waits — for the
// manager's approval or the send delay (held), behind its link notice
// (waiting), or for the next hop to come back (queued, deferred) — is
// erased when its transfer is revoked or expires, whatever the state of
// its key notice.
func TestPendingPassphrasesErased(t *testing.T) {
	for _, end := range []string{"revoke", "expire"} {
		t.Run(end, func(t *testing.T) {
			f := newTransferFixture(t, nil)
			ts := f.seed(t, seed.Options{Transfers: 1, FilesPerTransfer: 1, RealKeys: true,
				Recipients: []string{"carol@client.example", "dave@client.example", "erin@client.example"}})
			tr := ts[0]
			for i, status := range []string{"held", "waiting", "queued"} {
				r := tr.Recipients[i]
				secret, _ := f.Keys.Current().WrapTransient([]byte(r.Passphrase))
				if err := f.DB.Write(f.ctx, func(tx *database.Tx) error {
					_, err := tx.ExecContext(f.ctx, `INSERT INTO outbound(message_id, kind, recipient_id, mail_from, rcpts, secret, status, attempts, next_attempt_at, created_at)
						VALUES (?, 'key', ?, 'alice@corp.example', ?, ?, ?, ?, 0, 0)`, tr.MessageID, r.ID, `["`+r.Address+`"]`, secret, status, i)
					return err
				}); err != nil {
					t.Fatal(err)
				}
			}
			switch end {
			case "revoke":
				if _, err := destroy.Revoke(f.ctx, f.deps(), tr.ID, "", "cli:test", "mis-sent"); err != nil {
					t.Fatal(err)
				}
			case "expire":
				f.Clock.Advance(365 * 24 * time.Hour)
				if n, err := destroy.PurgeExpired(f.ctx, f.deps(), 10); err != nil || n != 1 {
					t.Fatalf("purge: %d, %v", n, err)
				}
			}
			var left int
			f.DB.Read().QueryRow(`SELECT COUNT(*) FROM outbound WHERE secret IS NOT NULL OR status != 'cancelled'`).Scan(&left)
			if left != 0 {
				t.Fatalf("%d key notices kept their passphrase or were not cancelled after %s", left, end)
			}
		})
	}
}

// listingStore gives an fs store a ProveAbsent (as S3's one listing), and
// counts the calls of it and of Stat; a key in keep survives its
// deletions, and ProveAbsent fails when failList is set.
type listingStore struct {
	storage.Store
	proves, stats atomic.Int64
	keep          string
	failList      bool
}

func (l *listingStore) Delete(ctx context.Context, key string) error {
	if key == l.keep {
		return nil
	}
	return l.Store.Delete(ctx, key)
}

func (l *listingStore) Stat(ctx context.Context, key string) (storage.Info, error) {
	l.stats.Add(1)
	return l.Store.Stat(ctx, key)
}

func (l *listingStore) ProveAbsent(ctx context.Context, keys []string) (map[string]bool, error) {
	l.proves.Add(1)
	if l.failList {
		return nil, errors.New("simulated listing failure")
	}
	present := map[string]bool{}
	for _, k := range keys {
		if _, err := l.Store.Stat(ctx, k); err == nil {
			present[k] = true
		}
	}
	return present, nil
}

// TestDestroyObjectsProvesAbsenceInBulk: a store that can prove many keys
// absent at once is asked once instead of one Stat per object; a key it
// still finds is deleted again and Stat-ed, and not recorded absent while
// it remains. When the proof fails, each object is Stat-ed.
func TestDestroyObjectsProvesAbsenceInBulk(t *testing.T) {
	f := newTransferFixture(t, nil)
	f.seed(t, seed.Options{Transfers: 150})
	objs, _ := transfer.ObjectsOfContract(f.ctx, f.DB.Read(), f.c.ID)
	st := &listingStore{Store: f.Store, keep: objs[9].Key}
	d := f.deps()
	d.Store = st
	err := destroy.DestroyObjects(f.ctx, d, objs, "cli:test")
	if !errors.Is(err, destroy.ErrStillPresent) || !strings.Contains(err.Error(), objs[9].Key) {
		t.Fatalf("got %v, want ErrStillPresent for %s", err, objs[9].Key)
	}
	if st.proves.Load() != 1 || st.stats.Load() != 1 {
		t.Fatalf("%d proofs and %d Stats, want 1 proof and 1 Stat (the survivor's, after deleting it again)", st.proves.Load(), st.stats.Load())
	}
	if n := count(f.types(t, nil), audit.TypeObjectAbsent); n != 149 {
		t.Fatalf("%d absence events, want 149", n)
	}

	// A second run finishes the survivor, now deletable.
	st = &listingStore{Store: f.Store}
	d.Store = st
	objs, _ = transfer.ObjectsOfContract(f.ctx, f.DB.Read(), f.c.ID)
	if len(objs) != 1 {
		t.Fatalf("%d unfinished objects, want 1", len(objs))
	}
	if err := destroy.DestroyObjects(f.ctx, d, objs, "cli:test"); err != nil {
		t.Fatal(err)
	}
	if n := count(f.types(t, nil), audit.TypeObjectAbsent); n != 150 {
		t.Fatalf("%d absence events, want 150", n)
	}
}

// TestDestroyObjectsAbsenceFallback: when the bulk proof fails, every
// object is Stat-ed instead, and all are recorded absent.
func TestDestroyObjectsAbsenceFallback(t *testing.T) {
	f := newTransferFixture(t, nil)
	f.seed(t, seed.Options{Transfers: 100})
	objs, _ := transfer.ObjectsOfContract(f.ctx, f.DB.Read(), f.c.ID)
	st := &listingStore{Store: f.Store, failList: true}
	d := f.deps()
	d.Store = st
	if err := destroy.DestroyObjects(f.ctx, d, objs, "cli:test"); err != nil {
		t.Fatal(err)
	}
	if st.proves.Load() != 1 || st.stats.Load() != 100 {
		t.Fatalf("%d proofs, %d Stats; want 1 failed proof, then 100 Stats", st.proves.Load(), st.stats.Load())
	}
	if n := count(f.types(t, nil), audit.TypeObjectAbsent); n != 100 {
		t.Fatalf("%d absence events, want 100", n)
	}
}
