package mimeseal

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime/quotedprintable"
	"strings"
	"testing"
	"unicode/utf16"
)

// Files hidden inside kept text parts (issue 10, escape route 3): a uuencoded, BinHex, yEnc,
// btoa or PGP-armoured file in a text body, data: URIs and <object>/<embed>/srcdoc payloads
// in HTML. Each must seal the whole text part; a text part without one stays byte-identical.

// secretFile is the content of the hidden file in these tests.
var secretFile = func() []byte {
	b := []byte("SECRET-MARKER %PDF-1.7 confidential quotation\n")
	for i := 0; len(b) < 600; i++ {
		b = append(b, byte(i*37+11))
	}
	return b
}()

// uuencode encodes data as uuencode: the begin line, 45-byte lines, "`" and "end".
func uuencode(begin string, data []byte) string {
	var b strings.Builder
	b.WriteString(begin + "\r\n")
	b.WriteString(uuLines(data))
	b.WriteString("`\r\nend\r\n")
	return b.String()
}

// uuLines returns the uuencoded data lines of data (with "`" for zero, as Outlook writes).
func uuLines(data []byte) string {
	enc := func(v byte) byte {
		if v == 0 {
			return '`'
		}
		return v + ' '
	}
	var b strings.Builder
	for len(data) > 0 {
		n := min(45, len(data))
		line := data[:n]
		data = data[n:]
		b.WriteByte(enc(byte(n)))
		for i := 0; i < n; i += 3 {
			var c [3]byte
			copy(c[:], line[i:min(i+3, n)])
			b.WriteByte(enc(c[0] >> 2))
			b.WriteByte(enc((c[0]<<4 | c[1]>>4) & 63))
			b.WriteByte(enc((c[1]<<2 | c[2]>>6) & 63))
			b.WriteByte(enc(c[2] & 63))
		}
		b.WriteString("\r\n")
	}
	return b.String()
}

// yencode encodes data as a yEnc block (8-bit: NUL, LF, CR and "=" escaped).
func yencode(name string, data []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "=ybegin line=128 size=%d name=%s\r\n", len(data), name)
	col := 0
	for _, c := range data {
		c += 42
		switch c {
		case 0, '\n', '\r', '=':
			b.WriteByte('=')
			c += 64
			col++
		}
		b.WriteByte(c)
		if col++; col >= 128 {
			b.WriteString("\r\n")
			col = 0
		}
	}
	fmt.Fprintf(&b, "\r\n=yend size=%d\r\n", len(data))
	return b.String()
}

// hqxLine is a line of BinHex 4.0 data (its alphabet, 64 characters).
const hqxLine = ":#&\"bEf0[FQ9PG'PYC@jPER*PFh9cCA-ZD@jYFQpLE'&MD'PYGR0[FQ9PEfPZFR9bB@"

func b64Body(content []byte) string {
	enc := base64.StdEncoding.EncodeToString(content)
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.String()
}

func qpBody(content []byte) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write(content)
	w.Close()
	return string(crlf(b.String())) + "\r\n"
}

// encodeBody transfer-encodes content for a Content-Transfer-Encoding.
func encodeBody(cte string, content []byte) string {
	switch cte {
	case "base64":
		return b64Body(content)
	case "quoted-printable":
		return qpBody(content)
	}
	return string(content) + "\r\n"
}

// textMail is a multipart/mixed message whose first part has the given Content-Type and
// transfer encoding and the given (already encoded) body, followed by a kept text part.
func textMail(ct, cte, body string) []byte {
	var b bytes.Buffer
	b.Write(crlf(top + "Message-ID: <hidden@example.co.jp>\nContent-Type: multipart/mixed; boundary=\"hb\"\n\n--hb\n"))
	writeEntity(&b, ct, cte, body)
	b.Write(crlf("--hb\nContent-Type: text/plain; charset=us-ascii\n\nThe kept signature part.\n--hb--\n"))
	return b.Bytes()
}

// topText is a single-part message: the text part is the top-level entity.
func topText(ct, cte, body string) []byte {
	var b bytes.Buffer
	b.Write(crlf(top + "Message-ID: <hidden-top@example.co.jp>\nX-Mailer: Microsoft Outlook 16.0\n"))
	writeEntity(&b, ct, cte, body)
	return b.Bytes()
}

func writeEntity(b *bytes.Buffer, ct, cte, body string) {
	fmt.Fprintf(b, "Content-Type: %s\r\n", ct)
	if cte != "" {
		fmt.Fprintf(b, "Content-Transfer-Encoding: %s\r\n", cte)
	}
	b.WriteString("\r\n" + body)
}

