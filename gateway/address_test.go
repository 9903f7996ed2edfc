package gateway

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/notice"
)

// rawClient speaks SMTP line by line over a real socket, so that tests
// send exactly the bytes an attacker would.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	t.Cleanup(func() { c.Close() })
	rc := &rawClient{t: t, conn: c, r: bufio.NewReader(c)}
	if code, text := rc.reply(); code != 220 {
		t.Fatalf("greeting %d %s", code, text)
	}
	return rc
}

func (c *rawClient) reply() (int, string) {
	c.t.Helper()
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply: %v (so far %q)", err, lines)
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			code := 0
			for _, d := range line[:min(3, len(line))] {
				code = code*10 + int(d-'0')
			}
			return code, strings.Join(lines, "\n")
		}
	}
}

func (c *rawClient) cmd(line string) (int, string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
	return c.reply()
}

// data sends DATA, the message (dot-stuffed) and the final dot.
func (c *rawClient) data(msg []byte) (int, string) {
	c.t.Helper()
	if code, text := c.cmd("DATA"); code != 354 {
		return code, text
	}
	var b bytes.Buffer
	for _, l := range strings.SplitAfter(string(msg), "\r\n") {
		if strings.HasPrefix(l, ".") {
			b.WriteByte('.')
		}
		b.WriteString(l)
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	if _, err := c.conn.Write(b.Bytes()); err != nil {
		c.t.Fatal(err)
	}
	return c.reply()
}

// serve runs srv on a loopback port until the test ends.
func serve(t testing.TB, srv *smtp.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func isBilingual(s string) bool {
	for _, r := range s {
		if r >= 0x3040 && r <= 0x9fff {
			return true
		}
	}
	return false
}

// routingTricks are recipients that name corp.example last but route
// elsewhere at an MTA that honours the syntax (Postfix: the percent hack,
// bang paths, and a local part with an @ once corp.example is stripped),
// and domains that are not host names. Each must be refused at RCPT.
var routingTricks = []string{
	"<eve%evil.example@corp.example>",
	"<eve!evil.example@corp.example>",
	"<evil.example!eve@corp.example>",
	`<"eve@evil.example"@corp.example>`,
	`<"eve%evil.example"@corp.example>`,
	"<eve@evil.example@corp.example>",
	"<eve@[192.0.2.1]>",
	"<eve@192.0.2.1>",
	"<eve@corp..example>",
	"<eve@corp.example＠evil.example>",
	"<eve@xn--abc.corp.example>",
}

// TestRoutingSyntaxRefusedAtRcpt: on the relay and the inbound listener,
// every routing trick gets 550 5.1.3 with a bilingual text, at RCPT, and
// an accepted message never reaches an address with routing syntax.
func TestRoutingSyntaxRefusedAtRcpt(t *testing.T) {
	g := newTestGateway(t, nil, func(c *config.Config) { c.SMTP.InboundAddr = "127.0.0.1:0" })
	for name, srv := range map[string]*smtp.Server{"relay": g.NewRelayServer(), "inbound": g.NewInboundServer()} {
		addr := serve(t, srv)
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, addr)
			c.cmd("EHLO client.test")
			if code, text := c.cmd("MAIL FROM:<alice@corp.example>"); code != 250 {
				t.Fatalf("MAIL: %d %s", code, text)
			}
			for _, rcpt := range routingTricks {
				code, text := c.cmd("RCPT TO:" + rcpt)
				if code != 550 || !strings.Contains(text, "5.1.3") || !isBilingual(text) {
					t.Errorf("RCPT TO:%s: %d %q; want 550 5.1.3, bilingual", rcpt, code, text)
				}
			}
			if code, text := c.cmd("RCPT TO:<bob@corp.example>"); code != 250 {
				t.Fatalf("RCPT bob: %d %s", code, text)
			}
			if code, text := c.data(routeMessage("tricks", "bob@corp.example", "", []byte("the original, in clear"))); code != 250 {
				t.Fatalf("DATA: %d %s", code, text)
			}
			c.cmd("QUIT")
		})
	}
	g.deliverAll(t)
	for _, m := range g.tr.sent {
		for _, r := range m.rcpts {
			if strings.ContainsAny(r, "%!\"[") || strings.Count(r, "@") != 1 || !strings.HasSuffix(r, "@corp.example") {
				t.Errorf("delivered to %q", r)
			}
		}
	}
}

