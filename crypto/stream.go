package crypto

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
