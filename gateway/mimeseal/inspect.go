package mimeseal

import (
	"bytes"
	"html"
	"strings"
	"unicode/utf8"
)

// Files hidden in kept text parts (see "Files hidden in text" in the package documentation).
//
// An inspector reads the decoded content of a kept text part, in pieces, and reports the first
// hidden file it finds. Every rule errs towards finding: a false find seals a text part that
// could have been kept (the recipient downloads it), a miss sends a file in clear.

// carrier is a hidden file found in a text part.
type carrier struct {
	reason string // Attachment.Reason: "uuencode", "binhex", "yenc", "btoa", "pgp", "data-uri", "html-object", "charset"
	name   []byte // the file name from the carrier's header, raw (in the part's charset), or nil
}

// inspector implements PartWriter so that the walker's decoders feed it through the batcher.
type inspector struct {
	found  carrier
	head   [2]byte // the first two bytes, for a byte order mark
	nhead  int
	esc    escFilter
	lines  lineScan
	html   htmlScan
	isHTML bool
}

func (ins *inspector) reset(isHTML, flowed, delsp bool) {
	ins.found = carrier{}
	ins.nhead = 0
	ins.esc = escFilter{}
	ins.lines.reset(&ins.found, flowed, delsp, isHTML)
	ins.html.reset(&ins.found)
	ins.isHTML = isHTML
}

func (ins *inspector) Write(p []byte) (int, error) {
	n := len(p)
	for ins.nhead < 2 && len(p) > 0 {
		ins.head[ins.nhead] = p[0]
		ins.nhead++
		p = p[1:]
		if ins.nhead == 2 && (ins.head == [2]byte{0xfe, 0xff} || ins.head == [2]byte{0xff, 0xfe}) {
			// A UTF-16 (or UTF-32LE) byte order mark: clients decode the text as such, whatever
			// the declared charset, and the markers are not ASCII in it.
			ins.found = carrier{reason: "charset"}
		}
		ins.feed(ins.head[ins.nhead-1 : ins.nhead])
	}
	ins.feed(p)
	return n, nil
}

// feed passes p to the scanners, without the ISO 2022 escape sequences and shifts, which a
// client's decoder consumes without a trace (so "da<ESC>(Bta:" reads "data:").
func (ins *inspector) feed(p []byte) {
	for len(p) > 0 && ins.found.reason == "" {
		seg, skipped, rest := ins.esc.next(p)
		if len(seg) > 0 {
			ins.lines.write(seg)
			if ins.isHTML {
				ins.html.write(seg)
			}
		}
		if len(skipped) > 0 {
			ins.lines.rawOnly(skipped)
		}
		p = rest
	}
}

// close ends the content (its last line may have no line break).
func (ins *inspector) close() {
	if ins.esc.nheld > 0 { // an unfinished escape sequence is text
		held := ins.esc.held
		n := ins.esc.nheld
		ins.esc = escFilter{}
		ins.feed(held[:n])
	}
	if ins.found.reason == "" {
		ins.lines.endLine()
	}
	if ins.found.reason == "" && ins.isHTML {
		ins.html.close()
	}
}

func (ins *inspector) Close() error { return nil }
func (ins *inspector) Abort(error)  {}

// escFilter removes ISO 2022 designations (ESC, intermediate bytes "$&()*+,-./", a final byte
// 0x30–0x7E: "ESC $ B", "ESC ( B", "ESC $ ( D", ...) and the shifts SO and SI, across pieces.
// Any other ESC is text: "ESC SP d" is not a designation, and a URL parser would strip the ESC
// and the space from "<ESC> data:".
type escFilter struct {
	state int // 0: text; 1: after ESC; 2: in intermediates
	held  [10]byte
	nheld int
}

