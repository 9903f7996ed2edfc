package mimeseal

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

// memSealer keeps sealed parts in memory and checks the PartWriter contract.
type memSealer struct {
	parts     []*memPart
	failBegin int // Begin fails for this index (-1: never)
	failWrite int // Write fails for this index
	failClose int // Close fails for this index
}

func newMemSealer() *memSealer { return &memSealer{failBegin: -1, failWrite: -1, failClose: -1} }

type memPart struct {
	s        *memSealer
	a        Attachment
	data     bytes.Buffer
	writes   []int
	closed   bool
	aborted  bool
	abortErr error
}

func (s *memSealer) Begin(a Attachment) (PartWriter, error) {
	if n := len(s.parts); n > 0 && !s.parts[n-1].closed && !s.parts[n-1].aborted {
		return nil, fmt.Errorf("part %d still open", s.parts[n-1].a.Index)
	}
	if a.Index == s.failBegin {
		return nil, errors.New("begin refused")
	}
	p := &memPart{s: s, a: a}
	s.parts = append(s.parts, p)
	return p, nil
}

func (p *memPart) Write(b []byte) (int, error) {
	if p.closed || p.aborted {
		return 0, errors.New("write after close")
	}
	if p.a.Index == p.s.failWrite {
		return 0, errors.New("disk full")
	}
	p.writes = append(p.writes, len(b))
	return p.data.Write(b)
}

func (p *memPart) Close() error {
	if p.closed || p.aborted {
		return errors.New("double close")
	}
	p.closed = true
	if p.a.Index == p.s.failClose {
		return errors.New("commit failed")
	}
	return nil
}

func (p *memPart) Abort(err error) {
	if p.closed || p.aborted {
		panic("abort after close")
	}
	p.aborted, p.abortErr = true, err
}

type span struct{ start, end int64 }

// run rewrites msg and returns the skeleton, the result, the sealer and the body spans.
func run(t testing.TB, msg []byte, opt Options) ([]byte, *Result, *memSealer, map[int]span, error) {
	t.Helper()
	s := newMemSealer()
	spans := map[int]span{}
	opt.testSpan = func(i int, start, end int64) { spans[i] = span{start, end} }
	var skel bytes.Buffer
	res, err := Rewrite(&skel, bytes.NewReader(msg), s, opt)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error is not *Error: %T %v", err, err)
		}
		for _, p := range s.parts {
			if !p.closed && !p.aborted {
				t.Fatalf("part %d neither closed nor aborted after error %v", p.a.Index, err)
			}
		}
		return nil, nil, s, spans, err
	}
	for _, p := range s.parts {
		if !p.closed || p.aborted {
			t.Fatalf("part %d: closed=%v aborted=%v after success", p.a.Index, p.closed, p.aborted)
		}
	}
	if len(s.parts) != len(res.Attachments) {
		t.Fatalf("%d parts begun, %d attachments", len(s.parts), len(res.Attachments))
	}
	return skel.Bytes(), res, s, spans, nil
}

// noticeCT is the Content-Type of the test notices, unlike any in the test messages (a test
// checks that the Content-* fields of a sealed top-level entity are not in the output).
const noticeCT = "Content-Type: text/plain; charset=utf-8; x-test=notice"

// noticeFor returns a notice function whose entities carry token, so that tests find them.
func noticeFor(token string) func(w io.Writer, a Attachment) error {
	return func(w io.Writer, a Attachment) error {
		name := SafeName(a)
		_, err := fmt.Fprintf(w, noticeCT+"\r\n"+
			"Content-Disposition: inline; filename=\"notice.txt\"\r\n"+
			"Content-Transfer-Encoding: 8BIT\r\nX-Sealed-Index: %d\r\n\r\n"+
			"%s: attachment %d was sealed: %s (type %s)\r\n", a.Index, token, a.Index, name, FinalExtension(name))
		return err
	}
}

func render(t testing.TB, skel []byte, token string) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := Render(&out, bytes.NewReader(skel), noticeFor(token)); err != nil {
		t.Fatalf("Render: %v", err)
	}
	return out.Bytes()
}

// leaf is an entity that is not walked into, found by an independent walk with go-message's
// textproto reader and the standard library's decoders.
type leaf struct {
	path      string
	header    textproto.Header
	rawHeader []byte
	mediaType string
	body      []byte // raw
}

func opaquePolicy(mt string) bool { return mt == "multipart/signed" || mt == "multipart/encrypted" }

// leaves walks msg; multiparts for which opaque is true are leaves.
func leaves(msg []byte, opaque func(string) bool) ([]leaf, error) {
	br := bufio.NewReader(bytes.NewReader(msg))
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, fmt.Errorf("top header: %w", err)
	}
	var out []leaf
	err = walkEntity("0", h, br, "", opaque, &out, 0)
	return out, err
}

