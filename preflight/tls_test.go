package preflight

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSMTPCertificate(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	withCert := func(cert, key string) Deps {
		c := testConfig(t, nil)
		c.SMTP.TLSCert, c.SMTP.TLSKey = cert, key
		return deps(c)
	}
	t.Run("valid", func(t *testing.T) {
		cert, key := writeCert(t, dir, "good", valid(200*24*time.Hour, "gw.corp.example"))
		want(t, check(t, withCert(cert, key), "tls.smtp"), OK, "valid until", "gw.corp.example")
	})
	t.Run("expired", func(t *testing.T) {
		cert, key := writeCert(t, dir, "expired", certSpec{notBefore: now.Add(-60 * 24 * time.Hour), notAfter: now.Add(-24 * time.Hour), names: []string{"gw.corp.example"}})
		want(t, check(t, withCert(cert, key), "tls.smtp"), Error, "expired", "renew it")
	})
	t.Run("expires soon", func(t *testing.T) {
		cert, key := writeCert(t, dir, "soon", valid(10*24*time.Hour, "gw.corp.example"))
		want(t, check(t, withCert(cert, key), "tls.smtp"), Warn, "days left", "renew it")
	})
	t.Run("not yet valid", func(t *testing.T) {
		cert, key := writeCert(t, dir, "future", certSpec{notBefore: now.Add(24 * time.Hour), notAfter: now.Add(90 * 24 * time.Hour), names: []string{"gw.corp.example"}})
		want(t, check(t, withCert(cert, key), "tls.smtp"), Error, "is not valid before", "clock")
	})
	t.Run("key of another certificate", func(t *testing.T) {
		cert, _ := writeCert(t, dir, "a", valid(200*24*time.Hour, "gw.corp.example"))
		_, otherKey := writeCert(t, dir, "b", valid(200*24*time.Hour, "gw.corp.example"))
		want(t, check(t, withCert(cert, otherKey), "tls.smtp"), Error, "does not match the certificate")
	})
	t.Run("another name", func(t *testing.T) {
		cert, key := writeCert(t, dir, "other", valid(200*24*time.Hour, "mail.elsewhere.example"))
		want(t, check(t, withCert(cert, key), "tls.smtp"), Warn, "does not name gw.corp.example", "mail.elsewhere.example")
	})
	t.Run("key readable by everyone", func(t *testing.T) {
		cert, key := writeCert(t, dir, "open", valid(200*24*time.Hour, "gw.corp.example"))
		os.Chmod(key, 0o644)
		want(t, check(t, withCert(cert, key), "tls.smtp"), Warn, "readable by every user")
	})
	t.Run("missing file", func(t *testing.T) {
		want(t, check(t, withCert(filepath.Join(dir, "none.crt"), filepath.Join(dir, "none.key")), "tls.smtp"), Error, "cannot read the certificate")
	})
	t.Run("key without certificate", func(t *testing.T) {
		_, key := writeCert(t, dir, "half", valid(200*24*time.Hour, "gw.corp.example"))
		want(t, check(t, withCert("", key), "tls.smtp"), Error, "set both smtp.tls_cert and smtp.tls_key")
	})
	t.Run("none, listeners on loopback", func(t *testing.T) {
		want(t, check(t, withCert("", ""), "tls.smtp"), OK, "development")
	})
	t.Run("none, listener beyond loopback", func(t *testing.T) {
		d := withCert("", "")
		d.Config.SMTP.SubmissionAddr = "0.0.0.0:587"
		want(t, check(t, d, "tls.smtp"), Warn, "self-signed", "0.0.0.0:587", "smtp.tls_cert")
	})
}

func TestPortalCertificate(t *testing.T) {
	dir := t.TempDir()
	c := testConfig(t, map[string]string{"SEALGATE_PUBLIC_URL": "https://files.corp.example"})
	want(t, check(t, deps(c), "tls.http"), OK, "plain HTTP", "loopback only")

	c.HTTP.Addr = "0.0.0.0:8443"
	want(t, check(t, deps(c), "tls.http"), Warn, "plain HTTP on 0.0.0.0:8443", "reverse proxy")

	c.HTTP.TLSCert, c.HTTP.TLSKey = writeCert(t, dir, "portal", valid(200*24*time.Hour, "gw.corp.example"))
	want(t, check(t, deps(c), "tls.http"), Warn, "does not name files.corp.example")

	c.HTTP.TLSCert, c.HTTP.TLSKey = writeCert(t, dir, "portal2", valid(200*24*time.Hour, "files.corp.example"))
	want(t, check(t, deps(c), "tls.http"), OK, "files.corp.example", "valid until")

	c.HTTP.TLSCert, c.HTTP.TLSKey = writeCert(t, dir, "portal3", certSpec{notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-time.Hour), names: []string{"files.corp.example"}})
	want(t, check(t, deps(c), "tls.http"), Error, "expired")
}

func TestClientCA(t *testing.T) {
	dir := t.TempDir()
	c := testConfig(t, map[string]string{"SEALGATE_INTERNAL_DOMAINS": "corp.example"})
	if r := check(t, deps(c), "tls.client_ca"); r.Level != Skip {
		t.Fatalf("without trusted client names: %s %s", r.Level, r.Text())
	}
	c.SMTP.TrustedClientNames = []string{"mail.protection.outlook.com"}
	want(t, check(t, deps(c), "tls.client_ca"), OK, "system's root CAs")

	c.SMTP.ClientCAFile = filepath.Join(dir, "empty.pem")
	os.WriteFile(c.SMTP.ClientCAFile, []byte("not a certificate\n"), 0o644)
	want(t, check(t, deps(c), "tls.client_ca"), Error, "holds no PEM certificate")

	c.SMTP.ClientCAFile, _ = writeCert(t, dir, "oldca", certSpec{notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-time.Hour), names: []string{"ca"}})
	want(t, check(t, deps(c), "tls.client_ca"), Error, "expired")

	c.SMTP.ClientCAFile, _ = writeCert(t, dir, "ca", valid(400*24*time.Hour, "ca"))
	want(t, check(t, deps(c), "tls.client_ca"), OK, "1 CA certificate")
}

func TestPublicURL(t *testing.T) {
	for _, tc := range []struct {
		url   string
		level Level
	}{
		{"http://127.0.0.1:8080", OK},
		{"http://localhost:8080", OK},
		{"http://[::1]:8080", OK},
		{"https://files.corp.example", OK},
		{"http://files.corp.example", Error},
		{"http://192.168.1.10:8080", Error},
	} {
		c := testConfig(t, map[string]string{"SEALGATE_PUBLIC_URL": tc.url})
		r := check(t, deps(c), "public_url")
		if r.Level != tc.level {
			t.Errorf("%s: %s, want %s: %s", tc.url, r.Level, tc.level, r.Text())
		}
		if tc.level == Error {
			want(t, r, Error, "https://")
		}
	}
}
