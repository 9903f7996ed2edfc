package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/storage"
	"github.com/sealgate/sealgate/storage/fs"
	"github.com/sealgate/sealgate/witness/cosig"
)

type auditEnv struct {
	e      *env
	out    *bytes.Buffer
	errb   *bytes.Buffer
	db     *database.DB
	l      *audit.Ledger
	st     *fs.Store
	dir    string
	vkey   string
	signer note.Signer
}

func newAuditEnv(t *testing.T) *auditEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := database.Open(ctx, filepath.Join(dir, "sealgate.db"), database.Options{Synchronous: "OFF"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := fs.Open(filepath.Join(dir, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { now = now.Add(time.Second); return now }
	l, err := audit.New(audit.Options{Origin: "sealgate.test/ledger", Now: clock, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := audit.GenerateKey(rand.Reader, "sealgate.test")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	a := &auditEnv{out: &bytes.Buffer{}, errb: &bytes.Buffer{}, db: db, l: l, st: st, dir: dir, vkey: vkey, signer: signer}
	a.e = &env{
		Stdout: a.out, Stderr: a.errb, Stdin: strings.NewReader(""),
		Now: clock, Rand: rand.Reader,
		Getenv:            func(k string) string { return map[string]string{"USER": "carol"}[k] },
		OpenDB:            func(context.Context) (*database.DB, error) { return db, nil },
		OpenStore:         func(context.Context) (storage.Store, error) { return st, nil },
		Ledger:            func(context.Context) (*audit.Ledger, error) { return l, nil },
		LedgerSigner:      func() (note.Signer, error) { return signer, nil },
		LedgerVerifierKey: func() (string, error) { return vkey, nil },
		LedgerOrigin:      func() string { return "sealgate.test/ledger" },
	}
	// Some history: two contracts, Japanese file names.
	err = db.Write(ctx, func(tx *database.Tx) error {
		for i := range 30 {
			c := []string{"ACME-2026", "BETA-01"}[i%2]
			if _, err := l.Append(ctx, tx, audit.Event{
				Type: audit.TypeFileSealed, Actor: "smtp:192.0.2.1", Contract: c,
				File: "見積書_" + strings.Repeat("あ", i%3+1) + ".xlsx", Size: int64(100 + i),
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *auditEnv) run(t *testing.T, args ...string) error {
	t.Helper()
	a.out.Reset()
	a.errb.Reset()
	return cmdAudit(context.Background(), a.e, args)
}

func TestAuditCLI(t *testing.T) {
	a := newAuditEnv(t)
	path := func(n string) string { return filepath.Join(a.dir, n) }

	// checkpoint: prints the signed note, publishes it.
	if err := a.run(t, "checkpoint"); err != nil {
		t.Fatal(err, a.errb)
	}
	cp1, err := audit.OpenCheckpoint(a.out.Bytes(), a.vkey)
	if err != nil || cp1.Size != 30 {
		t.Fatalf("checkpoint output %q: %v", a.out, err)
	}
	os.WriteFile(path("cp1.note"), a.out.Bytes(), 0o644)
	if _, err := audit.PublishedCheckpoint(context.Background(), a.st); err != nil {
		t.Fatal(err)
	}

	// export in each format; flags after -o in any order.
	if err := a.run(t, "export", "--contract", "ACME-2026", "--from", "2026-04-01", "--to", "2026-04-01",
		"--previous", path("cp1.note"), "-o", path("acme.json")); err != nil {
		t.Fatal(err, a.errb)
	}
	if err := a.run(t, "export", "--format", "csv", "-o", path("all.csv")); err != nil {
		t.Fatal(err, a.errb)
	}
	csv, _ := os.ReadFile(path("all.csv"))
	if !bytes.HasPrefix(csv, []byte("\xEF\xBB\xBF番号 / No.,")) || !bytes.Contains(csv, []byte("見積書_あ.xlsx")) || !bytes.Contains(csv, []byte("\r\n")) {
		t.Fatalf("csv: %.200s", csv)
	}
	if err := a.run(t, "export", "--format", "html", "--contract", "ACME-2026", "-o", path("acme.html")); err != nil {
		t.Fatal(err, a.errb)
	}
	if html, _ := os.ReadFile(path("acme.html")); !bytes.Contains(html, []byte("返却・破棄")) {
		t.Fatal("html export lacks the clauses")
	}
	if err := a.run(t, "export", "-o", path("all.json")); err != nil {
		t.Fatal(err, a.errb)
	}
	if matches, _ := filepath.Glob(path(".*tmp*")); len(matches) != 0 {
		t.Fatalf("temporary files left: %v", matches)
	}

	// verify offline: key inline or @file; --previous.
	os.WriteFile(path("ledger.pub"), []byte(a.vkey+"\n"), 0o644)
	if err := a.run(t, "verify", "--key", "@"+path("ledger.pub"), "--previous", path("cp1.note"), path("acme.json")); err != nil {
		t.Fatal(err, a.errb)
	}
	if !strings.Contains(a.out.String(), "検証に成功しました / verification succeeded") || !strings.Contains(a.out.String(), "ACME-2026") {
		t.Fatalf("verify output: %s", a.out)
	}
	if err := a.run(t, "verify", path("all.json"), "--key", a.vkey); err != nil {
		t.Fatal(err, a.errb)
	}
	if !strings.Contains(a.out.String(), "全記録") {
		t.Fatalf("verify output: %s", a.out)
	}

	// Another gateway's key is refused, with a clear bilingual message.
	_, other, _ := audit.GenerateKey(rand.Reader, "sealgate.test")
	err = a.run(t, "verify", "--key", other, path("all.json"))
	if !errors.Is(err, audit.ErrWrongKey) || !strings.Contains(err.Error(), "別のゲートウェイ") || !strings.Contains(err.Error(), "not by the given key") {
		t.Fatalf("other key: %v", err)
	}

	// A tampered bundle: the error names the entry in both languages.
	b, _ := os.ReadFile(path("all.json"))
	tampered := bytes.Replace(b, []byte(`見積書_ああ.xlsx`), []byte(`見積書_いい.xlsx`), 1)
	if bytes.Equal(b, tampered) {
		t.Fatal("nothing to tamper with")
	}
	os.WriteFile(path("bad.json"), tampered, 0o644)
	err = a.run(t, "verify", "--key", a.vkey, path("bad.json"))
	var ve *audit.VerifyError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "検証に失敗しました: 記録 #1 ") || !strings.Contains(err.Error(), "verification failed: entry #1 ") {
		t.Fatalf("tampered bundle: %v", err)
	}

	// verify-db, with the published checkpoint and an external one.
	if err := a.run(t, "verify-db", "--previous", path("cp1.note")); err != nil {
		t.Fatal(err, a.errb)
	}
	if !strings.Contains(a.out.String(), "外部のチェックポイントと一致") {
		t.Fatalf("verify-db output: %s", a.out)
	}

	// prove: text and JSON; the JSON proof checks out offline.
	if err := a.run(t, "prove", "7"); err != nil {
		t.Fatal(err, a.errb)
	}
	if !strings.Contains(a.out.String(), "entry #7") || !strings.Contains(a.out.String(), "sealgate.test/ledger") {
		t.Fatalf("prove output: %s", a.out)
	}
	if err := a.run(t, "prove", "--json", "7"); err != nil {
		t.Fatal(err, a.errb)
	}
	var p audit.InclusionProof
	if err := json.Unmarshal(a.out.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if _, ev, err := audit.CheckInclusion(a.vkey, &p); err != nil || ev.Size != 107 {
		t.Fatalf("proof: %v %+v", err, ev)
	}
	if err := a.run(t, "prove", "100000"); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("prove beyond the checkpoint: %v", err)
	}

	// Usage errors.
	for _, args := range [][]string{
		nil, {"bogus"}, {"export"}, {"export", "-o", "x", "--format", "pdf"}, {"export", "-o", "x", "--from", "yesterday"},
		{"verify", "x.json"}, {"verify", "--key", a.vkey}, {"prove"}, {"prove", "-1"},
	} {
		var ue usageError
		if err := a.run(t, args...); !errors.As(err, &ue) {
			t.Errorf("%q: want a usage error, got %v", args, err)
		}
	}
}

// Tampering with the database is reported by verify-db, naming the entry.
func TestAuditVerifyDBTampered(t *testing.T) {
	a := newAuditEnv(t)
	if err := a.run(t, "checkpoint"); err != nil {
		t.Fatal(err)
	}
	raw, err := openRaw(filepath.Join(a.dir, "sealgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, s := range []string{
		`DROP TRIGGER ledger_records_no_delete`,
		`DELETE FROM ledger_records WHERE idx = 12`,
	} {
		if _, err := raw.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	err = a.run(t, "verify-db")
	if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "記録 #12 が欠落しています") || !strings.Contains(err.Error(), "entry #12 is missing") {
		t.Fatalf("verify-db of a tampered database: %v", err)
	}
}

func TestParseTime(t *testing.T) {
	from, err := parseTime("2026-04-01", false)
	if err != nil || !from.Equal(time.Date(2026, 4, 1, 0, 0, 0, 0, time.Local)) {
		t.Fatal(from, err)
	}
	to, err := parseTime("2026-04-01", true)
	if err != nil || !to.Equal(time.Date(2026, 4, 2, 0, 0, 0, 0, time.Local)) {
		t.Fatal(to, err)
	}
	r, err := parseTime("2026-04-01T09:30:00+09:00", true)
	if err != nil || !r.Equal(time.Date(2026, 4, 1, 0, 30, 0, 0, time.UTC)) {
		t.Fatal(r, err)
	}
}

func openRaw(path string) (*sql.DB, error) {
	return sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
}

func TestAuditProgressOnTerminal(t *testing.T) {
	a := newAuditEnv(t)
	a.e.IsTerminal = true
	if err := a.run(t, "export", "-o", filepath.Join(a.dir, "b.json")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.errb.String(), "\r出力中 / exporting 30/30 (100%)") {
		t.Fatalf("no progress line: %q", a.errb)
	}
	if err := a.run(t, "verify", "--key", a.vkey, filepath.Join(a.dir, "b.json")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.errb.String(), "\r検証中 / verifying 30/30 (100%)") {
		t.Fatalf("no progress line: %q", a.errb)
	}
	a.e.IsTerminal = false
	if err := a.run(t, "verify", "--key", a.vkey, filepath.Join(a.dir, "b.json")); err != nil || strings.Contains(a.errb.String(), "\r") {
		t.Fatalf("progress without a terminal: %q %v", a.errb, err)
	}
}

// TestAuditWitnessFlags: --witness and --witnesses make verify and
// verify-db require cosignatures, failing with the bilingual reason; a
// quorum above the keys given is a usage error.
func TestAuditWitnessFlags(t *testing.T) {
	a := newAuditEnv(t)
	path := func(n string) string { return filepath.Join(a.dir, n) }
	if err := a.run(t, "checkpoint"); err != nil {
		t.Fatal(err, a.errb)
	}
	if err := a.run(t, "export", "-o", path("all.json")); err != nil {
		t.Fatal(err, a.errb)
	}
	_, wkey, err := cosig.GenerateKey(rand.Reader, "witness.client.example")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path("witness.pub"), []byte(wkey+"\n"), 0o644)
	for _, args := range [][]string{
		{"verify", "--key", a.vkey, "--witness", "@" + path("witness.pub"), path("all.json")},
		{"verify-db", "--witness", wkey, "--witnesses", "1"},
	} {
		err := a.run(t, args...)
		if !errors.Is(err, audit.ErrNotWitnessed) || !strings.Contains(err.Error(), "証人による検証に失敗しました") ||
			!strings.Contains(err.Error(), "cosigned by 0 of the 1 witnesses required") {
			t.Fatalf("%v: %v", args, err)
		}
	}
	var ue usageError
	if err := a.run(t, "verify", "--key", a.vkey, "--witness", wkey, "--witnesses", "2", path("all.json")); !errors.As(err, &ue) {
		t.Fatalf("--witnesses 2 with one key: %v", err)
	}
	if err := a.run(t, "verify", "--key", a.vkey, path("all.json")); err != nil || strings.Contains(a.out.String(), "witness cosignatures") {
		t.Fatalf("without --witness: %v\n%s", err, a.out)
	}
}
