package notice

import (
	"bytes"
	"flag"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.eml from the templates")

func testRenderer(t testing.TB) *Renderer {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{PublicURL: "https://sealgate.example/", From: "postmaster@sealgate.example", Hostname: "sealgate.example", Location: loc})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var (
	received = time.Date(2026, 11, 2, 9, 58, 0, 0, time.UTC)
	now      = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	pdf      = File{Index: 0, Name: "見積書 2026.pdf", Size: 1234567, SHA256: "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b", ContentType: "application/pdf"}
	dwg      = File{Index: 1, Name: "図面.dwg", Size: 2048, SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", ContentType: "application/octet-stream"}
	held     = Message{ID: "mabcdefgh", Contract: "C-2026-001", Sender: "alice@corp.example", Subject: "見積書の送付",
		Received: received, Recipients: []string{"carol@client.example", "dave@client.example"}, Files: []File{pdf, dwg}}
	key = Key{From: "alice@corp.example", Subject: "見積書の送付", Sender: "Alice <alice@corp.example>", Sent: received,
		References: "<orig.1234@corp.example>", Passphrase: "ABCDE-FGHJK-LMNPQ-RSTUV-WXYZ2-34567", Files: []File{pdf, dwg}}
	fingerprint = "SHA256:0123456789abcdefghijABCDEFGHIJ0123456789ab"
)

// golden are the notices of every kind, in every form, as the tests
// render them: name → recipients and notice.
func golden() map[string]Mail {
	handover := key
	handover.HandOverTo = "carol@client.example"
	registered := key
	registered.Passphrase, registered.Registered, registered.RegisteredKind = "", fingerprint, "age"
	bounce := Bounce{Arrival: received, Recipients: []string{"carol@client.example", "dave@client.example"}, Status: "5.1.1",
		Diagnostic: "550 5.1.1 <carol@client.example>: Recipient address rejected: User unknown", Subject: "見積書の送付", References: "<orig.1234@corp.example>"}
	bounceKey := bounce
	bounceKey.Recipients, bounceKey.KeyNotice = bounce.Recipients[:1], true
	receipt := HoldReceipt{Message: held, Approval: true, ApprovalExpires: received.Add(72 * time.Hour), ReleaseAt: received.Add(10 * time.Minute),
		CancelToken: "cancelcancelcancelcancelcancel23"}
	expiredReceipt := receipt
	expiredReceipt.Expired = true
	delayReceipt := receipt
	delayReceipt.Approval, delayReceipt.ApprovalExpires = false, time.Time{}
	approvalReceipt := receipt
	approvalReceipt.ReleaseAt, approvalReceipt.CancelToken = received, ""
	decision := func(d Decision, by, reason string, at time.Time) HoldDecision {
		return HoldDecision{Message: held, Decision: d, By: by, Reason: reason, At: at, ReleaseAt: received.Add(10 * time.Minute), ApprovalExpires: received.Add(72 * time.Hour)}
	}
	download := DownloadReceipt{Recipient: "carol@client.example", Subject: "見積書の送付", File: pdf.Name, Size: pdf.Size,
		At: time.Date(2026, 11, 3, 1, 2, 0, 0, time.UTC), IP: "203.0.113.7", Transfer: "tabcdefgh"}
	partial := download
	partial.Partial = &Partial{Sent: 65536}
	partialAge := download
	partialAge.Partial = &Partial{Age: true, Sent: 70000, Plaintext: 65536}
	alice := []string{"alice@corp.example"}
	carol := []string{"carol@client.example"}
	managers := []string{"boss@corp.example", "mgr@corp.example"}
	return map[string]Mail{
		"key":                          {To: carol, Notice: key},
		"key-handover":                 {To: alice, Notice: handover},
		"key-registered":               {To: carol, Notice: registered},
		"bounce":                       {To: alice, Notice: bounce},
		"bounce-key":                   {To: alice, Notice: bounceKey},
		"approval-request":             {To: managers, Notice: ApprovalRequest{Message: held, Expires: received.Add(72 * time.Hour)}},
		"approval-request-expired":     {To: managers, Notice: ApprovalRequest{Message: held, Expires: received.Add(72 * time.Hour), Expired: true}},
		"hold-receipt":                 {To: alice, Notice: receipt},
		"hold-receipt-expired":         {To: alice, Notice: expiredReceipt},
		"hold-receipt-delay":           {To: alice, Notice: delayReceipt},
		"hold-receipt-approval":        {To: alice, Notice: approvalReceipt},
		"hold-decision-approved":       {To: alice, Notice: decision(Approved, "boss", "ok / 問題なし", received.Add(time.Minute))},
		"hold-decision-approved-now":   {To: alice, Notice: decision(Approved, "boss", "", received.Add(time.Hour))},
		"hold-decision-refused":        {To: alice, Notice: decision(Refused, "boss", "宛先の確認が必要 / check the recipient", received.Add(time.Hour))},
		"hold-decision-expired":        {To: alice, Notice: decision(Expired, "system", "", received.Add(73*time.Hour))},
		"hold-decision-cancelled":      {To: alice, Notice: decision(Cancelled, "alice", "", received.Add(time.Minute))},
		"download-receipt":             {To: alice, Notice: download},
		"download-receipt-partial":     {To: alice, Notice: partial},
		"download-receipt-partial-age": {To: alice, Notice: partialAge},
		"key-registration": {To: carol, Notice: KeyRegistration{Address: "carol@client.example", Kind: "age",
			PublicKey: "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", Fingerprint: fingerprint, RequestedBy: "192.0.2.1",
			Expires: time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC), Token: "verifytokenverifytokenverifytoken0123456789a"}},
		"account-locked": {To: []string{"root@corp.example", "admin2@corp.example"}, Notice: AccountLocked{Name: "carol", Email: "carol@corp.example",
			Until: time.Date(2026, 11, 2, 10, 30, 0, 0, time.UTC), LastIP: "203.0.113.9"}},
		"witness-down": {To: []string{"root@corp.example"}, Notice: WitnessAlert{Problem: "down", Witness: "client-witness",
			URL: "https://witness.client.example", Key: "witness.client.example+28611046", Size: 1204,
			Since: time.Date(2026, 11, 2, 10, 30, 0, 0, time.UTC), Failures: 3,
			Detail: `unreachable: Post "https://witness.client.example/add-checkpoint": dial tcp: connection refused`}},
		"witness-rejected": {To: []string{"root@corp.example"}, Notice: WitnessAlert{Problem: "rejected", Witness: "client-witness",
			URL: "https://witness.client.example", Key: "witness.client.example+28611046", Size: 1204,
			Since: time.Date(2026, 11, 2, 10, 30, 0, 0, time.UTC), Failures: 1,
			Detail: "404: the witness does not know this ledger (witness: unknown log)"}},
		"witness-refused": {To: []string{"root@corp.example"}, Notice: WitnessAlert{Problem: "refused", Witness: "client-witness",
			URL: "https://witness.client.example", Key: "witness.client.example+28611046", Size: 1290,
			Since: time.Date(2026, 11, 2, 10, 30, 0, 0, time.UTC), Failures: 1,
			Detail: "422: the witness refused the checkpoint of size 1290: its consistency proof from size 1204 does not verify"}},
		"witness-recovered": {To: []string{"root@corp.example"}, Notice: WitnessAlert{Problem: "recovered", Witness: "client-witness",
			URL: "https://witness.client.example", Key: "witness.client.example+28611046", Size: 1301}},
		"policy-alert": {To: []string{"security@corp.example"}, Notice: PolicyAlert{Rule: "confidential-subject", Action: "seal_message",
			MessageID: "mabcdefgh", Sender: "alice@corp.example", Recipients: held.Recipients, Subject: "【機密】見積条件", Contract: "C-2026-001",
			Received: received, PolicyHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}},
		"policy-alert-hold": {To: []string{"security@corp.example"}, Notice: PolicyAlert{Rule: "purview-highly-confidential", Action: "hold",
			MessageID: "mabcdefgh", Sender: "alice@corp.example", Recipients: held.Recipients, Subject: "設計図", Received: received,
			PolicyHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}},
	}
}

// goldenLinks are the link notices, in every form.
func goldenLinks() map[string]Link {
	token := "abcdefghijklmnopqrstuvwxyz234567"
	expires := time.Date(2026, 11, 16, 10, 0, 0, 0, time.UTC)
	text := File{Index: 2, Name: "message.eml", Size: 30000, SHA256: pdf.SHA256, ContentType: "text/plain"}
	return map[string]Link{
		"link":            {Token: token, Expires: expires, File: pdf},
		"link-registered": {Token: token, Expires: expires, File: dwg, Registered: fingerprint},
		"link-hidden":     {Token: token, Expires: expires, File: text, Hidden: "uuencode"},
		"link-scanned":    {Token: token, Expires: expires, File: pdf, Scanned: true},
		"link-message": {Token: token, Expires: expires, Scanned: true, Message: true,
			File: File{Index: 0, Name: "message.eml", Size: 48213, SHA256: pdf.SHA256, ContentType: "message/rfc822"}},
	}
}

// compare checks got against testdata/name.eml (or rewrites it).
func compare(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".eml")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./notice -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (go test ./notice -update rewrites it):\n%s", name, path, decoded(t, got))
	}
}