type hiddenCase struct {
	name    string
	ct, cte string
	content string // decoded content; encoded with cte
	raw     string // the encoded body itself, when set (content is then unused)
	reason  string // "" = kept byte-identical
	file    string // expected Attachment.Filename
	opt     Options
}

func (c hiddenCase) body() string {
	if c.raw != "" {
		return c.raw
	}
	return encodeBody(c.cte, []byte(c.content))
}

const (
	plainCT = "text/plain; charset=us-ascii"
	htmlCT  = "text/html; charset=utf-8"
	note    = "Please find the file below.\r\n\r\n"
	regards = "\r\nRegards,\r\nTanaka\r\n"
)

var uuSecret = uuencode("begin 644 secret.pdf", secretFile)

func hiddenCases() []hiddenCase {
	uuData := uuLines(secretFile)
	b64Data := b64Body(secretFile)
	sjisName := "\x8c\xa9\x90\xcf\x8f\x91.pdf" // 見積書.pdf in Shift_JIS
	jisName := "\x1b$B8+@Q=q\x1b(B.pdf"        // 見積書.pdf in ISO-2022-JP
	html := func(s string) string { return "<html><body>\r\n" + s + "\r\n</body></html>" }
	img := "image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
	return []hiddenCase{
		// uuencode in text/plain, every transfer encoding.
		{name: "uuencode 7bit", ct: plainCT, cte: "7bit", content: note + uuSecret + regards, reason: "uuencode", file: "secret.pdf"},
		{name: "uuencode no cte", ct: plainCT, content: note + uuSecret + regards, reason: "uuencode", file: "secret.pdf"},
		{name: "uuencode quoted-printable", ct: plainCT, cte: "quoted-printable", content: note + uuSecret + regards, reason: "uuencode", file: "secret.pdf"},
		{name: "uuencode base64", ct: "text/plain; charset=utf-8", cte: "base64", content: note + uuSecret + regards, reason: "uuencode", file: "secret.pdf"},
		{name: "uuencode 8bit", ct: "text/plain; charset=utf-8", cte: "8bit", content: "添付します。\r\n" + uuSecret, reason: "uuencode", file: "secret.pdf"},
		{name: "uuencode mode 0644", ct: plainCT, content: uuencode("begin 0644 report.xls", secretFile), reason: "uuencode", file: "report.xls"},
		{name: "uuencode Outlook mode 600", ct: plainCT, content: note + uuencode("begin 600 Q3 plan.docx", secretFile), reason: "uuencode", file: "Q3 plan.docx"},
		{name: "uuencode Shift_JIS name", ct: "text/plain; charset=shift_jis", cte: "quoted-printable", content: uuencode("begin 644 "+sjisName, secretFile), reason: "uuencode", file: "見積書.pdf"},
		{name: "uuencode ISO-2022-JP name", ct: "text/plain; charset=iso-2022-jp", cte: "7bit", content: uuencode("begin 644 "+jisName, secretFile), reason: "uuencode", file: "見積書.pdf"},
		{name: "uuencode GNU begin-base64", ct: plainCT, content: "begin-base64 644 secret.bin\r\n" + b64Data + "====\r\n", reason: "uuencode", file: "secret.bin"},
		{name: "uuencode upper case", ct: plainCT, content: "BEGIN 644 SECRET.BIN\r\n" + uuData + "END\r\n", reason: "uuencode", file: "SECRET.BIN"},
		{name: "uuencode mixed case and tabs", ct: plainCT, content: "Begin\t644\tsecret.bin\r\n" + uuData, reason: "uuencode", file: "secret.bin"},
		{name: "uuencode after a UTF-8 BOM", ct: "text/plain; charset=utf-8", cte: "base64", content: "\xef\xbb\xbfbegin 644 secret.bin\r\n" + uuData, reason: "uuencode", file: "secret.bin"},
		{name: "uuencode indented", ct: plainCT, content: "   begin 644 secret.bin\r\n" + uuData, reason: "uuencode", file: "secret.bin"},
		{name: "uuencode two-digit mode", ct: plainCT, content: "begin 44 secret.bin\r\n" + uuData, reason: "uuencode", file: "secret.bin"},
		{name: "uuencode begin line only", ct: plainCT, content: "begin 644 secret.bin\r\n", reason: "uuencode", file: "secret.bin"},
		{name: "uuencode after a long text", ct: plainCT, cte: "quoted-printable", content: strings.Repeat("Lorem ipsum dolor sit amet.\r\n", 5000) + uuSecret, reason: "uuencode", file: "secret.pdf"},
		{name: "uuencode LF line ends", ct: plainCT, cte: "base64", content: strings.ReplaceAll(note+uuSecret, "\r\n", "\n"), reason: "uuencode", file: "secret.pdf"},
		{name: "uuencode CR line ends", ct: plainCT, cte: "base64", content: strings.ReplaceAll(note+uuSecret, "\r\n", "\r"), reason: "uuencode", file: "secret.pdf"},
		{name: "uuencode QP soft break in marker", ct: plainCT, cte: "quoted-printable", raw: "Hello\r\nbeg=\r\nin 644 secret.pdf\r\n" + qpBody([]byte(uuData)), reason: "uuencode", file: "secret.pdf"},
		{name: "uuencode QP encoded marker", ct: plainCT, cte: "quoted-printable", raw: "=62=65=67=69=6E=20644 secret.pdf\r\n" + qpBody([]byte(uuData)), reason: "uuencode", file: "secret.pdf"},
		{name: "uuencode flowed", ct: "text/plain; charset=utf-8; format=flowed", content: "Hello there, \r\nthe file:\r\n" + uuSecret, reason: "uuencode", file: "secret.pdf"},
		{name: "uuencode flowed after soft break", ct: "text/plain; format=flowed", content: "Hello there, \r\nbegin 644 secret.pdf\r\n" + uuData, reason: "uuencode", file: "secret.pdf"},
		{name: "uuencode flowed split marker", ct: "text/plain; format=flowed", content: "Hello\r\nbegin \r\n644 secret.pdf\r\n" + uuData, reason: "uuencode", file: "secret.pdf"},
		{name: "uuencode flowed delsp", ct: "text/plain; format=flowed; delsp=yes", content: "Hello\r\nbeg \r\nin 644 secret.pdf\r\n" + uuData, reason: "uuencode", file: "secret.pdf"},
		{name: "uuencode flowed space-stuffed", ct: "text/plain; format=flowed", content: "Hello\r\n begin 644 secret.pdf\r\n" + uuData, reason: "uuencode", file: "secret.pdf"},

		// BinHex 4.0, yEnc, btoa, PGP armour.
		{name: "binhex", ct: plainCT, content: note + "(This file must be converted with BinHex 4.0)\r\n\r\n" + hqxLine + "\r\n" + hqxLine[1:] + ":\r\n", reason: "binhex"},
		{name: "binhex lower case", ct: plainCT, cte: "quoted-printable", content: "(this file must be converted with binhex 4.0)\r\n" + hqxLine + "\r\n", reason: "binhex"},
		{name: "binhex data without banner", ct: plainCT, content: note + hqxLine + "\r\n" + hqxLine[1:] + ":\r\n", reason: "binhex"},
		{name: "yenc 8bit", ct: "text/plain; charset=iso-8859-1", cte: "8bit", content: note + yencode("secret.bin", secretFile), reason: "yenc", file: "secret.bin"},
		{name: "yenc quoted-printable", ct: "text/plain; charset=iso-8859-1", cte: "quoted-printable", content: yencode("secret.bin", secretFile), reason: "yenc", file: "secret.bin"},
		{name: "yenc upper case", ct: plainCT, content: "=YBEGIN LINE=128 SIZE=600 NAME=SECRET.BIN\r\nabc\r\n", reason: "yenc", file: "SECRET.BIN"},
		{name: "btoa", ct: plainCT, content: "xbtoa Begin\r\n" + "<~9jqo^BlbD-BleB1DJ+*+F(f,q/0JhKF<GL>Cj@.4Gp$d7F!,L7@<6@)/0JDEF<G%<+EV:2F!,O<DJ+*.@<*K0@<6L(Df-\\0Ec5e;DffZ(EZee.Bl.9pF\"AGXBPCsi+DGm>@3BB/F*&OCAfu2/AKYi(DIb:@FD,*)+C]U=@3BN#EcYf8ATD3s@q?d$AftVqCh[NqF<G:8+EV:.+Cf>-FD5W8ARlolDIal(DId<j@<?3r@:F%a+D58'ATD4$Bl@l3De:,-DJs`8ARoFb/0JMK@qB4^F!,R<AKZ&-DfTqBG%G>uD.RTpAKYo'+CT/5+Cei#DII?(E,9)oF*2M7/c~>\r\nxbtoa End N 123 7b E 2a S 1c8e R 4fe2\r\n", reason: "btoa"},
		{name: "pgp message", ct: plainCT, content: "-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA1234567890ABAf/fake\r\n=abcd\r\n-----END PGP MESSAGE-----\r\n", reason: "pgp"},
		{name: "pgp armored file", ct: plainCT, content: "-----BEGIN PGP ARMORED FILE-----\r\n\r\nowE=\r\n-----END PGP ARMORED FILE-----\r\n", reason: "pgp"},

		// Files in HTML.
		{name: "html img data", ct: htmlCT, content: html(`<p>Logo:</p><img src="data:` + img + `" alt="logo">`), reason: "data-uri"},
		{name: "html a data", ct: htmlCT, content: html(`<a href="data:application/pdf;base64,` + strings.ReplaceAll(b64Data, "\r\n", "") + `" download="secret.pdf">secret.pdf</a>`), reason: "data-uri"},
		{name: "html object", ct: htmlCT, content: html(`<object data="https://example.com/x.swf" type="application/x-shockwave-flash"></object>`), reason: "html-object"},
		{name: "html object upper case", ct: htmlCT, content: html(`<OBJECT CLASSID="clsid:D27CDB6E"><PARAM NAME="movie" VALUE="x.swf"></OBJECT>`), reason: "html-object"},
		{name: "html embed", ct: htmlCT, content: html(`<embed src="secret.pdf" type="application/pdf">`), reason: "html-object"},
		{name: "html applet", ct: htmlCT, content: html(`<applet code="X.class" archive="x.jar"></applet>`), reason: "html-object"},
		{name: "html iframe srcdoc", ct: htmlCT, content: html(`<iframe srcdoc="&lt;p&gt;hidden&lt;/p&gt;"></iframe>`), reason: "html-object"},
		{name: "html iframe data base64", ct: htmlCT, content: html(`<iframe src="data:text/html;base64,PGgxPnNlY3JldDwvaDE+"></iframe>`), reason: "data-uri"},
		{name: "html css style element", ct: htmlCT, content: "<html><head><style>\r\nbody { background: url(data:" + img + "); }\r\n</style></head><body>x</body></html>", reason: "data-uri"},
		{name: "html css style attribute", ct: htmlCT, content: html(`<div style="background-image:url('data:` + img + `')">x</div>`), reason: "data-uri"},
		{name: "html css font-face", ct: htmlCT, content: "<style>@font-face{font-family:x;src:url(\"data:font/woff2;base64,d09GMgABAAAAA\") format(\"woff2\")}</style>", reason: "data-uri"},
		{name: "html css escape", ct: htmlCT, content: html(`<style>div{background:url(d\61 ta:` + img + `)}</style>`), reason: "data-uri"},
		{name: "html css escape long", ct: htmlCT, content: html(`<div style="background:url(\000064\000061ta:` + img + `)">x</div>`), reason: "data-uri"},
		{name: "html css string continuation", ct: htmlCT, content: html("<style>div{background:url(\"da\\\r\nta:" + img + "\")}</style>"), reason: "data-uri"},
		{name: "html entity decimal", ct: htmlCT, content: html(`<img src="d&#97;ta:` + img + `">`), reason: "data-uri"},
		{name: "html entity hex", ct: htmlCT, content: html(`<img src="&#x64;&#X61;&#x74;&#x61;&#x3a;` + img + `">`), reason: "data-uri"},
		{name: "html entity leading zeros", ct: htmlCT, content: html(`<img src="&#` + strings.Repeat("0", 60) + `100;ata:` + img + `">`), reason: "data-uri"},
		{name: "html entity without semicolon", ct: htmlCT, content: html(`<img src="&#100ata:` + img + `">`), reason: "data-uri"},
		{name: "html entity colon", ct: htmlCT, content: html(`<img src="data&colon;` + img + `">`), reason: "data-uri"},
		{name: "html entity tab in scheme", ct: htmlCT, content: html(`<img src="da&Tab;ta:` + img + `">`), reason: "data-uri"},
		{name: "html entity newline in scheme", ct: htmlCT, content: html(`<img src="dat&NewLine;a:` + img + `">`), reason: "data-uri"},
		{name: "html upper case", ct: htmlCT, content: html(`<IMG SRC="DATA:` + strings.ToUpper(img) + `">`), reason: "data-uri"},
		{name: "html tab in scheme", ct: htmlCT, content: html("<img src=\"da\tta:" + img + "\">"), reason: "data-uri"},
		{name: "html newline in scheme", ct: htmlCT, content: html("<img src=\"da\r\nta:" + img + "\">"), reason: "data-uri"},
		{name: "html space in scheme", ct: htmlCT, content: html("<img src=\"da ta:" + img + "\">"), reason: "data-uri"},
		{name: "html leading white space", ct: htmlCT, content: html("<img src=\"  \t data:" + img + "\">"), reason: "data-uri"},
		{name: "html unquoted", ct: htmlCT, content: html(`<img src=data:` + img + `>`), reason: "data-uri"},
		{name: "html single-quoted", ct: htmlCT, content: html(`<img src='data:` + img + `'>`), reason: "data-uri"},
		{name: "html no space between attributes", ct: htmlCT, content: html(`<img alt="x"src="data:` + img + `">`), reason: "data-uri"},
		{name: "html slash separator", ct: htmlCT, content: html(`<img/src="data:` + img + `">`), reason: "data-uri"},
		{name: "html srcset", ct: htmlCT, content: html(`<img src="a.png" srcset="a.png 1x, data:` + img + ` 2x">`), reason: "data-uri"},
		{name: "html meta refresh", ct: htmlCT, content: "<html><head><meta http-equiv=\"refresh\" content=\"0;url=data:text/html;base64,PGgxPg==\"></head></html>", reason: "data-uri"},
		{name: "html svg image", ct: htmlCT, content: html(`<svg><image xlink:href="data:` + img + `"/></svg>`), reason: "data-uri"},
		{name: "html Outlook conditional comment", ct: htmlCT, content: html(`<!--[if gte mso 9]><v:rect><v:fill type="frame" src="data:` + img + `"/></v:rect><![endif]-->`), reason: "data-uri"},
		{name: "html quoted-printable", ct: htmlCT, cte: "quoted-printable", content: html(`<img src="data:` + img + `">`), reason: "data-uri"},
		{name: "html QP soft break in scheme", ct: htmlCT, cte: "quoted-printable", raw: "<img src=3D\"da=\r\nta:" + strings.TrimRight(img, "=") + "\">\r\n", reason: "data-uri"},
		{name: "html base64", ct: htmlCT, cte: "base64", content: html(`<img src="data:` + img + `">`), reason: "data-uri"},
		{name: "html uuencode", ct: htmlCT, content: "<html><body><pre>\r\n" + uuSecret + "</pre></body></html>", reason: "uuencode", file: "secret.pdf"},

		// ISO 2022 escape sequences vanish in decoding: "da<ESC>(Bta:" reads "data:".
		{name: "iso-2022-jp escape in scheme", ct: "text/html; charset=iso-2022-jp", content: html("<img src=\"da\x1b(Bta:" + img + "\">"), reason: "data-uri"},
		{name: "iso-2022-jp escape in begin", ct: "text/plain; charset=iso-2022-jp", content: "beg\x1b$B\x1b(Bin 644 secret.pdf\r\n" + uuData, reason: "uuencode", file: "secret.pdf"},
		{name: "iso-2022-jp shift in scheme", ct: "text/html; charset=iso-2022-kr", content: html("<img src=\"da\x0e\x0fta:" + img + "\">"), reason: "data-uri"},
		{name: "escape before scheme", ct: htmlCT, content: html("<img src=\"\x1b data:" + img + "\">"), reason: "data-uri"},

		// Charsets in which the markers are not ASCII: sealed, never guessed.
		{name: "charset utf-16", ct: "text/html; charset=utf-16", cte: "base64", content: utf16LE("<img src=\"data:" + img + "\">"), reason: "charset"},
		{name: "charset utf-16 plain", ct: "text/plain; charset=\"UTF-16LE\"", cte: "base64", content: utf16LE("hello"), reason: "charset"},
		{name: "charset utf-7", ct: "text/html; charset=utf-7", content: "+ADw-img src+AD0AIg-data:x+ACI-+AD4-", reason: "charset"},
		{name: "charset ebcdic", ct: "text/plain; charset=IBM037", content: "\xc8\x85\x93\x93\x96", reason: "charset"},
		{name: "charset BOM", ct: "text/html", cte: "base64", content: "\xff\xfe" + utf16LE("<img src=\"data:x\">"), reason: "charset"},
		{name: "charset BOM big-endian", ct: "text/plain", cte: "base64", content: "\xfe\xff\x00h\x00i", reason: "charset"},
		{name: "charset meta utf-7", ct: "text/html", content: `<html><head><meta charset="utf-7"></head><body>+ADw-img+AD4-</body></html>`, reason: "charset"},
		{name: "charset meta http-equiv utf-16", ct: "text/html", content: `<meta http-equiv="Content-Type" content="text/html; charset=UTF-16"><p>x</p>`, reason: "charset"},

		// Encodings that clients may decode differently from the walker: sealed, never guessed.
		{name: "base64 data after padding", ct: plainCT, cte: "base64", raw: "aGVsbG8=\r\n" + b64Body([]byte(uuSecret)), reason: "unparseable"},
		{name: "base64 invalid character", ct: plainCT, cte: "base64", raw: "aGVs*bG8K\r\n", reason: "unparseable"},
		{name: "quoted-printable invalid escape", ct: plainCT, cte: "quoted-printable", raw: "a =ZZ b\r\n", reason: "unparseable"},
		{name: "quoted-printable lone equals", ct: plainCT, cte: "quoted-printable", raw: "1 + 1 = 2\r\n", reason: "unparseable"},

		// Too large to hold and inspect: sealed whole.
		{name: "large text", ct: plainCT, content: strings.Repeat("A long report line without anything hidden in it.\r\n", 2000), reason: "large-text", opt: Options{Limits: Limits{MaxTextBytes: 64 << 10}}},
		{name: "large text with late carrier", ct: plainCT, content: strings.Repeat("x\r\n", 40<<10) + uuSecret, reason: "large-text", opt: Options{Limits: Limits{MaxTextBytes: 64 << 10}}},

		// Kept: nothing hidden.
		{name: "plain prose", ct: plainCT, content: "Begin 2026 with a plan.\r\nWe begin at 10:00.\r\nbegin\r\nbegin 644\r\nmetadata: none\r\nData: sent separately\r\n=y is a variable\r\nBinHex was a Mac format.\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\n"},
		{name: "plain weak begin without data", ct: plainCT, content: "Begin 2026 plans\r\nWe will meet on Monday.\r\n"},
		{name: "plain flowed", ct: "text/plain; charset=utf-8; format=flowed", content: "This is a long line that is \r\nwrapped softly, and we \r\nbegin the meeting at ten.\r\n-- \r\nTanaka\r\n"},
		{name: "plain quoted-printable", ct: "text/plain; charset=utf-8", cte: "quoted-printable", content: "お世話になっております。\r\n" + strings.Repeat("長い行です。", 40) + "\r\n"},
		{name: "plain base64", ct: "text/plain; charset=iso-2022-jp", cte: "base64", content: "\x1b$B$*@$OC$K$J$C$F$*$j$^$9!#\x1b(B\r\n"},
		{name: "plain data URI text", ct: plainCT, content: "Inline images look like data:image/png;base64,... in HTML.\r\n"},
		{name: "html begin at a line start", ct: htmlCT, content: "<p>We will\r\nbegin 2024 planning in May.</p>\r\n"},
		{name: "html ordinary", ct: htmlCT, cte: "quoted-printable", content: string(crlf(ordinaryHTML))},
		{name: "html ordinary 7bit", ct: htmlCT, content: string(crlf(ordinaryHTML))},
		{name: "large text just under the limit", ct: plainCT, content: strings.Repeat("x", 64<<10-2), opt: Options{Limits: Limits{MaxTextBytes: 64 << 10}}},
	}
}

