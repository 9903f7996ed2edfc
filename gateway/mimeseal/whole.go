package mimeseal

import (
	"bytes"
	"io"
	"strings"

	"github.com/emersion/go-message/textproto"

	"github.com/sealgate/sealgate/policy"
)

// Sealing a whole message: for a policy's seal_message (Options.Message), and for a message
// whose structure cannot be parsed (SealWhole). The recipient's copy keeps the top-level
// header fields other than Content-* and gets one placeholder; the Sealer gets the message as
// one .eml: its header as EditHeader left it (Bcc removed by the gateway) and its body raw.

// wholeName is the file name of a message sealed whole: neutral, whatever the subject says.
const wholeName = "message.eml"

// sealMessage seals the rest of the input (the body; the header was read) as one .eml whose
// header is hdr, or edited written in full when hdr is nil. The skeleton gets edited's fields
// other than Content-*, MIME-Version, and the placeholder.
func (w *walker) sealMessage(edited *textproto.Header, hdr []byte, reason string) (event, error) {
	fail := func(err error) (event, error) { return event{idx: eofIdx}, err }
	if err := w.writeSealedTop(edited); err != nil {
		return fail(err)
	}
	// The whole message is not one of its leaves: Index -1.
	e := &entity{part: Part{MediaType: "message/rfc822"}, facts: policy.Part{MediaType: "message/rfc822", Index: -1}}
	w.startLeaf(e)
	a := Attachment{Filename: wholeName, ContentType: "message/rfc822", Whole: true, Message: true, Reason: reason}
	pw, err := w.openSeal(&a)
	if err != nil {
		return fail(err)
	}
	w.batch.buf = w.batch.buf[:0]
	w.batch.pw = pw
	if w.scan != nil || w.fan.ins != nil {
		w.fan.pw = pw
		w.batch.pw = &w.fan
	}
	if hdr == nil {
		var b bytes.Buffer
		if err := textproto.WriteHeader(&b, *edited); err != nil {
			return fail(errorf(Internal, "failed to write a header field set by EditHeader: %w", err))
		}
		hdr = b.Bytes()
	}
	if err := w.batch.write(hdr); err != nil {
		return fail(err)
	}
	start := w.in.pos()
	ev, err := w.scanBody(&w.ident)
	if err != nil {
		return fail(err)
	}
	if err := w.endSeal(a.Index, start); err != nil {
		return fail(err)
	}
	w.report(e, policy.Seal, reason, "", nil, a.Index)
	return ev, nil
}

// SealWhole writes the skeleton of a message sealed whole, from its first byte, as one .eml
// (Attachment.Message, Reason "unparseable"): what sealgate does with a message that Rewrite
// refused as Malformed, instead of refusing it. src must be the message from its start (the
// caller keeps what Rewrite read, see the gateway). Nothing of it is parsed but its header,
// leniently:
//
//   - the header is the lines up to the first empty line, or up to 4 × Limits.MaxHeaderBytes;
//   - its well-formed fields ("Name: value" and their continuation lines) make the header
//     that EditHeader edits and the recipient's copy shows (without Content-* fields); other
//     lines are left out of it;
//   - in the sealed .eml, the header lines are copied as they are except the Bcc and
//     Resent-Bcc fields (and their continuation lines), which are left out; the rest of the
//     input follows byte for byte.
//
// Options.Message, Policy and Seal are not used. Errors are as Rewrite's (no Malformed: the
// skeleton is always valid).
func SealWhole(dst io.Writer, src io.Reader, s Sealer, opt Options) (*Result, error) {
	w := newWalker(src, s, &opt)
	w.skel = newSkelWriter(dst, w.bufs.skel)
	defer opt.Buffers.put(w.bufs)
	defer func() { w.bufs.hdr = w.hdr[:0] }()
	if err := w.runWhole(); err != nil {
		w.abort(err)
		return nil, err
	}
	w.res.Size = w.in.pos()
	return w.res, nil
}

func (w *walker) runWhole() error {
	if err := w.in.fill(); err != nil {
		return err
	}
	raw, err := w.readLooseHeader(4 * w.lim.MaxHeaderBytes)
	if err != nil {
		return err
	}
	h := looseHeader(raw)
	w.res.Header = h.Copy()
	edited := h.Copy()
	if w.opt.EditHeader != nil {
		w.opt.EditHeader(&edited)
		if !sameContentFields(&h, &edited) {
			return errorf(Internal, "failed to edit the header: %w", ErrContentEdited)
		}
	}
	ev, err := w.sealMessage(&edited, withoutBcc(raw), "unparseable")
	if err != nil {
		return err
	}
	if err := w.loop(ev); err != nil {
		return err
	}
	return w.skel.end()
}

