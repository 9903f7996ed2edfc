package mimeseal

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"strconv"
	"strings"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"

	"github.com/sealgate/sealgate/policy"
)

// maxBoundaryLen bounds the boundary parameter. RFC 2046 allows 70 characters; a little more is
// tolerated, anything longer makes the multipart unparseable (and so sealed whole).
const maxBoundaryLen = 200

// entity is what the walker learns from one entity's header.
type entity struct {
	part        Part
	facts       policy.Part // what the part rules see (set by decide)
	unparseable string      // why the structure cannot be trusted; "" when it can
	paramErr    bool        // Content-Type parameters are broken: the entity must not be kept
	boundary    []byte      // multipart only
}

// analyze parses the fields of h that decide what happens to the entity. It never fails:
// anything it cannot parse with certainty is reported in e.unparseable.
func analyze(h *textproto.Header, depth int, parent string) *entity {
	e := &entity{part: Part{Header: h, Depth: depth, Parent: parent}}
	p := &e.part
	for _, k := range []string{"Content-Type", "Content-Transfer-Encoding", "Content-Disposition"} {
		if len(h.Values(k)) > 1 {
			e.unparseable = "duplicate " + k
		}
	}

	// Content-Type. mime.ParseMediaType is strict: where it fails, so may other parsers, so a
	// multipart or a kept part must pass it.
	ct := h.Get("Content-Type")
	var ctParams map[string]string // lenient, for name parameters only
	switch {
	case strings.TrimSpace(ct) == "" && parent == "multipart/digest":
		p.MediaType = "message/rfc822" // RFC 2046 section 5.1.5
	case strings.TrimSpace(ct) == "":
		p.MediaType = "text/plain"
	default:
		mt, params, err := mime.ParseMediaType(ct)
		if containsFold(ct, "name") { // only name parameters are read from ctParams
			_, ctParams = parseParams(ct)
		}
		switch {
		case err == nil && strings.Contains(mt, "/"):
			p.MediaType, p.Params = mt, params
		case errors.Is(err, mime.ErrInvalidMediaParameter) && strings.Contains(mt, "/") &&
			!strings.HasPrefix(mt, "multipart/"):
			p.MediaType, e.paramErr = mt, true
		default:
			if e.unparseable == "" {
				e.unparseable = "bad Content-Type"
			}
			if mt, _ := parseParams(ct); isMediaType(mt) {
				p.MediaType = mt
			} else {
				p.MediaType = "application/octet-stream"
			}
		}
	}

	p.Encoding = strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	if p.Encoding == "" {
		p.Encoding = "7bit"
	}
	switch p.Encoding {
	case "7bit", "8bit", "binary":
	case "base64", "quoted-printable":
		if strings.HasPrefix(p.MediaType, "multipart/") && e.unparseable == "" {
			e.unparseable = "encoded multipart"
		}
	default:
		if e.unparseable == "" {
			e.unparseable = "unknown Content-Transfer-Encoding"
		}
	}

	var cdParams map[string]string
	if cd := h.Get("Content-Disposition"); strings.TrimSpace(cd) != "" {
		p.Disposition, cdParams = parseParams(cd)
	}
	if name, ok := paramFilename(cdParams, "filename"); ok {
		p.Filename, p.HasFilename = name, true
	} else if name, ok := paramFilename(ctParams, "name"); ok {
		p.Filename, p.HasFilename = name, true
	}

	if strings.HasPrefix(p.MediaType, "multipart/") && e.unparseable == "" {
		b := p.Params["boundary"]
		if !validBoundary(b) {
			e.unparseable = "multipart without a valid boundary"
		} else {
			e.boundary = []byte(b)
		}
	}
	return e
}

// containsFold reports whether s contains the lower-case ASCII string sub, ignoring case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i]|0x20 == sub[0] && strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

func validBoundary(b string) bool {
	if b == "" || len(b) > maxBoundaryLen {
		return false
	}
	for i := 0; i < len(b); i++ {
		if b[i] < 0x20 || b[i] > 0x7e {
			return false
		}
	}
	return true
}

