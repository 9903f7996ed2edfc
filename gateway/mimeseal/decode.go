package mimeseal

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
)

const (
	batchFlush = 64 << 10  // a PartWriter gets writes of at least this size, except the last
	batchCap   = 256 << 10 // batch buffer size
	b64Stage   = 128 << 10 // base64 text decoded per call of Decode (96 KiB of output)
	qpMaxWS    = 1024      // trailing white space held back by the quoted-printable decoder
)

// batcher collects the decoded bytes of one sealed part and hands them to its PartWriter in
// writes of at least batchFlush bytes.
type batcher struct {
	pw  PartWriter
	buf []byte // cap batchCap
}

func (b *batcher) write(p []byte) error {
	for len(p) > 0 {
		n := copy(b.buf[len(b.buf):cap(b.buf)], p)
		b.buf = b.buf[:len(b.buf)+n]
		p = p[n:]
		if len(b.buf) >= batchFlush {
			if err := b.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// reserve returns at least n bytes of free space at the end of the batch (n ≤ batchCap/2);
// commit then adds what was written there.
func (b *batcher) reserve(n int) ([]byte, error) {
	if cap(b.buf)-len(b.buf) < n {
		if err := b.flush(); err != nil {
			return nil, err
		}
	}
	return b.buf[len(b.buf):cap(b.buf)], nil
}

func (b *batcher) commit(n int) error {
	b.buf = b.buf[:len(b.buf)+n]
	if len(b.buf) >= batchFlush {
		return b.flush()
	}
	return nil
}

func (b *batcher) flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	n, err := b.pw.Write(b.buf)
	if err == nil && n != len(b.buf) {
		err = io.ErrShortWrite
	}
	b.buf = b.buf[:0]
	if err != nil {
		return &Error{Kind: SealerFailed, Err: fmt.Errorf("failed to write sealed part: %w", err)}
	}
	return nil
}

// A decoder turns the raw body of a sealed part into its content, into a batcher. write gets
// the body in arbitrary pieces; close is called once at the end of the body.
type decoder interface {
	write(p []byte) error
	close() error
}

// identity is the decoder for 7bit, 8bit and binary, and for parts sealed raw.
type identity struct{ out *batcher }

func (d *identity) write(p []byte) error { return d.out.write(p) }
func (d *identity) close() error         { return nil }

// b64Decoder is a streaming, line-aware base64 decoder. It strips line breaks while copying
// lines into a large stage and decodes the stage with one call of Decode, so its cost is about
// that of memmove plus Decode. Leniency: white space is skipped; decoding stops at the first
// padding character (the rest of the body is ignored); a final quantum of 2 or 3 characters
// without padding is accepted. Any other byte outside the alphabet is an error (Malformed):
// a sealed part that cannot be decoded is refused, never passed on.
//
// With strict set (a kept text part being inspected), anything but padding and white space
// after the first padding character is an error too: clients differ on what they decode there
// (some go on decoding), so what they show cannot be known.
type b64Decoder struct {
	out     *batcher
	stage   []byte // base64 text, line breaks removed; cap b64Stage
	done    bool   // padding seen
	lineLen int    // length of the last line ended by CRLF, for the fast path
	strict  bool
}

func (d *b64Decoder) reset(out *batcher) {
	d.out, d.stage, d.done, d.lineLen, d.strict = out, d.stage[:0], false, 0, false
}

func (d *b64Decoder) write(p []byte) error {
	if d.done && d.strict && !onlyPadding(p) {
		return errorf(Malformed, "failed to decode base64 of a text part: %w: data after the padding", ErrBadEncoding)
	}
	for len(p) > 0 && !d.done {
		// Fast path: lines of the same length as the last one, ended by CRLF. If the guess is
		// wrong (a shorter line), the CRLF inside is copied and removed later by stripSpace.
		if l := d.lineLen; l > 0 && len(p) >= l+2 && p[l] == '\r' && p[l+1] == '\n' && cap(d.stage)-len(d.stage) >= l {
			d.stage = append(d.stage, p[:l]...)
			p = p[l+2:]
			if len(d.stage) == cap(d.stage) {
				if err := d.flush(false); err != nil {
					return err
				}
			}
			continue
		}
		var seg []byte
		crlf := false
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			seg, p = p[:i], p[i+1:]
			if n := len(seg); n > 0 && seg[n-1] == '\r' {
				seg, crlf = seg[:n-1], true
			}
		} else {
			seg, p = p, nil
			if n := len(seg); n > 0 && seg[n-1] == '\r' {
				seg = seg[:n-1]
			}
		}
		d.lineLen = 0
		if crlf && len(seg) <= 1000 {
			d.lineLen = len(seg)
		}
		for len(seg) > 0 {
			n := copy(d.stage[len(d.stage):cap(d.stage)], seg)
			d.stage = d.stage[:len(d.stage)+n]
			seg = seg[n:]
			if len(d.stage) == cap(d.stage) {
				if err := d.flush(false); err != nil {
					return err
				}
				if d.done {
					if d.strict && (!onlyPadding(seg) || !onlyPadding(p)) {
						return errorf(Malformed, "failed to decode base64 of a text part: %w: data after the padding", ErrBadEncoding)
					}
					return nil
				}
			}
		}
	}
	if d.done && d.strict && !onlyPadding(p) {
		return errorf(Malformed, "failed to decode base64 of a text part: %w: data after the padding", ErrBadEncoding)
	}
	return nil
}

// onlyPadding reports whether p holds nothing but "=" and white space.
func onlyPadding(p []byte) bool {
	for _, c := range p {
		switch c {
		case '=', ' ', '\t', '\r', '\n', '\f', '\v':
		default:
			return false
		}
	}
	return true
}

func (d *b64Decoder) close() error {
	if d.done {
		return nil
	}
	return d.flush(true)
}

// flush decodes the complete quanta in the stage (all of it when final or when padding is
// seen) and keeps the rest for the next call.
func (d *b64Decoder) flush(final bool) error {
	s := d.stage
	pad := false
	if i := bytes.IndexByte(s, '='); i >= 0 {
		if d.strict && !onlyPadding(s[i:]) {
			return errorf(Malformed, "failed to decode base64 of a text part: %w: data after the padding", ErrBadEncoding)
		}
		s, pad = s[:i], true
	}
	end := final || pad
	for retry := false; ; retry = true {
		k := len(s) &^ 3
		dst, err := d.out.reserve(k/4*3 + 8)
		if err != nil {
			return err
		}
		// Valid quanta go through the table-driven fast path; the first quantum it cannot
		// decode (white space, a bad byte) and everything after it go through the standard
		// library, which decides what is an error.
		si, n := decodeQuanta(dst, s[:k])
		m, err := base64.StdEncoding.Decode(dst[n:], s[si:k])
		n += m
		rest := s[k:]
		if err == nil && end {
			switch len(rest) {
			case 0:
			case 1:
				err = fmt.Errorf("truncated final quantum")
			default:
				m, err = base64.RawStdEncoding.Decode(dst[n:], rest)
				n += m
			}
			rest = nil
		}
		if err != nil {
			if !retry {
				s = stripSpace(s)
				continue
			}
			return errorf(Malformed, "failed to decode base64 of a sealed part: %w: %w", ErrBadEncoding, err)
		}
		if err := d.out.commit(n); err != nil {
			return err
		}
		d.stage = d.stage[:copy(d.stage, rest)]
		d.done = pad
		return nil
	}
}

// b64Invalid marks a byte outside the alphabet in b64Table.
const b64Invalid = 0xff000000

// b64Table holds, for each byte and each position in a quantum, its 6 bits shifted into place,
// or b64Invalid. It is a constant table, built once.
var b64Table = func() (t [4][256]uint32) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for pos := range t {
		for c := range t[pos] {
			t[pos][c] = b64Invalid
		}
		for v := 0; v < len(alphabet); v++ {
			t[pos][alphabet[v]] = uint32(v) << (18 - 6*pos)
		}
	}
	return t
}()

