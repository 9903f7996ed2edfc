package preflight

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// tlsSMTP: the STARTTLS certificate of the SMTP listeners.
func (r *run) tlsSMTP(context.Context) Result {
	f := newFinding("tls.smtp")
	s := r.c.SMTP
	if s.TLSCert == "" && s.TLSKey == "" {
		var open []string
		for _, a := range []string{s.RelayAddr, s.SubmissionAddr, s.InboundAddr} {
			if a != "" && !loopbackAddr(a) {
				open = append(open, a)
			}
		}
		if len(open) > 0 {
			f.warn(fmt.Sprintf("証明書が設定されていません: %s では STARTTLS に起動ごとに作る自己署名証明書を使います。検証する相手 (Microsoft 365、Google、メールソフト) は拒否するか警告します: smtp.tls_cert と smtp.tls_key を設定してください", strings.Join(open, ", ")),
				fmt.Sprintf("no certificate: STARTTLS on %s uses a self-signed certificate made at each start, which verifying peers (Microsoft 365, Google, mail clients) refuse or warn about: set smtp.tls_cert and smtp.tls_key", strings.Join(open, ", ")))
		} else {
			f.ok("開発用の自己署名証明書 (リスナーはループバックのみ)", "development self-signed certificate (listeners on loopback only)")
		}
		return f.result()
	}
	r.keyPair(f, s.TLSCert, s.TLSKey, "smtp", r.c.Hostname)
	return f.result()
}

// tlsHTTP: the portal's certificate, or plain HTTP where that is safe.
func (r *run) tlsHTTP(context.Context) Result {
	f := newFinding("tls.http")
	h := r.c.HTTP
	if h.TLSCert == "" && h.TLSKey == "" {
		if loopbackAddr(h.Addr) {
			f.ok(fmt.Sprintf("%s で平文 HTTP (ループバックのみ: TLS を終端するリバースプロキシの背後か、開発用)", h.Addr),
				fmt.Sprintf("plain HTTP on %s (loopback only: behind a TLS reverse proxy, or development)", h.Addr))
		} else {
			f.warn(fmt.Sprintf("ポータルは %s で平文 HTTP を提供し、ループバック以外からも届きます: パスフレーズとセッションがネットワークを平文で流れます。TLS のリバースプロキシの背後で 127.0.0.1 に限るか、http.tls_cert を設定してください", h.Addr),
				fmt.Sprintf("the portal serves plain HTTP on %s, reachable beyond loopback: passphrases and sessions would cross the network in clear; bind it to 127.0.0.1 behind a TLS reverse proxy, or set http.tls_cert", h.Addr))
		}
		return f.result()
	}
	host := ""
	if u, err := url.Parse(r.c.PublicURL); err == nil {
		host = u.Hostname()
	}
	r.keyPair(f, h.TLSCert, h.TLSKey, "http", host)
	return f.result()
}

// keyPair checks a configured certificate and key: both readable, the key
// matching, every certificate of the chain valid now and for 30 more days,
// the leaf naming host, the key file not readable by every user.
func (r *run) keyPair(f *finding, certFile, keyFile, section, host string) {
	if certFile == "" || keyFile == "" {
		f.fail(fmt.Sprintf("%s.tls_cert と %s.tls_key は両方とも設定してください", section, section),
			fmt.Sprintf("set both %s.tls_cert and %s.tls_key", section, section))
		return
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		f.fail(fmt.Sprintf("証明書 %s を読めません: %v", certFile, err), fmt.Sprintf("cannot read the certificate %s: %v", certFile, err))
		return
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		f.fail(fmt.Sprintf("秘密鍵 %s を読めません: %v", keyFile, err), fmt.Sprintf("cannot read the private key %s: %v", keyFile, err))
		return
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			f.fail(fmt.Sprintf("秘密鍵 %s は証明書 %s と対になっていません: 同じ組の鍵と証明書を設定してください", keyFile, certFile),
				fmt.Sprintf("the private key %s does not match the certificate %s: configure the key and certificate of one pair", keyFile, certFile))
		} else {
			f.fail(fmt.Sprintf("%s / %s を読み込めません: %v", certFile, keyFile, err), fmt.Sprintf("cannot load %s / %s: %v", certFile, keyFile, err))
		}
		return
	}
	var chain []*x509.Certificate
	for _, der := range pair.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			f.fail(fmt.Sprintf("%s の証明書を解析できません: %v", certFile, err), fmt.Sprintf("cannot parse a certificate of %s: %v", certFile, err))
			return
		}
		chain = append(chain, c)
	}
	before := f.level
	r.validity(f, certFile, chain)
	leaf := chain[0]
	if host != "" && leaf.VerifyHostname(host) != nil {
		f.warn(fmt.Sprintf("証明書 %s は %s を名乗っていません (名前: %s): 検証する相手は拒否します", certFile, host, certNames(leaf)),
			fmt.Sprintf("the certificate %s does not name %s (it names %s): verifying peers refuse it", certFile, host, certNames(leaf)))
	}
	if fi, err := os.Stat(keyFile); err == nil && fi.Mode().Perm()&0o004 != 0 {
		f.warn(fmt.Sprintf("秘密鍵 %s (mode %04o) は全ユーザーが読めます: chmod 640 (グループをサービスのユーザーに) か 600 にしてください", keyFile, fi.Mode().Perm()),
			fmt.Sprintf("the private key %s (mode %04o) is readable by every user: chmod 640 (group of the service user) or 600", keyFile, fi.Mode().Perm()))
	}
	if f.level <= before {
		left := leaf.NotAfter.Sub(r.Now())
		f.ok(fmt.Sprintf("%s (%s)、%s まで有効 (残り %d 日)", certFile, certNames(leaf), leaf.NotAfter.UTC().Format(time.DateOnly), days(left)),
			fmt.Sprintf("%s (%s), valid until %s (%d days left)", certFile, certNames(leaf), leaf.NotAfter.UTC().Format(time.DateOnly), days(left)))
	}
}

