package inspect

import "bytes"

// pdf looks for the /Encrypt key (of the trailer, or of a cross-reference stream's
// dictionary: both are in clear in an encrypted PDF) anywhere in the file, as a whole name
// (not /EncryptMetadata), and for the %%EOF marker.
type pdf struct {
	tail      []byte // the last bytes of the previous write, for tokens across writes
	encrypted bool
	eof       bool
}

const pdfTail = 16

func newPDF() *pdf { return &pdf{} }

// pdfStart finds "%PDF-" in the first 1024 bytes (readers accept leading junk), or -1.
func pdfStart(head []byte) int {
	if len(head) > 1024 {
		head = head[:1024]
	}
	return bytes.Index(head, []byte("%PDF-"))
}

func isPDFDelimiter(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', '\f', 0, '/', '<', '>', '[', ']', '(', ')', '{', '}', '%':
		return true
	}
	return false
}

func (d *pdf) write(p []byte) {
	if d.encrypted && d.eof {
		return
	}
	// Search the carried tail and the start of p together, then p alone.
	if len(d.tail) > 0 {
		joined := append(d.tail, p[:min(len(p), pdfTail)]...)
		d.search(joined, len(d.tail))
	}
	d.search(p, 0)
	if len(p) >= pdfTail {
		d.tail = append(d.tail[:0], p[len(p)-pdfTail:]...)
	} else {
		d.tail = append(d.tail, p...)
		if len(d.tail) > pdfTail {
			d.tail = d.tail[len(d.tail)-pdfTail:]
		}
	}
}

// search looks at matches that start in b[from:] when from == 0, or that straddle the join
// (start before from) otherwise.
func (d *pdf) search(b []byte, join int) {
	if !d.encrypted {
		for i := 0; ; {
			j := bytes.Index(b[i:], []byte("/Encrypt"))
			if j < 0 {
				break
			}
			at := i + j
			i = at + 1
			if join > 0 && at >= join {
				break // found again in p alone
			}
			end := at + len("/Encrypt")
			if end >= len(b) {
				continue // its end is not known yet: the next write sees it
			}
			if isPDFDelimiter(b[end]) {
				d.encrypted = true
				break
			}
		}
	}
	if !d.eof {
		if i := bytes.Index(b, []byte("%%EOF")); i >= 0 && (join == 0 || i < join) {
			d.eof = true
		}
	}
}

func (d *pdf) finish() (string, bool, bool, string) {
	// A "/Encrypt" at the very end of the file (nothing after it) is not a key.
	return "pdf", d.encrypted, d.eof, ""
}
