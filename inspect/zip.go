package inspect

import (
	"bytes"
	"strings"
)

// zipFmt follows a ZIP archive header by header: local file headers (skipping each entry's
// data by its size), then the central directory, then the end record. An entry whose sizes
// follow its data (general purpose bit 3) is passed over by searching for the next signature,
// accepted only where a data descriptor's compressed size equals the distance travelled.
type zipFmt struct {
	f         feeder
	encrypted bool
	complete  bool
	entries   int
	ooxml     string // refined media type from entry names
	mimetype  string // ODF/EPUB: the content of a first entry named "mimetype"

	// scan state for entries with a data descriptor
	dataStart int64
	win       []byte
	winStart  int64
	scanned   int64 // candidates before this absolute offset have been tried
}

const (
	zipLocalSig   = "PK\x03\x04"
	zipCentralSig = "PK\x01\x02"
	zipEndSig     = "PK\x05\x06"
	zipEnd64Sig   = "PK\x06\x06"
	zipDescSig    = "PK\x07\x08"
)

func newZip() *zipFmt {
	z := &zipFmt{}
	z.f.read(4, z.signature)
	return z
}

func (z *zipFmt) write(p []byte) { z.f.feed(p) }

func (z *zipFmt) finish() (string, bool, bool, string) {
	if z.f.scan != nil {
		z.scanWindow(nil, true)
	}
	mt := z.ooxml
	if z.mimetype != "" {
		mt = z.mimetype
	}
	return "zip", z.encrypted, z.complete, mt
}

func (z *zipFmt) signature(b []byte) {
	switch string(b) {
	case zipLocalSig:
		z.f.read(26, z.local)
	case zipCentralSig:
		z.f.read(42, z.central)
	case zipEndSig:
		z.f.read(18, z.end)
	case zipEnd64Sig:
		// The ZIP64 end record, then its locator and the end record: nothing more to learn.
		z.complete = true
		z.f.stop()
	case zipDescSig:
		if z.f.off == 4 { // spanned archive marker
			z.f.read(4, z.signature)
			return
		}
		z.f.stop()
	default:
		z.f.stop()
	}
}

// entryEncrypted reports the encryption marks of a local or central header: traditional
// PKWARE encryption (bit 0), strong encryption (bit 6), WinZip AES (method 99).
func entryEncrypted(flags, method uint16) bool {
	return flags&0x0001 != 0 || flags&0x0040 != 0 || method == 99
}

// extraEncrypted looks for the WinZip AES (0x9901) and strong encryption (0x0017) extra
// fields, and returns the ZIP64 compressed size if the extra field carries one.
func extraEncrypted(extra []byte, wantSize bool) (enc bool, size64 uint64, has64 bool) {
	for len(extra) >= 4 {
		id, n := le16(extra), int(le16(extra[2:]))
		if 4+n > len(extra) {
			break
		}
		data := extra[4 : 4+n]
		switch id {
		case 0x9901, 0x0017:
			enc = true
		case 0x0001:
			// ZIP64: uncompressed size then compressed size, each only if its 32-bit field
			// is 0xFFFFFFFF; the caller asks only when both are.
			if wantSize && len(data) >= 16 {
				size64, has64 = le64(data[8:]), true
			}
		}
		extra = extra[4+n:]
	}
	return
}

// local handles a local file header after its signature.
func (z *zipFmt) local(b []byte) {
	flags, method := le16(b[2:]), le16(b[4:])
	csize, usize := uint64(le32(b[14:])), le32(b[18:])
	nameLen, extraLen := int(le16(b[22:])), int(le16(b[24:]))
	if entryEncrypted(flags, method) {
		z.encrypted = true
	}
	z.entries++
	first := z.entries == 1
	z.f.read(nameLen+extraLen, func(b []byte) {
		name := string(b[:nameLen])
		z.noteName(name)
		enc, size64, has64 := extraEncrypted(b[nameLen:], csize == 0xFFFFFFFF && usize == 0xFFFFFFFF)
		if enc {
			z.encrypted = true
		}
		if has64 {
			csize = size64
		}
		if flags&0x0008 != 0 && csize == 0 {
			z.startScan()
			return
		}
		if first && name == "mimetype" && method == 0 && csize > 0 && csize < 100 {
			z.f.read(int(csize), func(b []byte) {
				z.mimetype = strings.TrimSpace(string(b))
				if !validMediaType(z.mimetype) {
					z.mimetype = ""
				}
				z.afterData(flags)
			})
			return
		}
		if csize > 1<<62 {
			z.f.stop()
			return
		}
		z.f.skip = int64(csize)
		z.afterData(flags)
	})
}

// afterData reads what follows an entry's data: a data descriptor (bit 3 with known sizes)
// or the next signature.
func (z *zipFmt) afterData(flags uint16) {
	if flags&0x0008 == 0 {
		z.f.read(4, z.signature)
		return
	}
	z.f.read(4, func(b []byte) {
		if string(b) == zipDescSig {
			z.f.read(12, func([]byte) { z.f.read(4, z.signature) })
			return
		}
		z.f.read(8, func([]byte) { z.f.read(4, z.signature) }) // descriptor without signature
	})
}

