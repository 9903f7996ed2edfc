package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Every message of a run is generated from (run seed, index) alone, so the
// harness never keeps message bodies: the sender renders a message when it
// sends it, the sink and the reconciliation render it again when they need
// its expected shape or hash.
//
// Attachment content is self-identifying, so that leak checks are cheap and
// exact. An attachment is a sequence of 8-byte blocks; block j of attachment
// a of message i is
//
//	mix(magic<<48 | i<<24 | a<<20 | j  XOR  key)
//
// where mix is an invertible 64-bit mixing function and key is derived from
// the run seed. The bytes look random (they do not compress), yet any 8
// bytes of any attachment of the run can be recognized wherever they appear
// by inverting mix and checking the 16-bit magic. A candidate is then
// confirmed by comparing the surrounding bytes with the regenerated
// attachment, so a hit is a real leak, never a coincidence.
//
// Any run of 15 or more bytes of an attachment contains a whole aligned
// block, and 32 characters of its base64 decode (at the right phase) to at
// least 21 contiguous bytes, so the scan finds every 32-byte run of the
// plaintext and every 32-character run of its base64 — the leak definition
// of the brief — and reports runs of minLeak bytes or more.

const (
	markMagic  = 0x5347 // "SG"
	maxIndex   = 1 << 24
	maxAtts    = 1 << 4
	maxBlocks  = 1 << 20 // 8 MiB per attachment
	minLeak    = 16      // bytes of plaintext that count as a leak
	mixC1      = 0xbf58476d1ce4e5b9
	mixC2      = 0x94d049bb133111eb
	bigAttSize = 5 << 20
)

// profile chooses the shape of the messages of a run.
type profile string

const (
	// profileMixed: no attachment, small attachments, a 5 MiB attachment
	// now and then; one to four recipients, internal and external.
	profileMixed profile = "mixed"
	// profileBench: one 20 KB attachment to one external recipient (the
	// throughput comparison with Postfix).
	profileBench profile = "bench"
)

// generator renders the messages of one run.
type generator struct {
	run      string // short run id, part of every tag
	seed     uint64
	key      uint64
	inv1     uint64 // modular inverses of mixC1, mixC2
	inv2     uint64
	profile  profile
	bigEvery int // every bigEvery-th message (on average) carries 5 MiB; 0: never
	// tagEvery: one message in tagEvery (on average) names contract
	// tagCode in its subject ([CODE]); 0: none.
	tagEvery int
	tagCode  string
	base     time.Time
}

func newGenerator(seed uint64, p profile, bigEvery int) *generator {
	r := rand.New(rand.NewPCG(seed, 0x6368616f73)) // "chaos"
	g := &generator{
		seed:     seed,
		key:      r.Uint64(),
		run:      fmt.Sprintf("%08x", r.Uint32()),
		profile:  p,
		bigEvery: bigEvery,
		inv1:     inverse(mixC1),
		inv2:     inverse(mixC2),
		base:     time.Date(2026, 11, 25, 10, 0, 0, 0, time.FixedZone("JST", 9*3600)),
	}
	return g
}

// inverse returns the multiplicative inverse of odd a modulo 2^64
// (Newton's iteration doubles the correct bits each step).
func inverse(a uint64) uint64 {
	x := a
	for i := 0; i < 6; i++ {
		x *= 2 - a*x
	}
	return x
}

func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * mixC1
	z = (z ^ (z >> 27)) * mixC2
	return z ^ (z >> 31)
}

func (g *generator) unmix(z uint64) uint64 {
	z ^= z>>31 ^ z>>62
	z *= g.inv2
	z ^= z>>27 ^ z>>54
	z *= g.inv1
	return z ^ z>>30 ^ z>>60
}

func (g *generator) block(i, a, j int) uint64 {
	return mix((markMagic<<48 | uint64(i)<<24 | uint64(a)<<20 | uint64(j)) ^ g.key)
}

// decode returns the (message, attachment, block) a block came from.
func (g *generator) decode(w uint64) (i, a, j int, ok bool) {
	x := g.unmix(w) ^ g.key
	if x>>48 != markMagic {
		return 0, 0, 0, false
	}
	return int(x >> 24 & (maxIndex - 1)), int(x >> 20 & (maxAtts - 1)), int(x & (maxBlocks - 1)), true
}

// attByte is byte off of attachment a of message i.
func (g *generator) attByte(i, a, off int) byte {
	return byte(g.block(i, a, off/8) >> (8 * (off % 8)))
}

