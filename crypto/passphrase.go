package crypto

import (
	"fmt"
	"io"
	"strings"
)

// Passphrases are 25 symbols of Crockford's base32 alphabet (no I, L, O, U:
// nothing to confuse), 125 bits of entropy, shown in five groups of five:
// "7KQ2M-XR9TB-04HZD-MWE6P-S3NCA". Sloppy input — lower case, spaces, missing
// hyphens, O for 0, I or L for 1 — is accepted by NormalizePassphrase; the
// stock age CLI needs the exact form shown.
const (
	passphraseAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	passphraseSymbols  = 25
	passphraseGroup    = 5
)

// PassphraseBits is the entropy of a passphrase.
const PassphraseBits = passphraseSymbols * 5

// NewPassphrase draws a passphrase from rand.
func NewPassphrase(rand io.Reader) (string, error) {
	var raw [passphraseSymbols]byte
	if _, err := io.ReadFull(rand, raw[:]); err != nil {
		return "", fmt.Errorf("failed to generate passphrase: %w", err)
	}
	sym := make([]byte, passphraseSymbols)
	for i, b := range raw {
		sym[i] = passphraseAlphabet[b&31] // 256 is a multiple of 32: no bias
	}
	return groupPassphrase(sym), nil
}

func groupPassphrase(sym []byte) string {
	var b strings.Builder
	for i, c := range sym {
		if i > 0 && i%passphraseGroup == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// NormalizePassphrase turns what a person typed into the canonical form, or
// returns ok=false if it cannot be a passphrase (so no key file is tried).
func NormalizePassphrase(s string) (string, bool) {
	sym := make([]byte, 0, passphraseSymbols)
	for _, r := range s {
		switch {
		case r == '-' || r == ' ' || r == '\t' || r == '\u3000' || r == '\u30fc' || r == '\uff0d':
			continue
		case r >= 'a' && r <= 'z':
			r -= 'a' - 'A'
		case r >= '\uff01' && r <= '\uff5e': // full-width ASCII typed with a Japanese IME
			r -= '\uff01' - '!'
			if r >= 'a' && r <= 'z' {
				r -= 'a' - 'A'
			}
		}
		switch r {
		case 'O':
			r = '0'
		case 'I', 'L':
			r = '1'
		}
		if r > 127 || strings.IndexByte(passphraseAlphabet, byte(r)) < 0 {
			if r == '-' {
				continue
			}
			return "", false
		}
		sym = append(sym, byte(r))
		if len(sym) > passphraseSymbols {
			return "", false
		}
	}
	if len(sym) != passphraseSymbols {
		return "", false
	}
	return groupPassphrase(sym), true
}
