package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testsink"
)

// clientPKI writes a CA certificate to a file and returns a client
// certificate it signed for name.
func clientPKI(t *testing.T, name string) (caFile string, cert tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Provider test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "provider-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestRelayTrustByCertificate: the binary configured as the README's
// Microsoft 365 recipe says (no provider ranges in trusted_networks, the
// connector trusted by its certificate) relays for the connector after
// STARTTLS with its certificate and internal senders only.
func TestRelayTrustByCertificate(t *testing.T) {
	caFile, cert := clientPKI(t, "mx.provider.example")
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: []string{
		"SEALGATE_TRUSTED_NETWORKS=192.0.2.0/24",
		"SEALGATE_CLIENT_CA_FILE=" + caFile,
		"SEALGATE_TRUSTED_CLIENT_NAMES=mx.provider.example",
	}})
	dial := func(withCert bool) *smtp.Client {
		c, err := smtp.Dial(g.smtpAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		tc := &tls.Config{InsecureSkipVerify: true} // development certificate
		if withCert {
			tc.Certificates = []tls.Certificate{cert}
		}
		if err := c.StartTLS(tc); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := dial(false).Mail(sender); code(err) != 554 {
		t.Fatalf("STARTTLS without a certificate: %v, want 554", err)
	}
	if err := dial(true).Mail("eve@evil.example"); code(err) != 550 || !strings.Contains(err.Error(), "5.7.1") {
		t.Fatalf("trusted certificate, outside sender: %v, want 550 5.7.1", err)
	}
	msg := buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "via the connector"}, "see attachment",
		attachment{name: "plan.pdf", contentType: "application/pdf", data: randomBytes(10 << 10)})
	if err := sendVia(dial(true), sender, []string{extA}, msg); err != nil {
		t.Fatalf("trusted certificate, internal sender: %v", err)
	}
	if _, err := sink.Wait(time.Minute, func(m []testsink.Message) bool { d := classify(m); return len(d.copies) == 1 }); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range g.ledger() {
		if ev.Type == "message.received" && ev.Details["client_certificate"] == "mx.provider.example" {
			found = true
		}
	}
	if !found {
		t.Fatal("the ledger does not record which certificate relayed the message")
	}
}
