package mimeseal

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
)

type fixture struct {
	file string
	want []Attachment // Index is filled in
	top  bool         // the top-level entity is sealed
}

var fixtures = []fixture{
	{file: "plain.eml"},
	{file: "alternative.eml"},
	{file: "mixed_pdf.eml", want: []Attachment{{Filename: "quote.pdf", ContentType: "application/pdf", Reason: "attachment"}}},
	{file: "ja_rfc2231.eml", want: []Attachment{
		{Filename: "見積書.pdf", ContentType: "application/pdf", Reason: "attachment"},
		{Filename: "機密情報保持に関する特約_最終版_2024年度.docx", ContentType: "application/vnd.openxmlformats-officedocument.wordprocessingml.document", Reason: "attachment"},
		{Filename: "納品書.xlsx", ContentType: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", Reason: "attachment"},
	}},
	{file: "ja_rfc2047.eml", want: []Attachment{
		{Filename: "請求書.pdf", ContentType: "application/pdf", Reason: "attachment"},
		{Filename: "議事録.txt", ContentType: "text/plain", Reason: "filename"},
		{Filename: "仕様書.zip", ContentType: "application/zip", Reason: "filename"},
		{Filename: "設計書.png", ContentType: "image/png", Reason: "attachment"},
	}},
	{file: "related_inline.eml", want: []Attachment{{ContentType: "image/png", Reason: "non-text"}}},
	{file: "forwarded.eml", want: []Attachment{{Filename: "Confidential plan.eml", ContentType: "message/rfc822", Whole: true, Reason: "forwarded"}}},
	{file: "signed.eml", top: true, want: []Attachment{{ContentType: "multipart/signed", Whole: true, Reason: "signed"}}},
	{file: "single_pdf.eml", top: true, want: []Attachment{{Filename: "invoice.pdf", ContentType: "application/pdf", Reason: "attachment"}}},
	{file: "text_attachment.eml", want: []Attachment{{ContentType: "text/plain", Reason: "attachment"}}},
	{file: "qp_attachment.eml", want: []Attachment{{Filename: "figures.csv", ContentType: "text/csv", Reason: "attachment"}}},
	{file: "bit7_8.eml", want: []Attachment{
		{Filename: "config.yaml", ContentType: "application/x-yaml", Reason: "attachment"},
		{Filename: "メモ.txt", ContentType: "text/plain", Reason: "attachment"},
	}},
	{file: "nested.eml", want: []Attachment{{Filename: "data.bin", ContentType: "application/octet-stream", Reason: "filename"}}},
	{file: "bare_lf.eml", want: []Attachment{{Filename: "lf.pdf", ContentType: "application/pdf", Reason: "attachment"}}},
	{file: "digest.eml", want: []Attachment{
		{ContentType: "message/rfc822", Whole: true, Reason: "forwarded"},
		{ContentType: "message/rfc822", Whole: true, Reason: "forwarded"},
	}},
	{file: "encrypted.eml", want: []Attachment{{ContentType: "multipart/encrypted", Whole: true, Reason: "encrypted"}}},
	// Outlook's "UUENCODE" option: a single-part text/plain message with the file uuencoded.
	{file: "uuencode_outlook.eml", top: true, want: []Attachment{{Filename: "見積書.pdf", ContentType: "text/plain", Whole: true, Reason: "uuencode"}}},
	// Apple Mail's inline image: a data: URI in the HTML alternative.
	{file: "html_data_uri.eml", want: []Attachment{{ContentType: "text/html", Whole: true, Reason: "data-uri"}}},
	// Issue 11's shapes, under the default policy (policy files decide them otherwise, see
	// policyfile_test.go and cmd/sealgate's policy test): an Outlook signature logo, a meeting
	// invitation, a password-protected ZIP, a mail marked 【機密】.
	{file: "outlook_logo.eml", want: []Attachment{
		{Filename: "image001.png", ContentType: "image/png", Reason: "filename"},
		{Filename: "quote.pdf", ContentType: "application/pdf", Reason: "attachment"},
	}},
	{file: "invitation.eml", want: []Attachment{{ContentType: "text/calendar", Reason: "non-text"}}},
	{file: "ppap_zip.eml", want: []Attachment{{Filename: "見積書.zip", ContentType: "application/x-zip-compressed", Reason: "attachment"}}},
	{file: "kimitsu.eml", want: []Attachment{{Filename: "terms.pdf", ContentType: "application/pdf", Reason: "attachment"}}},
}

func TestFixtures(t *testing.T) {
	seen := map[string]bool{}
	for _, fx := range fixtures {
		seen[fx.file] = true
		t.Run(fx.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", fx.file))
			if err != nil {
				t.Fatal(err)
			}
			input, err := io.ReadAll(NewCRLFReader(bytes.NewReader(raw)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(raw, []byte("\n")) || bytes.Contains(raw, []byte("\r\n")) && !bytes.Equal(input, raw) {
				t.Fatal("NewCRLFReader changed a CRLF message")
			}
			checkMessage(t, input, fx.want, fx.top)
		})
	}
	files, _ := filepath.Glob("testdata/*.eml")
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("fixture %s has no expectations", f)
		}
	}
}

