package inspect

// feeder drives a format parser written as a chain of steps over pushed bytes: a step asks
// for the next n bytes (read) or for n bytes to be passed over (skip). A parser that must
// search for a signature installs a scan hook instead. Nothing here grows with the input: the
// buffer holds at most the largest single read a parser asks for, and parsers bound those.
type feeder struct {
	off  int64  // absolute offset of the next input byte
	skip int64  // bytes to pass over before the next read
	need int    // bytes the pending step wants
	buf  []byte // bytes gathered for it
	step func(b []byte)
	// scan, when set, receives the input instead of reads and skips; it returns how many bytes
	// it consumed (all of p unless it set up a read or a skip for the rest).
	scan func(p []byte) int
	done bool // the parser stopped: the rest of the input is ignored
}

// read asks for the next n bytes (n > 0) to be handed to fn. b is only valid during fn.
func (f *feeder) read(n int, fn func(b []byte)) {
	f.need, f.step, f.buf = n, fn, f.buf[:0]
}

// skipRead passes over n bytes, then reads m bytes into fn.
func (f *feeder) skipRead(n int64, m int, fn func(b []byte)) {
	f.skip = n
	f.read(m, fn)
}

func (f *feeder) stop() { f.done, f.step, f.scan = true, nil, nil }

func (f *feeder) feed(p []byte) {
	for len(p) > 0 && !f.done {
		if f.scan != nil {
			n := f.scan(p)
			f.off += int64(n)
			p = p[n:]
			continue
		}
		if f.skip > 0 {
			n := int64(len(p))
			if n > f.skip {
				n = f.skip
			}
			f.skip -= n
			f.off += n
			p = p[n:]
			continue
		}
		if f.step == nil {
			f.done = true
			return
		}
		k := min(f.need-len(f.buf), len(p))
		f.buf = append(f.buf, p[:k]...)
		f.off += int64(k)
		p = p[k:]
		if len(f.buf) == f.need {
			step, b := f.step, f.buf
			f.step, f.need = nil, 0
			step(b)
		}
	}
}

// pending reports whether the parser was waiting for more input when the part ended.
func (f *feeder) pending() bool {
	return !f.done && (f.step != nil && (f.skip > 0 || len(f.buf) < f.need) || f.scan != nil)
}

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
func le32(b []byte) uint32 { return uint32(le16(b)) | uint32(le16(b[2:]))<<16 }
func le64(b []byte) uint64 { return uint64(le32(b)) | uint64(le32(b[4:]))<<32 }
