package mimeseal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message/textproto"

	"github.com/sealgate/sealgate/inspect"
	"github.com/sealgate/sealgate/policy"
)

const (
	inputBufSize = 64 << 10 // the input buffer; a header line must fit in it
	maxPadding   = 1024     // white space tolerated after a boundary on its line
)

// input is the single buffered pass over the message.
type input struct {
	src  io.Reader
	buf  []byte
	r, w int   // unread data is buf[r:w]
	off  int64 // input offset of buf[0]
	err  error // io.EOF once the source is exhausted, or the read error
}

func (in *input) pos() int64 { return in.off + int64(in.r) }

// eof reports whether no input will come beyond buf[r:w].
func (in *input) eof() bool { return in.err != nil }

// fill reads more input after the unread data. At the end of input it sets in.err to io.EOF
// and returns nil; a read failure is returned as an *Error of Kind IO.
func (in *input) fill() error {
	if in.err != nil {
		return nil
	}
	if in.r > 0 {
		copy(in.buf, in.buf[in.r:in.w])
		in.off += int64(in.r)
		in.w -= in.r
		in.r = 0
	}
	if in.w == len(in.buf) {
		return errorf(Malformed, "failed to read message: %w", ErrLineTooLong) // callers bound lines below the buffer size
	}
	for range 100 {
		n, err := in.src.Read(in.buf[in.w:])
		in.w += n
		if err == io.EOF {
			in.err = io.EOF
			return nil
		}
		if err != nil {
			in.err = err
			return &Error{Kind: IO, Err: fmt.Errorf("failed to read message: %w", err)}
		}
		if n > 0 {
			return nil
		}
	}
	in.err = io.ErrNoProgress
	return &Error{Kind: IO, Err: fmt.Errorf("failed to read message: %w", io.ErrNoProgress)}
}

// frame is one active multipart.
type frame struct {
	boundary  []byte
	mediaType string
	parts     int
}

// event is what ends a body: a delimiter line of the multipart at stack index idx (a close
// delimiter if final), or the end of input (idx == -1).
type event struct {
	idx   int
	final bool
}

const eofIdx = -1

type sink interface{ write(p []byte) error }

type walker struct {
	lim     Limits
	opt     *Options
	pol     *policy.Policy       // the part rules, or nil
	legacy  func(*Part) Decision // header-only decisions when pol is nil
	in      input
	skel    *skelWriter
	sealer  Sealer
	res     *Result
	stack   []frame
	parts   int
	hdr     []byte // raw header being read
	hrd     bytes.Reader
	hbr     *bufio.Reader
	open    PartWriter // the sealed part being written, if any
	batch   batcher
	ident   identity
	b64     b64Decoder
	qp      qpDecoder
	keep    keepSink
	hold    holdSink
	ins     *inspector // pooled with the buffers: it is large
	bufs    *walkerBuffers
	bodyEnd int64 // input offset where the last scanned body ended

	leaves   int                // leaf entities seen (policy.Part.Index)
	cids     []*inspect.CIDRefs // cid: references of each kept HTML body so far
	fan      fan                // hands a leaf's decoded bytes to everyone who needs them
	scan     ScanStream         // the open malware scan of the current leaf, if any
	scanDone bool               // the current leaf's scan has ended (verdict holds its answer)
	verdict  Verdict            // the verdict of the current leaf's scan
	pend     pendingSink
	rep      Report
}

