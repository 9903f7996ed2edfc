package e2e

import (
	"strings"
	"testing"
)

// TestRoutingCannotLowerProtection: over SMTP, against the real binary, a
// sender cannot send a counterparty of a contract that needs approval
// under DEFAULT (by tag or header, in any case); untagged, the message is
// held for approval. With the default contract switched off, mail to a
// recipient no contract covers is refused.
func TestRoutingCannotLowerProtection(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	cliOK(t, g, "contract", "add", "C-APPR", "--domains", "client.example", "--manager", "boss@corp.example", "--approval")
	msg := func(subject, extra string) []byte {
		return append([]byte(extra), buildMessage(map[string]string{"From": sender, "To": extA, "Subject": subject}, "body",
			attachment{name: "q.pdf", contentType: "application/pdf", data: randomBytes(5000)})...)
	}
	for _, m := range [][]byte{msg("[DEFAULT] quote", ""), msg("[default] quote", ""), msg("quote", "X-Sealgate-Contract: DEFAULT\r\n")} {
		te := refusal(t, send(t, g.smtpAddr, sender, []string{extA, internal}, m))
		if te.Code != 550 || !strings.Contains(te.Msg, extA) || !strings.Contains(te.Msg, "C-APPR") {
			t.Fatalf("DEFAULT to a counterparty of C-APPR: %d %s", te.Code, te.Msg)
		}
	}
	if err := send(t, g.smtpAddr, sender, []string{extA}, msg("quote", "")); err != nil {
		t.Fatal(err)
	}
	db := g.db()
	var code, status, approval string
	if err := db.QueryRow(`SELECT c.code, h.status, h.approval FROM holds h JOIN contracts c ON c.id = h.contract_id`).Scan(&code, &status, &approval); err != nil {
		t.Fatal(err)
	}
	var waiting int
	db.QueryRow(`SELECT COUNT(*) FROM outbound WHERE kind = 'sealed' AND status = 'held'`).Scan(&waiting)
	if code != "C-APPR" || status != "held" || approval != "pending" || waiting != 1 {
		t.Fatalf("untagged mail to the counterparty: hold %s %s %s, %d copies held", code, status, approval, waiting)
	}

	off := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: []string{"SEALGATE_DEFAULT_CONTRACT=off"}})
	te := refusal(t, send(t, off.smtpAddr, sender, []string{extB}, msg("quote", "")))
	if te.Code != 550 || !strings.Contains(te.Msg, extB) {
		t.Fatalf("no default contract: %d %s", te.Code, te.Msg)
	}
	if err := send(t, off.smtpAddr, sender, []string{internal}, msg("internal", "")); err != nil {
		t.Fatalf("internal mail without a default contract: %v", err)
	}
}
