package inspect

// RAR 4 (RAR 2.9–4.x, technote.txt): blocks of HEAD_CRC(2) HEAD_TYPE(1) HEAD_FLAGS(2)
// HEAD_SIZE(2) [ADD_SIZE(4) when HEAD_FLAGS has 0x8000], the block's data following its
// header. The main header (0x73) has MHD_PASSWORD (0x0080) when the block headers are
// encrypted; a file header (0x74) has LHD_PASSWORD (0x0004) when its data is.
type rar4 struct {
	f         feeder
	encrypted bool
	complete  bool
}

const (
	rar4Main = 0x73
	rar4File = 0x74
	rar4End  = 0x7B
)

func newRar4() *rar4 {
	r := &rar4{}
	r.f.skipRead(int64(len(sigRar4)), 7, r.block)
	return r
}

func (r *rar4) write(p []byte) { r.f.feed(p) }

func (r *rar4) finish() (string, bool, bool, string) {
	return "rar4", r.encrypted, r.complete, ""
}

func (r *rar4) block(b []byte) {
	typ, flags, size := b[2], le16(b[3:]), int64(le16(b[5:]))
	if size < 7 {
		r.f.stop()
		return
	}
	switch typ {
	case rar4Main:
		if flags&0x0080 != 0 {
			r.encrypted, r.complete = true, true // the rest is encrypted: nothing more to read
			r.f.stop()
			return
		}
	case rar4File, 0x7A: // file, or service (sub)block with the same layout
		if flags&0x0004 != 0 && typ == rar4File {
			r.encrypted = true
		}
	case rar4End:
		r.complete = true
		r.f.stop()
		return
	}
	if flags&0x8000 == 0 {
		r.f.skipRead(size-7, 7, r.block)
		return
	}
	// ADD_SIZE (PACK_SIZE for file blocks), and HIGH_PACK_SIZE at offset 32 with LHD_LARGE.
	large := (typ == rar4File || typ == 0x7A) && flags&0x0100 != 0 && size >= 36
	need := 4
	if large {
		need = 36 - 7
	}
	if size-7 < int64(need) {
		r.f.stop()
		return
	}
	r.f.read(need, func(h []byte) {
		data := int64(le32(h))
		if large {
			data |= int64(le32(h[32-7:])) << 32
		}
		r.f.skipRead(size-7-int64(need)+data, 7, r.block)
	})
}

// RAR 5 (rarlab "RAR 5.0 archive format"): blocks of CRC32(4) HeaderSize(vint) then HeaderSize
// bytes: HeaderType(vint) HeaderFlags(vint) [ExtraAreaSize(vint) if flags&1] [DataSize(vint)
// if flags&2] type-specific fields, extra area; then DataSize bytes of data. Type 4 is the
// archive encryption header (all headers after it are encrypted); a file (2) or service (3)
// header's extra area holds a file encryption record (type 1) when its data is encrypted.
type rar5 struct {
	f         feeder
	encrypted bool
	complete  bool
}

const rar5MaxHeader = 2 << 20 // RAR 5 limits a header to 2 MiB

func newRar5() *rar5 {
	r := &rar5{}
	r.f.skipRead(int64(len(sigRar5)), 7, r.block) // CRC32 + at most 3 bytes of HeaderSize
	return r
}

func (r *rar5) write(p []byte) { r.f.feed(p) }

func (r *rar5) finish() (string, bool, bool, string) {
	return "rar5", r.encrypted, r.complete, ""
}

// vint reads a RAR 5 variable-length integer (7 bits per byte, low first, high bit = more).
func vint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7F) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}

func (r *rar5) block(b []byte) {
	size, n := vint(b[4:])
	if n == 0 || size < 2 || size > rar5MaxHeader {
		r.f.stop()
		return
	}
	// b holds 4+n bytes of CRC and size and 3-n bytes of the header.
	got := b[4+n:]
	rest := int(size) - len(got)
	if rest <= 0 {
		r.header(got[:size])
		return
	}
	head := append([]byte(nil), got...)
	r.f.read(rest, func(b []byte) {
		r.header(append(head, b...))
	})
}

func (r *rar5) header(h []byte) {
	typ, n1 := vint(h)
	flags, n2 := vint(h[n1:])
	if n1 == 0 || n2 == 0 {
		r.f.stop()
		return
	}
	p := n1 + n2
	// optional reads the vint present when flags has bit; ok is false when it is cut short.
	optional := func(bit uint64) (v uint64, ok bool) {
		if flags&bit == 0 {
			return 0, true
		}
		v, n := vint(h[p:])
		p += n
		return v, n > 0
	}
	extra, ok := optional(1) // extra area size
	if !ok {
		r.f.stop()
		return
	}
	data, ok := optional(2) // data size
	if !ok {
		r.f.stop()
		return
	}
	switch typ {
	case 4: // archive encryption header
		r.encrypted, r.complete = true, true
		r.f.stop()
		return
	case 5: // end of archive
		r.complete = true
		r.f.stop()
		return
	case 2, 3: // file, service
		if extra > 0 && extra <= uint64(len(h)) {
			if rar5ExtraEncrypted(h[len(h)-int(extra):]) && typ == 2 {
				r.encrypted = true
			}
		}
	}
	if data > 1<<62 {
		r.f.stop()
		return
	}
	r.f.skipRead(int64(data), 7, r.block)
}

// rar5ExtraEncrypted walks an extra area: records of Size(vint) Type(vint) data.
func rar5ExtraEncrypted(x []byte) bool {
	for len(x) > 0 {
		size, n := vint(x)
		if n == 0 || size == 0 || size > uint64(len(x)-n) {
			return false
		}
		rec := x[n : n+int(size)]
		if t, m := vint(rec); m > 0 && t == 1 {
			return true
		}
		x = x[n+int(size):]
	}
	return false
}