// TestGolden renders every notice and compares it, byte for byte, with
// testdata: a change of wording or of a header is a visible diff there.
func TestGolden(t *testing.T) {
	r := testRenderer(t)
	for name, m := range golden() {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := r.Write(&b, Header{To: m.To, ID: "ntest", Date: now}, m.Notice); err != nil {
				t.Fatal(err)
			}
			checkMail(t, b.Bytes(), m)
			compare(t, name, b.Bytes())
		})
	}
	for name, l := range goldenLinks() {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := r.WriteLink(&b, l); err != nil {
				t.Fatal(err)
			}
			compare(t, name, b.Bytes())
		})
	}
	// Every file in testdata is a kind the test renders.
	files, _ := filepath.Glob("testdata/*.eml")
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".eml")
		if _, ok := golden()[name]; !ok {
			if _, ok := goldenLinks()[name]; !ok {
				t.Errorf("%s renders nothing: remove it", f)
			}
		}
	}
}

// checkMail parses a rendered mail as a mail program would: CRLF line
// ends, the header fields every notice has, a subject that decodes to the
// template's, a bilingual text.
func checkMail(t *testing.T, raw []byte, m Mail) {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("a bare LF")
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	h := msg.Header
	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	r := testRenderer(t)
	wantSubject, wantText, err := r.Text(m.Notice)
	if err != nil {
		t.Fatal(err)
	}
	if subject != wantSubject {
		t.Errorf("subject %q, want %q", subject, wantSubject)
	}
	if h.Get("Message-Id") != "<ntest@sealgate.example>" || h.Get("Date") != now.Format(time.RFC1123Z) || h.Get("Mime-Version") != "1.0" {
		t.Errorf("header %v", h)
	}
	to, err := h.AddressList("To")
	if err != nil || len(to) != len(m.To) {
		t.Errorf("To %q: %v", h.Get("To"), err)
	}
	text := ""
	switch n := m.Notice.(type) {
	case Bounce:
		if h.Get("Auto-Submitted") != "auto-replied" || h.Get("X-Sealgate-Notice") != "" || h.Get("From") != "Mail Delivery System <postmaster@sealgate.example>" {
			t.Errorf("bounce header %v", h)
		}
		_, params, _ := mime.ParseMediaType(h.Get("Content-Type"))
		mr := multipart.NewReader(msg.Body, params["boundary"])
		p, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := readAll(p)
		text = string(b)
		p, err = mr.NextPart()
		if err != nil || p.Header.Get("Content-Type") != "message/delivery-status" {
			t.Fatalf("delivery status part: %v", err)
		}
		status, _ := readAll(p)
		for _, r := range n.Recipients {
			if !bytes.Contains(status, []byte("Final-Recipient: rfc822; "+r+"\r\nAction: failed\r\nStatus: "+n.Status+"\r\n")) {
				t.Errorf("no status for %s:\n%s", r, status)
			}
		}
	default:
		want := "system"
		if k, ok := n.(Key); ok {
			want = "key"
			if h.Get("From") != "<"+k.From+">" || h.Get("References") != k.References {
				t.Errorf("key notice header %v", h)
			}
		} else if h.Get("From") != "sealgate <postmaster@sealgate.example>" {
			t.Errorf("From %q", h.Get("From"))
		}
		if h.Get("X-Sealgate-Notice") != want || h.Get("Auto-Submitted") != "auto-generated" || h.Get("Content-Transfer-Encoding") != "quoted-printable" {
			t.Errorf("header %v", h)
		}
		b, _ := readAll(quotedprintable.NewReader(msg.Body))
		text = string(b)
	}
	if text != strings.ReplaceAll(wantText, "\n", "\r\n") {
		t.Errorf("text %q, want %q", text, wantText)
	}
	if !bilingual(wantText) {
		t.Errorf("not Japanese then English:\n%s", wantText)
	}
}

