package mimeseal_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/emersion/go-message/textproto"
	"github.com/sealgate/sealgate/gateway/mimeseal"
)

// discardSealer stands in for the gateway's Sealer (which encrypts and stores).
type discardSealer struct{}

func (discardSealer) Begin(a mimeseal.Attachment) (mimeseal.PartWriter, error) {
	return &countingPart{name: mimeseal.SafeName(a)}, nil
}

type countingPart struct {
	name string
	n    int
}

func (p *countingPart) Write(b []byte) (int, error) { p.n += len(b); return len(b), nil }
func (p *countingPart) Close() error                { fmt.Printf("sealed %s: %d bytes\n", p.name, p.n); return nil }
func (p *countingPart) Abort(error)                 {}

func Example() {
	msg := strings.ReplaceAll(`From: tanaka@example.co.jp
To: suzuki@example.com
Bcc: audit@example.co.jp
Subject: quote
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain

Please find the quote attached.
--b
Content-Type: application/pdf
Content-Disposition: attachment; filename*=UTF-8''%E8%A6%8B%E7%A9%8D.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQKJcOkw7zDtsOfCg==
--b--
`, "\n", "\r\n")

	// During DATA: one pass, skeleton to the spool, sealed parts to the Sealer.
	var skeleton bytes.Buffer
	res, err := mimeseal.Rewrite(&skeleton, mimeseal.NewCRLFReader(strings.NewReader(msg)), discardSealer{},
		mimeseal.Options{EditHeader: func(h *textproto.Header) { h.Del("Bcc") }})
	if err != nil {
		fmt.Println(mimeseal.KindOf(err), err)
		return
	}
	fmt.Println(len(res.Attachments), res.Attachments[0].Filename, res.Attachments[0].Reason)

	// Per recipient: the skeleton with a download notice in place of each sealed part.
	notice := func(w io.Writer, a mimeseal.Attachment) error {
		name := mimeseal.SafeName(a)
		_, err := fmt.Fprintf(w, "Content-Type: text/plain; charset=utf-8\r\n\r\n%s (%s) was sealed: https://files.example/...\r\n",
			name, mimeseal.FinalExtension(name))
		return err
	}
	var out bytes.Buffer
	if err := mimeseal.Render(&out, bytes.NewReader(skeleton.Bytes()), notice); err != nil {
		fmt.Println(err)
		return
	}
	os.Stdout.WriteString(strings.ReplaceAll(out.String(), "\r\n", "\n"))
	// Output:
	// sealed 見積.pdf: 19 bytes
	// 1 見積.pdf attachment
	// From: tanaka@example.co.jp
	// To: suzuki@example.com
	// Subject: quote
	// MIME-Version: 1.0
	// Content-Type: multipart/mixed; boundary="b"
	//
	// --b
	// Content-Type: text/plain
	//
	// Please find the quote attached.
	// --b
	// Content-Type: text/plain; charset=utf-8
	//
	// 見積.pdf (.pdf) was sealed: https://files.example/...
	//
	// --b--
}
