package masterkey_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testdb"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/gateway"
	"github.com/sealgate/sealgate/internal/testpg"
	"github.com/sealgate/sealgate/masterkey"
)

type fixture struct {
	ctx    context.Context
	dir    string
	db     *database.DB
	led    *audit.Ledger
	src    masterkey.Source
	keys   *crypto.Keyring
	spool  string
	ledKey masterkey.LedgerKey
	now    time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{ctx: context.Background(), dir: t.TempDir(), now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	var err error
	f.db, err = database.Open(f.ctx, testpg.Target(t, filepath.Join(f.dir, "sealgate.db")), testdb.Options(database.Options{Synchronous: "OFF"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.db.Close() })
	f.led, err = audit.New(audit.Options{Origin: "masterkey.test/ledger", Now: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	f.src = masterkey.Source{Path: filepath.Join(f.dir, "keys", "master.key")}
	keys, created, err := masterkey.Open(f.ctx, f.db, f.src, true, f.clock)
	if err != nil || !created {
		t.Fatalf("open: created %v, %v", created, err)
	}
	f.keys = keys
	f.spool = filepath.Join(f.dir, "spool")
	os.MkdirAll(f.spool, 0o700)
	f.ledKey = masterkey.LedgerKey{Dir: filepath.Join(f.dir, "keys")}
	if _, _, err := f.ledKey.Load(keys, rand.Reader, "masterkey.test", true); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) clock() time.Time { f.now = f.now.Add(time.Millisecond); return f.now }

func (f *fixture) holders() []masterkey.Holder {
	return []masterkey.Holder{contract.KEKs{DB: f.db}, gateway.Queue{DB: f.db, Spool: gateway.NewDirSpool(f.spool)}, f.ledKey}
}

func (f *fixture) deps() masterkey.RotateDeps {
	return masterkey.RotateDeps{DB: f.db, Ledger: f.led, Keys: f.keys, Source: f.src, Holders: f.holders(), Now: f.clock, Owner: "test/1"}
}

// queue puts a waiting passphrase and a spool file in the outbound queue,
// sealed with the current epoch.
func (f *fixture) queue(t *testing.T, name, secret, body string) {
	t.Helper()
	ep := f.keys.Current()
	w, err := ep.WrapTransient([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	sw, _ := ep.SpoolWriter(&buf)
	io.WriteString(sw, body)
	sw.Close()
	if err := os.WriteFile(filepath.Join(f.spool, name), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	err = f.db.Write(f.ctx, func(tx *database.Tx) error {
		if err := masterkey.Fence(f.ctx, tx, ep); err != nil {
			return err
		}
		_, err := tx.ExecContext(f.ctx, `INSERT INTO outbound(kind, mail_from, rcpts, spool, secret, status, next_attempt_at, created_at) VALUES ('key', '', '[]', ?, ?, 'waiting', 0, 0)`, name, w)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRotate: after a rotation every live secret opens with the new key
// alone and none with the old one; the old key file is gone; the ledger
// says so; a keyring of the old key alone (a backup's) opens nothing the
// database now holds.
func TestRotate(t *testing.T) {
	f := newFixture(t)
	oldKey, _ := os.ReadFile(f.src.Path)
	c, err := contract.Create(f.ctx, f.db, f.keys, f.led, contract.Spec{Code: "C-1", AnyRecipient: true, DownloadLimit: contract.DefaultLimit}, "test", f.clock())
	if err != nil {
		t.Fatal(err)
	}
	f.queue(t, "m1.skel.age", "ABCDE-FGHJK-MNPQR-STVWX-YZ012", "a message body")

	rot, err := masterkey.Rotate(f.ctx, f.deps(), masterkey.Cause{Actor: "test", Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if rot.From != 1 || rot.To != 2 || rot.Held["contract keys"] != 1 || rot.Moved["outbound queue"] != 2 || rot.Moved["ledger signing key"] != 1 {
		t.Fatalf("rotation %+v", rot)
	}
	newKey, _ := os.ReadFile(f.src.Path)
	if bytes.Equal(newKey, oldKey) || !strings.Contains(string(newKey), "epoch 2") {
		t.Fatal("the key file still holds the old key")
	}
	if _, err := os.Stat(f.src.Path + ".next"); !os.IsNotExist(err) {
		t.Fatalf(".next left behind: %v", err)
	}
	old, err := crypto.NewKeyring(string(oldKey))
	if err != nil {
		t.Fatal(err)
	}
	cur := crypto.NewKeyringOf(f.keys.Epochs(), nil)
	if n := len(f.keys.Epochs()); n != 1 || f.keys.Current().Number != 2 {
		t.Fatalf("keyring after rotation: %d epochs, current %d", n, f.keys.Current().Number)
	}
	var kek, secret []byte
	f.db.Read().QueryRow(`SELECT kek_wrapped FROM contracts WHERE id = ?`, c.ID).Scan(&kek)
	f.db.Read().QueryRow(`SELECT secret FROM outbound`).Scan(&secret)
	ledKey, _ := os.ReadFile(filepath.Join(f.dir, "keys", "ledger.key.age"))
	for name, b := range map[string][]byte{"contract key": kek, "passphrase": secret, "ledger key": ledKey} {
		if _, err := cur.Unwrap(b); err != nil {
			t.Errorf("%s does not open with the new key: %v", name, err)
		}
		if _, err := old.Unwrap(b); err == nil {
			t.Errorf("%s still opens with the old key", name)
		}
	}
	spool, _ := os.ReadFile(filepath.Join(f.spool, "m1.skel.age"))
	if r, err := cur.SpoolReader(bytes.NewReader(spool)); err != nil {
		t.Errorf("spool: %v", err)
	} else if b, _ := io.ReadAll(r); string(b) != "a message body" {
		t.Errorf("spool reads %q", b)
	}
	if _, err := old.SpoolReader(bytes.NewReader(spool)); err == nil {
		t.Error("the spool file still opens with the old key")
	}
	infos, _ := masterkey.Epochs(f.ctx, f.db.Read())
	if len(infos) != 2 || infos[0].State != masterkey.StateDestroyed || infos[1].State != masterkey.StateCurrent {
		t.Fatalf("epochs %+v", infos)
	}
	evs, err := audit.ContractEvents(f.ctx, f.db.Read(), "", 0, -1, audit.TypeKeyRotated)
	if err != nil || len(evs) != 1 || evs[0].Event.Details["to_epoch"] != "2" {
		t.Fatalf("key.rotated: %v %+v", err, evs)
	}
	// The old key file is refused from now on, with a message that says why.
	os.WriteFile(f.src.Path, oldKey, 0o600)
	if _, _, err := masterkey.Open(f.ctx, f.db, f.src, false, f.clock); !errors.Is(err, masterkey.ErrRetiredKey) {
		t.Fatalf("opening with the retired key: %v", err)
	}
	// A key the database never knew is refused too.
	other, _ := crypto.GenerateMasterKey()
	os.WriteFile(f.src.Path, []byte(other+"\n"), 0o600)
	if _, _, err := masterkey.Open(f.ctx, f.db, f.src, false, f.clock); !errors.Is(err, masterkey.ErrForeignKey) {
		t.Fatalf("opening with a foreign key: %v", err)
	}
}

// TestFence: data wrapped with an epoch that a rotation has made old is
// not committed; the writer reloads and succeeds with the new epoch.
func TestFence(t *testing.T) {
	f := newFixture(t)
	// Another process's keyring, opened before the rotation.
	other, _, err := masterkey.Open(f.ctx, f.db, f.src, false, f.clock)
	if err != nil {
		t.Fatal(err)
	}
	stale := other.Current()
	if _, err := masterkey.Rotate(f.ctx, f.deps(), masterkey.Cause{Actor: "test", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	err = f.db.Write(f.ctx, func(tx *database.Tx) error { return masterkey.Fence(f.ctx, tx, stale) })
	if !errors.Is(err, crypto.ErrStaleEpoch) {
		t.Fatalf("fence with a retired epoch: %v", err)
	}
	// The refused writer's keyring reloaded: its next attempt passes.
	if other.Current().Number != 2 {
		t.Fatalf("after a refused commit the keyring is still at epoch %d", other.Current().Number)
	}
	err = f.db.Write(f.ctx, func(tx *database.Tx) error { return masterkey.Fence(f.ctx, tx, other.Current()) })
	if err != nil {
		t.Fatalf("fence with the current epoch: %v", err)
	}
}

// failingHolder fails its first Rewrap: the rotation stops with both keys
// kept, and the next call resumes it.
type failingHolder struct{ calls *int }

func (failingHolder) Name() string { return "flaky" }
func (h failingHolder) Rewrap(context.Context, *crypto.Keyring, *crypto.Epoch) (int, int, error) {
	*h.calls++
	if *h.calls == 1 {
		return 0, 0, errors.New("store down")
	}
	return 0, 0, nil
}

// TestRotateResumes: a rotation interrupted after the new key became
// current keeps the old key (nothing is lost), and is finished by the next
// call, which does not start another.
func TestRotateResumes(t *testing.T) {
	f := newFixture(t)
	if _, err := contract.Create(f.ctx, f.db, f.keys, f.led, contract.Spec{Code: "C-1", AnyRecipient: true, DownloadLimit: contract.DefaultLimit}, "test", f.clock()); err != nil {
		t.Fatal(err)
	}
	calls := 0
	d := f.deps()
	d.Holders = append(d.Holders, failingHolder{&calls})
	if _, err := masterkey.Rotate(f.ctx, d, masterkey.Cause{Actor: "test"}); err == nil {
		t.Fatal("a failing holder did not stop the rotation")
	}
	if _, err := os.Stat(f.src.Path + ".next"); err != nil {
		t.Fatalf("the next key is gone after a failed rotation: %v", err)
	}
	// Both keys open everything meanwhile: a fresh process can start.
	keys, _, err := masterkey.Open(f.ctx, f.db, f.src, false, f.clock)
	if err != nil || len(keys.Epochs()) != 2 || keys.Current().Number != 2 {
		t.Fatalf("open during a rotation: %v", err)
	}
	rot, err := masterkey.Rotate(f.ctx, d, masterkey.Cause{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if !rot.Resumed || rot.From != 1 || rot.To != 2 {
		t.Fatalf("resumed rotation %+v", rot)
	}
	infos, _ := masterkey.Epochs(f.ctx, f.db.Read())
	if len(infos) != 2 {
		t.Fatalf("a second rotation was started: %+v", infos)
	}
}

// TestRotateFromEnv: a key given in the environment cannot be rotated in
// place, and says so.
func TestRotateFromEnv(t *testing.T) {
	f := newFixture(t)
	d := f.deps()
	d.Source = masterkey.Source{Env: "AGE-SECRET-KEY-1..."}
	if _, err := masterkey.Rotate(f.ctx, d, masterkey.Cause{}); !errors.Is(err, masterkey.ErrFromEnv) {
		t.Fatalf("rotate with an env key: %v", err)
	}
}

// TestRefresh: a process that did not rotate drops the retired key at its
// next refresh.
func TestRefresh(t *testing.T) {
	f := newFixture(t)
	other, _, err := masterkey.Open(f.ctx, f.db, f.src, false, f.clock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := masterkey.Rotate(f.ctx, f.deps(), masterkey.Cause{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if other.Current().Number != 1 {
		t.Fatal("the other process changed without a refresh")
	}
	if err := masterkey.Refresh(f.ctx, f.db.Read(), other); err != nil {
		t.Fatal(err)
	}
	if eps := other.Epochs(); len(eps) != 1 || eps[0].Number != 2 {
		t.Fatalf("after refresh: %d epochs, current %d", len(eps), eps[0].Number)
	}
}
