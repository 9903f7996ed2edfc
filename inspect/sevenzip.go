package inspect

import (
	"bytes"
	"errors"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// MaxHeader7z bounds what the 7z parser holds: the archive header (where the coders are
// named), and as much again of what precedes it (where the packed form of a compressed header
// is). An archive whose header is larger, or whose header decompresses to more than
// maxDecoded7z, is reported Undetermined.
const MaxHeader7z = 1 << 20

const maxDecoded7z = 8 << 20

// 7z property IDs (7zFormat.txt).
const (
	k7zEnd              = 0x00
	k7zHeader           = 0x01
	k7zArchiveProps     = 0x02
	k7zAdditionalStream = 0x03
	k7zMainStreams      = 0x04
	k7zFilesInfo        = 0x05
	k7zPackInfo         = 0x06
	k7zUnpackInfo       = 0x07
	k7zSubStreams       = 0x08
	k7zSize             = 0x09
	k7zCRC              = 0x0A
	k7zFolder           = 0x0B
	k7zUnpackSize       = 0x0C
	k7zEncodedHeader    = 0x17
)

var (
	coderAES  = []byte{0x06, 0xF1, 0x07, 0x01}
	coderLZMA = []byte{0x03, 0x01, 0x01}
)

// sevenZ reads the 32-byte signature header, which says where the header is, and captures the
// header (and up to MaxHeader7z bytes before it, where an encoded header's packed stream is).
type sevenZ struct {
	f          feeder
	hdrOff     int64 // absolute offset of the header
	hdrSize    int64
	before     []byte // the bytes just before the header (ring of the last MaxHeader7z)
	beforeFrom int64
	header     []byte
	encrypted  bool
	complete   bool
}

func new7z() *sevenZ {
	s := &sevenZ{}
	s.f.read(32, s.start)
	return s
}

func (s *sevenZ) write(p []byte) { s.f.feed(p) }

func (s *sevenZ) start(b []byte) {
	off, size := le64(b[12:]), le64(b[20:])
	if size == 0 {
		s.complete = true // an empty archive
		s.f.stop()
		return
	}
	if off > 1<<60 || size > MaxHeader7z {
		s.f.stop()
		return
	}
	s.hdrOff, s.hdrSize = 32+int64(off), int64(size)
	// Keep the MaxHeader7z bytes before the header, then the header.
	s.beforeFrom = max(32, s.hdrOff-MaxHeader7z)
	s.f.skip = s.beforeFrom - 32
	s.f.read(int(s.hdrOff-s.beforeFrom+s.hdrSize), func(b []byte) {
		n := s.hdrOff - s.beforeFrom
		s.before = append([]byte(nil), b[:n]...)
		s.header = append([]byte(nil), b[n:]...)
		s.f.stop()
	})
}

func (s *sevenZ) finish() (string, bool, bool, string) {
	if s.header != nil {
		s.complete, s.encrypted = s.analyze()
	}
	return "7z", s.encrypted, s.complete, ""
}

// analyze reads the header: a plain header names the data coders; an encoded header names the
// coders of the header itself (AES there means the header is encrypted) and, once decoded,
// the data coders.
func (s *sevenZ) analyze() (complete, encrypted bool) {
	r := &hdr7z{b: s.header}
	switch r.byte() {
	case k7zHeader:
		enc, err := r.header()
		return err == nil, enc
	case k7zEncodedHeader:
		si, err := r.streamsInfo()
		if err != nil {
			return false, false
		}
		if si.aes {
			return true, true
		}
		plain, err := s.decode(si)
		if err != nil {
			return false, false
		}
		r = &hdr7z{b: plain}
		if r.byte() != k7zHeader {
			return false, false
		}
		enc, err := r.header()
		return err == nil, enc
	}
	return false, false
}

// decode decompresses an encoded header packed with LZMA alone.
func (s *sevenZ) decode(si streams7z) ([]byte, error) {
	if len(si.folders) != 1 || len(si.folders[0]) != 1 || !bytes.Equal(si.folders[0][0].id, coderLZMA) ||
		len(si.packSizes) != 1 || len(si.unpackSizes) != 1 {
		return nil, errors.New("7z: unsupported header coding")
	}
	props := si.folders[0][0].props
	start, size, usize := 32+int64(si.packPos), int64(si.packSizes[0]), si.unpackSizes[0]
	if len(props) != 5 || start < s.beforeFrom || start+size > s.hdrOff || usize > maxDecoded7z {
		return nil, errors.New("7z: encoded header out of reach")
	}
	// An .lzma stream: properties, dictionary size (bounded by the output size: the decoder
	// never looks further back), uncompressed size.
	dict := min(le32(props[1:]), uint32(max(usize, 4096)))
	var h [13]byte
	h[0] = props[0]
	h[1], h[2], h[3], h[4] = byte(dict), byte(dict>>8), byte(dict>>16), byte(dict>>24)
	for i := 0; i < 8; i++ {
		h[5+i] = byte(usize >> (8 * i))
	}
	packed := s.before[start-s.beforeFrom : start-s.beforeFrom+size]
	zr, err := lzma.ReaderConfig{DictCap: maxDecoded7z}.NewReader(io.MultiReader(bytes.NewReader(h[:]), bytes.NewReader(packed)))
	if err != nil {
		return nil, err
	}
	out := make([]byte, usize)
	if _, err := io.ReadFull(zr, out); err != nil {
		return nil, err
	}
	return out, nil
}

// hdr7z reads 7z header structures; any overrun sets err.
type hdr7z struct {
	b   []byte
	err error
}

var err7zShort = errors.New("7z: header truncated")

func (r *hdr7z) byte() byte {
	if len(r.b) == 0 {
		r.err = err7zShort
		return 0xFF
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *hdr7z) bytes(n uint64) []byte {
	if uint64(len(r.b)) < n {
		r.err = err7zShort
		r.b = nil
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// number reads a 7z NUMBER: the count of leading 1 bits of the first byte is the count of
// extra little-endian bytes; the rest of the first byte holds the high bits.
func (r *hdr7z) number() uint64 {
	first := r.byte()
	mask := byte(0x80)
	var v uint64
	for i := 0; i < 8; i++ {
		if first&mask == 0 {
			high := uint64(first & (mask - 1))
			return v | high<<(8*i)
		}
		v |= uint64(r.byte()) << (8 * i)
		mask >>= 1
	}
	return v
}

// small reads a NUMBER used as a count, bounded by what the header could hold.
func (r *hdr7z) small() int {
	n := r.number()
	if n > uint64(len(r.b))+1 || n > 1<<20 {
		r.err = errors.New("7z: count out of range")
		return 0
	}
	return int(n)
}

type coder7z struct {
	id    []byte
	props []byte
}

type streams7z struct {
	packPos     uint64
	packSizes   []uint64
	folders     [][]coder7z
	unpackSizes []uint64
	aes         bool
}

// header reads a Header after its ID and reports whether any coder is AES.
func (r *hdr7z) header() (bool, error) {
	id := r.byte()
	if id == k7zArchiveProps {
		for r.err == nil {
			t := r.byte()
			if t == k7zEnd {
				break
			}
			r.bytes(r.number())
		}
		id = r.byte()
	}
	aes := false
	if id == k7zAdditionalStream {
		si, err := r.streamsInfo()
		if err != nil {
			return false, err
		}
		aes = aes || si.aes
		id = r.byte()
	}
	if id == k7zMainStreams {
		// The data coders are known; what follows (files) does not matter here.
		si, err := r.streamsInfo()
		return aes || si.aes, err
	}
	if id != k7zFilesInfo && id != k7zEnd {
		return aes, errors.New("7z: unexpected header property")
	}
	return aes, r.err
}

// streamsInfo reads a StreamsInfo after its ID, up to and including its kEnd.
func (r *hdr7z) streamsInfo() (streams7z, error) {
	var si streams7z
	for r.err == nil {
		switch id := r.byte(); id {
		case k7zEnd:
			return si, r.err
		case k7zPackInfo:
			si.packPos = r.number()
			n := r.small()
			for r.err == nil {
				t := r.byte()
				if t == k7zEnd {
					break
				}
				switch t {
				case k7zSize:
					for i := 0; i < n && r.err == nil; i++ {
						si.packSizes = append(si.packSizes, r.number())
					}
				case k7zCRC:
					r.digests(n)
				default:
					r.bytes(r.number())
				}
			}
		case k7zUnpackInfo:
			if r.byte() != k7zFolder {
				return si, errors.New("7z: expected folders")
			}
			nf := r.small()
			if r.byte() != 0 {
				return si, errors.New("7z: external folders")
			}
			outs := 0
			for i := 0; i < nf && r.err == nil; i++ {
				f, nOut := r.folder()
				si.folders = append(si.folders, f)
				outs += nOut
				for _, c := range f {
					if bytes.Equal(c.id, coderAES) {
						si.aes = true
					}
				}
			}
			if r.byte() != k7zUnpackSize {
				return si, errors.New("7z: expected unpack sizes")
			}
			for i := 0; i < outs && r.err == nil; i++ {
				si.unpackSizes = append(si.unpackSizes, r.number())
			}
			for r.err == nil {
				t := r.byte()
				if t == k7zEnd {
					break
				}
				if t != k7zCRC {
					return si, errors.New("7z: unexpected unpack property")
				}
				r.digests(nf)
			}
		case k7zSubStreams:
			// Sizes and digests of the files in each folder: it names no coder, and nothing
			// after it in this StreamsInfo does either. The caller reads no further.
			return si, r.err
		default:
			return si, errors.New("7z: unexpected streams property")
		}
	}
	return si, r.err
}

// folder reads one Folder and returns its coders and its number of output streams.
func (r *hdr7z) folder() ([]coder7z, int) {
	nc := r.small()
	var coders []coder7z
	ins, outs := 0, 0
	for i := 0; i < nc && r.err == nil; i++ {
		flag := r.byte()
		c := coder7z{id: r.bytes(uint64(flag & 0x0F))}
		nIn, nOut := 1, 1
		if flag&0x10 != 0 {
			nIn, nOut = r.small(), r.small()
		}
		if flag&0x20 != 0 {
			c.props = r.bytes(r.number())
		}
		ins += nIn
		outs += nOut
		coders = append(coders, c)
	}
	bindPairs := outs - 1
	for i := 0; i < bindPairs && r.err == nil; i++ {
		r.number()
		r.number()
	}
	if packed := ins - bindPairs; packed > 1 {
		for i := 0; i < packed && r.err == nil; i++ {
			r.number()
		}
	}
	return coders, outs
}

func (r *hdr7z) digests(n int) {
	all := r.byte()
	defined := n
	if all == 0 {
		bits := r.bytes(uint64((n + 7) / 8))
		defined = 0
		for i := 0; i < n && bits != nil; i++ {
			if bits[i/8]&(0x80>>(i%8)) != 0 {
				defined++
			}
		}
	}
	r.bytes(uint64(defined) * 4)
}
