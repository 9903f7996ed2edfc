package policy

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
	"golang.org/x/text/encoding/japanese"
)

func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func mustLoad(t *testing.T, name string) *Policy {
	t.Helper()
	p, err := Load(filepath.Join("examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultIsTheExampleFile(t *testing.T) {
	b, err := os.ReadFile("examples/default.toml")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if got := Default().Hash(); got != hex.EncodeToString(sum[:]) {
		t.Errorf("Default().Hash() = %s, want the SHA-256 of examples/default.toml", got)
	}
}

func TestExamplesCompileAndDescribe(t *testing.T) {
	files, _ := filepath.Glob("examples/*.toml")
	if len(files) != 3 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		p := mustLoad(t, filepath.Base(f))
		for _, lang := range []string{"ja", "en"} {
			d := p.Describe(lang)
			for _, r := range p.part {
				if !strings.Contains(d, "["+r.name+"]") {
					t.Errorf("%s Describe(%s) lacks rule %s", f, lang, r.name)
				}
			}
			if !strings.Contains(d, p.Hash()) {
				t.Errorf("%s Describe(%s) lacks the hash", f, lang)
			}
		}
	}
	d := mustLoad(t, "contracts-and-confidential.toml").Describe("ja")
	for _, want := range []string{"件名が正規表現", "本文を含めメッセージ全体を封印する", "64KiB 未満", "cid:", "パスワード付き", "通知先: security@example.co.jp"} {
		if !strings.Contains(d, want) {
			t.Errorf("Describe(ja) lacks %q:\n%s", want, d)
		}
	}
	d = mustLoad(t, "contracts-and-confidential.toml").Describe("en")
	for _, want := range []string{"the subject matches", "seal the whole message, body included", "it is smaller than 64KiB", "send it as it is, nothing sealed"} {
		if !strings.Contains(d, want) {
			t.Errorf("Describe(en) lacks %q:\n%s", want, d)
		}
	}
}

func header(kv ...string) *textproto.Header {
	var h textproto.Header
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return &h
}

func iso2022jp(t *testing.T, s string) string {
	t.Helper()
	b, err := japanese.ISO2022JP.NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return "=?ISO-2022-JP?B?" + base64.StdEncoding.EncodeToString(b) + "?="
}

func TestConfidentialSubject(t *testing.T) {
	p := mustLoad(t, "contracts-and-confidential.toml")
	env := func(subject string) *Message {
		return &Message{Sender: "a@example.co.jp", Recipients: []string{"b@client.example"}, Contract: "ACME", Header: header("Subject", subject)}
	}
	for _, s := range []string{
		"【機密】見積書",
		"【社外秘】 資料",
		"Re: 【 極秘 】",
		iso2022jp(t, "【機密】見積書の件"),
		"=?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte("【社外秘】")) + "?=",
		"[Confidential] Q3 numbers",
		"［Ｃｏｎｆｉｄｅｎｔｉａｌ］ full width",
		"［ＣＯＮＦＩＤＥＮＴＩＡＬ］",
		"[secret]",
	} {
		d := p.Message(env(s))
		if d.Action != SealMessage || d.Rule != "confidential-subject" {
			t.Errorf("subject %q: %v (%s), want seal_message by confidential-subject", s, d.Action, d.Rule)
		}
		if len(d.Notify) != 1 || d.Notify[0] != "security@example.co.jp" {
			t.Errorf("subject %q: notify %v", s, d.Notify)
		}
	}
	for _, s := range []string{"機密保持契約について", "confidential", "Re: 見積書", iso2022jp(t, "見積書"), ""} {
		if d := p.Message(env(s)); d.Action != SealAttachments || d.Rule != "contract" {
			t.Errorf("subject %q: %v (%s), want seal_attachments by contract", s, d.Action, d.Rule)
		}
	}
}

const labelHeader = "MSIP_Label_2096f6a2-d2f7-48be-b329-b73aaa526e5d_Enabled=true;\r\n MSIP_Label_2096f6a2-d2f7-48be-b329-b73aaa526e5d_SetDate=2026-05-01T09:00:00Z;\r\n MSIP_Label_2096f6a2-d2f7-48be-b329-b73aaa526e5d_Method=Privileged;\r\n MSIP_Label_2096f6a2-d2f7-48be-b329-b73aaa526e5d_Name=Confidential;\r\n MSIP_Label_2096f6a2-d2f7-48be-b329-b73aaa526e5d_SiteId=72f988bf-86f1-41af-91ab-2d7cd011db47;\r\n MSIP_Label_2096f6a2-d2f7-48be-b329-b73aaa526e5d_ContentBits=0"

func TestMessagePredicates(t *testing.T) {
	p := mustParse(t, `
version = 1
[groups]
sales = ["alice@example.co.jp", "@sales.example.co.jp"]
legal = ["legal@example.co.jp", "dpo@example.co.jp"]

[[message]]
name = "label-notify"
msip_label = [{ id = "{2096F6A2-D2F7-48BE-B329-B73AAA526E5D}" }]
action = "notify"
notify = ["group:legal"]

[[message]]
name = "label-tenant"
msip_label = [{ id = "2096f6a2-d2f7-48be-b329-b73aaa526e5d", site = "72f988bf-86f1-41af-91ab-2d7cd011db47" }]
action = "hold"
notify = ["legal@example.co.jp", "boss@example.co.jp"]

[[message]]
name = "sensitivity"
sensitivity = ["Company-Confidential"]
action = "seal_message"

[[message]]
name = "competitor"
sender = ["group:sales"]
recipient = ["@*.competitor.example", "@competitor.example"]
action = "refuse"
reason_ja = "競合他社への送信はできません。"
reason_en = "Mail to a competitor is not allowed."

[[message]]
name = "acme"
contract = ["ACME-*"]
header = { "X-Classification" = "(?i)^restricted$" }
action = "seal_message"

[[message]]
name = "outside"
default_contract = true
action = "pass"

[message_default]
action = "seal_attachments"

[part_default]
action = "seal"
`)
	cases := []struct {
		name string
		m    Message
		want Action
		rule string
	}{
		{"label and tenant", Message{Header: header("msip_labels", labelHeader)}, Hold, "label-tenant"},
		{"label of another tenant", Message{Header: header("msip_labels", strings.ReplaceAll(labelHeader, "72f988bf", "00000000"))}, SealAttachments, "default"},
		{"label disabled", Message{Header: header("msip_labels", strings.Replace(labelHeader, "Enabled=true", "Enabled=false", 1))}, SealAttachments, "default"},
		{"sensitivity", Message{Header: header("Sensitivity", "company-confidential")}, SealMessage, "sensitivity"},
		{"sales to competitor", Message{Sender: "Bob@Sales.Example.co.jp", Recipients: []string{"x@client.example", "ceo@hq.competitor.example"}}, Refuse, "competitor"},
		{"sales to competitor apex", Message{Sender: "alice@example.co.jp", Recipients: []string{"ceo@competitor.example"}}, Refuse, "competitor"},
		{"other sender", Message{Sender: "carol@example.co.jp", Recipients: []string{"ceo@competitor.example"}}, SealAttachments, "default"},
		{"look-alike domain", Message{Sender: "alice@example.co.jp", Recipients: []string{"ceo@notcompetitor.example"}}, SealAttachments, "default"},
		{"contract and header", Message{Contract: "ACME-7", Header: header("X-Classification", "Restricted")}, SealMessage, "acme"},
		{"contract without header", Message{Contract: "ACME-7"}, SealAttachments, "default"},
		{"header without contract", Message{Contract: "OTHER", Header: header("X-Classification", "restricted")}, SealAttachments, "default"},
		{"default contract", Message{DefaultContract: true}, Pass, "outside"},
	}
	for _, c := range cases {
		d := p.Message(&c.m)
		if d.Action != c.want || d.Rule != c.rule {
			t.Errorf("%s: %v (%s), want %v (%s)", c.name, d.Action, d.Rule, c.want, c.rule)
		}
	}
	d := p.Message(&Message{Header: header("msip_labels", labelHeader)})
	if strings.Join(d.Notify, ",") != "legal@example.co.jp,dpo@example.co.jp,boss@example.co.jp" || strings.Join(d.NotifyRules, ",") != "label-notify,label-tenant" {
		t.Errorf("notify %v by %v", d.Notify, d.NotifyRules)
	}
	d = p.Message(&Message{Sender: "alice@example.co.jp", Recipients: []string{"ceo@competitor.example"}})
	if d.Reason.JA != "競合他社への送信はできません。" || d.Reason.EN != "Mail to a competitor is not allowed." {
		t.Errorf("reason %+v", d.Reason)
	}
}

func TestWholeMessageForOneContract(t *testing.T) {
	p := mustLoad(t, "whole-message-contract.toml")
	if d := p.Message(&Message{Contract: "ACME-2026"}); d.Action != SealMessage || d.Rule != "acme-whole" {
		t.Errorf("ACME-2026: %+v", d)
	}
	if d := p.Message(&Message{Contract: "OTHER"}); d.Action != SealAttachments {
		t.Errorf("OTHER: %+v", d)
	}
	// Its part rules are the default's.
	def := Default()
	for _, f := range []Part{{MediaType: "text/plain"}, {MediaType: "image/png", Inline: true}, {MediaType: "application/pdf", HasFilename: true, Filename: "a.pdf"}} {
		if a, b := p.Part(&f), def.Part(&f); a.Action != b.Action || a.Rule != b.Rule {
			t.Errorf("%+v: %+v, default %+v", f, a, b)
		}
	}
}

// The Outlook shape: an HTML body with an inline logo (cid:) and a PDF, under the policy that
// keeps small inline images, invitations, and refuses encrypted archives.
func TestPartsUnderContractPolicy(t *testing.T) {
	p := mustLoad(t, "contracts-and-confidential.toml")

	// The HTML body: decided as keep-or-refuse (encrypted rule pending), so the walker copies it
	// raw as it comes; no buffer is needed.
	html := Part{MediaType: "text/html", Index: 1}
	d := p.Part(&html)
	if d.Action != Pending || !d.Needs.Has(NeedEncrypted) || !d.MayKeep || d.MaySeal || !d.MayRefuse || d.KeepLimit != 0 {
		t.Fatalf("html at start: %+v", d)
	}
	if e := p.PartEnd(&html, &Content{Sniffed: "text/html; charset=utf-8", Size: 5000, Held: true}); e.Action != Keep || e.Rule != "body" {
		t.Errorf("html at end: %+v", e)
	}

	// The logo: keep or seal, the walker must hold up to 64 KiB.
	logo := Part{MediaType: "image/png", Disposition: "inline", Filename: "image001.png", HasFilename: true, Inline: true, Index: 2}
	d = p.Part(&logo)
	if d.Action != Pending || !d.MayKeep || !d.MaySeal || d.KeepLimit != 64<<10 || !d.Needs.Has(NeedSniff|NeedSize|NeedEncrypted) {
		t.Fatalf("logo at start: %+v", d)
	}
	if e := p.PartEnd(&logo, &Content{Sniffed: "image/png", Size: 6 << 10, Held: true}); e.Action != Keep || e.Rule != "signature-logo" {
		t.Errorf("small logo: %+v", e)
	}
	if e := p.PartEnd(&logo, &Content{Sniffed: "image/png", Size: 64 << 10, Held: false}); e.Action != Seal || e.Rule != "filename" {
		t.Errorf("64 KiB logo: %+v", e)
	}
	if e := p.PartEnd(&logo, &Content{Sniffed: "application/zip", Size: 6 << 10, Held: true}); e.Action != Seal || e.Rule != "filename" {
		t.Errorf("a ZIP named image001.png: %+v", e)
	}
	// The same image not referenced from the HTML is an attachment.
	notInline := logo
	notInline.Inline = false
	if e := p.PartEnd(&notInline, &Content{Sniffed: "image/png", Size: 6 << 10, Held: true}); e.Action != Seal {
		t.Errorf("not inline: %+v", e)
	}

	// The PDF: sealed, or refused if encrypted.
	pdf := Part{MediaType: "application/pdf", Disposition: "attachment", Filename: "見積書.pdf", HasFilename: true, Index: 3}
	d = p.Part(&pdf)
	if d.Action != Pending || d.MayKeep || !d.MaySeal || !d.MayRefuse || d.Needs != NeedEncrypted {
		t.Fatalf("pdf at start: %+v", d)
	}
	if e := p.PartEnd(&pdf, &Content{Sniffed: "application/pdf", Size: 300 << 10}); e.Action != Seal || e.Rule != "attachment" {
		t.Errorf("pdf: %+v", e)
	}
	zip := Part{MediaType: "application/zip", Disposition: "attachment", Filename: "資料.zip", HasFilename: true}
	e := p.PartEnd(&zip, &Content{Sniffed: "application/zip", Size: 1 << 20, Encrypted: true})
	if e.Action != Refuse || e.Rule != "encrypted-archive" || !strings.Contains(e.Reason.EN, "unencrypted") || !strings.Contains(e.Reason.JA, "パスワード") {
		t.Errorf("encrypted zip: %+v", e)
	}

	// An invitation is kept when both declared and sniffed as a calendar.
	ics := Part{MediaType: "text/calendar", Index: 2}
	if e := p.PartEnd(&ics, &Content{Sniffed: "text/calendar", Size: 3000, Held: true}); e.Action != Keep || e.Rule != "invitation" {
		t.Errorf("invitation: %+v", e)
	}
	if e := p.PartEnd(&ics, &Content{Sniffed: "application/pdf", Size: 3000, Held: true}); e.Action != Seal || e.Rule != "non-text" {
		t.Errorf("a PDF declared as an invitation: %+v", e)
	}

	// Multiparts are walked into; rules that need content never match them.
	if d := p.Part(&Part{MediaType: "multipart/related", HasFilename: true}); d.Action != Descend || d.Rule != "multipart" {
		t.Errorf("multipart/related: %+v", d)
	}
	if d := p.Part(&Part{MediaType: "multipart/signed"}); d.Action != Seal || d.Rule != "signed" {
		t.Errorf("multipart/signed: %+v", d)
	}
}

// A part the caller could not hold is never kept on a rule that needed its content.
func TestKeepNeedsHeld(t *testing.T) {
	p := mustParse(t, `
version = 1
keep_buffer = "1KiB"
[message_default]
action = "seal_attachments"
[[part]]
name = "pngs"
sniffed_type = ["image/png"]
action = "keep"
[[part]]
name = "text"
media_type = ["text/plain"]
action = "keep"
[part_default]
action = "seal"
`)
	f := Part{MediaType: "image/png", HasFilename: true, Filename: "a.png"}
	d := p.Part(&f)
	if d.Action != Pending || !d.MayKeep || !d.MaySeal || d.KeepLimit != 1<<10 || d.Needs != NeedSniff {
		t.Fatalf("png at start: %+v", d)
	}
	if e := p.PartEnd(&f, &Content{Sniffed: "image/png", Size: 5000, Held: false}); e.Action != Seal || e.Rule != "default" {
		t.Errorf("png not held: %+v", e)
	}
	if e := p.PartEnd(&f, &Content{Sniffed: "image/png", Size: 500, Held: true}); e.Action != Keep || e.Rule != "pngs" {
		t.Errorf("png held: %+v", e)
	}
	// Text: kept whatever the content, so the walker copies it raw and needs no buffer.
	f = Part{MediaType: "text/plain"}
	d = p.Part(&f)
	if d.Action != Pending || !d.MayKeep || d.MaySeal || d.KeepLimit != 0 {
		t.Fatalf("text at start: %+v", d)
	}
	if e := p.PartEnd(&f, &Content{Sniffed: "text/plain; charset=utf-8", Size: 5 << 20, Held: true}); e.Action != Keep || e.Rule != "text" {
		t.Errorf("text: %+v", e)
	}
	// A rule that needs content never matches a multipart.
	if e := p.PartEnd(&Part{MediaType: "multipart/mixed"}, &Content{Sniffed: "image/png", Held: true}); e.Action != Descend || e.Rule != WalkRule {
		t.Errorf("multipart: %+v", e)
	}
	if !strings.Contains(p.Describe("en"), "up to 1 KiB") {
		t.Errorf("Describe does not state the keep buffer:\n%s", p.Describe("en"))
	}
}

func TestFilenameSizeIndexMalware(t *testing.T) {
	p := mustParse(t, `
version = 1
[message_default]
action = "seal_attachments"
[[part]]
name = "malware"
malware = true
action = "refuse"
reason_ja = "ウイルスが検出されました。"
reason_en = "Malware was found."
[[part]]
name = "too-many"
index_at_least = 10
action = "refuse"
reason_ja = "添付は10個までです。"
reason_en = "At most 10 parts."
[[part]]
name = "exe"
filename = ["*.exe", "*.js", "*.scr"]
action = "refuse"
reason_ja = "実行ファイルは送れません。"
reason_en = "Executables cannot be sent."
[[part]]
name = "huge"
size_at_least = "100MiB"
action = "refuse"
reason_ja = "100 MiB 以上のファイルは送れません。"
reason_en = "Files of 100 MiB or more cannot be sent."
[part_default]
action = "seal"
`)
	for _, c := range []struct {
		f    Part
		c    Content
		rule string
	}{
		{Part{MediaType: "application/octet-stream", Filename: "SETUP.EXE", HasFilename: true}, Content{}, "exe"},
		{Part{MediaType: "application/octet-stream", Filename: `C:\tmp\ｓｅｔｕｐ．ｅｘｅ`, HasFilename: true}, Content{}, "exe"},
		{Part{MediaType: "application/pdf", Filename: "a.pdf", HasFilename: true, Index: 10}, Content{}, "too-many"},
		{Part{MediaType: "application/pdf", Filename: "a.pdf", HasFilename: true, Index: 9}, Content{Size: 100 << 20}, "huge"},
		{Part{MediaType: "application/pdf", Filename: "a.pdf", HasFilename: true, Index: 9}, Content{Size: 100<<20 - 1}, "default"},
		{Part{MediaType: "application/pdf", Filename: "a.pdf", HasFilename: true}, Content{Malware: true}, "malware"},
	} {
		if e := p.PartEnd(&c.f, &c.c); e.Rule != c.rule {
			t.Errorf("%+v %+v: %+v, want rule %s", c.f, c.c, e, c.rule)
		}
	}
	// A file name rule is decided at the start.
	if d := p.Part(&Part{MediaType: "application/x-msdownload", Filename: "a.exe", HasFilename: true}); d.Action != Pending || d.Needs != NeedMalware {
		t.Errorf("exe at start: %+v (the malware rule comes first)", d)
	}
}

func TestParseErrors(t *testing.T) {
	base := "version = 1\n[message_default]\naction = \"seal_attachments\"\n[part_default]\naction = \"seal\"\n"
	for _, c := range []struct{ src, want string }{
		{"colour = \"red\"\n" + base, "unknown keys: colour"},
		{base + "[[part]]\nname = \"x\"\nmedia_type = [\"a/b\"]\nactoin = \"keep\"\n", "unknown keys: part.actoin"},
		{"version = 1\n[part_default]\naction = \"seal\"\n", "message_default: the default is required"},
		{"version = 1\n[message_default]\naction = \"seal_attachments\"\n", "part_default: the default is required"},
		{strings.Replace(base, "version = 1", "version = 2", 1), "must be 1"},
		{base + "[[message]]\nname = \"r\"\nsubject = \"x\"\naction = \"refuse\"\n", "refuse needs reason_ja and reason_en"},
		{base + "[[message]]\nname = \"r\"\nsubject = \"(\"\naction = \"hold\"\n", "missing closing )"},
		{base + "[[message]]\nname = \"r\"\nsubject = \"(?=x)\"\naction = \"hold\"\n", "invalid or unsupported Perl syntax"},
		{base + "[[message]]\nname = \"r\"\nsender = [\"group:nobody\"]\naction = \"hold\"\n", "unknown group \"nobody\""},
		{base + "[[message]]\nname = \"r\"\nsender = [\"not an address\"]\naction = \"hold\"\n", "is not an address pattern"},
		{base + "[[message]]\nname = \"r\"\naction = \"hold\"\n", "use message_default instead"},
		{base + "[[message]]\nname = \"r\"\ncontract = [\"A\"]\naction = \"quarantine\"\n", "unknown action \"quarantine\""},
		{base + "[[message]]\nname = \"r\"\ncontract = [\"A\"]\naction = \"hold\"\n[[message]]\nname = \"r\"\ncontract = [\"B\"]\naction = \"hold\"\n", "name \"r\" is used twice"},
		{base + "[[message]]\nname = \"(walk)\"\ncontract = [\"A\"]\naction = \"hold\"\n", "letters, digits"},
		{base + "[[message]]\nname = \"r\"\nmsip_label = [{ id = \"nope\" }]\naction = \"hold\"\n", "is not a GUID"},
		{base + "[[message]]\nname = \"r\"\ncontract = [\"A\"]\naction = \"notify\"\n", "action notify needs notify"},
		{base + "[[part]]\nname = \"p\"\nsize_below = \"64KB\"\naction = \"keep\"\n", "is not a positive size"},
		{base + "[[part]]\nname = \"p\"\nsize_below = \"1GiB\"\naction = \"keep\"\n", "a keep rule holds the part in memory"},
		{base + "[[part]]\nname = \"p\"\nmedia_type = [\"image/[\"]\naction = \"keep\"\n", "not a valid pattern"},
		{base + "[[part]]\nname = \"p\"\nmedia_type = [\"image/png\"]\naction = \"keep\"\nreason_en = \"x\"\n", "for action = \"refuse\" only"},
		{"keep_buffer = \"1GiB\"\n" + base, "keep_buffer: must be between"},
		{base + "[[part]]\nname = \"p\"\nmedia_type = [\"image/*\"]\naction = \"walk\"\n", "action walk is for multiparts"},
		{"version = 1\n[message_default]\naction = \"notify\"\nnotify = [\"a@b.c\"]\n[part_default]\naction = \"seal\"\n", "the default must decide"},
		{"version = 1\n[message_default]\naction = \"hold\"\ncontract = [\"A\"]\n[part_default]\naction = \"seal\"\n", "the default has no predicates"},
		{"version = = 1", "invalid policy"},
	} {
		_, err := Parse([]byte(c.src))
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an ErrInvalid containing %q", c.src, err, c.want)
		}
	}
	if _, err := Parse([]byte(base)); err != nil {
		t.Errorf("minimal policy: %v", err)
	}
}

