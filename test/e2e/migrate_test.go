package e2e

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpg"
	"github.com/sealgate/sealgate/internal/testsink"
	"github.com/sealgate/sealgate/storage/s3/s3test"
)

// TestMigrateToPostgresS3: an embedded installation (SQLite, fs store)
// populated through `sealgate serve` — two messages with attachments to
// an external recipient, one downloaded, one not yet — is moved with
// `sealgate migrate --to` into a real PostgreSQL and a real S3 bucket
// (versitygw):
//
//   - migrate is refused while serve runs on the data directory;
//   - after serve stopped, it copies and verifies;
//   - mail queued while the next hop was down (its spool a row of the
//     database, copied with the tables) is delivered by serve on
//     PostgreSQL;
//   - serve on PostgreSQL + S3 opens the links of the notices sent
//     before: the one not downloaded yet gives the plaintext with its
//     passphrase, the downloaded one has its allowance carried over
//     (download limit 2: one left, then refused);
//   - new mail goes through on the target (ids continue after the
//     copied ones);
//   - the ledger verifies on the target (audit verify-db) and extends the
//     old checkpoint from the fs store (verify-db --previous; an export
//     with a consistency proof from it, verified offline);
//   - a second migration into the filled database is refused.
func TestMigrateToPostgresS3(t *testing.T) {
	url := testpg.URL(t)
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "migrate")
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: []string{"SEALGATE_DOWNLOAD_LIMIT=2"}})
	cliOK(t, g, "contract", "add", "C-MIG", "--domains", "client.example")
	first := [][]byte{randomBytes(7000), randomBytes(3000)}
	sent1 := sendAndCollect(t, g, sink, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "[C-MIG] first"},
		"body", attachment{name: "a.bin", contentType: "application/octet-stream", data: first[0]},
		attachment{name: "b.bin", contentType: "application/octet-stream", data: first[1]}))
	second := randomBytes(9000)
	sent2 := sendAndCollect(t, g, sink, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "[C-MIG] second"},
		"body", attachment{name: "c.bin", contentType: "application/octet-stream", data: second}))
	download := func(g *gw, st sentTransfer, file int) (int, []byte) {
		resp, body := postForm(t, g.url("/t/"+st.tokens[extA]+"/download"), form("passphrase", strings.ToLower(st.pass[extA]), "file", string(rune('0'+file))))
		return resp.StatusCode, body
	}
	if code, body := download(g, sent1, 0); code != 200 || sha256.Sum256(body) != sha256.Sum256(first[0]) {
		t.Fatalf("download before the migration: %d", code)
	}
	g.waitEvent(30*time.Second, "file.downloaded")
	g.waitIdle(30 * time.Second)
	// Mail queued while the next hop is down: its spool moves into the
	// bucket with the migration and is delivered after it.
	sink.Stop()
	if err := send(t, g.smtpAddr, sender, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "[C-MIG] queued"}, "queued body")); err != nil {
		t.Fatal(err)
	}

	toConfig := s3TargetConfig(t, cfg)
	migrate := []string{"migrate", "--to", url, "--to-config", toConfig}

	// Refused while serve runs.
	out, code := cliRun(t, g, nil, migrate...)
	if code != 1 || !strings.Contains(out, "sealgate serve is running on this data directory: stop it, then migrate") || !strings.Contains(out, "停止してから移行してください") {
		t.Fatalf("migrate while serving: exit %d\n%s", code, out)
	}
	g.stop(syscall.SIGTERM)

	sealed := sealedObjects(t, g)
	if sealed != 3 {
		t.Fatalf("%d sealed objects in the fs store, want 3", sealed)
	}
	out = cliOK(t, g, migrate...)
	t.Logf("migrate:\n%s", out)
	for _, want := range []string{"table    files", "objects sealed/", "migration verified", "consistency proof from the old checkpoint OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate's output lacks %q", want)
		}
	}
	// Every object of the fs store, with the checkpoint migrate signed.
	objects := countFiles(t, filepath.Join(g.dir, "objects", "objects"))
	m := regexp.MustCompile(`(\d+) オブジェクト / objects`).FindStringSubmatch(out)
	if m == nil || m[1] != strconv.Itoa(objects) {
		t.Errorf("objects migrated %v, %d in the fs store", m, objects)
	}
	m = regexp.MustCompile(`old checkpoint: (\d+) 件`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no old checkpoint in the output")
	}
	oldNote := filepath.Join(g.dir, "objects", "objects", "ledger", "checkpoints", m[1]+".note")
	if _, err := os.Stat(oldNote); err != nil {
		t.Fatalf("the old checkpoint in the fs store: %v", err)
	}

	// Serve on PostgreSQL + S3, same data directory, master key and keys/.
	embedded := append([]string(nil), g.env...)
	g.env = append(g.env, s3Env(cfg)...)
	g.env = append(g.env, "SEALGATE_DATABASE_URL="+url)
	g.dbURL = url
	g.start()
	if err := sink.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Wait(60*time.Second, func(m []testsink.Message) bool {
		for _, msg := range m {
			if bytes.Contains(msg.Data, []byte("queued body")) {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("the mail queued before the migration was not delivered after it: %v", err)
	}
	if code, body := download(g, sent2, 0); code != 200 || sha256.Sum256(body) != sha256.Sum256(second) {
		t.Fatalf("download of the link not used before the migration: %d", code)
	}
	if code, body := download(g, sent1, 1); code != 200 || sha256.Sum256(body) != sha256.Sum256(first[1]) {
		t.Fatalf("download of the other file of the downloaded transfer: %d", code)
	}
	if code, body := download(g, sent1, 0); code != 200 || sha256.Sum256(body) != sha256.Sum256(first[0]) {
		t.Fatalf("second download of the file downloaded before the migration: %d", code)
	}
	if code, _ := download(g, sent1, 0); code == 200 {
		t.Fatal("a third download was allowed: the count made before the migration was lost")
	}
	if n := dbInt(t, g, `SELECT rf.downloads FROM recipient_files rf JOIN recipients r ON r.id = rf.recipient_id JOIN files f ON f.id = rf.file_id
		WHERE r.transfer_id = ? AND f.idx = 0`, sent1.id); n != 2 {
		t.Errorf("downloads of the first file recorded in PostgreSQL: %d, want 2", n)
	}
	// New mail on the target: its rows get ids after the copied ones.
	third := randomBytes(4000)
	sent3 := sendAndCollect(t, g, sink, []string{extA}, buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "[C-MIG] third"},
		"body", attachment{name: "d.bin", contentType: "application/octet-stream", data: third}))
	if code, body := download(g, sent3, 0); code != 200 || sha256.Sum256(body) != sha256.Sum256(third) {
		t.Fatalf("download of a transfer made after the migration: %d", code)
	}
	if n := dbInt(t, g, `SELECT COUNT(*) FROM files`); n != 4 {
		t.Errorf("%d files in PostgreSQL, want 4", n)
	}
	cliOK(t, g, "audit", "checkpoint")
	out = cliOK(t, g, "audit", "verify-db", "--previous", oldNote)
	t.Logf("verify-db:\n%s", out)
	bundle := filepath.Join(t.TempDir(), "bundle.json")
	cliOK(t, g, "audit", "export", "--previous", oldNote, "-o", bundle)
	out = cliOK(t, g, "audit", "verify", "--key", "@"+filepath.Join(g.dir, "keys", "ledger.pub"), "--previous", oldNote, bundle)
	if !strings.Contains(out, "consistent with the checkpoint of "+m[1]+" entries") {
		t.Errorf("the export is not shown consistent with the old checkpoint:\n%s", out)
	}

	// A second migration into the filled database is refused.
	g.stop(syscall.SIGTERM)
	g.env = embedded
	out, code = cliRun(t, g, nil, migrate...)
	if code != 1 || !strings.Contains(out, "the target database is not empty") {
		t.Fatalf("second migration: exit %d\n%s", code, out)
	}
}
