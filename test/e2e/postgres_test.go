package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testpg"
	"github.com/sealgate/sealgate/storage/s3/s3test"
)

// TestPostgresS3: `sealgate serve` with SEALGATE_DATABASE_URL on a real
// PostgreSQL and a real S3 server (versitygw): a message is accepted,
// sealed and both notices delivered; a contract ends with a certificate
// that verifies, saying that PostgreSQL's files were not scrubbed; the
// ledger in PostgreSQL verifies; no SQLite file is made.
func TestPostgresS3(t *testing.T) {
	url := testpg.URL(t)
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "pg")
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: append(s3Env(cfg), "SEALGATE_DATABASE_URL="+url)})
	cliOK(t, g, "contract", "add", "C-PG", "--domains", "client.example")
	sendAndCollect(t, g, sink, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "[C-PG] on PostgreSQL"},
		"body", attachment{name: "p.bin", contentType: "application/octet-stream", data: randomBytes(5000)}))
	if n := dbInt(t, g, `SELECT COUNT(*) FROM transfers`); n != 1 {
		t.Fatalf("%d transfers in PostgreSQL", n)
	}
	out := cliOK(t, g, "contract", "end", "C-PG", "--yes")
	cert := certPathRE.FindStringSubmatch(out)
	if cert == nil {
		t.Fatalf("no certificate:\n%s", out)
	}
	cliOK(t, g, "audit", "verify-certificate", "--key", "@"+filepath.Join(g.dir, "keys", "ledger.pub"), cert[1])
	file, err := os.ReadFile(cert[1])
	if err != nil {
		t.Fatal(err)
	}
	body := certDocument(t, file)
	if !strings.Contains(string(body), "not truncated") || !strings.Contains(string(body), "PostgreSQL") {
		t.Errorf("the certificate does not say that PostgreSQL's files were not scrubbed:\n%s", body)
	}
	cliOK(t, g, "audit", "checkpoint")
	cliOK(t, g, "audit", "verify-db")
	if _, err := os.Stat(filepath.Join(g.dir, "sealgate.db")); !os.IsNotExist(err) {
		t.Fatalf("a SQLite file was made: %v", err)
	}
}

// TestPostgresRefusesFSStore: with PostgreSQL and the fs store, start is
// refused, saying why in both languages.
func TestPostgresRefusesFSStore(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(os.Environ(), "SEALGATE_DATA_DIR="+dir, "SEALGATE_DATABASE_URL=postgres://sealgate@/none?host="+dir, "SEALGATE_STORAGE=fs")
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err == nil || !strings.Contains(out, "the object store must be S3") || !strings.Contains(out, "S3 にしてください") {
		t.Fatalf("serve with PostgreSQL and the fs store: %v\n%s", err, out)
	}
}