// next returns the text before the next escape sequence or shift, the bytes of sequences
// consumed (they belong to the raw line, for file names), and the rest.
func (f *escFilter) next(p []byte) (seg, skipped, rest []byte) {
	if f.state == 0 {
		i := indexEsc(p)
		if i < 0 {
			return p, nil, nil
		}
		if p[i] != 0x1b {
			return p[:i], p[i : i+1], p[i+1:] // SO or SI
		}
		if i > 0 {
			return p[:i], nil, p[i:]
		}
		f.state, f.nheld = 1, 0
		f.held[f.nheld] = 0x1b
		f.nheld++
		p = p[1:]
	}
	for j := 0; j < len(p); j++ {
		c := p[j]
		switch {
		case strings.IndexByte(iso2022Intermediates, c) >= 0 && f.nheld < len(f.held)-1:
			f.held[f.nheld] = c
			f.nheld++
			f.state = 2
		case c >= 0x30 && c <= 0x7e && f.state == 2:
			f.state = 0
			f.held[f.nheld] = c
			seq := f.held[:f.nheld+1]
			f.nheld = 0
			return nil, seq, p[j+1:] // a complete designation: dropped from the text
		default:
			// Not a designation: the ESC and what followed it are text.
			f.state = 0
			held := f.held[:f.nheld]
			f.nheld = 0
			return held, nil, p[j:]
		}
	}
	return nil, nil, nil // the sequence continues in the next piece
}

const iso2022Intermediates = "$&()*+,-./"

func indexEsc(p []byte) int {
	i := -1
	for _, c := range []byte{0x1b, 0x0e, 0x0f} {
		end := len(p)
		if i >= 0 {
			end = i
		}
		if j := bytes.IndexByte(p[:end], c); j >= 0 {
			i = j
		}
	}
	return i
}

// lineKeep is how much of a line the line scanner looks at: every marker is at a line start.
const lineKeep = 512

// lineScan finds the line-based carriers: uuencode (and GNU "begin-base64"), yEnc, BinHex 4.0,
// btoa and PGP armour. Line breaks are CRLF, LF or CR alone (a decoded body may have any).
// With format=flowed (RFC 3676) the logical lines — soft breaks joined, space-stuffing
// removed — are checked as well as the physical ones.
type lineScan struct {
	found *carrier
	buf   [lineKeep]byte // the start of the current line, escape sequences removed
	n     int
	raw   [lineKeep]byte // the same with them, for file names
	nraw  int
	total int  // length of the current line
	last  byte // its last byte
	cr    bool // the previous line ended with CR: a LF now ends nothing

	weak      bool // the previous line was a non-standard "begin" line; the next decides
	weakName  []byte
	weakBlank int // blank lines since

	flowed, delsp bool
	html          bool           // HTML: no client decodes uuencode there, and its source lines are not text
	logical       [lineKeep]byte // the current logical line
	nlog          int
	cont          bool // the logical line continues on the next physical line
}

func (s *lineScan) reset(found *carrier, flowed, delsp, html bool) {
	*s = lineScan{found: found, flowed: flowed, delsp: delsp, html: html}
}

