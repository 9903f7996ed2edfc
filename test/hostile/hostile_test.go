package hostile

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"

	"github.com/sealgate/sealgate/internal/testsink"
)

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// b64Lines encodes b in 76-column CRLF lines.
func b64Lines(b []byte) string {
	enc := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(enc) > 76 {
		out.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	out.WriteString(enc)
	return out.String()
}

func qp(b []byte) string {
	var out bytes.Buffer
	w := quotedprintable.NewWriter(&out)
	w.Write(b)
	w.Close()
	return strings.ReplaceAll(strings.ReplaceAll(out.String(), "\r\n", "\n"), "\n", "\r\n")
}

// verdict is what became of one hostile message.
type verdict struct {
	code     int
	text     string
	files    int                // sealed files recorded
	external []testsink.Message // what the external recipient got
	internal []testsink.Message
}

// judge checks the only two acceptable outcomes of a hostile message:
// refused with 5xx and nothing left of it, or accepted and delivered with
// every attachment sealed — no run of any forbidden byte string (the
// attachments' contents, decoded and as encoded in the message) in any
// copy to the external recipient. It returns what was delivered.
func (g *gateway) judge(tag string, code int, text string, forbidden ...[]byte) verdict {
	g.t.Helper()
	v := verdict{code: code, text: text}
	switch {
	case code/100 == 5:
		// The reply comes after the gateway's decision: a message it
		// refused was never recorded, so nothing of it is queued and
		// nothing can be delivered later.
		if n := g.count(`SELECT COUNT(*) FROM messages WHERE message_id = ?`, "<"+tag+">"); n != 0 {
			g.t.Fatalf("%s: refused (%d) but recorded %d times", tag, code, n)
		}
		for _, m := range g.sink.Messages() {
			if bytes.Contains(m.Data, []byte(tag)) {
				g.t.Fatalf("%s: refused (%d) but delivered to %v", tag, code, m.To)
			}
		}
		return v
	case code == 250:
	default:
		g.t.Fatalf("%s: reply %d %s: want 250 (sealed) or 5xx (refused)", tag, code, text)
	}
	v.files = g.count(`SELECT COUNT(*) FROM files f JOIN transfers t ON t.id = f.transfer_id JOIN messages m ON m.id = t.message_id WHERE m.message_id = ?`, "<"+tag+">")
	want := 1
	if v.files > 0 {
		want = 2 // the copy and the key notice
	}
	msgs, err := g.sink.Wait(60*time.Second, func(ms []testsink.Message) bool {
		n := 0
		for _, m := range ms {
			if bytes.Contains(m.Data, []byte(tag)) && m.To[0] == external {
				n++
			}
		}
		return n >= want
	})
	if err != nil {
		g.t.Fatalf("%s: %v", tag, err)
	}
	for _, m := range msgs {
		if !bytes.Contains(m.Data, []byte(tag)) {
			continue
		}
		if m.To[0] != external {
			v.internal = append(v.internal, m)
			continue
		}
		v.external = append(v.external, m)
		checkCRLF(g.t, tag, m.Data)
		for _, f := range forbidden {
			if hasRun(m.Data, f, 32) || hasRun(unfold(m.Data), unfold(f), 32) {
				g.t.Fatalf("%s: LEAK: the copy to %s carries attachment content\n%s", tag, external, trunc(string(m.Data)))
			}
		}
		if !bytes.Contains(m.Data, []byte("X-Sealgate-Notice: key")) {
			if n := bytes.Count(m.Data, []byte("\r\nX-Sealgate-Sealed: ")); n != v.files {
				g.t.Fatalf("%s: %d notices for %d sealed files", tag, n, v.files)
			}
		}
	}
	return v
}

// checkCRLF fails on a bare CR or LF (a smuggling vector for the next hop).
func checkCRLF(t testing.TB, tag string, b []byte) {
	t.Helper()
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			t.Fatalf("%s: bare LF at %d in a delivered copy", tag, i)
		}
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			t.Fatalf("%s: bare CR at %d in a delivered copy", tag, i)
		}
	}
}

