package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/internal/devcert"
)

// testCA is a certificate authority for client certificates in tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a client certificate for the DNS names, valid from
// notBefore for a day.
func (ca *testCA) issue(t testing.TB, notBefore time.Time, eku x509.ExtKeyUsage, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: notBefore, NotAfter: notBefore.Add(24 * time.Hour), DNSNames: names,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{eku}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// selfSigned is a certificate for the names that no CA signed.
func selfSigned(t testing.TB, names ...string) tls.Certificate {
	return newTestCA(t, "self").issue(t, time.Now().Add(-time.Hour), x509.ExtKeyUsageClientAuth, names...)
}

// relayVia opens an SMTP session with the relay listener — STARTTLS
// presenting cert when tlsOn — and runs one transaction; it returns the
// first refusal.
func relayVia(t *testing.T, addr string, tlsOn bool, cert *tls.Certificate, from, to string) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("mx.provider.example"); err != nil {
		return err
	}
	if tlsOn {
		tc := &tls.Config{InsecureSkipVerify: true} // the gateway's development certificate
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		if err := c.StartTLS(tc); err != nil {
			return err
		}
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	w.Write(routeMessage("relayed", to, "", []byte("the files"))) // From: alice@corp.example
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func replyCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// TestRelaySenderMustBeInternal: the relay listener relays for internal
// envelope senders only. Before, any client inside trusted_networks — which
// the Microsoft 365 and Google recipes filled with the providers' shared
// ranges — relayed mail from anyone to anyone.
func TestRelaySenderMustBeInternal(t *testing.T) {
	g := newTestGateway(t, nil, nil) // trusted: loopback
	addr := serve(t, g.NewRelayServer())
	for _, from := range []string{"eve@evil.example", "alice@corp.example.evil.example", "ALICE@CORP.EXAMPLE"} {
		err := relayVia(t, addr, false, nil, from, "carol@client.example")
		internal := strings.HasSuffix(strings.ToLower(from), "@corp.example")
		switch {
		case internal && err != nil:
			t.Errorf("MAIL FROM:<%s>: %v", from, err)
		case !internal && (replyCode(err) != 550 || !strings.Contains(err.Error(), "5.7.1")):
			t.Errorf("MAIL FROM:<%s> to an external recipient: %v; want 550 5.7.1", from, err)
		}
	}
	// The company MTA's bounces (null sender) still go out from a
	// trusted network.
	if err := relayVia(t, addr, false, nil, "", "carol@client.example"); err != nil {
		t.Errorf("null sender from a trusted network: %v", err)
	}
}

// certGateway is a gateway whose relay listener trusts no network, only
// client certificates from ca naming mx.provider.example.
func certGateway(t *testing.T, ca *testCA) (*testGW, string) {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "clients.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	g := newTestGateway(t, nil, func(c *config.Config) {
		c.SMTP.TrustedNetworks = []string{"192.0.2.0/24"}
		c.SMTP.ClientCAFile = caFile
		c.SMTP.TrustedClientNames = []string{"mx.provider.example"}
	})
	cert, err := devcert.New(rand.Reader, "gw.corp.example", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	g.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	return g, serve(t, g.NewRelayServer())
}

// TestRelayTrustByClientCertificate: outside trusted_networks, a client is
// trusted only after STARTTLS with a certificate that verifies against
// smtp.client_ca_file and names one of smtp.trusted_client_names — and then
// only for internal envelope senders (no null sender) and internal header
// From addresses.
func TestRelayTrustByClientCertificate(t *testing.T) {
	ca := newTestCA(t, "Provider CA")
	g, addr := certGateway(t, ca)
	now := time.Now()
	good := ca.issue(t, now.Add(-time.Hour), x509.ExtKeyUsageClientAuth, "mx.provider.example")
	serverEKU := ca.issue(t, now.Add(-time.Hour), x509.ExtKeyUsageServerAuth, "mx.provider.example")
	otherName := ca.issue(t, now.Add(-time.Hour), x509.ExtKeyUsageClientAuth, "mx.other-tenant.example")
	expired := ca.issue(t, now.Add(-48*time.Hour), x509.ExtKeyUsageClientAuth, "mx.provider.example")
	forged := selfSigned(t, "mx.provider.example")

	refused := []struct {
		name string
		tls  bool
		cert *tls.Certificate
		from string
	}{
		{"no STARTTLS", false, nil, "alice@corp.example"},
		{"STARTTLS, no certificate", true, nil, "alice@corp.example"},
		{"self-signed certificate with the trusted name", true, &forged, "alice@corp.example"},
		{"certificate from the CA for another name", true, &otherName, "alice@corp.example"},
		{"expired certificate", true, &expired, "alice@corp.example"},
		{"trusted certificate, external sender", true, &good, "eve@evil.example"},
		{"trusted certificate, null sender", true, &good, ""},
		{"trusted certificate, routing syntax in the sender", true, &good, "eve%evil.example@corp.example"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			err := relayVia(t, addr, tc.tls, tc.cert, tc.from, "carol@client.example")
			if c := replyCode(err); c < 500 || c > 599 {
				t.Fatalf("relayed: %v", err)
			}
			if !isBilingual(err.Error()) {
				t.Errorf("reply not bilingual: %v", err)
			}
		})
	}
	for _, cert := range []*tls.Certificate{&good, &serverEKU} {
		if err := relayVia(t, addr, true, cert, "alice@corp.example", "carol@client.example"); err != nil {
			t.Fatalf("trusted certificate, internal sender: %v", err)
		}
	}
	g.deliverAll(t)
	n := 0
	for _, m := range g.tr.sent {
		if m.rcpts[0] == "carol@client.example" && !strings.Contains(string(m.data), "X-Sealgate-Notice: key") {
			n++
			if strings.Contains(string(m.data), stdBase64([]byte("the files"))) {
				t.Error("the attachment went out in clear")
			}
		}
	}
	if n != 2 {
		t.Fatalf("%d sealed copies to carol, want 2", n)
	}
}

// TestCertTrustedHeaderFrom: a certificate-trusted client (a provider's
// shared outbound gateway) may not put an outside address in From either.
func TestCertTrustedHeaderFrom(t *testing.T) {
	ca := newTestCA(t, "Provider CA")
	g, addr := certGateway(t, ca)
	good := ca.issue(t, time.Now().Add(-time.Hour), x509.ExtKeyUsageClientAuth, "mx.provider.example")
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Hello("mx.provider.example")
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{good}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@corp.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("carol@client.example"); err != nil {
		t.Fatal(err)
	}
	w, _ := c.Data()
	w.Write([]byte(strings.Replace(string(routeMessage("spoof", "carol@client.example", "", []byte("x"))), "From: alice@corp.example", "From: ceo@evil.example", 1)))
	err = w.Close()
	if replyCode(err) != 550 || !isBilingual(err.Error()) {
		t.Fatalf("header From outside the company from a certificate-trusted client: %v", err)
	}
	g.deliverAll(t)
	if len(g.tr.sent) != 0 {
		t.Fatalf("%d deliveries", len(g.tr.sent))
	}
}