// decodeQuanta decodes src (a multiple of 4 long) into dst (with 8 bytes of slack) while the
// quanta are valid, and returns how many bytes it consumed and wrote.
func decodeQuanta(dst, src []byte) (si, di int) {
	t0, t1, t2, t3 := &b64Table[0], &b64Table[1], &b64Table[2], &b64Table[3]
	for len(src)-si >= 16 && len(dst)-di >= 14 {
		q := src[si : si+16 : si+16]
		x := t0[q[0]] | t1[q[1]] | t2[q[2]] | t3[q[3]]
		y := t0[q[4]] | t1[q[5]] | t2[q[6]] | t3[q[7]]
		z := t0[q[8]] | t1[q[9]] | t2[q[10]] | t3[q[11]]
		w := t0[q[12]] | t1[q[13]] | t2[q[14]] | t3[q[15]]
		if (x|y|z|w)&b64Invalid != 0 {
			break
		}
		d := dst[di : di+14 : di+14]
		binary.BigEndian.PutUint64(d, uint64(x)<<40|uint64(y)<<16)
		binary.BigEndian.PutUint64(d[6:], uint64(z)<<40|uint64(w)<<16)
		si += 16
		di += 12
	}
	for len(src)-si >= 8 && len(dst)-di >= 8 {
		q := src[si : si+8 : si+8]
		x := t0[q[0]] | t1[q[1]] | t2[q[2]] | t3[q[3]]
		y := t0[q[4]] | t1[q[5]] | t2[q[6]] | t3[q[7]]
		if (x|y)&b64Invalid != 0 {
			break
		}
		binary.BigEndian.PutUint64(dst[di:], uint64(x)<<40|uint64(y)<<16)
		si += 8
		di += 6
	}
	for len(src)-si >= 4 && len(dst)-di >= 4 {
		q := src[si : si+4 : si+4]
		x := t0[q[0]] | t1[q[1]] | t2[q[2]] | t3[q[3]]
		if x&b64Invalid != 0 {
			break
		}
		binary.BigEndian.PutUint32(dst[di:], x<<8)
		si += 4
		di += 3
	}
	return si, di
}

