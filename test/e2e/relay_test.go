package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/agecli"
	"github.com/sealgate/sealgate/internal/testsink"
)

const (
	sender   = "alice@corp.example"
	internal = "bob@corp.example"
	extA     = "carol@client.example"
	extB     = "dave@partner.example"
)

type delivered struct {
	copies map[string]testsink.Message // rewritten copy per external recipient
	keys   map[string]testsink.Message // key notice per external recipient
	plain  []testsink.Message
}

func classify(msgs []testsink.Message) delivered {
	d := delivered{copies: map[string]testsink.Message{}, keys: map[string]testsink.Message{}}
	for _, m := range msgs {
		isKey := bytes.Contains(m.Data, []byte("X-Sealgate-Notice: key"))
		for _, r := range m.To {
			switch {
			case strings.HasSuffix(r, "@corp.example"):
				d.plain = append(d.plain, m)
			case isKey:
				d.keys[r] = m
			default:
				d.copies[r] = m
			}
		}
	}
	return d
}

func passphraseOf(t testing.TB, m testsink.Message) string {
	t.Helper()
	_, parts := parseMessage(t, m.Data)
	for _, p := range parts {
		if mm := passRE.FindSubmatch(p.body); mm != nil {
			return string(mm[1])
		}
	}
	t.Fatalf("no passphrase line in key notice:\n%s", m.Data)
	return ""
}

func linkOf(t testing.TB, m testsink.Message) (link, token string) {
	t.Helper()
	_, parts := parseMessage(t, m.Data)
	for _, p := range parts {
		if mm := linkRE.FindSubmatch(p.body); mm != nil {
			return string(mm[0]), string(mm[1])
		}
	}
	t.Fatalf("no link in copy:\n%s", m.Data)
	return "", ""
}

// TestRelayEndToEnd is the main flow: two attachments (one with a Japanese
// name, one 5 MiB binary) to one internal and two external recipients.
func TestRelayEndToEnd(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	runRelayFlow(t, g, sink)
}

