package inspect

// cfb inspects an OLE Compound File (legacy Office documents, encrypted OOXML, Outlook .msg)
// without walking its FAT, which can be anywhere in the file: it looks at every 128-byte
// aligned block as a possible directory entry (entries are 128 bytes, in sectors aligned to
// 512 or 4096) and at every 64-byte aligned block as a possible stream start (streams start
// on a sector, or a 64-byte mini-sector inside the mini stream), and matches the two at the end.
type cfb struct {
	carry  [128]byte
	n      int
	off    int64 // absolute offset of the next block
	header []byte
	shift  uint // sector shift: 9 or 12
	cutoff uint64

	root                 bool
	encInfo, encPackage  bool
	word, book, ppt, msg bool
	wordStart, bookStart int64 // absolute offset of the stream when it is in regular sectors, -1 in the mini stream
	candidates           map[int64]byte
	overflow             bool
}

const (
	candFIB       = 1 // Word FIB with fEncrypted
	candFilePass  = 2 // Excel BOF followed by FILEPASS
	candCurUser   = 3 // PowerPoint CurrentUserAtom with the encrypted token
	maxCandidates = 256
)

func newCFB() *cfb {
	return &cfb{candidates: map[int64]byte{}, wordStart: -2, bookStart: -2}
}

func (c *cfb) write(p []byte) {
	if c.n > 0 {
		k := copy(c.carry[c.n:], p)
		c.n += k
		p = p[k:]
		if c.n < len(c.carry) {
			return
		}
		c.block(c.carry[:])
		c.n = 0
	}
	for len(p) >= 128 {
		c.block(p[:128])
		p = p[128:]
	}
	c.n = copy(c.carry[:], p)
}

func (c *cfb) block(b []byte) {
	off := c.off
	c.off += 128
	if off < 512 {
		c.header = append(c.header, b...)
		if len(c.header) == 512 {
			c.shift = uint(le16(c.header[30:]))
			c.cutoff = uint64(le32(c.header[56:]))
			if c.shift != 9 && c.shift != 12 || c.cutoff == 0 {
				c.shift = 0
			}
		}
		return
	}
	if c.shift == 0 {
		return
	}
	c.dirEntry(b)
	c.streamStart(off, b[:64])
	c.streamStart(off+64, b[64:])
}

func utf16Is(name []byte, s string) bool {
	if len(name) != 2*len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if name[2*i] != s[i] || name[2*i+1] != 0 {
			return false
		}
	}
	return true
}

func (c *cfb) dirEntry(b []byte) {
	nameLen := int(le16(b[64:]))
	typ := b[66]
	if (typ != 1 && typ != 2 && typ != 5) || nameLen < 2 || nameLen > 64 || nameLen%2 != 0 ||
		b[nameLen-2] != 0 || b[nameLen-1] != 0 {
		return
	}
	name := b[:nameLen-2]
	start := int64(le32(b[116:]))
	size := le64(b[120:])
	if c.shift == 9 {
		size &= 0xFFFFFFFF // version 3: the high half may hold garbage
	}
	at := func() int64 {
		if size < c.cutoff {
			return -1
		}
		return (start + 1) << c.shift
	}
	switch {
	case typ == 5 && utf16Is(name, "Root Entry"):
		c.root = true
	case typ != 2:
	case utf16Is(name, "EncryptionInfo"):
		c.encInfo = true
	case utf16Is(name, "EncryptedPackage"):
		c.encPackage = true
	case utf16Is(name, "WordDocument"):
		c.word, c.wordStart = true, at()
	case utf16Is(name, "Workbook"), utf16Is(name, "Book"):
		c.book, c.bookStart = true, at()
	case utf16Is(name, "PowerPoint Document"):
		c.ppt = true
	case len(name) > 24 && utf16Is(name[:24], "__substg1.0_"):
		c.msg = true
	}
}

// streamStart records a 64-byte aligned block that begins like an encrypted stream.
func (c *cfb) streamStart(off int64, b []byte) {
	var kind byte
	switch {
	case b[0] == 0xEC && b[1] == 0xA5:
		// Word FIB: wIdent 0xA5EC, nFib, ..., flags at 0x0A with fEncrypted (0x0100).
		if nFib := le16(b[2:]); nFib >= 0x65 && nFib <= 0x200 && le16(b[10:])&0x0100 != 0 {
			kind = candFIB
		}
	case b[0] == 0x09 && b[1] == 0x08:
		// Excel BOF (0x0809) of 8 (BIFF5) or 16 (BIFF8) bytes, then records up to FILEPASS
		// (0x002F), which follows the BOF of the globals (after an optional WriteProtect).
		n := int(le16(b[2:]))
		if n != 8 && n != 16 {
			break
		}
		p := 4 + n
		for i := 0; i < 2 && p+4 <= len(b); i++ {
			typ, ln := le16(b[p:]), int(le16(b[p+2:]))
			if typ == 0x002F {
				kind = candFilePass
				break
			}
			if typ != 0x0086 { // WriteProtect
				break
			}
			p += 4 + ln
		}
	case b[0] == 0 && b[1] == 0 && b[2] == 0xF6 && b[3] == 0x0F:
		// CurrentUserAtom: header, size 0x14, headerToken 0xF3D1C4DF when encrypted.
		if le32(b[8:]) == 0x14 && le32(b[12:]) == 0xF3D1C4DF {
			kind = candCurUser
		}
	}
	if kind == 0 {
		return
	}
	if len(c.candidates) >= maxCandidates {
		c.overflow = true
		return
	}
	c.candidates[off] = kind
}

func (c *cfb) anyCandidate(kind byte) bool {
	for _, k := range c.candidates {
		if k == kind {
			return true
		}
	}
	return false
}

// streamEncrypted: the stream starts where the directory says (regular sectors), or, in the
// mini stream whose sectors are not mapped here, anywhere a candidate is.
func (c *cfb) streamEncrypted(start int64, kind byte) bool {
	if start >= 0 {
		return c.candidates[start] == kind
	}
	return c.anyCandidate(kind)
}

func (c *cfb) finish() (string, bool, bool, string) {
	enc := c.encInfo && c.encPackage ||
		c.word && c.streamEncrypted(c.wordStart, candFIB) ||
		c.book && c.streamEncrypted(c.bookStart, candFilePass) ||
		c.ppt && c.anyCandidate(candCurUser)
	mt := ""
	switch {
	case c.encInfo && c.encPackage:
	case c.word:
		mt = "application/msword"
	case c.book:
		mt = "application/vnd.ms-excel"
	case c.ppt:
		mt = "application/vnd.ms-powerpoint"
	case c.msg:
		mt = "application/vnd.ms-outlook"
	}
	return "cfb", enc, c.root && !c.overflow, mt
}
