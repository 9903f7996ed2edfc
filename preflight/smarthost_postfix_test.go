package preflight

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpostfix"
)

// TestSmarthostRealPostfix runs the smarthost check against a private
// Postfix (Debian postfix): its smtpd offers STARTTLS with a certificate
// for mx.example.net and AUTH (Cyrus SASL) for one account; a second smtpd
// of the same instance offers neither.
func TestSmarthostRealPostfix(t *testing.T) {
	der, key := newCert(t, valid(200*24*time.Hour, "mx.example.net"))
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plainAddr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "sealgate-preflight-postfix")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pf, err := testpostfix.Start(ctx, testpostfix.Options{Dir: dir, Hostname: "mx.example.net",
		TLSCert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		TLSKey:    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
		SASLUsers: map[string]string{"gateway@corp.example": "right"},
		Main:      "smtpd_tls_security_level = may\nsmtpd_sasl_auth_enable = yes\n",
		Master:    plainAddr + " inet n - n - - smtpd -o smtpd_tls_security_level=none -o smtpd_sasl_auth_enable=no\n"})
	if errors.Is(err, testpostfix.ErrNotInstalled) || errors.Is(err, testpostfix.ErrNotRoot) || errors.Is(err, testpostfix.ErrNoSASL) {
		if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
			t.Fatal(err)
		}
		t.Skipf("%v; set SEALGATE_REQUIRE_TOOLS=1 to fail instead", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix log:\n%s", pf.Log())
		}
		pf.Stop()
	})
	// The second smtpd starts with the master; Start waited for the first.
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.Dial("tcp", plainAddr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix's second smtpd does not listen on %s: %v", plainAddr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	roots := x509.NewCertPool()
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots.AddCert(leaf)
	withAuth := func(mode, pass string, roots *x509.CertPool) Deps {
		d := smarthostDeps(t, "mx.example.net:25", pf.Addr, mode)
		d.SmarthostRoots = roots
		d.Config.Delivery.SmarthostUser, d.Config.Delivery.SmarthostPass = "gateway@corp.example", pass
		return d
	}

	t.Run("STARTTLS and AUTH accepted", func(t *testing.T) {
		want(t, check(t, withAuth("required", "right", roots), "smarthost"), OK, "STARTTLS (TLS 1.", "valid until", "AUTH accepted")
	})
	t.Run("AUTH refused", func(t *testing.T) {
		r := check(t, withAuth("required", "wrong", roots), "smarthost")
		want(t, r, Error, "refused AUTH as gateway@corp.example")
		if r.Transient {
			t.Fatal("refused credentials are marked transient")
		}
	})
	t.Run("a certificate that does not verify", func(t *testing.T) {
		want(t, check(t, withAuth("starttls", "right", x509.NewCertPool()), "smarthost"), Error, "STARTTLS with the smarthost", "failed")
	})
	t.Run("no STARTTLS, required", func(t *testing.T) {
		want(t, check(t, smarthostDeps(t, "mx.example.net:25", plainAddr, "required"), "smarthost"), Error, "does not offer STARTTLS")
	})
	t.Run("no STARTTLS across the network", func(t *testing.T) {
		want(t, check(t, smarthostDeps(t, "mx.example.net:25", plainAddr, "starttls"), "smarthost"), Warn, "does not offer STARTTLS", "in clear")
	})
}
