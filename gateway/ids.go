package gateway

import (
	"fmt"
	"io"

	"github.com/sealgate/sealgate/internal/linktoken"
)

// newID returns prefix + 80 random bits in lower-case base32 (16 symbols):
// identifiers for messages and transfers, unique but not secret.
func newID(rand io.Reader, prefix string) (string, error) {
	var b [10]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("failed to generate id: %w", err)
	}
	return prefix + linktoken.Encode(b[:]), nil
}
