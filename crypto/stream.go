package crypto

import (
	"bufio"
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

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
	ageChunkSize = 64 << 10 // plaintext bytes per payload chunk
	ageTagSize   = 16       // Poly1305 tag after each chunk
	ageNonceSize = 16       // payload nonce after the header
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

// maxAgeHeader bounds the header decryptAge reads before the payload:
// 16 MiB, a header of some 150,000 X25519 stanzas.
const maxAgeHeader = 16 << 20

// decryptAge decrypts the age file read from src to dst with the first of
// ids that opens it. The header — its stanzas, the file key and the
// header's MAC — is age's own work: the header and the payload nonce are
// handed to age.Decrypt, which returns once it has checked the MAC, and
// the file key it unwrapped is caught on the way (fileKeyCatcher). The
// payload is decrypted here (decryptPayload).
func decryptAge(dst io.Writer, src io.Reader, ids ...age.Identity) (int64, error) {
	br := bufio.NewReaderSize(src, 16<<10)
	var hdr bytes.Buffer
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return 0, errors.New("failed to read header: line too long")
		}
		if err != nil {
			return 0, fmt.Errorf("failed to read header: %w", noEOF(err))
		}
		hdr.Write(line)
		if hdr.Len() > maxAgeHeader {
			return 0, errors.New("failed to read header: too long")
		}
		// The MAC line ends the header: no stanza line starts with "---"
		// (arguments start "-> ", bodies are base64).
		if bytes.HasPrefix(line, []byte("---")) {
			break
		}
	}
	var nonce [ageNonceSize]byte
	if _, err := io.ReadFull(br, nonce[:]); err != nil {
		return 0, fmt.Errorf("failed to read nonce: %w", noEOF(err))
	}
	var fileKey []byte
	catchers := make([]age.Identity, len(ids))
	for i, id := range ids {
		catchers[i] = fileKeyCatcher{id: id, key: &fileKey}
	}
	if _, err := age.Decrypt(io.MultiReader(&hdr, bytes.NewReader(nonce[:])), catchers...); err != nil {
		return 0, err
	}
	if fileKey == nil {
		return 0, errors.New("no file key") // age.Decrypt succeeded without an identity: cannot happen
	}
	key, err := hkdf.Key(sha256.New, fileKey, nonce[:], "payload", chacha20poly1305.KeySize)
	if err != nil {
		return 0, err
	}
	return decryptPayload(dst, br, key)
}

// fileKeyCatcher is an age.Identity that unwraps with id and keeps the
// file key it returns. age.Decrypt tries identities in order and stops at
// the first that unwraps, then checks the header's MAC with that key: a
// key is used only when age.Decrypt returns no error.
type fileKeyCatcher struct {
	id  age.Identity
	key *[]byte
}

func (c fileKeyCatcher) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	k, err := c.id.Unwrap(stanzas)
	if err == nil {
		*c.key = bytes.Clone(k)
	}
	return k, err
}

// decryptPayload decrypts age's STREAM payload (the chunks after the
// nonce) from r to dst. Chunk i is sealed with ChaCha20-Poly1305 under key
// and a nonce of i as an 11-byte big-endian counter followed by a byte
// that is 1 for the last chunk; every chunk but the last holds exactly
// 64 KiB of plaintext, the last is empty only when it is the first. It
// keeps the rules of age's own reader (filippo.io/age/internal/stream):
// a full-length chunk is tried as a middle chunk, then as the last; the
// last chunk's plaintext is written before trailing data is reported; no
// plaintext of a chunk is written unless the chunk is authenticated.
//
// It exists because age v1.3.2's reader makes a new 64 KiB buffer for
// every chunk and copies the plaintext once more (a GiB of garbage per GiB
// served by the portal, and a GiB of copying): here two buffers serve the
// whole file, and each chunk is written straight to dst. The age test
// vectors (c2sp.org/CCTV/age) and a comparison with age.Decrypt on
// damaged files check it (stream_test.go).
func decryptPayload(dst io.Writer, r io.Reader, key []byte) (int64, error) {
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return 0, err
	}
	// Separate buffers: Open zeroes its output when a tag does not match,
	// and a full-length chunk that fails as a middle chunk is tried again
	// as the last.
	in := make([]byte, ageChunkSize+ageTagSize)
	out := make([]byte, 0, ageChunkSize)
	var nonce [chacha20poly1305.NonceSize]byte
	var written int64
	for chunk := uint64(0); ; chunk++ {
		binary.BigEndian.PutUint64(nonce[3:11], chunk)
		nonce[11] = 0
		n, err := io.ReadFull(r, in)
		last := false
		switch {
		case err == io.EOF:
			// The payload ended without a last chunk: truncated.
			return written, io.ErrUnexpectedEOF
		case err == io.ErrUnexpectedEOF:
			if chunk > 0 && n == ageTagSize {
				return written, errors.New("last chunk is empty")
			}
			last = true
			nonce[11] = 1
		case err != nil:
			return written, err
		}
		plain, err := aead.Open(out[:0], nonce[:], in[:n], nil)
		if err != nil && !last {
			last = true
			nonce[11] = 1
			plain, err = aead.Open(out[:0], nonce[:], in[:n], nil)
		}
		if err != nil {
			return written, errors.New("failed to decrypt and authenticate payload chunk, file may be corrupted or tampered with")
		}
		m, err := dst.Write(plain)
		written += int64(m)
		if err != nil {
			return written, err
		}
		if last {
			var b [1]byte
			switch _, err := io.ReadFull(r, b[:]); err {
			case io.EOF:
				return written, nil
			case nil:
				return written, errors.New("trailing data after end of encrypted file")
			default:
				return written, fmt.Errorf("failed to read after end of encrypted file: %w", err)
			}
		}
	}
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF: a header or nonce cut short.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