// checkMessage rewrites and renders input and checks, against an independent walk of input and
// of the rendered output: exactly the expected parts are sealed, with the right decoded
// content; kept parts are byte-identical; the output parses; nothing sealed leaks.
func checkMessage(t *testing.T, input []byte, want []Attachment, top bool) {
	t.Helper()
	checkMessageWith(t, input, want, top, Options{})
}

func checkMessageWith(t *testing.T, input []byte, want []Attachment, top bool, opt Options) {
	t.Helper()
	skel, res, s, spans, err := run(t, input, opt)
	if err != nil {
		t.Fatalf("Rewrite: %v", err)
	}
	if res.Size != int64(len(input)) {
		t.Errorf("Size = %d, want %d", res.Size, len(input))
	}
	if len(res.Attachments) != len(want) {
		t.Fatalf("sealed %d parts, want %d: %+v", len(res.Attachments), len(want), res.Attachments)
	}
	for i := range want {
		want[i].Index = i
		if res.Attachments[i] != want[i] {
			t.Errorf("attachment %d = %+v, want %+v", i, res.Attachments[i], want[i])
		}
		if s.parts[i].a != want[i] {
			t.Errorf("Begin(%+v), want %+v", s.parts[i].a, want[i])
		}
		ws := s.parts[i].writes
		for j, n := range ws {
			if j < len(ws)-1 && n < batchFlush {
				t.Errorf("part %d: write %d of %d bytes (not last)", i, j, n)
			}
		}
	}
	const token = "SEALGATE-NOTICE-TOKEN-5b0c1d"
	out := render(t, skel, token)

	in, err := leaves(input, opaquePolicy)
	if err != nil {
		t.Fatalf("independent walk of the input: %v", err)
	}
	got, err := leaves(out, opaquePolicy)
	if err != nil {
		t.Fatalf("rendered output does not parse: %v\n%s", err, out)
	}
	if len(got) != len(in) {
		t.Fatalf("output has %d leaves, input %d\n%s", len(got), len(in), out)
	}
	ws := windowsOf(out, token)
	next := 0
	for i := range in {
		if !bytes.Contains(got[i].body, []byte(token)) {
			if !bytes.Equal(got[i].body, in[i].body) {
				t.Errorf("kept leaf %s: body changed:\n%q\nwant\n%q", in[i].path, got[i].body, in[i].body)
			}
			if !top && !bytes.Equal(got[i].rawHeader, in[i].rawHeader) && in[i].path != "0" {
				t.Errorf("kept leaf %s: header changed:\n%q\nwant\n%q", in[i].path, got[i].rawHeader, in[i].rawHeader)
			}
			continue
		}
		idx, _ := strconv.Atoi(got[i].header.Get("X-Sealed-Index"))
		if idx != next || next >= len(s.parts) {
			t.Fatalf("leaf %s: notice for attachment %d, want %d", in[i].path, idx, next)
		}
		a := s.parts[idx].a
		var wantContent []byte
		switch {
		case strings.HasPrefix(a.ContentType, "multipart/"), a.Whole && strings.HasPrefix(a.ContentType, "text/"):
			wantContent = in[i].wholeRaw() // its Content-* fields and raw body: a .eml
		default:
			wantContent = in[i].decoded(t)
		}
		if !bytes.Equal(s.parts[idx].data.Bytes(), wantContent) {
			t.Errorf("attachment %d (%s): sealed %d bytes differ from the independent decode (%d bytes)\n%q\n%q",
				idx, in[i].path, s.parts[idx].data.Len(), len(wantContent), truncate(s.parts[idx].data.Bytes()), truncate(wantContent))
		}
		for _, c := range [][]byte{s.parts[idx].data.Bytes(), in[i].body} {
			if l := leaks(c, input, ws, spans[idx], false); l != "" {
				t.Errorf("attachment %d leaks: %s", idx, l)
			}
		}
		next++
	}
	if next != len(s.parts) {
		t.Errorf("%d notices in the output, %d parts sealed", next, len(s.parts))
	}
	if bytes.Contains(out, []byte("SECRET-MARKER")) {
		i := bytes.Index(out, []byte("SECRET-MARKER"))
		t.Errorf("a secret marker is in the output: %q", out[i:min(len(out), i+40)])
	}
	// go-message's high-level reader must read it too, with every body decodable.
	mr, err := mail.CreateReader(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("mail.CreateReader: %v", err)
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil && !message.IsUnknownCharset(err) {
			t.Fatalf("mail reader: %v", err)
		}
		if _, err := io.ReadAll(p.Body); err != nil {
			t.Fatalf("mail reader body: %v", err)
		}
	}
	// Top-level header: fields other than Content-* are kept byte-identical.
	hin, _ := leavesHeader(input)
	hout, _ := leavesHeader(out)
	fs := hin.Fields()
	for fs.Next() {
		raw, _ := fs.Raw()
		if isContentField(fs.Key()) && top {
			if bytes.Contains(hout.rawAll(), raw) {
				t.Errorf("top-level field %q of a sealed single part was kept", raw)
			}
			continue
		}
		if !bytes.Contains(hout.rawAll(), raw) {
			t.Errorf("top-level field %q missing from the output", raw)
		}
	}
	if n := len(hout.Values("Mime-Version")); n != 1 && (top || len(want) > 0) {
		t.Errorf("%d MIME-Version fields in the output", n)
	}
}

func truncate(b []byte) []byte {
	if len(b) > 120 {
		return b[:120]
	}
	return b
}
