package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/internal/seed"
	"github.com/sealgate/sealgate/internal/testsink"
	"github.com/sealgate/sealgate/masterkey"
)

// backup is a copy of a gateway's data directory as an operator's backup
// would hold it: the database (consistent, through SQLite's VACUUM INTO)
// and the key files.
type backup struct {
	db       string
	keyFiles map[string][]byte
}

func takeBackup(t *testing.T, g *gw) backup {
	t.Helper()
	b := backup{db: filepath.Join(t.TempDir(), "backup.db"), keyFiles: map[string][]byte{}}
	if _, err := g.db().Exec(`VACUUM INTO ?`, b.db); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(g.dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(g.dir, "keys", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		b.keyFiles[e.Name()] = data
	}
	return b
}

// holdingsOf is everything in the database file db together with keyFiles
// and passphrases, expanded (every secret it opens, it uses).
func holdingsOf(t *testing.T, db string, keyFiles [][]byte, passphrases ...string) *seed.Holdings {
	t.Helper()
	conn, err := sql.Open("sqlite", "file:"+db+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h, err := seed.Gather(context.Background(), conn, keyFiles, passphrases)
	if err != nil {
		t.Fatal(err)
	}
	h.Expand()
	return h
}

func currentKeyFiles(t *testing.T, g *gw) [][]byte {
	t.Helper()
	var out [][]byte
	entries, _ := os.ReadDir(filepath.Join(g.dir, "keys"))
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(g.dir, "keys", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestContractEndBackupUnreadable: a backup of the data directory taken
// before a contract ends cannot open the contract's files with the master
// key in use after the end (the end rotated it), even with the
// recipient's passphrase; the certificate cites the rotation and says
// that old master key copies and older backups must be destroyed. (With
// the old master key, the backup still opens them: that is the condition
// the certificate states, not something it claims away.)
func TestContractEndBackupUnreadable(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	cliOK(t, g, "contract", "add", "C-BAK", "--domains", "client.example", "--manager", "boss@corp.example")
	cliOK(t, g, "contract", "add", "C-LIVE", "--domains", "partner.example", "--manager", "boss@corp.example")
	data := randomBytes(20000)
	st := sendAndCollect(t, g, sink, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "[C-BAK] plans"},
		"body", attachment{name: "plans.pdf", contentType: "application/pdf", data: data}))
	live := randomBytes(9000)
	stLive := sendAndCollect(t, g, sink, []string{extB}, buildMessage(map[string]string{"From": sender, "To": extB, "Subject": "[C-LIVE] other"},
		"body", attachment{name: "other.pdf", contentType: "application/pdf", data: live}))
	stolen, err := os.ReadFile(filepath.Join(g.dir, "objects", "objects", "sealed", st.id, "0.age"))
	if err != nil {
		t.Fatal(err)
	}
	bak := takeBackup(t, g)
	var bakKeys [][]byte
	for _, b := range bak.keyFiles {
		bakKeys = append(bakKeys, b)
	}
	// Control: the backup as taken (with the key of its epoch) opens it.
	if pt, ok := holdingsOf(t, bak.db, bakKeys, st.pass[extA]).Open(stolen); !ok || !bytes.Equal(pt, data) {
		t.Fatal("control failed: the backup with its own master key does not open the file")
	}

	out := cliOK(t, g, "contract", "end", "C-BAK", "--yes")
	certPath := certPathRE.FindStringSubmatch(out)[1]
	if after := takeBackup(t, g); bytes.Equal(after.keyFiles["master.key"], bak.keyFiles["master.key"]) {
		t.Fatal("the master key file did not change at contract end")
	}
	// The backup's database, the current key files and carol's passphrase
	// together open nothing of C-BAK.
	h := holdingsOf(t, bak.db, currentKeyFiles(t, g), st.pass[extA])
	if _, ok := h.Open(stolen); ok {
		t.Fatalf("a backup taken before the end opens the file with the current master key (%d values opened)", h.Opened)
	}
	// The running gateway reloaded the new key: the other contract's link
	// still works, and new mail is sealed and delivered.
	if resp, body := postForm(t, g.url("/t/"+stLive.tokens[extB]+"/download"), form("passphrase", stLive.pass[extB], "file", "0")); resp.StatusCode != 200 || !bytes.Equal(body, live) {
		t.Fatalf("download under the live contract after rotation: %d", resp.StatusCode)
	}
	again := sendAndCollect(t, g, sink, []string{extB}, buildMessage(map[string]string{"From": sender, "To": extB, "Subject": "[C-LIVE] after"},
		"body", attachment{name: "after.pdf", contentType: "application/pdf", data: live}))
	if resp, body := postForm(t, g.url("/t/"+again.tokens[extB]+"/download"), form("passphrase", again.pass[extB], "file", "0")); resp.StatusCode != 200 || !bytes.Equal(body, live) {
		t.Fatalf("download of mail sent after rotation: %d", resp.StatusCode)
	}

	cert, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := audit.ParseCertificate(cert)
	if err != nil {
		t.Fatal(err)
	}
	if c.MasterKey == nil || c.MasterKey.RetiredEpoch != 1 || c.MasterKey.Epoch != 2 {
		t.Fatalf("certificate master key: %+v", c.MasterKey)
	}
	var conds []string
	for _, x := range c.Conditions {
		conds = append(conds, x.EN)
	}
	if !strings.Contains(strings.Join(conds, "\n"), "master keys of epochs ≤ 1") || !strings.Contains(strings.Join(conds, "\n"), "backup of the gateway's database") {
		t.Fatalf("conditions:\n%s", strings.Join(conds, "\n"))
	}
	for _, s := range append(c.Method.Steps, c.Statements...) {
		if strings.Contains(s.EN, "backups included") {
			t.Fatalf("the certificate still claims backups cannot be decrypted: %s", s.EN)
		}
	}
	out = cliOK(t, g, "audit", "verify-certificate", "--key", "@"+filepath.Join(g.dir, "keys", "ledger.pub"), certPath)
	if !strings.Contains(out, "verifies") {
		t.Fatalf("verify-certificate:\n%s", out)
	}
	out = cliOK(t, g, "key", "status")
	if !regexp.MustCompile(`(?m)^1\s+destroyed`).MatchString(out) || !regexp.MustCompile(`(?m)^2\s+current`).MatchString(out) {
		t.Fatalf("key status:\n%s", out)
	}
}

// TestKeyRotateWhileServing: `sealgate key rotate` while the gateway runs
// and a key notice waits: the waiting passphrase and its spool are
// re-wrapped, the key notice still leaves and the passphrase works; the
// old key opens nothing the gateway now holds.
func TestKeyRotateWhileServing(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: []string{"SEALGATE_KEY_NOTICE_DELAY=8s"}})
	oldKey, err := os.ReadFile(filepath.Join(g.dir, "keys", "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(12000)
	raw := buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "waiting key"}, "body",
		attachment{name: "a.pdf", contentType: "application/pdf", data: data})
	if err := send(t, g.smtpAddr, sender, []string{extA}, raw); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the link notice", func() bool { return len(classify(sink.Messages()).copies) == 1 })
	if n := dbInt(t, g, `SELECT COUNT(*) FROM outbound WHERE kind = 'key' AND status IN ('waiting', 'queued') AND secret IS NOT NULL`); n != 1 {
		t.Fatalf("%d key notices waiting", n)
	}
	out := cliOK(t, g, "key", "rotate", "--reason", "test")
	if !strings.Contains(out, "epoch 1 to 2") {
		t.Fatalf("key rotate:\n%s", out)
	}
	// The next message, read with the key the gateway held before the
	// rotation, is accepted at once (re-sealed with the new key), not
	// deferred.
	if err := send(t, g.smtpAddr, sender, []string{extB}, buildMessage(map[string]string{"From": sender, "To": extB, "Subject": "right after"}, "body",
		attachment{name: "b.pdf", contentType: "application/pdf", data: data})); err != nil {
		t.Fatalf("the first message after a rotation: %v", err)
	}
	msgs, err := sink.Wait(60*time.Second, func(m []testsink.Message) bool { return len(classify(m).keys) == 2 })
	if err != nil {
		t.Fatal(err)
	}
	d := classify(msgs)
	// Bounces of the copy and of the key notice would not carry the link
	// or the passphrase back: the next hop was asked for headers only.
	if d.copies[extA].Return != "HDRS" || d.keys[extA].Return != "HDRS" {
		t.Fatalf("RET of the copy %q, of the key notice %q; want HDRS", d.copies[extA].Return, d.keys[extA].Return)
	}
	_, token := linkOf(t, d.copies[extA])
	pass := passphraseOf(t, d.keys[extA])
	if resp, body := postForm(t, g.url("/t/"+token+"/download"), form("passphrase", pass, "file", "0")); resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("download after rotation: %d", resp.StatusCode)
	}
	old, err := crypto.NewKeyring(string(oldKey))
	if err != nil {
		t.Fatal(err)
	}
	var kek []byte
	g.db().QueryRow(`SELECT kek_wrapped FROM contracts WHERE code = 'DEFAULT'`).Scan(&kek)
	if _, err := old.Unwrap(kek); err == nil {
		t.Fatal("the old master key still opens the default contract's key")
	}
	if ev := g.ledger(); !strings.Contains(ledgerTypesOf(ev), "key.rotated") {
		t.Fatal("no key.rotated in the ledger")
	}
}

