package gateway

import (
	"bytes"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"
	"time"

	"github.com/sealgate/sealgate/gateway/mimeseal"
)

// A text part sealed whole for the file it hides gets a notice that says the text was sealed
// and why, in both languages; an attachment keeps the attachment notice.
func TestLinkNoticeForHiddenFile(t *testing.T) {
	render := func(a mimeseal.Attachment) string {
		t.Helper()
		var b bytes.Buffer
		err := writeLinkNotice(&b, linkNotice{Link: "https://gw.example/t/x", Expires: time.Unix(0, 0), Loc: time.UTC, Sealed: a,
			File: fileInfo{Index: a.Index, Name: mimeseal.SafeName(a), Size: 1234, SHA256: "00", ContentType: a.ContentType}})
		if err != nil {
			t.Fatal(err)
		}
		_, body, _ := strings.Cut(b.String(), "\r\n\r\n")
		text, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(body)))
		if err != nil {
			t.Fatal(err)
		}
		return string(text)
	}
	for _, c := range []struct {
		a      mimeseal.Attachment
		ja, en string
	}{
		{mimeseal.Attachment{Filename: "見積書.pdf", ContentType: "text/plain", Whole: true, Reason: "uuencode"},
			"このメールの本文の一部は、uuencode 形式で埋め込まれたファイルを含んでいたため", "because it carried a file embedded as uuencode"},
		{mimeseal.Attachment{ContentType: "text/html", Whole: true, Reason: "data-uri"},
			"HTML に埋め込まれたファイル (data: URI) を含んでいたため", "because it carried a file embedded in its HTML (a data: URI)"},
		{mimeseal.Attachment{ContentType: "text/plain", Whole: true, Reason: "large-text"},
			"検査できない大きさだったため", "because it is too large to be inspected for embedded files"},
	} {
		text := render(c.a)
		for _, want := range []string{c.ja, c.en, "■ 本文の一部は暗号化して保管されました", "■ Part of the message text was encrypted and stored", ".eml", mimeseal.SafeName(c.a)} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: notice lacks %q:\n%s", c.a.Reason, want, text)
			}
		}
		if strings.Contains(text, "添付されていたファイル") || strings.Contains(text, "The file attached to this message") {
			t.Errorf("%s: the notice speaks of an attachment:\n%s", c.a.Reason, text)
		}
	}
	text := render(mimeseal.Attachment{Filename: "quote.pdf", ContentType: "application/pdf", Reason: "attachment"})
	if !strings.Contains(text, "このメールに添付されていたファイルは") || !strings.Contains(text, "The file attached to this message") || strings.Contains(text, "本文の一部") {
		t.Errorf("attachment notice changed:\n%s", text)
	}
}
