package mimeseal

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/sealgate/sealgate/policy"
)

// genReader streams a message with one base64 attachment of bodySize bytes of encoded lines
// (76 characters and CRLF), generated on the fly from a repeated 1 MiB block.
type genReader struct {
	head   []byte
	block  []byte
	tail   []byte
	remain int64 // body bytes left
	cur    []byte
	stage  int
}

const lineLen = 78 // 76 characters + CRLF

// genBlock returns ≈ 1 MiB of base64 lines of random data.
func genBlock() []byte {
	r := rand.New(rand.NewPCG(42, 42))
	raw := make([]byte, 57*13443) // ≈ 1 MiB of lines
	for i := range raw {
		raw[i] = byte(r.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	var block bytes.Buffer
	for i := 0; i < len(enc); i += 76 {
		block.WriteString(enc[i : i+76])
		block.WriteString("\r\n")
	}
	return block.Bytes()
}

func newGen(block []byte, bodySize int64) *genReader {
	return &genReader{
		head: crlf("From: a@example.com\nTo: b@example.com\nSubject: big\nMIME-Version: 1.0\n" +
			"Content-Type: multipart/mixed; boundary=\"bench-boundary\"\n\n--bench-boundary\n" +
			"Content-Type: text/plain\n\nSee attachment.\n--bench-boundary\n" +
			"Content-Type: application/octet-stream; name=\"big.bin\"\nContent-Disposition: attachment; filename=\"big.bin\"\n" +
			"Content-Transfer-Encoding: base64\n\n"),
		block:  block,
		tail:   crlf("--bench-boundary--\n"),
		remain: bodySize / lineLen * lineLen,
	}
}

func (g *genReader) size() int64 { return int64(len(g.head)) + g.remain + int64(len(g.tail)) }

func (g *genReader) Read(p []byte) (int, error) {
	for len(g.cur) == 0 {
		switch {
		case g.stage == 0:
			g.cur, g.stage = g.head, 1
		case g.stage == 1 && g.remain > 0:
			n := min(int64(len(g.block)), g.remain)
			g.cur, g.remain = g.block[:n], g.remain-n
		case g.stage == 1:
			g.cur, g.stage = g.tail, 2
		default:
			return 0, io.EOF
		}
	}
	n := copy(p, g.cur)
	g.cur = g.cur[n:]
	return n, nil
}

type countSealer struct{ n int64 }

func (c *countSealer) Begin(Attachment) (PartWriter, error) { return c, nil }
func (c *countSealer) Write(p []byte) (int, error)          { c.n += int64(len(p)); return len(p), nil }
func (c *countSealer) Close() error                         { return nil }
func (c *countSealer) Abort(error)                          {}

// BenchmarkRewriteBase64 measures scan + decode of one big base64 attachment (MB/s of encoded
// input). Allocations per op do not grow with the size.
func BenchmarkRewriteBase64(b *testing.B) {
	for _, size := range []int64{4 << 20, 64 << 20, 1 << 30} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			block := genBlock()
			b.SetBytes(newGen(block, size).size())
			b.ReportAllocs()
			for b.Loop() {
				g := newGen(block, size)
				s := &countSealer{}
				if _, err := Rewrite(io.Discard, g, s, Options{}); err != nil {
					b.Fatal(err)
				}
				if s.n != size/lineLen*57 {
					b.Fatalf("decoded %d bytes", s.n)
				}
			}
		})
	}
}

