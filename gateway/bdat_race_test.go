package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sealgate/sealgate/audit"
)

// TestBDATResetKeepsEnvelope: go-smtp calls Reset, and takes a new MAIL
// and RCPT, while an aborted BDAT transfer is still being processed; that
// transfer must keep its own envelope (it used to share the session's, so
// its refusal was recorded with the next transaction's sender).
func TestBDATResetKeepsEnvelope(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	addr := serve(t, g.NewRelayServer())
	const rounds = 20
	for i := 0; i < rounds; i++ {
		c := dialRaw(t, addr)
		c.cmd("EHLO client.test")
		c.cmd("MAIL FROM:<alice@corp.example>")
		c.cmd("RCPT TO:<bob@corp.example>")
		chunk := "Subject: aborted\r\n\r\nfirst chunk\r\n"
		c.conn.Write([]byte(fmt.Sprintf("BDAT %d\r\n%s", len(chunk), chunk)))
		c.reply()
		c.cmd("RSET")
		c.cmd("MAIL FROM:<mallory@corp.example>")
		c.cmd("RCPT TO:<eve@evil.example>")
		// No second BDAT here: go-smtp v0.25.1 races on its own result
		// channel when a new BDAT transfer starts while an aborted one is
		// still running (it may answer the new transfer with the old
		// one's result); that is go-smtp's to fix.
		c.cmd("QUIT")
	}
	// Every aborted transfer records its refusal (after the session has
	// moved on): wait for all of them, then check whose they are.
	var froms []string
	deadline := time.Now().Add(20 * time.Second)
	for len(froms) < rounds && time.Now().Before(deadline) {
		froms = froms[:0]
		g.Ledger.Records(context.Background(), g.DB.Read(), 0, 1<<40, func(_ int64, data []byte) error {
			if ev, _ := audit.ParseRecord(data); ev.Type == audit.TypeMessageRefused {
				froms = append(froms, ev.Details["from"])
			}
			return nil
		})
		time.Sleep(20 * time.Millisecond)
	}
	if len(froms) != rounds {
		t.Fatalf("%d aborted transfers recorded, want %d", len(froms), rounds)
	}
	for _, f := range froms {
		if f != "alice@corp.example" {
			t.Errorf("an aborted transfer's refusal is recorded from %q, want alice@corp.example", f)
		}
	}
}