func (s *lineScan) write(p []byte) {
	for len(p) > 0 && s.found.reason == "" {
		if s.cr {
			s.cr = false
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		i := indexLineEnd(p)
		if i < 0 {
			s.add(p)
			return
		}
		s.add(p[:i])
		s.cr = p[i] == '\r'
		p = p[i+1:]
		s.endLine()
	}
}

// indexLineEnd returns the index of the first CR or LF in p, or -1.
func indexLineEnd(p []byte) int {
	i := bytes.IndexByte(p, '\n')
	end := len(p)
	if i >= 0 {
		end = i
	}
	if j := bytes.IndexByte(p[:end], '\r'); j >= 0 {
		return j
	}
	return i
}

// rawOnly adds bytes that belong to the raw line but not to the text (escape sequences).
func (s *lineScan) rawOnly(p []byte) {
	s.nraw += copy(s.raw[s.nraw:], p)
}

func (s *lineScan) add(p []byte) {
	if len(p) == 0 {
		return
	}
	s.n += copy(s.buf[s.n:], p)
	s.nraw += copy(s.raw[s.nraw:], p)
	s.total += len(p)
	s.last = p[len(p)-1]
}

func (s *lineScan) endLine() {
	line := s.buf[:s.n]
	s.checkPhysical(line)
	if s.flowed && s.found.reason == "" {
		s.flow(line)
	}
	s.n, s.nraw, s.total, s.last = 0, 0, 0, 0
}

func (s *lineScan) checkPhysical(line []byte) {
	if s.weak {
		if len(bytes.TrimSpace(line)) == 0 && s.weakBlank < 3 {
			s.weakBlank++
			return
		}
		s.weak = false
		if uuDataLine(line) {
			*s.found = carrier{reason: "uuencode", name: s.weakName}
			return
		}
	}
	c, weak := matchLine(line)
	if c == "uuencode" && s.html {
		weak = true // "begin 2024 planning" at the start of an HTML source line is text
	}
	switch {
	case c != "" && !weak:
		*s.found = carrier{reason: c, name: s.fileName(line, c)}
	case weak:
		s.weak, s.weakBlank, s.weakName = true, 0, s.fileName(line, c)
	}
}

// flow builds the logical line of a format=flowed text and checks it when it ends.
func (s *lineScan) flow(line []byte) {
	if !s.cont {
		s.nlog = 0
	}
	joined := s.cont
	piece := line
	if len(piece) > 0 && piece[0] == ' ' { // space-stuffing
		piece = piece[1:]
		joined = true
	}
	soft := s.last == ' ' && !bytes.Equal(line, []byte("-- "))
	if soft && s.delsp && s.total == len(line) && len(piece) > 0 {
		piece = piece[:len(piece)-1]
	}
	s.nlog += copy(s.logical[s.nlog:], piece)
	s.cont = soft
	if soft || !joined {
		return // the physical line was checked as it is
	}
	if c, weak := matchLine(s.logical[:s.nlog]); c != "" && !weak {
		line := s.logical[:s.nlog]
		var name []byte
		if i := nameStart(line, c); i >= 0 {
			name = bytes.Clone(bytes.TrimRight(line[i:], " \t"))
		}
		*s.found = carrier{reason: c, name: name}
	}
}

// nameStart returns where the file name starts in a begin line (uuencode, yEnc), or -1.
func nameStart(line []byte, reason string) int {
	switch reason {
	case "uuencode":
		return uuNameStart(line)
	case "yenc":
		if i := indexFold(line, "name="); i >= 0 && i+len("name=") < len(line) {
			return i + len("name=")
		}
	}
	return -1
}

// fileName returns the raw file name of the current physical begin line, escape sequences
// included (ISO-2022-JP names), or nil.
func (s *lineScan) fileName(line []byte, reason string) []byte {
	start := nameStart(line, reason)
	if start < 0 {
		return nil
	}
	// The same position in the raw line: skip as many text bytes as precede the name.
	raw := s.raw[:s.nraw]
	k, j := 0, 0
	for j < len(raw) && k < start {
		switch raw[j] {
		case 0x1b:
			e := j + 1
			for e < len(raw) && strings.IndexByte(iso2022Intermediates, raw[e]) >= 0 {
				e++
			}
			if e > j+1 && e < len(raw) && raw[e] >= 0x30 && raw[e] <= 0x7e {
				j = e + 1 // a designation, not text
			} else {
				j++
				k++
			}
		case 0x0e, 0x0f:
			j++
		default:
			j++
			k++
		}
	}
	name := bytes.TrimRight(raw[min(j, len(raw)):], " \t")
	if len(name) == 0 {
		return nil
	}
	return bytes.Clone(name)
}

// matchLine returns the carrier a line starts, and whether it is only a non-standard uuencode
// begin line (then only a following line of uuencoded data makes it one).
func matchLine(line []byte) (reason string, weak bool) {
	t := trimLead(line)
	if len(t) < 5 {
		return "", false
	}
	switch t[0] | 0x20 {
	case 'b':
		if hasPrefixFold(t, "begin-base64") && len(t) > 12 && (t[12] == ' ' || t[12] == '\t') {
			return "uuencode", false
		}
		if ok, strict := uuBeginLine(t); ok {
			return "uuencode", !strict
		}
	case '=':
		if hasPrefixFold(t, "=ybegin") {
			return "yenc", false
		}
	case 'x':
		if hasPrefixFold(t, "xbtoa begin") {
			return "btoa", false
		}
	case '-':
		if hasPrefixFold(t, "-----begin pgp message") || hasPrefixFold(t, "-----begin pgp armored file") {
			return "pgp", false
		}
	case ':':
		if hqxDataLine(t) {
			return "binhex", false // with or without the banner
		}
	}
	if hasPrefixFold(bytes.TrimLeft(t, "("), "this file must be converted with binhex") {
		return "binhex", false
	}
	return "", false
}

// uuBeginLine matches "begin", white space, an octal mode, white space and a name, in any
// case. strict is what encoders write and decoders take without more ado: lower-case "begin"
// (Thunderbird and Outlook want a mode of 3 or 4 digits, GNU uudecode any).
func uuBeginLine(t []byte) (ok, strict bool) {
	if !hasPrefixFold(t, "begin") {
		return false, false
	}
	i := 5
	j := skipBlank(t, i)
	if j == i {
		return false, false
	}
	k := j
	for k < len(t) && t[k] >= '0' && t[k] <= '7' {
		k++
	}
	if k == j {
		return false, false
	}
	if skipBlank(t, k) == k {
		return false, false // the name may be empty (Thunderbird takes "begin 644 " as a file)
	}
	return true, string(t[:5]) == "begin"
}

// uuNameStart returns where the name starts in a uuencode begin line, or -1.
func uuNameStart(line []byte) int {
	i := len(line) - len(trimLead(line))
	if hasPrefixFold(line[i:], "begin-base64") {
		i += len("begin-base64")
	} else {
		i += len("begin")
	}
	i = skipBlank(line, i)
	for i < len(line) && line[i] >= '0' && line[i] <= '7' {
		i++
	}
	i = skipBlank(line, i)
	if i >= len(line) {
		return -1
	}
	return i
}

// trimLead removes what may stand before a marker at the start of a line: white space, and a
// UTF-8 byte order mark (which a client's charset decoder removes).
func trimLead(line []byte) []byte {
	for len(line) > 0 {
		switch {
		case line[0] == ' ' || line[0] == '\t':
			line = line[1:]
		case len(line) >= 3 && line[0] == 0xef && line[1] == 0xbb && line[2] == 0xbf:
			line = line[3:]
		default:
			return line
		}
	}
	return line
}

func skipBlank(t []byte, i int) int {
	for i < len(t) && (t[i] == ' ' || t[i] == '\t') {
		i++
	}
	return i
}

const xxAlphabet = "+-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// uuDataLine reports whether line looks like a line of uuencoded (or xxencoded) data: its
// first character gives a length of 1 to 45 bytes, its length fits, and every character is in
// the alphabet.
func uuDataLine(line []byte) bool {
	if len(line) < 2 {
		return false
	}
	fits := func(n int) bool {
		want := 1 + (n+2)/3*4
		return n >= 1 && n <= 45 && len(line) >= want-1 && len(line) <= want+2
	}
	uu := fits(int(line[0]-' ') & 63)
	for _, c := range line {
		if c < 0x20 || c > 0x60 {
			uu = false
			break
		}
	}
	if uu {
		return true
	}
	if !fits(strings.IndexByte(xxAlphabet, line[0])) {
		return false
	}
	for _, c := range line {
		if strings.IndexByte(xxAlphabet, c) < 0 {
			return false
		}
	}
	return true
}

const hqxAlphabet = "!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"

// hqxDataLine reports whether t is the first line of BinHex 4.0 data without its banner: a
// colon and at least 31 characters of the BinHex alphabet (such lines are 64 long).
func hqxDataLine(t []byte) bool {
	t = bytes.TrimRight(t, " \t")
	if len(t) < 32 || t[0] != ':' {
		return false
	}
	for _, c := range t[1:] {
		if strings.IndexByte(hqxAlphabet, c) < 0 && c != ':' {
			return false
		}
	}
	return true
}

func hasPrefixFold(s []byte, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if lower(s[i]) != prefix[i] {
			return false
		}
	}
	return true
}