// BenchmarkRewriteBase64CRLF is the same with NewCRLFReader in front, as the gateway runs it.
func BenchmarkRewriteBase64CRLF(b *testing.B) {
	const size = 64 << 20
	block := genBlock()
	b.SetBytes(newGen(block, size).size())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Rewrite(io.Discard, NewCRLFReader(newGen(block, size)), &countSealer{}, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStdlibBase64Decoder is the baseline: encoding/base64's streaming decoder alone on
// the same input (no MIME scan).
func BenchmarkStdlibBase64Decoder(b *testing.B) {
	const size = 64 << 20
	block := genBlock()
	b.SetBytes(newGen(block, size).size())
	for b.Loop() {
		g := newGen(block, size)
		g.stage = 1
		if _, err := io.Copy(io.Discard, base64.NewDecoder(base64.StdEncoding, g)); err == nil {
			// the tail is not base64; the error there is expected
		}
	}
}

// BenchmarkGenerator is the cost of producing the input alone.
func BenchmarkGenerator(b *testing.B) {
	const size = 64 << 20
	block := genBlock()
	b.SetBytes(newGen(block, size).size())
	buf := make([]byte, 64<<10)
	for b.Loop() {
		g := newGen(block, size)
		for {
			if _, err := g.Read(buf); err != nil {
				break
			}
		}
	}
}

// BenchmarkRewriteManyParts measures the per-part cost: 500 small sealed parts.
func BenchmarkRewriteManyParts(b *testing.B) {
	msg := manyParts(500, true)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Rewrite(io.Discard, bytes.NewReader(msg), &countSealer{}, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// smallMessage is a typical business mail: a multipart/alternative body (plain text and
// HTML, quoted-printable, Japanese) and a 20 KiB PDF attachment.
func smallMessage() []byte {
	var b bytes.Buffer
	b.Write(crlf("From: =?UTF-8?B?55Sw5Lit?= <tanaka@example.co.jp>\nTo: suzuki@client.example\n" +
		"Subject: =?UTF-8?B?6KaL56mN5pu4?=\nMessage-ID: <small-1@example.co.jp>\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=\"mix\"\n\n--mix\n" +
		"Content-Type: multipart/alternative; boundary=\"alt\"\n\n--alt\n" +
		"Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n\n"))
	line := "=E3=81=8A=E4=B8=96=E8=A9=B1=E3=81=AB=E3=81=AA=E3=81=A3=E3=81=A6=E3=81=8A=E3=82=8A=E3=81=BE=E3=81=99=E3=80=82=\r\n"
	for range 20 {
		b.WriteString(line)
	}
	b.WriteString("\r\n--alt\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	b.WriteString("<html><head><style>p {margin:0; font-family:\"Meiryo\"}</style></head><body>\r\n")
	for range 60 {
		b.WriteString("<p class=3D\"MsoNormal\"><span style=3D\"font-size:10.5pt\">" + line[:len(line)-3] + "</span></p>\r\n")
	}
	b.WriteString("<a href=3D\"https://example.co.jp/\">example</a></body></html>\r\n--alt--\r\n\r\n--mix\r\n")
	b.WriteString("Content-Type: application/pdf; name=\"quote.pdf\"\r\nContent-Disposition: attachment; filename=\"quote.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	pdf := make([]byte, 20<<10)
	for i := range pdf {
		pdf[i] = byte(i * 7)
	}
	enc := base64.StdEncoding.EncodeToString(pdf)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--mix--\r\n")
	return b.Bytes()
}

// BenchmarkRewriteSmall measures one typical small message with recycled buffers, as the
// gateway runs it: the per-message cost that bounds throughput for small mail.
func BenchmarkRewriteSmall(b *testing.B) {
	msg := smallMessage()
	bufs := NewBuffers()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Rewrite(io.Discard, bytes.NewReader(msg), &countSealer{}, Options{Buffers: bufs}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRewriteSmallPolicy is BenchmarkRewriteSmall under a policy file: the built-in
// default (what the gateway runs without a policy.file, header rules only), and the example
// whose content rules (an encrypted-archive check on every part, inline logos, invitations)
// make every leaf wait for its content.
func BenchmarkRewriteSmallPolicy(b *testing.B) {
	msg := smallMessage()
	for _, c := range []struct {
		name string
		p    *policy.Policy
	}{{"default", policy.Default()}, {"contracts-and-confidential", loadExample(b, "contracts-and-confidential.toml")}} {
		b.Run(c.name, func(b *testing.B) {
			bufs := NewBuffers()
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Rewrite(io.Discard, bytes.NewReader(msg), &countSealer{}, Options{Buffers: bufs, Policy: c.p}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
