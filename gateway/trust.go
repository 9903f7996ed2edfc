package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/address"
)

// Who may relay. The relay listener relays for a client that is
//
//   - inside smtp.trusted_networks (the company's own MTAs — never a
//     provider's shared outbound ranges, where every other tenant sends
//     from too), or
//   - after STARTTLS, presents a certificate that verifies against
//     smtp.client_ca_file (or the system's roots) and names one of
//     smtp.trusted_client_names (a provider's outbound connector).
//
// and then only for envelope senders of internal domains. A certificate
// proves which host connects, not on whose behalf: a provider's outbound
// gateway carries every tenant's mail. So a certificate-trusted client
// also may not use the null sender (bounces and auto-replies to anyone,
// the classic open-relay path) nor a From header outside the internal
// domains; a network-trusted client may use the null sender, for the
// company MTA's own bounces. When internal_domains is empty the envelope
// sender cannot be checked, and only network-trusted clients relay
// (config refuses trusted_client_names without internal_domains).

// certTrust verifies client certificates on the relay listener.
type certTrust struct {
	roots *x509.CertPool
	names []string // lower case
}

// newCertTrust returns nil when no client certificate is trusted.
func newCertTrust(caFile string, names []string) (*certTrust, error) {
	if len(names) == 0 {
		return nil, nil
	}
	t := &certTrust{names: names}
	if caFile == "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("failed to load the system's root certificates for smtp.trusted_client_names: %w", err)
		}
		t.roots = pool
		return t, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("failed to read smtp.client_ca_file: %w", err)
	}
	t.roots = x509.NewCertPool()
	if !t.roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("smtp.client_ca_file %s holds no PEM certificate", caFile)
	}
	return t, nil
}

// verify returns the trusted name of the client certificate chain, or an
// error saying why it is not trusted.
func (t *certTrust) verify(chain []*x509.Certificate, now time.Time) (string, error) {
	if len(chain) == 0 {
		return "", errors.New("no client certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// serverAuth counts as well as clientAuth: public CAs are dropping
	// clientAuth from TLS certificates, and the name is what identifies
	// the client.
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: t.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		return "", fmt.Errorf("certificate does not verify: %w", err)
	}
	for _, n := range certNames(chain[0]) {
		if slices.Contains(t.names, n) {
			return n, nil
		}
	}
	return "", fmt.Errorf("certificate names %v are not in smtp.trusted_client_names", certNames(chain[0]))
}

// certNames returns the DNS names of a certificate, or its subject common
// name when it has none, in lower case.
func certNames(c *x509.Certificate) []string {
	names := c.DNSNames
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = []string{c.Subject.CommonName}
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.ToLower(strings.TrimSuffix(n, "."))
	}
	return out
}

// relayTLS is the STARTTLS configuration of the relay listener: it asks
// for a client certificate (and verifies it itself, see newSession) when
// certificates can be trusted.
func (g *Gateway) relayTLS() *tls.Config {
	if g.TLS == nil || g.certTrust == nil {
		return g.TLS
	}
	c := g.TLS.Clone()
	c.ClientAuth = tls.RequestClientCert
	return c
}

// trustByCertificate makes s trusted if its connection presented a
// certificate the relay listener trusts.
func (s *session) trustByCertificate(c *smtp.Conn) {
	cs, ok := c.TLSConnectionState()
	s.tls = ok
	if ok && len(cs.PeerCertificates) > 0 {
		s.peerCert = certNames(cs.PeerCertificates[0])
	}
	if s.trusted || s.g.certTrust == nil || len(s.peerCert) == 0 {
		return
	}
	name, err := s.g.certTrust.verify(cs.PeerCertificates, s.g.Now())
	if err != nil {
		s.g.Log.Warn("relay: client certificate not trusted", "client", s.env.client,
			"names", s.peerCert, "issuer", cs.PeerCertificates[0].Issuer.String(), "error", err)
		return
	}
	s.trusted, s.env.clientCert = true, name
}

// relaySender checks the envelope sender of a trusted relay client.
func (s *session) relaySender(from string) error {
	if from == "" {
		if s.env.clientCert != "" {
			return replyNullSenderByCert
		}
		return nil
	}
	if len(s.g.Config.InternalDomains) == 0 {
		return nil // nothing to check against (network-trusted only, see above)
	}
	a, err := address.Parse(from)
	if err != nil || !s.g.Config.IsInternalDomain(a.Domain) {
		return replySenderNotInternal
	}
	return nil
}

// checkHeaderFromInternal enforces, for certificate-trusted relay clients,
// that every From address is an internal one.
func (g *Gateway) checkHeaderFromInternal(headerFrom string) error {
	addrs, err := mail.ParseAddressList(headerFrom)
	if err != nil || len(addrs) == 0 {
		return errHeaderFromNotInternal
	}
	for _, a := range addrs {
		if !g.Config.IsInternal(a.Address) {
			return errHeaderFromNotInternal
		}
	}
	return nil
}