// ordinaryHTML is an Outlook-like HTML body with nothing hidden in it.
const ordinaryHTML = `<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office">
<head><meta http-equiv=Content-Type content="text/html; charset=utf-8">
<meta name=Generator content="Microsoft Word 15 (filtered medium)">
<!--[if gte mso 9]><xml><o:shapedefaults v:ext="edit" spidmax="1026" /></xml><![endif]-->
<style><!-- p.MsoNormal {margin:0mm; font-size:10.5pt; font-family:"Yu Gothic",sans-serif;}
a:link {color:#0563C1; text-decoration:underline;} --></style></head>
<body lang=JA link="#0563C1" style='word-wrap:break-word'>
<div class=WordSection1><p class=MsoNormal>Data: sales figures for Q3 &amp; Q4 are in the portal.</p>
<p class=MsoNormal><a href="https://example.co.jp/metadata:view?id=1&amp;x=2">the portal</a></p>
<p class=MsoNormal><img width=120 height=40 src="cid:image001.png@01DA0000.00000000" alt="metadata: logo"></p>
<p title="the metadata: field">Objects, embeds and applets are words; 1 &lt; 2 &amp;&amp; 3 &gt; 2.</p>
<p>begin 644 is only text in HTML when not at a line start</p></div></body></html>`