// bilingual: the text has Japanese, and English words after its first
// Japanese.
func bilingual(s string) bool {
	ja := strings.IndexFunc(s, func(r rune) bool { return r >= 0x3040 && r <= 0x9fff })
	return ja >= 0 && englishRE.MatchString(s[ja:])
}

var englishRE = regexp.MustCompile(`[A-Z][a-z]+ [a-z]+ [a-z]+`)

func readAll(r interface{ Read([]byte) (int, error) }) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(r)
	return b.Bytes(), err
}

// decoded shows a rendered notice as a person reads it.
func decoded(t *testing.T, raw []byte) string {
	head, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	text, err := readAll(quotedprintable.NewReader(bytes.NewReader(body)))
	if err != nil {
		return string(raw)
	}
	return fmt.Sprintf("%s\n\n%s", head, text)
}

// TestHiddenReasonUnknown: a reason with no sentence in reasons.tmpl (an
// attachment's, or one this version does not know) gives the attachment's
// notice, never a half-empty sentence.
func TestHiddenReasonUnknown(t *testing.T) {
	r := testRenderer(t)
	l := goldenLinks()["link"]
	var plain, other bytes.Buffer
	if err := r.WriteLink(&plain, l); err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{"attachment", "policy", "no such reason"} {
		l.Hidden = reason
		other.Reset()
		if err := r.WriteLink(&other, l); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(plain.Bytes(), other.Bytes()) {
			t.Errorf("reason %q changes the notice:\n%s", reason, decoded(t, other.Bytes()))
		}
	}
}

