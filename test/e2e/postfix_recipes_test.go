package e2e

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/sealgate/sealgate/internal/testpostfix"
	"github.com/sealgate/sealgate/internal/testsink"
)

// The README's two Postfix recipes ("Behind Postfix"), run exactly as
// written: the blocks are read from README.md itself, and only the
// loopback ports (and the provider's address) are changed, so that README
// and test cannot drift apart.

// readmeRecipe returns the fenced block that follows the line
// "<!-- recipe: NAME FILE -->" in README.md.
func readmeRecipe(t testing.TB, name, file string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	marker := fmt.Sprintf("<!-- recipe: %s %s -->", name, file)
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != marker {
			continue
		}
		if !sc.Scan() || !strings.HasPrefix(sc.Text(), "```") {
			t.Fatalf("README.md: %s is not followed by a fenced block", marker)
		}
		var b strings.Builder
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "```") {
				return b.String()
			}
			b.WriteString(sc.Text() + "\n")
		}
		t.Fatalf("README.md: the block after %s does not end", marker)
	}
	t.Fatalf("README.md has no %s", marker)
	return ""
}

// substitute replaces, in order, each old with its new (pairs: old, new,
// ...) and fails if an old does not occur: a README that changed a port
// or a name the test relies on stops the test instead of passing silently.
func substitute(t testing.TB, s string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("the README recipe no longer contains %q:\n%s", pairs[i], s)
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return s
}

// requirePostfixTools skips (or, under SEALGATE_REQUIRE_TOOLS=1, fails)
// when a tool of the recipes' tests is missing: Postfix, root to run it,
// Cyrus SASL's saslpasswd2, swaks with STARTTLS.
func requirePostfixTools(t *testing.T) {
	t.Helper()
	var missing []string
	if _, err := exec.LookPath("postfix"); err != nil {
		missing = append(missing, "postfix")
	}
	if _, err := exec.LookPath("saslpasswd2"); err != nil {
		missing = append(missing, "sasl2-bin")
	}
	if _, err := exec.LookPath("swaks"); err != nil {
		missing = append(missing, "swaks")
	} else if out, _ := exec.Command("swaks", "--support").CombinedOutput(); !strings.Contains(string(out), "=== TLS supported") {
		missing = append(missing, "libnet-ssleay-perl")
	}
	var err error
	switch {
	case len(missing) > 0:
		err = fmt.Errorf("missing %s (apt-get install %s)", strings.Join(missing, ", "), strings.Join(missing, " "))
	case os.Geteuid() != 0:
		err = testpostfix.ErrNotRoot
	}
	if err == nil {
		return
	}
	if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
		t.Fatal(err)
	}
	t.Skip(err)
}

// startPostfix starts a private Postfix under a directory of its own and
// logs its mail log if the test fails.
func startPostfix(t *testing.T, name string, o testpostfix.Options) *testpostfix.Instance {
	t.Helper()
	dir, err := os.MkdirTemp("", "sealgate-postfix-"+name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	o.Dir = dir
	pf, err := testpostfix.Start(ctxT(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix %s log:\n%s", name, pf.Log())
		}
		pf.Stop()
	})
	return pf
}

