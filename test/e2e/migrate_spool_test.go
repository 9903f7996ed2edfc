package e2e

import (
	"bytes"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpg"
	"github.com/sealgate/sealgate/internal/testsink"
	"github.com/sealgate/sealgate/storage/s3/s3test"
)

// TestMigrateSpoolRowsAndFiles: mail queued in all three places a spool
// file of an embedded installation can be — a row (small), a file in
// <data_dir>/spool (over 256 KiB), and a small file in <data_dir>/spool
// written before the spool moved into the database (an upgrade with mail
// queued) — is carried by `sealgate migrate`, `migrate --verify` then
// passes, and serve on PostgreSQL + S3 delivers all three.
func TestMigrateSpoolRowsAndFiles(t *testing.T) {
	url := testpg.URL(t)
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "migspool")
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	cliOK(t, g, "contract", "add", "C-MSP", "--domains", "client.example")
	sink.Stop()
	line := strings.Repeat("large body line ", 4) + "\r\n"
	bodies := map[string]string{
		"small": "small queued body",
		"large": "large queued body\r\n" + strings.Repeat(line, (300<<10)/len(line)),
		"older": "older queued body",
	}
	for _, subj := range []string{"small", "large", "older"} {
		if err := send(t, g.smtpAddr, sender, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "[C-MSP] " + subj}, bodies[subj])); err != nil {
			t.Fatal(err)
		}
	}
	g.stop(syscall.SIGTERM)

	// The "older" message's spool as a release before the database kept
	// small spool files left it: a file in <data_dir>/spool, no row.
	var name string
	var data []byte
	if err := g.db().QueryRow(`SELECT s.name, s.data FROM spool_files s JOIN outbound o ON o.spool = s.name
		JOIN messages m ON m.id = o.message_id WHERE m.subject LIKE '%older'`).Scan(&name, &data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(g.dir, "spool", name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	rw, err := sql.Open("sqlite", "file:"+filepath.Join(g.dir, "sealgate.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	_, err = rw.Exec(`DELETE FROM spool_files WHERE name = ?`, name)
	rw.Close()
	if err != nil {
		t.Fatal(err)
	}
	if rows, files := dbInt(t, g, `SELECT COUNT(*) FROM spool_files`), len(mustGlobE2E(t, filepath.Join(g.dir, "spool", "*.age"))); rows != 1 || files != 2 {
		t.Fatalf("before the migration: %d spool rows, %d spool files; want 1 and 2", rows, files)
	}

	toConfig := s3TargetConfig(t, cfg)
	migrate := []string{"migrate", "--to", url, "--to-config", toConfig}
	out := cliOK(t, g, migrate...)
	t.Logf("migrate:\n%s", out)
	out, code := cliRun(t, g, nil, append(migrate, "--verify")...)
	if code != 0 {
		t.Errorf("migrate --verify after a migration that succeeded: exit %d\n%s", code, out)
	}

	g.env = append(g.env, s3Env(cfg)...)
	g.env = append(g.env, "SEALGATE_DATABASE_URL="+url)
	g.dbURL = url
	g.start()
	if err := sink.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Wait(90*time.Second, func(m []testsink.Message) bool {
		n := 0
		for _, msg := range m {
			for _, subj := range []string{"small", "large", "older"} {
				if bytes.Contains(msg.Data, []byte(subj+" queued body")) {
					n++
				}
			}
		}
		return n == 3
	}); err != nil {
		t.Fatalf("the mail queued before the migration was not all delivered after it: %v", err)
	}
}

func mustGlobE2E(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