// Rewrite reads one message from src (CRLF line endings: wrap the SMTP DATA reader in
// NewCRLFReader), writes its skeleton to dst and sends the parts to seal to s. See the package
// documentation for the security stance: not one byte of a sealed part's content is written to
// dst.
//
// Rewrite reads src to its end and closes nothing. On any error nothing written to dst may be
// used (the caller discards it), the open PartWriter, if any, is aborted, and the error is an
// *Error whose Kind says whether to answer 5xx (Malformed, LimitExceeded) or 4xx (SealerFailed, IO,
// Internal). PartWriters closed before the error stay committed: the caller rolls them back.
func Rewrite(dst io.Writer, src io.Reader, s Sealer, opt Options) (*Result, error) {
	w := newWalker(src, s, &opt)
	w.skel = newSkelWriter(dst, w.bufs.skel)
	defer opt.Buffers.put(w.bufs)
	defer func() { w.bufs.hdr = w.hdr[:0] }()
	err := w.run()
	if err != nil {
		w.abort(err)
		return nil, err
	}
	w.res.Size = w.in.pos()
	return w.res, nil
}

// abort drops what is open after a failed rewrite.
func (w *walker) abort(err error) {
	if w.open != nil {
		w.open.Abort(err)
		w.open = nil
	}
	if w.scan != nil {
		w.scan.Abort()
		w.scan = nil
	}
}

func newWalker(src io.Reader, s Sealer, opt *Options) *walker {
	w := &walker{
		lim:    opt.Limits.withDefaults(),
		opt:    opt,
		pol:    opt.Policy,
		legacy: opt.Seal,
		sealer: s,
		res:    &Result{},
	}
	if w.legacy == nil {
		w.legacy = DefaultPolicy
	}
	bufs := opt.Buffers.get(max(inputBufSize, w.lim.MaxLineBytes+maxBoundaryLen+maxPadding+16))
	w.bufs = bufs
	w.ins = &bufs.ins
	w.hdr = bufs.hdr[:0]
	w.in = input{src: src, buf: bufs.in}
	w.hbr = bufs.hbr
	w.batch.buf = bufs.batch[:0]
	w.ident.out = &w.batch
	w.b64.stage = bufs.stage[:0]
	w.qp.ws = bufs.qpws[:0]
	w.qp.eqws = bufs.qpeqws[:0]
	w.keep.w = w
	return w
}

func (w *walker) run() error {
	if err := w.in.fill(); err != nil {
		return err
	}
	if w.in.w == 0 {
		return errorf(Malformed, "failed to read message: empty: %w", ErrTruncated)
	}
	raw, err := w.readHeader(4*w.lim.MaxHeaderBytes, true)
	if err != nil {
		return err
	}
	h, err := w.parseHeader(raw)
	if err != nil {
		return errorf(Malformed, "failed to parse the message header: %w: %w", ErrBadHeader, err)
	}
	edited := h.Copy() // what the policy and the message decision do to h is not written
	orig := h.Copy()
	w.res.Header = orig // only read from here on
	if w.opt.EditHeader != nil {
		w.opt.EditHeader(&edited)
		if !sameContentFields(&orig, &edited) {
			return errorf(Internal, "failed to edit the header: %w", ErrContentEdited)
		}
	}
	md := policy.MessageDecision{Action: policy.SealAttachments}
	if w.opt.Message != nil {
		md = w.opt.Message(&h)
	}
	var ev event
	switch md.Action {
	case policy.Refuse:
		return &Error{Kind: Refused, Err: &Refusal{Rule: md.Rule, Reason: md.Reason}}
	case policy.Pass:
		// Delivered as sent: the header as edited, the body raw.
		if err := w.writeHeader(&edited); err != nil {
			return err
		}
		if ev, err = w.keepBody(); err != nil {
			return err
		}
	case policy.SealMessage:
		if ev, err = w.sealMessage(&edited, nil, md.Rule); err != nil {
			return err
		}
	default:
		e := analyze(&h, 0, "")
		d, err := w.decide(e)
		if err != nil {
			return err
		}
		if d.Action == policy.Descend && !edited.Has("Mime-Version") {
			edited.Add("MIME-Version", "1.0")
		}
		if ev, err = w.handle(e, d, raw, &orig, &edited); err != nil {
			return err
		}
	}
	if err := w.loop(ev); err != nil {
		return err
	}
	return w.skel.end()
}

