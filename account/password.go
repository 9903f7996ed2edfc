package account

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters (OWASP's minimum recommendation at the time of
// writing: 19 MiB, 2 passes, 1 lane). Stored with each hash, so they can be
// raised later without invalidating existing passwords.
const (
	argonMemory  = 19 * 1024
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// MinPasswordLen is the shortest password accepted.
const MinPasswordLen = 12

// hashPassword returns a PHC string: $argon2id$v=19$m=...,t=...,p=...$salt$hash.
func hashPassword(rand io.Reader, password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return "", fmt.Errorf("failed to generate salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

var errBadHash = errors.New("account: malformed password hash")

// checkPassword verifies password against a PHC string in constant time.
func checkPassword(encoded, password string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errBadHash
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 1<<22 || t > 16 {
		return false, errBadHash
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, errBadHash
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// checkPasswordPolicy refuses passwords that are too short or made of one
// repeated character.
func checkPasswordPolicy(password string) error {
	if len([]rune(password)) < MinPasswordLen {
		return fmt.Errorf("%w: パスワードは%d文字以上にしてください / passwords must be at least %d characters", ErrWeakPassword, MinPasswordLen, MinPasswordLen)
	}
	first := []rune(password)[0]
	if strings.Trim(password, string(first)) == "" {
		return fmt.Errorf("%w: 同じ文字の繰り返しは使えません / a repeated single character is not a password", ErrWeakPassword)
	}
	return nil
}

// GeneratePassword returns a new password for an account: 20 symbols
// from an unambiguous alphabet of 57 (~116 bits), without modulo bias.
func GeneratePassword(rand io.Reader) (string, error) {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	const limit = 256 - 256%len(alphabet)
	out := make([]byte, 0, 20)
	b := make([]byte, 1)
	for len(out) < 20 {
		if _, err := io.ReadFull(rand, b); err != nil {
			return "", err
		}
		if int(b[0]) < limit {
			out = append(out, alphabet[int(b[0])%len(alphabet)])
		}
	}
	return string(out), nil
}
