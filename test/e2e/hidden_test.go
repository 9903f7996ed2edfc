package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/internal/agecli"
	"github.com/sealgate/sealgate/internal/testsink"
)

// uuencodeFile encodes data the way Outlook's "UUENCODE" option does: the begin line, lines of
// 45 bytes, "`" and "end".
func uuencodeFile(begin string, data []byte) []byte {
	enc := func(v byte) byte {
		if v == 0 {
			return '`'
		}
		return v + ' '
	}
	var b bytes.Buffer
	b.WriteString(begin + "\r\n")
	for len(data) > 0 {
		n := min(45, len(data))
		var line [48]byte
		copy(line[:], data[:n])
		data = data[n:]
		b.WriteByte(enc(byte(n)))
		for i := 0; i < n; i += 3 {
			c := line[i : i+3]
			b.Write([]byte{enc(c[0] >> 2), enc((c[0]<<4 | c[1]>>4) & 63), enc((c[1]<<2 | c[2]>>6) & 63), enc(c[2] & 63)})
		}
		b.WriteString("\r\n")
	}
	b.WriteString("`\r\nend\r\n")
	return b.Bytes()
}

// uudecodeFile decodes the first uuencoded file in text.
func uudecodeFile(t testing.TB, text []byte) []byte {
	t.Helper()
	var out []byte
	in := false
	for _, line := range strings.Split(string(text), "\r\n") {
		switch {
		case !in && strings.HasPrefix(line, "begin "):
			in = true
		case in && (line == "end" || line == "`"):
			return out
		case in && line != "":
			n := int(line[0]-' ') & 63
			var q []byte
			for i := 1; i+3 < len(line)+1 && len(q) < n; i += 4 {
				var c [4]byte
				for j := range c {
					if i+j < len(line) {
						c[j] = (line[i+j] - ' ') & 63
					}
				}
				q = append(q, c[0]<<2|c[1]>>4, c[1]<<4|c[2]>>2, c[2]<<6|c[3])
			}
			out = append(out, q[:n]...)
		}
	}
	t.Fatal("no uuencoded file in the sealed text")
	return nil
}