// writeSealedTop writes the top-level header of a message whose top-level entity is sealed:
// the placeholder supplies the Content-* fields, the blank line and the body.
func (w *walker) writeSealedTop(edited *textproto.Header) error {
	fs := edited.Fields()
	for fs.Next() {
		if isContentField(fs.Key()) {
			continue
		}
		b, err := fs.Raw()
		if err != nil {
			return errorf(Internal, "failed to write a header field set by EditHeader: %w", err)
		}
		if err := w.skel.raw(b); err != nil {
			return err
		}
	}
	if !edited.Has("Mime-Version") {
		return w.skel.rawString("MIME-Version: 1.0\r\n")
	}
	return nil
}

// loop handles the events that end bodies until the end of input.
func (w *walker) loop(ev event) error {
	var err error
	for {
		if ev.idx < 0 {
			if len(w.stack) > 0 {
				return errorf(Malformed, "failed to find a close delimiter: %w", ErrTruncated)
			}
			return nil
		}
		for len(w.stack)-1 > ev.idx { // an outer delimiter closes the inner multiparts (RFC 2046 5.1.2)
			if err := w.closeFrame(); err != nil {
				return err
			}
		}
		if ev.final {
			if err := w.closeFrame(); err != nil {
				return err
			}
			if len(w.stack) == 0 {
				if err := w.skel.rawString("\r\n"); err != nil {
					return err
				}
			}
			if ev, err = w.scanBody(nil); err != nil { // epilogue: dropped
				return err
			}
			continue
		}
		w.parts++
		if w.parts > w.lim.MaxParts {
			return errorf(LimitExceeded, "failed to read part %d: %w (limit %d)", w.parts, ErrTooManyParts, w.lim.MaxParts)
		}
		f := &w.stack[ev.idx]
		if f.parts > 0 {
			w.skel.rawString("\r\n")
		}
		w.skel.rawString("--")
		w.skel.raw(f.boundary)
		if err := w.skel.rawString("\r\n"); err != nil {
			return err
		}
		f.parts++
		if ev, err = w.part(f.mediaType); err != nil {
			return err
		}
	}
}

func (w *walker) closeFrame() error {
	f := &w.stack[len(w.stack)-1]
	if f.parts > 0 {
		w.skel.rawString("\r\n")
	}
	w.skel.rawString("--")
	w.skel.raw(f.boundary)
	w.stack = w.stack[:len(w.stack)-1]
	return w.skel.rawString("--")
}

// part handles one body part, from its header on.
func (w *walker) part(parent string) (event, error) {
	raw, err := w.readHeader(w.lim.MaxHeaderBytes, false)
	if err != nil {
		return event{idx: eofIdx}, err
	}
	h, err := w.parseHeader(raw)
	if err != nil {
		e := &entity{
			part:        Part{Depth: len(w.stack), Parent: parent, MediaType: "application/octet-stream"},
			unparseable: "unparseable header",
		}
		d, err := w.decide(e)
		if err != nil {
			return event{idx: eofIdx}, err
		}
		return w.handle(e, d, raw, nil, nil)
	}
	e := analyze(&h, len(w.stack), parent)
	d, err := w.decide(e)
	if err != nil {
		return event{idx: eofIdx}, err
	}
	return w.handle(e, d, raw, &h, nil)
}

