package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/contract"
	"github.com/sealgate/sealgate/database"
)

func routeMessage(subject, to, extra string, attachment []byte) []byte {
	var b strings.Builder
	b.WriteString("From: alice@corp.example\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n" + extra +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n")
	if attachment != nil {
		b.WriteString("--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"q.bin\"\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n" + stdBase64(attachment) + "\r\n")
	}
	b.WriteString("--b--\r\n")
	return []byte(b.String())
}

func stdBase64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func addContract(t *testing.T, g *testGW, s contract.Spec) *contract.Contract {
	t.Helper()
	if s.DownloadLimit == 0 {
		s.DownloadLimit = contract.DefaultLimit
	}
	c, err := contract.Create(context.Background(), g.DB, g.Keys, g.Ledger, s, "cli:test", g.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (g *testGW) send(t *testing.T, rcpts []string, raw []byte) (string, error) {
	t.Helper()
	env := &envelope{client: "127.0.0.1:1", from: "alice@corp.example", rcpts: rcpts}
	return g.accept(context.Background(), env, bytes.NewReader(raw))
}

func (g *testGW) contractOf(t *testing.T, msg string) string {
	t.Helper()
	var code string
	if err := g.DB.Read().QueryRow(`SELECT c.code FROM messages m JOIN contracts c ON c.id = m.contract_id WHERE m.id = ?`, msg).Scan(&code); err != nil {
		t.Fatal(err)
	}
	return code
}

func (g *testGW) deliverAll(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.runJobs(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var pending int
		g.DB.Read().QueryRow(`SELECT COUNT(*) FROM outbound WHERE status IN ('queued', 'waiting')`).Scan(&pending)
		if pending == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
}

func TestRouteByTag(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	c := addContract(t, g, contract.Spec{Code: "C-2026-001", Domains: []string{"client.example"}, StripTag: true, LinkExpiry: 3 * 24 * time.Hour})
	raw := routeMessage("=?UTF-8?B?"+b64("【C-2026-001】見積書の送付")+"?=", "x@client.example", "X-Sealgate-Contract: OTHER\r\n", []byte("secret quote"))
	id, err := g.send(t, []string{"x@client.example", "bob@corp.example"}, raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := g.contractOf(t, id); got != c.Code {
		t.Fatalf("routed to %s", got)
	}
	var created, expires int64
	g.DB.Read().QueryRow(`SELECT created_at, expires_at FROM transfers WHERE message_id = ?`, id).Scan(&created, &expires)
	if time.Duration(expires-created)*time.Millisecond != 3*24*time.Hour {
		t.Fatalf("link expiry %v, want the contract's 3 days", time.Duration(expires-created)*time.Millisecond)
	}
	g.deliverAll(t)
	var sawCopy, sawPlain bool
	for _, m := range g.tr.sent {
		switch m.rcpts[0] {
		case "x@client.example":
			if bytes.Contains(m.data, []byte("X-Sealgate-Notice: key")) {
				continue
			}
			sawCopy = true
			hdr := string(m.data[:bytes.Index(m.data, []byte("\r\n\r\n"))])
			if strings.Contains(hdr, "X-Sealgate-Contract") {
				t.Error("X-Sealgate-Contract forwarded to an external recipient")
			}
			subj := decodeHeader(headerLine(hdr, "Subject"))
			if strings.Contains(subj, "C-2026-001") || !strings.Contains(subj, "見積書の送付") {
				t.Errorf("external subject %q: tag not stripped", subj)
			}
		case "bob@corp.example":
			sawPlain = true
			if !bytes.Equal(m.data, raw) {
				t.Error("the internal copy was changed")
			}
		}
	}
	if !sawCopy || !sawPlain {
		t.Fatalf("deliveries: %d", len(g.tr.sent))
	}
}

func headerLine(hdr, name string) string {
	for _, l := range strings.Split(hdr, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func b64(s string) string { return stdBase64([]byte(s)) }

// TestRouteRefuses: a recipient outside the contract, an ended contract or
// an unknown contract code refuse the whole message with 550 and a reason;
// nothing is stored, queued or spooled.
func TestRouteRefuses(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	now := g.Now()
	addContract(t, g, contract.Spec{Code: "C-2026-001", Domains: []string{"client.example"}})
	addContract(t, g, contract.Spec{Code: "OLD", Domains: []string{"client.example"}, StartsAt: now.Add(-60 * 24 * time.Hour), EndsAt: now.Add(-24 * time.Hour)})
	addContract(t, g, contract.Spec{Code: "ENDING", Domains: []string{"client.example"}})
	if err := execWrite(g, `UPDATE contracts SET status = 'ending' WHERE code = 'ENDING'`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, subject, extra string
		rcpts                []string
		want                 []string
	}{
		{"outsider", "[C-2026-001] quote", "", []string{"x@client.example", "eve@evil.example"}, []string{"eve@evil.example", "C-2026-001", "許可"}},
		{"past end date", "[OLD] quote", "", []string{"x@client.example"}, []string{"OLD", "end date", "終了日"}},
		{"ending", "quote", "X-Sealgate-Contract: ENDING\r\n", []string{"x@client.example"}, []string{"ENDING", "has ended", "終了"}},
		{"unknown header", "quote", "X-Sealgate-Contract: NOPE\r\n", []string{"x@client.example"}, []string{"NOPE", "not registered"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.send(t, tc.rcpts, routeMessage(tc.subject, strings.Join(tc.rcpts, ", "), tc.extra, []byte("confidential")))
			if err == nil {
				t.Fatal("accepted")
			}
			r := smtpReply(err)
			if r.Code != 550 {
				t.Fatalf("reply %d %s", r.Code, r.Message)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Message, w) {
					t.Errorf("reply %q lacks %q", r.Message, w)
				}
			}
		})
	}
	var msgs, out, files int
	g.DB.Read().QueryRow(`SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM outbound), (SELECT COUNT(*) FROM files)`).Scan(&msgs, &out, &files)
	if msgs+out+files != 0 {
		t.Fatalf("refused mail left %d messages, %d queued, %d files", msgs, out, files)
	}
	if n := len(mustGlob(t, filepath.Join(g.dir, "objects", "objects", "*", "*"))); n != 0 {
		t.Fatalf("%d objects stored for refused mail", n)
	}
	if n := len(mustGlob(t, filepath.Join(g.dir, "spool", "*.age"))); n != 0 {
		t.Fatalf("%d spool files left", n)
	}
}

func TestRouteByRecipientsAndDefault(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	addContract(t, g, contract.Spec{Code: "C-A", Domains: []string{"client.example"}})
	addContract(t, g, contract.Spec{Code: "C-B", Domains: []string{"partner.example"}, Addresses: []string{"solo@freelance.example"}})
	for _, tc := range []struct {
		rcpts []string
		want  string
	}{
		{[]string{"x@client.example"}, "C-A"},
		{[]string{"y@partner.example", "solo@freelance.example"}, "C-B"},
		{[]string{"z@elsewhere.example"}, "DEFAULT"},
		{[]string{"bob@corp.example"}, "DEFAULT"},
	} {
		id, err := g.send(t, tc.rcpts, routeMessage("no tag", tc.rcpts[0], "", []byte("data")))
		if err != nil {
			t.Fatalf("%v: %v", tc.rcpts, err)
		}
		if got := g.contractOf(t, id); got != tc.want {
			t.Errorf("%v routed to %s, want %s", tc.rcpts, got, tc.want)
		}
	}
	// Counterparties of two contracts never fall back to the default.
	if _, err := g.send(t, []string{"x@client.example", "y@partner.example"}, routeMessage("no tag", "x@client.example", "", []byte("data"))); err == nil || smtpReply(err).Code != 550 {
		t.Fatalf("two contracts' counterparties: %v", err)
	}
	// A default that allows nobody: untagged mail that matches no contract
	// is refused.
	no := false
	if _, err := contract.Update(context.Background(), g.DB, g.Ledger, "DEFAULT", contract.Changes{AnyRecipient: &no}, "cli:test", g.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := g.send(t, []string{"z@elsewhere.example"}, routeMessage("no tag", "z@elsewhere.example", "", nil)); err == nil || smtpReply(err).Code != 550 {
		t.Fatalf("strict default: %v", err)
	}
	if _, err := g.send(t, []string{"bob@corp.example"}, routeMessage("internal", "bob@corp.example", "", nil)); err != nil {
		t.Fatalf("internal mail refused under a strict default: %v", err)
	}
}

func execWrite(g *testGW, q string) error {
	return g.DB.Write(context.Background(), func(tx *database.Tx) error {
		_, err := tx.ExecContext(context.Background(), q)
		return err
	})
}

func TestInboundReceipt(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	addContract(t, g, contract.Spec{Code: "C-2026-001", Domains: []string{"client.example"}})
	att := []byte("%PDF-1.7 the counterparty's drawings")
	raw := routeMessage("=?UTF-8?B?"+b64("図面の送付")+"?=", "bob@corp.example", "", att)
	env := &envelope{client: "192.0.2.10:4000", from: "carol@client.example", rcpts: []string{"bob@corp.example"}}
	id, err := g.acceptInbound(context.Background(), env, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if got := g.contractOf(t, id); got != "C-2026-001" {
		t.Fatalf("recorded under %s", got)
	}
	var evs []audit.Event
	g.Ledger.Records(context.Background(), g.DB.Read(), 0, 1<<40, func(_ int64, data []byte) error {
		ev, _ := audit.ParseRecord(data)
		if ev.Message == id {
			evs = append(evs, ev)
		}
		return nil
	})
	sum := sha256.Sum256(att)
	if len(evs) != 2 || evs[0].Type != audit.TypeMessageReceived || evs[0].Details["direction"] != "inbound" ||
		evs[0].Details["subject"] != "図面の送付" || evs[0].Details["to"] != "bob@corp.example" ||
		evs[1].Type != audit.TypeFileReceived || evs[1].File != "q.bin" || evs[1].SHA256 != hex.EncodeToString(sum[:]) ||
		evs[1].Size != int64(len(att)) || evs[1].Contract != "C-2026-001" {
		t.Fatalf("receipt record: %+v", evs)
	}
	g.deliverAll(t)
	if len(g.tr.sent) != 1 || !bytes.Equal(g.tr.sent[0].data, raw) || g.tr.sent[0].rcpts[0] != "bob@corp.example" {
		t.Fatalf("inbound mail was not passed through unchanged: %d deliveries", len(g.tr.sent))
	}
	// No relaying through the inbound listener.
	s := &inboundSession{session: &session{g: g.Gateway}}
	if err := s.Rcpt("x@elsewhere.example", nil); err == nil {
		t.Fatal("the inbound listener relays to outside recipients")
	}
	// Unknown senders are passed through without a contract; an
	// unparseable message is passed through too.
	env2 := &envelope{client: "192.0.2.11:4000", from: "spam@unknown.example", rcpts: []string{"bob@corp.example"}}
	broken := []byte("Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"q\"\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\nno end")
	id2, err := g.acceptInbound(context.Background(), env2, bytes.NewReader(broken))
	if err != nil {
		t.Fatal(err)
	}
	var cid *int64
	g.DB.Read().QueryRow(`SELECT contract_id FROM messages WHERE id = ?`, id2).Scan(&cid)
	if cid != nil {
		t.Fatal("an unknown sender's mail was recorded under a contract")
	}
}

// Key delivery modes: "public-key" refuses a sealed message to a recipient
// without a registered key (and takes one with); "manual" mails the
// passphrase to the sender to hand over, never to the recipient, and
// refuses a sender the gateway may not mail.
func TestKeyDeliveryModes(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	addContract(t, g, contract.Spec{Code: "C-PK", Domains: []string{"client.example"}, KeyDelivery: contract.KeyPublicKey})
	addContract(t, g, contract.Spec{Code: "C-MAN", Domains: []string{"other.example"}, KeyDelivery: contract.KeyManual})
	secret := bytes.Repeat([]byte("confidential "), 100)

	_, err := g.send(t, []string{"carol@client.example"}, routeMessage("[C-PK] q", "carol@client.example", "", secret))
	if r := smtpReply(err); r.Code != 550 || !strings.Contains(r.Message, "carol@client.example") || !strings.Contains(r.Message, "/keys") {
		t.Fatalf("public-key contract, no key: %v", err)
	}
	if _, err := g.send(t, []string{"carol@client.example"}, routeMessage("[C-PK] no attachment", "carol@client.example", "", nil)); err != nil {
		t.Fatalf("public-key contract, nothing to seal: %v", err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	now := g.Now().UnixMilli()
	if err := g.DB.Write(context.Background(), func(tx *database.Tx) error {
		_, err := tx.ExecContext(context.Background(), `INSERT INTO recipient_keys(address, kind, public_key, fingerprint, status, requested_at, token_expires_at, verified_at)
			VALUES ('carol@client.example', 'age', ?, 'SHA256:test', 'active', ?, ?, ?)`, id.Recipient().String(), now, now, now)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.send(t, []string{"carol@client.example"}, routeMessage("[C-PK] q", "carol@client.example", "", secret)); err != nil {
		t.Fatalf("public-key contract, key registered: %v", err)
	}

	_, err = g.accept(context.Background(), &envelope{client: "127.0.0.1:1", from: "x@elsewhere.example", rcpts: []string{"dave@other.example"}},
		bytes.NewReader(routeMessage("[C-MAN] q", "dave@other.example", "", secret)))
	if r := smtpReply(err); r.Code != 550 || !strings.Contains(r.Message, "x@elsewhere.example") {
		t.Fatalf("manual contract, external sender: %v", err)
	}
	msg, err := g.send(t, []string{"dave@other.example"}, routeMessage("[C-MAN] q", "dave@other.example", "", secret))
	if err != nil {
		t.Fatalf("manual contract: %v", err)
	}
	g.deliverAll(t)

	var toDave, toAlice, toCarol []string
	g.tr.mu.Lock()
	for _, s := range g.tr.sent {
		for _, r := range s.rcpts {
			switch r {
			case "dave@other.example":
				toDave = append(toDave, string(s.data))
			case "alice@corp.example":
				toAlice = append(toAlice, string(s.data))
			case "carol@client.example":
				toCarol = append(toCarol, string(s.data))
			}
		}
	}
	g.tr.mu.Unlock()
	if len(toDave) != 1 || strings.Contains(toDave[0], "X-Sealgate-Notice: key") || strings.Contains(toDave[0], "Passphrase") {
		t.Fatalf("manual: dave got %d mails, want the download notice only", len(toDave))
	}
	if len(toAlice) != 1 || !strings.Contains(toAlice[0], "X-Sealgate-Notice: key") || !strings.Contains(toAlice[0], "Passphrase: ") ||
		!strings.Contains(toAlice[0], "dave@other.example") {
		t.Fatalf("manual: the sender got %d mails, want the key notice naming dave", len(toAlice))
	}
	for _, m := range toCarol {
		if strings.Contains(m, "Passphrase: ") {
			t.Fatal("public-key: a passphrase was mailed to carol")
		}
	}
	var data string
	if err := g.DB.Read().QueryRow(`SELECT data FROM ledger_records WHERE type = ? AND CAST(data AS TEXT) LIKE '%' || ? || '%'`, audit.TypeKeyNoticeDelivered, msg).Scan(&data); err != nil {
		rows, _ := g.DB.Read().Query(`SELECT data FROM ledger_records WHERE type = ?`, audit.TypeKeyNoticeDelivered)
		for rows.Next() {
			rows.Scan(&data)
			t.Log(data)
		}
		rows.Close()
		t.Fatalf("no key notice event for %s: %v", msg, err)
	}
	if !strings.Contains(data, `"recipient":"dave@other.example"`) || !strings.Contains(data, `"handed_to":"alice@corp.example"`) {
		t.Fatalf("ledger: %s", data)
	}
}
