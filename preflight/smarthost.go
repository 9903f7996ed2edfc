package preflight

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	netsmtp "net/smtp"
	"strings"
	"time"
)

// smarthost: the next hop answers, offers STARTTLS as smarthost_tls
// demands, its certificate verifies as delivery verifies it (the system's
// roots, the configured host name), and the credentials are accepted. It
// says QUIT without sending anything. A date in its greeting is kept for
// the clock check.
func (r *run) smarthost(ctx context.Context) Result {
	f := newFinding("smarthost")
	d := r.c.Delivery
	if d.Smarthost == "" {
		f.warn(fmt.Sprintf("スマートホストが未設定です: 送信メールはすべて Maildir %s に平文で書かれます (開発用)。本番では delivery.smarthost を設定してください", r.c.Path("outbox")),
			fmt.Sprintf("no smarthost: all outbound mail is written in clear to the Maildir %s (development); set delivery.smarthost for production", r.c.Path("outbox")))
		return f.result()
	}
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	host, _, _ := net.SplitHostPort(d.Smarthost)
	// unreachable: the server does not answer now (the queue retries).
	unreachable := func(ja, en string, err error) Result {
		f.fail(fmt.Sprintf("%s: %v", ja, err), fmt.Sprintf("%s: %v", en, err))
		f.transient = true
		return f.result()
	}
	t0 := r.Now()
	conn, err := r.Dial(ctx, "tcp", d.Smarthost)
	if err != nil {
		return unreachable(fmt.Sprintf("スマートホスト %s に接続できません (メールはキューで待ちます)", d.Smarthost),
			fmt.Sprintf("cannot connect to the smarthost %s (mail waits in the queue)", d.Smarthost), err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	bc := &bannerConn{Conn: conn}
	c, err := netsmtp.NewClient(bc, host)
	if err != nil {
		if isNetError(err) {
			return unreachable(fmt.Sprintf("スマートホスト %s が応答しません", d.Smarthost), fmt.Sprintf("the smarthost %s does not answer", d.Smarthost), err)
		}
		f.fail(fmt.Sprintf("スマートホスト %s が接続を断りました: %v", d.Smarthost, err), fmt.Sprintf("the smarthost %s refused the connection: %v", d.Smarthost, err))
		return f.result()
	}
	defer c.Close()
	t1 := r.Now()
	if t, ok := bannerDate(bc.greeting.String()); ok {
		r.addRef(clockRef{source: "smarthost " + d.Smarthost + " (SMTP greeting)", sourceJA: "スマートホスト " + d.Smarthost + " の SMTP 挨拶",
			ref: t, local: t0.Add(t1.Sub(t0) / 2), uncertainty: t1.Sub(t0)/2 + time.Second, informal: true})
	}
	if err := c.Hello(r.c.Hostname); err != nil {
		f.fail(fmt.Sprintf("スマートホスト %s が EHLO %s を断りました: %v", d.Smarthost, r.c.Hostname, err),
			fmt.Sprintf("the smarthost %s refused EHLO %s: %v", d.Smarthost, r.c.Hostname, err))
		return f.result()
	}
	offered, _ := c.Extension("STARTTLS")
	var done []string
	var doneJA []string
	switch {
	case d.SmarthostTLS == "none":
		if loopbackHost(host) {
			done, doneJA = append(done, "no TLS (smarthost_tls = none, loopback)"), append(doneJA, "TLS なし (smarthost_tls = none、ループバック)")
		} else {
			also, alsoJA := "", ""
			if offered {
				also, alsoJA = " though it offers STARTTLS", "(STARTTLS が使えるのに)"
			}
			f.warn(fmt.Sprintf("smarthost_tls = none: %s へのメールは平文でネットワークを流れます%s: starttls か required にしてください", d.Smarthost, alsoJA),
				fmt.Sprintf("smarthost_tls = none: mail to %s crosses the network in clear%s; use starttls or required", d.Smarthost, also))
		}
	case !offered && d.SmarthostTLS == "required":
		f.fail(fmt.Sprintf("スマートホスト %s は STARTTLS を提供しておらず、smarthost_tls = required なので配送はすべて失敗します", d.Smarthost),
			fmt.Sprintf("the smarthost %s does not offer STARTTLS and smarthost_tls = required: every delivery fails", d.Smarthost))
		return f.result()
	case !offered:
		if loopbackHost(host) {
			done, doneJA = append(done, "no STARTTLS offered (loopback)"), append(doneJA, "STARTTLS なし (ループバック)")
		} else {
			f.warn(fmt.Sprintf("スマートホスト %s は STARTTLS を提供していません: メールは平文でネットワークを流れます。提供させて smarthost_tls = required にしてください", d.Smarthost),
				fmt.Sprintf("the smarthost %s does not offer STARTTLS: mail crosses the network in clear; enable it there and set smarthost_tls = required", d.Smarthost))
		}
	default:
		cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, RootCAs: r.SmarthostRoots}
		if err := c.StartTLS(cfg); err != nil {
			f.fail(fmt.Sprintf("スマートホスト %s との STARTTLS に失敗しました: %v (配送も同じく証明書を検証するので、すべて失敗します)", d.Smarthost, err),
				fmt.Sprintf("STARTTLS with the smarthost %s failed: %v (delivery verifies the certificate the same way, so every delivery fails)", d.Smarthost, err))
			return f.result()
		}
		st, _ := c.TLSConnectionState()
		leaf := st.PeerCertificates[0]
		left := leaf.NotAfter.Sub(r.Now())
		if left < ExpiryWarning {
			f.warn(fmt.Sprintf("スマートホスト %s の証明書は %s に期限切れになります (残り %d 日): 配送はその後失敗します", d.Smarthost, leaf.NotAfter.UTC().Format(time.DateOnly), days(left)),
				fmt.Sprintf("the smarthost %s's certificate expires %s (%d days left): deliveries fail after that", d.Smarthost, leaf.NotAfter.UTC().Format(time.DateOnly), days(left)))
		}
		done = append(done, fmt.Sprintf("STARTTLS (%s, certificate valid until %s)", tls.VersionName(st.Version), leaf.NotAfter.UTC().Format(time.DateOnly)))
		doneJA = append(doneJA, fmt.Sprintf("STARTTLS (%s、証明書は %s まで有効)", tls.VersionName(st.Version), leaf.NotAfter.UTC().Format(time.DateOnly)))
	}
	if d.SmarthostUser != "" {
		if _, isTLS := c.TLSConnectionState(); !isTLS {
			f.fail("スマートホストの認証情報は TLS なしでは送りません: 配送はすべて失敗します。STARTTLS を使えるようにしてください",
				"smarthost credentials are never sent without TLS: every delivery fails; make STARTTLS work")
			return f.result()
		}
		if err := c.Auth(netsmtp.PlainAuth("", d.SmarthostUser, d.SmarthostPass, host)); err != nil {
			f.fail(fmt.Sprintf("スマートホスト %s が %s の認証を断りました: %v", d.Smarthost, d.SmarthostUser, err),
				fmt.Sprintf("the smarthost %s refused AUTH as %s: %v", d.Smarthost, d.SmarthostUser, err))
			return f.result()
		}
		done, doneJA = append(done, "AUTH accepted"), append(doneJA, "認証成功")
	}
	c.Quit()
	if f.level <= OK {
		f.ok(fmt.Sprintf("%s: 応答あり、%s", d.Smarthost, strings.Join(doneJA, "、")), fmt.Sprintf("%s: answers, %s", d.Smarthost, strings.Join(done, ", ")))
	}
	return f.result()
}

// isNetError reports a network failure (timeout, reset, closed) rather
// than an SMTP reply.
func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "EOF")
}

