package inspect

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
)

// Result is what an Inspector learnt about one part.
type Result struct {
	// MediaType is the type sniffed from the content, lower-case, without parameters
	// ("application/octet-stream" when nothing is recognised).
	MediaType string
	// Format names the container whose structure was followed: "zip", "7z", "rar4", "rar5",
	// "pdf", "cfb", or "" for none.
	Format string
	// Encrypted: an encrypted archive or document (see the package doc for what counts).
	Encrypted bool
	// Undetermined: Format's structure could not be followed to its end (truncated, over a
	// bound, unsupported); Encrypted is then what was seen up to there.
	Undetermined bool
	// Size is the number of bytes written.
	Size int64
}

// sniffLen is how much of the start DetectContentType and the signatures look at.
const sniffLen = 1024

// Inspector gathers a Result from the bytes written to it. Write never fails; Close ends the
// part (later writes fail) and Result reports. An Inspector is not safe for concurrent use; it
// may be reused for another part after Reset.
type Inspector struct {
	head   []byte
	size   int64
	closed bool
	format format
	res    Result
}

// format is a container parser.
type format interface {
	write(p []byte)
	// finish ends the input and returns the format name, whether it is encrypted, whether the
	// structure was followed to its end, and a refined media type ("" to keep the sniffed one).
	finish() (name string, encrypted, complete bool, mediaType string)
}

// New returns an Inspector for one part.
func New() *Inspector { return &Inspector{head: make([]byte, 0, sniffLen)} }

// Reset makes the Inspector ready for a new part.
func (in *Inspector) Reset() {
	*in = Inspector{head: in.head[:0]}
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("inspect: write after close")

// Write inspects p. It never retains p.
func (in *Inspector) Write(p []byte) (int, error) {
	if in.closed {
		return 0, ErrClosed
	}
	n := len(p)
	in.size += int64(n)
	if len(in.head) < sniffLen {
		k := min(sniffLen-len(in.head), len(p))
		in.head = append(in.head, p[:k]...)
		if in.format == nil {
			if len(in.head) < sniffLen && len(in.head) < 8 {
				// Every container signature fits in 8 bytes; wait for them (PDF may start later
				// but is recognised in head below).
				return n, nil
			}
			in.format = chooseFormat(in.head)
			if in.format != nil {
				in.format.write(in.head)
			}
			p = p[k:]
		}
	}
	if in.format != nil && len(p) > 0 {
		in.format.write(p)
	}
	return n, nil
}

// chooseFormat picks the container parser from the first bytes (at least 8 unless the part
// is shorter).
func chooseFormat(head []byte) format {
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x07\x08PK\x03\x04")),
		bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return newZip()
	case bytes.HasPrefix(head, sig7z):
		return new7z()
	case bytes.HasPrefix(head, sigRar5):
		return newRar5()
	case bytes.HasPrefix(head, sigRar4):
		return newRar4()
	case bytes.HasPrefix(head, sigCFB):
		return newCFB()
	case pdfStart(head) >= 0:
		return newPDF()
	}
	return nil
}

// Close ends the part. It always returns nil (it is there to make an Inspector an
// io.WriteCloser).
func (in *Inspector) Close() error {
	if in.closed {
		return nil
	}
	in.closed = true
	if in.format == nil && len(in.head) > 0 {
		in.format = chooseFormat(in.head)
		if in.format != nil {
			in.format.write(in.head)
		}
	}
	in.res = Result{MediaType: sniff(in.head), Size: in.size}
	if in.format != nil {
		name, enc, complete, mt := in.format.finish()
		in.res.Format, in.res.Encrypted, in.res.Undetermined = name, enc, !complete
		if mt != "" {
			in.res.MediaType = mt
		}
	}
	return nil
}

// Result reports what was learnt; call it after Close.
func (in *Inspector) Result() Result { return in.res }

var (
	sig7z   = []byte{'7', 'z', 0xBC, 0xAF, 0x27, 0x1C}
	sigRar4 = []byte("Rar!\x1A\x07\x00")
	sigRar5 = []byte("Rar!\x1A\x07\x01\x00")
	sigCFB  = []byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1}
)

// signatures DetectContentType misses (or names differently), checked first.
var signatures = []struct {
	off  int
	sig  string
	mime string
}{
	{0, "PK\x03\x04", "application/zip"},
	{0, "PK\x05\x06", "application/zip"},
	{0, "PK\x07\x08PK\x03\x04", "application/zip"},
	{0, string(sig7z), "application/x-7z-compressed"},
	{0, string(sigRar4), "application/vnd.rar"},
	{0, string(sigRar5), "application/vnd.rar"},
	{0, string(sigCFB), "application/x-ole-storage"},
	{0, "BZh", "application/x-bzip2"},
	{0, "\xFD7zXZ\x00", "application/x-xz"},
	{0, "\x28\xB5\x2F\xFD", "application/zstd"},
	{0, "II*\x00", "image/tiff"},
	{0, "MM\x00*", "image/tiff"},
	{0, "\x7FELF", "application/x-executable"},
	{0, "MSCF\x00\x00\x00\x00", "application/vnd.ms-cab-compressed"},
	{0, "\xCA\xFE\xBA\xBE", "application/java-vm"},
	{2, "-lh", "application/x-lzh-compressed"},
	{4, "ftypheic", "image/heic"},
	{4, "ftypheix", "image/heic"},
	{4, "ftypmif1", "image/heif"},
}

func sniff(head []byte) string {
	for _, s := range signatures {
		if len(head) >= s.off+len(s.sig) && string(head[s.off:s.off+len(s.sig)]) == s.sig {
			if s.sig == "-lh" && !(len(head) > 6 && head[6] == '-') {
				continue
			}
			return s.mime
		}
	}
	if isPE(head) {
		return "application/vnd.microsoft.portable-executable"
	}
	if pdfStart(head) >= 0 {
		return "application/pdf"
	}
	mt := http.DetectContentType(head)
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	if mt == "text/plain" {
		switch t := textStart(head); {
		case hasPrefixFold(t, "BEGIN:VCALENDAR"):
			return "text/calendar"
		case hasPrefixFold(t, "BEGIN:VCARD"):
			return "text/vcard"
		}
	}
	return mt
}

// isPE recognises a Windows executable: "MZ" and a PE header where e_lfanew points.
func isPE(head []byte) bool {
	if len(head) < 64 || head[0] != 'M' || head[1] != 'Z' {
		return false
	}
	off := int(le32(head[60:]))
	return off >= 64 && off+4 <= len(head) && string(head[off:off+4]) == "PE\x00\x00"
}

// textStart skips a UTF-8 byte order mark and white space.
func textStart(b []byte) []byte {
	b = bytes.TrimPrefix(b, []byte("\xEF\xBB\xBF"))
	return bytes.TrimLeft(b, " \t\r\n")
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}