func runRelayFlow(t *testing.T, g *gw, sink *testsink.Sink) {
	jpName := "見積書_2026年度.pdf"
	pdf := append([]byte("%PDF-1.7\n"), randomBytes(300<<10)...)
	bin := randomBytes(5 << 20)
	raw := buildMessage(map[string]string{
		"From": "Alice <" + sender + ">", "To": internal + ", " + extA, "Cc": extB,
		"Subject": "=?UTF-8?B?" + "5Yil57SZ44Gu6KaL56mN5pu4" + "?=", "Date": "Wed, 25 Nov 2026 10:00:00 +0900",
		"Message-ID": "<e2e-1@corp.example>",
	}, "本文です。添付をご確認ください。", attachment{name: jpName, contentType: "application/pdf", data: pdf},
		attachment{name: "data.bin", contentType: "application/octet-stream", data: bin})

	if err := send(t, g.smtpAddr, sender, []string{internal, extA, extB}, raw); err != nil {
		t.Fatalf("send: %v", err)
	}
	msgs, err := sink.Wait(60*time.Second, func(m []testsink.Message) bool {
		d := classify(m)
		return len(d.plain) == 1 && len(d.copies) == 2 && len(d.keys) == 2
	})
	if err != nil {
		t.Fatalf("%v: got %d messages", err, len(msgs))
	}
	d := classify(msgs)

	// The internal copy is the message exactly as sent.
	if !bytes.Equal(d.plain[0].Data, raw) {
		t.Fatalf("internal copy differs from the original (%d vs %d bytes)", len(d.plain[0].Data), len(raw))
	}

	tokens := map[string]bool{}
	for _, r := range []string{extA, extB} {
		c := d.copies[r]
		if hasRun(c.Data, pdf) || hasRun(c.Data, bin) {
			t.Fatalf("copy to %s contains attachment bytes", r)
		}
		for _, enc := range [][]byte{pdf, bin} {
			b64 := []byte(strings.ReplaceAll(string(encodeB64(enc[:3000])), "\r\n", ""))
			if bytes.Contains(bytes.ReplaceAll(c.Data, []byte("\r\n"), nil), b64[:200]) {
				t.Fatalf("copy to %s contains base64 attachment bytes", r)
			}
		}
		hdr, parts := parseMessage(t, c.Data)
		if got := hdr.Get("To"); got != internal+", "+extA {
			t.Errorf("To header rewritten: %q", got)
		}
		if got := hdr.Get("Cc"); got != extB {
			t.Errorf("Cc header rewritten: %q", got)
		}
		_, token := linkOf(t, c)
		if tokens[token] {
			t.Fatalf("two recipients share a link")
		}
		tokens[token] = true
		var sawBody, sawJP bool
		for _, p := range parts {
			if p.filename != "" {
				t.Errorf("copy to %s still has an attachment %q", r, p.filename)
			}
			if bytes.Contains(p.body, []byte("本文です")) {
				sawBody = true
			}
			if bytes.Contains(p.body, []byte(jpName)) {
				sawJP = true
			}
		}
		if !sawBody || !sawJP {
			t.Errorf("copy to %s: body kept=%v, Japanese name in notice=%v", r, sawBody, sawJP)
		}
		k := d.keys[r]
		if bytes.Contains(k.Data, []byte("http://")) || bytes.Contains(k.Data, []byte("https://")) || bytes.Contains(k.Data, []byte(token)) {
			t.Fatalf("key notice to %s carries a link:\n%s", r, k.Data)
		}
		if k.At.Before(c.At) {
			t.Errorf("key notice to %s left before its link notice", r)
		}
	}

	// Download through the portal with the passphrase.
	link, token := linkOf(t, d.copies[extA])
	pass := passphraseOf(t, d.keys[extA])
	resp, page := get(t, link)
	if resp.StatusCode != 200 || !contains(page, jpName) {
		t.Fatalf("link page: %d\n%s", resp.StatusCode, page)
	}
	for i, want := range [][]byte{pdf, bin} {
		resp, body := postForm(t, g.url("/t/"+token+"/download"), form("passphrase", strings.ToLower(pass), "file", string(rune('0'+i))))
		if resp.StatusCode != 200 {
			t.Fatalf("download %d: %d %s", i, resp.StatusCode, body)
		}
		if sha256.Sum256(body) != sha256.Sum256(want) {
			t.Fatalf("download %d: bytes differ", i)
		}
		if i == 0 && !strings.Contains(resp.Header.Get("Content-Disposition"), "filename*=utf-8''") {
			t.Errorf("Content-Disposition does not carry the Japanese name: %q", resp.Header.Get("Content-Disposition"))
		}
	}

	// The stock age CLI decrypts file.age with key.age and the passphrase.
	if _, err := agecli.Path(); err != nil {
		if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	linkB, tokenB := linkOf(t, d.copies[extB])
	_ = linkB
	passB := passphraseOf(t, d.keys[extB])
	dir := t.TempDir()
	_, keyAge := postForm(t, g.url("/t/"+tokenB+"/age"), form("what", "key"))
	os.WriteFile(filepath.Join(dir, "key.age"), keyAge, 0o600)
	for i, want := range [][]byte{pdf, bin} {
		resp, fileAge := postForm(t, g.url("/t/"+tokenB+"/age"), form("file", string(rune('0'+i))))
		if resp.StatusCode != 200 {
			t.Fatalf("file.age %d: %d", i, resp.StatusCode)
		}
		in := filepath.Join(dir, "file.age")
		out := filepath.Join(dir, "file")
		os.WriteFile(in, fileAge, 0o600)
		os.Remove(out)
		if err := agecli.DecryptWithKeyFile(context.Background(), filepath.Join(dir, "key.age"), in, out, passB); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(out)
		if !bytes.Equal(got, want) {
			t.Fatalf("stock age: file %d differs", i)
		}
	}

	// The ledger holds, in order: received → sealed → notice delivered →
	// key notice delivered → page viewed → downloaded (for carol).
	var seq []string
	for _, ev := range g.ledger() {
		switch {
		case ev.Type == "message.received", ev.Type == "file.sealed":
			seq = append(seq, ev.Type)
		case ev.Recipient == extA && (ev.Type == "notice.delivered" || ev.Type == "keynotice.delivered" || ev.Type == "page.viewed" || ev.Type == "file.downloaded"):
			seq = append(seq, ev.Type)
		}
	}
	want := []string{"message.received", "file.sealed", "file.sealed", "notice.delivered", "keynotice.delivered", "page.viewed", "file.downloaded", "file.downloaded"}
	if strings.Join(seq, " ") != strings.Join(want, " ") {
		t.Fatalf("ledger order:\n got %v\nwant %v", seq, want)
	}
}

func encodeB64(b []byte) []byte {
	return []byte(stdB64(b))
}

// TestBccNotLeaked: a Bcc recipient gets a copy, nobody learns of them.
func TestBccNotLeaked(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	hidden := "hidden@secret.example"
	raw := buildMessage(map[string]string{"From": sender, "To": extA, "Bcc": hidden, "Subject": "bcc test"},
		"body", attachment{name: "a.txt", contentType: "application/octet-stream", data: randomBytes(1000)})
	if err := send(t, g.smtpAddr, sender, []string{extA, hidden}, raw); err != nil {
		t.Fatal(err)
	}
	msgs, err := sink.Wait(30*time.Second, func(m []testsink.Message) bool { d := classify(m); return len(d.copies) == 2 && len(d.keys) == 2 })
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if len(m.To) != 1 {
			t.Fatalf("a copy went to several recipients at once: %v", m.To)
		}
		if m.To[0] != hidden && contains(m.Data, "secret.example") {
			t.Fatalf("copy to %v reveals the Bcc recipient:\n%s", m.To, m.Data)
		}
		if contains([]byte(lower(string(m.Data))), "\nbcc:") {
			t.Fatalf("copy to %v carries a Bcc header", m.To)
		}
	}
}

