package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/smtp"
	"net/url"
	"regexp"
	"testing"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
)

type attachment struct {
	name        string // UTF-8
	contentType string
	data        []byte
	rfc2047     bool // encode the name RFC 2047 style instead of RFC 2231
}

// buildMessage builds a multipart/mixed message with a text body and the
// attachments, base64 encoded, CRLF line endings.
func buildMessage(headers map[string]string, body string, atts ...attachment) []byte {
	var b bytes.Buffer
	boundary := "=_sealgate_test_boundary_42"
	keys := []string{"From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID"}
	for _, k := range keys {
		if v, ok := headers[k]; ok {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary)
	b.WriteString("This is a multi-part message in MIME format.\r\n")
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n%s\r\n", boundary, body)
	for _, a := range atts {
		fmt.Fprintf(&b, "--%s\r\n", boundary)
		var disp string
		if a.rfc2047 {
			disp = fmt.Sprintf("attachment; filename=\"%s\"", mime.BEncoding.Encode("UTF-8", a.name))
		} else {
			disp = mime.FormatMediaType("attachment", map[string]string{"filename": a.name})
		}
		fmt.Fprintf(&b, "Content-Type: %s\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: %s\r\n\r\n", a.contentType, disp)
		enc := base64.StdEncoding.EncodeToString(a.data)
		for len(enc) > 76 {
			b.WriteString(enc[:76])
			b.WriteString("\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc)
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.Bytes()
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// send submits msg over SMTP and returns the error of the whole
// transaction (an *textproto.Error on refusal).
func send(t testing.TB, addr, from string, to []string, msg []byte) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return err
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// part is one leaf of a parsed message.
type part struct {
	header      message.Header
	contentType string
	filename    string
	body        []byte // decoded
}

func parseMessage(t testing.TB, raw []byte) (mail.Header, []part) {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) {
		t.Fatalf("output does not parse: %v\n%s", err, raw)
	}
	var parts []part
	err = e.Walk(func(path []int, ent *message.Entity, err error) error {
		if err != nil {
			return err
		}
		if mr := ent.MultipartReader(); mr != nil {
			return nil
		}
		b, err := io.ReadAll(ent.Body)
		if err != nil {
			return err
		}
		ct, _, _ := ent.Header.ContentType()
		ah := mail.AttachmentHeader{Header: ent.Header}
		fn, _ := ah.Filename()
		parts = append(parts, part{header: ent.Header, contentType: ct, filename: fn, body: b})
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	return mail.Header{Header: e.Header}, parts
}

var linkRE = regexp.MustCompile(`https?://[^\s]+/t/([a-z2-7]{32})`)
var passRE = regexp.MustCompile(`(?m)^Passphrase: ([0-9A-Z]{5}(?:-[0-9A-Z]{5}){4})\r?$`)

// hasRun reports whether any 32-byte run of secret appears in output.
func hasRun(output, secret []byte) bool {
	const n = 32
	if len(secret) < n {
		return bytes.Contains(output, secret)
	}
	// Index 32-byte windows of the output for speed.
	idx := make(map[string]struct{}, len(output))
	for i := 0; i+n <= len(output); i++ {
		idx[string(output[i:i+n])] = struct{}{}
	}
	for i := 0; i+n <= len(secret); i++ {
		if _, ok := idx[string(secret[i:i+n])]; ok {
			return true
		}
	}
	return false
}

type ledgerEvent struct {
	Type      string            `json:"type"`
	Actor     string            `json:"actor"`
	Recipient string            `json:"recipient"`
	Transfer  string            `json:"transfer"`
	Message   string            `json:"message"`
	File      string            `json:"file"`
	Details   map[string]string `json:"details"`
	Result    string            `json:"result"`
}

func parseLedgerEvent(t testing.TB, data []byte) ledgerEvent {
	var ev ledgerEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatalf("ledger record %q: %v", data, err)
	}
	return ev
}

func form(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}