// TestSmuggling: end-of-data look-alikes (CVE-2023-51764 class) never end
// DATA; one DATA is never two messages, at the sink or in the database.
func TestSmuggling(t *testing.T) {
	g := startGateway(t)
	for i, eod := range []string{"\n.\n", "\r.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\n.\r", "\r\n.\r"} {
		tag := fmt.Sprintf("smuggle-%d@corp.example", i)
		body := "From: <" + sender + ">\r\nTo: <" + external + ">, <" + internal + ">\r\nSubject: smuggling " + fmt.Sprint(i) +
			"\r\nMessage-ID: <" + tag + ">\r\n\r\nfirst message" + eod +
			"MAIL FROM:<evil@evil.example>\r\nRCPT TO:<smuggled@evil.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nsecond message\r\n"
		c := dial(t, g.smtpAddr)
		c.cmd("EHLO hostile.test", 250)
		c.cmd("MAIL FROM:<"+sender+">", 250)
		c.cmd("RCPT TO:<"+external+">", 250)
		c.cmd("RCPT TO:<"+internal+">", 250)
		c.cmd("DATA", 354)
		c.write(body + "\r\n.\r\n") // raw: the look-alike is not dot-stuffed
		code, text := c.reply()
		// Had the server ended DATA early, it would now answer the
		// smuggled MAIL, RCPT and DATA.
		if extra, line, ok := c.tryReply(700 * time.Millisecond); ok {
			t.Fatalf("%q: extra reply %d after the end of data: %s", eod, extra, line)
		}
		c.cmd("QUIT", 221)
		c.close()
		v := g.judge(tag, code, text)
		if code == 250 {
			if len(v.internal) != 1 {
				t.Fatalf("%q: %d internal copies", eod, len(v.internal))
			}
			checkCRLF(t, tag, v.internal[0].Data)
			if !bytes.Contains(v.internal[0].Data, []byte("second message")) {
				t.Fatalf("%q: the smuggled text is not part of the one message", eod)
			}
		}
	}
	g.drained()
	if n := g.count(`SELECT COUNT(*) FROM messages`); n > 7 {
		t.Fatalf("%d messages recorded for 7 DATA commands", n)
	}
	if n := g.count(`SELECT COUNT(*) FROM outbound WHERE rcpts LIKE '%evil.example%'`); n != 0 {
		t.Fatalf("%d deliveries queued to the smuggled recipient", n)
	}
	for _, m := range g.sink.Messages() {
		for _, r := range m.To {
			if strings.Contains(r, "evil.example") {
				t.Fatalf("a message reached the smuggled recipient %s", r)
			}
		}
		if bytes.HasPrefix(m.Data, []byte("Subject: smuggled")) {
			t.Fatal("the smuggled message was delivered on its own")
		}
	}
	g.alive()
}

// TestStartTLSPipelining: commands pipelined after STARTTLS in the same
// write (CVE-2011-0411 class) are discarded, never executed inside TLS.
func TestStartTLSPipelining(t *testing.T) {
	g := startGateway(t)
	for _, injected := range []string{"RSET\r\n", "MAIL FROM:<evil@evil.example>\r\n", "MAIL FROM:<evil@evil.example>\r\nRCPT TO:<victim@client.example>\r\n"} {
		c := dial(t, g.smtpAddr)
		_, ehlo := c.cmd("EHLO hostile.test", 250)
		if !strings.Contains(ehlo, "STARTTLS") {
			t.Fatalf("STARTTLS not offered: %s", ehlo)
		}
		c.write("STARTTLS\r\n" + injected)
		if code, text := c.reply(); code != 220 {
			t.Fatalf("STARTTLS: %d %s", code, text)
		}
		// Nothing may follow the 220 in clear.
		if code, line, ok := c.tryReply(500 * time.Millisecond); ok {
			t.Fatalf("%q: reply %d in clear after the 220: %s", injected, code, line)
		}
		c.startTLS()
		// The first reply inside TLS must be the one to our EHLO, not to the
		// injected command.
		c.write("EHLO hostile.test\r\n")
		code, text := c.reply()
		if code != 250 || !strings.Contains(text, "Hello hostile.test") || !strings.Contains(text, "PIPELINING") {
			t.Fatalf("%q: first reply after TLS is %d %q, want the EHLO reply", injected, code, text)
		}
		// The injected MAIL was not kept: RCPT has no transaction.
		if code, text := c.cmd("RCPT TO:<victim@client.example>", 0); code/100 != 5 {
			t.Fatalf("%q: RCPT after TLS without MAIL answered %d %s: the injected MAIL survived", injected, code, text)
		}
		c.cmd("QUIT", 221)
		c.close()
	}
	if n := g.count(`SELECT COUNT(*) FROM messages`); n != 0 {
		t.Fatalf("%d messages recorded", n)
	}
	g.alive()
}