// readLooseHeader reads the lines up to and including the first empty line, at most limit
// bytes, into w.hdr. A line longer than the input buffer ends the header before it.
func (w *walker) readLooseHeader(limit int) ([]byte, error) {
	in := &w.in
	w.hdr = w.hdr[:0]
	for len(w.hdr) < limit {
		data := in.buf[in.r:in.w]
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if in.eof() {
				w.hdr = append(w.hdr, data...)
				in.r = in.w
				return w.hdr, nil
			}
			if in.r == 0 && in.w == len(in.buf) {
				return w.hdr, nil // no line end in a full buffer: the rest is body
			}
			if err := in.fill(); err != nil {
				return nil, err
			}
			continue
		}
		line := data[:i+1]
		if len(w.hdr)+len(line) > limit {
			break
		}
		w.hdr = append(w.hdr, line...)
		in.r += len(line)
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
	}
	return w.hdr, nil
}

// looseFields splits raw header lines into fields: a field starts with a line that is not
// white space at its start, and goes on with the lines that are. fn gets each field's raw
// lines and its name ("" when the first line is not "name:" with a valid name).
func looseFields(raw []byte, fn func(field []byte, name string)) {
	for len(raw) > 0 {
		end := lineLength(raw)
		if len(bytes.TrimRight(raw[:end], "\r\n")) > 0 { // an empty line is a field of its own, without a name
			for end < len(raw) && (raw[end] == ' ' || raw[end] == '\t') {
				end += lineLength(raw[end:])
			}
		}
		field := raw[:end]
		raw = raw[end:]
		name := ""
		if i := bytes.IndexByte(field, ':'); i > 0 && field[0] != ' ' && field[0] != '\t' {
			n := strings.TrimRight(string(field[:i]), " \t")
			if validFieldName(n) {
				name = n
			}
		}
		fn(field, name)
	}
}

func lineLength(b []byte) int {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return i + 1
	}
	return len(b)
}

func validFieldName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		if n[i] <= ' ' || n[i] >= 0x7f || n[i] == ':' {
			return false
		}
	}
	return true
}

// looseHeader returns the well-formed fields of raw as a header.
func looseHeader(raw []byte) textproto.Header {
	var h textproto.Header
	var fields [][2]string
	looseFields(raw, func(field []byte, name string) {
		if name == "" {
			return
		}
		v := field[bytes.IndexByte(field, ':')+1:]
		v = bytes.ReplaceAll(bytes.ReplaceAll(v, []byte("\r\n"), nil), []byte("\n"), nil)
		v = bytes.ReplaceAll(v, []byte("\r"), nil)
		fields = append(fields, [2]string{name, strings.TrimSpace(string(v))})
	})
	// textproto.Header.Add prepends: add in reverse to keep the order.
	for i := len(fields) - 1; i >= 0; i-- {
		h.Add(fields[i][0], fields[i][1])
	}
	return h
}

// withoutBcc returns raw without its Bcc and Resent-Bcc fields: the sealed .eml goes to the
// external recipients, who must not learn who else got the message.
func withoutBcc(raw []byte) []byte {
	out := make([]byte, 0, len(raw))
	looseFields(raw, func(field []byte, name string) {
		if strings.EqualFold(name, "bcc") || strings.EqualFold(name, "resent-bcc") {
			return
		}
		out = append(out, field...)
	})
	return out
}

// SkipMboxFrom returns a reader of r without a leading mbox "From " line (the envelope line
// that mbox files and some MTAs' queue files put before the header, "From sender date"): it
// is not a header field, and a walker would take the message for headerless.
func SkipMboxFrom(r io.Reader) io.Reader { return &mboxSkipper{r: r} }

type mboxSkipper struct {
	r     io.Reader
	head  [5]byte
	nhead int
	state int // 0: reading the first bytes; 1: skipping the From line; 2: passing; 3: giving back head
	give  int
}

func (m *mboxSkipper) Read(p []byte) (int, error) {
	for {
		switch m.state {
		case 2:
			return m.r.Read(p)
		case 3:
			n := copy(p, m.head[m.give:m.nhead])
			m.give += n
			if m.give == m.nhead {
				m.state = 2
			}
			return n, nil
		case 0:
			n, err := m.r.Read(m.head[m.nhead:])
			m.nhead += n
			if m.nhead == len(m.head) || err != nil {
				if string(m.head[:m.nhead]) == "From " {
					m.state = 1
				} else {
					m.state = 3
				}
				if m.state == 3 && m.nhead == 0 {
					return 0, err
				}
				if err != nil && err != io.EOF {
					return 0, err
				}
				if err == io.EOF && m.state == 1 {
					return 0, io.EOF
				}
				continue
			}
		case 1:
			n, err := m.r.Read(p)
			if i := bytes.IndexByte(p[:n], '\n'); i >= 0 {
				k := copy(p, p[i+1:n])
				m.state = 2
				if k > 0 || err != nil {
					return k, err
				}
				continue
			}
			if err != nil {
				return 0, err
			}
		}
	}
}