// bannerConn records what the server sends before the client first
// writes: the greeting.
type bannerConn struct {
	net.Conn
	greeting bytes.Buffer
	wrote    bool
}

func (b *bannerConn) Read(p []byte) (int, error) {
	n, err := b.Conn.Read(p)
	if !b.wrote && b.greeting.Len() < 4096 {
		b.greeting.Write(p[:n])
	}
	return n, err
}

func (b *bannerConn) Write(p []byte) (int, error) {
	b.wrote = true
	return b.Conn.Write(p)
}

// bannerDate finds an RFC 5322 date in an SMTP greeting, as Exim,
// Sendmail and Exchange write it ("220 mx.example ESMTP Exim 4.96 Mon, 02
// Mar 2026 10:00:00 +0900"); Postfix's default greeting has none.
func bannerDate(greeting string) (time.Time, bool) {
	for _, line := range strings.Split(greeting, "\n") {
		line = strings.TrimSpace(line)
		if len(line) < 4 || !strings.HasPrefix(line, "220") {
			continue
		}
		fields := strings.Fields(line[4:])
		for i := range fields {
			for j := len(fields); j > i+3; j-- {
				s := strings.Join(fields[i:j], " ")
				if !strings.Contains(s, ":") {
					break
				}
				if t, err := mail.ParseDate(s); err == nil {
					return t, true
				}
			}
		}
	}
	return time.Time{}, false
}