// TestMalformedSealedWhole: a message the walker cannot parse (here a multipart without its
// closing boundary, after an mbox "From " line) is no longer refused: it is sealed whole. The
// external recipient's copy carries a notice and not one byte of the message's body; the
// sealed .eml is the message as sent (without its Bcc field and the mbox line); the internal
// recipient gets the message unchanged.
func TestMalformedSealedWhole(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	msg := "From: " + sender + "\r\nTo: " + extA + "\r\nBcc: " + internal + "\r\nSubject: broken\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n" +
		"--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"x.pdf\"\r\n\r\n" +
		"JVBERi0xLjcKc2VjcmV0IGNvbnRlbnQ=\r\n" // no closing boundary
	raw := []byte("From alice@corp.example Mon Nov 30 10:00:00 2026\r\n" + msg)
	if err := send(t, g.smtpAddr, sender, []string{extA, internal}, raw); err != nil {
		t.Fatalf("malformed message: %v, want it accepted and sealed whole", err)
	}
	msgs, err := sink.Wait(60*time.Second, func(m []testsink.Message) bool {
		d := classify(m)
		return len(d.plain) == 1 && len(d.copies) == 1 && len(d.keys) == 1
	})
	if err != nil {
		t.Fatal(err)
	}
	d := classify(msgs)
	if string(d.plain[0].Data) != msg {
		t.Fatalf("internal copy:\n%s", d.plain[0].Data)
	}
	c := d.copies[extA]
	for _, secret := range []string{"hello", "JVBERi0x", "secret content", internal} {
		if contains(c.Data, secret) {
			t.Fatalf("the copy carries %q:\n%s", secret, c.Data)
		}
	}
	hdr, parts := parseMessage(t, c.Data)
	if hdr.Get("Subject") != "broken" || len(parts) != 1 || !linkRE.Match(parts[0].body) {
		t.Fatalf("copy:\n%s", c.Data)
	}
	_, token := linkOf(t, c)
	resp, eml := postForm(t, g.url("/t/"+token+"/download"), form("passphrase", passphraseOf(t, d.keys[extA]), "file", "0"))
	if want := strings.Replace(msg, "Bcc: "+internal+"\r\n", "", 1); resp.StatusCode != 200 || string(eml) != want {
		t.Fatalf("download %d:\n%q\nwant\n%q", resp.StatusCode, eml, want)
	}
	sealed := 0
	for _, ev := range g.ledger() {
		if ev.Type == "file.sealed" && ev.Details["reason"] == "unparseable" && ev.File == "message.eml" {
			sealed++
		}
	}
	if sealed != 1 {
		t.Fatalf("%d file.sealed events for the whole message", sealed)
	}
}

