package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/preflight"
	"github.com/sealgate/sealgate/storage/s3/s3test"
)

// openTest opens a system on env (loopback listeners on free ports, a data
// directory of the test) and returns it with its log.
func openTest(t *testing.T, env map[string]string) (*System, *bytes.Buffer) {
	t.Helper()
	base := map[string]string{
		"SEALGATE_DATA_DIR": t.TempDir(), "SEALGATE_SMTP_ADDR": "127.0.0.1:0", "SEALGATE_SUBMISSION_ADDR": "off",
		"SEALGATE_HTTP_ADDR": "127.0.0.1:0", "SEALGATE_INTERNAL_DOMAINS": "corp.example", "SEALGATE_HOSTNAME": "gw.corp.example",
	}
	for k, v := range env {
		base[k] = v
	}
	c, err := config.Load(base["SEALGATE_CONFIG"], func(k string) string { return base[k] })
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	sys := Open(&c, Options{Stderr: &log, CreateKeys: true, Getenv: func(string) string { return "" }, ConfigFile: base["SEALGATE_CONFIG"]})
	t.Cleanup(func() { sys.Close() })
	return sys, &log
}

// expiredCert writes a certificate for gw.corp.example that expired
// yesterday, and its key.
func expiredCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gw.corp.example"}, DNSNames: []string{"gw.corp.example"},
		NotBefore: time.Now().Add(-90 * 24 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "smtp.crt"), filepath.Join(dir, "smtp.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// TestServeStopsOnCheckErrors: serve runs the checks of `sealgate check`
// at start; an error (here an expired certificate) stops it with the
// report, before it listens or creates keys.
func TestServeStopsOnCheckErrors(t *testing.T) {
	cert, key := expiredCert(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	relay := ln.Addr().String()
	ln.Close()
	dir := filepath.Join(t.TempDir(), "data")
	cfg := filepath.Join(t.TempDir(), "sealgate.toml")
	os.WriteFile(cfg, []byte("[smtp]\ntls_cert = \""+cert+"\"\ntls_key = \""+key+"\"\n"), 0o600)
	sys, _ := openTest(t, map[string]string{"SEALGATE_CONFIG": cfg, "SEALGATE_SMTP_ADDR": relay, "SEALGATE_DATA_DIR": dir})
	_, err := New(context.Background(), sys)
	if err == nil {
		t.Fatal("serve started with an expired certificate")
	}
	for _, s := range []string{"the configuration check found errors", "ERROR  tls.smtp", "expired", "renew it"} {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("the error does not say %q:\n%v", s, err)
		}
	}
	if strings.Contains(err.Error(), "WARN") {
		t.Fatalf("the error lists warnings, not just the errors:\n%v", err)
	}
	if c, err := net.Dial("tcp", relay); err == nil {
		c.Close()
		t.Fatal("the relay port is listening after a refused start")
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("the data directory was created before the checks passed")
	}
}

// TestServeLogsCheckWarnings: warnings, and a smarthost that does not
// answer now (the queue retries), are logged and serve starts.
func TestServeLogsCheckWarnings(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := ln.Addr().String()
	ln.Close()
	sys, log := openTest(t, map[string]string{"SEALGATE_SMARTHOST": down, "SEALGATE_TRUSTED_NETWORKS": "127.0.0.0/8,198.51.100.0/24"})
	srv, err := New(context.Background(), sys)
	if err != nil {
		t.Fatalf("serve did not start: %v", err)
	}
	srv.closeListeners()
	for _, s := range []string{
		"configuration check: cannot connect to the smarthost " + down, "check=smarthost",
		"public range(s) 198.51.100.0/24", "check=relay",
	} {
		if !strings.Contains(log.String(), s) {
			t.Fatalf("the log does not say %q:\n%s", s, log.String())
		}
	}
}

// TestCheckS3 runs the S3 probe of `sealgate check` against a real S3
// server (versitygw): credentials that work, a wrong secret key, a
// missing bucket (which the check must not create).
func TestCheckS3(t *testing.T) {
	srv := s3test.Start(t)
	good := srv.Bucket(t, "check")
	cl, err := s3test.Client(good)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := cl.MakeBucket(ctx, good.Bucket, minio.MakeBucketOptions{Region: good.Region}); err != nil {
		t.Fatal(err)
	}
	env := func(bucket, secret string) map[string]string {
		return map[string]string{"SEALGATE_S3_ENDPOINT": good.Endpoint, "SEALGATE_S3_BUCKET": bucket, "SEALGATE_S3_ACCESS_KEY": good.AccessKey,
			"SEALGATE_S3_SECRET_KEY": secret, "SEALGATE_S3_INSECURE": "true", "SEALGATE_S3_PATH_STYLE": "true"}
	}
	result := func(e map[string]string) preflight.Result {
		sys, _ := openTest(t, e)
		for _, r := range sys.Check(ctx, preflight.Command) {
			if r.Check == "storage" {
				return r
			}
		}
		t.Fatal("no storage result")
		return preflight.Result{}
	}

	r := result(env(good.Bucket, good.SecretKey))
	if r.Level != preflight.OK || !strings.Contains(r.EN, "wrote, read and deleted a probe object") {
		t.Fatalf("good credentials: %s %s", r.Level, r.Text())
	}
	for o := range cl.ListObjects(ctx, good.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		t.Fatalf("the probe left %q in the bucket (%v)", o.Key, o.Err)
	}

	r = result(env(good.Bucket, "wrong-"+good.SecretKey))
	if r.Level != preflight.Error || !strings.Contains(r.EN, "the S3 store cannot be used") {
		t.Fatalf("wrong secret key: %s %s", r.Level, r.Text())
	}

	missing := srv.Bucket(t, "missing").Bucket
	r = result(env(missing, good.SecretKey))
	if r.Level != preflight.Warn || !strings.Contains(r.EN, "serve creates it at start") {
		t.Fatalf("missing bucket: %s %s", r.Level, r.Text())
	}
	if ok, err := cl.BucketExists(ctx, missing); err != nil || ok {
		t.Fatalf("the check created the bucket %s (exists %v, %v)", missing, ok, err)
	}
}

// TestPackagedConfig: the configuration the .deb installs loads, and the
// checks find no error in it (its data directory moved to the test's).
func TestPackagedConfig(t *testing.T) {
	sys, _ := openTest(t, map[string]string{"SEALGATE_CONFIG": "../packaging/sealgate.toml", "SEALGATE_DATA_DIR": filepath.Join(t.TempDir(), "data"),
		"SEALGATE_SMTP_ADDR": "127.0.0.1:0", "SEALGATE_HTTP_ADDR": "127.0.0.1:0", "SEALGATE_SUBMISSION_ADDR": "127.0.0.1:0"})
	rep := sys.Check(context.Background(), preflight.Command)
	if rep.Count(preflight.Error) != 0 {
		var b strings.Builder
		rep.Write(&b)
		t.Fatalf("errors in the packaged configuration:\n%s", b.String())
	}
}
