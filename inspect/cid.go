package inspect

import (
	"net/url"
	"strings"
)

// CIDRefs collects the cid: URLs (RFC 2392) an HTML body refers to, e.g. <img
// src="cid:image001.png@01DA0B1C.5E6F7A80">, so that the walker can tell an inline image of the
// body (a signature logo) from an attachment. Feed it the HTML part's decoded bytes; it keeps
// at most MaxCIDRefs references of at most MaxCIDLen bytes each. Write never fails.
type CIDRefs struct {
	match int    // how much of "cid:" has been matched
	prev  byte   // the byte before the current match
	in    bool   // collecting a reference
	cur   []byte // the reference being collected
	refs  map[string]bool
	order []string
}

const (
	MaxCIDRefs = 1000
	MaxCIDLen  = 998
)

// NewCIDRefs returns an empty collector.
func NewCIDRefs() *CIDRefs { return &CIDRefs{refs: map[string]bool{}} }

func cidDelimiter(c byte) bool {
	switch c {
	case '"', '\'', ' ', '\t', '\r', '\n', '>', '<', ')', '(', '\\', '&', '#', '?':
		return true
	}
	return false
}

// cidMayStart: a cid: URL starts an attribute value, a CSS url(), or a word.
func cidMayStart(prev byte) bool {
	switch prev {
	case 0, '"', '\'', '(', ' ', '\t', '\r', '\n', '=', '>':
		return true
	}
	return false
}

// Write scans p.
func (c *CIDRefs) Write(p []byte) (int, error) {
	for _, b := range p {
		if c.in {
			if cidDelimiter(b) {
				c.add()
			} else if len(c.cur) <= MaxCIDLen {
				c.cur = append(c.cur, b)
			}
			c.prev = b
			continue
		}
		lower := b | 0x20
		switch {
		case c.match < 3 && lower == "cid"[c.match] && (c.match > 0 || cidMayStart(c.prev)):
			c.match++
		case c.match == 3 && b == ':':
			c.in, c.match, c.cur = true, 0, c.cur[:0]
		default:
			c.match = 0
			if lower == 'c' && cidMayStart(c.prev) {
				c.match = 1
			}
		}
		c.prev = b
	}
	return len(p), nil
}

// Close ends the body (a reference at its very end counts).
func (c *CIDRefs) Close() error {
	if c.in {
		c.add()
	}
	return nil
}

func (c *CIDRefs) add() {
	c.in = false
	if len(c.cur) == 0 || len(c.cur) > MaxCIDLen || len(c.order) >= MaxCIDRefs {
		return
	}
	ref := string(c.cur)
	if u, err := url.PathUnescape(ref); err == nil {
		ref = u
	}
	if !c.refs[ref] {
		c.refs[ref] = true
		c.order = append(c.order, ref)
	}
}

// Has reports whether the HTML referred to the part with this Content-ID header value
// ("<id>" or "id").
func (c *CIDRefs) Has(contentID string) bool {
	id := strings.TrimSpace(contentID)
	id = strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	return id != "" && c.refs[id]
}

// Refs returns the references found, in order of first appearance.
func (c *CIDRefs) Refs() []string { return append([]string(nil), c.order...) }