func countFiles(t testing.TB, dir string) int {
	n := 0
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && !strings.Contains(p, string(filepath.Separator)+".") {
			n++
		}
		return nil
	})
	return n
}

// TestRestartDeliversQueued: mail accepted while the next hop is down is
// delivered after a crash and restart.
func TestRestartDeliversQueued(t *testing.T) {
	sink := startSink(t)
	sink.Stop()
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	raw := buildMessage(map[string]string{"From": sender, "To": extA + ", " + internal, "Subject": "queued"},
		"body", attachment{name: "q.bin", contentType: "application/octet-stream", data: randomBytes(20000)})
	if err := send(t, g.smtpAddr, sender, []string{extA, internal}, raw); err != nil {
		t.Fatal(err)
	}
	g.waitEvent(30*time.Second, "delivery.deferred") // the next hop is down
	g.stop(syscall.SIGKILL)
	if err := sink.Restart(); err != nil {
		t.Fatal(err)
	}
	g.start()
	if _, err := sink.Wait(60*time.Second, func(m []testsink.Message) bool {
		d := classify(m)
		return len(d.plain) == 1 && len(d.copies) == 1 && len(d.keys) == 1
	}); err != nil {
		t.Fatal(err)
	}
}

// TestSmarthostOutage: the next hop is down for a while, then back.
func TestSmarthostOutage(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	sink.Stop()
	raw := buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "outage"},
		"body", attachment{name: "o.bin", contentType: "application/octet-stream", data: randomBytes(1000)})
	if err := send(t, g.smtpAddr, sender, []string{extA}, raw); err != nil {
		t.Fatal(err)
	}
	// The outage lasts until a delivery has been retried once.
	waitFor(t, 30*time.Second, "a retry during the outage", func() bool {
		return dbInt(t, g, `SELECT COALESCE(MAX(attempts), 0) FROM outbound`) >= 2
	})
	if err := sink.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Wait(60*time.Second, func(m []testsink.Message) bool {
		d := classify(m)
		return len(d.copies) == 1 && len(d.keys) == 1
	}); err != nil {
		t.Fatal(err)
	}
}

