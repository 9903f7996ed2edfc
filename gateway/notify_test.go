package gateway

import (
	"bytes"
	"context"
	"mime"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/database"
	"github.com/sealgate/sealgate/notice"
)

// TestQueueNoticePolicy: the one way into the queue for system notices
// applies the one policy. A notice to a message's sender goes to an
// internal address or an active account's address only (relayed mail may
// carry any envelope sender); notices to managers, administrators or a
// key's owner go where their caller chose. What is queued is delivered as
// the template renders it, wrapped to the master key until then.
func TestQueueNoticePolicy(t *testing.T) {
	g := newTestGateway(t, nil, nil)
	ctx := context.Background()
	if err := g.DB.Write(ctx, func(tx *database.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO accounts(name, email, password_hash, status, created_at, password_changed_at) VALUES
			('erin', 'Erin@Partner.Example', 'x', 'active', 0, 0), ('gone', 'gone@partner.example', 'x', 'disabled', 0, 0)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	receipt := notice.HoldReceipt{Message: notice.Message{ID: "m1", Contract: "C-1", Subject: "見積書", Received: g.Now()}, ReleaseAt: g.Now().Add(time.Minute)}
	queue := func(m notice.Mail) {
		t.Helper()
		if err := g.DB.Write(ctx, func(tx *database.Tx) error { return g.QueueNotice(ctx, tx, m) }); err != nil {
			t.Fatal(err)
		}
	}
	for _, sender := range []string{"alice@corp.example", "erin@partner.example", "mallory@evil.example", "gone@partner.example", ""} {
		queue(notice.Mail{To: []string{sender}, Notice: receipt})
	}
	queue(notice.Mail{To: []string{"carol@client.example"}, Notice: notice.KeyRegistration{Address: "carol@client.example", Token: "t"}})
	var body []byte
	if err := g.DB.Read().QueryRow(`SELECT body FROM outbound WHERE kind = 'notice' LIMIT 1`).Scan(&body); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(body, []byte("/c/")) || bytes.Contains(body, []byte("X-Sealgate-Notice")) {
		t.Fatal("a queued notice is stored in clear")
	}
	g.deliverAll(t)
	var to []string
	for _, m := range g.tr.sent {
		to = append(to, m.rcpts...)
		msg, err := mail.ReadMessage(bytes.NewReader(m.data))
		if err != nil {
			t.Fatal(err)
		}
		subject, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		want := "【送信保留 / Held】見積書"
		if m.rcpts[0] == "carol@client.example" {
			want = "公開鍵登録の確認 / Confirm your public key registration"
		}
		if m.from != "" || msg.Header.Get("X-Sealgate-Notice") != "system" || subject != want {
			t.Errorf("notice to %v: from <%s>, subject %q, header %v", m.rcpts, m.from, subject, msg.Header)
		}
	}
	slices.Sort(to)
	if got := strings.Join(to, ","); got != "alice@corp.example,carol@client.example,erin@partner.example" {
		t.Fatalf("notices went to %s", got)
	}
}