// stripSpace removes white space from s in place.
func stripSpace(s []byte) []byte {
	j := 0
	for _, c := range s {
		switch c {
		case ' ', '\t', '\r', '\n', '\f', '\v':
		default:
			s[j] = c
			j++
		}
	}
	return s[:j]
}

// qpDecoder is a streaming, lenient quoted-printable decoder (RFC 2045 section 6.7): "=" with
// two hex digits (either case) is a byte, "=" at the end of a line (white space allowed after
// it) is a soft line break, white space at the end of a line is dropped, and an "=" followed by
// anything else is kept literally. It never fails: a broken encoding must not make a sealed
// part pass in clear.
//
// With strict set (a kept text part being inspected), an "=" kept literally is an error:
// clients differ on such a sequence (some drop the "=", some the "=" and what follows), so what
// they show cannot be known.
type qpDecoder struct {
	out    *batcher
	state  int
	h1     byte   // first hex digit after "="
	ws     []byte // pending white space (trailing if a line break follows); cap qpMaxWS
	eqws   []byte // white space after "=" (a soft line break if a line break follows); cap qpMaxWS
	strict bool
	bad    bool // an "=" was kept literally
}

const (
	qpNormal = iota
	qpCR     // after CR
	qpEq     // after "="
	qpEqHex  // after "=" and one hex digit
	qpEqWS   // after "=" and white space
	qpEqCR   // after "=", maybe white space, and CR
)

func (d *qpDecoder) reset(out *batcher) {
	d.out, d.state, d.ws, d.eqws, d.strict, d.bad = out, qpNormal, d.ws[:0], d.eqws[:0], false, false
}

func (d *qpDecoder) check() error {
	if d.strict && d.bad {
		return errorf(Malformed, "failed to decode quoted-printable of a text part: %w: \"=\" not followed by two hex digits", ErrBadEncoding)
	}
	return nil
}

func (d *qpDecoder) write(p []byte) error {
	const chunk = 32 << 10
	for len(p) > 0 {
		c := p[:min(len(p), chunk)]
		p = p[len(c):]
		dst, err := d.out.reserve(len(c) + 2*qpMaxWS + 8)
		if err != nil {
			return err
		}
		if err := d.out.commit(d.decode(dst, c)); err != nil {
			return err
		}
		if err := d.check(); err != nil {
			return err
		}
	}
	return nil
}

