// Package linktoken makes and checks the secret tokens that people receive in
// links: download links (/t/<token>) and the sender's cancel link of a held
// message. A token is 160 random bits in lower-case base32 (32 symbols);
// the database keeps only its SHA-256 (Hash).
package linktoken

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"io"
	"strings"
)

// Len is the length of a token in symbols.
const Len = 32

// encoding returns lower-case base32 without padding, the alphabet of
// tokens and of the gateway's identifiers.
func encoding() *base32.Encoding {
	return base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
}

// Encode returns b in the tokens' alphabet (identifiers use it too: unique
// but not secret).
func Encode(b []byte) string {
	return encoding().EncodeToString(b)
}

// New returns a fresh token read from rand.
func New(rand io.Reader) (string, error) {
	var b [20]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("failed to generate a token: %w", err)
	}
	return Encode(b[:]), nil
}

// Hash is what the database keeps of a token (case-insensitive, as mail
// clients and people may change the case of a link).
func Hash(t string) []byte {
	h := sha256.Sum256([]byte(strings.ToLower(t)))
	return h[:]
}

// Valid reports whether s has the shape of a token, so that garbage never
// reaches the database.
func Valid(s string) bool {
	if len(s) != Len {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}