// TestRoutingSyntaxRefusedInMailFrom: the envelope sender is where
// receipts, decisions and (key delivery "manual") passphrases go; routing
// syntax there would send them outside.
func TestRoutingSyntaxRefusedInMailFrom(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	addr := serve(t, g.NewRelayServer())
	c := dialRaw(t, addr)
	c.cmd("EHLO client.test")
	for _, from := range []string{"<alice%evil.example@corp.example>", "<alice!evil.example@corp.example>",
		`<"alice@evil.example"@corp.example>`, "<alice@[192.0.2.1]>"} {
		code, text := c.cmd("MAIL FROM:" + from)
		if code != 550 || !strings.Contains(text, "5.1.7") || !isBilingual(text) {
			t.Errorf("MAIL FROM:%s: %d %q; want 550 5.1.7, bilingual", from, code, text)
		}
		c.cmd("RSET")
	}
	if g.policy.MayNotify(context.Background(), g.DB.Read(), "alice%evil.example@corp.example") {
		t.Error("MayNotify accepts an address that routes to evil.example")
	}
}

// TestClassifyCanonical: recipients are classified, compared and
// delivered in canonical form only.
func TestClassifyCanonical(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	addr := serve(t, g.NewRelayServer())
	send := func(rcpts ...string) {
		t.Helper()
		c := dialRaw(t, addr)
		c.cmd("EHLO client.test")
		c.cmd("MAIL FROM:<ALICE@Corp.Example.>")
		for _, r := range rcpts {
			if code, text := c.cmd("RCPT TO:<" + r + ">"); code != 250 {
				t.Fatalf("RCPT %s: %d %s", r, code, text)
			}
		}
		if code, text := c.data(routeMessage("canonical", "x", "", []byte("confidential drawing"))); code != 250 {
			t.Fatalf("DATA: %d %s", code, text)
		}
		c.cmd("QUIT")
	}
	send("bob@CORP.EXAMPLE.", "Bob@corp.example", "bob@corp。example") // one internal recipient
	send("carol@ｃｏｒｐ．ｅｘａｍｐｌｅ")                                        // full-width: corp.example, internal
	send("mallory@corp.example.evil.example")                         // external
	send("mallory@corp.exаmple")                                      // Cyrillic а: external
	send("@corp.example:eve@evil.example")                            // source route: go-smtp keeps the mailbox, external
	g.deliverAll(t)

	plain := map[string]int{}
	sealed := map[string]bool{}
	for _, m := range g.tr.sent {
		for _, r := range m.rcpts {
			if bytes.Contains(m.data, []byte(stdBase64([]byte("confidential drawing")))) {
				plain[r]++
			} else {
				sealed[r] = true
			}
		}
	}
	bobs := 0
	for r, n := range plain {
		if strings.HasPrefix(strings.ToLower(r), "bob@") {
			bobs += n
		}
	}
	if bobs != 1 {
		t.Errorf("bob in three spellings: plain copies %v; want one, to bob@corp.example", plain)
	}
	if plain["bob@corp.example"] != 1 || plain["carol@corp.example"] != 1 {
		t.Errorf("internal copies %v; want bob@corp.example and carol@corp.example", plain)
	}
	for _, r := range []string{"mallory@corp.example.evil.example", "mallory@corp.xn--exmple-4nf", "eve@evil.example"} {
		if !sealed[r] || plain[r] > 0 {
			t.Errorf("%s: sealed %v, plain copies %d", r, sealed[r], plain[r])
		}
	}
	for r := range plain {
		if r != "bob@corp.example" && r != "carol@corp.example" {
			t.Errorf("original delivered to %q", r)
		}
	}
	var from string
	if err := g.DB.Read().QueryRow(`SELECT mail_from FROM messages LIMIT 1`).Scan(&from); err != nil || from != "ALICE@corp.example" {
		t.Errorf("sender recorded as %q (%v); want the canonical ALICE@corp.example", from, err)
	}
}

// TestConfigIsInternalCanonical covers config.IsInternal through the
// gateway's view of it.
func TestConfigIsInternalCanonical(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	for a, want := range map[string]bool{
		"bob@corp.example":               true,
		"bob@CORP.EXAMPLE.":              true,
		"bob@mail.corp.example":          true,
		"bob@corp。example":               true,
		"eve%evil.example@corp.example":  false,
		"eve!evil.example@corp.example":  false,
		"eve@evil.example@corp.example":  false,
		"bob@corp.example.evil.example":  false,
		"bob@corp.exаmple":               false,
		"bob@xcorp.example":              false,
		"bob@[127.0.0.1]":                false,
		"corp.example":                   false,
		"":                               false,
		"bob@corp.example\r\nRCPT TO:<x": false,
	} {
		if got := g.Config.IsInternal(a); got != want {
			t.Errorf("IsInternal(%q) = %v, want %v", a, got, want)
		}
	}
}