// TestOpenRelayRefused: a client outside the trusted networks cannot relay.
func TestOpenRelayRefused(t *testing.T) {
	g := startGateway(t, "SEALGATE_TRUSTED_NETWORKS=10.0.0.0/8")
	c := dial(t, g.smtpAddr)
	c.cmd("EHLO hostile.test", 250)
	if code, text := c.cmd("MAIL FROM:<"+sender+">", 0); code != 554 {
		t.Fatalf("MAIL FROM from an untrusted address: %d %s, want 554", code, text)
	}
	if code, text := c.cmd("RCPT TO:<"+external+">", 0); code/100 != 5 {
		t.Fatalf("RCPT from an untrusted address: %d %s", code, text)
	}
	if code, text := c.cmd("DATA", 0); code/100 != 5 {
		t.Fatalf("DATA from an untrusted address: %d %s", code, text)
	}
	// Null sender and postmaster are no way in either.
	if code, text := c.cmd("MAIL FROM:<>", 0); code != 554 {
		t.Fatalf("MAIL FROM:<>: %d %s, want 554", code, text)
	}
	c.cmd("QUIT", 221)
	c.close()
	// Nothing was recorded (every command was answered), so nothing can be
	// relayed later.
	if n := g.count(`SELECT COUNT(*) FROM messages`) + g.count(`SELECT COUNT(*) FROM outbound`); n != 0 {
		t.Fatalf("%d messages recorded", n)
	}
	if n := g.sink.Count(); n != 0 {
		t.Fatalf("%d messages relayed", n)
	}
	g.alive()
}

func simpleMessage(tag, extraHeader, body string) []byte {
	return []byte("From: <" + sender + ">\r\nTo: <" + external + ">\r\nSubject: " + tag + "\r\nMessage-ID: <" + tag + ">\r\n" +
		extraHeader + "MIME-Version: 1.0\r\n" + body)
}

func withAttachment(tag, extraHeader, partHeader, partBody string) []byte {
	return simpleMessage(tag, extraHeader, "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"+
		"--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"+
		"--b1\r\n"+partHeader+"\r\n"+partBody+"\r\n--b1--\r\n")
}

// TestOversized: oversized headers and lines are refused (5xx), or sealed;
// never a temporary failure that would make the sender retry forever.
func TestOversized(t *testing.T) {
	g := startGateway(t)
	secret := randomBytes(t, 3000)
	b64 := base64.StdEncoding.EncodeToString(secret)
	cases := []struct {
		name string
		msg  func(tag string) []byte
	}{
		{"header field of 100 KiB", func(tag string) []byte {
			return withAttachment(tag, "X-Long: "+strings.Repeat("a", 100<<10)+"\r\n",
				"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n", b64Lines(secret))
		}},
		{"folded header of 100 KiB", func(tag string) []byte {
			return withAttachment(tag, "X-Folded: "+strings.Repeat("a\r\n ", 30<<10)+"end\r\n",
				"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n", b64Lines(secret))
		}},
		{"10,000 header fields", func(tag string) []byte {
			return withAttachment(tag, strings.Repeat("X-Many: 0123456789\r\n", 10000),
				"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n", b64Lines(secret))
		}},
		{"20,000 header fields (400 KB of header)", func(tag string) []byte {
			return withAttachment(tag, strings.Repeat("X-Many: 0123456789\r\n", 20000),
				"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n", b64Lines(secret))
		}},
		{"5,000 fields in a part header", func(tag string) []byte {
			return withAttachment(tag, "",
				"Content-Type: application/pdf\r\n"+strings.Repeat("X-Part: 0123456789\r\n", 5000)+"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n", b64Lines(secret))
		}},
		{"part header of 100 KiB", func(tag string) []byte {
			return withAttachment(tag, "",
				"Content-Type: application/pdf\r\nX-Part: "+strings.Repeat("b", 100<<10)+"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n", b64Lines(secret))
		}},
		{"base64 attachment on one 4 KiB line", func(tag string) []byte {
			return withAttachment(tag, "",
				"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n", b64)
		}},
		{"text line of 1 MiB", func(tag string) []byte {
			return simpleMessage(tag, "", "Content-Type: text/plain\r\n\r\n"+strings.Repeat("x", 1<<20)+"\r\n")
		}},
	}
	for i, c := range cases {
		tag := fmt.Sprintf("oversized-%d@corp.example", i)
		msg := c.msg(tag)
		code, text := send(t, g.smtpAddr, sender, []string{external}, msg)
		t.Logf("%s: %d %s", c.name, code, strings.ReplaceAll(text, "\n", " / "))
		g.judge(tag, code, text, secret, []byte(b64))
		g.alive()
	}
	// An oversized command line.
	cn := dial(t, g.smtpAddr)
	cn.cmd("EHLO hostile.test", 250)
	cn.write("MAIL FROM:<" + strings.Repeat("a", 10000) + "@corp.example>\r\n")
	if code, text, ok := cn.tryReply(5 * time.Second); !ok || code/100 != 5 {
		t.Fatalf("oversized MAIL FROM: %d %s", code, text)
	}
	cn.close()
	g.drained()
	if spool, _ := g.leftovers(); spool != 0 {
		t.Fatalf("%d spool files left", spool)
	}
	g.alive()
}

