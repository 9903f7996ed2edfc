package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sealgate/sealgate/crypto"
	"github.com/sealgate/sealgate/internal/testpg"
	"github.com/sealgate/sealgate/internal/testsink"
	"github.com/sealgate/sealgate/storage/s3/s3test"
)

// TestPostgresS3: `sealgate serve` with SEALGATE_DATABASE_URL on a real
// PostgreSQL and a real S3 server (versitygw): a message is accepted,
// sealed and both notices delivered; a contract ends with a certificate
// that verifies, saying that PostgreSQL's files were not scrubbed and that
// the master key, a fleet's, was not rotated; `key rotate` refuses until
// told that every instance is stopped; the ledger in PostgreSQL verifies;
// no SQLite file is made.
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
	// The master key is a fleet's: not rotated at contract end, which the
	// certificate states as an exception in both languages.
	if !strings.Contains(string(body), "The master key was not rotated (the master key is shared by the instances of a fleet on PostgreSQL") ||
		!strings.Contains(string(body), "マスター鍵を更新しませんでした（PostgreSQL 上のフリートの全インスタンスがマスター鍵を共有しています") ||
		strings.Contains(string(body), `"retired_epoch"`) {
		t.Errorf("the certificate does not state the fleet's master key as not rotated:\n%s", body)
	}
	// `key rotate` refuses, saying what to do, until told that every
	// instance is stopped; then it rotates (the spool in the bucket too).
	out, err = g.cli("", "key", "rotate")
	if err == nil || !strings.Contains(out, "stop sealgate serve on every instance") || !strings.Contains(out, "すべてのインスタンスの sealgate serve を停止する") {
		t.Fatalf("key rotate on PostgreSQL: %v\n%s", err, out)
	}
	out = cliOK(t, g, "key", "rotate", "--all-stopped")
	if !strings.Contains(out, "from epoch 1 to 2") || !strings.Contains(out, "keys/ledger.key.age to every other instance") {
		t.Fatalf("key rotate --all-stopped:\n%s", out)
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

// TestFleetSpoolTakeover: two `sealgate serve` instances share one
// PostgreSQL database and one S3 bucket (versitygw), each with its own data
// directory, given the same master key (SEALGATE_MASTER_KEY) and the same
// keys/ (copied from A's). The smarthost does not answer at first (it
// accepts TCP and never greets). Instance A accepts a message with an
// attachment for an external recipient (250), claims its delivery and
// hangs on the smarthost; A is killed (SIGKILL). The smarthost comes up;
// once A's lease (SEALGATE_DELIVERY_LEASE) has ended, instance B delivers
// the sealed copy and the key notice — from the spool in the bucket, since
// A's disk is gone with A — and the recipient downloads the file through
// B's portal with the passphrase.
func TestFleetSpoolTakeover(t *testing.T) {
	url := testpg.URL(t)
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "fleet")
	master, err := crypto.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	const lease = 30 * time.Second
	env := append(s3Env(cfg), "SEALGATE_DATABASE_URL="+url, "SEALGATE_MASTER_KEY="+master,
		"SEALGATE_DELIVERY_LEASE="+lease.String())

	// The smarthost: a listener that takes connections and says nothing.
	smarthost := freeAddr(t)
	hung, err := net.Listen("tcp", smarthost)
	if err != nil {
		t.Fatal(err)
	}
	attempt := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			attempt <- c
		}
	}()

	a := startGateway(t, gwOptions{smarthost: smarthost, extraEnv: env})
	data := append([]byte("%PDF-1.7\n"), randomBytes(200<<10)...)
	raw := buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "fleet takeover"},
		"本文 / body", attachment{name: "plan.pdf", contentType: "application/pdf", data: data})
	if err := send(t, a.smtpAddr, sender, []string{extA}, raw); err != nil {
		t.Fatalf("A did not accept the message: %v", err)
	}
	select {
	case c := <-attempt:
		defer c.Close()
	case <-time.After(60 * time.Second):
		t.Fatal("A made no delivery attempt")
	}

	// B joins the fleet with A's ledger keys, while A holds the delivery.
	b := startGateway(t, gwOptions{smarthost: smarthost, extraEnv: env, dir: fleetDir(t, a)})
	a.stop(syscall.SIGKILL)
	var leaseEnd int64
	if err := b.db().QueryRow(`SELECT next_attempt_at FROM outbound WHERE kind = 'sealed' AND status = 'queued'`).Scan(&leaseEnd); err != nil {
		t.Fatalf("the sealed copy's row: %v", err)
	}
	if n := countFiles(t, filepath.Join(a.dir, "spool")); n != 0 {
		t.Fatalf("%d spool files on A's disk: the spool must be in the database or the bucket", n)
	}

	// The smarthost comes up.
	hung.Close()
	sink, err := testsink.Start(smarthost)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sink.Stop)
	msgs, err := sink.Wait(lease+90*time.Second, func(m []testsink.Message) bool {
		d := classify(m)
		return len(d.copies) == 1 && len(d.keys) == 1
	})
	if err != nil {
		t.Fatalf("B did not deliver A's message: %v (%d messages)\nB's log:\n%s", err, len(msgs), b.log.String())
	}
	d := classify(msgs)
	if at := d.copies[extA].At; at.UnixMilli() < leaseEnd {
		t.Errorf("the copy was delivered at %s, before A's lease ended (%s)", at.Format(time.RFC3339Nano), time.UnixMilli(leaseEnd).Format(time.RFC3339Nano))
	}
	t.Logf("A killed; its lease ended at %s; B delivered the copy at %s and the key notice at %s",
		time.UnixMilli(leaseEnd).Format(time.RFC3339Nano), d.copies[extA].At.Format(time.RFC3339Nano), d.keys[extA].At.Format(time.RFC3339Nano))
	if hasRun(d.copies[extA].Data, data) {
		t.Fatal("the copy carries the attachment")
	}

	// The recipient downloads through B's portal with the passphrase.
	_, token := linkOf(t, d.copies[extA])
	pass := passphraseOf(t, d.keys[extA])
	resp, body := postForm(t, b.url("/t/"+token+"/download"), form("passphrase", strings.ToLower(pass), "file", "0"))
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("download through B: %d, %d bytes (want the %d bytes sent)", resp.StatusCode, len(body), len(data))
	}
	// Delivered, the spool objects are gone from the bucket.
	cl, err := s3test.Client(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for obj := range cl.ListObjects(context.Background(), cfg.Bucket, minio.ListObjectsOptions{Prefix: "spool/", Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		t.Errorf("spool object left after delivery: %s", obj.Key)
	}
}
