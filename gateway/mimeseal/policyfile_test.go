package mimeseal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"

	"github.com/sealgate/sealgate/policy"
)

// Policies with content rules (package policy): the two-phase decision on the walker's side.

func loadExample(t testing.TB, name string) *policy.Policy {
	t.Helper()
	p, err := policy.Load(filepath.Join("..", "..", "policy", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// pngBytes returns a real PNG of about size bytes (noise, so that it does not compress).
func pngBytes(t testing.TB, size int) []byte {
	t.Helper()
	side := 8
	for side*side*4 < size {
		side *= 2
	}
	img := image.NewNRGBA(image.Rect(0, 0, side, side))
	seed := uint32(7)
	for i := range img.Pix {
		seed = seed*1664525 + 1013904223
		img.Pix[i] = byte(seed >> 24)
	}
	img.Set(0, 0, color.NRGBA{1, 2, 3, 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func b64Lines(b []byte) string {
	enc := base64.StdEncoding.EncodeToString(b)
	var s strings.Builder
	for len(enc) > 76 {
		s.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	s.WriteString(enc + "\n")
	return s.String()
}

// outlookMessage is an Outlook-style HTML mail: a multipart/related body whose HTML shows a
// logo by cid:, the logo inline with a Content-ID, and a PDF attached.
func outlookMessage(logo []byte, pdf string) []byte {
	return crlf(`From: Tanaka <tanaka@example.co.jp>
To: suzuki@client.example
Subject: =?UTF-8?B?6KaL56mN5pu4?=
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed"

--mixed
Content-Type: multipart/related; type="multipart/alternative"; boundary="related"

--related
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset="utf-8"

Please find the quotation attached.
--alt
Content-Type: text/html; charset="utf-8"

<html><body><p>Please find the quotation attached.</p><p><img width=120 height=40 src="cid:image001.png@01DA0B1C.5E6F7A80" alt="logo"></p></body></html>
--alt--

--related
Content-Type: image/png; name="image001.png"
Content-Description: image001.png
Content-Disposition: inline; filename="image001.png"
Content-ID: <image001.png@01DA0B1C.5E6F7A80>
Content-Transfer-Encoding: base64

` + b64Lines(logo) + `--related--

--mixed
Content-Type: application/pdf; name="quote.pdf"
Content-Disposition: attachment; filename="quote.pdf"
Content-Transfer-Encoding: base64

` + b64Lines([]byte(pdf)) + `--mixed--
`)
}

func observe(opt *Options) *[]Report {
	var reps []Report
	opt.Observe = func(r *Report) { reps = append(reps, *r) }
	return &reps
}

func TestPolicyKeepsSignatureLogo(t *testing.T) {
	p := loadExample(t, "contracts-and-confidential.toml")
	logo := pngBytes(t, 2000)
	pdf := "%PDF-1.7\nSECRET-PDF-CONTENT quotation 1,000,000 yen\n%%EOF\n"
	msg := outlookMessage(logo, pdf)
	opt := Options{Policy: p}
	reps := observe(&opt)
	skel, res, s, _, err := run(t, msg, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Attachments) != 1 || res.Attachments[0].Filename != "quote.pdf" || res.Attachments[0].Reason != "attachment" {
		t.Fatalf("attachments %+v, want quote.pdf sealed by rule attachment", res.Attachments)
	}
	if s.parts[0].data.String() != pdf {
		t.Fatalf("sealed %q", s.parts[0].data.String())
	}
	out := render(t, skel, "TOKEN")
	if bytes.Contains(out, []byte("SECRET-PDF")) || bytes.Contains(out, []byte(b64Lines([]byte(pdf))[:40])) {
		t.Fatal("the PDF leaked")
	}
	l, err := leaves(out, opaquePolicy)
	if err != nil {
		t.Fatal(err)
	}
	var kept []byte
	for _, x := range l {
		if x.mediaType == "image/png" {
			kept = x.decoded(t)
		}
	}
	if !bytes.Equal(kept, logo) {
		t.Fatal("the logo was not kept byte-identical")
	}
	var got []string
	for _, r := range *reps {
		got = append(got, fmt.Sprintf("%s:%v:%s:%v", r.Part.MediaType, r.Action, r.Rule, r.Part.Inline))
	}
	want := []string{"multipart/mixed:descend:multipart:false", "multipart/related:descend:multipart:false",
		"multipart/alternative:descend:multipart:false", "text/plain:keep:body:false", "text/html:keep:body:false",
		"image/png:keep:signature-logo:true", "application/pdf:seal:attachment:false"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("decisions\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c := (*reps)[5].Content; c == nil || c.Sniffed != "image/png" || c.Size != int64(len(logo)) || !c.Held {
		t.Fatalf("logo content facts %+v", c)
	}
}

// A logo larger than the rule's bound, an image not shown by the HTML, and a file that is not
// a PNG under a PNG name are sealed.
func TestPolicySealsWhatIsNotALogo(t *testing.T) {
	p := loadExample(t, "contracts-and-confidential.toml")
	for name, logo := range map[string][]byte{
		"too large": pngBytes(t, 200<<10),
		"not png":   append([]byte("PK\x03\x04\x14\x00\x00\x00\x08\x00"), bytes.Repeat([]byte("zipdata"), 200)...),
	} {
		t.Run(name, func(t *testing.T) {
			msg := outlookMessage(logo, "%PDF-1.7\n")
			_, res, s, _, err := run(t, msg, Options{Policy: p})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Attachments) != 2 || res.Attachments[0].Filename != "image001.png" {
				t.Fatalf("attachments %+v", res.Attachments)
			}
			if res.Attachments[0].Reason != "filename" || !bytes.Equal(s.parts[0].data.Bytes(), logo) {
				t.Fatalf("logo sealed as %+v, %d bytes", res.Attachments[0], s.parts[0].data.Len())
			}
		})
	}
	t.Run("not referenced", func(t *testing.T) {
		msg := bytes.Replace(outlookMessage(pngBytes(t, 1000), "%PDF-1.7\n"), []byte("cid:image001"), []byte("cid:other001"), 1)
		_, res, _, _, err := run(t, msg, Options{Policy: p})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Attachments) != 2 || res.Attachments[0].Reason != "filename" {
			t.Fatalf("attachments %+v", res.Attachments)
		}
	})
}

func invitation(body string) []byte {
	return crlf(`From: a@example.co.jp
To: b@client.example
Subject: Meeting
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b"

--b
Content-Type: text/plain; charset=utf-8

Meeting on Monday.
--b
Content-Type: text/calendar; charset=utf-8; method=REQUEST
Content-Transfer-Encoding: quoted-printable

` + body + `
--b--
`)
}

const vcalendar = "BEGIN:VCALENDAR\nMETHOD:REQUEST\nPRODID:Microsoft Exchange Server 2010\nVERSION:2.0\nBEGIN:VEVENT\nSUMMARY:Review\nDTSTART:20260601T010000Z\nEND:VEVENT\nEND:VCALENDAR"

func TestPolicyKeepsInvitation(t *testing.T) {
	p := loadExample(t, "contracts-and-confidential.toml")
	skel, res, _, _, err := run(t, invitation(vcalendar), Options{Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Attachments) != 0 {
		t.Fatalf("attachments %+v", res.Attachments)
	}
	if out := render(t, skel, "T"); !bytes.Contains(out, []byte("BEGIN:VEVENT")) {
		t.Fatalf("invitation not kept:\n%s", out)
	}
	// Declared as a calendar but not one: sealed.
	_, res, s, _, err := run(t, invitation("not a calendar at all"), Options{Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Attachments) != 1 || res.Attachments[0].Reason != "non-text" || s.parts[0].data.String() != "not a calendar at all" {
		t.Fatalf("attachments %+v", res.Attachments)
	}
	// The default policy seals the invitation (the behaviour before policies).
	_, res, _, _, err = run(t, invitation(vcalendar), Options{Policy: policy.Default()})
	if err != nil || len(res.Attachments) != 1 {
		t.Fatalf("default policy: %+v %v", res, err)
	}
	// An invitation that hides a uuencoded file is sealed whole, like any kept text.
	_, res, _, _, err = run(t, invitation(vcalendar+"\nbegin 644 secret.pdf\n#86)C\n`\nend"), Options{Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Attachments) != 1 || res.Attachments[0].Reason != "uuencode" || !res.Attachments[0].Whole {
		t.Fatalf("attachments %+v", res.Attachments)
	}
}

// encryptedZip is the start of a ZIP whose first entry has the encryption flag (general
// purpose bit 0) set.
func encryptedZip() []byte {
	b := []byte("PK\x03\x04\x14\x00\x01\x00\x08\x00")
	b = append(b, make([]byte, 16)...)
	b = append(b, 5, 0, 0, 0)
	b = append(b, "a.txt"...)
	return append(b, bytes.Repeat([]byte{0xA5}, 300)...)
}

func zipMessage(name string, data []byte) []byte {
	return crlf(top + `Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain

Password in the next mail.
--b
Content-Type: application/zip; name="` + name + `"
Content-Disposition: attachment; filename="` + name + `"
Content-Transfer-Encoding: base64

` + b64Lines(data) + `--b--
`)
}

func TestPolicyRefusesEncryptedArchive(t *testing.T) {
	p := loadExample(t, "contracts-and-confidential.toml")
	_, _, s, _, err := run(t, zipMessage("資料.zip", encryptedZip()), Options{Policy: p})
	var r *Refusal
	if KindOf(err) != Refused || !errors.As(err, &r) {
		t.Fatalf("err %v, want a refusal", err)
	}
	if r.Rule != "encrypted-archive" || !strings.Contains(r.Reason.EN, "Password-protected") || !strings.Contains(r.Reason.JA, "パスワード") {
		t.Fatalf("refusal %+v", r)
	}
	if len(s.parts) != 1 || !s.parts[0].aborted {
		t.Fatal("the sealed part was not aborted")
	}
	// The same archive without the flag is sealed.
	plain := encryptedZip()
	plain[6] = 0
	_, res, _, _, err := run(t, zipMessage("資料.zip", plain), Options{Policy: p})
	if err != nil || len(res.Attachments) != 1 || res.Attachments[0].Reason != "attachment" {
		t.Fatalf("%+v %v", res, err)
	}
}

// fakeScanner finds "MALWARE" in a part; unavailable fails every scan.
type fakeScanner struct {
	unavailable bool
	failAt      string // a Write containing this fails
	scans       int
	closed      int
}

type fakeStream struct {
	s    *fakeScanner
	data bytes.Buffer
}

func (f *fakeScanner) Scan() (ScanStream, error) {
	if f.unavailable {
		return nil, errors.New("clamd unavailable")
	}
	f.scans++
	return &fakeStream{s: f}, nil
}

func (s *fakeStream) Write(p []byte) (int, error) {
	if s.s.failAt != "" && bytes.Contains(p, []byte(s.s.failAt)) {
		return 0, errors.New("connection reset")
	}
	return s.data.Write(p)
}

func (s *fakeStream) Close() (Verdict, error) {
	s.s.closed++
	if bytes.Contains(s.data.Bytes(), []byte("MALWARE")) {
		return Verdict{Scanned: true, Infected: true, Signature: "Test.Malware"}, nil
	}
	return Verdict{Scanned: true}, nil
}

func (s *fakeStream) Abort() { s.s.closed++ }

func TestScannerVerdicts(t *testing.T) {
	clean := buildMixed("clean.pdf", []byte("%PDF-1.7 clean"))
	sc := &fakeScanner{}
	skel, res, _, _, err := run(t, clean, Options{Scanner: sc})
	if err != nil {
		t.Fatal(err)
	}
	if sc.scans != 1 || sc.closed != 1 || !res.Attachments[0].Scanned {
		t.Fatalf("scans %d closed %d, attachment %+v", sc.scans, sc.closed, res.Attachments[0])
	}
	var seen []Attachment
	if err := Render(&bytes.Buffer{}, bytes.NewReader(skel), func(w_ io.Writer, a Attachment) error {
		seen = append(seen, a)
		_, err := w_.Write([]byte("Content-Type: text/plain\r\n\r\nx\r\n"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || !seen[0].Scanned {
		t.Fatalf("the placeholder does not say scanned: %+v", seen)
	}

	sc = &fakeScanner{}
	_, _, s, _, err := run(t, buildMixed("x.exe", []byte("MZ...MALWARE...")), Options{Scanner: sc})
	var m *Malware
	if KindOf(err) != Infected || !errors.As(err, &m) || m.Signature != "Test.Malware" || m.Rule != "attachment" {
		t.Fatalf("err %v", err)
	}
	if !s.parts[0].aborted {
		t.Fatal("infected part committed")
	}

	for name, sc := range map[string]*fakeScanner{"unavailable": {unavailable: true}, "write fails": {failAt: "%PDF"}} {
		t.Run(name, func(t *testing.T) {
			_, _, s, _, err := run(t, clean, Options{Scanner: sc})
			var e *Error
			if KindOf(err) != ScanFailed || !errors.As(err, &e) || !e.Temporary() {
				t.Fatalf("err %v, want a temporary ScanFailed", err)
			}
			for _, p := range s.parts {
				if !p.aborted {
					t.Fatal("part committed without a verdict")
				}
			}
		})
	}

	// Kept leaves that are not text bodies are scanned too, and text bodies whose rule needed
	// their content.
	p := loadExample(t, "contracts-and-confidential.toml")
	sc = &fakeScanner{}
	logo := append(pngBytes(t, 1000), []byte("MALWARE")...)
	_, _, _, _, err = run(t, outlookMessage(logo, "%PDF"), Options{Policy: p, Scanner: sc})
	if KindOf(err) != Infected {
		t.Fatalf("infected logo: %v", err)
	}
	sc = &fakeScanner{}
	if _, _, _, _, err := run(t, outlookMessage(pngBytes(t, 1000), "%PDF"), Options{Policy: p, Scanner: sc}); err != nil || sc.scans != 4 {
		t.Fatalf("err %v, %d scans (want the logo, the PDF, and the two bodies: the encrypted-archive rule needs their content)", err, sc.scans)
	}
}

func buildMixed(name string, data []byte) []byte {
	return crlf(top + `Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain

body text
--b
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="` + name + `"
Content-Transfer-Encoding: base64

` + b64Lines(data) + `--b--
`)
}

func TestMessageDecisions(t *testing.T) {
	msg := crlf(`From: a@example.co.jp
To: b@client.example
Bcc: hidden@example.co.jp
Subject: =?UTF-8?B?44CQ5qmf5a+G44CR?= plan
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain

SECRET BODY TEXT of the confidential mail
--b
Content-Type: application/pdf
Content-Disposition: attachment; filename="plan.pdf"

SECRET PDF
--b--
`)
	edit := func(h *textproto.Header) { h.Del("Bcc") }
	t.Run("seal_message", func(t *testing.T) {
		skel, res, s, _, err := run(t, msg, Options{EditHeader: edit, Message: func(h *textproto.Header) policy.MessageDecision {
			return policy.MessageDecision{Action: policy.SealMessage, Rule: "confidential-subject"}
		}})
		if err != nil {
			t.Fatal(err)
		}
		a := res.Attachments
		if len(a) != 1 || !a[0].Message || !a[0].Whole || a[0].Reason != "confidential-subject" || SafeName(a[0]) != "message.eml" {
			t.Fatalf("attachments %+v", a)
		}
		sealed := s.parts[0].data.Bytes()
		if !bytes.Contains(sealed, []byte("SECRET BODY TEXT")) || !bytes.Contains(sealed, []byte("Subject: =?UTF-8?B?44CQ5qmf5a+G44CR?= plan")) ||
			bytes.Contains(sealed, []byte("hidden@")) || !bytes.HasSuffix(sealed, []byte("--b--\r\n")) {
			t.Fatalf("sealed .eml:\n%s", sealed)
		}
		out := render(t, skel, "TOKEN")
		if bytes.Contains(out, []byte("SECRET")) || bytes.Contains(out, []byte("hidden@")) || bytes.Count(out, []byte("TOKEN")) != 1 {
			t.Fatalf("copy:\n%s", out)
		}
		if !bytes.Contains(out, []byte("Subject: =?UTF-8?B?44CQ5qmf5a+G44CR?= plan\r\n")) || !bytes.Contains(out, []byte("MIME-Version: 1.0\r\n")) {
			t.Fatalf("copy header:\n%s", out)
		}
	})
	t.Run("pass", func(t *testing.T) {
		skel, res, _, _, err := run(t, msg, Options{EditHeader: edit, Message: func(*textproto.Header) policy.MessageDecision {
			return policy.MessageDecision{Action: policy.Pass, Rule: "no-contract"}
		}})
		if err != nil || len(res.Attachments) != 0 {
			t.Fatalf("%+v %v", res, err)
		}
		out := render(t, skel, "T")
		if want := bytes.Replace(msg, []byte("Bcc: hidden@example.co.jp\r\n"), nil, 1); !bytes.Equal(out, want) {
			t.Fatalf("pass changed the message:\n%s", out)
		}
	})
	t.Run("refuse", func(t *testing.T) {
		reason := policy.Text{JA: "送れません", EN: "cannot be sent"}
		_, _, s, _, err := run(t, msg, Options{Message: func(*textproto.Header) policy.MessageDecision {
			return policy.MessageDecision{Action: policy.Refuse, Rule: "r", Reason: reason}
		}})
		var r *Refusal
		if KindOf(err) != Refused || !errors.As(err, &r) || r.Reason != reason || len(s.parts) != 0 {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("scanned", func(t *testing.T) {
		sc := &fakeScanner{}
		_, res, _, _, err := run(t, bytes.Replace(msg, []byte("SECRET PDF"), []byte("MALWARE"), 1), Options{Scanner: sc, Message: func(*textproto.Header) policy.MessageDecision {
			return policy.MessageDecision{Action: policy.SealMessage, Rule: "r"}
		}})
		if KindOf(err) != Infected {
			t.Fatalf("%+v %v", res, err)
		}
	})
}

// A message Rewrite finds malformed is sealed whole by SealWhole: every byte of it in one
// .eml, the Bcc field left out, the copy a header and one notice.
func TestSealWhole(t *testing.T) {
	cases := map[string]string{
		"empty":                  "",
		"no close delimiter":     top + "Bcc: x@example.org\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nSECRET\n",
		"header only multipart":  top + "Content-Type: multipart/mixed; boundary=b\n\n",
		"eof in part header":     top + "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n",
		"eof mid header line":    "From: a@example.com\nBcc: x@example.org\nSubject: x",
		"ambiguous delimiter":    top + "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nx\n--bogus\nSECRET\n--b--\n",
		"broken base64":          top + "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0x*LjQK\n--b--\n",
		"top header parse error": "From: a@example.com\nthis is not a header\nBcc: x@example.org,\n y@example.org\nSubject: s\n\nSECRET\n",
		"header starts with ws":  " folded: x\nFrom: a\nBCC : x@example.org\n\nSECRET\n",
		"no blank line":          "From: a@example.com\nSubject: no body\nSECRET",
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			msg := crlf(m)
			if _, _, _, _, err := run(t, msg, Options{}); KindOf(err) != Malformed {
				t.Fatalf("Rewrite: %v, want Malformed", err)
			}
			s := newMemSealer()
			var skel bytes.Buffer
			res, err := SealWhole(&skel, bytes.NewReader(msg), s, Options{EditHeader: func(h *textproto.Header) { h.Del("Bcc") }})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Attachments) != 1 || !res.Attachments[0].Message || res.Attachments[0].Reason != "unparseable" || !s.parts[0].closed {
				t.Fatalf("attachments %+v", res.Attachments)
			}
			sealed := s.parts[0].data.Bytes()
			if bytes.Contains(sealed, []byte("x@example.org")) || bytes.Contains(sealed, []byte("y@example.org")) {
				t.Fatalf("the Bcc recipients are in the sealed .eml:\n%s", sealed)
			}
			want := msg
			for _, bcc := range []string{"Bcc: x@example.org\r\n", "Bcc: x@example.org,\r\n y@example.org\r\n", "BCC : x@example.org\r\n"} {
				want = bytes.Replace(want, []byte(bcc), nil, 1)
			}
			if !bytes.Equal(sealed, want) {
				t.Fatalf("sealed\n%q\nwant\n%q", sealed, want)
			}
			out := render(t, skel.Bytes(), "TOKEN")
			if bytes.Contains(out, []byte("SECRET")) || bytes.Contains(out, []byte("example.org")) || bytes.Count(out, []byte("TOKEN")) != 1 {
				t.Fatalf("copy:\n%s", out)
			}
			if _, err := leaves(out, opaquePolicy); err != nil {
				t.Fatalf("the copy does not parse: %v\n%s", err, out)
			}
		})
	}
}

func TestSkipMboxFrom(t *testing.T) {
	for in, want := range map[string]string{
		"From a@b Mon Jun  3 10:15:00 2024\r\nFrom: a@b\r\n\r\nx\r\n": "From: a@b\r\n\r\nx\r\n",
		"From: a@b\r\n\r\nx\r\n": "From: a@b\r\n\r\nx\r\n",
		"From a@b":               "",
		"Fro":                    "Fro",
		"":                       "",
		"From ":                  "",
	} {
		for _, chunk := range []int{1, 2, 3, 7, 1000} {
			var out bytes.Buffer
			r := SkipMboxFrom(&smallReads{s: []byte(in), n: chunk})
			if _, err := out.ReadFrom(r); err != nil || out.String() != want {
				t.Errorf("%q in chunks of %d: %q %v, want %q", in, chunk, out.String(), err, want)
			}
		}
	}
}

type smallReads struct {
	s []byte
	n int
}

func (c *smallReads) Read(p []byte) (int, error) {
	if len(c.s) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.s)
	c.s = c.s[n:]
	return n, nil
}