// handle carries out the decision d on the entity e whose header was just read: raw, parsed
// as h (nil when it could not be parsed). top is the edited top-level header when e is the
// top-level entity (it is written instead of raw), nil for a body part.
func (w *walker) handle(e *entity, d policy.PartDecision, raw []byte, h, top *textproto.Header) (event, error) {
	writeHeader := func() error {
		if top != nil {
			return w.writeHeader(top)
		}
		return w.skel.raw(raw)
	}
	switch d.Action {
	case policy.Refuse:
		w.report(e, policy.Refuse, d.Rule, "", nil, -1)
		return event{idx: eofIdx}, &Error{Kind: Refused, Err: &Refusal{Rule: d.Rule, Reason: d.Reason}}
	case policy.Descend:
		w.report(e, policy.Descend, d.Rule, "", nil, -1)
		if err := writeHeader(); err != nil {
			return event{idx: eofIdx}, err
		}
		return w.descend(e)
	case policy.Keep:
		if inspected(e.part.MediaType) {
			return w.keepText(e, raw, h, top, d.Rule)
		}
		if w.opt.Scanner != nil || w.opt.Gather {
			return w.keepStreamed(e, raw, top, d)
		}
		w.report(e, policy.Keep, d.Rule, "", nil, -1)
		if err := writeHeader(); err != nil {
			return event{idx: eofIdx}, err
		}
		return w.keepBody()
	case policy.Pending:
		return w.pending(e, d, raw, h, top)
	}
	if top != nil {
		if err := w.writeSealedTop(top); err != nil {
			return event{idx: eofIdx}, err
		}
	}
	return w.seal(e, d.Rule, raw, h)
}

// decide applies the policy to e and corrects its answer towards sealing where it does not
// fit. It returns Keep, Seal, Descend, Refuse or Pending.
func (w *walker) decide(e *entity) (policy.PartDecision, error) {
	multipart := strings.HasPrefix(e.part.MediaType, "multipart/")
	if e.unparseable == "" && multipart {
		for _, f := range w.stack {
			if bytes.HasPrefix(f.boundary, e.boundary) || bytes.HasPrefix(e.boundary, f.boundary) {
				e.unparseable = "boundary conflicts with an enclosing boundary"
			}
		}
	}
	e.facts = policy.Part{MediaType: e.part.MediaType, Disposition: e.part.Disposition,
		Filename: e.part.Filename, HasFilename: e.part.HasFilename, Index: -1}
	if !multipart {
		e.facts.Index = w.leaves
		w.leaves++
		if len(w.cids) > 0 && e.part.Header != nil {
			id := e.part.Header.Get("Content-Id")
			for _, c := range w.cids {
				if c.Has(id) {
					e.facts.Inline = true
					break
				}
			}
		}
	}
	if e.unparseable != "" {
		return policy.PartDecision{Action: policy.Seal, Rule: "unparseable"}, nil
	}
	var d policy.PartDecision
	if w.pol != nil {
		d = w.pol.Part(&e.facts)
	} else {
		d = legacyDecision(w.legacy(&e.part))
	}
	switch {
	case d.Action == policy.Keep && multipart:
		d.Action = policy.Descend
	case d.Action == policy.Keep && e.paramErr:
		e.unparseable = "bad Content-Type parameters"
		return policy.PartDecision{Action: policy.Seal, Rule: "unparseable"}, nil
	case d.Action == policy.Pending && (multipart || !d.MayKeep && !d.MaySeal && !d.MayRefuse):
		d = policy.PartDecision{Action: policy.Seal, Rule: d.Rule}
	case d.Action == policy.Pending && e.paramErr && d.MayKeep:
		// A part whose parameters cannot be parsed is never kept: the content decides between
		// sealing and refusing.
		d.MayKeep, d.MaySeal, d.KeepLimit = false, true, 0
	case d.Action == policy.Descend && !multipart:
		d.Action = policy.Seal
	case d.Action != policy.Keep && d.Action != policy.Descend && d.Action != policy.Refuse && d.Action != policy.Pending:
		d.Action = policy.Seal
	}
	if d.Action == policy.Seal && d.Rule == "" {
		d.Rule = "policy"
	}
	if d.Action == policy.Descend && len(w.stack)+1 > w.lim.MaxDepth {
		return d, errorf(LimitExceeded, "failed to enter a multipart: %w (limit %d)", ErrTooDeep, w.lim.MaxDepth)
	}
	return d, nil
}