// TestHiddenReasons: a text part sealed whole for the file it hid gets a
// notice that says the text was sealed and why, in both languages, and
// never speaks of an attachment.
func TestHiddenReasons(t *testing.T) {
	r := testRenderer(t)
	for _, c := range []struct{ reason, ja, en string }{
		{"uuencode", "このメールの本文の一部は、uuencode 形式で埋め込まれたファイルを含んでいたため", "because it carried a file embedded as uuencode"},
		{"data-uri", "HTML に埋め込まれたファイル (data: URI) を含んでいたため", "because it carried a file embedded in its HTML (a data: URI)"},
		{"large-text", "検査できない大きさだったため", "because it is too large to be inspected for embedded files"},
	} {
		l := goldenLinks()["link"]
		l.Hidden = c.reason
		var b bytes.Buffer
		if err := r.WriteLink(&b, l); err != nil {
			t.Fatal(err)
		}
		text := decoded(t, b.Bytes())
		for _, want := range []string{c.ja, c.en, "■ 本文の一部は暗号化して保管されました", "■ Part of the message text was encrypted and stored", ".eml"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: notice lacks %q:\n%s", c.reason, want, text)
			}
		}
		if strings.Contains(text, "添付されていたファイル") || strings.Contains(text, "The file attached to this message") {
			t.Errorf("%s: the notice speaks of an attachment:\n%s", c.reason, text)
		}
	}
}

// BenchmarkRender renders what the queue renders for one sealed message
// to one recipient: its link notice and its key notice.
func BenchmarkRender(b *testing.B) {
	r := testRenderer(b)
	l := goldenLinks()["link"]
	var w bytes.Buffer
	for b.Loop() {
		w.Reset()
		if err := r.WriteLink(&w, l); err != nil {
			b.Fatal(err)
		}
		if err := r.Write(&w, Header{To: []string{"carol@client.example"}, ID: "ntest", Date: now}, key); err != nil {
			b.Fatal(err)
		}
	}
}
