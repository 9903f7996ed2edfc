package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/mimeseal"
	"github.com/sealgate/sealgate/policy"
)

// A message the walker cannot parse is accepted and sealed whole: the sealed file is the
// message without its Bcc field, byte for byte, and what the first walk sealed is deleted. Over
// limits.max_whole_seal it is refused (554), and nothing of it is left.
func TestMalformedSealedWhole(t *testing.T) {
	for _, size := range []int{10 << 10, 3 << 20} {
		g := newTestGateway(t, nil, nil)
		att, _ := bigMessage(size, "x@client.example")
		raw, _ := io.ReadAll(att)
		raw = bytes.TrimSuffix(raw, []byte("\r\n--b--\r\n")) // no closing boundary
		msg := append([]byte("Bcc: hidden@corp.example\r\n"), raw...)
		id, err := g.accept(context.Background(), &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example"}},
			bytes.NewReader(append([]byte("From a@corp.example Mon Nov 30 10:00:00 2026\r\n"), msg...)))
		if err != nil {
			t.Fatalf("%d bytes: %v, want it accepted", size, err)
		}
		var name, sum, reason string
		var n int
		g.DB.Read().QueryRow(`SELECT COUNT(*), MAX(f.name), MAX(f.sha256) FROM files f JOIN transfers t ON t.id = f.transfer_id WHERE t.message_id = ?`, id).Scan(&n, &name, &sum)
		want := sha256.Sum256(raw)
		if n != 1 || name != "message.eml" || sum != hex.EncodeToString(want[:]) {
			t.Fatalf("%d bytes: %d files %q %s, want message.eml with the message less its Bcc field", size, n, name, sum)
		}
		g.DB.Read().QueryRow(`SELECT CAST(data AS TEXT) FROM ledger_records WHERE type = 'message.received'`).Scan(&reason)
		if !strings.Contains(reason, `"sealed_whole":"unparseable"`) {
			t.Fatalf("message.received: %s", reason)
		}
		if objs := mustGlob(t, filepath.Join(g.dir, "objects", "objects", "sealed", "*", "*")); len(objs) != 1 {
			t.Fatalf("%d objects, want the whole message alone (what the first walk sealed is deleted)", len(objs))
		}
	}

	g := newTestGateway(t, nil, func(c *config.Config) { c.Limits.MaxWholeSeal = 1 << 20 })
	att, _ := bigMessage(3<<20, "x@client.example")
	raw, _ := io.ReadAll(att)
	_, err := g.accept(context.Background(), &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example"}},
		bytes.NewReader(bytes.TrimSuffix(raw, []byte("\r\n--b--\r\n"))))
	if r := smtpReply(err); err == nil || r.Code != 554 || !strings.Contains(r.Message, "max_whole_seal") {
		t.Fatalf("over max_whole_seal: %v", err)
	}
	if objs := mustGlob(t, filepath.Join(g.dir, "objects", "objects", "sealed", "*", "*")); len(objs) != 0 {
		t.Fatalf("%d objects left after the refusal", len(objs))
	}
	var n int
	g.DB.Read().QueryRow(`SELECT COUNT(*) FROM outbound`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d rows queued for a refused message", n)
	}
}

func TestPolicyReplies(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
		enh  int
		has  []string
	}{
		{&mimeseal.Error{Kind: mimeseal.Refused, Err: &mimeseal.Refusal{Rule: "r", Reason: policy.Text{JA: "暗号化ZIPは不可\r\n次行", EN: "no encrypted ZIP"}}},
			554, 7, []string{"暗号化ZIPは不可  次行", "no encrypted ZIP"}},
		{&mimeseal.Error{Kind: mimeseal.Infected, Err: &mimeseal.Malware{Signature: "Eicar-Test-Signature"}}, 554, 7,
			[]string{"マルウェア (Eicar-Test-Signature)", "Malware (Eicar-Test-Signature)"}},
		{&mimeseal.Error{Kind: mimeseal.ScanFailed, Err: errors.New("clamd unavailable")}, 451, 7, []string{"ウイルス検査", "malware scan"}},
	} {
		r := smtpReply(c.err)
		if r.Code != c.code || r.EnhancedCode[1] != c.enh || strings.Count(r.Message, "\n") != 1 {
			t.Errorf("%v: %d %v %q", c.err, r.Code, r.EnhancedCode, r.Message)
		}
		for _, s := range c.has {
			if !strings.Contains(r.Message, s) {
				t.Errorf("%v: reply %q lacks %q", c.err, r.Message, s)
			}
		}
	}
}

// A message a rule refuses still tells whom the rules name (notify): the refusal is final.
// A transient refusal (451) does not: the sender's MTA retries.
func TestPolicyAlertOnRefusal(t *testing.T) {
	pf := filepath.Join(t.TempDir(), "policy.toml")
	src := `version = 1
[[message]]
name = "watch"
recipient = ["@client.example"]
action = "notify"
notify = ["security@corp.example"]
[message_default]
action = "seal_attachments"
[[part]]
name = "no-zip"
filename = ["*.zip"]
action = "refuse"
reason_ja = "ZIP は送れません"
reason_en = "ZIP files cannot be sent"
[part_default]
action = "seal"
`
	if err := os.WriteFile(pf, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	g := newTestGateway(t, nil, func(c *config.Config) { c.Policy.File = pf })
	msg := "From: a@corp.example\r\nTo: x@client.example\r\nSubject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=\"a.zip\"\r\n\r\nPK\r\n--b--\r\n"
	_, err := g.accept(context.Background(), &envelope{client: "c", from: "a@corp.example", rcpts: []string{"x@client.example"}}, strings.NewReader(msg))
	if r := smtpReply(err); r.Code != 554 || !strings.Contains(r.Message, "ZIP files cannot be sent") {
		t.Fatalf("reply %v", err)
	}
	var rcpts string
	if err := g.DB.Read().QueryRow(`SELECT rcpts FROM outbound WHERE kind = 'notice'`).Scan(&rcpts); err != nil || rcpts != `["security@corp.example"]` {
		t.Fatalf("alert: %q %v", rcpts, err)
	}
}