func utf16LE(s string) string {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return string(b)
}

// TestHiddenFilesInText runs every case in a body part and as the top-level entity (Outlook's
// UUENCODE option sends a single-part text/plain message).
func TestHiddenFilesInText(t *testing.T) {
	for _, c := range hiddenCases() {
		for _, shape := range []struct {
			name  string
			build func(ct, cte, body string) []byte
			top   bool
		}{{"part", textMail, false}, {"top", topText, true}} {
			t.Run(c.name+"/"+shape.name, func(t *testing.T) {
				mt := strings.ToLower(strings.TrimSpace(strings.SplitN(c.ct, ";", 2)[0]))
				msg := shape.build(c.ct, c.cte, c.body())
				if c.reason == "" {
					checkMessageWith(t, msg, nil, false, c.opt)
					return
				}
				want := []Attachment{{Filename: c.file, ContentType: mt, Whole: true, Reason: c.reason}}
				checkMessageWith(t, msg, want, shape.top, c.opt)
				checkHiddenGone(t, msg, c)
			})
		}
	}
}

// checkHiddenGone checks that no line of the hidden part's encoded body, and no marker, is in
// the rendered message.
func checkHiddenGone(t *testing.T, msg []byte, c hiddenCase) {
	t.Helper()
	skel, _, _, _, err := run(t, msg, c.opt)
	if err != nil {
		t.Fatal(err)
	}
	out := render(t, skel, "NOTICE-TOKEN")
	for _, seg := range splitNotices(out, "NOTICE-TOKEN") {
		low := bytes.ToLower(seg)
		for _, m := range []string{"begin 644", "begin-base64", "=ybegin", "binhex", "data:", "<object", "<embed", "srcdoc", "xbtoa", "pgp message", "secret"} {
			if bytes.Contains(low, []byte(m)) {
				t.Errorf("marker %q is in the output:\n%s", m, out)
			}
		}
	}
	for _, line := range strings.Split(c.body(), "\r\n") {
		if len(line) >= 20 && bytes.Contains(out, []byte(line)) {
			t.Fatalf("a line of the hidden part is in the output: %q", line)
		}
	}
}