// TestPermanentFailureBounces: a 5xx from the next hop produces a DSN to
// the sender, and no key notice is sent.
func TestPermanentFailureBounces(t *testing.T) {
	sink := startSink(t)
	bad := "nobody@client.example"
	sink.Reject(bad, 550)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	raw := buildMessage(map[string]string{"From": sender, "To": bad, "Subject": "bounce me"},
		"body", attachment{name: "b.bin", contentType: "application/octet-stream", data: randomBytes(1000)})
	if err := send(t, g.smtpAddr, sender, []string{bad}, raw); err != nil {
		t.Fatal(err)
	}
	msgs, err := sink.Wait(30*time.Second, func(m []testsink.Message) bool { return len(m) >= 1 })
	if err != nil {
		t.Fatal(err)
	}
	dsn := msgs[0]
	if dsn.From != "" || len(dsn.To) != 1 || dsn.To[0] != sender {
		t.Fatalf("bounce envelope: from %q to %v", dsn.From, dsn.To)
	}
	if !contains(dsn.Data, "multipart/report") || !contains(dsn.Data, "Final-Recipient: rfc822; "+bad) || !contains(dsn.Data, "Status: 5.") {
		t.Fatalf("not a DSN:\n%s", dsn.Data)
	}
	// The key notice waited behind the link notice; the failure cancelled
	// it in the same transaction, so it can never be sent.
	if got := dbString(t, g, `SELECT GROUP_CONCAT(status) FROM outbound WHERE kind = 'key'`); got != "cancelled" {
		t.Fatalf("key notice %q after the link notice failed, want cancelled", got)
	}
	for _, m := range sink.Messages() {
		if contains(m.Data, "X-Sealgate-Notice: key") {
			t.Fatal("a key notice was sent for an undeliverable link notice")
		}
	}
}

// TestLinkGetChangesNothing and the lock after 10 wrong passphrases.
func TestLinkGetAndLock(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	data := randomBytes(5000)
	raw := buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "lock"},
		"body", attachment{name: "l.bin", contentType: "application/octet-stream", data: data})
	if err := send(t, g.smtpAddr, sender, []string{extA}, raw); err != nil {
		t.Fatal(err)
	}
	msgs, err := sink.Wait(30*time.Second, func(m []testsink.Message) bool { d := classify(m); return len(d.copies) == 1 && len(d.keys) == 1 })
	if err != nil {
		t.Fatal(err)
	}
	d := classify(msgs)
	link, token := linkOf(t, d.copies[extA])
	pass := passphraseOf(t, d.keys[extA])
	state := func() string {
		var s string
		g.db().QueryRow(`SELECT failed_attempts || '/' || downloads || '/' || COALESCE(locked_at, 'open') || '/' || status FROM recipients`).Scan(&s)
		return s
	}
	before := state()
	for i := 0; i < 5; i++ {
		resp, _ := get(t, link)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %d", resp.StatusCode)
		}
		resp, _ = get(t, link+"/download") // a scanner trying a GET on the form target
		_ = resp
	}
	if after := state(); after != before {
		t.Fatalf("GET changed state: %s → %s", before, after)
	}

	wrong := "AAAAA-AAAAA-AAAAA-AAAAA-AAAAA"
	for i := 1; i <= 10; i++ {
		resp, body := postForm(t, g.url("/t/"+token+"/download"), form("passphrase", wrong, "file", "0"))
		if i < 10 && resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong passphrase %d: %d", i, resp.StatusCode)
		}
		if i == 10 && (resp.StatusCode != http.StatusForbidden || !contains(body, "ロック")) {
			t.Fatalf("10th wrong passphrase did not lock: %d\n%s", resp.StatusCode, body)
		}
	}
	resp, _ := postForm(t, g.url("/t/"+token+"/download"), form("passphrase", pass, "file", "0"))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("locked link served the file: %d", resp.StatusCode)
	}
	var locks int
	for _, ev := range g.ledger() {
		if ev.Type == "link.locked" {
			locks++
		}
	}
	if locks != 1 {
		t.Fatalf("%d link.locked events", locks)
	}
}

// TestSizeLimit: a message over the limit is refused with 552 and leaves
// nothing behind.
func TestSizeLimit(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: []string{"SEALGATE_MAX_MESSAGE_SIZE=1MiB"}})
	raw := buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "too big"},
		"body", attachment{name: "big.bin", contentType: "application/octet-stream", data: randomBytes(2 << 20)})
	err := send(t, g.smtpAddr, sender, []string{extA}, raw)
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 552 {
		t.Fatalf("oversized message: %v, want 552", err)
	}
	// The gateway still works afterwards.
	small := buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "small"}, "body")
	if err := send(t, g.smtpAddr, sender, []string{extA}, small); err != nil {
		t.Fatalf("after a refusal: %v", err)
	}
	if n := countFiles(t, filepath.Join(g.dir, "objects")); n != 0 {
		t.Fatalf("%d objects left by the refused message", n)
	}
}