// TestEnvelopeExtensions: the envelope carries no second address and
// gives nothing away — SMTPUTF8 is not offered (a non-ASCII local part
// gets 553 5.6.7), DSN parameters (ORCPT, NOTIFY) are refused, VRFY and
// EXPN confirm nothing.
func TestEnvelopeExtensions(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	addr := serve(t, g.NewRelayServer())
	c := dialRaw(t, addr)
	if code, text := c.cmd("EHLO client.test"); code != 250 || strings.Contains(text, "SMTPUTF8") || strings.Contains(text, "DSN") {
		t.Fatalf("EHLO: %d %s", code, text)
	}
	if code, _ := c.cmd("VRFY bob@corp.example"); code != 252 {
		t.Errorf("VRFY: %d", code)
	}
	if code, _ := c.cmd("EXPN staff"); code != 502 {
		t.Errorf("EXPN: %d", code)
	}
	if code, text := c.cmd("MAIL FROM:<alice@corp.example> SMTPUTF8"); code == 250 {
		t.Errorf("MAIL with SMTPUTF8: %d %s", code, text)
	}
	if code, text := c.cmd("MAIL FROM:<alice@corp.example>"); code != 250 {
		t.Fatalf("MAIL: %d %s", code, text)
	}
	for rcpt, want := range map[string]int{
		"RCPT TO:<ü@client.example>":                                    553,
		"RCPT TO:<Ｂｏｂ@corp.example>":                                    553,
		"RCPT TO:<bob@corp.example> ORCPT=rfc822;eve@evil.example":      504,
		"RCPT TO:<bob@corp.example> NOTIFY=SUCCESS,FAILURE":             504,
		"RCPT TO:<bob@corp.example> ORCPT=rfc822;eve%evil@corp.example": 504,
	} {
		if code, text := c.cmd(rcpt); code != want {
			t.Errorf("%s: %d %s; want %d", rcpt, code, text, want)
		}
	}
}

// TestNoticeRecipientsCanonical: system notices (lock alerts to the
// administrators, approval requests, receipts) go to canonical addresses
// only; an entry with routing syntax is left out, the others still get it.
func TestNoticeRecipientsCanonical(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	ctx := context.Background()
	err := g.DB.Write(ctx, func(tx *database.Tx) error {
		return g.QueueNotice(ctx, tx, notice.Mail{To: []string{"admin%evil.example@corp.example", "Admin2@CORP.EXAMPLE."},
			Notice: notice.AccountLocked{Name: "alice", Email: "alice@corp.example", Until: g.Now(), LastIP: "192.0.2.1"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	var rcpts string
	if err := g.DB.Read().QueryRow(`SELECT rcpts FROM outbound WHERE kind = 'notice'`).Scan(&rcpts); err != nil {
		t.Fatal(err)
	}
	if rcpts != `["Admin2@corp.example"]` {
		t.Fatalf("notice recipients %s", rcpts)
	}
}

// TestQueuedRoutingRecipientNotDelivered: a queued row from before
// canonical addresses (an older version accepted eve%evil.example@corp.example
// as internal) never reaches the next hop; the sender gets a bounce.
func TestQueuedRoutingRecipientNotDelivered(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	id, err := g.send(t, []string{"bob@corp.example"}, routeMessage("internal", "bob@corp.example", "", []byte("the original")))
	if err != nil {
		t.Fatal(err)
	}
	if err := execWrite(g, `UPDATE outbound SET rcpts = '["eve%evil.example@corp.example","bob@corp.example"]' WHERE message_id = '`+id+`' AND kind = 'plain'`); err != nil {
		t.Fatal(err)
	}
	g.deliverAll(t)
	var toBob, bounces int
	for _, m := range g.tr.sent {
		for _, r := range m.rcpts {
			switch {
			case strings.Contains(r, "evil"):
				t.Fatalf("delivered to %s", r)
			case r == "bob@corp.example":
				toBob++
			case r == "alice@corp.example":
				bounces++
			}
		}
	}
	var failed string
	g.DB.Read().QueryRow(`SELECT rcpts FROM outbound WHERE message_id = ? AND status = 'failed'`, id).Scan(&failed)
	if toBob != 1 || bounces != 1 || failed != `["eve%evil.example@corp.example"]` {
		t.Fatalf("bob %d, bounces to the sender %d, failed %s", toBob, bounces, failed)
	}
}