// TestHiddenUuencodeEndToEnd: Outlook's "UUENCODE" option (a single-part text/plain message,
// ISO-2022-JP, the file uuencoded in the body, as Outlook and Thunderbird show an attachment)
// sent over SMTP to an internal and an external recipient. The internal copy is the message as
// sent; the external copy holds no byte of the uuencoded file, only a notice that says the text
// was sealed and why; the sealed .eml downloads through the portal, decrypts with the stock age
// CLI, and uudecodes to the original file.
func TestHiddenUuencodeEndToEnd(t *testing.T) {
	sink := startSink(t)
	g := startGateway(t, gwOptions{smarthost: sink.Addr()})
	pdf := append([]byte("%PDF-1.7\n"), randomBytes(40<<10)...)
	jisName := "\x1b$B8+@Q=q\x1b(B.pdf" // 見積書.pdf in ISO-2022-JP, as Outlook writes it
	uu := uuencodeFile("begin 600 "+jisName, pdf)
	var raw bytes.Buffer
	raw.WriteString("From: Alice <" + sender + ">\r\nTo: " + extA + ", " + internal + "\r\n" +
		"Subject: =?ISO-2022-JP?B?GyRCOCtAUT1xGyhC?=\r\nDate: Wed, 25 Nov 2026 10:00:00 +0900\r\n" +
		"Message-ID: <e2e-uuencode@corp.example>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain;\r\n\tcharset=\"iso-2022-jp\"\r\nContent-Transfer-Encoding: 7bit\r\n" +
		"X-Mailer: Microsoft Outlook 16.0\r\n\r\n")
	body := "\x1b$B$*@$OC$K$J$C$F$*$j$^$9!#\x1b(B\r\n\r\n" + string(uu)
	raw.WriteString(body)

	if err := send(t, g.smtpAddr, sender, []string{extA, internal}, raw.Bytes()); err != nil {
		t.Fatalf("send: %v", err)
	}
	msgs, err := sink.Wait(60*time.Second, func(m []testsink.Message) bool {
		d := classify(m)
		return len(d.plain) == 1 && len(d.copies) == 1
	})
	if err != nil {
		t.Fatalf("%v: got %d messages", err, len(msgs))
	}
	d := classify(msgs)
	if !bytes.Equal(d.plain[0].Data, raw.Bytes()) {
		t.Fatalf("internal copy differs from the original (%d vs %d bytes)", len(d.plain[0].Data), raw.Len())
	}

	// The external copy: no uuencoded byte, a notice in place of the text.
	c := d.copies[extA]
	if hasRun(c.Data, uu) || bytes.Contains(c.Data, []byte("begin 600")) || hasRun(c.Data, pdf) {
		t.Fatalf("the copy to %s carries the uuencoded file:\n%.600s", extA, c.Data)
	}
	msgs, err = sink.Wait(60*time.Second, func(m []testsink.Message) bool { return len(classify(m).keys) == 1 })
	if err != nil {
		t.Fatalf("key notice: %v", err)
	}
	d = classify(msgs)
	hdr, parts := parseMessage(t, c.Data)
	if hdr.Get("Message-Id") != "<e2e-uuencode@corp.example>" || hdr.Get("X-Mailer") != "Microsoft Outlook 16.0" {
		t.Errorf("top-level fields lost: %v", hdr.Header)
	}
	if len(parts) != 1 {
		t.Fatalf("copy has %d parts, want the notice alone", len(parts))
	}
	notice := string(parts[0].body)
	for _, want := range []string{"本文の一部は暗号化して保管されました", "uuencode 形式で埋め込まれたファイル",
		"because it carried a file embedded as uuencode", "見積書.pdf.eml"} {
		if !strings.Contains(notice, want) {
			t.Errorf("notice lacks %q:\n%s", want, notice)
		}
	}
	var reasons []string
	for _, ev := range g.ledger() {
		if ev.Type == "file.sealed" {
			reasons = append(reasons, ev.Details["reason"])
		}
	}
	if strings.Join(reasons, ",") != "uuencode" {
		t.Errorf("file.sealed events with reasons %v, want one, uuencode", reasons)
	}

	// The sealed file is the text part as a .eml: its Content-* fields and its body.
	eml := []byte("Content-Type: text/plain;\r\n\tcharset=\"iso-2022-jp\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" + body)
	_, token := linkOf(t, c)
	pass := passphraseOf(t, d.keys[extA])
	resp, got := postForm(t, g.url("/t/"+token+"/download"), form("passphrase", pass, "file", "0"))
	if resp.StatusCode != 200 || !bytes.Equal(got, eml) {
		t.Fatalf("portal download: %d, %d bytes, want the %d-byte .eml", resp.StatusCode, len(got), len(eml))
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, ".pdf.eml") {
		t.Errorf("download name: %q", cd)
	}
	if !bytes.Equal(uudecodeFile(t, got), pdf) {
		t.Fatal("the downloaded .eml does not uudecode to the original file")
	}

	// The stock age CLI: key.age with the passphrase, then file.age.
	if _, err := agecli.Path(); err != nil {
		if os.Getenv("SEALGATE_REQUIRE_TOOLS") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	_, keyAge := postForm(t, g.url("/t/"+token+"/age"), form("what", "key"))
	resp, fileAge := postForm(t, g.url("/t/"+token+"/age"), form("file", "0"))
	if resp.StatusCode != 200 {
		t.Fatalf("file.age: %d", resp.StatusCode)
	}
	os.WriteFile(filepath.Join(dir, "key.age"), keyAge, 0o600)
	os.WriteFile(filepath.Join(dir, "file.age"), fileAge, 0o600)
	out := filepath.Join(dir, "file.eml")
	if err := agecli.DecryptWithKeyFile(context.Background(), filepath.Join(dir, "key.age"), filepath.Join(dir, "file.age"), out, pass); err != nil {
		t.Fatal(err)
	}
	dec, _ := os.ReadFile(out)
	if !bytes.Equal(dec, eml) || !bytes.Equal(uudecodeFile(t, dec), pdf) {
		t.Fatal("stock age: the decrypted file is not the sealed text with the original file")
	}
}