// TestSwaks sends with a real SMTP client (swaks), attachment with a
// Japanese name.
func TestSwaks(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
			t.Fatal("swaks is not installed")
		}
		t.Skip("swaks is not installed (apt-get install swaks)")
	}
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	dir := t.TempDir()
	data := randomBytes(300 << 10)
	p := filepath.Join(dir, "data.bin")
	os.WriteFile(p, data, 0o600)
	out, err := exec.Command("swaks", "--server", g.smtpAddr, "--from", sender, "--to", extA+","+internal,
		"--header", "Subject: swaks 送信テスト", "--attach-type", "application/pdf", "--attach-name", "契約書.pdf", "--attach", "@"+p).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "250 2.0.0 OK: queued as") {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	msgs, err := sink.Wait(30*time.Second, func(m []testsink.Message) bool {
		d := classify(m)
		return len(d.copies) == 1 && len(d.keys) == 1 && len(d.plain) == 1
	})
	if err != nil {
		t.Fatal(err)
	}
	d := classify(msgs)
	if hasRun(d.copies[extA].Data, data) {
		t.Fatal("copy carries attachment bytes")
	}
	_, parts := parseMessage(t, d.copies[extA].Data)
	named := false
	for _, p := range parts {
		named = named || contains(p.body, "契約書.pdf")
	}
	if !named {
		t.Fatalf("notice lacks the file name:\n%s", d.copies[extA].Data)
	}
	_, token := linkOf(t, d.copies[extA])
	pass := passphraseOf(t, d.keys[extA])
	resp, body := postForm(t, g.url("/t/"+token+"/download"), form("passphrase", pass, "file", "0"))
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("download: %d, equal=%v", resp.StatusCode, bytes.Equal(body, data))
	}
}

// TestCSRF: a POST without the CSRF token, or from another origin, is
// refused and changes nothing.
func TestCSRF(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	raw := buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "csrf"},
		"body", attachment{name: "c.bin", contentType: "application/octet-stream", data: randomBytes(100)})
	if err := send(t, g.smtpAddr, sender, []string{extA}, raw); err != nil {
		t.Fatal(err)
	}
	msgs, err := sink.Wait(30*time.Second, func(m []testsink.Message) bool { d := classify(m); return len(d.copies) == 1 && len(d.keys) == 1 })
	if err != nil {
		t.Fatal(err)
	}
	d := classify(msgs)
	_, token := linkOf(t, d.copies[extA])
	pass := passphraseOf(t, d.keys[extA])
	plain := &http.Client{Timeout: time.Minute} // no cookies, no token
	resp, err := plain.PostForm(g.url("/t/"+token+"/download"), form("passphrase", pass, "file", "0"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST without CSRF token: %d", resp.StatusCode)
	}
	// A cross-site form post carrying the victim's cookies is refused too.
	req, _ := http.NewRequest("POST", g.url("/t/"+token+"/download"), strings.NewReader(form("passphrase", pass, "file", "0", "csrf", csrfToken(t, g.url("/"))).Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err = browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d", resp.StatusCode)
	}
	var downloads, failed int
	g.db().QueryRow(`SELECT downloads, failed_attempts FROM recipients`).Scan(&downloads, &failed)
	if downloads != 0 || failed != 0 {
		t.Fatalf("refused POSTs changed state: downloads=%d failed=%d", downloads, failed)
	}
	// With the token, from the page itself, it works.
	resp, _ = postForm(t, g.url("/t/"+token+"/download"), form("passphrase", pass, "file", "0"))
	if resp.StatusCode != 200 {
		t.Fatalf("proper POST: %d", resp.StatusCode)
	}
}