// TestDeepNesting: 1,000 nested multiparts are refused (limit) and leave
// nothing behind. With boundaries that are prefixes of one another (n1 of
// n10), the delimiter lines become ambiguous before the limit is reached: the
// message cannot be parsed, and it is sealed whole — not one byte of the
// attachment in the copy.
func TestDeepNesting(t *testing.T) {
	g := startGateway(t)
	secret := randomBytes(t, 2000)
	nested := func(format string) string {
		var b strings.Builder
		const depth = 1000
		for d := 0; d < depth; d++ {
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\""+format+"\"\r\n\r\n--"+format+"\r\n", d, d)
		}
		b.WriteString("Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"deep.pdf\"\r\n\r\n")
		b.WriteString(b64Lines(secret) + "\r\n")
		for d := depth - 1; d >= 0; d-- {
			fmt.Fprintf(&b, "--"+format+"--\r\n", d)
		}
		return b.String()
	}
	tag := "deep@corp.example"
	code, text := send(t, g.smtpAddr, sender, []string{external}, simpleMessage(tag, "", nested("n%04d")))
	if code/100 != 5 {
		t.Fatalf("1,000-deep nesting: %d %s, want a 5xx refusal", code, text)
	}
	g.judge(tag, code, text, secret)
	if spool, objects := g.leftovers(); spool != 0 || objects != 0 {
		t.Fatalf("left behind: %d spool files, %d objects", spool, objects)
	}
	tag = "deep-prefix@corp.example"
	code, text = send(t, g.smtpAddr, sender, []string{external}, simpleMessage(tag, "", nested("n%d")))
	if v := g.judge(tag, code, text, secret, []byte(b64Lines(secret))); code != 250 || v.files != 1 {
		t.Fatalf("ambiguous nesting: %d %s, %d sealed files; want it sealed whole", code, text, v.files)
	}
	// And many parts side by side (beyond the part limit).
	var p strings.Builder
	p.WriteString("Content-Type: multipart/mixed; boundary=\"w\"\r\n\r\n")
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&p, "--w\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"p%d.bin\"\r\n\r\nx\r\n", i)
	}
	p.WriteString("--w--\r\n")
	tag = "wide@corp.example"
	code, text = send(t, g.smtpAddr, sender, []string{external}, simpleMessage(tag, "", p.String()))
	g.judge(tag, code, text)
	t.Logf("3,000 parts: %d %s", code, strings.ReplaceAll(text, "\n", " / "))
	g.drained()
	g.alive()
}

func vmHWM(t testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Skip("no VmHWM")
	}
	var kb int64
	fmt.Sscanf(string(m[1]), "%d", &kb)
	return kb << 10
}

// b64Zeros streams the base64 of n zero bytes ("AAAA…") in 76-column lines.
type b64Zeros struct{ left int64 }

