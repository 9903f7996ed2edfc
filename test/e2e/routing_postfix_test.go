package e2e

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testpostfix"
	"github.com/sealgate/sealgate/internal/testsink"
)

// startNextHop starts a private Postfix as sealgate's smarthost, set up as
// a company MTA would be: corp.example is a local domain, the percent hack
// and bang paths are on (Postfix's defaults, written out), corp.example is
// delivered to corp, evil.example to evil, anything else to elsewhere.
func startNextHop(t *testing.T, corp, evil, elsewhere *testsink.Sink) *testpostfix.Instance {
	t.Helper()
	dir, err := os.MkdirTemp("", "sealgate-postfix")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pf, err := testpostfix.Start(ctxT(t), testpostfix.Options{
		Dir: dir, Hostname: "mx.corp.example", MyDestination: []string{"corp.example"},
		Transport: map[string]string{"corp.example": corp.Addr(), "evil.example": evil.Addr()},
		Relayhost: elsewhere.Addr(),
		Main:      "allow_percent_hack = yes\nswap_bangpath = yes\nresolve_dequoted_address = yes\n",
	})
	if (errors.Is(err, testpostfix.ErrNotInstalled) || errors.Is(err, testpostfix.ErrNotRoot)) && os.Getenv("SEALGATE_REQUIRE_TOOLS") != "1" {
		t.Skip(err)
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
	return pf
}

// TestRoutingTricksThroughPostfix: addresses that end in @corp.example but
// route to evil.example at the next hop are refused at RCPT, and nothing —
// least of all the original attachment — reaches evil.example through a
// real Postfix that honours the percent hack, bang paths and dequoted
// local parts.
func TestRoutingTricksThroughPostfix(t *testing.T) {
	corp, evil, elsewhere := startSink(t), startSink(t), startSink(t)
	pf := startNextHop(t, corp, evil, elsewhere)
	g := startGateway(t, gwOptions{smarthost: pf.Addr, extraEnv: []string{"SEALGATE_SMARTHOST_TLS=none"}})

	tricks := []string{
		"<eve%evil.example@corp.example>",
		"<evil.example!eve@corp.example>",
		`<"eve@evil.example"@corp.example>`,
	}
	secret := []byte("the drawing, confidential: " + strings.Repeat("0123456789", 50))
	for i, trick := range tricks {
		c := dialRaw(t, g.smtpAddr)
		c.cmd("EHLO client.test")
		if code, text := c.cmd("MAIL FROM:<alice@corp.example>"); code != 250 {
			t.Fatalf("MAIL: %d %s", code, text)
		}
		if code, text := c.cmd("RCPT TO:" + trick); code != 550 || !strings.Contains(text, "5.1.3") {
			t.Errorf("RCPT TO:%s: %d %q; want 550 5.1.3", trick, code, text)
		}
		// bob@corp.example is in the same transaction: once his copy has
		// arrived, Postfix has had every recipient of it.
		if code, text := c.cmd("RCPT TO:<bob@corp.example>"); code != 250 {
			t.Fatalf("RCPT bob: %d %s", code, text)
		}
		msg := buildMessage(map[string]string{"From": "alice@corp.example", "To": "bob@corp.example",
			"Subject": fmt.Sprintf("trick %d", i), "Message-ID": fmt.Sprintf("<trick-%d@corp.example>", i)},
			"see attachment", attachment{name: "drawing.pdf", contentType: "application/pdf", data: secret})
		if code, text := c.cmd("DATA"); code != 354 {
			t.Fatalf("DATA: %d %s", code, text)
		}
		c.conn.Write(append(msg, []byte(".\r\n")...))
		if code, text := c.reply(); code != 250 {
			t.Fatalf("end of data: %d %s", code, text)
		}
		c.cmd("QUIT")
	}

	// Everything sealgate accepted has been handed to Postfix, and Postfix
	// has delivered (or bounced) all of it: only then is the evil.example
	// sink's content final.
	if _, err := corp.Wait(2*time.Minute, func(m []testsink.Message) bool { return countTo(m, "bob@corp.example") >= len(tricks) }); err != nil {
		t.Fatalf("bob's copies did not arrive: %v", err)
	}
	db := g.db()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var pending int
		if err := db.QueryRow(`SELECT COUNT(*) FROM outbound WHERE status IN ('queued', 'waiting', 'held')`).Scan(&pending); err != nil {
			t.Fatal(err)
		}
		empty, err := pf.QueueEmpty(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if pending == 0 && empty {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still pending after 2 minutes: %d rows at sealgate, postfix queue empty: %v", pending, empty)
		}
		time.Sleep(100 * time.Millisecond)
	}

	b64 := []byte(base64.StdEncoding.EncodeToString(secret)[:60])
	for _, m := range evil.Messages() {
		clear := bytes.Contains(m.Data, secret) || bytes.Contains(bytes.ReplaceAll(m.Data, []byte("\r\n"), nil), b64)
		t.Errorf("the evil.example sink received a message for %v (attachment in clear: %v)", m.To, clear)
	}
	for _, m := range elsewhere.Messages() {
		t.Errorf("a message left for %v", m.To)
	}
	for _, m := range corp.Messages() {
		for _, r := range m.To {
			if r != "bob@corp.example" {
				t.Errorf("corp.example sink received a message for %s", r)
			}
		}
	}
}

func countTo(msgs []testsink.Message, rcpt string) int {
	n := 0
	for _, m := range msgs {
		for _, r := range m.To {
			if r == rcpt {
				n++
			}
		}
	}
	return n
}
