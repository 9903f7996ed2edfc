package mimeseal

import (
	"bytes"
	"io"
)

const crlfChunk = 64 << 10 // bytes read from the source per Read

// NewCRLFReader returns a reader that normalises line endings: a bare LF or a bare CR becomes
// CRLF, CRLF stays. It is the SMTP smuggling defence (CVE-2023-51764 class): go-smtp hands
// bare CR and LF to the backend, and a lone LF before "." or before a boundary is read
// differently by different MTAs and MUAs. Rewrite refuses a bare CR or LF in anything it would
// copy, so wrap the DATA reader in NewCRLFReader before calling it.
//
// It streams in constant memory. Clean input (the usual case) is passed through without a copy:
// the source is read straight into the caller's buffer and only checked, with SIMD-backed
// searches (bytes.Count, bytes.IndexByte); only a chunk with a bare CR or LF is rewritten. It
// does not close r.
func NewCRLFReader(r io.Reader) io.Reader {
	return &crlfReader{r: r}
}

type crlfReader struct {
	r    io.Reader
	chk  crlfCheck // chk.cr: the last byte returned was a CR from the source; its LF may follow
	pend []byte    // normalised bytes not yet returned
	buf  []byte    // slow-path output, reused
	err  error     // sticky source error
}

func (c *crlfReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(c.pend) > 0 {
		n := copy(p, c.pend)
		c.pend = c.pend[n:]
		return n, nil
	}
	if c.err != nil {
		return 0, c.err
	}
	q := p[:min(len(p), crlfChunk)]
	n, err := c.r.Read(q)
	if err != nil {
		c.err = err
	}
	s := q[:n]
	if n > 0 {
		probe := c.chk
		if probe.ok(s) { // fast path: already CRLF-clean, returned as read
			c.chk = probe
			c.atEOF()
			return n, nil
		}
		c.normalise(s)
		m := copy(p, c.pend)
		c.pend = c.pend[m:]
		return m, nil
	}
	c.atEOF()
	if len(c.pend) > 0 {
		m := copy(p, c.pend)
		c.pend = c.pend[m:]
		return m, nil
	}
	return 0, err
}

// atEOF completes a bare CR at the very end of the input.
func (c *crlfReader) atEOF() {
	if c.err == io.EOF && c.chk.cr {
		c.chk.cr = false
		c.pend = append(c.pend, '\n')
	}
}

// normalise rewrites s into c.pend (which is empty). The output buffer grows as needed, to at
// most 2*crlfChunk+2 bytes, and is reused.
func (c *crlfReader) normalise(s []byte) {
	out := c.buf[:0]
	cr := c.chk.cr
	for len(s) > 0 {
		if cr {
			cr = false
			out = append(out, '\n')
			if s[0] == '\n' {
				s = s[1:]
				continue
			}
		}
		i := indexCRLF(s)
		if i < 0 {
			out = append(out, s...)
			break
		}
		out = append(out, s[:i]...)
		if s[i] == '\r' {
			out = append(out, '\r')
			cr = true
		} else {
			out = append(out, '\r', '\n')
		}
		s = s[i+1:]
	}
	c.buf = out[:0]
	c.chk.cr = cr
	c.pend = out
	c.atEOF()
}

// indexCRLF returns the index of the first CR or LF in s, or -1.
func indexCRLF(s []byte) int {
	i := bytes.IndexByte(s, '\n')
	if i < 0 {
		return bytes.IndexByte(s, '\r')
	}
	if j := bytes.IndexByte(s[:i], '\r'); j >= 0 {
		return j
	}
	return i
}
