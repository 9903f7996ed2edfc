package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/testclamd"
	"github.com/sealgate/sealgate/internal/testsink"
)

// Issue 11: the policy file, whole-message sealing, malware scanning and broken mail, over
// real SMTP against the real binary (and a real clamd, started with an EICAR-only database).

// testPolicy keeps signature logos and invitations, seals 【機密】 mail whole (and tells the
// security team), holds mail labelled Highly Confidential by Microsoft Purview, refuses
// password-protected archives; otherwise it is the built-in default.
const testPolicy = `version = 1

[groups]
security = ["security@corp.example"]

[[message]]
name = "confidential-subject"
subject = '(?i)【\s*(機密|社外秘|極秘)\s*】|\[\s*confidential\s*\]'
action = "seal_message"
notify = ["group:security"]

[[message]]
name = "purview-highly-confidential"
msip_label = [{ id = "3c2b6d71-9b6a-4c0e-9d0f-5c8c1b2a7e41", site = "72f988bf-86f1-41af-91ab-2d7cd011db47" }]
action = "hold"

[message_default]
name = "default"
action = "seal_attachments"

[[part]]
name = "signed"
media_type = ["multipart/signed"]
action = "seal"

[[part]]
name = "encrypted"
media_type = ["multipart/encrypted"]
action = "seal"

[[part]]
name = "multipart"
media_type = ["multipart/*"]
action = "walk"

[[part]]
name = "forwarded"
media_type = ["message/rfc822", "message/global"]
action = "seal"

[[part]]
name = "encrypted-archive"
encrypted = true
action = "refuse"
reason_ja = "パスワード付きの ZIP などの暗号化ファイルは送れません。暗号化せずに添付してください。sealgate が暗号化して届けます。"
reason_en = "Password-protected archives and documents cannot be sent: attach the files unencrypted, sealgate encrypts them."

[[part]]
name = "invitation"
media_type = ["text/calendar"]
sniffed_type = ["text/calendar"]
size_below = "256KiB"
action = "keep"

[[part]]
name = "signature-logo"
inline = true
media_type = ["image/png", "image/jpeg", "image/gif"]
sniffed_type = ["image/png", "image/jpeg", "image/gif"]
size_below = "64KiB"
action = "keep"

[[part]]
name = "attachment"
disposition_not = ["", "inline"]
action = "seal"

[[part]]
name = "filename"
has_filename = true
action = "seal"

[[part]]
name = "body"
media_type = ["text/plain", "text/html"]
action = "keep"

[part_default]
name = "non-text"
action = "seal"
`

func writePolicy(t testing.TB, dir, name, src string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func policyHash(src string) string {
	s := sha256.Sum256([]byte(src))
	return hex.EncodeToString(s[:])
}

// startPolicyGateway starts a gateway with testPolicy and the extra environment.
func startPolicyGateway(t *testing.T, sink *testsink.Sink, env ...string) *gw {
	t.Helper()
	file := writePolicy(t, t.TempDir(), "policy.toml", testPolicy)
	return startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: append([]string{"SEALGATE_POLICY_FILE=" + file}, env...)})
}

func startClamd(t *testing.T) *testclamd.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	in, err := testclamd.Start(ctx, t.TempDir(), testclamd.Options{})
	if err != nil {
		t.Fatal(err) // a missing clamd is a failure here, never a skip: CI installs clamav-daemon
	}
	t.Cleanup(in.Stop)
	return in
}

