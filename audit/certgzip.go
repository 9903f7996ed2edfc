package audit

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Certificates v4: the v3 document, compressed.
//
// A v4 certificate file is two gzip members. Uncompressed (zcat) they are
// the same JSON document as a v3 file:
//
//	member 1 (deflate): {"format": "sealgate-destruction-certificate/v4",\n"certificate": {...},\n"signature":
//	member 2 (stored):  "<note>"[,\n"names": [...]]\n}\n
//
// The note signs the SHA-256 of member 1's bytes exactly as they are in the
// file (compressed), so no byte of member 1 — gzip header, deflate stream,
// trailer — can change without breaking the signature. Member 2 is written
// without compression by storedGzip, whose output is a function of the
// content alone: the verifier re-encodes what it read and requires the same
// bytes, so no byte of it can change either, and the note it holds is
// verified with the key. The compression of member 1 need not be
// reproducible: it is signed as it is.

// CertificateFormatV3 is the format with one multi-proof, uncompressed
// (SignCertificate keeps it when c.Format names it).
const CertificateFormatV3 = "sealgate-destruction-certificate/v3"

// certificateTitleV4 is the first line of a v4 certificate's signed note:
// its fourth line is the SHA-256 of the compressed member 1, not of the
// certificate's JSON as in v1–v3.
const certificateTitleV4 = "sealgate destruction certificate v4"

// maxCertificateJSON bounds the uncompressed size of a v4 certificate.
const maxCertificateJSON = 1 << 30

// CertificateCompressed reports whether data is a compressed (v4)
// certificate file.
func CertificateCompressed(data []byte) bool {
	return len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b
}

// CertificateFileExt returns the file name extension of a certificate
// file: ".json.gz" for v4, ".json" for earlier formats.
func CertificateFileExt(data []byte) string {
	if CertificateCompressed(data) {
		return ".json.gz"
	}
	return ".json"
}

func certHead(format string) string {
	return "{\"format\": \"" + format + "\",\n\"certificate\": "
}

const certSigKey = ",\n\"signature\": "

