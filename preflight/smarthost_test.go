package preflight

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// fakeSmarthost is a go-smtp server on loopback: STARTTLS when it has a
// certificate, AUTH PLAIN (after TLS) for one user.
type fakeSmarthost struct {
	tls        *tls.Config
	user, pass string
}

func (f fakeSmarthost) start(t *testing.T) string {
	t.Helper()
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &fakeSession{f: f}, nil }))
	srv.Domain = "mx.example.net"
	srv.TLSConfig = f.tls
	srv.ErrorLog = nopLog{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

type nopLog struct{}

func (nopLog) Printf(string, ...any) {}
func (nopLog) Println(...any)        {}

type fakeSession struct{ f fakeSmarthost }

func (s *fakeSession) Mail(string, *smtp.MailOptions) error { return errors.New("no mail expected") }
func (s *fakeSession) Rcpt(string, *smtp.RcptOptions) error { return errors.New("no mail expected") }
func (s *fakeSession) Data(io.Reader) error                 { return errors.New("no mail expected") }
func (s *fakeSession) Reset()                               {}
func (s *fakeSession) Logout() error                        { return nil }
func (s *fakeSession) AuthMechanisms() []string {
	if s.f.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}
func (s *fakeSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user == s.f.user && pass == s.f.pass {
			return nil
		}
		return errors.New("invalid credentials")
	}), nil
}

// smarthostDeps are the deps of a check with the smarthost name (as
// configured: it decides TLS names and loopback) reached at addr.
func smarthostDeps(t *testing.T, name, addr, mode string) Deps {
	c := testConfig(t, map[string]string{"SEALGATE_SMARTHOST": name, "SEALGATE_SMARTHOST_TLS": mode})
	d := deps(c)
	d.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, network, addr)
	}
	return d
}

func TestSmarthost(t *testing.T) {
	plain := fakeSmarthost{}.start(t)
	cert, leaf := tlsCert(t, valid(200*24*time.Hour, "mx.example.net"))
	withTLS := fakeSmarthost{tls: &tls.Config{Certificates: []tls.Certificate{cert}}, user: "gw", pass: "right"}.start(t)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	soonCert, soonLeaf := tlsCert(t, valid(5*24*time.Hour, "mx.example.net"))
	expiring := fakeSmarthost{tls: &tls.Config{Certificates: []tls.Certificate{soonCert}}}.start(t)
	soonRoots := x509.NewCertPool()
	soonRoots.AddCert(soonLeaf)

	t.Run("none configured", func(t *testing.T) {
		want(t, check(t, deps(testConfig(t, nil)), "smarthost"), Warn, "no smarthost", "in clear", "delivery.smarthost")
	})
	t.Run("unreachable", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		r := check(t, smarthostDeps(t, addr, addr, "starttls"), "smarthost")
		want(t, r, Error, "cannot connect", "waits in the queue")
		if !r.Transient {
			t.Fatal("an unreachable smarthost is not marked transient: serve would refuse to start")
		}
		if len(Report{r}.Blocking()) != 0 {
			t.Fatal("a transient error blocks serve")
		}
	})
	t.Run("no STARTTLS, required", func(t *testing.T) {
		want(t, check(t, smarthostDeps(t, plain, plain, "required"), "smarthost"), Error, "does not offer STARTTLS", "every delivery fails")
	})
	t.Run("no STARTTLS on loopback", func(t *testing.T) {
		want(t, check(t, smarthostDeps(t, plain, plain, "starttls"), "smarthost"), OK, "no STARTTLS offered (loopback)")
	})
	t.Run("no STARTTLS across the network", func(t *testing.T) {
		want(t, check(t, smarthostDeps(t, "mx.example.net:25", plain, "starttls"), "smarthost"), Warn, "does not offer STARTTLS", "in clear")
	})
	t.Run("TLS switched off across the network", func(t *testing.T) {
		want(t, check(t, smarthostDeps(t, "mx.example.net:25", withTLS, "none"), "smarthost"), Warn, "smarthost_tls = none", "though it offers STARTTLS")
	})
	t.Run("STARTTLS with a certificate that verifies", func(t *testing.T) {
		d := smarthostDeps(t, "mx.example.net:25", withTLS, "required")
		d.SmarthostRoots = roots
		want(t, check(t, d, "smarthost"), OK, "STARTTLS (TLS 1.3", "valid until")
	})
	t.Run("STARTTLS with a certificate that does not verify", func(t *testing.T) {
		want(t, check(t, smarthostDeps(t, "mx.example.net:25", withTLS, "starttls"), "smarthost"), Error, "STARTTLS with the smarthost", "failed", "every delivery fails")
	})
	t.Run("STARTTLS with a certificate for another name", func(t *testing.T) {
		d := smarthostDeps(t, "relay.example.org:25", withTLS, "starttls")
		d.SmarthostRoots = roots
		want(t, check(t, d, "smarthost"), Error, "STARTTLS with the smarthost relay.example.org:25 failed")
	})
	t.Run("certificate expiring", func(t *testing.T) {
		d := smarthostDeps(t, "mx.example.net:25", expiring, "required")
		d.SmarthostRoots = soonRoots
		want(t, check(t, d, "smarthost"), Warn, "certificate expires", "days left")
	})
	t.Run("AUTH accepted", func(t *testing.T) {
		d := smarthostDeps(t, "mx.example.net:25", withTLS, "required")
		d.SmarthostRoots = roots
		d.Config.Delivery.SmarthostUser, d.Config.Delivery.SmarthostPass = "gw", "right"
		want(t, check(t, d, "smarthost"), OK, "AUTH accepted")
	})
	t.Run("AUTH refused", func(t *testing.T) {
		d := smarthostDeps(t, "mx.example.net:25", withTLS, "required")
		d.SmarthostRoots = roots
		d.Config.Delivery.SmarthostUser, d.Config.Delivery.SmarthostPass = "gw", "wrong"
		r := check(t, d, "smarthost")
		want(t, r, Error, "refused AUTH as gw")
		if r.Transient {
			t.Fatal("refused credentials are marked transient")
		}
	})
	t.Run("credentials without TLS", func(t *testing.T) {
		d := smarthostDeps(t, plain, plain, "starttls")
		d.Config.Delivery.SmarthostUser, d.Config.Delivery.SmarthostPass = "gw", "right"
		want(t, check(t, d, "smarthost"), Error, "never sent without TLS")
	})
}

func TestBannerDate(t *testing.T) {
	want := time.Date(2026, 3, 2, 10, 0, 0, 0, time.FixedZone("", 9*3600))
	for _, tc := range []struct {
		greeting string
		ok       bool
	}{
		{"220 mx.example.net ESMTP Exim 4.96 Mon, 02 Mar 2026 10:00:00 +0900\r\n", true},
		{"220 mx.example.net ESMTP Sendmail 8.17.1/8.17.1; Mon, 2 Mar 2026 10:00:00 +0900\r\n", true},
		{"220-mx.example.net Microsoft ESMTP MAIL Service ready at Mon, 2 Mar 2026 10:00:00 +0900\r\n220 more\r\n", true},
		{"220 mx.example.net ESMTP Postfix (Debian/GNU)\r\n", false},
		{"220 mx.example.net ESMTP Service Ready\r\n", false},
		{"554 mx.example.net Mon, 2 Mar 2026 10:00:00 +0900\r\n", false},
	} {
		got, ok := bannerDate(tc.greeting)
		if ok != tc.ok || (ok && !got.Equal(want)) {
			t.Errorf("bannerDate(%q) = %v, %v; want %v, %v", tc.greeting, got, ok, want, tc.ok)
		}
	}
}
