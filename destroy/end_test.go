package destroy_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/destroy"
	"github.com/sealgate/sealgate/internal/seed"
	"github.com/sealgate/sealgate/storage"
)

type fixture struct {
	*seed.Env
	c   *contract.Contract
	ctx context.Context
}

func newFixture(t *testing.T, spec contract.Spec) *fixture {
	t.Helper()
	e := seed.NewEnv(t, nil)
	ctx := context.Background()
	if spec.Code == "" {
		spec = contract.Spec{Code: "C-2026-001", Name: "見積支援", Counterparty: "Client KK", Manager: "boss@corp.example",
			Domains: []string{"client.example"}, DownloadLimit: contract.DefaultLimit}
	}
	c, err := contract.Create(ctx, e.DB, e.Keys, e.Ledger, spec, "cli:test", e.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{Env: e, c: c, ctx: ctx}
}

func (f *fixture) deps(owner string) destroy.Deps {
	return destroy.Deps{
		DB: f.DB, Store: f.Store, Ledger: f.Ledger, Now: f.Clock.Now, Log: slog.New(slog.DiscardHandler), Workers: 4, Batch: 5,
		Signer:  f.Signer,
		CertDir: filepath.Join(f.Dir, "certificates"),
		Storage: "fs", Owner: owner, Location: time.FixedZone("JST", 9*3600),
	}
}

func (f *fixture) seed(t *testing.T, o seed.Options) []seed.Transfer {
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

func (f *fixture) events(t *testing.T) []audit.Event {
	t.Helper()
	var out []audit.Event
	err := f.Ledger.Records(f.ctx, f.DB.Read(), 0, 1<<40, func(_ int64, data []byte) error {
		ev, err := audit.ParseRecord(data)
		out = append(out, ev)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func countType(evs []audit.Event, typ string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// download records a download as the portal does.
func (f *fixture) download(t *testing.T, tr seed.Transfer, rcpt string) {
	t.Helper()
	err := f.DB.Write(f.ctx, func(tx *database.Tx) error {
		_, err := f.Ledger.Append(f.ctx, tx, audit.Event{Type: audit.TypeFileDownloaded, Actor: "recipient:" + rcpt, Contract: f.c.Code,
			Transfer: tr.ID, Recipient: rcpt, File: tr.Files[0].Name, SHA256: tr.Files[0].SHA256, Size: int64(len(tr.Files[0].Plain)),
			Result: "ok", Details: map[string]string{"format": "plain"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkDestroyed asserts that nothing of the contract remains.
func (f *fixture) checkDestroyed(t *testing.T, ts []seed.Transfer) {
	t.Helper()
	for _, tr := range ts {
		for _, fl := range tr.Files {
			if _, err := f.Store.Stat(f.ctx, fl.Object); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("object %s remains: %v", fl.Object, err)
			}
		}
	}
	var keys, kek, pending int
	f.DB.Read().QueryRow(`SELECT COUNT(*) FROM recipients WHERE key_wrapped IS NOT NULL`).Scan(&keys)
	f.DB.Read().QueryRow(`SELECT COUNT(*) FROM contracts WHERE id = ? AND kek_wrapped IS NOT NULL`, f.c.ID).Scan(&kek)
	f.DB.Read().QueryRow(`SELECT COUNT(*) FROM outbound WHERE status IN ('waiting', 'queued') OR secret IS NOT NULL`).Scan(&pending)
	if keys != 0 || kek != 0 || pending != 0 {
		t.Fatalf("left behind: %d transfer keys, contract key %d, %d pending notices", keys, kek, pending)
	}
	c, _ := contract.ByID(f.ctx, f.DB.Read(), f.c.ID)
	if c.Status != contract.StatusEnded {
		t.Fatalf("contract status %s", c.Status)
	}
}

func TestEndContract(t *testing.T) {
	f := newFixture(t, contract.Spec{})
	ts := f.seed(t, seed.Options{Transfers: 6, FilesPerTransfer: 2, Recipients: []string{"carol@client.example", "dave@client.example"}})
	f.download(t, ts[0], "carol@client.example")
	// One transfer was revoked earlier: it is in the certificate too.
	if _, err := destroy.Revoke(f.ctx, f.deps(""), ts[5].ID, "", "cli:test", "mis-sent"); err != nil {
		t.Fatal(err)
	}
	// A key notice still waiting.
	if err := f.DB.Write(f.ctx, func(tx *database.Tx) error {
		_, err := tx.ExecContext(f.ctx, `INSERT INTO outbound(message_id, kind, recipient_id, mail_from, rcpts, secret, status, next_attempt_at, created_at)
			VALUES (?, 'key', ?, 'a@corp.example', '[]', ?, 'waiting', 0, 0)`, ts[1].MessageID, ts[1].Recipients[0].ID, []byte{1, 2})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// The wrapped keys as stored, to look for in the database files later.
	var secrets [][]byte
	rows, _ := f.DB.Read().Query(`SELECT key_wrapped FROM recipients UNION ALL SELECT kek_wrapped FROM contracts WHERE id = ?`, f.c.ID)
	for rows.Next() {
		var b []byte
		rows.Scan(&b)
		if len(b) > 0 {
			secrets = append(secrets, b)
		}
	}
	rows.Close()
	if len(secrets) != 11 { // 10 live transfer keys (one transfer was revoked) + the contract key
		t.Fatalf("%d wrapped keys before the end", len(secrets))
	}
	var phases []string
	d := f.deps("host/1")
	d.Progress = func(p destroy.Phase, done, total int64) {
		if done == total {
			phases = append(phases, string(p))
		}
	}
	iss, err := destroy.EndContract(f.ctx, d, f.c.Code, "cli:alice", "project finished")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(phases, " ") != "keys delete verify" {
		t.Errorf("phases %v", phases)
	}
	f.checkDestroyed(t, ts)
	// Physically gone: neither the database file nor its WAL holds them.
	for _, name := range []string{"sealgate.db", "sealgate.db-wal"} {
		raw, err := os.ReadFile(filepath.Join(f.Dir, name))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, sec := range secrets {
			if bytes.Contains(raw, sec[len(sec)-64:]) {
				t.Fatalf("%s still holds an erased key's bytes", name)
			}
		}
	}
	data, err := os.ReadFile(iss.JSONPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(iss.JSONPath, ".json.gz") || !audit.CertificateCompressed(data) || !audit.CertificateCompressed(iss.KeptJSON) {
		t.Fatalf("the certificate %s is not compressed (format v4)", iss.JSONPath)
	}
	cert, rep, err := audit.VerifyCertificate(data, f.VKey)
	if err != nil {
		t.Fatalf("certificate does not verify: %v", err)
	}
	if cert.Format != audit.CertificateFormat {
		t.Fatalf("certificate format %q", cert.Format)
	}
	if rep.Files != 12 || rep.Keys != 13 || rep.Downloaded != 1 || len(cert.Transfers) != 6 || cert.Operator != "cli:alice" || cert.Manager != "boss@corp.example" {
		t.Fatalf("report %+v operator %s", rep, cert.Operator)
	}
	statuses := map[string]int{}
	for _, tr := range cert.Transfers {
		statuses[tr.Status]++
	}
	if statuses["revoked"] != 1 || statuses["destroyed"] != 5 {
		t.Fatalf("transfer statuses in the certificate: %v", statuses)
	}
	if html, err := os.ReadFile(iss.HTMLPath); err != nil || !strings.Contains(string(html), "削除証明書") {
		t.Fatalf("HTML: %v", err)
	}
	if len(iss.ObjectKeys) != 2 || iss.ObjectKeys[0] != audit.CertificatePrefix+iss.ID+".json.gz" {
		t.Fatalf("certificate published as %v", iss.ObjectKeys)
	}
	for _, k := range iss.ObjectKeys {
		if _, err := f.Store.Stat(f.ctx, k); err != nil {
			t.Fatalf("certificate not in object storage: %v", err)
		}
	}
	evs := f.events(t)
	if countType(evs, audit.TypeContractEnded) != 1 || countType(evs, audit.TypeCertificateIssued) != 1 ||
		countType(evs, audit.TypeObjectAbsent) != 12 || countType(evs, audit.TypeKeyDestroyed) != 13 {
		t.Fatalf("ledger: ended %d, issued %d, absent %d, keys %d", countType(evs, audit.TypeContractEnded),
			countType(evs, audit.TypeCertificateIssued), countType(evs, audit.TypeObjectAbsent), countType(evs, audit.TypeKeyDestroyed))
	}
	last := evs[len(evs)-1]
	if last.Type != audit.TypeCertificateIssued || last.Details["certificate"] != iss.ID {
		t.Fatalf("last event %+v", last)
	}
	c, _ := contract.ByID(f.ctx, f.DB.Read(), f.c.ID)
	if err := c.Usable(f.Clock.Now()); !errors.Is(err, contract.ErrNotActive) {
		t.Fatalf("an ended contract is usable: %v", err)
	}

	// Ending it again changes nothing and hands back the same certificate.
	again, err := destroy.EndContract(f.ctx, d, f.c.Code, "cli:alice", "")
	if err != nil || !again.WasEnded || again.ID != iss.ID {
		t.Fatalf("again: %+v, %v", again, err)
	}
	if n := len(f.events(t)); n != len(evs) {
		t.Fatalf("ending twice recorded %d more events", n-len(evs))
	}
}

// TestEndContractResumes: a destruction interrupted half-way (the process
// dies after a few objects) is finished by EndDue, run by the scheduler of
// another process, and the certificate verifies with every step recorded
// once.
func TestEndContractResumes(t *testing.T) {
	f := newFixture(t, contract.Spec{})
	ts := f.seed(t, seed.Options{Transfers: 8, FilesPerTransfer: 2})
	ctx, crash := context.WithCancel(f.ctx)
	d := f.deps("host/100")
	d.AfterDelete = func(n int64) {
		if n == 5 {
			crash()
		}
	}
	if _, err := destroy.EndContract(ctx, d, f.c.Code, "cli:alice", ""); err == nil {
		t.Fatal("an interrupted destruction reported success")
	}
	c, _ := contract.ByID(f.ctx, f.DB.Read(), f.c.ID)
	if c.Status != contract.StatusEnding {
		t.Fatalf("status after the crash: %s", c.Status)
	}
	var kek []byte
	f.DB.Read().QueryRow(`SELECT kek_wrapped FROM contracts WHERE id = ?`, f.c.ID).Scan(&kek)
	if kek != nil {
		t.Fatal("keys are not destroyed before objects")
	}

	// The dead process still "holds" a fresh lease: another live owner's
	// scheduler leaves it alone...
	alive := true
	sd := f.deps("host/200")
	sd.OwnerAlive = func(owner string) bool { return alive }
	if resumed, ended, err := destroy.EndDue(f.ctx, sd); len(resumed)+len(ended) != 0 || err != nil {
		t.Fatalf("resumed a destruction whose owner is alive: %v %v, %v", resumed, ended, err)
	}
	// ...until the owner is known dead.
	alive = false
	if resumed, _, err := destroy.EndDue(f.ctx, sd); err != nil || len(resumed) != 1 {
		t.Fatalf("EndDue: resumed %v, %v", resumed, err)
	}
	f.checkDestroyed(t, ts)
	iss, err := destroy.EndContract(f.ctx, sd, f.c.Code, "", "")
	if err != nil || !iss.WasEnded {
		t.Fatal(err)
	}
	if _, _, err := audit.VerifyCertificate(iss.JSON, f.VKey); err != nil {
		t.Fatal(err)
	}
	evs := f.events(t)
	if countType(evs, audit.TypeObjectDeleted) != 16 || countType(evs, audit.TypeObjectAbsent) != 16 || countType(evs, audit.TypeContractEnded) != 1 {
		t.Fatalf("deleted %d, absent %d, ended %d", countType(evs, audit.TypeObjectDeleted), countType(evs, audit.TypeObjectAbsent), countType(evs, audit.TypeContractEnded))
	}
	if iss.Certificate.Operator != "cli:alice" {
		t.Fatalf("operator %q: the one who ended it", iss.Certificate.Operator)
	}
}

// TestEndContractFleetKeepsMasterKey: on PostgreSQL the master key is a
// fleet's and is not rotated at contract end; the certificate, which still
// verifies, says so as the exception "master key not rotated", with the
// reason in Japanese and English, and its conditions ask for every backup
// made before the end to be destroyed.
func TestEndContractFleetKeepsMasterKey(t *testing.T) {
	f := newFixture(t, contract.Spec{})
	f.seed(t, seed.Options{Transfers: 1, FilesPerTransfer: 1, Recipients: []string{"carol@client.example"}})
	d := f.deps("host/1")
	d.RotateOff = destroy.RotateOffFleet
	iss, err := destroy.EndContract(f.ctx, d, f.c.Code, "cli:alice", "project finished")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(iss.JSONPath)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := audit.VerifyCertificate(data, f.VKey)
	if err != nil {
		t.Fatalf("certificate does not verify: %v", err)
	}
	if cert.MasterKey != nil {
		t.Fatalf("the certificate claims a rotation: %+v", cert.MasterKey)
	}
	var found bool
	for _, x := range cert.Exceptions {
		if x.Step != "master-key" {
			continue
		}
		found = true
		if x.Result != destroy.RotateOffFleet ||
			!strings.Contains(x.Text.EN, "The master key was not rotated (the master key is shared by the instances of a fleet") ||
			!strings.Contains(x.Text.JA, "マスター鍵を更新しませんでした（PostgreSQL 上のフリートの全インスタンスがマスター鍵を共有しています") {
			t.Fatalf("exception: %+v", x)
		}
	}
	if !found {
		t.Fatalf("no master-key exception: %+v", cert.Exceptions)
	}
	if countType(f.events(t), audit.TypeKeyRotated) != 0 {
		t.Fatal("the master key was rotated")
	}
}