// The sealed file of a text part carrying a hidden file is the part as a .eml: its Content-*
// fields and its raw body, so that a mail program opens it as the sender wrote it.
func TestHiddenSealedAsEML(t *testing.T) {
	body := qpBody([]byte(note + uuSecret))
	msg := textMail("text/plain; charset=utf-8", "quoted-printable", body)
	_, res, s, _, err := run(t, msg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.parts) != 1 {
		t.Fatalf("sealed %d parts, want 1", len(s.parts))
	}
	// The CRLF before the delimiter belongs to the delimiter.
	want := "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + strings.TrimSuffix(body, "\r\n")
	if got := s.parts[0].data.String(); got != want {
		t.Fatalf("sealed file:\n%q\nwant\n%q", got, want)
	}
	if name := SafeName(res.Attachments[0]); name != "secret.pdf.eml" {
		t.Errorf("SafeName = %q", name)
	}
}

// Siblings the default policy already seals, kept here so that they stay sealed.
func TestHiddenFileSiblings(t *testing.T) {
	for _, c := range []struct {
		name, part string
		want       Attachment
	}{
		{"text/x-uuencode", "Content-Type: text/x-uuencode\n\n" + uuSecret, Attachment{ContentType: "text/x-uuencode", Reason: "non-text"}},
		{"mac-binhex40", "Content-Type: application/mac-binhex40\n\n(This file must be converted with BinHex 4.0)\n" + hqxLine + "\n", Attachment{ContentType: "application/mac-binhex40", Reason: "non-text"}},
		{"ms-tnef", "Content-Type: application/ms-tnef; name=\"winmail.dat\"\nContent-Transfer-Encoding: base64\n\neJ8+IgEAAQaQCAAEAAAAAAABAAEAAQeQBgAIAAAA5AQAAAAAAADoAAEIgAcAGAAAAElQTS5NaWNy\n", Attachment{Filename: "winmail.dat", ContentType: "application/ms-tnef", Reason: "filename"}},
		{"text with name only in Content-Type", "Content-Type: text/plain; name=\"notes.txt\"\n\nsecret notes\n", Attachment{Filename: "notes.txt", ContentType: "text/plain", Reason: "filename"}},
		{"uuencode transfer encoding", "Content-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\n" + uuSecret, Attachment{ContentType: "text/plain", Whole: true, Reason: "unparseable"}},
		// RFC 2183 section 2.8: an unrecognised disposition is treated as "attachment", and
		// clients show such a part as a file.
		{"unknown disposition", "Content-Type: text/plain\nContent-Disposition: attachement\n\nsecret notes\n", Attachment{ContentType: "text/plain", Reason: "attachment"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			msg := crlf(top + "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nkept text\n--b\n" + c.part + "--b--\n")
			checkMessage(t, msg, []Attachment{c.want}, false)
		})
	}
}

