package mimeseal

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	maxNameRunes = 150 // SafeName's length cap
	maxExtRunes  = 16  // longest extension kept when the name is cut
)

// SafeName returns a file name for a that is safe to show in a notice and to use in the
// Content-Disposition of a download:
//
//   - invalid UTF-8 is replaced by "_";
//   - control characters (C0 with CR, LF and NUL, DEL, C1), Unicode format characters (bidi
//     embeddings, overrides and isolates U+202A–202E and U+2066–2069, U+200E/U+200F, zero-width
//     characters, BOM) and line/paragraph separators are removed;
//   - path separators and characters that file systems or header quoting reject
//     (/ \ : * ? " < > |) become "_";
//   - runs of white space become one space (no "invoice.pdf      .exe"); leading dots and
//     spaces, trailing dots and spaces are removed; Windows device names get a "_" prefix;
//   - the name is cut to 150 characters, keeping its extension;
//   - a part sealed whole gets ".eml" unless it has it; an empty name becomes
//     "attachment-<Index+1>.bin" (".eml" when whole).
//
// Double extensions are kept ("invoice.pdf.exe" stays so: renaming would break legitimate
// files), so a notice must show FinalExtension(SafeName(a)) on its own, e.g. "type: .exe",
// where a misleading inner extension cannot hide it.
func SafeName(a Attachment) string {
	name := sanitizeName(a.Filename)
	if name == "" {
		ext := ".bin"
		if a.Whole {
			ext = ".eml"
		}
		return "attachment-" + strconv.Itoa(a.Index+1) + ext
	}
	if a.Whole && FinalExtension(name) != ".eml" {
		name += ".eml"
	}
	return capName(name)
}

// FinalExtension returns the extension that decides how a file opens, lower-case with its dot
// (".exe" for "invoice.pdf.exe"), or "" when there is none (no dot, a leading dot only, an
// extension longer than 16 characters or containing a space).
func FinalExtension(name string) string {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 || i == len(name)-1 {
		return ""
	}
	ext := name[i:]
	if utf8.RuneCountInString(ext) > maxExtRunes+1 || strings.ContainsAny(ext, " \t/\\") {
		return ""
	}
	return strings.ToLower(ext)
}

func sanitizeName(s string) string {
	s = strings.ToValidUTF8(s, "_")
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f): // controls, NUL, CR, LF, TAB
			if r == '\t' {
				space = true
			}
			continue
		case unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029': // bidi, zero-width, BOM
			continue
		case r == ' ' || (unicode.Is(unicode.Zs, r) && r != '\u3000'):
			space = true
			continue
		case strings.ContainsRune(`/\:*?"<>|`, r):
			r = '_'
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	name := strings.TrimLeft(b.String(), ". \u3000")
	name = strings.TrimRight(name, ". \u3000")
	if isDeviceName(name) {
		name = "_" + name
	}
	return name
}

// isDeviceName reports whether name's base is a Windows device name (CON, NUL, COM1, ...).
func isDeviceName(name string) bool {
	base := name
	if i := strings.IndexByte(base, '.'); i >= 0 {
		base = base[:i]
	}
	base = strings.ToUpper(strings.TrimSpace(base))
	switch base {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$":
		return true
	}
	if len(base) == 4 && (strings.HasPrefix(base, "COM") || strings.HasPrefix(base, "LPT")) {
		return base[3] >= '0' && base[3] <= '9'
	}
	return false
}

// capName cuts name to maxNameRunes runes, keeping its extension.
func capName(name string) string {
	if utf8.RuneCountInString(name) <= maxNameRunes {
		return name
	}
	ext := ""
	if FinalExtension(name) != "" {
		ext = name[strings.LastIndexByte(name, '.'):]
	}
	stem := []rune(strings.TrimSuffix(name, ext))
	stem = stem[:maxNameRunes-utf8.RuneCountInString(ext)]
	return strings.TrimRight(string(stem), ". ") + ext
}