func logoPNG(t testing.TB) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, 24, 24))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 31)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func b64Wrapped(b []byte) string {
	enc := stdB64(b)
	var s strings.Builder
	for len(enc) > 76 {
		s.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	return s.String() + enc + "\r\n"
}

// outlookMail is an HTML mail as Outlook writes it: multipart/related with the logo of the
// signature inline (cid:), and a PDF attached.
func outlookMail(extraHeader, subject string, logo, pdf []byte) []byte {
	return []byte("From: Alice <" + sender + ">\r\nTo: " + extA + "\r\nSubject: " + subject + "\r\n" +
		"Date: Mon, 30 Nov 2026 10:00:00 +0900\r\nMessage-ID: <e2e-policy-" + fmt.Sprint(len(pdf)) + "@corp.example>\r\n" + extraHeader +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"_004_mixed\"\r\n\r\n" +
		"--_004_mixed\r\nContent-Type: multipart/related; boundary=\"_003_related\"; type=\"multipart/alternative\"\r\n\r\n" +
		"--_003_related\r\nContent-Type: multipart/alternative; boundary=\"_000_alt\"\r\n\r\n" +
		"--_000_alt\r\nContent-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"見積書を添付します。 Please find the quotation attached.\r\n" +
		"--_000_alt\r\nContent-Type: text/html; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"<html><body><p>見積書を添付します。</p><p><img width=\"120\" height=\"40\" src=\"cid:image001.png@01DB4A2C.5E6F7A80\" alt=\"logo\"></p></body></html>\r\n" +
		"--_000_alt--\r\n\r\n" +
		"--_003_related\r\nContent-Type: image/png; name=\"image001.png\"\r\nContent-Description: image001.png\r\n" +
		"Content-Disposition: inline; filename=\"image001.png\"; size=" + fmt.Sprint(len(logo)) + "\r\n" +
		"Content-ID: <image001.png@01DB4A2C.5E6F7A80>\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64Wrapped(logo) +
		"\r\n--_003_related--\r\n\r\n" +
		"--_004_mixed\r\nContent-Type: application/pdf; name=\"quote.pdf\"\r\nContent-Description: quote.pdf\r\n" +
		"Content-Disposition: attachment; filename=\"quote.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64Wrapped(pdf) +
		"\r\n--_004_mixed--\r\n")
}

func ledgerOf(g *gw, typ string) []ledgerEvent {
	var out []ledgerEvent
	for _, ev := range g.ledger() {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// TestPolicyLogoKeptPDFSealed: under a policy that keeps small inline images, the logo of an
// Outlook signature reaches the recipient as sent and the PDF is sealed; the ledger names the
// rules and the policy's hash.
func TestPolicyLogoKeptPDFSealed(t *testing.T) {
	sink := startSink(t)
	g := startPolicyGateway(t, sink)
	logo := logoPNG(t)
	pdf := append([]byte("%PDF-1.7\n"), randomBytes(30<<10)...)
	msgs, err := sendAndWait(t, g, sink, outlookMail("", "quotation", logo, pdf), 1)
	if err != nil {
		t.Fatal(err)
	}
	c := classify(msgs).copies[extA]
	if hasRun(c.Data, pdf) || contains(c.Data, b64Wrapped(pdf)[:76]) {
		t.Fatal("the PDF reached the recipient")
	}
	_, parts := parseMessage(t, c.Data)
	var gotLogo []byte
	links := 0
	for _, p := range parts {
		if p.contentType == "image/png" {
			gotLogo = p.body
		}
		if linkRE.Match(p.body) {
			links++
		}
	}
	if !bytes.Equal(gotLogo, logo) || links != 1 {
		t.Fatalf("logo kept: %v, %d notices (want the logo as sent and one notice)", bytes.Equal(gotLogo, logo), links)
	}
	rec := ledgerOf(g, "message.received")
	if len(rec) != 1 || rec[0].Details["policy_rule"] != "default" || rec[0].Details["policy_hash"] != policyHash(testPolicy) {
		t.Fatalf("message.received: %+v", rec)
	}
	sealed := ledgerOf(g, "file.sealed")
	if len(sealed) != 1 || sealed[0].File != "quote.pdf" || sealed[0].Details["reason"] != "attachment" || sealed[0].Details["policy_hash"] != policyHash(testPolicy) {
		t.Fatalf("file.sealed: %+v", sealed)
	}
}

// sendAndWait sends msg from sender to extA and waits for n messages to reach the sink.
func sendAndWait(t *testing.T, g *gw, sink *testsink.Sink, msg []byte, n int) ([]testsink.Message, error) {
	t.Helper()
	before := len(sink.Messages())
	if err := send(t, g.smtpAddr, sender, []string{extA}, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	msgs, err := sink.Wait(60*time.Second, func(m []testsink.Message) bool { return len(m)-before >= n })
	if err != nil {
		return nil, err
	}
	return msgs[before:], nil
}

const invite = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nPRODID:Microsoft Exchange Server 2010\r\nVERSION:2.0\r\n" +
	"BEGIN:VEVENT\r\nUID:040000008200E00074C5B7101A82E008\r\nSUMMARY;LANGUAGE=ja-JP:定例会議\r\n" +
	"DTSTART:20261201T010000Z\r\nDTEND:20261201T020000Z\r\nORGANIZER:mailto:alice@corp.example\r\n" +
	"ATTENDEE;ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:carol@client.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"

// TestPolicyInvitationKept: a meeting invitation reaches the client as an invitation it can
// accept.
func TestPolicyInvitationKept(t *testing.T) {
	sink := startSink(t)
	g := startPolicyGateway(t, sink)
	msg := []byte("From: " + sender + "\r\nTo: " + extA + "\r\nSubject: =?UTF-8?B?5a6a5L6L5Lya6K2w?=\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=\"inv\"\r\n\r\n--inv\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n定例会議のご案内\r\n" +
		"--inv\r\nContent-Type: text/calendar; charset=\"utf-8\"; method=REQUEST\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		b64Wrapped([]byte(invite)) + "--inv--\r\n")
	msgs, err := sendAndWait(t, g, sink, msg, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := classify(msgs).copies[extA]
	_, parts := parseMessage(t, c.Data)
	if len(parts) != 2 || parts[1].contentType != "text/calendar" || string(parts[1].body) != invite {
		t.Fatalf("the invitation was not kept:\n%s", c.Data)
	}
	if linkRE.Match(c.Data) || len(ledgerOf(g, "file.sealed")) != 0 {
		t.Fatal("something was sealed")
	}
}

// TestPolicyConfidentialSealedWhole: a mail marked 【機密】 in its subject is sealed whole: the
// recipient's copy has a neutral notice and no word of the body; the sealed .eml downloads
// with the body; the security team is told.
func TestPolicyConfidentialSealedWhole(t *testing.T) {
	sink := startSink(t)
	g := startPolicyGateway(t, sink)
	body := "単価は 1 個 12,345 円、納期は 12 月 15 日です。UNIT-PRICE-SECRET"
	msg := []byte("From: Alice <" + sender + ">\r\nTo: " + extA + "\r\nBcc: hidden@corp.example\r\n" +
		"Subject: " + subjectJA("【機密】 見積条件") + "\r\nMessage-ID: <e2e-kimitsu@corp.example>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body + "\r\n")
	before := len(sink.Messages())
	if err := send(t, g.smtpAddr, sender, []string{extA, "hidden@corp.example"}, msg); err != nil {
		t.Fatal(err)
	}
	msgs, err := sink.Wait(60*time.Second, func(m []testsink.Message) bool {
		d := classify(m[before:])
		return len(d.copies) == 1 && len(d.keys) == 1 && len(noticesTo(t, sink, "security@corp.example")) == 1
	})
	if err != nil {
		t.Fatal(err)
	}
	d := classify(msgs[before:])
	c := d.copies[extA]
	if contains(c.Data, "UNIT-PRICE-SECRET") || contains(c.Data, "12,345") || contains(c.Data, "hidden@") {
		t.Fatalf("the body reached the recipient:\n%s", c.Data)
	}
	hdr, parts := parseMessage(t, c.Data)
	if len(parts) != 1 || hdr.Get("Message-Id") != "<e2e-kimitsu@corp.example>" {
		t.Fatalf("copy: %d parts\n%s", len(parts), c.Data)
	}
	notice := string(parts[0].body)
	for _, want := range []string{"このメールの内容は暗号化して保管されました", "The content of this message was encrypted and stored", "message.eml"} {
		if !strings.Contains(notice, want) {
			t.Errorf("notice lacks %q:\n%s", want, notice)
		}
	}
	_, token := linkOf(t, c)
	resp, eml := postForm(t, g.url("/t/"+token+"/download"), form("passphrase", passphraseOf(t, d.keys[extA]), "file", "0"))
	if resp.StatusCode != 200 || !contains(eml, body) || !contains(eml, "Subject: "+subjectJA("【機密】 見積条件")) || contains(eml, "hidden@") {
		t.Fatalf("download %d:\n%s", resp.StatusCode, eml)
	}
	alert := strings.Join(noticesTo(t, sink, "security@corp.example"), "\n")
	if !strings.Contains(alert, "confidential-subject") || strings.Contains(alert, "UNIT-PRICE-SECRET") {
		t.Fatalf("alert to the security team:\n%s", alert)
	}
	if rec := ledgerOf(g, "message.received"); len(rec) != 1 || rec[0].Details["policy_rule"] != "confidential-subject" || rec[0].Details["policy_action"] != "seal_message" {
		t.Fatalf("message.received: %+v", rec)
	}
}

// TestPolicyPurviewLabelHolds: a Microsoft Purview label, by its GUID and tenant, selects the
// rule that holds the message for the manager's approval: nothing leaves.
func TestPolicyPurviewLabelHolds(t *testing.T) {
	sink := startSink(t)
	g := startPolicyGateway(t, sink)
	label := "msip_labels: MSIP_Label_3c2b6d71-9b6a-4c0e-9d0f-5c8c1b2a7e41_Enabled=true;\r\n" +
		" MSIP_Label_3c2b6d71-9b6a-4c0e-9d0f-5c8c1b2a7e41_SetDate=2026-11-30T01:00:00Z;\r\n" +
		" MSIP_Label_3c2b6d71-9b6a-4c0e-9d0f-5c8c1b2a7e41_Method=Privileged;\r\n" +
		" MSIP_Label_3c2b6d71-9b6a-4c0e-9d0f-5c8c1b2a7e41_Name=Highly Confidential;\r\n" +
		" MSIP_Label_3c2b6d71-9b6a-4c0e-9d0f-5c8c1b2a7e41_SiteId=72f988bf-86f1-41af-91ab-2d7cd011db47;\r\n"
	pdf := append([]byte("%PDF-1.7\n"), randomBytes(8<<10)...)
	if err := send(t, g.smtpAddr, sender, []string{extA}, outlookMail(label, "design", logoPNG(t), pdf)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "message.held", func() bool { return len(ledgerOf(g, "message.held")) == 1 })
	rec := ledgerOf(g, "message.received")
	if len(rec) != 1 || rec[0].Details["policy_rule"] != "purview-highly-confidential" || rec[0].Details["policy_action"] != "hold" {
		t.Fatalf("message.received: %+v", rec)
	}
	var status string
	g.db().QueryRow(`SELECT status FROM outbound WHERE kind = 'sealed'`).Scan(&status)
	if status != "held" {
		t.Fatalf("the external copy is %q, want held", status)
	}
	for _, m := range sink.Messages() {
		for _, r := range m.To {
			if r == extA {
				t.Fatal("a copy left before approval")
			}
		}
	}
	// Without the label (or with another tenant's), the same mail is not held.
	other := strings.ReplaceAll(label, "72f988bf", "00000000")
	if _, err := sendAndWait(t, g, sink, outlookMail(other, "design", logoPNG(t), pdf), 2); err != nil {
		t.Fatal(err)
	}
}

// encryptedZIP is a ZIP archive whose entry is encrypted (ZipCrypto, general purpose bit 0), as
// `zip -e` writes it.
func encryptedZIP() []byte {
	var b bytes.Buffer
	name := "見積書.xlsx"
	data := randomBytes(512)
	b.WriteString("PK\x03\x04\x14\x00\x09\x08\x00\x00\x00\x00\x21\x00")
	b.Write([]byte{0x11, 0x22, 0x33, 0x44})                                                                   // CRC
	b.Write([]byte{byte(len(data)), byte(len(data) >> 8), 0, 0, byte(len(data)), byte(len(data) >> 8), 0, 0}) // sizes
	b.Write([]byte{byte(len(name)), 0, 0, 0})
	b.WriteString(name)
	b.Write(data)
	return b.Bytes()
}

// TestPolicyEncryptedZipRefused: a password-protected ZIP (PPAP) is refused with the rule's
// reason, in Japanese and English; nothing is stored or delivered.
func TestPolicyEncryptedZipRefused(t *testing.T) {
	sink := startSink(t)
	g := startPolicyGateway(t, sink)
	raw := buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "quote"}, "パスワードは別途お送りします。",
		attachment{name: "見積書.zip", contentType: "application/zip", data: encryptedZIP()})
	err := send(t, g.smtpAddr, sender, []string{extA}, raw)
	te := refusal(t, err)
	if te.Code != 554 || !strings.Contains(te.Msg, "パスワード付きの ZIP") || !strings.Contains(te.Msg, "Password-protected archives") {
		t.Fatalf("reply %d %q", te.Code, te.Msg)
	}
	if n := sealedObjects(t, g); n != 0 {
		t.Fatalf("%d objects left", n)
	}
	ref := ledgerOf(g, "message.refused")
	if len(ref) != 1 || ref[0].Details["policy_rule"] != "encrypted-archive" {
		t.Fatalf("message.refused: %+v", ref)
	}
}

// TestMalwareScanning: with clamd configured, EICAR is refused with its signature name, a
// clean file is sealed and its notice says it was scanned; clamd stopped → 451 (the sender's
// MTA retries); with on_unavailable = "hold", the message is held unscanned instead.
func TestMalwareScanning(t *testing.T) {
	clamd := startClamd(t)
	sink := startSink(t)
	g := startPolicyGateway(t, sink, "SEALGATE_SCAN_CLAMD=unix:"+clamd.Socket, "SEALGATE_SCAN_TIMEOUT=20s")

	eicar := buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "test"}, "see attachment",
		attachment{name: "eicar.com", contentType: "application/octet-stream", data: testclamd.EICAR()})
	te := refusal(t, send(t, g.smtpAddr, sender, []string{extA}, eicar))
	if te.Code != 554 || !strings.Contains(te.Msg, "5.7.1 ") || !strings.Contains(te.Msg, testclamd.Signature) {
		t.Fatalf("EICAR: %d %q", te.Code, te.Msg)
	}
	if n := sealedObjects(t, g); n != 0 {
		t.Fatalf("%d objects left after the refusal", n)
	}

	pdf := append([]byte("%PDF-1.7\n"), randomBytes(20<<10)...)
	clean := buildMessage(map[string]string{"From": sender, "To": extA, "Subject": "clean"}, "see attachment",
		attachment{name: "clean.pdf", contentType: "application/pdf", data: pdf})
	msgs, err := sendAndWait(t, g, sink, clean, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, parts := parseMessage(t, classify(msgs).copies[extA].Data)
	if n := strings.Join(func() []string {
		var s []string
		for _, p := range parts {
			s = append(s, string(p.body))
		}
		return s
	}(), "\n"); !strings.Contains(n, "ウイルス検査") || !strings.Contains(n, "scanned for malware") {
		t.Fatalf("the notice does not say the file was scanned:\n%s", n)
	}
	sealed := ledgerOf(g, "file.sealed")
	if len(sealed) != 1 || sealed[0].Details["scan"] != "clean" || !strings.HasPrefix(sealed[0].Details["scan_engine"], "ClamAV ") {
		t.Fatalf("file.sealed: %+v", sealed)
	}

	clamd.Stop()
	te = refusal(t, send(t, g.smtpAddr, sender, []string{extA}, clean))
	if te.Code != 451 {
		t.Fatalf("clamd stopped: %d %q, want 451", te.Code, te.Msg)
	}

	// The operator's choice: hold unscanned mail for the manager instead of deferring it.
	g2 := startPolicyGateway(t, sink, "SEALGATE_SCAN_CLAMD=unix:"+clamd.Socket, "SEALGATE_SCAN_ON_UNAVAILABLE=hold")
	if err := send(t, g2.smtpAddr, sender, []string{extA}, clean); err != nil {
		t.Fatalf("on_unavailable=hold: %v", err)
	}
	waitFor(t, 30*time.Second, "message.held", func() bool { return len(ledgerOf(g2, "message.held")) == 1 })
	sealed = ledgerOf(g2, "file.sealed")
	if len(sealed) != 1 || sealed[0].Details["scan"] != "unavailable" {
		t.Fatalf("file.sealed: %+v", sealed)
	}
}

// TestShadowPolicy: a candidate policy (refusing every PDF) evaluated on live traffic records
// what it would have done and changes nothing.
func TestShadowPolicy(t *testing.T) {
	sink := startSink(t)
	candidate := strings.Replace(testPolicy, "[[part]]\nname = \"attachment\"", "[[part]]\nname = \"no-pdf\"\nsniffed_type = [\"application/pdf\"]\naction = \"refuse\"\n"+
		"reason_ja = \"PDF は送れません\"\nreason_en = \"PDF files cannot be sent\"\n\n[[part]]\nname = \"attachment\"", 1)
	shadow := writePolicy(t, t.TempDir(), "candidate.toml", candidate)
	g := startPolicyGateway(t, sink, "SEALGATE_POLICY_SHADOW="+shadow)
	pdf := append([]byte("%PDF-1.7\n"), randomBytes(10<<10)...)
	msgs, err := sendAndWait(t, g, sink, outlookMail("", "quotation", logoPNG(t), pdf), 2)
	if err != nil {
		t.Fatal(err)
	}
	if d := classify(msgs); len(d.copies) != 1 || len(d.keys) != 1 {
		t.Fatalf("delivered %d copies, %d key notices", len(d.copies), len(d.keys))
	}
	sh := ledgerOf(g, "policy.shadow")
	if len(sh) != 1 {
		t.Fatalf("%d policy.shadow events", len(sh))
	}
	dt := sh[0].Details
	if dt["policy_hash"] != policyHash(candidate) || dt["would"] != "refuse" || dt["rule"] != "no-pdf" || dt["differs"] != "true" ||
		!strings.Contains(dt["parts"], "refuse:no-pdf") || !strings.Contains(dt["parts"], "keep:signature-logo") {
		t.Fatalf("policy.shadow: %+v", dt)
	}
	if len(ledgerOf(g, "message.refused")) != 0 || len(ledgerOf(g, "file.sealed")) != 1 {
		t.Fatal("the shadow policy changed what happened")
	}
}

// TestPolicyChangesRecorded: serve records the policy it starts with (who: the host and the
// file; its hash) when it differs from the last one recorded; a policy that does not compile
// stops serve at start, with the error.
func TestPolicyChangesRecorded(t *testing.T) {
	sink := startSink(t)
	dir := t.TempDir()
	file := writePolicy(t, dir, "policy.toml", testPolicy)
	g := startGateway(t, gwOptions{smarthost: sink.Addr(), extraEnv: []string{"SEALGATE_POLICY_FILE=" + file}})
	ch := ledgerOf(g, "policy.changed")
	if len(ch) != 1 || ch[0].Details["policy_hash"] != policyHash(testPolicy) || !strings.Contains(ch[0].Actor, file) {
		t.Fatalf("policy.changed: %+v", ch)
	}
	g.restart()
	if n := len(ledgerOf(g, "policy.changed")); n != 1 {
		t.Fatalf("%d policy.changed events after a restart with the same policy", n)
	}
	changed := strings.Replace(testPolicy, `size_below = "64KiB"`, `size_below = "32KiB"`, 1)
	writePolicy(t, dir, "policy.toml", changed)
	g.restart()
	ch = ledgerOf(g, "policy.changed")
	if len(ch) != 2 || ch[1].Details["policy_hash"] != policyHash(changed) || ch[1].Details["previous_hash"] != policyHash(testPolicy) {
		t.Fatalf("policy.changed: %+v", ch)
	}
	g.stop(0x0f)
	writePolicy(t, dir, "policy.toml", strings.Replace(testPolicy, `action = "hold"`, `action = "hodl"`, 1))
	out, code := cliRun(t, g, nil, "serve")
	if code == 0 || !strings.Contains(out, "hodl") || !strings.Contains(out, "policy") {
		t.Fatalf("serve with a broken policy: exit %d\n%s", code, out)
	}
}