// waitListening waits until addr accepts connections.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, 30*time.Second, addr+" to listen", func() bool {
		c, err := dialTCP(addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// loopbackCert returns a self-signed certificate for 127.0.0.1 that is its
// own CA (the test hands it to sealgate as the system's CA file).
func loopbackCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "mail.provider.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// swaks runs swaks and returns its transcript; ok reports exit status 0.
func swaks(t *testing.T, args ...string) (out string, ok bool) {
	t.Helper()
	b, err := exec.Command("swaks", args...).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return string(b), err == nil
}

// swaksAttachment writes data to a file for swaks --attach.
func swaksAttachment(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "attachment.bin")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var queuedAsRE = regexp.MustCompile(`queued as (m[a-z2-7]+)\)`)

// requireCommand checks that every message Postfix handed to sealgate (its
// log: "250 2.0.0 OK: queued as m…") was accepted by sealgate, sent with
// the SMTP command want (sealgate's log line for that message says which);
// it returns how many messages there were. Postfix's SMTP client does not
// implement CHUNKING: it sends DATA even though sealgate offers BDAT, and
// the README says so.
func requireCommand(t *testing.T, pf *testpostfix.Instance, g *gw, want string) int {
	t.Helper()
	// Postfix logs one line per recipient: the same id may occur twice.
	ids := map[string]bool{}
	for _, m := range queuedAsRE.FindAllStringSubmatch(pf.Log(), -1) {
		ids[m[1]] = true
	}
	if len(ids) == 0 {
		t.Fatal("postfix handed nothing to sealgate")
	}
	log := g.log.String()
	for id := range ids {
		re := regexp.MustCompile(`msg="(?:inbound )?message accepted" .*\bid=` + id + ` .*\bsmtp=(\w+)`)
		m := re.FindStringSubmatch(log)
		switch {
		case m == nil:
			t.Errorf("sealgate logged no accepted message %s", id)
		case m[1] != want:
			t.Errorf("postfix sent %s to sealgate with %s, want %s", id, m[1], want)
		}
	}
	return len(ids)
}

// checkSealed checks what the internet received for the external recipient
// rcpt of a message with attachment att: a copy with a link and no trace of
// the attachment or the passphrase, a separate key notice with the
// passphrase and no link; and that the link and the passphrase give the
// attachment back.
func checkSealed(t *testing.T, g *gw, d delivered, rcpt string, att []byte) {
	t.Helper()
	c, k := d.copies[rcpt], d.keys[rcpt]
	if hasRun(c.Data, att) || bytes.Contains(bytes.ReplaceAll(c.Data, []byte("\r\n"), nil), encodeB64(att[:300])[:200]) {
		t.Fatalf("the copy to %s carries the attachment in clear", rcpt)
	}
	_, parts := parseMessage(t, c.Data)
	for _, p := range parts {
		if p.filename != "" {
			t.Errorf("the copy to %s still has an attachment %q", rcpt, p.filename)
		}
	}
	_, token := linkOf(t, c)
	pass := passphraseOf(t, k)
	if bytes.Contains(c.Data, []byte(pass)) {
		t.Errorf("the copy to %s carries the passphrase", rcpt)
	}
	if contains(k.Data, "http://") || contains(k.Data, "https://") || contains(k.Data, token) {
		t.Errorf("the key notice to %s carries a link", rcpt)
	}
	if hasRun(k.Data, att) {
		t.Errorf("the key notice to %s carries the attachment", rcpt)
	}
	resp, body := postForm(t, g.url("/t/"+token+"/download"), form("passphrase", pass, "file", "0"))
	if resp.StatusCode != 200 || !bytes.Equal(body, att) {
		t.Fatalf("download by %s: %d, same bytes %v", rcpt, resp.StatusCode, bytes.Equal(body, att))
	}
}

// attachmentOf returns the body of the first attachment of raw.
func attachmentOf(t *testing.T, raw []byte) []byte {
	t.Helper()
	_, parts := parseMessage(t, raw)
	for _, p := range parts {
		if p.filename != "" {
			return p.body
		}
	}
	t.Fatalf("no attachment in:\n%s", raw)
	return nil
}

// ledgerHas reports whether the ledger holds an event of type typ for rcpt
// ("" for any).
func ledgerHas(evs []ledgerEvent, typ, rcpt string) bool {
	for _, ev := range evs {
		if ev.Type == typ && (rcpt == "" || ev.Recipient == rcpt) {
			return true
		}
	}
	return false
}

// requireReceipt checks the receipt record (受領記録) of an inbound message
// from sender to rcpt with subject: message.received (direction inbound),
// and file.received for file with the SHA-256 of data, under contract.
func requireReceipt(t *testing.T, g *gw, sender, rcpt, subject, file string, data []byte, contract string) {
	t.Helper()
	var sawMsg, sawFile bool
	for _, ev := range g.ledger() {
		switch {
		case ev.Type == "message.received" && ev.Details["direction"] == "inbound" && ev.Details["from"] == sender &&
			ev.Details["to"] == rcpt && ev.Details["subject"] == subject:
			sawMsg = true
		case ev.Type == "file.received" && ev.File == file:
			sawFile = true
		}
	}
	if !sawMsg || !sawFile {
		t.Fatalf("receipt record: message.received %v, file.received %v", sawMsg, sawFile)
	}
	var sha, code string
	g.db().QueryRow(`SELECT json_extract(data, '$.sha256'), contract FROM ledger_records WHERE type = 'file.received' AND json_extract(data, '$.file') IN (SELECT commitment FROM ledger_names WHERE value = ?)`, file).Scan(&sha, &code)
	if sha != sha256hex(data) || code != contract {
		t.Fatalf("file.received: sha256 %s (want %s), contract %q (want %s)", sha, sha256hex(data), code, contract)
	}
}

// sendSealed runs swaks with args (one message with one attachment to
// carol and bob) and waits until the internet has carol's copy and key
// notice.
func sendSealed(t *testing.T, internet *testsink.Sink, args ...string) delivered {
	t.Helper()
	if out, ok := swaks(t, args...); !ok {
		t.Fatalf("swaks:\n%s", out)
	}
	msgs, err := internet.Wait(2*time.Minute, func(m []testsink.Message) bool {
		d := classify(m)
		return len(d.copies) == 1 && len(d.keys) == 1
	})
	if err != nil {
		t.Fatalf("%v: the internet got %d messages", err, len(msgs))
	}
	return classify(msgs)
}

// TestPostfixRelayhostRecipe: the README's relayhost recipe. The company's
// Postfix (main.cf from the README) relays to sealgate (its configuration
// from the README), which sends through the provider's relay — a second
// Postfix that wants STARTTLS and AUTH, with the README's user and
// password — to the internet (a sink). Mail for corp.example stays with
// the company's Postfix.
func TestPostfixRelayhostRecipe(t *testing.T) {
	requirePostfixTools(t)
	mainCF := readmeRecipe(t, "relayhost", "main.cf")
	cfg := readmeRecipe(t, "relayhost", "sealgate.toml")
	var parsed struct {
		Delivery struct {
			User     string `toml:"smarthost_user"`
			Password string `toml:"smarthost_password"`
		} `toml:"delivery"`
	}
	if _, err := toml.Decode(cfg, &parsed); err != nil || parsed.Delivery.User == "" {
		t.Fatalf("README relayhost sealgate.toml: %v (user %q)", err, parsed.Delivery.User)
	}

	internet, mailbox := startSink(t), startSink(t)
	relayAddr, providerAddr := freeAddr(t), freeAddr(t)
	cert, key := loopbackCert(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, cert, 0o644)

	// The provider's relay: submission with STARTTLS required and AUTH.
	provider := startPostfix(t, "provider", testpostfix.Options{Hostname: "mail.provider.test", Relayhost: internet.Addr(),
		TLSCert: cert, TLSKey: key, SASLUsers: map[string]string{parsed.Delivery.User: parsed.Delivery.Password},
		Master: providerAddr + " inet n - n - - smtpd -o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes" +
			" -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n"})
	waitListening(t, providerAddr)
	_, relayPort, _ := net.SplitHostPort(relayAddr)
	g := startGateway(t, gwOptions{relayAddr: relayAddr, extraEnv: []string{"SSL_CERT_FILE=" + caFile},
		config: substitute(t, cfg, "127.0.0.1:2525", relayAddr, "mail.provider.example:587", providerAddr)})
	company := startPostfix(t, "company", testpostfix.Options{Hostname: "mx.corp.example",
		Transport: map[string]string{"corp.example": mailbox.Addr()},
		Main:      substitute(t, mainCF, "[127.0.0.1]:2525", "[127.0.0.1]:"+relayPort)})

	att := append([]byte("%PDF-1.7\n"), randomBytes(200<<10)...)
	d := sendSealed(t, internet, "--server", company.Addr, "--from", sender, "--to", extA+","+internal,
		"--header", "Subject: relayhost recipe", "--attach-type", "application/pdf", "--attach-name", "見積書.pdf",
		"--attach", "@"+swaksAttachment(t, att))
	if len(d.plain) != 0 {
		t.Errorf("mail for corp.example went out to the internet")
	}
	checkSealed(t, g, d, extA, att)
	for _, m := range internet.Messages() {
		if hasRun(m.Data, att) {
			t.Errorf("the internet got the attachment in clear (message to %v)", m.To)
		}
	}
	inside, err := mailbox.Wait(time.Minute, func(m []testsink.Message) bool { return countTo(m, internal) == 1 })
	if err != nil {
		t.Fatalf("bob's copy: %v", err)
	}
	if !bytes.Equal(attachmentOf(t, inside[0].Data), att) {
		t.Error("bob's copy does not carry the attachment unchanged")
	}
	// Postfix handed the message to sealgate with DATA; sealgate
	// authenticated to the provider over TLS with the README's user.
	if n := requireCommand(t, company, g, "DATA"); n != 1 {
		t.Errorf("postfix handed %d messages to sealgate, want 1 (bob's stays inside)", n)
	}
	if !strings.Contains(provider.Log(), "sasl_username="+parsed.Delivery.User) {
		t.Error("the provider's relay logged no AUTH by sealgate")
	}
	// The portal records a download once the response is written, after
	// the client may already have read it all.
	waitFor(t, 10*time.Second, "the download recorded", func() bool { return ledgerHas(g.ledger(), "file.downloaded", "") })
	evs := g.ledger()
	for _, typ := range []string{"message.received", "file.sealed", "notice.delivered", "keynotice.delivered", "file.downloaded"} {
		if !ledgerHas(evs, typ, "") {
			t.Errorf("no %s in the ledger", typ)
		}
	}
}

// TestPostfixContentFilterRecipe: the README's content_filter recipe. One
// Postfix (master.cf from the README) takes staff mail on submission
// (STARTTLS, AUTH) and mail from outside on "port 25"; both go through
// sealgate (its configuration from the README) and back into Postfix on
// its second smtpd, which delivers to the mailbox server (corp.example)
// or the internet (sinks). Outbound mail is sealed with a separate key
// notice; inbound mail is recorded (message.received, file.received) and
// delivered unchanged; the relay restrictions of the recipe hold.
func TestPostfixContentFilterRecipe(t *testing.T) {
	requirePostfixTools(t)
	master := readmeRecipe(t, "content_filter", "master.cf")
	cfg := readmeRecipe(t, "content_filter", "sealgate.toml")

	internet, mailbox := startSink(t), startSink(t)
	smtpAddr, submissionAddr, reinjectAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	relayAddr, inboundAddr := freeAddr(t), freeAddr(t)
	_, relayPort, _ := net.SplitHostPort(relayAddr)
	_, inboundPort, _ := net.SplitHostPort(inboundAddr)
	cert, key := loopbackCert(t)
	const staffPassword = "staff-password"

	g := startGateway(t, gwOptions{relayAddr: relayAddr, config: substitute(t, cfg,
		"127.0.0.1:2525", relayAddr, "127.0.0.1:2526", inboundAddr, "127.0.0.1:10026", reinjectAddr)})
	cliOK(t, g, "contract", "add", "C-1", "--domains", "client.example")
	waitListening(t, inboundAddr)
	// Port 25 and 587 become loopback ports of their own; the internet is
	// a sink (relayhost), the mailbox server another (transport).
	pf := startPostfix(t, "company", testpostfix.Options{Hostname: "mx.corp.example",
		Transport: map[string]string{"corp.example": mailbox.Addr()}, Relayhost: internet.Addr(),
		Main: "relay_domains = corp.example\nmynetworks = 127.0.0.1/32\n" +
			"smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination\n",
		TLSCert: cert, TLSKey: key, SASLUsers: map[string]string{sender: staffPassword},
		Master: substitute(t, master,
			"smtp       inet", smtpAddr+" inet", "submission inet", submissionAddr+" inet",
			"[127.0.0.1]:2526", "[127.0.0.1]:"+inboundPort, "[127.0.0.1]:2525", "[127.0.0.1]:"+relayPort,
			"127.0.0.1:10026", reinjectAddr)})
	for _, a := range []string{smtpAddr, submissionAddr, reinjectAddr} {
		waitListening(t, a)
	}

	// Staff mail on submission: sealed for carol, unchanged for bob. swaks
	// writes the Japanese file name raw into the header: sealgate must not
	// declare SMTPUTF8 when it hands the message back to Postfix, or
	// Postfix bounces bob's unchanged copy to a mailbox server that does
	// not offer SMTPUTF8 (5.6.7) — which the sink below does not.
	att := append([]byte("%PDF-1.7\n"), randomBytes(200<<10)...)
	d := sendSealed(t, internet, "--server", submissionAddr, "--tls", "--auth", "PLAIN", "--auth-user", sender, "--auth-password", staffPassword,
		"--from", sender, "--to", extA+","+internal, "--header", "Subject: content_filter outbound",
		"--attach-type", "application/pdf", "--attach-name", "図面-2026.pdf", "--attach", "@"+swaksAttachment(t, att))
	checkSealed(t, g, d, extA, att)
	inside, err := mailbox.Wait(time.Minute, func(m []testsink.Message) bool { return countTo(m, internal) == 1 })
	if err != nil {
		t.Fatalf("bob's copy: %v", err)
	}
	for _, m := range inside {
		if countTo([]testsink.Message{m}, internal) == 1 && !bytes.Equal(attachmentOf(t, m.Data), att) {
			t.Error("bob's copy does not carry the attachment unchanged")
		}
	}

	// Mail from outside (127.0.0.2, not in mynetworks) on port 25: recorded
	// under carol's contract and delivered to bob unchanged.
	in := append([]byte("%PDF-1.7\n"), randomBytes(100<<10)...)
	out, ok := swaks(t, "--server", smtpAddr, "--local-interface", "127.0.0.2", "--from", extA, "--to", internal,
		"--header", "Subject: inbound drawing", "--attach-type", "application/pdf", "--attach-name", "drawing.pdf",
		"--attach", "@"+swaksAttachment(t, in))
	if !ok {
		t.Fatalf("swaks on port 25:\n%s", out)
	}
	inside, err = mailbox.Wait(time.Minute, func(m []testsink.Message) bool { return countTo(m, internal) == 2 })
	if err != nil {
		t.Fatalf("the inbound message: %v", err)
	}
	var got testsink.Message
	for _, m := range inside {
		if countTo([]testsink.Message{m}, internal) == 1 && contains(m.Data, "Subject: inbound drawing") {
			got = m
		}
	}
	if got.From != extA || !bytes.Equal(attachmentOf(t, got.Data), in) {
		t.Errorf("the inbound message reached bob from %q, attachment unchanged %v", got.From, bytes.Equal(attachmentOf(t, got.Data), in))
	}
	requireReceipt(t, g, extA, internal, "inbound drawing", "drawing.pdf", in, "C-1")

	// The recipe's restrictions: no relaying for outside clients on port
	// 25, none without AUTH on submission, none without TLS.
	if out, ok := swaks(t, "--server", smtpAddr, "--local-interface", "127.0.0.2", "--from", extA, "--to", extB, "--quit-after", "RCPT"); ok ||
		!strings.Contains(out, "554 5.7.1") || !strings.Contains(out, "Relay access denied") {
		t.Errorf("port 25 relayed for an outside client:\n%s", out)
	}
	if out, ok := swaks(t, "--server", submissionAddr, "--tls", "--from", sender, "--to", extA, "--quit-after", "RCPT"); ok ||
		!strings.Contains(out, "554 5.7.1") {
		t.Errorf("submission relayed without AUTH:\n%s", out)
	}
	if out, ok := swaks(t, "--server", submissionAddr, "--from", sender, "--to", extA, "--quit-after", "RCPT"); ok ||
		!strings.Contains(out, "530 5.7.0") {
		t.Errorf("submission accepted mail without TLS:\n%s", out)
	}

	// Outbound mail on port 25 (from a host in mynetworks) is refused by
	// sealgate's inbound listener and returned to the sender by Postfix:
	// alice gets the bounce, the internet nothing more.
	secret := append([]byte("%PDF-1.7\n"), randomBytes(50<<10)...)
	out, ok = swaks(t, "--server", smtpAddr, "--local-interface", "127.0.0.1", "--from", sender, "--to", extA,
		"--header", "Subject: wrong door", "--attach-name", "secret.pdf", "--attach", "@"+swaksAttachment(t, secret))
	if !ok {
		t.Fatalf("swaks on port 25 from mynetworks:\n%s", out)
	}
	if _, err := mailbox.Wait(time.Minute, func(m []testsink.Message) bool {
		for _, b := range m {
			if b.From == "" && countTo([]testsink.Message{b}, sender) == 1 && contains(b.Data, "wrong door") && contains(b.Data, "5.7.1") {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("no bounce to alice for mail sent out through port 25: %v", err)
	}
	waitFor(t, time.Minute, "postfix's queue to empty", func() bool {
		empty, err := pf.QueueEmpty(ctxT(t))
		return err == nil && empty && g.pending() == 0
	})
	for _, m := range internet.Messages() {
		if hasRun(m.Data, secret) || contains(m.Data, "wrong door") {
			t.Errorf("mail sent out through port 25 reached the internet (to %v)", m.To)
		}
	}

	// Postfix handed both messages to sealgate with DATA, the inbound one
	// to the inbound listener.
	if n := requireCommand(t, pf, g, "DATA"); n != 2 {
		t.Errorf("postfix handed %d messages to sealgate, want 2 (one outbound, one inbound)", n)
	}
	if !regexp.MustCompile(`msg="inbound message accepted" .*\bfrom=` + regexp.QuoteMeta(extA) + ` `).MatchString(g.log.String()) {
		t.Error("the inbound message did not reach sealgate's inbound listener")
	}
	waitFor(t, 10*time.Second, "the download recorded", func() bool { return ledgerHas(g.ledger(), "file.downloaded", "") })
	evs := g.ledger()
	for _, typ := range []string{"file.sealed", "notice.delivered", "keynotice.delivered", "file.downloaded"} {
		if !ledgerHas(evs, typ, "") {
			t.Errorf("no %s in the ledger", typ)
		}
	}
}