// validity adds an error for a certificate not valid now and a warning for
// one that expires within ExpiryWarning.
func (r *run) validity(f *finding, file string, chain []*x509.Certificate) {
	now := r.Now()
	for _, c := range chain {
		subj := c.Subject.String()
		switch {
		case now.After(c.NotAfter):
			f.fail(fmt.Sprintf("%s の証明書 %s は %s に期限切れです: 更新してください", file, subj, c.NotAfter.UTC().Format(time.RFC3339)),
				fmt.Sprintf("the certificate %s in %s expired %s: renew it", subj, file, c.NotAfter.UTC().Format(time.RFC3339)))
		case now.Before(c.NotBefore):
			f.fail(fmt.Sprintf("%s の証明書 %s は %s まで有効になりません (時計が遅れていませんか)", file, subj, c.NotBefore.UTC().Format(time.RFC3339)),
				fmt.Sprintf("the certificate %s in %s is not valid before %s (is the clock behind?)", subj, file, c.NotBefore.UTC().Format(time.RFC3339)))
		case c.NotAfter.Sub(now) < ExpiryWarning:
			f.warn(fmt.Sprintf("%s の証明書 %s は %s に期限切れになります (残り %d 日): 更新してください", file, subj, c.NotAfter.UTC().Format(time.DateOnly), days(c.NotAfter.Sub(now))),
				fmt.Sprintf("the certificate %s in %s expires %s (%d days left): renew it", subj, file, c.NotAfter.UTC().Format(time.DateOnly), days(c.NotAfter.Sub(now))))
		}
	}
}

// certNames lists the DNS names of c, or its common name.
func certNames(c *x509.Certificate) string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "CN=" + c.Subject.CommonName
	}
	return strings.Join(names, ", ")
}

// clientCA: the CA certificates that trusted client certificates must
// verify against.
func (r *run) clientCA(context.Context) Result {
	const name = "tls.client_ca"
	s := r.c.SMTP
	if len(s.TrustedClientNames) == 0 {
		return skip(name, "証明書で信頼するクライアントなし (smtp.trusted_client_names が空)", "no client trusted by certificate (smtp.trusted_client_names is empty)")
	}
	f := newFinding(name)
	if s.ClientCAFile == "" {
		f.ok("システムのルート CA で検証します", "client certificates verify against the system's root CAs")
		return f.result()
	}
	b, err := os.ReadFile(s.ClientCAFile)
	if err != nil {
		f.fail(fmt.Sprintf("%s を読めません: %v", s.ClientCAFile, err), fmt.Sprintf("cannot read %s: %v", s.ClientCAFile, err))
		return f.result()
	}
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			f.fail(fmt.Sprintf("%s の証明書を解析できません: %v", s.ClientCAFile, err), fmt.Sprintf("cannot parse a certificate of %s: %v", s.ClientCAFile, err))
			return f.result()
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		f.fail(fmt.Sprintf("%s に PEM の証明書がありません: どのクライアント証明書も検証されません", s.ClientCAFile),
			fmt.Sprintf("%s holds no PEM certificate: no client certificate would verify", s.ClientCAFile))
		return f.result()
	}
	before := f.level
	r.validity(f, s.ClientCAFile, certs)
	if f.level <= before {
		f.ok(fmt.Sprintf("%s: CA 証明書 %d 件", s.ClientCAFile, len(certs)), fmt.Sprintf("%s: %d CA certificate(s)", s.ClientCAFile, len(certs)))
	}
	return f.result()
}

// publicURL: links in notices carry tokens, so https outside loopback.
func (r *run) publicURL(context.Context) Result {
	f := newFinding("public_url")
	u, err := url.Parse(r.c.PublicURL)
	switch {
	case err != nil:
		f.fail(fmt.Sprintf("public_url %q を解析できません: %v", r.c.PublicURL, err), fmt.Sprintf("cannot parse public_url %q: %v", r.c.PublicURL, err))
	case u.Scheme == "https":
		f.ok(r.c.PublicURL, r.c.PublicURL)
	case loopbackHost(u.Hostname()):
		f.ok(fmt.Sprintf("%s (http はループバックなので可、開発用)", r.c.PublicURL), fmt.Sprintf("%s (http on loopback: development only)", r.c.PublicURL))
	default:
		f.fail(fmt.Sprintf("public_url %s は http です: 通知のリンクのトークンと、入力されるパスフレーズが平文で流れます。https:// にしてください (リバースプロキシか http.tls_cert)", r.c.PublicURL),
			fmt.Sprintf("public_url %s is http: the tokens of the links in notices and the passphrases typed would cross the network in clear; use https:// (a reverse proxy, or http.tls_cert)", r.c.PublicURL))
	}
	return f.result()
}