// descend enters the multipart whose header was just written and skips its preamble.
func (w *walker) descend(e *entity) (event, error) {
	w.stack = append(w.stack, frame{boundary: e.boundary, mediaType: e.part.MediaType})
	return w.scanBody(nil) // preamble: dropped
}

func (w *walker) keepBody() (event, error) {
	w.keep.chk = crlfCheck{}
	ev, err := w.scanBody(&w.keep)
	if err == nil && w.keep.chk.cr {
		err = errorf(Malformed, "failed to copy a kept part: %w", ErrBareLineEnding)
	}
	return ev, err
}

// seal seals the entity whose header (raw; h when it could be parsed) was just read: the
// skeleton gets a placeholder, the Sealer gets the content.
func (w *walker) seal(e *entity, reason string, raw []byte, h *textproto.Header) (event, error) {
	mt := e.part.MediaType
	rawWhole := e.unparseable != "" || strings.HasPrefix(mt, "multipart/")
	a := Attachment{
		Filename:    e.part.Filename,
		ContentType: mt,
		Whole:       rawWhole || mt == "message/rfc822" || mt == "message/global",
		Reason:      reason,
	}
	w.startLeaf(e)
	dec, err := w.beginSeal(e, &a, rawWhole, raw, h)
	if err != nil {
		return event{idx: eofIdx}, err
	}
	start := w.in.pos()
	ev, err := w.scanBody(dec)
	if err != nil {
		return event{idx: eofIdx}, err
	}
	if err := dec.close(); err != nil {
		return event{idx: eofIdx}, err
	}
	if err := w.endSeal(a.Index, start); err != nil {
		return event{idx: eofIdx}, err
	}
	w.report(e, policy.Seal, reason, "", nil, a.Index)
	return ev, nil
}

// beginSeal starts sealing an entity: it opens a PartWriter, writes the placeholder and, for
// an entity sealed whole raw, its header into the sealed file (h's Content-* fields and a
// blank line: a valid .eml; raw when h is nil). It returns the decoder for the body. a.Index
// is set here.
func (w *walker) beginSeal(e *entity, a *Attachment, rawWhole bool, raw []byte, h *textproto.Header) (decoder, error) {
	pw, err := w.openSeal(a)
	if err != nil {
		return nil, err
	}
	w.batch.buf = w.batch.buf[:0]
	w.batch.pw = pw
	if w.scan != nil || w.fan.ins != nil {
		w.fan.pw, w.fan.hid, w.fan.cid, w.fan.holding = pw, nil, nil, false
		w.batch.pw = &w.fan
	}
	switch {
	case rawWhole && h == nil:
		if err := w.batch.write(raw); err != nil {
			return nil, err
		}
	case rawWhole:
		fs := h.Fields()
		for fs.Next() {
			if !isContentField(fs.Key()) {
				continue
			}
			b, _ := fs.Raw() // fields read from the input always have their raw bytes
			if err := w.batch.write(b); err != nil {
				return nil, err
			}
		}
		if err := w.batch.write([]byte("\r\n")); err != nil {
			return nil, err
		}
	case e.part.Encoding == "base64":
		w.b64.reset(&w.batch)
		return &w.b64, nil
	case e.part.Encoding == "quoted-printable":
		w.qp.reset(&w.batch)
		return &w.qp, nil
	}
	return &w.ident, nil
}

// openSeal opens a PartWriter for a (a.Index is set here) and starts the malware scan of the
// part if none is open. The placeholder is written when the part is committed (endSeal).
func (w *walker) openSeal(a *Attachment) (PartWriter, error) {
	a.Index = len(w.res.Attachments)
	if w.opt.Scanner != nil && w.scan == nil && !w.scanDone {
		if err := w.startScan(); err != nil {
			return nil, err
		}
	}
	pw, err := w.sealer.Begin(*a)
	if err == nil && pw == nil {
		err = errors.New("Begin returned no PartWriter")
	}
	if err != nil {
		return nil, &Error{Kind: SealerFailed, Err: fmt.Errorf("failed to begin sealed part %d: %w", a.Index, err)}
	}
	w.open = pw
	w.res.Attachments = append(w.res.Attachments, *a)
	return pw, nil
}

