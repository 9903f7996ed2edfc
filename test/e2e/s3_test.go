package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sealgate/sealgate/storage/s3"
	"github.com/sealgate/sealgate/storage/s3/s3test"
)

// s3TargetConfig writes the configuration of a migration target that
// stores its objects in cfg's bucket (`sealgate migrate --to-config`) and
// returns its path.
func s3TargetConfig(t *testing.T, cfg s3.Config) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "postgres.toml")
	conf := "[storage]\ntype = \"s3\"\n[storage.s3]\n" +
		"endpoint = \"" + cfg.Endpoint + "\"\nbucket = \"" + cfg.Bucket + "\"\nregion = \"" + cfg.Region + "\"\n" +
		"access_key = \"" + cfg.AccessKey + "\"\nsecret_key = \"" + cfg.SecretKey + "\"\n"
	if cfg.Insecure {
		conf += "insecure = true\n"
	}
	if cfg.PathStyle {
		conf += "path_style = true\n"
	}
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func s3Env(cfg s3.Config) []string {
	return []string{
		"SEALGATE_S3_ENDPOINT=" + cfg.Endpoint,
		"SEALGATE_S3_BUCKET=" + cfg.Bucket,
		"SEALGATE_S3_ACCESS_KEY=" + cfg.AccessKey,
		"SEALGATE_S3_SECRET_KEY=" + cfg.SecretKey,
		"SEALGATE_S3_REGION=" + cfg.Region,
		fmt.Sprintf("SEALGATE_S3_INSECURE=%v", cfg.Insecure),
		fmt.Sprintf("SEALGATE_S3_PATH_STYLE=%v", cfg.PathStyle),
	}
}

// TestRelayEndToEndS3 is the main flow with the sealed files in a real S3
// server (versitygw).
func TestRelayEndToEndS3(t *testing.T) {
	srv := s3test.Start(t)
	cfg := srv.Bucket(t, "e2e")
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: s3Env(cfg)})
	runRelayFlow(t, g, sink)

	// The objects are in the bucket, not on the local disk.
	if n := countFiles(t, g.dir+"/objects"); n != 0 {
		t.Fatalf("%d objects written locally with the S3 store", n)
	}
	cl, err := s3test.Client(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for obj := range cl.ListObjects(context.Background(), cfg.Bucket, minio.ListObjectsOptions{Prefix: "sealed/", Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d sealed objects in the bucket, want 2", n)
	}
}

// TestS3StoppedMidData: the S3 server dies (SIGKILL) while a message is in
// DATA. The client gets a 4xx (its MTA retries), nothing of the message is
// left in the bucket — no object, no unfinished multipart upload — and
// nothing in the database; once S3 is back the same message goes through.
func TestS3StoppedMidData(t *testing.T) {
	srv := s3test.Start(t)
	if !srv.Managed() {
		t.Skip("the S3 server is given by the environment; this test must stop its own")
	}
	cfg := srv.Bucket(t, "middata")
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: s3Env(cfg)})
	raw := buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "drawings"},
		"body", attachment{name: "drawings.bin", contentType: "application/octet-stream", data: randomBytes(24 << 20)})

	c, err := smtp.Dial(g.smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var w io.WriteCloser
	if err = c.Hello("client.test"); err == nil {
		if err = c.Mail(sender); err == nil {
			if err = c.Rcpt(extA); err == nil {
				w, err = c.Data()
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	third := len(raw) / 3
	if _, err := w.Write(raw[:third]); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	_, err = w.Write(raw[third:])
	if err == nil {
		err = w.Close()
	}
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code < 400 || te.Code > 499 {
		t.Fatalf("S3 stopped mid-DATA: %v, want a 4xx reply", err)
	}
	t.Logf("reply: %d %s", te.Code, te.Msg)
	srv.Start()

	cl, err := s3test.Client(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		objects, uploads := 0, 0
		for obj := range cl.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Prefix: "sealed/", Recursive: true}) {
			if obj.Err != nil {
				t.Fatal(obj.Err)
			}
			objects++
		}
		for up := range cl.ListIncompleteUploads(ctx, cfg.Bucket, "sealed/", true) {
			if up.Err != nil {
				t.Fatal(up.Err)
			}
			uploads++
		}
		if objects == 0 && uploads == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left in the bucket after the refusal: %d objects, %d unfinished uploads", objects, uploads)
		}
		time.Sleep(500 * time.Millisecond)
	}
	var transfers int
	g.db().QueryRow(`SELECT COUNT(*) FROM transfers`).Scan(&transfers)
	if transfers != 0 {
		t.Fatalf("%d transfers recorded for a refused message", transfers)
	}

	// The sender's retry, with S3 back, is accepted.
	if err := send(t, g.smtpAddr, sender, []string{extA}, raw); err != nil {
		t.Fatalf("retry after S3 came back: %v", err)
	}
}
