package gateway

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// TestBodyCommandLogged: the log line of an accepted message says whether
// the client sent it with DATA or with BDAT, on the relay and the inbound
// listener, and carries the id the client was given with its 250.
func TestBodyCommandLogged(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	var logs lockedBuffer
	g.Log = slog.New(slog.NewTextHandler(&logs, nil))
	msg := "From: alice@corp.example\r\nTo: bob@corp.example\r\nSubject: hello\r\n\r\nhello\r\n"
	for _, listener := range []struct {
		name, line string
		srv        *smtp.Server
	}{
		{"relay", "message accepted", g.NewRelayServer()},
		{"inbound", "inbound message accepted", g.NewInboundServer()},
	} {
		addr := serve(t, listener.srv)
		for _, command := range []string{"DATA", "BDAT"} {
			c := dialRaw(t, addr)
			c.cmd("EHLO client.test")
			if code, text := c.cmd("MAIL FROM:<alice@corp.example>"); code != 250 {
				t.Fatalf("%s MAIL: %d %s", listener.name, code, text)
			}
			if code, text := c.cmd("RCPT TO:<bob@corp.example>"); code != 250 {
				t.Fatalf("%s RCPT: %d %s", listener.name, code, text)
			}
			var code int
			var text string
			if command == "DATA" {
				code, text = c.data([]byte(msg))
			} else {
				half := len(msg) / 2
				c.conn.Write([]byte(fmt.Sprintf("BDAT %d\r\n%s", half, msg[:half])))
				if code, text := c.reply(); code != 250 {
					t.Fatalf("%s first chunk: %d %s", listener.name, code, text)
				}
				c.conn.Write([]byte(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-half, msg[half:])))
				code, text = c.reply()
			}
			_, id, ok := strings.Cut(text, "queued as ")
			if code != 250 || !ok {
				t.Fatalf("%s %s: %d %s", listener.name, command, code, text)
			}
			want := fmt.Sprintf("msg=%q id=%s client=%s from=alice@corp.example rcpts=1 size=%d smtp=%s", listener.line, id, c.conn.LocalAddr(), len(msg), command)
			if got := logs.take(); !strings.Contains(got, want) {
				t.Errorf("%s %s: no log line %q in\n%s", listener.name, command, want, got)
			}
			c.cmd("QUIT")
		}
	}
}