// endSeal commits the sealed part whose body started at input offset start: the scan's
// verdict first (an infected part is aborted and fails the rewrite), then the PartWriter,
// then the placeholder.
func (w *walker) endSeal(index int, start int64) error {
	if err := w.batch.flush(); err != nil {
		return err
	}
	if err := w.endScan(); err != nil {
		return err
	}
	a := &w.res.Attachments[index]
	if w.verdict.Infected {
		return &Error{Kind: Infected, Err: &Malware{Signature: w.verdict.Signature, Rule: a.Reason}}
	}
	pw := w.open
	w.open = nil
	if err := pw.Close(); err != nil {
		return &Error{Kind: SealerFailed, Err: fmt.Errorf("failed to commit sealed part %d: %w", index, err)}
	}
	a.Scanned = w.verdict.Scanned
	if err := w.skel.placeholder(*a); err != nil {
		return err
	}
	if w.opt.testSpan != nil {
		w.opt.testSpan(index, start, w.bodyEnd)
	}
	return nil
}

// indexDelim returns the index of the first "\r\n--" in data, or -1. It searches for '-',
// which base64 never contains, so a big base64 body costs one SIMD scan.
func indexDelim(data []byte) int {
	for off := 0; ; {
		j := bytes.IndexByte(data[off:], '-')
		if j < 0 {
			return -1
		}
		j += off
		if j >= 2 && j+1 < len(data) && data[j+1] == '-' && data[j-1] == '\n' && data[j-2] == '\r' {
			return j - 2
		}
		off = j + 1
	}
}

// scanBody streams the body that starts at the current position (a line start) to s (nil
// drops it), up to the next delimiter line of an active multipart or the end of input. The CRLF
// before a delimiter belongs to the delimiter, not to the body. The delimiter line is consumed.
func (w *walker) scanBody(s sink) (event, error) {
	in := &w.in
	bol := true
	for {
		data := in.buf[in.r:in.w]
		if len(w.stack) == 0 { // nothing can end this body but the end of input
			if err := w.pass(s, data); err != nil {
				return event{idx: eofIdx}, err
			}
			if ev, done, err := w.more(); done {
				return ev, err
			}
			continue
		}
		if bol {
			if len(data) < 2 && !in.eof() {
				if err := in.fill(); err != nil {
					return event{idx: eofIdx}, err
				}
				continue
			}
			if len(data) >= 2 && data[0] == '-' && data[1] == '-' {
				res, idx, final, n := w.matchDelim(data, in.eof())
				switch res {
				case needMore:
					if err := in.fill(); err != nil {
						return event{idx: eofIdx}, err
					}
					continue
				case isDelim:
					w.bodyEnd = in.pos()
					in.r += n
					return event{idx: idx, final: final}, nil
				case ambiguous:
					return event{idx: eofIdx}, errorf(Malformed, "failed to find part boundaries: %w", ErrAmbiguous)
				}
			}
			bol = false
		}
		i := indexDelim(data)
		if i < 0 {
			n := len(data)
			if !in.eof() {
				n -= 3 // may be the start of "\r\n--"
			}
			if n > 0 {
				if err := w.pass(s, data[:n]); err != nil {
					return event{idx: eofIdx}, err
				}
			}
			if ev, done, err := w.more(); done {
				return ev, err
			}
			continue
		}
		if err := w.pass(s, data[:i]); err != nil {
			return event{idx: eofIdx}, err
		}
		data = data[i:]
		res, idx, final, n := w.matchDelim(data[2:], in.eof())
		switch res {
		case needMore:
			if err := in.fill(); err != nil {
				return event{idx: eofIdx}, err
			}
		case isDelim:
			w.bodyEnd = in.pos()
			in.r += 2 + n
			return event{idx: idx, final: final}, nil
		case ambiguous:
			return event{idx: eofIdx}, errorf(Malformed, "failed to find part boundaries: %w", ErrAmbiguous)
		case notDelim:
			if err := w.pass(s, data[:4]); err != nil {
				return event{idx: eofIdx}, err
			}
		}
	}
}

