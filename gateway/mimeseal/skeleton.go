package mimeseal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The skeleton is a framed binary stream, unambiguous whatever the message contains:
//
//	skeleton    = version *record end
//	version     = %x01
//	record      = raw / placeholder
//	raw         = "R" length bytes          ; length: uint32 big-endian, 1..maxRawRecord
//	placeholder = "P" length attachment     ; length: uint32 big-endian, ≤ maxMetaRecord
//	attachment  = uvarint(Index) flags str(Filename) str(ContentType) str(Reason)
//	flags       = %x00-07                   ; bit 0: Whole, bit 1: Scanned, bit 2: Message
//	str         = uvarint(len) bytes
//	end         = "E"                       ; nothing may follow
//
// Raw records hold bytes of the final message; each placeholder stands for one complete MIME
// entity (header, blank line, body) that Render asks its notice function to write. The end
// record makes a truncated skeleton detectable.
const (
	skeletonVersion = 1
	recRaw          = 'R'
	recPlaceholder  = 'P'
	recEnd          = 'E'
	maxRawRecord    = 64 << 10
	maxMetaRecord   = 1 << 20

	flagWhole   = 1
	flagScanned = 2
	flagMessage = 4
)

// skelWriter writes the skeleton to dst, framing raw bytes in records of up to maxRawRecord.
type skelWriter struct {
	dst io.Writer
	buf []byte // buf[:5] is the record header of the pending raw record
	err error
}

// newSkelWriter returns a writer to dst; buf, if it has room for a record, is used as its
// buffer.
func newSkelWriter(dst io.Writer, buf []byte) *skelWriter {
	if cap(buf) < 5+maxRawRecord {
		buf = make([]byte, 5, 5+maxRawRecord)
	}
	s := &skelWriter{dst: dst, buf: buf[:5]}
	s.write([]byte{skeletonVersion})
	return s
}

func (s *skelWriter) write(p []byte) {
	if s.err != nil {
		return
	}
	if _, err := s.dst.Write(p); err != nil {
		s.err = &Error{Kind: IO, Err: fmt.Errorf("failed to write skeleton: %w", err)}
	}
}

// raw appends bytes of the final message.
func (s *skelWriter) raw(p []byte) error { return appendRaw(s, p) }

func (s *skelWriter) rawString(p string) error { return appendRaw(s, p) }

func appendRaw[T string | []byte](s *skelWriter, p T) error {
	for len(p) > 0 && s.err == nil {
		n := copy(s.buf[len(s.buf):cap(s.buf)], p)
		s.buf = s.buf[:len(s.buf)+n]
		p = p[n:]
		if len(s.buf) == cap(s.buf) {
			s.flush()
		}
	}
	return s.err
}

func (s *skelWriter) flush() {
	if len(s.buf) == 5 {
		return
	}
	s.buf[0] = recRaw
	binary.BigEndian.PutUint32(s.buf[1:5], uint32(len(s.buf)-5))
	s.write(s.buf)
	s.buf = s.buf[:5]
}

func (s *skelWriter) placeholder(a Attachment) error {
	s.flush()
	m := make([]byte, 5, 64+len(a.Filename)+len(a.ContentType)+len(a.Reason))
	m = binary.AppendUvarint(m, uint64(a.Index))
	var flags byte
	if a.Whole {
		flags |= flagWhole
	}
	if a.Scanned {
		flags |= flagScanned
	}
	if a.Message {
		flags |= flagMessage
	}
	m = append(m, flags)
	for _, str := range []string{a.Filename, a.ContentType, a.Reason} {
		m = binary.AppendUvarint(m, uint64(len(str)))
		m = append(m, str...)
	}
	if len(m)-5 > maxMetaRecord {
		return errorf(LimitExceeded, "attachment metadata too large")
	}
	m[0] = recPlaceholder
	binary.BigEndian.PutUint32(m[1:5], uint32(len(m)-5))
	s.write(m)
	return s.err
}

func (s *skelWriter) end() error {
	s.flush()
	s.write([]byte{recEnd})
	return s.err
}