// signCompressed returns the v4 file of the certificate JSON raw.
func signCompressed(c *Certificate, raw []byte, sign func(text string) ([]byte, error)) ([]byte, error) {
	var m1 bytes.Buffer
	zw, err := gzip.NewWriterLevel(&m1, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("failed to compress certificate: %w", err)
	}
	for _, b := range [][]byte{[]byte(certHead(c.Format)), raw, []byte(certSigKey)} {
		if _, err := zw.Write(b); err != nil {
			return nil, fmt.Errorf("failed to compress certificate: %w", err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("failed to compress certificate: %w", err)
	}
	sum := sha256.Sum256(m1.Bytes())
	msg, err := sign(certificateTextTitled(certificateTitleV4, c.Origin, c.ID, sum[:]))
	if err != nil {
		return nil, err
	}
	tail, err := certTail(string(msg), nil)
	if err != nil {
		return nil, err
	}
	return append(m1.Bytes(), storedGzip(tail)...), nil
}

// certTail is the content of member 2.
func certTail(sig string, names []Name) ([]byte, error) {
	sj, err := json.Marshal(sig)
	if err != nil {
		return nil, fmt.Errorf("failed to encode certificate signature: %w", err)
	}
	out := sj
	if len(names) > 0 {
		nj, err := json.Marshal(names)
		if err != nil {
			return nil, fmt.Errorf("failed to encode the certificate's names: %w", err)
		}
		out = append(append(out, ",\n\"names\": "...), nj...)
	}
	return append(out, "\n}\n"...), nil
}

// storedGzip returns data as one gzip member of stored (uncompressed)
// deflate blocks, with a fixed header: the encoding is a function of data.
func storedGzip(content []byte) []byte {
	out := make([]byte, 0, len(content)+len(content)/0xffff*5+23)
	out = append(out, 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff)
	data := content
	for {
		n := min(len(data), 0xffff)
		final := byte(0)
		if n == len(data) {
			final = 1
		}
		out = append(out, final)
		out = binary.LittleEndian.AppendUint16(out, uint16(n))
		out = binary.LittleEndian.AppendUint16(out, ^uint16(n))
		out = append(out, data[:n]...)
		data = data[n:]
		if final == 1 {
			break
		}
	}
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(content))
	return binary.LittleEndian.AppendUint32(out, uint32(len(content)))
}

// compressedCert is a v4 file taken apart.
type compressedCert struct {
	member1 []byte // member 1 as in the file (what the note signs)
	format  string
	raw     []byte // the "certificate" JSON
	sig     string
	names   []Name
}

// openCompressed takes a v4 file apart, checking that member 2 is exactly
// storedGzip of its content and that the content is in the v4 shape. It
// does not check the signature.
func openCompressed(data []byte) (*compressedCert, error) {
	br := bytes.NewReader(data)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", ErrMalformed, err)
	}
	zr.Multistream(false)
	head, err := io.ReadAll(io.LimitReader(zr, maxCertificateJSON+1))
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", ErrMalformed, err)
	}
	if len(head) > maxCertificateJSON {
		return nil, fmt.Errorf("%w: certificate is larger than %d bytes uncompressed", ErrMalformed, maxCertificateJSON)
	}
	cc := &compressedCert{member1: data[:len(data)-br.Len()]}
	rest := data[len(cc.member1):]
	zr2, err := gzip.NewReader(bytes.NewReader(rest))
	if err != nil {
		return nil, fmt.Errorf("%w: certificate signature: %v", ErrMalformed, err)
	}
	zr2.Multistream(false)
	tail, err := io.ReadAll(io.LimitReader(zr2, maxCertificateJSON+1))
	if err != nil || len(tail) > maxCertificateJSON {
		return nil, fmt.Errorf("%w: certificate signature: %v", ErrMalformed, err)
	}
	if !bytes.Equal(rest, storedGzip(tail)) {
		return nil, fmt.Errorf("%w: the certificate's signature member is not in its only encoding", ErrMalformed)
	}
	var fmtv struct {
		Format string `json:"format"`
	}
	prefix, _, ok := bytes.Cut(head, []byte(",\n\"certificate\": "))
	if !ok || json.Unmarshal(append(bytes.Clone(prefix), '}'), &fmtv) != nil || !bytes.HasPrefix(head, []byte(certHead(fmtv.Format))) {
		return nil, fmt.Errorf("%w: the compressed certificate does not start with its format", ErrMalformed)
	}
	cc.format = fmtv.Format
	raw, ok := bytes.CutSuffix(head[len(certHead(fmtv.Format)):], []byte(certSigKey))
	if !ok {
		return nil, fmt.Errorf("%w: the compressed certificate does not end where its signature begins", ErrMalformed)
	}
	cc.raw = raw
	var env struct {
		Signature string `json:"signature"`
		Names     []Name `json:"names,omitempty"`
	}
	dec := json.NewDecoder(io.MultiReader(bytes.NewReader([]byte(`{"signature": `)), bytes.NewReader(tail)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("%w: certificate signature: %v", ErrMalformed, err)
	}
	if want, err := certTail(env.Signature, env.Names); err != nil || !bytes.Equal(want, tail) {
		return nil, fmt.Errorf("%w: the certificate's signature and names are not in their only encoding", ErrMalformed)
	}
	cc.sig, cc.names = env.Signature, env.Names
	return cc, nil
}

// withNamesCompressed is CertificateWithNames for a v4 file.
func withNamesCompressed(data []byte, names []Name) ([]byte, error) {
	cc, err := openCompressed(data)
	if err != nil {
		return nil, err
	}
	if len(cc.names) > 0 {
		return nil, fmt.Errorf("%w: the certificate already names its files", ErrMalformed)
	}
	tail, err := certTail(cc.sig, names)
	if err != nil {
		return nil, err
	}
	return append(bytes.Clone(cc.member1), storedGzip(tail)...), nil
}

// uncompressedCert returns the JSON document of a certificate file: data
// itself, or a v4 file uncompressed.
func uncompressedCert(data []byte) ([]byte, error) {
	if !CertificateCompressed(data) {
		return data, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", ErrMalformed, err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, 2*maxCertificateJSON+1))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: certificate: %v", ErrMalformed, err)
	}
	if len(out) > 2*maxCertificateJSON {
		return nil, fmt.Errorf("%w: certificate is too large", ErrMalformed)
	}
	return out, nil
}