// pass writes data, the next bytes of the input, to s (nil drops them) and consumes them.
func (w *walker) pass(s sink, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	if s != nil {
		if err := s.write(data); err != nil {
			return err
		}
	}
	w.in.r += len(data)
	return nil
}

// more reads more of the input for scanBody; done is true at the end of input (the body
// ends there: the event is eofIdx) or on a read error.
func (w *walker) more() (ev event, done bool, err error) {
	if w.in.eof() {
		w.bodyEnd = w.in.pos()
		return event{idx: eofIdx}, true, nil
	}
	if err := w.in.fill(); err != nil {
		return event{idx: eofIdx}, true, err
	}
	return event{}, false, nil
}

type delimResult int

const (
	notDelim delimResult = iota
	isDelim
	needMore
	ambiguous
)

// matchDelim checks the line at p, which starts with "--", against the active boundaries.
// eof means no input follows p. For a delimiter it returns the stack index, whether it is a
// close delimiter, and the length of the line with its CRLF. A line that starts with "--" and
// a boundary but is not exactly a delimiter line is ambiguous: some parsers take it as a
// delimiter (prefix match), others do not. Active boundaries are pairwise not prefixes of each
// other, so at most one can match.
func (w *walker) matchDelim(p []byte, eof bool) (res delimResult, idx int, final bool, n int) {
	body := p[2:]
	for i := len(w.stack) - 1; i >= 0; i-- {
		b := w.stack[i].boundary
		if len(body) < len(b) {
			if !eof && bytes.HasPrefix(b, body) {
				return needMore, 0, false, 0
			}
			continue
		}
		if !bytes.HasPrefix(body, b) {
			continue
		}
		rest := body[len(b):]
		if !eof && len(rest) < 2 {
			return needMore, 0, false, 0
		}
		final := len(rest) >= 2 && rest[0] == '-' && rest[1] == '-'
		j := 0
		if final {
			j = 2
		}
		for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t') {
			if j++; j > maxPadding {
				return ambiguous, 0, false, 0
			}
		}
		switch {
		case j == len(rest) && eof:
			return isDelim, i, final, len(p)
		case j == len(rest):
			return needMore, 0, false, 0
		case rest[j] == '\r' && j+1 == len(rest) && !eof:
			return needMore, 0, false, 0
		case rest[j] == '\r' && j+1 < len(rest) && rest[j+1] == '\n':
			return isDelim, i, final, 2 + len(b) + j + 2
		}
		return ambiguous, 0, false, 0
	}
	return notDelim, 0, false, 0
}

