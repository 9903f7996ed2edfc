package e2e

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/audit"
)

// TestContractEndNamesDestroyed: while a contract lives, the auditor's
// export shows its file names, subject and counterparty address; after
// `contract end`, none of them is in the database file, its WAL, any
// object of the store or a fresh export (JSON, CSV, HTML) — a byte scan —
// while the whole ledger still verifies and the client's copy of the
// certificate names them and verifies.
// commitmentRE matches a name's commitment (base64url of 32 bytes) standing alone.
var commitmentRE = regexp.MustCompile(`(^|[\s/])[A-Za-z0-9_-]{43}($|\s)`)

func TestContractEndNamesDestroyed(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	cliOK(t, g, "contract", "add", "C-NAMES", "--name", "案件", "--counterparty", "Client KK",
		"--domains", "client.example", "--manager", "boss@corp.example")
	const (
		subject = "極秘 買収提案 Q7X"
		file    = "買収提案_A社_Q7X.pdf"
		addr    = "kacho.q7x@client.example"
	)
	secrets := []string{subject, file, addr}
	data := randomBytes(20000)
	st := sendAndCollect(t, g, sink, []string{addr}, buildMessage(map[string]string{"From": sender, "To": addr,
		"Subject": subjectJA("[C-NAMES] " + subject)}, "body", attachment{name: file, contentType: "application/pdf", data: data}))
	if resp, body := postForm(t, g.url("/t/"+st.tokens[addr]+"/download"), form("passphrase", st.pass[addr], "file", "0")); resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("download: %d", resp.StatusCode)
	}
	dir := t.TempDir()
	pub := filepath.Join(g.dir, "keys", "ledger.pub")

	// Before the end the auditor's exports name them.
	before := filepath.Join(dir, "before.csv")
	cliOK(t, g, "audit", "export", "--contract", "C-NAMES", "--format", "csv", "-o", before)
	if b, _ := os.ReadFile(before); !bytes.Contains(b, []byte(file)) || !bytes.Contains(b, []byte(addr)) || !bytes.Contains(b, []byte(subject)) {
		t.Fatalf("export before the end lacks the names:\n%s", b)
	}
	// The records hold commitments only, from the start.
	rows, err := g.db().Query(`SELECT data FROM ledger_records`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var rec []byte
		rows.Scan(&rec)
		for _, s := range secrets {
			if bytes.Contains(rec, []byte(s)) {
				t.Errorf("a ledger record holds %q: %s", s, rec)
			}
		}
	}
	rows.Close()

	out := cliOK(t, g, "contract", "end", "C-NAMES", "--yes", "--reason", "契約満了")
	m := certPathRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("contract end output:\n%s", out)
	}
	// The client's copy names the file and verifies.
	certFile, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	cert := certDocument(t, certFile)
	if !bytes.Contains(cert, []byte(file)) || !bytes.Contains(cert, []byte(`"names"`)) {
		t.Fatalf("client's certificate: %v\n%s", err, cert)
	}
	if out := cliOK(t, g, "audit", "verify-certificate", "--key", "@"+pub, m[1]); !strings.Contains(out, "verifies") || !strings.Contains(out, "each matches its commitment") {
		t.Fatalf("verify-certificate:\n%s", out)
	}

	exports := map[string]string{}
	for _, f := range []string{"json", "csv", "html"} {
		p := filepath.Join(dir, "after."+f)
		cliOK(t, g, "audit", "export", "--format", f, "-o", p)
		exports[p] = f
	}
	if out := cliOK(t, g, "audit", "verify", "--key", "@"+pub, filepath.Join(dir, "after.json")); !strings.Contains(out, "verification succeeded") {
		t.Fatalf("audit verify after the end:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "after.csv")); !bytes.Contains(b, []byte("破棄済み / destroyed")) {
		t.Fatal("the export after the end does not mark the destroyed names")
	}
	// transfer show says where names were destroyed, not the commitments.
	out = cliOK(t, g, "transfer", "show", dbString(t, g, `SELECT id FROM transfers`))
	if strings.Count(out, "破棄済み / destroyed") < 3 || commitmentRE.MatchString(out) {
		t.Fatalf("transfer show after the end (want the subject, file and recipient shown as destroyed):\n%s", out)
	}

	// The forensic scan: raw bytes, the gateway still running.
	scan := []string{filepath.Join(g.dir, "sealgate.db"), filepath.Join(g.dir, "sealgate.db-wal")}
	for p := range exports {
		scan = append(scan, p)
	}
	objects := 0
	filepath.WalkDir(filepath.Join(g.dir, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			scan = append(scan, p)
			objects++
		}
		return nil
	})
	if objects == 0 {
		t.Fatal("no objects in the store to scan (the ledger's checkpoints and certificate should be there)")
	}
	check := func(where string, b []byte) {
		t.Helper()
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) || bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(s))) {
				t.Errorf("%s holds %q after the contract ended", where, s)
			}
		}
	}
	compressed := 0
	for _, p := range scan {
		b, err := os.ReadFile(p)
		if err != nil {
			if os.IsNotExist(err) && strings.HasSuffix(p, "-wal") {
				continue
			}
			t.Fatal(err)
		}
		check(p, b)
		if audit.CertificateCompressed(b) { // a certificate (v4): its content too
			check(p+" (uncompressed)", certDocument(t, b))
			compressed++
		}
	}
	// The certificates the database keeps are compressed too.
	rows, err = g.db().Query(`SELECT id, json FROM certificates`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var b []byte
		if err := rows.Scan(&id, &b); err != nil {
			t.Fatal(err)
		}
		check("certificates."+id+" (uncompressed)", certDocument(t, b))
		compressed++
	}
	rows.Close()
	if compressed < 2 {
		t.Fatalf("%d compressed certificates scanned, want the stored object and the database row", compressed)
	}
	t.Logf("scanned %d files (%d objects, %d certificates uncompressed)", len(scan), objects, compressed)
}