func (g *generator) attachment(i, a, size int) []byte {
	b := make([]byte, (size+7)/8*8)
	for j := 0; j < len(b)/8; j++ {
		binary.LittleEndian.PutUint64(b[8*j:], g.block(i, a, j))
	}
	return b[:size]
}

type attSpec struct {
	Name string
	Type string
	Size int
}

// msgSpec is the envelope and shape of message i.
type msgSpec struct {
	Index    int
	Tag      string // the Message-ID, with angle brackets
	From     string
	Internal []string
	External []string
	Atts     []attSpec
	Lines    int    // lines of body text
	Contract string // the contract its subject names, "" for none
}

// Rcpts is the envelope recipient list in the order they are given.
func (m *msgSpec) Rcpts() []string {
	return append(append([]string(nil), m.Internal...), m.External...)
}

func (g *generator) tag(i int) string {
	return fmt.Sprintf("<chaos.%s.%d@corp.example>", g.run, i)
}

// parseTag returns the index of a tag of this run.
func (g *generator) parseTag(tag string) (int, bool) {
	tag = strings.TrimSpace(tag)
	rest, ok := strings.CutPrefix(tag, "<chaos."+g.run+".")
	if !ok {
		return 0, false
	}
	num, ok := strings.CutSuffix(rest, "@corp.example>")
	if !ok {
		return 0, false
	}
	var i int
	if _, err := fmt.Sscanf(num, "%d", &i); err != nil || fmt.Sprint(i) != num {
		return 0, false
	}
	return i, true
}

type fileKind struct{ ext, typ string }