func ledgerTypesOf(evs []ledgerEvent) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(e.Type + " ")
	}
	return b.String()
}

// TestCertificateItemRemoved: a certificate re-signed with the gateway's
// own ledger key after removing a transfer (or a recipient) fails
// `sealgate audit verify-certificate`, naming the count the contract.ended
// event recorded.
func TestCertificateItemRemoved(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	cliOK(t, g, "contract", "add", "C-CNT", "--domains", "client.example,partner.example", "--manager", "boss@corp.example")
	for _, subj := range []string{"[C-CNT] one", "[C-CNT] two"} {
		sendAndCollect(t, g, sink, []string{extA, extB}, buildMessage(map[string]string{"From": sender, "To": extA + ", " + extB, "Subject": subj},
			"body", attachment{name: "x.bin", contentType: "application/octet-stream", data: randomBytes(3000)}))
	}
	out := cliOK(t, g, "contract", "end", "C-CNT", "--yes")
	certPath := certPathRE.FindStringSubmatch(out)[1]
	data, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := crypto.NewKeyring(string(mustRead(t, filepath.Join(g.dir, "keys", "master.key"))))
	if err != nil {
		t.Fatal(err)
	}
	skey, _, err := masterkey.LedgerKey{Dir: filepath.Join(g.dir, "keys")}.Load(keys, rand.Reader, "", false)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	pub := "@" + filepath.Join(g.dir, "keys", "ledger.pub")
	for name, edit := range map[string]func(c *audit.Certificate){
		"transfer": func(c *audit.Certificate) {
			gone := c.Transfers[1]
			c.Transfers = c.Transfers[:1]
			c.Summary.Transfers--
			c.Summary.Files -= len(gone.Files)
			c.Summary.Objects -= len(gone.Files)
			c.Summary.Recipients -= len(gone.Recipients)
			c.Summary.Keys -= len(gone.Recipients)
			for _, f := range gone.Files {
				c.Summary.Bytes -= f.Size
			}
		},
		"recipient": func(c *audit.Certificate) {
			tr := &c.Transfers[0]
			tr.Recipients = tr.Recipients[:1]
			for i := range tr.Files {
				tr.Files[i].Downloads = tr.Files[i].Downloads[:1]
			}
			c.Summary.Recipients--
			c.Summary.Keys--
		},
	} {
		c, err := audit.ParseCertificate(data)
		if err != nil {
			t.Fatal(err)
		}
		edit(c)
		resigned, err := audit.SignCertificate(c, signer)
		if err != nil {
			t.Fatal(err)
		}
		bad := filepath.Join(t.TempDir(), name+".json")
		os.WriteFile(bad, resigned, 0o600)
		out, code := cliRun(t, g, nil, "audit", "verify-certificate", "--key", pub, bad)
		if code == 0 || !strings.Contains(out, "incomplete") || !strings.Contains(out, "不完全") {
			t.Fatalf("a certificate without a %s: exit %d\n%s", name, code, out)
		}
	}
	// The genuine one verifies, and says the count it checked.
	if out, code := cliRun(t, g, nil, "audit", "verify-certificate", "--key", pub, certPath); code != 0 {
		t.Fatalf("genuine certificate: exit %d\n%s", code, out)
	}
	var c struct {
		Certificate struct {
			Summary audit.CertSummary `json:"summary"`
		} `json:"certificate"`
	}
	json.Unmarshal(certDocument(t, data), &c)
	if c.Certificate.Summary.Transfers != 2 || c.Certificate.Summary.Recipients != 4 {
		t.Fatalf("summary %+v", c.Certificate.Summary)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
