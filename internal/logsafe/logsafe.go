// Package logsafe keeps secrets out of log lines.
//
// A log line may be read by anyone who operates the machine, ships logs to
// a collector or attaches them to a support ticket, so none may carry a
// secret: link, cancel and key-verification tokens (each opens something
// on its own), passphrases, session and CSRF cookies, passwords, TOTP
// secrets and codes, and keys.
//
// Two measures, both applied by sealgate serve:
//
//   - Path is the one way to log a request path: it replaces the token of
//     every route that carries one (/t/{token}, /c/{token},
//     /keys/verify/{token}) with "[redacted]". Call sites log Path(r.URL.Path),
//     never the raw path or URL.
//   - ReplaceAttr, installed in the logger's handler, is the net for what a
//     call site did not foresee (an error that quotes a URL, a panic value,
//     a library's message): every string value, the message included, has
//     anything shaped like a token, a passphrase, a TOTP secret or a key
//     replaced. Passwords and TOTP codes have no shape to recognise: they
//     must never be passed to a logger at all.
package logsafe

import (
	"fmt"
	"log/slog"
	"path"
	"regexp"
	"strings"
)

// Redacted replaces a secret.
const Redacted = "[redacted]"

// Path returns the request path p with the token of every token-bearing
// route replaced by Redacted. p is cleaned first (the portal's mux cleans
// paths too), so "/t/../t/TOKEN" or "//t/TOKEN" cannot slip through.
func Path(p string) string {
	if p == "" {
		return p
	}
	segs := strings.Split(path.Clean("/"+p), "/")
	for i := 2; i < len(segs); i++ {
		switch prev := segs[i-1]; {
		case i == 2 && (prev == "t" || prev == "c"):
			segs[i] = Redacted
		case i == 3 && prev == "verify" && segs[1] == "keys":
			segs[i] = Redacted
		}
	}
	return String(strings.Join(segs, "/"))
}

// shapes are the secrets String recognises, each a pattern whose first
// submatch is what is replaced. Boundaries are written out (Go's regexp has
// no look-around): a match must not be part of a longer run of the same
// alphabet, so hashes and ids of other lengths are left alone.
var shapes = []*regexp.Regexp{
	// age identities and sumdb/note signer keys.
	regexp.MustCompile(`(AGE-SECRET-KEY-1[0-9A-Z]+)`),
	regexp.MustCompile(`(PRIVATE\+KEY\+[^\s"]+)`),
	// Link and cancel tokens: 32 symbols of lower-case base32.
	regexp.MustCompile(`(?:^|[^a-z2-7])([a-z2-7]{32})(?:[^a-z2-7]|$)`),
	// Key-verification, session and CSRF tokens: 32 random bytes in
	// unpadded base64url.
	regexp.MustCompile(`(?:^|[^A-Za-z0-9_-])([A-Za-z0-9_-]{43})(?:[^A-Za-z0-9_-]|$)`),
	// Passphrases: 25 Crockford base32 symbols, grouped or not.
	regexp.MustCompile(`(?:^|[^0-9A-Za-z])([0-9A-Z]{5}(?:-[0-9A-Z]{5}){4})(?:[^0-9A-Za-z]|$)`),
	regexp.MustCompile(`(?:^|[^0-9A-Za-z])([0-9A-Z]{25})(?:[^0-9A-Za-z]|$)`),
	// TOTP secrets: 20 bytes of upper-case base32.
	regexp.MustCompile(`(?:^|[^A-Z2-7])([A-Z2-7]{32})(?:[^A-Z2-7]|$)`),
}

// String returns s with everything shaped like a secret replaced by
// Redacted.
func String(s string) string {
	for _, re := range shapes {
		// Matches may share a boundary character, which hides every second
		// one of adjacent secrets from one pass: repeat until none is
		// left (each pass removes at least one).
		for {
			loc := re.FindAllStringSubmatchIndex(s, -1)
			if len(loc) == 0 {
				break
			}
			var b strings.Builder
			last := 0
			for _, m := range loc {
				b.WriteString(s[last:m[2]])
				b.WriteString(Redacted)
				last = m[3]
			}
			b.WriteString(s[last:])
			s = b.String()
		}
	}
	return s
}

// ReplaceAttr is a slog.HandlerOptions.ReplaceAttr that passes every value
// of a record — its message included — through String, as text. A value in
// which nothing is replaced is left as it was.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	var s string
	switch v := a.Value; v.Kind() {
	case slog.KindString:
		s = v.String()
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case fmt.Stringer:
			s = x.String()
		case []byte:
			s = string(x)
		default:
			s = fmt.Sprint(x)
		}
	default:
		return a // numbers, times, durations, booleans
	}
	if r := String(s); r != s {
		a.Value = slog.StringValue(r)
	}
	return a
}