// readHeader reads a header (its field lines and the blank line that ends it) into w.hdr.
// Every line must end in CRLF, fit MaxLineBytes and not be a delimiter line. At the top level a
// header may also end at the end of input (a message without body).
func (w *walker) readHeader(limit int, top bool) ([]byte, error) {
	in := &w.in
	w.hdr = w.hdr[:0]
	for {
		scanned := 0
		var line []byte
		for {
			data := in.buf[in.r:in.w]
			if i := bytes.IndexByte(data[scanned:], '\n'); i >= 0 {
				line = data[:scanned+i+1]
				break
			}
			scanned = len(data)
			if scanned >= w.lim.MaxLineBytes {
				return nil, errorf(LimitExceeded, "failed to read a header: %w (limit %d bytes)", ErrLineTooLong, w.lim.MaxLineBytes)
			}
			if in.eof() {
				if len(data) == 0 && top && len(w.hdr) > 0 {
					return w.hdr, nil
				}
				return nil, errorf(Malformed, "failed to read a header: %w", ErrTruncated)
			}
			if err := in.fill(); err != nil {
				return nil, err
			}
		}
		if len(line) > w.lim.MaxLineBytes {
			return nil, errorf(LimitExceeded, "failed to read a header: %w (limit %d bytes)", ErrLineTooLong, w.lim.MaxLineBytes)
		}
		if len(line) < 2 || line[len(line)-2] != '\r' || bytes.IndexByte(line[:len(line)-2], '\r') >= 0 {
			return nil, errorf(Malformed, "failed to read a header: %w", ErrBareLineEnding)
		}
		if len(w.stack) > 0 && line[0] == '-' && len(line) > 1 && line[1] == '-' {
			if res, _, _, _ := w.matchDelim(line, true); res != notDelim {
				return nil, errorf(Malformed, "failed to read a part header: delimiter inside: %w", ErrAmbiguous)
			}
		}
		if len(w.hdr)+len(line) > limit {
			return nil, errorf(LimitExceeded, "failed to read a header: %w (limit %d bytes)", ErrHeaderTooLarge, limit)
		}
		w.hdr = append(w.hdr, line...)
		in.r += len(line)
		if len(line) == 2 {
			return w.hdr, nil
		}
	}
}

func (w *walker) parseHeader(raw []byte) (textproto.Header, error) {
	w.hrd.Reset(raw)
	w.hbr.Reset(&w.hrd)
	return textproto.ReadHeader(w.hbr)
}

func (w *walker) writeHeader(h *textproto.Header) error {
	if err := textproto.WriteHeader(w.skel, *h); err != nil {
		if w.skel.err != nil {
			return w.skel.err
		}
		return errorf(Internal, "failed to write a header field set by EditHeader: %w", err)
	}
	return nil
}

func isContentField(k string) bool {
	return len(k) >= 8 && strings.EqualFold(k[:8], "content-")
}

// sameContentFields reports whether a and b have the same Content-* fields, byte for byte and in
// the same order.
func sameContentFields(a, b *textproto.Header) bool {
	collect := func(h *textproto.Header) [][]byte {
		var out [][]byte
		fs := h.Fields()
		for fs.Next() {
			if isContentField(fs.Key()) {
				raw, err := fs.Raw()
				if err != nil {
					raw = []byte{0}
				}
				out = append(out, raw)
			}
		}
		return out
	}
	fa, fb := collect(a), collect(b)
	if len(fa) != len(fb) {
		return false
	}
	for i := range fa {
		if !bytes.Equal(fa[i], fb[i]) {
			return false
		}
	}
	return true
}

// keepSink copies a kept body into the skeleton, refusing bare CR and LF.
type keepSink struct {
	w   *walker
	chk crlfCheck
}

func (k *keepSink) write(p []byte) error {
	if !k.chk.ok(p) {
		return errorf(Malformed, "failed to copy a kept part: %w", ErrBareLineEnding)
	}
	return k.w.skel.raw(p)
}

// crlfCheck verifies, across chunks, that every CR is followed by LF and every LF preceded by CR.
type crlfCheck struct{ cr bool } // the previous chunk ended with CR

func (c *crlfCheck) ok(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	if c.cr != (p[0] == '\n') {
		return false
	}
	accounted := 0
	for i := 0; ; {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		j += i
		if j > 0 && p[j-1] != '\r' {
			return false
		}
		if j > 0 {
			accounted++ // the CR before this LF
		}
		i = j + 1
	}
	last := p[len(p)-1] == '\r'
	if last {
		accounted++
	}
	if bytes.Count(p, []byte{'\r'}) != accounted {
		return false
	}
	c.cr = last
	return true
}

// Write lets textproto.WriteHeader write into the skeleton.
func (s *skelWriter) Write(p []byte) (int, error) {
	if err := s.raw(p); err != nil {
		return 0, err
	}
	return len(p), nil
}
