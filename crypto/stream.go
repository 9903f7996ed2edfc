package crypto

import (
	"bufio"
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// What a recipient can decrypt from the beginning of a file.age.
//
// An age file is a header, a 16-byte nonce, then the payload in STREAM
// chunks of 64 KiB of plaintext, each followed by a 16-byte
// Poly1305 tag; the last chunk may be shorter (and is empty only when the
// whole plaintext is). Every complete chunk is authenticated on its own, so
// the stock age CLI and library hand out the plaintext of each complete
// chunk before they report a truncated file: whoever holds the first n
// bytes of file.age and the key holds the plaintext of every chunk that
// ends within them.

const (
	ageChunkSize = 64 << 10                  // plaintext bytes per payload chunk
	ageTagSize   = 16                        // Poly1305 tag after each chunk
	encChunk     = ageChunkSize + ageTagSize // a sealed chunk
	ageNonceSize = 16                        // payload nonce after the header
)

// agePayloadSize is the size of the payload (nonce and chunks) of an age
// file of plainSize bytes of plaintext.
func agePayloadSize(plainSize int64) int64 {
	chunks := (plainSize + ageChunkSize - 1) / ageChunkSize
	if chunks == 0 {
		chunks = 1 // the empty final chunk of an empty file
	}
	return ageNonceSize + plainSize + chunks*ageTagSize
}

// DecryptablePrefix returns how many bytes of plaintext can be decrypted
// from the first n bytes of an age file of cipherSize bytes holding
// plainSize bytes of plaintext: plainSize when n covers the file, else
// 64 KiB for every complete payload chunk within the first n bytes. It
// returns 0 when the sizes are not those of an age file (it never claims
// more than can be read).
func DecryptablePrefix(plainSize, cipherSize, n int64) int64 {
	header := cipherSize - agePayloadSize(plainSize)
	if plainSize < 0 || header <= 0 || n <= 0 {
		return 0
	}
	if n >= cipherSize {
		return plainSize
	}
	body := n - header - ageNonceSize
	if body <= 0 {
		return 0
	}
	return min(plainSize, body/(ageChunkSize+ageTagSize)*ageChunkSize)
}

// maxAgeHeader bounds the header openAge reads before the payload: 2 MiB,
// the bound of age's own parser (which also refuses more than 1,024
// recipient stanzas).
const maxAgeHeader = 2 << 20

// decryptAge writes the plaintext of the age file read from src to dst,
// decrypted with the first of ids that opens it (see openAge).
func decryptAge(dst io.Writer, src io.Reader, ids ...age.Identity) (int64, error) {
	r, err := openAge(src, -1, ids...)
	if err != nil {
		return 0, err
	}
	return r.WriteTo(dst)
}

// openAge reads the header of the age file read from src and returns a
// reader of its plaintext, decrypted with the first of ids that opens it.
// size is how many bytes src holds, or -1 when unknown: a small file's
// buffers are cut to its size. The header — its stanzas, the file key and
// the header's MAC — is age's own work (age.DecryptHeader, which returns
// the file key once it has checked the MAC); the payload is decrypted here
// (payloadReader).
func openAge(src io.Reader, size int64, ids ...age.Identity) (*payloadReader, error) {
	bufSize := 16 << 10
	if size >= 0 && size < int64(bufSize) {
		bufSize = max(int(size), 16) // bufio's smallest
	}
	br := bufio.NewReaderSize(src, bufSize)
	var hdr bytes.Buffer
	for lineStart := 0; ; {
		part, err := br.ReadSlice('\n')
		hdr.Write(part)
		if hdr.Len() > maxAgeHeader {
			return nil, errors.New("failed to read header: longer than 2 MiB")
		}
		if err == bufio.ErrBufferFull {
			continue // a line longer than the buffer: read on
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read header: %w", noEOF(err))
		}
		// The MAC line ends the header: no stanza line starts with "---"
		// (arguments start "-> ", bodies are base64).
		if bytes.HasPrefix(hdr.Bytes()[lineStart:], []byte("---")) {
			break
		}
		lineStart = hdr.Len()
	}
	var nonce [ageNonceSize]byte
	if _, err := io.ReadFull(br, nonce[:]); err != nil {
		return nil, fmt.Errorf("failed to read nonce: %w", noEOF(err))
	}
	hdrLen := int64(hdr.Len())
	fileKey, err := age.DecryptHeader(hdr.Bytes(), ids...)
	if err != nil {
		return nil, err
	}
	key, err := hkdf.Key(sha256.New, fileKey, nonce[:], "payload", chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	payload := int64(-1)
	if size >= 0 {
		payload = max(size-hdrLen-ageNonceSize, 0)
	}
	return newPayloadReader(br, key, payload)
}

// remaining returns how many bytes are left to read from r when r says
// (a bytes.Reader, or a regular file), and -1 otherwise.
func remaining(r io.Reader) int64 {
	switch r := r.(type) {
	case interface{ Len() int }:
		return int64(r.Len())
	case *os.File:
		fi, err := r.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return -1
		}
		off, err := r.Seek(0, io.SeekCurrent)
		if err != nil {
			return -1
		}
		return max(fi.Size()-off, 0)
	}
	return -1
}

// payloadReader decrypts age's STREAM payload (the chunks after the
// nonce). Chunk i is sealed with ChaCha20-Poly1305 under the payload key
// and a nonce of i as an 11-byte big-endian counter followed by a byte
// that is 1 for the last chunk; every chunk but the last holds exactly
// 64 KiB of plaintext, the last is empty only when it is the first. It
// keeps the rules of age's own reader (filippo.io/age/internal/stream):
// a full-length chunk is tried as a middle chunk, then as the last; the
// last chunk's plaintext is handed out before trailing data is reported;
// no plaintext of a chunk is handed out unless the chunk is authenticated.
//
// It exists because age v1.3.2's reader makes a new 64 KiB buffer for
// every chunk and copies the plaintext once more — a GiB of garbage per
// GiB served by the portal, and 128 KiB for every small secret unwrapped —
// where this one reuses two buffers, sized to the payload when it is
// small, and WriteTo hands each chunk to the writer without a copy. The
// age test vectors (c2sp.org/CCTV/age) and a comparison with age.Decrypt
// on damaged files check it (stream_test.go).
type payloadReader struct {
	src  io.Reader
	aead cipher.AEAD
	// in holds one sealed chunk: 64 KiB and its tag, or the size given
	// for the payload and a byte when that is less (until a chunk comes
	// that is longer); out its plaintext.
	in, out []byte
	unread  []byte // plaintext not yet handed out, in out
	chunk   uint64
	err     error // after unread: io.EOF at the end, or what went wrong
}

// newPayloadReader reads the payload from src; size is its length, or -1.
// The size only saves memory: the buffers start at the size and a byte
// (a chunk that fills the payload is then read short, the last, as with
// the full buffer), and grow to a full chunk if more comes (next), so a
// wrong size never moves a chunk's end.
func newPayloadReader(src io.Reader, key []byte, size int64) (*payloadReader, error) {
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	n := int64(encChunk)
	if size >= 0 && size+1 < n {
		n = size + 1
	}
	// Separate buffers: Open zeroes its output when a tag does not match,
	// and a full-length chunk that fails as a middle chunk is tried again
	// as the last.
	return &payloadReader{src: src, aead: aead, in: make([]byte, n), out: make([]byte, 0, min(n, ageChunkSize))}, nil
}

func (r *payloadReader) Read(p []byte) (int, error) {
	for len(r.unread) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.next()
	}
	n := copy(p, r.unread)
	r.unread = r.unread[n:]
	return n, nil
}