func isMediaType(s string) bool {
	i := strings.IndexByte(s, '/')
	if i <= 0 || i == len(s)-1 {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// parseParams parses a Content-Type or Content-Disposition value leniently: the value before
// the first ';' (lower-case) and the parameters (names lower-case; the first of duplicates
// wins). Quoted strings are unescaped; unquoted values run to the next ';'. It never fails;
// it is only used to find file names, never to decide structure.
func parseParams(s string) (value string, params map[string]string) {
	i := strings.IndexByte(s, ';')
	if i < 0 {
		return strings.ToLower(strings.TrimSpace(s)), nil
	}
	value = strings.ToLower(strings.TrimSpace(s[:i]))
	s = s[i+1:]
	for len(s) > 0 {
		s = strings.TrimLeft(s, " \t;")
		eq := strings.IndexAny(s, "=;")
		if eq < 0 {
			break
		}
		if s[eq] == ';' { // a parameter without a value
			s = s[eq:]
			continue
		}
		name := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = strings.TrimLeft(s[eq+1:], " \t")
		var v string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			j := 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			v = b.String()
			s = s[min(j+1, len(s)):]
			if k := strings.IndexByte(s, ';'); k >= 0 {
				s = s[k:]
			} else {
				s = ""
			}
		} else {
			k := strings.IndexByte(s, ';')
			if k < 0 {
				k = len(s)
			}
			v = strings.TrimSpace(s[:k])
			s = s[k:]
		}
		if name == "" {
			continue
		}
		if params == nil {
			params = make(map[string]string)
		}
		if _, dup := params[name]; !dup {
			params[name] = v
		}
	}
	return value, params
}

// maxContinuations bounds RFC 2231 parameter continuations (name*0, name*1, ...).
const maxContinuations = 1000

// paramFilename returns the decoded value of the file name parameter name (RFC 2231 name*,
// name*0*/name*0 continuations, or plain name possibly holding RFC 2047 encoded-words), and
// whether any form of it is present.
func paramFilename(params map[string]string, name string) (string, bool) {
	if params == nil {
		return "", false
	}
	if v, ok := params[name+"*"]; ok {
		cs, raw := decodeExtValue(v, true)
		return toUTF8(cs, raw), true
	}
	_, enc0 := params[name+"*0*"]
	_, plain0 := params[name+"*0"]
	if enc0 || plain0 {
		var raw []byte
		var cs string
		for i := 0; i < maxContinuations; i++ {
			key := name + "*" + strconv.Itoa(i)
			if v, ok := params[key+"*"]; ok {
				var b []byte
				if i == 0 {
					cs, b = decodeExtValue(v, true)
				} else {
					_, b = decodeExtValue(v, false)
				}
				raw = append(raw, b...)
			} else if v, ok := params[key]; ok {
				raw = append(raw, v...)
			} else {
				break
			}
		}
		return toUTF8(cs, raw), true
	}
	if v, ok := params[name]; ok {
		return decodePlainName(v), true
	}
	return "", false
}

// decodeExtValue decodes an RFC 2231 extended value: charset'language'percent-encoded when
// first, else percent-encoded only. A malformed escape is kept literally.
func decodeExtValue(v string, first bool) (cs string, raw []byte) {
	if first {
		if i := strings.IndexByte(v, '\''); i >= 0 {
			if j := strings.IndexByte(v[i+1:], '\''); j >= 0 {
				cs, v = v[:i], v[i+1+j+1:]
			}
		}
	}
	raw = make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == '%' && i+2 < len(v) && unhex(v[i+1]) >= 0 && unhex(v[i+2]) >= 0 {
			raw = append(raw, byte(unhex(v[i+1])<<4|unhex(v[i+2])))
			i += 2
			continue
		}
		raw = append(raw, v[i])
	}
	return cs, raw
}

func unhex(c byte) int {
	return int(int8(hexValues[c]))
}

// hexValues maps a byte to its value as a hex digit (either case), or 0xff.
const hexValues = "" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\xff\xff\xff\xff\xff\xff" +
	"\xff\x0a\x0b\x0c\x0d\x0e\x0f\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\x0a\x0b\x0c\x0d\x0e\x0f\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff" +
	"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"

// decodePlainName decodes a plain parameter value: RFC 2047 encoded-words (not allowed there by
// the RFC, but what most mailers send), or raw ISO-2022-JP, or raw UTF-8.
func decodePlainName(v string) string {
	if strings.Contains(v, "=?") {
		d := mime.WordDecoder{CharsetReader: charset.Reader}
		if s, err := d.DecodeHeader(v); err == nil {
			v = s
		}
	}
	if strings.Contains(v, "\x1b$") || strings.Contains(v, "\x1b(") {
		return toUTF8("iso-2022-jp", []byte(v))
	}
	return strings.ToValidUTF8(v, "\uFFFD")
}

// toUTF8 converts raw from the named charset to valid UTF-8. Unknown charsets are taken as
// UTF-8; invalid sequences become U+FFFD.
func toUTF8(cs string, raw []byte) string {
	switch strings.ToLower(strings.TrimSpace(cs)) {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
	default:
		if r, err := charset.Reader(cs, bytes.NewReader(raw)); err == nil {
			if b, err := io.ReadAll(r); err == nil {
				raw = b
			}
		}
	}
	return strings.ToValidUTF8(string(raw), "\uFFFD")
}