// A text part sealed for what it hides in an alternative leaves the other alternative kept.
func TestHiddenInAlternative(t *testing.T) {
	msg := crlf(top + "Content-Type: multipart/alternative; boundary=alt\n\n--alt\nContent-Type: text/plain; charset=utf-8\n\nLogo attached.\n" +
		"--alt\nContent-Type: text/html; charset=utf-8\n\n<p>Logo:<img src=\"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ\"></p>\n--alt--\n")
	checkMessage(t, msg, []Attachment{{ContentType: "text/html", Whole: true, Reason: "data-uri"}}, false)
}

// A bare line ending in a kept text part is still refused; in a text part sealed for what it
// hides, it is sealed with the part.
func TestHiddenBareLineEndings(t *testing.T) {
	_, _, _, _, err := run(t, []byte("From: a\r\nContent-Type: text/plain\r\n\r\nline\nmore\r\n"), Options{})
	wantKind(t, err, Malformed)
	_, res, _, _, err := run(t, []byte("From: a\r\nContent-Type: text/plain\r\n\r\n"+uuSecret+"line\nmore\r\n"), Options{})
	if err != nil || len(res.Attachments) != 1 || res.Attachments[0].Reason != "uuencode" {
		t.Fatalf("res %+v, err %v", res, err)
	}
}

