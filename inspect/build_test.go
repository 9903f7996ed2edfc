package inspect

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"sort"
	"strings"
	"unicode/utf16"
)

// Builders of the files the tests cannot get from a free tool: RAR archives (rar is
// non-free), laid out by the RAR 4 technote and the RAR 5.0 format description, with valid
// CRCs; and OLE compound files (MS-CFB), with a mini stream for the small streams, for the
// Office encryption marks LibreOffice does not write (encrypted OOXML, PowerPoint).

type rarFile struct {
	name      string
	data      []byte
	encrypted bool
}

func le16b(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32b(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// buildRar4 writes a RAR 4 archive of stored files; headersEncrypted sets MHD_PASSWORD and
// follows the main header with (pseudo-)encrypted bytes, as WinRAR's "encrypt file names" does.
func buildRar4(files []rarFile, headersEncrypted bool) []byte {
	var out bytes.Buffer
	out.Write(sigRar4)
	block := func(typ byte, flags uint16, body []byte) []byte {
		h := []byte{typ}
		h = append(h, le16b(flags)...)
		h = append(h, le16b(uint16(7+len(body)))...)
		h = append(h, body...)
		crc := uint16(crc32.ChecksumIEEE(h))
		return append(le16b(crc), h...)
	}
	mainFlags := uint16(0)
	if headersEncrypted {
		mainFlags |= 0x0080
	}
	out.Write(block(rar4Main, mainFlags, make([]byte, 6)))
	if headersEncrypted {
		out.Write(bytes.Repeat([]byte{0x5A, 0xC3, 0x99, 0x0F}, 64)) // salt + encrypted headers
		return out.Bytes()
	}
	for _, f := range files {
		flags := uint16(0x8000 | 0x0020*0) // LONG_BLOCK
		var body []byte
		body = append(body, le32b(uint32(len(f.data)))...) // PACK_SIZE
		body = append(body, le32b(uint32(len(f.data)))...) // UNP_SIZE
		body = append(body, 3)                             // HOST_OS unix
		body = append(body, le32b(crc32.ChecksumIEEE(f.data))...)
		body = append(body, le32b(0x5A210000)...) // FTIME (DOS)
		body = append(body, 29, 0x30)             // UNP_VER 2.9, METHOD store
		body = append(body, le16b(uint16(len(f.name)))...)
		body = append(body, le32b(0x81A4)...) // ATTR
		body = append(body, f.name...)
		if f.encrypted {
			flags |= 0x0004 | 0x0400 // LHD_PASSWORD, LHD_SALT
			body = append(body, []byte("saltsalt")...)
		}
		out.Write(block(rar4File, flags, body))
		out.Write(f.data)
	}
	out.Write(block(rar4End, 0x4000, nil))
	return out.Bytes()
}

func vintb(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// buildRar5 writes a RAR 5 archive of stored files; headersEncrypted puts an archive
// encryption header first, followed by (pseudo-)encrypted headers.
func buildRar5(files []rarFile, headersEncrypted bool) []byte {
	var out bytes.Buffer
	out.Write(sigRar5)
	block := func(h []byte) []byte {
		sized := append(vintb(uint64(len(h))), h...)
		return append(le32b(crc32.ChecksumIEEE(sized)), sized...)
	}
	if headersEncrypted {
		h := append(vintb(4), vintb(0)...)               // type 4, flags
		h = append(h, vintb(0)...)                       // encryption version (AES-256)
		h = append(h, vintb(0)...)                       // flags
		h = append(h, 15)                                // KDF count
		h = append(h, bytes.Repeat([]byte{0x11}, 16)...) // salt
		out.Write(block(h))
		out.Write(bytes.Repeat([]byte{0x5A, 0xC3, 0x99, 0x0F}, 64)) // IV + encrypted headers
		return out.Bytes()
	}
	out.Write(block(append(append(vintb(1), vintb(0)...), vintb(0)...))) // main: type 1, flags 0, archive flags 0
	for _, f := range files {
		var extra []byte
		if f.encrypted {
			rec := append(vintb(1), vintb(0)...)                 // type 1 (encryption), version 0
			rec = append(rec, vintb(0)...)                       // flags
			rec = append(rec, 15)                                // KDF count
			rec = append(rec, bytes.Repeat([]byte{0x22}, 32)...) // salt, IV
			extra = append(vintb(uint64(len(rec))), rec...)
		}
		h := vintb(2) // file header
		flags := uint64(0x02)
		if len(extra) > 0 {
			flags |= 0x01
		}
		h = append(h, vintb(flags)...)
		if len(extra) > 0 {
			h = append(h, vintb(uint64(len(extra)))...)
		}
		h = append(h, vintb(uint64(len(f.data)))...) // data size
		h = append(h, vintb(0x04)...)                // file flags: CRC32 present
		h = append(h, vintb(uint64(len(f.data)))...) // unpacked size
		h = append(h, vintb(0x1A4)...)               // attributes
		h = append(h, le32b(crc32.ChecksumIEEE(f.data))...)
		h = append(h, vintb(0)...) // compression: store
		h = append(h, vintb(1)...) // host OS unix
		h = append(h, vintb(uint64(len(f.name)))...)
		h = append(h, f.name...)
		h = append(h, extra...)
		out.Write(block(h))
		out.Write(f.data)
	}
	out.Write(block(append(append(vintb(5), vintb(0)...), vintb(0)...))) // end of archive
	return out.Bytes()
}

type cfbStream struct {
	name string
	data []byte
}

// buildCFB writes a version 3 compound file (512-byte sectors) holding the streams in its root
// storage; streams under 4096 bytes go to the mini stream, as MS-CFB requires.
func buildCFB(streams []cfbStream) []byte {
	const (
		sector    = 512
		endChain  = 0xFFFFFFFE
		freeSect  = 0xFFFFFFFF
		fatSect   = 0xFFFFFFFD
		noStream  = 0xFFFFFFFF
		miniLimit = 4096
	)
	sort.Slice(streams, func(i, j int) bool {
		a, b := strings.ToUpper(streams[i].name), strings.ToUpper(streams[j].name)
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		return a < b
	})
	var sectors [][]byte // file sectors after the header
	var fat []uint32
	chain := func(data []byte, marker uint32) uint32 {
		start := uint32(len(sectors))
		n := (len(data) + sector - 1) / sector
		for i := 0; i < n; i++ {
			s := make([]byte, sector)
			copy(s, data[i*sector:])
			sectors = append(sectors, s)
			next := uint32(len(sectors))
			if i == n-1 {
				next = endChain
			}
			if marker != 0 {
				next = marker
			}
			fat = append(fat, next)
		}
		return start
	}
	// Mini stream and mini FAT.
	var mini []byte
	var miniFAT []uint32
	starts := make([]uint32, len(streams))
	for i, s := range streams {
		if len(s.data) >= miniLimit {
			continue
		}
		starts[i] = uint32(len(mini) / 64)
		n := (len(s.data) + 63) / 64
		for k := 0; k < n; k++ {
			next := uint32(len(mini)/64) + 1
			if k == n-1 {
				next = endChain
			}
			miniFAT = append(miniFAT, next)
			blk := make([]byte, 64)
			copy(blk, s.data[k*64:])
			mini = append(mini, blk...)
		}
	}
	for i, s := range streams {
		if len(s.data) >= miniLimit {
			starts[i] = chain(s.data, 0)
		}
	}
	rootStart := uint32(endChain)
	if len(mini) > 0 {
		rootStart = chain(mini, 0)
	}
	miniFATStart := uint32(endChain)
	if len(miniFAT) > 0 {
		var b []byte
		for _, v := range miniFAT {
			b = binary.LittleEndian.AppendUint32(b, v)
		}
		miniFATStart = chain(b, 0)
	}
	// Directory: root, then the streams as a chain of right siblings (sorted: a valid tree).
	entry := func(name string, typ byte, child, right, start uint32, size uint64) []byte {
		e := make([]byte, 128)
		u := utf16.Encode([]rune(name))
		for i, c := range u {
			binary.LittleEndian.PutUint16(e[2*i:], c)
		}
		binary.LittleEndian.PutUint16(e[64:], uint16(2*len(u)+2))
		e[66], e[67] = typ, 1 // black
		binary.LittleEndian.PutUint32(e[68:], noStream)
		binary.LittleEndian.PutUint32(e[72:], right)
		binary.LittleEndian.PutUint32(e[76:], child)
		binary.LittleEndian.PutUint32(e[116:], start)
		binary.LittleEndian.PutUint64(e[120:], size)
		return e
	}
	child := uint32(noStream)
	if len(streams) > 0 {
		child = 1
	}
	dir := entry("Root Entry", 5, child, noStream, rootStart, uint64(len(mini)))
	for i, s := range streams {
		right := uint32(i + 2)
		if i == len(streams)-1 {
			right = noStream
		}
		dir = append(dir, entry(s.name, 2, noStream, right, starts[i], uint64(len(s.data)))...)
	}
	for len(dir)%sector != 0 {
		dir = append(dir, entry("", 0, noStream, noStream, 0, 0)...)
		binary.LittleEndian.PutUint16(dir[len(dir)-128+64:], 0)
	}
	dirStart := chain(dir, 0)
	// FAT sectors: enough to cover themselves.
	nFAT := 1
	for (len(sectors)+nFAT)*4 > nFAT*sector {
		nFAT++
	}
	fatStart := uint32(len(sectors))
	for i := 0; i < nFAT; i++ {
		sectors = append(sectors, make([]byte, sector))
		fat = append(fat, fatSect)
	}
	for len(fat) < nFAT*sector/4 {
		fat = append(fat, freeSect)
	}
	for i, v := range fat {
		binary.LittleEndian.PutUint32(sectors[int(fatStart)+i/(sector/4)][4*(i%(sector/4)):], v)
	}
	h := make([]byte, sector)
	copy(h, sigCFB)
	binary.LittleEndian.PutUint16(h[24:], 0x3E)
	binary.LittleEndian.PutUint16(h[26:], 3)
	binary.LittleEndian.PutUint16(h[28:], 0xFFFE)
	binary.LittleEndian.PutUint16(h[30:], 9)
	binary.LittleEndian.PutUint16(h[32:], 6)
	binary.LittleEndian.PutUint32(h[44:], uint32(nFAT))
	binary.LittleEndian.PutUint32(h[48:], dirStart)
	binary.LittleEndian.PutUint32(h[56:], miniLimit)
	binary.LittleEndian.PutUint32(h[60:], miniFATStart)
	binary.LittleEndian.PutUint32(h[64:], uint32((len(miniFAT)*4+sector-1)/sector))
	binary.LittleEndian.PutUint32(h[68:], endChain) // no DIFAT sectors
	for i := 0; i < 109; i++ {
		v := uint32(freeSect)
		if i < nFAT {
			v = fatStart + uint32(i)
		}
		binary.LittleEndian.PutUint32(h[76+4*i:], v)
	}
	out := h
	for _, s := range sectors {
		out = append(out, s...)
	}
	return out
}
