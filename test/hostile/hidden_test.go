package hostile

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"unicode/utf16"
)

// uuencode encodes data as uuencode lines after begin, with "`" and "end".
func uuencode(begin string, data []byte) string {
	enc := func(v byte) byte {
		if v == 0 {
			return '`'
		}
		return v + ' '
	}
	var b strings.Builder
	b.WriteString(begin + "\r\n")
	for len(data) > 0 {
		n := min(45, len(data))
		var line [48]byte
		copy(line[:], data[:n])
		data = data[n:]
		b.WriteByte(enc(byte(n)))
		for i := 0; i < n; i += 3 {
			c := line[i : i+3]
			b.WriteByte(enc(c[0] >> 2))
			b.WriteByte(enc((c[0]<<4 | c[1]>>4) & 63))
			b.WriteByte(enc((c[1]<<2 | c[2]>>6) & 63))
			b.WriteByte(enc(c[2] & 63))
		}
		b.WriteString("\r\n")
	}
	b.WriteString("`\r\nend\r\n")
	return b.String()
}

// hqx spells data in the BinHex 4.0 alphabet, 64 characters a line (not a valid BinHex file,
// but what a BinHex decoder reads as one).
func hqx(data []byte) string {
	const alphabet = "!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"
	var b strings.Builder
	b.WriteString("(This file must be converted with BinHex 4.0)\r\n\r\n:")
	col := 1
	for _, c := range data {
		b.WriteByte(alphabet[c&63])
		if col++; col == 64 {
			b.WriteString("\r\n")
			col = 0
		}
	}
	b.WriteString(":\r\n")
	return b.String()
}

func yenc(name string, data []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "=ybegin line=128 size=%d name=%s\r\n", len(data), name)
	for i, c := range data {
		c += 42
		if c == 0 || c == '\n' || c == '\r' || c == '=' {
			b.WriteByte('=')
			c += 64
		}
		b.WriteByte(c)
		if i%128 == 127 {
			b.WriteString("\r\n")
		}
	}
	fmt.Fprintf(&b, "\r\n=yend size=%d\r\n", len(data))
	return b.String()
}

func utf16LE(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return b
}

// TestHiddenFilesInText: files hidden inside text parts — uuencode (7bit,
// quoted-printable, base64), BinHex, yEnc, data: URIs (plain, obfuscated,
// in CSS), <object>, and HTML in UTF-16 — sent over SMTP to the real
// binary are sealed (250, one file), never delivered in clear and never
// refused; an ordinary HTML mail goes out with nothing sealed.
func TestHiddenFilesInText(t *testing.T) {
	g := startGateway(t)
	secret := randomBytes(t, 3000)
	uu := uuencode("begin 644 secret.pdf", secret)
	b64 := base64.StdEncoding.EncodeToString(secret)
	wrapped := b64Lines(secret) // SMTP lines end within 998 bytes; a data: URL may hold line breaks
	text := func(cte, body string) string {
		return "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: " + cte + "\r\n\r\n" + body + "\r\n"
	}
	alternative := func(htmlHeader, html string) string {
		return "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain\r\n\r\nsee the HTML\r\n" +
			"--alt\r\n" + htmlHeader + "\r\n" + html + "\r\n--alt--\r\n"
	}
	html := "Content-Type: text/html; charset=utf-8\r\n"
	cases := []struct {
		name      string
		body      string
		forbidden [][]byte
	}{
		{"uuencode, Outlook style", text("7bit", "Please find the file.\r\n\r\n"+uu), [][]byte{[]byte(uu)}},
		{"uuencode in quoted-printable", text("quoted-printable", qp([]byte("Hello\r\n"+uu))), [][]byte{[]byte(uu), []byte(qp([]byte(uu)))}},
		{"uuencode in base64", text("base64", b64Lines([]byte("Hello\r\n"+uu))), [][]byte{[]byte(uu), []byte(b64Lines([]byte("Hello\r\n" + uu)))}},
		{"BinHex", text("7bit", hqx(secret)), [][]byte{[]byte(hqx(secret))}},
		{"yEnc", text("8bit", yenc("secret.bin", secret)), [][]byte{[]byte(yenc("secret.bin", secret))}},
		{"data: URI image", alternative(html, `<p>Logo</p><img src="data:image/png;base64,`+wrapped+`">`), [][]byte{[]byte(b64)}},
		{"obfuscated data: URI", alternative(html, `<a href="d&#97;ta&colon;application/pdf;base64,`+wrapped+`">x</a>`), [][]byte{[]byte(b64)}},
		{"data: URI in CSS, quoted-printable", alternative(html+"Content-Transfer-Encoding: quoted-printable\r\n",
			qp([]byte(`<div style="background:url('DATA:image/png;base64,`+b64+`')">x</div>`))), [][]byte{[]byte(b64)}},
		{"object payload", alternative(html, `<object type="application/pdf"><param name="src" value="`+wrapped+`"></object>`), [][]byte{[]byte(b64)}},
		{"HTML in UTF-16", alternative("Content-Type: text/html; charset=utf-16le\r\nContent-Transfer-Encoding: base64\r\n",
			b64Lines(utf16LE(`<img src="data:image/png;base64,`+b64+`">`))), [][]byte{[]byte(b64Lines(utf16LE(`<img src="data:image/png;base64,` + b64 + `">`)))}},
	}
	for i, c := range cases {
		tag := fmt.Sprintf("hidden-%d@corp.example", i)
		code, reply := send(t, g.smtpAddr, sender, []string{external}, simpleMessage(tag, "", c.body))
		v := g.judge(tag, code, reply, append(c.forbidden, secret)...)
		if code != 250 || v.files != 1 {
			t.Fatalf("%s: %d %s, %d file(s) sealed: want 250 and the text part sealed", c.name, code, reply, v.files)
		}
		for _, m := range v.external {
			if bytes.Contains(m.Data, []byte("X-Sealgate-Notice: key")) {
				continue
			}
			if txt := decodedText(t, m.Data); !strings.Contains(txt, "本文の一部は暗号化して保管されました") || !strings.Contains(txt, "Part of the message text was encrypted") {
				t.Errorf("%s: the notice does not say that the text was sealed:\n%s", c.name, txt)
			}
		}
		t.Logf("%s: sealed", c.name)
	}

	// An ordinary HTML mail: nothing sealed, the HTML delivered as sent.
	tag := "hidden-none@corp.example"
	page := `<html><body><p class=MsoNormal>Data: Q3 figures, metadata: none.</p><img src="cid:logo@corp"></body></html>`
	code, reply := send(t, g.smtpAddr, sender, []string{external}, simpleMessage(tag, "", alternative(html, page)))
	v := g.judge(tag, code, reply)
	if code != 250 || v.files != 0 || len(v.external) != 1 || !bytes.Contains(v.external[0].Data, []byte(page)) {
		t.Fatalf("ordinary HTML: %d %s, %d file(s) sealed, delivered %d copies", code, reply, v.files, len(v.external))
	}
	g.alive()
}
