package gateway

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"io"
	"strings"
)

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns prefix + 80 random bits in lower-case base32 (16 symbols):
// identifiers for messages and transfers, unique but not secret.
func newID(rand io.Reader, prefix string) (string, error) {
	var b [10]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("failed to generate id: %w", err)
	}
	return prefix + lowerBase32.EncodeToString(b[:]), nil
}

// newToken returns a link token: 160 random bits (32 symbols). Only its
// SHA-256 is stored; the token itself exists in the rewritten copy that
// reaches the recipient and, until then, wrapped in the queue.
func newToken(rand io.Reader) (string, error) {
	var b [20]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("failed to generate link token: %w", err)
	}
	return lowerBase32.EncodeToString(b[:]), nil
}

// TokenHash is what the database keeps of a link token.
func TokenHash(token string) []byte {
	h := sha256.Sum256([]byte(strings.ToLower(token)))
	return h[:]
}

// ValidToken reports whether s has the shape of a link token (so that
// garbage never reaches the database).
func ValidToken(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}