func TestHashIsOfTheBytes(t *testing.T) {
	a := "version = 1\n[message_default]\naction = \"seal_attachments\"\n[part_default]\naction = \"seal\"\n"
	b := "# the same policy, another comment\n" + a
	pa, pb := mustParse(t, a), mustParse(t, b)
	sum := sha256.Sum256([]byte(a))
	if pa.Hash() != hex.EncodeToString(sum[:]) || pa.Hash() == pb.Hash() {
		t.Errorf("hashes %s %s", pa.Hash(), pb.Hash())
	}
}

// BenchmarkDecide: the message rules of one message and the part rules of a three-part
// Outlook-style message (HTML body, inline logo, PDF), at start and at end, under the example
// policy with the most rules.
func BenchmarkDecide(b *testing.B) {
	p, err := Load("examples/contracts-and-confidential.toml")
	if err != nil {
		b.Fatal(err)
	}
	m := &Message{Sender: "a@example.co.jp", Recipients: []string{"b@client.example"}, Contract: "ACME",
		Header: header("Subject", "=?ISO-2022-JP?B?GyRCOC5BXD1xGyhC?=", "msip_labels", labelHeader)}
	parts := []Part{
		{MediaType: "text/html"},
		{MediaType: "image/png", Inline: true, Filename: "image001.png", HasFilename: true, Disposition: "inline", Index: 1},
		{MediaType: "application/pdf", Filename: "見積書.pdf", HasFilename: true, Disposition: "attachment", Index: 2},
	}
	content := []Content{{Sniffed: "text/html", Size: 4000, Held: true}, {Sniffed: "image/png", Size: 6000, Held: true}, {Sniffed: "application/pdf", Size: 20000}}
	for b.Loop() {
		if d := p.Message(m); d.Action != SealAttachments {
			b.Fatal(d)
		}
		for i := range parts {
			p.Part(&parts[i])
			p.PartEnd(&parts[i], &content[i])
		}
	}
}
