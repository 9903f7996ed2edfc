package gateway

import (
	"strings"
	"testing"

	"github.com/sealgate/sealgate/config"
)

// TestMaxTextBytesConfigured: limits.max_text_bytes reaches the walker —
// a text body longer than it is sealed whole ("large-text"); a shorter one
// goes out unchanged.
func TestMaxTextBytesConfigured(t *testing.T) {
	g := newTestGateway(t, nil, func(c *config.Config) { c.Limits.MaxTextBytes = 4 << 10 })
	for _, tc := range []struct {
		size   int
		sealed bool
	}{{2 << 10, false}, {8 << 10, true}} {
		body := strings.Repeat("confidential text line\r\n", tc.size/24)
		raw := []byte("From: alice@corp.example\r\nTo: carol@client.example\r\nSubject: text\r\n\r\n" + body)
		id, err := g.send(t, []string{"carol@client.example"}, raw)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		var reason string
		g.DB.Read().QueryRow(`SELECT COUNT(*) FROM files f JOIN transfers t ON t.id = f.transfer_id WHERE t.message_id = ?`, id).Scan(&n)
		rows, err := g.DB.Read().Query(`SELECT data FROM ledger_records WHERE type = 'file.sealed'`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var d string
			rows.Scan(&d)
			if strings.Contains(d, id) {
				reason = d
			}
		}
		rows.Close()
		if got := n == 1; got != tc.sealed {
			t.Fatalf("a %d-byte text body: sealed %v, want %v", tc.size, got, tc.sealed)
		}
		if tc.sealed && !strings.Contains(reason, `"reason":"large-text"`) {
			t.Fatalf("sealed for another reason: %s", reason)
		}
	}
}
