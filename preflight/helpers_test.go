package preflight

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
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

	"github.com/sealgate/sealgate/config"
)

// testConfig loads a configuration from the environment env on top of a
// data directory of the test and loopback listeners on free ports.
func testConfig(t *testing.T, env map[string]string) *config.Config {
	t.Helper()
	base := map[string]string{
		"SEALGATE_DATA_DIR":        filepath.Join(t.TempDir(), "data"),
		"SEALGATE_SMTP_ADDR":       "127.0.0.1:0",
		"SEALGATE_SUBMISSION_ADDR": "off",
		"SEALGATE_HTTP_ADDR":       "127.0.0.1:0",
		"SEALGATE_HOSTNAME":        "gw.corp.example",
	}
	for k, v := range env {
		base[k] = v
	}
	c, err := config.Load("", func(k string) string { return base[k] })
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// deps are the Deps of a check run on c: started as serve would (no
// listeners), as the running user.
func deps(c *config.Config) Deps {
	return Deps{Config: c, Mode: Start, UID: os.Getuid(), Timeout: 5 * time.Second}
}

// check runs every check and returns the result named name.
func check(t *testing.T, d Deps, name string) Result {
	t.Helper()
	for _, r := range Run(context.Background(), d) {
		if r.Check == name {
			return r
		}
	}
	t.Fatalf("no result for %s", name)
	return Result{}
}

// want fails unless r has level l and its English text contains each of
// substrings.
func want(t *testing.T, r Result, l Level, substrings ...string) {
	t.Helper()
	if r.Level != l {
		t.Fatalf("%s: level %s, want %s: %s", r.Check, r.Level, l, r.Text())
	}
	for _, s := range substrings {
		if !strings.Contains(r.EN, s) {
			t.Fatalf("%s: %q does not say %q", r.Check, r.EN, s)
		}
	}
	if r.JA == "" || r.EN == "" {
		t.Fatalf("%s: a language is missing: %q", r.Check, r.Text())
	}
}

// certSpec describes a certificate to make.
type certSpec struct {
	notBefore, notAfter time.Time
	names               []string
	ips                 []net.IP
}

// newCert makes a self-signed certificate.
func newCert(t *testing.T, s certSpec) (der []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cn := "test"
	if len(s.names) > 0 {
		cn = s.names[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    s.notBefore, NotAfter: s.notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
		DNSNames: s.names, IPAddresses: s.ips,
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

// writeCert writes a certificate and its key as PEM files in dir.
func writeCert(t *testing.T, dir, name string, s certSpec) (certFile, keyFile string) {
	t.Helper()
	der, key := newCert(t, s)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der, 0o644)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "EC PRIVATE KEY", kb, 0o600)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// tlsCert makes a tls.Certificate for a test server.
func tlsCert(t *testing.T, s certSpec) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	der, key := newCert(t, s)
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

// valid is a validity period around now: from an hour ago for d.
func valid(d time.Duration, names ...string) certSpec {
	now := time.Now()
	return certSpec{notBefore: now.Add(-time.Hour), notAfter: now.Add(d), names: names}
}

// serveConns listens on network/address until the test ends and runs
// handle on each connection in its own goroutine, closing it afterwards.
// It returns the address listened on.
func serveConns(t *testing.T, network, address string, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				handle(conn)
			}()
		}
	}()
	return ln.Addr().String()
}