func decodeMeta(m []byte) (Attachment, error) {
	var a Attachment
	idx, n := binary.Uvarint(m)
	if n <= 0 || idx > 1<<31 || len(m) < n+1 || m[n]&^(flagWhole|flagScanned|flagMessage) != 0 {
		return a, errors.New("bad placeholder")
	}
	a.Index, a.Whole, a.Scanned, a.Message = int(idx), m[n]&flagWhole != 0, m[n]&flagScanned != 0, m[n]&flagMessage != 0
	m = m[n+1:]
	for _, dst := range []*string{&a.Filename, &a.ContentType, &a.Reason} {
		l, n := binary.Uvarint(m)
		if n <= 0 || l > uint64(len(m)-n) {
			return a, errors.New("bad placeholder")
		}
		*dst = string(m[n : n+int(l)])
		m = m[n+int(l):]
	}
	if len(m) != 0 {
		return a, errors.New("bad placeholder")
	}
	return a, nil
}

// Render writes the final message for one recipient: the skeleton written by Rewrite with each
// placeholder replaced by what notice writes.
//
// notice must write a complete MIME entity: header fields (Content-Type,
// Content-Transfer-Encoding, ...), a blank line, then the body, with CRLF line endings. The
// shape is the same whether the placeholder stands for a part inside a multipart or for the
// body of a single-part message (then the top-level fields other than Content-* are already
// there, MIME-Version included, and the notice's fields complete that header). A notice should
// show the file name only through SafeName.
//
// Render reads the skeleton to its end and closes neither reader nor writer. Its errors are
// *Error: Malformed for a skeleton that is not valid (truncated, unknown version), IO for a
// read or write failure or an error from notice (wrapped).
func Render(w io.Writer, skeleton io.Reader, notice func(w io.Writer, a Attachment) error) error {
	br := bufio.NewReaderSize(skeleton, 64<<10)
	bw := bufio.NewWriterSize(w, 64<<10)
	corrupt := func(why string) error {
		return errorf(Malformed, "failed to render: %w: %s", ErrBadSkeleton, why)
	}
	readErr := func(err error) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return corrupt("truncated")
		}
		return &Error{Kind: IO, Err: fmt.Errorf("failed to read skeleton: %w", err)}
	}
	v, err := br.ReadByte()
	if err != nil {
		return readErr(err)
	}
	if v != skeletonVersion {
		return corrupt(fmt.Sprintf("unknown version %d", v))
	}
	var hdr [5]byte
	var meta []byte
	for {
		typ, err := br.ReadByte()
		if err != nil {
			return readErr(err)
		}
		switch typ {
		case recEnd:
			if _, err := br.ReadByte(); err == nil {
				return corrupt("data after the end")
			} else if !errors.Is(err, io.EOF) {
				return readErr(err)
			}
			if err := bw.Flush(); err != nil {
				return &Error{Kind: IO, Err: fmt.Errorf("failed to write message: %w", err)}
			}
			return nil
		case recRaw, recPlaceholder:
		default:
			return corrupt("unknown record")
		}
		hdr[0] = typ
		if _, err := io.ReadFull(br, hdr[1:5]); err != nil {
			return readErr(err)
		}
		n := binary.BigEndian.Uint32(hdr[1:5])
		if typ == recRaw {
			if n == 0 || n > maxRawRecord {
				return corrupt("bad record length")
			}
			for n > 0 {
				b, err := br.Peek(min(int(n), br.Size()))
				if err != nil {
					return readErr(err)
				}
				if _, err := bw.Write(b); err != nil {
					return &Error{Kind: IO, Err: fmt.Errorf("failed to write message: %w", err)}
				}
				br.Discard(len(b))
				n -= uint32(len(b))
			}
			continue
		}
		if n > maxMetaRecord {
			return corrupt("bad record length")
		}
		if cap(meta) < int(n) {
			meta = make([]byte, n)
		}
		meta = meta[:n]
		if _, err := io.ReadFull(br, meta); err != nil {
			return readErr(err)
		}
		a, err := decodeMeta(meta)
		if err != nil {
			return corrupt(err.Error())
		}
		if err := notice(bw, a); err != nil {
			return &Error{Kind: IO, Err: fmt.Errorf("failed to write notice for attachment %d: %w", a.Index, err)}
		}
	}
}