// The default limit holds a text part of 1 MiB; a larger one is sealed whole.
func TestDefaultTextLimit(t *testing.T) {
	if DefaultLimits().MaxTextBytes != 1<<20 {
		t.Fatalf("MaxTextBytes = %d", DefaultLimits().MaxTextBytes)
	}
	line := "A long report line without anything hidden in it, 64 bytes....\r\n"
	under := textMail(plainCT, "", strings.Repeat(line, (1<<20)/len(line)))
	checkMessage(t, under, nil, false)
	over := textMail(plainCT, "", strings.Repeat(line, (1<<20)/len(line)+1))
	checkMessage(t, over, []Attachment{{ContentType: "text/plain", Whole: true, Reason: "large-text"}}, false)
}

// The small benchmark message is rewritten with its text and HTML byte-identical.
func TestSmallMessageKept(t *testing.T) {
	checkMessage(t, smallMessage(), []Attachment{{Filename: "quote.pdf", ContentType: "application/pdf", Reason: "attachment"}}, false)
}

// Inspection is linear in the text whatever its shape: character references without end,
// unterminated tags and values, CSS escapes, long lines, markers' first letters.
func TestHiddenInspectionLinear(t *testing.T) {
	opt := Options{Limits: Limits{MaxTextBytes: 4 << 20}}
	for name, unit := range map[string]string{
		"references":  "<a title='&#00000000000000000000000000000000000000000000000000&amp&colo",
		"open tags":   "<<<<<a <b <c d=e f='g h=\"",
		"css escapes": "<style>\\64\\61\\74\\61 \\\\\\ d a t a ",
		"one line":    "cccccccccccccccccccccccccccccccccccccccccccconverted with binhe",
		"lines":       "Begin 644 x\r\nBEGIN 7 y\r\n\r\n=y\r\n:!!\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			ct := htmlCT
			if name == "lines" {
				ct = plainCT
			}
			build := func(n int) []byte {
				return textMail(ct, "7bit", strings.Repeat(unit, n/len(unit))+"\r\n")
			}
			small, big := build(300<<10), build(3<<20)
			if _, res, _, _, err := run(t, big, opt); err != nil || len(res.Attachments) != 0 {
				t.Fatalf("err %v, %d sealed: the pathological text should be kept", err, len(res.Attachments))
			}
			checkLinear(t, name,
				fastest(func() { run(t, small, opt) }),
				fastest(func() { run(t, big, opt) }))
		})
	}
}