func (d *qpDecoder) close() error {
	dst, err := d.out.reserve(2*qpMaxWS + 8)
	if err != nil {
		return err
	}
	n := 0
	switch d.state {
	case qpCR:
		n += copy(dst[n:], "\r") // a bare CR at the very end
	case qpEqHex:
		dst[n], dst[n+1] = '=', d.h1
		n += 2
		d.bad = true
	}
	// pending white space is trailing; "=" at the end is a soft line break.
	d.ws, d.eqws, d.state = d.ws[:0], d.eqws[:0], qpNormal
	if err := d.out.commit(n); err != nil {
		return err
	}
	return d.check()
}

// decode decodes p into dst, which has room for len(p)+2*qpMaxWS+8 bytes.
// eqwsBack writes "=" and the white space read after it to dst[n:] as they
// came (they were no soft line break), marks the input bad and returns to
// the normal state; it returns the new n.
func (d *qpDecoder) eqwsBack(dst []byte, n int) int {
	dst[n] = '='
	n++
	n += copy(dst[n:], d.eqws)
	d.eqws = d.eqws[:0]
	d.state = qpNormal
	d.bad = true
	return n
}

func (d *qpDecoder) decode(dst, p []byte) int {
	n := 0
	emitWS := func() {
		n += copy(dst[n:], d.ws)
		d.ws = d.ws[:0]
	}
	for i := 0; i < len(p); i++ {
		if d.state == qpNormal && len(d.ws) == 0 {
			// Fast path: runs of plain bytes and complete "=XX" escapes.
			for i < len(p) {
				switch c := p[i]; c {
				case '=':
					if i+2 < len(p) {
						if h, l := hexValues[p[i+1]], hexValues[p[i+2]]; h|l < 16 {
							dst[n] = h<<4 | l
							n++
							i += 3
							continue
						}
					}
				case '\r':
					if i+1 < len(p) && p[i+1] == '\n' {
						dst[n], dst[n+1] = '\r', '\n'
						n += 2
						i += 2
						continue
					}
				case ' ', '\t', '\n':
				default:
					dst[n] = c
					n++
					i++
					continue
				}
				break
			}
			if i == len(p) {
				break
			}
		}
		c := p[i]
		switch d.state {
		case qpNormal:
			switch c {
			case '=':
				emitWS()
				d.state = qpEq
			case ' ', '\t':
				if len(d.ws) == qpMaxWS {
					emitWS()
				}
				d.ws = append(d.ws, c)
			case '\r':
				d.state = qpCR
			case '\n': // bare LF: a line break too
				d.ws = d.ws[:0]
				dst[n] = '\n'
				n++
			default:
				if len(d.ws) > 0 {
					emitWS()
				}
				dst[n] = c
				n++
			}
		case qpCR:
			d.ws = d.ws[:0] // trailing white space
			d.state = qpNormal
			if c == '\n' {
				dst[n], dst[n+1] = '\r', '\n'
				n += 2
			} else { // bare CR
				dst[n] = '\r'
				n++
				i--
			}
		case qpEq:
			switch {
			case unhex(c) >= 0:
				d.h1, d.state = c, qpEqHex
			case c == ' ' || c == '\t':
				d.eqws = append(d.eqws[:0], c)
				d.state = qpEqWS
			case c == '\r':
				d.state = qpEqCR
			case c == '\n':
				d.state = qpNormal
			default:
				dst[n] = '='
				n++
				d.state = qpNormal
				d.bad = true
				i--
			}
		case qpEqHex:
			d.state = qpNormal
			if unhex(c) >= 0 {
				dst[n] = byte(unhex(d.h1)<<4 | unhex(c))
				n++
			} else {
				dst[n], dst[n+1] = '=', d.h1
				n += 2
				d.bad = true
				i--
			}
		case qpEqWS:
			switch c {
			case ' ', '\t':
				if len(d.eqws) == qpMaxWS {
					n = d.eqwsBack(dst, n)
					i--
					continue
				}
				d.eqws = append(d.eqws, c)
			case '\r':
				d.state = qpEqCR
			case '\n':
				d.state = qpNormal
			default:
				n = d.eqwsBack(dst, n)
				i--
			}
		case qpEqCR:
			d.eqws = d.eqws[:0]
			d.state = qpNormal
			if c != '\n' { // "=" then a bare CR: a soft line break all the same
				i--
			}
		}
	}
	return n
}