func walkEntity(path string, h textproto.Header, body io.Reader, parent string, opaque func(string) bool, out *[]leaf, depth int) error {
	if depth > 100 {
		return errors.New("too deep")
	}
	ct := h.Get("Content-Type")
	mt, params := "text/plain", map[string]string{}
	if parent == "multipart/digest" && ct == "" {
		mt = "message/rfc822"
	}
	if ct != "" {
		var err error
		mt, params, err = mime.ParseMediaType(ct)
		if err != nil {
			mt = "application/octet-stream"
		}
	}
	if strings.HasPrefix(mt, "multipart/") && !opaque(mt) && params["boundary"] != "" {
		mr := textproto.NewMultipartReader(body, params["boundary"])
		for i := 0; ; i++ {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if err := walkEntity(path+"."+strconv.Itoa(i), p.Header, p, mt, opaque, out, depth+1); err != nil {
				return err
			}
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return fmt.Errorf("%s epilogue: %w", path, err)
		}
		return nil
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return fmt.Errorf("%s body: %w", path, err)
	}
	var hb bytes.Buffer
	textproto.WriteHeader(&hb, h)
	*out = append(*out, leaf{path: path, header: h, rawHeader: hb.Bytes(), mediaType: mt, body: b})
	return nil
}

// decoded decodes l's body with the standard library.
func (l leaf) decoded(t testing.TB) []byte {
	t.Helper()
	switch strings.ToLower(strings.TrimSpace(l.header.Get("Content-Transfer-Encoding"))) {
	case "base64":
		b, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, bytes.NewReader(l.body)))
		if err != nil {
			t.Fatalf("%s: base64: %v", l.path, err)
		}
		return b
	case "quoted-printable":
		b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(l.body)))
		if err != nil {
			t.Fatalf("%s: quoted-printable: %v", l.path, err)
		}
		return b
	}
	return l.body
}

// wholeRaw is the file of a part sealed whole raw: its Content-* fields, CRLF, its raw body.
func (l leaf) wholeRaw() []byte {
	var b bytes.Buffer
	fs := l.header.Fields()
	for fs.Next() {
		if isContentField(fs.Key()) {
			raw, _ := fs.Raw()
			b.Write(raw)
		}
	}
	b.WriteString("\r\n")
	b.Write(l.body)
	return b.Bytes()
}

const window = 32

// windowSet is the set of 32-byte runs of a rendered message, the notices (which contain
// token) cut out so that runs do not straddle them.
type windowSet map[string]struct{}

func windowsOf(out []byte, token string) windowSet {
	ws := windowSet{}
	for _, seg := range splitNotices(out, token) {
		for i := 0; i+window <= len(seg); i++ {
			ws[string(seg[i:i+window])] = struct{}{}
		}
	}
	return ws
}

// leaks returns a description of the first 32-byte run of content found in the output (ws)
// that does not also occur in input outside sp (where it could legitimately come from).
//
// With inLine, only runs without CR or LF are considered. Rewrite generates and drops whole
// lines only (delimiters, MIME-Version, preambles, Content-* fields of a sealed top level), so
// a run that straddles such a change contains a line break; a run without one lies within a
// single output line, which is either generated (too short, or a notice, cut out) or copied
// from the input. Fuzzing needs this: with arbitrary input a sealed part may contain a run that
// straddles generated structure.
func leaks(content, input []byte, ws windowSet, sp span, inLine bool) string {
	for i := 0; i+window <= len(content); i++ {
		w := content[i : i+window]
		if inLine && bytes.ContainsAny(w, "\r\n") {
			continue
		}
		if _, ok := ws[string(w)]; !ok {
			continue
		}
		if occursOutside(input, w, sp) {
			continue
		}
		return fmt.Sprintf("run %q at content offset %d is in the output", w, i)
	}
	return ""
}

func occursOutside(input, w []byte, sp span) bool {
	for off := 0; ; {
		j := bytes.Index(input[off:], w)
		if j < 0 {
			return false
		}
		pos := int64(off + j)
		if pos < sp.start || pos+int64(len(w)) > sp.end {
			return true
		}
		off += j + 1
	}
}

// splitNotices cuts out the notice entities (from their header to the end of their body line).
func splitNotices(out []byte, token string) [][]byte {
	var segs [][]byte
	for {
		i := bytes.Index(out, []byte(noticeCT+"\r\nContent-Disposition: inline; filename=\"notice.txt\""))
		if i < 0 {
			return append(segs, out)
		}
		segs = append(segs, out[:i])
		j := bytes.Index(out[i:], []byte(token))
		k := bytes.Index(out[i+j:], []byte("\r\n"))
		out = out[i+j+k:]
	}
}

type hdr struct{ textproto.Header }

func (h hdr) rawAll() []byte {
	var b bytes.Buffer
	textproto.WriteHeader(&b, h.Header)
	return b.Bytes()
}

func leavesHeader(msg []byte) (hdr, error) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg)))
	return hdr{h}, err
}