func (z *b64Zeros) Read(p []byte) (int, error) {
	if z.left <= 0 {
		return 0, io.EOF
	}
	n := 0
	for n+78 <= len(p) && z.left > 0 {
		line := int64(76)
		if z.left < 57 {
			line = (z.left + 2) / 3 * 4
		}
		for i := int64(0); i < line; i++ {
			p[n] = 'A'
			n++
		}
		if z.left < 57 && z.left%3 != 0 {
			p[n-1] = '='
			if z.left%3 == 1 {
				p[n-2] = '='
			}
		}
		p[n], p[n+1] = '\r', '\n'
		n += 2
		z.left -= min(z.left, 57)
	}
	return n, nil
}

// TestBase64Bomb: 40 MiB of base64 "A" (30 MiB of zeros) streams through
// in bounded memory, is sealed, and downloads intact.
func TestBase64Bomb(t *testing.T) {
	g := startGateway(t)
	const plain = 30 << 20 // 40 MiB of base64
	before := vmHWM(t, g.cmd.Process.Pid)
	tag := "bomb@corp.example"
	c := dial(t, g.smtpAddr)
	c.cmd("EHLO hostile.test", 250)
	c.cmd("MAIL FROM:<"+sender+">", 250)
	c.cmd("RCPT TO:<"+external+">", 250)
	c.cmd("DATA", 354)
	head := withAttachment(tag, "", "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"zeros.bin\"\r\n", "")
	head = head[:bytes.LastIndex(head, []byte("\r\n\r\n--b1--"))+2] // up to the (empty) part body
	c.write(string(head))
	if _, err := io.Copy(c.c, &b64Zeros{left: plain}); err != nil {
		t.Fatal(err)
	}
	c.write("--b1--\r\n.\r\n")
	code, text := c.reply()
	c.close()
	if code != 250 {
		t.Fatalf("40 MiB base64 attachment: %d %s", code, text)
	}
	grew := vmHWM(t, g.cmd.Process.Pid) - before
	// Streaming holds a few pipe chunks; buffering the message or the
	// decoded file would take 40–70 MiB (several times that under -race).
	limit := int64(48 << 20)
	if os.Getenv("SEALGATE_HOSTILE_NORACE") != "1" {
		limit = 160 << 20
	}
	t.Logf("peak RSS grew by %d MiB for a 40 MiB message", grew>>20)
	if grew > limit {
		t.Errorf("peak RSS grew by %d MiB, limit %d MiB: the message was not streamed", grew>>20, limit>>20)
	}
	v := g.judge(tag, code, text, bytes.Repeat([]byte("A"), 64), make([]byte, 64))
	if v.files != 1 {
		t.Fatalf("%d files sealed, want 1", v.files)
	}
	if n := g.count(`SELECT size FROM files`); n != plain {
		t.Fatalf("sealed size %d, want %d", n, plain)
	}
	// Download through the portal: 30 MiB of zeros.
	token, pass := linkAndPass(t, v)
	resp := g.post(t, "/t/"+token+"/download", url.Values{"passphrase": {pass}, "file": {"0"}})
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("download: %s", resp.Status)
	}
	var n int64
	buf := make([]byte, 1<<20)
	for {
		k, err := resp.Body.Read(buf)
		for _, c := range buf[:k] {
			if c != 0 {
				t.Fatal("downloaded bytes are not zeros")
			}
		}
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n != plain {
		t.Fatalf("downloaded %d bytes, want %d", n, plain)
	}
	g.alive()
}

var (
	linkRE = regexp.MustCompile(`https?://[^\s]+/t/([a-z2-7]{32})`)
	passRE = regexp.MustCompile(`(?m)^Passphrase: ([0-9A-Z]{5}(?:-[0-9A-Z]{5}){4})\r?$`)
)

// decodedText returns the decoded text of every leaf of a delivered message.
func decodedText(t testing.TB, raw []byte) string {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) {
		t.Fatalf("delivered copy does not parse: %v", err)
	}
	var out strings.Builder
	e.Walk(func(_ []int, ent *message.Entity, err error) error {
		if err != nil || ent.MultipartReader() != nil {
			return nil
		}
		b, _ := io.ReadAll(ent.Body)
		out.Write(b)
		out.WriteString("\n")
		return nil
	})
	return out.String()
}

