package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/internal/seed"
	"github.com/sealgate/sealgate/witness/cosig"
)

type cliEnv struct {
	e        *env
	out, err *bytes.Buffer
	dir      string
}

// newCLIEnv wires a real env (configuration from the environment, keys
// created) over a temporary data directory, with a terminal on stderr.
func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	dir := t.TempDir()
	vars := map[string]string{"SEALGATE_DATA_DIR": dir, "SEALGATE_INTERNAL_DOMAINS": "corp.example", "USER": "alice",
		"SEALGATE_HOSTNAME": "gw.test", "SEALGATE_TIMEZONE": "Asia/Tokyo"}
	c := &cliEnv{out: &bytes.Buffer{}, err: &bytes.Buffer{}, dir: dir}
	clock := seed.NewClock(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC))
	c.e = &env{Stdout: c.out, Stderr: c.err, Stdin: strings.NewReader(""), IsTerminal: true, Now: clock.Now, Rand: rand.Reader,
		Getenv: func(k string) string { return vars[k] }}
	c.e.createKeys = true
	c.e.wire()
	t.Cleanup(c.e.close)
	return c
}

func (c *cliEnv) run(t *testing.T, cmd func(context.Context, *env, []string) error, args ...string) string {
	t.Helper()
	c.out.Reset()
	c.err.Reset()
	if err := cmd(context.Background(), c.e, args); err != nil {
		t.Fatalf("%v: %v\nstderr: %s", args, err, c.err)
	}
	return c.out.String()
}

func TestContractCLI(t *testing.T) {
	c := newCLIEnv(t)
	out := c.run(t, cmdContract, "add", "C-2026-001", "--name", "見積支援", "--domains", "client.example", "--manager", "boss@corp.example",
		"--end", "2026-12-31", "--download-limit", "3", "--link-expiry", "7d")
	if !strings.Contains(out, "C-2026-001") {
		t.Fatalf("add: %s", out)
	}
	c.run(t, cmdContract, "update", "C-2026-001", "--add-domain", "partner.example", "--strip-tag")
	out = c.run(t, cmdContract, "show", "C-2026-001")
	for _, want := range []string{"client.example,partner.example", "boss@corp.example", "2026-12-31", "7d", "3"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	ctx := context.Background()
	db, _ := c.e.OpenDB(ctx)
	k, err := contract.ByCode(ctx, db.Read(), "C-2026-001")
	if err != nil {
		t.Fatal(err)
	}
	// The end date is the end of 2026-12-31 in Tokyo.
	if want := time.Date(2027, 1, 1, 0, 0, 0, 0, time.FixedZone("JST", 9*3600)); !k.EndsAt.Equal(want) || !k.StripTag {
		t.Fatalf("ends %v (want %v), strip %v", k.EndsAt, want, k.StripTag)
	}
	st, _ := c.e.OpenStore(ctx)
	led, _ := c.e.Ledger(ctx)
	ts, err := seed.Transfers(ctx, seed.Deps{DB: db, Store: st, Ledger: led, Rand: rand.Reader}, k, seed.Options{Transfers: 3, Now: c.e.Now(),
		Recipients: []string{"carol@client.example", "dave@partner.example"}})
	if err != nil {
		t.Fatal(err)
	}

	out = c.run(t, cmdTransfer, "list", "--contract", "C-2026-001")
	if strings.Count(out, "C-2026-001") != 3 {
		t.Fatalf("transfer list:\n%s", out)
	}
	out = c.run(t, cmdTransfer, "extend", ts[0].ID, "--by", "2d")
	if !strings.Contains(out, "→") {
		t.Fatalf("extend: %s", out)
	}
	out = c.run(t, cmdTransfer, "revoke", ts[1].ID, "--recipient", "dave@partner.example", "--reason", "mis-sent")
	if !strings.Contains(out, "dave@partner.example") {
		t.Fatalf("revoke: %s", out)
	}
	out = c.run(t, cmdTransfer, "show", ts[1].ID)
	if !regexp.MustCompile(`dave@partner.example\s+revoked`).MatchString(out) {
		t.Fatalf("show after revoke:\n%s", out)
	}

	// Ending: confirmation on a terminal, progress on stderr.
	c.e.Stdin = strings.NewReader("C-2026-00X\n")
	if err := cmdContract(ctx, c.e, []string{"end", "C-2026-001"}); err == nil {
		t.Fatal("a wrong confirmation ended the contract")
	}
	c.e.Stdin = strings.NewReader("C-2026-001\n")
	out = c.run(t, cmdContract, "end", "C-2026-001", "--reason", "契約満了")
	progress := c.err.String()
	for _, want := range []string{"鍵の消去 / destroying keys", "削除 / deleting objects", "削除の確認 / verifying absence", "\r"} {
		if !strings.Contains(progress, want) {
			t.Errorf("progress lacks %q: %q", want, progress)
		}
	}
	m := regexp.MustCompile(`JSON: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("end output:\n%s", out)
	}
	data, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	vkey, _ := c.e.LedgerVerifierKey()
	cert, _, err := audit.VerifyCertificate(data, vkey)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Operator != "cli:alice" || cert.Reason != "契約満了" || cert.Summary.Files != 3 {
		t.Fatalf("certificate: operator %q reason %q files %d", cert.Operator, cert.Reason, cert.Summary.Files)
	}
	out = c.run(t, cmdAudit, "verify-certificate", "--key", vkey, m[1])
	if !strings.Contains(out, "verifies") {
		t.Fatalf("verify-certificate: %s", out)
	}
	// No witness cosigned its checkpoint: --witness fails, naming why.
	_, wkey, _ := cosig.GenerateKey(rand.Reader, "witness.client.example")
	if err := cmdAudit(ctx, c.e, []string{"verify-certificate", "--key", vkey, "--witness", wkey, m[1]}); !errors.Is(err, audit.ErrNotWitnessed) ||
		!strings.Contains(err.Error(), "cosigned by 0 of the 1 witnesses required") {
		t.Fatalf("verify-certificate --witness: %v", err)
	}
	if filepath.Dir(m[1]) != filepath.Join(c.dir, "certificates") {
		t.Fatalf("certificate written to %s", m[1])
	}
	// Updating an ended contract is refused, with a bilingual message.
	err = cmdContract(ctx, c.e, []string{"update", "C-2026-001", "--name", "x"})
	if err == nil || !strings.Contains(err.Error(), "終了") {
		t.Fatalf("update after end: %v", err)
	}
}

// TestContractShowUnreadable checks that `contract show` fails when it
// cannot read what it reports, instead of printing counts of zero.
func TestContractShowUnreadable(t *testing.T) {
	c := newCLIEnv(t)
	c.run(t, cmdContract, "add", "C-2026-001", "--domains", "client.example")
	ctx := context.Background()
	db, err := c.e.OpenDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The files can no longer be counted.
	if err := db.Write(ctx, func(tx *database.Tx) error {
		_, err := tx.ExecContext(ctx, `ALTER TABLE files RENAME TO files_unreadable`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c.out.Reset()
	err = cmdContract(ctx, c.e, []string{"show", "C-2026-001"})
	if err == nil {
		t.Fatalf("contract show succeeded without its file counts:\n%s", c.out)
	}
	if strings.Contains(c.out.String(), "ファイル / files") {
		t.Errorf("contract show printed counts it could not read:\n%s", c.out)
	}
}