func (z *zipFmt) noteName(name string) {
	if z.ooxml != "" {
		return
	}
	switch {
	case strings.HasPrefix(name, "word/"):
		z.ooxml = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
	case strings.HasPrefix(name, "xl/"):
		z.ooxml = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	case strings.HasPrefix(name, "ppt/"):
		z.ooxml = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
	case name == "META-INF/MANIFEST.MF":
		z.ooxml = "application/java-archive"
	}
}

func validMediaType(s string) bool {
	t, sub, ok := strings.Cut(s, "/")
	if !ok || t == "" || sub == "" {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r >= 0x7f {
			return false
		}
	}
	return true
}

// central handles a central directory header after its signature.
func (z *zipFmt) central(b []byte) {
	flags, method := le16(b[4:]), le16(b[6:])
	nameLen, extraLen, commentLen := int(le16(b[24:])), int(le16(b[26:])), int(le16(b[28:]))
	if entryEncrypted(flags, method) {
		z.encrypted = true
	}
	z.f.read(nameLen+extraLen, func(b []byte) {
		z.noteName(string(b[:nameLen]))
		if enc, _, _ := extraEncrypted(b[nameLen:], false); enc {
			z.encrypted = true
		}
		z.f.skip = int64(commentLen)
		z.f.read(4, z.signature)
	})
}

func (z *zipFmt) end([]byte) {
	z.complete = true
	z.f.stop()
}

// Scanning for the end of an entry with a data descriptor. A candidate is accepted when the
// descriptor's compressed size equals the distance from the entry's data start:
//
//	PK 07 08, crc, csize(4|8), usize(4|8)   then the next signature
//	crc, csize(4|8), usize(4|8) (no signature) immediately before PK 03 04 or PK 01 02
const (
	scanKeep  = 48       // bytes of window kept between writes: lookback and lookahead of a candidate
	scanChunk = 32 << 10 // the window holds at most about twice this
)

func (z *zipFmt) startScan() {
	z.dataStart = z.f.off
	z.win = z.win[:0]
	z.winStart = z.f.off
	z.scanned = z.f.off
	z.f.scan = func(p []byte) int { return z.scanWindow(p, false) }
}

// scanWindow appends p to the window and tries the candidates it can. It returns how much of
// p it consumed (all, unless it found the next header, in which case parsing resumes there).
func (z *zipFmt) scanWindow(p []byte, final bool) int {
	if len(p) > scanChunk {
		p = p[:scanChunk] // the feeder calls again with the rest
	}
	z.win = append(z.win, p...)
	end := z.winStart + int64(len(z.win))
	limit := end - 24
	if final {
		limit = end - 4
	}
	for q := max(z.scanned, z.winStart); q <= limit; {
		i := bytes.Index(z.win[q-z.winStart:], []byte("PK"))
		if i < 0 {
			break
		}
		q += int64(i)
		if q > limit {
			break
		}
		if next, ok := z.candidate(q, end); ok {
			// Resume header parsing at next: feed it what the window already holds from there.
			z.f.scan = nil
			rest := append([]byte(nil), z.win[next-z.winStart:]...)
			z.f.read(4, z.signature)
			z.f.off = next
			z.f.feed(rest)
			z.f.off -= int64(len(p)) // feed's caller adds len(p) for what scan consumed
			return len(p)
		}
		q++
	}
	if limit+1 > z.scanned {
		z.scanned = limit + 1
	}
	if final {
		return len(p)
	}
	// Keep only the tail of the window.
	if len(z.win) > scanChunk {
		keep := z.win[len(z.win)-scanKeep:]
		z.winStart = end - int64(len(keep))
		z.win = append(z.win[:0], keep...)
	}
	return len(p)
}

// candidate checks for the end of the scanned entry at absolute offset q ("PK" there) and
// returns where the next signature starts.
func (z *zipFmt) candidate(q, end int64) (int64, bool) {
	at := func(off int64, n int) []byte {
		if off < z.winStart || off+int64(n) > end {
			return nil
		}
		return z.win[off-z.winStart : off-z.winStart+int64(n)]
	}
	sig := at(q, 4)
	if sig == nil {
		return 0, false
	}
	switch string(sig) {
	case zipDescSig:
		if d := at(q+4, 12); d != nil && int64(le32(d[4:])) == q-z.dataStart {
			return q + 16, true
		}
		if d := at(q+4, 20); d != nil && int64(le64(d[4:])) == q-z.dataStart {
			return q + 24, true
		}
	case zipLocalSig, zipCentralSig:
		if d := at(q-12, 12); d != nil && q-12 >= z.dataStart && int64(le32(d[4:])) == q-12-z.dataStart {
			return q, true
		}
		if d := at(q-20, 20); d != nil && q-20 >= z.dataStart && int64(le64(d[4:])) == q-20-z.dataStart {
			return q, true
		}
	}
	return 0, false
}
