package policy

import (
	"mime"
	"strings"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/unicode/norm"
)

// normalize turns a header value into the text predicates match: unfolded, RFC 2047 encoded
// words decoded (ISO-2022-JP, Shift_JIS and the other charsets go-message knows), Unicode
// NFKC (full-width letters and brackets become ASCII, half-width katakana full-width).
// A value whose encoded words cannot be decoded is matched as it is.
func normalize(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r\n", "", "\r", "", "\n", "").Replace(v)
	}
	if strings.Contains(v, "=?") {
		dec := mime.WordDecoder{CharsetReader: charset.Reader}
		if s, err := dec.DecodeHeader(v); err == nil {
			v = s
		}
	}
	return norm.NFKC.String(v)
}

// msgCtx evaluates the message rules for one message; it decodes each header field once.
type msgCtx struct {
	m       *Message
	decoded map[string][]string
	labels  []msipLabel
	parsed  bool
}

func newMsgCtx(m *Message) *msgCtx {
	return &msgCtx{m: m, decoded: map[string][]string{}}
}

// values returns the normalised values of a header field (all occurrences).
func (c *msgCtx) values(field string) []string {
	if v, ok := c.decoded[field]; ok {
		return v
	}
	var out []string
	if c.m.Header != nil {
		for _, v := range c.m.Header.Values(field) {
			out = append(out, normalize(v))
		}
	}
	c.decoded[field] = out
	return out
}

// msipLabel is one Microsoft Purview (MIP) sensitivity label applied to the message.
type msipLabel struct {
	id   string // label GUID, lower-case
	site string // tenant SiteId GUID, lower-case
}

// msipLabels parses the msip_labels header fields. The format (one field, possibly folded):
//
//	msip_labels: MSIP_Label_<GUID>_Enabled=true; MSIP_Label_<GUID>_SiteId=<GUID>; ...
//
// A label counts when its Enabled property is "true".
func (c *msgCtx) msipLabels() []msipLabel {
	if c.parsed {
		return c.labels
	}
	c.parsed = true
	enabled := map[string]bool{}
	site := map[string]string{}
	var order []string
	for _, v := range c.values("msip_labels") {
		for _, kv := range strings.Split(v, ";") {
			k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok {
				continue
			}
			k = strings.ToLower(strings.TrimSpace(k))
			val = strings.TrimSpace(val)
			rest, ok := strings.CutPrefix(k, "msip_label_")
			if !ok {
				continue
			}
			i := strings.LastIndexByte(rest, '_')
			if i <= 0 {
				continue
			}
			id, prop := strings.Trim(rest[:i], "{}"), rest[i+1:]
			if _, known := enabled[id]; !known {
				enabled[id] = false
				order = append(order, id)
			}
			switch prop {
			case "enabled":
				enabled[id] = strings.EqualFold(val, "true")
			case "siteid":
				site[id] = strings.ToLower(strings.Trim(val, "{}"))
			}
		}
	}
	for _, id := range order {
		if enabled[id] {
			c.labels = append(c.labels, msipLabel{id: id, site: site[id]})
		}
	}
	return c.labels
}