func linkAndPass(t testing.TB, v verdict) (token, pass string) {
	t.Helper()
	for _, m := range v.external {
		text := decodedText(t, m.Data)
		if mm := linkRE.FindStringSubmatch(text); mm != nil {
			token = mm[1]
		}
		if mm := passRE.FindStringSubmatch(text); mm != nil {
			pass = mm[1]
		}
	}
	if token == "" || pass == "" {
		t.Fatalf("no link or passphrase in the notices (token %q)", token)
	}
	return token, pass
}

// TestBrokenEncodings: invalid base64 and quoted-printable, unknown
// transfer encodings and charsets, missing or wrong boundaries. Each is
// sealed (an unparseable remainder as one file) or refused.
func TestBrokenEncodings(t *testing.T) {
	g := startGateway(t)
	secret := randomBytes(t, 4000)
	b64 := b64Lines(secret)
	qpText := qp(secret)
	att := func(extra, body string) string {
		return "Content-Type: application/pdf\r\n" + extra + "Content-Disposition: attachment; filename=\"s.pdf\"\r\n\r\n" + body
	}
	mixed := func(parts ...string) string {
		var b strings.Builder
		b.WriteString("Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nbody\r\n")
		for _, p := range parts {
			b.WriteString("--b1\r\n" + p + "\r\n")
		}
		b.WriteString("--b1--\r\n")
		return b.String()
	}
	cases := []struct{ name, body string }{
		{"invalid base64 characters", mixed(att("Content-Transfer-Encoding: base64\r\n", "!!!!@@@@####\r\n"+b64+"\r\n****"))},
		{"truncated base64", mixed(att("Content-Transfer-Encoding: base64\r\n", b64[:len(b64)-3]))},
		{"base64 with padding in the middle", mixed(att("Content-Transfer-Encoding: base64\r\n", "QQ==\r\n"+b64))},
		{"broken quoted-printable", mixed(att("Content-Transfer-Encoding: quoted-printable\r\n", "=ZZ=G1="+qpText+"=\r\n=4"))},
		{"unknown transfer encoding", mixed(att("Content-Transfer-Encoding: x-uuencode-42\r\n", b64))},
		{"unknown charset in a text part", mixed("Content-Type: text/plain; charset=x-unknown-42\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xff\xfe caf\xe9", att("Content-Transfer-Encoding: base64\r\n", b64))},
		{"file name in an unknown charset", mixed("Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"=?x-unknown-42?B?QUJD?=.pdf\"\r\n\r\n" + b64)},
		{"broken Content-Type parameters", mixed("Content-Type: application/pdf; name=\"unterminated\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64)},
		{"multipart without boundary", "Content-Type: multipart/mixed\r\n\r\n--b1\r\n" + att("Content-Transfer-Encoding: base64\r\n", b64) + "\r\n--b1--\r\n"},
		{"boundary never used", "Content-Type: multipart/mixed; boundary=\"nope\"\r\n\r\n--b1\r\n" + att("Content-Transfer-Encoding: base64\r\n", b64) + "\r\n--b1--\r\n"},
		{"closing boundary missing", "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n" + att("Content-Transfer-Encoding: base64\r\n", b64) + "\r\n"},
		{"unterminated boundary parameter", "Content-Type: multipart/mixed; boundary=\"b1\r\n\r\n--b1\r\n" + att("Content-Transfer-Encoding: base64\r\n", b64) + "\r\n--b1--\r\n"},
		{"nested part with the parent's boundary", "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\n" +
			att("Content-Transfer-Encoding: base64\r\n", b64) + "\r\n--b1--\r\n--b1--\r\n"},
	}
	for i, c := range cases {
		tag := fmt.Sprintf("broken-%d@corp.example", i)
		code, text := send(t, g.smtpAddr, sender, []string{external}, simpleMessage(tag, "", c.body))
		v := g.judge(tag, code, text, secret, []byte(b64), []byte(qpText))
		t.Logf("%s: %d, %d file(s) sealed", c.name, code, v.files)
		g.alive()
	}
}

var (
	bidi      = regexp.MustCompile("[\u202a-\u202e\u2066-\u2069\u200e\u200f]")
	keyListRE = regexp.MustCompile(`^  - (.*) \(\d+ bytes( \([^)]*\))?\)$`)
)

// TestFileNameTricks: right-to-left override, double extensions, path
// separators, NUL, 1,000-character names, CRLF + "Bcc:" injection — shown
// safely in the notices and in the portal's Content-Disposition.
func TestFileNameTricks(t *testing.T) {
	g := startGateway(t)
	names := []string{
		"invoice\u202egpj.exe",
		"invoice.pdf.exe",
		"../../etc/passwd",
		"..\\..\\windows\\system32\\cmd.exe",
		"a\x00b.pdf",
		strings.Repeat("n", 1000) + ".pdf",
		"report.pdf\r\nBcc: evil@evil.example",
		"x.pdf\"\r\nBcc: evil2@evil.example\r\nX-Injected: yes",
	}
	secret := randomBytes(t, 2000)
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nnames\r\n")
	for i, n := range names {
		// RFC 2231 percent-encoding carries any byte, CR, LF and NUL included.
		disp := "attachment; filename*=utf-8''" + strings.ReplaceAll(url.PathEscape(n), "+", "%2B")
		if i%2 == 1 {
			// RFC 2047 in a quoted parameter, as many mailers do.
			disp = "attachment; filename=\"" + mime.BEncoding.Encode("UTF-8", n) + "\""
		}
		fmt.Fprintf(&b, "--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: %s\r\n\r\n%s\r\n", disp, b64Lines(secret))
	}
	b.WriteString("--b1--\r\n")
	tag := "names@corp.example"
	code, text := send(t, g.smtpAddr, sender, []string{external}, simpleMessage(tag, "", b.String()))
	if code != 250 {
		t.Fatalf("file-name tricks: %d %s", code, text)
	}
	v := g.judge(tag, code, text, secret)
	if v.files != len(names) {
		t.Fatalf("%d files sealed, want %d", v.files, len(names))
	}
	g.drained()
	for _, m := range g.sink.Messages() {
		for _, r := range m.To {
			if strings.Contains(r, "evil") {
				t.Fatalf("a message went to %s", r)
			}
		}
	}
	for _, m := range v.external {
		// No injected header line anywhere: top-level or part headers.
		for _, line := range strings.Split(string(m.Data), "\r\n") {
			l := strings.ToLower(line)
			if strings.HasPrefix(l, "bcc:") || strings.HasPrefix(l, "x-injected:") {
				t.Fatalf("injected header line %q in the copy to %v", line, m.To)
			}
		}
		text := decodedText(t, m.Data)
		shown := 0
		for _, line := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
			// "ファイル名 / File name: NAME" in link notices, "  - NAME (size)" in key notices.
			name, ok := strings.CutPrefix(line, "ファイル名 / File name: ")
			if !ok {
				m := keyListRE.FindStringSubmatch(line)
				if m == nil {
					continue
				}
				name = m[1]
			}
			shown++
			if bidi.MatchString(name) || strings.ContainsAny(name, "\x00/\\\r") {
				t.Errorf("unsafe file name shown: %q", name)
			}
			if n := utf8.RuneCountInString(name); n > 160 {
				t.Errorf("file name of %d characters shown", n)
			}
		}
		if shown != len(names) {
			t.Errorf("%d file names shown in a notice to %v, want %d", shown, m.To, len(names))
		}
		// invoice.pdf.exe, the RTL-override name and cmd.exe: the notice
		// names the extension that decides how the file opens.
		if !bytes.Contains(m.Data, []byte("X-Sealgate-Notice: key")) && strings.Count(text, "Type: .exe") < 3 {
			t.Errorf("the real extension .exe is not shown for each .exe file:\n%s", text)
		}
	}
	// The portal's Content-Disposition for each file.
	token, pass := linkAndPass(t, v)
	for i := range names {
		resp := g.post(t, "/t/"+token+"/download", url.Values{"passphrase": {pass}, "file": {fmt.Sprint(i)}})
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(body, secret) {
			t.Fatalf("file %d: %s, %d bytes", i, resp.Status, len(body))
		}
		cd := resp.Header.Get("Content-Disposition")
		_, params, err := mime.ParseMediaType(cd)
		if err != nil {
			t.Fatalf("file %d: Content-Disposition %q does not parse: %v", i, cd, err)
		}
		fn := params["filename"]
		if fn == "" || strings.ContainsAny(fn, "/\\\x00\r\n") || bidi.MatchString(fn) || utf8.RuneCountInString(fn) > 160 {
			t.Errorf("file %d (%q): unsafe download name %q", i, names[i], fn)
		}
	}
	g.alive()
}