// indexFold returns the index of the lower-case ASCII string sub in s, ignoring case, or -1.
func indexFold(s []byte, sub string) int {
	first, upper := sub[0], sub[0]
	if 'a' <= first && first <= 'z' {
		upper = first - 'a' + 'A'
	}
	for off := 0; off+len(sub) <= len(s); {
		i := bytes.IndexByte(s[off:], first)
		if j := bytes.IndexByte(s[off:], upper); j >= 0 && (i < 0 || j < i) {
			i = j
		}
		if i < 0 {
			return -1
		}
		if hasPrefixFold(s[off+i:], sub) {
			return off + i
		}
		off += i + 1
	}
	return -1
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// htmlScan finds files in HTML: a data: URI in any attribute value or in CSS (a style element
// or attribute), an <object>, <embed> or <applet> element, a srcdoc attribute, and a charset
// declaration whose text would not be ASCII. It is a tokenizer of tags and attributes only,
// simpler than HTML's: where it parses differently from a browser, it scans more, never less
// (every attribute value is scanned whatever its tag or name, comments are scanned as markup,
// and text swallowed into a value by a stray quote is scanned with it).
type htmlScan struct {
	found  *carrier
	state  int
	quote  byte
	endTag bool
	tag    [16]byte // current tag name, lower-case (longer names are cut)
	ntag   int
	attr   [16]byte // current attribute name, lower-case
	nattr  int
	style  int // bytes of "</style" matched inside a style element
	val    valueScan
}

const (
	hText = iota
	hTagOpen
	hTagName
	hBeforeAttr
	hAttrName
	hAfterAttrName
	hBeforeValue
	hValueQuoted
	hValueUnquoted
	hStyle

	// hClose is no state: enter(hClose) ends the tag (tagEnd).
	hClose = -1
)

// enter moves to state next, or ends the tag for hClose.
func (h *htmlScan) enter(next int) {
	if next == hClose {
		h.tagEnd()
		return
	}
	h.state = next
}

// attrStart begins an attribute name with c.
func (h *htmlScan) attrStart(c byte) {
	h.attr[0], h.nattr = lower(c), 1
	h.state = hAttrName
}

// valueStart begins an attribute value; charset and content values are the ones a meta tag
// may declare a charset in.
func (h *htmlScan) valueStart() { h.val.start(h.attrIs("charset") || h.attrIs("content")) }

func (h *htmlScan) reset(found *carrier) {
	*h = htmlScan{found: found}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

func (h *htmlScan) write(p []byte) {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch h.state {
		case hText:
			j := bytes.IndexByte(p[i:], '<')
			if j < 0 {
				i = len(p)
				continue
			}
			i += j
			h.state = hTagOpen
		case hTagOpen:
			h.ntag, h.endTag = 0, false
			switch {
			case isLetter(c), c == '!', c == '?':
				h.tag[0] = lower(c)
				h.ntag = 1
				h.state = hTagName
			case c == '/':
				h.endTag = true
				h.state = hTagName
			case c == '<':
			default:
				h.state = hText
			}
		case hTagName:
			next := hClose
			switch {
			case isSpace(c), c == '/':
				next = hBeforeAttr
			case c != '>':
				h.ntag = appendName(&h.tag, h.ntag, c)
				continue
			}
			if h.tagNameEnd() {
				return
			}
			h.enter(next)
		case hBeforeAttr:
			switch {
			case isSpace(c), c == '/':
			case c == '>':
				h.tagEnd()
			default:
				h.attrStart(c)
			}
		case hAttrName:
			next := hClose
			switch {
			case isSpace(c):
				next = hAfterAttrName
			case c == '/':
				next = hBeforeAttr
			case c == '=':
				next = hBeforeValue
			case c != '>':
				h.nattr = appendName(&h.attr, h.nattr, c)
				continue
			}
			if h.attrNameEnd() {
				return
			}
			h.enter(next)
		case hAfterAttrName:
			switch {
			case isSpace(c):
			case c == '=':
				h.state = hBeforeValue
			case c == '>':
				h.tagEnd()
			case c == '/':
				h.state = hBeforeAttr
			default:
				h.attrStart(c)
			}
		case hBeforeValue:
			switch {
			case isSpace(c):
			case c == '"', c == '\'':
				h.quote = c
				h.valueStart()
				h.state = hValueQuoted
			case c == '>':
				h.tagEnd()
			default:
				h.valueStart()
				h.val.feed(c)
				h.state = hValueUnquoted
			}
		case hValueQuoted:
			j := bytes.IndexByte(p[i:], h.quote)
			if j < 0 {
				h.val.feedAll(p[i:])
				i = len(p)
				continue
			}
			h.val.feedAll(p[i : i+j])
			i += j
			if h.valueEnd() {
				return
			}
			h.state = hBeforeAttr
		case hValueUnquoted:
			next := hClose
			switch {
			case isSpace(c):
				next = hBeforeAttr
			case c != '>':
				h.val.feed(c)
				continue
			}
			if h.valueEnd() {
				return
			}
			h.enter(next)
		case hStyle:
			if h.style == 0 {
				j := bytes.IndexByte(p[i:], '<')
				if j < 0 {
					h.val.feedAll(p[i:])
					i = len(p)
					continue
				}
				h.val.feedAll(p[i : i+j])
				i += j
				c = '<'
			}
			h.val.feed(c)
			const end = "</style"
			switch {
			case lower(c) == end[h.style]:
				if h.style++; h.style == len(end) {
					if h.valueEnd() {
						return
					}
					h.endTag, h.ntag = true, copy(h.tag[:], "style")
					h.state = hTagName
				}
			case c == '<':
				h.style = 1
			default:
				h.style = 0
			}
		}
	}
	if h.val.found() {
		*h.found = carrier{reason: "data-uri"}
	}
}

// appendName adds c, lower-case, to a tag or attribute name of n bytes (longer names are cut).
func appendName(name *[16]byte, n int, c byte) int {
	if n < len(name) {
		name[n] = lower(c)
		n++
	}
	return n
}

func (h *htmlScan) close() {
	if h.state == hValueQuoted || h.state == hValueUnquoted || h.state == hStyle {
		h.valueEnd()
	}
}

// tagNameEnd, attrNameEnd and valueEnd report whether they found something.
func (h *htmlScan) tagNameEnd() bool {
	if h.endTag {
		return false
	}
	switch string(h.tag[:h.ntag]) {
	case "object", "embed", "applet":
		*h.found = carrier{reason: "html-object"}
		return true
	}
	return false
}

func (h *htmlScan) tagEnd() {
	if !h.endTag && string(h.tag[:h.ntag]) == "style" {
		h.val.start(false)
		h.style = 0
		h.state = hStyle
		return
	}
	h.state = hText
}

func (h *htmlScan) attrIs(name string) bool { return string(h.attr[:h.nattr]) == name }

func (h *htmlScan) attrNameEnd() bool {
	if h.attrIs("srcdoc") {
		*h.found = carrier{reason: "html-object"}
		return true
	}
	return false
}

func (h *htmlScan) valueEnd() bool {
	h.val.end()
	switch {
	case h.val.found():
		*h.found = carrier{reason: "data-uri"}
	case h.val.charsetBad:
		*h.found = carrier{reason: "charset"}
	default:
		return false
	}
	return true
}

// valueScan reads an attribute value or the text of a style element: it decodes character
// references (as HTML does in attribute values, and as XHTML does in style elements too), and
// looks for the scheme "data:" both in the result and in the result with CSS escapes decoded.
type valueScan struct {
	ent        entityDecoder
	url        dataMatch
	css        cssUnescape
	charset    bool // the value may declare a charset (attribute charset or content)
	pre        [64]byte
	npre       int
	charsetBad bool
}

func (v *valueScan) start(charset bool) {
	v.ent = entityDecoder{}
	v.url = dataMatch{prev: ' '}
	v.css = cssUnescape{m: dataMatch{prev: ' '}}
	v.charset, v.npre = charset, 0
}

func (v *valueScan) found() bool { return v.url.found || v.css.m.found }

func (v *valueScan) feedAll(p []byte) {
	for len(p) > 0 {
		if v.ent.state == 0 && v.url.k == 0 && v.css.state == 0 && v.css.m.k == 0 && !v.charset {
			// Fast path: up to the next byte that can start a reference, an escape or the
			// scheme, only the character before it matters.
			i := indexValueSpecial(p)
			if i < 0 {
				i = len(p)
			}
			if i > 0 {
				last := lower(p[i-1])
				if isSpace(last) {
					last = ' '
				}
				v.url.prev, v.css.m.prev = last, last
				p = p[i:]
				continue
			}
		}
		v.ent.feed(p[0], v)
		p = p[1:]
	}
}

func indexValueSpecial(p []byte) int {
	for i, c := range p {
		switch c {
		case 'd', 'D', '&', '\\':
			return i
		}
	}
	return -1
}

func (v *valueScan) feed(c byte) { v.ent.feed(c, v) }

// emit receives the value's characters, character references decoded.
func (v *valueScan) emit(c byte) {
	v.url.feed(c)
	v.css.feed(c)
	if v.charset && v.npre < len(v.pre) {
		v.pre[v.npre] = lower(c)
		v.npre++
	}
}

func (v *valueScan) end() {
	v.ent.flush(v)
	v.css.flush()
	if v.charset {
		cs := v.pre[:v.npre]
		if i := bytes.Index(cs, []byte("charset=")); i >= 0 {
			cs = cs[i+len("charset="):]
			if j := bytes.IndexAny(cs, "; \t\"'"); j >= 0 {
				cs = cs[:j]
			}
		}
		v.charsetBad = asciiIncompatible(string(bytes.TrimSpace(cs)))
	}
}

// dataMatch finds "data:" as a URL scheme: at the start of the input or after a character that
// cannot be part of a scheme, in any case, ignoring white space inside it (the URL parser
// removes tabs and newlines; white space elsewhere is ignored too, to err towards finding).
type dataMatch struct {
	k     int
	prev  byte
	found bool
}

func isSchemeChar(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'
}

func (m *dataMatch) feed(c byte) {
	const pat = "data:"
	c = lower(c)
	if isSpace(c) {
		if m.k == 0 {
			m.prev = ' '
		}
		return
	}
	if m.k > 0 {
		if c == pat[m.k] {
			if m.k++; m.k == len(pat) {
				m.found, m.k = true, 0
			}
			m.prev = c
			return
		}
		m.k = 0
	}
	if c == 'd' && !isSchemeChar(m.prev) {
		m.k = 1
	}
	m.prev = c
}

// cssUnescape decodes CSS escapes (a backslash and 1–6 hex digits and one optional white
// space; a backslash and a newline, removed; a backslash and another character, that
// character) in front of a dataMatch.
type cssUnescape struct {
	state int // 0 text, 1 after backslash, 2 in hex digits
	r     rune
	n     int
	m     dataMatch
}

func (u *cssUnescape) feed(c byte) {
	switch u.state {
	case 1:
		switch {
		case unhex(c) >= 0:
			u.r, u.n, u.state = rune(unhex(c)), 1, 2
		case c == '\n' || c == '\r' || c == '\f':
			u.state = 0
		default:
			u.state = 0
			u.m.feed(c)
		}
		return
	case 2:
		if unhex(c) >= 0 && u.n < 6 {
			u.r, u.n = u.r<<4|rune(unhex(c)), u.n+1
			return
		}
		u.emitRune()
		u.state = 0
		if isSpace(c) {
			return
		}
	}
	if c == '\\' {
		u.state = 1
		return
	}
	u.m.feed(c)
}

func (u *cssUnescape) emitRune() {
	var b [utf8.UTFMax]byte
	for _, c := range b[:utf8.EncodeRune(b[:], safeRune(u.r))] {
		u.m.feed(c)
	}
}

func (u *cssUnescape) flush() {
	if u.state == 2 {
		u.emitRune()
	}
	u.state = 0
}

func safeRune(r rune) rune {
	if r == 0 || r > utf8.MaxRune || 0xd800 <= r && r <= 0xdfff {
		return utf8.RuneError
	}
	return r
}

// entityDecoder decodes HTML character references in a stream: numeric ones with any number
// of digits, with or without ";", and named ones (the full HTML5 table, through
// html.UnescapeString).
type entityDecoder struct {
	state int // 0 text, 1 after "&", 2 after "&#", 3 decimal digits, 4 hex digits, 5 name
	hexX  byte
	val   rune
	name  [40]byte
	nname int
}

func (d *entityDecoder) feed(c byte, out *valueScan) {
	for {
		switch d.state {
		case 0:
			if c == '&' {
				d.state = 1
				return
			}
			out.emit(c)
			return
		case 1:
			switch {
			case c == '#':
				d.state = 2
				return
			case isAlnum(c):
				d.name[0], d.nname, d.state = c, 1, 5
				return
			}
			out.emit('&')
			d.state = 0
			continue
		case 2:
			switch {
			case c == 'x' || c == 'X':
				d.hexX, d.val, d.state = c, 0, 4
				d.nname = 0
				return
			case '0' <= c && c <= '9':
				d.val, d.nname, d.state = rune(c-'0'), 1, 3
				return
			}
			out.emit('&')
			out.emit('#')
			d.state = 0
			continue
		case 3, 4:
			base := rune(10)
			v := -1
			if d.state == 4 {
				base, v = 16, unhex(c)
			} else if '0' <= c && c <= '9' {
				v = int(c - '0')
			}
			if v >= 0 {
				d.val = min(d.val*base+rune(v), utf8.MaxRune+1)
				d.nname++
				return
			}
			if d.nname == 0 { // "&#x" without digits
				out.emit('&')
				out.emit('#')
				out.emit(d.hexX)
			} else {
				d.emitRune(out, safeRune(d.val))
			}
			d.state = 0
			if c == ';' {
				return
			}
			continue
		case 5:
			if isAlnum(c) && d.nname < len(d.name) {
				d.name[d.nname] = c
				d.nname++
				return
			}
			semi := c == ';'
			d.emitName(out, semi)
			d.state = 0
			if semi {
				return
			}
			continue
		}
	}
}

// flush ends the stream in the middle of a reference.
func (d *entityDecoder) flush(out *valueScan) {
	switch d.state {
	case 1:
		out.emit('&')
	case 2:
		out.emit('&')
		out.emit('#')
	case 3, 4:
		if d.nname == 0 {
			out.emit('&')
			out.emit('#')
			out.emit(d.hexX)
		} else {
			d.emitRune(out, safeRune(d.val))
		}
	case 5:
		d.emitName(out, false)
	}
	d.state = 0
}

func (d *entityDecoder) emitRune(out *valueScan, r rune) {
	var b [utf8.UTFMax]byte
	for _, c := range b[:utf8.EncodeRune(b[:], r)] {
		out.emit(c)
	}
}

func (d *entityDecoder) emitName(out *valueScan, semi bool) {
	ref := "&" + string(d.name[:d.nname])
	if semi {
		ref += ";"
	}
	s := html.UnescapeString(ref)
	for i := 0; i < len(s); i++ {
		out.emit(s[i])
	}
}

func isAlnum(c byte) bool { return isLetter(c) || '0' <= c && c <= '9' }

// asciiIncompatible reports whether a charset encodes ASCII otherwise than as ASCII bytes, so
// that markers cannot be found in its raw bytes: UTF-16, UTF-32, UCS-2/4, UTF-7, HZ, EBCDIC.
func asciiIncompatible(cs string) bool {
	var b strings.Builder
	for i := 0; i < len(cs); i++ {
		if c := lower(cs[i]); 'a' <= c && c <= 'z' || '0' <= c && c <= '9' {
			b.WriteByte(c)
		}
	}
	n := b.String()
	for _, p := range []string{"utf16", "utf32", "ucs2", "ucs4", "utf7", "unicode", "csunicode", "iso10646", "xunicode", "hz", "cshz", "ebcdic", "xebcdic", "csebcdic", "ccsid", "utfebcdic", "scsu", "bocu"} {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	for _, p := range []string{"ibm", "cp", "csibm", "xibm"} {
		if num, ok := strings.CutPrefix(n, p); ok && num != "" && strings.Contains(ebcdicCodePages, "|"+strings.TrimLeft(num, "0")+"|") {
			return true
		}
	}
	return false
}

// ebcdicCodePages are the EBCDIC code pages (IBM numbers without leading zeros).
const ebcdicCodePages = "|37|273|277|278|280|284|285|290|297|420|423|424|500|833|836|838|870|871|875|880|905|918|930|933|" +
	"935|937|939|1025|1026|1027|1047|1097|1112|1122|1123|1130|1132|1137|1140|1141|1142|1143|1144|1145|1146|1147|" +
	"1148|1149|1153|1154|1155|1156|1157|1158|1159|1160|1164|1364|1371|1388|1390|1399|20273|20277|20278|20280|" +
	"20284|20285|20290|20297|20420|20423|20424|20833|20838|20871|20880|20905|20924|21025|21027|"