func fileKinds() []fileKind {
	return []fileKind{
		{".pdf", "application/pdf"},
		{".xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
		{".zip", "application/zip"},
		{".bin", "application/octet-stream"},
		{".png", "image/png"},
	}
}

// spec returns the shape of message i (deterministic).
func (g *generator) spec(i int) msgSpec {
	if i < 0 || i >= maxIndex {
		panic("chaos: message index out of range")
	}
	r := rand.New(rand.NewPCG(g.seed, uint64(i)+1))
	m := msgSpec{Index: i, Tag: g.tag(i), From: fmt.Sprintf("sender%d@corp.example", r.IntN(50)), Lines: 3 + r.IntN(20)}
	switch g.profile {
	case profileBench:
		m.External = []string{fmt.Sprintf("rcpt%d@client.example", r.IntN(1000))}
		m.Atts = []attSpec{{Name: fmt.Sprintf("report-%d.pdf", i), Type: "application/pdf", Size: 20000}}
		return m
	}
	n := 1 + r.IntN(4)
	seen := map[string]bool{}
	for len(m.Internal)+len(m.External) < n {
		var addr string
		switch k := r.IntN(10); {
		case k < 3:
			addr = fmt.Sprintf("staff%d@corp.example", r.IntN(100))
		case k < 7:
			addr = fmt.Sprintf("rcpt%d@client.example", r.IntN(1000))
		default:
			addr = fmt.Sprintf("rcpt%d@partner.example", r.IntN(1000))
		}
		if seen[addr] {
			continue
		}
		seen[addr] = true
		if strings.HasSuffix(addr, "@corp.example") {
			m.Internal = append(m.Internal, addr)
		} else {
			m.External = append(m.External, addr)
		}
	}
	var natt int
	switch k := r.IntN(20); {
	case k < 5:
		natt = 0
	case k < 16:
		natt = 1
	default:
		natt = 2 + r.IntN(2)
	}
	kinds := fileKinds()
	for a := 0; a < natt; a++ {
		fk := kinds[r.IntN(len(kinds))]
		m.Atts = append(m.Atts, attSpec{Name: fmt.Sprintf("file-%d-%d%s", i, a, fk.ext), Type: fk.typ, Size: 1024 + r.IntN(64<<10)})
	}
	if g.bigEvery > 0 && r.IntN(g.bigEvery) == 0 {
		m.Atts = append(m.Atts, attSpec{Name: fmt.Sprintf("big-%d.bin", i), Type: "application/octet-stream", Size: bigAttSize})
	}
	if g.tagEvery > 0 && r.IntN(g.tagEvery) == 0 {
		m.Contract = g.tagCode
	}
	return m
}

const bodyWords = `the quarterly figures are attached please review before the meeting
contract draft revision notes schedule budget estimate delivery plan thanks regards`

// render writes message m as sent (CRLF line endings).
func (g *generator) render(m *msgSpec) []byte {
	var b bytes.Buffer
	size := 2048
	for _, a := range m.Atts {
		size += base64.StdEncoding.EncodedLen(a.Size)*78/76 + 256
	}
	b.Grow(size)
	fmt.Fprintf(&b, "From: Sender <%s>\r\n", m.From)
	if len(m.Internal)+len(m.External) > 0 {
		fmt.Fprintf(&b, "To: %s\r\n", strings.Join(m.Rcpts(), ", "))
	}
	if m.Contract != "" {
		fmt.Fprintf(&b, "Subject: [%s] chaos %s #%d\r\n", m.Contract, g.run, m.Index)
	} else {
		fmt.Fprintf(&b, "Subject: chaos %s #%d\r\n", g.run, m.Index)
	}
	fmt.Fprintf(&b, "Date: %s\r\n", g.base.Add(time.Duration(m.Index)*time.Second).Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: %s\r\n", m.Tag)
	b.WriteString("MIME-Version: 1.0\r\n")
	words := strings.Fields(bodyWords)
	body := func() {
		r := rand.New(rand.NewPCG(g.seed^0x626f6479, uint64(m.Index)))
		fmt.Fprintf(&b, "Message %s.\r\n", m.Tag)
		for l := 0; l < m.Lines; l++ {
			for w := 0; w < 8; w++ {
				if w > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(words[r.IntN(len(words))])
			}
			b.WriteString("\r\n")
		}
	}
	if len(m.Atts) == 0 {
		b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n\r\n")
		body()
		return b.Bytes()
	}
	boundary := fmt.Sprintf("=_chaos_%s_%d", g.run, m.Index)
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary)
	body()
	for a, att := range m.Atts {
		fmt.Fprintf(&b, "--%s\r\nContent-Type: %s\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"%s\"\r\n\r\n",
			boundary, att.Type, att.Name)
		enc := base64.StdEncoding.EncodeToString(g.attachment(m.Index, a, att.Size))
		for len(enc) > 76 {
			b.WriteString(enc[:76])
			b.WriteString("\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc)
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.Bytes()
}

// leak is a run of an attachment found in a delivered message.
type leak struct {
	Msg, Att int
	Offset   int    // offset in the attachment
	Length   int    // bytes of plaintext that match
	Encoding string // "raw" or "base64"
}

func (l leak) String() string {
	return fmt.Sprintf("message %d attachment %d: %d bytes at offset %d (%s)", l.Msg, l.Att, l.Length, l.Offset, l.Encoding)
}

// findLeaks scans data for runs of any attachment of the run, raw or base64.
func (g *generator) findLeaks(data []byte) []leak {
	out := g.scan(data, "raw")
	// Base64: strip line breaks, then decode every maximal run of
	// base64-alphabet characters at each of the four phases.
	stripped := bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, data)
	dec := make([]byte, 0, len(stripped))
	for start := 0; start < len(stripped); {
		if !isB64(stripped[start]) {
			start++
			continue
		}
		end := start
		for end < len(stripped) && isB64(stripped[end]) {
			end++
		}
		if end-start >= 12 {
			for phase := 0; phase < 4 && phase+4 <= end-start; phase++ {
				seg := stripped[start+phase : end]
				seg = seg[:len(seg)/4*4]
				dec = dec[:base64.StdEncoding.DecodedLen(len(seg))]
				n, err := base64.StdEncoding.Decode(dec, seg)
				if err != nil {
					continue
				}
				out = append(out, g.scan(dec[:n], "base64")...)
			}
		}
		start = end
	}
	return out
}

func isB64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/'
}

// scan looks for attachment blocks in data and confirms each candidate
// against the regenerated attachment.
func (g *generator) scan(data []byte, enc string) []leak {
	var out []leak
	for p := 0; p+8 <= len(data); p++ {
		i, a, j, ok := g.decode(binary.LittleEndian.Uint64(data[p:]))
		if !ok {
			continue
		}
		m := g.spec(i)
		if a >= len(m.Atts) || 8*j >= m.Atts[a].Size {
			continue
		}
		size := m.Atts[a].Size
		off := 8 * j
		// Extend the match both ways.
		left := 0
		for p-left-1 >= 0 && off-left-1 >= 0 && data[p-left-1] == g.attByte(i, a, off-left-1) {
			left++
		}
		right := 0
		for p+right < len(data) && off+right < size && data[p+right] == g.attByte(i, a, off+right) {
			right++
		}
		if n := left + right; n >= minLeak {
			out = append(out, leak{Msg: i, Att: a, Offset: off - left, Length: n, Encoding: enc})
			p += right - 1 // skip the rest of this run
		}
	}
	return out
}
