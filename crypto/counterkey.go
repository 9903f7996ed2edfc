package crypto

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
)

// CounterKey returns the key under which the rate-limit counters name
// what they count (an HMAC of a client address, an account name or a
// link: internal/ratelimit), derived from the master identity as the queue
// key is. Every instance given the same master key derives the same key,
// so that they count in the same rows; a copy of the database alone does
// not tell whose counters they are.
func (e *Epoch) CounterKey() ([]byte, error) {
	k, err := hkdf.Key(sha256.New, []byte(e.id.String()), nil, "sealgate counter key v1", 32)
	if err != nil {
		return nil, fmt.Errorf("failed to derive the counter key: %w", err)
	}
	return k, nil
}