// WriteTo writes the rest of the plaintext to w, each chunk as it is
// authenticated.
func (r *payloadReader) WriteTo(w io.Writer) (int64, error) {
	var written int64
	for {
		if len(r.unread) > 0 {
			n, err := w.Write(r.unread)
			written += int64(n)
			r.unread = r.unread[n:]
			if err != nil {
				return written, err
			}
		}
		if r.err == io.EOF {
			return written, nil
		}
		if r.err != nil {
			return written, r.err
		}
		r.err = r.next()
	}
}

// next decrypts the next chunk into unread. It returns io.EOF after the
// last chunk when nothing follows it, and an error when something is
// wrong; after the last chunk, unread holds its plaintext either way.
func (r *payloadReader) next() error {
	var nonce [chacha20poly1305.NonceSize]byte
	binary.BigEndian.PutUint64(nonce[3:11], r.chunk)
	n, err := io.ReadFull(r.src, r.in)
	if err == nil && len(r.in) < encChunk {
		// More than the size said: read the rest of a full chunk.
		in := make([]byte, encChunk)
		copy(in, r.in)
		m, rerr := io.ReadFull(r.src, in[n:])
		n += m
		r.in, r.out = in, make([]byte, 0, ageChunkSize)
		if rerr == io.EOF {
			rerr = io.ErrUnexpectedEOF // the chunk ends within the buffer: short
		}
		err = rerr
	}
	last := false
	switch {
	case err == io.EOF:
		// The payload ended without a last chunk: truncated.
		return io.ErrUnexpectedEOF
	case err == io.ErrUnexpectedEOF:
		if r.chunk > 0 && n == ageTagSize {
			return errors.New("last chunk is empty")
		}
		last = true
		nonce[11] = 1
	case err != nil:
		return err
	}
	plain, err := r.aead.Open(r.out[:0], nonce[:], r.in[:n], nil)
	if err != nil && !last {
		last = true
		nonce[11] = 1
		plain, err = r.aead.Open(r.out[:0], nonce[:], r.in[:n], nil)
	}
	if err != nil {
		return errors.New("failed to decrypt and authenticate payload chunk, file may be corrupted or tampered with")
	}
	r.chunk++
	r.unread = plain
	if !last {
		return nil
	}
	var b [1]byte
	switch _, err := io.ReadFull(r.src, b[:]); err {
	case io.EOF:
		return io.EOF
	case nil:
		return errors.New("trailing data after end of encrypted file")
	default:
		return fmt.Errorf("failed to read after end of encrypted file: %w", err)
	}
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF: a header or nonce cut short.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
